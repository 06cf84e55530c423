/* tests/test_http.c — lib/http on loopback, driven by libcurl: routing,
 * 404/405, body limits (declared and chunked), query parsing, streamed
 * uploads, file replies, concurrency, binding, graceful stop. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/fs.h"
#include "http/http.h"
#include "support/s3server.h"
#include "support/testutil.h"

typedef struct fixture {
    char *dir;
    kiln_http_server *server;
    char base[64];
    atomic_int running;       /* /slow handlers running now */
    atomic_int max_running;
    atomic_int aborts;        /* stream aborts */
    atomic_int ends;
    int slow_ms;
} fixture;

typedef struct upload {
    FILE *f;
    size_t bytes;
    int fail_after;           /* fail once this many bytes came (0 = never) */
} upload;

typedef struct reply {
    long status;
    char *body;
    size_t len;
    char content_type[128];
} reply;

/* ---------------- handlers ---------------- */

static void on_hello(kiln_http_request *req, void *ctx)
{
    (void)ctx;
    kiln_http_reply_header(req, "X-Kiln", "yes", NULL);
    kiln_http_reply_data(req, 200, "text/plain", "hello", 5, NULL);
}

static void on_echo(kiln_http_request *req, void *ctx)
{
    (void)ctx;
    size_t len = 0;
    const char *body = kiln_http_request_body(req, &len);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "len", (double)len);
    cJSON_AddStringToObject(o, "body", body);
    cJSON_AddStringToObject(o, "method", kiln_http_request_method(req));
    cJSON_AddStringToObject(o, "rest", kiln_http_request_path_rest(req));
    kiln_http_reply_json(req, 200, o, NULL);
}

static void on_query(kiln_http_request *req, void *ctx)
{
    (void)ctx;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "query", cJSON_Duplicate(kiln_http_request_query(req), 1));
    cJSON_AddStringToObject(o, "raw", kiln_http_request_query_string(req));
    cJSON_AddStringToObject(o, "path", kiln_http_request_path(req));
    const char *h = kiln_http_request_header(req, "x-test-header");
    cJSON_AddStringToObject(o, "header", h ? h : "");
    kiln_http_reply_json(req, 200, o, NULL);
}

static void on_prefix(kiln_http_request *req, void *ctx)
{
    (void)ctx;
    char text[256];
    snprintf(text, sizeof text, "prefix:%s", kiln_http_request_path_rest(req));
    kiln_http_reply_data(req, 200, "text/plain", text, strlen(text), NULL);
}

static void on_slow(kiln_http_request *req, void *ctx)
{
    fixture *f = ctx;
    int now = atomic_fetch_add(&f->running, 1) + 1;
    int seen = atomic_load(&f->max_running);
    while (now > seen && !atomic_compare_exchange_weak(&f->max_running, &seen, now))
        ;
    kt_sleep_ms(f->slow_ms);
    atomic_fetch_sub(&f->running, 1);
    kiln_http_reply_data(req, 200, "text/plain", "slow", 4, NULL);
}

static void on_noreply(kiln_http_request *req, void *ctx)
{
    (void)req;
    (void)ctx;
}

static void on_file(kiln_http_request *req, void *ctx)
{
    fixture *f = ctx;
    char *p = kt_path(f->dir, kiln_http_request_path_rest(req));
    kiln_http_reply_file(req, 200, "application/x-test", p, NULL);
    free(p);
}

static int up_begin(kiln_http_request *req, void *ctx, void **state)
{
    fixture *f = ctx;
    const char *name = kiln_http_request_path_rest(req);
    if (strcmp(name, "refuse") == 0) {
        kiln_http_reply_error(req, 403, "PERMISSION_DENIED", "no uploads to %s", name);
        return KILN_EINVAL;
    }
    upload *u = calloc(1, sizeof *u);
    char *p = kt_path(f->dir, strcmp(name, "fail") == 0 ? "failed.bin" : "upload.bin");
    u->f = fopen(p, "wb");
    free(p);
    u->fail_after = strcmp(name, "fail") == 0 ? 100000 : 0;
    *state = u;
    return KILN_OK;
}

