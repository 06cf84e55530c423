/* kiln prepare: flags and config file onto kiln_prepare. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config/config.h"
#include "data/prepare.h"

static void prepare_usage(FILE *out)
{
    fprintf(out,
            "usage: kiln prepare --zip data.zip --out DIR [--config cfg.yaml] [--size 224]\n"
            "                    [--val 0.15] [--test 0.15] [--seed 42] [--workers N]\n"
            "                    [--normalization imagenet|dataset] [--max-bad-fraction 0.1]\n"
            "                    [--max-uncompressed-mb MB] [--max-ratio R]\n\n"
            "Reads a zip of class folders (dry/, wet/, ...), decodes the JPEG and PNG images,\n"
            "resizes the shorter side to --size and centre-crops, splits each class into\n"
            "train/val/test, and writes shards and manifest.json into DIR.\n"
            "Flags override the config file's data.* keys.\n");
}

enum { OPT_NORM = 1000, OPT_BAD, OPT_MAXMB, OPT_RATIO };

static const struct option prepare_options[] = {
    {"zip", required_argument, NULL, 'z'},
    {"out", required_argument, NULL, 'o'},
    {"config", required_argument, NULL, 'c'},
    {"size", required_argument, NULL, 's'},
    {"val", required_argument, NULL, 'v'},
    {"test", required_argument, NULL, 't'},
    {"seed", required_argument, NULL, 'S'},
    {"workers", required_argument, NULL, 'w'},
    {"normalization", required_argument, NULL, OPT_NORM},
    {"max-bad-fraction", required_argument, NULL, OPT_BAD},
    {"max-uncompressed-mb", required_argument, NULL, OPT_MAXMB},
    {"max-ratio", required_argument, NULL, OPT_RATIO},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Which config key each flag sets. */
static const char *flag_key(int opt)
{
    switch (opt) {
    case 's': return "data.image_size";
    case 'v': return "data.val_fraction";
    case 't': return "data.test_fraction";
    case 'S': return "data.seed";
    case 'w': return "data.workers";
    case OPT_NORM: return "data.normalization";
    case OPT_BAD: return "data.max_bad_fraction";
    case OPT_MAXMB: return "data.max_uncompressed_mb";
    case OPT_RATIO: return "data.max_compression_ratio";
    default: return NULL;
    }
}

typedef struct prepare_args {
    const char *zip, *out, *config;
    /* flag overrides, applied after the config file, in order */
    int n_over;
    const char *over_key[16];
    const char *over_val[16];
    const char *over_flag[16];
} prepare_args;

/* 0 ok, 1 --help, 2 usage error. */
static int parse_args(int argc, char **argv, prepare_args *a)
{
    int opt, idx;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", prepare_options, &idx)) != -1) {
        if (opt == 'h')
            return 1;
        if (opt == '?' || opt == ':') {
            fprintf(stderr, "kiln prepare: unknown option or missing value: %s\n",
                    argv[optind - 1]);
            return 2;
        }
        if (opt == 'z')
            a->zip = optarg;
        else if (opt == 'o')
            a->out = optarg;
        else if (opt == 'c')
            a->config = optarg;
        else if (a->n_over < 16) {
            a->over_key[a->n_over] = flag_key(opt);
            a->over_val[a->n_over] = optarg;
            a->over_flag[a->n_over++] = prepare_options[idx].name;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kiln prepare: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!a->zip || !a->out) {
        fprintf(stderr, "kiln prepare: --zip and --out are required\n");
        return 2;
    }
    return 0;
}

static int build_config(const prepare_args *a, kiln_config *cfg, kiln_err *err)
{
    kiln_config_defaults(cfg);
    if (a->config && kiln_config_load_file(cfg, a->config, err) != KILN_OK)
        return err->code;
    for (int i = 0; i < a->n_over; i++)
        if (kiln_config_set(cfg, a->over_key[i], a->over_val[i], err) != KILN_OK)
            return kiln_err_wrap(err, "--%s", a->over_flag[i]);
    return kiln_config_validate(cfg, err);
}

static void opts_from_config(const kiln_config *cfg, const prepare_args *a, kiln_prepare_opts *o)
{
    kiln_prepare_opts_default(o);
    o->zip_path = a->zip;
    o->out_dir = a->out;
    o->image_size = cfg->data.image_size;
    o->val_fraction = cfg->data.val_fraction;
    o->test_fraction = cfg->data.test_fraction;
    o->seed = cfg->data.seed;
    o->threads = cfg->data.workers;
    o->normalize_dataset = strcmp(cfg->data.normalization, "dataset") == 0;
    o->max_bad_fraction = cfg->data.max_bad_fraction;
    o->limits.max_total_bytes = (uint64_t)cfg->data.max_uncompressed_mb << 20;
    o->limits.max_ratio = cfg->data.max_compression_ratio;
}

static void print_report(const kiln_prepare_report *r, const char *out)
{
    printf("prepared %u images in %u classes into %s: train %u, val %u, test %u; "
           "%u undecodable, %u skipped, %llu ignored; %.2f s (%.0f images/s)\n",
           r->images, r->n_classes, out, r->split_counts[0], r->split_counts[1],
           r->split_counts[2], r->undecodable, r->skipped, (unsigned long long)r->ignored,
           r->seconds, r->seconds > 0 ? (r->images + r->undecodable) / r->seconds : 0.0);
}

int kiln_cmd_prepare(int argc, char **argv, const kiln_logger *log)
{
    prepare_args a = {0};
    kiln_config cfg;
    kiln_prepare_opts opts;
    kiln_prepare_report report;
    kiln_err err = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc != 0) {
        prepare_usage(rc == 1 ? stdout : stderr);
        return rc == 1 ? 0 : 2;
    }
    if (build_config(&a, &cfg, &err) != KILN_OK) {
        kiln_log_error(log, "kiln prepare: %s", err.msg);
        return 2;
    }
    opts_from_config(&cfg, &a, &opts);
    if (kiln_prepare(&opts, log, &report, &err) != KILN_OK) {
        kiln_log_error(log, "kiln prepare: %s", err.msg);
        return kiln_code_exit_status(err.code);
    }
    print_report(&report, a.out);
    return 0;
}
