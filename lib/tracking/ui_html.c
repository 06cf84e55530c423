/* lib/tracking/ui_html.c — the UI's HTML buffer, escaping, links and
 * badges, value formatting and the page frame (head, inline style, nav
 * bar). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tracking/ui_internal.h"

static int reserve(kiln_ui_buf *b, size_t extra)
{
    if (b->oom)
        return 0;
    if (b->len + extra + 1 <= b->cap)
        return 1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2) {
            b->oom = 1;
            return 0;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return 0;
    }
    b->data = p;
    b->cap = cap;
    return 1;
}

void kiln_ui_putn(kiln_ui_buf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void kiln_ui_put(kiln_ui_buf *b, const char *s)
{
    if (s)
        kiln_ui_putn(b, s, strlen(s));
}

void kiln_ui_putf(kiln_ui_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        kiln_ui_putn(b, small, (size_t)n);
        return;
    }
    if (!reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void kiln_ui_esc(kiln_ui_buf *b, const char *s)
{
    if (!s)
        return;
    const char *run = s;
    for (; *s; s++) {
        const char *ent = NULL;
        switch (*s) {
        case '&': ent = "&amp;"; break;
        case '<': ent = "&lt;"; break;
        case '>': ent = "&gt;"; break;
        case '"': ent = "&quot;"; break;
        case '\'': ent = "&#39;"; break;
        default: break;
        }
        if (ent) {
            kiln_ui_putn(b, run, (size_t)(s - run));
            kiln_ui_put(b, ent);
            run = s + 1;
        }
    }
    kiln_ui_putn(b, run, (size_t)(s - run));
}

void kiln_ui_url(kiln_ui_buf *b, const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!s)
        return;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char ch = *p;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~' || (keep_slash && ch == '/')) {
            kiln_ui_putn(b, (const char *)p, 1);
        } else {
            char enc[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            kiln_ui_putn(b, enc, 3);
        }
    }
}

void kiln_ui_put_href(kiln_ui_buf *b, const char *path)
{
    kiln_ui_put(b, "<a href=\"");
    kiln_ui_put(b, b->link_root);
    kiln_ui_put(b, path);
}

void kiln_ui_put_link(kiln_ui_buf *b, const char *path, const char *id, const char *text)
{
    kiln_ui_put_href(b, path);
    kiln_ui_url(b, id, 0);
    kiln_ui_put(b, "\">");
    kiln_ui_esc(b, text);
    kiln_ui_put(b, "</a>");
}

void kiln_ui_put_badge(kiln_ui_buf *b, const char *kind, const char *value, const char *text)
{
    kiln_ui_put(b, "<span class=\"badge ");
    kiln_ui_put(b, kind);
    kiln_ui_esc(b, value);
    kiln_ui_put(b, "\">");
    kiln_ui_esc(b, text);
    kiln_ui_put(b, "</span>");
}

void kiln_ui_put_tag_rows(kiln_ui_buf *b, const cJSON *tags)
{
    const cJSON *tag;
    cJSON_ArrayForEach(tag, tags) {
        kiln_ui_put(b, "<tr><th>tag ");
        kiln_ui_esc(b, kiln_ui_str(tag, "key"));
        kiln_ui_put(b, "</th><td>");
        kiln_ui_esc(b, kiln_ui_str(tag, "value"));
        kiln_ui_put(b, "</td></tr>");
    }
}

void kiln_ui_buf_free(kiln_ui_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *kiln_ui_unescape(const char *s, size_t len)
{
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%' && i + 2 < len && (hi = hexval(s[i + 1])) >= 0 &&
                   (lo = hexval(s[i + 2])) >= 0) {
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

char *kiln_ui_query_get(const char *query, const char *key)
{
    if (!query)
        return NULL;
    size_t klen = strlen(key);
    const char *p = query;
    while (*p) {
        const char *end = strchr(p, '&');
        size_t plen = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t name_len = eq ? (size_t)(eq - p) : plen;
        if (name_len == klen && memcmp(p, key, klen) == 0)
            return eq ? kiln_ui_unescape(eq + 1, plen - name_len - 1) : kiln_ui_unescape("", 0);
        p += plen;
        if (*p == '&')
            p++;
    }
    return NULL;
}

const char *kiln_ui_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int kiln_ui_i64(const cJSON *obj, const char *key, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) {
        *out = (int64_t)v->valuedouble;
        return 1;
    }
    if (cJSON_IsString(v) && v->valuestring[0]) {
        char *end = NULL;
        errno = 0;
        long long n = strtoll(v->valuestring, &end, 10);
        if (errno == 0 && *end == '\0') {
            *out = n;
            return 1;
        }
    }
    return 0;
}

int kiln_ui_double(const cJSON *v, double *out)
{
    if (cJSON_IsNumber(v)) {
        *out = v->valuedouble;
        return 1;
    }
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return 0;
    /* strtod reads "NaN", "Infinity" and "-Infinity" (any case) too. */
    char *end = NULL;
    double d = strtod(v->valuestring, &end);
    if (*end != '\0')
        return 0;
    *out = d;
    return 1;
}

