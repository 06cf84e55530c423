/* train.c — the training loop: set-up, epochs of train batches and a val
 * pass, best-epoch bookkeeping, the package at the end. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/rng.h"
#include "model/model.h"
#include "train/train_internal.h"

void kiln_train_opts_default(kiln_train_opts *o)
{
    memset(o, 0, sizeof *o);
    kiln_config_defaults(&o->cfg);
    o->threads = 1;
    o->seed = 42;
    o->warmup_epochs = 1;
    o->warmup_start_factor = 0.1;
    o->device = "cpu";
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int stopped(const train_ctx *c)
{
    return c->o->stop && *c->o->stop;
}

/* --- set-up ----------------------------------------------------------- */

static int open_data(train_ctx *c, kiln_err *err)
{
    const kiln_train_opts *o = c->o;
    char manifest[TRAIN_PATH_MAX];
    int rc = kiln_path_join(manifest, sizeof manifest, o->data_dir, "manifest.json", err);
    if (rc != KILN_OK)
        return rc;
    if (access(manifest, F_OK) != 0)
        return kiln_err_set(err, KILN_ENOTFOUND,
                            "--data %s is not a prepared dataset: it has no manifest.json "
                            "(make one with: kiln prepare --zip data.zip --out %s)",
                            o->data_dir, o->data_dir);
    rc = kiln_manifest_read(o->data_dir, &c->man, err);
    if (rc != KILN_OK)
        return kiln_err_wrap(err, "--data %s", o->data_dir);
    c->have_man = 1;
    c->size = (int)c->man.image_size;
    c->classes = (int)c->man.n_classes;
    if (c->dataset_sha[0] && strcmp(c->dataset_sha, c->man.source_sha256) != 0)
        return kiln_err_set(err, KILN_EINVAL,
                            "--resume: the checkpoint was trained on dataset %s, --data %s is %s",
                            c->dataset_sha, o->data_dir, c->man.source_sha256);
    snprintf(c->dataset_sha, sizeof c->dataset_sha, "%s", c->man.source_sha256);
    if (c->man.splits[KILN_SPLIT_VAL].count == 0)
        return kiln_err_set(err, KILN_EINVAL,
                            "--data %s has no val images: prepare it with --val > 0 (or, for a "
                            "zip that arrives split, with a val/ folder)", o->data_dir);
    kiln_loader_opts lo;
    kiln_loader_opts_default(&lo);
    lo.batch_size = c->batch;
    lo.threads = o->cfg.data.workers;
    lo.seed = o->seed;
    lo.shuffle = 1;
    /* A last batch of one image would give BatchNorm a zero variance. */
    lo.drop_last = c->man.splits[KILN_SPLIT_TRAIN].count >= (uint32_t)c->batch;
    lo.random_resized_crop = o->cfg.augment.random_resized_crop;
    lo.scale_min = o->cfg.augment.scale_min;
    lo.scale_max = o->cfg.augment.scale_max;
    lo.horizontal_flip = o->cfg.augment.horizontal_flip;
    /* Bytes: the backend normalises them after a copy a quarter the size. */
    lo.u8 = 1;
    if (!(c->train = kiln_loader_open(o->data_dir, &lo, err)))
        return kiln_err_wrap(err, "--data %s (train split)", o->data_dir);
    kiln_loader_opts_default(&lo);
    lo.split = KILN_SPLIT_VAL;
    lo.batch_size = c->batch;
    lo.threads = o->cfg.data.workers;
    lo.seed = o->seed;
    lo.u8 = 1;
    if (!(c->val = kiln_loader_open(o->data_dir, &lo, err)))
        return kiln_err_wrap(err, "--data %s (val split)", o->data_dir);
    c->bpe = kiln_loader_batches_per_epoch(c->train);
    if (c->bpe == 0)
        return kiln_err_set(err, KILN_EINVAL, "--data %s has no train images", o->data_dir);
    return KILN_OK;
}

