/* The register step: new model version, promotion gate, decision tags. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kfp/register.h"

/* The run's latest `test_accuracy`; ENOTFOUND when it has none. */
static int run_accuracy(kiln_mlflow_client *c, const char *run_id, double *acc, kiln_err *err)
{
    kiln_mlflow_run *run = NULL;
    int rc = kiln_mlflow_run_get(c, run_id, &run, err);
    if (rc != KILN_OK)
        return rc;
    rc = kiln_err_set(err, KILN_ENOTFOUND, "run %s has no test_accuracy metric", run_id);
    for (size_t i = 0; i < run->n_metrics; i++) {
        if (!strcmp(run->metrics[i].key, "test_accuracy")) {
            *acc = run->metrics[i].value;
            rc = KILN_OK;
            kiln_err_clear(err);
        }
    }
    kiln_mlflow_run_free(run);
    return rc;
}

static int version_tag(kiln_mlflow_client *c, const char *name, const char *version,
                       const char *key, const char *value, kiln_err *err)
{
    cJSON *req = cJSON_CreateObject(), *resp = NULL;
    cJSON_AddStringToObject(req, "name", name);
    cJSON_AddStringToObject(req, "version", version);
    cJSON_AddStringToObject(req, "key", key);
    cJSON_AddStringToObject(req, "value", value);
    int rc = kiln_mlflow_call(c, "POST", "/api/2.0/mlflow/model-versions/set-tag", req, &resp, err);
    cJSON_Delete(req);
    cJSON_Delete(resp);
    return rc;
}

/* The version in Production now and its accuracy. */
static int current_production(kiln_mlflow_client *c, const kiln_kfp_register_opts *o,
                              kiln_kfp_register_result *res, kiln_err *err)
{
    const char *stages[] = {"Production"};
    kiln_mlflow_model_version **v = NULL;
    size_t n = 0;
    int rc = kiln_mlflow_latest_versions(c, o->model_name, stages, 1, &v, &n, err);
    if (rc != KILN_OK)
        return rc;
    if (n > 0) {
        snprintf(res->production_version, sizeof res->production_version, "%s", v[0]->version);
        kiln_err e2 = {0};
        res->had_production = v[0]->run_id[0] &&
                              run_accuracy(c, v[0]->run_id, &res->production_accuracy, &e2) == KILN_OK;
        if (!res->had_production)
            kiln_log_warn(o->log, "register: version %s in Production has no test accuracy (%s); "
                          "it does not hold the new one back", v[0]->version,
                          e2.msg[0] ? e2.msg : "no run");
    }
    kiln_mlflow_model_versions_free(v, n);
    return KILN_OK;
}

static void decide(const kiln_kfp_register_opts *o, kiln_kfp_register_result *res)
{
    if (!res->had_production) {
        res->promoted = 1;
        if (res->production_version[0])
            snprintf(res->reason, sizeof res->reason, "test accuracy %.4f; version %s in "
                     "Production has no test accuracy", res->test_accuracy,
                     res->production_version);
        else
            snprintf(res->reason, sizeof res->reason, "test accuracy %.4f; no version in "
                     "Production", res->test_accuracy);
        return;
    }
    double need = res->production_accuracy + o->min_gain;
    /* A tiny tolerance, so equal accuracies computed apart still pass ">=". */
    res->promoted = res->test_accuracy + 1e-12 >= need;
    snprintf(res->reason, sizeof res->reason,
             "test accuracy %.4f %s %.4f + %.4f of version %s in Production", res->test_accuracy,
             res->promoted ? ">=" : "<", res->production_accuracy, o->min_gain,
             res->production_version);
}

static int promote(kiln_mlflow_client *c, const kiln_kfp_register_opts *o,
                   const kiln_kfp_register_result *res, kiln_err *err)
{
    kiln_mlflow_model_version *mv = NULL;
    int rc = kiln_mlflow_model_version_transition(c, o->model_name, res->version, "Production", 1,
                                                  &mv, err);
    kiln_mlflow_model_version_free(mv);
    if (rc == KILN_OK)
        rc = kiln_mlflow_alias_set(c, o->model_name, KILN_KFP_CHAMPION_ALIAS, res->version, err);
    return rc;
}

int kiln_kfp_register(kiln_mlflow_client *c, const kiln_kfp_register_opts *o,
                      kiln_kfp_register_result *res, kiln_err *err)
{
    kiln_mlflow_model_version *mv = NULL;
    char source[512], acc[32];
    int rc;
    memset(res, 0, sizeof *res);
    if (!o->model_name || !*o->model_name || !o->run_id || !*o->run_id)
        return kiln_err_set(err, KILN_EINVAL, "register: a registered model name and a run id "
                            "are needed");
    if (o->has_accuracy && !isfinite(o->test_accuracy))
        return kiln_err_set(err, KILN_EINVAL, "register: test accuracy is not a number");
    res->test_accuracy = o->test_accuracy;
    if (!o->has_accuracy && (rc = run_accuracy(c, o->run_id, &res->test_accuracy, err)) != KILN_OK)
        return kiln_err_wrap(err, "register: run the evaluate step first");
    if ((rc = kiln_mlflow_registered_model_create(c, o->model_name, NULL, err)) != KILN_OK ||
        (rc = current_production(c, o, res, err)) != KILN_OK)
        return rc;
    snprintf(source, sizeof source, "runs:/%s/%s", o->run_id,
             o->artifact_path ? o->artifact_path : "model");
    if ((rc = kiln_mlflow_model_version_create(c, o->model_name, source, o->run_id, &mv, err)) !=
        KILN_OK)
        return rc;
    snprintf(res->version, sizeof res->version, "%s", mv->version);
    kiln_mlflow_model_version_free(mv);
    rc = kiln_mlflow_model_version_wait_ready(c, o->model_name, res->version,
                                              o->ready_timeout_ms ? o->ready_timeout_ms : 300000,
                                              500, NULL, err);
    if (rc != KILN_OK)
        return rc;
    decide(o, res);
    snprintf(acc, sizeof acc, "%.6f", res->test_accuracy);
    if ((rc = version_tag(c, o->model_name, res->version, "kiln.test_accuracy", acc, err)) ||
        (rc = version_tag(c, o->model_name, res->version, "kiln.promotion_reason", res->reason,
                          err)) ||
        (rc = version_tag(c, o->model_name, res->version, "kiln.promotion",
                          res->promoted ? "promoted" : "not promoted", err)))
        return rc;
    if (res->promoted && (rc = promote(c, o, res, err)) != KILN_OK)
        return rc;
    return kiln_mlflow_run_set_tag(c, o->run_id, "kiln.registered_version", res->version, err);
}
