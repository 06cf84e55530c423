/* fuzz/fuzz_serve_request.c — libFuzzer target: kiln-serve's request
 * parsing (lib/serve: multipart through libmicrohttpd's post processor,
 * JSON with base64, raw images) and the image preprocessing after it,
 * over a real lib/http server on loopback, because the multipart parser
 * needs a live libmicrohttpd connection.
 *
 * Input: the first line is the Content-Type (control characters dropped;
 * no newline at all = no Content-Type header), the rest is the body. The
 * request goes over a fresh TCP connection; the answer must be 200 or one
 * of the 4xx statuses the parser gives (400, 413, 415), never a crash, a
 * hang, a 500 or no answer. Seeds: fuzz/corpus/serve_request/.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http.h"
#include "serve/serve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT (1u << 20)

/* The fuzzer's server: process-wide by necessity (libFuzzer calls one
 * function per input). */
static struct {
    kiln_http_server *http;
    int port;
    kiln_model_info info;
} fz;

static void handle(kiln_http_request *req, void *ctx)
{
    (void)ctx;
    kiln_serve_images im;
    kiln_err err = {0};
    int status = 400;
    if (kiln_serve_request_images(req, 4, &im, &status, &err) != KILN_OK) {
        kiln_http_reply_error(req, status, "BAD_REQUEST", "%s", err.msg);
        return;
    }
    float x[3 * 32 * 32];
    for (size_t i = 0; i < im.n; i++) {
        int rc = kiln_serve_preprocess(&fz.info, im.data[i], im.len[i], 4000000, x, &err);
        if (rc != KILN_OK) {
            kiln_http_reply_error(req, rc == KILN_ELIMIT ? 413 : 400, "BAD_IMAGE", "%s",
                                  err.msg);
            kiln_serve_images_clear(&im);
            return;
        }
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "images", (double)im.n);
    kiln_serve_images_clear(&im);
    kiln_http_reply_json(req, 200, o, NULL);
}

static void start(void)
{
    kiln_err err = {0};
    kiln_http_options o;
    kiln_http_options_default(&o);
    o.port = 0;
    o.threads = 2;
    o.max_body_bytes = 2 * MAX_INPUT;
    fz.info = (kiln_model_info){.format_version = 1, .num_classes = 2, .input_size = 32,
                                .resize_size = 36, .mean = {0.5f, 0.5f, 0.5f},
                                .std = {0.25f, 0.25f, 0.25f}};
    kiln_http_route r = {.method = "POST", .path = "/predict", .handler = handle};
    if (!(fz.http = kiln_http_server_new(&o, &err)) ||
        kiln_http_server_add_route(fz.http, &r, &err) != KILN_OK ||
        kiln_http_server_start(fz.http, &err) != KILN_OK) {
        fprintf(stderr, "fuzz_serve_request: cannot start the server: %s\n", err.msg);
        abort();
    }
    fz.port = kiln_http_server_port(fz.http);
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) /* libFuzzer's -timeout alarm */
            continue;
        if (w <= 0)
            return; /* the server may answer (413) and close before reading it all */
        c += w;
        n -= (size_t)w;
    }
}

/* connect(), finishing one that libFuzzer's -timeout alarm interrupted. */
static int connect_loopback(int fd, const struct sockaddr_in *a)
{
    if (connect(fd, (const struct sockaddr *)a, sizeof *a) == 0)
        return 1;
    if (errno != EINTR)
        return 0;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int e = 0;
    socklen_t len = sizeof e;
    while (poll(&p, 1, 5000) < 0)
        if (errno != EINTR)
            return 0;
    return getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e == 0;
}

/* The status of the answer, 0 when there is none. */
static int roundtrip(const char *ctype, const uint8_t *body, size_t len, char *reply,
                     size_t reply_size)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fz.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || !connect_loopback(fd, &a)) {
        perror("fuzz_serve_request: connect");
        abort();
    }
    char head[600];
    int n = snprintf(head, sizeof head,
                     "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%sContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "", len);
    send_all(fd, head, (size_t)n);
    send_all(fd, body, len);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < reply_size) {
        r = read(fd, reply + got, reply_size - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    reply[got] = '\0';
    close(fd);
    int status = 0;
    if (sscanf(reply, "HTTP/1.%*d %d", &status) != 1)
        return 0;
    return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    if (!fz.http)
        start();
    const uint8_t *nl = memchr(data, '\n', size);
    char ctype[256];
    const char *ct = NULL;
    const uint8_t *body = data;
    size_t body_len = size;
    if (nl) {
        size_t k = 0;
        for (const uint8_t *p = data; p < nl && k + 1 < sizeof ctype; p++)
            if (*p >= 0x20 && *p < 0x7f)
                ctype[k++] = (char)*p;
        ctype[k] = '\0';
        ct = ctype;
        body = nl + 1;
        body_len = size - (size_t)(body - data);
    }
    static char reply[1 << 16];
    int status = roundtrip(ct, body, body_len, reply, sizeof reply);
    if (status != 200 && status != 400 && status != 413 && status != 415) {
        fprintf(stderr, "fuzz_serve_request: Content-Type '%s', %zu body bytes -> status %d:\n%s\n",
                ct ? ct : "(none)", body_len, status, reply);
        abort();
    }
    return 0;
}
