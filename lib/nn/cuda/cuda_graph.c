/* lib/nn/cuda/cuda_graph.c — step graphs on CUDA (backend.h's graph_begin
 * ... graph_free) over lib/nn/graph_trace.
 *
 * A recording pass is a stream capture: every op enqueues as usual (cuDNN
 * and cuBLAS are bound to the captured stream) and graph_trace keeps each
 * call's signature. A replay pass enqueues nothing: each op is checked
 * against the recording and only writes its changing values into its slot,
 * pinned host memory at the address the captured copy nodes read; then
 * graph_end launches the instantiated graph once.
 *
 * Capture uses cudaStreamCaptureModeRelaxed so the slots (cudaHostAlloc,
 * cudaMalloc, never freed while the graph lives) can be made during the
 * pass. The workspace arena and the scratch must not move under a graph:
 * they may not grow during a capture (an error asks for one step outside a
 * graph first), and when they grew since, the next pass records again
 * (mem_generation). */
#include <stdlib.h>
#include <string.h>

#include "nn/cuda/cuda_internal.h"

struct kiln_nn_graph {
    kiln_graph_trace trace;
    cuda_impl *owner;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    uint64_t generation; /* owner->mem_generation when recorded */
    int capturing;
};

static void *slot_alloc(void *ctx, size_t bytes, void **dev, kiln_err *err)
{
    int rc = KILN_OK;
    void *host = NULL;
    (void)ctx;
    KILN_CUDA(cudaHostAlloc(&host, bytes, cudaHostAllocDefault));
    if (dev) {
        *dev = NULL;
        cudaError_t st = cudaMalloc(dev, bytes);
        if (st != cudaSuccess) {
            cudaFreeHost(host);
            host = NULL;
            if (st == cudaErrorMemoryAllocation)
                cuda_oom(err, "a step graph's scalars", bytes);
            else
                KILN_CUDA(st);
        }
    }
    return host;
fail:
    (void)rc;
    return NULL;
}

static void slot_free(void *ctx, void *slot, void *dev)
{
    (void)ctx;
    if (dev)
        cudaFree(dev);
    cudaFreeHost(slot);
}

static void drop_exec(kiln_nn_graph *g)
{
    if (g->exec)
        cudaGraphExecDestroy(g->exec);
    if (g->graph)
        cudaGraphDestroy(g->graph);
    g->exec = NULL;
    g->graph = NULL;
}

int cuda_graph_begin(kiln_nn_backend *be, kiln_nn_graph **gp, kiln_err *err)
{
    cuda_impl *c = cuda_of(be);
    int rc = KILN_OK;
    if (!gp)
        return kiln_err_set(err, KILN_EINVAL, "graph_begin: NULL graph");
    if (c->pass)
        return kiln_err_set(err, KILN_EINVAL, "graph_begin: a step graph pass is under way");
    kiln_nn_graph *g = *gp;
    if (g && g->owner != c)
        return kiln_err_set(err, KILN_EINVAL, "graph_begin: the graph is another backend's");
    if (!g) {
        if (!(g = calloc(1, sizeof *g)))
            return kiln_err_set(err, KILN_ENOMEM, "out of memory for a step graph");
        kiln_graph_slot_fns fns = {.slot_alloc = slot_alloc, .slot_free = slot_free, .ctx = c};
        kiln_graph_trace_init(&g->trace, &fns);
        g->owner = c;
        *gp = g;
    }
    g->capturing = !g->exec || g->generation != c->mem_generation;
    if (g->capturing)
        drop_exec(g);
    if ((rc = kiln_graph_trace_start(&g->trace, g->capturing ? KILN_GRAPH_CAPTURE
                                                             : KILN_GRAPH_REPLAY,
                                     err)) != KILN_OK)
        return rc;
    if (g->capturing)
        KILN_CUDA(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeRelaxed));
    c->pass = g;
    return KILN_OK;
fail:
    kiln_graph_trace_abort(&g->trace);
    return rc;
}

