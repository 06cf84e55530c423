/* lib/http/http_server.c — the daemon: options, routes, start/stop, and the
 * libmicrohttpd access-handler protocol.
 *
 * libmicrohttpd calls the access handler several times per request: once
 * when the headers are in (*upload_data_size == 0, our `started` flag
 * unset), once per piece of body (*upload_data_size > 0; a reply cannot be
 * queued then), and once more at the end (*upload_data_size == 0 again).
 * The request object is made by the URI log callback (which sees the raw
 * request target, query string included) and freed by the completion
 * callback, which libmicrohttpd calls for every request the URI callback
 * saw, whether or not it was answered.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/http_internal.h"

void kiln_http_options_default(kiln_http_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->host = "127.0.0.1";
    opts->threads = 4;
    opts->max_body_bytes = (size_t)1 << 20;
    opts->connection_timeout_s = 60;
    opts->stop_grace_ms = 10000;
}

kiln_http_server *kiln_http_server_new(const kiln_http_options *opts, kiln_err *err)
{
    if (opts->port < 0 || opts->port > 65535) {
        kiln_err_set(err, KILN_EINVAL, "HTTP port %d is outside 0..65535", opts->port);
        return NULL;
    }
    if (opts->threads < 1 || opts->threads > 1024) {
        kiln_err_set(err, KILN_EINVAL, "HTTP worker threads %d is outside 1..1024",
                     opts->threads);
        return NULL;
    }
    if (opts->max_body_bytes == 0 || opts->connection_timeout_s < 0 || opts->stop_grace_ms < 0) {
        kiln_err_set(err, KILN_EINVAL, "HTTP body limit, timeout and grace must be positive");
        return NULL;
    }
    kiln_http_server *s = calloc(1, sizeof *s);
    if (!s) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory making an HTTP server");
        return NULL;
    }
    s->opts = *opts;
    s->host = strdup(opts->host && *opts->host ? opts->host : "127.0.0.1");
    s->quiesced_fd = MHD_INVALID_SOCKET;
    atomic_init(&s->in_flight, 0);
    atomic_init(&s->connections, 0);
    atomic_init(&s->draining, 0);
    if (!s->host) {
        free(s);
        kiln_err_set(err, KILN_ENOMEM, "out of memory making an HTTP server");
        return NULL;
    }
    s->opts.host = s->host;
    return s;
}

int kiln_http_server_add_route(kiln_http_server *s, const kiln_http_route *route, kiln_err *err)
{
    if (!route->path || route->path[0] != '/')
        return kiln_err_set(err, KILN_EINVAL, "HTTP route path '%s' must start with '/'",
                            route->path ? route->path : "(null)");
    if (!route->handler == !route->stream)
        return kiln_err_set(err, KILN_EINVAL,
                            "HTTP route %s needs exactly one of a handler or a stream",
                            route->path);
    if (route->stream && (!route->stream->begin || !route->stream->write ||
                          !route->stream->end || !route->stream->abort))
        return kiln_err_set(err, KILN_EINVAL, "HTTP stream route %s lacks a callback",
                            route->path);
    if (s->daemon)
        return kiln_err_set(err, KILN_EINVAL, "HTTP routes must be added before start");
    http_route *grown = realloc(s->routes, (s->n_routes + 1) * sizeof *grown);
    if (!grown)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory adding an HTTP route");
    s->routes = grown;
    http_route *r = &s->routes[s->n_routes];
    memset(r, 0, sizeof *r);
    r->path = strdup(route->path);
    r->method = route->method ? strdup(route->method) : NULL;
    if (!r->path || (route->method && !r->method)) {
        free(r->path);
        free(r->method);
        return kiln_err_set(err, KILN_ENOMEM, "out of memory adding an HTTP route");
    }
    r->path_len = strlen(r->path);
    r->prefix = route->prefix != 0;
    r->handler = route->handler;
    if (route->stream) {
        r->stream = *route->stream;
        r->is_stream = 1;
    }
    r->ctx = route->ctx;
    r->max_body = route->max_body_bytes ? route->max_body_bytes : s->opts.max_body_bytes;
    s->n_routes++;
    return KILN_OK;
}

static int method_matches(const http_route *r, const char *method)
{
    if (!r->method)
        return 1;
    if (strcmp(r->method, method) == 0)
        return 1;
    return strcmp(r->method, "GET") == 0 && strcmp(method, "HEAD") == 0;
}

/* The best route for the path: exact beats prefix, longer prefix beats
 * shorter. *path_known says whether some route matched the path at all
 * (to tell 405 from 404). */
