/* tests/test_serve_support.h — what the kiln-serve tests share: a model
 * trained with the kiln CLI on a tiny Fashion-MNIST subset (B0 at 32x32,
 * one epoch), registered in a kiln-tracking started for the test; running
 * $KILN_SERVE_BIN on a free port (always stopped); HTTP calls with libcurl;
 * test images. Included by test_serve_*.c and test_predict*.c only. */
#ifndef KILN_TEST_SERVE_SUPPORT_H
#define KILN_TEST_SERVE_SUPPORT_H

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/fs.h"
#include "mlflow/mlflow.h"
#include "support/imgbuild.h"
#include "support/testutil.h"
#include "support/trackserver.h"

#define TS_UNUSED __attribute__((unused))

/* ---- a trained package ---- */

/* Train a package into root/<name> (3 images per class, 32x32, 1 epoch,
 * `seed`); with `uri`, the run is tracked there and its id returned
 * (malloc'ed). */
static TS_UNUSED char *ts_train(const char *root, const char *name, const char *uri, int seed)
{
    char *out = NULL;
    const char *src = getenv("KILN_SOURCE_DIR");
    assert_non_null(src);
    char *zip = kt_path(root, "fashion.zip"), *data = kt_path(root, "data");
    char *model = kt_path(root, name);
    if (!kiln_is_file(zip) &&
        kt_run_capture(&out, "%s/scripts/make-fashion-zip --out %s --per-class 3", src, zip) != 0)
        fail_msg("make-fashion-zip: %s", out);
    free(out);
    out = NULL;
    if (!kiln_is_dir(data) &&
        kt_run_capture(&out, "%s prepare --zip %s --out %s --size 32 --val 0.3 --test 0",
                       kt_kiln_bin(), zip, data) != 0)
        fail_msg("kiln prepare: %s", out);
    free(out);
    out = NULL;
    char mlflow[128] = "";
    if (uri)
        snprintf(mlflow, sizeof mlflow, "--mlflow %s --experiment serve-tests", uri);
    if (kt_run_capture(&out,
                       "%s train --data %s --out %s --epochs 1 --batch-size 8 --threads 2 "
                       "--seed %d %s",
                       kt_kiln_bin(), data, model, seed, mlflow) != 0)
        fail_msg("kiln train: %s", out);
    free(out);
    char *run_id = NULL;
    if (uri) {
        char *id_path = kt_path(model, "mlflow-run-id");
        size_t len = 0;
        kiln_err err = {0};
        kt_expect_ok(kiln_read_file(id_path, 0, &run_id, &len, &err), &err, "run id");
        run_id[strcspn(run_id, "\n")] = '\0';
        free(id_path);
    }
    free(zip);
    free(data);
    free(model);
    return run_id;
}

static TS_UNUSED kiln_mlflow_client *ts_client(const char *uri)
{
    kiln_mlflow_config cfg;
    kiln_err err = {0};
    kiln_mlflow_config_default(&cfg);
    cfg.max_retries = 0;
    snprintf(cfg.tracking_uri, sizeof cfg.tracking_uri, "%s", uri);
    return kt_expect_ptr(kiln_mlflow_client_new(&cfg, NULL, &err), &err, "mlflow client");
}

static TS_UNUSED void ts_stage(kiln_mlflow_client *c, const char *name, int version,
                               const char *stage)
{
    char text[16];
    kiln_err err = {0};
    snprintf(text, sizeof text, "%d", version);
    kiln_mlflow_model_version *mv = NULL;
    kt_expect_ok(kiln_mlflow_model_version_transition(c, name, text, stage, 1, &mv, &err), &err,
                 "transition");
    kiln_mlflow_model_version_free(mv);
}

/* Register `source` as a new version of `name` (created if needed);
 * returns the version number. With `stage`, move it there (archiving the
 * others). */
static TS_UNUSED int ts_register(kiln_mlflow_client *c, const char *name, const char *source,
                                 const char *run_id, const char *stage)
{
    kiln_err err = {0};
    kiln_mlflow_model_version *mv = NULL;
    kt_expect_ok(kiln_mlflow_registered_model_create(c, name, NULL, &err), &err, "create model");
    kt_expect_ok(kiln_mlflow_model_version_create(c, name, source, run_id, &mv, &err), &err,
                 "create version");
    int v = atoi(mv->version);
    kiln_mlflow_model_version_free(mv);
    if (stage) {
        char text[16];
        snprintf(text, sizeof text, "%d", v);
        ts_stage(c, name, v, stage);
    }
    return v;
}

