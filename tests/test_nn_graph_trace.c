/* tests/test_nn_graph_trace.c — lib/nn/graph_trace: recording a pass,
 * replaying it call by call, refusing every kind of difference (op, words,
 * slot size, too many or too few calls, a call outside a pass), slots kept
 * at their address across passes and freed, and host outputs delivered. */
#include <stdlib.h>
#include <string.h>

#include "nn/graph_trace.h"
#include "support/testutil.h"

typedef struct slot_log {
    int allocs, frees, fail_after; /* fail_after < 0: never fail */
} slot_log;

static void *slot_alloc(void *ctx, size_t bytes, void **dev, kiln_err *err)
{
    slot_log *l = ctx;
    if (l->fail_after >= 0 && l->allocs >= l->fail_after) {
        kiln_err_set(err, KILN_ENOMEM, "test: no more slots");
        return NULL;
    }
    l->allocs++;
    void *p = calloc(1, bytes);
    if (dev)
        *dev = (char *)p + 1; /* a distinct fake device address, never used */
    return p;
}

static void slot_free(void *ctx, void *slot, void *dev)
{
    slot_log *l = ctx;
    l->frees++;
    assert_ptr_equal(dev ? (char *)slot + 1 : dev, dev);
    free(slot);
}

static void make_trace(kiln_graph_trace *t, slot_log *l)
{
    memset(l, 0, sizeof *l);
    l->fail_after = -1;
    kiln_graph_slot_fns fns = {.slot_alloc = slot_alloc, .slot_free = slot_free, .ctx = l};
    kiln_graph_trace_init(t, &fns);
}

/* The same three calls a step would make: a conv, an upload with a slot, an
 * optimizer step with a slot and a device twin. */
static int step_calls(kiln_graph_trace *t, const float *x, float lr_bits_source, void **upload_slot,
                      void **opt_slot, void **opt_dev, kiln_err *err)
{
    uint64_t conv[] = {kiln_graph_word_ptr(x), 8, 3, 3, kiln_graph_word_float(1.0f)};
    int rc = kiln_graph_trace_call(t, "conv_forward", conv, 5, 0, NULL, NULL, err);
    uint64_t up[] = {kiln_graph_word_ptr(x), 64};
    if (rc == KILN_OK)
        rc = kiln_graph_trace_call(t, "upload", up, 2, 64, upload_slot, NULL, err);
    uint64_t opt[] = {kiln_graph_word_ptr(x), 16};
    if (rc == KILN_OK)
        rc = kiln_graph_trace_call(t, "adamw_step", opt, 2, 32, opt_slot, opt_dev, err);
    if (rc == KILN_OK)
        memcpy(*opt_slot, &lr_bits_source, sizeof lr_bits_source);
    return rc;
}

static void test_record_and_replay(void **state)
{
    (void)state;
    kiln_graph_trace t;
    slot_log l;
    make_trace(&t, &l);
    kiln_err err = {0};
    float x[4];
    void *up0, *opt0, *dev0, *up1, *opt1, *dev1;
    assert_int_equal(kiln_graph_trace_start(&t, KILN_GRAPH_CAPTURE, &err), KILN_OK);
    assert_int_equal(step_calls(&t, x, 0.1f, &up0, &opt0, &dev0, &err), KILN_OK);
    assert_int_equal(kiln_graph_trace_finish(&t, &err), KILN_OK);
    assert_int_equal(t.count, 3);
    assert_int_equal(l.allocs, 2);
    assert_non_null(up0);
    assert_ptr_equal(dev0, (char *)opt0 + 1);
    for (int pass = 0; pass < 3; pass++) {
        assert_int_equal(kiln_graph_trace_start(&t, KILN_GRAPH_REPLAY, &err), KILN_OK);
        assert_int_equal(step_calls(&t, x, 0.2f + pass, &up1, &opt1, &dev1, &err), KILN_OK);
        assert_int_equal(kiln_graph_trace_finish(&t, &err), KILN_OK);
        /* The graph reads the same addresses every time: the new value is there. */
        assert_ptr_equal(up1, up0);
        assert_ptr_equal(opt1, opt0);
        assert_ptr_equal(dev1, dev0);
        float got;
        memcpy(&got, opt1, sizeof got);
        assert_true(got == 0.2f + pass);
    }
    assert_int_equal(l.allocs, 2);
    /* A new capture drops the old recording and its slots. */
    assert_int_equal(kiln_graph_trace_start(&t, KILN_GRAPH_CAPTURE, &err), KILN_OK);
    assert_int_equal(l.frees, 2);
    assert_int_equal(t.count, 0);
    kiln_graph_trace_abort(&t);
    kiln_graph_trace_free(&t);
    assert_int_equal(l.frees, l.allocs);
}

