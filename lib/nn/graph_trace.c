/* lib/nn/graph_trace.c — see graph_trace.h. */
#include "nn/graph_trace.h"

#include <stdlib.h>
#include <string.h>

void kiln_graph_trace_init(kiln_graph_trace *t, const kiln_graph_slot_fns *fns)
{
    memset(t, 0, sizeof *t);
    if (fns)
        t->fns = *fns;
}

static void drop_calls(kiln_graph_trace *t)
{
    for (size_t i = 0; i < t->count; i++)
        if (t->calls[i].slot && t->fns.slot_free)
            t->fns.slot_free(t->fns.ctx, t->calls[i].slot, t->calls[i].dev_slot);
    t->count = 0;
}

void kiln_graph_trace_free(kiln_graph_trace *t)
{
    if (!t)
        return;
    drop_calls(t);
    free(t->calls);
    free(t->outs);
    kiln_graph_slot_fns fns = t->fns;
    memset(t, 0, sizeof *t);
    t->fns = fns;
}

int kiln_graph_trace_start(kiln_graph_trace *t, int mode, kiln_err *err)
{
    if (t->mode)
        return kiln_err_set(err, KILN_EINVAL, "step graph: a pass is already under way");
    if (mode != KILN_GRAPH_CAPTURE && mode != KILN_GRAPH_REPLAY)
        return kiln_err_set(err, KILN_EINVAL, "step graph: unknown pass mode %d", mode);
    if (mode == KILN_GRAPH_REPLAY && t->count == 0)
        return kiln_err_set(err, KILN_EINVAL, "step graph: nothing recorded to replay");
    if (mode == KILN_GRAPH_CAPTURE)
        drop_calls(t);
    t->mode = mode;
    t->pos = 0;
    t->n_outs = 0;
    return KILN_OK;
}

/* FNV-1a over the op's name and the words' bytes. */
static uint64_t signature(const char *op, const uint64_t *words, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *s = (const unsigned char *)op; *s; s++)
        h = (h ^ *s) * 1099511628211ull;
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 8; b++)
            h = (h ^ ((words[i] >> (8 * b)) & 0xff)) * 1099511628211ull;
    return h;
}

uint64_t kiln_graph_word_float(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

static int record(kiln_graph_trace *t, const char *op, uint64_t sig, size_t slot_bytes,
                  int want_dev, kiln_err *err)
{
    if (t->count == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 256;
        kiln_graph_call *calls = realloc(t->calls, cap * sizeof *calls);
        if (!calls)
            return kiln_err_set(err, KILN_ENOMEM, "step graph: out of memory recording call %zu",
                                t->count);
        t->calls = calls;
        t->cap = cap;
    }
    kiln_graph_call call = {.op = op, .sig = sig, .slot_bytes = slot_bytes};
    if (slot_bytes) {
        if (!t->fns.slot_alloc)
            return kiln_err_set(err, KILN_EINVAL, "step graph: %s needs a slot, none can be made",
                                op);
        call.slot = t->fns.slot_alloc(t->fns.ctx, slot_bytes, want_dev ? &call.dev_slot : NULL,
                                      err);
        if (!call.slot)
            return kiln_err_wrap(err, "step graph: the slot of call %zu (%s, %zu bytes)",
                                 t->count + 1, op, slot_bytes);
    }
    t->calls[t->count++] = call;
    return KILN_OK;
}

static int check(const kiln_graph_trace *t, const char *op, uint64_t sig, size_t slot_bytes,
                 kiln_err *err)
{
    if (t->pos >= t->count)
        return kiln_err_set(err, KILN_EINVAL,
                            "step graph: call %zu (%s) is past the recording's %zu calls: the "
                            "step changed since it was recorded",
                            t->pos + 1, op, t->count);
    const kiln_graph_call *rec = &t->calls[t->pos];
    if (strcmp(rec->op, op) != 0)
        return kiln_err_set(err, KILN_EINVAL,
                            "step graph: call %zu is %s where the recording has %s: the step "
                            "changed since it was recorded",
                            t->pos + 1, op, rec->op);
    if (rec->sig != sig || rec->slot_bytes != slot_bytes)
        return kiln_err_set(err, KILN_EINVAL,
                            "step graph: call %zu (%s) has other buffers, shapes or constants "
                            "than the recording",
                            t->pos + 1, op);
    return KILN_OK;
}

int kiln_graph_trace_call(kiln_graph_trace *t, const char *op, const uint64_t *words,
                          size_t n_words, size_t slot_bytes, void **slot, void **dev_slot,
                          kiln_err *err)
{
    if (!t->mode)
        return kiln_err_set(err, KILN_EINVAL, "step graph: %s outside a pass", op);
    uint64_t sig = signature(op, words, n_words);
    int rc = t->mode == KILN_GRAPH_CAPTURE ? record(t, op, sig, slot_bytes, dev_slot != NULL, err)
                                           : check(t, op, sig, slot_bytes, err);
    if (rc != KILN_OK)
        return rc;
    const kiln_graph_call *call = &t->calls[t->pos++];
    if (slot)
        *slot = call->slot;
    if (dev_slot)
        *dev_slot = call->dev_slot;
    return KILN_OK;
}

int kiln_graph_trace_output(kiln_graph_trace *t, kiln_graph_out_kind kind, void *dst,
                            const void *src, size_t count, double divisor, kiln_err *err)
{
    if (!t->mode)
        return kiln_err_set(err, KILN_EINVAL, "step graph: an output outside a pass");
    if (t->n_outs == t->outs_cap) {
        size_t cap = t->outs_cap ? 2 * t->outs_cap : 8;
        kiln_graph_output *outs = realloc(t->outs, cap * sizeof *outs);
        if (!outs)
            return kiln_err_set(err, KILN_ENOMEM, "step graph: out of memory for outputs");
        t->outs = outs;
        t->outs_cap = cap;
    }
    t->outs[t->n_outs++] =
        (kiln_graph_output){.kind = kind, .dst = dst, .src = src, .count = count, .divisor = divisor};
    return KILN_OK;
}

int kiln_graph_trace_finish(kiln_graph_trace *t, kiln_err *err)
{
    if (!t->mode)
        return kiln_err_set(err, KILN_EINVAL, "step graph: no pass to finish");
    int mode = t->mode;
    t->mode = 0;
    if (mode == KILN_GRAPH_REPLAY && t->pos != t->count)
        return kiln_err_set(err, KILN_EINVAL,
                            "step graph: the step made %zu calls, the recording has %zu: the "
                            "step changed since it was recorded",
                            t->pos, t->count);
    return KILN_OK;
}

void kiln_graph_trace_abort(kiln_graph_trace *t)
{
    if (t->mode == KILN_GRAPH_CAPTURE)
        drop_calls(t);
    t->mode = 0;
    t->n_outs = 0;
}

void kiln_graph_trace_deliver(const kiln_graph_trace *t)
{
    for (size_t i = 0; i < t->n_outs; i++) {
        const kiln_graph_output *o = &t->outs[i];
        if (o->kind == KILN_GRAPH_OUT_COPY) {
            memcpy(o->dst, o->src, o->count);
        } else {
            const double *v = o->src;
            double total = 0;
            for (size_t j = 0; j < o->count; j++)
                total += v[j];
            *(double *)o->dst = total / o->divisor;
        }
    }
}
