/* lib/train/evaluate_run.c — one pass of a model over a split: checks,
 * batches, eval forwards, timing, counting. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/dataset.h"
#include "data/loader.h"
#include "train/evaluate.h"

void kiln_eval_opts_default(kiln_eval_opts *o)
{
    memset(o, 0, sizeof *o);
    o->split = KILN_SPLIT_TEST;
    o->batch_size = 32;
    o->threads = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* "[a, b, c]" into out, cut with "..." when it does not fit. */
static void list_text(char *out, size_t size, const char *const *names, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i <= n && used + 1 < size; i++) {
        int w = snprintf(out + used, size - used, "%s%s%s", i == 0 ? "[" : "",
                         i == n ? "" : names[i], i == n ? "]" : (i + 1 < n ? ", " : ""));
        if (w < 0 || (size_t)w >= size - used) {
            if (size > 4)
                strcpy(out + size - 4, "...");
            return;
        }
        used += (size_t)w;
    }
}

static int check_classes(const kiln_manifest *man, const kiln_eval_model *em,
                         const char *dataset_dir, kiln_err *err)
{
    int same = man->n_classes == (size_t)em->num_classes;
    for (int c = 0; same && c < em->num_classes; c++)
        same = strcmp(man->classes[c], em->classes[c]) == 0;
    if (same)
        return KILN_OK;
    char ds[400], model[400];
    list_text(ds, sizeof ds, (const char *const *)man->classes, man->n_classes);
    list_text(model, sizeof model, em->classes, (size_t)em->num_classes);
    return kiln_err_set(err, KILN_EINVAL,
                        "dataset %s has classes %s (%zu) but model %s has classes %s (%d); "
                        "they must be the same, in the same order", dataset_dir, ds,
                        man->n_classes, em->name ? em->name : "", model, em->num_classes);
}

static int check_split(const kiln_manifest *man, const kiln_eval_opts *o, kiln_err *err)
{
    if (o->split < 0 || o->split >= KILN_SPLIT_COUNT)
        return kiln_err_set(err, KILN_EINVAL, "evaluate: unknown split %d", o->split);
    if (man->splits[o->split].count > 0)
        return KILN_OK;
    return kiln_err_set(err, KILN_EINVAL,
                        "dataset %s has no images in split '%s' (train %u, val %u, test %u); "
                        "evaluate another split", o->dataset_dir, kiln_split_name(o->split),
                        man->splits[KILN_SPLIT_TRAIN].count, man->splits[KILN_SPLIT_VAL].count,
                        man->splits[KILN_SPLIT_TEST].count);
}

/* The loader normalises with the manifest's mean/std; the model wants its
 * own. When they differ, x' = x * s_man / s_model + (m_man - m_model) /
 * s_model per channel maps one onto the other exactly (an affine map). */
typedef struct renorm {
    int active;
    float a[3], b[3];
} renorm;

static void renorm_init(renorm *r, const kiln_manifest *man, const kiln_eval_model *em)
{
    memset(r, 0, sizeof *r);
    for (int c = 0; c < 3; c++) {
        r->a[c] = (float)(man->std[c] / em->std[c]);
        r->b[c] = (float)((man->mean[c] - em->mean[c]) / em->std[c]);
        if (fabs(man->mean[c] - em->mean[c]) > 1e-6 || fabs(man->std[c] - em->std[c]) > 1e-6)
            r->active = 1;
    }
}

static void renorm_apply(const renorm *r, const kiln_batch *b, float *out)
{
    size_t plane = (size_t)b->height * b->width;
    for (int i = 0; i < b->n; i++)
        for (int c = 0; c < 3; c++) {
            const float *src = b->x + ((size_t)i * 3 + c) * plane;
            float *dst = out + ((size_t)i * 3 + c) * plane;
            for (size_t p = 0; p < plane; p++)
                dst[p] = src[p] * r->a[c] + r->b[c];
        }
}

typedef struct eval_pass {
    kiln_nn_backend *be;
    kiln_effnet *model;
    int size, planned;
    float *dev_x;       /* backend memory, batch_size images */
    float *logits;      /* host, batch_size rows */
    float *staging;     /* host, for renormalised input; NULL when not needed */
    renorm rn;
} eval_pass;

/* Forward one batch and count it; only the forward is timed. */
static int eval_batch(eval_pass *p, const kiln_batch *b, kiln_eval_metrics *m, kiln_err *err)
{
    const kiln_nn_ops *ops = p->be->ops;
    size_t in_bytes = (size_t)b->n * 3 * p->size * p->size * sizeof(float);
    size_t out_bytes = (size_t)b->n * m->num_classes * sizeof(float);
    const float *src = b->x;
    int rc;
    if (b->n != p->planned) {
        if ((rc = kiln_effnet_plan_inference(p->model, b->n, p->size, p->size, err)) != KILN_OK)
            return rc;
        p->planned = b->n;
    }
    if (p->rn.active) {
        renorm_apply(&p->rn, b, p->staging);
        src = p->staging;
    }
    double t0 = now_s();
    if ((rc = ops->upload(p->be, p->dev_x, src, in_bytes, err)) != KILN_OK)
        return rc;
    const float *dev_logits = kiln_effnet_forward(p->model, p->dev_x, 0, 0, err);
    if (!dev_logits)
        return err->code;
    if ((rc = ops->sync(p->be, err)) != KILN_OK ||
        (rc = ops->download(p->be, p->logits, dev_logits, out_bytes, err)) != KILN_OK)
        return rc;
    kiln_eval_metrics_add_time(m, now_s() - t0);
    return kiln_eval_metrics_add(m, p->logits, b->labels, b->n, err);
}

