/* lib/tracking/ui*: escaping, chart scaling and drawing, and every page
 * rendered against a fake REST API (canned MLflow-shaped answers; the
 * requests the UI makes are recorded and checked). The real server and a
 * real browser are in test_tracking_ui_browser.c. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracking/ui.h"
#include "tracking/ui_internal.h"
#include "support/testutil.h"

/* ---- the fake API ---- */

#define MAX_CALLS 64

typedef struct fake_api {
    int ncalls;
    char *calls[MAX_CALLS];   /* "METHOD path {request json}" */
    const char *fail_path;    /* answer this path with fail_status */
    int fail_status;
    int out_of_memory;        /* answer NULL, as the API does without memory */
} fake_api;

/* JSON written with ' for " (readable fixtures); \u0022 makes a real quote. */
static cJSON *J(const char *text)
{
    char *s = strdup(text);
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    cJSON *j = cJSON_Parse(s);
    if (!j)
        fail_msg("bad fixture JSON: %s", s);
    free(s);
    return j;
}

static const char *req_str(const cJSON *req, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int req_is(const cJSON *req, const char *key, const char *value)
{
    const char *v = req_str(req, key);
    return v && strcmp(v, value) == 0;
}

static cJSON *error_json(int *status, int code, const char *error_code, const char *message)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "error_code", error_code);
    cJSON_AddStringToObject(e, "message", message);
    *status = code;
    return e;
}

#define RUN_R1                                                                                   \
    "{'info':{'run_id':'r1','run_uuid':'r1','run_name':'baseline','experiment_id':'1',"        \
    "'user_id':'ana','status':'FINISHED','start_time':1700000000000,'end_time':'1700000065000',"  \
    "'artifact_uri':'mlflow-artifacts:/1/r1/artifacts','lifecycle_stage':'active'},"             \
    "'data':{'metrics':[{'key':'loss','value':0.25,'timestamp':1700000001000,'step':2},"         \
    "{'key':'acc','value':'NaN','timestamp':1700000001000,'step':3}],"                           \
    "'params':[{'key':'lr','value':'0.01'},{'key':'batch','value':'32'}],"                       \
    "'tags':[{'key':'mlflow.runName','value':'baseline'},{'key':'note','value':'x\\u0022<y>'}]}}"

#define RUN_R2                                                                                   \
    "{'info':{'run_id':'r2','experiment_id':'1','status':'RUNNING','start_time':1700000100000,"  \
    "'artifact_uri':'mlflow-artifacts:/1/r2/artifacts','lifecycle_stage':'active'},"             \
    "'data':{'metrics':[{'key':'loss','value':'0.5','timestamp':1,'step':0},"                    \
    "{'key':'f1','value':'Infinity','timestamp':1,'step':0}],"                                   \
    "'params':[{'key':'lr','value':'0.1'},{'key':'optimizer','value':'a&b'}],"                   \
    "'tags':[{'key':'mlflow.runName','value':'wide'}]}}"

#define RUN_R3                                                                                   \
    "{'info':{'run_id':'r3','run_name':'on-s3','experiment_id':'1','status':'FAILED',"          \
    "'start_time':1700000100000,'end_time':1700000100500,"                                       \
    "'artifact_uri':'s3://bucket/mlflow/1/r3/artifacts','lifecycle_stage':'active'},"           \
    "'data':{}}"

#define EXPERIMENT_1                                                                             \
    "{'experiment_id':'1','name':'dry-wet <script>alert(1)</script>',"                           \
    "'artifact_location':'mlflow-artifacts:/1','lifecycle_stage':'active',"                      \
    "'last_update_time':1700000000000,'creation_time':'1699990000000',"                          \
    "'tags':[{'key':'team','value':'vision'}]}"

#define VERSION(v, stage, aliases)                                                               \
    "{'name':'dry wet/cls','version':'" v "','current_stage':'" stage "','status':'READY',"      \
    "'source':'mlflow-artifacts:/1/r1/artifacts/model','run_id':'r1',"                           \
    "'creation_timestamp':1700000200000,'aliases':" aliases "}"

#define MODEL                                                                                    \
    "{'name':'dry wet/cls','creation_timestamp':1700000200000,"                                 \
    "'last_updated_timestamp':1700000300000,'description':'dry or wet?',"                       \
    "'latest_versions':[" VERSION("2", "Production", "['champion']") ","                        \
    VERSION("1", "Archived", "[]") "],'aliases':[{'alias':'champion','version':'2'}]}"

