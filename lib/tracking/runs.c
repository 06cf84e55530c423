/* lib/tracking/runs.c — the run endpoints: create, get, update,
 * delete/restore, set-tag/delete-tag, and the Run JSON every run-returning
 * endpoint shares.
 *
 * As MLflow: a run without a name gets a generated one, and the name and
 * the "mlflow.runName" tag stay the same (a different run_name and tag in
 * one request are refused); artifact_uri is the experiment's artifact
 * location + "/<run_id>/artifacts"; writing to a deleted run is refused.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracking/tracking_internal.h"

#define RUN_NAME_TAG "mlflow.runName"

static const char *const run_statuses[] = {"RUNNING", "SCHEDULED", "FINISHED", "FAILED",
                                           "KILLED"};

int trk_run_check(trk_req *r, const char *run_id, int need_active)
{
    sqlite3_stmt *st = TRK_STMT(r, "SELECT lifecycle_stage FROM runs WHERE run_uuid = ?", "s", run_id);
    if (!st)
        return -1;
    int rc = TRK_STEP(r, st);
    if (rc == 0)
        rc = trk_fail(r, TRK_NOT_FOUND, "Run with id=%s not found", run_id);
    else if (rc == 1 && need_active && strcmp(trk_col_text(st, 0), "active") != 0)
        rc = trk_fail(r, TRK_INVALID,
                      "The run %s must be in the 'active' state. Current state is %s.", run_id,
                      trk_col_text(st, 0));
    sqlite3_finalize(st);
    return rc < 0 ? -1 : 0;
}

int trk_run_info_json(trk_req *r, const char *run_id, cJSON *out)
{
    sqlite3_stmt *st = TRK_STMT(r,
                                "SELECT experiment_id, name, user_id, status, start_time, end_time,"
                                " artifact_uri, lifecycle_stage FROM runs WHERE run_uuid = ?",
                                "s", run_id);
    if (!st)
        return -1;
    int rc = TRK_STEP(r, st);
    if (rc == 0)
        rc = trk_fail(r, TRK_NOT_FOUND, "Run with id=%s not found", run_id);
    if (rc < 0) {
        sqlite3_finalize(st);
        return -1;
    }
    char exp_id[24];
    snprintf(exp_id, sizeof exp_id, "%lld", (long long)sqlite3_column_int64(st, 0));
    trk_put_str(r, out, "run_uuid", run_id);
    trk_put_str(r, out, "run_name", trk_col_text(st, 1));
    trk_put_str(r, out, "experiment_id", exp_id);
    trk_put_str(r, out, "user_id", trk_col_text(st, 2));
    trk_put_str(r, out, "status", trk_col_text(st, 3));
    if (sqlite3_column_type(st, 4) != SQLITE_NULL)
        trk_put_i64(r, out, "start_time", sqlite3_column_int64(st, 4));
    if (sqlite3_column_type(st, 5) != SQLITE_NULL)
        trk_put_i64(r, out, "end_time", sqlite3_column_int64(st, 5));
    trk_put_str(r, out, "artifact_uri", trk_col_text(st, 6));
    trk_put_str(r, out, "lifecycle_stage", trk_col_text(st, 7));
    trk_put_str(r, out, "run_id", run_id);
    sqlite3_finalize(st);
    return 0;
}

static int run_data_json(trk_req *r, const char *run_id, cJSON *data)
{
    int rc;
    sqlite3_stmt *st = TRK_STMT(r,
                                "SELECT key, value, is_nan, timestamp, step FROM latest_metrics"
                                " WHERE run_uuid = ? ORDER BY key",
                                "s", run_id);
    if (!st)
        return -1;
    while ((rc = TRK_STEP(r, st)) == 1) {
        cJSON *m = trk_arr_add_obj(r, trk_put_arr(r, data, "metrics"));
        if (!m)
            break;
        trk_put_str(r, m, "key", trk_col_text(st, 0));
        trk_put_double(r, m, "value", sqlite3_column_int(st, 2) ? NAN : sqlite3_column_double(st, 1));
        trk_put_i64(r, m, "timestamp", sqlite3_column_int64(st, 3));
        trk_put_i64(r, m, "step", sqlite3_column_int64(st, 4));
    }
    sqlite3_finalize(st);
    if (rc < 0)
        return -1;
    static const char *const lists[][2] = {
        {"params", "SELECT key, value FROM params WHERE run_uuid = ? ORDER BY key"},
        {"tags", "SELECT key, value FROM tags WHERE run_uuid = ? ORDER BY key"},
    };
    for (int i = 0; i < 2; i++)
        if (TRK_PUT_KV_ROWS(r, data, lists[i][0], TRK_STMT(r, lists[i][1], "s", run_id)) != 0)
            return -1;
    return 0;
}

int trk_run_json(trk_req *r, const char *run_id, cJSON *out)
{
    cJSON *info = trk_put_obj(r, out, "info");
    if (!info || trk_run_info_json(r, run_id, info) != 0)
        return -1;
    cJSON *data = trk_put_obj(r, out, "data");
    if (!data || run_data_json(r, run_id, data) != 0)
        return -1;
    trk_put_obj(r, out, "inputs");
    return 0;
}

int trk_run_set_tag(trk_req *r, const char *run_id, const char *key, const char *value)
{
    if (TRK_EXEC(r, "INSERT OR REPLACE INTO tags VALUES (?, ?, ?)", "sss", run_id, key, value) != 0)
        return -1;
    if (strcmp(key, RUN_NAME_TAG) == 0)
        return TRK_EXEC(r, "UPDATE runs SET name = ? WHERE run_uuid = ?", "ss", value, run_id);
    return 0;
}

/* The tags of a create-run request, checked, and the mlflow.runName one. */
static int create_tags_check(trk_req *r, const cJSON **tags, int *n, const char **name_tag)
{
    *name_tag = NULL;
    if (trk_req_obj_list(r, "tags", tags, n) != 0)
        return -1;
    for (int i = 0; i < *n; i++) {
        const char *key, *value;
        if (trk_req_tag_at(r, *tags, i, &trk_run_tags, &key, &value) != 0)
            return -1;
        if (strcmp(key, RUN_NAME_TAG) == 0 && *value)
            *name_tag = value;
    }
    return 0;
}

