/* bench/bench_loader.c — throughput of kiln_loader over a prepared dataset.
 *
 *   bench_loader DATASET_DIR [--threads W] [--batch 128] [--epochs 1]
 *                [--size 224] [--seed 42] [--no-augment]
 *
 * Opens a kiln_loader on the train split with training augmentation
 * (RandomResizedCrop(size) + horizontal flip, shuffled), iterates every
 * batch of each epoch, checks each batch's shape and labels, and prints one
 * line:
 *
 *   kiln_loader threads=W batch=B size=S images=N epochs=E open_s=..
 *       epoch_s=.. total_s=.. img_s=..
 *
 * epoch_s is the fastest epoch, img_s = images per epoch / epoch_s, and
 * total_s the wall time from open to close. Run by bench/data.sh.
 */
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"
#include "common/err.h"
#include "data/dataset.h"
#include "data/loader.h"

typedef struct bench_args {
    const char *dir;
    int threads, batch, epochs, size, augment;
    unsigned long long seed;
} bench_args;

typedef struct bench_result {
    uint32_t images;     /* per epoch */
    double open_s, best_epoch_s, total_s;
} bench_result;

static void usage(FILE *out)
{
    fprintf(out, "usage: bench_loader DATASET_DIR [--threads W] [--batch 128] [--epochs 1]\n"
                 "                    [--size 224] [--seed 42] [--no-augment]\n");
}

static int parse_seed(const char *s, unsigned long long *out, kiln_err *err)
{
    char *end = NULL;
    *out = strtoull(s, &end, 10);
    if (end == s || *end != '\0' || *s == '-')
        return kiln_err_set(err, KILN_EINVAL, "--seed: expected an unsigned integer, got '%s'", s);
    return KILN_OK;
}

static const struct option bench_options[] = {
    {"threads", required_argument, NULL, 't'},
    {"batch", required_argument, NULL, 'b'},
    {"epochs", required_argument, NULL, 'e'},
    {"size", required_argument, NULL, 's'},
    {"seed", required_argument, NULL, 'S'},
    {"no-augment", no_argument, NULL, 'n'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int parse_option(int opt, const char *val, void *args, kiln_err *err)
{
    bench_args *a = args;
    switch (opt) {
    case 't': return bench_parse_int("threads", val, 1, 256, &a->threads, err);
    case 'b': return bench_parse_int("batch", val, 1, 65536, &a->batch, err);
    case 'e': return bench_parse_int("epochs", val, 1, 1000, &a->epochs, err);
    case 's': return bench_parse_int("size", val, 1, 4096, &a->size, err);
    case 'S': return parse_seed(val, &a->seed, err);
    case 'n': a->augment = 0; return KILN_OK;
    default: return kiln_err_set(err, KILN_EINVAL, "unknown option %d", opt);
    }
}

/* KILN_OK, or EINVAL; *help set for --help. */
static int parse_args(int argc, char **argv, bench_args *a, int *help, kiln_err *err)
{
    *a = (bench_args){.threads = 1, .batch = 128, .epochs = 1, .size = 224, .augment = 1,
                      .seed = 42};
    int rc = bench_parse_options(argc, argv, bench_options, parse_option, a, help, err);
    if (rc != KILN_OK || *help)
        return rc;
    if (optind != argc - 1)
        return kiln_err_set(err, KILN_EINVAL, "expected one DATASET_DIR");
    a->dir = argv[optind];
    return KILN_OK;
}

static int check_batch(const kiln_batch *b, const bench_args *a, kiln_err *err)
{
    if (b->n < 1 || b->n > a->batch || b->channels != 3 || b->height != a->size ||
        b->width != a->size || !b->x || !b->labels)
        return kiln_err_set(err, KILN_EFORMAT,
                            "unexpected batch: n=%d channels=%d %dx%d (want <=%d, 3, %dx%d)",
                            b->n, b->channels, b->height, b->width, a->batch, a->size,
                            a->size);
    for (int i = 0; i < b->n; i++)
        if (b->labels[i] < 0)
            return kiln_err_set(err, KILN_EFORMAT, "negative label %d", (int)b->labels[i]);
    return KILN_OK;
}

/* One epoch: every batch, counting images; seconds in *secs. */
static int run_epoch(kiln_loader *l, const bench_args *a, int epoch, double *secs,
                     kiln_err *err)
{
    const kiln_batch *b = NULL;
    uint32_t seen = 0;
    int rc;
    double t0 = bench_now_s();
    if (kiln_loader_start_epoch(l, epoch, err) != KILN_OK)
        return err->code;
    while ((rc = kiln_loader_next(l, &b, err)) == 1) {
        if (check_batch(b, a, err) != KILN_OK)
            return err->code;
        seen += (uint32_t)b->n;
    }
    if (rc < 0)
        return err->code;
    *secs = bench_now_s() - t0;
    if (seen != kiln_loader_num_images(l))
        return kiln_err_set(err, KILN_EFORMAT, "epoch %d gave %u images, expected %u", epoch,
                            seen, kiln_loader_num_images(l));
    return KILN_OK;
}

static int run_bench(const bench_args *a, bench_result *r, kiln_err *err)
{
    kiln_loader_opts opts;
    kiln_loader *l = NULL;
    double t0 = bench_now_s(), secs = 0;
    kiln_loader_opts_default(&opts);
    opts.split = KILN_SPLIT_TRAIN;
    opts.batch_size = a->batch;
    opts.out_size = a->size;
    opts.threads = a->threads;
    opts.seed = a->seed;
    opts.shuffle = 1;
    opts.random_resized_crop = a->augment;
    opts.horizontal_flip = a->augment;
    l = kiln_loader_open(a->dir, &opts, err);
    if (!l)
        goto fail;
    r->open_s = bench_now_s() - t0;
    r->images = kiln_loader_num_images(l);
    r->best_epoch_s = 0;
    for (int e = 0; e < a->epochs; e++) {
        if (run_epoch(l, a, e, &secs, err) != KILN_OK)
            goto fail;
        if (e == 0 || secs < r->best_epoch_s)
            r->best_epoch_s = secs;
    }
    kiln_loader_close(l);
    r->total_s = bench_now_s() - t0;
    return KILN_OK;
fail:
    if (l)
        kiln_loader_close(l);
    return err->code;
}

int main(int argc, char **argv)
{
    bench_args a;
    bench_result r = {0};
    kiln_err err = {0};
    int help = 0;
    if (parse_args(argc, argv, &a, &help, &err) != KILN_OK) {
        fprintf(stderr, "bench_loader: %s\n", err.msg);
        usage(stderr);
        return 2;
    }
    if (help) {
        usage(stdout);
        return 0;
    }
    if (run_bench(&a, &r, &err) != KILN_OK) {
        fprintf(stderr, "bench_loader: %s: %s\n", a.dir, err.msg);
        return kiln_code_exit_status(err.code);
    }
    printf("kiln_loader threads=%d batch=%d size=%d images=%u epochs=%d open_s=%.4f "
           "epoch_s=%.4f total_s=%.4f img_s=%.1f\n",
           a.threads, a.batch, a.size, r.images, a.epochs, r.open_s, r.best_epoch_s, r.total_s,
           r.best_epoch_s > 0 ? r.images / r.best_epoch_s : 0.0);
    return 0;
}
