/* efficientnet_params.c — the parameter registry: torchvision's state_dict
 * keys and shapes in order, the flat parameter / gradient / buffer layout,
 * model creation and the accessors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/efficientnet_internal.h"

/* --- spec ------------------------------------------------------------- */

void effnet_spec_free(effnet_spec *s)
{
    free(s->e);
    memset(s, 0, sizeof *s);
}

long effnet_spec_find(const effnet_spec *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->e[i].name, name) == 0)
            return (long)i;
    return -1;
}

/* Append one entry; *idx (when not NULL) gets its index. */
static int spec_add(effnet_spec *s, int *idx, effnet_kind kind, effnet_init init,
                    const char *prefix, const char *suffix, int ndim, int64_t d0, int64_t d1,
                    int64_t d2, int64_t d3, kiln_err *err)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        effnet_entry *e = realloc(s->e, cap * sizeof *e);
        if (!e)
            return kiln_err_set(err, KILN_ENOMEM,
                                "out of memory for the EfficientNet parameter list");
        s->e = e;
        s->cap = cap;
    }
    effnet_entry *e = &s->e[s->n];
    memset(e, 0, sizeof *e);
    int len = snprintf(e->name, sizeof e->name, "%s%s", prefix, suffix);
    if (len < 0 || (size_t)len >= sizeof e->name)
        return kiln_err_set(err, KILN_ELIMIT, "parameter name '%s%s' too long", prefix, suffix);
    int64_t dims[4] = {d0, d1, d2, d3};
    e->ndim = ndim;
    e->count = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = dims[i];
        e->count *= (size_t)dims[i];
    }
    e->kind = kind;
    e->init = init;
    if (idx)
        *idx = (int)s->n;
    s->n++;
    return KILN_OK;
}

/* Conv2dNormActivation under `prefix` ("features.0."): "<prefix>0.weight",
 * "<prefix>1.{weight,bias,running_mean,running_var,num_batches_tracked}". */
static int add_cba(effnet_spec *s, effnet_cba *l, const char *prefix, int in_c, int out_c, int k,
                   int stride, int groups, int act, kiln_err *err)
{
    l->conv = (kiln_conv_desc){.in_c = in_c, .out_c = out_c, .k = k, .stride = stride,
                               .pad = (k - 1) / 2, .groups = groups};
    l->act = act;
    EFFNET_TRY(spec_add(s, &l->w_idx, EFFNET_PARAM_DECAY, EFFNET_INIT_KAIMING, prefix, "0.weight",
                        4, out_c, in_c / groups, k, k, err));
    EFFNET_TRY(spec_add(s, &l->bn_idx, EFFNET_PARAM_NODECAY, EFFNET_INIT_ONES, prefix, "1.weight",
                        1, out_c, 0, 0, 0, err));
    EFFNET_TRY(spec_add(s, NULL, EFFNET_PARAM_NODECAY, EFFNET_INIT_ZEROS, prefix, "1.bias", 1,
                        out_c, 0, 0, 0, err));
    EFFNET_TRY(spec_add(s, NULL, EFFNET_BUF_FLOAT, EFFNET_INIT_ZEROS, prefix, "1.running_mean", 1,
                        out_c, 0, 0, 0, err));
    EFFNET_TRY(spec_add(s, NULL, EFFNET_BUF_FLOAT, EFFNET_INIT_ONES, prefix, "1.running_var", 1,
                        out_c, 0, 0, 0, err));
    return spec_add(s, NULL, EFFNET_BUF_COUNTER, EFFNET_INIT_ZEROS, prefix, "1.num_batches_tracked",
                    0, 0, 0, 0, 0, err);
}

/* A weight [out, in(, 1, 1)] and its bias [out], *w_idx the weight's
 * index: the SE block's 1×1 convs and the classifier. */
static int add_weight_bias(effnet_spec *s, int *w_idx, const char *prefix, const char *weight,
                           const char *bias, effnet_init init, int ndim, int out, int in,
                           kiln_err *err)
{
    EFFNET_TRY(
        spec_add(s, w_idx, EFFNET_PARAM_DECAY, init, prefix, weight, ndim, out, in, 1, 1, err));
    return spec_add(s, NULL, EFFNET_PARAM_NODECAY, EFFNET_INIT_ZEROS, prefix, bias, 1, out, 0, 0, 0,
                    err);
}

static int add_se(effnet_spec *s, effnet_se *se, const char *prefix, int c, int sq, kiln_err *err)
{
    se->c = c;
    se->sq = sq;
    EFFNET_TRY(add_weight_bias(s, &se->fc1_idx, prefix, "fc1.weight", "fc1.bias",
                               EFFNET_INIT_KAIMING, 4, sq, c, err));
    return add_weight_bias(s, &se->fc2_idx, prefix, "fc2.weight", "fc2.bias", EFFNET_INIT_KAIMING,
                           4, c, sq, err);
}

