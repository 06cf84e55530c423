/* lib/tracking/experiments.c — the experiment endpoints (service.proto's
 * CreateExperiment ... DeleteExperimentTag) with the SQL store's rules:
 * integer ids (the "Default" experiment is 0), unique names (deleted
 * experiments keep theirs), deleting an experiment deletes its runs and
 * restoring it restores them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracking/tracking_internal.h"

int trk_experiment_json(trk_req *r, int64_t id, cJSON *out)
{
    sqlite3_stmt *st = TRK_STMT(r,
                                "SELECT name, artifact_location, lifecycle_stage, creation_time,"
                                " last_update_time FROM experiments WHERE experiment_id = ?",
                                "I", id);
    if (!st)
        return -1;
    int rc = TRK_STEP(r, st);
    if (rc == 0)
        rc = trk_fail(r, TRK_NOT_FOUND, "No Experiment with id=%lld exists", (long long)id);
    if (rc < 0) {
        sqlite3_finalize(st);
        return -1;
    }
    char id_text[24];
    snprintf(id_text, sizeof id_text, "%lld", (long long)id);
    trk_put_str(r, out, "experiment_id", id_text);
    trk_put_str(r, out, "name", trk_col_text(st, 0));
    trk_put_str(r, out, "artifact_location", trk_col_text(st, 1));
    trk_put_str(r, out, "lifecycle_stage", trk_col_text(st, 2));
    trk_put_i64(r, out, "last_update_time", sqlite3_column_int64(st, 4));
    trk_put_i64(r, out, "creation_time", sqlite3_column_int64(st, 3));
    sqlite3_finalize(st);
    st = TRK_STMT(r, "SELECT key, value FROM experiment_tags WHERE experiment_id = ? ORDER BY key",
                  "I", id);
    return TRK_PUT_KV_ROWS(r, out, "tags", st);
}

/* The experiment's lifecycle stage into `stage` (RESOURCE_DOES_NOT_EXIST
 * if there is none). */
static int exp_stage(trk_req *r, int64_t id, char stage[16])
{
    sqlite3_stmt *st =
        TRK_STMT(r, "SELECT lifecycle_stage FROM experiments WHERE experiment_id = ?", "I", id);
    if (!st)
        return -1;
    int rc = TRK_STEP(r, st);
    if (rc == 1)
        snprintf(stage, 16, "%s", trk_col_text(st, 0));
    sqlite3_finalize(st);
    if (rc == 0)
        return trk_fail(r, TRK_NOT_FOUND, "No Experiment with id=%lld exists", (long long)id);
    return rc < 0 ? -1 : 0;
}

int trk_exp_require_active(trk_req *r, int64_t id)
{
    char stage[16];
    if (exp_stage(r, id, stage) != 0)
        return -1;
    if (strcmp(stage, "active") != 0)
        return trk_fail(r, TRK_INVALID,
                        "The experiment %lld must be in the 'active' state. Current state is %s.",
                        (long long)id, stage);
    return 0;
}

static int exp_id_by_name(trk_req *r, const char *name, int64_t *id)
{
    sqlite3_stmt *st = TRK_STMT(r, "SELECT experiment_id FROM experiments WHERE name = ?", "s", name);
    if (!st)
        return -1;
    int rc = TRK_STEP(r, st);
    if (rc == 1)
        *id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc;
}

static int check_name(trk_req *r, const char *name)
{
    if (trk_check_len(r, "Experiment name", TRK_MAX_EXP_NAME_LEN, name) != 0)
        return trk_fail(r, TRK_INVALID, "Experiment name exceeds the maximum length of %d characters",
                        TRK_MAX_EXP_NAME_LEN);
    int64_t other;
    int rc = exp_id_by_name(r, name, &other);
    if (rc == 1)
        return trk_fail(r, TRK_EXISTS, "Experiment(name=%s) already exists.", name);
    return rc < 0 ? -1 : 0;
}