static int make_model(train_ctx *c, kiln_err *err)
{
    const kiln_train_opts *o = c->o;
    if (!(c->be = kiln_nn_backend_open_precision(o->device, o->cfg.train.precision, o->threads,
                                                 o->log, err)))
        return err ? (int)err->code : KILN_EDEVICE;
    if (!(c->model = kiln_effnet_create(o->cfg.train.model, c->classes, c->be, err)))
        return err ? (int)err->code : KILN_ENOMEM;
    int rc = kiln_effnet_init(c->model, o->seed, err);
    if (rc == KILN_OK && o->init_weights && !o->resume &&
        (rc = kiln_effnet_load(c->model, o->init_weights, KILN_EFFNET_LOAD_NEW_HEAD, o->seed,
                               err)) != KILN_OK)
        kiln_err_wrap(err, "--init-weights %s", o->init_weights);
    if (rc != KILN_OK)
        return rc;
    kiln_optim_config oc;
    float lr = (float)o->cfg.train.learning_rate, wd = (float)o->cfg.train.weight_decay;
    if (strcmp(o->cfg.train.optimizer, "sgd") == 0)
        kiln_optim_config_sgd(&oc, lr, (float)o->cfg.train.momentum, 0, wd);
    else
        kiln_optim_config_adamw(&oc, lr, wd);
    /* The two regions of the flat buffers: decay, then no decay. */
    size_t decay = kiln_effnet_decay_floats(c->model), all = kiln_effnet_flat_floats(c->model);
    float *p = kiln_effnet_params_flat(c->model), *g = kiln_effnet_grads_flat(c->model);
    kiln_optim_param params[2] = {{p, g, decay, 0}, {p + decay, g + decay, all - decay, 1}};
    if (!(c->optim = kiln_optim_create(c->be, &oc, params, 2, err)))
        return err ? (int)err->code : KILN_ENOMEM;
    return KILN_OK;
}

static int make_buffers(train_ctx *c, kiln_err *err)
{
    kiln_nn_backend *be = c->be;
    size_t b = (size_t)c->batch, px = (size_t)3 * c->size * c->size;
    size_t lut_bytes = 3 * 256 * sizeof(float);
    c->x_dev = be->ops->alloc(be, b * px * sizeof(float), err);
    c->x_u8_dev = c->x_dev ? be->ops->alloc(be, b * px, err) : NULL;
    c->lut_dev = c->x_u8_dev ? be->ops->alloc(be, lut_bytes, err) : NULL;
    if (c->lut_dev &&
        be->ops->upload(be, c->lut_dev, kiln_loader_lut(c->train), lut_bytes, err) != KILN_OK)
        return (int)err->code;
    c->y_dev = c->lut_dev ? be->ops->alloc(be, b * sizeof(int32_t), err) : NULL;
    c->probs_dev = c->y_dev ? be->ops->alloc(be, b * c->classes * sizeof(float), err) : NULL;
    c->dlogits_dev = c->probs_dev ? be->ops->alloc(be, b * c->classes * sizeof(float), err) : NULL;
    c->probs_host = malloc(b * c->classes * sizeof(float));
    if (!c->dlogits_dev || !c->probs_host)
        return err && (int)err->code ? (int)err->code
                                : kiln_err_set(err, KILN_ENOMEM, "out of memory for batches");
    return KILN_OK;
}

static int make_schedule(train_ctx *c, kiln_err *err)
{
    const kiln_train_opts *o = c->o;
    int64_t total = (int64_t)c->epochs * c->bpe;
    if (strcmp(o->cfg.train.lr_schedule, "one_cycle") == 0) {
        kiln_lr_one_cycle(&c->sched, o->cfg.train.learning_rate, total);
        c->sched.pct_start = o->cfg.train.one_cycle_pct_start;
        return kiln_lr_schedule_check(&c->sched, err);
    }
    int64_t warm = (int64_t)o->warmup_epochs * c->bpe;
    if (warm > total / 2)
        warm = total / 2;
    kiln_lr_warmup_cosine(&c->sched, o->cfg.train.learning_rate, total, warm,
                          o->warmup_start_factor);
    return kiln_lr_schedule_check(&c->sched, err);
}

/* --- one batch -------------------------------------------------------- */

