/* tests/test_mlflow_client.c — lib/mlflow's HTTP behaviour against a small
 * scripted server built on lib/http (so this is lib/http's test too):
 * configuration, retries and their count, 4xx not retried, error messages,
 * auth headers, query encoding, timeouts, log-batch splitting, registry
 * polling, artifact URI checks. Round trips with kiln-tracking are in
 * test_mlflow_client_tracking.c, S3 artifacts in test_mlflow_client_s3.c. */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http.h"
#include "mlflow/mlflow.h"
#include "support/testutil.h"

typedef struct fixture fixture;
/* Answers one request; runs on a server thread under f->lock. */
typedef void (*script_fn)(fixture *f, kiln_http_request *req, const cJSON *body);

struct fixture {
    kiln_http_server *server;
    char uri[64];
    pthread_mutex_t lock;
    int requests;               /* every request seen */
    int calls[8];               /* per-script counters */
    char auth[512];             /* last Authorization header */
    char path[256];
    char method[16];
    cJSON *bodies;              /* every JSON body or query, in order */
    script_fn script;
    int sleep_ms;
};

static void on_any(kiln_http_request *req, void *ctx)
{
    fixture *f = ctx;
    if (f->sleep_ms)
        kt_sleep_ms(f->sleep_ms);
    size_t len = 0;
    const char *text = kiln_http_request_body(req, &len);
    cJSON *body = len ? cJSON_Parse(text) : cJSON_Duplicate(kiln_http_request_query(req), 1);
    pthread_mutex_lock(&f->lock);
    f->requests++;
    const char *auth = kiln_http_request_header(req, "Authorization");
    snprintf(f->auth, sizeof f->auth, "%s", auth ? auth : "");
    snprintf(f->path, sizeof f->path, "%s", kiln_http_request_path(req));
    snprintf(f->method, sizeof f->method, "%s", kiln_http_request_method(req));
    cJSON_AddItemToArray(f->bodies, body ? cJSON_Duplicate(body, 1) : cJSON_CreateNull());
    if (f->script)
        f->script(f, req, body);
    else
        kiln_http_reply_json(req, 200, cJSON_CreateObject(), NULL);
    pthread_mutex_unlock(&f->lock);
    cJSON_Delete(body);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    pthread_mutex_init(&f->lock, NULL);
    f->bodies = cJSON_CreateArray();
    kiln_http_options o;
    kiln_http_options_default(&o);
    o.max_body_bytes = 4 << 20;
    o.stop_grace_ms = 3000;
    kiln_err err = {0};
    f->server = kt_expect_ptr(kiln_http_server_new(&o, &err), &err, "server");
    kiln_http_route r = {.method = NULL, .path = "/", .prefix = 1, .handler = on_any, .ctx = f};
    kt_expect_ok(kiln_http_server_add_route(f->server, &r, &err), &err, "route");
    kt_expect_ok(kiln_http_server_start(f->server, &err), &err, "start");
    snprintf(f->uri, sizeof f->uri, "http://127.0.0.1:%d", kiln_http_server_port(f->server));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kiln_http_server_free(f->server);
    cJSON_Delete(f->bodies);
    pthread_mutex_destroy(&f->lock);
    free(f);
    return 0;
}

static kiln_mlflow_client *client_for(const char *uri, int retries)
{
    kiln_mlflow_config cfg;
    kiln_mlflow_config_default(&cfg);
    snprintf(cfg.tracking_uri, sizeof cfg.tracking_uri, "%s", uri);
    cfg.max_retries = retries;
    cfg.backoff_factor_s = 0.001;
    cfg.backoff_jitter_s = 0;
    cfg.timeout_s = 5;
    kiln_err err = {0};
    return kt_expect_ptr(kiln_mlflow_client_new(&cfg, NULL, &err), &err, "client");
}

static void reply_error(kiln_http_request *req, int status, const char *code, const char *msg)
{
    kiln_http_reply_error(req, status, code, "%s", msg);
}

