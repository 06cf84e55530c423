/* kiln-tracking's web UI in a real browser: the real server (via
 * kt_trackserver) seeded through its REST API with an experiment, two
 * runs (params, per-step metrics, tags, artifacts) and a registered model
 * (two versions, Production stage, an alias); every page loaded in
 * headless Chromium and checked on the DOM it built; a screenshot of the
 * run page kept in the build tree (tests/artifacts/tracking-run-page.png)
 * and checked to show the charts. */
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "support/chromium.h"
#include "support/testutil.h"
#include "support/trackapi.h"
#include "support/trackserver.h"

#define EXPERIMENT_NAME "dry-wet <ui> & co"
#define EXPERIMENT_NAME_DOM "dry-wet &lt;ui&gt; &amp; co"
#define MODEL_NAME "dry-wet-classifier"
#define STEPS 25

typedef struct seeded {
    kt_trackserver server;
    int up;
    int seeded;
    char exp_id[64];
    char run1[64], run2[64];
    char artifact_body[256];
} seeded;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *json_str(const cJSON *j, const char *a, const char *b, const char *c)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, a);
    if (b)
        v = cJSON_GetObjectItemCaseSensitive(v, b);
    if (c)
        v = cJSON_GetObjectItemCaseSensitive(v, c);
    if (!cJSON_IsString(v))
        fail_msg("the answer has no string %s.%s.%s", a, b ? b : "", c ? c : "");
    return v->valuestring;
}

/* A run with params, STEPS steps of loss and val_accuracy, and tags. */
static void seed_run(seeded *s, char *run_id, const char *name, double lr, long long start)
{
    cJSON *r = kt_track_ok(s->server.uri, "POST", "/api/2.0/mlflow/runs/create",
                           "{\"experiment_id\":\"%s\",\"run_name\":\"%s\",\"start_time\":%lld,"
                           "\"tags\":[{\"key\":\"mlflow.user\",\"value\":\"ana\"}]}",
                           s->exp_id, name, start);
    snprintf(run_id, 64, "%s", json_str(r, "run", "info", "run_id"));
    cJSON_Delete(r);

    cJSON *batch = cJSON_CreateObject();
    cJSON_AddStringToObject(batch, "run_id", run_id);
    cJSON *metrics = cJSON_AddArrayToObject(batch, "metrics");
    for (int step = 0; step < STEPS; step++) {
        double loss = 1.6 * exp(-lr * 12 * step) + 0.08 + 0.02 * sin(step);
        double acc = 0.55 + 0.4 * (1 - exp(-lr * 10 * step));
        const char *keys[] = {"loss", "val_accuracy"};
        double values[] = {loss, acc};
        for (int k = 0; k < 2; k++) {
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "key", keys[k]);
            cJSON_AddNumberToObject(m, "value", values[k]);
            cJSON_AddNumberToObject(m, "timestamp", (double)(start + step * 1000));
            cJSON_AddNumberToObject(m, "step", step);
            cJSON_AddItemToArray(metrics, m);
        }
    }
    cJSON *params = cJSON_AddArrayToObject(batch, "params");
    char lr_text[32];
    snprintf(lr_text, sizeof lr_text, "%g", lr);
    const char *pk[] = {"learning_rate", "batch_size", "model"};
    const char *pv[] = {lr_text, "32", "efficientnet_b0"};
    for (int i = 0; i < 3; i++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "key", pk[i]);
        cJSON_AddStringToObject(p, "value", pv[i]);
        cJSON_AddItemToArray(params, p);
    }
    cJSON *tags = cJSON_AddArrayToObject(batch, "tags");
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "key", "team");
    cJSON_AddStringToObject(t, "value", "vision <ml>");
    cJSON_AddItemToArray(tags, t);
    char *body = cJSON_PrintUnformatted(batch);
    cJSON_Delete(batch);
    cJSON_Delete(kt_track_ok(s->server.uri, "POST", "/api/2.0/mlflow/runs/log-batch", "%s",
                             body));
    free(body);
    cJSON_Delete(kt_track_ok(s->server.uri, "POST", "/api/2.0/mlflow/runs/update",
                             "{\"run_id\":\"%s\",\"status\":\"FINISHED\",\"end_time\":%lld}",
                             run_id, start + 83000));
}

