/* lib/mlflow/mlflow_http.c — the client, and one HTTP exchange with the
 * tracking server: auth, TLS, timeouts, retries with backoff, MLflow's
 * error JSON turned into a message. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mlflow/mlflow_internal.h"

#if LIBCURL_VERSION_NUM < 0x075500
#error "lib/mlflow needs libcurl >= 7.85 (CURLOPT_PROTOCOLS_STR)"
#endif

kiln_mlflow_client *kiln_mlflow_client_new(const kiln_mlflow_config *cfg,
                                           const kiln_logger *log, kiln_err *err)
{
    if (!cfg->tracking_uri[0]) {
        kiln_err_set(err, KILN_EINVAL,
                     "no MLflow tracking server: set MLFLOW_TRACKING_URI (http://host:port)");
        return NULL;
    }
    if (strncmp(cfg->tracking_uri, "http://", 7) != 0 &&
        strncmp(cfg->tracking_uri, "https://", 8) != 0) {
        kiln_err_set(err, KILN_EINVAL, "MLflow tracking URI '%s' is not http(s)://",
                     cfg->tracking_uri);
        return NULL;
    }
    if (cfg->timeout_s < 1 || cfg->max_retries < 0 || cfg->backoff_factor_s < 0 ||
        cfg->backoff_jitter_s < 0 || cfg->backoff_max_s < 0) {
        kiln_err_set(err, KILN_EINVAL, "MLflow client timeout / retry settings are invalid");
        return NULL;
    }
    kiln_mlflow_client *c = calloc(1, sizeof *c);
    if (!c) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory making an MLflow client");
        return NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(c);
        kiln_err_set(err, KILN_EIO, "curl_global_init failed");
        return NULL;
    }
    c->cfg = *cfg;
    c->log = log;
    c->curl = curl_easy_init();
    if (!c->curl) {
        kiln_mlflow_client_free(c);
        kiln_err_set(err, KILN_ENOMEM, "curl_easy_init failed");
        return NULL;
    }
    /* MLflow sends Basic when both username and password are set, else the token. */
    if (!(cfg->username[0] && cfg->password[0]) && cfg->token[0])
        snprintf(c->bearer, sizeof c->bearer, "Authorization: Bearer %s", cfg->token);
    kiln_rng_seed(&c->rng, (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^
                               (uint64_t)(uintptr_t)c);
    return c;
}

void kiln_mlflow_client_free(kiln_mlflow_client *c)
{
    if (!c)
        return;
    kiln_s3_client_free(c->s3);
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_global_cleanup();
    /* Credentials must not linger in freed memory. */
    memset(&c->cfg, 0, sizeof c->cfg);
    memset(c->bearer, 0, sizeof c->bearer);
    free(c);
}

void kiln_mlflow_client_stats(const kiln_mlflow_client *c, kiln_mlflow_stats *out)
{
    *out = c->stats;
}

void mlflow_resp_free(mlflow_resp *r)
{
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

/* ---- one attempt ---- */

typedef struct sink {
    CURL *curl;
    FILE *download;
    int decided, to_file;
    mlflow_resp *resp;
    int too_big;
} sink;

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    sink *s = ctx;
    size_t len = size * n;
    if (!s->decided) {
        long status = 0;
        curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
        s->to_file = s->download && status >= 200 && status < 300;
        s->decided = 1;
    }
    if (s->to_file)
        return fwrite(data, 1, len, s->download);
    mlflow_resp *r = s->resp;
    if (r->len + len > MLFLOW_MAX_BODY) {
        s->too_big = 1;
        return 0;
    }
    char *grown = realloc(r->body, r->len + len + 1);
    if (!grown)
        return 0;
    r->body = grown;
    memcpy(r->body + r->len, data, len);
    r->len += len;
    r->body[r->len] = '\0';
    return len;
}

static int rewind_files(const mlflow_http *req, kiln_err *err)
{
    if (req->upload && fseek(req->upload, 0, SEEK_SET) != 0)
        return kiln_err_errno(err, errno, "rewinding the upload");
    if (req->download) {
        if (fflush(req->download) != 0 || ftruncate(fileno(req->download), 0) != 0 ||
            fseek(req->download, 0, SEEK_SET) != 0)
            return kiln_err_errno(err, errno, "truncating the download");
    }
    return KILN_OK;
}

