/* efficientnet_forward.c — the forward pass through the backend ops, as
 * torchvision's EfficientNet.forward computes it. */
#include "nn/efficientnet_internal.h"

static size_t out_count(const kiln_effnet *m, const effnet_cba *l)
{
    return (size_t)m->n * (size_t)l->conv.out_c * (size_t)l->oh * (size_t)l->ow;
}

/* conv -> BatchNorm (batch statistics in training, running ones in eval) -> SiLU. */
static int cba_forward(kiln_effnet *m, effnet_cba *l, const float *x, int train, kiln_err *err)
{
    kiln_nn_backend *be = m->be;
    const kiln_nn_ops *ops = be->ops;
    int c = l->conv.out_c, hw = l->oh * l->ow;
    EFFNET_TRY(ops->conv_forward(be, &l->conv, m->n, l->h, l->w, x, l->weight, l->c, err));
    if (l->act && !m->no_fuse && train && ops->bn_silu_forward_train) {
        EFFNET_TRY(ops->bn_silu_forward_train(be, m->n, c, hw, l->c, l->gamma, l->beta, l->rmean,
                                              l->rvar, EFFNET_BN_MOMENTUM, EFFNET_BN_EPS, l->b,
                                              l->a, l->save_mean, l->save_invstd, err));
        (*l->batches)++;
        return KILN_OK;
    }
    if (l->act && !m->no_fuse && !train && ops->bn_silu_forward_eval)
        return ops->bn_silu_forward_eval(be, m->n, c, hw, l->c, l->gamma, l->beta, l->rmean,
                                         l->rvar, EFFNET_BN_EPS, l->a, err);
    if (train) {
        EFFNET_TRY(ops->bn_forward_train(be, m->n, c, hw, l->c, l->gamma, l->beta, l->rmean,
                                         l->rvar, EFFNET_BN_MOMENTUM, EFFNET_BN_EPS, l->b,
                                         l->save_mean, l->save_invstd, err));
        (*l->batches)++;
    } else {
        EFFNET_TRY(ops->bn_forward_eval(be, m->n, c, hw, l->c, l->gamma, l->beta, l->rmean, l->rvar,
                                        EFFNET_BN_EPS, l->b, err));
    }
    if (l->act)
        EFFNET_TRY(ops->silu_forward(be, out_count(m, l), l->b, l->a, err));
    return KILN_OK;
}

/* SqueezeExcitation: y = x * sigmoid(fc2(silu(fc1(avgpool(x))))). */
static int se_forward(kiln_effnet *m, effnet_se *se, const float *x, int hw, kiln_err *err)
{
    kiln_nn_backend *be = m->be;
    const kiln_nn_ops *ops = be->ops;
    int n = m->n;
    EFFNET_TRY(ops->avgpool_forward(be, n, se->c, hw, x, se->pool, err));
    EFFNET_TRY(ops->linear_forward(be, n, se->c, se->sq, se->pool, se->w1, se->b1, se->h1, err));
    EFFNET_TRY(ops->silu_forward(be, (size_t)n * se->sq, se->h1, se->h1a, err));
    EFFNET_TRY(ops->linear_forward(be, n, se->sq, se->c, se->h1a, se->w2, se->b2, se->h2, err));
    EFFNET_TRY(ops->sigmoid_forward(be, (size_t)n * se->c, se->h2, se->gate, err));
    return ops->scale_channels_forward(be, n, se->c, hw, x, se->gate, se->y, err);
}

