/* kiln s3: copy to and from S3 / MinIO, list, make buckets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/fs.h"
#include "s3_flags.h"

static void s3_usage(FILE *out)
{
    fprintf(out,
            "usage: kiln s3 cp SRC DST [options]     SRC or DST is s3://bucket/key, the other a "
            "local path\n"
            "       kiln s3 ls s3://bucket[/prefix] [options]\n"
            "       kiln s3 mb s3://bucket [options]   create the bucket unless it exists\n\n"
            "A DST ending in '/' (or an existing folder) takes SRC's file name.\n"
            "cp --create-bucket creates the destination bucket if it is missing.\n\n%s",
            s3_flags_usage);
}

static int is_s3(const char *s)
{
    return strncmp(s, "s3://", 5) == 0;
}

/* The last path component of `path` (after the last '/'). */
static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static int upload(kiln_s3_client *c, const char *src, const char *dst, int create_bucket,
                  kiln_err *err)
{
    kiln_s3_url u;
    int rc = kiln_s3_parse_url(dst, &u, err);
    if (rc != KILN_OK)
        return rc;
    size_t n = strlen(u.key);
    if (n == 0 || u.key[n - 1] == '/') {
        if (n + strlen(base_name(src)) > KILN_S3_MAX_KEY)
            return kiln_err_set(err, KILN_EINVAL, "%s: key too long", dst);
        strcat(u.key, base_name(src));
    }
    if (create_bucket && (rc = kiln_s3_create_bucket(c, u.bucket, err)) != KILN_OK)
        return rc;
    rc = kiln_s3_put(c, u.bucket, u.key, src, NULL, err);
    if (rc == KILN_OK)
        printf("upload: %s to s3://%s/%s\n", src, u.bucket, u.key);
    return rc;
}

static int download(kiln_s3_client *c, const char *src, const char *dst, kiln_err *err)
{
    kiln_s3_url u;
    char path[4096];
    int rc = kiln_s3_parse_url(src, &u, err);
    if (rc != KILN_OK)
        return rc;
    if (!u.key[0] || u.key[strlen(u.key) - 1] == '/')
        return kiln_err_set(err, KILN_EINVAL, "%s names no object (a key is needed)", src);
    size_t n = strlen(dst);
    if (kiln_is_dir(dst) || (n > 0 && dst[n - 1] == '/'))
        rc = kiln_path_join(path, sizeof path, dst, base_name(u.key), err);
    else
        rc = snprintf(path, sizeof path, "%s", dst) < (int)sizeof path
                 ? KILN_OK
                 : kiln_err_set(err, KILN_EINVAL, "path too long: %s", dst);
    if (rc == KILN_OK)
        rc = kiln_s3_get(c, u.bucket, u.key, path, err);
    if (rc == KILN_OK)
        printf("download: s3://%s/%s to %s\n", u.bucket, u.key, path);
    return rc;
}

static int print_object(const kiln_s3_object_info *o, void *ctx, kiln_err *err)
{
    const char *bucket = ctx;
    printf("%-24s %12llu  s3://%s/%s\n", o->last_modified, (unsigned long long)o->size, bucket,
           o->key);
    return KILN_OK;
}

static int run(kiln_s3_client *c, int n, char **args, int create_bucket, kiln_err *err)
{
    kiln_s3_url u;
    const char *verb = args[0];
    if (strcmp(verb, "cp") == 0 && n == 3) {
        if (is_s3(args[1]) == is_s3(args[2]))
            return kiln_err_set(err, KILN_EINVAL,
                                "cp needs one local path and one s3:// URL, got '%s' '%s'",
                                args[1], args[2]);
        return is_s3(args[2]) ? upload(c, args[1], args[2], create_bucket, err)
                              : download(c, args[1], args[2], err);
    }
    if ((strcmp(verb, "ls") == 0 || strcmp(verb, "mb") == 0) && n == 2) {
        int rc = kiln_s3_parse_url(args[1], &u, err);
        if (rc != KILN_OK)
            return rc;
        if (verb[0] == 'm')
            return kiln_s3_create_bucket(c, u.bucket, err);
        return kiln_s3_list(c, u.bucket, u.key, print_object, u.bucket, err);
    }
    return kiln_err_set(err, KILN_EINVAL, "expected 'cp SRC DST', 'ls URL' or 'mb URL'");
}

enum { OPT_CREATE = 1 };

/* 0, 1 for --help, 2 for a usage error. Positional arguments end up in
 * argv[optind..]. */
static int parse(int argc, char **argv, s3_flags *f, int *create_bucket)
{
    struct option table[S3_FLAGS_MAX + 3];
    int n = 0, opt;
    for (; s3_flag_options[n].name; n++)
        table[n] = s3_flag_options[n];
    table[n++] = (struct option){"create-bucket", no_argument, NULL, OPT_CREATE};
    table[n++] = (struct option){"help", no_argument, NULL, 'h'};
    memset(&table[n], 0, sizeof table[n]);
    memset(f, 0, sizeof *f);
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", table, NULL)) != -1) {
        if (opt == 'h')
            return 1;
        if (opt == OPT_CREATE)
            *create_bucket = 1;
        else if (opt >= S3_FLAG_BASE && s3_flags_add(f, opt, "s3") == 0)
            continue;
        else {
            fprintf(stderr, "kiln s3: unknown option or missing value: %s\n", argv[optind - 1]);
            return 2;
        }
    }
    return optind < argc ? 0 : 2;
}

int kiln_cmd_s3(int argc, char **argv, const kiln_logger *log)
{
    s3_flags f;
    kiln_s3_config cfg;
    kiln_s3_client *c = NULL;
    kiln_err err = {0};
    int create_bucket = 0;
    int rc = parse(argc, argv, &f, &create_bucket);
    if (rc != 0) {
        s3_usage(rc == 1 ? stdout : stderr);
        return rc == 1 ? 0 : 2;
    }
    if (s3_flags_config(&f, &cfg, &err) != KILN_OK ||
        !(c = kiln_s3_client_new(&cfg, log, &err))) {
        kiln_log_error(log, "kiln s3: %s", err.msg);
        return 2;
    }
    rc = run(c, argc - optind, argv + optind, create_bucket, &err);
    kiln_s3_client_free(c);
    if (rc != KILN_OK) {
        kiln_log_error(log, "kiln s3: %s", err.msg);
        return kiln_code_exit_status(rc);
    }
    return 0;
}
