/* run-local: the pipeline run recorded as an MLflow run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kfp/kfp_local_internal.h"

static void warn(local_mlflow *m, const char *what, const kiln_err *err)
{
    fprintf(m->out, "warning: MLflow pipeline run %s: %s: %s\n", m->run_id, what, err->msg);
}

/* A parameter's value as MLflow stores params (text). */
static char *param_text(const cJSON *v)
{
    return cJSON_IsString(v) ? strdup(v->valuestring) : cJSON_PrintUnformatted(v);
}

int local_mlflow_start(local_mlflow *m, const char *experiment, const char *pipeline,
                       const char *run_id, const cJSON *params, kiln_err *err)
{
    char *exp_id = NULL, name[160];
    kiln_mlflow_run *run = NULL;
    kiln_mlflow_kv tags[3] = {{"kiln.pipeline", pipeline}, {"kiln.pipeline_run_id", run_id},
                              {"kiln.kind", "pipeline-run"}};
    kiln_mlflow_kv kv[64];
    char *texts[64];
    size_t n = 0;
    const cJSON *p;
    int rc = kiln_mlflow_experiment_get_or_create(m->c, experiment, &exp_id, err);
    if (rc != KILN_OK)
        return rc;
    snprintf(name, sizeof name, "%s %s", pipeline, run_id);
    kiln_mlflow_run_options ro = {.experiment_id = exp_id, .run_name = name, .source_type = "JOB",
                                  .source_name = "kiln pipeline run-local", .tags = tags,
                                  .n_tags = 3};
    rc = kiln_mlflow_run_create(m->c, &ro, &run, err);
    free(exp_id);
    if (rc != KILN_OK)
        return rc;
    snprintf(m->run_id, sizeof m->run_id, "%s", run->info.run_id);
    kiln_mlflow_run_free(run);
    cJSON_ArrayForEach(p, params) {
        if (n == 64)
            break;
        texts[n] = param_text(p);
        kv[n].key = p->string;
        kv[n].value = texts[n] ? texts[n] : "";
        n++;
    }
    rc = kiln_mlflow_log_batch(m->c, m->run_id, NULL, 0, kv, n, NULL, 0, NULL, err);
    for (size_t i = 0; i < n; i++)
        free(texts[i]);
    return rc;
}

void local_mlflow_task(local_mlflow *m, const char *task, const char *state, double seconds)
{
    char key[200];
    kiln_err err = {0};
    if (!m->c || !m->run_id[0])
        return;
    snprintf(key, sizeof key, "kiln.task.%s", task);
    if (kiln_mlflow_run_set_tag(m->c, m->run_id, key, state, &err) != KILN_OK)
        warn(m, key, &err);
    snprintf(key, sizeof key, "task_%s_seconds", task);
    if (seconds >= 0 && kiln_mlflow_log_metric(m->c, m->run_id, key, seconds, 0, 0, &err) != KILN_OK)
        warn(m, key, &err);
}

void local_mlflow_tag(local_mlflow *m, const char *key, const char *value)
{
    kiln_err err = {0};
    if (m->c && m->run_id[0] && kiln_mlflow_run_set_tag(m->c, m->run_id, key, value, &err) != KILN_OK)
        warn(m, key, &err);
}

void local_mlflow_end(local_mlflow *m, const kiln_kfp_local_result *res)
{
    kiln_err err = {0};
    kiln_mlflow_run_status st = KILN_MLFLOW_FINISHED;
    if (!m->c || !m->run_id[0])
        return;
    if (!strcmp(res->state, "FAILED")) {
        st = KILN_MLFLOW_FAILED;
        local_mlflow_tag(m, "kiln.failed_task", res->failed_task);
        local_mlflow_tag(m, "kiln.failure", res->message);
    } else if (!strcmp(res->state, "CANCELED")) {
        st = KILN_MLFLOW_KILLED;
    }
    if (kiln_mlflow_run_finish(m->c, m->run_id, st, &err) != KILN_OK)
        warn(m, "ending the run", &err);
}