static cJSON *answer_tracking(const char *path, const cJSON *req, int *status)
{
    if (!strcmp(path, "/api/2.0/mlflow/experiments/search")) {
        if (!req_str(req, "page_token"))
            return J("{'experiments':[" EXPERIMENT_1 "],'next_page_token':'e2'}");
        return J("{'experiments':[{'experiment_id':'0','name':'Default',"
                 "'artifact_location':'mlflow-artifacts:/0','creation_time':1699000000000}]}");
    }
    if (!strcmp(path, "/api/2.0/mlflow/experiments/get")) {
        if (req_is(req, "experiment_id", "1"))
            return J("{'experiment':" EXPERIMENT_1 "}");
        char msg[256];
        snprintf(msg, sizeof msg, "No Experiment with id=%s exists",
                 req_str(req, "experiment_id") ? req_str(req, "experiment_id") : "?");
        return error_json(status, 404, "RESOURCE_DOES_NOT_EXIST", msg);
    }
    if (!strcmp(path, "/api/2.0/mlflow/runs/search")) {
        if (!req_str(req, "page_token"))
            return J("{'runs':[" RUN_R1 "," RUN_R2 "],'next_page_token':'tok/2+'}");
        return J("{'runs':[" RUN_R3 "]}");
    }
    if (!strcmp(path, "/api/2.0/mlflow/runs/get")) {
        if (req_is(req, "run_id", "r1"))
            return J("{'run':" RUN_R1 "}");
        if (req_is(req, "run_id", "r3"))
            return J("{'run':" RUN_R3 "}");
        return error_json(status, 404, "RESOURCE_DOES_NOT_EXIST", "Run not found");
    }
    if (!strcmp(path, "/api/2.0/mlflow/metrics/get-history")) {
        if (req_is(req, "metric_key", "loss") && !req_str(req, "page_token"))
            return J("{'metrics':[{'key':'loss','value':0.25,'timestamp':3,'step':2},"
                     "{'key':'loss','value':1.5,'timestamp':1,'step':'0'}],'next_page_token':'h2'}");
        if (req_is(req, "metric_key", "loss"))
            return J("{'metrics':[{'key':'loss','value':0.75,'timestamp':2,'step':1}]}");
        return J("{'metrics':[{'key':'acc','value':'NaN','timestamp':1,'step':0},"
                 "{'key':'acc','value':0.5,'timestamp':2,'step':1},"
                 "{'key':'acc','value':'Infinity','timestamp':3,'step':2},"
                 "{'key':'acc','value':0.75,'timestamp':4,'step':3}]}");
    }
    if (!strcmp(path, "/api/2.0/mlflow/artifacts/list")) {
        if (req_is(req, "run_id", "r3"))
            return J("{'files':[{'path':'plot.png','is_dir':false,'file_size':10}]}");
        if (req_is(req, "path", "model"))
            return J("{'files':[{'path':'model/MLmodel','is_dir':false,'file_size':2048}]}");
        return J("{'root_uri':'mlflow-artifacts:/1/r1/artifacts','files':[{'path':'model',"
                 "'is_dir':true},{'path':'notes <1>.txt','is_dir':false,'file_size':'12'}]}");
    }
    return NULL;
}

static cJSON *answer_registry(const char *path, const cJSON *req, int *status)
{
    if (!strcmp(path, "/api/2.0/mlflow/registered-models/search"))
        return J("{'registered_models':[" MODEL "]}");
    if (!strcmp(path, "/api/2.0/mlflow/registered-models/get")) {
        if (req_is(req, "name", "dry wet/cls"))
            return J("{'registered_model':" MODEL "}");
        return error_json(status, 404, "RESOURCE_DOES_NOT_EXIST", "Registered Model not found");
    }
    if (!strcmp(path, "/api/2.0/mlflow/model-versions/search")) {
        if (!req_is(req, "filter", "name='dry wet/cls'"))
            return J("{}");
        return J("{'model_versions':[" VERSION("1", "Archived", "[]") ","
                 VERSION("2", "Production", "['champion','extra']") "]}");
    }
    return NULL;
}

