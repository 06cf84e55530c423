/* tests/test_kfp_submit_contract.c — `kiln pipeline submit` and `schedule`
 * against a loopback stand-in for the KFP API server (lib/http) that checks
 * every request against the REST API v2beta1 shapes (backend/api/v2beta1:
 * pipeline_upload, pipeline, experiment, run, recurring_run) and answers as
 * KFP does: multipart "uploadfile" holding a valid IR for the requested
 * image, display_name filters, run bodies whose pipeline_version_reference
 * names what was uploaded and whose runtime_config.parameters are pipeline
 * parameters of the declared types, cron triggers of 6 fields, auth headers.
 * Any violation is answered 400 and recorded; the test fails on it. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "kfp/ir.h"
#include "support/testutil.h"

typedef struct fake_kfp {
    pthread_mutex_t mu;
    kiln_http_server *srv;
    char host[128];               /* http://127.0.0.1:<port>/pipeline */
    const char *need_auth;        /* "Bearer tok" or "authservice_session=abc" */
    const char *image;            /* every executor must run it */
    char violations[4096];
    int pipelines, versions, experiments, runs, recurring, run_gets;
    char experiment_name[128];
    char last_version[64];
    cJSON *last_run;              /* the last run / recurring run body */
    cJSON *spec;                  /* the last uploaded PipelineSpec */
    char final_state[32];
} fake_kfp;

__attribute__((format(printf, 3, 4)))
static void violation(fake_kfp *k, kiln_http_request *req, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    strncat(k->violations, line, sizeof k->violations - strlen(k->violations) - 2);
    strncat(k->violations, "\n", sizeof k->violations - strlen(k->violations) - 1);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "error", line);
    cJSON_AddNumberToObject(e, "code", 3);
    cJSON_AddStringToObject(e, "message", line);
    kiln_http_reply_json(req, 400, e, NULL);
}

