/* efficientnet_plan.c — memory planning: every activation of one batch
 * shape laid out in a single backend allocation, kept for backward, plus
 * a few gradient scratch buffers that backward reuses layer after layer
 * (a gradient lives only from the layer that makes it to the layer that
 * consumes it). Activations take the backend's element size
 * (kiln_act_bytes(be->act): 2 for bf16), masks 4; the model never reads
 * an activation's bytes, so their pointers are only passed to the ops. */
#include <string.h>

#include "nn/efficientnet_internal.h"

#define EFFNET_MAX_BATCH 65536
#define EFFNET_MAX_SIDE 8192

typedef struct planner {
    char *base;      /* NULL while sizing */
    size_t used;     /* bytes */
    size_t act;      /* bytes per activation element */
    size_t max_big;  /* largest [n, c, h, w] activation, elements */
    size_t max_row;  /* largest per-sample channel count (SE, head, classes) */
} planner;

/* `count` elements of `elem` bytes, 64-byte aligned. */
static float *take_bytes(planner *p, size_t count, size_t elem)
{
    size_t off = p->used;
    size_t align = EFFNET_ALIGN * sizeof(float);
    p->used += (count * elem + align - 1) / align * align;
    return p->base ? (float *)(void *)(p->base + off) : NULL;
}

/* An activation (the backend's format). */
static float *take(planner *p, size_t count)
{
    return take_bytes(p, count, p->act);
}

/* A float32 tensor (masks, and the float32 ends of a non-native format). */
static float *take_f32(planner *p, size_t count)
{
    return take_bytes(p, count, sizeof(float));
}

static float *take_big(planner *p, size_t count)
{
    if (count > p->max_big)
        p->max_big = count;
    return take(p, count);
}

static void note_row(planner *p, size_t c)
{
    if (c > p->max_row)
        p->max_row = c;
}

/* A layer's input: its size, and so its output's; the pointer it reads. */
static void cba_input(effnet_cba *l, int h, int w, const float *x)
{
    l->h = h;
    l->w = w;
    l->oh = kiln_conv_out(&l->conv, h);
    l->ow = kiln_conv_out(&l->conv, w);
    l->x = x;
}

static void plan_cba(planner *p, effnet_cba *l, int n, int h, int w, const float *x)
{
    cba_input(l, h, w, x);
    size_t count = (size_t)n * (size_t)l->conv.out_c * (size_t)l->oh * (size_t)l->ow;
    l->c = take_big(p, count);
    l->b = take_big(p, count);
    l->a = l->act ? take_big(p, count) : l->b;
}

static void plan_block(planner *p, effnet_block *b, int n, int h, int w, const float *x)
{
    const effnet_block_cfg *c = &b->cfg;
    b->x = x;
    const float *dw_in = x;
    if (b->has_expand) {
        plan_cba(p, &b->expand, n, h, w, x);
        dw_in = b->expand.a;
    }
    plan_cba(p, &b->dw, n, h, w, dw_in);
    int oh = b->dw.oh, ow = b->dw.ow;
    effnet_se *se = &b->se;
    note_row(p, (size_t)c->exp_c);
    se->pool = take(p, (size_t)n * c->exp_c);
    se->h1 = take(p, (size_t)n * c->sq_c);
    se->h1a = take(p, (size_t)n * c->sq_c);
    se->h2 = take(p, (size_t)n * c->exp_c);
    se->gate = take(p, (size_t)n * c->exp_c);
    se->y = take_big(p, (size_t)n * c->exp_c * (size_t)oh * (size_t)ow);
    plan_cba(p, &b->project, n, oh, ow, se->y);
    if (c->residual) {
        b->sd_mask = take_f32(p, (size_t)n);
        b->out = take_big(p, (size_t)n * c->out_c * (size_t)oh * (size_t)ow);
    } else {
        b->sd_mask = NULL;
        b->out = b->project.b;
    }
}

/* Outside float32 NCHW the model's float32 ends get buffers of the
 * backend's format: the input, the logits and their gradient. */
