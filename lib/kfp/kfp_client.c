/* The KFP REST API v2beta1 client: requests over libcurl. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "kfp/client.h"
#include "kfp/kfp_internal.h"

struct kiln_kfp_client {
    kiln_kfp_client_config cfg;
    const kiln_logger *log;
    CURL *curl;
};

#define KFP_CURL(err, call, what)                                                                 \
    do {                                                                                         \
        CURLcode cc_ = (call);                                                                   \
        if (cc_ != CURLE_OK) {                                                                   \
            return kiln_err_set((err), KILN_EIO, "%s:%d: %s: %s", __FILE__, __LINE__, (what),     \
                                curl_easy_strerror(cc_));                                        \
        }                                                                                        \
    } while (0)

void kiln_kfp_client_config_default(kiln_kfp_client_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->timeout_s = 60;
}

kiln_kfp_client *kiln_kfp_client_new(const kiln_kfp_client_config *cfg, const kiln_logger *log,
                                     kiln_err *err)
{
    if (strncmp(cfg->host, "http://", 7) && strncmp(cfg->host, "https://", 8)) {
        kiln_err_set(err, KILN_EINVAL, "--kubeflow-host '%s': expected http(s)://host[/path]",
                     cfg->host);
        return NULL;
    }
    kiln_kfp_client *c = calloc(1, sizeof *c);
    if (!c || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(c->curl = curl_easy_init())) {
        free(c);
        kiln_err_set(err, KILN_ENOMEM, "cannot set up libcurl");
        return NULL;
    }
    c->cfg = *cfg;
    size_t n = strlen(c->cfg.host);
    while (n > 0 && c->cfg.host[n - 1] == '/')
        c->cfg.host[--n] = '\0';
    c->log = log;
    return c;
}

void kiln_kfp_client_free(kiln_kfp_client *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->curl);
    curl_global_cleanup();
    free(c);
}

typedef struct buf {
    char *data;
    size_t len;
} buf;

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
    buf *b = ctx;
    size_t add = size * n;
    if (b->len + add > (64u << 20))
        return 0;
    char *d = realloc(b->data, b->len + add + 1);
    if (!d)
        return 0;
    memcpy(d + b->len, p, add);
    b->len += add;
    d[b->len] = '\0';
    b->data = d;
    return add;
}

/* KFP's error text: {"error": ..., "message": ..., "code": N}. */
static void error_message(const char *body, char *out, size_t size)
{
    cJSON *j = cJSON_Parse(body ? body : "");
    const char *m = kfp_str(j, "message") ? kfp_str(j, "message") : kfp_str(j, "error");
    snprintf(out, size, "%.*s", 400, m ? m : body && *body ? body : "(no message)");
    out[strcspn(out, "\n")] = out[strcspn(out, "\n")] ? ' ' : '\0';
    cJSON_Delete(j);
}

static int status_code(long status)
{
    return status == 404 ? KILN_ENOTFOUND : status >= 500 ? KILN_EIO : KILN_EINVAL;
}

static int perform(kiln_kfp_client *c, const char *method, const char *path, const char *json,
                   curl_mime *mime, cJSON **response, kiln_err *err)
{
    char url[4096], auth[4200], what[256];
    struct curl_slist *h = NULL;
    buf b = {0};
    long status = 0;
    CURLcode cc = CURLE_OK;
    snprintf(url, sizeof url, "%s%s", c->cfg.host, path);
    snprintf(what, sizeof what, "KFP %s %.*s", method, (int)strcspn(path, "?"), path);
    *response = NULL;
    for (int attempt = 0; attempt < 3; attempt++) {
        curl_easy_reset(c->curl);
        free(b.data);
        b = (buf){0};
        KFP_CURL(err, curl_easy_setopt(c->curl, CURLOPT_URL, url), "URL");
        h = curl_slist_append(NULL, "Accept: application/json");
        if (json)
            h = curl_slist_append(h, "Content-Type: application/json");
        if (c->cfg.token[0]) {
            snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->cfg.token);
            h = curl_slist_append(h, auth);
        }
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, (long)c->cfg.timeout_s);
        curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 15L);
        curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
        if (c->cfg.cookie[0])
            curl_easy_setopt(c->curl, CURLOPT_COOKIE, c->cfg.cookie);
        if (c->cfg.insecure_tls) {
            curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYPEER, 0L);
            curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        if (json)
            curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, json);
        if (mime)
            curl_easy_setopt(c->curl, CURLOPT_MIMEPOST, mime);
        cc = curl_easy_perform(c->curl);
        curl_slist_free_all(h);
        status = 0;
        if (cc == CURLE_OK)
            curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
        int transient = cc == CURLE_COULDNT_CONNECT || cc == CURLE_OPERATION_TIMEDOUT ||
                        status == 502 || status == 503 || status == 504;
        if (!transient || attempt == 2)
            break;
        kiln_log_warn(c->log, "%s: %s; retrying", what,
                      cc != CURLE_OK ? curl_easy_strerror(cc) : "server busy");
        struct timespec ts = {1 + attempt, 0};
        nanosleep(&ts, NULL);
    }
    int rc = KILN_OK;
    if (cc != CURLE_OK) {
        rc = kiln_err_set(err, KILN_EIO, "%s: cannot reach %s: %s", what, c->cfg.host,
                          curl_easy_strerror(cc));
    } else if (status < 200 || status > 299) {
        char msg[512];
        error_message(b.data, msg, sizeof msg);
        rc = kiln_err_set(err, status_code(status), "%s: HTTP %ld: %s%s", what, status, msg,
                          status == 401 || status == 403
                              ? " (check --token / --cookie for Kubeflow behind Istio/Dex)" : "");
    } else {
        *response = b.len ? cJSON_Parse(b.data) : cJSON_CreateObject();
        if (!cJSON_IsObject(*response)) {
            cJSON_Delete(*response);
            *response = NULL;
            rc = kiln_err_set(err, KILN_EFORMAT, "%s: the answer is not a JSON object", what);
        }
    }
    free(b.data);
    return rc;
}

