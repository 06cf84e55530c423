/* bench/bench_nn.c — kiln's EfficientNet on a chosen backend: training
 * throughput, inference latency and throughput.
 *
 *   bench_nn --mode train|infer [--device cpu|cuda|auto|cpu-bf16] [--recipe cpu|gpu]
 *            [--variant b0] [--size 224] [--batch N] [--iters N] [--warmup N]
 *            [--classes N] [--threads N] [--tf32 0|1] [--graphs 0|1]
 *            [--precision fp32|bf16]
 *
 * The backend comes from kiln_nn_backend_open_precision (--device, default
 * cpu; `cuda` fails with the reason when no GPU is usable; cpu-bf16 is the
 * CPU oracle of mixed precision, slow, for checking the bf16 path without
 * a GPU). --precision bf16 is the GPU's mixed precision (activations bf16
 * NHWC, float32 master weights; refused with --device cpu); without it
 * KILN_CUDA_BF16 decides, as for kiln. A recipe is the
 * work of one peer script, so kiln and it measure the same thing:
 *
 *   cpu (bench/torch_effnet_cpu.py, run by bench/nn_cpu.sh): input a sum
 *     of uniforms (about N(0,1)), SGD(lr 0.1, momentum 0.9, Nesterov,
 *     weight decay 1e-4 on conv/linear weights), the training plan for
 *     both modes; defaults batch 32, iters 10, warmup 2, classes 10,
 *     threads 2;
 *   gpu (../shared/anchors/torch_effnet.py, run by bench/gpu/run-device.sh):
 *     input uniform in [-1, 1), SGD(lr 0.01, momentum 0.9) as its
 *     train_tput, an inference plan for infer; defaults batch 128, iters
 *     20, warmup 3, classes 2, threads 16 (CPU fallback of `auto`).
 *
 * --recipe defaults to cpu with --device cpu and to gpu otherwise. train:
 * one step = forward in train mode (batch statistics, dropout and
 * stochastic depth as torchvision sets them), softmax cross-entropy with
 * label smoothing 0.1, backward, the SGD step; the same batch every step.
 * infer: one eval-mode forward. Every step ends with a backend sync.
 * --tf32 sets KILN_CUDA_TF32 for the CUDA backend (without it the
 * environment's value holds): TF32 tensor cores, torch's default for
 * convolutions. Prints one line:
 *
 *   kiln mode=train device=cpu precision=fp32 recipe=cpu tf32=0 graphs=0 variant=b0
 *       size=64 batch=32 threads=2 iters=10 first_s=.. median_s=.. min_s=.. img_s=..
 *       ms=.. rss_mb=..
 *
 * precision is the backend's own (kiln_act_precision of its activation
 * format), so a `cuda` run shows what it really ran.
 *
 * first_s is the first step (a warm-up one when warmup > 0; it holds
 * cuDNN's algorithm search for every shape), median_s / min_s are over the
 * timed steps, img_s = batch / median_s, ms = median_s in milliseconds,
 * rss_mb the host's peak resident set.
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

/* What a peer script does, and the defaults of its runs. */
typedef struct bench_recipe {
    const char *name;
    int batch, iters, warmup, classes, threads;
    float lr, weight_decay; /* weight decay on conv/linear weights only */
    int nesterov;
    int uniform_input;  /* 1: uniform in [-1, 1); 0: a sum of three uniforms */
    int inference_plan; /* 1: infer under kiln_effnet_plan_inference */
} bench_recipe;

static const bench_recipe recipes[] = {
    {"cpu", 32, 10, 2, 10, 2, 0.1f, 1e-4f, 1, 0, 0},
    {"gpu", 128, 20, 3, 2, 16, 0.01f, 0.0f, 0, 1, 1},
};

typedef struct bench_args {
    int train, have_mode;
    const char *device, *variant;
    const char *precision; /* "fp32", "bf16" or NULL (KILN_CUDA_BF16's choice) */
    const bench_recipe *recipe;
    /* -1 until given: then the recipe's default */
    int size, batch, threads, iters, warmup, classes, tf32;
    int graphs; /* 1: steps after the first as step graphs (CUDA graphs) */
} bench_args;

/* Everything one run holds; freed by bench_free. */
typedef struct bench_state {
    kiln_nn_backend *be;
    kiln_effnet *model;
    kiln_optim *optim;
    kiln_nn_graph *graph;
    double loss; /* a graph writes it at graph_end: it must outlive the step */
    float *input, *probs, *dlogits;
    int32_t *labels;
} bench_state;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_nn --mode train|infer [--device cpu|cuda|auto|cpu-bf16] [--recipe cpu|gpu]\n"
            "                [--variant b0] [--size 224] [--batch N] [--iters N] [--warmup N]\n"
            "                [--classes N] [--threads N] [--tf32 0|1] [--graphs 0|1]\n"
            "                [--precision fp32|bf16]\n"
            "recipe defaults (batch iters warmup classes threads): cpu 32 10 2 10 2,\n"
            "gpu 128 20 3 2 16; --recipe defaults to cpu with --device cpu, else gpu\n");
}

