/* efficientnet_backward.c — the backward pass, layer by layer through the
 * backend ops. Parameter gradients go straight into the flat gradient
 * buffer (overwritten); activation gradients live in the plan's scratch
 * slots, each taken when a layer makes a gradient and given back as soon
 * as the next layer has consumed it. */
#include "nn/efficientnet_internal.h"

typedef struct slots {
    float *buf[EFFNET_SLOTS];
    int busy[EFFNET_SLOTS];
} slots;

/* A free slot in *out, or EINVAL when every slot is taken. */
static int slot_take(slots *s, float **out, kiln_err *err)
{
    for (int i = 0; i < EFFNET_SLOTS; i++) {
        if (!s->busy[i]) {
            s->busy[i] = 1;
            *out = s->buf[i];
            return KILN_OK;
        }
    }
    return kiln_err_set(err, KILN_EINVAL,
                        "EfficientNet backward ran out of gradient scratch buffers");
}

/* Gives back `p` if it is a slot; other pointers are ignored. */
static void slot_give(slots *s, const float *p)
{
    for (int i = 0; i < EFFNET_SLOTS; i++)
        if (s->buf[i] == p)
            s->busy[i] = 0;
}

/* Backward of conv -> BN -> [SiLU] from dy, the gradient of l->a (the
 * caller keeps and gives back dy). Writes dweight, dgamma, dbeta; returns
 * the input's gradient in a fresh slot through *dx, or skips it when dx is
 * NULL (the stem: nothing needs the image's gradient). */
static int cba_backward(kiln_effnet *m, effnet_cba *l, slots *s, const float *dy, float **dx,
                        kiln_err *err)
{
    kiln_nn_backend *be = m->be;
    const kiln_nn_ops *ops = be->ops;
    int n = m->n, c = l->conv.out_c, hw = l->oh * l->ow;
    float *dc = NULL;
    if (l->act && !m->no_fuse && ops->silu_bn_backward) {
        EFFNET_TRY(slot_take(s, &dc, err));
        EFFNET_TRY(ops->silu_bn_backward(be, n, c, hw, l->c, l->b, dy, l->gamma, l->save_mean,
                                         l->save_invstd, dc, l->dgamma, l->dbeta, err));
    } else {
        const float *db = dy;
        if (l->act) {
            float *t = NULL;
            EFFNET_TRY(slot_take(s, &t, err));
            EFFNET_TRY(ops->silu_backward(be, (size_t)n * c * hw, l->b, dy, t, err));
            db = t;
        }
        EFFNET_TRY(slot_take(s, &dc, err));
        EFFNET_TRY(ops->bn_backward(be, n, c, hw, l->c, db, l->gamma, l->save_mean,
                                    l->save_invstd, dc, l->dgamma, l->dbeta, err));
        if (db != dy)
            slot_give(s, db);
    }
    if (dx) {
        EFFNET_TRY(slot_take(s, dx, err));
        EFFNET_TRY(ops->conv_backward_data(be, &l->conv, n, l->h, l->w, dc, l->weight, *dx, err));
    }
    EFFNET_TRY(ops->conv_backward_filter(be, &l->conv, n, l->h, l->w, l->x, dc, l->dweight, err));
    slot_give(s, dc);
    return KILN_OK;
}

/* Backward of SE from dy, the gradient of se->y (kept by the caller), into
 * a fresh slot *dx, the gradient of its input x along both paths: the
 * scaled product and the pooled squeeze. */
static int se_backward(kiln_effnet *m, effnet_se *se, const float *x, int hw, slots *s,
                       const float *dy, float **dx, kiln_err *err)
{
    kiln_nn_backend *be = m->be;
    const kiln_nn_ops *ops = be->ops;
    int n = m->n;
    float *d_gate = m->small[0], *d_h2 = m->small[1], *d_h1a = m->small[2];
    float *d_h1 = m->small[0], *d_pool = m->small[1];
    EFFNET_TRY(slot_take(s, dx, err));
    EFFNET_TRY(ops->scale_channels_backward(be, n, se->c, hw, x, se->gate, dy, *dx, d_gate, err));
    EFFNET_TRY(ops->sigmoid_backward(be, (size_t)n * se->c, se->gate, d_gate, d_h2, err));
    EFFNET_TRY(ops->linear_backward(be, n, se->sq, se->c, se->h1a, se->w2, d_h2, d_h1a, se->dw2,
                                    se->db2, err));
    EFFNET_TRY(ops->silu_backward(be, (size_t)n * se->sq, se->h1, d_h1a, d_h1, err));
    EFFNET_TRY(ops->linear_backward(be, n, se->c, se->sq, se->pool, se->w1, d_h1, d_pool, se->dw1,
                                    se->db1, err));
    float *d_squeeze = NULL;
    EFFNET_TRY(slot_take(s, &d_squeeze, err));
    EFFNET_TRY(ops->avgpool_backward(be, n, se->c, hw, d_pool, d_squeeze, err));
    EFFNET_TRY(ops->add(be, (size_t)n * se->c * hw, *dx, d_squeeze, *dx, err));
    slot_give(s, d_squeeze);
    return KILN_OK;
}

