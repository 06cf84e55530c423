/* tests/test_nn_graph_check.c — step graphs without a GPU, through the
 * checking backend (lib/nn/graph_check over the CPU):
 *  - the contract a CUDA graph imposes: host outputs only after graph_end,
 *    no alloc/sync in a pass, a replay with other buffers refused;
 *  - kiln_train with cuda_graphs: every step after the first is recorded or
 *    replayed, each replay made exactly the recording's calls, and the run
 *    is bit-identical to the eager one (per-epoch figures and weights);
 *  - the server's forwards with cuda_graphs, batched or not, give the eager
 *    model's probabilities bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "nn/graph_check.h"
#include "serve/serve.h"
#include "support/testutil.h"
#include "support/trainfix.h"
#include "train/train.h"

static void test_checker_contract(void **state)
{
    (void)state;
    kiln_err err = {0};
    kiln_nn_backend *be = kt_expect_ptr(kiln_nn_backend_open("cpu-graph-check", 1, NULL, &err),
                                        &err, "checker");
    const kiln_nn_ops *ops = be->ops;
    assert_string_equal(ops->name, "graph-check");
    float *x = ops->alloc(be, 4 * sizeof(float), &err), *y = ops->alloc(be, 4 * sizeof(float), &err);
    float *z = ops->alloc(be, 4 * sizeof(float), &err);
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(z);
    kiln_nn_graph *g = NULL;
    for (int pass = 0; pass < 3; pass++) {
        float in[4] = {1.0f + pass, -2, 3, 0.5f}, out[4] = {0};
        double ss = -1;
        kt_expect_ok(ops->graph_begin(be, &g, &err), &err, "begin");
        kt_expect_ok(ops->upload(be, x, in, sizeof in, &err), &err, "upload");
        kt_expect_ok(ops->silu_forward(be, 4, x, y, &err), &err, "silu");
        kt_expect_ok(ops->download(be, out, y, sizeof out, &err), &err, "download");
        kt_expect_ok(ops->sum_squares(be, 4, x, &ss, &err), &err, "sum_squares");
        /* Before graph_end the caller's outputs are NaN, as if nothing ran yet. */
        assert_true(isnan(out[0]) && isnan(out[3]) && isnan(ss));
        kt_expect_fail(ops->sync(be, &err), &err, KILN_EINVAL, "sync inside a step graph pass");
        assert_null(ops->alloc(be, 16, &err));
        assert_non_null(strstr(err.msg, "alloc inside a step graph pass"));
        kt_expect_ok(ops->graph_end(be, g, &err), &err, "end");
        float want = in[0] / (1.0f + expf(-in[0]));
        assert_true(fabsf(out[0] - want) <= 1e-6f * fabsf(want));
        assert_true(ss == (double)in[0] * in[0] + 4 + 9 + 0.25);
    }
    long rec = 0, rep = 0;
    kiln_nn_graph_checker_counts(be, &rec, &rep);
    assert_int_equal(rec, 1);
    assert_int_equal(rep, 2);
    /* Another buffer than the recording's: refused, then cancelled; the
     * recording still replays. */
    float in[4] = {0}, out[4];
    double ss;
    kt_expect_ok(ops->graph_begin(be, &g, &err), &err, "begin");
    kt_expect_ok(ops->upload(be, x, in, sizeof in, &err), &err, "upload");
    kt_expect_fail(ops->silu_forward(be, 4, x, z, &err), &err, KILN_EINVAL,
                   "call 2 (silu_forward) has other buffers");
    ops->graph_cancel(be, g);
    kt_expect_ok(ops->graph_begin(be, &g, &err), &err, "begin");
    kt_expect_ok(ops->upload(be, x, in, sizeof in, &err), &err, "upload");
    kt_expect_ok(ops->silu_forward(be, 4, x, y, &err), &err, "silu");
    kt_expect_fail(ops->graph_end(be, g, &err), &err, KILN_EINVAL,
                   "the step made 2 calls, the recording has 4");
    kt_expect_ok(ops->graph_begin(be, &g, &err), &err, "begin");
    kt_expect_ok(ops->upload(be, x, in, sizeof in, &err), &err, "upload");
    kt_expect_ok(ops->silu_forward(be, 4, x, y, &err), &err, "silu");
    kt_expect_ok(ops->download(be, out, y, sizeof out, &err), &err, "download");
    kt_expect_ok(ops->sum_squares(be, 4, x, &ss, &err), &err, "sum_squares");
    kt_expect_ok(ops->graph_end(be, g, &err), &err, "end");
    assert_true(out[0] == 0.0f && ss == 0.0);
    ops->graph_free(be, g);
    ops->release(be, x);
    ops->release(be, y);
    ops->release(be, z);
    kiln_nn_backend_destroy(be);
}

typedef struct history {
    kiln_train_epoch e[4];
    int n;
} history;

static void on_epoch(void *ctx, const kiln_train_epoch *e)
{
    history *h = ctx;
    if (h->n < 4)
        h->e[h->n++] = *e;
}

