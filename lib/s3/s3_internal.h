/* lib/s3/s3_internal.h — what the lib/s3 files share; not a public API
 * (tests include it to check URL building and signing). */
#ifndef KILN_S3_S3_INTERNAL_H
#define KILN_S3_S3_INTERNAL_H

#include <curl/curl.h>
#include <stdio.h>

#include "common/rng.h"
#include "s3/s3.h"

/* Every curl_easy_setopt / curl_easy_getinfo goes through this: on failure
 * it sets `err` with file:line, the call and curl's message, and jumps to
 * the function's `fail` label. The function must declare `int rc` and
 * `kiln_err *err`. */
#define KILN_CURL(call)                                                                   \
    do {                                                                                  \
        CURLcode kiln_cc_ = (call);                                                       \
        if (kiln_cc_ != CURLE_OK) {                                                       \
            rc = kiln_err_set(err, KILN_EIO, "%s:%d: %s: curl error %d: %s", __FILE__,     \
                              __LINE__, #call, (int)kiln_cc_, curl_easy_strerror(kiln_cc_)); \
            goto fail;                                                                    \
        }                                                                                 \
    } while (0)

/* SHA-256 of the empty string: the payload hash of body-less requests. */
#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define S3_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
/* Error and XML bodies are kept in memory up to this size. */
#define S3_MAX_XML_BODY ((size_t)32 << 20)

struct kiln_s3_client {
    kiln_s3_config cfg;
    const kiln_logger *log;
    CURL *curl;           /* reused between requests to keep connections */
    kiln_rng rng;         /* backoff jitter */
    kiln_s3_stats stats;
    char sigv4[128];      /* "aws:amz:<region>:s3" */
};

/* Where a streamed response body goes; called only for 2xx answers. The
 * status and headers of the answer are in `resp` by then. Return the
 * number of bytes taken (anything else aborts the transfer). */
typedef struct s3_resp s3_resp;
typedef size_t (*s3_sink_fn)(const char *data, size_t len, s3_resp *resp, void *ctx);

/* Called before every attempt, the first included (attempt 0), to set up
 * per-attempt state (a Range header, a rewound file). */
typedef int (*s3_prepare_fn)(void *ctx, int attempt, kiln_err *err);

typedef struct s3_req {
    const char *method;          /* GET PUT HEAD POST DELETE */
    const char *bucket;          /* NULL = the service */
    const char *key;             /* NULL = the bucket itself */
    const char *query;           /* canonical query (sorted, encoded) or NULL */
    const char *headers[8];      /* extra "Name: value" lines, NULL-terminated */
    const char *payload_hash;    /* x-amz-content-sha256; NULL = hash of `body` */
    const char *body;            /* small in-memory request body, or NULL */
    size_t body_len;
    FILE *upload;                /* streamed request body: [off, off+len) of a file */
    uint64_t upload_off, upload_len;
    void *upload_md5;            /* EVP_MD_CTX * fed with the bytes sent, or NULL */
    s3_sink_fn sink;             /* streamed 2xx response body, or NULL = memory */
    void *sink_ctx;
    s3_prepare_fn prepare;
    void *prepare_ctx;
    const char *amz_date;        /* fixed x-amz-date (signing tests); NULL = now */
} s3_req;

struct s3_resp {
    long status;                 /* 0 when no answer came */
    char etag[128];              /* without quotes */
    int64_t content_length;      /* -1 unknown */
    int64_t range_start;         /* from Content-Range, -1 none */
    int64_t range_total;         /* from Content-Range, -1 none */
    char last_modified[64];
    char *body;                  /* non-streamed body, NUL-terminated; owned */
    size_t body_len;
    uint64_t streamed;           /* bytes given to the sink in this attempt */
    int sink_started;            /* the sink has seen this attempt's status */
};

/* ---- s3_config.c ---- */
/* The URL of an object, a bucket (key NULL) or the service (bucket NULL),
 * with the key URI-encoded segment by segment and `query` appended.
 * Returns a malloc'ed string or NULL (ENOMEM). */
char *s3_build_url(const kiln_s3_client *c, const char *bucket, const char *key,
                   const char *query, kiln_err *err);
/* Percent-encode `s` per SigV4 (unreserved A-Z a-z 0-9 - _ . ~ kept);
 * malloc'ed. */
char *s3_uri_encode(const char *s, int keep_slash);
/* "s3://bucket/key" for messages into `out`. */
void s3_describe(char *out, size_t size, const char *bucket, const char *key);
int s3_check_names(const char *bucket, const char *key, kiln_err *err);

/* ---- s3_request.c ---- */
/* Perform `req` with retries. On KILN_OK the answer was 2xx (or, for HEAD,
 * any status the caller asked to see: see s3_perform_status). Otherwise
 * `err` holds the S3 message naming bucket and key. `resp` is reset first
 * and must be released with s3_resp_free. */
int s3_perform(kiln_s3_client *c, const s3_req *req, s3_resp *resp, kiln_err *err);
/* Like s3_perform, but a non-retryable 4xx answer is returned as KILN_OK
 * with resp->status set, for callers that treat some as success. */
int s3_perform_status(kiln_s3_client *c, const s3_req *req, s3_resp *resp, kiln_err *err);
void s3_resp_free(s3_resp *resp);
/* Turn a non-2xx answer into a message and code in `err`. */
int s3_error_from_resp(const s3_resp *resp, const char *bucket, const char *key,
                       kiln_err *err);

/* ---- s3_xml.c ---- */
/* <Error><Code>..</Code><Message>..</Message></Error>: 1 if found. */
int s3_xml_error(const char *body, size_t len, char *code, size_t code_size, char *msg,
                 size_t msg_size);
typedef struct s3_list_page {
    int truncated;
    char *next_token;            /* malloc'ed, or NULL */
    size_t count;                /* objects on this page */
} s3_list_page;
int s3_xml_list(const char *body, size_t len, s3_list_page *page, kiln_s3_list_fn fn,
                void *ctx, kiln_err *err);
/* <InitiateMultipartUploadResult><UploadId>: malloc'ed into *upload_id. */
int s3_xml_upload_id(const char *body, size_t len, char **upload_id, kiln_err *err);
typedef struct s3_part {
    int number;
    char etag[128];              /* without quotes */
} s3_part;
/* The CompleteMultipartUpload document; *out malloc'ed (xmlFree not needed). */
int s3_xml_complete_body(const s3_part *parts, int n, char **out, size_t *len,
                         kiln_err *err);
/* The ETag of a CompleteMultipartUploadResult (quotes removed). */
int s3_xml_complete_etag(const char *body, size_t len, char *etag, size_t size,
                         kiln_err *err);

/* <CreateBucketConfiguration> for regions other than us-east-1. */
int s3_xml_create_bucket_body(const char *region, char **out, size_t *len, kiln_err *err);

/* ---- s3_multipart.c ---- */
int s3_put_multipart(kiln_s3_client *c, const char *bucket, const char *key, FILE *src,
                     uint64_t size, const char *content_type, kiln_err *err);

/* ---- s3_object.c ---- */
/* Hex MD5 helpers over an EVP_MD_CTX (void * so curl files need no OpenSSL). */
void *s3_md5_new(void);
void s3_md5_free(void *md5);
void s3_md5_hex(void *md5, char hex[33]);
/* 1 if `etag` is a single-part ETag (32 hex digits). */
int s3_etag_is_md5(const char *etag);

#endif
