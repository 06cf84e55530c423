/* lib/kfp/kfp_local_internal.h — the pieces of the local runner. */
#ifndef KILN_KFP_LOCAL_INTERNAL_H
#define KILN_KFP_LOCAL_INTERNAL_H

#include <signal.h>
#include <stdio.h>

#include "kfp/local.h"

/* One child process: argv[0] is a path; `env` "K=V" strings are added. */
typedef struct local_proc {
    const char *task;
    FILE *out;                    /* step output, prefixed with [task] */
    FILE *log;                    /* the task's log.txt (may be NULL) */
    const volatile sig_atomic_t *stop;
    int exit_status;              /* 0 ok; 128+N killed by signal N */
    int canceled;                 /* stop was raised while it ran */
    char last_line[KILN_KFP_LOCAL_MAX_LINE];
    int have_preferred;
} local_proc;

/* Run to the end. KILN_OK once the child ran (whatever its status);
 * an error only when it could not be started. */
int local_proc_run(local_proc *p, char *const *argv, const char *const *env, kiln_err *err);

/* The pipeline run in MLflow (all best effort after start: failures are
 * written to `out` as warnings, the pipeline goes on). */
typedef struct local_mlflow {
    kiln_mlflow_client *c;
    char run_id[64];
    FILE *out;
} local_mlflow;

int local_mlflow_start(local_mlflow *m, const char *experiment, const char *pipeline,
                       const char *run_id, const cJSON *params, kiln_err *err);
void local_mlflow_task(local_mlflow *m, const char *task, const char *state, double seconds);
void local_mlflow_tag(local_mlflow *m, const char *key, const char *value);
void local_mlflow_end(local_mlflow *m, const kiln_kfp_local_result *res);

#endif
