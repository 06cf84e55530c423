/* lib/train/evaluate_output.c — metrics.json, confusion_matrix.json and the
 * eval directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "train/evaluate.h"

static cJSON *classes_json(const kiln_eval_metrics *m)
{
    return cJSON_CreateStringArray((const char *const *)m->classes, m->num_classes);
}

/* Counts as JSON numbers: exact up to 2^53 images, far beyond any split. */
static cJSON *matrix_json(const kiln_eval_metrics *m, int normalized)
{
    int k = m->num_classes;
    cJSON *rows = cJSON_CreateArray();
    for (int t = 0; rows && t < k; t++) {
        const uint64_t *row = m->confusion + (size_t)t * k;
        uint64_t sum = 0;
        for (int p = 0; p < k; p++)
            sum += row[p];
        cJSON *r = cJSON_CreateArray();
        if (!r || !cJSON_AddItemToArray(rows, r))
            goto fail;
        for (int p = 0; p < k; p++) {
            double v = normalized ? (sum ? (double)row[p] / (double)sum : 0.0) : (double)row[p];
            cJSON *num = cJSON_CreateNumber(v);
            if (!num || !cJSON_AddItemToArray(r, num))
                goto fail;
        }
    }
    return rows;
fail:
    cJSON_Delete(rows);
    return NULL;
}

static cJSON *avg_json(double precision, double recall, double f1)
{
    cJSON *o = cJSON_CreateObject();
    if (o && (!cJSON_AddNumberToObject(o, "precision", precision) ||
              !cJSON_AddNumberToObject(o, "recall", recall) ||
              !cJSON_AddNumberToObject(o, "f1", f1))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *per_class_json(const kiln_eval_metrics *m)
{
    cJSON *arr = cJSON_CreateArray();
    for (int c = 0; arr && c < m->num_classes; c++) {
        const kiln_eval_class *pc = &m->per_class[c];
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o) ||
            !cJSON_AddStringToObject(o, "class", m->classes[c]) ||
            !cJSON_AddNumberToObject(o, "precision", pc->precision) ||
            !cJSON_AddNumberToObject(o, "recall", pc->recall) ||
            !cJSON_AddNumberToObject(o, "f1", pc->f1) ||
            !cJSON_AddNumberToObject(o, "support", (double)pc->support) ||
            !cJSON_AddNumberToObject(o, "predicted", (double)pc->predicted) ||
            !cJSON_AddNumberToObject(o, "correct", (double)pc->correct)) {
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

static cJSON *latency_json(const kiln_eval_metrics *m)
{
    cJSON *o = cJSON_CreateObject();
    if (o && (!cJSON_AddNumberToObject(o, "ms_per_image", m->latency_ms_per_image) ||
              !cJSON_AddNumberToObject(o, "ms_per_batch", m->latency_ms_per_batch) ||
              !cJSON_AddNumberToObject(o, "images_per_second", m->images_per_second) ||
              !cJSON_AddNumberToObject(o, "batches", (double)m->batches) ||
              !cJSON_AddNumberToObject(o, "forward_seconds", m->forward_seconds))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Adds `item` (may be NULL after a failed allocation) under `key`. */
static int add(cJSON *o, const char *key, cJSON *item)
{
    if (!item)
        return 0;
    if (!cJSON_AddItemToObject(o, key, item)) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

static int add_string(cJSON *o, const char *key, const char *value)
{
    return add(o, key, value ? cJSON_CreateString(value) : cJSON_CreateNull());
}

static int add_context(cJSON *o, const kiln_eval_context *ctx)
{
    kiln_eval_context none = {0};
    if (!ctx)
        ctx = &none;
    return add_string(o, "split", ctx->split) && add_string(o, "model_dir", ctx->model_dir) &&
           add_string(o, "dataset_dir", ctx->dataset_dir) &&
           add_string(o, "variant", ctx->variant) &&
           add(o, "batch_size", cJSON_CreateNumber(ctx->batch_size)) &&
           add(o, "input_size", cJSON_CreateNumber(ctx->input_size)) &&
           add_string(o, "kiln_version", KILN_VERSION);
}

cJSON *kiln_eval_metrics_json(const kiln_eval_metrics *m, const kiln_eval_context *ctx)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !add_context(o, ctx) || !add(o, "classes", classes_json(m)) ||
        !add(o, "num_classes", cJSON_CreateNumber(m->num_classes)) ||
        !add(o, "num_images", cJSON_CreateNumber((double)m->images)) ||
        !add(o, "correct", cJSON_CreateNumber((double)m->correct)) ||
        !add(o, "accuracy", cJSON_CreateNumber(m->accuracy)) ||
        !add(o, "top_k", cJSON_CreateNumber(m->top_k)) ||
        !add(o, "top_k_correct", cJSON_CreateNumber((double)m->top_k_correct)) ||
        !add(o, "top_k_accuracy", cJSON_CreateNumber(m->top_k_accuracy)) ||
        !add(o, "per_class", per_class_json(m)) ||
        !add(o, "macro_avg", avg_json(m->macro_precision, m->macro_recall, m->macro_f1)) ||
        !add(o, "weighted_avg",
             avg_json(m->weighted_precision, m->weighted_recall, m->weighted_f1)) ||
        !add(o, "confusion_matrix", matrix_json(m, 0)) ||
        !add(o, "latency", latency_json(m))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *kiln_eval_confusion_json(const kiln_eval_metrics *m)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !add(o, "classes", classes_json(m)) || !add_string(o, "rows", "true") ||
        !add_string(o, "columns", "predicted") || !add(o, "matrix", matrix_json(m, 0)) ||
        !add(o, "normalized", matrix_json(m, 1))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int write_json(const char *dir, const char *name, cJSON *json, kiln_err *err)
{
    char path[4096];
    char *text = NULL;
    int rc = KILN_ENOMEM;
    if (!json || !(text = cJSON_Print(json))) {
        kiln_err_set(err, KILN_ENOMEM, "evaluate: out of memory writing %s", name);
        goto done;
    }
    if ((rc = kiln_path_join(path, sizeof path, dir, name, err)) != KILN_OK)
        goto done;
    rc = kiln_write_file_atomic(path, text, strlen(text), err);
done:
    free(text);
    cJSON_Delete(json);
    return rc;
}

static void png_title(char *out, size_t size, const kiln_eval_metrics *m,
                      const kiln_eval_context *ctx)
{
    snprintf(out, size, "Confusion matrix - %s split: %llu images, accuracy %.1f%%",
             ctx && ctx->split ? ctx->split : "eval", (unsigned long long)m->images,
             100.0 * m->accuracy);
}

int kiln_eval_write(const char *dir, const kiln_eval_metrics *m, const kiln_eval_context *ctx,
                    kiln_err *err)
{
    char path[4096], title[256];
    int rc = kiln_mkdir_p(dir, err);
    if (rc != KILN_OK)
        return kiln_err_wrap(err, "evaluate: output directory");
    if ((rc = write_json(dir, "metrics.json", kiln_eval_metrics_json(m, ctx), err)) != KILN_OK)
        return rc;
    rc = write_json(dir, "confusion_matrix.json", kiln_eval_confusion_json(m), err);
    if (rc != KILN_OK)
        return rc;
    if ((rc = kiln_path_join(path, sizeof path, dir, "confusion_matrix.png", err)) != KILN_OK)
        return rc;
    png_title(title, sizeof title, m, ctx);
    return kiln_eval_confusion_png(path, m, title, err);
}
