/* lib/s3/s3_config.c — configuration from defaults, environment and flags;
 * s3:// URLs, bucket names, and the request URLs built from them. */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "s3/s3_internal.h"

void kiln_s3_config_default(kiln_s3_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->region, sizeof cfg->region, "us-east-1");
    cfg->addressing = KILN_S3_ADDRESSING_AUTO;
    cfg->verify_tls = 1;
    cfg->part_size = (uint64_t)16 << 20;
    cfg->multipart_threshold = (uint64_t)64 << 20;
    cfg->max_retries = 5;
    cfg->retry_base_ms = 200;
    cfg->retry_cap_ms = 10000;
    cfg->connect_timeout_s = 10;
    cfg->low_speed_time_s = 30;
    cfg->low_speed_bytes = 1;
    cfg->list_page_size = 1000;
}

static int copy_field(char *dst, size_t size, const char *value, const char *what,
                      kiln_err *err)
{
    size_t n = strlen(value);
    if (n >= size)
        return kiln_err_set(err, KILN_ELIMIT, "%s is too long (%zu bytes, at most %zu)", what,
                            n, size - 1);
    memcpy(dst, value, n + 1);
    return KILN_OK;
}

/* An endpoint is "http(s)://host[:port]" with an optional path; a trailing
 * '/' is dropped so URLs can be appended to it. */
static int set_endpoint(kiln_s3_config *cfg, const char *value, const char *what,
                        kiln_err *err)
{
    if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0)
        return kiln_err_set(err, KILN_EINVAL,
                            "%s: endpoint '%s' must start with http:// or https://", what,
                            value);
    const char *host = strstr(value, "://") + 3;
    if (!*host || *host == '/')
        return kiln_err_set(err, KILN_EINVAL, "%s: endpoint '%s' has no host", what, value);
    int rc = copy_field(cfg->endpoint, sizeof cfg->endpoint, value, what, err);
    size_t n = strlen(cfg->endpoint);
    while (rc == KILN_OK && n > 0 && cfg->endpoint[n - 1] == '/')
        cfg->endpoint[--n] = '\0';
    return rc;
}

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

typedef struct env_field {
    const char *names[3];     /* first set one wins */
    size_t offset;
    size_t size;
} env_field;

#define FIELD(f) offsetof(kiln_s3_config, f), sizeof(((kiln_s3_config *)0)->f)

static const env_field env_fields[] = {
    {{"AWS_ACCESS_KEY_ID", NULL, NULL}, FIELD(access_key)},
    {{"AWS_SECRET_ACCESS_KEY", NULL, NULL}, FIELD(secret_key)},
    {{"AWS_SESSION_TOKEN", NULL, NULL}, FIELD(session_token)},
    {{"AWS_REGION", "AWS_DEFAULT_REGION", NULL}, FIELD(region)},
    {{"AWS_CA_BUNDLE", NULL, NULL}, FIELD(ca_bundle)},
};

int kiln_s3_config_from_env(kiln_s3_config *cfg, kiln_err *err)
{
    int rc = KILN_OK;
    for (size_t i = 0; i < sizeof env_fields / sizeof env_fields[0] && rc == KILN_OK; i++) {
        const env_field *f = &env_fields[i];
        for (int j = 0; j < 3 && f->names[j]; j++) {
            const char *v = env_nonempty(f->names[j]);
            if (v) {
                rc = copy_field((char *)cfg + f->offset, f->size, v, f->names[j], err);
                break;
            }
        }
    }
    /* The S3-specific variable beats the general one; MLflow's own name is
     * last since a kiln pod usually has it for MLflow's artifact store. */
    static const char *const endpoint_vars[] = {"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL",
                                                "MLFLOW_S3_ENDPOINT_URL"};
    for (size_t i = 0; i < 3 && rc == KILN_OK; i++) {
        const char *v = env_nonempty(endpoint_vars[i]);
        if (v) {
            rc = set_endpoint(cfg, v, endpoint_vars[i], err);
            break;
        }
    }
    const char *ignore_tls = env_nonempty("MLFLOW_S3_IGNORE_TLS");
    if (rc == KILN_OK && ignore_tls && strcasecmp(ignore_tls, "true") == 0)
        cfg->verify_tls = 0;
    return rc;
}

