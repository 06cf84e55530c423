/* tests/test_nn_model_train.c — running lib/nn/efficientnet on the CPU
 * backend: dropout and stochastic-depth masks, re-planning (and inference
 * plans), the full model's gradient against finite differences, and a tiny
 * data set overfit with AdamW. */
#include "nn/optim.h"
#include "test_nn_model.h"

/* --- dropout, stochastic depth, planning -------------------------------- */

static float *logits_host(fixture *f, kiln_effnet *m, const float *x, int train, uint64_t seed)
{
    const float *l = forward(m, x, train, seed);
    return download(f, l, 4 * (size_t)kiln_effnet_num_classes(m));
}

static void test_masks(void **state)
{
    fixture *f = *state;
    kiln_effnet *m = make(f, "b0", 6, 2);
    kiln_err err = {0};
    plan(m, 4, 32, 32);
    float *x = random_input(f, 4, 32, 32, 5);
    size_t n = 4 * 6;
    assert_int_equal(kiln_effnet_set_dropout(m, 0.5f, &err), KILN_OK);
    assert_int_equal(kiln_effnet_set_stochastic_depth(m, 0.5f, &err), KILN_OK);
    assert_int_not_equal(kiln_effnet_set_dropout(m, 1.0f, &err), KILN_OK);
    assert_int_equal(err.code, KILN_EINVAL);
    assert_int_not_equal(kiln_effnet_set_stochastic_depth(m, -0.1f, &err), KILN_OK);
    assert_float_equal(kiln_effnet_dropout(m), 0.5f, 0);

    /* Train mode: the same seed draws the same masks, another seed others. */
    float *t1 = logits_host(f, m, x, 1, 100), *t1b = logits_host(f, m, x, 1, 100);
    float *t2 = logits_host(f, m, x, 1, 101);
    assert_true(same_floats(t1, t1b, n));
    assert_false(same_floats(t1, t2, n));
    /* Without dropout and stochastic depth the seed does not matter ... */
    assert_int_equal(kiln_effnet_set_dropout(m, 0.0f, &err), KILN_OK);
    assert_int_equal(kiln_effnet_set_stochastic_depth(m, 0.0f, &err), KILN_OK);
    float *d1 = logits_host(f, m, x, 1, 100), *d2 = logits_host(f, m, x, 1, 101);
    assert_true(same_floats(d1, d2, n));
    assert_false(same_floats(d1, t1, n));
    /* ... and each of the two changes the output on its own. */
    assert_int_equal(kiln_effnet_set_dropout(m, 0.5f, &err), KILN_OK);
    float *only_drop = logits_host(f, m, x, 1, 100);
    assert_false(same_floats(only_drop, d1, n));
    assert_int_equal(kiln_effnet_set_dropout(m, 0.0f, &err), KILN_OK);
    assert_int_equal(kiln_effnet_set_stochastic_depth(m, 0.5f, &err), KILN_OK);
    float *only_sd = logits_host(f, m, x, 1, 100);
    assert_false(same_floats(only_sd, d1, n));

    /* Eval mode: no masks (any seed), running stats untouched. */
    assert_int_equal(kiln_effnet_set_dropout(m, 0.5f, &err), KILN_OK);
    const kiln_effnet_tensor *rv = kiln_effnet_find(m, "features.2.0.block.1.1.running_var");
    const int64_t *counter =
        kiln_effnet_find(m, "features.2.0.block.1.1.num_batches_tracked")->counter;
    int64_t batches = *counter;
    assert_int_equal(batches, 7); /* seven train forwards so far */
    float *stats = download(f, rv->data, rv->count);
    float *e1 = logits_host(f, m, x, 0, 100), *e2 = logits_host(f, m, x, 0, 101);
    assert_true(same_floats(e1, e2, n));
    float *stats2 = download(f, rv->data, rv->count);
    assert_true(same_floats(stats, stats2, rv->count));
    assert_int_equal(*counter, batches);
    float *t3 = logits_host(f, m, x, 1, 100);
    float *stats3 = download(f, rv->data, rv->count);
    assert_false(same_floats(stats, stats3, rv->count));
    assert_int_equal(*counter, batches + 1);

    /* Backward needs a train forward just before it. */
    float *dl = upload(f, t3, n * sizeof *t3);
    forward(m, x, 0, 0);
    assert_int_not_equal(kiln_effnet_backward(m, dl, &err), KILN_OK);
    assert_int_equal(err.code, KILN_EINVAL);
    forward(m, x, 1, 0);
    assert_int_equal(kiln_effnet_backward(m, dl, &err), KILN_OK);

    float *all[] = {t1, t1b, t2, d1, d2, only_drop, only_sd, stats, e1, e2, stats2, t3, stats3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    f->be->ops->release(f->be, dl);
    f->be->ops->release(f->be, x);
    kiln_effnet_destroy(m);
}

static void test_replan(void **state)
{
    fixture *f = *state;
    kiln_effnet *m = make(f, "b0", 3, 4);
    kiln_err err = {0};
    float *x = random_input(f, 3, 40, 36, 9);
    assert_null(kiln_effnet_forward(m, x, 0, 0, &err));
    assert_int_equal(err.code, KILN_EINVAL);
    assert_int_not_equal(kiln_effnet_plan(m, 0, 32, 32, &err), KILN_OK);
    assert_int_not_equal(kiln_effnet_plan(m, 2, 0, 32, &err), KILN_OK);

    /* Eval mode is per sample: the first two images give the same logits in
     * a batch of 3 at 40x36 as in a batch of 2 planned afterwards. */
    plan(m, 3, 40, 36);
    const float *l3 = forward(m, x, 0, 0);
    plan(m, 3, 40, 36); /* same shape: nothing moves */
    assert_ptr_equal(forward(m, x, 0, 0), l3);
    float *a = download(f, l3, 9);
    plan(m, 2, 40, 36);
    float *b = download(f, forward(m, x, 0, 0), 6);
    for (int i = 0; i < 6; i++)
        assert_float_equal(a[i], b[i], 1e-4 * (fabs(a[i]) + 1));
    /* An inference plan gives the same eval logits in far less memory, and
     * refuses training. */
    size_t train_bytes = kiln_effnet_plan_bytes(m);
    assert_int_equal(kiln_effnet_plan_inference(m, 2, 40, 36, &err), KILN_OK);
    assert_true(kiln_effnet_plan_bytes(m) * 4 < train_bytes);
    float *bi = download(f, forward(m, x, 0, 0), 6);
    assert_true(same_floats(b, bi, 6));
    assert_null(kiln_effnet_forward(m, x, 1, 0, &err));
    assert_int_equal(err.code, KILN_EINVAL);
    assert_int_not_equal(kiln_effnet_backward(m, x, &err), KILN_OK);
    plan(m, 2, 40, 36); /* same shape, training plan: re-planned */
    assert_int_equal(kiln_effnet_plan_bytes(m), train_bytes);
    forward(m, x, 1, 0);
    free(bi);
    /* Another size works too, and its logits differ. */
    plan(m, 2, 64, 48);
    float *x2 = random_input(f, 2, 64, 48, 9);
    float *c = download(f, forward(m, x2, 1, 0), 6);
    for (int i = 0; i < 6; i++)
        assert_true(isfinite(c[i]));
    free(a);
    free(b);
    free(c);
    f->be->ops->release(f->be, x);
    f->be->ops->release(f->be, x2);
    kiln_effnet_destroy(m);
}

/* --- gradients and training --------------------------------------------- */

static void set_param(fixture *f, const kiln_effnet_tensor *p, size_t i, float v)
{
    kiln_err err = {0};
    if (f->be->ops->upload(f->be, p->data + i, &v, sizeof v, &err) != KILN_OK)
        fail_msg("%s", err.msg);
}

/* d(loss)/d(param) by central differences against backward, at the element
 * of each tensor with the largest analytic gradient. Covers every kind of
 * layer: stem, BN, depthwise in a residual block, SE, expand, projection,
 * head, classifier. (Not the projection BN biases: their gradient is exactly
 * 0, the next train-mode BN removes any shift.) 64x64 keeps the last stages
 * at 2x2: at 32x32 they are 1x1 and BatchNorm over 4 values makes the loss
 * too steep for finite differences (torch agrees with backward there too). */
static void test_finite_differences(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    kiln_effnet *m = make(f, "b0", 5, 31);
    assert_int_equal(kiln_effnet_set_dropout(m, 0.0f, &err), KILN_OK);
    assert_int_equal(kiln_effnet_set_stochastic_depth(m, 0.0f, &err), KILN_OK);
    batch b = {.n = 4, .h = 64, .w = 64, .classes = 5};
    b.x = random_input(f, b.n, b.h, b.w, 17);
    b.host_labels = malloc(4 * sizeof *b.host_labels);
    for (int i = 0; i < 4; i++)
        b.host_labels[i] = (i * 3) % 5;
    batch_buffers(f, &b);
    plan(m, b.n, b.h, b.w);
    loss_of(f, m, &b, 0, 1, NULL);

    static const char *const names[] = {
        "features.0.0.weight",           "features.0.1.weight",
        "features.1.0.block.1.fc1.weight", "features.2.0.block.0.0.weight",
        "features.4.1.block.1.0.weight", "features.4.2.block.2.fc2.bias",
        "features.6.2.block.1.1.bias",   "features.7.0.block.3.0.weight",
        "features.8.1.weight",           "classifier.1.weight",
        "classifier.1.bias",
    };
    size_t k = sizeof names / sizeof names[0];
    float grads[16];
    size_t where[16];
    for (size_t t = 0; t < k; t++) {
        const kiln_effnet_tensor *p = kiln_effnet_find(m, names[t]);
        assert_non_null(p);
        float *g = download(f, p->grad, p->count);
        where[t] = 0;
        for (size_t i = 1; i < p->count; i++)
            if (fabsf(g[i]) > fabsf(g[where[t]]))
                where[t] = i;
        grads[t] = g[where[t]];
        free(g);
    }
    for (size_t t = 0; t < k; t++) {
        const kiln_effnet_tensor *p = kiln_effnet_find(m, names[t]);
        float *w = download(f, p->data + where[t], 1);
        float w0 = *w;
        free(w);
        float h = 1e-2f * fmaxf(fabsf(w0), 0.1f);
        set_param(f, p, where[t], w0 + h);
        double up = loss_of(f, m, &b, 0, 0, NULL);
        set_param(f, p, where[t], w0 - h);
        double down = loss_of(f, m, &b, 0, 0, NULL);
        set_param(f, p, where[t], w0);
        double fd = (up - down) / (2.0 * (double)h);
        printf("%-36s [%6zu] backward %+.6e  finite difference %+.6e\n", names[t], where[t],
               (double)grads[t], fd);
        if (!(fabs(fd - grads[t]) <= 0.03 * fabs(grads[t]) + 1e-4))
            fail_msg("%s[%zu]: backward %g, finite difference %g", names[t], where[t],
                     (double)grads[t], fd);
    }
    batch_free(f, &b);
    kiln_effnet_destroy(m);
}

static void test_overfit_tiny_batch(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    kiln_effnet *m = make(f, "b0", 4, 1);
    /* No dropout / stochastic depth: memorising 32 images is the point. */
    assert_int_equal(kiln_effnet_set_dropout(m, 0.0f, &err), KILN_OK);
    assert_int_equal(kiln_effnet_set_stochastic_depth(m, 0.0f, &err), KILN_OK);
    batch b;
    synthetic_batch(f, &b);
    plan(m, b.n, b.h, b.w);

    size_t n = kiln_effnet_param_tensors(m);
    kiln_optim_param *list = calloc(n, sizeof *list);
    for (size_t i = 0; i < n; i++) {
        const kiln_effnet_tensor *p = kiln_effnet_param(m, i);
        list[i] = (kiln_optim_param){p->data, p->grad, p->count, p->no_weight_decay};
    }
    kiln_optim_config cfg;
    kiln_optim_config_adamw(&cfg, 1e-2f, 0.0f);
    kiln_optim *opt = kiln_optim_create(f->be, &cfg, list, n, &err);
    free(list);
    assert_non_null(opt);

    /* Label smoothing 0.1 over 4 classes puts the loss floor at 0.35; the
     * same recipe in torch (efficientnet_b0, AdamW 1e-2, this data) goes
     * 8.2 -> 0.9 in about 35 steps, noisily: Adam's first steps move every
     * weight by ~lr, half a depthwise weight, and the loss jumps to ~40
     * before it falls. The run is deterministic for a given instruction set
     * and thread count, but their rounding sends it down different paths:
     * it reached 32/32 and loss < 1.0 after 35-40 steps with KILN_CPU_ISA
     * sse2, avx2 and avx512 on 1 and 2 threads, and after 23-43 steps over
     * init seeds 1-10; MAX_STEPS leaves room for CPUs and OpenBLAS kernels
     * we have not seen. A passing run stops as soon as it gets there. */
    enum { MAX_STEPS = 80 };
    int steps = 0, right = 0;
    double first = 0, loss = 0;
    for (steps = 1; steps <= MAX_STEPS; steps++) {
        float *logits = NULL;
        loss = loss_of(f, m, &b, (uint64_t)steps, 1, &logits);
        right = accuracy(&b, logits);
        free(logits);
        if (steps == 1)
            first = loss;
        if (getenv("KILN_TEST_VERBOSE"))
            printf("step %d loss %.4f accuracy %d\n", steps, loss, right);
        if (right == b.n && loss < 1.0)
            break;
        assert_int_equal(kiln_optim_step(opt, &err), KILN_OK);
    }
    /* Accuracy in train mode (batch statistics), as the training loop sees
     * it: at 32x32 the last stages are 1x1 and BatchNorm's batch statistics
     * over 32 values differ a lot from running ones; torch's eval mode gets
     * 15/32 on this recipe even with recalibrated running statistics. */
    printf("overfit: %d steps, loss %.4f -> %.4f, train accuracy %d/%d\n", steps, first, loss,
           right, b.n);
    assert_int_equal(right, b.n);
    assert_true(loss < 1.0);
    kiln_optim_destroy(opt);
    batch_free(f, &b);
    kiln_effnet_destroy(m);
}

/* The same on bf16 activations (cpu-bf16, the GPU's mixed precision):
 * masks behave alike, and the tiny set is still memorised. */
static void test_masks_bf16(void **state)
{
    test_masks(state);
}

static void test_overfit_tiny_batch_bf16(void **state)
{
    test_overfit_tiny_batch(state);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, kt_model_setup, kt_model_teardown)
#define T16(fn) cmocka_unit_test_setup_teardown(fn, kt_model_setup_bf16, kt_model_teardown)
    const struct CMUnitTest tests[] = {
        T(test_masks),
        T(test_replan),
        T(test_finite_differences),
        T(test_overfit_tiny_batch),
        T16(test_masks_bf16),
        T16(test_overfit_tiny_batch_bf16),
    };
#undef T
#undef T16
    return cmocka_run_group_tests(tests, NULL, NULL);
}
