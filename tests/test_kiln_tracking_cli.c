/* tests/test_kiln_tracking_cli.c — the kiln-tracking program itself: flags
 * and their errors, the "listening on" line, clean stops on SIGTERM and
 * SIGINT, and its HTTP surface seen with a plain HTTP client: /health,
 * /version, body limit (413), malformed JSON (400), GET parameters, the
 * artifact proxy's PUT / GET / DELETE and list, the UI, and the UI behind
 * --static-prefix. */
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "support/testutil.h"
#include "support/trackserver.h"

typedef struct reply {
    long status;
    char *body;
    size_t len;
    char type[128];
} reply;

static const char *bin(void)
{
    const char *b = getenv("KILN_TRACKING_BIN");
    if (!b || !*b) {
        printf("SKIPPED: KILN_TRACKING_BIN is not set (kiln-tracking not built)\n");
        skip();
    }
    return b;
}

static size_t collect(char *data, size_t size, size_t n, void *ctx)
{
    reply *r = ctx;
    r->body = realloc(r->body, r->len + size * n + 1);
    memcpy(r->body + r->len, data, size * n);
    r->len += size * n;
    r->body[r->len] = '\0';
    return size * n;
}

static void http(const char *method, const char *url, const char *body, size_t len,
                 reply *out)
{
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        fail_msg("%s %s: %s", method, url, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(out->type, sizeof out->type, "%s", ct ? ct : "");
    curl_easy_cleanup(c);
}

static void expect_error(const reply *r, long status, const char *code)
{
    cJSON *j = cJSON_Parse(r->body ? r->body : "");
    const cJSON *c = cJSON_GetObjectItem(j, "error_code");
    if (r->status != status || !cJSON_IsString(c) || strcmp(c->valuestring, code) != 0)
        fail_msg("want %ld %s, got %ld %s", status, code, r->status, r->body ? r->body : "");
    cJSON_Delete(j);
}

/* ---------------- flags ---------------- */

static void test_flags(void **state)
{
    (void)state;
    const char *b = bin();
    char *out = NULL;
    struct {
        const char *args, *needle;
        int status;
    } cases[] = {
        {"--help", "--backend-store-uri", 0},
        {"--port abc", "--port 'abc' is not a whole number", 2},
        {"--port 70000", "--port '70000'", 2},
        {"--workers 0", "--workers '0'", 2},
        {"--max-body-bytes 12Q", "--max-body-bytes '12Q'", 2},
        {"--frobnicate", "unknown option '--frobnicate'", 2},
        {"--port", "--port needs a value", 2},
        {"extra", "unexpected argument 'extra'", 2},
        {"--backend-store-uri postgresql://db/mlflow", "kiln-tracking keeps its store in SQLite",
         2},
        {"--backend-store-uri sqlite://", "in-memory", 2},
        {"--artifacts-destination s3://b/p", "--default-artifact-root s3://", 2},
        {"--log-format xml", "xml", 2},
        {"--static-prefix mlflow", "--static-prefix 'mlflow' must start with '/'", 2},
        {"--static-prefix /mlflow/", "--static-prefix '/mlflow/' must not end with '/'", 2},
        {"--static-prefix /", "--static-prefix '/' is no prefix", 2},
        {"--static-prefix '/ml flow'", "--static-prefix '/ml flow': ' ' is not allowed", 2},
        {"--static-prefix '/a\"b'", "'\"' is not allowed", 2},
        {"--static-prefix '/<b>'", "--static-prefix '/<b>': '<' is not allowed", 2},
        {"--static-prefix \"/it's\"", "''' is not allowed", 2},
        {"--static-prefix '/a&b'", "'&' is not allowed", 2},
        {"--static-prefix /models", "--static-prefix '/models': its first segment", 2},
        {"--static-prefix", "--static-prefix needs a value", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st = kt_run_capture(&out, "'%s' %s", b, cases[i].args);
        if (st != cases[i].status || !strstr(out, cases[i].needle))
            fail_msg("kiln-tracking %s: status %d, output: %s", cases[i].args, st, out);
        free(out);
    }
}

/* ---------------- a server of our own, to signal ---------------- */

typedef struct proc {
    pid_t pid;
    char *dir;
    char *log;
    int port;
} proc;

static void start(proc *p, const char *extra)
{
    memset(p, 0, sizeof *p);
    p->dir = kt_mkdtemp();
    p->log = kt_path(p->dir, "log");
    char *cmd = NULL;
    assert_true(asprintf(&cmd, "exec '%s' --port 0 --backend-store-uri 'sqlite:///%s/db/s.db' "
                         "--artifacts-destination '%s/art' --log-level debug %s", bin(), p->dir,
                         p->dir, extra) > 0);
    p->pid = fork();
    if (p->pid == 0) {
        int fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    free(cmd);
    for (int i = 0; i < 3000 && !p->port; i++) {
        char *text = NULL;
        kt_run_capture(&text, "cat '%s'", p->log);
        const char *at = strstr(text, "kiln-tracking: listening on http://127.0.0.1:");
        if (at && strchr(at, '\n'))
            p->port = atoi(at + strlen("kiln-tracking: listening on http://127.0.0.1:"));
        free(text);
        kt_sleep_ms(10);
    }
    if (!p->port)
        fail_msg("kiln-tracking did not say it listens");
}

/* Signal it; returns its exit status, the log in *log_text. */
static int stop(proc *p, int sig, char **log_text)
{
    int st = 0;
    kill(p->pid, sig);
    waitpid(p->pid, &st, 0);
    kt_run_capture(log_text, "cat '%s'", p->log);
    kt_rmtree_free(p->dir);
    free(p->log);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_signals_and_limits(void **state)
{
    (void)state;
    proc p;
    reply r;
    char url[256], *log = NULL;
    start(&p, "--max-body-bytes 1K");
    snprintf(url, sizeof url, "http://127.0.0.1:%d/health", p.port);
    http("GET", url, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "OK");
    free(r.body);
    /* The body limit from the flag, answered with MLflow's error shape. */
    char big[2048];
    memset(big, ' ', sizeof big);
    big[0] = '{';
    big[sizeof big - 1] = '}';
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/2.0/mlflow/experiments/create", p.port);
    http("POST", url, big, sizeof big, &r);
    expect_error(&r, 413, "INVALID_PARAMETER_VALUE");
    assert_string_equal(r.type, "application/json");
    free(r.body);
    int st = stop(&p, SIGTERM, &log);
    assert_int_equal(st, 0);
    assert_non_null(strstr(log, "stopping"));
    /* The request log at debug level. */
    assert_non_null(strstr(log, "http: POST /api/2.0/mlflow/experiments/create 413"));
    free(log);
    start(&p, "");
    assert_int_equal(stop(&p, SIGINT, &log), 0);
    free(log);
}

/* ---------------- the HTTP surface ---------------- */

static void test_routes(void **state)
{
    (void)state;
    bin();
    kt_trackserver s;
    if (kt_trackserver_start(&s) != 0)
        fail_msg("cannot start kiln-tracking");
    char url[512];
    reply r;
    snprintf(url, sizeof url, "%s/version", s.uri);
    http("GET", url, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_true(r.len > 0);
    free(r.body);
    /* Malformed JSON and a JSON that is not an object. */
    snprintf(url, sizeof url, "%s/api/2.0/mlflow/experiments/create", s.uri);
    http("POST", url, "{\"name\": ", 9, &r);
    expect_error(&r, 400, "MALFORMED_REQUEST");
    free(r.body);
    http("POST", url, "[1, 2]", 6, &r);
    expect_error(&r, 400, "MALFORMED_REQUEST");
    free(r.body);
    http("POST", url, "{\"name\": \"cli\"}", 15, &r);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    char *exp = strdup(cJSON_GetObjectItem(j, "experiment_id")->valuestring);
    cJSON_Delete(j);
    free(r.body);
    /* GET parameters become the request; /ajax-api is the same API. */
    snprintf(url, sizeof url, "%s/ajax-api/2.0/mlflow/experiments/get-by-name?experiment_name=cli",
             s.uri);
    http("GET", url, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, exp));
    free(r.body);
    /* The artifact proxy: PUT, GET, list, DELETE. */
    char base[256];
    snprintf(base, sizeof base, "%s/api/2.0/mlflow-artifacts/artifacts/%s/r1/artifacts", s.uri,
             exp);
    snprintf(url, sizeof url, "%s/dir/hello%%20world.txt", base);
    http("PUT", url, "hello artifact", 14, &r);
    assert_int_equal(r.status, 200);
    free(r.body);
    http("GET", url, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello artifact");
    assert_string_equal(r.type, "text/plain");
    free(r.body);
    snprintf(url, sizeof url, "%s/api/2.0/mlflow-artifacts/artifacts?path=%s/r1/artifacts/dir",
             s.uri, exp);
    http("GET", url, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "hello world.txt"));
    free(r.body);
    snprintf(url, sizeof url, "%s/dir/hello%%20world.txt", base);
    http("DELETE", url, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    free(r.body);
    http("GET", url, NULL, 0, &r);
    expect_error(&r, 404, "RESOURCE_DOES_NOT_EXIST");
    free(r.body);
    /* A path that climbs out of the artifact root is refused. */
    snprintf(url, sizeof url, "%s/api/2.0/mlflow-artifacts/artifacts/%s/r1/%%2E%%2E/%%2E%%2E/x",
             s.uri, exp);
    http("PUT", url, "x", 1, &r);
    assert_int_equal(r.status, 400);
    free(r.body);
    /* Anything else is the UI. */
    snprintf(url, sizeof url, "%s/", s.uri);
    http("GET", url, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.type, "text/html"));
    assert_non_null(strstr(r.body, "cli"));
    free(r.body);
    free(exp);
    kt_trackserver_stop(&s, 0);
}

/* ---------------- --static-prefix ---------------- */

static void get(const proc *p, const char *path, long status, reply *r)
{
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", p->port, path);
    http("GET", url, NULL, 0, r);
    if (r->status != status)
        fail_msg("GET %s: %ld, want %ld: %.300s", path, r->status, status, r->body);
}

/* POST `body` to `path`; the answer's field `key` (an object printed as
 * JSON, or a string), malloc'ed. */
static char *post_field(const proc *p, const char *path, const char *body, const char *key)
{
    char url[512];
    reply r;
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", p->port, path);
    http("POST", url, body, strlen(body), &r);
    if (r.status != 200)
        fail_msg("POST %s: %ld %s", path, r.status, r.body);
    cJSON *j = cJSON_Parse(r.body);
    const cJSON *v = cJSON_GetObjectItem(j, key);
    assert_true(cJSON_IsString(v) || cJSON_IsObject(v));
    char *out = cJSON_IsString(v) ? strdup(v->valuestring) : cJSON_PrintUnformatted(v);
    cJSON_Delete(j);
    free(r.body);
    return out;
}

/* Behind a gateway route /mlflow/ (rewritten to / or not): the pages link
 * under /mlflow/, a link followed through the rewrite lands on the file,
 * and the API stays unprefixed. */
static void test_static_prefix(void **state)
{
    proc *pp = *state, p;
    reply r, again;
    char path[512], body[256], *log = NULL;
    start(pp, "--static-prefix /mlflow");
    p = *pp;
    char *exp = post_field(&p, "/api/2.0/mlflow/experiments/create", "{\"name\": \"behind\"}",
                           "experiment_id");
    snprintf(body, sizeof body, "{\"experiment_id\": \"%s\"}", exp);
    char *run = post_field(&p, "/api/2.0/mlflow/runs/create", body, "run");
    cJSON *rj = cJSON_Parse(run);
    const cJSON *info = cJSON_GetObjectItem(rj, "info");
    const char *run_id = cJSON_GetObjectItem(info, "run_id")->valuestring;
    const char *uri = cJSON_GetObjectItem(info, "artifact_uri")->valuestring;
    assert_true(strncmp(uri, "mlflow-artifacts:/", 18) == 0);
    snprintf(path, sizeof path,
             "http://127.0.0.1:%d/api/2.0/mlflow-artifacts/artifacts/%s/hello.txt", p.port,
             uri + 18);
    http("PUT", path, "behind the gateway", 18, &r);
    assert_int_equal(r.status, 200);
    free(r.body);

    /* After the gateway's rewrite, and with the prefix still on. */
    get(&p, "/", 200, &r);
    get(&p, "/mlflow/", 200, &again);
    assert_string_equal(r.body, again.body);
    snprintf(path, sizeof path, "href=\"/mlflow/experiments/%s\">behind</a>", exp);
    assert_non_null(strstr(r.body, path));
    assert_non_null(strstr(r.body, "href=\"/mlflow/models\""));
    assert_null(strstr(r.body, "href=\"/experiments"));
    free(r.body);
    free(again.body);
    get(&p, "/mlflow", 200, &r);
    free(r.body);
    snprintf(path, sizeof path, "/mlflow/experiments/%s", exp);
    get(&p, path, 200, &r);
    snprintf(path, sizeof path, "href=\"/mlflow/runs/%s\"", run_id);
    assert_non_null(strstr(r.body, path));
    free(r.body);

    /* The run page's download link, followed as the gateway would. */
    snprintf(path, sizeof path, "/runs/%s", run_id);
    get(&p, path, 200, &r);
    const char *end = strstr(r.body, "hello.txt\" download>");
    assert_non_null(end);
    const char *href = end;
    while (href > r.body && strncmp(href, "href=\"", 6) != 0)
        href--;
    const char *link = href + 6;
    assert_true(strncmp(link, "/mlflow/api/2.0/mlflow-artifacts/artifacts/", 43) == 0);
    link += strlen("/mlflow"); /* the rewrite */
    snprintf(path, sizeof path, "%.*s", (int)(end + strlen("hello.txt") - link), link);
    free(r.body);
    get(&p, path, 200, &r);
    assert_string_equal(r.body, "behind the gateway");
    free(r.body);

    /* The REST API answers unprefixed only; prefixed, the UI says so. */
    get(&p, "/api/2.0/mlflow/experiments/search?max_results=10", 200, &r);
    assert_string_equal(r.type, "application/json");
    free(r.body);
    get(&p, "/mlflow/api/2.0/mlflow/experiments/search?max_results=10", 404, &r);
    assert_non_null(strstr(r.type, "text/html"));
    assert_non_null(strstr(r.body, "only without the static prefix"));
    free(r.body);
    get(&p, "/health", 200, &r);
    free(r.body);

    cJSON_Delete(rj);
    free(run);
    free(exp);
    pp->pid = 0; /* stopped here, not by the teardown */
    assert_int_equal(stop(&p, SIGTERM, &log), 0);
    assert_non_null(strstr(log, "web UI links under /mlflow/"));
    free(log);
}

/* The server of a test that failed half-way is stopped all the same. */
static int proc_setup(void **state)
{
    *state = calloc(1, sizeof(proc));
    return *state ? 0 : -1;
}

static int proc_teardown(void **state)
{
    proc *p = *state;
    if (p->pid > 0) {
        char *log = NULL;
        stop(p, SIGTERM, &log);
        free(log);
    }
    free(p);
    return 0;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_signals_and_limits),
        cmocka_unit_test(test_routes),
        cmocka_unit_test_setup_teardown(test_static_prefix, proc_setup, proc_teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
