/* lib/tracking/store.c — the SQLite store: opening, the schema and its
 * migrations, the connection pool, and checked statement helpers.
 *
 * Threads: each request takes a connection of its own from a pool (opened
 * on demand, kept for reuse), so readers run in parallel under WAL while
 * writers queue on the kiln_tracking's write lock. Processes: every
 * connection has a busy timeout, and writes start with BEGIN IMMEDIATE, so
 * several processes share one database file safely.
 * Durability: WAL with synchronous=NORMAL — a committed request survives a
 * crash or kill of the process; a power cut may lose the last commits but
 * never corrupts the file.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "tracking/tracking_internal.h"

/* Checks a SQLite status while opening, with file, line and errmsg. */
#define TRK_DB_CHECK(db, rc, err, what)                                                     \
    do {                                                                                    \
        if ((rc) != SQLITE_OK && (rc) != SQLITE_DONE && (rc) != SQLITE_ROW) {               \
            kiln_err_set((err), KILN_EIO, "%s:%d: %s: SQLite error %d: %s", __FILE__,       \
                         __LINE__, (what), (rc), (db) ? sqlite3_errmsg(db) : "no handle");  \
            goto fail;                                                                      \
        }                                                                                   \
    } while (0)

/* Migration i takes the schema from version i to i + 1. */
static const char *const migrations[] = {
    /* 0 → 1: the initial schema (MLflow's entities). */
    "CREATE TABLE schema_version (version INTEGER NOT NULL);"
    "INSERT INTO schema_version VALUES (0);"
    "CREATE TABLE experiments ("
    "  experiment_id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  artifact_location TEXT NOT NULL,"
    "  lifecycle_stage TEXT NOT NULL DEFAULT 'active',"
    "  creation_time INTEGER NOT NULL,"
    "  last_update_time INTEGER NOT NULL);"
    "CREATE TABLE experiment_tags ("
    "  experiment_id INTEGER NOT NULL REFERENCES experiments(experiment_id),"
    "  key TEXT NOT NULL, value TEXT NOT NULL,"
    "  PRIMARY KEY (experiment_id, key));"
    "CREATE TABLE runs ("
    "  run_uuid TEXT PRIMARY KEY,"
    "  experiment_id INTEGER NOT NULL REFERENCES experiments(experiment_id),"
    "  name TEXT NOT NULL, user_id TEXT NOT NULL, status TEXT NOT NULL,"
    "  start_time INTEGER, end_time INTEGER,"
    "  artifact_uri TEXT NOT NULL, lifecycle_stage TEXT NOT NULL, deleted_time INTEGER);"
    "CREATE INDEX runs_by_experiment ON runs (experiment_id, start_time);"
    /* NaN is stored as value 0 with is_nan 1 (SQLite turns NaN into NULL). */
    "CREATE TABLE metrics ("
    "  run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),"
    "  key TEXT NOT NULL, value REAL NOT NULL, is_nan INTEGER NOT NULL,"
    "  timestamp INTEGER NOT NULL, step INTEGER NOT NULL,"
    "  UNIQUE (run_uuid, key, timestamp, step, value, is_nan));"
    "CREATE TABLE latest_metrics ("
    "  run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),"
    "  key TEXT NOT NULL, value REAL NOT NULL, is_nan INTEGER NOT NULL,"
    "  timestamp INTEGER NOT NULL, step INTEGER NOT NULL,"
    "  PRIMARY KEY (run_uuid, key));"
    "CREATE TABLE params ("
    "  run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),"
    "  key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_uuid, key));"
    "CREATE TABLE tags ("
    "  run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),"
    "  key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_uuid, key));"
    "CREATE TABLE registered_models ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  creation_time INTEGER NOT NULL, last_updated_time INTEGER NOT NULL,"
    "  description TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE registered_model_tags ("
    "  model_id INTEGER NOT NULL REFERENCES registered_models(id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (model_id, key));"
    /* Deleted versions stay (deleted = 1) so their numbers are never reused. */
    "CREATE TABLE model_versions ("
    "  model_id INTEGER NOT NULL REFERENCES registered_models(id) ON DELETE CASCADE,"
    "  version INTEGER NOT NULL,"
    "  creation_time INTEGER NOT NULL, last_updated_time INTEGER NOT NULL,"
    "  description TEXT NOT NULL DEFAULT '', current_stage TEXT NOT NULL DEFAULT 'None',"
    "  source TEXT NOT NULL, storage_location TEXT NOT NULL,"
    "  run_id TEXT NOT NULL DEFAULT '', run_link TEXT NOT NULL DEFAULT '',"
    "  status TEXT NOT NULL DEFAULT 'READY', status_message TEXT,"
    "  deleted INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (model_id, version));"
    "CREATE TABLE model_version_tags ("
    "  model_id INTEGER NOT NULL, version INTEGER NOT NULL,"
    "  key TEXT NOT NULL, value TEXT NOT NULL,"
    "  PRIMARY KEY (model_id, version, key),"
    "  FOREIGN KEY (model_id, version) REFERENCES model_versions(model_id, version)"
    "    ON DELETE CASCADE);"
    "CREATE TABLE registered_model_aliases ("
    "  model_id INTEGER NOT NULL REFERENCES registered_models(id) ON DELETE CASCADE,"
    "  alias TEXT NOT NULL, version INTEGER NOT NULL,"
    "  PRIMARY KEY (model_id, alias));",
};