static const http_route *find_route(const kiln_http_server *s, const char *method,
                                    const char *path, int *path_known)
{
    const http_route *best = NULL;
    size_t best_score = 0;
    *path_known = 0;
    for (size_t i = 0; i < s->n_routes; i++) {
        const http_route *r = &s->routes[i];
        int hit = r->prefix ? strncmp(path, r->path, r->path_len) == 0
                            : strcmp(path, r->path) == 0;
        if (!hit)
            continue;
        *path_known = 1;
        if (!method_matches(r, method))
            continue;
        /* Exact routes score above every prefix. */
        size_t score = r->prefix ? r->path_len + 1 : (size_t)-1;
        if (!best || score > best_score) {
            best = r;
            best_score = score;
        }
    }
    return best;
}

/* ---- the libmicrohttpd callbacks ---- */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)conn;
    return http_request_new(cls, uri);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    const kiln_http_server *s = cls;
    kiln_http_request *r = *con_cls;
    if (!r)
        return;
    if (s->opts.log && s->opts.log->min_level <= KILN_LOG_DEBUG && r->method)
        kiln_log_debug(s->opts.log, "http: %s %s %d%s", r->method, r->path, r->status,
                       toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? ""
                                                                  : " (connection ended early)");
    if (r->stream_open) {
        r->stream_open = 0;
        r->route->stream.abort(r->route->ctx, r->stream_state);
    }
    if (s->opts.on_access) {
        kiln_http_access a = {.method = r->method ? r->method : "",
                              .path = r->path ? r->path : "",
                              .route = r->route ? r->route->path : NULL,
                              .status = r->status,
                              .completed = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK,
                              .seconds = http_now_s() - r->t_start,
                              .body_bytes = r->received};
        s->opts.on_access(&a, s->opts.access_ctx);
    }
    http_request_free(r);
    *con_cls = NULL;
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    const kiln_http_server *s = cls;
    if (!s->opts.log)
        return;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    kiln_log_debug(s->opts.log, "http: %s", line);
}

static int parse_content_length(struct MHD_Connection *conn, uint64_t *out)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!v)
        return 0;
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v)
        return 0;
    *out = (uint64_t)n;
    return 1;
}

/* Headers are in: pick the route, refuse early what can be refused. */
static enum MHD_Result on_headers(kiln_http_server *s, kiln_http_request *r)
{
    int path_known = 0;
    r->route = find_route(s, r->method, r->path, &path_known);
    if (!r->route) {
        if (path_known)
            http_reply_error_plain(r, MHD_HTTP_METHOD_NOT_ALLOWED, "BAD_REQUEST",
                                   "method not allowed for this path");
        else
            http_reply_error_plain(r, MHD_HTTP_NOT_FOUND, "ENDPOINT_NOT_FOUND",
                                   "no such endpoint");
        return http_queue_reply(r);
    }
    if (r->route->is_stream) {
        r->mode = HTTP_BODY_STREAM;
        int rc = r->route->stream.begin(r, r->route->ctx, &r->stream_state);
        if (rc != KILN_OK)
            return http_queue_reply(r); /* 500 when begin refused without a reply */
        r->stream_open = 1;
        return MHD_YES;
    }
    r->mode = HTTP_BODY_BUFFER;
    r->limit = r->route->max_body;
    uint64_t declared = 0;
    if (parse_content_length(r->conn, &declared)) {
        if (declared > r->limit) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "request body of %llu bytes is over the limit of %zu bytes",
                     (unsigned long long)declared, r->limit);
            http_reply_error_plain(r, MHD_HTTP_CONTENT_TOO_LARGE, "INVALID_PARAMETER_VALUE",
                                   msg);
            return http_queue_reply(r);
        }
        r->cap = (size_t)declared + 1;
        r->body = malloc(r->cap);
        if (!r->body)
            return MHD_NO;
    }
    return MHD_YES;
}

