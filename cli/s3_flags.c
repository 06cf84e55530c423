#include "s3_flags.h"

#include <stdio.h>
#include <string.h>

const struct option s3_flag_options[] = {
    {"endpoint-url", required_argument, NULL, S3_FLAG_BASE + 0},
    {"region", required_argument, NULL, S3_FLAG_BASE + 1},
    {"access-key", required_argument, NULL, S3_FLAG_BASE + 2},
    {"secret-key", required_argument, NULL, S3_FLAG_BASE + 3},
    {"ca-bundle", required_argument, NULL, S3_FLAG_BASE + 4},
    {"no-verify-ssl", no_argument, NULL, S3_FLAG_BASE + 5},
    {"addressing", required_argument, NULL, S3_FLAG_BASE + 6},
    {"part-size", required_argument, NULL, S3_FLAG_BASE + 7},
    {"multipart-threshold", required_argument, NULL, S3_FLAG_BASE + 8},
    {"max-retries", required_argument, NULL, S3_FLAG_BASE + 9},
    {NULL, 0, NULL, 0},
};

/* kiln_s3_config_set's name for each option above, in the same order. */
static const char *const config_names[] = {
    "endpoint",  "region",     "access-key", "secret-key",          "ca-bundle",
    "verify-tls", "addressing", "part-size",  "multipart-threshold", "max-retries",
};

const char s3_flags_usage[] =
    "S3 connection (override AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL / MLFLOW_S3_ENDPOINT_URL,\n"
    "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_CA_BUNDLE):\n"
    "  --endpoint-url URL         e.g. http://minio-service.kubeflow:9000 (path-style)\n"
    "  --region R --access-key K --secret-key S\n"
    "  --ca-bundle FILE.pem       trusted CAs for https; --no-verify-ssl for self-signed tests\n"
    "  --addressing auto|path|virtual\n"
    "  --part-size 16M --multipart-threshold 64M --max-retries 5\n";

int s3_flags_add(s3_flags *f, int opt, const char *cmd)
{
    int i = opt - S3_FLAG_BASE;
    if (f->n == S3_FLAGS_MAX) {
        fprintf(stderr, "kiln %s: too many S3 flags\n", cmd);
        return 2;
    }
    f->name[f->n] = config_names[i];
    f->value[f->n] = s3_flag_options[i].has_arg == no_argument ? "0" : optarg;
    f->flag[f->n++] = s3_flag_options[i].name;
    return 0;
}

int s3_flags_config(const s3_flags *f, kiln_s3_config *cfg, kiln_err *err)
{
    kiln_s3_config_default(cfg);
    int rc = kiln_s3_config_from_env(cfg, err);
    if (rc != KILN_OK)
        return rc;
    for (int i = 0; i < f->n; i++) {
        rc = kiln_s3_config_set(cfg, f->name[i], f->value[i], err);
        if (rc != KILN_OK)
            return kiln_err_wrap(err, "--%s", f->flag[i]);
    }
    return KILN_OK;
}
