/* lib/serve/serve_registry.c — the model at a stage or alias of the MLflow
 * registry: resolve the version, download its artifacts into the cache,
 * load it. */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fs.h"
#include "serve/serve_internal.h"

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rmtree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int resolve(kiln_mlflow_client *c, const kiln_serve_config *cfg,
                   kiln_mlflow_model_version **out, kiln_err *err)
{
    *out = NULL;
    if (cfg->alias && *cfg->alias) {
        int rc = kiln_mlflow_alias_get(c, cfg->model_name, cfg->alias, out, err);
        if (rc != KILN_OK)
            kiln_err_wrap(err, "model '%s' alias '%s'", cfg->model_name, cfg->alias);
        return rc;
    }
    const char *stage = cfg->stage && *cfg->stage ? cfg->stage : "Production";
    kiln_mlflow_model_version **v = NULL;
    size_t n = 0;
    int rc = kiln_mlflow_latest_versions(c, cfg->model_name, &stage, 1, &v, &n, err);
    if (rc != KILN_OK)
        return kiln_err_wrap(err, "model '%s' at stage %s", cfg->model_name, stage);
    for (size_t i = 0; i < n && !*out; i++)
        if (strcmp(v[i]->current_stage, stage) == 0) {
            *out = v[i];
            v[i] = NULL;
        }
    kiln_mlflow_model_versions_free(v, n);
    if (!*out)
        return kiln_err_set(err, KILN_ENOTFOUND, "registered model '%s' has no version in stage %s",
                            cfg->model_name, stage);
    return KILN_OK;
}

int srv_registry_current_version(const kiln_serve_config *cfg, char **version, kiln_err *err)
{
    kiln_mlflow_model_version *mv = NULL;
    *version = NULL;
    kiln_mlflow_client *c = kiln_mlflow_client_new(&cfg->mlflow, NULL, err);
    if (!c)
        return err ? (int)err->code : KILN_EINVAL;
    int rc = resolve(c, cfg, &mv, err);
    if (rc == KILN_OK && !(*version = strdup(mv->version)))
        rc = kiln_err_set(err, KILN_ENOMEM, "out of memory");
    kiln_mlflow_model_version_free(mv);
    kiln_mlflow_client_free(c);
    return rc;
}

/* runs:/<run_id>/<path> -> the run's artifact root + path (malloc'ed). */
static char *resolve_runs_uri(kiln_mlflow_client *c, const char *uri, kiln_err *err)
{
    const char *rest = uri + 6, *slash = strchr(rest, '/');
    char run_id[128];
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    kiln_mlflow_run *run = NULL;
    char *out = NULL;
    if (n == 0 || n >= sizeof run_id) {
        kiln_err_set(err, KILN_EFORMAT, "'%s' names no run", uri);
        return NULL;
    }
    memcpy(run_id, rest, n);
    run_id[n] = '\0';
    if (kiln_mlflow_run_get(c, run_id, &run, err) != KILN_OK)
        return NULL;
    size_t len = strlen(run->info.artifact_uri) + strlen(uri) + 2;
    if ((out = malloc(len)))
        snprintf(out, len, "%s%s%s", run->info.artifact_uri, slash ? "/" : "",
                 slash ? slash + 1 : "");
    else
        kiln_err_set(err, KILN_ENOMEM, "out of memory");
    kiln_mlflow_run_free(run);
    return out;
}

/* Where the version's files are: the registry's download URI (MLflow
 * resolves runs:/ there; kiln-tracking may hand the source back), else the
 * source; runs:/ resolved through the run. Malloc'ed. */
static char *download_uri(kiln_mlflow_client *c, const kiln_mlflow_model_version *mv,
                          kiln_err *err)
{
    cJSON *req = cJSON_CreateObject(), *resp = NULL;
    char *uri = NULL;
    cJSON_AddStringToObject(req, "name", mv->name);
    cJSON_AddStringToObject(req, "version", mv->version);
    kiln_err ignored = {0};
    if (kiln_mlflow_call(c, "GET", "/api/2.0/mlflow/model-versions/get-download-uri", req, &resp,
                         &ignored) == KILN_OK) {
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(resp, "artifact_uri");
        if (cJSON_IsString(u) && *u->valuestring)
            uri = strdup(u->valuestring);
    }
    cJSON_Delete(req);
    cJSON_Delete(resp);
    if (!uri && !(uri = strdup(mv->source))) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory");
        return NULL;
    }
    if (strncmp(uri, "runs:/", 6) == 0) {
        char *resolved = resolve_runs_uri(c, uri, err);
        if (!resolved)
            kiln_err_wrap(err, "version %s: source %s", mv->version, uri);
        free(uri);
        return resolved;
    }
    return uri;
}

/* A name safe as one path segment. */
static void safe_segment(const char *s, char *out, size_t size)
{
    size_t n = 0;
    for (; *s && n + 1 < size; s++) {
        char ch = *s;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '-' || ch == '_' || (ch == '.' && n > 0);
        out[n++] = ok ? ch : '_';
    }
    out[n] = '\0';
    if (!n)
        snprintf(out, size, "_");
}

/* Download into the cache unless a complete copy is there: a version's
 * source never changes, and a copy is renamed into place only whole. */
