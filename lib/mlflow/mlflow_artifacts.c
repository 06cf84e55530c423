/* lib/mlflow/mlflow_artifacts.c — a run's artifacts, through the tracking
 * server's artifact proxy (mlflow-artifacts:) or straight to S3 (s3://). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fs.h"
#include "mlflow/mlflow_internal.h"

#define PROXY "/api/2.0/mlflow-artifacts/artifacts"
#define MAX_DEPTH 64
#define PATH_MAX_LEN 4096

typedef enum store_kind { STORE_PROXY, STORE_S3 } store_kind;

/* Where a run's artifacts live: the proxy path or the bucket + key prefix
 * of its root, without leading or trailing '/'. */
typedef struct store {
    store_kind kind;
    char bucket[KILN_S3_MAX_BUCKET + 1];
    char root[KILN_S3_MAX_KEY + 1];
} store;

typedef struct infos {
    kiln_mlflow_file_info *v;
    size_t n, cap;
} infos;

static void trim_slashes(char *s)
{
    size_t n = strlen(s), lead = strspn(s, "/");
    while (n > lead && s[n - 1] == '/')
        s[--n] = '\0';
    memmove(s, s + lead, n - lead + 1);
}

static int parse_store(const char *uri, store *st, kiln_err *err)
{
    memset(st, 0, sizeof *st);
    if (strncmp(uri, "mlflow-artifacts:", 17) == 0) {
        const char *rest = uri + 17;
        if (strncmp(rest, "//", 2) == 0) { /* mlflow-artifacts://host:port/path */
            rest = strchr(rest + 2, '/');
            rest = rest ? rest : "";
        }
        if (strlen(rest) >= sizeof st->root)
            return kiln_err_set(err, KILN_ELIMIT, "artifact URI '%s' is too long", uri);
        st->kind = STORE_PROXY;
        snprintf(st->root, sizeof st->root, "%s", rest);
        trim_slashes(st->root);
        return KILN_OK;
    }
    if (strncmp(uri, "s3://", 5) == 0) {
        kiln_s3_url u;
        int rc = kiln_s3_parse_url(uri, &u, err);
        if (rc != KILN_OK)
            return rc;
        st->kind = STORE_S3;
        snprintf(st->bucket, sizeof st->bucket, "%s", u.bucket);
        snprintf(st->root, sizeof st->root, "%s", u.key);
        trim_slashes(st->root);
        return KILN_OK;
    }
    return kiln_err_set(err, KILN_EUNSUPPORTED,
                        "artifact URI '%s' is not supported: kiln reads and writes artifacts "
                        "through mlflow-artifacts: (the tracking server's proxy) or s3://", uri);
}

/* A relative '/'-separated path with no empty, "." or ".." segment. */
static int check_rel(const char *path, int allow_empty, kiln_err *err)
{
    if (!*path)
        return allow_empty ? KILN_OK
                           : kiln_err_set(err, KILN_EINVAL, "an artifact path is needed");
    const char *seg = path;
    for (;;) {
        const char *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        if (len == 0 || (len == 1 && seg[0] == '.') || (len == 2 && !strncmp(seg, "..", 2)))
            return kiln_err_set(err, KILN_EUNSAFE,
                                "artifact path '%s' is not a plain relative path (empty, '.' or "
                                "'..' part)", path);
        if (!end)
            return KILN_OK;
        seg = end + 1;
    }
}

static int join(char *out, size_t size, const char *a, const char *b, kiln_err *err)
{
    int n = snprintf(out, size, "%s%s%s", a, *a && *b ? "/" : "", b);
    if (n < 0 || (size_t)n >= size)
        return kiln_err_set(err, KILN_ELIMIT, "artifact path '%s/%s' is too long", a, b);
    return KILN_OK;
}

static kiln_s3_client *s3_of(kiln_mlflow_client *c, kiln_err *err)
{
    if (!c->s3)
        c->s3 = kiln_s3_client_new(&c->cfg.s3, c->log, err);
    return c->s3;
}

/* "/api/2.0/mlflow-artifacts/artifacts/<each segment percent-encoded>". */
static char *proxy_path(kiln_mlflow_client *c, const char *rel)
{
    size_t cap = sizeof PROXY + 3 * strlen(rel) + 2;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t len = (size_t)snprintf(out, cap, "%s", PROXY);
    char *copy = strdup(rel);
    char *save = NULL;
    for (char *seg = copy ? strtok_r(copy, "/", &save) : NULL; seg;
         seg = strtok_r(NULL, "/", &save)) {
        char *e = curl_easy_escape(c->curl, seg, 0);
        if (!e) {
            free(copy);
            free(out);
            return NULL;
        }
        len += (size_t)snprintf(out + len, cap - len, "/%s", e);
        curl_free(e);
    }
    if (!copy) {
        free(out);
        return NULL;
    }
    free(copy);
    return out;
}

