/* lib/tracking/artifacts.c — the artifact proxy's files under the artifact
 * root, and the two listing endpoints (artifacts/list for a run,
 * mlflow-artifacts/artifacts?path= for the proxy).
 *
 * Safety: a relative path is refused (KILN_EUNSAFE) when absolute, with a
 * backslash, an empty, "." or ".." segment, or — after percent-decoding —
 * any of these; a symlink met on the way must resolve inside the root.
 * Uploads are written to <root>/.kiln-uploads/ and renamed into place on
 * commit (parent folders are made then), so a failed upload leaves
 * nothing behind.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "tracking/tracking_internal.h"

struct kiln_artifact_upload {
    kiln_tracking *t;
    char *rel;
    char *tmp_path;
    FILE *fp;
};

static int hex(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int segments_ok(const char *p, int allow_empty)
{
    if (!*p)
        return allow_empty;
    if (*p == '/' || strchr(p, '\\'))
        return 0;
    for (;;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        if (!p[n])
            return 1;
        p += n + 1;
    }
}

int trk_artifact_rel_path_ok(const char *rel, int allow_empty)
{
    if (!rel || !segments_ok(rel, allow_empty))
        return 0;
    size_t ul = strlen(TRK_UPLOAD_DIR);
    if (strncmp(rel, TRK_UPLOAD_DIR, ul) == 0 && (rel[ul] == '/' || rel[ul] == '\0'))
        return 0;
    if (!strchr(rel, '%'))
        return 1;
    /* Also refuse what a percent-decoding layer would turn into one. */
    char *dec = malloc(strlen(rel) + 1);
    if (!dec)
        return 0;
    size_t n = 0;
    for (const char *p = rel; *p; p++) {
        if (*p == '%' && hex(p[1]) >= 0 && hex(p[2]) >= 0) {
            int c = hex(p[1]) * 16 + hex(p[2]);
            if (c == 0) {
                free(dec);
                return 0;
            }
            dec[n++] = (char)c;
            p += 2;
        } else {
            dec[n++] = *p;
        }
    }
    dec[n] = '\0';
    int ok = strcmp(dec, rel) == 0 || trk_artifact_rel_path_ok(dec, allow_empty);
    free(dec);
    return ok;
}

static int inside_root(const kiln_tracking *t, const char *real)
{
    size_t n = strlen(t->artifacts_root);
    return strncmp(real, t->artifacts_root, n) == 0 && (real[n] == '/' || real[n] == '\0');
}

/* root/rel after checking every existing component that is a symlink
 * resolves inside the root. Malloc'ed; NULL with `err` set. */
static char *resolve_inside(kiln_tracking *t, const char *rel, kiln_err *err)
{
    char *full = NULL;
    if (asprintf(&full, "%s%s%s", t->artifacts_root, *rel ? "/" : "", rel) < 0) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory");
        return NULL;
    }
    for (char *p = full + strlen(t->artifacts_root); *p;) {
        char *next = strchr(p + 1, '/');
        char saved = next ? *next : '\0';
        if (next)
            *next = '\0';
        struct stat st;
        int found = lstat(full, &st) == 0;
        if (found && S_ISLNK(st.st_mode)) {
            char *real = realpath(full, NULL);
            int ok = real && inside_root(t, real);
            free(real);
            if (!ok) {
                kiln_err_set(err, KILN_EUNSAFE, "artifact path '%s' leads outside the artifact root",
                             rel);
                free(full);
                return NULL;
            }
        }
        if (next)
            *next = saved;
        if (!found || !next)
            break;
        p = next;
    }
    return full;
}

static int check_rel(const char *rel, kiln_err *err)
{
    if (!trk_artifact_rel_path_ok(rel, 0))
        return kiln_err_set(err, KILN_EUNSAFE, "unsafe artifact path '%s'", rel ? rel : "(null)");
    return KILN_OK;
}

