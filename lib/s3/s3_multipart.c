/* lib/s3/s3_multipart.c — multipart upload: initiate, parts (each retried
 * by the request layer), complete; abort on any failure so the server
 * keeps no orphaned parts.
 *
 * Each part's ETag is checked against the MD5 of the bytes sent, and a
 * final "<hex>-N" ETag against MD5(concatenated part MD5s)-N, which is how
 * S3 and MinIO compute it for unencrypted objects.
 */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "s3/s3_internal.h"

typedef struct upload {
    kiln_s3_client *c;
    const char *bucket;
    const char *key;
    char what[KILN_S3_MAX_KEY + 128];
    char *upload_id;          /* malloc'ed */
    char *upload_id_q;        /* URI-encoded, malloc'ed */
    s3_part *parts;
    int nparts;
} upload;

static int initiate(upload *u, const char *content_type, kiln_err *err)
{
    char ct[300];
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
    s3_req req = {.method = "POST", .bucket = u->bucket, .key = u->key, .query = "uploads=",
                  .headers = {ct}};
    s3_resp resp = {0};
    int rc = s3_perform(u->c, &req, &resp, err);
    if (rc == KILN_OK)
        rc = s3_xml_upload_id(resp.body, resp.body_len, &u->upload_id, err);
    if (rc == KILN_OK && !(u->upload_id_q = s3_uri_encode(u->upload_id, 0)))
        rc = kiln_err_set(err, KILN_ENOMEM, "out of memory");
    if (rc != KILN_OK)
        kiln_err_wrap(err, "%s: cannot start a multipart upload", u->what);
    s3_resp_free(&resp);
    return rc;
}

static int put_part(upload *u, FILE *src, int number, uint64_t off, uint64_t len,
                    kiln_err *err)
{
    char *query = NULL, hex[33];
    s3_resp resp = {0};
    int rc = KILN_OK;
    /* Keys in sorted order: the query string is also the canonical one. */
    if (asprintf(&query, "partNumber=%d&uploadId=%s", number, u->upload_id_q) < 0) {
        query = NULL;
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    }
    s3_req req = {.method = "PUT", .bucket = u->bucket, .key = u->key, .query = query,
                  .payload_hash = S3_UNSIGNED_PAYLOAD, .upload = src, .upload_off = off,
                  .upload_len = len, .upload_md5 = s3_md5_new()};
    if (!req.upload_md5) {
        rc = kiln_err_set(err, KILN_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = s3_perform(u->c, &req, &resp, err)) != KILN_OK) {
        kiln_err_wrap(err, "part %d", number);
        goto fail;
    }
    s3_md5_hex(req.upload_md5, hex);
    if (s3_etag_is_md5(resp.etag) && strcasecmp(resp.etag, hex) != 0) {
        rc = kiln_err_set(err, KILN_EIO, "%s: part %d: the server's ETag %s is not the MD5 %s "
                          "of the bytes sent", u->what, number, resp.etag, hex);
        goto fail;
    }
    u->parts[number - 1].number = number;
    snprintf(u->parts[number - 1].etag, sizeof u->parts[0].etag, "%s",
             resp.etag[0] ? resp.etag : hex);
fail:
    s3_md5_free(req.upload_md5);
    s3_resp_free(&resp);
    free(query);
    return rc;
}

/* MD5 of the concatenated binary part MD5s, then "-N". */
static void expected_etag(const upload *u, char *out, size_t size)
{
    void *md5 = s3_md5_new();
    char hex[33];
    out[0] = '\0';
    if (!md5)
        return;
    for (int i = 0; i < u->nparts; i++) {
        unsigned char bin[16];
        if (!s3_etag_is_md5(u->parts[i].etag)) {
            s3_md5_free(md5);
            return;
        }
        for (int j = 0; j < 16; j++) {
            unsigned v = 0;
            sscanf(u->parts[i].etag + 2 * j, "%2x", &v);
            bin[j] = (unsigned char)v;
        }
        EVP_DigestUpdate(md5, bin, sizeof bin);
    }
    s3_md5_hex(md5, hex);
    s3_md5_free(md5);
    snprintf(out, size, "%s-%d", hex, u->nparts);
}

