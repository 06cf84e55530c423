/* lib/tracking/registry_versions.c — model versions (model_registry.proto):
 * create, get, update, delete, search, stage transitions, download URI and
 * tags.
 *
 * Versions are numbered 1, 2, ... per model and never reused (a deleted
 * version keeps its row, marked deleted). The store is local, so a new
 * version is READY at once. Sources are checked as MLflow's server checks
 * them: no relative path references, and a local path only inside the
 * local artifact directory of the given run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracking/tracking_internal.h"

int trk_version_json(trk_req *r, int64_t model_id, int64_t version, cJSON *out)
{
    sqlite3_stmt *st = TRK_STMT(r,
                                "SELECT m.name, v.creation_time, v.last_updated_time,"
                                " v.current_stage, v.description, v.source, v.run_id, v.status,"
                                " v.status_message, v.run_link FROM model_versions v"
                                " JOIN registered_models m ON m.id = v.model_id"
                                " WHERE v.model_id = ? AND v.version = ?",
                                "II", model_id, version);
    if (!st)
        return -1;
    int rc = TRK_STEP(r, st);
    if (rc == 1) {
        char v[24];
        snprintf(v, sizeof v, "%lld", (long long)version);
        trk_put_str(r, out, "name", trk_col_text(st, 0));
        trk_put_str(r, out, "version", v);
        trk_put_i64(r, out, "creation_timestamp", sqlite3_column_int64(st, 1));
        trk_put_i64(r, out, "last_updated_timestamp", sqlite3_column_int64(st, 2));
        trk_put_str(r, out, "current_stage", trk_col_text(st, 3));
        trk_put_str(r, out, "description", trk_col_text(st, 4));
        trk_put_str(r, out, "source", trk_col_text(st, 5));
        trk_put_str(r, out, "run_id", trk_col_text(st, 6));
        trk_put_str(r, out, "status", trk_col_text(st, 7));
        if (*trk_col_text(st, 8))
            trk_put_str(r, out, "status_message", trk_col_text(st, 8));
        trk_put_str(r, out, "run_link", trk_col_text(st, 9));
    }
    sqlite3_finalize(st);
    if (rc != 1)
        return rc == 0 ? trk_fail(r, TRK_NOT_FOUND, "Model Version not found") : -1;
    st = TRK_STMT(r,
                  "SELECT key, value FROM model_version_tags WHERE model_id = ? AND version = ?"
                  " ORDER BY key",
                  "II", model_id, version);
    if (TRK_PUT_KV_ROWS(r, out, "tags", st) != 0)
        return -1;
    st = TRK_STMT(r,
                  "SELECT alias FROM registered_model_aliases WHERE model_id = ? AND version = ?"
                  " ORDER BY alias",
                  "II", model_id, version);
    if (!st)
        return -1;
    while ((rc = TRK_STEP(r, st)) == 1) {
        cJSON *arr = trk_put_arr(r, out, "aliases");
        cJSON *s = cJSON_CreateString(trk_col_text(st, 0));
        if (!arr || !s || !cJSON_AddItemToArray(arr, s)) {
            cJSON_Delete(s);
            r->oom = 1;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc < 0 ? -1 : 0;
}

int trk_version_find(trk_req *r, int64_t model_id, const char *name, const char *version,
                     int64_t *out)
{
    char *end = NULL;
    long long v = strtoll(version, &end, 10);
    if (!*version || *end || end == version)
        return trk_fail(r, TRK_INVALID, "Model version must be an integer, got '%s'", version);
    sqlite3_stmt *st = TRK_STMT(r,
                                "SELECT 1 FROM model_versions WHERE model_id = ? AND version = ?"
                                " AND deleted = 0",
                                "II", model_id, (int64_t)v);
    if (!st)
        return -1;
    int rc = TRK_STEP(r, st);
    sqlite3_finalize(st);
    if (rc == 0)
        return trk_fail(r, TRK_NOT_FOUND, "Model Version (name=%s, version=%s) not found", name,
                        version);
    if (rc < 0)
        return -1;
    *out = v;
    return 0;
}

/* name + version of the request → model id and version number. */
static int req_version(trk_req *r, const char **name, int64_t *model_id, int64_t *version)
{
    const char *v;
    if (trk_req_str(r, "name", 1, name) != 0 || trk_req_str(r, "version", 1, &v) != 0 ||
        trk_model_id(r, *name, model_id) != 0)
        return -1;
    return trk_version_find(r, *model_id, *name, v, version);
}