/* ---- HTTP ---- */

typedef struct ts_buf {
    char *p;
    size_t len;
} ts_buf;

static TS_UNUSED size_t ts_collect(char *data, size_t size, size_t n, void *ctx)
{
    ts_buf *b = ctx;
    char *grown = realloc(b->p, b->len + size * n + 1);
    if (!grown)
        return 0;
    memcpy(grown + b->len, data, size * n);
    b->p = grown;
    b->len += size * n;
    b->p[b->len] = '\0';
    return size * n;
}

typedef struct ts_reply {
    long status;      /* 0: no answer */
    char *body;       /* malloc'ed, NUL-terminated ("" when none) */
    size_t len;
    char content_type[128];
} ts_reply;

static TS_UNUSED void ts_reply_free(ts_reply *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* One request; `content_type` NULL sends none (with a body, curl's default
 * is suppressed too). `file` non-NULL sends a multipart form with the
 * bytes as field `file` instead of `body`. */
static TS_UNUSED ts_reply ts_http(const char *method, const char *url, const char *content_type,
                                  const void *body, size_t len, const void *file,
                                  size_t file_len)
{
    ts_reply r = {0};
    ts_buf b = {0};
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    curl_mime *mime = NULL;
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ts_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    h = curl_slist_append(h, "Expect:");
    if (file) {
        mime = curl_mime_init(c);
        curl_mimepart *part = curl_mime_addpart(mime);
        curl_mime_name(part, "file");
        curl_mime_filename(part, "image.jpg");
        curl_mime_type(part, "image/jpeg");
        curl_mime_data(part, file, file_len);
        curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    } else if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        char line[160];
        if (content_type)
            snprintf(line, sizeof line, "Content-Type: %s", content_type);
        else
            snprintf(line, sizeof line, "Content-Type:");
        h = curl_slist_append(h, line);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (curl_easy_perform(c) == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        snprintf(r.content_type, sizeof r.content_type, "%s", ct ? ct : "");
    }
    curl_mime_free(mime);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    r.body = b.p ? b.p : strdup("");
    r.len = b.len;
    return r;
}

static TS_UNUSED ts_reply ts_get(const char *base, const char *path)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", base, path);
    return ts_http("GET", url, NULL, NULL, 0, NULL, 0);
}

/* The JSON of a reply, failing the test (with the body) when it is not
 * `status` or not JSON. Caller frees. */
static TS_UNUSED cJSON *ts_expect_json(const ts_reply *r, long status, const char *what)
{
    cJSON *j = cJSON_Parse(r->body);
    if (r->status != status || !j)
        fail_msg("%s: status %ld (wanted %ld), body: %s", what, r->status, status, r->body);
    return j;
}

/* An error reply: `status`, {"error": "...needle..."} */
static TS_UNUSED void ts_expect_error(ts_reply r, long status, const char *needle,
                                      const char *what)
{
    cJSON *j = ts_expect_json(&r, status, what);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (!cJSON_IsString(e) || !strstr(e->valuestring, needle))
        fail_msg("%s: wanted an error naming '%s', got %s", what, needle, r.body);
    if (strncmp(r.content_type, "application/json", 16) != 0)
        fail_msg("%s: Content-Type %s", what, r.content_type);
    cJSON_Delete(j);
    ts_reply_free(&r);
}

/* ---- kiln-serve ---- */

typedef struct ts_serve {
    pid_t pid;
    int port;
    char url[64];
    char *log;        /* stderr+stdout of the server */
} ts_serve;

/* Every server started and not yet stopped, so that a failed test (cmocka
 * longjmps out of it) still stops its servers: the group teardowns call
 * ts_serve_stop_all. A test process that dies takes its servers with it
 * (PR_SET_PDEATHSIG). */
#define TS_MAX_SERVERS 16
static pid_t ts_live[TS_MAX_SERVERS];

static TS_UNUSED void ts_live_set(pid_t old, pid_t new_pid)
{
    for (int i = 0; i < TS_MAX_SERVERS; i++)
        if (ts_live[i] == old) {
            ts_live[i] = new_pid;
            return;
        }
}