/* ---------------- configuration ---------------- */

static void test_config(void **state)
{
    (void)state;
    kiln_mlflow_config cfg;
    kiln_err err = {0};
    kiln_mlflow_config_default(&cfg);
    /* MLflow's current defaults (environment_variables.py). */
    assert_int_equal(cfg.max_retries, 7);
    assert_true(cfg.backoff_factor_s == 2.0);
    assert_true(cfg.backoff_jitter_s == 1.0);
    assert_int_equal(cfg.timeout_s, 120);
    setenv("MLFLOW_TRACKING_URI", "https://mlflow.example:8443/prefix/", 1);
    setenv("MLFLOW_TRACKING_TOKEN", "tok", 1);
    setenv("MLFLOW_TRACKING_USERNAME", "alice", 1);
    setenv("MLFLOW_TRACKING_PASSWORD", "pw", 1);
    setenv("MLFLOW_TRACKING_INSECURE_TLS", "true", 1);
    setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", "/etc/ca.pem", 1);
    setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30", 1);
    setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3", 1);
    setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0.5", 1);
    setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0", 1);
    setenv("MLFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:9000", 1);
    assert_int_equal(kiln_mlflow_config_from_env(&cfg, &err), KILN_OK);
    assert_string_equal(cfg.tracking_uri, "https://mlflow.example:8443/prefix");
    assert_string_equal(cfg.token, "tok");
    assert_string_equal(cfg.username, "alice");
    assert_string_equal(cfg.password, "pw");
    assert_int_equal(cfg.insecure_tls, 1);
    assert_string_equal(cfg.server_cert_path, "/etc/ca.pem");
    assert_int_equal(cfg.timeout_s, 30);
    assert_int_equal(cfg.max_retries, 3);
    assert_true(cfg.backoff_factor_s == 0.5);
    assert_true(cfg.backoff_jitter_s == 0.0);
    assert_string_equal(cfg.s3.endpoint, "http://127.0.0.1:9000");
    /* Bad values name the variable. */
    setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "many", 1);
    kt_expect_fail(kiln_mlflow_config_from_env(&cfg, &err), &err, KILN_EINVAL,
                   "MLFLOW_HTTP_REQUEST_MAX_RETRIES");
    setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3", 1);
    setenv("MLFLOW_TRACKING_URI", "file:///tmp/mlruns", 1);
    kt_expect_fail(kiln_mlflow_config_from_env(&cfg, &err), &err, KILN_EINVAL,
                   "MLFLOW_TRACKING_URI");
    setenv("MLFLOW_TRACKING_INSECURE_TLS", "perhaps", 1);
    setenv("MLFLOW_TRACKING_URI", "http://h", 1);
    kt_expect_fail(kiln_mlflow_config_from_env(&cfg, &err), &err, KILN_EINVAL,
                   "MLFLOW_TRACKING_INSECURE_TLS");
    const char *vars[] = {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN",
                          "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                          "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH",
                          "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                          "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                          "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "MLFLOW_S3_ENDPOINT_URL"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    /* Setters, as flags use them. */
    kiln_mlflow_config_default(&cfg);
    assert_int_equal(kiln_mlflow_config_set(&cfg, "backoff-factor", "0.01", &err), KILN_OK);
    assert_true(cfg.backoff_factor_s == 0.01);
    kt_expect_fail(kiln_mlflow_config_set(&cfg, "colour", "red", &err), &err, KILN_EINVAL,
                   "colour");
    kt_expect_fail(kiln_mlflow_config_set(&cfg, "timeout", "0", &err), &err, KILN_EINVAL,
                   "--timeout");
    /* No tracking URI: a clear error, not a default. */
    assert_null(kiln_mlflow_client_new(&cfg, NULL, &err));
    kt_expect_fail(err.code, &err, KILN_EINVAL, "MLFLOW_TRACKING_URI");
}

/* ---------------- retries and errors ---------------- */