static int up_write(void *state, const void *data, size_t len, kiln_err *err)
{
    upload *u = state;
    u->bytes += len;
    if (u->fail_after && u->bytes >= (size_t)u->fail_after)
        return kiln_err_set(err, KILN_EUNSAFE, "upload refused after %zu bytes", u->bytes);
    return fwrite(data, 1, len, u->f) == len ? KILN_OK : KILN_EIO;
}

static void up_end(kiln_http_request *req, void *ctx, void *state)
{
    fixture *f = ctx;
    upload *u = state;
    fclose(u->f);
    atomic_fetch_add(&f->ends, 1);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "bytes", (double)u->bytes);
    free(u);
    kiln_http_reply_json(req, 201, o, NULL);
}

static void up_abort(void *ctx, void *state)
{
    fixture *f = ctx;
    upload *u = state;
    fclose(u->f);
    free(u);
    atomic_fetch_add(&f->aborts, 1);
}

static const kiln_http_stream upload_stream = {up_begin, up_write, up_end, up_abort};

/* ---------------- fixture ---------------- */

static void add(fixture *f, const char *method, const char *path, int prefix,
                kiln_http_handler h, const kiln_http_stream *st, size_t limit)
{
    kiln_err err = {0};
    kiln_http_route r = {.method = method, .path = path, .prefix = prefix, .handler = h,
                         .stream = st, .ctx = f, .max_body_bytes = limit};
    if (kiln_http_server_add_route(f->server, &r, &err) != KILN_OK)
        fail_msg("route %s: %s", path, err.msg);
}

static void start_server(fixture *f, int threads)
{
    kiln_http_options o;
    kiln_http_options_default(&o);
    o.threads = threads;
    o.max_body_bytes = 4096;
    o.stop_grace_ms = 5000;
    kiln_err err = {0};
    f->server = kiln_http_server_new(&o, &err);
    assert_non_null(f->server);
    add(f, "GET", "/hello", 0, on_hello, NULL, 0);
    add(f, "POST", "/echo", 0, on_echo, NULL, 1024);
    add(f, NULL, "/any/", 1, on_echo, NULL, 0);
    add(f, "GET", "/query", 0, on_query, NULL, 0);
    add(f, "GET", "/p/", 1, on_prefix, NULL, 0);
    add(f, "GET", "/p/exact", 0, on_hello, NULL, 0);
    add(f, "GET", "/slow", 0, on_slow, NULL, 0);
    add(f, "GET", "/noreply", 0, on_noreply, NULL, 0);
    add(f, "GET", "/files/", 1, on_file, NULL, 0);
    add(f, "PUT", "/upload/", 1, NULL, &upload_stream, 0);
    if (kiln_http_server_start(f->server, &err) != KILN_OK)
        fail_msg("start: %s", err.msg);
    assert_true(kiln_http_server_port(f->server) > 0);
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%d", kiln_http_server_port(f->server));
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = kt_mkdtemp();
    f->slow_ms = 300;
    *state = f;
    start_server(f, 4);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kiln_http_server_free(f->server);
    kt_rmtree_free(f->dir);
    free(f);
    return 0;
}

/* ---------------- a small curl client ---------------- */

static size_t collect(char *data, size_t size, size_t n, void *ctx)
{
    reply *r = ctx;
    r->body = realloc(r->body, r->len + size * n + 1);
    memcpy(r->body + r->len, data, size * n);
    r->len += size * n;
    r->body[r->len] = '\0';
    return size * n;
}

typedef struct chunked_src {
    size_t left;
} chunked_src;

static size_t chunked_read(char *buf, size_t size, size_t n, void *ctx)
{
    chunked_src *c = ctx;
    size_t k = size * n < c->left ? size * n : c->left;
    memset(buf, 'x', k);
    c->left -= k;
    return k;
}

/* `body` NULL = none; `chunked` > 0 sends that many bytes chunked instead. */
static CURLcode request(const char *method, const char *url, const char *body, size_t len,
                        size_t chunked, const char *header, FILE *upload_file, reply *out)
{
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    chunked_src src = {chunked};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (header)
        h = curl_slist_append(h, header);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else if (chunked) {
        h = curl_slist_append(h, "Transfer-Encoding: chunked");
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, chunked_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &src);
    } else if (upload_file) {
        fseek(upload_file, 0, SEEK_END);
        curl_off_t size = ftell(upload_file);
        rewind(upload_file);
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READDATA, upload_file);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, size);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(out->content_type, sizeof out->content_type, "%s", ct ? ct : "");
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc;
}

