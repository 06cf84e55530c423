/* lib/mlflow/mlflow_internal.h — what the lib/mlflow files share; not a
 * public API. */
#ifndef KILN_MLFLOW_MLFLOW_INTERNAL_H
#define KILN_MLFLOW_MLFLOW_INTERNAL_H

#include <curl/curl.h>
#include <stdio.h>

#include "common/rng.h"
#include "mlflow/mlflow.h"

/* Answers kept in memory up to this size (search results, histories). */
#define MLFLOW_MAX_BODY ((size_t)256 << 20)
#define MLFLOW_ERROR_CODE_MAX 64

struct kiln_mlflow_client {
    kiln_mlflow_config cfg;
    const kiln_logger *log;
    CURL *curl;                 /* reused, so connections are kept alive */
    kiln_rng rng;               /* backoff jitter */
    kiln_mlflow_stats stats;
    kiln_s3_client *s3;         /* made on the first s3:// artifact call */
    char bearer[4200];          /* "Authorization: Bearer ..." or "" */
};

/* One HTTP exchange with the tracking server, retried as mlflow.h says. */
typedef struct mlflow_http {
    const char *method;         /* GET POST PUT PATCH DELETE */
    const char *path;           /* "/api/2.0/...", percent-encoded already */
    const char *query;          /* encoded query without '?', or NULL */
    const char *body;           /* JSON body, or NULL */
    size_t body_len;
    FILE *upload;               /* or a file sent as the body (PUT), from its start */
    uint64_t upload_len;
    FILE *download;             /* 2xx bodies go here (rewound and truncated per attempt) */
} mlflow_http;

typedef struct mlflow_resp {
    long status;                /* 0: no answer */
    char *body;                 /* NUL-terminated; error bodies always, 2xx without download */
    size_t len;
    char error_code[MLFLOW_ERROR_CODE_MAX]; /* MLflow's error_code of a failed answer, or "" */
} mlflow_resp;

/* KILN_OK for a 2xx answer; otherwise `err` says why (see mlflow.h) and
 * resp->error_code holds MLflow's code when the server sent one. */
int mlflow_http_do(kiln_mlflow_client *c, const mlflow_http *req, mlflow_resp *resp,
                   kiln_err *err);
void mlflow_resp_free(mlflow_resp *r);

/* A JSON call; `error_code` (may be NULL) receives MLflow's code on failure. */
int mlflow_call(kiln_mlflow_client *c, const char *method, const char *path,
                const cJSON *request, cJSON **response, char *error_code, kiln_err *err);

/* mlflow_call taking `request` over (NULL: out of memory); the answer is
 * dropped when `response` is NULL. */
int mlflow_call_taking(kiln_mlflow_client *c, const char *method, const char *path,
                       cJSON *request, cJSON **response, char *error_code, kiln_err *err);

/* A request object of string fields from n strings of key/value pairs;
 * NULL values are left out. NULL when out of memory. */
cJSON *mlflow_fields(const char *const *kv, size_t n);
/* mlflow_call_taking with a request of string fields (as mlflow_fields). */
int mlflow_call_fields(kiln_mlflow_client *c, const char *method, const char *path,
                       const char *const *kv, size_t n, cJSON **response, char *error_code,
                       kiln_err *err);

/* Reads one page of a paged answer (a search, a metric history). */
typedef int (*mlflow_page_fn)(const cJSON *page, void *ctx, kiln_err *err);
/* GETs `path` with the fields kv (as mlflow_fields) and each answer's
 * next_page_token as page_token, until an answer has none; every answer
 * goes to on_page. Stops at the first failure. */
int mlflow_get_pages(kiln_mlflow_client *c, const char *path, const char *const *kv, size_t n,
                     mlflow_page_fn on_page, void *ctx, kiln_err *err);

/* Query string of a JSON object's fields (strings, numbers, booleans;
 * arrays as repeated keys). malloc'ed; NULL when out of memory. */
char *mlflow_query_string(CURL *curl, const cJSON *fields);

/* ---- JSON → structs (mlflow_json.c). Strings are never NULL ("" when
 * absent). Return KILN_OK, ENOMEM or EFORMAT with `err` set. ---- */
int64_t mlflow_json_i64(const cJSON *obj, const char *key);
double mlflow_json_double(const cJSON *obj, const char *key);
cJSON *mlflow_json_metric_value(double v);
/* {"key", "value", "timestamp" (0 = now), "step"}; NULL when out of memory. */
cJSON *mlflow_metric_json(const kiln_mlflow_metric *m, int64_t now);
int mlflow_parse_experiment(const cJSON *j, kiln_mlflow_experiment **out, kiln_err *err);
int mlflow_parse_run(const cJSON *j, kiln_mlflow_run **out, kiln_err *err);
int mlflow_parse_model_version(const cJSON *j, kiln_mlflow_model_version **out, kiln_err *err);
int mlflow_parse_model_versions(const cJSON *arr, kiln_mlflow_model_version ***out, size_t *n,
                                kiln_err *err);
int mlflow_parse_metric_value(const cJSON *j, kiln_mlflow_metric_value *out);
/* A field of `resp` that must be an object, EFORMAT naming `what` if not. */
const cJSON *mlflow_need_object(const cJSON *resp, const char *key, const char *what,
                                kiln_err *err);

int64_t mlflow_now_ms(void);

#endif
