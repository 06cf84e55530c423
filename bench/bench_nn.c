/* bench/bench_nn.c — kiln's EfficientNet on the CPU backend: training
 * throughput and inference latency.
 *
 *   bench_nn --mode train|infer [--variant b0] [--size 224] [--batch 32]
 *            [--threads 2] [--iters 10] [--warmup 2] [--classes 10]
 *
 * train: one step = forward (train mode: batch statistics, dropout and
 * stochastic depth as torchvision sets them), softmax cross-entropy with
 * label smoothing 0.1, backward, SGD(lr 0.1, momentum 0.9, Nesterov,
 * weight decay 1e-4 on conv/linear weights); the same batch every step.
 * infer: one eval-mode forward. Both end with a backend sync. Prints one
 * line, the same fields as bench/torch_effnet_cpu.py:
 *
 *   kiln mode=train variant=b0 size=64 batch=32 threads=2 iters=10
 *       median_s=.. min_s=.. img_s=.. rss_mb=..
 *
 * Run by bench/nn_cpu.sh.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_util.h"
#include "common/err.h"
#include "common/rng.h"
#include "nn/backend.h"
#include "nn/efficientnet.h"
#include "nn/optim.h"

typedef struct bench_args {
    int train, have_mode;
    const char *variant;
    int size, batch, threads, iters, warmup, classes;
} bench_args;

/* Everything one run holds; freed by bench_free. */
typedef struct bench_state {
    kiln_nn_backend *be;
    kiln_effnet *model;
    kiln_optim *optim;
    float *input, *probs, *dlogits;
    int32_t *labels;
} bench_state;

static void usage(FILE *out)
{
    fprintf(out, "usage: bench_nn --mode train|infer [--variant b0] [--size 224] [--batch 32]\n"
                 "                [--threads 2] [--iters 10] [--warmup 2] [--classes 10]\n");
}

static const struct option bench_options[] = {
    {"mode", required_argument, NULL, 'm'},   {"variant", required_argument, NULL, 'v'},
    {"size", required_argument, NULL, 's'},   {"batch", required_argument, NULL, 'b'},
    {"threads", required_argument, NULL, 't'}, {"iters", required_argument, NULL, 'i'},
    {"warmup", required_argument, NULL, 'w'}, {"classes", required_argument, NULL, 'c'},
    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
};

static int parse_option(int opt, const char *val, void *args, kiln_err *err)
{
    bench_args *a = args;
    switch (opt) {
    case 'm':
        if (strcmp(val, "train") != 0 && strcmp(val, "infer") != 0)
            return kiln_err_set(err, KILN_EINVAL, "--mode: train or infer, got '%s'", val);
        a->train = strcmp(val, "train") == 0;
        a->have_mode = 1;
        return KILN_OK;
    case 'v':
        if (!kiln_effnet_variant_known(val))
            return kiln_err_set(err, KILN_EINVAL, "--variant: unknown '%s' (b0..b3)", val);
        a->variant = val;
        return KILN_OK;
    case 's': return bench_parse_int("size", val, 8, 4096, &a->size, err);
    case 'b': return bench_parse_int("batch", val, 1, 4096, &a->batch, err);
    case 't': return bench_parse_int("threads", val, 1, 256, &a->threads, err);
    case 'i': return bench_parse_int("iters", val, 1, 100000, &a->iters, err);
    case 'w': return bench_parse_int("warmup", val, 0, 100000, &a->warmup, err);
    case 'c': return bench_parse_int("classes", val, 2, 100000, &a->classes, err);
    default: return kiln_err_set(err, KILN_EINVAL, "unknown option %d", opt);
    }
}

static int parse_args(int argc, char **argv, bench_args *a, int *help, kiln_err *err)
{
    *a = (bench_args){.train = 1, .variant = "b0", .size = 224, .batch = 32, .threads = 2,
                      .iters = 10, .warmup = 2, .classes = 10};
    int rc = bench_parse_options(argc, argv, bench_options, parse_option, a, help, err);
    if (rc != KILN_OK || *help)
        return rc;
    if (optind != argc || !a->have_mode)
        return kiln_err_set(err, KILN_EINVAL, "expected --mode train|infer and no operands");
    return KILN_OK;
}

static void *bench_alloc(bench_state *s, size_t bytes, kiln_err *err)
{
    return s->be->ops->alloc(s->be, bytes, err);
}