/* "16M", "16MiB", "5242880", "1G" -> bytes. */
static int parse_size(const char *name, const char *value, uint64_t *out, kiln_err *err)
{
    static const struct { const char *suffix; uint64_t mult; } units[] = {
        {"", 1}, {"K", (uint64_t)1 << 10}, {"KiB", (uint64_t)1 << 10},
        {"M", (uint64_t)1 << 20}, {"MiB", (uint64_t)1 << 20},
        {"G", (uint64_t)1 << 30}, {"GiB", (uint64_t)1 << 30},
    };
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    uint64_t mult = 0;
    for (size_t i = 0; end != value && i < sizeof units / sizeof units[0]; i++)
        if (strcasecmp(end, units[i].suffix) == 0)
            mult = units[i].mult;
    if (value[0] == '-' || errno || mult == 0 || v > UINT64_MAX / mult)
        return kiln_err_set(err, KILN_EINVAL, "--%s: '%s' is not a size in bytes (e.g. 16M)",
                            name, value);
    *out = (uint64_t)v * mult;
    return KILN_OK;
}

static int parse_int(const char *name, const char *value, int lo, int hi, int *out,
                     kiln_err *err)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (end == value || *end || errno || v < lo || v > hi)
        return kiln_err_set(err, KILN_EINVAL, "--%s: '%s' is not a whole number in %d..%d",
                            name, value, lo, hi);
    *out = (int)v;
    return KILN_OK;
}

static int set_addressing(kiln_s3_config *cfg, const char *value, kiln_err *err)
{
    if (strcmp(value, "auto") == 0)
        cfg->addressing = KILN_S3_ADDRESSING_AUTO;
    else if (strcmp(value, "path") == 0)
        cfg->addressing = KILN_S3_ADDRESSING_PATH;
    else if (strcmp(value, "virtual") == 0)
        cfg->addressing = KILN_S3_ADDRESSING_VIRTUAL;
    else
        return kiln_err_set(err, KILN_EINVAL,
                            "--addressing: '%s' is not one of auto, path, virtual", value);
    return KILN_OK;
}

int kiln_s3_config_set(kiln_s3_config *cfg, const char *name, const char *value,
                       kiln_err *err)
{
    char what[64];
    snprintf(what, sizeof what, "--%s", name);
    if (strcmp(name, "endpoint") == 0)
        return set_endpoint(cfg, value, what, err);
    if (strcmp(name, "region") == 0)
        return copy_field(cfg->region, sizeof cfg->region, value, what, err);
    if (strcmp(name, "access-key") == 0)
        return copy_field(cfg->access_key, sizeof cfg->access_key, value, what, err);
    if (strcmp(name, "secret-key") == 0)
        return copy_field(cfg->secret_key, sizeof cfg->secret_key, value, what, err);
    if (strcmp(name, "session-token") == 0)
        return copy_field(cfg->session_token, sizeof cfg->session_token, value, what, err);
    if (strcmp(name, "ca-bundle") == 0)
        return copy_field(cfg->ca_bundle, sizeof cfg->ca_bundle, value, what, err);
    if (strcmp(name, "connect-to") == 0)
        return copy_field(cfg->connect_to, sizeof cfg->connect_to, value, what, err);
    if (strcmp(name, "addressing") == 0)
        return set_addressing(cfg, value, err);
    if (strcmp(name, "verify-tls") == 0)
        return parse_int(name, value, 0, 1, &cfg->verify_tls, err);
    if (strcmp(name, "part-size") == 0)
        return parse_size(name, value, &cfg->part_size, err);
    if (strcmp(name, "multipart-threshold") == 0)
        return parse_size(name, value, &cfg->multipart_threshold, err);
    if (strcmp(name, "max-retries") == 0)
        return parse_int(name, value, 0, 100, &cfg->max_retries, err);
    return kiln_err_set(err, KILN_EINVAL, "unknown S3 setting '%s'", name);
}

int kiln_s3_bucket_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n < 3 || n > KILN_S3_MAX_BUCKET)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (!alnum && ch != '.' && ch != '-')
            return 0;
        if (!alnum && (i == 0 || i == n - 1))
            return 0;
    }
    return 1;
}

