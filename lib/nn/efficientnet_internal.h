/* lib/nn/efficientnet_internal.h — the private layout of a kiln_effnet,
 * shared by the efficientnet*.c files (config, registry, plan, forward,
 * backward, init, io). Not for use outside lib/nn.
 */
#ifndef KILN_NN_EFFICIENTNET_INTERNAL_H
#define KILN_NN_EFFICIENTNET_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "nn/efficientnet.h"
#include "nn/safetensors.h"

#define EFFNET_MAX_BLOCKS 32   /* b3 has 26 */
#define EFFNET_STAGES 7
#define EFFNET_BN_EPS 1e-5f    /* nn.BatchNorm2d defaults, kept by b0-b3 */
#define EFFNET_BN_MOMENTUM 0.1f
#define EFFNET_NAME_MAX 64
#define EFFNET_ALIGN 16        /* floats: every tensor starts 64-byte aligned */
#define EFFNET_SLOTS 4         /* big gradient scratch buffers: block backward holds 4 */

/* Return the status of `call` from the enclosing function unless it is
 * KILN_OK (the forward and backward passes are long chains of ops). */
#define EFFNET_TRY(call)                                                                           \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != KILN_OK)                                                                        \
            return rc_;                                                                            \
    } while (0)

/* n rounded up to whole EFFNET_ALIGN floats. */
static inline size_t effnet_align_up(size_t n)
{
    return (n + EFFNET_ALIGN - 1) / EFFNET_ALIGN * EFFNET_ALIGN;
}

/* --- configuration (efficientnet_config.c) ---------------------------- */

typedef struct effnet_block_cfg {
    int in_c, out_c, exp_c, sq_c; /* exp_c == in_c: no expand conv */
    int kernel, stride;
    int residual;                 /* stride 1 and in_c == out_c */
    int stage, index;             /* features.<stage+1>.<index> */
    int id, total;                /* stochastic depth p = base * id / total */
} effnet_block_cfg;

typedef struct effnet_cfg {
    char variant[4];              /* "b0".."b3" */
    double width, depth;
    float dropout;
    int stem_c;                   /* features.0 output */
    int head_in, head_c;          /* features.<last> input / output */
    int n_blocks;
    effnet_block_cfg blocks[EFFNET_MAX_BLOCKS];
} effnet_cfg;

/* Fill `cfg` for "b0".."b3" (or "efficientnet_bN"); EINVAL otherwise. */
int effnet_cfg_make(const char *variant, effnet_cfg *cfg, kiln_err *err);
/* torchvision.models._utils._make_divisible(v, 8). */
int effnet_make_divisible(double v);

/* --- the state_dict spec (efficientnet_params.c) ---------------------- */

typedef enum effnet_kind {
    EFFNET_PARAM_DECAY = 0, /* conv / linear weights */
    EFFNET_PARAM_NODECAY,   /* BN weight / bias, biases */
    EFFNET_BUF_FLOAT,       /* running_mean / running_var */
    EFFNET_BUF_COUNTER,     /* num_batches_tracked */
} effnet_kind;

typedef enum effnet_init {
    EFFNET_INIT_KAIMING = 0, /* conv weight: normal(0, sqrt(2 / fan_out)) */
    EFFNET_INIT_ONES,
    EFFNET_INIT_ZEROS,
    EFFNET_INIT_LINEAR,      /* uniform(-1/sqrt(out), 1/sqrt(out)) */
} effnet_init;

typedef struct effnet_entry {
    char name[EFFNET_NAME_MAX];
    int ndim;
    int64_t shape[4];
    size_t count;
    effnet_kind kind;
    effnet_init init;
} effnet_entry;

typedef struct effnet_spec {
    effnet_entry *e;
    size_t n, cap;
} effnet_spec;

/* --- layers ----------------------------------------------------------- */

/* Conv2dNormActivation: conv (no bias), BatchNorm, optional SiLU. */
typedef struct effnet_cba {
    kiln_conv_desc conv;
    int act;                    /* SiLU after BN */
    int w_idx, bn_idx;          /* spec: conv weight; BN weight (bias +1, mean +2, var +3, count +4) */
    float *weight, *dweight, *gamma, *dgamma, *beta, *dbeta, *rmean, *rvar;
    int64_t *batches;
    float *save_mean, *save_invstd;
    /* plan */
    int h, w, oh, ow;
    const float *x;             /* input (the model input for the stem) */
    float *c, *b, *a;           /* conv out, BN out, SiLU out (a == b without SiLU) */
} effnet_cba;