static int create_tags(trk_req *r, int64_t id)
{
    const cJSON *tags;
    int n;
    if (trk_req_obj_list(r, "tags", &tags, &n) != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        const char *key, *value;
        if (trk_req_tag_at(r, tags, i, &trk_experiment_tags, &key, &value) != 0 ||
            TRK_EXEC(r, "INSERT OR REPLACE INTO experiment_tags VALUES (?, ?, ?)", "Iss", id, key,
                     value) != 0)
            return -1;
    }
    return 0;
}

int trk_h_exp_create(trk_req *r, cJSON *resp)
{
    const char *name, *location;
    if (trk_req_str(r, "name", 1, &name) != 0 || trk_req_str(r, "artifact_location", 0, &location) != 0)
        return -1;
    if (location && *location) {
        if (strncmp(location, "runs:", 5) == 0)
            return trk_fail(r, TRK_INVALID, "Artifact location cannot be a runs:/ URI. Given: '%s'",
                            location);
        if (strchr(location, '#') || strchr(location, ';'))
            return trk_fail(r, TRK_INVALID,
                            "'artifact_location' URL can't include fragments or params.");
    }
    if (check_name(r, name) != 0)
        return -1;
    int64_t now = trk_now_ms();
    if (TRK_EXEC(r,
                 "INSERT INTO experiments (name, artifact_location, lifecycle_stage,"
                 " creation_time, last_update_time) VALUES (?, ?, 'active', ?, ?)",
                 "ssII", name, location ? location : "", now, now) != 0)
        return -1;
    int64_t id = sqlite3_last_insert_rowid(r->db);
    if (!location || !*location) {
        char *uri = NULL;
        if (asprintf(&uri, "%s/%lld", r->t->default_artifact_root, (long long)id) < 0) {
            r->oom = 1;
            return trk_fail(r, TRK_INTERNAL, "out of memory");
        }
        int rc = TRK_EXEC(r, "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                          "sI", uri, id);
        free(uri);
        if (rc != 0)
            return -1;
    }
    if (create_tags(r, id) != 0)
        return -1;
    char id_text[24];
    snprintf(id_text, sizeof id_text, "%lld", (long long)id);
    trk_put_str(r, resp, "experiment_id", id_text);
    return 0;
}

static int req_exp_id(trk_req *r, int64_t *id)
{
    const char *text;
    if (trk_req_str(r, "experiment_id", 1, &text) != 0)
        return -1;
    return trk_parse_exp_id(r, text, id);
}

int trk_h_exp_get(trk_req *r, cJSON *resp)
{
    int64_t id;
    if (req_exp_id(r, &id) != 0)
        return -1;
    cJSON *exp = trk_put_obj(r, resp, "experiment");
    return exp ? trk_experiment_json(r, id, exp) : -1;
}

int trk_h_exp_get_by_name(trk_req *r, cJSON *resp)
{
    const char *name;
    int64_t id = 0;
    if (trk_req_str(r, "experiment_name", 1, &name) != 0)
        return -1;
    int rc = exp_id_by_name(r, name, &id);
    if (rc == 0)
        return trk_fail(r, TRK_NOT_FOUND, "Could not find experiment with name '%s'", name);
    if (rc < 0)
        return -1;
    cJSON *exp = trk_put_obj(r, resp, "experiment");
    return exp ? trk_experiment_json(r, id, exp) : -1;
}

int trk_h_exp_update(trk_req *r, cJSON *resp)
{
    int64_t id;
    const char *new_name;
    char stage[16];
    if (req_exp_id(r, &id) != 0 || trk_req_str(r, "new_name", 1, &new_name) != 0)
        return -1;
    if (exp_stage(r, id, stage) != 0)
        return -1;
    if (strcmp(stage, "active") != 0)
        return trk_fail(r, TRK_INVALID_STATE, "Cannot rename a non-active experiment.");
    int64_t other = -1;
    int rc = exp_id_by_name(r, new_name, &other);
    if (rc < 0)
        return -1;
    if (rc == 1 && other == id)
        return 0;
    if (check_name(r, new_name) != 0)
        return -1;
    return TRK_EXEC(r, "UPDATE experiments SET name = ?, last_update_time = ? WHERE experiment_id = ?",
                    "sII", new_name, trk_now_ms(), id);
}

/* Delete/restore: the experiment must be in `from`; it and all its runs
 * move to `to`. */
static int move_lifecycle(trk_req *r, const char *from, const char *to)
{
    int64_t id;
    char stage[16];
    if (req_exp_id(r, &id) != 0)
        return -1;
    if (exp_stage(r, id, stage) != 0)
        return -1;
    if (strcmp(stage, from) != 0)
        return trk_fail(r, TRK_NOT_FOUND, "No Experiment with id=%lld exists", (long long)id);
    int64_t now = trk_now_ms();
    int deleting = strcmp(to, "deleted") == 0;
    if (TRK_EXEC(r, "UPDATE experiments SET lifecycle_stage = ?, last_update_time = ?"
                    " WHERE experiment_id = ?",
                 "sII", to, now, id) != 0)
        return -1;
    if (deleting)
        return TRK_EXEC(r, "UPDATE runs SET lifecycle_stage = 'deleted', deleted_time = ?"
                           " WHERE experiment_id = ?",
                        "II", now, id);
    return TRK_EXEC(r, "UPDATE runs SET lifecycle_stage = 'active', deleted_time = NULL"
                       " WHERE experiment_id = ?",
                    "I", id);
}

int trk_h_exp_delete(trk_req *r, cJSON *resp)
{
    return move_lifecycle(r, "active", "deleted");
}

int trk_h_exp_restore(trk_req *r, cJSON *resp)
{
    return move_lifecycle(r, "deleted", "active");
}

int trk_h_exp_set_tag(trk_req *r, cJSON *resp)
{
    int64_t id;
    const char *key, *value;
    if (req_exp_id(r, &id) != 0 || trk_req_str(r, "key", 1, &key) != 0 ||
        trk_req_str(r, "value", 0, &value) != 0)
        return -1;
    if (trk_check_tag(r, &trk_experiment_tags, key, value) != 0 ||
        trk_exp_require_active(r, id) != 0)
        return -1;
    return TRK_EXEC(r, "INSERT OR REPLACE INTO experiment_tags VALUES (?, ?, ?)", "Iss", id, key,
                    value ? value : "");
}

int trk_h_exp_delete_tag(trk_req *r, cJSON *resp)
{
    int64_t id;
    const char *key;
    if (req_exp_id(r, &id) != 0 || trk_req_str(r, "key", 1, &key) != 0)
        return -1;
    if (trk_exp_require_active(r, id) != 0)
        return -1;
    if (TRK_EXEC(r, "DELETE FROM experiment_tags WHERE experiment_id = ? AND key = ?", "Is", id,
                 key) != 0)
        return -1;
    if (trk_changes(r) == 0)
        return trk_fail(r, TRK_NOT_FOUND, "No tag with name: %s in experiment with id %lld", key,
                        (long long)id);
    return 0;
}

/* --- search --- */

static const char *const exp_filter_attrs[] = {"name", "creation_time", "last_update_time",
                                               "experiment_id", NULL};
static const char *const exp_numeric_attrs[] = {"creation_time", "last_update_time", NULL};
static const trk_search_spec exp_spec = {"experiment", exp_filter_attrs, exp_numeric_attrs, 0, 0,
                                         1};
static const trk_kv_table exp_tags = {"experiment_tags", "experiment_id", 0};

/* The SQL column of an experiment attribute. */
static const char *exp_column(const char *attr)
{
    if (strcmp(attr, "name") == 0)
        return "e.name";
    if (strcmp(attr, "creation_time") == 0)
        return "e.creation_time";
    if (strcmp(attr, "last_update_time") == 0)
        return "e.last_update_time";
    return "CAST(e.experiment_id AS TEXT)";
}

/* view_type: ACTIVE_ONLY (1, default), DELETED_ONLY (2), ALL (3), by
 * name or number. */
static int req_view_type(trk_req *r, const char *field, int *view)
{
    static const char *const names[] = {"ACTIVE_ONLY", "DELETED_ONLY", "ALL"};
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->body, field);
    if (r->is_get && cJSON_IsArray(v))
        v = v->child;
    *view = 1;
    if (!v || cJSON_IsNull(v))
        return 0;
    for (int i = 0; i < 3; i++)
        if (cJSON_IsString(v) && strcmp(v->valuestring, names[i]) == 0) {
            *view = i + 1;
            return 0;
        }
    int64_t n;
    int present;
    if (trk_req_i64(r, field, 0, &n, &present) != 0 || n < 1 || n > 3)
        return trk_fail(r, TRK_INVALID,
                        "Invalid value for parameter '%s': expected ACTIVE_ONLY, DELETED_ONLY or "
                        "ALL",
                        field);
    *view = (int)n;
    return 0;
}

