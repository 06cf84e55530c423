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
