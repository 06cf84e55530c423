/* lib/mlflow/mlflow_config.c — the client's configuration: defaults, the
 * MLFLOW_* environment variables, flag-style setters. Defaults follow
 * mlflow/environment_variables.py (MLflow 2.x / 3.x). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mlflow/mlflow_internal.h"

void kiln_mlflow_config_default(kiln_mlflow_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->timeout_s = 120;
    cfg->max_retries = 7;
    cfg->backoff_factor_s = 2.0;
    cfg->backoff_jitter_s = 1.0;
    cfg->backoff_max_s = 120.0;
    kiln_s3_config_default(&cfg->s3);
}

static int set_string(char *field, size_t size, const char *name, const char *value,
                      kiln_err *err)
{
    if (strlen(value) >= size)
        return kiln_err_set(err, KILN_ELIMIT, "%s is longer than %zu characters", name,
                            size - 1);
    snprintf(field, size, "%s", value);
    return KILN_OK;
}

static int set_uri(kiln_mlflow_config *cfg, const char *name, const char *value, kiln_err *err)
{
    if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0)
        return kiln_err_set(err, KILN_EINVAL,
                            "%s '%s' is not supported: kiln talks to a tracking server at "
                            "http(s)://host[:port][/prefix]", name, value);
    const char *host = strstr(value, "://") + 3;
    if (!*host || *host == '/')
        return kiln_err_set(err, KILN_EINVAL, "%s '%s' names no host", name, value);
    int rc = set_string(cfg->tracking_uri, sizeof cfg->tracking_uri, name, value, err);
    size_t n = strlen(cfg->tracking_uri);
    while (rc == KILN_OK && n > 0 && cfg->tracking_uri[n - 1] == '/')
        cfg->tracking_uri[--n] = '\0';
    return rc;
}

static int parse_bool(const char *name, const char *value, int *out, kiln_err *err)
{
    if (!strcasecmp(value, "true") || !strcmp(value, "1") || !strcasecmp(value, "yes"))
        *out = 1;
    else if (!strcasecmp(value, "false") || !strcmp(value, "0") || !strcasecmp(value, "no"))
        *out = 0;
    else
        return kiln_err_set(err, KILN_EINVAL, "%s '%s' is not true or false", name, value);
    return KILN_OK;
}

static int parse_int(const char *name, const char *value, int lo, int hi, int *out,
                     kiln_err *err)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < lo || v > hi)
        return kiln_err_set(err, KILN_EINVAL, "%s '%s' is not a whole number in %d..%d", name,
                            value, lo, hi);
    *out = (int)v;
    return KILN_OK;
}

static int parse_seconds(const char *name, const char *value, double *out, kiln_err *err)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || *end || !isfinite(v) || v < 0 || v > 3600)
        return kiln_err_set(err, KILN_EINVAL, "%s '%s' is not a number of seconds in 0..3600",
                            name, value);
    *out = v;
    return KILN_OK;
}

/* One setting by name; `label` names it in messages (a flag or a variable). */
static int set_field(kiln_mlflow_config *cfg, const char *name, const char *label,
                     const char *value, kiln_err *err)
{
    if (!strcmp(name, "tracking-uri"))
        return set_uri(cfg, label, value, err);
    if (!strcmp(name, "username"))
        return set_string(cfg->username, sizeof cfg->username, label, value, err);
    if (!strcmp(name, "password"))
        return set_string(cfg->password, sizeof cfg->password, label, value, err);
    if (!strcmp(name, "token"))
        return set_string(cfg->token, sizeof cfg->token, label, value, err);
    if (!strcmp(name, "insecure-tls"))
        return parse_bool(label, value, &cfg->insecure_tls, err);
    if (!strcmp(name, "server-cert-path"))
        return set_string(cfg->server_cert_path, sizeof cfg->server_cert_path, label, value,
                          err);
    if (!strcmp(name, "timeout"))
        return parse_int(label, value, 1, 86400, &cfg->timeout_s, err);
    if (!strcmp(name, "max-retries"))
        return parse_int(label, value, 0, 100, &cfg->max_retries, err);
    if (!strcmp(name, "backoff-factor"))
        return parse_seconds(label, value, &cfg->backoff_factor_s, err);
    if (!strcmp(name, "backoff-jitter"))
        return parse_seconds(label, value, &cfg->backoff_jitter_s, err);
    return kiln_err_set(err, KILN_EINVAL, "unknown MLflow client setting '%s'", name);
}

int kiln_mlflow_config_set(kiln_mlflow_config *cfg, const char *name, const char *value,
                           kiln_err *err)
{
    char label[96];
    snprintf(label, sizeof label, "--%s", name);
    return set_field(cfg, name, label, value, err);
}

int kiln_mlflow_config_from_env(kiln_mlflow_config *cfg, kiln_err *err)
{
    static const struct {
        const char *var, *name;
    } vars[] = {
        {"MLFLOW_TRACKING_URI", "tracking-uri"},
        {"MLFLOW_TRACKING_USERNAME", "username"},
        {"MLFLOW_TRACKING_PASSWORD", "password"},
        {"MLFLOW_TRACKING_TOKEN", "token"},
        {"MLFLOW_TRACKING_INSECURE_TLS", "insecure-tls"},
        {"MLFLOW_TRACKING_SERVER_CERT_PATH", "server-cert-path"},
        {"MLFLOW_HTTP_REQUEST_TIMEOUT", "timeout"},
        {"MLFLOW_HTTP_REQUEST_MAX_RETRIES", "max-retries"},
        {"MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "backoff-factor"},
        {"MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "backoff-jitter"},
    };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i].var);
        if (!v || !*v)
            continue;
        int rc = set_field(cfg, vars[i].name, vars[i].var, v, err);
        if (rc != KILN_OK)
            return rc;
    }
    return kiln_s3_config_from_env(&cfg->s3, err);
}
