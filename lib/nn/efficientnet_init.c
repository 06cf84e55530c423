/* efficientnet_init.c — torchvision's EfficientNet initialisation:
 * kaiming_normal_(mode="fan_out") for conv weights, ones / zeros for
 * BatchNorm, uniform(±1/sqrt(out_features)) for the classifier, zero
 * biases. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "nn/efficientnet_internal.h"

/* Box–Muller: two independent standard normals per pair of uniforms. */
static void fill_normal(kiln_rng *rng, float *out, size_t count, double std)
{
    const double two_pi = 6.283185307179586476925;
    for (size_t i = 0; i < count; i += 2) {
        double u1 = 1.0 - kiln_rng_uniform(rng); /* (0, 1]: log is finite */
        double u2 = kiln_rng_uniform(rng);
        double r = sqrt(-2.0 * log(u1));
        out[i] = (float)(std * r * cos(two_pi * u2));
        if (i + 1 < count)
            out[i + 1] = (float)(std * r * sin(two_pi * u2));
    }
}

void effnet_init_entry(const effnet_entry *e, uint64_t seed, size_t index, float *out)
{
    kiln_rng rng;
    kiln_rng_derive(&rng, seed, index, 0x6566666e6574ull /* "effnet" */);
    switch (e->init) {
    case EFFNET_INIT_KAIMING: {
        /* torch's fan_out for a conv weight [out, in/groups, kh, kw] is
         * out * kh * kw (groups do not enter); gain sqrt(2) (leaky_relu, a=0). */
        double fan_out = (double)e->shape[0] * (double)e->shape[2] * (double)e->shape[3];
        fill_normal(&rng, out, e->count, sqrt(2.0) / sqrt(fan_out));
        break;
    }
    case EFFNET_INIT_LINEAR: {
        double range = 1.0 / sqrt((double)e->shape[0]);
        for (size_t i = 0; i < e->count; i++)
            out[i] = (float)(-range + 2.0 * range * kiln_rng_uniform(&rng));
        break;
    }
    case EFFNET_INIT_ONES:
        for (size_t i = 0; i < e->count; i++)
            out[i] = 1.0f;
        break;
    case EFFNET_INIT_ZEROS:
        memset(out, 0, e->count * sizeof *out);
        break;
    }
}

int kiln_effnet_init(kiln_effnet *m, uint64_t seed, kiln_err *err)
{
    kiln_nn_backend *be = m->be;
    size_t host_floats = m->flat_floats > m->buffer_floats ? m->flat_floats : m->buffer_floats;
    float *host = calloc(host_floats ? host_floats : 1, sizeof *host);
    if (!host)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory initialising EfficientNet");
    for (size_t i = 0; i < m->spec.n; i++) {
        const effnet_entry *e = &m->spec.e[i];
        if (e->kind == EFFNET_PARAM_DECAY || e->kind == EFFNET_PARAM_NODECAY)
            effnet_init_entry(e, seed, i, host + m->t[i].offset);
    }
    int rc = be->ops->upload(be, m->params, host, m->flat_floats * sizeof *host, err);
    if (rc != KILN_OK)
        goto done;
    memset(host, 0, m->buffer_floats * sizeof *host);
    for (size_t i = 0; i < m->spec.n; i++) {
        const effnet_entry *e = &m->spec.e[i];
        if (e->kind == EFFNET_BUF_FLOAT)
            effnet_init_entry(e, seed, i, host + m->t[i].offset);
        else if (e->kind == EFFNET_BUF_COUNTER)
            *m->t[i].counter = 0;
    }
    rc = be->ops->upload(be, m->buffers, host, m->buffer_floats * sizeof *host, err);
done:
    free(host);
    if (rc != KILN_OK)
        kiln_err_wrap(err, "initialising EfficientNet");
    return rc;
}

int effnet_init_head(kiln_effnet *m, uint64_t seed, kiln_err *err)
{
    kiln_nn_backend *be = m->be;
    const effnet_entry *w = &m->spec.e[m->fc_idx], *b = &m->spec.e[m->fc_idx + 1];
    float *host = malloc((w->count + b->count) * sizeof *host);
    if (!host)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory initialising the classifier");
    effnet_init_entry(w, seed, (size_t)m->fc_idx, host);
    effnet_init_entry(b, seed, (size_t)m->fc_idx + 1, host + w->count);
    int rc = be->ops->upload(be, m->fc_w, host, w->count * sizeof *host, err);
    if (rc == KILN_OK)
        rc = be->ops->upload(be, m->fc_b, host + w->count, b->count * sizeof *host, err);
    free(host);
    return rc;
}
