/* The download and prepare steps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/fs.h"
#include "component.h"
#include "data/prepare.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A local source (run-local with a path instead of a bucket): copied. */
static int copy_local(const char *src, const char *dst, kiln_err *err)
{
    char *data = NULL;
    size_t len = 0;
    if (!kiln_is_file(src))
        return kiln_err_set(err, KILN_ENOTFOUND, "%s: no such file", src);
    int rc = kiln_read_file(src, 0, &data, &len, err);
    if (rc == KILN_OK)
        rc = kiln_write_file_atomic(dst, data, len, err);
    free(data);
    return rc;
}

static const char download_usage[] =
    "--endpoint HOST:PORT --bucket B --object KEY --out PATH\n\n"
    "Downloads s3://B/KEY from MinIO / S3 to PATH (the data_zip artifact). Credentials come\n"
    "from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (a Kubernetes Secret in the pipeline).\n"
    "An empty --endpoint keeps AWS_ENDPOINT_URL. With an empty --bucket, or an object that is\n"
    "an absolute path or file:// URL, the local file is copied instead (run-local).\n";

int comp_download(comp_ctx *cx, int argc, char **argv)
{
    static const char *const accepted[] = {"endpoint", "bucket", "object", "out", NULL};
    comp_flags f;
    kiln_err err = {0};
    kiln_s3_config cfg;
    int rc = comp_parse(cx, argc, argv, accepted, download_usage, &f);
    if (rc)
        return rc == 1 ? 0 : 2;
    const char *bucket = comp_flag(&f, "bucket"), *object = comp_need(cx, &f, "object");
    const char *out = comp_need(cx, &f, "out");
    if (!object || !out)
        return 2;
    double t0 = now_s();
    if (kiln_mkdir_parent(out, &err) != KILN_OK)
        return comp_fail(cx, &err);
    if (!strncmp(object, "file://", 7) || object[0] == '/' || !bucket || !*bucket) {
        const char *src = strncmp(object, "file://", 7) ? object : object + 7;
        kiln_log_info(&cx->log, "download: copying local file %s", src);
        if (copy_local(src, out, &err) != KILN_OK)
            return comp_fail(cx, &err);
    } else {
        if (comp_s3_config(comp_flag(&f, "endpoint"), &cfg, &err) != KILN_OK)
            return comp_fail(cx, &err);
        kiln_s3_client *s3 = kiln_s3_client_new(&cfg, &cx->log, &err);
        if (!s3)
            return comp_fail(cx, &err);
        kiln_log_info(&cx->log, "download: s3://%s/%s from %s", bucket, object,
                      cfg.endpoint[0] ? cfg.endpoint : "AWS");
        rc = kiln_s3_get(s3, bucket, object, out, &err);
        kiln_s3_client_free(s3);
        if (rc != KILN_OK)
            return comp_fail(cx, &err);
    }
    struct stat st;
    long long len = stat(out, &st) == 0 ? (long long)st.st_size : -1;
    kiln_log_info(&cx->log, "download: %lld bytes to %s in %.2f s", len, out, now_s() - t0);
    return 0;
}

static const char prepare_usage[] =
    "--zip PATH --out DIR [--image-size 224]\n\n"
    "Turns the zip of class folders into a dataset (shards + manifest.json) in DIR, with\n"
    "every check of `kiln prepare` (zip safety, classes, decodable images).\n";

int comp_prepare(comp_ctx *cx, int argc, char **argv)
{
    static const char *const accepted[] = {"zip", "out", "image-size", NULL};
    comp_flags f;
    kiln_err err = {0};
    kiln_prepare_opts o;
    kiln_prepare_report rep;
    int rc = comp_parse(cx, argc, argv, accepted, prepare_usage, &f);
    if (rc)
        return rc == 1 ? 0 : 2;
    kiln_prepare_opts_default(&o);
    o.zip_path = comp_need(cx, &f, "zip");
    o.out_dir = comp_need(cx, &f, "out");
    if (!o.zip_path || !o.out_dir)
        return 2;
    const char *size = comp_flag(&f, "image-size");
    if (size && comp_int(cx, "image-size", size, 16, 1024, &o.image_size))
        return 2;
    o.threads = comp_cores();
    if (kiln_mkdir_p(o.out_dir, &err) != KILN_OK || kiln_prepare(&o, &cx->log, &rep, &err) != KILN_OK)
        return comp_fail(cx, &err);
    kiln_log_info(&cx->log, "prepare: %u images in %u classes (train %u, val %u, test %u), "
                  "%u skipped, %.2f s", rep.images, rep.n_classes, rep.split_counts[0],
                  rep.split_counts[1], rep.split_counts[2], rep.skipped, rep.seconds);
    return 0;
}