/* A port nothing listens on. */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_server_down(void **state)
{
    (void)state;
    char uri[64];
    snprintf(uri, sizeof uri, "http://127.0.0.1:%d", dead_port());
    kiln_mlflow_client *c = client_for(uri, 3);
    kiln_mlflow_run *run = NULL;
    kiln_err err = {0};
    double t0 = kt_now_s();
    int rc = kiln_mlflow_run_get(c, "abc", &run, &err);
    kt_expect_fail(rc, &err, KILN_EIO, "cannot reach");
    assert_non_null(strstr(err.msg, "after 4 attempts"));
    assert_non_null(strstr(err.msg, "MLflow GET /api/2.0/mlflow/runs/get"));
    assert_non_null(strstr(err.msg, uri));
    kiln_mlflow_stats st;
    kiln_mlflow_client_stats(c, &st);
    assert_int_equal(st.requests, 4);
    assert_int_equal(st.retries, 3);
    assert_true(kt_now_s() - t0 < 2.0);
    assert_null(run);
    kiln_mlflow_client_free(c);
}

static void script_not_found(fixture *f, kiln_http_request *req, const cJSON *body)
{
    (void)f;
    (void)body;
    reply_error(req, 404, "RESOURCE_DOES_NOT_EXIST", "Run with id=abc not found");
}

static void script_bad_param(fixture *f, kiln_http_request *req, const cJSON *body)
{
    (void)f;
    (void)body;
    reply_error(req, 400, "INVALID_PARAMETER_VALUE", "Missing value for required parameter");
}

static void test_4xx_not_retried(void **state)
{
    fixture *f = *state;
    kiln_mlflow_client *c = client_for(f->uri, 5);
    kiln_mlflow_run *run = NULL;
    kiln_err err = {0};
    f->script = script_not_found;
    kt_expect_fail(kiln_mlflow_run_get(c, "abc", &run, &err), &err, KILN_ENOTFOUND,
                   "MLflow GET /api/2.0/mlflow/runs/get: RESOURCE_DOES_NOT_EXIST (404): Run with "
                   "id=abc not found");
    assert_int_equal(f->requests, 1);
    f->script = script_bad_param;
    kt_expect_fail(kiln_mlflow_run_update(c, "abc", KILN_MLFLOW_FINISHED, 0, &err), &err,
                   KILN_EINVAL,
                   "MLflow POST /api/2.0/mlflow/runs/update: INVALID_PARAMETER_VALUE (400)");
    assert_int_equal(f->requests, 2);
    kiln_mlflow_stats st;
    kiln_mlflow_client_stats(c, &st);
    assert_int_equal(st.retries, 0);
    kiln_mlflow_client_free(c);
}

/* 503, 502, then the run. */
static void script_flaky(fixture *f, kiln_http_request *req, const cJSON *body)
{
    (void)body;
    int n = f->calls[0]++;
    if (n == 0) {
        reply_error(req, 503, "TEMPORARILY_UNAVAILABLE", "busy");
        return;
    }
    if (n == 1) {
        kiln_http_reply_data(req, 502, "text/html", "<html>Bad Gateway</html>", 24, NULL);
        return;
    }
    cJSON *o = cJSON_Parse("{\"run\": {\"info\": {\"run_id\": \"abc\", \"experiment_id\": \"0\","
                           "\"status\": \"RUNNING\", \"start_time\": \"1700000000123\"},"
                           "\"data\": {\"metrics\": [{\"key\": \"loss\", \"value\": \"NaN\","
                           "\"timestamp\": 5, \"step\": \"7\"}], \"params\": [{\"key\": \"lr\","
                           "\"value\": \"0.1\"}]}}}");
    kiln_http_reply_json(req, 200, o, NULL);
}

