/* kiln pipeline run-local: the compiled pipeline on this machine. Flags,
 * finding the step programs, and kiln-tracking started on loopback when no
 * MLflow server is given. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/signals.h"
#include "cmd_pipeline.h"
#include "common/fs.h"
#include "kfp/local.h"
#include "s3/s3.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void local_usage(FILE *out)
{
    fprintf(out,
            "usage: kiln pipeline run-local FILE.yaml [--param NAME=VALUE ...] [options]\n\n"
            "Runs the compiled KFP v2 pipeline here: the DAG in dependency order, every step as\n"
            "a local process (the image's kiln-component program from this build instead of a\n"
            "container), artifacts under RUNS_DIR/<run id>/. Prints each task's state and time.\n\n"
            "options:\n"
            "  --param NAME=VALUE     a pipeline parameter (repeatable); typed as the pipeline\n"
            "                         declares it. Defaults are the pipeline's, except\n"
            "                         minio_endpoint (default: \"\", i.e. AWS_ENDPOINT_URL) and\n"
            "                         mlflow_tracking_uri (default: see --tracking-dir)\n"
            "  --source PATH|s3://B/K the data zip: a local file, or an object (sets\n"
            "                         source_data_bucket and source_data_object). With a local\n"
            "                         file and no S3 endpoint in the environment the model is\n"
            "                         not uploaded (destination_model_bucket=\"\")\n"
            "  --runs-dir DIR         where runs are kept (default .kiln/pipeline-runs)\n"
            "  --run-id ID            name of this run (default: UTC time + random)\n"
            "  --components-dir DIR   where kiln-component is (default $KILN_COMPONENTS_DIR,\n"
            "                         else next to this kiln, else ../components of it)\n"
            "  --tracking-dir DIR     without --param mlflow_tracking_uri and without\n"
            "                         $MLFLOW_TRACKING_URI, kiln-tracking is started on\n"
            "                         127.0.0.1 with its store in DIR (default .kiln/tracking)\n"
            "                         and stopped at the end\n"
            "  --tracking-bin PATH    kiln-tracking to start (default $KILN_TRACKING_BIN, else\n"
            "                         next to this kiln, else ../tracking/, else $PATH)\n\n"
            "S3 credentials and endpoint come from the environment (AWS_ACCESS_KEY_ID, ...),\n"
            "as the pipeline's Kubernetes Secret provides them in the cluster.\n"
            "Exit status: 0 when every task succeeded, 1 when one failed, 2 for bad flags.\n");
}

#define MAX_PARAMS 64

typedef struct local_flags {
    const char *file, *source, *runs_dir, *run_id, *components_dir, *tracking_dir, *tracking_bin;
    int n_params;
    char *params[MAX_PARAMS];
} local_flags;

static int parse(int argc, char **argv, local_flags *f)
{
    static const char *const valued[] = {"--param", "--source", "--runs-dir", "--run-id",
                                         "--components-dir", "--tracking-dir", "--tracking-bin"};
    memset(f, 0, sizeof *f);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int k = -1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return 1;
        for (int j = 0; j < 7; j++)
            if (!strcmp(a, valued[j]))
                k = j;
        if (k < 0 && a[0] == '-') {
            fprintf(stderr, "kiln pipeline run-local: unknown option '%s'\n", a);
            return 2;
        }
        if (k < 0) {
            if (f->file) {
                fprintf(stderr, "kiln pipeline run-local: unexpected argument '%s'\n", a);
                return 2;
            }
            f->file = a;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "kiln pipeline run-local: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        const char **slots[] = {NULL, &f->source, &f->runs_dir, &f->run_id, &f->components_dir,
                                &f->tracking_dir, &f->tracking_bin};
        if (k > 0) {
            *slots[k] = v;
        } else if (!strchr(v, '=') || v[0] == '=' || f->n_params == MAX_PARAMS) {
            fprintf(stderr, "kiln pipeline run-local: --param wants NAME=VALUE, got '%s'\n", v);
            return 2;
        } else {
            f->params[f->n_params++] = (char *)v;
        }
    }
    if (!f->file) {
        fprintf(stderr, "kiln pipeline run-local: which pipeline? (e.g. pipelines/kiln-train.yaml)\n");
        return 2;
    }
    return 0;
}

static int has_param(const local_flags *f, const char *name)
{
    for (int i = 0; i < f->n_params; i++)
        if (!strncmp(f->params[i], name, strlen(name)) && f->params[i][strlen(name)] == '=')
            return 1;
    return 0;
}

/* Set a parameter run-local fills in itself, when the pipeline has it. */
static void set_if_declared(const cJSON *defs, cJSON *over, const char *name, const char *value)
{
    if (cJSON_GetObjectItemCaseSensitive(defs, name)) {
        cJSON_DeleteItemFromObjectCaseSensitive(over, name);
        cJSON_AddStringToObject(over, name, value);
    }
}