static int upload_batch(train_ctx *c, const kiln_batch *b, kiln_err *err)
{
    kiln_nn_backend *be = c->be;
    int hw = c->size * c->size;
    int rc = be->ops->upload(be, c->x_u8_dev, b->x_u8, (size_t)b->n * 3 * hw, err);
    if (rc == KILN_OK)
        rc = be->ops->normalize_u8(be, b->n, 3, hw, c->x_u8_dev, c->lut_dev, c->x_dev, err);
    if (rc == KILN_OK)
        rc = be->ops->upload(be, c->y_dev, b->labels, (size_t)b->n * sizeof(int32_t), err);
    return rc;
}

/* Enqueues the forward and the loss: the loss lands in *loss and the
 * probabilities in probs_host (at once, or after graph_end in a graph). */
static int forward_enqueue(train_ctx *c, const kiln_batch *b, int train, double *loss,
                           kiln_err *err)
{
    kiln_nn_backend *be = c->be;
    kiln_rng r;
    kiln_rng_derive(&r, c->o->seed, 0x7472616eull, (uint64_t)c->step);
    int rc = upload_batch(c, b, err);
    const float *logits = rc == KILN_OK
                              ? kiln_effnet_forward(c->model, c->x_dev, train, kiln_rng_next(&r), err)
                              : NULL;
    if (!logits)
        return err && (int)err->code ? (int)err->code : KILN_EIO;
    rc = be->ops->xent_forward_backward(be, b->n, c->classes, logits, c->y_dev,
                                        (float)c->o->cfg.train.label_smoothing, c->probs_dev,
                                        c->dlogits_dev, loss, err);
    if (rc == KILN_OK)
        rc = be->ops->download(be, c->probs_host, c->probs_dev,
                               (size_t)b->n * c->classes * sizeof(float), err);
    return rc;
}

/* Checks the batch's loss and adds it and the correct count to the sums. */
static int account_batch(train_ctx *c, const kiln_batch *b, int train, double loss,
                         double *loss_sum, uint64_t *correct, kiln_err *err)
{
    if (!isfinite(loss) && train)
        return kiln_err_set(err, KILN_EINVAL,
                            "epoch %d, batch %u of %u (step %lld): the training loss is %g; "
                            "lower the learning rate (--lr)", c->epoch + 1, c->batch_pos + 1,
                            c->bpe, (long long)c->step + 1, loss);
    if (!isfinite(loss))
        return kiln_err_set(err, KILN_EINVAL,
                            "epoch %d: the validation loss is %g; the weights diverged (lower "
                            "the learning rate, --lr)", c->epoch + 1, loss);
    *loss_sum += loss * b->n;
    for (int i = 0; i < b->n; i++) {
        const float *p = c->probs_host + (size_t)i * c->classes;
        int best = 0;
        for (int k = 1; k < c->classes; k++)
            if (p[k] > p[best])
                best = k;
        *correct += best == b->labels[i];
    }
    return KILN_OK;
}

/* Forward (and loss); accumulates the loss sum and correct count. */
static int forward_loss(train_ctx *c, const kiln_batch *b, int train, double *loss_sum,
                        uint64_t *correct, kiln_err *err)
{
    double loss = 0;
    int rc = kiln_effnet_plan(c->model, b->n, c->size, c->size, err);
    if (rc == KILN_OK)
        rc = forward_enqueue(c, b, train, &loss, err);
    return rc == KILN_OK ? account_batch(c, b, train, loss, loss_sum, correct, err) : rc;
}

/* Backward and the optimizer step at this step's learning rate. */
static int update_enqueue(train_ctx *c, kiln_err *err)
{
    int rc = kiln_effnet_backward(c->model, c->dlogits_dev, err);
    if (rc != KILN_OK)
        return rc;
    kiln_optim_set_lr(c->optim, (float)kiln_lr_at(&c->sched, c->step));
    if (c->sched.kind == KILN_LR_ONE_CYCLE && c->sched.cycle_momentum)
        kiln_optim_set_momentum(c->optim, (float)kiln_momentum_at(&c->sched, c->step, 0.9));
    return kiln_optim_step(c->optim, err);
}

