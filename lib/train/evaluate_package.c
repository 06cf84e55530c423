/* lib/train/evaluate_package.c — kiln_evaluate: a model package on a split,
 * results written into the eval directory. */
#include <stdio.h>
#include <string.h>

#include "common/fs.h"
#include "data/dataset.h"
#include "model/model.h"
#include "train/evaluate.h"

static int out_path(const kiln_eval_opts *o, char *out, size_t size, kiln_err *err)
{
    char name[64];
    if (o->out_dir) {
        if (strlen(o->out_dir) >= size)
            return kiln_err_set(err, KILN_ELIMIT, "evaluate: output path too long: %s",
                                o->out_dir);
        strcpy(out, o->out_dir);
        return KILN_OK;
    }
    snprintf(name, sizeof name, "eval-%s", kiln_split_name(o->split));
    return kiln_path_join(out, size, o->model_dir, name, err);
}

int kiln_evaluate(const kiln_eval_opts *opts, const kiln_logger *log, kiln_eval_metrics **out,
                  char *out_dir, size_t out_dir_size, kiln_err *err)
{
    kiln_model_info info;
    kiln_nn_backend *own_be = NULL, *be = opts->backend;
    kiln_effnet *model = NULL;
    kiln_eval_metrics *m = NULL;
    char dir[4096];
    int rc;
    *out = NULL;
    memset(&info, 0, sizeof info);
    if (!opts->model_dir || !opts->dataset_dir)
        return kiln_err_set(err, KILN_EINVAL, "evaluate: a model package and a dataset needed");
    if (opts->split < 0 || opts->split >= KILN_SPLIT_COUNT)
        return kiln_err_set(err, KILN_EINVAL, "evaluate: unknown split %d", opts->split);
    if ((rc = out_path(opts, dir, sizeof dir, err)) != KILN_OK)
        return rc;
    if (!be && !(be = own_be = kiln_nn_backend_open("auto", opts->threads, log, err)))
        return err ? err->code : KILN_EIO;
    if (!(model = kiln_model_load(opts->model_dir, be, &info, err))) {
        rc = err ? err->code : KILN_EIO;
        goto fail;
    }
    kiln_eval_model em = {.model = model, .backend = be, .num_classes = info.num_classes,
                          .classes = (const char *const *)info.classes,
                          .input_size = info.input_size, .mean = info.mean, .std = info.std,
                          .name = opts->model_dir};
    if ((rc = kiln_evaluate_model(&em, opts, log, &m, err)) != KILN_OK)
        goto fail;
    kiln_eval_context ctx = {.split = kiln_split_name(opts->split), .model_dir = opts->model_dir,
                             .dataset_dir = opts->dataset_dir, .variant = info.variant,
                             .batch_size = opts->batch_size, .input_size = info.input_size};
    if ((rc = kiln_eval_write(dir, m, &ctx, err)) != KILN_OK)
        goto fail;
    if (out_dir)
        snprintf(out_dir, out_dir_size, "%s", dir);
    *out = m;
    m = NULL;
fail:
    kiln_eval_metrics_free(m);
    kiln_effnet_destroy(model);
    kiln_nn_backend_destroy(own_be);
    kiln_model_info_clear(&info);
    return rc;
}
