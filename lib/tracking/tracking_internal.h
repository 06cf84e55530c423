/* lib/tracking/tracking_internal.h — what the files of lib/tracking share.
 *
 * A request runs as: the router (api.c) picks a handler, takes a SQLite
 * connection from the pool (store.c), opens a transaction (BEGIN IMMEDIATE
 * under the process's write lock for writing endpoints, a plain BEGIN for
 * reading ones), runs the handler, and commits on success or rolls back on
 * any error, so a rejected request leaves the store as it was. Handlers
 * read their fields with the trk_req_* getters (api_json.c), which check
 * types and presence with MLflow's messages, fill `resp`, and return 0, or
 * -1 with r->err set (an MLflow error code, its HTTP status, a message).
 */
#ifndef KILN_TRACKING_INTERNAL_H
#define KILN_TRACKING_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>

#include "common/err.h"
#include "tracking/tracking.h"

#define TRK_SCHEMA_VERSION 1
#define TRK_BUSY_TIMEOUT_MS 30000

/* MLflow's limits (mlflow/utils/validation.py, handlers.py). */
#define TRK_MAX_KEY_LEN 250
#define TRK_MAX_PARAM_VAL_LEN 6000
#define TRK_MAX_TAG_VAL_LEN 8000
#define TRK_MAX_EXP_TAG_VAL_LEN 5000
#define TRK_MAX_REGISTRY_TAG_VAL_LEN 5000
#define TRK_MAX_EXP_NAME_LEN 500
#define TRK_MAX_ALIAS_LEN 255
#define TRK_MAX_BATCH_METRICS 1000
#define TRK_MAX_BATCH_PARAMS_TAGS 100
#define TRK_MAX_BATCH_ENTITIES 1000
#define TRK_MAX_SEARCH_RUNS 50000
#define TRK_MAX_SEARCH_EXPERIMENTS 50000
#define TRK_MAX_SEARCH_MODELS 1000
#define TRK_MAX_SEARCH_VERSIONS 200000

/* The root-level folder of the artifact root that holds uploads in flight;
 * hidden from listings and refused as a destination. */
#define TRK_UPLOAD_DIR ".kiln-uploads"

struct kiln_tracking {
    char *db_path;
    char *artifacts_root;        /* realpath of the artifact directory */
    char *default_artifact_root; /* without a trailing '/' */
    pthread_mutex_t pool_lock;
    sqlite3 **idle;              /* connections not in use */
    size_t n_idle, cap_idle;
    /* SQLite takes one writer at a time; queueing writers of this process
     * here hands the lock over at once instead of through SQLite's sleeping
     * busy handler (which stays the arbiter between processes). */
    pthread_mutex_t write_lock;
};

/* An API error: MLflow's error code (a static string), its HTTP status
 * and the message. */
typedef struct trk_err {
    const char *code;
    int http_status;
    char msg[KILN_ERR_MSG_MAX];
} trk_err;

typedef struct trk_req {
    kiln_tracking *t;
    sqlite3 *db;
    const cJSON *body;   /* the request's fields: always an object */
    int is_get;          /* fields arrived as query strings */
    int oom;             /* a cJSON allocation failed while building */
    trk_err err;
} trk_req;

typedef int (*trk_handler)(trk_req *r, cJSON *resp);

