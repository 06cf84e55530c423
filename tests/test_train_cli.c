/* tests/test_train_cli.c — `kiln train` through the binary ($KILN_BIN):
 * bad flags exit 2 naming the problem; SIGTERM mid-run leaves a checkpoint,
 * marks the MLflow run KILLED and exits non-zero; --resume then finishes;
 * on a terminal a progress line (batches, img/s, ETA) is redrawn in place,
 * and without one each epoch is one log line. */
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fs.h"
#include "gpu/gpu.h"
#include "mlflow/mlflow.h"
#include "support/dsbuild.h"
#include "support/testutil.h"
#include "support/trackserver.h"

static char *make_dataset(const char *root)
{
    char *dir = kt_path(root, "data");
    kiln_err err = {0};
    kt_expect_ok(kiln_mkdir_p(dir, &err), &err, "mkdir");
    kt_ds_opts o;
    kt_ds_opts_default(&o);
    o.image_size = 32;
    o.per_split[KILN_SPLIT_TRAIN] = 16;
    o.per_split[KILN_SPLIT_VAL] = 6;
    o.per_split[KILN_SPLIT_TEST] = 0;
    kt_ds_build(dir, &o);
    return dir;
}

static void expect_usage_error(const char *args, const char *needle)
{
    char *out = NULL;
    int rc = kt_run_capture(&out, "%s train %s", kt_kiln_bin(), args);
    if (rc != 2 || !strstr(out, needle))
        fail_msg("kiln train %s: exit %d, wanted 2 and '%s' in:\n%s", args, rc, needle, out);
    free(out);
}

static void test_bad_flags(void **state)
{
    const char *root = *state;
    char *data = make_dataset(root);
    char args[8192];
    expect_usage_error("--out x", "--data and --out are required");
    expect_usage_error("--data d --out o --bogus", "unknown option '--bogus'");
    expect_usage_error("--data d --out o --device gpu", "--device: expected auto, cpu or cuda");
    expect_usage_error("--data d --out o --threads many", "--threads");
    expect_usage_error("--data d --out o --epochs 0", "--epochs");
    expect_usage_error("--data d --out o --lr fast", "--lr");
    expect_usage_error("--data d --out o extra", "unexpected argument 'extra'");
    expect_usage_error("--data d --out o --seed -1", "--seed");
    expect_usage_error("--data d --out o --precision fp16",
                       "train.precision: expected one of fp32, bf16, got 'fp16'");
    kiln_gpu_info gpu;
    if (kiln_gpu_probe(&gpu, NULL) != KILN_OK) {
        /* No usable GPU: --device cuda fails before a run starts, saying why. */
        char *msg = NULL;
        snprintf(args, sizeof args, "--data %s --out %s/m --device cuda", data, root);
        int st = kt_run_capture(&msg, "%s train %s", kt_kiln_bin(), args);
        if (st != 1 || !strstr(msg, "--device cuda: "))
            fail_msg("kiln train %s: exit %d, wanted 1 and '--device cuda: ' in:\n%s", args, st,
                     msg);
        free(msg);
    }
    /* bf16 is the GPU's: asked of the CPU by name, it is refused, saying so. */
    char *msg = NULL;
    snprintf(args, sizeof args, "--data %s --out %s/m --device cpu --precision bf16", data, root);
    int st = kt_run_capture(&msg, "%s train %s", kt_kiln_bin(), args);
    if (st == 0 || !strstr(msg, "precision bf16 needs the GPU"))
        fail_msg("kiln train %s: exit %d, wanted an error naming bf16 in:\n%s", args, st, msg);
    free(msg);
    snprintf(args, sizeof args, "--data %s --out %s/m --mlflow ftp://x", data, root);
    expect_usage_error(args, "ftp://x");
    char *out = NULL;
    int rc = kt_run_capture(&out, "%s train --help", kt_kiln_bin());
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "usage: kiln train"));
    free(out);
    free(data);
}

/* Start kiln train in the background, stdout+stderr into `log`. */
static pid_t spawn_train(const char *data, const char *out, const char *uri, const char *log)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(kt_kiln_bin(), "kiln", "train", "--data", data, "--out", out, "--epochs", "200",
              "--batch-size", "8", "--threads", "1", "--mlflow", uri, "--run-name", "killed",
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Everything the child writes to the pty until it exits (bounded). */
static char *read_pty(int fd, pid_t pid, int *status)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n <= 0)
            break; /* EIO once the child has closed its side */
        len += (size_t)n;
        if (len == cap)
            break;
    }
    buf[len] = '\0';
    assert_int_equal(waitpid(pid, status, 0), pid);
    return buf;
}