int kiln_kfp_call(kiln_kfp_client *c, const char *method, const char *path, const cJSON *body,
                  cJSON **response, kiln_err *err)
{
    char *json = body ? cJSON_PrintUnformatted(body) : NULL;
    if (body && !json)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    int rc = perform(c, method, path, json, NULL, response, err);
    free(json);
    return rc;
}

/* A query value, percent-encoded (malloc'ed). */
static char *escape(kiln_kfp_client *c, const char *s)
{
    char *e = curl_easy_escape(c->curl, s, 0);
    char *copy = e ? strdup(e) : NULL;
    curl_free(e);
    return copy;
}

static char *name_filter(kiln_kfp_client *c, const char *name)
{
    cJSON *f = cJSON_CreateObject(), *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "operation", "EQUALS");
    cJSON_AddStringToObject(p, "key", "display_name");
    cJSON_AddStringToObject(p, "stringValue", name);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(f, "predicates"), p);
    char *text = cJSON_PrintUnformatted(f);
    cJSON_Delete(f);
    char *e = text ? escape(c, text) : NULL;
    free(text);
    return e;
}

static int copy_id(const cJSON *obj, const char *key, char *out, const char *what, kiln_err *err)
{
    const char *id = kfp_str(obj, key);
    if (!id || !*id || strlen(id) >= KILN_KFP_ID_MAX)
        return kiln_err_set(err, KILN_EFORMAT, "%s: the answer has no %s", what, key);
    snprintf(out, KILN_KFP_ID_MAX, "%s", id);
    return KILN_OK;
}

/* GET <collection>?filter=<display_name EQUALS name>: the first item's id. */
static int find_by_name(kiln_kfp_client *c, const char *collection, const char *list_key,
                        const char *id_key, const char *name, char *id, kiln_err *err)
{
    char path[4096];
    cJSON *resp = NULL;
    char *f = name_filter(c, name), *ns = c->cfg.namespace_[0] ? escape(c, c->cfg.namespace_) : NULL;
    if (!f)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    snprintf(path, sizeof path, "/apis/v2beta1/%s?page_size=10&filter=%s%s%s", collection, f,
             ns ? "&namespace=" : "", ns ? ns : "");
    free(f);
    free(ns);
    int rc = kiln_kfp_call(c, "GET", path, NULL, &resp, err);
    if (rc != KILN_OK)
        return rc;
    const cJSON *item = cJSON_GetArrayItem(kfp_get(resp, list_key), 0);
    rc = item ? copy_id(item, id_key, id, collection, err)
              : kiln_err_set(err, KILN_ENOTFOUND, "no %s named '%s'", collection, name);
    cJSON_Delete(resp);
    return rc;
}

int kiln_kfp_pipeline_find(kiln_kfp_client *c, const char *name, char *pipeline_id,
                           kiln_err *err)
{
    return find_by_name(c, "pipelines", "pipelines", "pipeline_id", name, pipeline_id, err);
}