static void test_503_then_success(void **state)
{
    fixture *f = *state;
    kiln_mlflow_client *c = client_for(f->uri, 3);
    kiln_mlflow_run *run = NULL;
    kiln_err err = {0};
    f->script = script_flaky;
    assert_int_equal(kiln_mlflow_run_get(c, "abc", &run, &err), KILN_OK);
    assert_int_equal(f->requests, 3);
    kiln_mlflow_stats st;
    kiln_mlflow_client_stats(c, &st);
    assert_int_equal(st.requests, 3);
    assert_int_equal(st.retries, 2);
    assert_string_equal(run->info.run_id, "abc");
    assert_int_equal(run->info.start_time_ms, 1700000000123LL);
    assert_string_equal(run->info.artifact_uri, ""); /* absent fields are "" */
    assert_int_equal(run->n_metrics, 1);
    assert_true(isnan(run->metrics[0].value));
    assert_int_equal(run->metrics[0].step, 7);
    assert_string_equal(kiln_mlflow_run_param(run, "lr"), "0.1");
    assert_null(kiln_mlflow_run_param(run, "nope"));
    kiln_mlflow_run_free(run);
    kiln_mlflow_client_free(c);
}

static void script_always_503(fixture *f, kiln_http_request *req, const cJSON *body)
{
    (void)f;
    (void)body;
    reply_error(req, 503, "TEMPORARILY_UNAVAILABLE", "database is locked");
}

static void script_html_500(fixture *f, kiln_http_request *req, const cJSON *body)
{
    (void)f;
    (void)body;
    const char *page = "<html>\n<body>Internal Server Error</body></html>";
    kiln_http_reply_data(req, 500, "text/html", page, strlen(page), NULL);
}

static void test_retries_run_out(void **state)
{
    fixture *f = *state;
    kiln_mlflow_client *c = client_for(f->uri, 2);
    kiln_err err = {0};
    f->script = script_always_503;
    kt_expect_fail(kiln_mlflow_log_param(c, "abc", "k", "v", &err), &err, KILN_EIO,
                   "MLflow POST /api/2.0/mlflow/runs/log-parameter: TEMPORARILY_UNAVAILABLE (503): "
                   "database is locked");
    assert_int_equal(f->requests, 3);
    f->script = script_html_500;
    kt_expect_fail(kiln_mlflow_log_param(c, "abc", "k", "v", &err), &err, KILN_EIO,
                   "HTTP 500: <html> <body>Internal Server Error");
    assert_int_equal(f->requests, 6);
    kiln_mlflow_client_free(c);
}

static void test_timeout(void **state)
{
    fixture *f = *state;
    kiln_mlflow_config cfg;
    kiln_mlflow_config_default(&cfg);
    snprintf(cfg.tracking_uri, sizeof cfg.tracking_uri, "%s", f->uri);
    cfg.timeout_s = 1;
    cfg.max_retries = 1;
    cfg.backoff_factor_s = 0;
    cfg.backoff_jitter_s = 0;
    kiln_err err = {0};
    kiln_mlflow_client *c = kt_expect_ptr(kiln_mlflow_client_new(&cfg, NULL, &err), &err, "client");
    /* The server answers after 2.5 s; 1 s of silence is a timeout, retried once. */
    f->sleep_ms = 2500;
    double t0 = kt_now_s();
    kt_expect_fail(kiln_mlflow_run_set_tag(c, "abc", "k", "v", &err), &err, KILN_EIO,
                   "after 2 attempts");
    double took = kt_now_s() - t0;
    printf("two timed-out attempts took %.2f s\n", took);
    assert_true(took >= 1.5 && took < 6.0);
    kiln_mlflow_client_free(c);
}

/* ---------------- what goes on the wire ---------------- */