/* --- errors (api.c) --- */
int trk_fail(trk_req *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define TRK_INVALID "INVALID_PARAMETER_VALUE"
#define TRK_NOT_FOUND "RESOURCE_DOES_NOT_EXIST"
#define TRK_EXISTS "RESOURCE_ALREADY_EXISTS"
#define TRK_INVALID_STATE "INVALID_STATE"
#define TRK_INTERNAL "INTERNAL_ERROR"
int trk_status_for_code(const char *code);

/* --- SQLite (store.c). The macros record the caller's file and line in the
 * error with sqlite3_errmsg; SQLITE_BUSY after the timeout becomes
 * TEMPORARILY_UNAVAILABLE (503, which clients retry). Bind formats: 's'
 * const char * (NULL binds NULL), 'I' int64_t, 'i' int, 'd' double. --- */
sqlite3_stmt *trk_stmt_at(trk_req *r, const char *file, int line, const char *sql,
                          const char *fmt, ...);
int trk_step_at(trk_req *r, const char *file, int line, sqlite3_stmt *st); /* 1 row, 0 done, -1 */
int trk_exec_at(trk_req *r, const char *file, int line, const char *sql, const char *fmt, ...);
int trk_sql_fail_at(trk_req *r, const char *file, int line, int rc);
#define TRK_STMT(r, sql, ...) trk_stmt_at((r), __FILE__, __LINE__, (sql), __VA_ARGS__)
#define TRK_STEP(r, st) trk_step_at((r), __FILE__, __LINE__, (st))
#define TRK_EXEC(r, sql, ...) trk_exec_at((r), __FILE__, __LINE__, (sql), __VA_ARGS__)
#define TRK_SQL_FAIL(r, rc) trk_sql_fail_at((r), __FILE__, __LINE__, (rc))
/* Binds a variable list of arguments described by `fmt`. */
int trk_bind_va(sqlite3_stmt *st, int first, const char *fmt, va_list ap);
/* Text of a column, "" for NULL. */
const char *trk_col_text(sqlite3_stmt *st, int col);
int trk_changes(trk_req *r);

sqlite3 *trk_conn_acquire(kiln_tracking *t, kiln_err *err);
void trk_conn_release(kiln_tracking *t, sqlite3 *db);

/* --- request fields (api_json.c). Each returns 0 (value stored, or
 * *present = 0 when absent) or -1 with MLflow's error. Strings point into
 * the request. --- */
int trk_req_str(trk_req *r, const char *name, int required, const char **out);
int trk_req_i64(trk_req *r, const char *name, int required, int64_t *out, int *present);
int trk_req_double(trk_req *r, const char *name, int required, double *out, int *present);
int trk_req_bool(trk_req *r, const char *name, int required, int *out, int *present);
/* An array (a lone string for GET) of strings: *items is an array to walk
 * with trk_str_at; NULL when absent. */
int trk_req_str_list(trk_req *r, const char *name, const cJSON **items, int *count);
const char *trk_str_at(const cJSON *items, int i);
/* run_id, falling back to the legacy run_uuid, required. */
int trk_req_run_id(trk_req *r, const char **out);
/* An array of objects (`tags`, `metrics`...); NULL when absent. */
int trk_req_obj_list(trk_req *r, const char *name, const cJSON **items, int *count);
/* Fields of one element of such a list, with "list[i].key" paths. */
int trk_item_str(trk_req *r, const cJSON *obj, const char *list, int i, const char *name,
                 int required, const char **out);
int trk_item_i64(trk_req *r, const cJSON *obj, const char *list, int i, const char *name,
                 int required, int64_t *out, int *present);
int trk_item_double(trk_req *r, const cJSON *obj, const char *list, int i, const char *name,
                    int required, double *out);
int trk_parse_double_text(const char *s, double *out);

/* Response building; on a failed allocation r->oom is set. */
void trk_put_str(trk_req *r, cJSON *o, const char *k, const char *v);
void trk_put_i64(trk_req *r, cJSON *o, const char *k, int64_t v);
void trk_put_double(trk_req *r, cJSON *o, const char *k, double v);
void trk_put_bool(trk_req *r, cJSON *o, const char *k, int v);
cJSON *trk_put_obj(trk_req *r, cJSON *o, const char *k);
/* The array `k` of `o`, created on first use (MLflow omits empty lists). */
cJSON *trk_put_arr(trk_req *r, cJSON *o, const char *k);
cJSON *trk_arr_add_obj(trk_req *r, cJSON *arr);
void trk_put_kv(trk_req *r, cJSON *o, const char *list, const char *key, const char *value);
/* trk_put_kv for every (key, value) row of `st` (NULL: its preparation
 * failed), which it finalizes; 0 or -1. */
int trk_put_kv_rows_at(trk_req *r, const char *file, int line, cJSON *o, const char *list,
                       sqlite3_stmt *st);
#define TRK_PUT_KV_ROWS(r, o, list, st)                                                        \
    trk_put_kv_rows_at((r), __FILE__, __LINE__, (o), (list), (st))

/* Page tokens: base64 of {"offset": N}, as MLflow's SearchUtils. */
int trk_page_token_parse(trk_req *r, const char *token, int64_t *offset);
void trk_page_token_put(trk_req *r, cJSON *resp, int64_t offset);
/* max_results with a default and an upper bound, refused with the
 * handler's message (MLflow checks runs, models and versions there) or,
 * with store_style, the SQL store's (experiments). */
int trk_req_max_results(trk_req *r, int64_t dflt, int64_t max, int store_style, int64_t *out);

/* --- validation (validate.c) --- */
int trk_check_key(trk_req *r, const char *what, const char *key);   /* "metric", "param", "tag" */
int trk_check_len(trk_req *r, const char *entity, size_t limit, const char *value);
int trk_check_alias(trk_req *r, const char *alias);
/* How an entity's tags are checked: the names MLflow's messages give the
 * key and the value, and the value's length limit. */
typedef struct trk_tag_rule {
    const char *key_name, *value_name;  /* "Tag key", "Tag value" */
    size_t value_limit;
} trk_tag_rule;
extern const trk_tag_rule trk_run_tags, trk_experiment_tags, trk_model_tags, trk_version_tags;
/* A tag's key (a valid name of at most TRK_MAX_KEY_LEN) and value (NULL: ""). */
int trk_check_tag(trk_req *r, const trk_tag_rule *rule, const char *key, const char *value);
/* Element i of a request's "tags" list: its key (required) and value (""
 * when absent), checked with trk_check_tag. */
int trk_req_tag_at(trk_req *r, const cJSON *tags, int i, const trk_tag_rule *rule,
                   const char **key, const char **value);
/* The experiment id as an integer; RESOURCE_DOES_NOT_EXIST when it is not one. */
int trk_parse_exp_id(trk_req *r, const char *s, int64_t *out);
int64_t trk_now_ms(void);
/* 32 lowercase hex characters + NUL (a random UUID4 without dashes). */
int trk_new_run_id(char out[33]);
/* "<adjective>-<noun>-<0..999>" like MLflow's generated run names. */
void trk_random_run_name(char *out, size_t size);

/* --- entity JSON shared between endpoints --- */
int trk_experiment_json(trk_req *r, int64_t id, cJSON *out);
int trk_exp_require_active(trk_req *r, int64_t id);
int trk_run_json(trk_req *r, const char *run_id, cJSON *out);
int trk_run_info_json(trk_req *r, const char *run_id, cJSON *out);
/* Loads the run's lifecycle; RESOURCE_DOES_NOT_EXIST if absent;
 * `need_active` adds MLflow's "must be in the 'active' state" check. */
int trk_run_check(trk_req *r, const char *run_id, int need_active);
int trk_run_set_tag(trk_req *r, const char *run_id, const char *key, const char *value);

/* --- search (search_parse.c, search_sql.c) --- */
typedef enum trk_entity {
    TRK_E_ATTR, TRK_E_METRIC, TRK_E_PARAM, TRK_E_TAG
} trk_entity;

typedef enum trk_op {
    TRK_OP_EQ, TRK_OP_NE, TRK_OP_LT, TRK_OP_LE, TRK_OP_GT, TRK_OP_GE,
    TRK_OP_LIKE, TRK_OP_ILIKE, TRK_OP_IN, TRK_OP_NOT_IN, TRK_OP_IS_NULL, TRK_OP_IS_NOT_NULL
} trk_op;

#define TRK_MAX_CLAUSES 32
#define TRK_MAX_IN_VALUES 64

typedef struct trk_clause {
    trk_entity entity;
    char *key;
    trk_op op;
    int is_number;            /* value is a number (else a string) */
    double number;
    char *text;               /* the string value */
    char *list[TRK_MAX_IN_VALUES];
    int n_list;
} trk_clause;

typedef struct trk_filter {
    trk_clause c[TRK_MAX_CLAUSES];
    int n;
} trk_filter;

typedef struct trk_order {
    trk_entity entity;
    char *key;
    int ascending;
} trk_order;

/* What an entity kind allows: attribute names (NULL-terminated), which of
 * them are numeric, and whether metrics/params are searchable. */
typedef struct trk_search_spec {
    const char *what;                 /* "run", "experiment", ... for messages */
    const char *const *attrs;         /* searchable attribute names */
    const char *const *numeric_attrs; /* the numeric ones among them */
    int has_metrics, has_params, has_tags;
} trk_search_spec;

int trk_filter_parse(trk_req *r, const trk_search_spec *spec, const char *text, trk_filter *f);
void trk_filter_free(trk_filter *f);
int trk_order_parse(trk_req *r, const trk_search_spec *spec, const char *text, trk_order *o);
void trk_order_free(trk_order *o);
int trk_op_is_numeric(trk_op op);
/* view_type / run_view_type: 1 ACTIVE_ONLY (default), 2 DELETED_ONLY, 3 ALL,
 * by name or number; and its WHERE condition on lifecycle_stage. */
int trk_req_view_type(trk_req *r, const char *field, int *view);
const char *trk_view_type_sql(int view);
const char *trk_op_sql(trk_op op);

/* A growable SQL text with its bind values, for building searches. */
typedef struct trk_sql {
    char *text;
    size_t len, cap;
    struct trk_bind { char kind; int64_t i; double d; char *s; } *binds;
    int n_binds, cap_binds;
    int oom;
} trk_sql;

void trk_sql_add(trk_sql *q, const char *s);
void trk_sql_bind_text(trk_sql *q, const char *s);
void trk_sql_bind_i64(trk_sql *q, int64_t v);
void trk_sql_bind_double(trk_sql *q, double v);
sqlite3_stmt *trk_sql_prepare(trk_req *r, trk_sql *q, const char *file, int line);
void trk_sql_free(trk_sql *q);

/* Fills `out`, one element of a search's answer, from the current row. */
typedef int (*trk_row_json)(trk_req *r, sqlite3_stmt *row, cJSON *out);
/* Runs the search `q` for the page of max_results rows after `offset` (it
 * appends LIMIT and OFFSET): each row becomes an object of resp's array
 * `list`, filled by `row_json`; a row past the page adds the
 * next_page_token. SQL errors name the caller's file and line. */
int trk_sql_page_at(trk_req *r, const char *file, int line, trk_sql *q, int64_t max_results,
                    int64_t offset, cJSON *resp, const char *list, trk_row_json row_json);
#define TRK_SQL_PAGE(r, q, max_results, offset, resp, list, row_json)                         \
    trk_sql_page_at((r), __FILE__, __LINE__, (q), (max_results), (offset), (resp), (list),     \
                    (row_json))

/* A key/value table of an entity (tags, params, latest metrics). */
typedef struct trk_kv_table {
    const char *table;  /* "tags" */
    const char *fk;     /* its column naming the entity: "run_uuid" */
    int has_nan;        /* has an is_nan column (metrics) */
} trk_kv_table;

/* "<lhs> <op> ?" for one clause (LIKE/ILIKE through trk_like, IN lists). */
void trk_sql_compare(trk_sql *q, const char *lhs, const trk_clause *cl);
/* EXISTS over the entity's key/value table for a clause on it. */
void trk_sql_exists_kv(trk_sql *q, const trk_kv_table *kv, const char *id_expr,
                       const trk_clause *cl);
/* ORDER BY terms for a key's value, missing keys (then NaN) last. */
void trk_sql_order_kv(trk_sql *q, const trk_kv_table *kv, const char *id_expr, const char *key,
                      int ascending);
void trk_sql_order_column(trk_sql *q, const char *column, int ascending);

/* --- endpoints, by file --- */
int trk_h_exp_create(trk_req *r, cJSON *resp);
int trk_h_exp_get(trk_req *r, cJSON *resp);
int trk_h_exp_get_by_name(trk_req *r, cJSON *resp);
int trk_h_exp_search(trk_req *r, cJSON *resp);
int trk_h_exp_update(trk_req *r, cJSON *resp);
int trk_h_exp_delete(trk_req *r, cJSON *resp);
int trk_h_exp_restore(trk_req *r, cJSON *resp);
int trk_h_exp_set_tag(trk_req *r, cJSON *resp);
int trk_h_exp_delete_tag(trk_req *r, cJSON *resp);

int trk_h_run_create(trk_req *r, cJSON *resp);
int trk_h_run_update(trk_req *r, cJSON *resp);
int trk_h_run_get(trk_req *r, cJSON *resp);
int trk_h_run_delete(trk_req *r, cJSON *resp);
int trk_h_run_restore(trk_req *r, cJSON *resp);
int trk_h_run_set_tag(trk_req *r, cJSON *resp);
int trk_h_run_delete_tag(trk_req *r, cJSON *resp);
int trk_h_run_search(trk_req *r, cJSON *resp);

int trk_h_log_metric(trk_req *r, cJSON *resp);
int trk_h_log_param(trk_req *r, cJSON *resp);
int trk_h_log_batch(trk_req *r, cJSON *resp);
int trk_h_metric_history(trk_req *r, cJSON *resp);

int trk_h_artifacts_list(trk_req *r, cJSON *resp);
int trk_h_proxy_list(trk_req *r, cJSON *resp);

int trk_h_rm_create(trk_req *r, cJSON *resp);
int trk_h_rm_get(trk_req *r, cJSON *resp);
int trk_h_rm_search(trk_req *r, cJSON *resp);
int trk_h_rm_rename(trk_req *r, cJSON *resp);
int trk_h_rm_update(trk_req *r, cJSON *resp);
int trk_h_rm_delete(trk_req *r, cJSON *resp);
int trk_h_rm_set_tag(trk_req *r, cJSON *resp);
int trk_h_rm_delete_tag(trk_req *r, cJSON *resp);
int trk_h_rm_latest(trk_req *r, cJSON *resp);
int trk_h_alias_set(trk_req *r, cJSON *resp);
int trk_h_alias_delete(trk_req *r, cJSON *resp);
int trk_h_alias_get(trk_req *r, cJSON *resp);

int trk_h_mv_create(trk_req *r, cJSON *resp);
int trk_h_mv_get(trk_req *r, cJSON *resp);
int trk_h_mv_update(trk_req *r, cJSON *resp);
int trk_h_mv_delete(trk_req *r, cJSON *resp);
int trk_h_mv_search(trk_req *r, cJSON *resp);
int trk_h_mv_transition(trk_req *r, cJSON *resp);
int trk_h_mv_download_uri(trk_req *r, cJSON *resp);
int trk_h_mv_set_tag(trk_req *r, cJSON *resp);
int trk_h_mv_delete_tag(trk_req *r, cJSON *resp);

/* --- registry shared (registry_models.c) --- */
/* The model's row id; RESOURCE_DOES_NOT_EXIST with MLflow's message. */
int trk_model_id(trk_req *r, const char *name, int64_t *id);
int trk_model_json(trk_req *r, int64_t model_id, cJSON *out);
int trk_version_json(trk_req *r, int64_t model_id, int64_t version, cJSON *out);
/* Parses a version string ("3"), INVALID_PARAMETER_VALUE otherwise, and
 * checks it exists (not deleted). */
int trk_version_find(trk_req *r, int64_t model_id, const char *name, const char *version,
                     int64_t *out);
int trk_model_touch(trk_req *r, int64_t model_id, int64_t now);
/* None/Staging/Production/Archived in any case → the canonical static
 * string; INVALID_PARAMETER_VALUE otherwise. */
int trk_canonical_stage(trk_req *r, const char *stage, const char **out);
/* The fields of a registry search (models, versions): filter, max_results
 * (default `dflt`, at most `max`) and page_token, checked in MLflow's order. */
int trk_req_registry_search(trk_req *r, const trk_search_spec *spec, int64_t dflt, int64_t max,
                            trk_filter *f, int64_t *max_results, int64_t *offset);
/* Latest READY version per stage in `stages` (NULL: every stage). */
int trk_latest_versions(trk_req *r, int64_t model_id, const char *const *stages, int n,
                        cJSON *arr_parent, const char *arr_name);

/* --- artifacts (artifacts.c) --- */
/* 1 when `rel` is a safe path relative to the artifact root (no absolute
 * path, backslash, empty/"."/".." segment, also once percent-decoded, and
 * not the uploads folder); "" only when allow_empty. */
int trk_artifact_rel_path_ok(const char *rel, int allow_empty);

#endif
