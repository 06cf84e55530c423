/* run-local: the DAG walked in order, each task's executor input built as
 * KFP's launcher builds it, its step run, its outputs collected. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/fs.h"
#include "kfp/kfp_internal.h"
#include "kfp/executor.h"
#include "kfp/kfp_local_internal.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int kiln_kfp_local_params(const kiln_kfp_ir *ir, const cJSON *overrides, cJSON **out,
                          kiln_err *err)
{
    const cJSON *defs = kfp_get(kfp_get(kfp_get(ir->spec, "root"), "inputDefinitions"),
                                "parameters");
    const cJSON *d, *o;
    cJSON *p = cJSON_CreateObject();
    *out = NULL;
    if (!p)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    cJSON_ArrayForEach(d, defs) {
        const cJSON *def = kfp_get(d, "defaultValue");
        if (def)
            cJSON_AddItemToObject(p, d->string, cJSON_Duplicate(def, 1));
    }
    cJSON_ArrayForEach(o, overrides) {
        const char *type = kfp_str(kfp_get(defs, o->string), "parameterType");
        if (!type) {
            cJSON_Delete(p);
            return kiln_err_set(err, KILN_EINVAL, "--param %s: the pipeline has no parameter "
                                "'%s'", o->string, o->string);
        }
        if (!kiln_kfp_value_fits(o, type)) {
            cJSON_Delete(p);
            return kiln_err_set(err, KILN_EINVAL, "--param %s: not a %s", o->string, type);
        }
        cJSON_DeleteItemFromObjectCaseSensitive(p, o->string);
        cJSON_AddItemToObject(p, o->string, cJSON_Duplicate(o, 1));
    }
    cJSON_ArrayForEach(d, defs) {
        if (!kfp_get(p, d->string) && !cJSON_IsTrue(kfp_get(d, "isOptional"))) {
            cJSON_Delete(p);
            return kiln_err_set(err, KILN_EINVAL, "pipeline parameter '%s' has no default: "
                                "pass --param %s=VALUE", d->string, d->string);
        }
    }
    *out = p;
    return KILN_OK;
}

typedef struct runner {
    const kiln_kfp_local_opts *o;
    kiln_kfp_local_result *res;
    FILE *out;
    cJSON *params;   /* pipeline parameter values */
    cJSON *outputs;  /* task -> {"parameters": {}, "artifacts": {name: RuntimeArtifact}} */
    local_mlflow ml;
    char *env[4];
} runner;

static cJSON *task_outputs(runner *r, const char *task)
{
    cJSON *t = cJSON_GetObjectItemCaseSensitive(r->outputs, task);
    if (!t) {
        t = cJSON_AddObjectToObject(r->outputs, task);
        cJSON_AddObjectToObject(t, "parameters");
        cJSON_AddObjectToObject(t, "artifacts");
    }
    return t;
}

/* The value a task input parameter is wired to. */
static const cJSON *param_source(runner *r, const cJSON *wire)
{
    const char *pipeline = kfp_str(wire, "componentInputParameter");
    const cJSON *tp = kfp_get(wire, "taskOutputParameter");
    if (pipeline)
        return kfp_get(r->params, pipeline);
    if (tp)
        return kfp_get(kfp_get(kfp_get(r->outputs, kfp_str(tp, "producerTask")), "parameters"),
                       kfp_str(tp, "outputParameterKey"));
    return kfp_get(kfp_get(wire, "runtimeValue"), "constant");
}