static const char *query(kiln_http_request *req, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(kiln_http_request_query(req), key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void reply(kiln_http_request *req, const char *json)
{
    kiln_http_reply_json(req, 200, cJSON_Parse(json), NULL);
}

/* The uploadfile part of a multipart/form-data body. */
static char *upload_part(kiln_http_request *req, size_t *len)
{
    const char *ct = kiln_http_request_header(req, "Content-Type");
    const char *b = ct ? strstr(ct, "boundary=") : NULL;
    size_t body_len = 0;
    const char *body = kiln_http_request_body(req, &body_len);
    char delim[200];
    if (!b || strncmp(ct, "multipart/form-data", 19))
        return NULL;
    snprintf(delim, sizeof delim, "\r\n--%s", b + 9);
    const char *part = strstr(body, "name=\"uploadfile\"");
    const char *start = part ? strstr(part, "\r\n\r\n") : NULL;
    const char *end = start ? strstr(start + 4, delim) : NULL;
    if (!end)
        return NULL;
    *len = (size_t)(end - start - 4);
    return strndup(start + 4, *len);
}

static void h_upload(fake_kfp *k, kiln_http_request *req, int version)
{
    size_t len = 0;
    char *yaml = upload_part(req, &len);
    kiln_err err = {0};
    char out[256];
    if (!yaml)
        return violation(k, req, "upload: no multipart field 'uploadfile'%s", "");
    kiln_kfp_ir *ir = kiln_kfp_ir_parse(yaml, len, "uploadfile", &err);
    free(yaml);
    if (!ir || kiln_kfp_ir_validate(ir, k->image, &err) != KILN_OK) {
        kiln_kfp_ir_free(ir);
        return violation(k, req, "upload: invalid pipeline: %s", err.msg);
    }
    if (!ir->platform)
        return kiln_kfp_ir_free(ir), violation(k, req, "upload: no platform document%s", "");
    cJSON_Delete(k->spec);
    k->spec = cJSON_Duplicate(ir->spec, 1);
    kiln_kfp_ir_free(ir);
    if (!version) {
        if (!query(req, "name") && !query(req, "display_name"))
            return violation(k, req, "upload: no name / display_name query%s", "");
        k->pipelines++;
        snprintf(k->last_version, sizeof k->last_version, "v-1");
        snprintf(out, sizeof out, "{\"pipeline_id\":\"p-1\",\"display_name\":\"%s\"}",
                 query(req, "display_name"));
        return reply(req, out);
    }
    if (!query(req, "pipelineid") || strcmp(query(req, "pipelineid"), "p-1"))
        return violation(k, req, "upload_version: pipelineid '%s' is not p-1",
                         query(req, "pipelineid") ? query(req, "pipelineid") : "(none)");
    if (!query(req, "name"))
        return violation(k, req, "upload_version: no name%s", "");
    k->versions++;
    snprintf(k->last_version, sizeof k->last_version, "v-%d", k->versions + 1);
    snprintf(out, sizeof out, "{\"pipeline_id\":\"p-1\",\"pipeline_version_id\":\"%s\"}",
             k->last_version);
    reply(req, out);
}

/* filter={"predicates":[{"operation":"EQUALS","key":"display_name","stringValue":N}]} */
static const char *filter_name(fake_kfp *k, kiln_http_request *req)
{
    static __thread char name[256];
    cJSON *f = cJSON_Parse(query(req, "filter") ? query(req, "filter") : "");
    const cJSON *p = cJSON_GetArrayItem(cJSON_GetObjectItem(f, "predicates"), 0);
    const cJSON *op = cJSON_GetObjectItem(p, "operation"), *key = cJSON_GetObjectItem(p, "key");
    const cJSON *v = cJSON_GetObjectItem(p, "stringValue");
    int ok = cJSON_IsString(op) && !strcmp(op->valuestring, "EQUALS") && cJSON_IsString(key) &&
             !strcmp(key->valuestring, "display_name") && cJSON_IsString(v);
    if (ok)
        snprintf(name, sizeof name, "%s", v->valuestring);
    cJSON_Delete(f);
    (void)k;
    return ok ? name : NULL;
}

static int check_version_ref(fake_kfp *k, kiln_http_request *req, const cJSON *body)
{
    const cJSON *ref = cJSON_GetObjectItem(body, "pipeline_version_reference");
    const cJSON *p = cJSON_GetObjectItem(ref, "pipeline_id");
    const cJSON *v = cJSON_GetObjectItem(ref, "pipeline_version_id");
    if (!cJSON_IsString(p) || strcmp(p->valuestring, "p-1") || !cJSON_IsString(v) ||
        strcmp(v->valuestring, k->last_version)) {
        violation(k, req, "run: pipeline_version_reference does not name the uploaded version "
                  "%s", k->last_version);
        return -1;
    }
    return 0;
}

static int check_run_body(fake_kfp *k, kiln_http_request *req, const cJSON *body, int recurring)
{
    static const char *const allowed[] = {"display_name", "description", "experiment_id",
                                          "pipeline_version_reference", "runtime_config",
                                          "service_account", "trigger", "max_concurrency",
                                          "mode", "no_catchup", "namespace", NULL};
    const cJSON *f;
    cJSON_ArrayForEach(f, body) {
        int ok = 0;
        for (int i = 0; allowed[i]; i++)
            ok |= !strcmp(f->string, allowed[i]);
        if (!ok || (!recurring && (!strcmp(f->string, "trigger") || !strcmp(f->string, "mode"))))
            return violation(k, req, "run: field '%s' is not part of the message", f->string), -1;
    }
    const cJSON *dn = cJSON_GetObjectItem(body, "display_name");
    const cJSON *eid = cJSON_GetObjectItem(body, "experiment_id");
    if (!cJSON_IsString(dn) || !*dn->valuestring)
        return violation(k, req, "run: display_name missing%s", ""), -1;
    if (!cJSON_IsString(eid) || strcmp(eid->valuestring, "e-1"))
        return violation(k, req, "run: experiment_id is not e-1%s", ""), -1;
    if (check_version_ref(k, req, body))
        return -1;
    const cJSON *params = cJSON_GetObjectItem(cJSON_GetObjectItem(body, "runtime_config"),
                                              "parameters"), *p;
    if (!cJSON_IsObject(params))
        return violation(k, req, "run: runtime_config.parameters is not an object%s", ""), -1;
    const cJSON *defs = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(k->spec, "root"),
                                                                "inputDefinitions"), "parameters");
    cJSON_ArrayForEach(p, params) {
        const cJSON *type = cJSON_GetObjectItem(cJSON_GetObjectItem(defs, p->string),
                                                "parameterType");
        if (!cJSON_IsString(type))
            return violation(k, req, "run: '%s' is not a pipeline parameter", p->string), -1;
        if (!kiln_kfp_value_fits(p, type->valuestring))
            return violation(k, req, "run: parameter '%s' has the wrong JSON type", p->string), -1;
    }
    return 0;
}

