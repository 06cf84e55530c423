/* lib/kfp/register.h — the pipeline's register step: a new MLflow model
 * version from a training run, and the promotion gate.
 *
 * kiln_kfp_register creates the registered model if needed, registers
 * runs:/<run_id>/model as a new version and waits until it is READY. The
 * gate then compares the new test accuracy (opts->test_accuracy, or the
 * run's `test_accuracy` metric when has_accuracy is 0) with the accuracy of
 * the version now in Production (its run's `test_accuracy` metric):
 *   promoted  when there is no Production version (or it has no test
 *             accuracy), or new >= production + min_gain;
 * a promoted version moves to stage Production (archive_existing_versions:
 * the previous Production version becomes Archived) and gets the alias
 * `champion`. Either way the decision is recorded as version tags:
 *   kiln.promotion         "promoted" | "not promoted"
 *   kiln.promotion_reason  e.g. "test accuracy 0.8125 >= 0.7500 + 0.0000
 *                          of version 1 in Production"
 *   kiln.test_accuracy     the new accuracy
 * and the run gets the tag kiln.registered_version.
 */
#ifndef KILN_KFP_REGISTER_H
#define KILN_KFP_REGISTER_H

#include "common/err.h"
#include "common/log.h"
#include "mlflow/mlflow.h"

#define KILN_KFP_CHAMPION_ALIAS "champion"

typedef struct kiln_kfp_register_opts {
    const char *model_name;    /* registered model (required) */
    const char *run_id;        /* the training run (required) */
    const char *artifact_path; /* the package inside the run; NULL: "model" */
    int has_accuracy;          /* 1: use test_accuracy; 0: read the run's metric */
    double test_accuracy;
    double min_gain;           /* promote when new >= production + min_gain */
    int ready_timeout_ms;      /* 0: 300000 */
    const kiln_logger *log;    /* may be NULL */
} kiln_kfp_register_opts;

typedef struct kiln_kfp_register_result {
    char version[32];          /* the new version ("3") */
    int promoted;
    int had_production;
    char production_version[32];   /* the previous Production version, "" if none */
    double production_accuracy;    /* its test accuracy (when had_production) */
    double test_accuracy;          /* the new version's */
    char reason[300];
} kiln_kfp_register_result;

int kiln_kfp_register(kiln_mlflow_client *c, const kiln_kfp_register_opts *o,
                      kiln_kfp_register_result *res, kiln_err *err);

#endif