static int build_inputs(runner *r, const cJSON *task, const cJSON *comp, cJSON *inputs,
                        kiln_err *err)
{
    cJSON *pv = cJSON_AddObjectToObject(inputs, "parameterValues");
    cJSON *arts = cJSON_AddObjectToObject(inputs, "artifacts");
    const cJSON *d;
    cJSON_ArrayForEach(d, kfp_get(kfp_get(comp, "inputDefinitions"), "parameters")) {
        const cJSON *wire = kfp_get(kfp_get(kfp_get(task, "inputs"), "parameters"), d->string);
        const cJSON *v = wire ? param_source(r, wire) : kfp_get(d, "defaultValue");
        if (!v && !cJSON_IsTrue(kfp_get(d, "isOptional")))
            return kiln_err_set(err, KILN_EINVAL, "task '%s': no value for input parameter '%s'",
                                task->string, d->string);
        if (v)
            cJSON_AddItemToObject(pv, d->string, cJSON_Duplicate(v, 1));
    }
    cJSON_ArrayForEach(d, kfp_get(kfp_get(comp, "inputDefinitions"), "artifacts")) {
        const cJSON *tw = kfp_get(kfp_get(kfp_get(kfp_get(task, "inputs"), "artifacts"),
                                          d->string), "taskOutputArtifact");
        const cJSON *a = kfp_get(kfp_get(kfp_get(r->outputs, kfp_str(tw, "producerTask")),
                                         "artifacts"), kfp_str(tw, "outputArtifactKey"));
        if (!a)
            return kiln_err_set(err, KILN_EINVAL, "task '%s': no artifact for input '%s'",
                                task->string, d->string);
        cJSON *list = cJSON_AddArrayToObject(cJSON_AddObjectToObject(arts, d->string), "artifacts");
        cJSON_AddItemToArray(list, cJSON_Duplicate(a, 1));
    }
    return KILN_OK;
}

static int build_outputs(const cJSON *comp, const char *dir, cJSON *outputs, kiln_err *err)
{
    char path[PATH_MAX + 64];
    const cJSON *d;
    cJSON *params = cJSON_AddObjectToObject(outputs, "parameters");
    cJSON *arts = cJSON_AddObjectToObject(outputs, "artifacts");
    cJSON_ArrayForEach(d, kfp_get(kfp_get(comp, "outputDefinitions"), "parameters")) {
        snprintf(path, sizeof path, "%s/outputs/%s", dir, d->string);
        cJSON_AddStringToObject(cJSON_AddObjectToObject(params, d->string), "outputFile", path);
    }
    cJSON_ArrayForEach(d, kfp_get(kfp_get(comp, "outputDefinitions"), "artifacts")) {
        cJSON *a = cJSON_CreateObject();
        snprintf(path, sizeof path, "file://%s/artifacts/%s", dir, d->string);
        cJSON_AddStringToObject(a, "name", d->string);
        cJSON_AddItemToObject(a, "type", cJSON_Duplicate(kfp_get(d, "artifactType"), 1));
        cJSON_AddStringToObject(a, "uri", path);
        cJSON_AddObjectToObject(a, "metadata");
        cJSON_AddItemToArray(cJSON_AddArrayToObject(cJSON_AddObjectToObject(arts, d->string),
                                                    "artifacts"), a);
    }
    snprintf(path, sizeof path, "%s/artifacts", dir);
    if (kiln_mkdir_p(path, err) != KILN_OK)
        return err->code;
    snprintf(path, sizeof path, "%s/executor_output.json", dir);
    cJSON_AddStringToObject(outputs, "outputFile", path);
    return KILN_OK;
}

/* argv from the container's command + args, placeholders resolved, the
 * program found in components_dir. */
