/* lib/nn/graph_check.h — a backend that checks step-graph passes on any
 * machine: it wraps another backend (the CPU, say) and gives it backend.h's
 * graph_begin / graph_end with the CUDA backend's contract, except that
 * every call still runs at once. What it checks, with lib/nn/graph_trace:
 *  - every replayed pass makes the recording's calls, on the same buffers,
 *    shapes and constants (the changing scalars aside): the condition
 *    under which a CUDA graph replay computes what eager calls would;
 *  - no alloc, release or sync inside a pass;
 *  - host outputs (download, xent's loss, sum_squares) reach the caller
 *    only at graph_end: until then the caller's buffers hold NaNs, so code
 *    that reads one early fails here as it would on the GPU.
 * Used by the tests of the training loop and the server's graph paths, and
 * to debug a "step graph: call N ..." error without a GPU.
 *
 * Ownership: the checker owns `inner` (kiln_nn_backend_destroy frees both);
 * graphs it makes are freed with its graph_free. */
#ifndef KILN_NN_GRAPH_CHECK_H
#define KILN_NN_GRAPH_CHECK_H

#include "nn/backend.h"

/* NULL with KILN_ENOMEM (inner is destroyed then too); NULL when inner is
 * NULL (its creator's error stands). */
kiln_nn_backend *kiln_nn_graph_checker_create(kiln_nn_backend *inner, kiln_err *err);

/* Passes so far: recorded, and replayed whose every call matched. */
void kiln_nn_graph_checker_counts(const kiln_nn_backend *checker, long *recorded,
                                  long *replayed);

#endif