const char *trk_view_type_sql(int view)
{
    return view == 1 ? "lifecycle_stage = 'active'"
                     : view == 2 ? "lifecycle_stage = 'deleted'" : "lifecycle_stage IS NOT NULL";
}

int trk_req_view_type(trk_req *r, const char *field, int *view)
{
    return req_view_type(r, field, view);
}

static void exp_where(trk_sql *q, int view, const trk_filter *f)
{
    trk_sql_add(q, "SELECT e.experiment_id FROM experiments e WHERE e.");
    trk_sql_add(q, trk_view_type_sql(view));
    for (int i = 0; i < f->n; i++) {
        trk_sql_add(q, " AND ");
        if (f->c[i].entity == TRK_E_TAG)
            trk_sql_exists_kv(q, &exp_tags, "e.experiment_id", &f->c[i]);
        else
            trk_sql_compare(q, exp_column(f->c[i].key), &f->c[i]);
    }
}

/* As MLflow's SQL store: attributes only, default "creation_time DESC,
 * experiment_id ASC", and experiment_id DESC as the tie-break. */
static int exp_order(trk_req *r, trk_sql *q)
{
    const cJSON *items;
    int n, has_id = 0;
    if (trk_req_str_list(r, "order_by", &items, &n) != 0)
        return -1;
    trk_sql_add(q, " ORDER BY ");
    if (n == 0) {
        trk_sql_add(q, "e.creation_time DESC, e.experiment_id ASC");
        return 0;
    }
    for (int i = 0; i < n; i++) {
        trk_order o;
        if (trk_order_parse(r, &exp_spec, trk_str_at(items, i), &o) != 0)
            return -1;
        if (o.entity != TRK_E_ATTR) {
            trk_order_free(&o);
            return trk_fail(r, TRK_INVALID, "Invalid order_by entity: tag");
        }
        if (strcmp(o.key, "experiment_id") == 0) {
            has_id = 1;
            trk_sql_add(q, o.ascending ? "e.experiment_id ASC" : "e.experiment_id DESC");
        } else {
            trk_sql_order_column(q, exp_column(o.key), o.ascending);
        }
        trk_sql_add(q, i + 1 < n || !has_id ? ", " : "");
        trk_order_free(&o);
    }
    if (!has_id)
        trk_sql_add(q, "e.experiment_id DESC");
    return 0;
}

static int exp_row(trk_req *r, sqlite3_stmt *row, cJSON *out)
{
    return trk_experiment_json(r, sqlite3_column_int64(row, 0), out);
}

int trk_h_exp_search(trk_req *r, cJSON *resp)
{
    int64_t max_results, offset;
    const char *filter, *token;
    int view, rc = -1;
    trk_filter f = {0};
    trk_sql q = {0};
    if (trk_req_max_results(r, 1000, TRK_MAX_SEARCH_EXPERIMENTS, 1, &max_results) != 0 ||
        trk_req_str(r, "page_token", 0, &token) != 0 || trk_req_str(r, "filter", 0, &filter) != 0 ||
        req_view_type(r, "view_type", &view) != 0 || trk_page_token_parse(r, token, &offset) != 0)
        goto done;
    if (trk_filter_parse(r, &exp_spec, filter, &f) != 0)
        goto done;
    exp_where(&q, view, &f);
    if (exp_order(r, &q) == 0)
        rc = TRK_SQL_PAGE(r, &q, max_results, offset, resp, "experiments", exp_row);
done:
    trk_sql_free(&q);
    trk_filter_free(&f);
    return rc;
}