static void test_progress_on_terminal(void **state)
{
    const char *root = *state;
    char *data = make_dataset(root), *out = kt_path(root, "m"), *out2 = kt_path(root, "m2");
    int master, status;
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    assert_true(pid >= 0);
    if (pid == 0) {
        unsetenv("MLFLOW_TRACKING_URI");
        execl(kt_kiln_bin(), "kiln", "train", "--data", data, "--out", out, "--epochs", "2",
              "--batch-size", "4", "--threads", "1", (char *)NULL);
        _exit(127);
    }
    char *text = read_pty(master, pid, &status);
    close(master);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* 16 images in batches of 4: the line is redrawn for every batch. */
    for (int e = 1; e <= 2; e++)
        for (int b = 1; b <= 4; b++) {
            char needle[64];
            snprintf(needle, sizeof needle, "\repoch %d/2  batch %d/4  loss ", e, b);
            if (!strstr(text, needle))
                fail_msg("no '%s' in the terminal output:\n%s", needle + 1, text);
        }
    assert_non_null(strstr(text, " img/s  ETA 0:"));
    free(text);

    /* Not a terminal: no carriage returns, one line per epoch. */
    char *log = NULL;
    int rc = kt_run_capture(&log, "%s train --data %s --out %s --epochs 2 --batch-size 4 "
                            "--threads 1 2>&1", kt_kiln_bin(), data, out2);
    assert_int_equal(rc, 0);
    assert_null(strchr(log, '\r'));
    assert_non_null(strstr(log, "epoch 1/2: train loss "));
    assert_non_null(strstr(log, "epoch 2/2: train loss "));
    assert_null(strstr(log, "batch 1/4"));
    free(log);
    free(data);
    free(out);
    free(out2);
}

static void test_sigterm_leaves_checkpoint(void **state)
{
    kt_trackserver *srv = *state;
    if (kt_trackserver_start(srv) != 0)
        fail_msg("kiln-tracking did not start");
    char *root = kt_mkdtemp();
    char *data = make_dataset(root);
    char *out = kt_path(root, "model");
    char *log = kt_path(root, "train.log");
    char *state_json = kt_path(out, "checkpoint/state.json");
    pid_t pid = spawn_train(data, out, srv->uri, log);
    double t0 = kt_now_s();
    while (!kiln_is_file(state_json) && kt_now_s() - t0 < 60)
        kt_sleep_ms(50);
    assert_true(kiln_is_file(state_json));
    kill(pid, SIGTERM);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    char *text = NULL;
    size_t len = 0;
    kiln_err err = {0};
    kt_expect_ok(kiln_read_file(log, 0, &text, &len, &err), &err, "log");
    if (!WIFEXITED(status) || WEXITSTATUS(status) == 0 || !strstr(text, "interrupted"))
        fail_msg("kiln train after SIGTERM: status %d, log:\n%s", status, text);
    assert_true(kiln_is_file(state_json));
    char *pkg = kt_path(out, "kiln-model.json");
    assert_false(kiln_is_file(pkg));
    /* The run is KILLED in MLflow. */
    char *id_path = kt_path(out, "mlflow-run-id"), *id = NULL;
    kt_expect_ok(kiln_read_file(id_path, 0, &id, &len, &err), &err, "run id");
    id[strcspn(id, "\n")] = '\0';
    assert_non_null(strstr(text, id));
    kiln_mlflow_config cfg;
    kiln_mlflow_config_default(&cfg);
    snprintf(cfg.tracking_uri, sizeof cfg.tracking_uri, "%s", srv->uri);
    kiln_mlflow_client *c = kiln_mlflow_client_new(&cfg, NULL, &err);
    assert_non_null(c);
    kiln_mlflow_run *run = NULL;
    kt_expect_ok(kiln_mlflow_run_get(c, id, &run, &err), &err, "run get");
    assert_string_equal(run->info.status, "KILLED");
    kiln_mlflow_run_free(run);
    kiln_mlflow_client_free(c);
    free(id), free(id_path), free(pkg), free(text), free(state_json), free(log), free(out);
    free(data);
    kt_rmtree_free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_flags, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_progress_on_terminal, kt_setup_tmpdir,
                                        kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_sigterm_leaves_checkpoint, kt_trackserver_setup,
                                        kt_trackserver_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
