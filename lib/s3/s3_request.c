/* lib/s3/s3_request.c — one signed HTTP exchange with retries: curl setup,
 * streaming callbacks, and backoff. */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "s3/s3_internal.h"

/* ---------------- one exchange ---------------- */

typedef struct xfer {
    kiln_s3_client *c;
    const s3_req *req;
    s3_resp *resp;
    uint64_t sent;        /* of the streamed upload, this attempt */
    size_t mem_sent;      /* of the in-memory body, this attempt */
    int body_too_big;
} xfer;

void s3_resp_free(s3_resp *resp)
{
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}

static void resp_reset(s3_resp *resp)
{
    s3_resp_free(resp);
    memset(resp, 0, sizeof *resp);
    resp->content_length = -1;
    resp->range_start = -1;
    resp->range_total = -1;
}

/* Copy a header value, trimmed, without surrounding quotes (ETags). */
static void header_value(char *out, size_t size, const char *v, size_t len)
{
    while (len && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
        len--;
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
        v++;
        len -= 2;
    }
    snprintf(out, size, "%.*s", (int)len, v);
}

static int header_is(const char *line, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len > n && line[n] == ':' && strncasecmp(line, name, n) == 0;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    s3_resp *r = x->resp;
    size_t len = size * nmemb;
    char val[256];
    if (len > 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* A new status line (after a 100 Continue, too): forget the last. */
        const char *sp = memchr(line, ' ', len);
        r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        r->etag[0] = r->last_modified[0] = '\0';
        r->content_length = r->range_start = r->range_total = -1;
        return len;
    }
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return len;
    header_value(val, sizeof val, colon + 1, len - (size_t)(colon + 1 - line));
    if (header_is(line, len, "ETag"))
        snprintf(r->etag, sizeof r->etag, "%s", val);
    else if (header_is(line, len, "Last-Modified"))
        snprintf(r->last_modified, sizeof r->last_modified, "%s", val);
    else if (header_is(line, len, "Content-Length"))
        r->content_length = strtoll(val, NULL, 10);
    else if (header_is(line, len, "Content-Range")) {
        long long a = -1, b = -1, total = -1;
        if (sscanf(val, "bytes %lld-%lld/%lld", &a, &b, &total) == 3) {
            r->range_start = a;
            r->range_total = total;
        }
    }
    return len;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    s3_resp *r = x->resp;
    size_t len = size * nmemb;
    if (r->status >= 200 && r->status < 300 && x->req->sink) {
        size_t n = x->req->sink(data, len, r, x->req->sink_ctx);
        r->sink_started = 1;
        if (n == len) {
            r->streamed += len;
            x->c->stats.bytes_received += len;
        }
        return n;
    }
    if (r->body_len + len > S3_MAX_XML_BODY) {
        x->body_too_big = 1;
        return 0;
    }
    char *grown = realloc(r->body, r->body_len + len + 1);
    if (!grown)
        return 0;
    memcpy(grown + r->body_len, data, len);
    r->body = grown;
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return len;
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    const s3_req *req = x->req;
    size_t want = size * nmemb;
    if (!req->upload) {
        size_t n = req->body_len - x->mem_sent;
        n = n < want ? n : want;
        memcpy(buf, req->body + x->mem_sent, n);
        x->mem_sent += n;
        return n;
    }
    uint64_t left = req->upload_len - x->sent;
    size_t n = left < want ? (size_t)left : want;
    if (n == 0)
        return 0;
    size_t got = fread(buf, 1, n, req->upload);
    if (got != n)
        return CURL_READFUNC_ABORT; /* the file shrank or failed under us */
    if (req->upload_md5)
        EVP_DigestUpdate(req->upload_md5, buf, got);
    x->sent += got;
    x->c->stats.bytes_sent += got;
    return got;
}

/* Put the upload back at its start: before each attempt, and when curl
 * asks to resend (only ever from offset 0 here). */
static int rewind_upload(xfer *x)
{
    const s3_req *req = x->req;
    x->sent = 0;
    x->mem_sent = 0;
    if (req->upload_md5 && !EVP_DigestInit_ex(req->upload_md5, EVP_md5(), NULL))
        return -1;
    if (req->upload && fseeko(req->upload, (off_t)req->upload_off, SEEK_SET) != 0)
        return -1;
    return 0;
}

static int on_seek(void *ud, curl_off_t offset, int origin)
{
    if (origin != SEEK_SET || offset != 0)
        return CURL_SEEKFUNC_CANTSEEK;
    return rewind_upload(ud) == 0 ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL;
}

static int add_header(struct curl_slist **list, const char *name, const char *value,
                      kiln_err *err)
{
    char *line = NULL;
    struct curl_slist *grown = NULL;
    if (asprintf(&line, "%s: %s", name, value) >= 0)
        grown = curl_slist_append(*list, line);
    free(line);
    if (!grown)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory building S3 headers");
    *list = grown;
    return KILN_OK;
}

