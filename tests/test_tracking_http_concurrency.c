/* kiln-tracking under concurrent writers, through HTTP: 8 processes
 * (fork, each with its own libcurl) start together and each log 1000
 * metric values into a run of its own and 1000 into one run they all
 * share (log-batch calls of 100), plus single log-metric calls into the
 * shared run. Then every history is read back with metrics/get-history:
 * nothing lost, nothing doubled, every value where it was logged.
 * (test_tracking_concurrency.c does the same in-process, on the store.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "support/testutil.h"
#include "support/trackapi.h"
#include "support/trackserver.h"

#define WRITERS 8
#define PER_WRITER 1000
#define BATCH 100
#define SINGLES 25

/* The value writer w logs at step i: distinct for every (w, i). */
static double value_of(int w, int i)
{
    return w * 100000.0 + i + 0.5;
}

static char *create_run(const char *uri, const char *exp_id, const char *name)
{
    cJSON *r = kt_track_ok(uri, "POST", "/api/2.0/mlflow/runs/create",
                           "{\"experiment_id\":\"%s\",\"run_name\":\"%s\",\"start_time\":1}",
                           exp_id, name);
    char *id = strdup(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "run"),
                                                              "info"), "run_id")->valuestring);
    cJSON_Delete(r);
    return id;
}

static int post(const char *uri, const char *path, const char *body)
{
    int status = 0;
    cJSON *j = kt_track_call(uri, "POST", path, body, &status);
    if (status != 200) {
        char *text = j ? cJSON_PrintUnformatted(j) : NULL;
        fprintf(stderr, "writer %d: POST %s -> %d %s\n", (int)getpid(), path, status,
                text ? text : "");
        free(text);
    }
    cJSON_Delete(j);
    return status == 200 ? 0 : -1;
}

/* One batch of BATCH steps of `key` from step `first` into `run_id`. */
static int log_batch(const char *uri, const char *run_id, const char *key, int w, int first)
{
    size_t cap = 256 + (size_t)BATCH * 128;
    char *body = malloc(cap);
    if (!body)
        return -1;
    size_t len = (size_t)snprintf(body, cap, "{\"run_id\":\"%s\",\"metrics\":[", run_id);
    for (int i = first; i < first + BATCH; i++)
        len += (size_t)snprintf(body + len, cap - len,
                                "%s{\"key\":\"%s\",\"value\":%.17g,\"timestamp\":%d,"
                                "\"step\":%d}", i > first ? "," : "", key, value_of(w, i),
                                1000 + i, i);
    snprintf(body + len, cap - len, "]}");
    int rc = post(uri, "/api/2.0/mlflow/runs/log-batch", body);
    free(body);
    return rc;
}

/* A writer process: waits on `go`, then logs; its exit status says how it went. */
static void writer(const char *uri, int w, const char *own_run, const char *shared_run, int go)
{
    char byte;
    if (read(go, &byte, 1) < 0) /* returns 0 (EOF) when the parent opens the gate */
        _exit(3);
    char key[32];
    snprintf(key, sizeof key, "shared_w%d", w);
    for (int first = 0; first < PER_WRITER; first += BATCH) {
        if (log_batch(uri, own_run, "loss", w, first) != 0 ||
            log_batch(uri, shared_run, key, w, first) != 0)
            _exit(1);
    }
    for (int i = 0; i < SINGLES; i++) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"run_id\":\"%s\",\"key\":\"single\",\"value\":%.17g,\"timestamp\":%d,"
                 "\"step\":%d}", shared_run, value_of(w, i), 5000 + i, w * SINGLES + i);
        if (post(uri, "/api/2.0/mlflow/runs/log-metric", body) != 0)
            _exit(2);
    }
    _exit(0);
}

/* The full history of `key` in `run_id`, every page. */
static cJSON *history(const char *uri, const char *run_id, const char *key)
{
    cJSON *all = cJSON_CreateArray();
    char *token = NULL;
    for (int page = 0; page < 1000; page++) {
        char *path = NULL, *tok = token ? kt_url_escape(token) : NULL;
        if (asprintf(&path, "/api/2.0/mlflow/metrics/get-history?run_id=%s&metric_key=%s%s%s",
                     run_id, key, tok ? "&page_token=" : "", tok ? tok : "") < 0)
            fail_msg("asprintf");
        free(tok);
        free(token);
        token = NULL;
        cJSON *r = kt_track_ok(uri, "GET", path, NULL);
        free(path);
        cJSON *m = cJSON_GetObjectItem(r, "metrics");
        while (m && m->child)
            cJSON_AddItemToArray(all, cJSON_DetachItemViaPointer(m, m->child));
        cJSON *next = cJSON_GetObjectItem(r, "next_page_token");
        if (cJSON_IsString(next) && next->valuestring[0])
            token = strdup(next->valuestring);
        cJSON_Delete(r);
        if (!token)
            return all;
    }
    fail_msg("get-history %s never ended", key);
    return NULL;
}