static int upload(kiln_kfp_client *c, const char *path, const char *yaml, size_t len,
                  cJSON **resp, kiln_err *err)
{
    curl_mime *mime = curl_mime_init(c->curl);
    curl_mimepart *part = mime ? curl_mime_addpart(mime) : NULL;
    if (!part) {
        curl_mime_free(mime);
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    }
    curl_mime_name(part, "uploadfile");
    curl_mime_filename(part, "pipeline.yaml");
    curl_mime_type(part, "application/x-yaml");
    curl_mime_data(part, yaml, len);
    int rc = perform(c, "POST", path, NULL, mime, resp, err);
    curl_mime_free(mime);
    return rc;
}

/* The newest version of a pipeline. */
static int latest_version(kiln_kfp_client *c, const char *pipeline_id, char *version_id,
                          kiln_err *err)
{
    char path[1024];
    cJSON *resp = NULL;
    char *id = escape(c, pipeline_id);
    snprintf(path, sizeof path, "/apis/v2beta1/pipelines/%s/versions?page_size=1&sort_by=%s",
             id ? id : "", "created_at%20desc");
    free(id);
    int rc = kiln_kfp_call(c, "GET", path, NULL, &resp, err);
    if (rc != KILN_OK)
        return rc;
    const cJSON *v = cJSON_GetArrayItem(kfp_get(resp, "pipeline_versions"), 0);
    rc = v ? copy_id(v, "pipeline_version_id", version_id, "pipeline versions", err)
           : kiln_err_set(err, KILN_EFORMAT, "pipeline %s has no version", pipeline_id);
    cJSON_Delete(resp);
    return rc;
}

int kiln_kfp_pipeline_upload(kiln_kfp_client *c, const char *name, const char *description,
                             const char *yaml, size_t len, char *pipeline_id, char *version_id,
                             kiln_err *err)
{
    char path[4096];
    cJSON *resp = NULL;
    char *n = escape(c, name), *d = escape(c, description ? description : "");
    char *ns = c->cfg.namespace_[0] ? escape(c, c->cfg.namespace_) : NULL;
    snprintf(path, sizeof path, "/apis/v2beta1/pipelines/upload?name=%s&display_name=%s"
             "&description=%s%s%s", n ? n : "", n ? n : "", d ? d : "", ns ? "&namespace=" : "",
             ns ? ns : "");
    free(n);
    free(d);
    free(ns);
    int rc = upload(c, path, yaml, len, &resp, err);
    if (rc == KILN_OK)
        rc = copy_id(resp, "pipeline_id", pipeline_id, "pipelines/upload", err);
    cJSON_Delete(resp);
    return rc == KILN_OK ? latest_version(c, pipeline_id, version_id, err) : rc;
}

int kiln_kfp_pipeline_upload_version(kiln_kfp_client *c, const char *pipeline_id,
                                     const char *version_name, const char *yaml, size_t len,
                                     char *version_id, kiln_err *err)
{
    char path[4096];
    cJSON *resp = NULL;
    char *id = escape(c, pipeline_id), *n = escape(c, version_name);
    snprintf(path, sizeof path, "/apis/v2beta1/pipelines/upload_version?pipelineid=%s&name=%s"
             "&display_name=%s", id ? id : "", n ? n : "", n ? n : "");
    free(id);
    free(n);
    int rc = upload(c, path, yaml, len, &resp, err);
    if (rc == KILN_OK)
        rc = copy_id(resp, "pipeline_version_id", version_id, "pipelines/upload_version", err);
    cJSON_Delete(resp);
    return rc;
}

int kiln_kfp_experiment_get_or_create(kiln_kfp_client *c, const char *name, char *experiment_id,
                                      int *created, kiln_err *err)
{
    cJSON *resp = NULL;
    *created = 0;
    int rc = find_by_name(c, "experiments", "experiments", "experiment_id", name, experiment_id,
                          err);
    if (rc != KILN_ENOTFOUND)
        return rc;
    kiln_err_clear(err);
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "display_name", name);
    if (c->cfg.namespace_[0])
        cJSON_AddStringToObject(body, "namespace", c->cfg.namespace_);
    rc = kiln_kfp_call(c, "POST", "/apis/v2beta1/experiments", body, &resp, err);
    cJSON_Delete(body);
    if (rc == KILN_OK && (rc = copy_id(resp, "experiment_id", experiment_id, "experiments",
                                       err)) == KILN_OK)
        *created = 1;
    cJSON_Delete(resp);
    return rc;
}

