/* lib/s3/s3_object.c — GetObject (streamed, checked, resumable), PutObject
 * (streamed), HeadObject, DeleteObject, and bucket creation. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "s3/s3_internal.h"

/* ---------------- MD5 ---------------- */

void *s3_md5_new(void)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md && !EVP_DigestInit_ex(md, EVP_md5(), NULL)) {
        EVP_MD_CTX_free(md);
        md = NULL;
    }
    return md;
}

void s3_md5_free(void *md5)
{
    EVP_MD_CTX_free(md5);
}

void s3_md5_hex(void *md5, char hex[33])
{
    unsigned char d[16];
    unsigned int n = 0;
    EVP_DigestFinal_ex(md5, d, &n);
    for (unsigned i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

int s3_etag_is_md5(const char *etag)
{
    if (strlen(etag) != 32)
        return 0;
    for (const char *p = etag; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
            return 0;
    return 1;
}

/* ---------------- GET ---------------- */

typedef struct get_state {
    kiln_s3_client *c;
    s3_req *req;
    FILE *out;               /* the atomic file's stream */
    EVP_MD_CTX *md5;         /* over the bytes in `out`, in order */
    uint64_t got;            /* bytes in `out` */
    char etag[128];          /* of the object being fetched */
    char range[64];
    char if_match[160];
    int write_errno;
} get_state;

/* Before each attempt: continue where the last one stopped, but only from
 * the same object version (If-Match). */
static int get_prepare(void *ctx, int attempt, kiln_err *err)
{
    get_state *g = ctx;
    memset(g->req->headers, 0, sizeof g->req->headers);
    if (attempt == 0 || g->got == 0 || !g->etag[0])
        return KILN_OK;
    snprintf(g->range, sizeof g->range, "Range: bytes=%llu-", (unsigned long long)g->got);
    snprintf(g->if_match, sizeof g->if_match, "If-Match: \"%s\"", g->etag);
    g->req->headers[0] = g->range;
    g->req->headers[1] = g->if_match;
    g->c->stats.resumes++;
    return KILN_OK;
}

static int get_restart(get_state *g)
{
    if (fflush(g->out) != 0 || ftruncate(fileno(g->out), 0) != 0 ||
        fseeko(g->out, 0, SEEK_SET) != 0 || !EVP_DigestInit_ex(g->md5, EVP_md5(), NULL)) {
        g->write_errno = errno ? errno : EIO;
        return -1;
    }
    g->got = 0;
    g->c->stats.restarts++;
    return 0;
}

/* The first bytes of an attempt decide whether they continue the file (a
 * 206 from where it stopped, same ETag) or replace it (anything else). */
static int get_begin(get_state *g, const s3_resp *resp)
{
    int continues = resp->status == 206 && resp->range_start == (int64_t)g->got &&
                    strcmp(resp->etag, g->etag) == 0;
    if (!continues && g->got > 0 && get_restart(g) != 0)
        return -1;
    snprintf(g->etag, sizeof g->etag, "%s", resp->etag);
    return 0;
}

static size_t get_sink(const char *data, size_t len, s3_resp *resp, void *ctx)
{
    get_state *g = ctx;
    if (!resp->sink_started && get_begin(g, resp) != 0)
        return 0;
    if (fwrite(data, 1, len, g->out) != len) {
        g->write_errno = errno ? errno : EIO;
        return 0;
    }
    EVP_DigestUpdate(g->md5, data, len);
    g->got += len;
    return len;
}

/* Size always; content against the ETag when it is a plain MD5. */
static int get_verify(get_state *g, const s3_resp *resp, const char *what, kiln_err *err)
{
    int64_t total = resp->status == 206 ? resp->range_total : resp->content_length;
    if (resp->status != 206 && resp->streamed == 0 && g->got > 0) {
        /* An empty 200 after a partial file: the object is now empty. */
        if (get_restart(g) != 0)
            return kiln_err_errno(err, g->write_errno, "%s: cannot truncate the download", what);
    }
    if (total >= 0 && (uint64_t)total != g->got)
        return kiln_err_set(err, KILN_EIO,
                            "%s: downloaded %llu bytes but the server declared %lld", what,
                            (unsigned long long)g->got, (long long)total);
    if (!g->etag[0])
        snprintf(g->etag, sizeof g->etag, "%s", resp->etag);
    if (!s3_etag_is_md5(g->etag))
        return KILN_OK; /* multipart "<md5>-<n>" or none: not an MD5 of the body */
    char hex[33];
    s3_md5_hex(g->md5, hex);
    if (strcasecmp(hex, g->etag) != 0)
        return kiln_err_set(err, KILN_EIO, "%s: MD5 of the download %s does not match the ETag %s",
                            what, hex, g->etag);
    return KILN_OK;
}

int kiln_s3_get(kiln_s3_client *client, const char *bucket, const char *key,
                const char *dest_path, kiln_err *err)
{
    int rc = s3_check_names(bucket, key, err);
    if (rc != KILN_OK)
        return rc;
    char what[KILN_S3_MAX_KEY + 128];
    s3_describe(what, sizeof what, bucket, key);
    s3_req req = {.method = "GET", .bucket = bucket, .key = key,
                  .payload_hash = S3_EMPTY_SHA256};
    get_state g = {.c = client, .req = &req};
    s3_resp resp = {0};
    kiln_atomic_file *file = kiln_atomic_open(dest_path, err);
    if (!file)
        return kiln_err_wrap(err, "%s", what);
    g.out = kiln_atomic_stream(file);
    g.md5 = s3_md5_new();
    if (!g.md5) {
        rc = kiln_err_set(err, KILN_ENOMEM, "%s: out of memory", what);
        goto fail;
    }
    req.sink = get_sink;
    req.sink_ctx = &g;
    req.prepare = get_prepare;
    req.prepare_ctx = &g;
    rc = s3_perform(client, &req, &resp, err);
    if (rc != KILN_OK && g.write_errno)
        rc = kiln_err_errno(err, g.write_errno, "%s: cannot write the download next to %s",
                            what, dest_path);
    if (rc != KILN_OK || (rc = get_verify(&g, &resp, what, err)) != KILN_OK)
        goto fail;
    rc = kiln_atomic_commit(file, err);
    file = NULL;
    if (rc != KILN_OK)
        kiln_err_wrap(err, "%s", what);
fail:
    kiln_atomic_abort(file);
    s3_md5_free(g.md5);
    s3_resp_free(&resp);
    return rc;
}

/* ---------------- PUT ---------------- */

static int put_single(kiln_s3_client *c, const char *bucket, const char *key, FILE *src,
                      uint64_t size, const char *content_type, kiln_err *err)
{
    char ct[300], what[KILN_S3_MAX_KEY + 128], hex[33];
    s3_describe(what, sizeof what, bucket, key);
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
    s3_req req = {.method = "PUT", .bucket = bucket, .key = key,
                  .payload_hash = S3_UNSIGNED_PAYLOAD, .upload = src, .upload_len = size,
                  .headers = {ct}};
    s3_resp resp = {0};
    int rc = KILN_OK;
    req.upload_md5 = s3_md5_new();
    if (!req.upload_md5) {
        rc = kiln_err_set(err, KILN_ENOMEM, "%s: out of memory", what);
        goto fail;
    }
    if ((rc = s3_perform(c, &req, &resp, err)) != KILN_OK)
        goto fail;
    s3_md5_hex(req.upload_md5, hex);
    if (s3_etag_is_md5(resp.etag) && strcasecmp(resp.etag, hex) != 0)
        rc = kiln_err_set(err, KILN_EIO, "%s: the server's ETag %s is not the MD5 %s of the "
                          "bytes sent", what, resp.etag, hex);
fail:
    s3_md5_free(req.upload_md5);
    s3_resp_free(&resp);
    return rc;
}

int kiln_s3_put(kiln_s3_client *client, const char *bucket, const char *key,
                const char *src_path, const char *content_type, kiln_err *err)
{
    int rc = s3_check_names(bucket, key, err);
    if (rc != KILN_OK)
        return rc;
    if (!content_type || !*content_type || strpbrk(content_type, "\r\n"))
        content_type = "application/octet-stream";
    struct stat st;
    FILE *src = fopen(src_path, "rb");
    if (!src) {
        int e = errno;
        kiln_err_errno(err, e, "cannot open %s to upload to s3://%s/%s", src_path, bucket, key);
        if (err && e == ENOENT)
            err->code = KILN_ENOTFOUND;
        return e == ENOENT ? KILN_ENOTFOUND : KILN_EIO;
    }
    if (fstat(fileno(src), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = kiln_err_set(err, KILN_EINVAL, "%s is not a regular file", src_path);
        goto fail;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size > client->cfg.multipart_threshold)
        rc = s3_put_multipart(client, bucket, key, src, size, content_type, err);
    else
        rc = put_single(client, bucket, key, src, size, content_type, err);
fail:
    fclose(src);
    return rc;
}

/* ---------------- HEAD, DELETE, buckets ---------------- */

int kiln_s3_head(kiln_s3_client *client, const char *bucket, const char *key,
                 kiln_s3_object_info *out, kiln_err *err)
{
    int rc = s3_check_names(bucket, key, err);
    if (rc != KILN_OK)
        return rc;
    s3_req req = {.method = "HEAD", .bucket = bucket, .key = key,
                  .payload_hash = S3_EMPTY_SHA256};
    s3_resp resp = {0};
    memset(out, 0, sizeof *out);
    rc = s3_perform(client, &req, &resp, err);
    if (rc == KILN_OK) {
        snprintf(out->key, sizeof out->key, "%s", key);
        out->size = resp.content_length > 0 ? (uint64_t)resp.content_length : 0;
        snprintf(out->etag, sizeof out->etag, "%s", resp.etag);
        snprintf(out->last_modified, sizeof out->last_modified, "%s", resp.last_modified);
    }
    s3_resp_free(&resp);
    return rc;
}

int kiln_s3_delete(kiln_s3_client *client, const char *bucket, const char *key,
                   kiln_err *err)
{
    int rc = s3_check_names(bucket, key, err);
    if (rc != KILN_OK)
        return rc;
    s3_req req = {.method = "DELETE", .bucket = bucket, .key = key,
                  .payload_hash = S3_EMPTY_SHA256};
    s3_resp resp = {0};
    rc = s3_perform(client, &req, &resp, err);
    s3_resp_free(&resp);
    return rc;
}

static int put_bucket(kiln_s3_client *c, const char *bucket, kiln_err *err)
{
    char *body = NULL;
    size_t len = 0;
    s3_resp resp = {0};
    int rc = KILN_OK;
    /* us-east-1 is the one region that takes no LocationConstraint. */
    if (strcmp(c->cfg.region, "us-east-1") != 0 &&
        (rc = s3_xml_create_bucket_body(c->cfg.region, &body, &len, err)) != KILN_OK)
        return rc;
    s3_req req = {.method = "PUT", .bucket = bucket, .body = body ? body : "",
                  .body_len = len, .headers = {body ? "Content-Type: application/xml" : NULL}};
    rc = s3_perform_status(c, &req, &resp, err);
    if (rc == KILN_OK && resp.status >= 300) {
        char code[64] = "", msg[256];
        if (resp.status == 409 && resp.body &&
            s3_xml_error(resp.body, resp.body_len, code, sizeof code, msg, sizeof msg) &&
            strcmp(code, "BucketAlreadyOwnedByYou") == 0)
            rc = KILN_OK; /* made by us in the meantime */
        else
            rc = s3_error_from_resp(&resp, bucket, NULL, err);
    }
    free(body);
    s3_resp_free(&resp);
    return rc;
}

int kiln_s3_create_bucket(kiln_s3_client *client, const char *bucket, kiln_err *err)
{
    int rc = s3_check_names(bucket, NULL, err);
    if (rc != KILN_OK)
        return rc;
    /* HEAD first: asking to create an existing bucket is an error on some
     * servers (BucketAlreadyExists) even when it is ours. */
    s3_req req = {.method = "HEAD", .bucket = bucket, .payload_hash = S3_EMPTY_SHA256};
    s3_resp resp = {0};
    rc = s3_perform_status(client, &req, &resp, err);
    if (rc == KILN_OK && resp.status == 404)
        rc = put_bucket(client, bucket, err);
    else if (rc == KILN_OK && resp.status >= 300)
        rc = s3_error_from_resp(&resp, bucket, NULL, err);
    s3_resp_free(&resp);
    return rc;
}