static void test_auth_headers(void **state)
{
    fixture *f = *state;
    kiln_mlflow_config cfg;
    kiln_err err = {0};
    cJSON *resp = NULL;
    struct {
        const char *user, *pass, *token, *want;
    } cases[] = {
        {"", "", "s3cret-token", "Bearer s3cret-token"},
        {"alice", "pa:ss", "", "Basic YWxpY2U6cGE6c3M="},  /* base64("alice:pa:ss") */
        {"alice", "pa:ss", "tok", "Basic YWxpY2U6cGE6c3M="}, /* Basic wins, as in MLflow */
        {"", "", "", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kiln_mlflow_config_default(&cfg);
        snprintf(cfg.tracking_uri, sizeof cfg.tracking_uri, "%s", f->uri);
        snprintf(cfg.username, sizeof cfg.username, "%s", cases[i].user);
        snprintf(cfg.password, sizeof cfg.password, "%s", cases[i].pass);
        snprintf(cfg.token, sizeof cfg.token, "%s", cases[i].token);
        kiln_mlflow_client *c =
            kt_expect_ptr(kiln_mlflow_client_new(&cfg, NULL, &err), &err, "client");
        kt_expect_ok(
            kiln_mlflow_call(c, "GET", "/api/2.0/mlflow/experiments/search", NULL, &resp, &err),
            &err, "search");
        cJSON_Delete(resp);
        assert_string_equal(f->auth, cases[i].want);
        kiln_mlflow_client_free(c);
    }
}

static void test_query_encoding(void **state)
{
    fixture *f = *state;
    kiln_mlflow_client *c = client_for(f->uri, 0);
    kiln_err err = {0};
    cJSON *req = cJSON_Parse("{\"filter\": \"name = 'a b&c=d'\", \"stages\": [\"Staging\", "
                             "\"Production\"], \"max_results\": 5, \"big\": 1700000000123,"
                             "\"flag\": true, \"skip\": null}");
    cJSON *resp = NULL;
    assert_int_equal(kiln_mlflow_call(c, "GET", "/api/2.0/mlflow/x", req, &resp, &err), KILN_OK);
    cJSON_Delete(resp);
    cJSON_Delete(req);
    const cJSON *seen = cJSON_GetArrayItem(f->bodies, 0);
    assert_string_equal(cJSON_GetObjectItem(seen, "filter")->valuestring, "name = 'a b&c=d'");
    const cJSON *stages = cJSON_GetObjectItem(seen, "stages");
    assert_int_equal(cJSON_GetArraySize(stages), 2);
    assert_string_equal(cJSON_GetArrayItem(stages, 1)->valuestring, "Production");
    assert_string_equal(cJSON_GetObjectItem(seen, "max_results")->valuestring, "5");
    assert_string_equal(cJSON_GetObjectItem(seen, "big")->valuestring, "1700000000123");
    assert_string_equal(cJSON_GetObjectItem(seen, "flag")->valuestring, "true");
    assert_null(cJSON_GetObjectItem(seen, "skip"));
    assert_string_equal(f->method, "GET");
    /* DELETE carries a JSON body, as MLflow's client sends it. */
    assert_int_equal(kiln_mlflow_alias_delete(c, "m", "champion", &err), KILN_OK);
    assert_string_equal(f->method, "DELETE");
    assert_string_equal(f->path, "/api/2.0/mlflow/registered-models/alias");
    seen = cJSON_GetArrayItem(f->bodies, 1);
    assert_string_equal(cJSON_GetObjectItem(seen, "alias")->valuestring, "champion");
    kiln_mlflow_client_free(c);
}

static void script_batch(fixture *f, kiln_http_request *req, const cJSON *body)
{
    size_t len = 0;
    kiln_http_request_body(req, &len);
    int nm = cJSON_GetArraySize(cJSON_GetObjectItem(body, "metrics"));
    int np = cJSON_GetArraySize(cJSON_GetObjectItem(body, "params"));
    int nt = cJSON_GetArraySize(cJSON_GetObjectItem(body, "tags"));
    /* MLflow's limits, checked here as MLflow's server checks them. */
    if (nm > 1000 || np > 100 || nt > 100 || nm + np + nt > 1000 || len >= 1000000) {
        reply_error(req, 400, "INVALID_PARAMETER_VALUE", "batch over the limits");
        return;
    }
    f->calls[0] += nm;
    f->calls[1] += np;
    f->calls[2] += nt;
    f->calls[3]++;
    kiln_http_reply_json(req, 200, cJSON_CreateObject(), NULL);
}

static void test_log_batch_split(void **state)
{
    fixture *f = *state;
    kiln_mlflow_client *c = client_for(f->uri, 0);
    kiln_err err = {0};
    enum { NM = 2500, NP = 250, NT = 150 };
    kiln_mlflow_metric *m = calloc(NM, sizeof *m);
    kiln_mlflow_kv *p = calloc(NP, sizeof *p), *t = calloc(NT, sizeof *t);
    char (*names)[32] = calloc(NM + NP + NT, sizeof *names);
    char *long_value = malloc(6001);
    memset(long_value, 'v', 6000);
    long_value[6000] = '\0';
    for (int i = 0; i < NM; i++) {
        snprintf(names[i], 32, "m%d", i % 7);
        m[i] = (kiln_mlflow_metric){names[i], i * 0.5, 1700000000000 + i, i};
    }
    m[3].value = NAN;
    m[4].value = INFINITY;
    for (int i = 0; i < NP; i++) {
        snprintf(names[NM + i], 32, "p%d", i);
        p[i] = (kiln_mlflow_kv){names[NM + i], long_value}; /* 250 x 6000 bytes */
    }
    for (int i = 0; i < NT; i++) {
        snprintf(names[NM + NP + i], 32, "t%d", i);
        t[i] = (kiln_mlflow_kv){names[NM + NP + i], "tag \"value\"\n"};
    }
    f->script = script_batch;
    size_t calls = 0;
    assert_int_equal(kiln_mlflow_log_batch(c, "run1", m, NM, p, NP, t, NT, &calls, &err),
                     KILN_OK);
    /* Every entity arrived once, in calls the server accepted. */
    assert_int_equal(f->calls[0], NM);
    assert_int_equal(f->calls[1], NP);
    assert_int_equal(f->calls[2], NT);
    assert_int_equal((int)calls, f->calls[3]);
    assert_int_equal(f->requests, f->calls[3]);
    printf("2500 metrics, 250 x 6 kB params, 150 tags: %zu log-batch calls\n", calls);
    /* 250 params need 3 calls (100 per call); the 2500 metrics fit beside them. */
    assert_int_equal(calls, 3);
    /* NaN and Inf went as MLflow spells them. */
    const cJSON *first = cJSON_GetArrayItem(f->bodies, 0);
    const cJSON *ms = cJSON_GetObjectItem(first, "metrics");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(ms, 3), "value")->valuestring,
                        "NaN");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(ms, 4), "value")->valuestring,
                        "Infinity");
    assert_string_equal(cJSON_GetObjectItem(first, "run_id")->valuestring, "run1");
    /* 100 params of 6 kB + 100 tags of 8 kB fit MLflow's counts but not its
     * 1 MB: split by size. */
    char *tag_value = malloc(8001);
    memset(tag_value, 't', 8000);
    tag_value[8000] = '\0';
    for (int i = 0; i < 100; i++)
        t[i].value = tag_value;
    f->calls[3] = 0;
    assert_int_equal(kiln_mlflow_log_batch(c, "run1", NULL, 0, p, 100, t, 100, &calls, &err),
                     KILN_OK);
    assert_int_equal(calls, 2);
    assert_int_equal(f->calls[3], 2);
    free(tag_value);
    /* Nothing to log: no call. */
    assert_int_equal(kiln_mlflow_log_batch(c, "run1", NULL, 0, NULL, 0, NULL, 0, &calls, &err),
                     KILN_OK);
    assert_int_equal(calls, 0);
    free(m);
    free(p);
    free(t);
    free(names);
    free(long_value);
    kiln_mlflow_client_free(c);
}

