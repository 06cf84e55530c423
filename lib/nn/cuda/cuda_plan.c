/* lib/nn/cuda/cuda_plan.c — see cuda_plan.h. Plain C: built into the core
 * library (for the host tests) and into libkiln_cuda.so. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/cuda/cuda_plan.h"


void cuda_conv_key_make(cuda_conv_key *key, const kiln_conv_desc *d, int n, int h, int w)
{
    memset(key, 0, sizeof *key); /* no padding bytes in it, but compared field by field anyway */
    key->n = n;
    key->h = h;
    key->w = w;
    key->in_c = d->in_c;
    key->out_c = d->out_c;
    key->k = d->k;
    key->stride = d->stride;
    key->pad = d->pad;
    key->groups = d->groups;
}

int cuda_conv_key_equal(const cuda_conv_key *a, const cuda_conv_key *b)
{
    return a->n == b->n && a->h == b->h && a->w == b->w && a->in_c == b->in_c &&
           a->out_c == b->out_c && a->k == b->k && a->stride == b->stride && a->pad == b->pad &&
           a->groups == b->groups;
}

void cuda_conv_dims_make(const cuda_conv_key *key, cuda_conv_dims *dims)
{
    kiln_conv_desc d = {key->in_c, key->out_c, key->k, key->stride, key->pad, key->groups};
    int x[4] = {key->n, key->in_c, key->h, key->w};
    int y[4] = {key->n, key->out_c, kiln_conv_out(&d, key->h), kiln_conv_out(&d, key->w)};
    int f[4] = {key->out_c, key->in_c / key->groups, key->k, key->k};
    memcpy(dims->x, x, sizeof x);
    memcpy(dims->y, y, sizeof y);
    memcpy(dims->filter, f, sizeof f);
}

void *cuda_cache_find(cuda_cache *c, const cuda_conv_key *key)
{
    for (size_t j = 0; j < c->count; j++) {
        size_t i = (c->last + j) % c->count;
        if (cuda_conv_key_equal(&c->keys[i], key)) {
            /* The next call is most often the next shape added. */
            c->last = i;
            return c->vals[i];
        }
    }
    return NULL;
}

int cuda_cache_add(cuda_cache *c, const cuda_conv_key *key, void *val, kiln_err *err)
{
    if (c->count == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 32;
        cuda_conv_key *keys = realloc(c->keys, cap * sizeof *keys);
        if (!keys)
            return kiln_err_set(err, KILN_ENOMEM, "out of memory growing the conv plan cache");
        c->keys = keys;
        void **vals = realloc(c->vals, cap * sizeof *vals);
        if (!vals)
            return kiln_err_set(err, KILN_ENOMEM, "out of memory growing the conv plan cache");
        c->vals = vals;
        c->cap = cap;
    }
    c->keys[c->count] = *key;
    c->vals[c->count] = val;
    c->last = c->count;
    c->count++;
    return KILN_OK;
}

void cuda_cache_clear(cuda_cache *c, void (*free_val)(void *val, void *ctx), void *ctx)
{
    for (size_t i = 0; free_val && i < c->count; i++)
        free_val(c->vals[i], ctx);
    free(c->keys);
    free(c->vals);
    memset(c, 0, sizeof *c);
}

int cuda_algo_pick(const cuda_algo_choice *c, int n, size_t ws_limit, int want_deterministic,
                   int allow_tf32)
{
    int first = -1;
    for (int i = 0; i < n; i++) {
        if (!c[i].ok || c[i].memory > ws_limit || (c[i].tensor_math && !allow_tf32))
            continue;
        if (!want_deterministic || c[i].deterministic)
            return i;
        if (first < 0)
            first = i;
    }
    return first;
}

size_t cuda_arena_capacity(size_t have, size_t need)
{
    if (need <= have)
        return have;
    size_t cap = CUDA_ARENA_MIN;
    while (cap < need && cap <= SIZE_MAX / 2)
        cap *= 2;
    return cap < need ? need : cap;
}
