/* lib/kfp/local.h — running a compiled pipeline on this machine
 * (`kiln pipeline run-local`): the same IR, the DAG in dependency order,
 * each executor as a local child process instead of a pod.
 *
 * For every task the runner builds the ExecutorInput KFP's launcher would
 * (parameter values from the pipeline parameters, constants and upstream
 * outputs; input artifacts from upstream outputs; output parameter files,
 * output artifact URIs and the executor-output file under the run
 * directory), resolves the container's command and args with it, and runs
 * them. The image is not pulled: the command's program (for kiln's pipeline
 * "kiln-component") is looked up in `components_dir`. Artifacts live under
 *   <runs_dir>/<run_id>/<task>/artifacts/<name>     (uri file://...)
 *   <runs_dir>/<run_id>/<task>/outputs/<param>      (output parameter files)
 *   <runs_dir>/<run_id>/<task>/executor_input.json, executor_output.json, log.txt
 *   <runs_dir>/<run_id>/run.json                    (states, durations, outputs)
 * Output parameters come from executor_output.json when the step wrote one,
 * else from their files, parsed by their declared type. A step's stdout and
 * stderr are copied line by line to `out` ("  [task] ...") and log.txt.
 * retryPolicy.maxRetryCount is honoured with its backoff (backoffDuration,
 * backoffFactor, capped by backoffMaxDuration). The first task that fails
 * for good stops the pipeline; tasks not run are reported NOT_RUN.
 *
 * MLflow (mlflow non-NULL): the runner records the pipeline run itself as
 * an MLflow run in `experiment` — tags kiln.pipeline, kiln.pipeline_run_id,
 * the pipeline parameters as params, per task a tag kiln.task.<name> with
 * its state and a metric task_<name>_seconds — ending FINISHED, or FAILED
 * with tags kiln.failed_task and kiln.failure when a task fails. So a
 * failure before train has created its run is recorded too. Children get
 * KILN_MLFLOW_PARENT_RUN_ID (train tags its run mlflow.parentRunId: the
 * training run appears nested under the pipeline run) and
 * KILN_PIPELINE_RUN_ID.
 *
 * Ownership: options are borrowed for the call; the result is a plain value.
 */
#ifndef KILN_KFP_LOCAL_H
#define KILN_KFP_LOCAL_H

#include <limits.h>
#include <signal.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "common/err.h"
#include "common/log.h"
#include "kfp/ir.h"
#include "mlflow/mlflow.h"

typedef struct kiln_kfp_local_opts {
    const kiln_kfp_ir *ir;
    const cJSON *params;          /* pipeline parameter values over the defaults (an object) */
    const char *runs_dir;         /* NULL: ".kiln/pipeline-runs" */
    const char *run_id;           /* NULL: <UTC time>-<random> */
    const char *components_dir;   /* where the executors' programs are (required) */
    kiln_mlflow_client *mlflow;   /* the pipeline run's MLflow; NULL: none */
    const char *experiment;       /* NULL: the mlflow_experiment_name parameter, else "kiln" */
    FILE *out;                    /* task states and step output; NULL: stdout */
    const volatile sig_atomic_t *stop; /* raised: the running step gets SIGTERM */
} kiln_kfp_local_opts;

#define KILN_KFP_LOCAL_MAX_LINE 1024

typedef struct kiln_kfp_local_task {
    char name[128];
    char state[16];               /* SUCCEEDED, FAILED, NOT_RUN, CANCELED */
    double seconds;
    int attempts;
} kiln_kfp_local_task;

typedef struct kiln_kfp_local_result {
    char run_id[64];
    char run_dir[PATH_MAX];
    char mlflow_run_id[64];       /* the pipeline's MLflow run, "" without MLflow */
    char state[16];               /* SUCCEEDED, FAILED or CANCELED */
    char failed_task[128];
    char message[KILN_KFP_LOCAL_MAX_LINE]; /* the failed step's last error line */
    double seconds;
    size_t n_tasks;
    kiln_kfp_local_task tasks[KILN_KFP_MAX_TASKS];
} kiln_kfp_local_result;

/* The pipeline parameters with their values: the root's defaults, then
 * `overrides` (each checked against its declared type; unknown names are
 * EINVAL). *out is a new object (caller frees). */
int kiln_kfp_local_params(const kiln_kfp_ir *ir, const cJSON *overrides, cJSON **out,
                          kiln_err *err);

/* Run the pipeline. KILN_OK when every task succeeded; a task that failed:
 * EIO with "task 'x' failed: <its message>" (the result says more);
 * ECANCELED when stopped; other codes when the run could not start. */
int kiln_kfp_run_local(const kiln_kfp_local_opts *o, kiln_kfp_local_result *res,
                       kiln_err *err);

#endif