/* ---------------- registry polling, experiments ---------------- */

static void reply_version(kiln_http_request *req, const char *status, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *mv = cJSON_AddObjectToObject(o, "model_version");
    cJSON_AddStringToObject(mv, "name", "m");
    cJSON_AddStringToObject(mv, "version", "3");
    cJSON_AddStringToObject(mv, "status", status);
    cJSON_AddStringToObject(mv, "status_message", msg);
    cJSON *aliases = cJSON_AddArrayToObject(mv, "aliases");
    cJSON_AddItemToArray(aliases, cJSON_CreateString("champion"));
    kiln_http_reply_json(req, 200, o, NULL);
}

static void script_pending_then_ready(fixture *f, kiln_http_request *req, const cJSON *body)
{
    (void)body;
    reply_version(req, f->calls[0]++ < 2 ? "PENDING_REGISTRATION" : "READY", "");
}

static void script_failed_registration(fixture *f, kiln_http_request *req, const cJSON *body)
{
    (void)f;
    (void)body;
    reply_version(req, "FAILED_REGISTRATION", "source is not readable");
}

static void script_pending(fixture *f, kiln_http_request *req, const cJSON *body)
{
    (void)f;
    (void)body;
    reply_version(req, "PENDING_REGISTRATION", "");
}

static void test_wait_ready(void **state)
{
    fixture *f = *state;
    kiln_mlflow_client *c = client_for(f->uri, 0);
    kiln_err err = {0};
    kiln_mlflow_model_version *mv = NULL;
    f->script = script_pending_then_ready;
    assert_int_equal(kiln_mlflow_model_version_wait_ready(c, "m", "3", 5000, 10, &mv, &err),
                     KILN_OK);
    assert_int_equal(f->requests, 3);
    assert_string_equal(mv->status, "READY");
    assert_int_equal(mv->n_aliases, 1);
    assert_string_equal(mv->aliases[0], "champion");
    assert_string_equal(f->path, "/api/2.0/mlflow/model-versions/get");
    kiln_mlflow_model_version_free(mv);
    f->script = script_failed_registration;
    kt_expect_fail(kiln_mlflow_model_version_wait_ready(c, "m", "3", 5000, 10, NULL, &err), &err,
                   KILN_EIO, "source is not readable");
    f->script = script_pending;
    double t0 = kt_now_s();
    kt_expect_fail(kiln_mlflow_model_version_wait_ready(c, "m", "3", 200, 20, NULL, &err), &err,
                   KILN_ECANCELED, "still not READY after 200 ms");
    assert_true(kt_now_s() - t0 < 2.0);
    kiln_mlflow_client_free(c);
}

