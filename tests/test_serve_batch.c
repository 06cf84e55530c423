/* tests/test_serve_batch.c — kiln-serve's dynamic batching (--max-batch,
 * --max-wait-ms) on the CPU backend: concurrent requests share forwards
 * and get the answers an unbatched server gives, a lone request is
 * answered once max-wait passed, bad flag values exit 2 naming the flag,
 * and reloads under batched load lose nothing. Two servers on one
 * registered model (versions 1 and 2 are the same artifacts); the library
 * case feeds inputs whose answers differ by far more than the 1e-5
 * tolerance, so slots swapped inside a batch fail it. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#include "serve/serve.h"
#include "test_serve_support.h"

#define MODEL "batchy"
#define CLIENTS 4
#define MAX_CLASSES 16

typedef struct fixture {
    kt_trackserver ts;
    char *root;
    kiln_mlflow_client *c;
    ts_serve plain;    /* --max-batch 1 (the default) */
    ts_serve batched;  /* --max-batch 4 --max-wait-ms 50 */
    uint8_t *jpg[CLIENTS];
    size_t jpg_len[CLIENTS];
    double want[CLIENTS][MAX_CLASSES]; /* the plain server's probabilities */
} fixture;

static int start_server(fixture *f, ts_serve *s, const char *name, const char *batch,
                        const char *wait)
{
    char *dir = kt_path(f->root, name);
    char *cache = kt_path(dir, "cache");
    kiln_err err = {0};
    kiln_mkdir_p(dir, &err);
    const char *args[] = {"--model-name", MODEL, "--cache-dir", cache, "--max-batch", batch,
                          "--max-wait-ms", wait, NULL};
    int rc = ts_serve_start(s, dir, f->ts.uri, args);
    free(cache);
    free(dir);
    return rc;
}

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    *state = f;
    if (kt_trackserver_start(&f->ts) != 0)
        return -1;
    f->root = kt_mkdtemp();
    /* ts_train's one warm-up epoch leaves the head near zero: the model
     * answers every input alike. Two more epochs at a high rate, from
     * scratch without warm-up, make it tell (far apart) inputs apart. */
    free(ts_train(f->root, "warm", NULL, 7));
    char *out = NULL, *data = kt_path(f->root, "data"), *model = kt_path(f->root, "model");
    if (kt_run_capture(&out,
                       "%s train --data %s --out %s --epochs 2 --warmup-epochs 0 --lr 0.05 "
                       "--batch-size 8 --threads 2 --seed 7 --mlflow %s --experiment batch",
                       kt_kiln_bin(), data, model, f->ts.uri) != 0)
        fail_msg("kiln train: %s", out);
    free(out);
    free(data);
    char *id_path = kt_path(model, "mlflow-run-id"), *run_id = NULL;
    size_t id_len = 0;
    kiln_err err = {0};
    kt_expect_ok(kiln_read_file(id_path, 0, &run_id, &id_len, &err), &err, "run id");
    run_id[strcspn(run_id, "\n")] = '\0';
    free(id_path);
    free(model);
    f->c = ts_client(f->ts.uri);
    char source[256];
    snprintf(source, sizeof source, "runs:/%s/model", run_id);
    assert_int_equal(ts_register(f->c, MODEL, source, run_id, "Production"), 1);
    assert_int_equal(ts_register(f->c, MODEL, source, run_id, NULL), 2);
    free(run_id);
    /* Four images of the kind the model saw (a light shape on black):
     * a wide block, a bar, a thin frame, nothing. */
    for (int i = 0; i < CLIENTS; i++) {
        int w = 56, h = 56;
        uint8_t *px = calloc((size_t)w * h * 3, 1);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int on = i == 0   ? x > 8 && x < 48 && y > 12 && y < 44
                         : i == 1 ? x > 22 && x < 34
                         : i == 2 ? (x > 4 && x < 10) || (y > 46 && y < 52)
                                  : 0;
                memset(px + ((size_t)y * w + x) * 3, on ? 230 : 0, 3);
            }
        f->jpg[i] = kt_jpeg_encode(px, w, h, NULL, &f->jpg_len[i]);
        free(px);
    }
    if (start_server(f, &f->plain, "plain", "1", "2") != 0)
        return -1;
    return start_server(f, &f->batched, "batched", "4", "50");
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    int plain = ts_serve_stop(&f->plain, 30), batched = ts_serve_stop(&f->batched, 30);
    ts_serve_stop_all();
    kiln_mlflow_client_free(f->c);
    kt_trackserver_stop(&f->ts, 0);
    for (int i = 0; i < CLIENTS; i++)
        free(f->jpg[i]);
    if (f->root)
        kt_rmtree_free(f->root);
    free(f);
    /* SIGTERM must end both cleanly (exit 0, no sanitizer report). */
    int ok = WIFEXITED(plain) && WEXITSTATUS(plain) == 0 && WIFEXITED(batched) &&
             WEXITSTATUS(batched) == 0;
    return ok ? 0 : -1;
}

