/* lib/tracking/registry_models.c — registered models (model_registry.proto):
 * create, get, rename, update, delete, search, tags, latest versions per
 * stage, and aliases.
 *
 * As MLflow's SQL registry: a model's latest_versions holds the newest
 * version of each stage; an alias names one version and setting it again
 * moves it; "latest" resolves to the newest version; deleting a model
 * deletes its versions, tags and aliases.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracking/tracking_internal.h"

static const char *const all_stages[] = {"None", "Staging", "Production", "Archived"};

int trk_model_id(trk_req *r, const char *name, int64_t *id)
{
    sqlite3_stmt *st = TRK_STMT(r, "SELECT id FROM registered_models WHERE name = ?", "s", name);
    if (!st)
        return -1;
    int rc = TRK_STEP(r, st);
    if (rc == 1)
        *id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc == 0)
        return trk_fail(r, TRK_NOT_FOUND, "Registered Model with name=%s not found", name);
    return rc < 0 ? -1 : 0;
}

int trk_model_touch(trk_req *r, int64_t model_id, int64_t now)
{
    return TRK_EXEC(r, "UPDATE registered_models SET last_updated_time = ? WHERE id = ?", "II", now,
                    model_id);
}

int trk_canonical_stage(trk_req *r, const char *stage, const char **out)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(stage, all_stages[i]) == 0) {
            *out = all_stages[i];
            return 0;
        }
    return trk_fail(r, TRK_INVALID,
                    "Invalid Model Version stage: %s. Value must be one of None, Staging, "
                    "Production, Archived.",
                    stage);
}

int trk_latest_versions(trk_req *r, int64_t model_id, const char *const *stages, int n,
                        cJSON *parent, const char *arr_name)
{
    sqlite3_stmt *st = TRK_STMT(r,
                                "SELECT v.version, v.current_stage FROM model_versions v"
                                " WHERE v.model_id = ? AND v.deleted = 0 AND v.status = 'READY'"
                                " AND v.version = (SELECT max(w.version) FROM model_versions w"
                                "   WHERE w.model_id = v.model_id AND w.deleted = 0"
                                "   AND w.status = 'READY' AND w.current_stage = v.current_stage)"
                                " ORDER BY v.version",
                                "I", model_id);
    if (!st)
        return -1;
    int rc;
    while ((rc = TRK_STEP(r, st)) == 1) {
        int wanted = stages == NULL;
        for (int i = 0; i < n && !wanted; i++)
            wanted = strcmp(stages[i], trk_col_text(st, 1)) == 0;
        if (!wanted)
            continue;
        cJSON *mv = trk_arr_add_obj(r, trk_put_arr(r, parent, arr_name));
        if (!mv || trk_version_json(r, model_id, sqlite3_column_int64(st, 0), mv) != 0) {
            rc = -1;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc < 0 ? -1 : 0;
}

int trk_model_json(trk_req *r, int64_t model_id, cJSON *out)
{
    sqlite3_stmt *st = TRK_STMT(r,
                                "SELECT name, creation_time, last_updated_time, description"
                                " FROM registered_models WHERE id = ?",
                                "I", model_id);
    if (!st)
        return -1;
    int rc = TRK_STEP(r, st);
    if (rc == 1) {
        trk_put_str(r, out, "name", trk_col_text(st, 0));
        trk_put_i64(r, out, "creation_timestamp", sqlite3_column_int64(st, 1));
        trk_put_i64(r, out, "last_updated_timestamp", sqlite3_column_int64(st, 2));
        trk_put_str(r, out, "description", trk_col_text(st, 3));
    }
    sqlite3_finalize(st);
    if (rc != 1)
        return rc == 0 ? trk_fail(r, TRK_NOT_FOUND, "Registered Model not found") : -1;
    if (trk_latest_versions(r, model_id, NULL, 0, out, "latest_versions") != 0)
        return -1;
    st = TRK_STMT(r, "SELECT key, value FROM registered_model_tags WHERE model_id = ? ORDER BY key",
                  "I", model_id);
    if (TRK_PUT_KV_ROWS(r, out, "tags", st) != 0)
        return -1;
    st = TRK_STMT(r,
                  "SELECT alias, version FROM registered_model_aliases WHERE model_id = ?"
                  " ORDER BY alias",
                  "I", model_id);
    if (!st)
        return -1;
    while ((rc = TRK_STEP(r, st)) == 1) {
        cJSON *a = trk_arr_add_obj(r, trk_put_arr(r, out, "aliases"));
        if (!a)
            break;
        trk_put_str(r, a, "alias", trk_col_text(st, 0));
        trk_put_str(r, a, "version", trk_col_text(st, 1));
    }
    sqlite3_finalize(st);
    return rc < 0 ? -1 : 0;
}

static int put_model(trk_req *r, cJSON *resp, int64_t model_id)
{
    cJSON *m = trk_put_obj(r, resp, "registered_model");
    return m ? trk_model_json(r, model_id, m) : -1;
}

static int name_taken(trk_req *r, const char *name)
{
    sqlite3_stmt *st = TRK_STMT(r, "SELECT 1 FROM registered_models WHERE name = ?", "s", name);
    if (!st)
        return -1;
    int rc = TRK_STEP(r, st);
    sqlite3_finalize(st);
    if (rc == 1)
        return trk_fail(r, TRK_EXISTS, "Registered Model (name=%s) already exists.", name);
    return rc;
}

int trk_h_rm_create(trk_req *r, cJSON *resp)
{
    const char *name, *description;
    const cJSON *tags;
    int n_tags;
    if (trk_req_str(r, "name", 1, &name) != 0 || trk_req_obj_list(r, "tags", &tags, &n_tags) != 0 ||
        trk_req_str(r, "description", 0, &description) != 0)
        return -1;
    for (int i = 0; i < n_tags; i++) {
        const char *key, *value;
        if (trk_req_tag_at(r, tags, i, &trk_model_tags, &key, &value) != 0)
            return -1;
    }
    if (name_taken(r, name) != 0)
        return -1;
    int64_t now = trk_now_ms();
    if (TRK_EXEC(r,
                 "INSERT INTO registered_models (name, creation_time, last_updated_time,"
                 " description) VALUES (?, ?, ?, ?)",
                 "sIIs", name, now, now, description ? description : "") != 0)
        return -1;
    int64_t id = sqlite3_last_insert_rowid(r->db);
    for (int i = 0; i < n_tags; i++) {
        const char *key, *value; /* checked above */
        if (trk_req_tag_at(r, tags, i, &trk_model_tags, &key, &value) != 0 ||
            TRK_EXEC(r, "INSERT OR REPLACE INTO registered_model_tags VALUES (?, ?, ?)", "Iss", id,
                     key, value) != 0)
            return -1;
    }
    return put_model(r, resp, id);
}