static const struct option bench_options[] = {
    {"mode", required_argument, NULL, 'm'},    {"device", required_argument, NULL, 'd'},
    {"recipe", required_argument, NULL, 'r'},  {"variant", required_argument, NULL, 'v'},
    {"size", required_argument, NULL, 's'},    {"batch", required_argument, NULL, 'b'},
    {"threads", required_argument, NULL, 't'}, {"iters", required_argument, NULL, 'i'},
    {"warmup", required_argument, NULL, 'w'},  {"classes", required_argument, NULL, 'c'},
    {"tf32", required_argument, NULL, 'f'},    {"graphs", required_argument, NULL, 'g'},
    {"precision", required_argument, NULL, 'p'}, {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
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
    case 'd':
        /* cpu-graph-check: the --graphs path checked on the CPU; cpu-bf16:
         * the bf16 activations' path on the CPU. */
        if (strcmp(val, "cpu") != 0 && strcmp(val, "cuda") != 0 && strcmp(val, "auto") != 0 &&
            strcmp(val, "cpu-graph-check") != 0 && strcmp(val, "cpu-bf16") != 0)
            return kiln_err_set(err, KILN_EINVAL,
                                "--device: cpu, cuda, auto, cpu-graph-check or cpu-bf16, got '%s'",
                                val);
        a->device = val;
        return KILN_OK;
    case 'r':
        for (size_t i = 0; i < sizeof recipes / sizeof recipes[0]; i++)
            if (strcmp(val, recipes[i].name) == 0) {
                a->recipe = &recipes[i];
                return KILN_OK;
            }
        return kiln_err_set(err, KILN_EINVAL, "--recipe: cpu or gpu, got '%s'", val);
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
    case 'f': return bench_parse_int("tf32", val, 0, 1, &a->tf32, err);
    case 'g': return bench_parse_int("graphs", val, 0, 1, &a->graphs, err);
    case 'p':
        if (strcmp(val, "fp32") != 0 && strcmp(val, "bf16") != 0)
            return kiln_err_set(err, KILN_EINVAL, "--precision: fp32 or bf16, got '%s'", val);
        a->precision = val;
        return KILN_OK;
    default: return kiln_err_set(err, KILN_EINVAL, "unknown option %d", opt);
    }
}

static void fill_default(int *v, int def)
{
    if (*v < 0)
        *v = def;
}

static int parse_args(int argc, char **argv, bench_args *a, int *help, kiln_err *err)
{
    *a = (bench_args){.train = 1, .device = "cpu", .variant = "b0", .size = 224, .batch = -1,
                      .threads = -1, .iters = -1, .warmup = -1, .classes = -1, .tf32 = -1};
    int rc = bench_parse_options(argc, argv, bench_options, parse_option, a, help, err);
    if (rc != KILN_OK || *help)
        return rc;
    if (optind != argc || !a->have_mode)
        return kiln_err_set(err, KILN_EINVAL, "expected --mode train|infer and no operands");
    if (!a->recipe)
        a->recipe = &recipes[strcmp(a->device, "cpu") == 0 ? 0 : 1];
    fill_default(&a->batch, a->recipe->batch);
    fill_default(&a->threads, a->recipe->threads);
    fill_default(&a->iters, a->recipe->iters);
    fill_default(&a->warmup, a->recipe->warmup);
    fill_default(&a->classes, a->recipe->classes);
    if (a->tf32 >= 0 && setenv("KILN_CUDA_TF32", a->tf32 ? "1" : "0", 1) != 0)
        return kiln_err_set(err, KILN_ENOMEM, "cannot set KILN_CUDA_TF32");
    const char *env = getenv("KILN_CUDA_TF32");
    a->tf32 = env && strcmp(env, "1") == 0;
    return KILN_OK;
}

static void *bench_alloc(bench_state *s, size_t bytes, kiln_err *err)
{
    return s->be->ops->alloc(s->be, bytes, err);
}

/* The recipe's input and labels, uploaded once. */
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
    for (size_t i = 0; i < n; i++) {
        if (a->recipe->uniform_input)
            host[i] = (float)(kiln_rng_uniform(&rng) * 2.0 - 1.0);
        else
            host[i] = (float)(kiln_rng_uniform(&rng) + kiln_rng_uniform(&rng) +
                              kiln_rng_uniform(&rng) - 1.5) *
                      2.0f;
    }
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

/* SGD over the model's flat parameters: with weight decay, the decayed
 * region (conv/linear weights) and the rest apart; without, one region. */
static int make_optim(bench_state *s, const bench_recipe *r, kiln_err *err)
{
    float *p = kiln_effnet_params_flat(s->model), *g = kiln_effnet_grads_flat(s->model);
    size_t decay = kiln_effnet_decay_floats(s->model);
    size_t total = kiln_effnet_flat_floats(s->model);
    kiln_optim_param split[2] = {
        {p, g, decay, 0},
        {p + decay, g + decay, total - decay, 1},
    };
    kiln_optim_param whole[1] = {{p, g, total, 0}};
    int decays = r->weight_decay > 0.0f;
    kiln_optim_config cfg;
    kiln_optim_config_sgd(&cfg, r->lr, 0.9f, r->nesterov, r->weight_decay);
    s->optim = kiln_optim_create(s->be, &cfg, decays ? split : whole, decays ? 2 : 1, err);
    return s->optim ? KILN_OK : err->code;
}