static void train_into(const char *data, const char *out, const char *device, int graphs,
                       history *h, kiln_train_result *res)
{
    kiln_train_opts o;
    kiln_err err = {0};
    kt_train_tiny_opts(&o, data, out, 2);
    o.device = device;
    /* "cuda-bf16": the GPU's mixed precision. */
    if (strcmp(device, "cuda-bf16") == 0) {
        o.device = "cuda";
        snprintf(o.cfg.train.precision, sizeof o.cfg.train.precision, "bf16");
    }
    o.cuda_graphs = graphs;
    /* Stochastic depth and dropout draw a new mask every step: the seed is a
     * slot, not part of the recording. */
    o.on_epoch = on_epoch;
    o.cb_ctx = h;
    kt_expect_ok(kiln_train(&o, res, &err), &err, device);
}

static char *read_weights(const char *dir, size_t *len)
{
    char *path = kt_path(dir, "model.safetensors"), *data = NULL;
    kiln_err err = {0};
    kt_expect_ok(kiln_read_file(path, (size_t)1 << 30, &data, len, &err), &err, path);
    free(path);
    return data;
}

/* The graph run reproduced the eager one: every epoch's figures and the
 * weights, bit for bit. */
static void expect_same_run(const char *what, const history *he, const history *hg,
                            const char *eager_dir, const char *graph_dir)
{
    assert_int_equal(he->n, 2);
    assert_int_equal(hg->n, 2);
    for (int i = 0; i < 2; i++) {
        printf("%s epoch %d: loss %.9g / %.9g, val loss %.9g / %.9g, val acc %.4f / %.4f\n",
               what, i + 1, he->e[i].train_loss, hg->e[i].train_loss, he->e[i].val_loss,
               hg->e[i].val_loss, he->e[i].val_accuracy, hg->e[i].val_accuracy);
        assert_true(he->e[i].train_loss == hg->e[i].train_loss);
        assert_true(he->e[i].train_accuracy == hg->e[i].train_accuracy);
        assert_true(he->e[i].val_loss == hg->e[i].val_loss);
        assert_true(he->e[i].val_accuracy == hg->e[i].val_accuracy);
    }
    size_t ne, ng;
    char *we = read_weights(eager_dir, &ne), *wg = read_weights(graph_dir, &ng);
    assert_int_equal(ne, ng);
    assert_memory_equal(we, wg, ne);
    free(we);
    free(wg);
}

static void test_train_steps_replay_and_match_eager(void **state)
{
    const char *root = *state;
    /* 40 train images at batch 8: 5 steps an epoch; 10 val images leave a
     * short last val batch, which plans the model anew, so each epoch's
     * first step records again. */
    char *data = kt_train_dataset(root, 40, 10, kt_colour_pixel);
    char *eager_dir = kt_path(root, "eager"), *graph_dir = kt_path(root, "graph");
    history he = {0}, hg = {0};
    kiln_train_result re, rg;
    train_into(data, eager_dir, "cpu", 0, &he, &re);
    train_into(data, graph_dir, "cpu-graph-check", 1, &hg, &rg);
    assert_int_equal(re.graph_steps, 0);
    assert_int_equal(rg.graph_steps, 2 * 5 - 1);
    assert_int_equal(rg.graph_recordings, 2);
    expect_same_run("cpu", &he, &hg, eager_dir, graph_dir);
    /* The same on bf16 activations, whose step adds the conversions. */
    char *eager16 = kt_path(root, "eager16"), *graph16 = kt_path(root, "graph16");
    history he16 = {0}, hg16 = {0};
    train_into(data, eager16, "cpu-bf16", 0, &he16, &re);
    train_into(data, graph16, "cpu-bf16-graph-check", 1, &hg16, &rg);
    assert_int_equal(rg.graph_steps, 2 * 5 - 1);
    expect_same_run("cpu-bf16", &he16, &hg16, eager16, graph16);
    assert_false(he16.e[1].train_loss == he.e[1].train_loss);
    free(eager16);
    free(graph16);
    /* The package: served below by both ways. */
    char *package = kt_path(root, "package");
    assert_int_equal(rename(graph_dir, package), 0);
    free(package);
    free(eager_dir);
    free(graph_dir);
    free(data);
}

static void predict_with(const char *dir, const char *device, int max_batch, int graphs,
                         const float *inputs, int n, float *probs)
{
    kiln_err err = {0};
    kiln_serve_batching b = {.max_batch = max_batch, .max_wait_ms = 0, .cuda_graphs = graphs};
    kiln_serve_model *m = kt_expect_ptr(kiln_serve_model_load_batched(dir, device, 1, &b, NULL,
                                                                      &err),
                                        &err, device);
    int k = kiln_serve_model_info(m)->num_classes;
    /* One input at a time, several rounds: the first forward runs eagerly,
     * the next records, the rest replay. */
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < n; i++) {
            size_t px = (size_t)3 * kiln_serve_model_info(m)->input_size *
                        kiln_serve_model_info(m)->input_size;
            kt_expect_ok(kiln_serve_model_predict(m, inputs + i * px, 1,
                                                  probs + ((size_t)round * n + i) * k, &err),
                         &err, "predict");
        }
    /* Every forward after the first was a graph (recorded once, replayed). */
    assert_int_equal(kiln_serve_model_graph_forwards(m), graphs ? 3 * n - 1 : 0);
    kiln_serve_model_unref(m);
}