/* ---- one file ---- */

static int proxy_put(kiln_mlflow_client *c, const char *rel, const char *local, kiln_err *err)
{
    FILE *f = fopen(local, "rb");
    if (!f)
        return errno == ENOENT ? kiln_err_set(err, KILN_ENOTFOUND, "%s: no such file", local)
                               : kiln_err_errno(err, errno, "cannot open %s", local);
    struct stat st;
    char *path = proxy_path(c, rel);
    int rc;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        rc = kiln_err_set(err, KILN_EINVAL, "%s is not a regular file", local);
    else if (!path)
        rc = kiln_err_set(err, KILN_ENOMEM, "out of memory");
    else {
        mlflow_http req = {.method = "PUT", .path = path, .upload = f,
                           .upload_len = (uint64_t)st.st_size};
        mlflow_resp resp;
        rc = mlflow_http_do(c, &req, &resp, err);
        mlflow_resp_free(&resp);
    }
    free(path);
    fclose(f);
    return rc;
}

static int proxy_get(kiln_mlflow_client *c, const char *rel, const char *local, kiln_err *err)
{
    char *path = proxy_path(c, rel);
    if (!path)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    kiln_atomic_file *af = kiln_atomic_open(local, err);
    if (!af) {
        free(path);
        return err ? (int)err->code : KILN_EIO;
    }
    mlflow_http req = {.method = "GET", .path = path, .download = kiln_atomic_stream(af)};
    mlflow_resp resp;
    int rc = mlflow_http_do(c, &req, &resp, err);
    mlflow_resp_free(&resp);
    free(path);
    if (rc != KILN_OK) {
        kiln_atomic_abort(af);
        return rc;
    }
    return kiln_atomic_commit(af, err);
}

static int put_one(kiln_mlflow_client *c, const store *st, const char *apath, const char *local,
                   kiln_err *err)
{
    char full[PATH_MAX_LEN];
    int rc = join(full, sizeof full, st->root, apath, err);
    if (rc != KILN_OK)
        return rc;
    if (st->kind == STORE_PROXY)
        return proxy_put(c, full, local, err);
    kiln_s3_client *s3 = s3_of(c, err);
    return s3 ? kiln_s3_put(s3, st->bucket, full, local, NULL, err) : KILN_EINVAL;
}

static int get_one(kiln_mlflow_client *c, const store *st, const char *apath, const char *local,
                   kiln_err *err)
{
    char full[PATH_MAX_LEN];
    int rc = join(full, sizeof full, st->root, apath, err);
    if (rc == KILN_OK)
        rc = kiln_mkdir_parent(local, err);
    if (rc != KILN_OK)
        return rc;
    if (st->kind == STORE_PROXY)
        return proxy_get(c, full, local, err);
    kiln_s3_client *s3 = s3_of(c, err);
    return s3 ? kiln_s3_get(s3, st->bucket, full, local, err) : KILN_EINVAL;
}

int kiln_mlflow_artifact_upload_file(kiln_mlflow_client *c, const char *artifact_uri,
                                     const char *local_file, const char *artifact_path,
                                     kiln_err *err)
{
    store st;
    int rc = parse_store(artifact_uri, &st, err);
    if (rc == KILN_OK)
        rc = check_rel(artifact_path, 0, err);
    return rc == KILN_OK ? put_one(c, &st, artifact_path, local_file, err) : rc;
}

int kiln_mlflow_artifact_download_file(kiln_mlflow_client *c, const char *artifact_uri,
                                       const char *artifact_path, const char *local_file,
                                       kiln_err *err)
{
    store st;
    int rc = parse_store(artifact_uri, &st, err);
    if (rc == KILN_OK)
        rc = check_rel(artifact_path, 0, err);
    return rc == KILN_OK ? get_one(c, &st, artifact_path, local_file, err) : rc;
}

/* ---- trees ---- */

