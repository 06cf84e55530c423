/* tests/test_serve_reload.c — kiln-serve never drops a request: 4
 * connections keep /predict busy (a bounded pthreads + libcurl client)
 * while 20 reloads alternate between two registered versions, two reloads
 * race, and a reload to a broken version fails while the old model keeps
 * serving; then SIGTERM under the same load: every request sent is
 * answered and the server exits 0. */
#include <pthread.h>
#include <stdatomic.h>

#include "test_serve_support.h"

#define MODEL "dryish"
#define CLIENTS 4

typedef struct fixture {
    kt_trackserver ts;
    char *root;
    kiln_mlflow_client *c;
    ts_serve srv;
    uint8_t *jpg;
    size_t jpg_len;
    double conf[4];          /* confidence for the test image, by version */
} fixture;

/* ---- the load client ---- */

typedef struct load {
    const fixture *f;
    atomic_int stop;
    int expect_shutdown;     /* a refused connection ends a client quietly */
    atomic_long ok, non2xx, errors, refused, wrong;
    atomic_long by_version[4];
    pthread_mutex_t lock;
    char first_error[512];
    pthread_t threads[CLIENTS];
} load;

/* Keep the first problem's description for the report. */
static void load_error(load *l, const char *what, const char *detail, long code)
{
    pthread_mutex_lock(&l->lock);
    if (!l->first_error[0])
        snprintf(l->first_error, sizeof l->first_error, "%s: %s (%ld)", what, detail, code);
    pthread_mutex_unlock(&l->lock);
}

/* Check an answer: its version is one we registered, and its confidence is
 * exactly what that version gives for this image. */
static void check_answer(load *l, const char *body)
{
    cJSON *j = cJSON_Parse(body);
    const cJSON *v = cJSON_GetObjectItem(j, "model_version");
    const cJSON *conf = cJSON_GetObjectItem(j, "confidence");
    int ver = cJSON_IsString(v) ? atoi(v->valuestring) : 0;
    if (ver < 1 || ver > 2 || !cJSON_IsNumber(conf) || conf->valuedouble != l->f->conf[ver]) {
        atomic_fetch_add(&l->wrong, 1);
        load_error(l, "unexpected answer", body, 0);
    } else {
        atomic_fetch_add(&l->by_version[ver], 1);
    }
    cJSON_Delete(j);
}

static void *load_client(void *arg)
{
    load *l = arg;
    char url[128];
    snprintf(url, sizeof url, "%s/predict", l->f->srv.url);
    CURL *c = curl_easy_init();
    curl_mime *mime = curl_mime_init(c);
    curl_mimepart *part = curl_mime_addpart(mime);
    curl_mime_name(part, "file");
    curl_mime_filename(part, "x.jpg");
    curl_mime_type(part, "image/jpeg");
    curl_mime_data(part, (const char *)l->f->jpg, l->f->jpg_len);
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ts_collect);
    /* Bounded: a client stops by itself after 5000 requests. */
    for (int i = 0; i < 5000 && !atomic_load(&l->stop); i++) {
        ts_buf b = {0};
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        CURLcode rc = curl_easy_perform(c);
        long status = 0;
        if (rc == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (rc == CURLE_COULDNT_CONNECT && l->expect_shutdown) {
            /* Not in flight: the server stopped listening, as it should. */
            atomic_fetch_add(&l->refused, 1);
            free(b.p);
            break;
        }
        if (rc != CURLE_OK) {
            atomic_fetch_add(&l->errors, 1);
            load_error(l, "socket error", curl_easy_strerror(rc), (long)rc);
        } else if (status < 200 || status > 299) {
            atomic_fetch_add(&l->non2xx, 1);
            load_error(l, "non-2xx answer", b.p ? b.p : "", status);
        } else {
            atomic_fetch_add(&l->ok, 1);
            check_answer(l, b.p ? b.p : "");
        }
        free(b.p);
    }
    curl_slist_free_all(h);
    curl_mime_free(mime);
    curl_easy_cleanup(c);
    return NULL;
}

static void load_start(load *l, const fixture *f, int expect_shutdown)
{
    memset(l, 0, sizeof *l);
    l->f = f;
    l->expect_shutdown = expect_shutdown;
    pthread_mutex_init(&l->lock, NULL);
    for (int i = 0; i < CLIENTS; i++)
        assert_int_equal(pthread_create(&l->threads[i], NULL, load_client, l), 0);
}

static void load_join(load *l)
{
    atomic_store(&l->stop, 1);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(l->threads[i], NULL);
    pthread_mutex_destroy(&l->lock);
    fprintf(stderr, "load: %ld ok (v1 %ld, v2 %ld), %ld non-2xx, %ld socket errors, %ld wrong, "
                    "%ld refused after shutdown%s%s\n",
            atomic_load(&l->ok), atomic_load(&l->by_version[1]), atomic_load(&l->by_version[2]),
            atomic_load(&l->non2xx), atomic_load(&l->errors), atomic_load(&l->wrong),
            atomic_load(&l->refused), l->first_error[0] ? "; first: " : "", l->first_error);
}