static int build_argv(runner *r, const cJSON *ctr, const cJSON *in, char ***argv_out,
                      kiln_err *err)
{
    int n = cJSON_GetArraySize(kfp_get(ctr, "command")) + cJSON_GetArraySize(kfp_get(ctr, "args"));
    char **argv = calloc((size_t)n + 1, sizeof *argv);
    const char *lists[] = {"command", "args"};
    const cJSON *s;
    int i = 0, rc = argv ? KILN_OK : kiln_err_set(err, KILN_ENOMEM, "out of memory");
    for (int l = 0; l < 2 && rc == KILN_OK; l++)
        cJSON_ArrayForEach(s, kfp_get(ctr, lists[l])) {
            if (rc == KILN_OK)
                rc = kiln_kfp_placeholders_resolve(s->valuestring, in, &argv[i++], err);
        }
    if (rc == KILN_OK && !strchr(argv[0], '/')) {
        char *path = NULL;
        if (asprintf(&path, "%s/%s", r->o->components_dir, argv[0]) < 0)
            path = NULL;
        if (!path || access(path, X_OK) != 0)
            rc = kiln_err_set(err, KILN_ENOTFOUND, "image %s: no local program '%s' in %s (build "
                              "kiln-component, or set KILN_COMPONENTS_DIR)",
                              kfp_str(ctr, "image"), argv[0], r->o->components_dir);
        free(argv[0]);
        argv[0] = path;
    }
    if (rc != KILN_OK) {
        for (int k = 0; argv && k < n; k++)
            free(argv[k]);
        free(argv);
        argv = NULL;
    }
    *argv_out = argv;
    return rc;
}

/* Output parameters (executor output first, then the files) and artifact
 * metadata into r->outputs[task]. */
static int collect(runner *r, const cJSON *task, const cJSON *comp, const cJSON *in,
                   kiln_err *err)
{
    cJSON *to = task_outputs(r, task->string), *eo = NULL;
    cJSON *params = cJSON_GetObjectItemCaseSensitive(to, "parameters");
    cJSON *arts = cJSON_GetObjectItemCaseSensitive(to, "artifacts");
    const char *eo_path = kfp_str(kfp_get(in, "outputs"), "outputFile");
    char *text = NULL;
    size_t len;
    const cJSON *d;
    if (kiln_is_file(eo_path) && kiln_read_file(eo_path, 1 << 24, &text, &len, err) == KILN_OK) {
        if (!(eo = cJSON_Parse(text))) {
            free(text);
            return kiln_err_set(err, KILN_EFORMAT, "task '%s': %s is not JSON", task->string,
                                eo_path);
        }
        free(text);
    }
    cJSON_ArrayForEach(d, kfp_get(kfp_get(comp, "outputDefinitions"), "artifacts")) {
        cJSON *a = cJSON_Duplicate(kiln_kfp_exec_artifact(in, 1, d->string, NULL), 1);
        const cJSON *md = kfp_get(cJSON_GetArrayItem(kfp_get(kfp_get(kfp_get(eo, "artifacts"),
                                                                     d->string), "artifacts"), 0),
                                  "metadata");
        if (md) {
            cJSON_DeleteItemFromObjectCaseSensitive(a, "metadata");
            cJSON_AddItemToObject(a, "metadata", cJSON_Duplicate(md, 1));
        }
        cJSON_AddItemToObject(arts, d->string, a);
    }
    cJSON_ArrayForEach(d, kfp_get(kfp_get(comp, "outputDefinitions"), "parameters")) {
        const char *type = kfp_str(d, "parameterType");
        const cJSON *v = kfp_get(kfp_get(eo, "parameterValues"), d->string);
        cJSON *val = v ? cJSON_Duplicate(v, 1) : NULL;
        const char *file = kfp_str(kfp_get(kfp_get(kfp_get(in, "outputs"), "parameters"),
                                           d->string), "outputFile");
        if (!val && kiln_is_file(file) && kiln_read_file(file, 1 << 20, &text, &len, err) == KILN_OK) {
            val = kiln_kfp_value_from_text(text, type, d->string, err);
            free(text);
        }
        if (!val || !kiln_kfp_value_fits(val, type)) {
            cJSON_Delete(val);
            cJSON_Delete(eo);
            return kiln_err_set(err, KILN_EFORMAT, "task '%s' did not write its %s output "
                                "parameter '%s'", task->string, type, d->string);
        }
        cJSON_AddItemToObject(params, d->string, val);
    }
    cJSON_Delete(eo);
    return KILN_OK;
}

