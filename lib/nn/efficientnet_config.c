/* efficientnet_config.c — the B0–B3 variant table and the block list,
 * computed exactly as torchvision 0.14's _efficientnet_conf / MBConvConfig
 * / EfficientNet.__init__ do. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/efficientnet_internal.h"

typedef struct variant_row {
    const char *name;
    double width, depth;
    float dropout;
} variant_row;

/* efficientnet_b0..b3 in torchvision/models/efficientnet.py. */
static const variant_row VARIANTS[] = {
    {"b0", 1.0, 1.0, 0.2f},
    {"b1", 1.0, 1.1, 0.2f},
    {"b2", 1.1, 1.2, 0.3f},
    {"b3", 1.2, 1.4, 0.3f},
};

/* bneck_conf(expand_ratio, kernel, stride, input_channels, out_channels,
 * num_layers) before width / depth scaling. */
static const int STAGES[EFFNET_STAGES][6] = {
    {1, 3, 1, 32, 16, 1},  {6, 3, 2, 16, 24, 2},  {6, 5, 2, 24, 40, 2},
    {6, 3, 2, 40, 80, 3},  {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4},
    {6, 3, 1, 192, 320, 1},
};

int effnet_make_divisible(double v)
{
    const int divisor = 8;
    /* max(min_value, int(v + divisor / 2) // divisor * divisor) */
    int new_v = (int)(v + divisor / 2.0) / divisor * divisor;
    if (new_v < divisor)
        new_v = divisor;
    /* Make sure that round down does not go down by more than 10%. */
    if (new_v < 0.9 * v)
        new_v += divisor;
    return new_v;
}

static const variant_row *find_variant(const char *variant)
{
    if (!variant)
        return NULL;
    if (strncmp(variant, "efficientnet_", 13) == 0)
        variant += 13;
    for (size_t i = 0; i < sizeof VARIANTS / sizeof VARIANTS[0]; i++)
        if (strcmp(VARIANTS[i].name, variant) == 0)
            return &VARIANTS[i];
    return NULL;
}

int kiln_effnet_variant_known(const char *variant)
{
    return find_variant(variant) != NULL;
}

int effnet_cfg_make(const char *variant, effnet_cfg *cfg, kiln_err *err)
{
    const variant_row *row = find_variant(variant);
    if (!row)
        return kiln_err_set(err, KILN_EINVAL,
                            "unknown EfficientNet variant '%s' (expected b0, b1, b2 or b3)",
                            variant ? variant : "(null)");
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->variant, sizeof cfg->variant, "%s", row->name);
    cfg->width = row->width;
    cfg->depth = row->depth;
    cfg->dropout = row->dropout;

    int total = 0;
    int layers[EFFNET_STAGES];
    for (int s = 0; s < EFFNET_STAGES; s++) {
        layers[s] = (int)ceil(STAGES[s][5] * row->depth);
        total += layers[s];
    }
    if (total > EFFNET_MAX_BLOCKS)
        return kiln_err_set(err, KILN_EINVAL, "variant %s has %d blocks, over %d", row->name,
                            total, EFFNET_MAX_BLOCKS);

    int id = 0;
    for (int s = 0; s < EFFNET_STAGES; s++) {
        int in_c = effnet_make_divisible(STAGES[s][3] * row->width);
        int out_c = effnet_make_divisible(STAGES[s][4] * row->width);
        for (int i = 0; i < layers[s]; i++, id++) {
            effnet_block_cfg *b = &cfg->blocks[id];
            b->in_c = i == 0 ? in_c : out_c;
            b->out_c = out_c;
            b->exp_c = effnet_make_divisible((double)b->in_c * STAGES[s][0]);
            b->sq_c = b->in_c / 4 > 1 ? b->in_c / 4 : 1;
            b->kernel = STAGES[s][1];
            b->stride = i == 0 ? STAGES[s][2] : 1;
            b->residual = b->stride == 1 && b->in_c == b->out_c;
            b->stage = s;
            b->index = i;
            b->id = id;
            b->total = total;
        }
    }
    cfg->n_blocks = total;
    cfg->stem_c = cfg->blocks[0].in_c;
    cfg->head_in = cfg->blocks[total - 1].out_c;
    cfg->head_c = 4 * cfg->head_in;
    return KILN_OK;
}

size_t kiln_effnet_variant_param_count(const char *variant, int num_classes)
{
    /* Counted from the same spec a model is built from, so the two agree. */
    kiln_effnet *m = effnet_describe(variant, num_classes, NULL);
    size_t n = m ? kiln_effnet_param_count(m) : 0;
    kiln_effnet_destroy(m);
    return n;
}
