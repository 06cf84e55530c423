/* fuzz/fuzz_tracking_api.c — libFuzzer target: kiln-tracking's REST API
 * (kiln_tracking_api) on a real SQLite store in a temp directory.
 *
 * Input: byte 0 picks an endpoint from the fixed list below, byte 1 the
 * prefix (/api or /ajax-api) and, when its bit 1 is set, another method
 * (for 405s); the rest is the JSON body, parsed with cJSON (inputs that do
 * not parse are dropped). A string value "$run" in the body becomes the id
 * of the last run created, which the fuzzer could not guess (ids are
 * random). Every call must answer JSON with a 2xx or 4xx status, or 503
 * (busy); MLflow's one 5xx for bad input, INVALID_STATE → 500, is allowed
 * too. The store is replaced by a fresh one every STORE_INPUTS inputs, so
 * it does not grow without bound. Seeds: fuzz/corpus/tracking_api/.
 */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tracking/tracking.h"

#define STORE_INPUTS 1000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct {
    const char *method, *endpoint;
} endpoints[] = {
    {"POST", "experiments/create"},
    {"GET", "experiments/get"},
    {"GET", "experiments/get-by-name"},
    {"POST", "experiments/search"},
    {"GET", "experiments/search"},
    {"POST", "experiments/update"},
    {"POST", "experiments/delete"},
    {"POST", "experiments/restore"},
    {"POST", "experiments/set-experiment-tag"},
    {"POST", "experiments/delete-experiment-tag"},
    {"POST", "runs/create"},
    {"POST", "runs/update"},
    {"POST", "runs/delete"},
    {"POST", "runs/restore"},
    {"GET", "runs/get"},
    {"POST", "runs/search"},
    {"POST", "runs/log-metric"},
    {"POST", "runs/log-parameter"},
    {"POST", "runs/set-tag"},
    {"POST", "runs/delete-tag"},
    {"POST", "runs/log-batch"},
    {"GET", "metrics/get-history"},
    {"GET", "artifacts/list"},
    {"POST", "registered-models/create"},
    {"POST", "registered-models/rename"},
    {"PATCH", "registered-models/update"},
    {"DELETE", "registered-models/delete"},
    {"GET", "registered-models/get"},
    {"GET", "registered-models/search"},
    {"POST", "registered-models/get-latest-versions"},
    {"GET", "registered-models/get-latest-versions"},
    {"POST", "registered-models/set-tag"},
    {"DELETE", "registered-models/delete-tag"},
    {"POST", "registered-models/alias"},
    {"DELETE", "registered-models/alias"},
    {"GET", "registered-models/alias"},
    {"POST", "model-versions/create"},
    {"PATCH", "model-versions/update"},
    {"POST", "model-versions/transition-stage"},
    {"DELETE", "model-versions/delete"},
    {"GET", "model-versions/get"},
    {"GET", "model-versions/search"},
    {"GET", "model-versions/get-download-uri"},
    {"POST", "model-versions/set-tag"},
    {"DELETE", "model-versions/delete-tag"},
    {"GET", "mlflow-artifacts/artifacts"}, /* the artifact proxy's listing */
    {"GET", "no/such-endpoint"},
};
#define N_ENDPOINTS (sizeof endpoints / sizeof endpoints[0])

static const char *const methods[] = {"GET", "POST", "PATCH", "DELETE", "HEAD", "PUT"};

/* The fuzzer's store: process-wide by necessity (libFuzzer calls one
 * function per input), replaced every STORE_INPUTS inputs. */
static struct {
    char dir[256];
    kiln_tracking *t;
    unsigned inputs;
    char last_run[64];
} fz;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_store(void)
{
    kiln_tracking_close(fz.t);
    fz.t = NULL;
    if (fz.dir[0])
        nftw(fz.dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    fz.dir[0] = '\0';
}

static void open_store(void)
{
    const char *tmp = getenv("TMPDIR");
    char db[300], art[300];
    kiln_err err = {0};
    snprintf(fz.dir, sizeof fz.dir, "%s/kiln-fuzz-tracking-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fz.dir)) {
        perror("fuzz_tracking_api: mkdtemp");
        abort();
    }
    snprintf(db, sizeof db, "%s/store.db", fz.dir);
    snprintf(art, sizeof art, "%s/artifacts", fz.dir);
    kiln_tracking_options o = {.db_path = db, .artifacts_root = art};
    fz.t = kiln_tracking_open(&o, &err);
    if (!fz.t) {
        fprintf(stderr, "fuzz_tracking_api: cannot open the store: %s\n", err.msg);
        abort();
    }
    fz.last_run[0] = '\0';
}

/* "$run" → the last run id, anywhere in the body. */
static void substitute_run(cJSON *item)
{
    for (; item; item = item->next) {
        if (cJSON_IsString(item) && strcmp(item->valuestring, "$run") == 0 && fz.last_run[0])
            cJSON_SetValuestring(item, fz.last_run);
        substitute_run(item->child);
    }
}

static void remember_run(const cJSON *resp)
{
    const cJSON *info =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(resp, "run"), "info");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(info, "run_id");
    if (cJSON_IsString(id) && strlen(id->valuestring) < sizeof fz.last_run)
        strcpy(fz.last_run, id->valuestring);
}

static int status_allowed(int status, const cJSON *resp)
{
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(resp, "error_code");
    if (status >= 200 && status < 300)
        return 1;
    if (!cJSON_IsString(code) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(resp, "message")))
        return 0; /* an error is MLflow's {"error_code", "message"} */
    if ((status >= 400 && status < 500) || status == 503)
        return 1;
    return status == 500 && strcmp(code->valuestring, "INVALID_STATE") == 0;
}

static void cleanup(void)
{
    remove_store();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    cJSON *body = NULL;
    if (size > 2) {
        body = cJSON_ParseWithLength((const char *)data + 2, size - 2);
        if (!body)
            return 0;
    }
    if (!fz.t) {
        open_store();
        atexit(cleanup);
    } else if (++fz.inputs % STORE_INPUTS == 0) {
        remove_store();
        open_store();
    }
    size_t e = data[0] % N_ENDPOINTS;
    const char *method = endpoints[e].method;
    if (data[1] & 2)
        method = methods[(data[1] >> 2) % (sizeof methods / sizeof methods[0])];
    char path[128];
    snprintf(path, sizeof path, "%s/2.0/%s%s", data[1] & 1 ? "/ajax-api" : "/api",
             strncmp(endpoints[e].endpoint, "mlflow-", 7) ? "mlflow/" : "", endpoints[e].endpoint);
    substitute_run(body);
    int status = 0;
    cJSON *resp = kiln_tracking_api(fz.t, method, path, body, &status);
    if (!resp || !status_allowed(status, resp)) {
        char *req = body ? cJSON_PrintUnformatted(body) : NULL;
        char *out = resp ? cJSON_PrintUnformatted(resp) : NULL;
        fprintf(stderr, "fuzz_tracking_api: %s %s %s -> HTTP %d %s\n", method, path,
                req ? req : "(no body)", status, out ? out : "(no JSON)");
        abort();
    }
    if (status == 200 && strcmp(endpoints[e].endpoint, "runs/create") == 0)
        remember_run(resp);
    cJSON_Delete(resp);
    cJSON_Delete(body);
    return 0;
}
