/* lib/tracking/ui* behind a path prefix (kiln-tracking --static-prefix):
 * every page rendered with a prefix against a fake REST API, each of its
 * links checked to carry the prefix; the same pages requested with the
 * prefix still on the path; without a prefix the bytes of every page are
 * those of kiln_tracking_ui_render; and kiln_tracking_ui_prefix_check's
 * verdicts. The program's flag and its HTTP side are in
 * test_kiln_tracking_cli.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracking/ui.h"
#include "support/testutil.h"

#define PREFIX "/mlflow"

/* ---- a fake API: one of everything, MLflow-shaped ---- */

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

static int req_is(const cJSON *req, const char *key, const char *value)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, key);
    return cJSON_IsString(v) && strcmp(v->valuestring, value) == 0;
}

#define EXPERIMENT                                                                               \
    "{'experiment_id':'1','name':'dry-wet','artifact_location':'mlflow-artifacts:/1'}"
#define RUN(id, name)                                                                            \
    "{'info':{'run_id':'" id "','run_name':'" name "','experiment_id':'1','status':'FINISHED',"  \
    "'start_time':1700000000000,'end_time':1700000005000,"                                       \
    "'artifact_uri':'mlflow-artifacts:/1/" id "/artifacts'},"                                    \
    "'data':{'metrics':[{'key':'loss','value':0.5,'timestamp':1,'step':0}],"                    \
    "'params':[{'key':'lr','value':'0.1'}]}}"
#define VERSION "{'name':'cls','version':'1','current_stage':'Production','run_id':'r1'}"
#define MODEL "{'name':'cls','latest_versions':[" VERSION "]}"

static cJSON *not_found(int *status, const char *message)
{
    *status = 404;
    cJSON *e = J("{'error_code':'RESOURCE_DOES_NOT_EXIST'}");
    cJSON_AddStringToObject(e, "message", message);
    return e;
}

static cJSON *fake_call(void *ctx, const char *method, const char *path, const cJSON *req,
                        int *status)
{
    (void)method;
    int *calls = ctx;
    (*calls)++;
    *status = 200;
    if (!strcmp(path, "/api/2.0/mlflow/experiments/search"))
        return J("{'experiments':[" EXPERIMENT "]}");
    if (!strcmp(path, "/api/2.0/mlflow/experiments/get"))
        return req_is(req, "experiment_id", "1") ? J("{'experiment':" EXPERIMENT "}")
                                                 : not_found(status, "No such experiment");
    if (!strcmp(path, "/api/2.0/mlflow/runs/search"))
        return J("{'runs':[" RUN("r1", "baseline") "," RUN("r2", "wide") "],"
                 "'next_page_token':'tok/2+'}");
    if (!strcmp(path, "/api/2.0/mlflow/runs/get"))
        return req_is(req, "run_id", "r1") ? J("{'run':" RUN("r1", "baseline") "}")
                                           : not_found(status, "Run not found");
    if (!strcmp(path, "/api/2.0/mlflow/metrics/get-history"))
        return J("{'metrics':[{'key':'loss','value':0.5,'timestamp':1,'step':0},"
                 "{'key':'loss','value':0.25,'timestamp':2,'step':1}]}");
    if (!strcmp(path, "/api/2.0/mlflow/artifacts/list")) {
        if (req_is(req, "path", "model"))
            return J("{'files':[{'path':'model/MLmodel','is_dir':false,'file_size':20}]}");
        return J("{'files':[{'path':'model','is_dir':true},"
                 "{'path':'notes 1.txt','is_dir':false,'file_size':12}]}");
    }
    if (!strcmp(path, "/api/2.0/mlflow/registered-models/search"))
        return J("{'registered_models':[" MODEL "]}");
    if (!strcmp(path, "/api/2.0/mlflow/registered-models/get"))
        return J("{'registered_model':" MODEL "}");
    if (!strcmp(path, "/api/2.0/mlflow/model-versions/search"))
        return J("{'model_versions':[" VERSION "]}");
    return not_found(status, "no such endpoint");
}

/* ---- helpers ---- */

#define assert_has(hay, needle)                                                                  \
    do {                                                                                         \
        if (!strstr((hay), (needle)))                                                            \
            fail_msg("expected '%s' in the page", (needle));                                     \
    } while (0)

/* The page at `path` under `prefix` (NULL: kiln_tracking_ui_render), which
 * must answer `status`; the caller frees the body. */
static char *render(const char *prefix, const char *path, const char *query, int status)
{
    int calls = 0;
    kiln_ui_page page;
    kiln_err err = {0};
    int rc = prefix ? kiln_tracking_ui_render_at(prefix, path, query, fake_call, &calls, &page,
                                                 &err)
                    : kiln_tracking_ui_render(path, query, fake_call, &calls, &page, &err);
    if (rc != KILN_OK)
        fail_msg("render %s: %s", path, err.msg);
    if (page.status != status)
        fail_msg("%s (prefix %s) answered %d, not %d", path, prefix ? prefix : "none",
                 page.status, status);
    assert_int_equal(strlen(page.body), page.len);
    return page.body;
}