static double duration_s(const char *s, double def)
{
    char *end;
    double v = s ? strtod(s, &end) : NAN;
    return s && end != s && (!*end || !strcmp(end, "s")) ? v : def;
}

/* Run the step with its retry policy; KILN_OK when an attempt succeeded. */
static int run_attempts(runner *r, const cJSON *task, char **argv, const char *dir,
                        kiln_kfp_local_task *t, kiln_err *err)
{
    const cJSON *rp = kfp_get(task, "retryPolicy");
    int retries = cJSON_IsNumber(kfp_get(rp, "maxRetryCount")) ?
                  kfp_get(rp, "maxRetryCount")->valueint : 0;
    double wait = duration_s(kfp_str(rp, "backoffDuration"), 0);
    double factor = cJSON_IsNumber(kfp_get(rp, "backoffFactor")) ?
                    kfp_get(rp, "backoffFactor")->valuedouble : 2;
    double cap = duration_s(kfp_str(rp, "backoffMaxDuration"), 3600);
    char log_path[PATH_MAX + 16];
    snprintf(log_path, sizeof log_path, "%s/log.txt", dir);
    local_proc p = {.task = task->string, .out = r->out, .stop = r->o->stop};
    p.log = fopen(log_path, "w");
    int rc = KILN_OK;
    for (t->attempts = 1;; t->attempts++) {
        fprintf(r->out, "task %s: RUNNING%s\n", task->string, t->attempts > 1 ? " (retry)" : "");
        if ((rc = local_proc_run(&p, argv, (const char *const *)r->env, err)) != KILN_OK)
            break;
        if (p.exit_status == 0 || p.canceled || t->attempts > retries)
            break;
        fprintf(r->out, "task %s: attempt %d failed (%s); retrying in %.0f s\n", task->string,
                t->attempts, p.last_line, wait);
        for (double slept = 0; slept < wait && !(r->o->stop && *r->o->stop); slept += 0.2)
            usleep(200000);
        wait = fmin(wait * factor, cap);
    }
    if (p.log)
        fclose(p.log);
    if (rc != KILN_OK)
        return rc;
    if (p.canceled)
        return kiln_err_set(err, KILN_ECANCELED, "stopped: %s", p.last_line);
    if (p.exit_status != 0)
        return kiln_err_set(err, KILN_EIO, "%s", p.last_line);
    return KILN_OK;
}

static int write_json(const char *path, const cJSON *j, kiln_err *err)
{
    char *text = cJSON_Print(j);
    int rc = text ? kiln_write_file_atomic(path, text, strlen(text), err)
                  : kiln_err_set(err, KILN_ENOMEM, "out of memory");
    free(text);
    return rc;
}

static int run_task(runner *r, const cJSON *task, kiln_kfp_local_task *t, kiln_err *err)
{
    const cJSON *comp = kiln_kfp_ir_task_component(r->o->ir, task);
    const cJSON *ctr = kiln_kfp_ir_task_container(r->o->ir, task);
    char dir[PATH_MAX], path[PATH_MAX + 32];
    char **argv = NULL;
    cJSON *in = cJSON_CreateObject();
    int rc = KILN_OK;
    snprintf(dir, sizeof dir, "%s/%s", r->res->run_dir, task->string);
    if (!in || kiln_mkdir_p(dir, err) != KILN_OK ||
        build_inputs(r, task, comp, cJSON_AddObjectToObject(in, "inputs"), err) != KILN_OK ||
        build_outputs(comp, dir, cJSON_AddObjectToObject(in, "outputs"), err) != KILN_OK)
        rc = err->code ? err->code : KILN_ENOMEM;
    snprintf(path, sizeof path, "%s/executor_input.json", dir);
    if (rc == KILN_OK)
        rc = write_json(path, in, err);
    if (rc == KILN_OK)
        rc = build_argv(r, ctr, in, &argv, err);
    if (rc == KILN_OK)
        rc = run_attempts(r, task, argv, dir, t, err);
    if (rc == KILN_OK)
        rc = collect(r, task, comp, in, err);
    for (size_t i = 0; argv && argv[i]; i++)
        free(argv[i]);
    free(argv);
    cJSON_Delete(in);
    return rc;
}