static int fetch(kiln_mlflow_client *c, const kiln_serve_config *cfg,
                 const kiln_mlflow_model_version *mv, char *dir, size_t dir_size,
                 const kiln_logger *log, kiln_err *err)
{
    char model_seg[256], ver_seg[64], parent[4096], staging[4200], info[4200];
    int rc;
    safe_segment(mv->name, model_seg, sizeof model_seg);
    safe_segment(mv->version, ver_seg, sizeof ver_seg);
    if ((rc = kiln_path_join(parent, sizeof parent, cfg->cache_dir, model_seg, err)) != KILN_OK ||
        (rc = kiln_path_join(dir, dir_size, parent, ver_seg, err)) != KILN_OK)
        return rc;
    snprintf(info, sizeof info, "%s/kiln-model.json", dir);
    if (kiln_is_file(info))
        return KILN_OK;
    if ((rc = kiln_mkdir_p(parent, err)) != KILN_OK)
        return rc;
    char *uri = download_uri(c, mv, err);
    if (!uri)
        return err ? (int)err->code : KILN_EIO;
    snprintf(staging, sizeof staging, "%s/.download-%s-%ld-%.0f", parent, ver_seg, (long)getpid(),
             srv_now_s() * 1e6);
    size_t files = 0;
    kiln_log_info(log, "serve: downloading %s version %s from %s", mv->name, mv->version, uri);
    rc = kiln_mlflow_artifact_download_dir(c, uri, "", staging, &files, err);
    if (rc != KILN_OK) {
        kiln_err_wrap(err, "downloading version %s (%s)", mv->version, uri);
    } else if (rename(staging, dir) != 0 && !kiln_is_file(info)) {
        rc = kiln_err_errno(err, errno, "moving the download into %s", dir);
    }
    rmtree(staging);
    free(uri);
    return rc;
}

/* Remove the cached versions of a model other than `keep_a` and `keep_b`
 * (the one just loaded and the one it replaces, for a quick way back):
 * a loaded model holds its weights in memory, not in these files. */
static void prune_cache(const kiln_serve_config *cfg, const char *name, const char *keep_a,
                        const char *keep_b, const kiln_logger *log)
{
    char model_seg[256], a[64], b[64], parent[4096], path[4400];
    safe_segment(name, model_seg, sizeof model_seg);
    safe_segment(keep_a, a, sizeof a);
    safe_segment(keep_b && *keep_b ? keep_b : keep_a, b, sizeof b);
    if (kiln_path_join(parent, sizeof parent, cfg->cache_dir, model_seg, NULL) != KILN_OK)
        return;
    DIR *dir = opendir(parent);
    if (!dir)
        return;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (e->d_name[0] != '.' && strcmp(e->d_name, a) != 0 && strcmp(e->d_name, b) != 0) {
            snprintf(path, sizeof path, "%s/%s", parent, e->d_name);
            kiln_log_debug(log, "serve: removing cached %s", path);
            rmtree(path);
        }
    closedir(dir);
}

/* The run's latest metrics as {"key": value}; {} when the run is unknown. */
static cJSON *run_metrics(kiln_mlflow_client *c, const char *run_id, const kiln_logger *log)
{
    cJSON *o = cJSON_CreateObject();
    kiln_mlflow_run *run = NULL;
    kiln_err e = {0};
    if (!o || !run_id || !*run_id)
        return o;
    if (kiln_mlflow_run_get(c, run_id, &run, &e) != KILN_OK) {
        kiln_log_warn(log, "serve: metrics of run %s: %s", run_id, e.msg);
        return o;
    }
    for (size_t i = 0; i < run->n_metrics; i++)
        cJSON_AddNumberToObject(o, run->metrics[i].key, run->metrics[i].value);
    kiln_mlflow_run_free(run);
    return o;
}

kiln_serve_model *srv_registry_load(const kiln_serve_config *cfg, int threads,
                                    const kiln_serve_batching *batching,
                                    const char *current_version, const kiln_logger *log,
                                    kiln_err *err)
{
    kiln_mlflow_model_version *mv = NULL;
    kiln_serve_model *m = NULL;
    cJSON *metrics = NULL;
    char dir[4096];
    kiln_mlflow_client *c = kiln_mlflow_client_new(&cfg->mlflow, NULL, err);
    if (!c)
        return NULL;
    if (resolve(c, cfg, &mv, err) != KILN_OK || fetch(c, cfg, mv, dir, sizeof dir, log, err))
        goto done;
    metrics = run_metrics(c, mv->run_id, log);
    int by_alias = cfg->alias && *cfg->alias;
    kiln_serve_model_origin o = {.name = mv->name, .version = mv->version,
                                 .stage = by_alias ? mv->current_stage
                                                   : (cfg->stage ? cfg->stage : "Production"),
                                 .alias = by_alias ? cfg->alias : NULL, .source = mv->source,
                                 .run_id = mv->run_id, .run_metrics = metrics};
    if (!(m = kiln_serve_model_load_batched(dir, srv_backend_name(cfg), threads, batching, &o,
                                            err)))
        kiln_err_wrap(err, "model '%s' version %s", mv->name, mv->version);
    else
        prune_cache(cfg, mv->name, mv->version, current_version, log);
done:
    cJSON_Delete(metrics);
    kiln_mlflow_model_version_free(mv);
    kiln_mlflow_client_free(c);
    return m;
}
