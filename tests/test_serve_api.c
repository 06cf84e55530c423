/* tests/test_serve_api.c — kiln-serve over real HTTP on loopback, serving
 * a model trained here and registered in a kiln-tracking started here:
 * every endpoint, every request form, every error answer, and the flags. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "test_serve_support.h"

#define MODEL "fashion"

typedef struct fixture {
    kt_trackserver ts;
    char *root;
    char *run_id;
    kiln_mlflow_client *c;
    ts_serve srv;      /* --stage Production, small limits, JSON access log */
    uint8_t *jpg;
    size_t jpg_len;
} fixture;

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    *state = f;
    if (kt_trackserver_start(&f->ts) != 0)
        return -1;
    f->root = kt_mkdtemp();
    f->run_id = ts_train(f->root, "model", f->ts.uri, 42);
    f->c = ts_client(f->ts.uri);
    char source[256];
    snprintf(source, sizeof source, "runs:/%s/model", f->run_id);
    assert_int_equal(ts_register(f->c, MODEL, source, f->run_id, "Production"), 1);
    setenv("KILN_SERVING_IMAGE_VERSION", "v9.8.7-test", 1);
    char *cache = kt_path(f->root, "cache");
    const char *args[] = {"--model-name", MODEL, "--max-body-mb", "1", "--max-pixels", "100000",
                          "--max-images", "4", "--access-log", "json", "--cache-dir", cache,
                          NULL};
    int rc = ts_serve_start(&f->srv, f->root, f->ts.uri, args);
    free(cache);
    f->jpg = ts_jpeg(64, 48, &f->jpg_len);
    return rc;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    int status = ts_serve_stop(&f->srv, 30);
    ts_serve_stop_all();
    kiln_mlflow_client_free(f->c);
    kt_trackserver_stop(&f->ts, 0);
    free(f->run_id);
    free(f->jpg);
    if (f->root)
        kt_rmtree_free(f->root);
    free(f);
    /* SIGTERM must end it cleanly (exit 0, no sanitizer report). */
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static const char *str_field(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v))
        fail_msg("'%s' is not a string in %s", key, cJSON_PrintUnformatted(o));
    return v->valuestring;
}

static void test_status_endpoints(void **state)
{
    fixture *f = *state;
    ts_reply r = ts_get(f->srv.url, "/");
    cJSON *j = ts_expect_json(&r, 200, "GET /");
    assert_string_equal(str_field(j, "status"), "ok");
    assert_string_equal(str_field(j, "model_name"), MODEL);
    assert_string_equal(str_field(j, "model_version"), "1");
    assert_string_equal(str_field(j, "model_stage"), "Production");
    assert_string_equal(str_field(j, "device"), "cpu");
    assert_string_equal(str_field(j, "image_version"), "v9.8.7-test");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "classes")), 10);
    cJSON_Delete(j);
    ts_reply_free(&r);

    r = ts_get(f->srv.url, "/model/info");
    j = ts_expect_json(&r, 200, "GET /model/info");
    assert_string_equal(str_field(j, "run_id"), f->run_id);
    assert_string_equal(str_field(j, "variant"), "b0");
    assert_int_equal(cJSON_GetObjectItem(j, "input_size")->valueint, 32);
    const cJSON *pre = cJSON_GetObjectItem(j, "preprocessing");
    assert_int_equal(cJSON_GetObjectItem(pre, "resize_size")->valueint, 32);
    const cJSON *metrics = cJSON_GetObjectItem(j, "metrics");
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(metrics, "val_accuracy")));
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(j, "load_seconds")));
    cJSON_Delete(j);
    ts_reply_free(&r);

    r = ts_get(f->srv.url, "/healthz");
    cJSON_Delete(ts_expect_json(&r, 200, "GET /healthz"));
    ts_reply_free(&r);
    r = ts_get(f->srv.url, "/readyz");
    j = ts_expect_json(&r, 200, "GET /readyz");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "ready")));
    cJSON_Delete(j);
    ts_reply_free(&r);
}