static void make_run_id(char *out, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;
    char stamp[32];
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, size, "%s-%04x", stamp, (unsigned)((ts.tv_nsec / 1000) ^ getpid()) & 0xffff);
}

static int start(runner *r, kiln_err *err)
{
    const kiln_kfp_local_opts *o = r->o;
    char cwd[PATH_MAX];
    const char *runs = o->runs_dir ? o->runs_dir : ".kiln/pipeline-runs";
    snprintf(r->res->run_id, sizeof r->res->run_id, "%s", o->run_id ? o->run_id : "");
    if (!o->run_id)
        make_run_id(r->res->run_id, sizeof r->res->run_id);
    if (runs[0] != '/' && getcwd(cwd, sizeof cwd))
        snprintf(r->res->run_dir, sizeof r->res->run_dir, "%s/%s/%s", cwd, runs, r->res->run_id);
    else
        snprintf(r->res->run_dir, sizeof r->res->run_dir, "%s/%s", runs, r->res->run_id);
    if (kiln_is_dir(r->res->run_dir))
        return kiln_err_set(err, KILN_EINVAL, "run directory %s exists already", r->res->run_dir);
    if (kiln_mkdir_p(r->res->run_dir, err) != KILN_OK ||
        kiln_kfp_local_params(o->ir, o->params, &r->params, err) != KILN_OK)
        return err->code;
    if (!(r->outputs = cJSON_CreateObject()))
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    const char *name = kfp_str(kfp_get(o->ir->spec, "pipelineInfo"), "name");
    if (o->mlflow) {
        const char *exp = o->experiment ? o->experiment
                                        : kfp_str(r->params, "mlflow_experiment_name");
        r->ml.c = o->mlflow;
        r->ml.out = r->out;
        if (local_mlflow_start(&r->ml, exp ? exp : "kiln", name, r->res->run_id, r->params, err) !=
            KILN_OK)
            return kiln_err_wrap(err, "MLflow: recording the pipeline run");
        snprintf(r->res->mlflow_run_id, sizeof r->res->mlflow_run_id, "%s", r->ml.run_id);
        if (asprintf(&r->env[0], "KILN_MLFLOW_PARENT_RUN_ID=%s", r->ml.run_id) < 0)
            r->env[0] = NULL;
    }
    if (asprintf(&r->env[r->env[0] ? 1 : 0], "KILN_PIPELINE_RUN_ID=%s", r->res->run_id) < 0)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    fprintf(r->out, "pipeline %s: run %s in %s%s%s\n", name, r->res->run_id, r->res->run_dir,
            r->ml.run_id[0] ? "; MLflow run " : "", r->ml.run_id);
    return KILN_OK;
}

static void write_summary(runner *r)
{
    cJSON *j = cJSON_CreateObject(), *tasks = cJSON_AddArrayToObject(j, "tasks");
    char path[PATH_MAX + 16];
    kiln_err err = {0};
    cJSON_AddStringToObject(j, "run_id", r->res->run_id);
    cJSON_AddStringToObject(j, "state", r->res->state);
    cJSON_AddNumberToObject(j, "seconds", r->res->seconds);
    cJSON_AddStringToObject(j, "mlflow_run_id", r->res->mlflow_run_id);
    cJSON_AddStringToObject(j, "failed_task", r->res->failed_task);
    cJSON_AddStringToObject(j, "message", r->res->message);
    cJSON_AddItemToObject(j, "parameters", cJSON_Duplicate(r->params, 1));
    for (size_t i = 0; i < r->res->n_tasks; i++) {
        const kiln_kfp_local_task *t = &r->res->tasks[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "state", t->state);
        cJSON_AddNumberToObject(o, "seconds", t->seconds);
        cJSON_AddNumberToObject(o, "attempts", t->attempts);
        cJSON_AddItemToObject(o, "outputs", cJSON_Duplicate(kfp_get(r->outputs, t->name), 1));
        cJSON_AddItemToArray(tasks, o);
    }
    snprintf(path, sizeof path, "%s/run.json", r->res->run_dir);
    if (write_json(path, j, &err) != KILN_OK)
        fprintf(r->out, "warning: %s\n", err.msg);
    cJSON_Delete(j);
}

