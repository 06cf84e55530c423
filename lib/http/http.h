/* lib/http/http.h — a small HTTP server over libmicrohttpd, for kiln's
 * daemons (kiln-tracking now, kiln-serve later).
 *
 * What it does: listens on host:port (port 0 = a free port, read back with
 * kiln_http_server_port), binding only the given address (default
 * 127.0.0.1); runs requests on an internal pool of worker threads (poll);
 * routes each request by method + path (exact, or prefix — the longest
 * match wins, exact before prefix); gathers request bodies in memory up to
 * a limit, or streams them to callbacks (uploads); parses query strings;
 * sends JSON, byte and file replies; stops gracefully (no new connections,
 * requests in flight finish, then the threads stop).
 *
 * Ownership, in short:
 *   - The server copies the options and every route's strings; it does not
 *     own route `ctx` pointers, which must outlive the server.
 *   - A kiln_http_request belongs to the server. It is valid from the
 *     moment a handler (or stream callback) receives it until that request
 *     is replied to and the callback returns; everything read from it
 *     (path, body, query JSON, header values) lives as long as it.
 *   - A reply function takes ownership of what it is given (cJSON tree,
 *     malloc'ed buffer) whether it succeeds or not; exactly one reply per
 *     request — later ones fail with KILN_EINVAL and free their argument.
 *
 * Handlers run on the server's worker threads, several at once; whatever
 * they share through `ctx` must be thread-safe. A handler may block (SQLite,
 * disk), but holds up the other connections of its worker meanwhile, so
 * size `threads` for the expected concurrency.
 *
 * Errors the server answers itself (unknown path 404, wrong method 405,
 * body over its limit 413, a handler that did not reply 500) carry a JSON
 * body made by `error_json` — by default MLflow's shape
 * {"error_code": "...", "message": "..."} with error codes
 * ENDPOINT_NOT_FOUND (404), BAD_REQUEST (400, 405), INVALID_PARAMETER_VALUE
 * (413: MLflow's code for a request over its size limits), INTERNAL_ERROR
 * (500) and TEMPORARILY_UNAVAILABLE (503).
 *
 * Draining (opts.drain): kiln_http_server_stop also stops listening at
 * once (new connections are refused, not left in the backlog), answers
 * every later request with "Connection: close", and once nothing is in
 * flight waits up to 1 s more (within stop_grace_ms) for clients to close
 * their keep-alive connections, so a
 * client never has a request cut by the final close (Kubernetes rolling
 * updates).
 *
 * Body limits. A buffered route refuses a body whose Content-Length is over
 * its limit before reading any of it (413; with "Expect: 100-continue" the
 * client never sends it, otherwise the connection is closed after the
 * reply). A body without Content-Length (chunked) that grows past the limit
 * is read on and dropped as it arrives — memory stays at the limit — and
 * answered 413 at its end, since libmicrohttpd cannot reply in the middle
 * of an upload.
 */
#ifndef KILN_HTTP_HTTP_H
#define KILN_HTTP_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/err.h"
#include "common/log.h"

typedef struct kiln_http_server kiln_http_server;
typedef struct kiln_http_request kiln_http_request;

/* Builds the JSON body of an error reply (the caller frees it); NULL falls
 * back to the default shape. `code` is one of the names listed above, or
 * what the application passed to kiln_http_reply_error. */
typedef cJSON *(*kiln_http_error_fn)(int status, const char *code, const char *message,
                                     void *ctx);

/* What the access callback sees when a request is over (answered, or its
 * connection ended first). Strings live only during the call. */
typedef struct kiln_http_access {
    const char *method;        /* "" when the headers never came */
    const char *path;          /* percent-decoded, without the query */
    const char *route;         /* the matched route's path; NULL: none (404) */
    int status;                /* the reply's status; 0 if none was sent */
    int completed;             /* 0: the connection ended before the reply was sent */
    double seconds;            /* from the request line to completion */
    size_t body_bytes;         /* request body bytes received (buffered routes) */
} kiln_http_access;
typedef void (*kiln_http_access_fn)(const kiln_http_access *a, void *ctx);

