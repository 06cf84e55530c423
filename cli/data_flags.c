#include "data_flags.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

const char data_flags_usage[] =
    "  --config cfg.yaml          settings file (flags override its data.* keys)\n"
    "  --size 224                 image side after resize + centre crop\n"
    "  --val 0.15 --test 0.15     share of each class held out for validation / test\n"
    "  --seed 42                  seed of the split\n"
    "  --workers 2                decode threads (data.workers)\n"
    "  --normalization imagenet   mean/std: imagenet, or dataset (of the train split)\n"
    "  --max-bad-fraction 0.1     share of undecodable images allowed\n"
    "  --max-uncompressed-mb 65536  zip bomb guard: total inflated size\n"
    "  --max-ratio 200            zip bomb guard: compression ratio of any entry\n"
    "A zip with train/, val/ and test/ folders (each holding class folders) keeps its\n"
    "split; --val, --test and --seed then do not apply.\n";

enum { OPT_NORM = 1000, OPT_BAD, OPT_MAXMB, OPT_RATIO };

#define N_DATA_OPTIONS 13

static const struct option options[N_DATA_OPTIONS + 1] = {
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

/* Which config key each override flag sets. */
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

static int add_override(data_flags *f, int opt, int idx, const char *cmd)
{
    if (f->n_over == DATA_FLAGS_MAX_OVERRIDES) {
        fprintf(stderr, "kiln %s: too many flags\n", cmd);
        return 2;
    }
    f->over_key[f->n_over] = flag_key(opt);
    f->over_val[f->n_over] = optarg;
    f->over_flag[f->n_over++] = options[idx].name;
    return 0;
}

/* The data options, followed by the S3 ones when `with_s3`. */
static void build_table(struct option *table, int with_s3)
{
    int n = 0;
    for (int i = 0; i < N_DATA_OPTIONS; i++)
        table[n++] = options[i];
    for (int i = 0; with_s3 && s3_flag_options[i].name; i++)
        table[n++] = s3_flag_options[i];
    memset(&table[n], 0, sizeof table[n]);
}

int data_flags_parse(int argc, char **argv, const char *cmd, data_flags *f, s3_flags *s3)
{
    int opt, idx = 0;
    struct option table[N_DATA_OPTIONS + S3_FLAGS_MAX + 1];
    memset(f, 0, sizeof *f);
    build_table(table, s3 != NULL);
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", table, &idx)) != -1) {
        if (opt == 'h')
            return 1;
        if (opt >= S3_FLAG_BASE && s3) {
            if (s3_flags_add(s3, opt, cmd) != 0)
                return 2;
            continue;
        }
        if (opt == '?' || opt == ':') {
            fprintf(stderr, "kiln %s: unknown option or missing value: %s\n", cmd,
                    argv[optind - 1]);
            return 2;
        }
        if (opt == 'z')
            f->zip = optarg;
        else if (opt == 'o')
            f->out = optarg;
        else if (opt == 'c')
            f->config = optarg;
        else if (add_override(f, opt, idx, cmd) != 0)
            return 2;
        idx = 0;
    }
    f->n_positional = argc - optind;
    f->positional = argv + optind;
    return 0;
}

int data_flags_config(const data_flags *f, kiln_config *cfg, kiln_err *err)
{
    kiln_config_defaults(cfg);
    if (f->config && kiln_config_load_file(cfg, f->config, err) != KILN_OK)
        return err->code;
    for (int i = 0; i < f->n_over; i++)
        if (kiln_config_set(cfg, f->over_key[i], f->over_val[i], err) != KILN_OK)
            return kiln_err_wrap(err, "--%s", f->over_flag[i]);
    return kiln_config_validate(cfg, err);
}

void data_flags_prepare_opts(const kiln_config *cfg, const data_flags *f,
                             kiln_prepare_opts *o)
{
    kiln_prepare_opts_default(o);
    o->zip_path = f->zip;
    o->out_dir = f->out;
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