/* "features.<stage + 1>.<index>.block.<j>.": layer j of a block. */
static const char *block_prefix(char out[EFFNET_NAME_MAX], const effnet_block_cfg *c, int j)
{
    snprintf(out, EFFNET_NAME_MAX, "features.%d.%d.block.%d.", c->stage + 1, c->index, j);
    return out;
}

static int add_block(effnet_spec *s, effnet_block *b, kiln_err *err)
{
    const effnet_block_cfg *c = &b->cfg;
    char prefix[EFFNET_NAME_MAX];
    int j = 0;
    b->has_expand = c->exp_c != c->in_c;
    if (b->has_expand)
        EFFNET_TRY(add_cba(s, &b->expand, block_prefix(prefix, c, j++), c->in_c, c->exp_c, 1, 1, 1,
                           1, err));
    EFFNET_TRY(add_cba(s, &b->dw, block_prefix(prefix, c, j++), c->exp_c, c->exp_c, c->kernel,
                       c->stride, c->exp_c, 1, err));
    EFFNET_TRY(add_se(s, &b->se, block_prefix(prefix, c, j++), c->exp_c, c->sq_c, err));
    return add_cba(s, &b->project, block_prefix(prefix, c, j++), c->exp_c, c->out_c, 1, 1, 1, 0,
                   err);
}

int effnet_build(kiln_effnet *m, kiln_err *err)
{
    effnet_spec *s = &m->spec;
    const effnet_cfg *cfg = &m->cfg;
    EFFNET_TRY(add_cba(s, &m->stem, "features.0.", 3, cfg->stem_c, 3, 2, 1, 1, err));
    for (int i = 0; i < cfg->n_blocks; i++) {
        m->blocks[i].cfg = cfg->blocks[i];
        EFFNET_TRY(add_block(s, &m->blocks[i], err));
    }
    char prefix[EFFNET_NAME_MAX];
    snprintf(prefix, sizeof prefix, "features.%d.", EFFNET_STAGES + 1);
    EFFNET_TRY(add_cba(s, &m->head, prefix, cfg->head_in, cfg->head_c, 1, 1, 1, 1, err));
    return add_weight_bias(s, &m->fc_idx, "classifier.1.", "weight", "bias", EFFNET_INIT_LINEAR, 2,
                           m->num_classes, cfg->head_c, err);
}

/* --- layout ----------------------------------------------------------- */

/* Offsets: decay params, then no-decay params (flat buffer); float buffers;
 * counters. Fills m->t (without pointers) and the index lists. */
static int layout(kiln_effnet *m, kiln_err *err)
{
    size_t n = m->spec.n;
    m->t = calloc(n, sizeof *m->t);
    m->param_ix = calloc(n, sizeof *m->param_ix);
    m->buf_ix = calloc(n, sizeof *m->buf_ix);
    if (!m->t || !m->param_ix || !m->buf_ix)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory for the EfficientNet tensor list");
    size_t flat = 0;
    for (int pass = 0; pass < 2; pass++) {
        effnet_kind want = pass == 0 ? EFFNET_PARAM_DECAY : EFFNET_PARAM_NODECAY;
        for (size_t i = 0; i < n; i++) {
            if (m->spec.e[i].kind != want)
                continue;
            m->t[i].offset = flat;
            flat = effnet_align_up(flat + m->spec.e[i].count);
        }
        if (pass == 0)
            m->decay_floats = flat;
    }
    m->flat_floats = flat;
    size_t bufs = 0;
    for (size_t i = 0; i < n; i++) {
        const effnet_entry *e = &m->spec.e[i];
        kiln_effnet_tensor *t = &m->t[i];
        t->name = e->name;
        t->ndim = e->ndim;
        memcpy(t->shape, e->shape, sizeof t->shape);
        t->count = e->count;
        if (e->kind == EFFNET_PARAM_DECAY || e->kind == EFFNET_PARAM_NODECAY) {
            t->no_weight_decay = e->kind == EFFNET_PARAM_NODECAY;
            m->param_ix[m->n_params++] = i;
            m->param_count += e->count;
        } else {
            m->buf_ix[m->n_bufs++] = i;
            if (e->kind == EFFNET_BUF_FLOAT) {
                t->offset = bufs;
                bufs = effnet_align_up(bufs + e->count);
            } else {
                t->offset = m->n_counters++;
            }
        }
    }
    m->buffer_floats = bufs;
    return KILN_OK;
}

/* save_mean + save_invstd of one BatchNorm. */
static size_t cba_save_floats(const effnet_cba *l)
{
    return 2 * effnet_align_up((size_t)l->conv.out_c);
}