static cJSON *fake_call(void *ctx, const char *method, const char *path, const cJSON *request,
                        int *status)
{
    fake_api *f = ctx;
    char *req_text = request ? cJSON_PrintUnformatted(request) : strdup("null");
    if (f->ncalls < MAX_CALLS) {
        char *line = NULL;
        assert_true(asprintf(&line, "%s %s %s", method, path, req_text) > 0);
        f->calls[f->ncalls++] = line;
    }
    free(req_text);
    *status = 200;
    if (f->out_of_memory)
        return NULL;
    if (f->fail_path && strcmp(path, f->fail_path) == 0)
        return error_json(status, f->fail_status, "INTERNAL_ERROR", "database is locked <x>");
    /* GET fields arrive as strings, like query parameters. */
    if (!strcmp(method, "GET")) {
        const cJSON *v;
        cJSON_ArrayForEach(v, request)
            if (!cJSON_IsString(v))
                fail_msg("GET %s with a non-string field '%s'", path, v->string);
    }
    cJSON *resp = answer_tracking(path, request, status);
    if (!resp && *status == 200)
        resp = answer_registry(path, request, status);
    if (!resp && *status == 200)
        resp = error_json(status, 404, "ENDPOINT_NOT_FOUND", "no such endpoint");
    return resp;
}

static int fake_setup(void **state)
{
    *state = calloc(1, sizeof(fake_api));
    return 0;
}

static int fake_teardown(void **state)
{
    fake_api *f = *state;
    for (int i = 0; i < f->ncalls; i++)
        free(f->calls[i]);
    free(f);
    return 0;
}

static int count_calls(const fake_api *f, const char *prefix)
{
    int n = 0;
    for (int i = 0; i < f->ncalls; i++)
        n += strncmp(f->calls[i], prefix, strlen(prefix)) == 0;
    return n;
}

static const char *find_call(const fake_api *f, const char *prefix)
{
    for (int i = 0; i < f->ncalls; i++)
        if (strncmp(f->calls[i], prefix, strlen(prefix)) == 0)
            return f->calls[i];
    fail_msg("no call starting with '%s'", prefix);
    return NULL;
}

