/* lib/tracking/ui_internal.h — the pieces of kiln-tracking's web UI
 * (lib/tracking/ui*.c), shared between its files and its unit tests.
 *
 * kiln_ui_buf: a growing HTML buffer with a sticky out-of-memory flag, so
 * page code appends without checking every call and the renderer checks
 * once at the end. Every value that comes from the API goes through
 * kiln_ui_esc (HTML text and quoted attributes alike) or kiln_ui_url
 * (a path segment or query value, percent-encoded).
 *
 * kiln_ui_axis / kiln_ui_chart_svg: the SVG line chart of a metric's
 * history; NaN and infinite values are skipped (the line breaks there),
 * one point or a constant series still gets a sensible axis.
 */
#ifndef KILN_TRACKING_UI_INTERNAL_H
#define KILN_TRACKING_UI_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "tracking/ui.h"

/* ---- HTML buffer (ui_html.c) ---- */
typedef struct kiln_ui_buf {
    char *data; /* NUL-terminated when len > 0; owned */
    size_t len, cap;
    int oom;    /* an append failed: the content is incomplete */
    /* The static prefix every link to this server starts with (NULL or "":
     * none; borrowed). Here, not in the page context, because every writer
     * of a link holds the buffer. */
    const char *link_root;
} kiln_ui_buf;