static void script_deleted_experiment(fixture *f, kiln_http_request *req, const cJSON *body)
{
    (void)f;
    (void)body;
    if (strstr(kiln_http_request_path(req), "create")) {
        reply_error(req, 400, "RESOURCE_ALREADY_EXISTS", "Experiment 'old' already exists.");
        return;
    }
    cJSON *o = cJSON_Parse("{\"experiment\": {\"experiment_id\": \"4\", \"name\": \"old\","
                           "\"lifecycle_stage\": \"deleted\"}}");
    kiln_http_reply_json(req, 200, o, NULL);
}

static void test_deleted_experiment(void **state)
{
    fixture *f = *state;
    kiln_mlflow_client *c = client_for(f->uri, 0);
    kiln_err err = {0};
    char *id = NULL;
    f->script = script_deleted_experiment;
    kt_expect_fail(kiln_mlflow_experiment_create(c, "old", NULL, &id, &err), &err, KILN_EINVAL,
                   "is deleted");
    kt_expect_fail(kiln_mlflow_experiment_get_or_create(c, "old", &id, &err), &err, KILN_EINVAL,
                   "restore it");
    assert_null(id);
    kiln_mlflow_client_free(c);
}

static void test_artifact_uris(void **state)
{
    fixture *f = *state;
    kiln_mlflow_client *c = client_for(f->uri, 0);
    kiln_err err = {0};
    kt_expect_fail(kiln_mlflow_artifact_upload_file(c, "gs://bucket/x", "/etc/hostname", "a", &err),
                   &err, KILN_EUNSUPPORTED, "gs://bucket/x");
    kt_expect_fail(kiln_mlflow_artifact_upload_file(c, "mlflow-artifacts:/1/r/artifacts",
                                                    "/etc/hostname", "../escape", &err),
                   &err, KILN_EUNSAFE, "../escape");
    kt_expect_fail(kiln_mlflow_artifact_download_file(c, "mlflow-artifacts:/1/r/artifacts", "a//b",
                                                      "/tmp/x", &err),
                   &err, KILN_EUNSAFE, "a//b");
    kt_expect_fail(kiln_mlflow_artifact_upload_file(c, "mlflow-artifacts:/1/r/artifacts",
                                                    "/nonexistent/file", "a", &err),
                   &err, KILN_ENOTFOUND, "/nonexistent/file");
    assert_int_equal(f->requests, 0);
    /* The proxy path is the URI's path, segments percent-encoded; a host in
     * the URI is dropped (the tracking server serves the proxy). */
    assert_int_equal(kiln_mlflow_artifact_upload_file(c, "mlflow-artifacts://h:5000/1/r/artifacts/",
                                                      "/etc/hostname", "dir/a b#c.txt", &err),
                     KILN_OK);
    assert_string_equal(f->method, "PUT");
    assert_string_equal(f->path, "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/dir/a b#c.txt");
    kiln_mlflow_client_free(c);
}

