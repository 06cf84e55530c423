/* lib/s3/s3_client.c — making, checking and freeing a client. */
#include <libxml/parser.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "s3/s3_internal.h"

/* CURLOPT_AWS_SIGV4 is 7.75; CURLOPT_PROTOCOLS_STR and the thread-safe,
 * reference-counted curl_global_init this file relies on are 7.85/7.84. */
#if LIBCURL_VERSION_NUM < 0x075500
#error "lib/s3 needs libcurl >= 7.85"
#endif

static int region_ok(const char *r)
{
    if (!*r)
        return 0;
    for (; *r; r++)
        if (!((*r >= 'a' && *r <= 'z') || (*r >= '0' && *r <= '9') || *r == '-'))
            return 0;
    return 1;
}

static int check_config(const kiln_s3_config *cfg, kiln_err *err)
{
    if (!region_ok(cfg->region))
        return kiln_err_set(err, KILN_EINVAL, "S3 region '%s' is not valid (a-z 0-9 -)",
                            cfg->region);
    if (cfg->endpoint[0] && strncmp(cfg->endpoint, "http://", 7) != 0 &&
        strncmp(cfg->endpoint, "https://", 8) != 0)
        return kiln_err_set(err, KILN_EINVAL, "S3 endpoint '%s' must start with http(s)://",
                            cfg->endpoint);
    if (cfg->access_key[0] && !cfg->secret_key[0])
        return kiln_err_set(err, KILN_EINVAL,
                            "S3 access key '%s' is set but the secret key is not "
                            "(AWS_SECRET_ACCESS_KEY)", cfg->access_key);
    if (strchr(cfg->access_key, ':'))
        return kiln_err_set(err, KILN_EINVAL, "S3 access key must not contain ':'");
    if (cfg->part_size < KILN_S3_MIN_PART_SIZE || cfg->part_size > KILN_S3_MAX_PART_SIZE)
        return kiln_err_set(err, KILN_EINVAL,
                            "S3 part size %llu is outside 5 MiB..5 GiB (S3's limits)",
                            (unsigned long long)cfg->part_size);
    if (cfg->multipart_threshold == 0)
        return kiln_err_set(err, KILN_EINVAL, "S3 multipart threshold must be > 0");
    if (cfg->max_retries < 0 || cfg->retry_base_ms < 0 || cfg->retry_cap_ms < cfg->retry_base_ms)
        return kiln_err_set(err, KILN_EINVAL, "S3 retry settings are inconsistent");
    if (cfg->list_page_size < 1 || cfg->list_page_size > 1000)
        return kiln_err_set(err, KILN_EINVAL, "S3 listing page size must be 1..1000");
    return KILN_OK;
}

kiln_s3_client *kiln_s3_client_new(const kiln_s3_config *cfg, const kiln_logger *log,
                                   kiln_err *err)
{
    if (check_config(cfg, err) != KILN_OK)
        return NULL;
    kiln_s3_client *c = calloc(1, sizeof *c);
    if (!c) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory making an S3 client");
        return NULL;
    }
    /* Reference-counted and thread-safe in curl >= 7.84; idempotent in libxml2. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(c);
        kiln_err_set(err, KILN_EIO, "curl_global_init failed");
        return NULL;
    }
    xmlInitParser();
    c->cfg = *cfg;
    c->log = log;
    c->curl = curl_easy_init();
    if (!c->curl) {
        kiln_s3_client_free(c);
        kiln_err_set(err, KILN_ENOMEM, "curl_easy_init failed");
        return NULL;
    }
    snprintf(c->sigv4, sizeof c->sigv4, "aws:amz:%s:s3", cfg->region);
    /* Jitter only needs to differ between processes retrying together. */
    kiln_rng_seed(&c->rng, (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^
                               (uint64_t)(uintptr_t)c);
    return c;
}

void kiln_s3_client_free(kiln_s3_client *client)
{
    if (!client)
        return;
    if (client->curl)
        curl_easy_cleanup(client->curl);
    curl_global_cleanup();
    /* The secret must not linger in freed memory. */
    memset(&client->cfg, 0, sizeof client->cfg);
    free(client);
}

void kiln_s3_client_stats(const kiln_s3_client *client, kiln_s3_stats *out)
{
    *out = client->stats;
}