/* ---- answers ---- */

/* The probabilities of one prediction object, in the server's class order;
 * returns how many (0 when it is not a prediction). */
static int probs_of(const cJSON *p, double *out)
{
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(p, "probabilities")) {
        if (n < MAX_CLASSES && cJSON_IsNumber(it))
            out[n++] = it->valuedouble;
    }
    return n;
}

/* 1 when `p` carries `want` (within 1e-5 each) and a version in [lo, hi]. */
static int answer_ok(const cJSON *p, const double *want, int lo, int hi, int *version)
{
    double got[MAX_CLASSES];
    const cJSON *v = cJSON_GetObjectItem(p, "model_version");
    *version = cJSON_IsString(v) ? atoi(v->valuestring) : 0;
    if (probs_of(p, got) != 10 || *version < lo || *version > hi)
        return 0;
    for (int i = 0; i < 10; i++)
        if (fabs(got[i] - want[i]) > 1e-5)
            return 0;
    return 1;
}

static cJSON *post_image(const ts_serve *s, const uint8_t *jpg, size_t len, long *status)
{
    char url[128];
    snprintf(url, sizeof url, "%s/predict", s->url);
    ts_reply r = ts_http("POST", url, NULL, NULL, 0, jpg, len);
    cJSON *j = cJSON_Parse(r.body);
    *status = r.status;
    ts_reply_free(&r);
    return j;
}

/* A Prometheus sample of /metrics, by its full name and labels. */
static double metric(const ts_serve *s, const char *series)
{
    ts_reply r = ts_get(s->url, "/metrics");
    char key[160];
    snprintf(key, sizeof key, "\n%s ", series);
    const char *p = strstr(r.body, key);
    if (!p)
        fail_msg("no '%s' in /metrics:\n%s", series, r.body);
    double v = strtod(p + strlen(key), NULL);
    ts_reply_free(&r);
    return v;
}

#define FWD_SINGLE "kiln_serve_forward_batch_size_bucket{le=\"1\"}"
#define FWD_COUNT "kiln_serve_forward_batch_size_count{}"

/* ---- concurrent clients ---- */

typedef struct client {
    const fixture *f;
    int image, lo, hi;       /* versions accepted */
    int rounds;              /* 0: until stop */
    pthread_barrier_t *start;
    atomic_int *stop;
    long ok, non2xx, wrong, by_version[3];
    char first[512];
} client;

static void *client_run(void *arg)
{
    client *c = arg;
    for (int i = 0; c->rounds ? i < c->rounds : i < 2000 && !atomic_load(c->stop); i++) {
        if (c->start)
            pthread_barrier_wait(c->start);
        long status = 0;
        int version = 0;
        cJSON *j = post_image(&c->f->batched, c->f->jpg[c->image], c->f->jpg_len[c->image],
                              &status);
        if (status < 200 || status > 299) {
            c->non2xx++;
        } else if (!answer_ok(j, c->f->want[c->image], c->lo, c->hi, &version)) {
            c->wrong++;
            if (!c->first[0] && j) {
                char *text = cJSON_PrintUnformatted(j);
                snprintf(c->first, sizeof c->first, "%s", text);
                free(text);
            }
        } else {
            c->ok++;
            c->by_version[version]++;
        }
        cJSON_Delete(j);
    }
    return NULL;
}