/* Whether this step runs as a step graph. Not the first step of a process:
 * it chooses the conv algorithms and sizes the workspaces, which cannot
 * happen while a graph records. A graph recorded over an older plan of the
 * model (the val pass's short last batch moved the buffers) is dropped, so
 * graph_begin records it again. */
static int use_graph(train_ctx *c)
{
    kiln_nn_backend *be = c->be;
    if (!c->o->cuda_graphs || !be->ops->graph_begin || c->eager_steps == 0)
        return 0;
    uint64_t plan = kiln_effnet_plan_generation(c->model);
    if (c->graph && c->graph_plan != plan) {
        be->ops->graph_free(be, c->graph);
        c->graph = NULL;
    }
    c->graph_plan = plan;
    return 1;
}

/* One step as a graph: recorded or replayed between graph_begin and
 * graph_end; the loss is known only after the launch, so a non-finite one
 * stops the run after its update (outside a graph, before). */
static int graph_step(train_ctx *c, const kiln_batch *b, double *loss, kiln_err *err)
{
    kiln_nn_backend *be = c->be;
    int recording = c->graph == NULL;
    int rc = be->ops->graph_begin(be, &c->graph, err);
    if (rc != KILN_OK)
        return rc;
    if ((rc = forward_enqueue(c, b, 1, loss, err)) == KILN_OK)
        rc = update_enqueue(c, err);
    if (rc != KILN_OK) {
        be->ops->graph_cancel(be, c->graph);
        return rc;
    }
    if ((rc = be->ops->graph_end(be, c->graph, err)) == KILN_OK) {
        c->graph_steps++;
        c->graph_recordings += recording;
    }
    return rc;
}

static int train_step(train_ctx *c, const kiln_batch *b, kiln_err *err)
{
    double loss = 0;
    int rc = kiln_effnet_plan(c->model, b->n, c->size, c->size, err);
    if (rc == KILN_OK && use_graph(c)) {
        if ((rc = graph_step(c, b, &loss, err)) == KILN_OK)
            rc = account_batch(c, b, 1, loss, &c->sum_loss, &c->correct, err);
        if (rc != KILN_OK)
            return kiln_err_wrap(err, "step %lld, run as a CUDA graph (without --cuda-graphs it runs eagerly)",
                                 (long long)c->step + 1);
    } else {
        if (rc == KILN_OK)
            rc = forward_enqueue(c, b, 1, &loss, err);
        if (rc == KILN_OK)
            rc = account_batch(c, b, 1, loss, &c->sum_loss, &c->correct, err);
        if (rc == KILN_OK)
            rc = update_enqueue(c, err);
        if (rc != KILN_OK)
            return rc;
        c->eager_steps++;
    }
    c->step++;
    c->seen += (uint64_t)b->n;
    return KILN_OK;
}

/* --- one epoch -------------------------------------------------------- */

static void report_progress(train_ctx *c, double t0, uint64_t images, uint32_t done_in_run,
                            uint32_t total_in_run)
{
    if (!c->o->on_progress)
        return;
    double dt = now_s() - t0;
    kiln_train_progress p = {.epoch = c->epoch + 1, .epochs = c->epochs, .batch = c->batch_pos,
                             .batches = c->bpe, .images_per_s = dt > 0 ? images / dt : 0,
                             .loss = c->seen ? c->sum_loss / c->seen : 0};
    p.eta_s = done_in_run ? dt / done_in_run * (total_in_run - done_in_run) : 0;
    c->o->on_progress(c->o->cb_ctx, &p);
}

