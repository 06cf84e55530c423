/* lib/kfp/executor.h — a step's side of KFP v2's executor contract.
 *
 * KFP's launcher starts a container with its placeholders resolved: plain
 * values, artifact paths (local files mounted from the artifact store) and
 * output parameter files; or, with {{$}}, the whole ExecutorInput as JSON:
 *   {"inputs":  {"parameterValues": {name: value},
 *                "artifacts": {name: {"artifacts": [{"name", "type", "uri", "metadata"}]}}},
 *    "outputs": {"parameters": {name: {"outputFile": path}},
 *                "artifacts": {name: {"artifacts": [...]}},
 *                "outputFile": path}}
 * A step returns values by writing each output parameter's file, or by
 * writing an ExecutorOutput JSON at outputs.outputFile:
 *   {"parameterValues": {name: value},
 *    "artifacts": {name: {"artifacts": [{"name", "uri", "metadata": {...}}]}}}
 * which also carries artifact metadata (system.Metrics scalars, a
 * system.ClassificationMetrics confusionMatrix) and wins over the files.
 *
 * Every JSON returned here belongs to the caller (cJSON_Delete); strings
 * returned from an executor input are borrowed from it.
 */
#ifndef KILN_KFP_EXECUTOR_H
#define KILN_KFP_EXECUTOR_H

#include <cjson/cJSON.h>

#include "common/err.h"

/* Parse an executor input (the text of {{$}}). EFORMAT when it is not a JSON
 * object with "inputs" and "outputs". */
cJSON *kiln_kfp_executor_input_parse(const char *json, kiln_err *err);

/* An input parameter's value, or NULL + EINVAL naming it. */
const cJSON *kiln_kfp_exec_param(const cJSON *in, const char *name, kiln_err *err);
/* The same, as a string (EINVAL if it is not one). */
const char *kiln_kfp_exec_param_string(const cJSON *in, const char *name, kiln_err *err);
/* The first artifact of inputs.artifacts[name] (outputs: 0) or
 * outputs.artifacts[name] (outputs: 1), or NULL + EINVAL. */
const cJSON *kiln_kfp_exec_artifact(const cJSON *in, int outputs, const char *name, kiln_err *err);
/* That artifact's local path (kiln_kfp_uri_to_path of its uri); malloc'ed. */
char *kiln_kfp_exec_artifact_path(const cJSON *in, int outputs, const char *name, kiln_err *err);

/* Write `text` into an output parameter file (directories above it are
 * made; written atomically). */
int kiln_kfp_output_param_write(const char *path, const char *text, kiln_err *err);

/* An empty ExecutorOutput ({"parameterValues": {}, "artifacts": {}}). */
cJSON *kiln_kfp_executor_output_new(void);
/* Set parameterValues[name] = value (taken). */
int kiln_kfp_executor_output_param(cJSON *out, const char *name, cJSON *value, kiln_err *err);
/* Record output artifact `name` (copied from the executor input's entry, so
 * its name, type and uri are kept) with `metadata` (taken). */
int kiln_kfp_executor_output_artifact(cJSON *out, const cJSON *in, const char *name,
                                      cJSON *metadata, kiln_err *err);
/* Write it atomically at the executor input's outputs.outputFile. */
int kiln_kfp_executor_output_write(const cJSON *out, const cJSON *in, kiln_err *err);

/* The metadata of a system.ClassificationMetrics artifact holding a
 * confusion matrix, as kfp.dsl.ClassificationMetrics.log_confusion_matrix
 * writes it: {"confusionMatrix": {"annotationSpecs": [{"displayName"}],
 * "rows": [{"row": [counts]}]}}. `counts` is n x n, row-major, rows = true. */
cJSON *kiln_kfp_confusion_matrix_metadata(int n, const char *const *classes,
                                          const unsigned long long *counts);

#endif
