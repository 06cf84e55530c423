/* tests/test_tracking_concurrency.c — many writers at once lose nothing:
 * 8 threads sharing one kiln_tracking (with a reader searching meanwhile),
 * and 8 forked processes each opening their own kiln_tracking on the same
 * database, each logging 1000 metrics one request at a time. */
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_tracking_support.h"

#define WRITERS 8
#define POINTS 1000

typedef struct writer {
    kiln_tracking *t;
    const char *run;
    int index;
    int failures;
    int *stop;
} writer;

static int log_points(kiln_tracking *t, const char *run, int index)
{
    int failures = 0;
    for (int step = 0; step < POINTS; step++) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"run_id\": \"%s\", \"key\": \"w%d\", \"value\": %d.5, \"timestamp\": %d,"
                 " \"step\": %d}",
                 run, index, step, 1000 + step, step);
        cJSON *req = cJSON_Parse(body);
        int status = 0;
        cJSON *resp = kiln_tracking_api(t, "POST", TT_API "runs/log-metric", req, &status);
        if (status != 200) {
            char *text = resp ? cJSON_PrintUnformatted(resp) : NULL;
            fprintf(stderr, "writer %d step %d: %d %s\n", index, step, status, text ? text : "");
            free(text);
            failures++;
        }
        cJSON_Delete(resp);
        cJSON_Delete(req);
    }
    return failures;
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    w->failures = log_points(w->t, w->run, w->index);
    return NULL;
}

static void *reader_main(void *arg)
{
    writer *w = arg;
    while (!__atomic_load_n(w->stop, __ATOMIC_ACQUIRE)) {
        int status = 0;
        cJSON *req = cJSON_Parse("{\"experiment_ids\": [\"0\"], \"filter\": \"metrics.w0 >= 0\"}");
        cJSON *resp = kiln_tracking_api(w->t, "POST", TT_API "runs/search", req, &status);
        w->failures += status != 200;
        cJSON_Delete(resp);
        cJSON_Delete(req);
    }
    return NULL;
}

static void check_all_points(kiln_tracking *t, const char *run)
{
    for (int i = 0; i < WRITERS; i++) {
        cJSON *r = tt_ok(t, "GET", TT_API "metrics/get-history",
                         "{\"run_id\": \"%s\", \"metric_key\": \"w%d\"}", run, i);
        assert_int_equal(tt_len(r, "metrics"), POINTS);
        for (int s = 0; s < POINTS; s++) {
            char path[40];
            snprintf(path, sizeof path, "metrics.%d.step", s);
            assert_true(tt_num(r, path) == s);
        }
        cJSON_Delete(r);
    }
    cJSON *r = tt_ok(t, "GET", TT_API "runs/get", "{\"run_id\": \"%s\"}", run);
    assert_int_equal(tt_len(r, "run.data.metrics"), WRITERS);
    for (int i = 0; i < WRITERS; i++) {
        char path[40];
        snprintf(path, sizeof path, "run.data.metrics.%d.step", i);
        assert_true(tt_num(r, path) == POINTS - 1);
    }
    cJSON_Delete(r);
}

static void test_threads(void **state)
{
    tt_fixture *f = *state;
    char *run = tt_create_run(f->t, "0");
    pthread_t threads[WRITERS], reader;
    writer w[WRITERS];
    int stop = 0;
    writer rw = {.t = f->t, .stop = &stop};
    double t0 = kt_now_s();
    assert_int_equal(pthread_create(&reader, NULL, reader_main, &rw), 0);
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (writer){.t = f->t, .run = run, .index = i};
        assert_int_equal(pthread_create(&threads[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    pthread_join(reader, NULL);
    printf("%d threads x %d log-metric requests: %.2f s\n", WRITERS, POINTS, kt_now_s() - t0);
    assert_int_equal(rw.failures, 0);
    check_all_points(f->t, run);
    free(run);
}

static void test_processes(void **state)
{
    tt_fixture *f = *state;
    char *run = tt_create_run(f->t, "0");
    /* No connection may cross a fork: the parent closes its own first. */
    kiln_tracking_close(f->t);
    f->t = NULL;
    pid_t pids[WRITERS];
    double t0 = kt_now_s();
    for (int i = 0; i < WRITERS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            kiln_err err = {0};
            kiln_tracking_options o = {.db_path = f->db, .artifacts_root = f->artifacts};
            kiln_tracking *t = kiln_tracking_open(&o, &err);
            if (!t) {
                fprintf(stderr, "child %d: %s\n", i, err.msg);
                _exit(2);
            }
            int failures = log_points(t, run, i);
            kiln_tracking_close(t);
            _exit(failures ? 1 : 0);
        }
    }
    for (int i = 0; i < WRITERS; i++) {
        int st = 0;
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    printf("%d processes x %d log-metric requests: %.2f s\n", WRITERS, POINTS, kt_now_s() - t0);
    f->t = tt_open(f);
    check_all_points(f->t, run);
    free(run);
}

/* Processes that open a database nobody has created yet, all at once:
 * the schema and the Default experiment are made exactly once. */
static void test_processes_fresh_database(void **state)
{
    tt_fixture *f = *state;
    char *db = kt_path(f->dir, "fresh.db");
    pid_t pids[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            kiln_err err = {0};
            kiln_tracking_options o = {.db_path = db, .artifacts_root = f->artifacts};
            kiln_tracking *t = kiln_tracking_open(&o, &err);
            if (!t) {
                fprintf(stderr, "child %d: %s\n", i, err.msg);
                _exit(2);
            }
            int status = 0;
            cJSON *resp = kiln_tracking_api(t, "POST", TT_API "runs/create", NULL, &status);
            cJSON_Delete(resp);
            kiln_tracking_close(t);
            _exit(status == 200 ? 0 : 1);
        }
    }
    for (int i = 0; i < WRITERS; i++) {
        int st = 0;
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    kiln_err err = {0};
    kiln_tracking_options o = {.db_path = db, .artifacts_root = f->artifacts};
    kiln_tracking *t = kiln_tracking_open(&o, &err);
    assert_non_null(t);
    cJSON *r = tt_ok(t, "POST", TT_API "experiments/search", "{}");
    assert_int_equal(tt_len(r, "experiments"), 1);
    assert_string_equal(tt_str(r, "experiments.0.name"), "Default");
    cJSON_Delete(r);
    r = tt_ok(t, "POST", TT_API "runs/search", "{\"experiment_ids\": [\"0\"]}");
    assert_int_equal(tt_len(r, "runs"), WRITERS);
    cJSON_Delete(r);
    kiln_tracking_close(t);
    free(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_threads, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_processes, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_processes_fresh_database, tt_setup, tt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