/* Check one prediction object; returns its confidence. */
static double check_prediction(const cJSON *p, const char *version)
{
    const char *cls = str_field(p, "prediction");
    double conf = cJSON_GetObjectItem(p, "confidence")->valuedouble;
    const cJSON *probs = cJSON_GetObjectItem(p, "probabilities");
    assert_int_equal(cJSON_GetArraySize(probs), 10);
    double sum = 0, best = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, probs) {
        sum += it->valuedouble;
        if (it->valuedouble > best)
            best = it->valuedouble;
    }
    assert_true(sum > 0.999 && sum < 1.001);
    assert_true(best == conf);
    assert_true(cJSON_GetObjectItem(probs, cls)->valuedouble == conf);
    assert_string_equal(str_field(p, "model_version"), version);
    return conf;
}

static double predict_once(const fixture *f, const char *type, const void *body, size_t len,
                           int multipart, const char *what)
{
    char url[128];
    snprintf(url, sizeof url, "%s/predict", f->srv.url);
    ts_reply r = multipart ? ts_http("POST", url, NULL, NULL, 0, body, len)
                           : ts_http("POST", url, type, body, len, NULL, 0);
    cJSON *j = ts_expect_json(&r, 200, what);
    double conf = check_prediction(j, "1");
    cJSON_Delete(j);
    ts_reply_free(&r);
    return conf;
}

static void test_predict_forms(void **state)
{
    fixture *f = *state;
    double multipart = predict_once(f, NULL, f->jpg, f->jpg_len, 1, "multipart");
    /* The same bytes in every form give the same answer. */
    assert_true(predict_once(f, "image/jpeg", f->jpg, f->jpg_len, 0, "raw") == multipart);
    assert_true(predict_once(f, "application/octet-stream", f->jpg, f->jpg_len, 0, "octet") ==
                multipart);
    char *b64 = ts_base64(f->jpg, f->jpg_len);
    size_t cap = strlen(b64) * 2 + 128;
    char *json = malloc(cap);
    snprintf(json, cap, "{\"image\": \"%s\"}", b64);
    assert_true(predict_once(f, "application/json", json, strlen(json), 0, "json") == multipart);
    snprintf(json, cap, "{\"image\": \"data:image/jpeg;base64,%s\"}", b64);
    assert_true(predict_once(f, "application/json; charset=utf-8", json, strlen(json), 0,
                             "data url") == multipart);

    /* A batch answers a list, in order. */
    snprintf(json, cap, "{\"images\": [\"%s\", \"%s\"]}", b64, b64);
    char url[128];
    snprintf(url, sizeof url, "%s/predict", f->srv.url);
    ts_reply r = ts_http("POST", url, "application/json", json, strlen(json), NULL, 0);
    cJSON *j = ts_expect_json(&r, 200, "batch");
    assert_true(cJSON_IsArray(j));
    assert_int_equal(cJSON_GetArraySize(j), 2);
    assert_true(check_prediction(cJSON_GetArrayItem(j, 0), "1") == multipart);
    assert_true(check_prediction(cJSON_GetArrayItem(j, 1), "1") == multipart);
    cJSON_Delete(j);
    ts_reply_free(&r);

    /* PNG, raw. */
    uint16_t samples[40 * 30 * 3];
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++)
        samples[i] = (uint16_t)(i * 7 % 256);
    kt_png_opts po = {.color_type = 2 /* PNG_COLOR_TYPE_RGB */, .bit_depth = 8};
    size_t png_len = 0;
    uint8_t *png = kt_png_encode(samples, 40, 30, &po, &png_len);
    predict_once(f, "image/png", png, png_len, 0, "png");
    free(png);
    free(json);
    free(b64);
}

static void post_error(const fixture *f, const char *type, const void *body, size_t len,
                       long status, const char *needle)
{
    char url[128];
    snprintf(url, sizeof url, "%s/predict", f->srv.url);
    ts_expect_error(ts_http("POST", url, type, body, len, NULL, 0), status, needle, needle);
}

