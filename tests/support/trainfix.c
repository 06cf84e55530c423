/* tests/support/trainfix.c — see trainfix.h. */
#include <stdio.h>

#include "common/fs.h"
#include "support/testutil.h"
#include "support/trainfix.h"

char *kt_train_dataset(const char *root, uint32_t train, uint32_t val, kt_ds_pixel_fn pixel)
{
    char *dir = kt_path(root, "data");
    kiln_err err = {0};
    kt_expect_ok(kiln_mkdir_p(dir, &err), &err, "mkdir");
    kt_ds_opts o;
    kt_ds_opts_default(&o);
    o.n_classes = 3;
    o.image_size = 32;
    o.per_split[KILN_SPLIT_TRAIN] = train;
    o.per_split[KILN_SPLIT_VAL] = val;
    o.per_split[KILN_SPLIT_TEST] = 0;
    if (pixel)
        o.pixel = pixel;
    kt_ds_build(dir, &o);
    return dir;
}

void kt_train_tiny_opts(kiln_train_opts *o, const char *data, const char *out, int epochs)
{
    kiln_train_opts_default(o);
    o->data_dir = data;
    o->out_dir = out;
    o->threads = 2;
    o->cfg.data.workers = 1;
    o->cfg.train.epochs = epochs;
    o->cfg.train.batch_size = 8;
    o->cfg.train.learning_rate = 0.01;
    o->seed = 7;
}

kiln_mlflow_client *kt_train_client(const kt_trackserver *s)
{
    kiln_mlflow_config cfg;
    kiln_err err = {0};
    kiln_mlflow_config_default(&cfg);
    snprintf(cfg.tracking_uri, sizeof cfg.tracking_uri, "%s", s->uri);
    cfg.max_retries = 0;
    kiln_mlflow_client *c = kiln_mlflow_client_new(&cfg, NULL, &err);
    if (!c)
        fail_msg("client: %s", err.msg);
    return c;
}

/* Solid colours with noise: class k is bright in channel k. */
uint8_t kt_colour_pixel(void *ctx, uint32_t index, int y, int x, int c, int size)
{
    (void)ctx, (void)size;
    int base = (int)(index % 3) == c ? 190 : 60;
    uint32_t h = index * 2654435761u ^ (uint32_t)(y * 131 + x * 17 + c * 7919);
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    return (uint8_t)(base + (int)(h % 61) - 30);
}