static int walk_upload(kiln_mlflow_client *c, const store *st, const char *local,
                       const char *apath, int depth, size_t *files, kiln_err *err)
{
    if (depth > MAX_DEPTH)
        return kiln_err_set(err, KILN_ELIMIT, "%s: folders nested over %d deep", local,
                            MAX_DEPTH);
    DIR *d = opendir(local);
    if (!d)
        return errno == ENOENT ? kiln_err_set(err, KILN_ENOTFOUND, "%s: no such folder", local)
                               : kiln_err_errno(err, errno, "cannot read folder %s", local);
    int rc = KILN_OK;
    struct dirent *e;
    while (rc == KILN_OK && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char lpath[PATH_MAX_LEN], apath_child[PATH_MAX_LEN];
        struct stat sb;
        rc = kiln_path_join(lpath, sizeof lpath, local, e->d_name, err);
        if (rc == KILN_OK)
            rc = join(apath_child, sizeof apath_child, apath, e->d_name, err);
        if (rc != KILN_OK)
            break;
        if (lstat(lpath, &sb) != 0) {
            rc = kiln_err_errno(err, errno, "cannot stat %s", lpath);
        } else if (S_ISDIR(sb.st_mode)) {
            rc = walk_upload(c, st, lpath, apath_child, depth + 1, files, err);
        } else if (S_ISREG(sb.st_mode)) {
            rc = put_one(c, st, apath_child, lpath, err);
            if (rc == KILN_OK && files)
                (*files)++;
        } /* symlinks, sockets ...: skipped */
    }
    closedir(d);
    return rc;
}

int kiln_mlflow_artifact_upload_dir(kiln_mlflow_client *c, const char *artifact_uri,
                                    const char *local_dir, const char *artifact_dir,
                                    size_t *files, kiln_err *err)
{
    store st;
    if (files)
        *files = 0;
    int rc = parse_store(artifact_uri, &st, err);
    if (rc == KILN_OK)
        rc = check_rel(artifact_dir, 1, err);
    return rc == KILN_OK ? walk_upload(c, &st, local_dir, artifact_dir, 0, files, err) : rc;
}

void kiln_mlflow_file_infos_free(kiln_mlflow_file_info *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i].path);
    free(v);
}

/* Add an entry (path copied), unless a directory of that path is there. */
static int infos_add(infos *l, const char *path, int is_dir, int64_t size, kiln_err *err)
{
    if (is_dir)
        for (size_t i = 0; i < l->n; i++)
            if (l->v[i].is_dir && !strcmp(l->v[i].path, path))
                return KILN_OK;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        kiln_mlflow_file_info *grown = realloc(l->v, cap * sizeof *grown);
        if (!grown)
            return kiln_err_set(err, KILN_ENOMEM, "out of memory");
        l->v = grown;
        l->cap = cap;
    }
    char *p = strdup(path);
    if (!p)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    l->v[l->n++] = (kiln_mlflow_file_info){p, is_dir, is_dir ? -1 : size};
    return KILN_OK;
}

/* The proxy's listing of root/dir, entries named dir/<basename>. */
static int proxy_list(kiln_mlflow_client *c, const store *st, const char *dir, infos *out,
                      kiln_err *err)
{
    char full[PATH_MAX_LEN];
    int rc = join(full, sizeof full, st->root, dir, err);
    if (rc != KILN_OK)
        return rc;
    const char *kv[] = {"path", full};
    cJSON *resp = NULL;
    rc = mlflow_call_fields(c, "GET", PROXY, kv, 2, &resp, NULL, err);
    const cJSON *f;
    const cJSON *list = rc == KILN_OK ? cJSON_GetObjectItemCaseSensitive(resp, "files") : NULL;
    cJSON_ArrayForEach(f, list) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(f, "path");
        if (!cJSON_IsString(p) || !p->valuestring[0])
            continue;
        const char *base = strrchr(p->valuestring, '/');
        char path[PATH_MAX_LEN];
        rc = join(path, sizeof path, dir, base ? base + 1 : p->valuestring, err);
        if (rc == KILN_OK)
            rc = infos_add(out, path, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(f, "is_dir")),
                           mlflow_json_i64(f, "file_size"), err);
        if (rc != KILN_OK)
            break;
    }
    cJSON_Delete(resp);
    return rc;
}

typedef struct s3_walk {
    const char *prefix;          /* "<root>/<dir>/" */
    const char *dir;
    int recursive;
    infos *out;
} s3_walk;

static int on_s3_object(const kiln_s3_object_info *o, void *ctx, kiln_err *err)
{
    s3_walk *w = ctx;
    const char *rel = o->key + strlen(w->prefix);
    char path[PATH_MAX_LEN];
    if (!*rel)
        return KILN_OK;
    const char *slash = strchr(rel, '/');
    if (w->recursive || !slash) {
        int rc = join(path, sizeof path, w->dir, rel, err);
        return rc == KILN_OK ? infos_add(w->out, path, 0, (int64_t)o->size, err) : rc;
    }
    char child[PATH_MAX_LEN];
    snprintf(child, sizeof child, "%.*s", (int)(slash - rel), rel);
    int rc = join(path, sizeof path, w->dir, child, err);
    return rc == KILN_OK ? infos_add(w->out, path, 1, -1, err) : rc;
}