static const cJSON *param_defs(const kiln_kfp_ir *ir)
{
    return cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ir->spec, "root"),
                                         "inputDefinitions"), "parameters");
}

static int s3_endpoint_in_env(void)
{
    const char *vars[] = {"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"};
    for (int i = 0; i < 3; i++)
        if (getenv(vars[i]) && *getenv(vars[i]))
            return 1;
    return 0;
}

/* --param values typed by the pipeline's declarations, plus --source. */
static int build_overrides(const kiln_kfp_ir *ir, const local_flags *f, cJSON *over,
                           kiln_err *err)
{
    const cJSON *defs = param_defs(ir);
    for (int i = 0; i < f->n_params; i++) {
        char name[256];
        const char *eq = strchr(f->params[i], '=');
        snprintf(name, sizeof name, "%.*s", (int)(eq - f->params[i]), f->params[i]);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(defs, name), "parameterType");
        if (!cJSON_IsString(type))
            return kiln_err_set(err, KILN_EINVAL, "--param %s: %s has no parameter '%s'",
                                f->params[i], ir->name, name);
        char what[300];
        snprintf(what, sizeof what, "--param %s", name);
        cJSON *v = kiln_kfp_value_from_text(eq + 1, type->valuestring, what, err);
        if (!v)
            return KILN_EINVAL;
        cJSON_DeleteItemFromObjectCaseSensitive(over, name);
        cJSON_AddItemToObject(over, name, v);
    }
    if (f->source && (!cJSON_GetObjectItemCaseSensitive(defs, "source_data_bucket") ||
                      !cJSON_GetObjectItemCaseSensitive(defs, "source_data_object")))
        return kiln_err_set(err, KILN_EINVAL, "--source: %s has no source_data_bucket / "
                            "source_data_object parameters", ir->name);
    if (f->source && !strncmp(f->source, "s3://", 5)) {
        kiln_s3_url u;
        if (kiln_s3_parse_url(f->source, &u, err) != KILN_OK)
            return kiln_err_wrap(err, "--source");
        cJSON_AddStringToObject(over, "source_data_bucket", u.bucket);
        cJSON_AddStringToObject(over, "source_data_object", u.key);
    } else if (f->source) {
        char abs[PATH_MAX];
        if (!realpath(f->source, abs))
            return kiln_err_errno(err, errno, "--source %s", f->source);
        cJSON_AddStringToObject(over, "source_data_bucket", "");
        cJSON_AddStringToObject(over, "source_data_object", abs);
    }
    if (!has_param(f, "minio_endpoint"))
        set_if_declared(defs, over, "minio_endpoint", "");
    /* A local source and no S3 endpoint anywhere: the run stays on this
     * machine, the model in its artifact (never a default AWS endpoint). */
    if (f->source && strncmp(f->source, "s3://", 5) && !has_param(f, "minio_endpoint") &&
        !has_param(f, "destination_model_bucket") && !s3_endpoint_in_env()) {
        set_if_declared(defs, over, "destination_model_bucket", "");
        printf("no S3 endpoint (AWS_ENDPOINT_URL): the model package is not uploaded\n");
    }
    return KILN_OK;
}