static void h_runs(fake_kfp *k, kiln_http_request *req, const char *rest, const char *method)
{
    char out[512];
    if (!strcmp(method, "POST") && !strcmp(rest, "runs")) {
        cJSON *body = cJSON_Parse(kiln_http_request_body(req, NULL));
        if (!cJSON_IsObject(body) || check_run_body(k, req, body, 0)) {
            if (!cJSON_IsObject(body))
                violation(k, req, "runs: body is not JSON%s", "");
            cJSON_Delete(body);
            return;
        }
        const cJSON *dn = cJSON_GetObjectItem(body, "display_name");
        snprintf(k->final_state, sizeof k->final_state, "%s",
                 strstr(dn->valuestring, "fail") ? "FAILED" : "SUCCEEDED");
        cJSON_Delete(k->last_run);
        k->last_run = body;
        k->runs++;
        snprintf(out, sizeof out, "{\"run_id\":\"r-%d\",\"state\":\"PENDING\"}", k->runs);
        return reply(req, out);
    }
    if (!strcmp(method, "GET") && !strncmp(rest, "runs/r-", 7)) {
        k->run_gets++;
        int final = k->run_gets >= 2;
        snprintf(out, sizeof out, "{\"run_id\":\"%s\",\"state\":\"%s\"%s}", rest + 5,
                 final ? k->final_state : "RUNNING",
                 final && !strcmp(k->final_state, "FAILED")
                     ? ",\"error\":{\"code\":2,\"message\":\"task train failed: OOMKilled\"}" : "");
        return reply(req, out);
    }
    if (!strcmp(method, "POST") && !strcmp(rest, "recurringruns")) {
        cJSON *body = cJSON_Parse(kiln_http_request_body(req, NULL));
        const cJSON *cron = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(body,
                                                "trigger"), "cron_schedule"), "cron");
        const cJSON *mode = cJSON_GetObjectItem(body, "mode");
        const cJSON *mc = cJSON_GetObjectItem(body, "max_concurrency");
        int fields = 0;
        for (const char *s = cJSON_IsString(cron) ? cron->valuestring : ""; *s; s++)
            fields += *s != ' ' && (s[1] == ' ' || s[1] == '\0');
        if (!cJSON_IsObject(body) || check_run_body(k, req, body, 1)) {
            cJSON_Delete(body);
            return;
        }
        if (fields != 6 || !cJSON_IsString(mode) || strcmp(mode->valuestring, "ENABLE") ||
            !cJSON_IsString(mc) || atoi(mc->valuestring) < 1) {
            cJSON_Delete(body);
            return violation(k, req, "recurringruns: trigger.cron_schedule.cron must have 6 "
                             "fields, mode ENABLE, max_concurrency an int64 string%s", "");
        }
        cJSON_Delete(k->last_run);
        k->last_run = body;
        k->recurring++;
        return reply(req, "{\"recurring_run_id\":\"rr-1\",\"status\":\"ENABLED\"}");
    }
    violation(k, req, "no such KFP call: %s", rest);
}