typedef struct kiln_http_options {
    const char *host;          /* IP address to bind, or "localhost"; default "127.0.0.1" */
    int port;                  /* 0 = a free port */
    int threads;               /* worker threads, default 4 */
    size_t max_body_bytes;     /* default body limit of buffered routes, default 1 MiB */
    int connection_timeout_s;  /* idle keep-alive connections closed after, default 60 */
    int stop_grace_ms;         /* how long stop waits for requests in flight, default 10000 */
    kiln_http_error_fn error_json; /* NULL: MLflow's error shape */
    void *error_ctx;
    const kiln_logger *log;    /* libmicrohttpd's warnings at debug level; may be NULL.
                                  Must outlive the server. */
    kiln_http_access_fn on_access; /* every finished request (access logs, metrics); may
                                      be NULL. Runs on worker threads, several at once. */
    void *access_ctx;
    int drain;                 /* non-zero: stop drains keep-alive connections (above) */
} kiln_http_options;

void kiln_http_options_default(kiln_http_options *opts);

/* Called once the whole body is in (kiln_http_request_body). Must reply
 * with one of the kiln_http_reply_* functions; if it does not, the server
 * answers 500. */
typedef void (*kiln_http_handler)(kiln_http_request *req, void *ctx);

/* A streamed body (uploads): nothing is buffered.
 * - begin: the headers are in, no body read yet. Return KILN_OK with
 *   *state set to accept the body, or reply (404, 400 ...) and return any
 *   other code to refuse it (the body is then not read; a refusal without a
 *   reply is answered 500).
 * - write: the next piece of the body. On failure return a code with `err`
 *   set: the server calls abort, drops the rest of the body and answers
 *   with the code's status (EINVAL/EUNSAFE/EFORMAT 400, ENOTFOUND 404,
 *   ELIMIT 413, others 500) and err->msg.
 * - end: the body is complete; must reply, and owns (frees) `state`.
 * - abort: the client went away, or write failed; frees `state`.
 * Exactly one of end / abort is called for every accepted body. */
typedef struct kiln_http_stream {
    int (*begin)(kiln_http_request *req, void *ctx, void **state);
    int (*write)(void *state, const void *data, size_t len, kiln_err *err);
    void (*end)(kiln_http_request *req, void *ctx, void *state);
    void (*abort)(void *ctx, void *state);
} kiln_http_stream;

typedef struct kiln_http_route {
    const char *method;        /* "GET", "POST" ...; NULL = any. "GET" also serves HEAD. */
    const char *path;          /* "/health", or a prefix such as "/api/2.0/mlflow/" */
    int prefix;                /* non-zero: match every path starting with `path` */
    kiln_http_handler handler; /* a buffered body ... */
    const kiln_http_stream *stream; /* ... or a streamed one (copied); exactly one of the two */
    void *ctx;
    size_t max_body_bytes;     /* buffered routes; 0 = the server's default */
} kiln_http_route;

/* A stopped server with no routes. NULL + EINVAL for bad options. */
kiln_http_server *kiln_http_server_new(const kiln_http_options *opts, kiln_err *err);

/* Add a route (before kiln_http_server_start). EINVAL for a route without
 * exactly one of handler / stream, or a path not starting with '/'. */
int kiln_http_server_add_route(kiln_http_server *s, const kiln_http_route *route,
                               kiln_err *err);

/* Bind and start the worker threads. EIO naming host:port when the address
 * cannot be bound (in use, not local ...), EINVAL for a host that is not an
 * IP address (names are not looked up). */
int kiln_http_server_start(kiln_http_server *s, kiln_err *err);

/* The bound port (the real one when the options asked for 0); 0 if not started. */
int kiln_http_server_port(const kiln_http_server *s);

/* Graceful stop: stop accepting, wait up to stop_grace_ms for requests in
 * flight to be answered, then close every connection and join the
 * threads. Safe to call twice, or on a server never started. */
void kiln_http_server_stop(kiln_http_server *s);