/* Every href in `html` must start with `root` + '/'; returns how many. */
static int check_hrefs(const char *html, const char *root)
{
    int n = 0;
    size_t rlen = strlen(root);
    for (const char *p = html; (p = strstr(p, "href=\"")) != NULL; p += 6, n++) {
        const char *v = p + 6;
        if (strncmp(v, root, rlen) != 0 || v[rlen] != '/')
            fail_msg("a link without the prefix '%s': %.80s", root, v);
    }
    return n;
}

/* `html` with every `href="<root>/` turned into `href="/` (malloc'ed). */
static char *unprefixed(const char *html, const char *root)
{
    char needle[64];
    snprintf(needle, sizeof needle, "href=\"%s/", root);
    char *out = malloc(strlen(html) + 1);
    char *o = out;
    for (const char *p = html; *p;) {
        if (strncmp(p, needle, strlen(needle)) == 0) {
            o = stpcpy(o, "href=\"/");
            p += strlen(needle);
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

static const struct {
    const char *path, *query;
    int status, min_links; /* the nav bar alone has 2 */
} PAGES[] = {
    {"/", NULL, 200, 3},
    {"/experiments/1", NULL, 200, 6},      /* crumbs, 2 runs, the pager */
    {"/experiments/1", "page_token=x", 200, 6},
    {"/runs/r1", NULL, 200, 6},            /* crumbs, experiment, 2 artifacts */
    {"/models", NULL, 200, 3},
    {"/models/cls", NULL, 200, 4},         /* crumbs, the version's run */
    {"/runs/nope", NULL, 404, 3},          /* the error page's back link */
    {"/nope", NULL, 404, 3},
};

/* ---- tests ---- */

static void test_links_carry_the_prefix(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof PAGES / sizeof *PAGES; i++) {
        char *p = render(PREFIX, PAGES[i].path, PAGES[i].query, PAGES[i].status);
        int n = check_hrefs(p, PREFIX);
        if (n < PAGES[i].min_links)
            fail_msg("%s: %d links, want at least %d", PAGES[i].path, n, PAGES[i].min_links);
        assert_has(p, "href=\"/mlflow/\">Experiments</a>");
        assert_has(p, "href=\"/mlflow/models\">Models</a>");
        free(p);
    }
    char *p = render(PREFIX, "/", NULL, 200);
    assert_has(p, "href=\"/mlflow/experiments/1\">dry-wet</a>");
    free(p);
    p = render(PREFIX, "/experiments/1", NULL, 200);
    assert_has(p, "<div class=\"crumbs\"><a href=\"/mlflow/\">Experiments</a>");
    assert_has(p, "href=\"/mlflow/runs/r1\">baseline</a>");
    assert_has(p, "<p class=\"pager\"><a href=\"/mlflow/experiments/1?page_token=tok%2F2%2B\"");
    free(p);
    p = render(PREFIX, "/runs/r1", NULL, 200);
    assert_has(p, "href=\"/mlflow/experiments/1\">dry-wet</a>");
    assert_has(p, "href=\"/mlflow/api/2.0/mlflow-artifacts/artifacts/1/r1/artifacts/"
                  "notes%201.txt\" download>");
    assert_has(p, "href=\"/mlflow/api/2.0/mlflow-artifacts/artifacts/1/r1/artifacts/model/"
                  "MLmodel\" download>");
    free(p);
    p = render(PREFIX, "/models", NULL, 200);
    assert_has(p, "href=\"/mlflow/models/cls\">cls</a>");
    free(p);
    p = render(PREFIX, "/models/cls", NULL, 200);
    assert_has(p, "<div class=\"crumbs\"><a href=\"/mlflow/models\">Models</a>");
    assert_has(p, "href=\"/mlflow/runs/r1\">r1</a>");
    free(p);
    p = render(PREFIX, "/runs/nope", NULL, 404);
    assert_has(p, "Run not found");
    assert_has(p, "<a href=\"/mlflow/\">Back to the experiments</a>");
    free(p);
    /* A prefix of several segments works the same. */
    p = render("/tools/mlflow", "/runs/r1", NULL, 200);
    assert_true(check_hrefs(p, "/tools/mlflow") >= 6);
    free(p);
}

/* The prefix changes the links and nothing else, and without one the
 * pages are byte for byte kiln_tracking_ui_render's. */
static void test_only_links_change(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof PAGES / sizeof *PAGES; i++) {
        const char *path = PAGES[i].path, *query = PAGES[i].query;
        int status = PAGES[i].status;
        char *plain = render(NULL, path, query, status);
        char *empty = render("", path, query, status);
        assert_string_equal(plain, empty);
        check_hrefs(plain, "");
        char *prefixed = render(PREFIX, path, query, status);
        char *back = unprefixed(prefixed, PREFIX);
        assert_string_equal(back, plain);
        free(plain);
        free(empty);
        free(prefixed);
        free(back);
    }
}

/* A gateway that does not rewrite sends the prefix along: same pages. */
static void test_prefixed_request_paths(void **state)
{
    (void)state;
    struct {
        const char *requested, *page;
    } same[] = {
        {"/mlflow", "/"},
        {"/mlflow/", "/"},
        {"/mlflow/experiments", "/"},
        {"/mlflow/experiments/1", "/experiments/1"},
        {"/mlflow/experiments/1/", "/experiments/1"},
        {"/mlflow/runs/r1", "/runs/r1"},
        {"/mlflow/models", "/models"},
        {"/mlflow/models/cls", "/models/cls"},
    };
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        char *a = render(PREFIX, same[i].requested, NULL, 200);
        char *b = render(PREFIX, same[i].page, NULL, 200);
        if (strcmp(a, b) != 0)
            fail_msg("%s is not the page at %s", same[i].requested, same[i].page);
        free(a);
        free(b);
    }
    /* Stripped once, only at a segment boundary, only at the start. */
    const char *missing[] = {"/mlflowx/experiments/1", "/mlflow/mlflow/runs/r1",
                             "/experiments/mlflow/1"};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++) {
        char *p = render(PREFIX, missing[i], NULL, 404);
        assert_has(p, "There is no page at");
        free(p);
    }
    /* Without a prefix configured a prefixed path is just unknown. */
    char *p = render(NULL, "/mlflow/experiments/1", NULL, 404);
    assert_has(p, "There is no page at /mlflow/experiments/1.");
    free(p);
    /* The API is not served under the prefix: the page says so. */
    p = render(PREFIX, "/mlflow/api/2.0/mlflow/experiments/search", NULL, 404);
    assert_has(p, "There is no page at /mlflow/api/2.0/mlflow/experiments/search: the REST "
                  "API and the artifact proxy answer only without the static prefix "
                  "(/api/2.0/mlflow/experiments/search)");
    check_hrefs(p, PREFIX);
    free(p);
}

