/* lib/http/http_internal.h — what the lib/http files share; not a public API. */
#ifndef KILN_HTTP_HTTP_INTERNAL_H
#define KILN_HTTP_HTTP_INTERNAL_H

#include <microhttpd.h>
#include <stdatomic.h>

#include "http/http.h"

typedef struct http_route {
    char *method;              /* NULL = any */
    char *path;
    size_t path_len;
    int prefix;
    kiln_http_handler handler;
    kiln_http_stream stream;
    int is_stream;
    void *ctx;
    size_t max_body;
} http_route;

struct kiln_http_server {
    kiln_http_options opts;
    char *host;                /* copy of opts.host */
    http_route *routes;
    size_t n_routes;
    struct MHD_Daemon *daemon;
    MHD_socket quiesced_fd;    /* closed only after MHD_stop_daemon */
    int port;
    atomic_int in_flight;      /* requests between URI and completion */
    atomic_int connections;    /* open client connections */
    atomic_int draining;       /* opts.drain and stopping: replies close their connection */
};

typedef struct http_header {
    char *name;
    char *value;
    struct http_header *next;
} http_header;

typedef enum http_body_mode {
    HTTP_BODY_BUFFER = 0,
    HTTP_BODY_STREAM,
} http_body_mode;

struct kiln_http_request {
    kiln_http_server *server;
    struct MHD_Connection *conn;
    char *uri;                 /* raw request target, from the URI log callback */
    const char *method;        /* owned by libmicrohttpd, valid for the request */
    const char *path;          /* percent-decoded, owned by libmicrohttpd */
    const char *query_string;  /* into `uri` */
    const http_route *route;
    int started;               /* the header call has been made */
    http_body_mode mode;
    char *body;
    size_t len, cap, limit;
    int over_limit;            /* the rest of the body is being dropped */
    void *stream_state;
    int stream_open;           /* begin accepted, neither end nor abort called yet */
    int stream_failed;
    kiln_err stream_err;
    cJSON *query;
    struct MHD_Response *response;
    int status;
    http_header *headers;
    double t_start;            /* monotonic seconds at the request line */
    size_t received;           /* body bytes received */
};

/* Monotonic clock in seconds. */
double http_now_s(void);

/* A request object for `uri` (may be NULL); counts it in flight. */
kiln_http_request *http_request_new(kiln_http_server *s, const char *uri);
/* Frees everything the request holds and uncounts it. */
void http_request_free(kiln_http_request *r);

/* Replies the server makes itself (404, 405, 413, 500 ...). Never fails
 * for lack of memory in a way that leaves no reply: falls back to a
 * static body. */
void http_reply_error_plain(kiln_http_request *r, int status, const char *code,
                            const char *message);
/* Queue the pending reply on the connection (500 if there is none). */
enum MHD_Result http_queue_reply(kiln_http_request *r);

#endif