static cJSON *run_body(const kiln_kfp_run_spec *s)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "display_name", s->display_name);
    cJSON_AddStringToObject(b, "experiment_id", s->experiment_id);
    cJSON *ref = cJSON_AddObjectToObject(b, "pipeline_version_reference");
    cJSON_AddStringToObject(ref, "pipeline_id", s->pipeline_id);
    cJSON_AddStringToObject(ref, "pipeline_version_id", s->pipeline_version_id);
    cJSON *rc = cJSON_AddObjectToObject(b, "runtime_config");
    cJSON_AddItemToObject(rc, "parameters", s->parameters ? cJSON_Duplicate(s->parameters, 1)
                                                          : cJSON_CreateObject());
    if (s->service_account)
        cJSON_AddStringToObject(b, "service_account", s->service_account);
    return b;
}

int kiln_kfp_run_create(kiln_kfp_client *c, const kiln_kfp_run_spec *s, char *run_id,
                        kiln_err *err)
{
    cJSON *body = run_body(s), *resp = NULL;
    int rc = kiln_kfp_call(c, "POST", "/apis/v2beta1/runs", body, &resp, err);
    cJSON_Delete(body);
    if (rc == KILN_OK)
        rc = copy_id(resp, "run_id", run_id, "runs", err);
    cJSON_Delete(resp);
    return rc;
}

int kiln_kfp_run_state(kiln_kfp_client *c, const char *run_id, char *state, size_t state_size,
                       char *message, size_t message_size, kiln_err *err)
{
    char path[512];
    cJSON *resp = NULL;
    char *id = escape(c, run_id);
    snprintf(path, sizeof path, "/apis/v2beta1/runs/%s", id ? id : "");
    free(id);
    int rc = kiln_kfp_call(c, "GET", path, NULL, &resp, err);
    if (rc != KILN_OK)
        return rc;
    const char *st = kfp_str(resp, "state");
    const char *msg = kfp_str(kfp_get(resp, "error"), "message");
    snprintf(state, state_size, "%s", st ? st : "RUNTIME_STATE_UNSPECIFIED");
    snprintf(message, message_size, "%s", msg ? msg : "");
    cJSON_Delete(resp);
    return KILN_OK;
}

int kiln_kfp_state_final(const char *state)
{
    return !strcmp(state, "SUCCEEDED") || !strcmp(state, "SKIPPED") || !strcmp(state, "FAILED") ||
           !strcmp(state, "CANCELED");
}

int kiln_kfp_cron_normalize(const char *cron, char *out, size_t size, kiln_err *err)
{
    int fields = 0, in = 0;
    for (const char *p = cron; *p; p++) {
        int space = *p == ' ' || *p == '\t';
        fields += !space && !in;
        in = !space;
    }
    if (fields != 5 && fields != 6)
        return kiln_err_set(err, KILN_EINVAL, "--cron '%s': expected 5 fields (minute hour day "
                            "month weekday) or KFP's 6 (seconds first), got %d", cron, fields);
    snprintf(out, size, "%s%s", fields == 5 ? "0 " : "", cron);
    return KILN_OK;
}

int kiln_kfp_recurring_run_create(kiln_kfp_client *c, const kiln_kfp_run_spec *s,
                                  const char *cron, int max_concurrency, char *recurring_run_id,
                                  kiln_err *err)
{
    char expr[256], conc[32];
    if (kiln_kfp_cron_normalize(cron, expr, sizeof expr, err) != KILN_OK)
        return KILN_EINVAL;
    cJSON *body = run_body(s), *resp = NULL;
    cJSON *trig = cJSON_AddObjectToObject(body, "trigger");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(trig, "cron_schedule"), "cron", expr);
    snprintf(conc, sizeof conc, "%d", max_concurrency > 0 ? max_concurrency : 1);
    cJSON_AddStringToObject(body, "max_concurrency", conc);
    cJSON_AddStringToObject(body, "mode", "ENABLE");
    cJSON_AddBoolToObject(body, "no_catchup", 1);
    if (c->cfg.namespace_[0])
        cJSON_AddStringToObject(body, "namespace", c->cfg.namespace_);
    int rc = kiln_kfp_call(c, "POST", "/apis/v2beta1/recurringruns", body, &resp, err);
    cJSON_Delete(body);
    if (rc == KILN_OK)
        rc = copy_id(resp, "recurring_run_id", recurring_run_id, "recurringruns", err);
    cJSON_Delete(resp);
    return rc;
}

char *kiln_kfp_run_url(const kiln_kfp_client *c, const char *run_id)
{
    char *url = NULL;
    if (asprintf(&url, "%s/#/runs/details/%s", c->cfg.host, run_id) < 0)
        return NULL;
    return url;
}
