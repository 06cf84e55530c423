/* lib/train/evaluate_mlflow.c — an evaluation's numbers and files onto an
 * existing MLflow run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/evaluate.h"

#define KEY_MAX 256

/* MLflow accepts alphanumerics, '_', '-', '.', ' ' and '/' in keys. */
static void key_text(char *out, const char *split, const char *name, const char *cls)
{
    int n = snprintf(out, KEY_MAX, "%s_%s%s", split, name, cls ? cls : "");
    if (n < 0)
        n = 0;
    for (char *p = out; *p; p++) {
        char ch = *p;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '_' || ch == '-' || ch == '.' || ch == ' ' || ch == '/';
        if (!ok)
            *p = '_';
    }
}

typedef struct metric_list {
    kiln_mlflow_metric *v;
    char (*keys)[KEY_MAX];
    size_t n;
} metric_list;

static void push(metric_list *l, const char *split, const char *name, const char *cls,
                 double value)
{
    key_text(l->keys[l->n], split, name, cls);
    l->v[l->n].key = l->keys[l->n];
    l->v[l->n].value = value;
    l->v[l->n].timestamp_ms = 0;
    l->v[l->n].step = 0;
    l->n++;
}

static void fill_metrics(metric_list *l, const kiln_eval_metrics *m, const char *split)
{
    push(l, split, "accuracy", NULL, m->accuracy);
    push(l, split, "top_k_accuracy", NULL, m->top_k_accuracy);
    push(l, split, "macro_f1", NULL, m->macro_f1);
    push(l, split, "weighted_f1", NULL, m->weighted_f1);
    push(l, split, "macro_precision", NULL, m->macro_precision);
    push(l, split, "macro_recall", NULL, m->macro_recall);
    push(l, split, "latency_ms_per_image", NULL, m->latency_ms_per_image);
    push(l, split, "latency_ms_per_batch", NULL, m->latency_ms_per_batch);
    push(l, split, "images_per_second", NULL, m->images_per_second);
    for (int c = 0; c < m->num_classes; c++)
        push(l, split, "f1_", m->classes[c], m->per_class[c].f1);
}

#define N_FIXED_METRICS 9

int kiln_eval_log_mlflow(kiln_mlflow_client *c, const char *run_id, const kiln_eval_metrics *m,
                         const char *split, const char *eval_dir, kiln_err *err)
{
    size_t cap = N_FIXED_METRICS + (size_t)m->num_classes;
    metric_list l = {calloc(cap, sizeof *l.v), calloc(cap, sizeof *l.keys), 0};
    kiln_mlflow_run *run = NULL;
    char artifact_dir[KEY_MAX];
    int rc;
    if (!l.v || !l.keys) {
        rc = kiln_err_set(err, KILN_ENOMEM, "evaluate: out of memory for %zu metrics", cap);
        goto fail;
    }
    fill_metrics(&l, m, split);
    rc = kiln_mlflow_log_batch(c, run_id, l.v, l.n, NULL, 0, NULL, 0, NULL, err);
    if (rc != KILN_OK || !eval_dir)
        goto fail;
    if ((rc = kiln_mlflow_run_get(c, run_id, &run, err)) != KILN_OK)
        goto fail;
    snprintf(artifact_dir, sizeof artifact_dir, "eval-%s", split);
    rc = kiln_mlflow_artifact_upload_dir(c, run->info.artifact_uri, eval_dir, artifact_dir, NULL,
                                         err);
fail:
    if (rc != KILN_OK)
        kiln_err_wrap(err, "evaluate: logging to MLflow run %s", run_id);
    kiln_mlflow_run_free(run);
    free(l.v);
    free(l.keys);
    return rc;
}
