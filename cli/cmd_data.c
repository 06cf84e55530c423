/* kiln data: checks on a dataset before it goes anywhere. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common/fs.h"
#include "data/zip.h"
#include "data_flags.h"

static void data_usage(FILE *out)
{
    fprintf(out,
            "usage: kiln data check ZIP_OR_FOLDER [options]\n"
            "       kiln data push ZIP_OR_FOLDER s3://bucket/name.zip [options] [S3 options]\n\n"
            "check runs every check of `kiln prepare` on a zip of class folders (or on a folder\n"
            "of class folders, zipped first into a temporary file) and writes nothing: unsafe\n"
            "or broken zips, fewer than two classes, empty classes, too many undecodable\n"
            "images. push runs the same checks, then uploads the zip (creating the bucket if\n"
            "it is missing), so a bad dataset never reaches the bucket.\n"
            "\noptions:\n%s\n%s",
            data_flags_usage, s3_flags_usage);
}

/* A folder is zipped to a temporary file; *tmp_zip is set when one was made. */
static int zip_if_folder(const char *path, char **zip_path, char **tmp_zip, kiln_err *err)
{
    *tmp_zip = NULL;
    *zip_path = (char *)path;
    if (!kiln_is_dir(path))
        return KILN_OK;
    const char *base = getenv("TMPDIR");
    if (asprintf(tmp_zip, "%s/kiln-data-XXXXXX.zip", base && *base ? base : "/tmp") < 0) {
        *tmp_zip = NULL;
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    }
    int fd = mkstemps(*tmp_zip, 4);
    if (fd < 0)
        return kiln_err_errno(err, errno, "cannot create %s", *tmp_zip);
    close(fd);
    *zip_path = *tmp_zip;
    size_t n = 0;
    int rc = kiln_zip_create_from_dir(path, *tmp_zip, &n, err);
    return rc == KILN_OK ? rc : kiln_err_wrap(err, "zip %s", path);
}

static int upload(const s3_flags *s3f, const char *zip_path, const char *url,
                  const kiln_logger *log, kiln_err *err)
{
    kiln_s3_config cfg;
    kiln_s3_url u;
    kiln_s3_client *c = NULL;
    int rc = kiln_s3_parse_url(url, &u, err);
    if (rc == KILN_OK && (!u.key[0] || u.key[strlen(u.key) - 1] == '/'))
        rc = kiln_err_set(err, KILN_EINVAL, "%s: give the object's name, e.g. s3://%s/data.zip",
                          url, u.bucket);
    if (rc == KILN_OK)
        rc = s3_flags_config(s3f, &cfg, err);
    if (rc == KILN_OK && !(c = kiln_s3_client_new(&cfg, log, err)))
        rc = err->code;
    if (rc == KILN_OK)
        rc = kiln_s3_create_bucket(c, u.bucket, err);
    if (rc == KILN_OK)
        rc = kiln_s3_put(c, u.bucket, u.key, zip_path, "application/zip", err);
    kiln_s3_client_free(c);
    return rc;
}

/* check (url NULL) or push (url set). */
static int data_run(const data_flags *f, const s3_flags *s3f, const char *url,
                    const kiln_logger *log)
{
    kiln_config cfg;
    kiln_prepare_opts opts;
    kiln_prepare_report r;
    kiln_err err = {0};
    char *zip_path = NULL, *tmp_zip = NULL;
    const char *verb = url ? "push" : "check";
    if (data_flags_config(f, &cfg, &err) != KILN_OK) {
        kiln_log_error(log, "kiln data %s: %s", verb, err.msg);
        return 2;
    }
    int rc = zip_if_folder(f->positional[1], &zip_path, &tmp_zip, &err);
    if (rc == KILN_OK) {
        data_flags_prepare_opts(&cfg, f, &opts);
        opts.zip_path = zip_path;
        rc = kiln_prepare_validate(&opts, log, &r, &err);
    }
    if (rc == KILN_OK)
        printf("%s: ok: %u images in %u classes (train %u, val %u, test %u); %u undecodable, "
               "%u skipped, %llu ignored\n",
               f->positional[1], r.images, r.n_classes, r.split_counts[0], r.split_counts[1],
               r.split_counts[2], r.undecodable, r.skipped, (unsigned long long)r.ignored);
    if (rc == KILN_OK && url && (rc = upload(s3f, zip_path, url, log, &err)) == KILN_OK)
        printf("pushed %s to %s\n", f->positional[1], url);
    if (tmp_zip) {
        unlink(tmp_zip);
        free(tmp_zip);
    }
    if (rc != KILN_OK) {
        kiln_log_error(log, "kiln data %s: %s", verb, err.msg);
        return kiln_code_exit_status(rc);
    }
    return 0;
}

int kiln_cmd_data(int argc, char **argv, const kiln_logger *log)
{
    data_flags f;
    s3_flags s3f = {0};
    int rc = data_flags_parse(argc, argv, "data", &f, &s3f);
    int check = rc == 0 && f.n_positional == 2 && strcmp(f.positional[0], "check") == 0;
    int push = rc == 0 && f.n_positional == 3 && strcmp(f.positional[0], "push") == 0;
    if (rc == 0 && !check && !push) {
        fprintf(stderr, "kiln data: expected 'check ZIP_OR_FOLDER' or "
                        "'push ZIP_OR_FOLDER s3://bucket/name.zip'\n");
        rc = 2;
    } else if (rc == 0 && (f.zip || f.out)) {
        fprintf(stderr, "kiln data: takes the dataset as an argument, not --zip/--out\n");
        rc = 2;
    } else if (rc == 0 && check && s3f.n > 0) {
        fprintf(stderr, "kiln data check: S3 options are for push\n");
        rc = 2;
    }
    if (rc != 0) {
        data_usage(rc == 1 ? stdout : stderr);
        return rc == 1 ? 0 : 2;
    }
    return data_run(&f, &s3f, push ? f.positional[2] : NULL, log);
}
