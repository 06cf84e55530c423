/* lib/s3/s3.h — an S3 client for kiln's artifacts (AWS S3, MinIO, s3rver).
 *
 * Requests go through libcurl and are signed by curl's own AWS Signature V4
 * (CURLOPT_AWS_SIGV4); XML answers (listings, errors, multipart) are read
 * with libxml2. Bodies are streamed between the network and files, never
 * held whole in memory, so memory stays flat with object size.
 *
 * Configuration: kiln_s3_config_default, then kiln_s3_config_from_env
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION /
 * AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL /
 * MLFLOW_S3_ENDPOINT_URL, AWS_CA_BUNDLE, MLFLOW_S3_IGNORE_TLS), then command
 * line flags through kiln_s3_config_set, which override the environment.
 * With an endpoint (MinIO, s3rver) requests are path-style
 * (http://host/bucket/key) unless addressing is set to "virtual"; without
 * one they go to https://<bucket>.s3.<region>.amazonaws.com/<key>.
 * Without an access key requests are sent unsigned (public buckets).
 *
 * Errors. Every failure message names the object as "s3://bucket/key" and,
 * for an answer from the server, its S3 error code, message and HTTP status:
 *   "s3://b/k: NoSuchKey: The specified key does not exist. (HTTP 404)"
 * Codes:
 *   - KILN_ENOTFOUND: NoSuchKey, NoSuchBucket, NoSuchUpload, any other 404,
 *     or a local source file that does not exist;
 *   - KILN_EINVAL: refused credentials or permissions (AccessDenied,
 *     SignatureDoesNotMatch, InvalidAccessKeyId, ExpiredToken, 403), any
 *     other 4xx, a bad bucket name, key, URL or configuration value;
 *   - KILN_EIO: the connection failed, timed out or was reset and retries
 *     ran out, a 5xx / SlowDown that retries did not cure, a download whose
 *     size or MD5 does not match what the server declared, or a local file
 *     that cannot be read or written;
 *   - KILN_EFORMAT: the server's XML answer cannot be understood;
 *   - KILN_ELIMIT: a configuration string longer than its field.
 *
 * Retries. Transient failures (connect refused, timeouts, resets, a
 * truncated body, HTTP 5xx including 503 SlowDown) are retried up to
 * max_retries times with exponential backoff and full jitter; 4xx answers
 * are never retried. A download interrupted mid-body resumes with
 * "Range: bytes=<got>-" and "If-Match: <etag>" into the same temporary file.
 *
 * Threads: a kiln_s3_client holds one curl handle and is not thread-safe;
 * use one client per thread. There is no global state to set up: the client
 * initialises curl and libxml2 itself (both reference-count or are
 * idempotent).
 */
#ifndef KILN_S3_S3_H
#define KILN_S3_S3_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/log.h"

#define KILN_S3_MIN_PART_SIZE ((uint64_t)5 << 20)    /* S3's minimum part */
#define KILN_S3_MAX_PART_SIZE ((uint64_t)5 << 30)    /* S3's maximum part */
#define KILN_S3_MAX_PARTS 10000
#define KILN_S3_MAX_KEY 1024                         /* bytes, S3's limit */
#define KILN_S3_MAX_BUCKET 63

typedef enum kiln_s3_addressing {
    KILN_S3_ADDRESSING_AUTO = 0, /* path-style with an endpoint, virtual-host without */
    KILN_S3_ADDRESSING_PATH,     /* http://host/bucket/key (MinIO, s3rver) */
    KILN_S3_ADDRESSING_VIRTUAL,  /* http://bucket.host/key (AWS) */
} kiln_s3_addressing;

/* A plain value: every string is an inline buffer, nothing to free. */
typedef struct kiln_s3_config {
    char endpoint[1024];      /* "http(s)://host[:port]"; "" = AWS for `region` */
    char region[64];          /* default "us-east-1" */
    char access_key[256];     /* "" = unsigned requests */
    char secret_key[256];
    char session_token[4096]; /* sent as x-amz-security-token when set */
    char ca_bundle[1024];     /* PEM file of trusted CAs; "" = system store */
    char connect_to[256];     /* curl CONNECT_TO "host:port:chost:cport"; "" none */
    kiln_s3_addressing addressing;
    int verify_tls;           /* default 1; 0 only for self-signed test setups */
    uint64_t part_size;       /* multipart part size, default 16 MiB, >= 5 MiB */
    uint64_t multipart_threshold; /* files above this go multipart; default 64 MiB */
    int max_retries;          /* retries after the first attempt, default 5 */
    int retry_base_ms;        /* first backoff ceiling, default 200 */
    int retry_cap_ms;         /* backoff ceiling cap, default 10000 */
    int connect_timeout_s;    /* default 10 */
    int low_speed_time_s;     /* abort (and retry) a transfer stalled below */
    int low_speed_bytes;      /* low_speed_bytes/s for this long; default 1 B/s, 30 s */
    uint64_t max_recv_speed;  /* bytes/s download cap, 0 = none */
    int list_page_size;       /* max-keys per listing request, default 1000 */
} kiln_s3_config;