static int eval_loop(eval_pass *p, kiln_loader *l, kiln_eval_metrics *m, kiln_err *err)
{
    const kiln_batch *b;
    int rc, got;
    if ((rc = kiln_loader_start_epoch(l, 0, err)) != KILN_OK)
        return rc;
    while ((got = kiln_loader_next(l, &b, err)) == 1)
        if ((rc = eval_batch(p, b, m, err)) != KILN_OK)
            return rc;
    return got == 0 ? KILN_OK : err->code;
}

static kiln_loader *open_loader(const kiln_eval_opts *o, int size, kiln_err *err)
{
    kiln_loader_opts lo;
    kiln_loader_opts_default(&lo);
    lo.split = o->split;
    lo.batch_size = o->batch_size;
    lo.out_size = size;
    lo.threads = o->threads;
    lo.shuffle = 0;
    return kiln_loader_open(o->dataset_dir, &lo, err);
}

static int check_opts(const kiln_eval_model *em, const kiln_eval_opts *o, kiln_err *err)
{
    if (!o->dataset_dir || !em->model || !em->backend || !em->classes || !em->mean || !em->std)
        return kiln_err_set(err, KILN_EINVAL, "evaluate: dataset, model and backend required");
    if (o->batch_size < 1 || o->threads < 1 || o->top_k < 0)
        return kiln_err_set(err, KILN_EINVAL,
                            "evaluate: batch size (%d) and threads (%d) must be >= 1, top-k "
                            "(%d) >= 0", o->batch_size, o->threads, o->top_k);
    if (kiln_effnet_num_classes(em->model) != em->num_classes)
        return kiln_err_set(err, KILN_EINVAL,
                            "evaluate: model %s has %d outputs but lists %d classes",
                            em->name ? em->name : "", kiln_effnet_num_classes(em->model),
                            em->num_classes);
    return KILN_OK;
}

int kiln_evaluate_model(const kiln_eval_model *em, const kiln_eval_opts *opts,
                        const kiln_logger *log, kiln_eval_metrics **out, kiln_err *err)
{
    kiln_manifest man;
    kiln_loader *l = NULL;
    kiln_eval_metrics *m = NULL;
    eval_pass p = {.be = em->backend, .model = em->model, .size = em->input_size};
    kiln_err local;
    int rc, man_ok = 0;
    if (!err)
        err = &local; /* the codes of failed calls are needed below */
    kiln_err_clear(err);
    *out = NULL;
    memset(&man, 0, sizeof man);
    if ((rc = check_opts(em, opts, err)) != KILN_OK)
        return rc;
    if ((rc = kiln_manifest_read(opts->dataset_dir, &man, err)) != KILN_OK)
        return rc;
    man_ok = 1;
    if ((rc = check_classes(&man, em, opts->dataset_dir, err)) != KILN_OK ||
        (rc = check_split(&man, opts, err)) != KILN_OK)
        goto fail;
    if (man.image_size != (uint32_t)em->input_size)
        kiln_log_warn(log, "evaluate: dataset images are %ux%u, the model takes %dx%d: resizing",
                      man.image_size, man.image_size, em->input_size, em->input_size);
    renorm_init(&p.rn, &man, em);
    if (!(m = kiln_eval_metrics_new(em->num_classes, em->classes, opts->top_k, err)) ||
        !(l = open_loader(opts, em->input_size, err))) {
        rc = err->code;
        goto fail;
    }
    size_t in_floats = (size_t)opts->batch_size * 3 * p.size * p.size;
    p.dev_x = em->backend->ops->alloc(em->backend, in_floats * sizeof(float), err);
    p.logits = malloc((size_t)opts->batch_size * em->num_classes * sizeof(float));
    p.staging = p.rn.active ? malloc(in_floats * sizeof(float)) : NULL;
    if (!p.dev_x || !p.logits || (p.rn.active && !p.staging)) {
        rc = p.dev_x ? kiln_err_set(err, KILN_ENOMEM, "evaluate: out of memory for batch buffers")
                     : (int)err->code;
        goto fail;
    }
    kiln_log_info(log, "evaluate: %u images of split '%s' in %u batches of %d",
                  kiln_loader_num_images(l), kiln_split_name(opts->split),
                  kiln_loader_batches_per_epoch(l), opts->batch_size);
    if ((rc = eval_loop(&p, l, m, err)) != KILN_OK)
        goto fail;
    kiln_eval_metrics_finish(m);
    *out = m;
    m = NULL;
fail:
    if (p.dev_x)
        em->backend->ops->release(em->backend, p.dev_x);
    free(p.logits);
    free(p.staging);
    kiln_loader_close(l);
    kiln_eval_metrics_free(m);
    if (man_ok)
        kiln_manifest_free(&man);
    return rc;
}
