/* Flag parsing and client set-up shared by the steps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "component.h"

int comp_parse(comp_ctx *cx, int argc, char **argv, const char *const *accepted,
               const char *usage, comp_flags *f)
{
    memset(f, 0, sizeof *f);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: kiln-component %s %s", cx->step, usage);
            return 1;
        }
        int known = 0;
        for (int k = 0; accepted[k] && strncmp(a, "--", 2) == 0; k++)
            if (!strcmp(a + 2, accepted[k]))
                known = 1;
        if (!known) {
            fprintf(stderr, "kiln-component %s: unknown argument '%s'\n", cx->step, a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "kiln-component %s: %s needs a value\n", cx->step, a);
            return 2;
        }
        if (f->n == COMP_MAX_FLAGS) {
            fprintf(stderr, "kiln-component %s: too many flags\n", cx->step);
            return 2;
        }
        f->name[f->n] = a + 2;
        f->value[f->n++] = argv[++i];
    }
    return 0;
}

const char *comp_flag(const comp_flags *f, const char *name)
{
    const char *v = NULL;
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->name[i], name))
            v = f->value[i];
    return v;
}

const char *comp_need(comp_ctx *cx, const comp_flags *f, const char *name)
{
    const char *v = comp_flag(f, name);
    if (!v)
        fprintf(stderr, "kiln-component %s: --%s is required\n", cx->step, name);
    return v;
}

int comp_int(comp_ctx *cx, const char *flag, const char *s, int lo, int hi, int *out)
{
    char *end;
    /* KFP renders integers from JSON numbers; accept "10" and "10.0". */
    double v = strtod(s, &end);
    if (!*s || *end || v != (double)(long)v || v < lo || v > hi) {
        fprintf(stderr, "kiln-component %s: --%s must be an integer in [%d, %d], got '%s'\n",
                cx->step, flag, lo, hi, s);
        return 2;
    }
    *out = (int)v;
    return 0;
}

int comp_double(comp_ctx *cx, const char *flag, const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    if (!*s || *end) {
        fprintf(stderr, "kiln-component %s: --%s must be a number, got '%s'\n", cx->step, flag, s);
        return 2;
    }
    return 0;
}

int comp_fail(comp_ctx *cx, const kiln_err *err)
{
    fflush(stdout);
    fprintf(stderr, "kiln-component %s: %s\n", cx->step, err->msg);
    return kiln_code_exit_status(err->code);
}

int comp_s3_config(const char *endpoint, kiln_s3_config *cfg, kiln_err *err)
{
    char url[1100];
    kiln_s3_config_default(cfg);
    int rc = kiln_s3_config_from_env(cfg, err);
    if (rc != KILN_OK || !endpoint || !*endpoint)
        return rc;
    snprintf(url, sizeof url, "%s%s", strstr(endpoint, "://") ? "" : "http://", endpoint);
    rc = kiln_s3_config_set(cfg, "endpoint", url, err);
    return rc == KILN_OK ? rc : kiln_err_wrap(err, "--endpoint");
}

kiln_mlflow_client *comp_mlflow(comp_ctx *cx, const char *uri, kiln_err *err)
{
    kiln_mlflow_config mc;
    kiln_mlflow_config_default(&mc);
    if (kiln_mlflow_config_from_env(&mc, err) != KILN_OK)
        return NULL;
    if (uri && *uri && kiln_mlflow_config_set(&mc, "tracking-uri", uri, err) != KILN_OK) {
        kiln_err_wrap(err, "--mlflow-tracking-uri");
        return NULL;
    }
    if (!mc.tracking_uri[0]) {
        kiln_err_set(err, KILN_EINVAL, "no MLflow server: pass --mlflow-tracking-uri or set "
                     "MLFLOW_TRACKING_URI");
        return NULL;
    }
    return kiln_mlflow_client_new(&mc, &cx->log, err);
}

void comp_fail_run(comp_ctx *cx, kiln_mlflow_client *c, const char *run_id, const kiln_err *why)
{
    kiln_err e2 = {0};
    if (!c || !run_id || !*run_id)
        return;
    char tag[64];
    snprintf(tag, sizeof tag, "kiln.failed_step");
    if (kiln_mlflow_run_set_tag(c, run_id, tag, cx->step, &e2) != KILN_OK ||
        kiln_mlflow_run_set_tag(c, run_id, "kiln.failure", why->msg, &e2) != KILN_OK ||
        kiln_mlflow_run_finish(c, run_id, KILN_MLFLOW_FAILED, &e2) != KILN_OK)
        kiln_log_warn(&cx->log, "%s: could not mark MLflow run %s FAILED: %s", cx->step, run_id,
                      e2.msg);
    else
        kiln_log_info(&cx->log, "%s: MLflow run %s marked FAILED", cx->step, run_id);
}

int comp_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n < 64 ? n : 64) : 1;
}