/* Train batches from batch_pos to the end of the epoch; ECANCELED on stop. */
static int train_batches(train_ctx *c, double t0, uint32_t *done_in_run, kiln_err *err)
{
    const kiln_batch *b;
    uint64_t images = 0;
    uint32_t total = (uint32_t)(c->epochs - c->epoch) * c->bpe + c->batch_pos + *done_in_run;
    int rc = kiln_loader_start_epoch(c->train, c->epoch, err);
    /* A resumed epoch: the loader's batches depend only on (seed, epoch,
     * position), so skipping the ones done gives the same rest. */
    for (uint32_t i = 0; rc == KILN_OK && i < c->batch_pos; i++) {
        int got = kiln_loader_next(c->train, &b, err);
        if (got < 0)
            return err ? (int)err->code : KILN_EIO;
        if (got == 0)
            return kiln_err_set(err, KILN_EFORMAT, "checkpoint position past the epoch");
    }
    while (rc == KILN_OK && c->batch_pos < c->bpe) {
        if (stopped(c))
            return KILN_ECANCELED;
        int got = kiln_loader_next(c->train, &b, err);
        if (got <= 0)
            return got < 0 ? (err ? (int)err->code : KILN_EIO) : KILN_OK;
        if ((rc = train_step(c, b, err)) != KILN_OK)
            return rc;
        c->batch_pos++;
        images += (uint64_t)b->n;
        (*done_in_run)++;
        report_progress(c, t0, images, *done_in_run, total);
    }
    return rc;
}

static int evaluate(train_ctx *c, double *loss, double *acc, kiln_err *err)
{
    const kiln_batch *b;
    double sum = 0;
    uint64_t correct = 0, n = 0;
    int rc = kiln_loader_start_epoch(c->val, 0, err), got;
    while (rc == KILN_OK && (got = kiln_loader_next(c->val, &b, err)) == 1) {
        if (stopped(c))
            return KILN_ECANCELED;
        rc = forward_loss(c, b, 0, &sum, &correct, err);
        n += (uint64_t)b->n;
    }
    if (rc == KILN_OK && got < 0)
        rc = err ? (int)err->code : KILN_EIO;
    *loss = n ? sum / n : 0;
    *acc = n ? (double)correct / n : 0;
    return rc;
}

/* After an epoch: history, log, MLflow, best weights, checkpoint. */
static int finish_epoch(train_ctx *c, kiln_train_epoch *e, int *stop_early, kiln_err *err)
{
    kiln_train_epoch *h = realloc(c->history, (size_t)(c->n_history + 1) * sizeof *h);
    if (!h)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    c->history = h;
    c->history[c->n_history++] = *e;
    kiln_log_info(c->o->log,
                  "epoch %d/%d: train loss %.4f acc %.4f, val loss %.4f acc %.4f, lr %.3g, %.1f s",
                  e->epoch, c->epochs, e->train_loss, e->train_accuracy, e->val_loss,
                  e->val_accuracy, e->learning_rate, e->seconds);
    int rc = train_mlflow_epoch(c, e, err);
    if (rc == KILN_OK && (c->best_epoch == 0 || e->val_accuracy > c->best_val_acc)) {
        c->best_epoch = e->epoch;
        c->best_val_acc = e->val_accuracy;
        c->bad_epochs = 0;
        rc = train_checkpoint_save_best(c, err);
    } else {
        c->bad_epochs++;
    }
    *stop_early = c->o->patience > 0 && c->bad_epochs >= c->o->patience;
    c->epoch++;
    c->batch_pos = 0;
    c->sum_loss = 0;
    c->correct = c->seen = 0;
    if (rc == KILN_OK)
        rc = train_checkpoint_save(c, err);
    if (rc == KILN_OK && c->o->on_epoch)
        c->o->on_epoch(c->o->cb_ctx, e);
    return rc;
}

static int run_epochs(train_ctx *c, kiln_train_result *res, kiln_err *err)
{
    uint32_t done = 0;
    double t0 = now_s();
    while (c->epoch < c->epochs) {
        double te = now_s();
        kiln_train_epoch e = {.epoch = c->epoch + 1};
        int rc = train_batches(c, t0, &done, err);
        if (rc == KILN_OK && stopped(c))
            rc = KILN_ECANCELED;
        e.train_loss = c->seen ? c->sum_loss / c->seen : 0;
        e.train_accuracy = c->seen ? (double)c->correct / c->seen : 0;
        e.learning_rate = kiln_lr_at(&c->sched, c->step > 0 ? c->step - 1 : 0);
        if (rc == KILN_OK)
            rc = evaluate(c, &e.val_loss, &e.val_accuracy, err);
        if (rc == KILN_ECANCELED) {
            int ck = train_checkpoint_save(c, err);
            if (ck != KILN_OK)
                return ck;
            return kiln_err_set(err, KILN_ECANCELED,
                                "stopped on request in epoch %d at batch %u/%u; checkpoint in %s "
                                "(continue with --resume)",
                                c->epoch + 1, c->batch_pos, c->bpe, c->ck_dir);
        }
        if (rc != KILN_OK)
            return rc;
        e.seconds = now_s() - te;
        int stop_early = 0;
        if ((rc = finish_epoch(c, &e, &stop_early, err)) != KILN_OK)
            return rc;
        if (stop_early) {
            res->early_stopped = 1;
            kiln_log_info(c->o->log, "train: early stop, no better val accuracy for %d epochs",
                          c->o->patience);
            break;
        }
    }
    return KILN_OK;
}