int kiln_kfp_run_local(const kiln_kfp_local_opts *o, kiln_kfp_local_result *res,
                       kiln_err *err)
{
    runner r = {.o = o, .res = res, .out = o->out ? o->out : stdout};
    const cJSON *order[KILN_KFP_MAX_TASKS];
    size_t n = 0;
    double t0 = now_s();
    int rc;
    memset(res, 0, sizeof *res);
    snprintf(res->state, sizeof res->state, "FAILED");
    if ((rc = kiln_kfp_ir_order(o->ir, order, KILN_KFP_MAX_TASKS, &n, err)) != KILN_OK ||
        (rc = start(&r, err)) != KILN_OK)
        goto done;
    res->n_tasks = n;
    for (size_t i = 0; i < n; i++) {
        kiln_kfp_local_task *t = &res->tasks[i];
        snprintf(t->name, sizeof t->name, "%s", order[i]->string);
        snprintf(t->state, sizeof t->state, "NOT_RUN");
    }
    for (size_t i = 0; i < n && rc == KILN_OK; i++) {
        kiln_kfp_local_task *t = &res->tasks[i];
        double ts = now_s();
        rc = run_task(&r, order[i], t, err);
        t->seconds = now_s() - ts;
        snprintf(t->state, sizeof t->state, "%s", rc == KILN_OK ? "SUCCEEDED"
                                                  : rc == KILN_ECANCELED ? "CANCELED" : "FAILED");
        fprintf(r.out, "task %s: %s in %.2f s%s%s\n", t->name, t->state, t->seconds,
                rc == KILN_OK ? "" : ": ", rc == KILN_OK ? "" : err->msg);
        local_mlflow_task(&r.ml, t->name, t->state, t->seconds);
        if (rc != KILN_OK) {
            snprintf(res->failed_task, sizeof res->failed_task, "%s", t->name);
            snprintf(res->message, sizeof res->message, "%s", err->msg);
            kiln_err_wrap(err, "task '%s' %s", t->name,
                          rc == KILN_ECANCELED ? "was stopped" : "failed");
            if (rc != KILN_ECANCELED)
                rc = err->code = KILN_EIO;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!strcmp(res->tasks[i].state, "NOT_RUN"))
            fprintf(r.out, "task %s: NOT_RUN (an upstream task failed)\n", res->tasks[i].name);
    snprintf(res->state, sizeof res->state, "%s", rc == KILN_OK ? "SUCCEEDED"
                                              : rc == KILN_ECANCELED ? "CANCELED" : "FAILED");
    const char *train_run = kfp_str(kfp_get(kfp_get(r.outputs, "train"), "parameters"), "run_id");
    if (train_run)
        local_mlflow_tag(&r.ml, "kiln.train_run_id", train_run);
done:
    res->seconds = now_s() - t0;
    if (r.params) {
        local_mlflow_end(&r.ml, res);
        write_summary(&r);
        fprintf(r.out, "pipeline run %s: %s in %.2f s\n", res->run_id, res->state, res->seconds);
    }
    cJSON_Delete(r.params);
    cJSON_Delete(r.outputs);
    for (int i = 0; i < 4; i++)
        free(r.env[i]);
    return rc;
}