/* Backward of one MBConv from dout, the gradient of b->out (kept by the
 * caller); *dx gets the gradient of the block input in a fresh slot. With a
 * residual, dout reaches the input twice: through the block and straight
 * through the skip, and the two are summed. */
static int block_backward(kiln_effnet *m, effnet_block *b, slots *s, const float *dout, float **dx,
                          kiln_err *err)
{
    kiln_nn_backend *be = m->be;
    const kiln_nn_ops *ops = be->ops;
    size_t count = (size_t)m->n * b->cfg.out_c * b->project.oh * b->project.ow;
    const float *dproj = dout;
    if (b->sd_used) {
        float *t = NULL;
        EFFNET_TRY(slot_take(s, &t, err));
        EFFNET_TRY(ops->scale_samples(be, m->n, count / (size_t)m->n, dout, b->sd_mask, t, err));
        dproj = t;
    }
    float *dse = NULL, *ddw = NULL;
    EFFNET_TRY(cba_backward(m, &b->project, s, dproj, &dse, err));
    if (dproj != dout)
        slot_give(s, dproj);
    EFFNET_TRY(se_backward(m, &b->se, b->dw.a, b->dw.oh * b->dw.ow, s, dse, &ddw, err));
    slot_give(s, dse);
    if (b->has_expand) {
        float *dexp = NULL;
        EFFNET_TRY(cba_backward(m, &b->dw, s, ddw, &dexp, err));
        slot_give(s, ddw);
        EFFNET_TRY(cba_backward(m, &b->expand, s, dexp, dx, err));
        slot_give(s, dexp);
    } else {
        EFFNET_TRY(cba_backward(m, &b->dw, s, ddw, dx, err));
        slot_give(s, ddw);
    }
    if (b->cfg.residual)
        EFFNET_TRY(ops->add(be, count, *dx, dout, *dx, err));
    return KILN_OK;
}

/* Linear -> Dropout -> avgpool backward; *dhead gets the gradient of the
 * head conv's output in a fresh slot. */
static int classifier_backward(kiln_effnet *m, slots *s, const float *dlogits, float **dhead,
                               kiln_err *err)
{
    kiln_nn_backend *be = m->be;
    const kiln_nn_ops *ops = be->ops;
    int f = m->cfg.head_c;
    const float *x = m->dropout_used ? m->dropped : m->pooled;
    float *dpooled = m->small[0];
    EFFNET_TRY(ops->linear_backward(be, m->n, f, m->num_classes, x, m->fc_w, dlogits, m->small[0],
                                    m->dfc_w, m->dfc_b, err));
    if (m->dropout_used) {
        EFFNET_TRY(ops->mul(be, (size_t)m->n * f, m->small[0], m->drop_mask, m->small[1], err));
        dpooled = m->small[1];
    }
    EFFNET_TRY(slot_take(s, dhead, err));
    return ops->avgpool_backward(be, m->n, f, m->head.oh * m->head.ow, dpooled, *dhead, err);
}

static int backward_all(kiln_effnet *m, const float *dlogits, kiln_err *err)
{
    slots s = {0};
    for (int i = 0; i < EFFNET_SLOTS; i++)
        s.buf[i] = m->slot[i];
    if (m->dlogits_act) {
        EFFNET_TRY(m->be->ops->act_from_f32(m->be, m->n, m->num_classes, 1, dlogits,
                                            m->dlogits_act, err));
        dlogits = m->dlogits_act;
    }
    float *d = NULL, *dx = NULL;
    EFFNET_TRY(classifier_backward(m, &s, dlogits, &d, err));
    int rc = cba_backward(m, &m->head, &s, d, &dx, err);
    if (rc != KILN_OK)
        return kiln_err_wrap(err, "features.%d", EFFNET_STAGES + 1);
    slot_give(&s, d);
    d = dx;
    for (int i = m->cfg.n_blocks - 1; i >= 0; i--) {
        effnet_block *b = &m->blocks[i];
        rc = block_backward(m, b, &s, d, &dx, err);
        if (rc != KILN_OK)
            return kiln_err_wrap(err, "features.%d.%d", b->cfg.stage + 1, b->cfg.index);
        slot_give(&s, d);
        d = dx;
    }
    rc = cba_backward(m, &m->stem, &s, d, NULL, err);
    if (rc != KILN_OK)
        return kiln_err_wrap(err, "features.0");
    slot_give(&s, d);
    return KILN_OK;
}

int kiln_effnet_backward(kiln_effnet *m, const float *dlogits, kiln_err *err)
{
    if (!m->train_forward_done)
        return kiln_err_set(err, KILN_EINVAL,
                            "EfficientNet backward needs a train-mode forward of the planned "
                            "shape just before it");
    if (!dlogits)
        return kiln_err_set(err, KILN_EINVAL, "EfficientNet backward without dlogits");
    int rc = effnet_grads_ready(m, err);
    if (rc == KILN_OK)
        rc = backward_all(m, dlogits, err);
    if (rc != KILN_OK)
        kiln_err_wrap(err, "EfficientNet-%s backward", m->cfg.variant);
    return rc;
}