/* --- the package ------------------------------------------------------ */

static int write_package(train_ctx *c, kiln_err *err)
{
    char best[TRAIN_PATH_MAX];
    kiln_model_info info = {.format_version = KILN_MODEL_FORMAT_VERSION,
                            .num_classes = c->classes,
                            .classes = c->man.classes,
                            .input_size = c->size,
                            .resize_size = c->size,
                            .run_id = c->run_id[0] ? c->run_id : NULL,
                            .dataset_sha256 = c->dataset_sha};
    snprintf(info.variant, sizeof info.variant, "%s", c->o->cfg.train.model);
    snprintf(info.kiln_version, sizeof info.kiln_version, "%s", KILN_VERSION);
    for (int i = 0; i < 3; i++) {
        info.mean[i] = (float)c->man.mean[i];
        info.std[i] = (float)c->man.std[i];
    }
    int rc = train_checkpoint_best_path(c, best, sizeof best, err);
    if (rc == KILN_OK)
        rc = kiln_effnet_load(c->model, best, KILN_EFFNET_LOAD_STRICT, 0, err);
    if (rc == KILN_OK)
        rc = kiln_model_package_write(c->out_dir, c->model, &info, err);
    return rc == KILN_OK ? rc : kiln_err_wrap(err, "writing the model package");
}

/* training_curves.png next to the package; MLflow gets it as a plot. */
static int write_curves(train_ctx *c, kiln_err *err)
{
    char path[TRAIN_PATH_MAX], title[160], variant[8];
    int rc = kiln_path_join(path, sizeof path, c->out_dir, TRAIN_CURVES_FILE, err);
    if (rc != KILN_OK)
        return rc;
    size_t i = 0;
    for (; c->o->cfg.train.model[i] && i + 1 < sizeof variant; i++)
        variant[i] = (char)toupper((unsigned char)c->o->cfg.train.model[i]);
    variant[i] = '\0';
    snprintf(title, sizeof title, "EfficientNet-%s, %d epochs: best val accuracy %.4f (epoch %d)",
             variant, c->n_history, c->best_val_acc, c->best_epoch);
    return kiln_train_curves_png(path, c->history, c->n_history, title, err);
}

/* --- entry ------------------------------------------------------------ */

static int check_opts(const kiln_train_opts *o, kiln_err *err)
{
    if (!o->data_dir || !o->out_dir)
        return kiln_err_set(err, KILN_EINVAL, "train: a dataset and an output directory are needed");
    if (o->threads < 1)
        return kiln_err_set(err, KILN_EINVAL, "train: threads must be >= 1, got %d", o->threads);
    if (o->warmup_epochs < 0 || o->patience < 0)
        return kiln_err_set(err, KILN_EINVAL, "train: warmup epochs and patience must be >= 0");
    /* cpu-graph-check, cpu-bf16, cpu-bf16-graph-check: the tests' CPU
     * backends (backend.h); the command line offers auto, cpu and cuda. */
    if (o->device && strcmp(o->device, "auto") && strcmp(o->device, "cpu") &&
        strcmp(o->device, "cuda") && strncmp(o->device, "cpu-", 4))
        return kiln_err_set(err, KILN_EINVAL, "train: device '%s': expected auto, cpu or cuda",
                            o->device);
    return kiln_config_validate(&o->cfg, err);
}

