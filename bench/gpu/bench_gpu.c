/* bench/gpu/bench_gpu.c — kiln's EfficientNet on a chosen backend (the
 * CUDA one by default): training throughput, inference latency and
 * throughput, with the same work as ../shared/anchors/torch_effnet.py.
 *
 *   bench_gpu --mode train|infer [--device cuda|cpu|auto] [--variant b0]
 *             [--size 224] [--batch 128] [--iters 20] [--warmup 3]
 *             [--classes 2] [--threads 16]
 *
 * train: one step = forward (train mode: batch statistics, dropout and
 * stochastic depth), softmax cross-entropy (label smoothing 0.1), backward,
 * SGD(lr 0.01, momentum 0.9) as torch_effnet.py's train_tput; the same
 * batch every step. infer: one eval-mode forward under an inference plan.
 * Each timed iteration ends with a backend sync. The first warm-up step is
 * reported apart: it holds cuDNN's algorithm search for every shape.
 * KILN_CUDA_TF32=1 lets cuDNN and cuBLAS use TF32 (torch's default for
 * convolutions). Prints one line:
 *
 *   kiln mode=train device=cuda tf32=0 variant=b0 size=224 batch=128 iters=20
 *        first_s=.. median_s=.. min_s=.. img_s=.. ms=..
 *
 * Run by bench/gpu/run-device.sh on the GPU machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "common/err.h"
#include "common/rng.h"
#include "nn/backend.h"
#include "nn/efficientnet.h"
#include "nn/optim.h"

typedef struct gpu_args {
    int train, have_mode;
    const char *device, *variant;
    int size, batch, iters, warmup, classes, threads;
} gpu_args;

typedef struct gpu_state {
    kiln_nn_backend *be;
    kiln_effnet *model;
    kiln_optim *optim;
    float *input, *probs, *dlogits;
    int32_t *labels;
} gpu_state;

static void usage(FILE *out)
{
    fprintf(out, "usage: bench_gpu --mode train|infer [--device cuda|cpu|auto] [--variant b0]\n"
                 "                 [--size 224] [--batch 128] [--iters 20] [--warmup 3]\n"
                 "                 [--classes 2] [--threads 16]\n");
}

static const struct option gpu_options[] = {
    {"mode", required_argument, NULL, 'm'},    {"device", required_argument, NULL, 'd'},
    {"variant", required_argument, NULL, 'v'}, {"size", required_argument, NULL, 's'},
    {"batch", required_argument, NULL, 'b'},   {"iters", required_argument, NULL, 'i'},
    {"warmup", required_argument, NULL, 'w'},  {"classes", required_argument, NULL, 'c'},
    {"threads", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int parse_option(int opt, const char *val, void *args, kiln_err *err)
{
    gpu_args *a = args;
    switch (opt) {
    case 'm':
        if (strcmp(val, "train") != 0 && strcmp(val, "infer") != 0)
            return kiln_err_set(err, KILN_EINVAL, "--mode: train or infer, got '%s'", val);
        a->train = strcmp(val, "train") == 0;
        a->have_mode = 1;
        return KILN_OK;
    case 'd': a->device = val; return KILN_OK;
    case 'v':
        if (!kiln_effnet_variant_known(val))
            return kiln_err_set(err, KILN_EINVAL, "--variant: unknown '%s' (b0..b3)", val);
        a->variant = val;
        return KILN_OK;
    case 's': return bench_parse_int("size", val, 8, 4096, &a->size, err);
    case 'b': return bench_parse_int("batch", val, 1, 4096, &a->batch, err);
    case 'i': return bench_parse_int("iters", val, 1, 100000, &a->iters, err);
    case 'w': return bench_parse_int("warmup", val, 1, 100000, &a->warmup, err);
    case 'c': return bench_parse_int("classes", val, 2, 100000, &a->classes, err);
    case 't': return bench_parse_int("threads", val, 1, 64, &a->threads, err);
    default: return kiln_err_set(err, KILN_EINVAL, "unknown option %d", opt);
    }
}

static int make_batch(gpu_state *s, const gpu_args *a, kiln_err *err)
{
    size_t n = (size_t)a->batch * 3 * (size_t)a->size * (size_t)a->size;
    float *host = malloc(n * sizeof *host);
    int32_t *labels = malloc((size_t)a->batch * sizeof *labels);
    kiln_rng rng;
    int rc = KILN_ENOMEM;
    kiln_rng_seed(&rng, 42);
    if (!host || !labels) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory for the input batch");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        host[i] = (float)(kiln_rng_uniform(&rng) * 2.0 - 1.0);
    for (int i = 0; i < a->batch; i++)
        labels[i] = (int32_t)kiln_rng_below(&rng, (uint64_t)a->classes);
    s->input = s->be->ops->alloc(s->be, n * sizeof(float), err);
    s->labels = s->be->ops->alloc(s->be, (size_t)a->batch * sizeof(int32_t), err);
    if (!s->input || !s->labels)
        goto done;
    rc = s->be->ops->upload(s->be, s->input, host, n * sizeof(float), err);
    if (rc == KILN_OK)
        rc = s->be->ops->upload(s->be, s->labels, labels, (size_t)a->batch * sizeof(int32_t),
                                err);
done:
    free(host);
    free(labels);
    return rc;
}

static int setup(gpu_state *s, const gpu_args *a, kiln_err *err)
{
    size_t out = (size_t)a->batch * (size_t)a->classes * sizeof(float);
    if (!(s->be = kiln_nn_backend_open(a->device, a->threads, NULL, err)))
        return err->code;
    if (!(s->model = kiln_effnet_create(a->variant, a->classes, s->be, err)))
        return err->code;
    int rc = a->train ? kiln_effnet_plan(s->model, a->batch, a->size, a->size, err)
                      : kiln_effnet_plan_inference(s->model, a->batch, a->size, a->size, err);
    if (rc != KILN_OK || make_batch(s, a, err) != KILN_OK)
        return err->code;
    if (!a->train)
        return KILN_OK;
    s->probs = s->be->ops->alloc(s->be, out, err);
    s->dlogits = s->be->ops->alloc(s->be, out, err);
    if (!s->probs || !s->dlogits)
        return err->code;
    float *p = kiln_effnet_params_flat(s->model), *g = kiln_effnet_grads_flat(s->model);
    kiln_optim_param params[1] = {{p, g, kiln_effnet_flat_floats(s->model), 0}};
    kiln_optim_config cfg;
    kiln_optim_config_sgd(&cfg, 0.01f, 0.9f, 0, 0.0f);
    s->optim = kiln_optim_create(s->be, &cfg, params, 1, err);
    return s->optim ? KILN_OK : err->code;
}

static int run_once(gpu_state *s, const gpu_args *a, uint64_t step, kiln_err *err)
{
    const float *logits = kiln_effnet_forward(s->model, s->input, a->train, step, err);
    if (!logits)
        return err->code;
    if (a->train) {
        double loss = 0;
        int rc = s->be->ops->xent_forward_backward(s->be, a->batch, a->classes, logits,
                                                   s->labels, 0.1f, s->probs, s->dlogits, &loss,
                                                   err);
        if (rc == KILN_OK)
            rc = kiln_effnet_backward(s->model, s->dlogits, err);
        if (rc == KILN_OK)
            rc = kiln_optim_step(s->optim, err);
        if (rc != KILN_OK)
            return rc;
    }
    return s->be->ops->sync(s->be, err);
}

static void state_free(gpu_state *s)
{
    kiln_optim_destroy(s->optim);
    kiln_effnet_destroy(s->model);
    if (s->be) {
        void *bufs[] = {s->input, s->labels, s->probs, s->dlogits};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i])
                s->be->ops->release(s->be, bufs[i]);
    }
    kiln_nn_backend_destroy(s->be);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

int main(int argc, char **argv)
{
    gpu_args a = {.train = 1, .device = "cuda", .variant = "b0", .size = 224, .batch = 128,
                  .iters = 20, .warmup = 3, .classes = 2, .threads = 16};
    kiln_err err = {0};
    int help = 0;
    if (bench_parse_options(argc, argv, gpu_options, parse_option, &a, &help, &err) != KILN_OK ||
        (!help && (optind != argc || !a.have_mode))) {
        fprintf(stderr, "bench_gpu: %s\n", err.msg[0] ? err.msg : "expected --mode train|infer");
        usage(stderr);
        return 2;
    }
    if (help) {
        usage(stdout);
        return 0;
    }
    gpu_state s = {0};
    double *sec = calloc((size_t)a.iters, sizeof *sec), first = 0;
    int rc = sec ? setup(&s, &a, &err) : kiln_err_set(&err, KILN_ENOMEM, "out of memory");
    uint64_t step = 0;
    for (int i = 0; rc == KILN_OK && i < a.warmup; i++) {
        double t0 = bench_now_s();
        rc = run_once(&s, &a, step++, &err);
        if (i == 0)
            first = bench_now_s() - t0;
    }
    for (int i = 0; rc == KILN_OK && i < a.iters; i++) {
        double t0 = bench_now_s();
        rc = run_once(&s, &a, step++, &err);
        sec[i] = bench_now_s() - t0;
    }
    const char *name = s.be ? s.be->ops->name : a.device;
    state_free(&s);
    if (rc != KILN_OK) {
        fprintf(stderr, "bench_gpu: %s\n", err.msg);
        free(sec);
        return 1;
    }
    qsort(sec, (size_t)a.iters, sizeof *sec, cmp_double);
    double median = a.iters % 2 ? sec[a.iters / 2] : (sec[a.iters / 2 - 1] + sec[a.iters / 2]) / 2;
    const char *tf32 = getenv("KILN_CUDA_TF32");
    printf("kiln mode=%s device=%s tf32=%d variant=%s size=%d batch=%d iters=%d first_s=%.3f "
           "median_s=%.6f min_s=%.6f img_s=%.1f ms=%.3f\n",
           a.train ? "train" : "infer", name, tf32 && strcmp(tf32, "1") == 0, a.variant, a.size,
           a.batch, a.iters, first, median, sec[0], a.batch / median, median * 1e3);
    free(sec);
    return 0;
}