static int build_headers(const kiln_s3_client *c, const s3_req *req, const char *payload,
                         struct curl_slist **out, kiln_err *err)
{
    struct curl_slist *h = NULL;
    int rc = add_header(&h, "x-amz-content-sha256", payload, err);
    if (rc == KILN_OK && c->cfg.session_token[0])
        rc = add_header(&h, "x-amz-security-token", c->cfg.session_token, err);
    if (rc == KILN_OK && req->amz_date)
        rc = add_header(&h, "x-amz-date", req->amz_date, err);
    for (int i = 0; rc == KILN_OK && i < 8 && req->headers[i]; i++) {
        struct curl_slist *grown = curl_slist_append(h, req->headers[i]);
        if (!grown)
            rc = kiln_err_set(err, KILN_ENOMEM, "out of memory building S3 headers");
        else
            h = grown;
    }
    if (rc != KILN_OK) {
        curl_slist_free_all(h);
        return rc;
    }
    *out = h;
    return KILN_OK;
}

static void sha256_hex(const void *data, size_t len, char hex[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* Options every attempt needs: connection, TLS, timeouts, signing. */
static int set_common(kiln_s3_client *c, xfer *x, char *errbuf, kiln_err *err)
{
    const kiln_s3_config *cfg = &c->cfg;
    CURL *h = c->curl;
    int rc = KILN_OK;
    KILN_CURL(curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf));
    KILN_CURL(curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L));
    KILN_CURL(curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https"));
    KILN_CURL(curl_easy_setopt(h, CURLOPT_USERAGENT, "kiln/" KILN_VERSION));
    KILN_CURL(curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)cfg->connect_timeout_s));
    KILN_CURL(curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, (long)cfg->low_speed_bytes));
    KILN_CURL(curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)cfg->low_speed_time_s));
    KILN_CURL(curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, cfg->verify_tls ? 1L : 0L));
    KILN_CURL(curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, cfg->verify_tls ? 2L : 0L));
    if (cfg->ca_bundle[0])
        KILN_CURL(curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_bundle));
    if (cfg->max_recv_speed)
        KILN_CURL(curl_easy_setopt(h, CURLOPT_MAX_RECV_SPEED_LARGE,
                                   (curl_off_t)cfg->max_recv_speed));
    if (cfg->access_key[0]) {
        KILN_CURL(curl_easy_setopt(h, CURLOPT_AWS_SIGV4, c->sigv4));
        KILN_CURL(curl_easy_setopt(h, CURLOPT_USERNAME, cfg->access_key));
        KILN_CURL(curl_easy_setopt(h, CURLOPT_PASSWORD, cfg->secret_key));
    }
    KILN_CURL(curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header));
    KILN_CURL(curl_easy_setopt(h, CURLOPT_HEADERDATA, x));
    KILN_CURL(curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write));
    KILN_CURL(curl_easy_setopt(h, CURLOPT_WRITEDATA, x));
    /* Fewer, larger callbacks: curl's default 16 KiB made the per-call cost
     * of writing and hashing show in download throughput. */
    KILN_CURL(curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L * 1024));
    KILN_CURL(curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024));
fail:
    return rc;
}

static int set_method(kiln_s3_client *c, const s3_req *req, xfer *x, kiln_err *err)
{
    CURL *h = c->curl;
    int rc = KILN_OK;
    const char *m = req->method;
    if (strcmp(m, "HEAD") == 0) {
        KILN_CURL(curl_easy_setopt(h, CURLOPT_NOBODY, 1L));
    } else if (strcmp(m, "PUT") == 0) {
        uint64_t len = req->upload ? req->upload_len : req->body_len;
        KILN_CURL(curl_easy_setopt(h, CURLOPT_UPLOAD, 1L));
        KILN_CURL(curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len));
        KILN_CURL(curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read));
        KILN_CURL(curl_easy_setopt(h, CURLOPT_READDATA, x));
        KILN_CURL(curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek));
        KILN_CURL(curl_easy_setopt(h, CURLOPT_SEEKDATA, x));
    } else if (strcmp(m, "POST") == 0) {
        KILN_CURL(curl_easy_setopt(h, CURLOPT_POST, 1L));
        KILN_CURL(curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len));
        KILN_CURL(curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : ""));
    } else if (strcmp(m, "GET") != 0) {
        KILN_CURL(curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m));
    }
fail:
    return rc;
}

/* One attempt. Setup failures return an error; transfer failures come
 * back in *cc and resp->status for the retry loop to judge. */
