/* components/component.h — kiln-component, the pipeline's steps.
 *
 * Each step maps the arguments KFP passes (resolved placeholders: values,
 * artifact paths, output parameter files, or the whole executor input) onto
 * one lib/ call, logs to stdout, and on failure prints one line
 * "kiln-component STEP: what went wrong" and exits non-zero (2 for bad
 * arguments, 1 otherwise). */
#ifndef KILN_COMPONENT_H
#define KILN_COMPONENT_H

#include "common/err.h"
#include "common/log.h"
#include "mlflow/mlflow.h"
#include "s3/s3.h"

typedef struct comp_ctx {
    const char *step;
    kiln_logger log;
} comp_ctx;

/* A step's flags: "--name VALUE" pairs only. */
#define COMP_MAX_FLAGS 16
typedef struct comp_flags {
    int n;
    const char *name[COMP_MAX_FLAGS];
    const char *value[COMP_MAX_FLAGS];
} comp_flags;

/* Parse argv (argv[0] = the step) against the NULL-terminated list of
 * accepted flag names (without "--"). Returns 0, 1 for --help (after
 * printing `usage`), 2 after printing a usage error. */
int comp_parse(comp_ctx *cx, int argc, char **argv, const char *const *accepted,
               const char *usage, comp_flags *f);
/* A flag's value, or NULL. */
const char *comp_flag(const comp_flags *f, const char *name);
/* Required flag: its value, or NULL after printing "--name is required". */
const char *comp_need(comp_ctx *cx, const comp_flags *f, const char *name);
/* Integer / double flag values (2 after printing an error). */
int comp_int(comp_ctx *cx, const char *flag, const char *s, int lo, int hi, int *out);
int comp_double(comp_ctx *cx, const char *flag, const char *s, double *out);

/* Print "kiln-component STEP: msg" and return the exit status for err. */
int comp_fail(comp_ctx *cx, const kiln_err *err);

/* S3 configuration from the environment, with the endpoint of a pipeline
 * parameter ("host:port" gets http://; "" keeps the environment's). */
int comp_s3_config(const char *endpoint, kiln_s3_config *cfg, kiln_err *err);
/* An MLflow client for `uri` ("" or NULL: $MLFLOW_TRACKING_URI). */
kiln_mlflow_client *comp_mlflow(comp_ctx *cx, const char *uri, kiln_err *err);
/* Mark `run_id` FAILED after a step failed (best effort, logged). */
void comp_fail_run(comp_ctx *cx, kiln_mlflow_client *c, const char *run_id, const kiln_err *why);
/* CPU cores online (>= 1). */
int comp_cores(void);

int comp_download(comp_ctx *cx, int argc, char **argv);
int comp_prepare(comp_ctx *cx, int argc, char **argv);
int comp_train(comp_ctx *cx, int argc, char **argv);
int comp_evaluate(comp_ctx *cx, int argc, char **argv);
int comp_register(comp_ctx *cx, int argc, char **argv);
int comp_upload(comp_ctx *cx, int argc, char **argv);

#endif