static int put_version(trk_req *r, cJSON *resp, int64_t model_id, int64_t version)
{
    cJSON *mv = trk_put_obj(r, resp, "model_version");
    return mv ? trk_version_json(r, model_id, version, mv) : -1;
}

/* --- sources --- */

/* A URI's scheme length ("s3" → 2), 0 when there is none (a local path). */
static size_t scheme_len(const char *uri)
{
    size_t n = strspn(uri, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
    /* "C:" style drive letters are paths, not schemes. */
    return n > 1 && uri[n] == ':' ? n : 0;
}

static int is_local(const char *uri)
{
    size_t n = scheme_len(uri);
    return n == 0 || (n == 4 && strncasecmp(uri, "file", 4) == 0);
}

/* The path of a URI after "scheme:" and "//authority". */
static const char *uri_path(const char *uri)
{
    const char *p = uri + scheme_len(uri);
    if (*p == ':')
        p++;
    if (p[0] == '/' && p[1] == '/') {
        const char *slash = strchr(p + 2, '/');
        return slash ? slash : "";
    }
    return p;
}

/* No "." or ".." segment, no NUL, also once percent-decoded. */
static int no_relative_refs(const char *path)
{
    for (const char *p = path; *p;) {
        while (*p == '/')
            p++;
        size_t n = strcspn(p, "/");
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        p += n;
    }
    return 1;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Like MLflow: percent-decode until nothing changes, then look for "." or
 * ".." segments (or a NUL) in the path. */
static int source_ok(const char *source)
{
    char *s = strdup(source);
    int ok = s != NULL, changed = 1;
    while (ok && changed) {
        changed = 0;
        char *w = s;
        for (const char *p = s; *p; p++) {
            if (*p == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
                int c = hexval(p[1]) * 16 + hexval(p[2]);
                ok &= c != 0;
                *w++ = (char)c;
                p += 2;
                changed = 1;
            } else {
                *w++ = *p;
            }
        }
        *w = '\0';
    }
    ok = ok && no_relative_refs(uri_path(s));
    free(s);
    return ok;
}

static int check_local_source(trk_req *r, const char *source, const char *run_id)
{
    const char *path = uri_path(source);
    int ok = 0;
    if (run_id && *run_id && *path == '/' && no_relative_refs(path)) {
        sqlite3_stmt *st =
            TRK_STMT(r, "SELECT artifact_uri FROM runs WHERE run_uuid = ?", "s", run_id);
        if (!st)
            return -1;
        int rc = TRK_STEP(r, st);
        if (rc == 1 && is_local(trk_col_text(st, 0))) {
            const char *dir = uri_path(trk_col_text(st, 0));
            size_t n = strlen(dir);
            while (n > 1 && dir[n - 1] == '/')
                n--;
            ok = strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
        }
        sqlite3_finalize(st);
        if (rc < 0)
            return -1;
        if (rc == 0)
            return trk_fail(r, TRK_NOT_FOUND, "Run with id=%s not found", run_id);
    }
    if (ok)
        return 0;
    return trk_fail(r, TRK_INVALID,
                    "Invalid model version source: '%s'. To use a local path as a model version "
                    "source, the run_id request parameter has to be specified and the local path "
                    "has to be contained within the artifact directory of the run specified by "
                    "the run_id.",
                    source);
}

static int check_source(trk_req *r, const char *source, const char *run_id)
{
    if (is_local(source))
        return check_local_source(r, source, run_id);
    if (!source_ok(source))
        return trk_fail(r, TRK_INVALID,
                        "Invalid model version source: '%s'. If supplying a source as an http, "
                        "https, local file path, ftp, objectstore, or mlflow-artifacts uri, an "
                        "absolute path must be provided without relative path references present. "
                        "Please provide an absolute path.",
                        source);
    return 0;
}

static int create_tags(trk_req *r, int64_t model_id, int64_t version, int write)
{
    const cJSON *tags;
    int n;
    if (trk_req_obj_list(r, "tags", &tags, &n) != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        const char *key, *value;
        if (trk_req_tag_at(r, tags, i, &trk_version_tags, &key, &value) != 0)
            return -1;
        if (write && TRK_EXEC(r, "INSERT OR REPLACE INTO model_version_tags VALUES (?, ?, ?, ?)",
                              "IIss", model_id, version, key, value) != 0)
            return -1;
    }
    return 0;
}

/* "models:/<name>/<version>" → that version's storage location
 * (malloc'ed into *out); other sources are their own location. */
static int storage_location(trk_req *r, const char *source, char **out)
{
    *out = NULL;
    if (strncmp(source, "models:/", 8) != 0)
        return 0;
    const char *body = source + 8;
    const char *slash = strrchr(body, '/');
    char *name = slash ? strndup(body, (size_t)(slash - body)) : NULL;
    int64_t model_id, version;
    int rc = -1;
    if (name && *name && trk_model_id(r, name, &model_id) == 0 &&
        trk_version_find(r, model_id, name, slash + 1, &version) == 0) {
        sqlite3_stmt *st = TRK_STMT(r,
                                    "SELECT storage_location FROM model_versions"
                                    " WHERE model_id = ? AND version = ?",
                                    "II", model_id, version);
        if (st && TRK_STEP(r, st) == 1 && (*out = strdup(trk_col_text(st, 0))))
            rc = 0;
        sqlite3_finalize(st);
    }
    free(name);
    if (rc != 0)
        trk_fail(r, TRK_INVALID,
                 "Unable to fetch model from model URI source artifact location '%s'.", source);
    return rc;
}

int trk_h_mv_create(trk_req *r, cJSON *resp)
{
    const char *name, *source, *run_id, *run_link, *description;
    int64_t model_id;
    if (trk_req_str(r, "name", 1, &name) != 0 || trk_req_str(r, "source", 1, &source) != 0 ||
        trk_req_str(r, "run_id", 0, &run_id) != 0 || trk_req_str(r, "run_link", 0, &run_link) != 0 ||
        trk_req_str(r, "description", 0, &description) != 0 || create_tags(r, 0, 0, 0) != 0 ||
        check_source(r, source, run_id) != 0 || trk_model_id(r, name, &model_id) != 0)
        return -1;
    sqlite3_stmt *st = TRK_STMT(r, "SELECT coalesce(max(version), 0) + 1 FROM model_versions"
                                   " WHERE model_id = ?",
                                "I", model_id);
    if (!st)
        return -1;
    int rc = TRK_STEP(r, st);
    int64_t version = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc != 1)
        return -1;
    int64_t now = trk_now_ms();
    char *location = NULL;
    if (storage_location(r, source, &location) != 0)
        return -1;
    rc = TRK_EXEC(r,
                  "INSERT INTO model_versions (model_id, version, creation_time,"
                  " last_updated_time, description, current_stage, source, storage_location,"
                  " run_id, run_link, status) VALUES (?, ?, ?, ?, ?, 'None', ?, ?, ?, ?, 'READY')",
                  "IIIIsssss", model_id, version, now, now, description ? description : "", source,
                  location ? location : source, run_id ? run_id : "", run_link ? run_link : "");
    free(location);
    if (rc != 0 || create_tags(r, model_id, version, 1) != 0 ||
        trk_model_touch(r, model_id, now) != 0)
        return -1;
    return put_version(r, resp, model_id, version);
}

int trk_h_mv_get(trk_req *r, cJSON *resp)
{
    const char *name;
    int64_t model_id, version;
    if (req_version(r, &name, &model_id, &version) != 0)
        return -1;
    return put_version(r, resp, model_id, version);
}

int trk_h_mv_update(trk_req *r, cJSON *resp)
{
    const char *name, *description;
    int64_t model_id, version;
    if (trk_req_str(r, "description", 0, &description) != 0 ||
        req_version(r, &name, &model_id, &version) != 0)
        return -1;
    int64_t now = trk_now_ms();
    if (description && TRK_EXEC(r,
                                "UPDATE model_versions SET description = ?, last_updated_time = ?"
                                " WHERE model_id = ? AND version = ?",
                                "sIII", description, now, model_id, version) != 0)
        return -1;
    return put_version(r, resp, model_id, version);
}

int trk_h_mv_delete(trk_req *r, cJSON *resp)
{
    const char *name;
    int64_t model_id, version, now = trk_now_ms();
    if (req_version(r, &name, &model_id, &version) != 0)
        return -1;
    if (TRK_EXEC(r,
                 "UPDATE model_versions SET deleted = 1, last_updated_time = ?"
                 " WHERE model_id = ? AND version = ?",
                 "III", now, model_id, version) != 0 ||
        TRK_EXEC(r, "DELETE FROM model_version_tags WHERE model_id = ? AND version = ?", "II",
                 model_id, version) != 0 ||
        TRK_EXEC(r, "DELETE FROM registered_model_aliases WHERE model_id = ? AND version = ?",
                 "II", model_id, version) != 0)
        return -1;
    return trk_model_touch(r, model_id, now);
}

int trk_h_mv_transition(trk_req *r, cJSON *resp)
{
    const char *name, *stage_text, *stage;
    int64_t model_id, version, now = trk_now_ms();
    int archive;
    if (trk_req_str(r, "name", 1, &name) != 0 || trk_req_str(r, "stage", 1, &stage_text) != 0 ||
        trk_req_bool(r, "archive_existing_versions", 1, &archive, NULL) != 0 ||
        trk_canonical_stage(r, stage_text, &stage) != 0 ||
        req_version(r, &name, &model_id, &version) != 0)
        return -1;
    int active = strcmp(stage, "Staging") == 0 || strcmp(stage, "Production") == 0;
    if (archive && !active)
        return trk_fail(r, TRK_INVALID,
                        "Model version transition cannot archive existing model versions because "
                        "'%s' is not an Active stage. Valid stages are ['Staging', 'Production']",
                        stage_text);
    if (archive && TRK_EXEC(r,
                            "UPDATE model_versions SET current_stage = 'Archived',"
                            " last_updated_time = ? WHERE model_id = ? AND version != ?"
                            " AND current_stage = ? AND deleted = 0",
                            "IIIs", now, model_id, version, stage) != 0)
        return -1;
    if (TRK_EXEC(r,
                 "UPDATE model_versions SET current_stage = ?, last_updated_time = ?"
                 " WHERE model_id = ? AND version = ?",
                 "sIII", stage, now, model_id, version) != 0 ||
        trk_model_touch(r, model_id, now) != 0)
        return -1;
    return put_version(r, resp, model_id, version);
}

/* The version's storage location: its source, or for a "models:/<name>/<n>"
 * source the download URI of that version (as MLflow's SQL registry). */
int trk_h_mv_download_uri(trk_req *r, cJSON *resp)
{
    const char *name;
    int64_t model_id, version;
    if (req_version(r, &name, &model_id, &version) != 0)
        return -1;
    sqlite3_stmt *st = TRK_STMT(r,
                                "SELECT storage_location FROM model_versions"
                                " WHERE model_id = ? AND version = ?",
                                "II", model_id, version);
    if (!st)
        return -1;
    int rc = TRK_STEP(r, st);
    if (rc == 1)
        trk_put_str(r, resp, "artifact_uri", trk_col_text(st, 0));
    sqlite3_finalize(st);
    return rc == 1 ? 0 : -1;
}

int trk_h_mv_set_tag(trk_req *r, cJSON *resp)
{
    const char *name, *key, *value;
    int64_t model_id, version;
    if (trk_req_str(r, "key", 1, &key) != 0 || trk_req_str(r, "value", 0, &value) != 0 ||
        trk_check_tag(r, &trk_version_tags, key, value) != 0 ||
        req_version(r, &name, &model_id, &version) != 0)
        return -1;
    return TRK_EXEC(r, "INSERT OR REPLACE INTO model_version_tags VALUES (?, ?, ?, ?)", "IIss",
                    model_id, version, key, value ? value : "");
}

int trk_h_mv_delete_tag(trk_req *r, cJSON *resp)
{
    const char *name, *key;
    int64_t model_id, version;
    if (trk_req_str(r, "key", 1, &key) != 0 || req_version(r, &name, &model_id, &version) != 0)
        return -1;
    return TRK_EXEC(r, "DELETE FROM model_version_tags WHERE model_id = ? AND version = ? AND key = ?",
                    "IIs", model_id, version, key);
}

/* --- search --- */

static const char *const mv_attrs[] = {"name",         "version_number", "run_id", "source_path",
                                       "current_stage", "creation_timestamp",
                                       "last_updated_timestamp", "timestamp", NULL};
static const char *const mv_numeric[] = {"version_number", "creation_timestamp",
                                         "last_updated_timestamp", "timestamp", NULL};
static const trk_search_spec mv_spec = {"model version", mv_attrs, mv_numeric, 0, 0, 1};

static const char *mv_column(const char *attr)
{
    static const char *const map[][2] = {
        {"name", "m.name"},           {"version_number", "v.version"},
        {"run_id", "v.run_id"},       {"source_path", "v.source"},
        {"current_stage", "v.current_stage"}, {"creation_timestamp", "v.creation_time"},
        {"last_updated_timestamp", "v.last_updated_time"}, {"timestamp", "v.last_updated_time"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i][0], attr) == 0)
            return map[i][1];
    return "m.name";
}