static void upload(seeded *s, const char *run_id, const char *rel, const char *content)
{
    char *url = NULL;
    if (asprintf(&url, "%s/api/2.0/mlflow-artifacts/artifacts/%s/%s/artifacts/%s",
                 s->server.uri, s->exp_id, run_id, rel) < 0)
        fail_msg("asprintf");
    int status = 0;
    char *answer = kt_http_request("PUT", url, content, strlen(content), &status, NULL);
    if (status != 200)
        fail_msg("PUT %s -> %d %s", url, status, answer ? answer : "");
    free(answer);
    free(url);
}

static void seed_registry(seeded *s)
{
    const char *uri = s->server.uri;
    cJSON_Delete(kt_track_ok(uri, "POST", "/api/2.0/mlflow/registered-models/create",
                             "{\"name\":\"" MODEL_NAME "\",\"description\":\"dry or wet?\"}"));
    const char *runs[] = {s->run1, s->run2};
    for (int v = 0; v < 2; v++)
        cJSON_Delete(kt_track_ok(uri, "POST", "/api/2.0/mlflow/model-versions/create",
                                 "{\"name\":\"" MODEL_NAME "\",\"source\":\"runs:/%s/model\","
                                 "\"run_id\":\"%s\"}", runs[v], runs[v]));
    cJSON_Delete(kt_track_ok(uri, "POST", "/api/2.0/mlflow/model-versions/transition-stage",
                             "{\"name\":\"" MODEL_NAME "\",\"version\":\"2\","
                             "\"stage\":\"Production\",\"archive_existing_versions\":true}"));
    cJSON_Delete(kt_track_ok(uri, "POST", "/api/2.0/mlflow/registered-models/alias",
                             "{\"name\":\"" MODEL_NAME "\",\"alias\":\"champion\","
                             "\"version\":\"2\"}"));
}

static int setup(void **state)
{
    seeded *s = calloc(1, sizeof *s);
    *state = s;
    if (!getenv("KILN_TRACKING_BIN") || !kt_chromium_path()) {
        printf("SKIPPED: needs kiln-tracking (KILN_TRACKING_BIN) and chromium\n");
        return 0;
    }
    if (kt_trackserver_start(&s->server) != 0)
        fail_msg("kiln-tracking did not start");
    s->up = 1;
    return 0;
}

/* The first test: everything the pages show, put in through the REST API. */
static void test_seed_through_api(void **state)
{
    seeded *s = *state;
    if (!s->up)
        skip();
    cJSON *e = kt_track_ok(s->server.uri, "POST", "/api/2.0/mlflow/experiments/create",
                           "{\"name\":\"" EXPERIMENT_NAME "\"}");
    snprintf(s->exp_id, sizeof s->exp_id, "%s", json_str(e, "experiment_id", NULL, NULL));
    cJSON_Delete(e);
    long long t0 = now_ms() - 3600 * 1000;
    seed_run(s, s->run1, "baseline", 0.01, t0);
    seed_run(s, s->run2, "wide-lr", 0.1, t0 + 600 * 1000);
    snprintf(s->artifact_body, sizeof s->artifact_body,
             "artifact_path: model\nflavors:\n  kiln: {format_version: 1}\nrun_id: %s\n", s->run1);
    upload(s, s->run1, "model/MLmodel", s->artifact_body);
    upload(s, s->run1, "confusion_matrix.csv", "dry,wet\n41,3\n2,44\n");
    seed_registry(s);
    s->seeded = 1;
}

static int teardown(void **state)
{
    seeded *s = *state;
    if (s->up)
        kt_trackserver_stop(&s->server, 0);
    free(s);
    return 0;
}

static void need_server(seeded *s)
{
    if (!s->up)
        skip();
    if (!s->seeded)
        fail_msg("seeding through the REST API failed (see test_seed_through_api)");
}

static char *dom_of(seeded *s, const char *path)
{
    char *url = NULL;
    if (asprintf(&url, "%s%s", s->server.uri, path) < 0)
        fail_msg("asprintf");
    char *dom = kt_chromium_dump_dom(url);
    if (!dom)
        fail_msg("chromium could not load %s", url);
    free(url);
    return dom;
}