static void plan_ends(kiln_effnet *m, planner *p, int n, int h, int w, int train)
{
    m->input_act = m->logits_f32 = m->dlogits_act = NULL;
    if (m->be->act == KILN_ACT_F32_NCHW)
        return;
    m->input_act = take(p, (size_t)n * 3 * (size_t)h * (size_t)w);
    m->logits_f32 = take_f32(p, (size_t)n * m->num_classes);
    if (train)
        m->dlogits_act = take(p, (size_t)n * m->num_classes);
}

/* One walk over the graph in forward order; sizes only when p->base is NULL. */
static void plan_walk(kiln_effnet *m, planner *p, int n, int h, int w)
{
    plan_ends(m, p, n, h, w, 1);
    plan_cba(p, &m->stem, n, h, w, m->input_act);
    const float *x = m->stem.a;
    h = m->stem.oh;
    w = m->stem.ow;
    for (int i = 0; i < m->cfg.n_blocks; i++) {
        effnet_block *b = &m->blocks[i];
        plan_block(p, b, n, h, w, x);
        x = b->out;
        h = b->project.oh;
        w = b->project.ow;
    }
    plan_cba(p, &m->head, n, h, w, x);
    size_t f = (size_t)m->cfg.head_c;
    note_row(p, f);
    note_row(p, (size_t)m->num_classes);
    m->pooled = take(p, (size_t)n * f);
    m->drop_mask = take_f32(p, (size_t)n * f);
    m->dropped = take(p, (size_t)n * f);
    m->logits = take(p, (size_t)n * m->num_classes);
    /* Gradient scratch comes last so its size is known from the walk. */
    m->slot_floats = p->max_big;
    for (int i = 0; i < EFFNET_SLOTS; i++)
        m->slot[i] = take(p, p->max_big);
    for (int i = 0; i < 3; i++)
        m->small[i] = take(p, (size_t)n * p->max_row);
}

/* --- inference plans ----------------------------------------------------
 * Eval forward only: nothing is kept for backward, so activations rotate
 * through three buffers of the largest activation. A block reads its input
 * from region X and works in A and B: [expand] conv -> A, BN + SiLU -> B;
 * depthwise conv -> A, BN + SiLU -> B; SE output -> A; projection conv ->
 * B, BN -> A, residual added in place in A, which becomes the next X. No op
 * ever writes over its own input (SiLU and add may, by the backend's
 * contract). */

static void infer_cba(effnet_cba *l, int h, int w, const float *x, float *c, float *b)
{
    cba_input(l, h, w, x);
    l->c = c;
    l->b = b;
    l->a = b;
}

static void infer_walk(kiln_effnet *m, float *region[3], float *se_small[5], int h, int w)
{
    infer_cba(&m->stem, h, w, m->input_act, region[0], region[1]);
    int cur = 1;
    h = m->stem.oh;
    w = m->stem.ow;
    for (int i = 0; i < m->cfg.n_blocks; i++) {
        effnet_block *b = &m->blocks[i];
        float *x = region[cur], *ra = region[(cur + 1) % 3], *rb = region[(cur + 2) % 3];
        b->x = x;
        const float *dw_in = x;
        if (b->has_expand) {
            infer_cba(&b->expand, h, w, x, ra, rb);
            dw_in = rb;
        }
        infer_cba(&b->dw, h, w, dw_in, ra, rb);
        effnet_se *se = &b->se;
        se->pool = se_small[0];
        se->h1 = se_small[1];
        se->h1a = se_small[2];
        se->h2 = se_small[3];
        se->gate = se_small[4];
        se->y = ra;
        infer_cba(&b->project, b->dw.oh, b->dw.ow, ra, rb, ra);
        b->sd_mask = NULL;
        b->out = ra;
        cur = (cur + 1) % 3;
        h = b->project.oh;
        w = b->project.ow;
    }
    infer_cba(&m->head, h, w, region[cur], region[(cur + 1) % 3], region[(cur + 2) % 3]);
}

/* The plan's one backend allocation. */
static int alloc_arena(kiln_effnet *m, size_t bytes, const char *what, int batch, int h, int w,
                       kiln_err *err)
{
    m->arena = m->be->ops->alloc(m->be, bytes, err);
    if (!m->arena)
        return kiln_err_wrap(err, "planning EfficientNet %sfor [%d, 3, %d, %d] (%zu MiB)", what,
                             batch, h, w, bytes >> 20);
    m->arena_bytes = bytes;
    return KILN_OK;
}

