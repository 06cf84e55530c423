/* lib/nn/graph_trace.h — the bookkeeping behind step graphs (backend.h's
 * graph_begin / graph_end), without a GPU, so it is tested on any machine.
 *
 * A step graph is a fixed sequence of backend calls, recorded once (the
 * capture pass) and launched again as a whole (replay passes). A replay is
 * only right when the caller makes the same calls on the same buffers with
 * the same shapes, so every call leaves a signature: its op and the words
 * that fix its work (pointers, sizes, constant scalars). A replay pass
 * compares each call with the recording before anything is launched; the
 * first difference is an error naming the call, never a wrong step.
 *
 * Values that change from step to step (the learning rate, a mask seed,
 * the input batch) are not in the signature. They travel through the
 * call's slot: host memory (pinned, for CUDA) that the graph reads or
 * writes when it runs, allocated during capture through `slot_alloc` and
 * kept, at the same address, for every replay.
 *
 * Host outputs (a download, a loss, a norm) are only valid once the graph
 * has run: each pass lists them, and the backend delivers them after it
 * waited for the launch (kiln_graph_trace_deliver).
 *
 * Ownership: the trace owns its arrays and its slots (freed through
 * `slot_free`); output destinations belong to the caller. */
#ifndef KILN_NN_GRAPH_TRACE_H
#define KILN_NN_GRAPH_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

enum { KILN_GRAPH_CAPTURE = 1, KILN_GRAPH_REPLAY = 2 };

typedef struct kiln_graph_call {
    const char *op; /* a static string */
    uint64_t sig;   /* FNV-1a of the op and its words */
    void *slot;     /* host memory the graph reads or writes; NULL when none */
    void *dev_slot; /* the slot's device twin, when slot_alloc made one */
    size_t slot_bytes;
} kiln_graph_call;

typedef enum kiln_graph_out_kind {
    KILN_GRAPH_OUT_COPY,    /* memcpy(dst, src, count) */
    KILN_GRAPH_OUT_SUM_F64, /* *(double *)dst = (sum of `count` doubles at src, in order) / divisor */
} kiln_graph_out_kind;

typedef struct kiln_graph_output {
    kiln_graph_out_kind kind;
    void *dst;
    const void *src; /* inside a slot */
    size_t count;
    double divisor;
} kiln_graph_output;

typedef struct kiln_graph_slot_fns {
    /* `bytes` of host memory (and, when `dev` is not NULL, a device twin in
     * *dev); NULL with err set on failure. */
    void *(*slot_alloc)(void *ctx, size_t bytes, void **dev, kiln_err *err);
    void (*slot_free)(void *ctx, void *slot, void *dev);
    void *ctx;
} kiln_graph_slot_fns;

typedef struct kiln_graph_trace {
    kiln_graph_slot_fns fns;
    kiln_graph_call *calls;
    size_t count, cap;
    size_t pos; /* next call of this pass */
    int mode;   /* 0 between passes, else KILN_GRAPH_CAPTURE / _REPLAY */
    kiln_graph_output *outs;
    size_t n_outs, outs_cap;
} kiln_graph_trace;

void kiln_graph_trace_init(kiln_graph_trace *t, const kiln_graph_slot_fns *fns);
/* Frees the slots and arrays; the trace can be initialised again. */
void kiln_graph_trace_free(kiln_graph_trace *t);

/* Starts a pass: KILN_GRAPH_CAPTURE drops an earlier recording (and its
 * slots); KILN_GRAPH_REPLAY needs one. KILN_EINVAL inside a pass. */
int kiln_graph_trace_start(kiln_graph_trace *t, int mode, kiln_err *err);

/* One call of the pass, `words` fixing its work. Capture: records it, with
 * a slot of `slot_bytes` when > 0 (a device twin too when `dev_slot` is not
 * NULL). Replay: KILN_EINVAL unless it is the recording's next call, with
 * the same op, words and slot size. *slot / *dev_slot get the call's slot
 * (NULL when it has none); either may be NULL when not wanted. */
int kiln_graph_trace_call(kiln_graph_trace *t, const char *op, const uint64_t *words,
                          size_t n_words, size_t slot_bytes, void **slot, void **dev_slot,
                          kiln_err *err);

/* A host output of this pass, delivered by kiln_graph_trace_deliver. */
int kiln_graph_trace_output(kiln_graph_trace *t, kiln_graph_out_kind kind, void *dst,
                            const void *src, size_t count, double divisor, kiln_err *err);

/* Ends the pass. Replay: KILN_EINVAL when it made fewer calls than the
 * recording. The recording (or the check) is complete after KILN_OK. */
int kiln_graph_trace_finish(kiln_graph_trace *t, kiln_err *err);

/* Abandons a pass after an error: a capture pass drops its recording. */
void kiln_graph_trace_abort(kiln_graph_trace *t);

/* Writes this pass's host outputs (after the graph ran). */
void kiln_graph_trace_deliver(const kiln_graph_trace *t);

/* The word of a pointer or a float, for signatures. */
static inline uint64_t kiln_graph_word_ptr(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}
uint64_t kiln_graph_word_float(float f);

#endif