static void on_buffer_data(kiln_http_request *r, const char *data, size_t n)
{
    r->received += n;
    if (r->over_limit)
        return;
    if (n > r->limit - r->len) {
        /* Drop what came so far too: memory stays at the limit. */
        r->over_limit = 1;
        free(r->body);
        r->body = NULL;
        r->len = r->cap = 0;
        return;
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1)
            cap *= 2;
        if (cap > r->limit + 1)
            cap = r->limit + 1;
        char *grown = realloc(r->body, cap);
        if (!grown) {
            r->over_limit = 1; /* answered 413 rather than crash */
            return;
        }
        r->body = grown;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
}

static void on_stream_data(kiln_http_request *r, const char *data, size_t n)
{
    if (r->stream_failed)
        return;
    if (r->route->stream.write(r->stream_state, data, n, &r->stream_err) != KILN_OK) {
        r->stream_failed = 1;
        r->stream_open = 0;
        r->route->stream.abort(r->route->ctx, r->stream_state);
        r->stream_state = NULL;
    }
}

static enum MHD_Result on_body_done(kiln_http_request *r)
{
    const http_route *route = r->route;
    if (r->mode == HTTP_BODY_STREAM) {
        if (r->stream_failed) {
            kiln_http_reply_err(r, &r->stream_err);
            return http_queue_reply(r);
        }
        r->stream_open = 0;
        route->stream.end(r, route->ctx, r->stream_state);
        r->stream_state = NULL;
        return http_queue_reply(r);
    }
    if (r->over_limit) {
        char msg[160];
        snprintf(msg, sizeof msg, "request body is over the limit of %zu bytes", r->limit);
        http_reply_error_plain(r, MHD_HTTP_CONTENT_TOO_LARGE, "INVALID_PARAMETER_VALUE", msg);
        return http_queue_reply(r);
    }
    if (!r->body) {
        r->body = malloc(1);
        if (!r->body)
            return MHD_NO;
        r->cap = 1;
    }
    r->body[r->len] = '\0';
    route->handler(r, route->ctx);
    return http_queue_reply(r);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    (void)version;
    kiln_http_server *s = cls;
    kiln_http_request *r = *con_cls;
    if (!r) {
        /* The URI callback ran out of memory. */
        r = http_request_new(s, NULL);
        if (!r)
            return MHD_NO;
        *con_cls = r;
    }
    if (!r->started) {
        r->started = 1;
        r->conn = conn;
        r->method = method;
        r->path = url;
        return on_headers(s, r);
    }
    if (*upload_data_size) {
        if (r->mode == HTTP_BODY_STREAM)
            on_stream_data(r, upload_data, *upload_data_size);
        else
            on_buffer_data(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    return on_body_done(r);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)conn;
    (void)socket_ctx;
    kiln_http_server *s = cls;
    atomic_fetch_add(&s->connections, toe == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1);
}

/* ---- start / stop ---- */

/* A numeric address, or "localhost": a server binds an address, and
 * starting must not depend on (or send) DNS queries. */
static int resolve_host(const char *host, int port, struct sockaddr_storage *addr,
                        int *ipv6, kiln_err *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    const char *numeric = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    int g = getaddrinfo(numeric, port_text, &hints, &res);
    if (g != 0 || !res)
        return kiln_err_set(err, KILN_EINVAL,
                            "HTTP host '%s' is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1) "
                            "or localhost", host);
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *ipv6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return KILN_OK;
}

int kiln_http_server_start(kiln_http_server *s, kiln_err *err)
{
    if (s->daemon)
        return kiln_err_set(err, KILN_EINVAL, "HTTP server already started");
    struct sockaddr_storage addr;
    int ipv6 = 0;
    int rc = resolve_host(s->host, s->opts.port, &addr, &ipv6, err);
    if (rc != KILN_OK)
        return rc;
    /* poll(), not epoll: with epoll, libmicrohttpd 0.9.75 misses a client
     * that closes in the middle of an upload until the idle timeout
     * (test_http's test_client_gone_mid_upload). */
    unsigned int flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ipv6)
        flags |= MHD_USE_IPv6;
    /* A pool of 1 is the single internal polling thread. */
    s->daemon = MHD_start_daemon(
        flags, (uint16_t)s->opts.port, NULL, NULL, on_access, s,
        MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&addr,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)s->opts.connection_timeout_s,
        /* Room for long query strings and headers (default 32 KiB). */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)128 * 1024,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)(s->opts.threads > 1 ? s->opts.threads : 0),
        MHD_OPTION_END);
    if (!s->daemon)
        return kiln_err_set(err, KILN_EIO,
                            "cannot listen on %s:%d (address in use, or not an address of "
                            "this machine?)", s->host, s->opts.port);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? (int)info->port : s->opts.port;
    return KILN_OK;
}