/* Tags of a version are keyed by (model_id, version): an EXISTS of its own. */
static void mv_tag_clause(trk_sql *q, const trk_clause *cl)
{
    int negated = cl->op == TRK_OP_IS_NULL;
    trk_sql_add(q, negated ? "NOT EXISTS (" : "EXISTS (");
    trk_sql_add(q, "SELECT 1 FROM model_version_tags kv WHERE kv.model_id = v.model_id"
                   " AND kv.version = v.version AND kv.key = ");
    trk_sql_bind_text(q, cl->key);
    if (cl->op != TRK_OP_IS_NULL && cl->op != TRK_OP_IS_NOT_NULL) {
        trk_sql_add(q, " AND ");
        trk_sql_compare(q, "kv.value", cl);
    }
    trk_sql_add(q, ")");
}

/* Default "last_updated_timestamp DESC, name ASC, version_number DESC";
 * a given order gets name ASC and version DESC as tie-breaks. */
static int mv_order(trk_req *r, trk_sql *q)
{
    const cJSON *items;
    int n, has_name = 0, has_version = 0;
    if (trk_req_str_list(r, "order_by", &items, &n) != 0)
        return -1;
    trk_sql_add(q, " ORDER BY ");
    if (n == 0) {
        trk_sql_add(q, "v.last_updated_time DESC, m.name ASC, v.version DESC");
        return 0;
    }
    for (int i = 0; i < n; i++) {
        trk_order o;
        if (trk_order_parse(r, &mv_spec, trk_str_at(items, i), &o) != 0)
            return -1;
        if (o.entity == TRK_E_TAG) {
            trk_order_free(&o);
            return trk_fail(r, TRK_INVALID, "Invalid order by key: model versions are ordered "
                                            "by attributes only");
        }
        const char *col = mv_column(o.key);
        has_name |= strcmp(col, "m.name") == 0;
        has_version |= strcmp(col, "v.version") == 0;
        trk_sql_order_column(q, col, o.ascending);
        trk_sql_add(q, ", ");
        trk_order_free(&o);
    }
    trk_sql_add(q, has_name ? "" : "m.name ASC, ");
    trk_sql_add(q, has_version ? "v.rowid" : "v.version DESC");
    return 0;
}