int trk_h_rm_get(trk_req *r, cJSON *resp)
{
    const char *name;
    int64_t id;
    if (trk_req_str(r, "name", 1, &name) != 0 || trk_model_id(r, name, &id) != 0)
        return -1;
    return put_model(r, resp, id);
}

int trk_h_rm_rename(trk_req *r, cJSON *resp)
{
    const char *name, *new_name;
    int64_t id;
    if (trk_req_str(r, "name", 1, &name) != 0 || trk_req_str(r, "new_name", 1, &new_name) != 0 ||
        trk_model_id(r, name, &id) != 0)
        return -1;
    if (strcmp(name, new_name) != 0 && name_taken(r, new_name) != 0)
        return -1;
    if (TRK_EXEC(r, "UPDATE registered_models SET name = ?, last_updated_time = ? WHERE id = ?",
                 "sII", new_name, trk_now_ms(), id) != 0)
        return -1;
    return put_model(r, resp, id);
}

int trk_h_rm_update(trk_req *r, cJSON *resp)
{
    const char *name, *description;
    int64_t id;
    if (trk_req_str(r, "name", 1, &name) != 0 || trk_req_str(r, "description", 0, &description) != 0 ||
        trk_model_id(r, name, &id) != 0)
        return -1;
    if (TRK_EXEC(r, "UPDATE registered_models SET description = ?, last_updated_time = ?"
                    " WHERE id = ?",
                 "sII", description ? description : "", trk_now_ms(), id) != 0)
        return -1;
    return put_model(r, resp, id);
}