static int plan_inference(kiln_effnet *m, int batch, int h, int w, kiln_err *err)
{
    planner p = {.act = kiln_act_bytes(m->be->act)};
    plan_walk(m, &p, batch, h, w); /* for the largest activation and row */
    size_t big = p.max_big, row = (size_t)batch * p.max_row;
    size_t f = (size_t)batch * m->cfg.head_c, logits = (size_t)batch * m->num_classes;
    /* The same layout twice: sizing, then pointing into the arena. */
    for (int pass = 0; pass < 2; pass++) {
        float *region[3], *se_small[5];
        size_t act = p.act;
        memset(&p, 0, sizeof p);
        p.act = act;
        p.base = pass ? m->arena : NULL;
        plan_ends(m, &p, batch, h, w, 0);
        for (int i = 0; i < 3; i++)
            region[i] = take(&p, big);
        for (int i = 0; i < 5; i++)
            se_small[i] = take(&p, row);
        m->pooled = take(&p, f);
        m->logits = take(&p, logits);
        if (!pass) {
            int rc = alloc_arena(m, p.used, "inference ", batch, h, w, err);
            if (rc != KILN_OK)
                return rc;
            continue;
        }
        infer_walk(m, region, se_small, h, w);
    }
    m->drop_mask = m->dropped = NULL;
    m->slot_floats = 0;
    memset(m->slot, 0, sizeof m->slot);
    memset(m->small, 0, sizeof m->small);
    return KILN_OK;
}

void effnet_plan_free(kiln_effnet *m)
{
    if (m->arena && m->be)
        m->be->ops->release(m->be, m->arena);
    m->arena = NULL;
    m->arena_bytes = 0;
    m->n = m->h = m->w = 0;
    m->inference = 0;
    m->train_forward_done = 0;
}

/* Everything forward and backward keep: two walks, one to size the arena
 * and one to lay it out. */
static int plan_training(kiln_effnet *m, int batch, int h, int w, kiln_err *err)
{
    planner p = {.act = kiln_act_bytes(m->be->act)};
    plan_walk(m, &p, batch, h, w);
    int rc = alloc_arena(m, p.used, "", batch, h, w, err);
    if (rc != KILN_OK)
        return rc;
    memset(&p, 0, sizeof p);
    p.act = kiln_act_bytes(m->be->act);
    p.base = m->arena;
    plan_walk(m, &p, batch, h, w);
    return KILN_OK;
}

static int plan(kiln_effnet *m, int batch, int h, int w, int inference, kiln_err *err)
{
    if (batch < 1 || batch > EFFNET_MAX_BATCH || h < 1 || h > EFFNET_MAX_SIDE || w < 1 ||
        w > EFFNET_MAX_SIDE)
        return kiln_err_set(err, KILN_EINVAL,
                            "EfficientNet input [%d, 3, %d, %d] out of range (batch 1..%d, "
                            "sides 1..%d)",
                            batch, h, w, EFFNET_MAX_BATCH, EFFNET_MAX_SIDE);
    if (m->arena && m->n == batch && m->h == h && m->w == w && m->inference == inference)
        return KILN_OK;
    effnet_plan_free(m);
    int rc = inference ? plan_inference(m, batch, h, w, err) : plan_training(m, batch, h, w, err);
    if (rc != KILN_OK)
        return rc;
    m->plan_generation++;
    m->n = batch;
    m->h = h;
    m->w = w;
    m->inference = inference;
    return KILN_OK;
}

int kiln_effnet_plan(kiln_effnet *m, int batch, int h, int w, kiln_err *err)
{
    return plan(m, batch, h, w, 0, err);
}

int kiln_effnet_plan_inference(kiln_effnet *m, int batch, int h, int w, kiln_err *err)
{
    return plan(m, batch, h, w, 1, err);
}

uint64_t kiln_effnet_plan_generation(const kiln_effnet *m)
{
    return m->plan_generation;
}

size_t kiln_effnet_plan_bytes(const kiln_effnet *m)
{
    return m->arena_bytes;
}