static void test_prefix_check(void **state)
{
    (void)state;
    const char *good[] = {"", NULL, "/mlflow", "/tools/mlflow", "/a", "/ml-flow_2.x~"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        kiln_err err = {0};
        if (kiln_tracking_ui_prefix_check("--static-prefix", good[i], &err) != KILN_OK)
            fail_msg("'%s' refused: %s", good[i] ? good[i] : "(null)", err.msg);
    }
    struct {
        const char *prefix, *needle;
    } bad[] = {
        {"mlflow", "must start with '/'"},
        {"/", "is no prefix"},
        {"/mlflow/", "must not end with '/'"},
        {"/ml flow", "' ' is not allowed"},
        {"/ml\"flow", "'\"' is not allowed"},
        {"/ml'flow", "''' is not allowed"},
        {"/<b>", "'<' is not allowed"},
        {"/a&b", "'&' is not allowed"},
        {"/a?b", "'?' is not allowed"},
        {"/a%2Fb", "'%' is not allowed"},
        {"/a\tb", "byte 0x09 at offset 2"},
        {"/ml\xc3\xa9", "byte 0xc3 at offset 3"},
        {"/a//b", "empty segment"},
        {"/a/../b", "'..' segment"},
        {"/.", "'.' or '..' segment"},
        {"/models", "kiln-tracking's own paths"},
        {"/api/x", "kiln-tracking's own paths"},
        {"/health", "kiln-tracking's own paths"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        kiln_err err = {0};
        int rc = kiln_tracking_ui_prefix_check("--static-prefix", bad[i].prefix, &err);
        if (rc != KILN_EINVAL || !strstr(err.msg, bad[i].needle) ||
            !strstr(err.msg, "--static-prefix"))
            fail_msg("'%s': rc %d, message '%s', want '%s'", bad[i].prefix, rc, err.msg,
                     bad[i].needle);
    }
    char longer[260] = "/";
    memset(longer + 1, 'a', 220);
    kiln_err err = {0};
    assert_int_equal(kiln_tracking_ui_prefix_check("--static-prefix", longer, &err),
                     KILN_EINVAL);
    assert_non_null(strstr(err.msg, "longer than 200"));
    /* "/modelsx" and "/api2" are not the server's own paths. */
    assert_int_equal(kiln_tracking_ui_prefix_check("--static-prefix", "/modelsx", &err), KILN_OK);
    assert_int_equal(kiln_tracking_ui_prefix_check("--static-prefix", "/api2/ui", &err), KILN_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_links_carry_the_prefix),
        cmocka_unit_test(test_only_links_change),
        cmocka_unit_test(test_prefixed_request_paths),
        cmocka_unit_test(test_prefix_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