static void test_bad_requests(void **state)
{
    fixture *f = *state;
    char url[256];
    ts_expect_error(ts_get(f->srv.url, "/no/such/route"), 404, "no such endpoint", "404");
    ts_expect_error(ts_get(f->srv.url, "/predict"), 405, "method not allowed", "405");
    snprintf(url, sizeof url, "%s/model/info", f->srv.url);
    ts_expect_error(ts_http("DELETE", url, NULL, NULL, 0, NULL, 0), 405, "not allowed", "405");
    post_error(f, "text/plain", "hello", 5, 415, "text/plain");
    post_error(f, NULL, f->jpg, f->jpg_len, 415, "no Content-Type");
    post_error(f, "image/jpeg", f->jpg, f->jpg_len / 2, 400, "truncated");
    post_error(f, "image/jpeg", "GIF89a not really", 17, 400, "not a JPEG or PNG");
    post_error(f, "image/png", "", 0, 400, "empty");
    post_error(f, "application/json", "{\"image\": \"@@@@\"}", 17, 400, "not valid base64");
    post_error(f, "application/json", "{\"image\": ", 10, 400, "not valid JSON");
    post_error(f, "application/json", "{\"picture\": \"x\"}", 16, 400, "\"image\"");
    post_error(f, "application/json", "{\"images\": [1]}", 15, 400, "\"images\"[0]");
    /* Multipart without the field, and a truncated multipart body. */
    const char *form = "--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nv\r\n"
                       "--XyZ--\r\n";
    post_error(f, "multipart/form-data; boundary=XyZ", form, strlen(form), 400,
               "no field 'file'");
    const char *cut = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; "
                      "filename=\"a.jpg\"\r\n\r\n\xff\xd8\xff";
    post_error(f, "multipart/form-data; boundary=XyZ", cut, strlen(cut), 400, "multipart");
    post_error(f, "multipart/form-data", form, strlen(form), 400, "boundary");

    /* Limits: images per request, body bytes, pixels. */
    char *b64 = ts_base64(f->jpg, f->jpg_len);
    size_t cap = strlen(b64) * 6 + 128;
    char *json = malloc(cap);
    snprintf(json, cap, "{\"images\": [\"%s\",\"%s\",\"%s\",\"%s\",\"%s\"]}", b64, b64, b64, b64,
             b64);
    post_error(f, "application/json", json, strlen(json), 413, "more than 4 images");
    size_t big_len = (size_t)1 << 20 | 4096;
    char *big = calloc(1, big_len);
    post_error(f, "image/jpeg", big, big_len, 413, "over the limit");
    size_t wide_len = 0;
    uint8_t *wide = ts_jpeg(400, 300, &wide_len); /* 120000 pixels > 100000 */
    post_error(f, "image/jpeg", wide, wide_len, 413, "pixels");
    free(wide);
    free(big);
    free(json);
    free(b64);

    /* Still serving, and the errors were counted. */
    predict_once(f, NULL, f->jpg, f->jpg_len, 1, "after the errors");
    ts_reply r = ts_get(f->srv.url, "/metrics");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "route=\"/predict\",method=\"POST\",code=\"413\""));
    assert_non_null(strstr(r.body, "route=\"/predict\",method=\"POST\",code=\"415\""));
    assert_non_null(strstr(r.body, "route=\"/predict\",method=\"POST\",code=\"400\""));
    assert_non_null(strstr(r.body, "route=\"other\",method=\"GET\",code=\"404\""));
    ts_reply_free(&r);
}

static void test_metrics_and_access_log(void **state)
{
    fixture *f = *state;
    predict_once(f, NULL, f->jpg, f->jpg_len, 1, "predict");
    ts_reply r = ts_get(f->srv.url, "/metrics");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.content_type, "text/plain"));
    const char *want[] = {
        "# TYPE kiln_serve_requests_total counter",
        "kiln_serve_requests_total{route=\"/predict\",method=\"POST\",code=\"200\"}",
        "# TYPE kiln_serve_request_duration_seconds histogram",
        "kiln_serve_request_duration_seconds_bucket{route=\"/predict\",le=\"+Inf\"}",
        "kiln_serve_batch_size_bucket{le=\"1\"}",
        "kiln_serve_reloads_total{result=\"success\"} 1",
        "kiln_serve_reloads_total{result=\"failure\"}",
        "kiln_serve_model_version 1",
        "kiln_serve_model_info{name=\"fashion\",version=\"1\",variant=\"b0\"} 1",
        "kiln_serve_ready 1",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(r.body, want[i]))
            fail_msg("/metrics lacks '%s':\n%s", want[i], r.body);
    ts_reply_free(&r);
    /* One JSON object per request on stdout. */
    char *text = NULL;
    size_t len = 0;
    kiln_err err = {0};
    kt_expect_ok(kiln_read_file(f->srv.log, 0, &text, &len, &err), &err, "log");
    int found = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *path = cJSON_GetObjectItem(j, "path");
        if (j && cJSON_IsString(path) && strcmp(path->valuestring, "/predict") == 0 &&
            cJSON_GetObjectItem(j, "status")->valueint == 200 &&
            cJSON_IsNumber(cJSON_GetObjectItem(j, "duration_ms")))
            found = 1;
        cJSON_Delete(j);
    }
    free(text);
    assert_true(found);
}