static void get_ok(fixture *f, const char *method, const char *path, const char *body,
                   long want_status, reply *out)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", f->base, path);
    CURLcode rc = request(method, url, body, body ? strlen(body) : 0, 0, NULL, NULL, out);
    if (rc != CURLE_OK || out->status != want_status)
        fail_msg("%s %s: curl %d status %ld (want %ld) body %s", method, path, (int)rc,
                 out->status, want_status, out->body ? out->body : "");
}

static cJSON *json_of(const reply *r)
{
    cJSON *j = cJSON_Parse(r->body ? r->body : "");
    if (!j)
        fail_msg("not JSON: %s", r->body ? r->body : "(empty)");
    return j;
}

static void expect_error(const reply *r, const char *code)
{
    cJSON *j = json_of(r);
    const cJSON *c = cJSON_GetObjectItem(j, "error_code");
    if (!cJSON_IsString(c) || strcmp(c->valuestring, code) != 0)
        fail_msg("want error_code %s in %s", code, r->body);
    assert_true(cJSON_IsString(cJSON_GetObjectItem(j, "message")));
    assert_string_equal(r->content_type, "application/json");
    cJSON_Delete(j);
}

/* ---------------- tests ---------------- */

static void test_routes(void **state)
{
    fixture *f = *state;
    reply r;
    get_ok(f, "GET", "/hello", NULL, 200, &r);
    assert_string_equal(r.body, "hello");
    assert_string_equal(r.content_type, "text/plain");
    free(r.body);
    /* HEAD is served by the GET route, without a body. */
    get_ok(f, "HEAD", "/hello", NULL, 200, &r);
    assert_null(r.body);
    /* Exact beats prefix; otherwise the prefix route gets the rest. */
    get_ok(f, "GET", "/p/exact", NULL, 200, &r);
    assert_string_equal(r.body, "hello");
    free(r.body);
    get_ok(f, "GET", "/p/a/b%20c", NULL, 200, &r);
    assert_string_equal(r.body, "prefix:a/b c");
    free(r.body);
    /* Any-method prefix route. */
    get_ok(f, "DELETE", "/any/x", NULL, 200, &r);
    cJSON *j = json_of(&r);
    assert_string_equal(cJSON_GetObjectItem(j, "method")->valuestring, "DELETE");
    assert_string_equal(cJSON_GetObjectItem(j, "rest")->valuestring, "x");
    cJSON_Delete(j);
    free(r.body);
    get_ok(f, "GET", "/nope", NULL, 404, &r);
    expect_error(&r, "ENDPOINT_NOT_FOUND");
    free(r.body);
    get_ok(f, "POST", "/hello", "x", 405, &r);
    expect_error(&r, "BAD_REQUEST");
    free(r.body);
    /* A handler that forgets to reply gets a 500, not a hang. */
    get_ok(f, "GET", "/noreply", NULL, 500, &r);
    expect_error(&r, "INTERNAL_ERROR");
    free(r.body);
}

