/* lib/serve/serve_internal.h — what the lib/serve files share; not a public API. */
#ifndef KILN_SERVE_SERVE_INTERNAL_H
#define KILN_SERVE_SERVE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "serve/serve.h"

/* The backend name a config's device means ("auto" serves on the CPU). */
const char *srv_backend_name(const kiln_serve_config *cfg);

/* Monotonic seconds; wall-clock seconds since the epoch. */
double srv_now_s(void);
double srv_wall_s(void);

/* ---- metrics (serve_metrics.c) ---- */
typedef struct srv_metrics srv_metrics;
srv_metrics *srv_metrics_new(kiln_err *err);
void srv_metrics_free(srv_metrics *m);
/* A finished request: route (NULL = none matched), method, status, seconds. */
void srv_metrics_request(srv_metrics *m, const char *route, const char *method, int status,
                         double seconds);
void srv_metrics_batch(srv_metrics *m, size_t images);
/* A model forward with `inputs` real inputs (a kiln_serve_batching
 * on_forward; `metrics` is the srv_metrics). */
void srv_metrics_forward(void *metrics, int inputs);
/* The batching a config asks for, reporting forwards to `metrics`. */
kiln_serve_batching srv_batching(const kiln_serve_config *cfg, srv_metrics *metrics);
void srv_metrics_reload(srv_metrics *m, int ok);
void srv_metrics_inflight(srv_metrics *m, int delta);
/* The Prometheus text (malloc'ed) with the model gauges from `model`
 * (may be NULL) and `ready`. */
char *srv_metrics_text(srv_metrics *m, const kiln_serve_model *model, int ready, int draining,
                       size_t *len);

/* ---- the registry (serve_registry.c) ---- */
/* Resolve the version at `stage` or `alias` of `name`, download its
 * artifacts into cache_dir (reused when complete), load it; then remove
 * the cached versions other than it and `current_version` (may be NULL). */
kiln_serve_model *srv_registry_load(const kiln_serve_config *cfg, int threads,
                                    const kiln_serve_batching *batching,
                                    const char *current_version, const kiln_logger *log,
                                    kiln_err *err);
/* Just the version the registry points at now (malloc'ed), for polling. */
int srv_registry_current_version(const kiln_serve_config *cfg, char **version, kiln_err *err);

#endif