/* SqueezeExcitation: avgpool, fc1 (1×1 conv + bias), SiLU, fc2, sigmoid, scale. */
typedef struct effnet_se {
    int c, sq;
    int fc1_idx, fc2_idx;       /* spec: weight (bias +1) */
    float *w1, *b1, *w2, *b2, *dw1, *db1, *dw2, *db2;
    float *pool, *h1, *h1a, *h2, *gate, *y;
} effnet_se;

typedef struct effnet_block {
    effnet_block_cfg cfg;
    int has_expand;
    effnet_cba expand, dw, project;
    effnet_se se;
    const float *x;             /* block input */
    float *sd_mask;             /* [n] */
    float *out;                 /* == project.b without a residual */
    int sd_used;                /* last forward drew a stochastic-depth mask */
} effnet_block;

struct kiln_effnet {
    kiln_nn_backend *be;
    effnet_cfg cfg;
    int num_classes;
    float dropout, sd_base;
    int no_fuse;                /* kiln_effnet_set_fused(m, 0) */

    effnet_spec spec;
    kiln_effnet_tensor *t;      /* one per spec entry, state_dict order */
    size_t *param_ix, n_params; /* indices into t */
    size_t *buf_ix, n_bufs;
    size_t param_count;

    float *params, *grads;      /* flat, backend; grads zeroed lazily (grads_zeroed) */
    int grads_zeroed;
    size_t flat_floats, decay_floats;
    float *buffers;             /* running stats, backend */
    size_t buffer_floats;
    int64_t *counters;          /* host */
    size_t n_counters;
    float *bn_save;             /* save_mean / save_invstd for every BN, backend */
    size_t bn_save_floats;

    effnet_cba stem, head;
    effnet_block blocks[EFFNET_MAX_BLOCKS];
    int fc_idx;                 /* classifier.1.weight (bias +1) */
    float *fc_w, *fc_b, *dfc_w, *dfc_b;

    /* plan */
    int n, h, w;
    int inference;              /* kiln_effnet_plan_inference: eval only */
    void *arena;                /* one backend allocation */
    size_t arena_bytes;
    uint64_t plan_generation;   /* bumped at every new plan: its buffers moved */
    float *slot[EFFNET_SLOTS];
    size_t slot_floats;
    float *small[3];            /* [n, max(channels)] scratch for SE / head grads */
    float *pooled, *drop_mask, *dropped, *logits;
    /* Outside float32 NCHW (be->act): the input and dlogits in the
     * backend's format, the logits in float32; NULL otherwise. */
    float *input_act, *logits_f32, *dlogits_act;
    const float *input;
    int dropout_used;
    int train_forward_done;     /* backward is allowed */
};

/* The host-only part of a model (configuration, spec, layout); no backend
 * memory yet. Free with kiln_effnet_destroy. */
kiln_effnet *effnet_describe(const char *variant, int num_classes, kiln_err *err);
/* Allocate the flat buffers on `be` and point every tensor and layer there
 * (contents undefined until init or load). */
int effnet_attach(kiln_effnet *m, kiln_nn_backend *be, kiln_err *err);
/* Build the spec and the layers' spec indices for a configuration. */
int effnet_build(kiln_effnet *m, kiln_err *err);
void effnet_spec_free(effnet_spec *s);
/* Index of `name` in the spec, or -1. */
long effnet_spec_find(const effnet_spec *s, const char *name);

/* Plan internals (efficientnet_plan.c). */
void effnet_plan_free(kiln_effnet *m);

/* Host initial values of one spec entry (efficientnet_init.c). */
void effnet_init_entry(const effnet_entry *e, uint64_t seed, size_t index, float *out);
/* Re-initialise classifier.1 only (pretrained import). */
int effnet_init_head(kiln_effnet *m, uint64_t seed, kiln_err *err);

/* Load from an opened file (efficientnet_io.c). */
int effnet_load_st(kiln_effnet *m, const kiln_st_file *f, const char *what,
                   kiln_effnet_load_mode mode, uint64_t head_seed, kiln_err *err);

/* Zero the gradient buffer before its first use (once). */
int effnet_grads_ready(kiln_effnet *m, kiln_err *err);

#endif