kiln_artifact_upload *kiln_tracking_artifact_begin(kiln_tracking *t, const char *rel_path,
                                                   kiln_err *err)
{
    if (check_rel(rel_path, err) != KILN_OK)
        return NULL;
    char *dest = resolve_inside(t, rel_path, err);
    if (!dest)
        return NULL;
    free(dest);
    kiln_artifact_upload *u = calloc(1, sizeof *u);
    char *dir = NULL;
    int fd = -1;
    if (!u || !(u->rel = strdup(rel_path)) ||
        asprintf(&dir, "%s/%s", t->artifacts_root, TRK_UPLOAD_DIR) < 0 ||
        asprintf(&u->tmp_path, "%s/upload-XXXXXX", dir) < 0) {
        dir = NULL;
        kiln_err_set(err, KILN_ENOMEM, "out of memory starting an upload");
        goto fail;
    }
    if (kiln_mkdir_p(dir, err) != KILN_OK)
        goto fail;
    fd = mkstemp(u->tmp_path);
    if (fd < 0) {
        kiln_err_errno(err, errno, "cannot create a temporary file in %s", dir);
        goto fail;
    }
    fchmod(fd, 0644);
    u->fp = fdopen(fd, "wb");
    if (!u->fp) {
        kiln_err_errno(err, errno, "cannot open %s", u->tmp_path);
        close(fd);
        unlink(u->tmp_path);
        goto fail;
    }
    u->t = t;
    free(dir);
    return u;
fail:
    free(dir);
    if (u) {
        free(u->rel);
        free(u->tmp_path);
        free(u);
    }
    return NULL;
}

int kiln_tracking_artifact_write(kiln_artifact_upload *u, const void *data, size_t len,
                                 kiln_err *err)
{
    if (len && fwrite(data, 1, len, u->fp) != len)
        return kiln_err_errno(err, errno, "cannot write the upload of %s", u->rel);
    return KILN_OK;
}

static void free_upload(kiln_artifact_upload *u)
{
    free(u->rel);
    free(u->tmp_path);
    free(u);
}

static int publish(kiln_artifact_upload *u, kiln_err *err)
{
    int rc = KILN_OK;
    if (fflush(u->fp) != 0 || ferror(u->fp) || fsync(fileno(u->fp)) != 0)
        rc = kiln_err_errno(err, errno, "cannot write the upload of %s", u->rel);
    if (fclose(u->fp) != 0 && rc == KILN_OK)
        rc = kiln_err_errno(err, errno, "cannot close the upload of %s", u->rel);
    u->fp = NULL;
    if (rc != KILN_OK)
        return rc;
    /* Checked again: a symlink may have appeared while the body arrived. */
    char *dest = resolve_inside(u->t, u->rel, err);
    if (!dest)
        return err ? (int)err->code : KILN_EUNSAFE;
    rc = kiln_mkdir_parent(dest, err);
    if (rc == KILN_OK && rename(u->tmp_path, dest) != 0)
        rc = kiln_err_errno(err, errno, "cannot publish artifact %s", u->rel);
    free(dest);
    return rc;
}

int kiln_tracking_artifact_commit(kiln_artifact_upload *u, kiln_err *err)
{
    int rc = publish(u, err);
    if (rc != KILN_OK)
        unlink(u->tmp_path);
    free_upload(u);
    return rc;
}

void kiln_tracking_artifact_abort(kiln_artifact_upload *u)
{
    if (!u)
        return;
    if (u->fp)
        fclose(u->fp);
    unlink(u->tmp_path);
    free_upload(u);
}

char *kiln_tracking_artifact_file(kiln_tracking *t, const char *rel_path, kiln_err *err)
{
    if (check_rel(rel_path, err) != KILN_OK)
        return NULL;
    char *full = resolve_inside(t, rel_path, err);
    if (!full)
        return NULL;
    char *real = realpath(full, NULL);
    struct stat st;
    if (!real || !inside_root(t, real) || stat(real, &st) != 0 || !S_ISREG(st.st_mode)) {
        kiln_err_set(err, KILN_ENOTFOUND, "no artifact file '%s'", rel_path);
        free(real);
        real = NULL;
    }
    free(full);
    return real;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int kiln_tracking_artifact_delete(kiln_tracking *t, const char *rel_path, kiln_err *err)
{
    if (check_rel(rel_path, err) != KILN_OK)
        return err ? (int)err->code : KILN_EUNSAFE;
    char *full = resolve_inside(t, rel_path, err);
    if (!full)
        return err ? (int)err->code : KILN_EUNSAFE;
    struct stat st;
    int rc = KILN_OK;
    if (lstat(full, &st) != 0)
        rc = kiln_err_set(err, KILN_ENOTFOUND, "no artifact '%s'", rel_path);
    else if (S_ISDIR(st.st_mode) ? nftw(full, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0
                                 : unlink(full) != 0)
        rc = kiln_err_errno(err, errno, "cannot delete artifact %s", rel_path);
    free(full);
    return rc;
}

/* --- listings --- */

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists `dir` into resp.files, each entry's path being prefix/name (or
 * just name when prefix is NULL). A missing folder lists nothing. */
static int list_dir(trk_req *r, const char *dir, const char *prefix, int at_root, cJSON *resp)
{
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            (at_root && !strcmp(e->d_name, TRK_UPLOAD_DIR)))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **grown = realloc(names, cap * sizeof *grown);
            if (!grown)
                break;
            names = grown;
        }
        if (!(names[n] = strdup(e->d_name)))
            break;
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        char *path = NULL, *rel = NULL;
        struct stat st;
        if (asprintf(&path, "%s/%s", dir, names[i]) >= 0 && stat(path, &st) == 0) {
            char *real = realpath(path, NULL);
            if (real && inside_root(r->t, real) &&
                asprintf(&rel, "%s%s%s", prefix ? prefix : "", prefix ? "/" : "", names[i]) >= 0) {
                cJSON *f = trk_arr_add_obj(r, trk_put_arr(r, resp, "files"));
                if (f) {
                    trk_put_str(r, f, "path", rel);
                    trk_put_bool(r, f, "is_dir", S_ISDIR(st.st_mode));
                    if (!S_ISDIR(st.st_mode))
                        trk_put_i64(r, f, "file_size", (int64_t)st.st_size);
                }
            }
            free(real);
        }
        free(rel);
        free(path);
        free(names[i]);
    }
    free(names);
    return 0;
}

