/* lib/common/pool.h — a fixed set of worker threads running parallel loops.
 *
 * kiln_pool_run(pool, n, fn, ctx) calls fn(ctx, i, worker) once for every
 * i in [0, n), spread over the pool's threads plus the calling thread, and
 * returns when all calls have returned. `worker` is in [0, threads) and is
 * stable for the duration of a call, so fn can index per-worker scratch
 * (worker 0 is the calling thread). A pool of 1 thread runs everything on
 * the caller, with no thread created. One kiln_pool_run at a time per pool.
 * fn reports failure by returning non-zero; the first failure is returned
 * by kiln_pool_run after all started calls finish (remaining items are
 * skipped).
 */
#ifndef KILN_COMMON_POOL_H
#define KILN_COMMON_POOL_H

#include <stddef.h>

#include "common/err.h"

typedef struct kiln_pool kiln_pool;
typedef int (*kiln_pool_fn)(void *ctx, size_t index, int worker);

/* threads >= 1. NULL on failure. */
kiln_pool *kiln_pool_create(int threads, kiln_err *err);
int kiln_pool_threads(const kiln_pool *pool);
int kiln_pool_run(kiln_pool *pool, size_t n, kiln_pool_fn fn, void *ctx);
/* Joins the threads. NULL is fine. */
void kiln_pool_destroy(kiln_pool *pool);

#endif