/* Stop (if running) and free. NULL is fine. */
void kiln_http_server_free(kiln_http_server *s);

/* ---- reading a request (valid for the request's lifetime) ---- */
const char *kiln_http_request_method(const kiln_http_request *req);
/* The path, percent-decoded, without the query string. */
const char *kiln_http_request_path(const kiln_http_request *req);
/* The part of the path after the matched route's path (prefix routes);
 * "" for exact routes. */
const char *kiln_http_request_path_rest(const kiln_http_request *req);
/* The raw query string without '?' (still percent-encoded); "" if none. */
const char *kiln_http_request_query_string(const kiln_http_request *req);
/* The query parameters as a JSON object of strings; a key given several
 * times becomes an array of its values, in order; "?flag" gives "". NULL
 * only when out of memory. Owned by the request. */
const cJSON *kiln_http_request_query(kiln_http_request *req);
/* A request header (case-insensitive name) or NULL. */
const char *kiln_http_request_header(const kiln_http_request *req, const char *name);
/* The buffered body, NUL-terminated (so text parsers may read it as a
 * string); *len (may be NULL) is its length without the NUL. An empty body
 * is "" with length 0. Streamed routes have none. */
const char *kiln_http_request_body(const kiln_http_request *req, size_t *len);

/* The fields of a buffered multipart/form-data or
 * application/x-www-form-urlencoded body, parsed by libmicrohttpd's post
 * processor. `fn` gets each field's value in pieces (`off` = the piece's
 * offset in the value; an empty value may come as one piece of size 0) with
 * the field's name and, for files, the filename and content type (NULL when
 * absent); it returns 0 to go on, non-zero to stop (the call then returns
 * KILN_ECANCELED). EUNSUPPORTED when the Content-Type is neither kind (or a
 * multipart one lacks its boundary); EFORMAT for a body that is malformed
 * or ends before its closing boundary. */
typedef int (*kiln_http_form_fn)(void *ctx, const char *key, const char *filename,
                                 const char *content_type, uint64_t off, const char *data,
                                 size_t size);
int kiln_http_request_form(kiln_http_request *req, kiln_http_form_fn fn, void *ctx,
                           kiln_err *err);

/* ---- replying (exactly once per request) ---- */

/* Add a header to the reply to come (e.g. "Cache-Control"). */
int kiln_http_reply_header(kiln_http_request *req, const char *name, const char *value,
                           kiln_err *err);
/* JSON reply, Content-Type application/json; takes `body` (NULL: 500). */
int kiln_http_reply_json(kiln_http_request *req, int status, cJSON *body, kiln_err *err);
/* Bytes, copied. `content_type` NULL = application/octet-stream. */
int kiln_http_reply_data(kiln_http_request *req, int status, const char *content_type,
                         const void *data, size_t len, kiln_err *err);
/* Bytes from malloc, taken (freed with free()). */
int kiln_http_reply_buffer(kiln_http_request *req, int status, const char *content_type,
                           char *data, size_t len, kiln_err *err);
/* A file's content, sent from its descriptor (sendfile). A missing path is
 * answered 404 (ENDPOINT_NOT_FOUND shape), anything but a regular file 400;
 * the return value is KILN_OK once some reply is queued. */
int kiln_http_reply_file(kiln_http_request *req, int status, const char *content_type,
                         const char *path, kiln_err *err);
/* An error reply through the server's error_json: `code` e.g.
 * "RESOURCE_DOES_NOT_EXIST", the message printf-style. */
int kiln_http_reply_error(kiln_http_request *req, int status, const char *code,
                          const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* An error reply for a failed kiln call, as the server answers a failed
 * stream write: kiln_http_status_for_code's status, MLflow's error code
 * for the kiln code (RESOURCE_DOES_NOT_EXIST, INVALID_PARAMETER_VALUE or
 * INTERNAL_ERROR) and err->msg. */
int kiln_http_reply_err(kiln_http_request *req, const kiln_err *err);

/* The HTTP status for a kiln code, as stream write failures use it. */
int kiln_http_status_for_code(int code);

#endif