/* Each artifact request fails once with 503, then succeeds. */
static void script_artifact_flaky(fixture *f, kiln_http_request *req, const cJSON *body)
{
    (void)body;
    size_t len = 0;
    const char *data = kiln_http_request_body(req, &len);
    if (f->calls[0]++ % 2 == 0) {
        reply_error(req, 503, "TEMPORARILY_UNAVAILABLE", "try again");
        return;
    }
    if (!strcmp(kiln_http_request_method(req), "PUT")) {
        f->calls[1] = (int)len;
        f->calls[2] = len > 0 && data[0] == 'A' && data[len - 1] == 'Z';
        kiln_http_reply_json(req, 200, cJSON_CreateObject(), NULL);
        return;
    }
    kiln_http_reply_data(req, 200, NULL, "the artifact's bytes", 20, NULL);
}

static void test_artifact_retries(void **state)
{
    fixture *f = *state;
    kiln_mlflow_client *c = client_for(f->uri, 2);
    kiln_err err = {0};
    char *dir = kt_mkdtemp();
    char *src = kt_path(dir, "src.bin"), *dst = kt_path(dir, "dst.bin");
    char *data = malloc(300000);
    memset(data, 'm', 300000);
    data[0] = 'A';
    data[299999] = 'Z';
    kt_write_file(src, data, 300000);
    f->script = script_artifact_flaky;
    /* The retried PUT sends the whole file again, from its start. */
    assert_int_equal(kiln_mlflow_artifact_upload_file(c, "mlflow-artifacts:/1/r/artifacts", src,
                                                      "w.bin", &err),
                     KILN_OK);
    assert_int_equal(f->requests, 2);
    assert_int_equal(f->calls[1], 300000);
    assert_true(f->calls[2]);
    /* The retried GET does not keep the failed attempt's error body. */
    assert_int_equal(kiln_mlflow_artifact_download_file(c, "mlflow-artifacts:/1/r/artifacts",
                                                        "w.bin", dst, &err),
                     KILN_OK);
    assert_int_equal(f->requests, 4);
    char *got = NULL;
    assert_int_equal(kt_run_capture(&got, "cat '%s'", dst), 0);
    assert_string_equal(got, "the artifact's bytes");
    free(got);
    free(data);
    free(src);
    free(dst);
    kt_rmtree_free(dir);
    kiln_mlflow_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_server_down),
        cmocka_unit_test_setup_teardown(test_4xx_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_503_then_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_run_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_encoding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_batch_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_experiment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_artifact_uris, setup, teardown),
        cmocka_unit_test_setup_teardown(test_artifact_retries, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