static int count_str(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

#define assert_has(hay, needle)                                                                  \
    do {                                                                                         \
        if (!strstr((hay), (needle)))                                                            \
            fail_msg("expected '%s' in the page", (needle));                                     \
    } while (0)
#define assert_lacks(hay, needle)                                                                \
    do {                                                                                         \
        if (strstr((hay), (needle)))                                                             \
            fail_msg("did not expect '%s' in the page", (needle));                               \
    } while (0)

/* The page at `path` (with `query`), which must be a whole HTML page
 * answered with `status` (free page.body). */
static kiln_ui_page render(fake_api *f, const char *path, const char *query, int status)
{
    kiln_ui_page page;
    kiln_err err = {0};
    int rc = kiln_tracking_ui_render(path, query, fake_call, f, &page, &err);
    if (rc != KILN_OK)
        fail_msg("render %s: %s", path, err.msg);
    assert_non_null(page.body);
    assert_int_equal(strlen(page.body), page.len);
    assert_string_equal(page.content_type, "text/html; charset=utf-8");
    assert_has(page.body, "<!DOCTYPE html>");
    assert_has(page.body, "</html>");
    assert_int_equal(page.status, status);
    return page;
}

/* A page that must answer `status` and show `part`. */
static void expect_page(fake_api *f, const char *path, int status, const char *part)
{
    kiln_ui_page p = render(f, path, NULL, status);
    assert_has(p.body, part);
    free(p.body);
}

/* ---- escaping and query strings ---- */

static char *buf_text(kiln_ui_buf *b)
{
    assert_false(b->oom);
    char *s = strdup(b->data ? b->data : "");
    kiln_ui_buf_free(b);
    return s;
}

/* The buffer must hold exactly `want`; it is emptied. */
static void assert_buf(kiln_ui_buf *b, const char *want)
{
    char *s = buf_text(b);
    assert_string_equal(s, want);
    free(s);
}

static void test_escape_and_url(void **state)
{
    kiln_ui_buf b = {0};
    kiln_ui_esc(&b, "<a href=\"x\" onclick='y'>&amp;</a>");
    assert_buf(&b, "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;");
    kiln_ui_esc(&b, NULL);
    kiln_ui_esc(&b, "plain ünïcode");
    assert_buf(&b, "plain ünïcode");
    kiln_ui_url(&b, "a b/c?d=e&f\"<ü", 0);
    assert_buf(&b, "a%20b%2Fc%3Fd%3De%26f%22%3C%C3%BC");
    kiln_ui_url(&b, "model/x y.bin", 1);
    assert_buf(&b, "model/x%20y.bin");
    /* A long formatted value grows the buffer past its first block. */
    char big[9000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    kiln_ui_putf(&b, "[%s]", big);
    assert_int_equal(b.len, sizeof big + 1);
    kiln_ui_buf_free(&b);
}

static void test_query_strings(void **state)
{
    char *v = kiln_ui_query_get("a=1&page_token=tok%2F2%2B+x&b", "page_token");
    assert_string_equal(v, "tok/2+ x");
    free(v);
    v = kiln_ui_query_get("a=1&b", "b");
    assert_string_equal(v, "");
    free(v);
    assert_null(kiln_ui_query_get("a=1&ab=2", "b"));
    assert_null(kiln_ui_query_get(NULL, "b"));
    v = kiln_ui_unescape("%zz%4", 5); /* malformed escapes stay as they are */
    assert_string_equal(v, "%zz%4");
    free(v);
}

static void test_value_formatting(void **state)
{
    kiln_ui_buf b = {0};
    kiln_ui_put_time(&b, 1700000000123);
    kiln_ui_put(&b, "|");
    kiln_ui_put_time(&b, 0);
    kiln_ui_put(&b, "|");
    kiln_ui_put_duration(&b, 850);
    kiln_ui_put(&b, "|");
    kiln_ui_put_duration(&b, 12345);
    kiln_ui_put(&b, "|");
    kiln_ui_put_duration(&b, 245000);
    kiln_ui_put(&b, "|");
    kiln_ui_put_duration(&b, 7380000);
    kiln_ui_put(&b, "|");
    kiln_ui_put_number(&b, NAN);
    kiln_ui_put(&b, "|");
    kiln_ui_put_number(&b, -INFINITY);
    kiln_ui_put(&b, "|");
    kiln_ui_put_number(&b, 0.1 + 0.2);
    assert_buf(&b, "2023-11-14 22:13:20|-|850 ms|12.3 s|4 min 05 s|2 h 03 min|NaN|-Infinity|0.3");

    cJSON *obj = J("{'a':'123','b':456,'c':'x1','d':'NaN','e':'-Infinity','f':'1e-3'}");
    int64_t n = 0;
    assert_true(kiln_ui_i64(obj, "a", &n) && n == 123);
    assert_true(kiln_ui_i64(obj, "b", &n) && n == 456);
    assert_false(kiln_ui_i64(obj, "c", &n));
    assert_false(kiln_ui_i64(obj, "missing", &n));
    double d = 0;
    assert_true(kiln_ui_double(cJSON_GetObjectItem(obj, "d"), &d) && isnan(d));
    assert_true(kiln_ui_double(cJSON_GetObjectItem(obj, "e"), &d) && isinf(d) && d < 0);
    assert_true(kiln_ui_double(cJSON_GetObjectItem(obj, "f"), &d) && d == 1e-3);
    assert_false(kiln_ui_double(cJSON_GetObjectItem(obj, "c"), &d));
    cJSON_Delete(obj);
}

/* ---- chart scaling ---- */

/* lo/hi finite and ordered, ticks inside [lo, hi], ascending, evenly spaced
 * by a 1-2-5 step, and the data inside the range. */
static void check_axis(const kiln_ui_axis *a, double data_lo, double data_hi)
{
    assert_true(isfinite(a->lo) && isfinite(a->hi));
    assert_true(a->lo < a->hi);
    assert_true(a->nticks >= 2 && a->nticks <= KILN_UI_MAX_TICKS);
    assert_true(a->lo <= data_lo && data_hi <= a->hi);
    assert_true(a->ticks[0] >= a->lo && a->ticks[a->nticks - 1] <= a->hi);
    for (int i = 1; i < a->nticks; i++)
        assert_true(a->ticks[i] > a->ticks[i - 1]);
    if (a->step > 0) {
        double mant = a->step / pow(10.0, floor(log10(a->step)));
        assert_true(fabs(mant - 1) < 1e-9 || fabs(mant - 2) < 1e-9 || fabs(mant - 5) < 1e-9);
        assert_true(fabs(a->ticks[a->nticks - 1] - a->hi) < a->step * 1e-6);
    }
    assert_true(fabs(kiln_ui_axis_map(a, a->lo, 10, 110) - 10) < 1e-9);
    assert_true(fabs(kiln_ui_axis_map(a, a->hi, 10, 110) - 110) < 1e-9);
}

static void test_axis_fit(void **state)
{
    kiln_ui_axis a;
    double v1[] = {0.93, 0.1, 0.5};
    kiln_ui_axis_fit(v1, 3, 1, 0, &a);
    check_axis(&a, 0.1, 0.93);
    assert_int_equal(a.nfinite, 3);
    assert_true(a.hi - a.lo <= 2.0); /* tight, not 0..10 */

    double v2[] = {NAN, 1, INFINITY, 3, -INFINITY};
    kiln_ui_axis_fit(v2, 5, 1, 0, &a);
    check_axis(&a, 1, 3);
    assert_int_equal(a.nfinite, 2);
    assert_true(a.hi <= 4 && a.lo >= 0);

    double one[] = {5};
    kiln_ui_axis_fit(one, 1, 1, 0, &a);
    check_axis(&a, 5, 5);
    assert_true(a.lo < 5 && a.hi > 5);

    double flat[] = {2, 2, 2};
    kiln_ui_axis_fit(flat, 3, 1, 0, &a);
    check_axis(&a, 2, 2);
    assert_true(a.lo < 2 && a.hi > 2);

    double zeros[] = {0, 0};
    kiln_ui_axis_fit(zeros, 2, 1, 0, &a);
    check_axis(&a, 0, 0);

    double nans[] = {NAN, INFINITY};
    kiln_ui_axis_fit(nans, 2, 1, 0, &a);
    assert_int_equal(a.nfinite, 0);
    check_axis(&a, 0, 1);

    kiln_ui_axis_fit(NULL, 0, 1, 0, &a);
    check_axis(&a, 0, 1);

    double tiny[] = {1, 1 + 1e-15};
    kiln_ui_axis_fit(tiny, 2, 1, 0, &a);
    check_axis(&a, 1, 1);
    assert_true(a.step > 1e-3); /* labels that differ */

    double huge[] = {-DBL_MAX, DBL_MAX, 0};
    kiln_ui_axis_fit(huge, 3, 1, 0, &a);
    check_axis(&a, -DBL_MAX, DBL_MAX);
    double mid = kiln_ui_axis_map(&a, 0, 0, 100);
    assert_true(mid > 49 && mid < 51);

    double negative[] = {-1e-6, -3e-6};
    kiln_ui_axis_fit(negative, 2, 1, 0, &a);
    check_axis(&a, -3e-6, -1e-6);

    /* Steps: whole-number ticks, even for a single step. */
    double steps[] = {0, 1, 2, 3};
    kiln_ui_axis_fit(steps, 4, 1, 1, &a);
    check_axis(&a, 0, 3);
    for (int i = 0; i < a.nticks; i++)
        assert_true(a.ticks[i] == floor(a.ticks[i]));
    double step0[] = {7};
    kiln_ui_axis_fit(step0, 1, 1, 1, &a);
    check_axis(&a, 7, 7);
    for (int i = 0; i < a.nticks; i++)
        assert_true(a.ticks[i] == floor(a.ticks[i]));

    /* The stride picks y out of (x, y) pairs. */
    kiln_ui_point pts[] = {{0, 10}, {1000, 20}};
    kiln_ui_axis_fit(&pts[0].y, 2, 2, 0, &a);
    check_axis(&a, 10, 20);
    assert_true(a.hi < 100);
}

static char *chart(const char *title, const kiln_ui_point *pts, size_t n)
{
    kiln_ui_buf b = {0};
    kiln_ui_chart_svg(&b, title, "step", 1, pts, n);
    char *s = buf_text(&b);
    /* A NaN or Inf that leaked into a coordinate prints as nan / inf. */
    assert_lacks(s, "nan");
    assert_lacks(s, "inf");
    assert_int_equal(count_str(s, "<svg"), 1);
    assert_int_equal(count_str(s, "</svg>"), 1);
    assert_int_equal(count_str(s, "<path class=\"line\""), 1);
    return s;
}

static void test_chart_svg(void **state)
{
    kiln_ui_point pts[] = {{0, 1.0}, {1, 0.5}, {2, NAN}, {3, 0.25}, {4, INFINITY}, {5, 0.2}};
    char *s = chart("loss <&>", pts, 6);
    assert_has(s, "<title>loss &lt;&amp;&gt;</title>");
    const char *d = strstr(s, " d=\"");
    assert_non_null(d);
    char path[512];
    snprintf(path, sizeof path, "%.*s", (int)(strchr(d + 4, '"') - d - 4), d + 4);
    /* Three segments: before the NaN, between NaN and Inf, after Inf. */
    assert_int_equal(count_str(path, "M"), 3);
    assert_int_equal(count_str(path, "L"), 1);
    assert_int_equal(count_str(s, "<circle"), 4);
    assert_true(count_str(s, "text-anchor=\"end\"") >= 2); /* y tick labels */
    assert_has(s, ">step</text>");
    free(s);

    kiln_ui_point one[] = {{0, 0.42}};
    s = chart("acc", one, 1);
    assert_int_equal(count_str(s, "<circle"), 1);
    assert_lacks(s, "no finite values");
    free(s);

    kiln_ui_point bad[] = {{0, NAN}, {1, -INFINITY}};
    s = chart("acc", bad, 2);
    assert_has(s, "no finite values to draw");
    assert_int_equal(count_str(s, "<circle"), 0);
    free(s);

    s = chart("empty", NULL, 0);
    assert_has(s, "no finite values to draw");
    free(s);

    kiln_ui_point flat[] = {{0, 3}, {1, 3}, {2, 3}};
    s = chart("flat", flat, 3);
    assert_int_equal(count_str(s, "<circle"), 3);
    free(s);
}

/* A long history: the path stays small, and a one-point spike and dip
 * still reach the top and bottom of the plot. */
static void test_chart_long_series(void **state)
{
    size_t n = 200000;
    kiln_ui_point *pts = malloc(n * sizeof *pts);
    for (size_t i = 0; i < n; i++) {
        pts[i].x = (double)i;
        pts[i].y = sin((double)i / 5000.0);
    }
    pts[123457].y = 50;   /* spike */
    pts[150001].y = -50;  /* dip */
    pts[170000].y = NAN;  /* a gap */
    kiln_ui_buf b = {0};
    kiln_ui_chart_svg(&b, "loss", "step", 1, pts, n);
    char *s = buf_text(&b);
    assert_true(strlen(s) < 100000);
    const char *d = strstr(s, " d=\"");
    assert_non_null(d);
    char *path = strndup(d + 4, (size_t)(strchr(d + 4, '"') - d - 4));
    assert_int_equal(count_str(path, "M"), 2); /* broken once, at the NaN */
    kiln_ui_axis ay;
    double ys[] = {-50, 50};
    kiln_ui_axis_fit(ys, 2, 1, 0, &ay);
    char top[32], bottom[32];
    /* The plot area spans y = 234 (bottom) to 30 (top) in the SVG. */
    snprintf(top, sizeof top, " %.1f", kiln_ui_axis_map(&ay, 50, 234, 30));
    snprintf(bottom, sizeof bottom, " %.1f", kiln_ui_axis_map(&ay, -50, 234, 30));
    assert_has(path, top);
    assert_has(path, bottom);
    assert_int_equal(count_str(s, "<circle"), 0);
    free(path);
    free(s);
    free(pts);
}

static void test_history_points(void **state)
{
    int oom = 0;
    size_t n = 0;
    const char *label = NULL;
    cJSON *h = J("[{'key':'l','value':3,'timestamp':30,'step':'2'},"
                 "{'key':'l','value':'NaN','timestamp':10,'step':0},"
                 "{'key':'l','timestamp':20,'step':1}]");
    kiln_ui_point *p = kiln_ui_history_points(h, &n, &label, &oom);
    assert_int_equal(n, 3);
    assert_string_equal(label, "step");
    assert_true(p[0].x == 0 && isnan(p[0].y));
    assert_true(p[1].x == 1 && isnan(p[1].y)); /* no value: not drawn */
    assert_true(p[2].x == 2 && p[2].y == 3);
    free(p);
    cJSON_Delete(h);

    /* Logged without steps: x is time since the first point. */
    h = J("[{'key':'l','value':1,'timestamp':1700000002500,'step':0},"
          "{'key':'l','value':2,'timestamp':1700000000000,'step':0}]");
    p = kiln_ui_history_points(h, &n, &label, &oom);
    assert_int_equal(n, 2);
    assert_string_equal(label, "time (s)");
    assert_true(p[0].x == 0 && p[0].y == 2 && p[1].x == 2.5 && p[1].y == 1);
    free(p);
    cJSON_Delete(h);

    h = J("[]");
    assert_null(kiln_ui_history_points(h, &n, &label, &oom));
    assert_int_equal(n, 0);
    assert_false(oom);
    cJSON_Delete(h);
}

/* ---- pages ---- */

static void test_experiments_page(void **state)
{
    fake_api *f = *state;
    kiln_ui_page p = render(f, "/", NULL, 200);
    assert_has(p.body, "dry-wet &lt;script&gt;alert(1)&lt;/script&gt;");
    assert_lacks(p.body, "<script");
    assert_has(p.body, "href=\"/experiments/1\"");
    assert_has(p.body, "Default"); /* from the second page of results */
    assert_int_equal(count_calls(f, "POST /api/2.0/mlflow/experiments/search"), 2);
    assert_has(find_call(f, "POST /api/2.0/mlflow/experiments/search"), "\"max_results\":1000");
    assert_has(p.body, "2023-11-14 22:13:20"); /* last update */
    free(p.body);
    expect_page(f, "/experiments", 200, "Default");
}

static void test_experiment_runs_table(void **state)
{
    fake_api *f = *state;
    kiln_ui_page p = render(f, "/experiments/1", NULL, 200);
    const char *search = find_call(f, "POST /api/2.0/mlflow/runs/search");
    assert_has(search, "\"experiment_ids\":[\"1\"]");
    assert_has(search, "\"run_view_type\":\"ACTIVE_ONLY\"");
    assert_lacks(search, "page_token");
    /* Columns: params then metrics, each sorted, every key of every run. */
    const char *cols[] = {">Run<", ">Status<", ">Start (UTC)<", ">Duration<", ">batch<", ">lr<",
                          ">optimizer<", ">acc<", ">f1<", ">loss<"};
    const char *at = strstr(p.body, "<table class=\"runs\"");
    assert_non_null(at);
    for (size_t i = 0; i < sizeof cols / sizeof *cols; i++) {
        const char *next = strstr(at, cols[i]);
        if (!next)
            fail_msg("column %s missing or out of order", cols[i]);
        at = next;
    }
    assert_has(p.body, "href=\"/runs/r1\">baseline</a>");
    assert_has(p.body, "href=\"/runs/r2\">wide</a>"); /* name from mlflow.runName */
    assert_has(p.body, "<td>0.01</td>");
    assert_has(p.body, "<td>a&amp;b</td>");
    assert_has(p.body, "<td class=\"num\">0.25</td>");
    assert_has(p.body, "<td class=\"num\">NaN</td>");
    assert_has(p.body, "<td class=\"num\">Infinity</td>");
    assert_has(p.body, "1 min 05 s");
    assert_has(p.body, "running");
    assert_has(p.body, "vision"); /* experiment tag */
    assert_has(p.body, "href=\"/experiments/1?page_token=tok%2F2%2B\"");
    assert_lacks(p.body, "<script");
    free(p.body);

    /* The next page: the token goes back to the API decoded. */
    p = render(f, "/experiments/1/", "page_token=tok%2F2%2B", 200);
    assert_int_equal(count_calls(f, "POST /api/2.0/mlflow/runs/search"), 2);
    assert_has(f->calls[f->ncalls - 1], "\"page_token\":\"tok/2+\"");
    assert_has(p.body, "on-s3");
    assert_lacks(p.body, "page_token=");
    free(p.body);
}

static void test_run_page(void **state)
{
    fake_api *f = *state;
    kiln_ui_page p = render(f, "/runs/r1", NULL, 200);
    /* One chart per metric, the loss history read across two pages. */
    assert_int_equal(count_str(p.body, "<svg"), 2);
    assert_int_equal(count_str(p.body, "<path class=\"line\""), 2);
    assert_int_equal(count_calls(f, "GET /api/2.0/mlflow/metrics/get-history"), 3);
    assert_has(find_call(f, "GET /api/2.0/mlflow/metrics/get-history"), "\"run_id\":\"r1\"");
    assert_has(p.body, "data-metric=\"loss\"");
    assert_has(p.body, "data-metric=\"acc\"");
    assert_has(p.body, "3 points");
    assert_has(p.body, "(2 not finite, not drawn)");
    /* Info, params, tags. */
    assert_has(p.body, "<h1>baseline</h1>");
    assert_has(p.body, "dry-wet &lt;script&gt;");
    assert_has(p.body, "<th>batch</th><td class=\"mono\">32</td>");
    assert_has(p.body, "x&quot;&lt;y&gt;");
    assert_has(p.body, "1 min 05 s");
    assert_lacks(p.body, "<script");
    assert_lacks(p.body, "<y>");
    /* The artifact tree, with links through the proxy. */
    assert_has(p.body, "href=\"/api/2.0/mlflow-artifacts/artifacts/1/r1/artifacts/"
                       "notes%20%3C1%3E.txt\"");
    assert_has(p.body, "notes &lt;1&gt;.txt");
    assert_has(p.body, "href=\"/api/2.0/mlflow-artifacts/artifacts/1/r1/artifacts/model/"
                       "MLmodel\"");
    assert_has(p.body, "2.0 KiB");
    assert_int_equal(count_calls(f, "GET /api/2.0/mlflow/artifacts/list"), 2);
    free(p.body);
}

static void test_run_page_elsewhere(void **state)
{
    fake_api *f = *state;
    kiln_ui_page p = render(f, "/runs/r3", NULL, 200);
    assert_has(p.body, "plot.png");
    assert_lacks(p.body, "mlflow-artifacts/artifacts/");
    assert_has(p.body, "not served by this server");
    assert_has(p.body, "Metrics (0)");
    assert_int_equal(count_str(p.body, "<svg"), 0);
    free(p.body);
}

static void test_models_pages(void **state)
{
    fake_api *f = *state;
    kiln_ui_page p = render(f, "/models", NULL, 200);
    assert_has(p.body, "href=\"/models/dry%20wet%2Fcls\">dry wet/cls</a>");
    assert_has(p.body, "stage-Production\">Production</span>");
    assert_has(p.body, "@champion → v2");
    free(p.body);

    p = render(f, "/models/dry wet/cls", NULL, 200);
    assert_has(find_call(f, "GET /api/2.0/mlflow/model-versions/search"),
               "\"filter\":\"name='dry wet/cls'\"");
    const char *v2 = strstr(p.body, "<tr><td><b>2</b>");
    const char *v1 = strstr(p.body, "<tr><td><b>1</b>");
    assert_non_null(v2);
    assert_non_null(v1);
    assert_true(v2 < v1); /* newest first */
    assert_has(v2, "Production");
    assert_has(v2, "@champion");
    assert_has(v2, "@extra");
    char *row1 = strndup(v1, (size_t)(strstr(v1, "</tr>") - v1));
    assert_lacks(row1, "@champion"); /* the alias points at v2 only */
    assert_has(row1, "Archived");
    free(row1);
    assert_has(p.body, "href=\"/runs/r1\"");
    assert_has(p.body, "dry or wet?");
    free(p.body);
}

static void test_not_found_and_api_errors(void **state)
{
    fake_api *f = *state;
    const char *missing[] = {"/nope", "/experiments/1/runs", "/runs/", "/runs/a/b", "/modelsx"};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++)
        expect_page(f, missing[i], 404, "Not found");
    assert_int_equal(f->ncalls, 0);

    kiln_ui_page p = render(f, "/nope/<img src=x>", NULL, 404);
    assert_lacks(p.body, "<img");
    free(p.body);

    /* The API's own status and message, escaped. */
    p = render(f, "/experiments/<img>", NULL, 404);
    assert_has(p.body, "RESOURCE_DOES_NOT_EXIST");
    assert_has(p.body, "No Experiment with id=&lt;img&gt; exists");
    assert_lacks(p.body, "<img");
    free(p.body);

    expect_page(f, "/runs/nope", 404, "Run not found");
    expect_page(f, "/models/unknown", 404, "Registered Model not found");

    f->fail_path = "/api/2.0/mlflow/metrics/get-history";
    f->fail_status = 500;
    p = render(f, "/runs/r1", NULL, 500);
    assert_has(p.body, "INTERNAL_ERROR");
    assert_has(p.body, "database is locked &lt;x&gt;");
    assert_lacks(p.body, "<svg"); /* the error page replaces the half-drawn page */
    free(p.body);

    f->fail_path = "/api/2.0/mlflow/registered-models/search";
    f->fail_status = 503;
    expect_page(f, "/models", 503, "database is locked &lt;x&gt;");
}

static void test_render_failures(void **state)
{
    fake_api *f = *state;
    kiln_ui_page p;
    kiln_err err = {0};
    f->out_of_memory = 1;
    assert_int_equal(kiln_tracking_ui_render("/", NULL, fake_call, f, &p, &err), KILN_ENOMEM);
    assert_null(p.body);
    assert_has(err.msg, "out of memory");
    assert_int_equal(kiln_tracking_ui_render("/", NULL, NULL, f, &p, &err), KILN_EINVAL);
    assert_int_equal(kiln_tracking_ui_render(NULL, NULL, fake_call, f, &p, &err), KILN_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_and_url),
        cmocka_unit_test(test_query_strings),
        cmocka_unit_test(test_value_formatting),
        cmocka_unit_test(test_axis_fit),
        cmocka_unit_test(test_chart_svg),
        cmocka_unit_test(test_chart_long_series),
        cmocka_unit_test(test_history_points),
        cmocka_unit_test_setup_teardown(test_experiments_page, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_experiment_runs_table, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_run_page, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_run_page_elsewhere, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_models_pages, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_not_found_and_api_errors, fake_setup,
                                        fake_teardown),
        cmocka_unit_test_setup_teardown(test_render_failures, fake_setup, fake_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