void kiln_ui_put_time(kiln_ui_buf *b, int64_t ms)
{
    if (ms <= 0) {
        kiln_ui_put(b, "-");
        return;
    }
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    char text[64];
    if (!gmtime_r(&secs, &tm) || strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &tm) == 0) {
        kiln_ui_putf(b, "%" PRId64, ms);
        return;
    }
    kiln_ui_put(b, text);
}

void kiln_ui_put_duration(kiln_ui_buf *b, int64_t ms)
{
    if (ms < 0) {
        kiln_ui_put(b, "-");
    } else if (ms < 1000) {
        kiln_ui_putf(b, "%" PRId64 " ms", ms);
    } else if (ms < 60000) {
        kiln_ui_putf(b, "%.1f s", (double)ms / 1000.0);
    } else if (ms < 3600000) {
        kiln_ui_putf(b, "%" PRId64 " min %02" PRId64 " s", ms / 60000, (ms / 1000) % 60);
    } else {
        kiln_ui_putf(b, "%" PRId64 " h %02" PRId64 " min", ms / 3600000, (ms / 60000) % 60);
    }
}

void kiln_ui_put_number(kiln_ui_buf *b, double v)
{
    if (isnan(v))
        kiln_ui_put(b, "NaN");
    else if (isinf(v))
        kiln_ui_put(b, v > 0 ? "Infinity" : "-Infinity");
    else
        kiln_ui_putf(b, "%.6g", v);
}

static const char STYLE[] =
    "*{box-sizing:border-box}"
    "body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',"
    "sans-serif;color:#1f2933;background:#f5f7fa}"
    "header{background:#1f3a5f;color:#fff;padding:10px 24px;display:flex;align-items:center;"
    "gap:24px}"
    "header .brand{font-weight:700;font-size:16px;letter-spacing:.3px}"
    "header a{color:#d9e6f5;text-decoration:none}header a:hover{color:#fff}"
    "main{padding:18px 24px 40px;max-width:1400px}"
    "h1{font-size:22px;margin:4px 0 12px;word-break:break-all}"
    "h2{font-size:16px;margin:22px 0 8px;color:#334e68}"
    ".crumbs{color:#627d98;font-size:13px}.crumbs a{color:#2f6eb5}"
    "a{color:#2f6eb5}"
    "table{border-collapse:collapse;background:#fff;border:1px solid #d9e2ec;"
    "font-size:13px}"
    "th,td{padding:6px 10px;border-bottom:1px solid #e4e7eb;text-align:left;"
    "vertical-align:top}"
    "th{background:#eef2f7;color:#334e68;font-weight:600;white-space:nowrap}"
    "tr:last-child td{border-bottom:0}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "th.param{background:#e8f0fb}th.metric{background:#eaf6ee}"
    ".scroll{overflow-x:auto;max-width:100%}"
    ".kv th{min-width:120px;max-width:260px;word-break:break-all}"
    ".grid{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}"
    ".top{gap:28px}.top h2{margin-top:4px}"
    "figure{margin:0}"
    ".card{background:#fff;border:1px solid #d9e2ec;border-radius:6px;padding:10px 12px;"
    "box-shadow:0 1px 2px rgba(31,41,51,.06)}"
    "section.artifacts{margin-top:22px;max-width:900px}section.artifacts h2{margin-top:2px}"
    ".chart figcaption{font-size:12px;color:#52606d;margin-top:4px}"
    ".badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;"
    "background:#e4e7eb;color:#334e68;margin:0 4px 2px 0;white-space:nowrap}"
    ".st-FINISHED,.st-READY,.stage-Production{background:#d7f2df;color:#1b6b35}"
    ".st-RUNNING,.stage-Staging{background:#dbe9fb;color:#1f4f8f}"
    ".st-FAILED,.st-KILLED,.st-FAILED_REGISTRATION{background:#fbe0e0;color:#9b1c1c}"
    ".stage-Archived{background:#ececec;color:#616e7c}"
    ".alias{background:#f3e8fd;color:#6b2fa3}"
    ".muted{color:#7b8794}.mono{font-family:ui-monospace,'DejaVu Sans Mono',monospace;"
    "font-size:12px;word-break:break-all}"
    "ul.tree{list-style:none;padding-left:18px;margin:4px 0}"
    "ul.tree li{margin:2px 0}"
    ".err{background:#fff;border:1px solid #f0b4b4;border-left:4px solid #c53030;"
    "padding:12px 16px;border-radius:4px}"
    ".pager{margin-top:10px}";

void kiln_ui_page_begin(kiln_ui_buf *b, const char *title)
{
    kiln_ui_put(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                   "<title>");
    kiln_ui_esc(b, title);
    kiln_ui_put(b, " · kiln-tracking</title><style>");
    kiln_ui_put(b, STYLE);
    kiln_ui_put(b, "</style></head>\n<body><header><span class=\"brand\">kiln-tracking</span>");
    kiln_ui_put_href(b, "/");
    kiln_ui_put(b, "\">Experiments</a>");
    kiln_ui_put_href(b, "/models");
    kiln_ui_put(b, "\">Models</a></header>\n<main>");
}

void kiln_ui_page_end(kiln_ui_buf *b)
{
    kiln_ui_put(b, "</main></body></html>\n");
}