static int setup(train_ctx *c, kiln_err *err)
{
    const kiln_train_opts *o = c->o;
    int rc;
    if (o->resume && (rc = train_checkpoint_read_state(c, err)) != KILN_OK)
        return rc;
    if ((rc = kiln_mkdir_p(o->out_dir, err)) != KILN_OK)
        return rc;
    /* The run exists before anything else can fail, so failures are seen. */
    if ((rc = train_mlflow_start(c, err)) != KILN_OK)
        return rc;
    if ((rc = open_data(c, err)) != KILN_OK || (rc = train_mlflow_dataset_tag(c, err)) != KILN_OK ||
        (rc = make_model(c, err)) != KILN_OK || (rc = train_mlflow_device_tag(c, err)) != KILN_OK ||
        (rc = make_buffers(c, err)) != KILN_OK ||
        (rc = make_schedule(c, err)) != KILN_OK)
        return rc;
    if (o->resume) {
        if ((rc = train_checkpoint_restore(c, err)) != KILN_OK)
            return rc;
        kiln_log_info(o->log, "train: resuming at epoch %d, batch %u (step %lld)", c->epoch + 1,
                      c->batch_pos, (long long)c->step);
    }
    return KILN_OK;
}

static void cleanup(train_ctx *c)
{
    if (c->be) {
        if (c->graph)
            c->be->ops->graph_free(c->be, c->graph);
        c->be->ops->release(c->be, c->x_dev);
        c->be->ops->release(c->be, c->x_u8_dev);
        c->be->ops->release(c->be, c->lut_dev);
        c->be->ops->release(c->be, c->y_dev);
        c->be->ops->release(c->be, c->probs_dev);
        c->be->ops->release(c->be, c->dlogits_dev);
    }
    free(c->probs_host);
    kiln_loader_close(c->train);
    kiln_loader_close(c->val);
    kiln_optim_destroy(c->optim);
    kiln_effnet_destroy(c->model);
    kiln_nn_backend_destroy(c->be);
    if (c->have_man)
        kiln_manifest_free(&c->man);
    free(c->history);
    free(c->artifact_uri);
}

int kiln_train(const kiln_train_opts *o, kiln_train_result *result, kiln_err *err)
{
    train_ctx c = {.o = o};
    kiln_train_result res = {0};
    int rc = check_opts(o, err);
    if (rc != KILN_OK)
        goto out;
    c.batch = o->cfg.train.batch_size;
    c.epochs = o->cfg.train.epochs;
    if (kiln_path_join(c.out_dir, sizeof c.out_dir, o->out_dir, "", err) != KILN_OK ||
        kiln_path_join(c.ck_dir, sizeof c.ck_dir, o->out_dir, "checkpoint", err) != KILN_OK) {
        rc = err ? (int)err->code : KILN_ELIMIT;
        goto out;
    }
    snprintf(c.out_dir, sizeof c.out_dir, "%s", o->out_dir);
    if ((rc = setup(&c, err)) == KILN_OK && (rc = run_epochs(&c, &res, err)) == KILN_OK &&
        (rc = write_package(&c, err)) == KILN_OK && (rc = write_curves(&c, err)) == KILN_OK)
        rc = train_mlflow_artifacts(&c, err);
    train_mlflow_end(&c, rc == KILN_OK ? KILN_MLFLOW_FINISHED
                         : rc == KILN_ECANCELED ? KILN_MLFLOW_KILLED
                                                : KILN_MLFLOW_FAILED);
out:
    snprintf(res.run_id, sizeof res.run_id, "%s", c.run_id);
    res.epochs_done = c.epoch;
    res.best_epoch = c.best_epoch;
    res.best_val_accuracy = c.best_val_acc;
    res.graph_steps = c.graph_steps;
    res.graph_recordings = c.graph_recordings;
    if (c.graph_steps)
        kiln_log_info(o->log, "train: %lld steps ran as CUDA graphs (%lld recorded, the rest "
                      "replayed)", c.graph_steps, c.graph_recordings);
    if (result)
        *result = res;
    cleanup(&c);
    return rc;
}