/* Ends a capture; *graph is NULL when it was invalidated. */
static cudaError_t end_capture(cuda_impl *c, cudaGraph_t *graph)
{
    *graph = NULL;
    cudaError_t st = cudaStreamEndCapture(c->stream, graph);
    if (st != cudaSuccess && *graph) {
        cudaGraphDestroy(*graph);
        *graph = NULL;
    }
    return st;
}

int cuda_graph_end(kiln_nn_backend *be, kiln_nn_graph *g, kiln_err *err)
{
    cuda_impl *c = cuda_of(be);
    int rc = KILN_OK;
    if (!g || c->pass != g)
        return kiln_err_set(err, KILN_EINVAL, "graph_end: not the graph of this pass");
    c->pass = NULL;
    if ((rc = kiln_graph_trace_finish(&g->trace, err)) != KILN_OK) {
        cudaGraph_t dropped;
        if (g->capturing && end_capture(c, &dropped) == cudaSuccess && dropped)
            cudaGraphDestroy(dropped);
        goto fail;
    }
    if (g->capturing) {
        KILN_CUDA(end_capture(c, &g->graph));
        KILN_CUDA(cudaGraphInstantiate(&g->exec, g->graph, 0));
        g->generation = c->mem_generation;
    }
    KILN_CUDA(cudaGraphLaunch(g->exec, c->stream));
    KILN_CUDA(cudaStreamSynchronize(c->stream));
    kiln_graph_trace_deliver(&g->trace);
    return KILN_OK;
fail:
    if (g->capturing) {
        drop_exec(g);
        kiln_graph_trace_abort(&g->trace);
    }
    return kiln_err_wrap(err, "step graph (%s)", g->capturing ? "recording" : "replay");
}

void cuda_graph_cancel(kiln_nn_backend *be, kiln_nn_graph *g)
{
    cuda_impl *c = cuda_of(be);
    if (!g || c->pass != g)
        return;
    c->pass = NULL;
    if (g->capturing) {
        cudaGraph_t dropped;
        if (end_capture(c, &dropped) == cudaSuccess && dropped)
            cudaGraphDestroy(dropped);
        (void)cudaGetLastError(); /* an invalidated capture is not the next call's error */
        drop_exec(g);
    }
    kiln_graph_trace_abort(&g->trace);
}

void cuda_graph_free(kiln_nn_backend *be, kiln_nn_graph *g)
{
    if (!g)
        return;
    cuda_graph_cancel(be, g);
    cudaStreamSynchronize(cuda_of(be)->stream); /* a launch may still read the slots */
    drop_exec(g);
    kiln_graph_trace_free(&g->trace);
    free(g);
}

int cuda_graph_visit_slot(cuda_impl *c, const char *op, const uint64_t *words, size_t n_words,
                          size_t slot_bytes, void **slot, void **dev_slot, kiln_err *err)
{
    if (slot)
        *slot = NULL;
    if (dev_slot)
        *dev_slot = NULL;
    if (!c->pass)
        return KILN_OK;
    int rc = kiln_graph_trace_call(&c->pass->trace, op, words, n_words, slot_bytes, slot,
                                   dev_slot, err);
    if (rc != KILN_OK)
        return rc;
    return c->pass->capturing ? KILN_OK : CUDA_GRAPH_SKIP;
}

int cuda_graph_visit(cuda_impl *c, const char *op, const uint64_t *words, size_t n_words,
                     kiln_err *err)
{
    return cuda_graph_visit_slot(c, op, words, n_words, 0, NULL, NULL, err);
}

int cuda_graph_output(cuda_impl *c, kiln_graph_out_kind kind, void *dst, const void *slot,
                      size_t count, double divisor, kiln_err *err)
{
    return kiln_graph_trace_output(&c->pass->trace, kind, dst, slot, count, divisor, err);
}

int cuda_graph_forbid(cuda_impl *c, const char *what, kiln_err *err)
{
    if (!c->pass)
        return KILN_OK;
    return kiln_err_set(err, KILN_EINVAL,
                        "%s inside a step graph pass: allocate, free and synchronise before "
                        "graph_begin or after graph_end",
                        what);
}