int kiln_http_server_port(const kiln_http_server *s)
{
    return s && s->daemon ? s->port : 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#define DRAIN_IDLE_MS 1000

void kiln_http_server_stop(kiln_http_server *s)
{
    if (!s || !s->daemon)
        return;
    if (s->opts.drain)
        atomic_store(&s->draining, 1);
    s->quiesced_fd = MHD_quiesce_daemon(s->daemon);
    /* Draining: shut the listening socket (Linux refuses new connections
     * then) while keeping the descriptor, which the workers may still
     * hold until MHD_stop_daemon. */
    if (s->opts.drain && s->quiesced_fd != MHD_INVALID_SOCKET)
        shutdown(s->quiesced_fd, SHUT_RDWR);
    /* Requests already read are answered; idle keep-alive connections are
     * closed by MHD_stop_daemon below, unless draining waits for them. */
    /* An idle connection may never send again: once nothing is in flight,
     * draining waits for connections at most DRAIN_IDLE_MS more. */
    long idle = 0;
    for (long waited = 0; waited < s->opts.stop_grace_ms; waited += 5) {
        if (atomic_load(&s->in_flight) == 0) {
            if (!s->opts.drain || atomic_load(&s->connections) <= 0 || idle >= DRAIN_IDLE_MS)
                break;
            idle += 5;
        } else {
            idle = 0;
        }
        sleep_ms(5);
    }
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    if (s->quiesced_fd != MHD_INVALID_SOCKET)
        close(s->quiesced_fd);
    s->quiesced_fd = MHD_INVALID_SOCKET;
}

void kiln_http_server_free(kiln_http_server *s)
{
    if (!s)
        return;
    kiln_http_server_stop(s);
    for (size_t i = 0; i < s->n_routes; i++) {
        free(s->routes[i].path);
        free(s->routes[i].method);
    }
    free(s->routes);
    free(s->host);
    free(s);
}

int kiln_http_status_for_code(int code)
{
    switch (code) {
    case KILN_OK:
        return 200;
    case KILN_EINVAL:
    case KILN_EUNSAFE:
    case KILN_EFORMAT:
        return 400;
    case KILN_ENOTFOUND:
        return 404;
    case KILN_ELIMIT:
        return 413;
    case KILN_EUNSUPPORTED:
        return 501;
    default:
        return 500;
    }
}