/* Set up the handle for `req`. */
static CURLcode setup(kiln_mlflow_client *c, const mlflow_http *req, const char *url,
                      struct curl_slist *headers, sink *s, char *errbuf)
{
    CURL *h = c->curl;
    const kiln_mlflow_config *cfg = &c->cfg;
    CURLcode cc = CURLE_OK;
    curl_easy_reset(h);
#define SET(opt, val)                                                                     \
    do {                                                                                  \
        if ((cc = curl_easy_setopt(h, opt, val)) != CURLE_OK)                             \
            return cc;                                                                    \
    } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_USERAGENT, "kiln/" KILN_VERSION);
    SET(CURLOPT_HTTPHEADER, headers);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, s);
    SET(CURLOPT_CONNECTTIMEOUT, (long)cfg->timeout_s);
    if (req->upload || req->download) {
        /* Artifacts may be large: a timeout of stalling, not of the whole transfer. */
        SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
        SET(CURLOPT_LOW_SPEED_TIME, (long)cfg->timeout_s);
    } else {
        /* JSON calls are small: the answer must come within the timeout. */
        SET(CURLOPT_TIMEOUT, (long)cfg->timeout_s);
    }
    if (cfg->insecure_tls) {
        SET(CURLOPT_SSL_VERIFYPEER, 0L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (cfg->server_cert_path[0]) {
        SET(CURLOPT_CAINFO, cfg->server_cert_path);
    }
    if (cfg->username[0] && cfg->password[0]) {
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        SET(CURLOPT_USERNAME, cfg->username);
        SET(CURLOPT_PASSWORD, cfg->password);
    }
    if (req->upload) {
        SET(CURLOPT_UPLOAD, 1L);
        SET(CURLOPT_READDATA, req->upload);
        SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->upload_len);
        if (strcmp(req->method, "PUT") != 0)
            SET(CURLOPT_CUSTOMREQUEST, req->method);
    } else if (req->body) {
        SET(CURLOPT_POSTFIELDS, req->body);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        if (strcmp(req->method, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, req->method);
    } else if (strcmp(req->method, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    } else {
        SET(CURLOPT_CUSTOMREQUEST, req->method);
    }
#undef SET
    return cc;
}

static int retryable_status(long status)
{
    return status == 408 || status == 429 || status == 500 || status == 502 ||
           status == 503 || status == 504;
}

/* Failures that another attempt will not cure. */
static int permanent_curl_error(CURLcode cc)
{
    switch (cc) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_LOGIN_DENIED:
    case CURLE_WRITE_ERROR:
    case CURLE_READ_ERROR:
    case CURLE_OUT_OF_MEMORY:
    case CURLE_FILESIZE_EXCEEDED:
        return 1;
    default:
        return 0;
    }
}

/* urllib3's schedule: nothing before the first retry, then factor * 2^(k-1). */
static double backoff_s(kiln_mlflow_client *c, int retry, double retry_after_s)
{
    const kiln_mlflow_config *cfg = &c->cfg;
    double d = retry <= 1 ? 0.0 : cfg->backoff_factor_s * pow(2.0, retry - 1);
    if (d > cfg->backoff_max_s)
        d = cfg->backoff_max_s;
    d += kiln_rng_uniform(&c->rng) * cfg->backoff_jitter_s;
    if (retry_after_s > d)
        d = retry_after_s < cfg->backoff_max_s ? retry_after_s : cfg->backoff_max_s;
    return d;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static kiln_code code_for_answer(long status, const char *error_code)
{
    if (status == 404 || strcmp(error_code, "RESOURCE_DOES_NOT_EXIST") == 0)
        return KILN_ENOTFOUND;
    if (status >= 400 && status < 500)
        return KILN_EINVAL;
    return KILN_EIO;
}

/* Fill `err` for a non-2xx answer, from MLflow's {"error_code", "message"}. */
static int answer_error(const mlflow_http *req, mlflow_resp *resp, kiln_err *err)
{
    cJSON *j = resp->body ? cJSON_ParseWithLength(resp->body, resp->len) : NULL;
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "error_code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "message");
    int rc;
    if (cJSON_IsString(code)) {
        snprintf(resp->error_code, sizeof resp->error_code, "%s", code->valuestring);
        rc = kiln_err_set(err, code_for_answer(resp->status, resp->error_code),
                          "MLflow %s %s: %s (%ld): %s", req->method, req->path,
                          resp->error_code, resp->status,
                          cJSON_IsString(msg) ? msg->valuestring : "(no message)");
    } else {
        /* Not MLflow's JSON (a proxy's HTML page ...): a short, one-line excerpt. */
        char excerpt[201] = "";
        size_t n = resp->len < 200 ? resp->len : 200;
        for (size_t i = 0; i < n; i++)
            excerpt[i] = (resp->body[i] == '\n' || resp->body[i] == '\r') ? ' ' : resp->body[i];
        excerpt[n] = '\0';
        rc = kiln_err_set(err, code_for_answer(resp->status, ""), "MLflow %s %s: HTTP %ld%s%s",
                          req->method, req->path, resp->status, n ? ": " : "", excerpt);
    }
    cJSON_Delete(j);
    return rc;
}

static char *build_url(const kiln_mlflow_client *c, const mlflow_http *req)
{
    char *url = NULL;
    int n = asprintf(&url, "%s%s%s%s", c->cfg.tracking_uri, req->path,
                     req->query && *req->query ? "?" : "", req->query ? req->query : "");
    return n < 0 ? NULL : url;
}

int mlflow_http_do(kiln_mlflow_client *c, const mlflow_http *req, mlflow_resp *resp,
                   kiln_err *err)
{
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *headers = NULL, *tmp;
    int rc = KILN_OK;
    CURLcode cc = CURLE_OK;
    memset(resp, 0, sizeof *resp);
    char *url = build_url(c, req);
    if (!url)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory building a URL");
    /* "Expect:" off: JSON bodies are small, and a 100-continue round trip costs. */
    const char *lines[] = {req->body ? "Content-Type: application/json" : NULL,
                           req->body ? "Expect:" : NULL, c->bearer[0] ? c->bearer : NULL};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        if (!lines[i])
            continue;
        if (!(tmp = curl_slist_append(headers, lines[i]))) {
            rc = kiln_err_set(err, KILN_ENOMEM, "out of memory");
            goto done;
        }
        headers = tmp;
    }
    int attempts = 0;
    for (;;) {
        sink s = {.curl = c->curl, .download = req->download, .resp = resp};
        mlflow_resp_free(resp);
        resp->status = 0;
        errbuf[0] = '\0';
        if ((rc = rewind_files(req, err)) != KILN_OK)
            goto done;
        cc = setup(c, req, url, headers, &s, errbuf);
        if (cc == CURLE_OK)
            cc = curl_easy_perform(c->curl);
        attempts++;
        c->stats.requests++;
        if (cc == CURLE_OK)
            curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &resp->status);
        if (s.too_big) {
            rc = kiln_err_set(err, KILN_ELIMIT, "MLflow %s %s: the answer is over %zu bytes",
                              req->method, req->path, MLFLOW_MAX_BODY);
            goto done;
        }
        int again = cc == CURLE_OK ? retryable_status(resp->status) : !permanent_curl_error(cc);
        if (!again || attempts > c->cfg.max_retries)
            break;
        curl_off_t retry_after = 0;
        if (cc == CURLE_OK)
            curl_easy_getinfo(c->curl, CURLINFO_RETRY_AFTER, &retry_after);
        double wait = backoff_s(c, attempts, (double)retry_after);
        kiln_log_warn(c->log, "MLflow %s %s: %s; retry %d of %d in %.1f s", req->method,
                      req->path,
                      cc == CURLE_OK ? "server busy or failing" : curl_easy_strerror(cc),
                      attempts, c->cfg.max_retries, wait);
        c->stats.retries++;
        sleep_s(wait);
    }
    if (cc != CURLE_OK)
        rc = kiln_err_set(err,
                          cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL
                              ? KILN_EINVAL
                              : KILN_EIO,
                          "MLflow %s %s: cannot reach %s after %d attempt%s: %s", req->method,
                          req->path, c->cfg.tracking_uri, attempts, attempts == 1 ? "" : "s",
                          errbuf[0] ? errbuf : curl_easy_strerror(cc));
    else if (resp->status < 200 || resp->status >= 300)
        rc = answer_error(req, resp, err);
done:
    /* The handle must not keep pointers to this call's buffers and list. */
    curl_easy_reset(c->curl);
    curl_slist_free_all(headers);
    free(url);
    return rc;
}