/* ---- fixture ---- */

static char *run_source(const char *run_id, const char *path)
{
    char *s = malloc(256);
    snprintf(s, 256, "runs:/%s/%s", run_id, path);
    return s;
}

static ts_reply reload(const fixture *f)
{
    char url[128];
    snprintf(url, sizeof url, "%s/model/reload", f->srv.url);
    return ts_http("POST", url, NULL, NULL, 0, NULL, 0);
}

static void expect_reload(const fixture *f, int version)
{
    ts_reply r = reload(f);
    cJSON *j = ts_expect_json(&r, 200, "reload");
    const cJSON *v = cJSON_GetObjectItem(j, "model_version");
    assert_true(cJSON_IsString(v));
    assert_int_equal(atoi(v->valuestring), version);
    cJSON_Delete(j);
    ts_reply_free(&r);
}

static double predict_conf(const fixture *f, int version)
{
    char url[128];
    snprintf(url, sizeof url, "%s/predict", f->srv.url);
    ts_reply r = ts_http("POST", url, NULL, NULL, 0, f->jpg, f->jpg_len);
    cJSON *j = ts_expect_json(&r, 200, "predict");
    assert_int_equal(atoi(cJSON_GetObjectItem(j, "model_version")->valuestring), version);
    double conf = cJSON_GetObjectItem(j, "confidence")->valuedouble;
    cJSON_Delete(j);
    ts_reply_free(&r);
    return conf;
}

/* Version 3: run 1's package with its weights replaced by garbage. */
static void register_broken(fixture *f, const char *run_id)
{
    kiln_err err = {0};
    kiln_mlflow_run *run = NULL;
    kt_expect_ok(kiln_mlflow_run_get(f->c, run_id, &run, &err), &err, "run");
    char *pkg = kt_path(f->root, "m1");
    char *info = kt_path(pkg, "kiln-model.json"), *junk = kt_path(f->root, "junk.safetensors");
    kt_write_file(junk, "\x10\x00\x00\x00\x00\x00\x00\x00{not json at all", 24);
    kt_expect_ok(kiln_mlflow_artifact_upload_file(f->c, run->info.artifact_uri, info,
                                                  "broken/kiln-model.json", &err),
                 &err, "upload info");
    kt_expect_ok(kiln_mlflow_artifact_upload_file(f->c, run->info.artifact_uri, junk,
                                                  "broken/model.safetensors", &err),
                 &err, "upload junk");
    char *src = run_source(run_id, "broken");
    assert_int_equal(ts_register(f->c, MODEL, src, run_id, NULL), 3);
    free(src);
    free(pkg);
    free(info);
    free(junk);
    kiln_mlflow_run_free(run);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    *state = f;
    if (kt_trackserver_start(&f->ts) != 0)
        return -1;
    f->root = kt_mkdtemp();
    f->c = ts_client(f->ts.uri);
    char *run1 = ts_train(f->root, "m1", f->ts.uri, 42);
    char *run2 = ts_train(f->root, "m2", f->ts.uri, 7);
    char *s1 = run_source(run1, "model"), *s2 = run_source(run2, "model");
    assert_int_equal(ts_register(f->c, MODEL, s1, run1, "Production"), 1);
    assert_int_equal(ts_register(f->c, MODEL, s2, run2, NULL), 2);
    register_broken(f, run1);
    free(s1);
    free(s2);
    free(run1);
    free(run2);
    f->jpg = ts_jpeg(64, 48, &f->jpg_len);
    char *cache = kt_path(f->root, "cache");
    const char *args[] = {"--model-name", MODEL, "--cache-dir", cache, NULL};
    int rc = ts_serve_start(&f->srv, f->root, f->ts.uri, args);
    free(cache);
    return rc;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ts_serve_stop(&f->srv, 30);
    ts_serve_stop_all();
    kiln_mlflow_client_free(f->c);
    kt_trackserver_stop(&f->ts, 0);
    free(f->jpg);
    if (f->root)
        kt_rmtree_free(f->root);
    free(f);
    return 0;
}

static void *racing_reload(void *arg)
{
    ts_reply r = reload(arg);
    long status = r.status;
    ts_reply_free(&r);
    return (void *)status;
}