/* SQL LIKE with MLflow's semantics, case-sensitive unless `ci` (SQLite's
 * own LIKE folds ASCII case always): '%' any run, '_' one UTF-8 char. */
static const unsigned char *utf8_next(const unsigned char *s)
{
    s++;
    while ((*s & 0xC0) == 0x80)
        s++;
    return s;
}

static int fold(int c, int ci)
{
    return ci && c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int like_match(const unsigned char *p, const unsigned char *s, int ci)
{
    while (*p) {
        if (*p == '%') {
            while (*p == '%')
                p++;
            if (!*p)
                return 1;
            for (; *s; s = utf8_next(s))
                if (like_match(p, s, ci))
                    return 1;
            return 0;
        }
        if (!*s)
            return 0;
        if (*p == '_') {
            p = utf8_next(p);
            s = utf8_next(s);
            continue;
        }
        if (fold(*p, ci) != fold(*s, ci))
            return 0;
        p++;
        s++;
    }
    return *s == '\0';
}

static void sql_trk_like(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const unsigned char *value = sqlite3_value_text(argv[0]);
    const unsigned char *pattern = sqlite3_value_text(argv[1]);
    if (!value || !pattern) {
        sqlite3_result_null(ctx);
        return;
    }
    sqlite3_result_int(ctx, like_match(pattern, value, sqlite3_value_int(argv[2])));
}

static sqlite3 *conn_open(const char *path, kiln_err *err)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_open_v2(path, &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    TRK_DB_CHECK(db, rc, err, "open the tracking database");
    sqlite3_extended_result_codes(db, 1);
    rc = sqlite3_busy_timeout(db, TRK_BUSY_TIMEOUT_MS);
    TRK_DB_CHECK(db, rc, err, "set the busy timeout");
    rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    TRK_DB_CHECK(db, rc, err, "prepare journal_mode");
    rc = sqlite3_step(st);
    TRK_DB_CHECK(db, rc, err, "switch to WAL");
    if (rc != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
        kiln_err_set(err, KILN_EIO, "%s: SQLite would not switch to WAL mode", path);
        goto fail;
    }
    rc = sqlite3_finalize(st);
    st = NULL;
    TRK_DB_CHECK(db, rc, err, "finalize journal_mode");
    rc = sqlite3_exec(db, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;", NULL, NULL,
                      NULL);
    TRK_DB_CHECK(db, rc, err, "set pragmas");
    rc = sqlite3_create_function(db, "trk_like", 3, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
                                 sql_trk_like, NULL, NULL);
    TRK_DB_CHECK(db, rc, err, "register trk_like");
    return db;
fail:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return NULL;
}

static int schema_version(sqlite3 *db, int *version, kiln_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        db, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_version'",
        -1, &st, NULL);
    TRK_DB_CHECK(db, rc, err, "look for the schema version");
    rc = sqlite3_step(st);
    TRK_DB_CHECK(db, rc, err, "look for the schema version");
    int have = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    *version = 0;
    if (!have)
        return KILN_OK;
    rc = sqlite3_prepare_v2(db, "SELECT version FROM schema_version", -1, &st, NULL);
    TRK_DB_CHECK(db, rc, err, "read the schema version");
    rc = sqlite3_step(st);
    TRK_DB_CHECK(db, rc, err, "read the schema version");
    if (rc == SQLITE_ROW)
        *version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return KILN_OK;
fail:
    sqlite3_finalize(st);
    return err ? (int)err->code : KILN_EIO;
}