/* ---- JSON calls ---- */

static int append_param(CURL *curl, char **q, size_t *len, const char *key, const char *value)
{
    char *k = curl_easy_escape(curl, key, 0);
    char *v = curl_easy_escape(curl, value, 0);
    int ok = k && v;
    if (ok) {
        size_t add = strlen(k) + strlen(v) + 2;
        char *grown = realloc(*q, *len + add + 1);
        ok = grown != NULL;
        if (ok) {
            *q = grown;
            *len += (size_t)sprintf(*q + *len, "%s%s=%s", *len ? "&" : "", k, v);
        }
    }
    curl_free(k);
    curl_free(v);
    return ok;
}

static int append_value(CURL *curl, char **q, size_t *len, const char *key, const cJSON *v)
{
    char num[64];
    if (cJSON_IsString(v))
        return append_param(curl, q, len, key, v->valuestring);
    if (cJSON_IsBool(v))
        return append_param(curl, q, len, key, cJSON_IsTrue(v) ? "true" : "false");
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0)
            snprintf(num, sizeof num, "%lld", (long long)d);
        else
            snprintf(num, sizeof num, "%.17g", d);
        return append_param(curl, q, len, key, num);
    }
    return 1; /* null and objects have no query form */
}

char *mlflow_query_string(CURL *curl, const cJSON *fields)
{
    char *q = calloc(1, 1);
    size_t len = 0;
    const cJSON *f;
    if (!q)
        return NULL;
    cJSON_ArrayForEach(f, fields) {
        int ok = 1;
        if (cJSON_IsArray(f)) {
            const cJSON *item;
            cJSON_ArrayForEach(item, f) ok = ok && append_value(curl, &q, &len, f->string, item);
        } else {
            ok = append_value(curl, &q, &len, f->string, f);
        }
        if (!ok) {
            free(q);
            return NULL;
        }
    }
    return q;
}