int kiln_s3_parse_url(const char *url, kiln_s3_url *out, kiln_err *err)
{
    memset(out, 0, sizeof *out);
    if (strncmp(url, "s3://", 5) != 0)
        return kiln_err_set(err, KILN_EINVAL, "'%s' is not an s3:// URL", url);
    const char *b = url + 5;
    const char *slash = strchr(b, '/');
    size_t blen = slash ? (size_t)(slash - b) : strlen(b);
    if (blen > KILN_S3_MAX_BUCKET)
        return kiln_err_set(err, KILN_EINVAL, "%s: bucket name is longer than %d characters",
                            url, KILN_S3_MAX_BUCKET);
    memcpy(out->bucket, b, blen);
    if (!kiln_s3_bucket_name_ok(out->bucket))
        return kiln_err_set(err, KILN_EINVAL,
                            "%s: '%s' is not a valid bucket name (3-63 of a-z 0-9 . -)", url,
                            out->bucket);
    const char *key = slash ? slash + 1 : "";
    if (strlen(key) > KILN_S3_MAX_KEY)
        return kiln_err_set(err, KILN_EINVAL, "%s: key is longer than %d bytes", url,
                            KILN_S3_MAX_KEY);
    snprintf(out->key, sizeof out->key, "%s", key);
    return KILN_OK;
}

int s3_check_names(const char *bucket, const char *key, kiln_err *err)
{
    if (!bucket || !kiln_s3_bucket_name_ok(bucket))
        return kiln_err_set(err, KILN_EINVAL,
                            "'%s' is not a valid bucket name (3-63 of a-z 0-9 . -)",
                            bucket ? bucket : "(null)");
    if (key && (!*key || strlen(key) > KILN_S3_MAX_KEY))
        return kiln_err_set(err, KILN_EINVAL, "s3://%s/%s: the key must be 1-%d bytes",
                            bucket, key, KILN_S3_MAX_KEY);
    return KILN_OK;
}

void s3_describe(char *out, size_t size, const char *bucket, const char *key)
{
    if (!bucket)
        snprintf(out, size, "s3://");
    else if (!key)
        snprintf(out, size, "s3://%s", bucket);
    else
        snprintf(out, size, "s3://%s/%s", bucket, key);
}

char *s3_uri_encode(const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *p = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~' ||
            (keep_slash && ch == '/')) {
            *p++ = (char)ch;
        } else {
            *p++ = '%';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        }
    }
    *p = '\0';
    return out;
}

static int use_virtual_host(const kiln_s3_config *cfg)
{
    if (cfg->addressing == KILN_S3_ADDRESSING_AUTO)
        return cfg->endpoint[0] == '\0';
    return cfg->addressing == KILN_S3_ADDRESSING_VIRTUAL;
}

char *s3_build_url(const kiln_s3_client *c, const char *bucket, const char *key,
                   const char *query, kiln_err *err)
{
    const kiln_s3_config *cfg = &c->cfg;
    char base[1200];
    if (cfg->endpoint[0])
        snprintf(base, sizeof base, "%s", cfg->endpoint);
    else
        snprintf(base, sizeof base, "https://s3.%s.amazonaws.com", cfg->region);
    /* Keys keep their '/' (S3 does not treat them as path separators, but
     * SigV4 for S3 signs the path as sent, each segment encoded once). */
    char *ekey = s3_uri_encode(key ? key : "", 1);
    char *url = NULL;
    int n = -1;
    if (ekey) {
        const char *q = query && *query ? "?" : "";
        const char *qs = query ? query : "";
        if (!bucket) {
            n = asprintf(&url, "%s/%s%s", base, q, qs);
        } else if (use_virtual_host(cfg)) {
            const char *host = strstr(base, "://") + 3;
            n = asprintf(&url, "%.*s%s.%s/%s%s%s", (int)(host - base), base, bucket, host, ekey,
                         q, qs);
        } else {
            n = asprintf(&url, "%s/%s%s%s%s%s", base, bucket, key ? "/" : "", ekey, q, qs);
        }
    }
    free(ekey);
    if (n < 0) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory building the URL of s3://%s/%s",
                     bucket ? bucket : "", key ? key : "");
        return NULL;
    }
    return url;
}