static int count_str(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

#define assert_dom_has(dom, needle)                                                              \
    do {                                                                                         \
        if (!strstr((dom), (needle)))                                                            \
            fail_msg("the page's DOM lacks '%s'", (needle));                                     \
    } while (0)

static void test_experiment_pages(void **state)
{
    seeded *s = *state;
    need_server(s);
    char *dom = dom_of(s, "/");
    assert_dom_has(dom, EXPERIMENT_NAME_DOM);
    char link[128];
    snprintf(link, sizeof link, "href=\"/experiments/%s\"", s->exp_id);
    assert_dom_has(dom, link);
    assert_null(strstr(dom, "<ui>")); /* escaped, not an element */
    free(dom);

    snprintf(link, sizeof link, "/experiments/%s", s->exp_id);
    dom = dom_of(s, link);
    assert_dom_has(dom, EXPERIMENT_NAME_DOM);
    assert_dom_has(dom, ">baseline</a>");
    assert_dom_has(dom, ">wide-lr</a>");
    assert_dom_has(dom, ">learning_rate</th>");
    assert_dom_has(dom, ">batch_size</th>");
    assert_dom_has(dom, ">loss</th>");
    assert_dom_has(dom, ">val_accuracy</th>");
    assert_dom_has(dom, "<td>0.01</td>");
    assert_dom_has(dom, "<td>0.1</td>");
    assert_dom_has(dom, "<td>efficientnet_b0</td>");
    assert_dom_has(dom, "FINISHED");
    assert_dom_has(dom, "1 min 23 s");
    snprintf(link, sizeof link, "href=\"/runs/%s\"", s->run1);
    assert_dom_has(dom, link);
    free(dom);
}

/* Fetch the first artifact link to `name` found in the DOM and compare. */
static void check_download(seeded *s, const char *dom, const char *name, const char *expect)
{
    char needle[128];
    snprintf(needle, sizeof needle, "%s\" download", name);
    const char *end = strstr(dom, needle);
    if (!end)
        fail_msg("no download link for %s", name);
    const char *start = end;
    while (start > dom && strncmp(start, "href=\"", 6) != 0)
        start--;
    start += 6;
    end += strlen(name);
    char *url = NULL;
    if (asprintf(&url, "%s%.*s", s->server.uri, (int)(end - start), start) < 0)
        fail_msg("asprintf");
    int status = 0;
    size_t len = 0;
    char *body = kt_http_request("GET", url, NULL, 0, &status, &len);
    if (status != 200 || !body || strcmp(body, expect) != 0)
        fail_msg("GET %s -> %d '%s'", url, status, body ? body : "");
    free(body);
    free(url);
}

static void test_run_page(void **state)
{
    seeded *s = *state;
    need_server(s);
    char path[128];
    snprintf(path, sizeof path, "/runs/%s", s->run1);
    char *dom = dom_of(s, path);
    assert_dom_has(dom, "<h1>baseline</h1>");
    assert_dom_has(dom, s->run1);
    assert_dom_has(dom, EXPERIMENT_NAME_DOM);
    assert_dom_has(dom, ">learning_rate</th>");
    assert_dom_has(dom, ">0.01</td>");
    assert_dom_has(dom, ">efficientnet_b0</td>");
    assert_dom_has(dom, "vision &lt;ml&gt;");
    /* One chart per metric, each with its line, axes and tick labels. */
    assert_int_equal(count_str(dom, "<svg"), 2);
    assert_int_equal(count_str(dom, "<path class=\"line\""), 2);
    assert_dom_has(dom, "data-metric=\"loss\"");
    assert_dom_has(dom, "data-metric=\"val_accuracy\"");
    assert_dom_has(dom, ">step</text>");
    assert_dom_has(dom, "25 points");
    /* The artifact tree, downloadable through the proxy. */
    assert_dom_has(dom, ">MLmodel</a>");
    assert_dom_has(dom, ">confusion_matrix.csv</a>");
    check_download(s, dom, "MLmodel", s->artifact_body);
    check_download(s, dom, "confusion_matrix.csv", "dry,wet\n41,3\n2,44\n");
    free(dom);
}

static void test_model_pages(void **state)
{
    seeded *s = *state;
    need_server(s);
    char *dom = dom_of(s, "/models");
    assert_dom_has(dom, "href=\"/models/" MODEL_NAME "\"");
    assert_dom_has(dom, "Production");
    assert_dom_has(dom, "@champion");
    free(dom);

    dom = dom_of(s, "/models/" MODEL_NAME);
    const char *v2 = strstr(dom, "<tr><td><b>2</b>");
    const char *v1 = strstr(dom, "<tr><td><b>1</b>");
    if (!v1 || !v2)
        fail_msg("the versions table lacks version 1 or 2");
    char *row2 = strndup(v2, (size_t)(strstr(v2, "</tr>") - v2));
    assert_dom_has(row2, ">Production</span>");
    assert_dom_has(row2, "@champion");
    char link[128];
    snprintf(link, sizeof link, "href=\"/runs/%s\"", s->run2);
    assert_dom_has(row2, link);
    free(row2);
    assert_dom_has(dom, "dry or wet?");
    free(dom);
}

static void test_errors(void **state)
{
    seeded *s = *state;
    need_server(s);
    char *dom = dom_of(s, "/no/such/page");
    assert_dom_has(dom, "Not found");
    free(dom);
    dom = dom_of(s, "/runs/0123456789abcdef0123456789abcdef");
    assert_dom_has(dom, "RESOURCE_DOES_NOT_EXIST");
    free(dom);
    /* The statuses and the content type, as a client sees them. */
    char *url = NULL;
    int status = 0;
    if (asprintf(&url, "%s/no/such/page", s->server.uri) < 0)
        fail_msg("asprintf");
    free(kt_http_request("GET", url, NULL, 0, &status, NULL));
    assert_int_equal(status, 404);
    free(url);
    if (asprintf(&url, "%s/runs/0123456789abcdef0123456789abcdef", s->server.uri) < 0)
        fail_msg("asprintf");
    free(kt_http_request("GET", url, NULL, 0, &status, NULL));
    assert_int_equal(status, 404);
    free(url);
}

/* Share of pixels close to the chart line's colour (#0c8599, unlike the
 * links' blue). */
static double line_pixels(const char *png_path, int *w, int *h)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, png_path))
        fail_msg("%s: %s", png_path, img.message);
    img.format = PNG_FORMAT_RGB;
    png_bytep px = malloc(PNG_IMAGE_SIZE(img));
    if (!png_image_finish_read(&img, NULL, px, 0, NULL))
        fail_msg("%s: %s", png_path, img.message);
    *w = (int)img.width;
    *h = (int)img.height;
    size_t n = (size_t)img.width * img.height, hits = 0;
    for (size_t i = 0; i < n; i++) {
        const png_byte *p = px + 3 * i;
        hits += abs(p[0] - 0x0c) < 16 && abs(p[1] - 0x85) < 16 && abs(p[2] - 0x99) < 16;
    }
    free(px);
    return (double)hits / (double)n;
}