/* A server at a stage with no version starts unready, then a reload loads
 * what was registered meanwhile; an alias works the same way. */
static void test_unready_until_reload(void **state)
{
    fixture *f = *state;
    ts_serve s;
    char *dir = kt_path(f->root, "staging");
    kiln_err err = {0};
    kt_expect_ok(kiln_mkdir_p(dir, &err), &err, "mkdir");
    const char *args[] = {"--model-name", MODEL, "--stage", "Staging", NULL};
    assert_int_equal(ts_serve_start(&s, dir, f->ts.uri, args), 0);
    ts_reply r = ts_get(s.url, "/readyz");
    cJSON_Delete(ts_expect_json(&r, 503, "readyz without a model"));
    ts_reply_free(&r);
    char url[128];
    snprintf(url, sizeof url, "%s/predict", s.url);
    ts_expect_error(ts_http("POST", url, NULL, NULL, 0, f->jpg, f->jpg_len), 503,
                    "no version in stage Staging", "predict without a model");
    snprintf(url, sizeof url, "%s/model/reload", s.url);
    ts_expect_error(ts_http("POST", url, NULL, NULL, 0, NULL, 0), 404, "Staging",
                    "reload to nothing");
    char source[256];
    snprintf(source, sizeof source, "runs:/%s/model", f->run_id);
    int v = ts_register(f->c, MODEL, source, f->run_id, "Staging");
    r = ts_http("POST", url, NULL, NULL, 0, NULL, 0);
    cJSON *j = ts_expect_json(&r, 200, "reload");
    char vtext[16];
    snprintf(vtext, sizeof vtext, "%d", v);
    assert_string_equal(str_field(j, "model_version"), vtext);
    cJSON_Delete(j);
    ts_reply_free(&r);
    r = ts_get(s.url, "/readyz");
    cJSON_Delete(ts_expect_json(&r, 200, "readyz after reload"));
    ts_reply_free(&r);
    assert_int_equal(ts_serve_stop(&s, 30), 0);

    /* --alias */
    kt_expect_ok(kiln_mlflow_alias_set(f->c, MODEL, "champion", vtext, &err), &err, "alias");
    const char *alias_args[] = {"--model-name", MODEL, "--alias", "champion", NULL};
    assert_int_equal(ts_serve_start(&s, dir, f->ts.uri, alias_args), 0);
    r = ts_get(s.url, "/");
    j = ts_expect_json(&r, 200, "GET / by alias");
    assert_string_equal(str_field(j, "model_version"), vtext);
    assert_string_equal(str_field(j, "model_alias"), "champion");
    cJSON_Delete(j);
    ts_reply_free(&r);
    assert_int_equal(ts_serve_stop(&s, 30), 0);
    kt_rmtree_free(dir);
}