static int experiment_location(trk_req *r, int64_t exp_id, char **location)
{
    sqlite3_stmt *st = TRK_STMT(r, "SELECT artifact_location FROM experiments WHERE experiment_id = ?",
                                "I", exp_id);
    if (!st)
        return -1;
    int rc = TRK_STEP(r, st);
    *location = rc == 1 ? strdup(trk_col_text(st, 0)) : NULL;
    sqlite3_finalize(st);
    if (rc == 1 && !*location) {
        r->oom = 1;
        return trk_fail(r, TRK_INTERNAL, "out of memory");
    }
    return rc == 1 ? 0 : -1;
}

static int insert_run(trk_req *r, int64_t exp_id, const char *run_id, const char *name,
                      const char *user, int64_t start)
{
    char *location = NULL, *uri = NULL;
    if (experiment_location(r, exp_id, &location) != 0)
        return -1;
    size_t n = strlen(location);
    while (n > 0 && location[n - 1] == '/')
        location[--n] = '\0';
    int rc = asprintf(&uri, "%s/%s/artifacts", location, run_id) < 0 ? -1 : 0;
    free(location);
    if (rc != 0) {
        r->oom = 1;
        return trk_fail(r, TRK_INTERNAL, "out of memory");
    }
    rc = TRK_EXEC(r,
                  "INSERT INTO runs (run_uuid, experiment_id, name, user_id, status, start_time,"
                  " end_time, artifact_uri, lifecycle_stage) VALUES"
                  " (?, ?, ?, ?, 'RUNNING', ?, NULL, ?, 'active')",
                  "sIssIs", run_id, exp_id, name, user, start, uri);
    free(uri);
    return rc;
}

int trk_h_run_create(trk_req *r, cJSON *resp)
{
    const char *exp_text, *user, *run_name, *name_tag;
    const cJSON *tags;
    int64_t start = 0, exp_id;
    int has_start, n_tags;
    if (trk_req_str(r, "experiment_id", 0, &exp_text) != 0 || trk_req_str(r, "user_id", 0, &user) != 0 ||
        trk_req_str(r, "run_name", 0, &run_name) != 0 ||
        trk_req_i64(r, "start_time", 0, &start, &has_start) != 0 ||
        create_tags_check(r, &tags, &n_tags, &name_tag) != 0)
        return -1;
    /* The SQL store takes a missing experiment id as the Default one. */
    if (trk_parse_exp_id(r, exp_text && *exp_text ? exp_text : "0", &exp_id) != 0 ||
        trk_exp_require_active(r, exp_id) != 0)
        return -1;
    if (run_name && *run_name && name_tag && strcmp(run_name, name_tag) != 0)
        return trk_fail(r, TRK_INVALID,
                        "Both 'run_name' argument and 'mlflow.runName' tag are specified, but "
                        "with different values (run_name='%s', mlflow.runName='%s').",
                        run_name, name_tag);
    char generated[64], run_id[33];
    if (!(run_name && *run_name))
        run_name = name_tag;
    if (!run_name) {
        trk_random_run_name(generated, sizeof generated);
        run_name = generated;
    }
    if (trk_new_run_id(run_id) != 0)
        return trk_fail(r, TRK_INTERNAL, "cannot read random bytes for a run id");
    if (insert_run(r, exp_id, run_id, run_name, user ? user : "",
                   has_start ? start : trk_now_ms()) != 0)
        return -1;
    for (int i = 0; i < n_tags; i++) {
        const cJSON *tag = cJSON_GetArrayItem(tags, i);
        const cJSON *key = cJSON_GetObjectItemCaseSensitive(tag, "key");
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(tag, "value");
        if (trk_run_set_tag(r, run_id, key->valuestring,
                            cJSON_IsString(value) ? value->valuestring : "") != 0)
            return -1;
    }
    if (!name_tag && trk_run_set_tag(r, run_id, RUN_NAME_TAG, run_name) != 0)
        return -1;
    cJSON *run = trk_put_obj(r, resp, "run");
    return run ? trk_run_json(r, run_id, run) : -1;
}