static void test_body_and_limits(void **state)
{
    fixture *f = *state;
    reply r;
    get_ok(f, "POST", "/echo", "{\"a\": 1}", 200, &r);
    cJSON *j = json_of(&r);
    assert_int_equal(cJSON_GetObjectItem(j, "len")->valueint, 8);
    assert_string_equal(cJSON_GetObjectItem(j, "body")->valuestring, "{\"a\": 1}");
    cJSON_Delete(j);
    free(r.body);
    /* Exactly at the route's limit (1024) is fine, one more byte is not. */
    char *big = malloc(1026);
    memset(big, 'a', 1025);
    big[1024] = '\0';
    get_ok(f, "POST", "/echo", big, 200, &r);
    free(r.body);
    big[1024] = 'a';
    big[1025] = '\0';
    get_ok(f, "POST", "/echo", big, 413, &r);
    expect_error(&r, "INVALID_PARAMETER_VALUE");
    assert_non_null(strstr(r.body, "1024"));
    free(r.body);
    free(big);
    /* 8 MiB declared: refused before it is read (curl waits for 100-continue). */
    char url[256];
    snprintf(url, sizeof url, "%s/echo", f->base);
    size_t huge_len = (size_t)8 << 20;
    char *huge = calloc(1, huge_len);
    double t0 = kt_now_s();
    assert_int_equal(request("POST", url, huge, huge_len, 0, NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 413);
    expect_error(&r, "INVALID_PARAMETER_VALUE");
    free(r.body);
    /* ... also without the Expect dance: the connection is closed after the reply. */
    CURLcode rc = request("POST", url, huge, huge_len, 0, "Expect:", NULL, &r);
    if (rc == CURLE_OK)
        assert_int_equal(r.status, 413);
    free(r.body);
    free(huge);
    assert_true(kt_now_s() - t0 < 10);
    /* Chunked (no Content-Length): over the limit is dropped, then 413. */
    assert_int_equal(request("POST", url, NULL, 0, 3 << 20, NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 413);
    expect_error(&r, "INVALID_PARAMETER_VALUE");
    free(r.body);
    /* Chunked under the limit is gathered. */
    assert_int_equal(request("POST", url, NULL, 0, 1000, NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    j = json_of(&r);
    assert_int_equal(cJSON_GetObjectItem(j, "len")->valueint, 1000);
    cJSON_Delete(j);
    free(r.body);
    /* The server is still fine. */
    get_ok(f, "GET", "/hello", NULL, 200, &r);
    free(r.body);
}

static void test_query(void **state)
{
    fixture *f = *state;
    reply r;
    char url[512];
    snprintf(url, sizeof url, "%s/query?a=1&b=x%%20y&a=2&flag&a=3&e=%%26%%3D", f->base);
    assert_int_equal(request("GET", url, NULL, 0, 0, "X-Test-Header: hi", NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    cJSON *j = json_of(&r);
    cJSON *q = cJSON_GetObjectItem(j, "query");
    cJSON *a = cJSON_GetObjectItem(q, "a");
    assert_true(cJSON_IsArray(a));
    assert_int_equal(cJSON_GetArraySize(a), 3);
    assert_string_equal(cJSON_GetArrayItem(a, 0)->valuestring, "1");
    assert_string_equal(cJSON_GetArrayItem(a, 2)->valuestring, "3");
    assert_string_equal(cJSON_GetObjectItem(q, "b")->valuestring, "x y");
    assert_string_equal(cJSON_GetObjectItem(q, "flag")->valuestring, "");
    assert_string_equal(cJSON_GetObjectItem(q, "e")->valuestring, "&=");
    assert_string_equal(cJSON_GetObjectItem(j, "raw")->valuestring,
                        "a=1&b=x%20y&a=2&flag&a=3&e=%26%3D");
    assert_string_equal(cJSON_GetObjectItem(j, "path")->valuestring, "/query");
    assert_string_equal(cJSON_GetObjectItem(j, "header")->valuestring, "hi");
    cJSON_Delete(j);
    free(r.body);
    get_ok(f, "GET", "/query", NULL, 200, &r);
    j = json_of(&r);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "query")), 0);
    assert_string_equal(cJSON_GetObjectItem(j, "raw")->valuestring, "");
    cJSON_Delete(j);
    free(r.body);
}

static void test_stream_upload(void **state)
{
    fixture *f = *state;
    char *src = kt_path(f->dir, "src.bin");
    char *dst = kt_path(f->dir, "upload.bin");
    kt_random_file(src, (5u << 20) + 7, 3);
    FILE *in = fopen(src, "rb");
    char url[512];
    reply r;
    snprintf(url, sizeof url, "%s/upload/ok", f->base);
    assert_int_equal(request("PUT", url, NULL, 0, 0, NULL, in, &r), CURLE_OK);
    assert_int_equal(r.status, 201);
    cJSON *j = json_of(&r);
    assert_int_equal((long)cJSON_GetObjectItem(j, "bytes")->valuedouble, (5L << 20) + 7);
    cJSON_Delete(j);
    free(r.body);
    assert_true(kt_files_equal(src, dst));
    assert_int_equal(atomic_load(&f->ends), 1);
    /* A write that fails: abort is called, the rest dropped, 400 with the message. */
    snprintf(url, sizeof url, "%s/upload/fail", f->base);
    assert_int_equal(request("PUT", url, NULL, 0, 0, NULL, in, &r), CURLE_OK);
    assert_int_equal(r.status, 400);
    expect_error(&r, "INVALID_PARAMETER_VALUE");
    assert_non_null(strstr(r.body, "upload refused after"));
    free(r.body);
    assert_int_equal(atomic_load(&f->aborts), 1);
    /* begin can refuse with its own reply. */
    snprintf(url, sizeof url, "%s/upload/refuse", f->base);
    assert_int_equal(request("PUT", url, NULL, 0, 0, NULL, in, &r), CURLE_OK);
    assert_int_equal(r.status, 403);
    expect_error(&r, "PERMISSION_DENIED");
    free(r.body);
    /* Chunked uploads stream too (no limit on streamed routes). */
    snprintf(url, sizeof url, "%s/upload/ok", f->base);
    assert_int_equal(request("PUT", url, NULL, 0, 2 << 20, NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 201);
    free(r.body);
    fclose(in);
    free(src);
    free(dst);
}

static int abort_after_1mib(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                            curl_off_t ulnow)
{
    (void)ctx;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    return ulnow > (1 << 20);
}

static void test_client_gone_mid_upload(void **state)
{
    fixture *f = *state;
    char *src = kt_path(f->dir, "big.bin");
    kt_random_file(src, 64u << 20, 4);
    FILE *in = fopen(src, "rb");
    char url[512];
    snprintf(url, sizeof url, "%s/upload/ok", f->base);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READDATA, in);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)64 << 20);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, abort_after_1mib);
    assert_int_equal(curl_easy_perform(c), CURLE_ABORTED_BY_CALLBACK);
    curl_easy_cleanup(c);
    fclose(in);
    /* The server notices the closed connection and calls abort, not end. */
    double end = kt_now_s() + 5;
    while (atomic_load(&f->aborts) == 0 && kt_now_s() < end)
        kt_sleep_ms(10);
    assert_int_equal(atomic_load(&f->aborts), 1);
    assert_int_equal(atomic_load(&f->ends), 0);
    free(src);
}