/* The directory of this kiln binary. */
static void exe_dir(char *out, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", out, size - 1);
    out[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(out, '/');
    if (slash)
        *slash = '\0';
}

/* First of `cands` (NULL entries skipped) that is an executable file. */
static int pick(char *out, size_t size, const char *const *cands, int n)
{
    for (int i = 0; i < n; i++) {
        if (cands[i] && access(cands[i], X_OK) == 0 && kiln_is_file(cands[i])) {
            snprintf(out, size, "%s", cands[i]);
            return 1;
        }
    }
    return 0;
}

static int find_components(const local_flags *f, char *out, size_t size)
{
    char dir[PATH_MAX], a[PATH_MAX + 32], b[PATH_MAX + 32], c[PATH_MAX + 32], path[PATH_MAX + 64];
    const char *env = getenv("KILN_COMPONENTS_DIR");
    exe_dir(dir, sizeof dir);
    snprintf(a, sizeof a, "%s", f->components_dir ? f->components_dir : env ? env : "");
    snprintf(b, sizeof b, "%s", dir);
    snprintf(c, sizeof c, "%s/../components", dir);
    const char *dirs[] = {a[0] ? a : NULL, f->components_dir ? NULL : b, f->components_dir ? NULL : c};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/kiln-component", dirs[i] ? dirs[i] : "");
        if (dirs[i] && access(path, X_OK) == 0) {
            snprintf(out, size, "%s", dirs[i]);
            return 1;
        }
    }
    return 0;
}

static int find_tracking(const local_flags *f, char *out, size_t size)
{
    char dir[PATH_MAX], a[PATH_MAX + 32], b[PATH_MAX + 32];
    exe_dir(dir, sizeof dir);
    snprintf(a, sizeof a, "%s/kiln-tracking", dir);
    snprintf(b, sizeof b, "%s/../tracking/kiln-tracking", dir);
    const char *cands[] = {f->tracking_bin, f->tracking_bin ? NULL : getenv("KILN_TRACKING_BIN"),
                           f->tracking_bin ? NULL : a, f->tracking_bin ? NULL : b};
    if (pick(out, size, cands, 4))
        return 1;
    const char *path = f->tracking_bin ? NULL : getenv("PATH");
    while (path && *path) {
        const char *colon = strchr(path, ':');
        size_t n = colon ? (size_t)(colon - path) : strlen(path);
        snprintf(a, sizeof a, "%.*s/kiln-tracking", (int)n, path);
        const char *one[] = {a};
        if (pick(out, size, one, 1))
            return 1;
        path = colon ? colon + 1 : NULL;
    }
    return 0;
}

typedef struct tracking_proc {
    pid_t pid;
    char uri[64];
} tracking_proc;

static int read_port(const char *log_path)
{
    static const char marker[] = "kiln-tracking: listening on http://127.0.0.1:";
    char line[512];
    int port = 0;
    FILE *f = fopen(log_path, "r");
    while (f && !port && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, marker);
        if (p && strchr(line, '\n'))
            port = atoi(p + sizeof marker - 1);
    }
    if (f)
        fclose(f);
    return port;
}

static void tracking_stop(tracking_proc *t)
{
    int status;
    if (t->pid <= 0)
        return;
    kill(-t->pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(t->pid, &status, WNOHANG) == t->pid) {
            t->pid = 0;
            return;
        }
        usleep(50000);
    }
    kill(-t->pid, SIGKILL);
    waitpid(t->pid, &status, 0);
    t->pid = 0;
}

static int tracking_start(const char *bin, const char *dir, tracking_proc *t, kiln_err *err)
{
    char log_path[PATH_MAX + 16], db[PATH_MAX + 16], art[PATH_MAX + 16];
    if (kiln_mkdir_p(dir, err) != KILN_OK)
        return err->code;
    snprintf(log_path, sizeof log_path, "%s/server.log", dir);
    snprintf(db, sizeof db, "%s/mlflow.db", dir);
    snprintf(art, sizeof art, "%s/artifacts", dir);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return kiln_err_errno(err, errno, "%s", log_path);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(bin, bin, "--host", "127.0.0.1", "--port", "0", "--backend-store-uri", db,
              "--artifacts-destination", art, (char *)NULL);
        _exit(127);
    }
    close(fd);
    if (pid < 0)
        return kiln_err_errno(err, errno, "fork");
    setpgid(pid, pid);
    t->pid = pid;
    for (int i = 0; i < 400; i++) {
        int status, port = read_port(log_path);
        if (port) {
            snprintf(t->uri, sizeof t->uri, "http://127.0.0.1:%d", port);
            return KILN_OK;
        }
        if (waitpid(pid, &status, WNOHANG) == pid) {
            t->pid = 0;
            return kiln_err_set(err, KILN_EIO, "%s exited before listening (see %s)", bin,
                                log_path);
        }
        usleep(50000);
    }
    tracking_stop(t);
    return kiln_err_set(err, KILN_EIO, "%s did not start listening within 20 s (see %s)", bin,
                        log_path);
}