static void handler(kiln_http_request *req, void *ctx)
{
    fake_kfp *k = ctx;
    const char *rest = kiln_http_request_path_rest(req);
    const char *method = kiln_http_request_method(req);
    const char *auth = kiln_http_request_header(req, "Authorization");
    const char *cookie = kiln_http_request_header(req, "Cookie");
    char out[512];
    pthread_mutex_lock(&k->mu);
    if (k->need_auth && !(auth && !strcmp(auth, k->need_auth)) &&
        !(cookie && strstr(cookie, k->need_auth))) {
        pthread_mutex_unlock(&k->mu);
        kiln_http_reply_json(req, 401, cJSON_Parse("{\"error\":\"unauthenticated\",\"code\":16,"
                                                   "\"message\":\"Request header error: there "
                                                   "is no user identity header.\"}"), NULL);
        return;
    }
    if (!strcmp(method, "POST") && !strcmp(rest, "pipelines/upload")) {
        h_upload(k, req, 0);
    } else if (!strcmp(method, "POST") && !strcmp(rest, "pipelines/upload_version")) {
        h_upload(k, req, 1);
    } else if (!strcmp(method, "GET") && !strcmp(rest, "pipelines")) {
        const char *name = filter_name(k, req);
        if (!name)
            violation(k, req, "pipelines: filter is not a display_name EQUALS predicate%s", "");
        else if (k->pipelines && !strcmp(name, KILN_KFP_PIPELINE_NAME))
            reply(req, "{\"pipelines\":[{\"pipeline_id\":\"p-1\",\"display_name\":\"kiln-train\"}],"
                       "\"total_size\":1}");
        else
            reply(req, "{}");
    } else if (!strcmp(method, "GET") && !strcmp(rest, "pipelines/p-1/versions")) {
        snprintf(out, sizeof out, "{\"pipeline_versions\":[{\"pipeline_id\":\"p-1\","
                 "\"pipeline_version_id\":\"%s\"}],\"total_size\":1}", k->last_version);
        reply(req, out);
    } else if (!strcmp(method, "GET") && !strcmp(rest, "experiments")) {
        const char *name = filter_name(k, req);
        if (!name)
            violation(k, req, "experiments: filter is not a display_name EQUALS predicate%s", "");
        else if (k->experiments && !strcmp(name, k->experiment_name))
            reply(req, "{\"experiments\":[{\"experiment_id\":\"e-1\"}],\"total_size\":1}");
        else
            reply(req, "{}");
    } else if (!strcmp(method, "POST") && !strcmp(rest, "experiments")) {
        cJSON *b = cJSON_Parse(kiln_http_request_body(req, NULL));
        const cJSON *dn = cJSON_GetObjectItem(b, "display_name");
        if (!cJSON_IsString(dn) || !*dn->valuestring) {
            violation(k, req, "experiments: display_name missing%s", "");
        } else {
            snprintf(k->experiment_name, sizeof k->experiment_name, "%s", dn->valuestring);
            k->experiments++;
            reply(req, "{\"experiment_id\":\"e-1\"}");
        }
        cJSON_Delete(b);
    } else {
        h_runs(k, req, rest, method);
    }
    pthread_mutex_unlock(&k->mu);
}

static int setup(void **state)
{
    fake_kfp *k = calloc(1, sizeof *k);
    kiln_http_options o;
    kiln_err err = {0};
    pthread_mutex_init(&k->mu, NULL);
    kiln_http_options_default(&o);
    o.threads = 2;
    k->srv = kiln_http_server_new(&o, &err);
    kiln_http_route r = {.path = "/pipeline/apis/v2beta1/", .prefix = 1, .handler = handler,
                         .ctx = k};
    if (!k->srv || kiln_http_server_add_route(k->srv, &r, &err) != KILN_OK ||
        kiln_http_server_start(k->srv, &err) != KILN_OK) {
        fprintf(stderr, "fake KFP: %s\n", err.msg);
        return -1;
    }
    snprintf(k->host, sizeof k->host, "http://127.0.0.1:%d/pipeline",
             kiln_http_server_port(k->srv));
    *state = k;
    return 0;
}

static int teardown(void **state)
{
    fake_kfp *k = *state;
    kiln_http_server_free(k->srv);
    cJSON_Delete(k->last_run);
    cJSON_Delete(k->spec);
    pthread_mutex_destroy(&k->mu);
    free(k);
    return 0;
}

__attribute__((format(printf, 2, 3)))
static int kiln(char **out, const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int rc = kt_run_capture(out, "%s pipeline %s", kt_kiln_bin(), args);
    printf("---- kiln pipeline %s: exit %d ----\n%s\n", args, rc, *out);
    return rc;
}

static void no_violations(fake_kfp *k)
{
    if (k->violations[0])
        fail_msg("requests that break the KFP v2beta1 contract:\n%s", k->violations);
}

static const cJSON *run_param(fake_kfp *k, const char *name)
{
    return cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(k->last_run,
                                                                       "runtime_config"),
                                                   "parameters"), name);
}