static void clients_run(const fixture *f, client *c, int rounds, int lo, int hi,
                        pthread_barrier_t *start, atomic_int *stop, pthread_t *threads)
{
    for (int i = 0; i < CLIENTS; i++) {
        c[i] = (client){.f = f, .image = i, .lo = lo, .hi = hi, .rounds = rounds,
                        .start = start, .stop = stop};
        assert_int_equal(pthread_create(&threads[i], NULL, client_run, &c[i]), 0);
    }
}

static void clients_check(client *c, pthread_t *threads, long *by_version)
{
    long ok = 0, bad = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(threads[i], NULL);
        ok += c[i].ok;
        bad += c[i].non2xx + c[i].wrong;
        for (int v = 0; v < 3; v++)
            by_version[v] += c[i].by_version[v];
        if (c[i].non2xx + c[i].wrong)
            fprintf(stderr, "client %d: %ld non-2xx, %ld wrong; first wrong: %s\n", i,
                    c[i].non2xx, c[i].wrong, c[i].first);
    }
    fprintf(stderr, "clients: %ld ok (v1 %ld, v2 %ld), %ld bad\n", ok, by_version[1],
            by_version[2], bad);
    assert_int_equal(bad, 0);
    assert_true(ok > 0);
}

/* ---- tests ---- */

static void test_batched_equals_unbatched(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < CLIENTS; i++) {
        long status = 0;
        cJSON *j = post_image(&f->plain, f->jpg[i], f->jpg_len[i], &status);
        assert_int_equal(status, 200);
        assert_int_equal(probs_of(j, f->want[i]), 10);
        cJSON_Delete(j);
    }
    /* The plain server never batches. */
    assert_true(metric(&f->plain, FWD_SINGLE) == metric(&f->plain, FWD_COUNT));

    ts_reply r = ts_get(f->batched.url, "/model/info");
    cJSON *info = ts_expect_json(&r, 200, "GET /model/info");
    assert_int_equal(cJSON_GetObjectItem(info, "max_batch")->valueint, 4);
    assert_int_equal(cJSON_GetObjectItem(info, "max_wait_ms")->valueint, 50);
    cJSON_Delete(info);
    ts_reply_free(&r);

    /* Four clients released together, five times: they share forwards. */
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, CLIENTS);
    client c[CLIENTS];
    pthread_t threads[CLIENTS];
    long by_version[3] = {0};
    clients_run(f, c, 5, 1, 1, &start, NULL, threads);
    clients_check(c, threads, by_version);
    pthread_barrier_destroy(&start);
    assert_int_equal(by_version[1], 5 * CLIENTS);
    double single = metric(&f->batched, FWD_SINGLE), count = metric(&f->batched, FWD_COUNT);
    fprintf(stderr, "batched: %g forwards, %g of one request\n", count, single);
    assert_true(count < 5 * CLIENTS);
    assert_true(single < count);
}