/* A N(0,1)-ish input (sum of uniforms) and labels, uploaded once. */
static int make_batch(bench_state *s, const bench_args *a, kiln_err *err)
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
        host[i] = (float)(kiln_rng_uniform(&rng) + kiln_rng_uniform(&rng) +
                          kiln_rng_uniform(&rng) - 1.5) * 2.0f;
    for (int i = 0; i < a->batch; i++)
        labels[i] = (int32_t)kiln_rng_below(&rng, (uint64_t)a->classes);
    s->input = bench_alloc(s, n * sizeof(float), err);
    s->labels = bench_alloc(s, (size_t)a->batch * sizeof(int32_t), err);
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

/* SGD over the model's two flat regions: weight decay, then none. */
static int make_optim(bench_state *s, kiln_err *err)
{
    float *p = kiln_effnet_params_flat(s->model), *g = kiln_effnet_grads_flat(s->model);
    size_t decay = kiln_effnet_decay_floats(s->model);
    size_t total = kiln_effnet_flat_floats(s->model);
    kiln_optim_param params[2] = {
        {p, g, decay, 0},
        {p + decay, g + decay, total - decay, 1},
    };
    kiln_optim_config cfg;
    kiln_optim_config_sgd(&cfg, 0.1f, 0.9f, 1, 1e-4f);
    s->optim = kiln_optim_create(s->be, &cfg, params, 2, err);
    return s->optim ? KILN_OK : err->code;
}

static int setup(bench_state *s, const bench_args *a, kiln_err *err)
{
    size_t out = (size_t)a->batch * (size_t)a->classes * sizeof(float);
    s->be = kiln_nn_cpu_create(a->threads, err);
    if (!s->be)
        return err->code;
    s->model = kiln_effnet_create(a->variant, a->classes, s->be, err);
    if (!s->model || kiln_effnet_plan(s->model, a->batch, a->size, a->size, err) != KILN_OK ||
        make_batch(s, a, err) != KILN_OK)
        return err->code;
    if (!a->train)
        return KILN_OK;
    s->probs = bench_alloc(s, out, err);
    s->dlogits = bench_alloc(s, out, err);
    if (!s->probs || !s->dlogits)
        return err->code;
    return make_optim(s, err);
}

static int run_once(bench_state *s, const bench_args *a, uint64_t step, kiln_err *err)
{
    const float *logits = kiln_effnet_forward(s->model, s->input, a->train, step, err);
    if (!logits)
        return err->code;
    if (a->train) {
        double loss = 0;
        int rc = s->be->ops->xent_forward_backward(s->be, a->batch, a->classes, logits,
                                                   s->labels, 0.1f, s->probs, s->dlogits,
                                                   &loss, err);
        if (rc == KILN_OK)
            rc = kiln_effnet_backward(s->model, s->dlogits, err);
        if (rc == KILN_OK)
            rc = kiln_optim_step(s->optim, err);
        if (rc != KILN_OK)
            return rc;
    }
    return s->be->ops->sync(s->be, err);
}

static void bench_free(bench_state *s)
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

static int run_bench(const bench_args *a, double *seconds, kiln_err *err)
{
    bench_state s = {0};
    int rc = setup(&s, a, err);
    uint64_t step = 0;
    for (int i = 0; rc == KILN_OK && i < a->warmup; i++)
        rc = run_once(&s, a, step++, err);
    for (int i = 0; rc == KILN_OK && i < a->iters; i++) {
        double t0 = bench_now_s();
        rc = run_once(&s, a, step++, err);
        seconds[i] = bench_now_s() - t0;
    }
    bench_free(&s);
    return rc;
}

int main(int argc, char **argv)
{
    bench_args a;
    kiln_err err = {0};
    int help = 0;
    if (parse_args(argc, argv, &a, &help, &err) != KILN_OK) {
        fprintf(stderr, "bench_nn: %s\n", err.msg);
        usage(stderr);
        return 2;
    }
    if (help) {
        usage(stdout);
        return 0;
    }
    double *seconds = calloc((size_t)a.iters, sizeof *seconds);
    if (!seconds || run_bench(&a, seconds, &err) != KILN_OK) {
        fprintf(stderr, "bench_nn: %s\n", seconds ? err.msg : "out of memory");
        free(seconds);
        return 1;
    }
    qsort(seconds, (size_t)a.iters, sizeof *seconds, cmp_double);
    double median = a.iters % 2 ? seconds[a.iters / 2]
                                : (seconds[a.iters / 2 - 1] + seconds[a.iters / 2]) / 2;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("kiln mode=%s variant=%s size=%d batch=%d threads=%d iters=%d median_s=%.6f "
           "min_s=%.6f img_s=%.3f rss_mb=%.1f\n",
           a.train ? "train" : "infer", a.variant, a.size, a.batch, a.threads, a.iters, median,
           seconds[0], a.batch / median, (double)ru.ru_maxrss / 1024.0);
    free(seconds);
    return 0;
}