static void test_reload_under_load(void **state)
{
    fixture *f = *state;
    /* What each version answers for the test image. */
    f->conf[1] = predict_conf(f, 1);
    ts_stage(f->c, MODEL, 2, "Production");
    expect_reload(f, 2);
    f->conf[2] = predict_conf(f, 2);
    assert_true(f->conf[1] != f->conf[2]);

    load l;
    load_start(&l, f, 0);
    kt_sleep_ms(200);
    for (int i = 0; i < 20; i++) {
        int v = i % 2 ? 2 : 1;
        ts_stage(f->c, MODEL, v, "Production");
        expect_reload(f, v);
        kt_sleep_ms(50);
    }
    /* Two reloads at once: serialised, both succeed. */
    pthread_t other;
    assert_int_equal(pthread_create(&other, NULL, racing_reload, f), 0);
    expect_reload(f, 2);
    void *status = NULL;
    pthread_join(other, &status);
    assert_int_equal((long)status, 200);

    /* A broken version: the reload fails, the old model keeps serving. */
    ts_stage(f->c, MODEL, 3, "Production");
    ts_reply r = reload(f);
    cJSON *j = ts_expect_json(&r, 500, "reload to a broken version");
    const cJSON *e = cJSON_GetObjectItem(j, "error");
    assert_non_null(strstr(e->valuestring, "version 3"));
    assert_non_null(strstr(e->valuestring, "model.safetensors"));
    assert_string_equal(cJSON_GetObjectItem(j, "model_version")->valuestring, "2");
    cJSON_Delete(j);
    ts_reply_free(&r);
    kt_sleep_ms(200);
    load_join(&l);
    assert_int_equal(atomic_load(&l.non2xx), 0);
    assert_int_equal(atomic_load(&l.errors), 0);
    assert_int_equal(atomic_load(&l.wrong), 0);
    assert_true(atomic_load(&l.by_version[1]) > 0);
    assert_true(atomic_load(&l.by_version[2]) > 0);
    assert_true(predict_conf(f, 2) == f->conf[2]);
    r = ts_get(f->srv.url, "/readyz");
    assert_int_equal(r.status, 200);
    ts_reply_free(&r);
    r = ts_get(f->srv.url, "/metrics");
    assert_non_null(strstr(r.body, "kiln_serve_reloads_total{result=\"failure\"} 1\n"));
    assert_non_null(strstr(r.body, "kiln_serve_reloads_total{result=\"success\"} 24\n"));
    ts_reply_free(&r);
}

static void test_sigterm_under_load(void **state)
{
    fixture *f = *state;
    load l;
    load_start(&l, f, 1);
    kt_sleep_ms(400);
    long before = atomic_load(&l.ok);
    int status = ts_serve_stop(&f->srv, 30);
    load_join(&l);
    assert_true(before > 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(atomic_load(&l.non2xx), 0);
    assert_int_equal(atomic_load(&l.errors), 0);
    assert_int_equal(atomic_load(&l.wrong), 0);
    assert_int_equal(atomic_load(&l.refused), CLIENTS);
}

/* Wait (30 s at most) until GET / reports `version` (NULL: not ready). */
static int wait_for_version(const ts_serve *s, const char *version)
{
    for (double end = kt_now_s() + 30; kt_now_s() < end; kt_sleep_ms(50)) {
        ts_reply r = ts_get(s->url, "/");
        cJSON *j = cJSON_Parse(r.body);
        const cJSON *v = cJSON_GetObjectItem(j, "model_version");
        int hit = version ? cJSON_IsString(v) && strcmp(v->valuestring, version) == 0
                          : cJSON_IsNull(v);
        cJSON_Delete(j);
        ts_reply_free(&r);
        if (hit)
            return 1;
    }
    return 0;
}

/* --poll-interval: the server follows the registry by itself; a broken
 * version (3, in Production after the first test) leaves it unready. */
static void test_poll_interval(void **state)
{
    fixture *f = *state;
    ts_serve s;
    char *dir = kt_path(f->root, "poll"), *cache = kt_path(f->root, "cache");
    kiln_err err = {0};
    kt_expect_ok(kiln_mkdir_p(dir, &err), &err, "mkdir");
    ts_stage(f->c, MODEL, 3, "Production");
    const char *args[] = {"--model-name", MODEL, "--cache-dir", cache, "--poll-interval", "0.1",
                          NULL};
    assert_int_equal(ts_serve_start(&s, dir, f->ts.uri, args), 0);
    assert_true(wait_for_version(&s, NULL));
    ts_reply r = ts_get(s.url, "/readyz");
    assert_int_equal(r.status, 503);
    ts_reply_free(&r);
    ts_stage(f->c, MODEL, 1, "Production");
    assert_true(wait_for_version(&s, "1"));
    ts_stage(f->c, MODEL, 2, "Production");
    assert_true(wait_for_version(&s, "2"));
    assert_true(predict_conf(&(fixture){.srv = s, .jpg = f->jpg, .jpg_len = f->jpg_len}, 2) ==
                f->conf[2]);
    /* The cache keeps the loaded version and the one before it. */
    char *v1 = kt_path(cache, MODEL "/1"), *v2 = kt_path(cache, MODEL "/2");
    char *v3 = kt_path(cache, MODEL "/3");
    assert_true(kiln_is_dir(v1) && kiln_is_dir(v2));
    assert_false(kiln_is_dir(v3));
    free(v1);
    free(v2);
    free(v3);
    assert_int_equal(ts_serve_stop(&s, 30), 0);
    free(dir);
    free(cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reload_under_load),
        cmocka_unit_test(test_sigterm_under_load),
        cmocka_unit_test(test_poll_interval),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return failed;
}