int trk_h_rm_delete(trk_req *r, cJSON *resp)
{
    const char *name;
    int64_t id;
    if (trk_req_str(r, "name", 1, &name) != 0 || trk_model_id(r, name, &id) != 0)
        return -1;
    return TRK_EXEC(r, "DELETE FROM registered_models WHERE id = ?", "I", id);
}

int trk_h_rm_set_tag(trk_req *r, cJSON *resp)
{
    const char *name, *key, *value;
    int64_t id;
    if (trk_req_str(r, "name", 1, &name) != 0 || trk_req_str(r, "key", 1, &key) != 0 ||
        trk_req_str(r, "value", 0, &value) != 0 ||
        trk_check_tag(r, &trk_model_tags, key, value) != 0 ||
        trk_model_id(r, name, &id) != 0)
        return -1;
    return TRK_EXEC(r, "INSERT OR REPLACE INTO registered_model_tags VALUES (?, ?, ?)", "Iss", id,
                    key, value ? value : "");
}

int trk_h_rm_delete_tag(trk_req *r, cJSON *resp)
{
    const char *name, *key;
    int64_t id;
    if (trk_req_str(r, "name", 1, &name) != 0 || trk_req_str(r, "key", 1, &key) != 0 ||
        trk_model_id(r, name, &id) != 0)
        return -1;
    return TRK_EXEC(r, "DELETE FROM registered_model_tags WHERE model_id = ? AND key = ?", "Is", id,
                    key);
}

int trk_h_rm_latest(trk_req *r, cJSON *resp)
{
    const char *name;
    const cJSON *items;
    int n;
    int64_t id;
    const char *stages[4];
    if (trk_req_str(r, "name", 1, &name) != 0 || trk_req_str_list(r, "stages", &items, &n) != 0)
        return -1;
    int n_stages = 0;
    for (int i = 0; i < n; i++) {
        const char *stage = NULL;
        if (trk_canonical_stage(r, trk_str_at(items, i), &stage) != 0)
            return -1;
        int seen = 0;
        for (int j = 0; j < n_stages; j++)
            seen |= stages[j] == stage;
        if (!seen)
            stages[n_stages++] = stage;
    }
    if (trk_model_id(r, name, &id) != 0)
        return -1;
    return trk_latest_versions(r, id, n ? stages : NULL, n_stages, resp, "model_versions");
}

/* --- aliases --- */

/* As MLflow's SQL registry: aliases do not touch the model's timestamps,
 * and "latest" is a reserved name here too (clients resolve it). */
int trk_h_alias_set(trk_req *r, cJSON *resp)
{
    const char *name, *alias, *version;
    int64_t id, v;
    if (trk_req_str(r, "name", 1, &name) != 0 || trk_req_str(r, "alias", 1, &alias) != 0 ||
        trk_req_str(r, "version", 1, &version) != 0 || trk_check_alias(r, alias) != 0 ||
        trk_model_id(r, name, &id) != 0 || trk_version_find(r, id, name, version, &v) != 0)
        return -1;
    return TRK_EXEC(r, "INSERT OR REPLACE INTO registered_model_aliases VALUES (?, ?, ?)", "IsI",
                    id, alias, v);
}

int trk_h_alias_delete(trk_req *r, cJSON *resp)
{
    const char *name, *alias;
    int64_t id;
    if (trk_req_str(r, "name", 1, &name) != 0 || trk_req_str(r, "alias", 1, &alias) != 0 ||
        trk_check_alias(r, alias) != 0 || trk_model_id(r, name, &id) != 0)
        return -1;
    return TRK_EXEC(r, "DELETE FROM registered_model_aliases WHERE model_id = ? AND alias = ?",
                    "Is", id, alias);
}