static int insert_default_experiment(kiln_tracking *t, sqlite3 *db, kiln_err *err)
{
    sqlite3_stmt *st = NULL;
    char *location = NULL;
    if (asprintf(&location, "%s/0", t->default_artifact_root) < 0)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    int64_t now = trk_now_ms();
    int rc = sqlite3_prepare_v2(db,
                                "INSERT INTO experiments (experiment_id, name, artifact_location,"
                                " lifecycle_stage, creation_time, last_update_time)"
                                " VALUES (0, 'Default', ?, 'active', ?, ?)",
                                -1, &st, NULL);
    TRK_DB_CHECK(db, rc, err, "prepare the Default experiment");
    rc = sqlite3_bind_text(st, 1, location, -1, SQLITE_TRANSIENT);
    TRK_DB_CHECK(db, rc, err, "bind");
    rc = sqlite3_bind_int64(st, 2, now);
    TRK_DB_CHECK(db, rc, err, "bind");
    rc = sqlite3_bind_int64(st, 3, now);
    TRK_DB_CHECK(db, rc, err, "bind");
    rc = sqlite3_step(st);
    TRK_DB_CHECK(db, rc, err, "insert the Default experiment");
    sqlite3_finalize(st);
    free(location);
    return KILN_OK;
fail:
    sqlite3_finalize(st);
    free(location);
    return err ? (int)err->code : KILN_EIO;
}

/* Brings the schema to TRK_SCHEMA_VERSION inside one IMMEDIATE
 * transaction, so processes opening a new file together create it once. */
static int migrate(kiln_tracking *t, sqlite3 *db, kiln_err *err)
{
    int version = 0;
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    TRK_DB_CHECK(db, rc, err, "begin the schema transaction");
    if (schema_version(db, &version, err) != KILN_OK)
        goto rollback;
    if (version > TRK_SCHEMA_VERSION) {
        kiln_err_set(err, KILN_EUNSUPPORTED,
                     "%s has schema version %d, newer than this kiln-tracking (%d)", t->db_path,
                     version, TRK_SCHEMA_VERSION);
        goto rollback;
    }
    for (int v = version; v < TRK_SCHEMA_VERSION; v++) {
        rc = sqlite3_exec(db, migrations[v], NULL, NULL, NULL);
        TRK_DB_CHECK(db, rc, err, "migrate the schema");
        if (v == 0 && insert_default_experiment(t, db, err) != KILN_OK)
            goto rollback;
    }
    if (version < TRK_SCHEMA_VERSION) {
        char sql[64];
        snprintf(sql, sizeof sql, "UPDATE schema_version SET version = %d", TRK_SCHEMA_VERSION);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        TRK_DB_CHECK(db, rc, err, "record the schema version");
    }
    rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    TRK_DB_CHECK(db, rc, err, "commit the schema");
    return KILN_OK;
fail:
rollback:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return err ? (int)err->code : KILN_EIO;
}

/* "mlflow-artifacts:/" and "mlflow-artifacts:" both mean the proxy's root;
 * experiment locations are "<root>/<id>". */
static char *trimmed_root(const char *root)
{
    const char *r = root ? root : "mlflow-artifacts:";
    size_t n = strlen(r);
    while (n > 0 && r[n - 1] == '/')
        n--;
    return strndup(r, n);
}