int trk_h_run_get(trk_req *r, cJSON *resp)
{
    const char *run_id;
    if (trk_req_run_id(r, &run_id) != 0)
        return -1;
    cJSON *run = trk_put_obj(r, resp, "run");
    return run ? trk_run_json(r, run_id, run) : -1;
}

/* RunStatus by name or number. */
static int req_status(trk_req *r, const char **status)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->body, "status");
    *status = NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    for (int i = 0; i < 5; i++)
        if (cJSON_IsString(v) && strcmp(v->valuestring, run_statuses[i]) == 0) {
            *status = run_statuses[i];
            return 0;
        }
    int64_t n;
    int present;
    if (trk_req_i64(r, "status", 0, &n, &present) != 0 || n < 1 || n > 5)
        return trk_fail(r, TRK_INVALID,
                        "Invalid value for parameter 'status': expected one of RUNNING, "
                        "SCHEDULED, FINISHED, FAILED, KILLED");
    *status = run_statuses[n - 1];
    return 0;
}

int trk_h_run_update(trk_req *r, cJSON *resp)
{
    const char *run_id, *status, *run_name;
    int64_t end_time = 0;
    int has_end;
    if (trk_req_run_id(r, &run_id) != 0 || trk_req_i64(r, "end_time", 0, &end_time, &has_end) != 0 ||
        req_status(r, &status) != 0 || trk_req_str(r, "run_name", 0, &run_name) != 0)
        return -1;
    if (trk_run_check(r, run_id, 1) != 0)
        return -1;
    if (status && TRK_EXEC(r, "UPDATE runs SET status = ? WHERE run_uuid = ?", "ss", status, run_id))
        return -1;
    if (has_end &&
        TRK_EXEC(r, "UPDATE runs SET end_time = ? WHERE run_uuid = ?", "Is", end_time, run_id))
        return -1;
    if (run_name && *run_name) {
        if (trk_check_tag(r, &trk_run_tags, RUN_NAME_TAG, run_name) != 0 ||
            trk_run_set_tag(r, run_id, RUN_NAME_TAG, run_name) != 0)
            return -1;
    }
    cJSON *info = trk_put_obj(r, resp, "run_info");
    return info ? trk_run_info_json(r, run_id, info) : -1;
}

static int set_lifecycle(trk_req *r, int deleting)
{
    const char *run_id;
    if (trk_req_str(r, "run_id", 1, &run_id) != 0 || trk_run_check(r, run_id, 0) != 0)
        return -1;
    if (deleting)
        return TRK_EXEC(r, "UPDATE runs SET lifecycle_stage = 'deleted', deleted_time = ?"
                           " WHERE run_uuid = ?",
                        "Is", trk_now_ms(), run_id);
    return TRK_EXEC(r, "UPDATE runs SET lifecycle_stage = 'active', deleted_time = NULL"
                       " WHERE run_uuid = ?",
                    "s", run_id);
}

int trk_h_run_delete(trk_req *r, cJSON *resp)
{
    return set_lifecycle(r, 1);
}

int trk_h_run_restore(trk_req *r, cJSON *resp)
{
    return set_lifecycle(r, 0);
}

int trk_h_run_set_tag(trk_req *r, cJSON *resp)
{
    const char *run_id, *key, *value;
    if (trk_req_run_id(r, &run_id) != 0 || trk_req_str(r, "key", 1, &key) != 0 ||
        trk_req_str(r, "value", 0, &value) != 0)
        return -1;
    if (trk_check_tag(r, &trk_run_tags, key, value) != 0 || trk_run_check(r, run_id, 1) != 0)
        return -1;
    return trk_run_set_tag(r, run_id, key, value ? value : "");
}

int trk_h_run_delete_tag(trk_req *r, cJSON *resp)
{
    const char *run_id, *key;
    if (trk_req_str(r, "run_id", 1, &run_id) != 0 || trk_req_str(r, "key", 1, &key) != 0 ||
        trk_run_check(r, run_id, 1) != 0)
        return -1;
    if (TRK_EXEC(r, "DELETE FROM tags WHERE run_uuid = ? AND key = ?", "ss", run_id, key) != 0)
        return -1;
    if (trk_changes(r) == 0)
        return trk_fail(r, TRK_NOT_FOUND, "No tag with name: %s in run with id %s", key, run_id);
    return 0;
}