void kiln_ui_put(kiln_ui_buf *b, const char *s);
void kiln_ui_putn(kiln_ui_buf *b, const char *s, size_t n);
void kiln_ui_putf(kiln_ui_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* `s` with & < > " ' as entities: safe in text and in quoted attributes.
 * NULL prints nothing. */
void kiln_ui_esc(kiln_ui_buf *b, const char *s);
/* `s` percent-encoded (all but A-Z a-z 0-9 - . _ ~, and '/' when
 * keep_slash): safe in a URL path segment, a query value and an attribute. */
void kiln_ui_url(kiln_ui_buf *b, const char *s, int keep_slash);
void kiln_ui_buf_free(kiln_ui_buf *b);

/* `<a href="` + the link root + `path`, the attribute left open for the
 * caller to go on (a literal path of this server, starting with '/'). */
void kiln_ui_put_href(kiln_ui_buf *b, const char *path);
/* <a href="`root``path``id`">`text`</a>, `id` percent-encoded, `text` escaped. */
void kiln_ui_put_link(kiln_ui_buf *b, const char *path, const char *id, const char *text);
/* <span class="badge `kind``value`">`text`</span>, both escaped: the
 * value's class picks the colour ("st-" statuses, "stage-" stages). */
void kiln_ui_put_badge(kiln_ui_buf *b, const char *kind, const char *value, const char *text);
/* A "tag <key>" row of a <table class="kv"> per element of a {key, value} array. */
void kiln_ui_put_tag_rows(kiln_ui_buf *b, const cJSON *tags);

/* Percent-decode `s` ('+' as space, for query strings) into a malloc'ed
 * string; NULL when out of memory. Malformed escapes are kept as is. */
char *kiln_ui_unescape(const char *s, size_t len);
/* The decoded value of `key` in a raw query string (malloc'ed), or NULL. */
char *kiln_ui_query_get(const char *query, const char *key);

/* ---- values from the API's JSON (ui_html.c) ---- */
/* The string field `key` of `obj`, or NULL when absent / not a string. */
const char *kiln_ui_str(const cJSON *obj, const char *key);
/* An int64 field given as a JSON number or a decimal string. 1 if found. */
int kiln_ui_i64(const cJSON *obj, const char *key, int64_t *out);
/* A double given as a number or as "NaN", "Infinity", "-Infinity" or a
 * decimal string. 1 if found. */
int kiln_ui_double(const cJSON *v, double *out);
/* Milliseconds since the epoch as "YYYY-MM-DD HH:MM:SS" UTC; 0 or less: "-". */
void kiln_ui_put_time(kiln_ui_buf *b, int64_t ms);
/* A duration in ms as "850 ms", "12.3 s", "4 min 05 s", "2 h 03 min". */
void kiln_ui_put_duration(kiln_ui_buf *b, int64_t ms);
/* A double with %.6g, and NaN / Inf spelled as MLflow does. */
void kiln_ui_put_number(kiln_ui_buf *b, double v);

/* ---- page frame (ui_html.c) ---- */
/* Doctype, head with the inline style, the nav bar, and <main>. */
void kiln_ui_page_begin(kiln_ui_buf *b, const char *title);
void kiln_ui_page_end(kiln_ui_buf *b);

/* ---- the SVG chart (ui_chart.c) ---- */
typedef struct kiln_ui_point {
    double x, y;
} kiln_ui_point;

#define KILN_UI_MAX_TICKS 12

typedef struct kiln_ui_axis {
    double lo, hi;      /* the drawn range, lo < hi, both finite */
    double step;        /* distance between ticks */
    double ticks[KILN_UI_MAX_TICKS];
    int nticks;
    size_t nfinite;     /* how many finite values the axis was fitted to */
} kiln_ui_axis;

/* Fit an axis with "nice" ticks (1, 2, 5 × 10^k) to the finite values
 * among v[0..n) (stride in doubles between values, e.g. 2 for the y of a
 * kiln_ui_point array). With no finite value the axis is [0, 1]; a single
 * value or a constant series gets a range around it. `integer_ticks`:
 * ticks are whole numbers (steps). */
void kiln_ui_axis_fit(const double *v, size_t n, size_t stride, int integer_ticks,
                      kiln_ui_axis *axis);
/* Map `v` from the axis range onto [pix_lo, pix_hi]. */
double kiln_ui_axis_map(const kiln_ui_axis *axis, double v, double pix_lo, double pix_hi);

/* Append an <svg> line chart of the points (in the order given) titled
 * `title`, x axis labelled `x_label`. Points with a non-finite x or y are
 * skipped and break the line; with no finite point the SVG says so. */
void kiln_ui_chart_svg(kiln_ui_buf *b, const char *title, const char *x_label,
                       int integer_x, const kiln_ui_point *pts, size_t n);

/* Turn a get-history "metrics" array into points sorted by step, then
 * timestamp: x = step, or seconds since the first timestamp when every
 * point has the same step (metrics logged without steps). Sets *x_label
 * to a static "step" or "time (s)". Returns a malloc'ed array (*n points;
 * NULL with *n = 0 for an empty array) and sets *oom on allocation failure. */
kiln_ui_point *kiln_ui_history_points(const cJSON *metrics, size_t *n, const char **x_label,
                                      int *oom);

/* ---- rendering context (ui.c) ---- */
typedef struct kiln_ui_ctx {
    kiln_tracking_api_fn api;
    void *api_ctx;
    const char *query;  /* raw query string, may be NULL */
    kiln_ui_buf buf;
    int status;         /* HTTP status of the page */
    int failed;         /* an error page replaced the content: stop rendering */
} kiln_ui_ctx;

/* Call the API, taking ownership of `request` (may be NULL). On a 200
 * answer returns the response (caller frees); on any other answer renders
 * the error page with the API's status and message into ctx and returns
 * NULL with ctx->failed set (also when out of memory, with buf.oom set). */
cJSON *kiln_ui_call(kiln_ui_ctx *c, const char *method, const char *path, cJSON *request);
/* Every element of the array `list` over the pages of a search, gathered
 * in one array (caller frees): `request` (taken over) asks for the first
 * page, a copy of it with "page_token" for each next one, until a page
 * has no next_page_token, after max_pages pages, or once max_items
 * elements are in. NULL when a call failed (as kiln_ui_call) or, with
 * buf.oom set, when out of memory. */
cJSON *kiln_ui_call_pages(kiln_ui_ctx *c, const char *method, const char *path, cJSON *request,
                          const char *list, int max_pages, int max_items);
/* A GET request object from key/value string pairs, NULL-terminated;
 * NULL values are left out. Sets buf.oom on allocation failure. */
cJSON *kiln_ui_get_req(kiln_ui_ctx *c, ...) __attribute__((sentinel));
/* Add a field to a request object; buf.oom on failure (obj NULL is fine). */
void kiln_ui_add_str(kiln_ui_ctx *c, cJSON *obj, const char *key, const char *value);
void kiln_ui_add_num(kiln_ui_ctx *c, cJSON *obj, const char *key, double value);
/* Add `key`: [value] (a one-string array). */
void kiln_ui_add_str_list(kiln_ui_ctx *c, cJSON *obj, const char *key, const char *value);
/* Replace the page with an error page (`status`, the message printed
 * escaped) and set ctx->failed. */
void kiln_ui_error(kiln_ui_ctx *c, int status, const char *title, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- pages ---- */
void kiln_ui_page_experiments(kiln_ui_ctx *c);                   /* ui_experiments.c */
void kiln_ui_page_experiment(kiln_ui_ctx *c, const char *exp_id); /* ui_experiments.c */
void kiln_ui_page_run(kiln_ui_ctx *c, const char *run_id);        /* ui_run.c */
void kiln_ui_page_models(kiln_ui_ctx *c);                         /* ui_models.c */
void kiln_ui_page_model(kiln_ui_ctx *c, const char *name);        /* ui_models.c */

#endif