int mlflow_call(kiln_mlflow_client *c, const char *method, const char *path,
                const cJSON *request, cJSON **response, char *error_code, kiln_err *err)
{
    mlflow_http req = {.method = method, .path = path};
    mlflow_resp resp;
    char *text = NULL;
    int rc;
    *response = NULL;
    if (error_code)
        error_code[0] = '\0';
    if (strcmp(method, "GET") == 0) {
        text = request ? mlflow_query_string(c->curl, request) : NULL;
        req.query = text;
    } else {
        text = request ? cJSON_PrintUnformatted(request) : strdup("{}");
        req.body = text;
        req.body_len = text ? strlen(text) : 0;
    }
    if (request && !text)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory encoding %s %s", method, path);
    rc = mlflow_http_do(c, &req, &resp, err);
    free(text);
    if (rc != KILN_OK) {
        if (error_code)
            memcpy(error_code, resp.error_code, MLFLOW_ERROR_CODE_MAX);
        mlflow_resp_free(&resp);
        return rc;
    }
    if (!resp.body || resp.len == 0) {
        *response = cJSON_CreateObject();
    } else {
        *response = cJSON_ParseWithLength(resp.body, resp.len);
        if (!*response || !cJSON_IsObject(*response)) {
            cJSON_Delete(*response);
            *response = NULL;
            rc = kiln_err_set(err, KILN_EFORMAT, "MLflow %s %s: the answer is not a JSON "
                              "object: %.80s", method, path, resp.body);
        }
    }
    mlflow_resp_free(&resp);
    if (rc == KILN_OK && !*response)
        rc = kiln_err_set(err, KILN_ENOMEM, "out of memory");
    return rc;
}

int mlflow_call_taking(kiln_mlflow_client *c, const char *method, const char *path,
                       cJSON *request, cJSON **response, char *error_code, kiln_err *err)
{
    cJSON *resp = NULL;
    if (!request && error_code)
        error_code[0] = '\0';
    int rc = request ? mlflow_call(c, method, path, request, &resp, error_code, err)
                     : kiln_err_set(err, KILN_ENOMEM, "out of memory");
    cJSON_Delete(request);
    if (response)
        *response = resp;
    else
        cJSON_Delete(resp);
    return rc;
}

cJSON *mlflow_fields(const char *const *kv, size_t n)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; o && i + 1 < n; i += 2) {
        if (kv[i + 1] && !cJSON_AddStringToObject(o, kv[i], kv[i + 1])) {
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

int mlflow_call_fields(kiln_mlflow_client *c, const char *method, const char *path,
                       const char *const *kv, size_t n, cJSON **response, char *error_code,
                       kiln_err *err)
{
    return mlflow_call_taking(c, method, path, mlflow_fields(kv, n), response, error_code, err);
}

int mlflow_get_pages(kiln_mlflow_client *c, const char *path, const char *const *kv, size_t n,
                     mlflow_page_fn on_page, void *ctx, kiln_err *err)
{
    char *token = NULL;
    int rc;
    do {
        cJSON *req = mlflow_fields(kv, n);
        if (req && token && !cJSON_AddStringToObject(req, "page_token", token)) {
            cJSON_Delete(req);
            req = NULL;
        }
        free(token);
        token = NULL;
        cJSON *resp = NULL;
        rc = mlflow_call_taking(c, "GET", path, req, &resp, NULL, err);
        if (rc == KILN_OK)
            rc = on_page(resp, ctx, err);
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(resp, "next_page_token");
        if (rc == KILN_OK && cJSON_IsString(next) && next->valuestring[0] &&
            !(token = strdup(next->valuestring)))
            rc = kiln_err_set(err, KILN_ENOMEM, "out of memory");
        cJSON_Delete(resp);
    } while (rc == KILN_OK && token);
    free(token);
    return rc;
}

int kiln_mlflow_call(kiln_mlflow_client *c, const char *method, const char *path,
                     const cJSON *request, cJSON **response, kiln_err *err)
{
    return mlflow_call(c, method, path, request, response, NULL, err);
}

int64_t mlflow_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