static void resolve_cba(kiln_effnet *m, effnet_cba *l, float **save)
{
    kiln_effnet_tensor *t = m->t;
    l->weight = t[l->w_idx].data;
    l->dweight = t[l->w_idx].grad;
    l->gamma = t[l->bn_idx].data;
    l->dgamma = t[l->bn_idx].grad;
    l->beta = t[l->bn_idx + 1].data;
    l->dbeta = t[l->bn_idx + 1].grad;
    l->rmean = t[l->bn_idx + 2].data;
    l->rvar = t[l->bn_idx + 3].data;
    l->batches = t[l->bn_idx + 4].counter;
    l->save_mean = *save;
    l->save_invstd = *save + effnet_align_up((size_t)l->conv.out_c);
    *save += cba_save_floats(l);
}

/* The pointers of an add_weight_bias pair at spec index idx. */
static void resolve_weight_bias(const kiln_effnet *m, int idx, float **w, float **dw, float **b,
                                float **db)
{
    *w = m->t[idx].data;
    *dw = m->t[idx].grad;
    *b = m->t[idx + 1].data;
    *db = m->t[idx + 1].grad;
}

/* Pointers into the flat buffers for every tensor and layer. */
static void resolve(kiln_effnet *m)
{
    for (size_t i = 0; i < m->spec.n; i++) {
        kiln_effnet_tensor *t = &m->t[i];
        switch (m->spec.e[i].kind) {
        case EFFNET_PARAM_DECAY:
        case EFFNET_PARAM_NODECAY:
            t->data = m->params + t->offset;
            t->grad = m->grads + t->offset;
            break;
        case EFFNET_BUF_FLOAT:
            t->data = m->buffers + t->offset;
            break;
        case EFFNET_BUF_COUNTER:
            t->counter = m->counters + t->offset;
            break;
        }
    }
    float *save = m->bn_save;
    resolve_cba(m, &m->stem, &save);
    for (int i = 0; i < m->cfg.n_blocks; i++) {
        effnet_block *b = &m->blocks[i];
        if (b->has_expand)
            resolve_cba(m, &b->expand, &save);
        resolve_cba(m, &b->dw, &save);
        resolve_cba(m, &b->project, &save);
        effnet_se *se = &b->se;
        resolve_weight_bias(m, se->fc1_idx, &se->w1, &se->dw1, &se->b1, &se->db1);
        resolve_weight_bias(m, se->fc2_idx, &se->w2, &se->dw2, &se->b2, &se->db2);
    }
    resolve_cba(m, &m->head, &save);
    resolve_weight_bias(m, m->fc_idx, &m->fc_w, &m->dfc_w, &m->fc_b, &m->dfc_b);
}

/* save_mean + save_invstd for every BN. */
static size_t bn_save_floats(const kiln_effnet *m)
{
    size_t n = cba_save_floats(&m->stem) + cba_save_floats(&m->head);
    for (int i = 0; i < m->cfg.n_blocks; i++) {
        const effnet_block *b = &m->blocks[i];
        if (b->has_expand)
            n += cba_save_floats(&b->expand);
        n += cba_save_floats(&b->dw) + cba_save_floats(&b->project);
    }
    return n;
}

static int allocate(kiln_effnet *m, kiln_err *err)
{
    kiln_nn_backend *be = m->be;
    m->counters = calloc(m->n_counters ? m->n_counters : 1, sizeof *m->counters);
    if (!m->counters)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory for BatchNorm counters");
    m->bn_save_floats = bn_save_floats(m);
    float **bufs[] = {&m->params, &m->grads, &m->buffers, &m->bn_save};
    size_t floats[] = {m->flat_floats, m->flat_floats, m->buffer_floats, m->bn_save_floats};
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
        if (!(*bufs[i] = be->ops->alloc(be, floats[i] * sizeof(float), err)))
            return err ? err->code : KILN_ENOMEM;
    /* The gradients are zeroed at the first backward (effnet_grads_ready):
     * an inference-only model never touches their pages (16 MB for a B0). */
    m->grads_zeroed = 0;
    return be->ops->fill(be, m->bn_save, 0.0f, m->bn_save_floats, err);
}

/* --- life cycle ------------------------------------------------------- */

int effnet_attach(kiln_effnet *m, kiln_nn_backend *be, kiln_err *err)
{
    m->be = be;
    int rc = allocate(m, err);
    if (rc == KILN_OK)
        resolve(m);
    return rc;
}

