/* lib/nn/cuda/cuda_plan.h — the CUDA backend's bookkeeping that needs no
 * GPU, so it is compiled into the core library too and tested on any
 * machine (tests/test_nn_cuda_host.c):
 *  - the dimensions of the cuDNN descriptors of a convolution;
 *  - the per-shape cache of convolution plans (descriptors and the
 *    algorithms chosen once by cudnnFind or the heuristics);
 *  - the growth policy of the one workspace arena.
 * Not a public header. */
#ifndef KILN_NN_CUDA_PLAN_H
#define KILN_NN_CUDA_PLAN_H

#include <stddef.h>

#include "common/err.h"
#include "nn/backend.h"
#include "nn/backend_check.h" /* the ops' argument checks, shared with the CPU backend */

/* --- convolution shapes ------------------------------------------------ */

/* One convolution call's shape: the cache key. */
typedef struct cuda_conv_key {
    int n, h, w, in_c, out_c, k, stride, pad, groups;
} cuda_conv_key;

void cuda_conv_key_make(cuda_conv_key *key, const kiln_conv_desc *d, int n, int h, int w);
int cuda_conv_key_equal(const cuda_conv_key *a, const cuda_conv_key *b);

/* NCHW dims of x, y and the filter [out_c, in_c/groups, k, k] as cuDNN's
 * 4-d descriptors take them; y's from kiln_conv_out. */
typedef struct cuda_conv_dims {
    int x[4], y[4], filter[4];
} cuda_conv_dims;

void cuda_conv_dims_make(const cuda_conv_key *key, cuda_conv_dims *dims);

/* --- the plan cache ------------------------------------------------------
 * Keys with an opaque value each (the module stores its descriptors and
 * algorithms there). Looked up linearly from the last hit: a network has a
 * few dozen shapes and calls them in the same order every step. */
typedef struct cuda_cache {
    cuda_conv_key *keys;
    void **vals;
    size_t count, cap, last;
} cuda_cache;

/* The value stored for `key`, or NULL. */
void *cuda_cache_find(cuda_cache *c, const cuda_conv_key *key);
/* Stores `val` for a key not yet present; KILN_ENOMEM on failure (the
 * cache is unchanged then). */
int cuda_cache_add(cuda_cache *c, const cuda_conv_key *key, void *val, kiln_err *err);
/* Calls free_val on every value, then frees the cache's arrays. */
void cuda_cache_clear(cuda_cache *c, void (*free_val)(void *val, void *ctx), void *ctx);

/* --- algorithm choice -------------------------------------------------
 * One cuDNN perf result, without cuDNN's types (the three directions'
 * structs are alike). */
typedef struct cuda_algo_choice {
    int algo;
    int ok;            /* status CUDNN_STATUS_SUCCESS */
    size_t memory;     /* workspace bytes */
    int deterministic; /* CUDNN_DETERMINISTIC */
    int tensor_math;   /* uses tensor cores (TF32 for fp32 data, bf16 for bf16) */
    int math;          /* the cudnnMathType_t to set when running it */
} cuda_algo_choice;

/* Index of the algorithm to use among `n` results in cuDNN's order
 * (fastest first): the first that succeeded, fits `ws_limit`, and uses
 * tensor math only when `allow_tf32` (the backend passes 1 with TF32 on
 * for float32 data, and always in bf16 mode, where tensor math is bf16
 * products summed in float32); when `want_deterministic`, the first
 * such deterministic one, else (none is) the first such one at all. -1
 * when nothing fits. */
int cuda_algo_pick(const cuda_algo_choice *c, int n, size_t ws_limit, int want_deterministic,
                   int allow_tf32);

/* --- the workspace arena --------------------------------------------------
 * One device buffer serves every op's workspace. It only grows, and in
 * large steps, so the first training step sizes it and later steps never
 * allocate: the new capacity for a request of `need` bytes when `have`
 * are allocated is `have` itself when it suffices, else `need` rounded up
 * to a power of two of at least CUDA_ARENA_MIN bytes. */
#define CUDA_ARENA_MIN ((size_t)1 << 20)
size_t cuda_arena_capacity(size_t have, size_t need);

#endif