int trk_h_alias_get(trk_req *r, cJSON *resp)
{
    const char *name, *alias;
    int64_t id = 0;
    if (trk_req_str(r, "name", 1, &name) != 0 || trk_req_str(r, "alias", 1, &alias) != 0 ||
        trk_check_alias(r, alias) != 0)
        return -1;
    sqlite3_stmt *st = TRK_STMT(r,
                                "SELECT a.model_id, a.version FROM registered_model_aliases a"
                                " JOIN registered_models m ON m.id = a.model_id"
                                " WHERE m.name = ? AND a.alias = ?",
                                "ss", name, alias);
    if (!st)
        return -1;
    int rc = TRK_STEP(r, st);
    int64_t version = 0;
    if (rc == 1) {
        id = sqlite3_column_int64(st, 0);
        version = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (rc < 0)
        return -1;
    /* MLflow answers INVALID_PARAMETER_VALUE (400) here, not a 404, also
     * for a model that does not exist. */
    if (rc == 0)
        return trk_fail(r, TRK_INVALID, "Registered model alias %s not found.", alias);
    cJSON *mv = trk_put_obj(r, resp, "model_version");
    return mv ? trk_version_json(r, id, version, mv) : -1;
}

/* --- search --- */

static const char *const rm_attrs[] = {"name", "creation_timestamp", "last_updated_timestamp",
                                       "timestamp", NULL};
static const char *const rm_numeric[] = {"creation_timestamp", "last_updated_timestamp",
                                         "timestamp", NULL};
static const trk_search_spec rm_spec = {"registered model", rm_attrs, rm_numeric, 0, 0, 1};
static const trk_kv_table rm_tags = {"registered_model_tags", "model_id", 0};

static const char *rm_column(const char *attr)
{
    if (strcmp(attr, "name") == 0)
        return "m.name";
    if (strcmp(attr, "creation_timestamp") == 0)
        return "m.creation_time";
    return "m.last_updated_time";
}

static int rm_order(trk_req *r, trk_sql *q)
{
    const cJSON *items;
    int n;
    if (trk_req_str_list(r, "order_by", &items, &n) != 0)
        return -1;
    trk_sql_add(q, " ORDER BY ");
    for (int i = 0; i < n; i++) {
        trk_order o;
        if (trk_order_parse(r, &rm_spec, trk_str_at(items, i), &o) != 0)
            return -1;
        if (o.entity == TRK_E_TAG)
            trk_sql_order_kv(q, &rm_tags, "m.id", o.key, o.ascending);
        else
            trk_sql_order_column(q, rm_column(o.key), o.ascending);
        trk_sql_add(q, ", ");
        trk_order_free(&o);
    }
    trk_sql_add(q, "m.name ASC");
    return 0;
}

static int rm_row(trk_req *r, sqlite3_stmt *row, cJSON *out)
{
    return trk_model_json(r, sqlite3_column_int64(row, 0), out);
}

int trk_req_registry_search(trk_req *r, const trk_search_spec *spec, int64_t dflt, int64_t max,
                            trk_filter *f, int64_t *max_results, int64_t *offset)
{
    const char *filter, *token;
    if (trk_req_str(r, "filter", 0, &filter) != 0 ||
        trk_req_max_results(r, dflt, max, 0, max_results) != 0 ||
        trk_req_str(r, "page_token", 0, &token) != 0 || trk_page_token_parse(r, token, offset) != 0)
        return -1;
    return trk_filter_parse(r, spec, filter, f);
}

int trk_h_rm_search(trk_req *r, cJSON *resp)
{
    int64_t max_results, offset;
    int rc = -1;
    trk_filter f = {0};
    trk_sql q = {0};
    if (trk_req_registry_search(r, &rm_spec, 100, TRK_MAX_SEARCH_MODELS, &f, &max_results,
                                &offset) != 0)
        goto done;
    trk_sql_add(&q, "SELECT m.id FROM registered_models m WHERE 1");
    for (int i = 0; i < f.n; i++) {
        trk_sql_add(&q, " AND ");
        if (f.c[i].entity == TRK_E_TAG)
            trk_sql_exists_kv(&q, &rm_tags, "m.id", &f.c[i]);
        else
            trk_sql_compare(&q, rm_column(f.c[i].key), &f.c[i]);
    }
    if (rm_order(r, &q) == 0)
        rc = TRK_SQL_PAGE(r, &q, max_results, offset, resp, "registered_models", rm_row);
done:
    trk_sql_free(&q);
    trk_filter_free(&f);
    return rc;
}