static int setup(bench_state *s, const bench_args *a, kiln_err *err)
{
    size_t out = (size_t)a->batch * (size_t)a->classes * sizeof(float);
    if (!(s->be = kiln_nn_backend_open_precision(a->device, a->precision, a->threads, NULL, err)))
        return err->code;
    if (!(s->model = kiln_effnet_create(a->variant, a->classes, s->be, err)))
        return err->code;
    int rc = !a->train && a->recipe->inference_plan
                 ? kiln_effnet_plan_inference(s->model, a->batch, a->size, a->size, err)
                 : kiln_effnet_plan(s->model, a->batch, a->size, a->size, err);
    if (rc != KILN_OK || make_batch(s, a, err) != KILN_OK)
        return err->code;
    if (!a->train)
        return KILN_OK;
    s->probs = bench_alloc(s, out, err);
    s->dlogits = bench_alloc(s, out, err);
    if (!s->probs || !s->dlogits)
        return err->code;
    return make_optim(s, a->recipe, err);
}

static int run_step(bench_state *s, const bench_args *a, uint64_t step, kiln_err *err)
{
    const float *logits = kiln_effnet_forward(s->model, s->input, a->train, step, err);
    if (!logits)
        return err->code;
    if (a->train) {
        int rc = s->be->ops->xent_forward_backward(s->be, a->batch, a->classes, logits,
                                                   s->labels, 0.1f, s->probs, s->dlogits,
                                                   &s->loss, err);
        if (rc == KILN_OK)
            rc = kiln_effnet_backward(s->model, s->dlogits, err);
        if (rc == KILN_OK)
            rc = kiln_optim_step(s->optim, err);
        if (rc != KILN_OK)
            return rc;
    }
    return KILN_OK;
}

/* One step, synchronised: eagerly, or (--graphs 1, from the second step on,
 * after cuDNN's algorithm search) as a step graph, which graph_end waits for. */
static int run_once(bench_state *s, const bench_args *a, uint64_t step, kiln_err *err)
{
    const kiln_nn_ops *ops = s->be->ops;
    if (!a->graphs || !ops->graph_begin || step == 0) {
        int rc = run_step(s, a, step, err);
        return rc == KILN_OK ? ops->sync(s->be, err) : rc;
    }
    int rc = ops->graph_begin(s->be, &s->graph, err);
    if (rc != KILN_OK)
        return rc;
    if ((rc = run_step(s, a, step, err)) != KILN_OK) {
        ops->graph_cancel(s->be, s->graph);
        return rc;
    }
    return ops->graph_end(s->be, s->graph, err);
}

static void bench_free(bench_state *s)
{
    if (s->be && s->graph)
        s->be->ops->graph_free(s->be, s->graph);
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

/* Times warmup + iters steps into *first and seconds[iters]; `device` and
 * `precision` get the backend's name and precision (static storage). */
static int run_bench(const bench_args *a, double *first, double *seconds, const char **device,
                     const char **precision, kiln_err *err)
{
    bench_state s = {0};
    int rc = setup(&s, a, err);
    uint64_t step = 0;
    if (s.be) {
        *device = s.be->ops->name;
        *precision = kiln_act_precision(s.be->act);
    }
    for (int i = 0; rc == KILN_OK && i < a->warmup + a->iters; i++) {
        double t0 = bench_now_s();
        rc = run_once(&s, a, step++, err);
        double t = bench_now_s() - t0;
        if (i == 0)
            *first = t;
        if (i >= a->warmup)
            seconds[i - a->warmup] = t;
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
    double *seconds = calloc((size_t)a.iters, sizeof *seconds), first = 0;
    const char *device = a.device, *precision = "fp32";
    if (!seconds || run_bench(&a, &first, seconds, &device, &precision, &err) != KILN_OK) {
        fprintf(stderr, "bench_nn: %s\n", seconds ? err.msg : "out of memory");
        free(seconds);
        return 1;
    }
    qsort(seconds, (size_t)a.iters, sizeof *seconds, cmp_double);
    double median = a.iters % 2 ? seconds[a.iters / 2]
                                : (seconds[a.iters / 2 - 1] + seconds[a.iters / 2]) / 2;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("kiln mode=%s device=%s precision=%s recipe=%s tf32=%d graphs=%d variant=%s size=%d "
           "batch=%d threads=%d iters=%d first_s=%.3f median_s=%.6f min_s=%.6f img_s=%.3f "
           "ms=%.3f rss_mb=%.1f\n",
           a.train ? "train" : "infer", device, precision, a.recipe->name, a.tf32, a.graphs,
           a.variant, a.size, a.batch, a.threads, a.iters, first, median, seconds[0],
           a.batch / median, median * 1e3, (double)ru.ru_maxrss / 1024.0);
    free(seconds);
    return 0;
}