kiln_tracking *kiln_tracking_open(const kiln_tracking_options *opts, kiln_err *err)
{
    if (!opts || !opts->db_path || !*opts->db_path || !opts->artifacts_root ||
        !*opts->artifacts_root) {
        kiln_err_set(err, KILN_EINVAL, "kiln-tracking needs a database path and an artifact root");
        return NULL;
    }
    kiln_tracking *t = calloc(1, sizeof *t);
    sqlite3 *db = NULL;
    if (!t) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory opening kiln-tracking");
        return NULL;
    }
    pthread_mutex_init(&t->pool_lock, NULL);
    pthread_mutex_init(&t->write_lock, NULL);
    t->db_path = strdup(opts->db_path);
    t->default_artifact_root = trimmed_root(opts->default_artifact_root);
    if (!t->db_path || !t->default_artifact_root) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory opening kiln-tracking");
        goto fail;
    }
    if (kiln_mkdir_p(opts->artifacts_root, err) != KILN_OK)
        goto fail;
    t->artifacts_root = realpath(opts->artifacts_root, NULL);
    if (!t->artifacts_root) {
        kiln_err_errno(err, errno, "cannot resolve the artifact root %s", opts->artifacts_root);
        goto fail;
    }
    db = conn_open(t->db_path, err);
    if (!db || migrate(t, db, err) != KILN_OK)
        goto fail;
    trk_conn_release(t, db);
    return t;
fail:
    sqlite3_close(db);
    kiln_tracking_close(t);
    return NULL;
}

void kiln_tracking_close(kiln_tracking *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_idle; i++)
        sqlite3_close(t->idle[i]);
    free(t->idle);
    pthread_mutex_destroy(&t->pool_lock);
    pthread_mutex_destroy(&t->write_lock);
    free(t->db_path);
    free(t->artifacts_root);
    free(t->default_artifact_root);
    free(t);
}

sqlite3 *trk_conn_acquire(kiln_tracking *t, kiln_err *err)
{
    sqlite3 *db = NULL;
    pthread_mutex_lock(&t->pool_lock);
    if (t->n_idle > 0)
        db = t->idle[--t->n_idle];
    pthread_mutex_unlock(&t->pool_lock);
    return db ? db : conn_open(t->db_path, err);
}

void trk_conn_release(kiln_tracking *t, sqlite3 *db)
{
    if (!db)
        return;
    pthread_mutex_lock(&t->pool_lock);
    if (t->n_idle == t->cap_idle) {
        size_t cap = t->cap_idle ? t->cap_idle * 2 : 8;
        sqlite3 **grown = realloc(t->idle, cap * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&t->pool_lock);
            sqlite3_close(db);
            return;
        }
        t->idle = grown;
        t->cap_idle = cap;
    }
    t->idle[t->n_idle++] = db;
    pthread_mutex_unlock(&t->pool_lock);
}

/* --- checked statements --- */

static const char *base_name(const char *file)
{
    const char *slash = strrchr(file, '/');
    return slash ? slash + 1 : file;
}

int trk_sql_fail_at(trk_req *r, const char *file, int line, int rc)
{
    int busy = (rc & 0xFF) == SQLITE_BUSY || (rc & 0xFF) == SQLITE_LOCKED;
    r->err.code = busy ? "TEMPORARILY_UNAVAILABLE" : TRK_INTERNAL;
    r->err.http_status = busy ? 503 : 500;
    snprintf(r->err.msg, sizeof r->err.msg, "%s:%d: SQLite error %d: %s", base_name(file), line,
             rc, sqlite3_errmsg(r->db));
    return -1;
}

int trk_bind_va(sqlite3_stmt *st, int first, const char *fmt, va_list ap)
{
    int idx = first;
    for (const char *f = fmt; f && *f; f++, idx++) {
        int rc;
        switch (*f) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            rc = s ? sqlite3_bind_text(st, idx, s, -1, SQLITE_TRANSIENT)
                   : sqlite3_bind_null(st, idx);
            break;
        }
        case 'I':
            rc = sqlite3_bind_int64(st, idx, va_arg(ap, int64_t));
            break;
        case 'i':
            rc = sqlite3_bind_int(st, idx, va_arg(ap, int));
            break;
        case 'd':
            rc = sqlite3_bind_double(st, idx, va_arg(ap, double));
            break;
        default:
            rc = SQLITE_MISUSE;
        }
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