static void test_file_reply(void **state)
{
    fixture *f = *state;
    char *p = kt_path(f->dir, "a.bin");
    kt_random_file(p, 300000, 9);
    reply r;
    get_ok(f, "GET", "/files/a.bin", NULL, 200, &r);
    assert_int_equal(r.len, 300000);
    assert_string_equal(r.content_type, "application/x-test");
    char *back = kt_path(f->dir, "back.bin");
    kt_write_file(back, r.body, r.len);
    assert_true(kt_files_equal(p, back));
    free(r.body);
    get_ok(f, "GET", "/files/missing.bin", NULL, 404, &r);
    expect_error(&r, "RESOURCE_DOES_NOT_EXIST");
    free(r.body);
    get_ok(f, "GET", "/files/", NULL, 400, &r); /* the directory itself */
    free(r.body);
    free(p);
    free(back);
}

typedef struct getter {
    const char *url;
    long status;
    double took;
} getter;

static void *get_thread(void *arg)
{
    getter *g = arg;
    reply r;
    double t0 = kt_now_s();
    if (request("GET", g->url, NULL, 0, 0, NULL, NULL, &r) == CURLE_OK)
        g->status = r.status;
    g->took = kt_now_s() - t0;
    free(r.body);
    return NULL;
}

static void test_concurrent(void **state)
{
    fixture *f = *state;
    char url[256];
    snprintf(url, sizeof url, "%s/slow", f->base);
    enum { N = 8 };
    pthread_t t[N];
    getter g[N];
    double t0 = kt_now_s();
    for (int i = 0; i < N; i++) {
        g[i] = (getter){url, 0, 0};
        pthread_create(&t[i], NULL, get_thread, &g[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(g[i].status, 200);
    }
    double took = kt_now_s() - t0;
    /* Four workers: several handlers ran at once, so 8 x 300 ms took well
     * under the 2.4 s of one at a time. */
    printf("8 slow requests on 4 workers: %.2f s, %d at once at most\n", took,
           atomic_load(&f->max_running));
    assert_true(atomic_load(&f->max_running) >= 2);
    assert_true(took < 2.0);
}

static void test_graceful_stop(void **state)
{
    fixture *f = *state;
    f->slow_ms = 800;
    char url[256];
    snprintf(url, sizeof url, "%s/slow", f->base);
    getter g = {url, 0, 0};
    pthread_t t;
    pthread_create(&t, NULL, get_thread, &g);
    while (atomic_load(&f->running) == 0)
        kt_sleep_ms(5);
    double t0 = kt_now_s();
    kiln_http_server_stop(f->server);
    double stop_took = kt_now_s() - t0;
    pthread_join(t, NULL);
    /* The request in flight was answered; stop waited for it. */
    assert_int_equal(g.status, 200);
    assert_true(stop_took > 0.3);
    assert_int_equal(kiln_http_server_port(f->server), 0);
    /* Nothing listens any more. */
    reply r;
    assert_int_not_equal(request("GET", url, NULL, 0, 0, NULL, NULL, &r), CURLE_OK);
    free(r.body);
    kiln_http_server_stop(f->server); /* twice is fine */
}

static void test_bind_and_options(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    kiln_http_options o;
    /* The port in use: a clear error naming it. */
    kiln_http_options_default(&o);
    o.port = kiln_http_server_port(f->server);
    kiln_http_server *s = kiln_http_server_new(&o, &err);
    assert_non_null(s);
    assert_int_equal(kiln_http_server_start(s, &err), KILN_EIO);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", o.port);
    assert_non_null(strstr(err.msg, want));
    kiln_http_server_free(s);
    /* Bound to 127.0.0.1 only: another loopback address is refused. */
    char url[128];
    reply r;
    snprintf(url, sizeof url, "http://127.0.0.2:%d/hello", kiln_http_server_port(f->server));
    assert_int_equal(request("GET", url, NULL, 0, 0, NULL, NULL, &r), CURLE_COULDNT_CONNECT);
    free(r.body);
    /* Bad options and routes. */
    kiln_http_options_default(&o);
    o.threads = 0;
    assert_null(kiln_http_server_new(&o, &err));
    assert_int_equal(err.code, KILN_EINVAL);
    kiln_http_options_default(&o);
    o.host = "some-host-name"; /* names are refused, never looked up */
    s = kiln_http_server_new(&o, &err);
    assert_int_equal(kiln_http_server_start(s, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "'some-host-name' is not an IP address"));
    kiln_http_route bad = {.method = "GET", .path = "nope", .handler = on_hello};
    assert_int_equal(kiln_http_server_add_route(s, &bad, &err), KILN_EINVAL);
    bad.path = "/x";
    bad.stream = &upload_stream;
    assert_int_equal(kiln_http_server_add_route(s, &bad, &err), KILN_EINVAL);
    kiln_http_server_free(s);
    /* A single worker thread serves too. */
    fixture one = {.dir = f->dir, .slow_ms = 10};
    start_server(&one, 1);
    reply r1;
    get_ok(&one, "GET", "/hello", NULL, 200, &r1);
    free(r1.body);
    kiln_http_server_free(one.server);
}

static void test_oversized_headers(void **state)
{
    fixture *f = *state;
    /* Headers over the connection's memory are refused by libmicrohttpd
     * itself; the request object made for them must still be freed (ASan). */
    size_t n = 200 * 1024;
    char *h = malloc(n + 32);
    strcpy(h, "X-Big: ");
    memset(h + 7, 'b', n);
    h[7 + n] = '\0';
    char url[256];
    snprintf(url, sizeof url, "%s/hello", f->base);
    reply r;
    request("GET", url, NULL, 0, 0, h, NULL, &r);
    assert_true(r.status == 431 || r.status == 413 || r.status == 0 || r.status == 400);
    free(r.body);
    free(h);
    get_ok(f, "GET", "/hello", NULL, 200, &r);
    free(r.body);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_and_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_upload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone_mid_upload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_graceful_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_and_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_headers, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