void kiln_s3_config_default(kiln_s3_config *cfg);

/* Fill `cfg` from the environment variables listed at the top; variables
 * that are unset or empty leave their field alone. ELIMIT when a value is
 * longer than its field, EINVAL for a malformed endpoint. */
int kiln_s3_config_from_env(kiln_s3_config *cfg, kiln_err *err);

/* Set one field from a flag's text: "endpoint", "region", "access-key",
 * "secret-key", "session-token", "ca-bundle", "connect-to", "addressing"
 * (auto|path|virtual), "verify-tls" (0|1), "part-size" and
 * "multipart-threshold" (bytes, optional K/M/G suffix), "max-retries".
 * EINVAL naming the flag for an unknown name or a bad value. */
int kiln_s3_config_set(kiln_s3_config *cfg, const char *name, const char *value,
                       kiln_err *err);

/* "s3://bucket/key/with/slashes" -> bucket and key (the key may be "" for
 * "s3://bucket" or "s3://bucket/"). EINVAL for another scheme, a bad bucket
 * name or a key over KILN_S3_MAX_KEY bytes. */
typedef struct kiln_s3_url {
    char bucket[KILN_S3_MAX_BUCKET + 1];
    char key[KILN_S3_MAX_KEY + 1];
} kiln_s3_url;
int kiln_s3_parse_url(const char *url, kiln_s3_url *out, kiln_err *err);

/* 1 if `name` follows S3's bucket naming rules (3-63 of [a-z0-9.-],
 * starting and ending with a letter or digit), 0 otherwise. */
int kiln_s3_bucket_name_ok(const char *name);

typedef struct kiln_s3_client kiln_s3_client;

/* Validate `cfg` (copied; it need not outlive the client) and make a client.
 * `log` (may be NULL) receives retry warnings and must outlive the client.
 * NULL + EINVAL for a bad configuration. */
kiln_s3_client *kiln_s3_client_new(const kiln_s3_config *cfg, const kiln_logger *log,
                                   kiln_err *err);
void kiln_s3_client_free(kiln_s3_client *client);

/* Counters since the client was made, for progress reports and tests. */
typedef struct kiln_s3_stats {
    uint64_t requests;        /* HTTP attempts made, retries included */
    uint64_t retries;         /* attempts that were repeats of a failed one */
    uint64_t bytes_received;  /* response body bytes written to files */
    uint64_t bytes_sent;      /* request body bytes read from files */
    uint64_t resumes;         /* downloads continued with a Range request */
    uint64_t restarts;        /* downloads restarted from byte 0 */
    uint64_t multipart_aborts;/* multipart uploads aborted after a failure */
} kiln_s3_stats;
void kiln_s3_client_stats(const kiln_s3_client *client, kiln_s3_stats *out);

typedef struct kiln_s3_object_info {
    char key[KILN_S3_MAX_KEY + 1];
    uint64_t size;
    char etag[128];           /* without quotes; "<md5>-<parts>" for multipart */
    char last_modified[64];   /* as the server wrote it (ISO 8601 or HTTP date) */
} kiln_s3_object_info;

/* Download to `dest_path`: written under a temporary name next to it and
 * renamed only once complete and checked (size always; MD5 against the
 * ETag for single-part objects), so `dest_path` is either absent / its old
 * self or the whole object. */
int kiln_s3_get(kiln_s3_client *client, const char *bucket, const char *key,
                const char *dest_path, kiln_err *err);

/* Upload `src_path` (streamed). Files over multipart_threshold go up in
 * part_size parts, each retried on its own; on failure the upload is
 * aborted so no orphaned parts stay billed. The server's ETag is checked
 * against the MD5 of the bytes sent. `content_type` may be NULL
 * (application/octet-stream). */
int kiln_s3_put(kiln_s3_client *client, const char *bucket, const char *key,
                const char *src_path, const char *content_type, kiln_err *err);

/* Size, ETag and date of one object (the key field is copied from `key`). */
int kiln_s3_head(kiln_s3_client *client, const char *bucket, const char *key,
                 kiln_s3_object_info *out, kiln_err *err);

/* Delete one object; deleting a missing key succeeds (S3 semantics). */
int kiln_s3_delete(kiln_s3_client *client, const char *bucket, const char *key,
                   kiln_err *err);

/* Create `bucket` unless it exists already (then KILN_OK). */
int kiln_s3_create_bucket(kiln_s3_client *client, const char *bucket, kiln_err *err);

/* Called once per listed object, in key order. Return KILN_OK to go on; any
 * other code stops the listing and kiln_s3_list returns it (the callback
 * sets `err` itself). `obj` is valid only during the call. */
typedef int (*kiln_s3_list_fn)(const kiln_s3_object_info *obj, void *ctx, kiln_err *err);

/* Every object whose key starts with `prefix` (NULL or "" = all), following
 * ListObjectsV2 continuation tokens across pages. */
int kiln_s3_list(kiln_s3_client *client, const char *bucket, const char *prefix,
                 kiln_s3_list_fn fn, void *ctx, kiln_err *err);

#endif