/* A registry that cannot be reached: unready, and a reload answers 502. */
static void test_registry_unreachable(void **state)
{
    fixture *f = *state;
    ts_serve s;
    char *dir = kt_path(f->root, "unreachable");
    kiln_err err = {0};
    kt_expect_ok(kiln_mkdir_p(dir, &err), &err, "mkdir");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd); /* nothing listens there now */
    char uri[64];
    snprintf(uri, sizeof uri, "http://127.0.0.1:%d", ntohs(a.sin_port));
    const char *args[] = {"--model-name", MODEL, NULL};
    assert_int_equal(ts_serve_start(&s, dir, uri, args), 0);
    ts_reply r = ts_get(s.url, "/readyz");
    assert_int_equal(r.status, 503);
    ts_reply_free(&r);
    char url[128];
    snprintf(url, sizeof url, "%s/model/reload", s.url);
    ts_expect_error(ts_http("POST", url, NULL, NULL, 0, NULL, 0), 502, "cannot reach",
                    "reload without a registry");
    assert_int_equal(ts_serve_stop(&s, 30), 0);
    kt_rmtree_free(dir);
}

/* SIGTERM with --shutdown-delay: unready at once, still answering during
 * the delay, then exit 0. */
static void test_shutdown_delay(void **state)
{
    fixture *f = *state;
    ts_serve s;
    char *dir = kt_path(f->root, "delay");
    kiln_err err = {0};
    kt_expect_ok(kiln_mkdir_p(dir, &err), &err, "mkdir");
    const char *args[] = {"--model-name", MODEL, "--shutdown-delay", "2", NULL};
    assert_int_equal(ts_serve_start(&s, dir, f->ts.uri, args), 0);
    kill(s.pid, SIGTERM);
    int unready = 0;
    for (double end = kt_now_s() + 1.5; !unready && kt_now_s() < end; kt_sleep_ms(20)) {
        ts_reply r = ts_get(s.url, "/readyz");
        unready = r.status == 503 && strstr(r.body, "draining");
        ts_reply_free(&r);
    }
    assert_true(unready);
    char url[128];
    snprintf(url, sizeof url, "%s/predict", s.url);
    ts_reply r = ts_http("POST", url, NULL, NULL, 0, f->jpg, f->jpg_len);
    cJSON_Delete(ts_expect_json(&r, 200, "predict while draining"));
    ts_reply_free(&r);
    r = ts_get(s.url, "/");
    assert_non_null(strstr(r.body, "\"status\":\"draining\""));
    ts_reply_free(&r);
    assert_int_equal(ts_serve_stop(&s, 30), 0);
    kt_rmtree_free(dir);
}

static void expect_exit(const char *args, int status, const char *needle)
{
    char *out = NULL;
    int rc = kt_run_capture(&out, "env -u MLFLOW_TRACKING_URI %s %s", getenv("KILN_SERVE_BIN"),
                            args);
    if (rc != status || !strstr(out, needle))
        fail_msg("kiln-serve %s: exit %d (wanted %d), wanted '%s' in:\n%s", args, rc, status,
                 needle, out);
    free(out);
}

static void test_flags(void **state)
{
    (void)state;
    const char *flags[] = {"--model-name", "--stage", "--alias", "--model-dir", "--cache-dir",
                           "--host", "--port", "--device", "--threads", "--http-threads",
                           "--max-body-mb", "--max-pixels", "--max-images", "--poll-interval",
                           "--shutdown-delay", "--access-log", "--log-format", "--log-level",
                           "Production", "5001", "KILN_SERVING_IMAGE_VERSION"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        expect_exit("--help", 0, flags[i]);
    expect_exit("", 2, "--model-name (or --model-dir) is required");
    expect_exit("--model-name m --bogus", 2, "unknown option");
    expect_exit("--model-name m --port 70000", 2, "--port");
    expect_exit("--model-name m --access-log yes", 2, "--access-log");
    expect_exit("--model-name m", 2, "MLFLOW_TRACKING_URI is not set");
    expect_exit("--model-dir /nonexistent/pkg", 1, "/nonexistent/pkg");
    expect_exit("--model-dir /tmp --device cuda", 1, "--device cuda");
    expect_exit("--model-dir /tmp --device tpu", 2, "--device must be auto, cpu or cuda");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_endpoints),
        cmocka_unit_test(test_predict_forms),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_metrics_and_access_log),
        cmocka_unit_test(test_unready_until_reload),
        cmocka_unit_test(test_registry_unreachable),
        cmocka_unit_test(test_shutdown_delay),
        cmocka_unit_test(test_flags),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    curl_global_cleanup();
    return failed;
}
