/* tracking/app.h — what kiln-tracking's main and its routes share. */
#ifndef KILN_TRACKING_APP_H
#define KILN_TRACKING_APP_H

#include "common/err.h"
#include "common/log.h"
#include "http/http.h"
#include "tracking/tracking.h"

typedef struct tracking_app {
    kiln_tracking *store;
    const kiln_logger *log;
    const char *static_prefix; /* the UI's links start with it; "" or NULL: none */
} tracking_app;

/* Register every route of kiln-tracking on `server`, with `app` as the
 * handlers' context (it must outlive the server). */
int tracking_add_routes(kiln_http_server *server, tracking_app *app, kiln_err *err);

#endif