/* The host-only part of a model: configuration, spec, layout. */
kiln_effnet *effnet_describe(const char *variant, int num_classes, kiln_err *err)
{
    if (num_classes < 1) {
        kiln_err_set(err, KILN_EINVAL, "EfficientNet needs at least 1 class, got %d",
                     num_classes);
        return NULL;
    }
    kiln_effnet *m = calloc(1, sizeof *m);
    if (!m) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory for the EfficientNet model");
        return NULL;
    }
    m->num_classes = num_classes;
    if (effnet_cfg_make(variant, &m->cfg, err) != KILN_OK || effnet_build(m, err) != KILN_OK ||
        layout(m, err) != KILN_OK) {
        kiln_effnet_destroy(m);
        return NULL;
    }
    m->dropout = m->cfg.dropout;
    m->sd_base = 0.2f;
    return m;
}

kiln_effnet *kiln_effnet_create(const char *variant, int num_classes, kiln_nn_backend *be,
                                kiln_err *err)
{
    if (!be) {
        kiln_err_set(err, KILN_EINVAL, "EfficientNet needs a backend");
        return NULL;
    }
    kiln_effnet *m = effnet_describe(variant, num_classes, err);
    if (!m)
        return NULL;
    if (effnet_attach(m, be, err) != KILN_OK || kiln_effnet_init(m, 0, err) != KILN_OK)
        goto fail;
    return m;
fail:
    kiln_effnet_destroy(m);
    return NULL;
}

void kiln_effnet_destroy(kiln_effnet *m)
{
    if (!m)
        return;
    effnet_plan_free(m);
    float *bufs[] = {m->params, m->grads, m->buffers, m->bn_save};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i] && m->be)
            m->be->ops->release(m->be, bufs[i]);
    free(m->counters);
    free(m->t);
    free(m->param_ix);
    free(m->buf_ix);
    effnet_spec_free(&m->spec);
    free(m);
}

/* --- accessors -------------------------------------------------------- */

const char *kiln_effnet_variant(const kiln_effnet *m) { return m->cfg.variant; }
int kiln_effnet_num_classes(const kiln_effnet *m) { return m->num_classes; }
int kiln_effnet_feature_count(const kiln_effnet *m) { return m->cfg.head_c; }
float kiln_effnet_dropout(const kiln_effnet *m) { return m->dropout; }
float kiln_effnet_stochastic_depth(const kiln_effnet *m) { return m->sd_base; }
size_t kiln_effnet_param_tensors(const kiln_effnet *m) { return m->n_params; }
size_t kiln_effnet_buffer_tensors(const kiln_effnet *m) { return m->n_bufs; }
size_t kiln_effnet_param_count(const kiln_effnet *m) { return m->param_count; }
float *kiln_effnet_params_flat(kiln_effnet *m) { return m->params; }
float *kiln_effnet_grads_flat(kiln_effnet *m) { return m->grads; }

int effnet_grads_ready(kiln_effnet *m, kiln_err *err)
{
    if (m->grads_zeroed)
        return KILN_OK;
    int rc = m->be->ops->fill(m->be, m->grads, 0.0f, m->flat_floats, err);
    m->grads_zeroed = rc == KILN_OK;
    return rc;
}
size_t kiln_effnet_flat_floats(const kiln_effnet *m) { return m->flat_floats; }
size_t kiln_effnet_decay_floats(const kiln_effnet *m) { return m->decay_floats; }

const kiln_effnet_tensor *kiln_effnet_param(const kiln_effnet *m, size_t i)
{
    return i < m->n_params ? &m->t[m->param_ix[i]] : NULL;
}

const kiln_effnet_tensor *kiln_effnet_buffer(const kiln_effnet *m, size_t i)
{
    return i < m->n_bufs ? &m->t[m->buf_ix[i]] : NULL;
}

const kiln_effnet_tensor *kiln_effnet_find(const kiln_effnet *m, const char *name)
{
    long i = effnet_spec_find(&m->spec, name);
    return i < 0 ? NULL : &m->t[i];
}

static int check_p(float p, const char *what, kiln_err *err)
{
    if (!(p >= 0.0f && p < 1.0f))
        return kiln_err_set(err, KILN_EINVAL, "%s probability %g is outside [0, 1)", what,
                            (double)p);
    return KILN_OK;
}

int kiln_effnet_set_dropout(kiln_effnet *m, float p, kiln_err *err)
{
    int rc = check_p(p, "dropout", err);
    if (rc == KILN_OK)
        m->dropout = p;
    return rc;
}

void kiln_effnet_set_fused(kiln_effnet *m, int on)
{
    m->no_fuse = !on;
}

int kiln_effnet_set_stochastic_depth(kiln_effnet *m, float p, kiln_err *err)
{
    int rc = check_p(p, "stochastic depth", err);
    if (rc == KILN_OK)
        m->sd_base = p;
    return rc;
}