static int list_rel(trk_req *r, const char *rel, const char *prefix, cJSON *resp)
{
    kiln_err err = {0};
    char *full = resolve_inside(r->t, rel, &err);
    if (!full)
        return trk_fail(r, TRK_INVALID, "Invalid path: %s", rel);
    char *real = realpath(full, NULL);
    int rc = 0;
    if (real && inside_root(r->t, real))
        rc = list_dir(r, real, prefix, strcmp(real, r->t->artifacts_root) == 0, resp);
    free(real);
    free(full);
    return rc;
}

int trk_h_proxy_list(trk_req *r, cJSON *resp)
{
    const char *path;
    if (trk_req_str(r, "path", 0, &path) != 0)
        return -1;
    if (!path)
        path = "";
    if (!trk_artifact_rel_path_ok(path, 1))
        return trk_fail(r, TRK_INVALID, "Invalid path: %s", path);
    return list_rel(r, path, NULL, resp);
}

/* The path of a proxied artifact URI under the root ("1/<run>/artifacts"),
 * or NULL when the URI is not mlflow-artifacts:. */
static const char *proxied_path(const char *uri)
{
    static const char scheme[] = "mlflow-artifacts:";
    if (strncmp(uri, scheme, sizeof scheme - 1) != 0)
        return NULL;
    const char *p = uri + sizeof scheme - 1;
    if (p[0] == '/' && p[1] == '/') {
        p = strchr(p + 2, '/');
        if (!p)
            return "";
    }
    while (*p == '/')
        p++;
    return p;
}

int trk_h_artifacts_list(trk_req *r, cJSON *resp)
{
    const char *run_id, *path, *token;
    if (trk_req_run_id(r, &run_id) != 0 || trk_req_str(r, "path", 0, &path) != 0 ||
        trk_req_str(r, "page_token", 0, &token) != 0)
        return -1;
    if (path && !trk_artifact_rel_path_ok(path, 1))
        return trk_fail(r, TRK_INVALID, "Invalid path: %s", path);
    sqlite3_stmt *st = TRK_STMT(r, "SELECT artifact_uri FROM runs WHERE run_uuid = ?", "s", run_id);
    if (!st)
        return -1;
    int rc = TRK_STEP(r, st);
    char *uri = rc == 1 ? strdup(trk_col_text(st, 0)) : NULL;
    sqlite3_finalize(st);
    if (rc == 0)
        return trk_fail(r, TRK_NOT_FOUND, "Run with id=%s not found", run_id);
    if (rc < 0 || !uri) {
        if (rc == 1)
            r->oom = 1;
        return rc < 0 ? -1 : trk_fail(r, TRK_INTERNAL, "out of memory");
    }
    trk_put_str(r, resp, "root_uri", uri);
    const char *base = proxied_path(uri);
    char *rel = NULL;
    rc = 0;
    if (base && asprintf(&rel, "%s%s%s", base, path && *path && *base ? "/" : "",
                         path ? path : "") >= 0) {
        /* An experiment's own artifact_location could name anything. */
        if (trk_artifact_rel_path_ok(rel, 1))
            rc = list_rel(r, rel, path && *path ? path : NULL, resp);
        free(rel);
    }
    free(uri);
    return rc;
}