static kiln_mlflow_client *mlflow_client(const char *uri, const kiln_logger *log, kiln_err *err)
{
    kiln_mlflow_config mc;
    kiln_mlflow_config_default(&mc);
    if (kiln_mlflow_config_from_env(&mc, err) != KILN_OK ||
        kiln_mlflow_config_set(&mc, "tracking-uri", uri, err) != KILN_OK)
        return NULL;
    return kiln_mlflow_client_new(&mc, log, err);
}

/* Which MLflow: --param, else $MLFLOW_TRACKING_URI, else a kiln-tracking we start. */
static int choose_mlflow(const local_flags *f, const kiln_kfp_ir *ir, cJSON *over,
                         tracking_proc *tp, char *uri, size_t size, kiln_err *err)
{
    const cJSON *given = cJSON_GetObjectItemCaseSensitive(over, "mlflow_tracking_uri");
    const char *env = getenv("MLFLOW_TRACKING_URI");
    char bin[PATH_MAX];
    if (cJSON_IsString(given)) {
        snprintf(uri, size, "%s", given->valuestring);
        return KILN_OK;
    }
    if (env && *env) {
        snprintf(uri, size, "%s", env);
    } else {
        const char *dir = f->tracking_dir ? f->tracking_dir : ".kiln/tracking";
        if (!find_tracking(f, bin, sizeof bin))
            return kiln_err_set(err, KILN_ENOTFOUND, "no MLFLOW_TRACKING_URI and no kiln-tracking "
                                "to start (build it, or pass --tracking-bin)");
        if (tracking_start(bin, dir, tp, err) != KILN_OK)
            return err->code;
        printf("started kiln-tracking at %s (store in %s)\n", tp->uri, dir);
        snprintf(uri, size, "%s", tp->uri);
    }
    set_if_declared(param_defs(ir), over, "mlflow_tracking_uri", uri);
    return KILN_OK;
}

int kiln_cmd_pipeline_run_local(int argc, char **argv, const kiln_logger *log)
{
    local_flags f;
    kiln_err err = {0};
    kiln_kfp_local_result *res = calloc(1, sizeof *res);
    kiln_mlflow_client *mc = NULL;
    tracking_proc tp = {0};
    char comps[PATH_MAX], uri[1024];
    cJSON *over = cJSON_CreateObject();
    kiln_kfp_ir *ir = NULL;
    int rc = parse(argc, argv, &f), status = 1;
    if (rc != 0 || !res || !over) {
        local_usage(rc == 1 ? stdout : stderr);
        free(res);
        cJSON_Delete(over);
        return rc == 1 ? 0 : 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!(ir = kiln_kfp_ir_load(f.file, &err)) || build_overrides(ir, &f, over, &err) != KILN_OK) {
        status = 2;
        goto fail;
    }
    if (!find_components(&f, comps, sizeof comps)) {
        kiln_err_set(&err, KILN_ENOTFOUND, "no kiln-component program found (build it, or pass "
                     "--components-dir / set KILN_COMPONENTS_DIR)");
        goto fail;
    }
    kiln_stop_signals_install(on_signal);
    if (choose_mlflow(&f, ir, over, &tp, uri, sizeof uri, &err) != KILN_OK ||
        !(mc = mlflow_client(uri, log, &err)))
        goto fail;
    kiln_kfp_local_opts o = {.ir = ir, .params = over, .runs_dir = f.runs_dir, .run_id = f.run_id,
                             .components_dir = comps, .mlflow = mc, .out = stdout,
                             .stop = &stop_requested};
    rc = kiln_kfp_run_local(&o, res, &err);
    if (res->mlflow_run_id[0])
        printf("mlflow pipeline run: %s (%s)\n", res->mlflow_run_id, uri);
    if (rc != KILN_OK)
        goto fail;
    status = 0;
    goto done;
fail:
    kiln_log_error(log, "kiln pipeline run-local: %s", err.msg);
    if (err.code == KILN_ECANCELED)
        status = 130;
done:
    kiln_mlflow_client_free(mc);
    if (tp.pid > 0) {
        tracking_stop(&tp);
        printf("stopped kiln-tracking\n");
    }
    kiln_kfp_ir_free(ir);
    cJSON_Delete(over);
    free(res);
    return status;
}