static void test_serve_forwards_match_eager(void **state)
{
    const char *root = *state;
    char *dir = kt_path(root, "package");
    kiln_err err = {0};
    kiln_serve_model *probe = kiln_serve_model_load(dir, "cpu", 1, NULL, &err);
    if (!probe) {
        /* The train test made it; run alone, make one. */
        char *data = kt_train_dataset(root, 40, 10, kt_colour_pixel);
        history h = {0};
        kiln_train_result r;
        train_into(data, dir, "cpu", 0, &h, &r);
        free(data);
        probe = kt_expect_ptr(kiln_serve_model_load(dir, "cpu", 1, NULL, &err), &err, "load");
    }
    int s = kiln_serve_model_info(probe)->input_size, k = kiln_serve_model_info(probe)->num_classes;
    kiln_serve_model_unref(probe);
    enum { N = 3 };
    size_t px = (size_t)3 * s * s;
    float *inputs = malloc(N * px * sizeof *inputs);
    float *want = malloc(3 * N * (size_t)k * sizeof *want), *got = malloc(3 * N * (size_t)k * sizeof *got);
    assert_non_null(inputs);
    assert_non_null(want);
    assert_non_null(got);
    for (size_t i = 0; i < N * px; i++)
        inputs[i] = (float)((int)(i * 2654435761u % 2001) - 1000) / 700.0f;
    /* Per batch size: a padded batch of 4 need not round as a batch of 1. */
    for (int batch = 1; batch <= 4; batch += 3) {
        predict_with(dir, "cpu", batch, 0, inputs, N, want);
        memset(got, 0, 3 * N * (size_t)k * sizeof *got);
        predict_with(dir, "cpu-graph-check", batch, 1, inputs, N, got);
        assert_memory_equal(want, got, 3 * N * (size_t)k * sizeof *got);
    }
    free(inputs);
    free(want);
    free(got);
    free(dir);
}

/* On a GPU: the same run eagerly and as CUDA graphs. With cuDNN's
 * heuristics (not timings) both runs pick the same algorithms, so the
 * graphs must reproduce the eager run bit for bit. */
static void test_cuda_train_graphs_match_eager(void **state)
{
    const char *root = *state;
    kiln_err err = {0};
    kiln_nn_backend *gpu = kiln_nn_backend_open("cuda", 1, NULL, &err);
    if (!gpu) {
        printf("SKIPPED: no usable GPU (%s)\n", err.msg);
        return;
    }
    kiln_nn_backend_destroy(gpu);
    setenv("KILN_CUDA_FIND", "0", 1);
    char *data = kt_train_dataset(root, 40, 10, kt_colour_pixel);
    char *eager_dir = kt_path(root, "cuda-eager"), *graph_dir = kt_path(root, "cuda-graph");
    history he = {0}, hg = {0};
    kiln_train_result re, rg;
    train_into(data, eager_dir, "cuda", 0, &he, &re);
    train_into(data, graph_dir, "cuda", 1, &hg, &rg);
    assert_int_equal(rg.graph_steps, 2 * 5 - 1);
    expect_same_run("cuda", &he, &hg, eager_dir, graph_dir);
    char *eager16 = kt_path(root, "cuda-eager16"), *graph16 = kt_path(root, "cuda-graph16");
    history he16 = {0}, hg16 = {0};
    train_into(data, eager16, "cuda-bf16", 0, &he16, &re);
    train_into(data, graph16, "cuda-bf16", 1, &hg16, &rg);
    expect_same_run("cuda bf16", &he16, &hg16, eager16, graph16);
    free(eager16);
    free(graph16);
    /* kiln-serve's forwards on the GPU, eager and as graphs. */
    enum { N = 2 };
    size_t px = (size_t)3 * 32 * 32, out = (size_t)3 * N * 3;
    float *inputs = calloc(N * px, sizeof *inputs), *want = calloc(out, sizeof *want);
    float *got = calloc(out, sizeof *got);
    assert_true(inputs && want && got);
    for (size_t i = 0; i < N * px; i++)
        inputs[i] = (float)((int)(i * 2654435761u % 2001) - 1000) / 700.0f;
    predict_with(graph_dir, "cuda", 1, 0, inputs, N, want);
    predict_with(graph_dir, "cuda", 1, 1, inputs, N, got);
    assert_memory_equal(want, got, out * sizeof *got);
    free(inputs);
    free(want);
    free(got);
    free(eager_dir);
    free(graph_dir);
    free(data);
    unsetenv("KILN_CUDA_FIND");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checker_contract),
        cmocka_unit_test(test_train_steps_replay_and_match_eager),
        cmocka_unit_test(test_serve_forwards_match_eager),
        cmocka_unit_test(test_cuda_train_graphs_match_eager),
    };
    return cmocka_run_group_tests(tests, kt_setup_tmpdir, kt_teardown_tmpdir);
}