static void test_run_page_screenshot(void **state)
{
    seeded *s = *state;
    need_server(s);
    char cwd[4096], *dir = NULL, *png = NULL, *url = NULL;
    if (!getcwd(cwd, sizeof cwd))
        fail_msg("getcwd");
    /* ctest runs tests in <build>/tests: keep the picture there. */
    const char *out = getenv("KILN_TEST_ARTIFACTS");
    if (out && *out)
        dir = strdup(out);
    else
        dir = kt_path(cwd, "artifacts");
    assert_int_equal(kt_system("mkdir -p '%s'", dir), 0);
    png = kt_path(dir, "tracking-run-page.png");
    if (asprintf(&url, "%s/runs/%s", s->server.uri, s->run1) < 0)
        fail_msg("asprintf");
    assert_int_equal(kt_chromium_screenshot(url, png, 1280, 900), 0);
    int w = 0, h = 0;
    double share = line_pixels(png, &w, &h);
    printf("screenshot of the run page: %s (%dx%d, %.2f%% chart-line pixels)\n", png, w, h,
           share * 100);
    assert_int_equal(w, 1280);
    assert_int_equal(h, 900);
    /* The curves are drawn: a page without them has none of that colour. */
    assert_true(share > 0.001);
    free(url);
    free(png);
    free(dir);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_through_api),
        cmocka_unit_test(test_experiment_pages),
        cmocka_unit_test(test_run_page),
        cmocka_unit_test(test_model_pages),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_run_page_screenshot),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