/* One request with a list of images contributes them all. */
static void test_list_request(void **state)
{
    fixture *f = *state;
    char *b64[CLIENTS];
    size_t cap = 64;
    for (int i = 0; i < CLIENTS; i++) {
        b64[i] = ts_base64(f->jpg[i], f->jpg_len[i]);
        cap += strlen(b64[i]) + 8;
    }
    char *json = malloc(cap);
    snprintf(json, cap, "{\"images\": [\"%s\", \"%s\", \"%s\", \"%s\"]}", b64[0], b64[1], b64[2],
             b64[3]);
    char url[128];
    snprintf(url, sizeof url, "%s/predict", f->batched.url);
    double count = metric(&f->batched, FWD_COUNT);
    ts_reply r = ts_http("POST", url, "application/json", json, strlen(json), NULL, 0);
    cJSON *j = ts_expect_json(&r, 200, "list");
    assert_int_equal(cJSON_GetArraySize(j), CLIENTS);
    for (int i = 0; i < CLIENTS; i++) {
        int version = 0;
        assert_true(answer_ok(cJSON_GetArrayItem(j, i), f->want[i], 1, 1, &version));
    }
    /* A full batch runs at once: one forward for the four. */
    assert_true(metric(&f->batched, FWD_COUNT) == count + 1);
    cJSON_Delete(j);
    ts_reply_free(&r);
    free(json);
    for (int i = 0; i < CLIENTS; i++)
        free(b64[i]);
}

static void test_lone_request(void **state)
{
    fixture *f = *state;
    double single = metric(&f->batched, FWD_SINGLE);
    double t0 = kt_now_s();
    long status = 0;
    cJSON *j = post_image(&f->batched, f->jpg[0], f->jpg_len[0], &status);
    double took = kt_now_s() - t0;
    int version = 0;
    assert_int_equal(status, 200);
    assert_true(answer_ok(j, f->want[0], 1, 1, &version));
    cJSON_Delete(j);
    fprintf(stderr, "lone request: %.3f s\n", took);
    /* It waited for company (50 ms), then ran alone; never hung. */
    assert_true(took >= 0.045);
    assert_true(took < 2.0);
    assert_true(metric(&f->batched, FWD_SINGLE) == single + 1);
}

static void expect_exit(const char *args, const char *needle)
{
    char *out = NULL;
    int rc = kt_run_capture(&out, "env -u MLFLOW_TRACKING_URI %s --model-dir /tmp %s",
                            getenv("KILN_SERVE_BIN"), args);
    if (rc != 2 || !strstr(out, needle))
        fail_msg("kiln-serve %s: exit %d (wanted 2), wanted '%s' in:\n%s", args, rc, needle,
                 out);
    free(out);
}

static void test_bad_flags(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(kt_run_capture(&out, "%s --help", getenv("KILN_SERVE_BIN")), 0);
    assert_non_null(strstr(out, "--max-batch N"));
    assert_non_null(strstr(out, "--max-wait-ms M"));
    free(out);
    expect_exit("--max-batch 0", "--max-batch must be an integer in [1, 256], got '0'");
    expect_exit("--max-batch -3", "--max-batch");
    expect_exit("--max-batch 257", "--max-batch");
    expect_exit("--max-batch 4x", "--max-batch");
    expect_exit("--max-wait-ms -1", "--max-wait-ms must be an integer in [0, 1000], got '-1'");
    expect_exit("--max-wait-ms 1001", "--max-wait-ms");
    expect_exit("--max-wait-ms ''", "--max-wait-ms");
}

/* ---- the library: inputs far apart, so that swapped slots show ---- */

typedef struct lib_client {
    kiln_serve_model *m;
    const float *x;
    float probs[MAX_CLASSES];
    int rc;
    pthread_barrier_t *start;
} lib_client;

static void *lib_predict(void *arg)
{
    lib_client *c = arg;
    kiln_err err = {0};
    pthread_barrier_wait(c->start);
    c->rc = kiln_serve_model_predict(c->m, c->x, 1, c->probs, &err);
    return NULL;
}

static void count_forward(void *ctx, int inputs)
{
    atomic_int *counts = ctx;
    atomic_fetch_add(&counts[inputs < 8 ? inputs : 7], 1);
}