static int attempt_once(kiln_s3_client *c, const s3_req *req, s3_resp *resp, CURLcode *cc,
                        char *errbuf, kiln_err *err)
{
    xfer x = {.c = c, .req = req, .resp = resp};
    struct curl_slist *headers = NULL;
    char *url = NULL;
    char body_hash[65];
    int rc = KILN_OK;
    const char *payload = req->payload_hash;
    if (!payload) {
        sha256_hex(req->body ? req->body : "", req->body_len, body_hash);
        payload = body_hash;
    }
    if (rewind_upload(&x) != 0) {
        rc = kiln_err_set(err, KILN_EIO, "cannot rewind the upload source");
        goto fail;
    }
    url = s3_build_url(c, req->bucket, req->key, req->query, err);
    if (!url || (rc = build_headers(c, req, payload, &headers, err)) != KILN_OK) {
        rc = url ? rc : KILN_ENOMEM;
        goto fail;
    }
    curl_easy_reset(c->curl);
    errbuf[0] = '\0';
    if ((rc = set_common(c, &x, errbuf, err)) != KILN_OK ||
        (rc = set_method(c, req, &x, err)) != KILN_OK)
        goto fail;
    KILN_CURL(curl_easy_setopt(c->curl, CURLOPT_URL, url));
    KILN_CURL(curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers));
    struct curl_slist *connect_to = NULL;
    if (c->cfg.connect_to[0]) {
        connect_to = curl_slist_append(NULL, c->cfg.connect_to);
        if (!connect_to) {
            rc = kiln_err_set(err, KILN_ENOMEM, "out of memory");
            goto fail;
        }
    }
    CURLcode set = curl_easy_setopt(c->curl, CURLOPT_CONNECT_TO, connect_to);
    if (set == CURLE_OK) {
        c->stats.requests++;
        *cc = curl_easy_perform(c->curl);
    }
    /* curl keeps no pointer to these once the transfer is over. */
    curl_easy_setopt(c->curl, CURLOPT_CONNECT_TO, NULL);
    curl_slist_free_all(connect_to);
    KILN_CURL(set);
    if (x.body_too_big) {
        rc = kiln_err_set(err, KILN_ELIMIT, "S3 answer body over %zu bytes", S3_MAX_XML_BODY);
        goto fail;
    }
fail:
    if (c->curl) {
        curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, NULL);
    }
    curl_slist_free_all(headers);
    free(url);
    return rc;
}

static int curl_transient(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SEND_FAIL_REWIND:
        return 1;
    default:
        return 0;
    }
}

/* Full jitter: uniform in [0, min(cap, base * 2^n)]. */
static long backoff_ms(kiln_s3_client *c, int n)
{
    uint64_t ceiling = (uint64_t)c->cfg.retry_base_ms;
    for (int i = 0; i < n && ceiling < (uint64_t)c->cfg.retry_cap_ms; i++)
        ceiling *= 2;
    if (ceiling > (uint64_t)c->cfg.retry_cap_ms)
        ceiling = (uint64_t)c->cfg.retry_cap_ms;
    return (long)kiln_rng_below(&c->rng, ceiling + 1);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static int perform(kiln_s3_client *c, const s3_req *req, s3_resp *resp, int want_status,
                   kiln_err *err)
{
    char errbuf[CURL_ERROR_SIZE], what[KILN_S3_MAX_KEY + 128];
    s3_describe(what, sizeof what, req->bucket, req->key);
    int failures = 0, rc = KILN_OK;
    CURLcode cc = CURLE_OK;
    for (int attempt = 0;; attempt++) {
        if (req->prepare && (rc = req->prepare(req->prepare_ctx, attempt, err)) != KILN_OK)
            return rc;
        resp_reset(resp);
        cc = CURLE_OK;
        if ((rc = attempt_once(c, req, resp, &cc, errbuf, err)) != KILN_OK)
            return rc;
        int transient = cc != CURLE_OK ? curl_transient(cc) : resp->status >= 500;
        if (!transient)
            break;
        /* A transfer that moved data earns its retries back: a long
         * download may be cut more than max_retries times in all. */
        if (resp->streamed > 0)
            failures = 0;
        if (failures >= c->cfg.max_retries)
            break;
        long ms = backoff_ms(c, failures++);
        kiln_log_warn(c->log, "%s %s: %s; retry %d/%d in %ld ms", req->method, what,
                      cc != CURLE_OK ? (errbuf[0] ? errbuf : curl_easy_strerror(cc))
                                     : "server error",
                      failures, c->cfg.max_retries, ms);
        c->stats.retries++;
        sleep_ms(ms);
    }
    if (cc != CURLE_OK)
        return kiln_err_set(err, KILN_EIO, "%s: %s failed: %s (curl error %d, after %d %s)",
                            what, req->method, errbuf[0] ? errbuf : curl_easy_strerror(cc),
                            (int)cc, failures + 1, failures ? "attempts" : "attempt");
    if (resp->status >= 200 && resp->status < 300)
        return KILN_OK;
    if (want_status && resp->status >= 300 && resp->status < 500)
        return KILN_OK;
    return s3_error_from_resp(resp, req->bucket, req->key, err);
}

int s3_perform(kiln_s3_client *c, const s3_req *req, s3_resp *resp, kiln_err *err)
{
    return perform(c, req, resp, 0, err);
}

int s3_perform_status(kiln_s3_client *c, const s3_req *req, s3_resp *resp, kiln_err *err)
{
    return perform(c, req, resp, 1, err);
}