static int complete(upload *u, kiln_err *err)
{
    char *body = NULL, *query = NULL, etag[128], want[64];
    size_t len = 0;
    s3_resp resp = {0};
    int rc = s3_xml_complete_body(u->parts, u->nparts, &body, &len, err);
    if (rc != KILN_OK)
        return rc;
    if (asprintf(&query, "uploadId=%s", u->upload_id_q) < 0) {
        query = NULL;
        rc = kiln_err_set(err, KILN_ENOMEM, "out of memory");
        goto fail;
    }
    s3_req req = {.method = "POST", .bucket = u->bucket, .key = u->key, .query = query,
                  .body = body, .body_len = len, .headers = {"Content-Type: application/xml"}};
    if ((rc = s3_perform(u->c, &req, &resp, err)) != KILN_OK)
        goto fail;
    /* S3 may answer 200 and put an <Error> in the body. */
    if (s3_xml_error(resp.body, resp.body_len, etag, sizeof etag, want, sizeof want)) {
        rc = s3_error_from_resp(&resp, u->bucket, u->key, err);
        goto fail;
    }
    if ((rc = s3_xml_complete_etag(resp.body, resp.body_len, etag, sizeof etag, err)) != KILN_OK)
        goto fail;
    expected_etag(u, want, sizeof want);
    /* Servers that answer a plain MD5 for the whole object (s3rver) are
     * checked by the next download instead. */
    if (want[0] && strchr(etag, '-') && strcasecmp(want, etag) != 0)
        rc = kiln_err_set(err, KILN_EIO, "%s: the server's multipart ETag %s is not the "
                          "expected %s", u->what, etag, want);
fail:
    if (rc != KILN_OK)
        kiln_err_wrap(err, "%s: cannot complete the multipart upload", u->what);
    free(query);
    free(body);
    s3_resp_free(&resp);
    return rc;
}

/* Best effort: the original error is what the caller needs to see; a
 * failed abort is only logged (a bucket lifecycle rule can clean up). */
static void abort_upload(upload *u)
{
    char *query = NULL;
    kiln_err aerr = {0};
    s3_resp resp = {0};
    if (asprintf(&query, "uploadId=%s", u->upload_id_q) < 0)
        return;
    s3_req req = {.method = "DELETE", .bucket = u->bucket, .key = u->key, .query = query,
                  .payload_hash = S3_EMPTY_SHA256};
    if (s3_perform(u->c, &req, &resp, &aerr) == KILN_OK)
        u->c->stats.multipart_aborts++;
    else
        kiln_log_warn(u->c->log, "%s: cannot abort multipart upload %s: %s", u->what,
                      u->upload_id, aerr.msg);
    s3_resp_free(&resp);
    free(query);
}

int s3_put_multipart(kiln_s3_client *c, const char *bucket, const char *key, FILE *src,
                     uint64_t size, const char *content_type, kiln_err *err)
{
    upload u = {.c = c, .bucket = bucket, .key = key};
    uint64_t part = c->cfg.part_size;
    s3_describe(u.what, sizeof u.what, bucket, key);
    uint64_t n = size / part + (size % part != 0);
    if (n == 0)
        n = 1;
    if (n > KILN_S3_MAX_PARTS)
        return kiln_err_set(err, KILN_ELIMIT, "%s: %llu parts of %llu bytes is over S3's %d; "
                            "raise the part size", u.what, (unsigned long long)n,
                            (unsigned long long)part, KILN_S3_MAX_PARTS);
    u.nparts = (int)n;
    u.parts = calloc(n, sizeof *u.parts);
    if (!u.parts)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    int rc = initiate(&u, content_type, err);
    for (int i = 0; rc == KILN_OK && i < u.nparts; i++) {
        uint64_t off = (uint64_t)i * part;
        uint64_t len = size - off < part ? size - off : part;
        rc = put_part(&u, src, i + 1, off, len, err);
    }
    if (rc == KILN_OK)
        rc = complete(&u, err);
    if (rc != KILN_OK && u.upload_id)
        abort_upload(&u);
    free(u.upload_id);
    free(u.upload_id_q);
    free(u.parts);
    return rc;
}