/* MBConv: [expand] -> depthwise -> SE -> project [-> stochastic depth + input]. */
static int block_forward(kiln_effnet *m, effnet_block *b, int train, uint64_t seed, kiln_err *err)
{
    kiln_nn_backend *be = m->be;
    const kiln_nn_ops *ops = be->ops;
    const float *x = b->x;
    if (b->has_expand) {
        EFFNET_TRY(cba_forward(m, &b->expand, x, train, err));
        x = b->expand.a;
    }
    EFFNET_TRY(cba_forward(m, &b->dw, x, train, err));
    EFFNET_TRY(se_forward(m, &b->se, b->dw.a, b->dw.oh * b->dw.ow, err));
    EFFNET_TRY(cba_forward(m, &b->project, b->se.y, train, err));
    b->sd_used = 0;
    if (!b->cfg.residual)
        return KILN_OK;
    size_t count = out_count(m, &b->project);
    /* StochasticDepth(p, "row"): p = base * block_id / block_count. */
    double p = (double)m->sd_base * b->cfg.id / b->cfg.total;
    if (train && p > 0.0) {
        uint64_t offset = (uint64_t)(b->cfg.id + 1) << 40;
        EFFNET_TRY(ops->mask(be, (size_t)m->n, (float)p, seed, offset, b->sd_mask, err));
        EFFNET_TRY(ops->scale_samples(be, m->n, count / (size_t)m->n, b->project.b, b->sd_mask,
                                      b->out, err));
        b->sd_used = 1;
        return ops->add(be, count, b->out, b->x, b->out, err);
    }
    return ops->add(be, count, b->project.b, b->x, b->out, err);
}

/* avgpool -> flatten -> Dropout -> Linear. */
static int classifier_forward(kiln_effnet *m, int train, uint64_t seed, kiln_err *err)
{
    kiln_nn_backend *be = m->be;
    const kiln_nn_ops *ops = be->ops;
    int f = m->cfg.head_c;
    size_t count = (size_t)m->n * f;
    EFFNET_TRY(
        ops->avgpool_forward(be, m->n, f, m->head.oh * m->head.ow, m->head.a, m->pooled, err));
    const float *x = m->pooled;
    m->dropout_used = 0;
    if (train && m->dropout > 0.0f) {
        /* Dropout's stream starts at offset 0; blocks use (id + 1) << 40. */
        EFFNET_TRY(ops->mask(be, count, m->dropout, seed, 0, m->drop_mask, err));
        EFFNET_TRY(ops->mul(be, count, m->pooled, m->drop_mask, m->dropped, err));
        m->dropout_used = 1;
        x = m->dropped;
    }
    return ops->linear_forward(be, m->n, f, m->num_classes, x, m->fc_w, m->fc_b, m->logits, err);
}

static int forward_all(kiln_effnet *m, int train, uint64_t seed, kiln_err *err)
{
    kiln_nn_backend *be = m->be;
    if (m->input_act)
        EFFNET_TRY(be->ops->act_from_f32(be, m->n, 3, m->h * m->w, m->input, m->input_act, err));
    EFFNET_TRY(cba_forward(m, &m->stem, m->stem.x, train, err));
    for (int i = 0; i < m->cfg.n_blocks; i++) {
        int rc = block_forward(m, &m->blocks[i], train, seed, err);
        if (rc != KILN_OK)
            return kiln_err_wrap(err, "features.%d.%d", m->blocks[i].cfg.stage + 1,
                                 m->blocks[i].cfg.index);
    }
    EFFNET_TRY(cba_forward(m, &m->head, m->blocks[m->cfg.n_blocks - 1].out, train, err));
    EFFNET_TRY(classifier_forward(m, train, seed, err));
    if (m->logits_f32)
        EFFNET_TRY(be->ops->act_to_f32(be, m->n, m->num_classes, 1, m->logits, m->logits_f32, err));
    return KILN_OK;
}

const float *kiln_effnet_forward(kiln_effnet *m, const float *input, int train, uint64_t seed,
                                 kiln_err *err)
{
    m->train_forward_done = 0;
    if (!m->arena) {
        kiln_err_set(err, KILN_EINVAL, "EfficientNet forward before kiln_effnet_plan");
        return NULL;
    }
    if (train && m->inference) {
        kiln_err_set(err, KILN_EINVAL,
                     "EfficientNet train forward on an inference plan (use kiln_effnet_plan)");
        return NULL;
    }
    if (!input) {
        kiln_err_set(err, KILN_EINVAL, "EfficientNet forward without an input");
        return NULL;
    }
    m->input = input;
    m->stem.x = m->input_act ? m->input_act : input;
    if (forward_all(m, train, seed, err) != KILN_OK) {
        kiln_err_wrap(err, "EfficientNet-%s forward", m->cfg.variant);
        return NULL;
    }
    m->train_forward_done = train != 0;
    return m->logits_f32 ? m->logits_f32 : m->logits;
}