static int mv_row(trk_req *r, sqlite3_stmt *row, cJSON *out)
{
    return trk_version_json(r, sqlite3_column_int64(row, 0), sqlite3_column_int64(row, 1), out);
}

int trk_h_mv_search(trk_req *r, cJSON *resp)
{
    int64_t max_results, offset;
    int rc = -1;
    trk_filter f = {0};
    trk_sql q = {0};
    if (trk_req_registry_search(r, &mv_spec, 10000, TRK_MAX_SEARCH_VERSIONS, &f, &max_results,
                                &offset) != 0)
        goto done;
    trk_sql_add(&q, "SELECT v.model_id, v.version FROM model_versions v"
                    " JOIN registered_models m ON m.id = v.model_id WHERE v.deleted = 0");
    for (int i = 0; i < f.n; i++) {
        trk_sql_add(&q, " AND ");
        if (f.c[i].entity == TRK_E_TAG)
            mv_tag_clause(&q, &f.c[i]);
        else
            trk_sql_compare(&q, mv_column(f.c[i].key), &f.c[i]);
    }
    if (mv_order(r, &q) == 0)
        rc = TRK_SQL_PAGE(r, &q, max_results, offset, resp, "model_versions", mv_row);
done:
    trk_sql_free(&q);
    trk_filter_free(&f);
    return rc;
}
