/* The register step (the promotion gate) and the upload step. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "component.h"
#include "kfp/executor.h"
#include "kfp/register.h"

static const char register_usage[] =
    "--registered-model-name NAME --run-id ID --model-version-file PATH --promoted-file PATH\n"
    "    [--test-accuracy X] [--min-accuracy-gain 0.0] [--mlflow-tracking-uri URI]\n\n"
    "Registers runs:/ID/model as a new version of NAME and waits until it is READY. The\n"
    "version goes to Production (archiving the previous one) with alias champion only when\n"
    "its test accuracy (--test-accuracy, else the run's test_accuracy metric) is >= the\n"
    "Production version's + --min-accuracy-gain. The decision is recorded as version tags\n"
    "(kiln.promotion, kiln.promotion_reason) and in the output files: the version number and\n"
    "true/false.\n";

int comp_register(comp_ctx *cx, int argc, char **argv)
{
    static const char *const accepted[] = {"registered-model-name", "run-id", "test-accuracy",
                                           "min-accuracy-gain", "mlflow-tracking-uri",
                                           "model-version-file", "promoted-file", NULL};
    comp_flags f;
    kiln_err err = {0};
    kiln_kfp_register_opts o = {0};
    kiln_kfp_register_result res;
    int rc = comp_parse(cx, argc, argv, accepted, register_usage, &f);
    if (rc)
        return rc == 1 ? 0 : 2;
    o.model_name = comp_need(cx, &f, "registered-model-name");
    o.run_id = comp_need(cx, &f, "run-id");
    const char *vfile = comp_need(cx, &f, "model-version-file");
    const char *pfile = comp_need(cx, &f, "promoted-file");
    const char *acc = comp_flag(&f, "test-accuracy"), *gain = comp_flag(&f, "min-accuracy-gain");
    if (!o.model_name || !o.run_id || !vfile || !pfile ||
        (acc && comp_double(cx, "test-accuracy", acc, &o.test_accuracy)) ||
        (gain && comp_double(cx, "min-accuracy-gain", gain, &o.min_gain)))
        return 2;
    o.has_accuracy = acc != NULL;
    o.log = &cx->log;
    kiln_mlflow_client *mc = comp_mlflow(cx, comp_flag(&f, "mlflow-tracking-uri"), &err);
    if (!mc)
        return comp_fail(cx, &err);
    rc = kiln_kfp_register(mc, &o, &res, &err);
    if (rc == KILN_OK)
        rc = kiln_kfp_output_param_write(vfile, res.version, &err);
    if (rc == KILN_OK)
        rc = kiln_kfp_output_param_write(pfile, res.promoted ? "true" : "false", &err);
    if (rc != KILN_OK) {
        comp_fail_run(cx, mc, o.run_id, &err);
        kiln_mlflow_client_free(mc);
        return comp_fail(cx, &err);
    }
    kiln_mlflow_client_free(mc);
    kiln_log_info(&cx->log, "register: %s version %s %s: %s", o.model_name, res.version,
                  res.promoted ? "promoted to Production, alias " KILN_KFP_CHAMPION_ALIAS
                               : "not promoted",
                  res.reason);
    return 0;
}

static const char upload_usage[] =
    "--model DIR --bucket B --name PREFIX --model-version N [--promoted true|false]\n"
    "    [--endpoint HOST:PORT]\n\n"
    "Uploads the model package's files (not its checkpoint/) to s3://B/PREFIX/vN/, and when\n"
    "the version was promoted also to s3://B/PREFIX/production/. The bucket is created if\n"
    "needed; an empty --bucket skips the upload (run-local without S3). Credentials as for\n"
    "download.\n";

/* Every regular file directly in `dir` to bucket/prefix/<file>. */
static int upload_dir(comp_ctx *cx, kiln_s3_client *s3, const char *dir, const char *bucket,
                      const char *prefix, kiln_err *err)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int rc = KILN_OK, files = 0;
    char path[4096], key[2048];
    if (!d)
        return kiln_err_errno(err, errno, "reading the model package %s", dir);
    while (rc == KILN_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.' ||
            kiln_path_join(path, sizeof path, dir, e->d_name, err) != KILN_OK)
            continue;
        if (!kiln_is_file(path))
            continue;
        snprintf(key, sizeof key, "%s/%s", prefix, e->d_name);
        rc = kiln_s3_put(s3, bucket, key, path, NULL, err);
        files += rc == KILN_OK;
    }
    closedir(d);
    if (rc == KILN_OK)
        kiln_log_info(&cx->log, "upload: %d files to s3://%s/%s/", files, bucket, prefix);
    return rc;
}

int comp_upload(comp_ctx *cx, int argc, char **argv)
{
    static const char *const accepted[] = {"model", "endpoint", "bucket", "name",
                                           "model-version", "promoted", NULL};
    comp_flags f;
    kiln_err err = {0};
    kiln_s3_config cfg;
    char prefix[1100];
    int rc = comp_parse(cx, argc, argv, accepted, upload_usage, &f);
    if (rc)
        return rc == 1 ? 0 : 2;
    const char *model = comp_need(cx, &f, "model"), *bucket = comp_flag(&f, "bucket");
    const char *name = comp_need(cx, &f, "name"), *version = comp_need(cx, &f, "model-version");
    const char *promoted = comp_flag(&f, "promoted");
    if (!model || !name || !version)
        return 2;
    if (!bucket || !*bucket) {
        kiln_log_info(&cx->log, "upload: no destination bucket: the model package stays in the "
                      "model artifact %s", model);
        return 0;
    }
    if (promoted && strcmp(promoted, "true") && strcmp(promoted, "false")) {
        fprintf(stderr, "kiln-component upload: --promoted must be true or false, got '%s'\n",
                promoted);
        return 2;
    }
    if (!kiln_is_file(model) && !kiln_is_dir(model)) {
        kiln_err_set(&err, KILN_ENOTFOUND, "--model %s: no such model package", model);
        return comp_fail(cx, &err);
    }
    if (comp_s3_config(comp_flag(&f, "endpoint"), &cfg, &err) != KILN_OK)
        return comp_fail(cx, &err);
    kiln_s3_client *s3 = kiln_s3_client_new(&cfg, &cx->log, &err);
    if (!s3)
        return comp_fail(cx, &err);
    snprintf(prefix, sizeof prefix, "%s/v%s", name, version);
    rc = kiln_s3_create_bucket(s3, bucket, &err);
    if (rc == KILN_OK)
        rc = upload_dir(cx, s3, model, bucket, prefix, &err);
    snprintf(prefix, sizeof prefix, "%s/production", name);
    if (rc == KILN_OK && promoted && !strcmp(promoted, "true"))
        rc = upload_dir(cx, s3, model, bucket, prefix, &err);
    kiln_s3_client_free(s3);
    return rc == KILN_OK ? 0 : comp_fail(cx, &err);
}