static int s3_list(kiln_mlflow_client *c, const store *st, const char *dir, int recursive,
                   infos *out, kiln_err *err)
{
    char prefix[PATH_MAX_LEN];
    int rc = join(prefix, sizeof prefix - 1, st->root, dir, err);
    if (rc != KILN_OK)
        return rc;
    if (*prefix)
        strcat(prefix, "/");
    kiln_s3_client *s3 = s3_of(c, err);
    if (!s3)
        return KILN_EINVAL;
    s3_walk w = {prefix, dir, recursive, out};
    return kiln_s3_list(s3, st->bucket, prefix, on_s3_object, &w, err);
}

int kiln_mlflow_artifact_list(kiln_mlflow_client *c, const char *artifact_uri,
                              const char *artifact_dir, kiln_mlflow_file_info **out, size_t *n,
                              kiln_err *err)
{
    store st;
    infos l = {0};
    *out = NULL;
    *n = 0;
    int rc = parse_store(artifact_uri, &st, err);
    if (rc == KILN_OK)
        rc = check_rel(artifact_dir, 1, err);
    if (rc == KILN_OK)
        rc = st.kind == STORE_PROXY ? proxy_list(c, &st, artifact_dir, &l, err)
                                    : s3_list(c, &st, artifact_dir, 0, &l, err);
    if (rc != KILN_OK) {
        kiln_mlflow_file_infos_free(l.v, l.n);
        return rc;
    }
    *out = l.v;
    *n = l.n;
    return KILN_OK;
}

/* Every file under `dir`, listing the proxy folder by folder. */
static int proxy_list_tree(kiln_mlflow_client *c, const store *st, const char *dir, int depth,
                           infos *files, kiln_err *err)
{
    if (depth > MAX_DEPTH)
        return kiln_err_set(err, KILN_ELIMIT, "artifact folders nested over %d deep under '%s'",
                            MAX_DEPTH, dir);
    infos here = {0};
    int rc = proxy_list(c, st, dir, &here, err);
    for (size_t i = 0; rc == KILN_OK && i < here.n; i++) {
        /* The server names entries; refuse one that would climb out. */
        rc = check_rel(here.v[i].path, 0, err);
        if (rc == KILN_OK)
            rc = here.v[i].is_dir
                     ? proxy_list_tree(c, st, here.v[i].path, depth + 1, files, err)
                     : infos_add(files, here.v[i].path, 0, here.v[i].file_size, err);
    }
    kiln_mlflow_file_infos_free(here.v, here.n);
    return rc;
}

int kiln_mlflow_artifact_download_dir(kiln_mlflow_client *c, const char *artifact_uri,
                                      const char *artifact_dir, const char *local_dir,
                                      size_t *files, kiln_err *err)
{
    store st;
    infos l = {0};
    if (files)
        *files = 0;
    int rc = parse_store(artifact_uri, &st, err);
    if (rc == KILN_OK)
        rc = check_rel(artifact_dir, 1, err);
    if (rc == KILN_OK)
        rc = st.kind == STORE_PROXY ? proxy_list_tree(c, &st, artifact_dir, 0, &l, err)
                                    : s3_list(c, &st, artifact_dir, 1, &l, err);
    if (rc == KILN_OK && l.n == 0)
        rc = kiln_err_set(err, KILN_ENOTFOUND, "no artifacts under '%s' in %s", artifact_dir,
                          artifact_uri);
    if (rc == KILN_OK)
        rc = kiln_mkdir_p(local_dir, err);
    size_t skip = strlen(artifact_dir) + (*artifact_dir ? 1 : 0);
    for (size_t i = 0; rc == KILN_OK && i < l.n; i++) {
        const char *rel = l.v[i].path + skip;
        char local[PATH_MAX_LEN];
        rc = check_rel(rel, 0, err);
        if (rc == KILN_OK)
            rc = kiln_path_join(local, sizeof local, local_dir, rel, err);
        if (rc == KILN_OK)
            rc = get_one(c, &st, l.v[i].path, local, err);
        if (rc == KILN_OK && files)
            (*files)++;
    }
    kiln_mlflow_file_infos_free(l.v, l.n);
    return rc;
}