static void test_submit_then_new_version(void **state)
{
    fake_kfp *k = *state;
    char *out = NULL;
    k->need_auth = "Bearer tok-123";
    k->image = "registry.local/kiln:v1.0.1";
    int rc = kiln(&out, "submit --kubeflow-host %s --token tok-123 --training-image %s "
                  "--experiment 'Dry-Wet Model Training Experiment' "
                  "--source-data-object dry-wet-data-2025-01.zip --epochs 3 --learning-rate 0.01 "
                  "--param min_accuracy_gain=0.02", k->host, k->image);
    no_violations(k);
    assert_int_equal(rc, 0);
    assert_int_equal(k->pipelines, 1);
    assert_int_equal(k->experiments, 1);
    assert_int_equal(k->runs, 1);
    assert_string_equal(k->experiment_name, "Dry-Wet Model Training Experiment");
    char url[256];
    snprintf(url, sizeof url, "%s/#/runs/details/r-1", k->host);
    assert_non_null(strstr(out, url));
    assert_string_equal(run_param(k, "source_data_object")->valuestring, "dry-wet-data-2025-01.zip");
    assert_true(run_param(k, "epochs")->valuedouble == 3);
    assert_true(run_param(k, "learning_rate")->valuedouble == 0.01);
    assert_true(run_param(k, "min_accuracy_gain")->valuedouble == 0.02);
    assert_null(run_param(k, "batch_size"));
    free(out);
    /* Again, with the session cookie and --wait: a new version, the same
     * experiment, the run followed to SUCCEEDED. */
    k->need_auth = "authservice_session=abc";
    rc = kiln(&out, "submit --kubeflow-host %s --cookie authservice_session=abc --wait "
              "--poll-interval 1 --training-image %s --experiment 'Dry-Wet Model Training "
              "Experiment'", k->host, k->image);
    no_violations(k);
    assert_int_equal(rc, 0);
    assert_int_equal(k->pipelines, 1);
    assert_int_equal(k->versions, 1);
    assert_int_equal(k->experiments, 1);
    assert_non_null(strstr(out, "run r-2: RUNNING"));
    assert_non_null(strstr(out, "run r-2: SUCCEEDED"));
    free(out);
    k->need_auth = NULL;
}

static void test_wait_failed_run(void **state)
{
    fake_kfp *k = *state;
    char *out = NULL;
    k->run_gets = 0;
    k->image = KILN_KFP_DEFAULT_IMAGE;
    int rc = kiln(&out, "submit --kubeflow-host %s --wait --poll-interval 1 --run-name "
                  "will-fail --experiment %s", k->host, "'Dry-Wet Model Training Experiment'");
    no_violations(k);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, ": FAILED"));
    assert_non_null(strstr(out, "OOMKilled"));
    free(out);
}

static void test_schedule(void **state)
{
    fake_kfp *k = *state;
    char *out = NULL;
    k->image = KILN_KFP_DEFAULT_IMAGE;
    int rc = kiln(&out, "schedule --kubeflow-host %s --cron '0 3 * * *' --max-concurrency 1 "
                  "--experiment %s --epochs 5", k->host, "'Dry-Wet Model Training Experiment'");
    no_violations(k);
    assert_int_equal(rc, 0);
    assert_int_equal(k->recurring, 1);
    const cJSON *cron = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(k->last_run,
                                            "trigger"), "cron_schedule"), "cron");
    assert_string_equal(cron->valuestring, "0 0 3 * * *");
    assert_non_null(strstr(out, "recurring run rr-1"));
    free(out);
}

static void test_refusals(void **state)
{
    fake_kfp *k = *state;
    char *out = NULL;
    /* Credentials are Secrets, not parameters. */
    int rc = kiln(&out, "submit --kubeflow-host %s --minio-access-key %s", k->host, "minio");
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "Secret"));
    free(out);
    rc = kiln(&out, "schedule --kubeflow-host %s%s", k->host, "");
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "--cron is required"));
    free(out);
    rc = kiln(&out, "schedule --kubeflow-host %s --cron '%s'", k->host, "* * *");
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "expected 5 fields"));
    free(out);
    rc = kiln(&out, "submit --kubeflow-host %s --epochs %s", k->host, "many");
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "'many' is not a NUMBER_INTEGER"));
    free(out);
    rc = kiln(&out, "submit --kubeflow-host %s%s", "ftp://x", "");
    assert_int_equal(rc, 2);
    free(out);
    /* A server that wants a token says so, and kiln says what to do. */
    k->need_auth = "Bearer right";
    rc = kiln(&out, "submit --kubeflow-host %s --token %s", k->host, "wrong");
    k->need_auth = NULL;
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "HTTP 401"));
    assert_non_null(strstr(out, "--token"));
    free(out);
    rc = kt_run_capture(&out, "%s pipeline submit --help", kt_kiln_bin());
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "--destination-model-bucket B   (ml-models)"));
    assert_non_null(strstr(out, "(default http://localhost/pipeline)"));
    free(out);
    no_violations(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_submit_then_new_version),
        cmocka_unit_test(test_wait_failed_run),
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