sqlite3_stmt *trk_stmt_at(trk_req *r, const char *file, int line, const char *sql,
                          const char *fmt, ...)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(r->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        trk_sql_fail_at(r, file, line, rc);
        return NULL;
    }
    va_list ap;
    va_start(ap, fmt);
    rc = trk_bind_va(st, 1, fmt, ap);
    va_end(ap);
    if (rc != SQLITE_OK) {
        trk_sql_fail_at(r, file, line, rc);
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

int trk_step_at(trk_req *r, const char *file, int line, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return trk_sql_fail_at(r, file, line, rc);
}

int trk_exec_at(trk_req *r, const char *file, int line, const char *sql, const char *fmt, ...)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(r->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return trk_sql_fail_at(r, file, line, rc);
    va_list ap;
    va_start(ap, fmt);
    rc = trk_bind_va(st, 1, fmt, ap);
    va_end(ap);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        rc = SQLITE_OK;
    if (rc != SQLITE_DONE) {
        trk_sql_fail_at(r, file, line, rc);
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    return 0;
}

const char *trk_col_text(sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    return s ? (const char *)s : "";
}

int trk_changes(trk_req *r)
{
    return sqlite3_changes(r->db);
}

/* --- SQL text built at run time (searches) --- */

void trk_sql_add(trk_sql *q, const char *s)
{
    size_t n = strlen(s);
    if (q->oom)
        return;
    if (q->len + n + 1 > q->cap) {
        size_t cap = q->cap ? q->cap : 256;
        while (cap < q->len + n + 1)
            cap *= 2;
        char *grown = realloc(q->text, cap);
        if (!grown) {
            q->oom = 1;
            return;
        }
        q->text = grown;
        q->cap = cap;
    }
    memcpy(q->text + q->len, s, n + 1);
    q->len += n;
}

static struct trk_bind *next_bind(trk_sql *q)
{
    if (q->oom)
        return NULL;
    if (q->n_binds == q->cap_binds) {
        int cap = q->cap_binds ? q->cap_binds * 2 : 16;
        struct trk_bind *grown = realloc(q->binds, (size_t)cap * sizeof *grown);
        if (!grown) {
            q->oom = 1;
            return NULL;
        }
        q->binds = grown;
        q->cap_binds = cap;
    }
    trk_sql_add(q, "?");
    return q->oom ? NULL : &q->binds[q->n_binds++];
}

/* The text is copied: the parsed filter may be freed before the query runs. */
void trk_sql_bind_text(trk_sql *q, const char *s)
{
    char *copy = strdup(s ? s : "");
    struct trk_bind *b = copy ? next_bind(q) : NULL;
    if (!b) {
        free(copy);
        q->oom = 1;
        return;
    }
    *b = (struct trk_bind){.kind = 's', .s = copy};
}

void trk_sql_bind_i64(trk_sql *q, int64_t v)
{
    struct trk_bind *b = next_bind(q);
    if (b)
        *b = (struct trk_bind){.kind = 'I', .i = v};
}

void trk_sql_bind_double(trk_sql *q, double v)
{
    struct trk_bind *b = next_bind(q);
    if (b)
        *b = (struct trk_bind){.kind = 'd', .d = v};
}

sqlite3_stmt *trk_sql_prepare(trk_req *r, trk_sql *q, const char *file, int line)
{
    if (q->oom) {
        r->oom = 1;
        trk_fail(r, TRK_INTERNAL, "out of memory building a query");
        return NULL;
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(r->db, q->text, -1, &st, NULL);
    for (int i = 0; rc == SQLITE_OK && i < q->n_binds; i++) {
        const struct trk_bind *b = &q->binds[i];
        if (b->kind == 's')
            rc = sqlite3_bind_text(st, i + 1, b->s, -1, SQLITE_TRANSIENT);
        else if (b->kind == 'I')
            rc = sqlite3_bind_int64(st, i + 1, b->i);
        else
            rc = sqlite3_bind_double(st, i + 1, b->d);
    }
    if (rc != SQLITE_OK) {
        trk_sql_fail_at(r, file, line, rc);
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

void trk_sql_free(trk_sql *q)
{
    for (int i = 0; i < q->n_binds; i++)
        if (q->binds[i].kind == 's')
            free(q->binds[i].s);
    free(q->text);
    free(q->binds);
    memset(q, 0, sizeof *q);
}