static void test_library_batching(void **state)
{
    fixture *f = *state;
    char *dir = kt_path(f->root, "model");
    kiln_err err = {0};
    atomic_int counts[8];
    for (int i = 0; i < 8; i++)
        atomic_init(&counts[i], 0);
    kiln_serve_batching b = {.max_batch = 4, .max_wait_ms = 200, .on_forward = count_forward,
                             .ctx = counts};
    kiln_serve_model *plain = kt_expect_ptr(kiln_serve_model_load(dir, "cpu", 2, NULL, &err),
                                            &err, "load");
    kiln_serve_model *batched = kt_expect_ptr(
        kiln_serve_model_load_batched(dir, "cpu", 2, &b, NULL, &err), &err, "load batched");
    int s = kiln_serve_model_info(plain)->input_size, k = kiln_serve_model_info(plain)->num_classes;
    size_t per = (size_t)3 * s * s;
    float *x = malloc(3 * per * sizeof *x), want[3][MAX_CLASSES];
    /* Three inputs well outside what images give: the model tells them apart. */
    for (size_t i = 0; i < 3 * per; i++)
        x[i] = (float)((int)(i / per) - 1) * 100.0f * (float)((i * 7919) % 13) / 13.0f;
    for (int i = 0; i < 3; i++)
        kt_expect_ok(kiln_serve_model_predict(plain, x + i * per, 1, want[i], &err), &err, "plain");
    /* Every pair differs far more than the tolerance below: a swap fails. */
    double spread = 1;
    for (int a = 0; a < 3; a++)
        for (int z = a + 1; z < 3; z++) {
            double d = 0;
            for (int c = 0; c < k; c++)
                d = fmax(d, fabs(want[a][c] - want[z][c]));
            spread = fmin(spread, d);
        }
    fprintf(stderr, "library: any two inputs' answers differ by >= %g\n", spread);
    assert_true(spread > 1e-4);
    /* Three callers at once: one forward of three, each its own answer. */
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 3);
    lib_client c[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        c[i] = (lib_client){.m = batched, .x = x + i * per, .start = &start};
        assert_int_equal(pthread_create(&t[i], NULL, lib_predict, &c[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(c[i].rc, KILN_OK);
        for (int j = 0; j < k; j++)
            assert_true(fabs(c[i].probs[j] - want[i][j]) <= 1e-5);
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(atomic_load(&counts[3]), 1);
    assert_int_equal(atomic_load(&counts[1]) + atomic_load(&counts[2]), 0);
    /* Bad settings are refused. */
    b.max_batch = KILN_SERVE_MAX_BATCH + 1;
    assert_null(kiln_serve_model_load_batched(dir, "cpu", 1, &b, NULL, &err));
    assert_int_equal(err.code, KILN_EINVAL);
    kiln_serve_model_unref(plain);
    kiln_serve_model_unref(batched);
    free(x);
    free(dir);
}

static void expect_reload(const fixture *f, int version)
{
    char url[128];
    snprintf(url, sizeof url, "%s/model/reload", f->batched.url);
    ts_reply r = ts_http("POST", url, NULL, NULL, 0, NULL, 0);
    cJSON *j = ts_expect_json(&r, 200, "reload");
    assert_int_equal(atoi(cJSON_GetObjectItem(j, "model_version")->valuestring), version);
    cJSON_Delete(j);
    ts_reply_free(&r);
}

static void test_reload_in_flight(void **state)
{
    fixture *f = *state;
    atomic_int stop;
    atomic_init(&stop, 0);
    client c[CLIENTS];
    pthread_t threads[CLIENTS];
    long by_version[3] = {0};
    clients_run(f, c, 0, 1, 2, NULL, &stop, threads);
    kt_sleep_ms(200);
    for (int i = 0; i < 6; i++) {
        int v = i % 2 ? 1 : 2;
        ts_stage(f->c, MODEL, v, "Production");
        expect_reload(f, v);
        kt_sleep_ms(100);
    }
    atomic_store(&stop, 1);
    clients_check(c, threads, by_version);
    assert_true(by_version[1] > 0);
    assert_true(by_version[2] > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_equals_unbatched),
        cmocka_unit_test(test_list_request),
        cmocka_unit_test(test_lone_request),
        cmocka_unit_test(test_bad_flags),
        cmocka_unit_test(test_library_batching),
        cmocka_unit_test(test_reload_in_flight),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    curl_global_cleanup();
    return failed;
}