static float g_x[4], g_other[4]; /* the step's buffers: the same addresses in every pass */

static void replay_expect_error(kiln_graph_trace *t, int variant, const char *needle)
{
    kiln_err err = {0};
    float *x = g_x, *other = g_other;
    void *slot;
    assert_int_equal(kiln_graph_trace_start(t, KILN_GRAPH_REPLAY, &err), KILN_OK);
    uint64_t conv[] = {kiln_graph_word_ptr(variant == 1 ? other : x), 8, 3, 3,
                       kiln_graph_word_float(variant == 2 ? 0.5f : 1.0f)};
    int rc = kiln_graph_trace_call(t, variant == 0 ? "bn_forward_train" : "conv_forward", conv, 5,
                                   0, NULL, NULL, &err);
    uint64_t up[] = {kiln_graph_word_ptr(x), 64};
    if (rc == KILN_OK)
        rc = kiln_graph_trace_call(t, "upload", up, 2, variant == 3 ? 128 : 64, &slot, NULL, &err);
    if (rc == KILN_OK && variant == 4)
        rc = kiln_graph_trace_finish(t, &err); /* one call short */
    else if (rc == KILN_OK)
        rc = KILN_EIO;
    assert_int_equal(rc, KILN_EINVAL);
    if (!strstr(err.msg, needle))
        fail_msg("variant %d: \"%s\" lacks \"%s\"", variant, err.msg, needle);
    kiln_graph_trace_abort(t);
}

static void test_replay_refuses_a_changed_step(void **state)
{
    (void)state;
    kiln_graph_trace t;
    slot_log l;
    make_trace(&t, &l);
    kiln_err err = {0};
    float *x = g_x;
    void *a, *b, *c;
    assert_int_equal(kiln_graph_trace_start(&t, KILN_GRAPH_CAPTURE, &err), KILN_OK);
    assert_int_equal(step_calls(&t, x, 0.1f, &a, &b, &c, &err), KILN_OK);
    assert_int_equal(kiln_graph_trace_finish(&t, &err), KILN_OK);
    replay_expect_error(&t, 0, "call 1 is bn_forward_train where the recording has conv_forward");
    replay_expect_error(&t, 1, "call 1 (conv_forward) has other buffers");
    replay_expect_error(&t, 2, "call 1 (conv_forward) has other buffers");
    replay_expect_error(&t, 3, "call 2 (upload) has other buffers");
    replay_expect_error(&t, 4, "the step made 2 calls, the recording has 3");
    /* One call too many. */
    assert_int_equal(kiln_graph_trace_start(&t, KILN_GRAPH_REPLAY, &err), KILN_OK);
    assert_int_equal(step_calls(&t, x, 0.3f, &a, &b, &c, &err), KILN_OK);
    uint64_t w = 1;
    assert_int_equal(kiln_graph_trace_call(&t, "add", &w, 1, 0, NULL, NULL, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "call 4 (add) is past the recording's 3 calls"));
    kiln_graph_trace_abort(&t);
    /* An abandoned replay keeps the recording: the next replay works. */
    assert_int_equal(t.count, 3);
    assert_int_equal(kiln_graph_trace_start(&t, KILN_GRAPH_REPLAY, &err), KILN_OK);
    assert_int_equal(step_calls(&t, x, 0.3f, &a, &b, &c, &err), KILN_OK);
    assert_int_equal(kiln_graph_trace_finish(&t, &err), KILN_OK);
    kiln_graph_trace_free(&t);
    assert_int_equal(l.frees, l.allocs);
}