static double num(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(obj, key);
    if (cJSON_IsString(v))
        return strtod(v->valuestring, NULL);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

/* Exactly steps [0, n) of writer w, each once with its value. */
static void check_history(const char *uri, const char *run_id, const char *key, int w, int n)
{
    cJSON *h = history(uri, run_id, key);
    if (cJSON_GetArraySize(h) != n)
        fail_msg("%s: %d values in the history, %d logged", key, cJSON_GetArraySize(h), n);
    char *seen = calloc((size_t)n, 1);
    const cJSON *m;
    cJSON_ArrayForEach(m, h) {
        int step = (int)num(m, "step");
        if (step < 0 || step >= n || seen[step])
            fail_msg("%s: step %d is unexpected or doubled", key, step);
        seen[step] = 1;
        double want = value_of(w, step);
        if (num(m, "value") != want)
            fail_msg("%s step %d: value %.17g, logged %.17g", key, step, num(m, "value"), want);
    }
    free(seen);
    cJSON_Delete(h);
}

static int setup(void **state)
{
    kt_trackserver_setup(state);
    if (getenv("KILN_TRACKING_BIN") && kt_trackserver_start(*state) != 0)
        fail_msg("kiln-tracking did not start");
    return 0;
}

/* Fork the writers, open the gate, wait for all; the number that failed. */
static int run_writers(const char *uri, char **own, const char *shared)
{
    int gate[2];
    assert_int_equal(pipe(gate), 0);
    pid_t pids[WRITERS];
    fflush(NULL);
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        if (pids[w] == 0) {
            close(gate[1]);
            writer(uri, w, own[w], shared, gate[0]);
        }
    }
    close(gate[0]);
    close(gate[1]); /* every writer starts now */
    int failed = 0;
    for (int w = 0; w < WRITERS; w++) {
        int st = 0;
        if (pids[w] < 0 || waitpid(pids[w], &st, 0) != pids[w] || !WIFEXITED(st) ||
            WEXITSTATUS(st) != 0) {
            fprintf(stderr, "writer %d failed (status 0x%x)\n", w, st);
            failed++;
        }
    }
    return failed;
}

static void test_parallel_writers(void **state)
{
    kt_trackserver *s = *state;
    if (s->pid <= 0) {
        printf("SKIPPED: KILN_TRACKING_BIN is not set (kiln-tracking not built)\n");
        skip();
    }
    cJSON *e = kt_track_ok(s->uri, "POST", "/api/2.0/mlflow/experiments/create",
                           "{\"name\":\"concurrency\"}");
    char *exp_id = strdup(cJSON_GetObjectItem(e, "experiment_id")->valuestring);
    cJSON_Delete(e);
    char *shared = create_run(s->uri, exp_id, "shared");
    char *own[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        char name[32];
        snprintf(name, sizeof name, "writer-%d", w);
        own[w] = create_run(s->uri, exp_id, name);
    }

    double t0 = kt_now_s();
    int failed = run_writers(s->uri, own, shared);
    double secs = kt_now_s() - t0;
    int values = WRITERS * (2 * PER_WRITER + SINGLES);
    printf("%d writers logged %d metric values over HTTP in %.2f s (%.0f values/s, "
           "%d requests)\n", WRITERS, values, secs, values / secs,
           WRITERS * (2 * PER_WRITER / BATCH + SINGLES));
    if (failed)
        fail_msg("%d writers failed", failed);

    for (int w = 0; w < WRITERS; w++) {
        char key[32];
        snprintf(key, sizeof key, "shared_w%d", w);
        check_history(s->uri, own[w], "loss", w, PER_WRITER);
        check_history(s->uri, shared, key, w, PER_WRITER);
    }
    /* The single log-metric calls: one history, every writer's steps. */
    cJSON *single = history(s->uri, shared, "single");
    assert_int_equal(cJSON_GetArraySize(single), WRITERS * SINGLES);
    char seen[WRITERS * SINGLES] = {0};
    const cJSON *m;
    cJSON_ArrayForEach(m, single) {
        int step = (int)num(m, "step");
        assert_true(step >= 0 && step < WRITERS * SINGLES && !seen[step]);
        seen[step] = 1;
        assert_true(num(m, "value") == value_of(step / SINGLES, step % SINGLES));
    }
    cJSON_Delete(single);
    /* The run's latest values: the highest step of every key. */
    char path[128];
    snprintf(path, sizeof path, "/api/2.0/mlflow/runs/get?run_id=%s", shared);
    cJSON *r = kt_track_ok(s->uri, "GET", path, NULL);
    cJSON *metrics = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "run"),
                                                             "data"), "metrics");
    assert_int_equal(cJSON_GetArraySize(metrics), WRITERS + 1);
    cJSON_ArrayForEach(m, metrics) {
        const char *key = cJSON_GetObjectItem(m, "key")->valuestring;
        int w = 0;
        if (sscanf(key, "shared_w%d", &w) == 1)
            assert_true(num(m, "value") == value_of(w, PER_WRITER - 1));
        else if (strcmp(key, "single") == 0)
            assert_true(num(m, "value") == value_of(WRITERS - 1, SINGLES - 1));
        else
            fail_msg("unexpected metric %s in the shared run", key);
    }
    cJSON_Delete(r);

    for (int w = 0; w < WRITERS; w++)
        free(own[w]);
    free(shared);
    free(exp_id);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parallel_writers, setup, kt_trackserver_teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
