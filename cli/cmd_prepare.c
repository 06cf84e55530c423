/* kiln prepare: flags and config file onto kiln_prepare. */
#include <stdio.h>

#include "cli.h"
#include "data_flags.h"

static void prepare_usage(FILE *out)
{
    fprintf(out,
            "usage: kiln prepare --zip data.zip --out DIR [options]\n\n"
            "Reads a zip of class folders (dry/, wet/, ...), decodes the JPEG and PNG images,\n"
            "resizes the shorter side to --size and centre-crops, splits each class into\n"
            "train/val/test, and writes shards and manifest.json into DIR.\n\noptions:\n%s",
            data_flags_usage);
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
    data_flags f;
    kiln_config cfg;
    kiln_prepare_opts opts;
    kiln_prepare_report report;
    kiln_err err = {0};
    int rc = data_flags_parse(argc, argv, "prepare", &f, NULL);
    if (rc == 0 && f.n_positional > 0) {
        fprintf(stderr, "kiln prepare: unexpected argument '%s'\n", f.positional[0]);
        rc = 2;
    } else if (rc == 0 && (!f.zip || !f.out)) {
        fprintf(stderr, "kiln prepare: --zip and --out are required\n");
        rc = 2;
    }
    if (rc != 0) {
        prepare_usage(rc == 1 ? stdout : stderr);
        return rc == 1 ? 0 : 2;
    }
    if (data_flags_config(&f, &cfg, &err) != KILN_OK) {
        kiln_log_error(log, "kiln prepare: %s", err.msg);
        return 2;
    }
    data_flags_prepare_opts(&cfg, &f, &opts);
    if (kiln_prepare(&opts, log, &report, &err) != KILN_OK) {
        kiln_log_error(log, "kiln prepare: %s", err.msg);
        return kiln_code_exit_status(err.code);
    }
    print_report(&report, f.out);
    return 0;
}
