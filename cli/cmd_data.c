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
            "usage: kiln data check ZIP_OR_FOLDER [options]\n\n"
            "Runs every check of `kiln prepare` on a zip of class folders (or on a folder of\n"
            "class folders, zipped first into a temporary file) and writes nothing: unsafe or\n"
            "broken zips, fewer than two classes, empty classes, too many undecodable images.\n"
            "\noptions:\n%s",
            data_flags_usage);
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

static int data_check(const data_flags *f, const kiln_logger *log)
{
    kiln_config cfg;
    kiln_prepare_opts opts;
    kiln_prepare_report r;
    kiln_err err = {0};
    char *zip_path = NULL, *tmp_zip = NULL;
    if (data_flags_config(f, &cfg, &err) != KILN_OK) {
        kiln_log_error(log, "kiln data check: %s", err.msg);
        return 2;
    }
    int rc = zip_if_folder(f->positional[1], &zip_path, &tmp_zip, &err);
    if (rc == KILN_OK) {
        data_flags_prepare_opts(&cfg, f, &opts);
        opts.zip_path = zip_path;
        rc = kiln_prepare_validate(&opts, log, &r, &err);
    }
    if (tmp_zip) {
        unlink(tmp_zip);
        free(tmp_zip);
    }
    if (rc != KILN_OK) {
        kiln_log_error(log, "kiln data check: %s", err.msg);
        return kiln_code_exit_status(rc);
    }
    printf("%s: ok: %u images in %u classes (train %u, val %u, test %u); %u undecodable, "
           "%u skipped, %llu ignored\n",
           f->positional[1], r.images, r.n_classes, r.split_counts[0], r.split_counts[1],
           r.split_counts[2], r.undecodable, r.skipped, (unsigned long long)r.ignored);
    return 0;
}

int kiln_cmd_data(int argc, char **argv, const kiln_logger *log)
{
    data_flags f;
    int rc = data_flags_parse(argc, argv, "data", &f);
    if (rc == 0 && (f.n_positional != 2 || strcmp(f.positional[0], "check") != 0)) {
        fprintf(stderr, "kiln data: expected 'check ZIP_OR_FOLDER'\n");
        rc = 2;
    } else if (rc == 0 && (f.zip || f.out)) {
        fprintf(stderr, "kiln data check: takes the dataset as an argument, not --zip/--out\n");
        rc = 2;
    }
    if (rc != 0) {
        data_usage(rc == 1 ? stdout : stderr);
        return rc == 1 ? 0 : 2;
    }
    return data_check(&f, log);
}
