#include "support/trackapi.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "support/testutil.h"

typedef struct grow {
    char *data;
    size_t len, cap;
    int oom;
} grow;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *user)
{
    grow *g = user;
    size_t n = size * nmemb;
    if (g->len + n + 1 > g->cap) {
        size_t cap = g->cap ? g->cap : 4096;
        while (cap < g->len + n + 1)
            cap *= 2;
        char *p = realloc(g->data, cap);
        if (!p) {
            g->oom = 1;
            return 0;
        }
        g->data = p;
        g->cap = cap;
    }
    memcpy(g->data + g->len, ptr, n);
    g->len += n;
    g->data[g->len] = '\0';
    return n;
}

char *kt_http_request(const char *method, const char *url, const void *body, size_t body_len,
                      int *status, size_t *len)
{
    *status = 0;
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    grow g = {0};
    struct curl_slist *headers = NULL;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &g);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK || g.oom) {
        fprintf(stderr, "%s %s: %s\n", method, url, curl_easy_strerror(rc));
        free(g.data);
        return NULL;
    }
    *status = (int)code;
    if (!g.data)
        g.data = calloc(1, 1);
    if (len)
        *len = g.len;
    return g.data;
}

cJSON *kt_track_call(const char *uri, const char *method, const char *path, const char *body,
                     int *status)
{
    char *url = NULL;
    if (asprintf(&url, "%s%s", uri, path) < 0)
        return NULL;
    size_t len = 0;
    char *text = kt_http_request(method, url, body, body ? strlen(body) : 0, status, &len);
    free(url);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    return j;
}

cJSON *kt_track_ok(const char *uri, const char *method, const char *path, const char *fmt, ...)
{
    char *body = NULL;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        int n = vasprintf(&body, fmt, ap);
        va_end(ap);
        if (n < 0)
            fail_msg("vasprintf");
    }
    int status = 0;
    cJSON *j = kt_track_call(uri, method, path, body, &status);
    if (status != 200 || !j) {
        char *text = j ? cJSON_PrintUnformatted(j) : NULL;
        fail_msg("%s %s %s -> HTTP %d %s", method, path, body ? body : "", status,
                 text ? text : "(no JSON)");
    }
    free(body);
    return j;
}

char *kt_url_escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    char *out = e ? strdup(e) : NULL;
    curl_free(e);
    return out;
}