static void test_misuse(void **state)
{
    (void)state;
    kiln_graph_trace t;
    slot_log l;
    make_trace(&t, &l);
    kiln_err err = {0};
    uint64_t w = 7;
    assert_int_equal(kiln_graph_trace_call(&t, "add", &w, 1, 0, NULL, NULL, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "add outside a pass"));
    assert_int_equal(kiln_graph_trace_start(&t, KILN_GRAPH_REPLAY, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "nothing recorded"));
    assert_int_equal(kiln_graph_trace_start(&t, 9, &err), KILN_EINVAL);
    assert_int_equal(kiln_graph_trace_finish(&t, &err), KILN_EINVAL);
    assert_int_equal(kiln_graph_trace_start(&t, KILN_GRAPH_CAPTURE, &err), KILN_OK);
    assert_int_equal(kiln_graph_trace_start(&t, KILN_GRAPH_CAPTURE, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "already under way"));
    /* A slot that cannot be made fails the call and names it. */
    l.fail_after = 0;
    void *slot = (void *)&w;
    assert_int_equal(kiln_graph_trace_call(&t, "upload", &w, 1, 16, &slot, NULL, &err),
                     KILN_ENOMEM);
    assert_non_null(strstr(err.msg, "call 1 (upload, 16 bytes)"));
    /* An aborted capture leaves nothing to replay. */
    l.fail_after = -1;
    assert_int_equal(kiln_graph_trace_call(&t, "upload", &w, 1, 16, &slot, NULL, &err), KILN_OK);
    kiln_graph_trace_abort(&t);
    assert_int_equal(t.count, 0);
    assert_int_equal(l.frees, l.allocs);
    assert_int_equal(kiln_graph_trace_start(&t, KILN_GRAPH_REPLAY, &err), KILN_EINVAL);
    /* Without slot functions, a call that needs a slot is refused. */
    kiln_graph_trace bare;
    kiln_graph_trace_init(&bare, NULL);
    assert_int_equal(kiln_graph_trace_start(&bare, KILN_GRAPH_CAPTURE, &err), KILN_OK);
    assert_int_equal(kiln_graph_trace_call(&bare, "upload", &w, 1, 8, &slot, NULL, &err),
                     KILN_EINVAL);
    assert_non_null(strstr(err.msg, "needs a slot"));
    kiln_graph_trace_free(&bare);
    kiln_graph_trace_free(&t);
}

static void test_outputs_delivered_after_the_run(void **state)
{
    (void)state;
    kiln_graph_trace t;
    slot_log l;
    make_trace(&t, &l);
    kiln_err err = {0};
    uint64_t w = 3;
    void *slot = NULL;
    assert_int_equal(kiln_graph_trace_start(&t, KILN_GRAPH_CAPTURE, &err), KILN_OK);
    assert_int_equal(kiln_graph_trace_call(&t, "xent", &w, 1, 4 * sizeof(double), &slot, NULL,
                                           &err),
                     KILN_OK);
    float probs_host[2] = {0};
    double loss = -1;
    assert_int_equal(kiln_graph_trace_output(&t, KILN_GRAPH_OUT_SUM_F64, &loss, slot, 3, 3.0,
                                             &err),
                     KILN_OK);
    assert_int_equal(kiln_graph_trace_output(&t, KILN_GRAPH_OUT_COPY, probs_host,
                                             (double *)slot + 3, sizeof probs_host, 1.0, &err),
                     KILN_OK);
    assert_int_equal(kiln_graph_trace_finish(&t, &err), KILN_OK);
    /* What the graph would have written into the slot when it ran. */
    double *v = slot;
    v[0] = 1.5, v[1] = 2.0, v[2] = 2.5;
    float p[2] = {0.25f, 0.75f};
    memcpy(v + 3, p, sizeof p);
    assert_true(loss == -1); /* nothing before delivery */
    kiln_graph_trace_deliver(&t);
    assert_true(loss == 2.0);
    assert_true(probs_host[0] == 0.25f && probs_host[1] == 0.75f);
    /* A new pass starts with no outputs. */
    assert_int_equal(kiln_graph_trace_start(&t, KILN_GRAPH_REPLAY, &err), KILN_OK);
    assert_int_equal(t.n_outs, 0);
    kiln_graph_trace_abort(&t);
    assert_int_equal(kiln_graph_trace_output(&t, KILN_GRAPH_OUT_COPY, probs_host, slot, 1, 1.0,
                                             &err),
                     KILN_EINVAL);
    kiln_graph_trace_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_and_replay),
        cmocka_unit_test(test_replay_refuses_a_changed_step),
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_outputs_delivered_after_the_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
