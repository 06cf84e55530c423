#include "common/pool.h"

#include <pthread.h>
#include <stdlib.h>

struct kiln_pool {
    int threads;
    pthread_t *tids;
    int started;            /* threads actually created */
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* a new job, or shutdown */
    pthread_cond_t done_cv; /* a worker finished its share */
    /* the current job, guarded by mu */
    unsigned long generation;
    kiln_pool_fn fn;
    void *ctx;
    size_t n, next;
    int active;             /* workers inside the current job */
    int result;
    int shutdown;
};

typedef struct {
    kiln_pool *pool;
    int worker;
} worker_arg;

/* Take items one at a time until none are left or one failed. */
static void drain(kiln_pool *p, int worker)
{
    for (;;) {
        pthread_mutex_lock(&p->mu);
        if (p->next >= p->n || p->result != 0) {
            pthread_mutex_unlock(&p->mu);
            return;
        }
        size_t i = p->next++;
        pthread_mutex_unlock(&p->mu);
        int rc = p->fn(p->ctx, i, worker);
        if (rc != 0) {
            pthread_mutex_lock(&p->mu);
            if (p->result == 0)
                p->result = rc;
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static void *worker_main(void *arg)
{
    worker_arg *wa = arg;
    kiln_pool *p = wa->pool;
    int worker = wa->worker;
    unsigned long seen = 0;
    free(wa);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->shutdown && p->generation == seen)
            pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->shutdown)
            break;
        seen = p->generation;
        p->active++;
        pthread_mutex_unlock(&p->mu);
        drain(p, worker);
        pthread_mutex_lock(&p->mu);
        p->active--;
        pthread_cond_broadcast(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static int start_threads(kiln_pool *p, kiln_err *err)
{
    for (int w = 1; w < p->threads; w++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa)
            return kiln_err_set(err, KILN_ENOMEM, "out of memory starting threads");
        wa->pool = p;
        wa->worker = w;
        int e = pthread_create(&p->tids[w], NULL, worker_main, wa);
        if (e != 0) {
            free(wa);
            return kiln_err_errno(err, e, "cannot start worker thread %d", w);
        }
        p->started++;
    }
    return KILN_OK;
}

kiln_pool *kiln_pool_create(int threads, kiln_err *err)
{
    kiln_pool *p = NULL;
    if (threads < 1 || threads > 1024) {
        kiln_err_set(err, KILN_EINVAL, "thread count %d is not in 1..1024", threads);
        return NULL;
    }
    p = calloc(1, sizeof *p);
    if (!p || !(p->tids = calloc((size_t)threads, sizeof *p->tids))) {
        free(p);
        kiln_err_set(err, KILN_ENOMEM, "out of memory creating a thread pool");
        return NULL;
    }
    p->threads = threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    if (start_threads(p, err) != KILN_OK) {
        kiln_pool_destroy(p);
        return NULL;
    }
    return p;
}

int kiln_pool_threads(const kiln_pool *pool)
{
    return pool->threads;
}

int kiln_pool_run(kiln_pool *p, size_t n, kiln_pool_fn fn, void *ctx)
{
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->next = 0;
    p->result = 0;
    p->generation++;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);

    drain(p, 0);

    /* Every item has been taken; wait for the workers still running one. */
    pthread_mutex_lock(&p->mu);
    while (p->active > 0)
        pthread_cond_wait(&p->done_cv, &p->mu);
    int rc = p->result;
    p->fn = NULL;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void kiln_pool_destroy(kiln_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->shutdown = 1;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int w = 1; w <= p->started; w++)
        pthread_join(p->tids[w], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    free(p->tids);
    free(p);
}