static TS_UNUSED void ts_serve_stop_all(void)
{
    for (int i = 0; i < TS_MAX_SERVERS; i++)
        if (ts_live[i] > 0) {
            kill(-ts_live[i], SIGKILL);
            waitpid(ts_live[i], NULL, 0);
            ts_live[i] = 0;
        }
}

static TS_UNUSED void ts_serve_print_log(const ts_serve *s)
{
    char *out = NULL;
    kt_run_capture(&out, "tail -n 40 '%s' 2>&1", s->log);
    fprintf(stderr, "---- %s ----\n%s\n----\n", s->log, out ? out : "");
    free(out);
}

static TS_UNUSED int ts_read_port(const char *log)
{
    FILE *f = fopen(log, "r");
    char line[1024];
    int port = 0;
    const char *key = "kiln-serve: listening on http://127.0.0.1:";
    while (f && !port && fgets(line, sizeof line, f)) {
        char *p = strstr(line, key);
        if (p)
            port = atoi(p + strlen(key));
    }
    if (f)
        fclose(f);
    return port;
}

/* Start kiln-serve with `args` (NULL-terminated, after --port 0) and
 * MLFLOW_TRACKING_URI = uri (may be NULL); waits for /healthz. 0 or -1. */
static TS_UNUSED int ts_serve_start(ts_serve *s, const char *dir, const char *uri,
                                    const char *const *args)
{
    const char *bin = getenv("KILN_SERVE_BIN");
    memset(s, 0, sizeof *s);
    s->log = kt_path(dir, "serve.log");
    if (!bin || access(bin, X_OK) != 0) {
        fprintf(stderr, "KILN_SERVE_BIN is not set or not executable\n");
        return -1;
    }
    /* A fresh log before the fork: never read a previous run's port. */
    unlink(s->log);
    const char *argv[48] = {bin, "--port", "0", "--threads", "2"};
    int n = 5;
    for (int i = 0; args && args[i] && n < 46; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        if (uri)
            setenv("MLFLOW_TRACKING_URI", uri, 1);
        setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0", 1);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    ts_live_set(0, s->pid);
    double end = kt_now_s() + 30;
    while (kt_now_s() < end) {
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            ts_live_set(s->pid, 0);
            s->pid = 0;
            fprintf(stderr, "kiln-serve exited before it listened\n");
            ts_serve_print_log(s);
            return -1;
        }
        if (!s->port && (s->port = ts_read_port(s->log)) > 0)
            snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->port);
        if (s->port) {
            ts_reply r = ts_get(s->url, "/healthz");
            long st = r.status;
            ts_reply_free(&r);
            if (st == 200)
                return 0;
        }
        kt_sleep_ms(20);
    }
    fprintf(stderr, "kiln-serve did not answer /healthz in 30 s\n");
    ts_serve_print_log(s);
    kill(-s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    ts_live_set(s->pid, 0);
    s->pid = 0;
    return -1;
}

/* SIGTERM, wait up to `grace_s`, then SIGKILL. Returns the wait status
 * (-1 when it had to be killed). Safe on a server not started. */
static TS_UNUSED int ts_serve_stop(ts_serve *s, double grace_s)
{
    int status = -1;
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        double end = kt_now_s() + grace_s;
        int done = 0;
        while (!done && kt_now_s() < end) {
            if (waitpid(s->pid, &status, WNOHANG) == s->pid)
                done = 1;
            else
                kt_sleep_ms(10);
        }
        if (!done) {
            kill(-s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            status = -1;
        }
        ts_live_set(s->pid, 0);
        s->pid = 0;
    }
    free(s->log);
    s->log = NULL;
    return status;
}

/* ---- images ---- */

/* A w x h JPEG of the test pattern (malloc'ed). */
static TS_UNUSED uint8_t *ts_jpeg(int w, int h, size_t *len)
{
    uint8_t *px = kt_img_pattern(w, h);
    uint8_t *jpg = kt_jpeg_encode(px, w, h, NULL, len);
    free(px);
    return jpg;
}

/* Base64 with OpenSSL's encoder (malloc'ed, NUL-terminated). */
#include <openssl/evp.h>
static TS_UNUSED char *ts_base64(const uint8_t *data, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    assert_non_null(out);
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

#endif
