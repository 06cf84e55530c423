/* model_write.c — writing a model package: weights, kiln-model.json (cJSON)
 * and MLmodel (libyaml's emitter, so every scalar is quoted as YAML needs),
 * built in a staging directory and swapped into place. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <yaml.h>

#include "common/fs.h"
#include "model/model_internal.h"

const char *const kiln_model_package_files[KILN_MODEL_N_FILES] = {
    KILN_MODEL_WEIGHTS_FILE, KILN_MODEL_INFO_FILE, KILN_MODEL_MLMODEL_FILE};

void kiln_model_info_clear(kiln_model_info *info)
{
    if (!info)
        return;
    for (int i = 0; info->classes && i < info->num_classes; i++)
        free(info->classes[i]);
    free(info->classes);
    free(info->run_id);
    free(info->dataset_sha256);
    memset(info, 0, sizeof *info);
}

/* --- kiln-model.json -------------------------------------------------- */

static cJSON *float_array(const float *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    return a;
}

static char *info_json(const kiln_model_info *info)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *classes = cJSON_AddArrayToObject(root, "classes");
    for (int i = 0; i < info->num_classes; i++)
        cJSON_AddItemToArray(classes, cJSON_CreateString(info->classes[i]));
    cJSON_AddNumberToObject(root, "format_version", KILN_MODEL_FORMAT_VERSION);
    cJSON_AddStringToObject(root, "variant", info->variant);
    cJSON_AddNumberToObject(root, "num_classes", info->num_classes);
    cJSON_AddNumberToObject(root, "input_size", info->input_size);
    cJSON *pre = cJSON_AddObjectToObject(root, "preprocessing");
    cJSON_AddNumberToObject(pre, "resize_size", info->resize_size);
    cJSON_AddNumberToObject(pre, "crop_size", info->input_size);
    cJSON_AddStringToObject(pre, "scale", "pixels / 255");
    cJSON_AddItemToObject(pre, "mean", float_array(info->mean, 3));
    cJSON_AddItemToObject(pre, "std", float_array(info->std, 3));
    cJSON_AddStringToObject(root, "kiln_version",
                            info->kiln_version[0] ? info->kiln_version : KILN_VERSION);
    cJSON *prov = cJSON_AddObjectToObject(root, "provenance");
    if (info->run_id)
        cJSON_AddStringToObject(prov, "run_id", info->run_id);
    if (info->dataset_sha256)
        cJSON_AddStringToObject(prov, "dataset_sha256", info->dataset_sha256);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

/* --- MLmodel ---------------------------------------------------------- */

typedef struct yaml_out {
    yaml_emitter_t em;
    int ok;
} yaml_out;

static void y_emit(yaml_out *y, yaml_event_t *ev, int made)
{
    if (!made || !yaml_emitter_emit(&y->em, ev))
        y->ok = 0;
}

static void y_scalar(yaml_out *y, const char *s)
{
    yaml_event_t ev;
    if (!y->ok)
        return;
    int made = yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s),
                                            1, 1, YAML_ANY_SCALAR_STYLE);
    y_emit(y, &ev, made);
}

static void y_map(yaml_out *y, int start)
{
    yaml_event_t ev;
    if (!y->ok)
        return;
    int made = start ? yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                                           YAML_BLOCK_MAPPING_STYLE)
                     : yaml_mapping_end_event_initialize(&ev);
    y_emit(y, &ev, made);
}

static void y_kv(yaml_out *y, const char *k, const char *v)
{
    y_scalar(y, k);
    y_scalar(y, v);
}

/* MLflow's tensor signature, as JSON text inside the YAML. */
static void signature_text(const kiln_model_info *info, char *in, size_t in_size, char *out,
                           size_t out_size)
{
    snprintf(in, in_size,
             "[{\"type\": \"tensor\", \"tensor-spec\": {\"dtype\": \"float32\", "
             "\"shape\": [-1, 3, %d, %d]}}]",
             info->input_size, info->input_size);
    snprintf(out, out_size,
             "[{\"type\": \"tensor\", \"tensor-spec\": {\"dtype\": \"float32\", "
             "\"shape\": [-1, %d]}}]",
             info->num_classes);
}

static void mlmodel_body(yaml_out *y, const kiln_model_info *info)
{
    char sig_in[256], sig_out[256], when[32], uuid[33];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    /* The model_uuid only has to be unique per package. */
    unsigned long long a = (unsigned long long)now * 2654435761ull ^ (unsigned long long)getpid();
    unsigned long long b = (unsigned long long)clock() ^ ((unsigned long long)(uintptr_t)info << 7);
    snprintf(uuid, sizeof uuid, "%016llx%016llx", a, b);
    signature_text(info, sig_in, sizeof sig_in, sig_out, sizeof sig_out);

    y_map(y, 1);
    y_kv(y, "artifact_path", "model");
    y_scalar(y, "flavors");
    y_map(y, 1);
    y_scalar(y, "kiln");
    y_map(y, 1);
    y_kv(y, "format_version", "1");
    y_kv(y, "variant", info->variant);
    y_kv(y, "weights", KILN_MODEL_WEIGHTS_FILE);
    y_kv(y, "info", KILN_MODEL_INFO_FILE);
    y_kv(y, "kiln_version", info->kiln_version[0] ? info->kiln_version : KILN_VERSION);
    y_map(y, 0);
    y_map(y, 0);
    y_kv(y, "model_uuid", uuid);
    if (info->run_id)
        y_kv(y, "run_id", info->run_id);
    y_scalar(y, "signature");
    y_map(y, 1);
    y_kv(y, "inputs", sig_in);
    y_kv(y, "outputs", sig_out);
    y_kv(y, "params", "null");
    y_map(y, 0);
    y_kv(y, "utc_time_created", when);
    y_map(y, 0);
}

static int write_mlmodel(const char *path, const kiln_model_info *info, kiln_err *err)
{
    unsigned char buf[8192];
    size_t written = 0;
    yaml_out y = {.ok = 1};
    yaml_event_t ev;
    if (!yaml_emitter_initialize(&y.em))
        return kiln_err_set(err, KILN_ENOMEM, "MLmodel: cannot start the YAML emitter");
    yaml_emitter_set_output_string(&y.em, buf, sizeof buf, &written);
    yaml_emitter_set_unicode(&y.em, 1);
    y_emit(&y, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING));
    y_emit(&y, &ev, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1));
    mlmodel_body(&y, info);
    y_emit(&y, &ev, yaml_document_end_event_initialize(&ev, 1));
    y_emit(&y, &ev, yaml_stream_end_event_initialize(&ev));
    int ok = y.ok;
    char problem[256];
    snprintf(problem, sizeof problem, "%s", y.em.problem ? y.em.problem : "buffer full");
    yaml_emitter_delete(&y.em);
    if (!ok)
        return kiln_err_set(err, KILN_EIO, "%s: YAML emitter failed: %s", path, problem);
    return kiln_write_file_atomic(path, buf, written, err);
}

/* --- staging and swapping -------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int kiln_model_rmtree(const char *path)
{
    if (access(path, F_OK) != 0)
        return 0;
    return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int kiln_model_is_package_file(const char *name)
{
    for (int i = 0; i < KILN_MODEL_N_FILES; i++)
        if (strcmp(name, kiln_model_package_files[i]) == 0)
            return 1;
    return 0;
}

/* An output directory also holds what training keeps beside the package
 * (checkpoint/, mlflow-run-id): move those into the staged package so the
 * swap keeps them. Renames within one file system: nothing is copied. */
static int carry_over(const char *dir, const char *stage, kiln_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? KILN_OK : kiln_err_errno(err, errno, "cannot open %s", dir);
    struct dirent *e;
    int rc = KILN_OK;
    char from[4096], to[4096];
    while (rc == KILN_OK && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            kiln_model_is_package_file(e->d_name))
            continue;
        if ((rc = kiln_path_join(from, sizeof from, dir, e->d_name, err)) != KILN_OK ||
            (rc = kiln_path_join(to, sizeof to, stage, e->d_name, err)) != KILN_OK)
            break;
        if (rename(from, to) != 0)
            rc = kiln_err_errno(err, errno, "cannot move %s into the new package", from);
    }
    closedir(d);
    return rc;
}

static int write_staged(const char *stage, kiln_effnet *model, const kiln_model_info *info,
                        kiln_err *err)
{
    char path[4096];
    int rc = kiln_path_join(path, sizeof path, stage, KILN_MODEL_WEIGHTS_FILE, err);
    if (rc == KILN_OK)
        rc = kiln_effnet_save(model, path, err);
    if (rc != KILN_OK)
        return rc;
    char *json = info_json(info);
    if (!json)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory writing %s", KILN_MODEL_INFO_FILE);
    rc = kiln_path_join(path, sizeof path, stage, KILN_MODEL_INFO_FILE, err);
    if (rc == KILN_OK)
        rc = kiln_write_file_atomic(path, json, strlen(json), err);
    free(json);
    if (rc == KILN_OK)
        rc = kiln_path_join(path, sizeof path, stage, KILN_MODEL_MLMODEL_FILE, err);
    if (rc == KILN_OK)
        rc = write_mlmodel(path, info, err);
    return rc;
}

int kiln_model_package_write(const char *dir, kiln_effnet *model, const kiln_model_info *info,
                             kiln_err *err)
{
    char stage[4096], old[4096];
    int carried = 0;
    int rc = kiln_model_info_check(info, "package", err);
    if (rc != KILN_OK)
        return rc;
    if (kiln_effnet_num_classes(model) != info->num_classes ||
        strcmp(kiln_effnet_variant(model), info->variant) != 0)
        return kiln_err_set(err, KILN_EINVAL,
                            "package %s: the model is %s with %d classes but the info says "
                            "%s with %d",
                            dir, kiln_effnet_variant(model), kiln_effnet_num_classes(model),
                            info->variant, info->num_classes);
    if (snprintf(stage, sizeof stage, "%s.staging.XXXXXX", dir) >= (int)sizeof stage ||
        snprintf(old, sizeof old, "%s.old.XXXXXX", dir) >= (int)sizeof old)
        return kiln_err_set(err, KILN_ELIMIT, "package path too long: %s", dir);
    if (!mkdtemp(stage))
        return kiln_err_errno(err, errno, "cannot create a staging directory next to %s", dir);
    if ((rc = write_staged(stage, model, info, err)) != KILN_OK)
        goto fail;
    if (kiln_is_dir(dir)) {
        carried = 1;
        if ((rc = carry_over(dir, stage, err)) != KILN_OK)
            goto fail;
        if (!mkdtemp(old) || rmdir(old) != 0 || rename(dir, old) != 0) {
            rc = kiln_err_errno(err, errno, "cannot move the old package %s aside", dir);
            goto fail;
        }
    } else {
        old[0] = '\0';
    }
    if (rename(stage, dir) != 0) {
        rc = kiln_err_errno(err, errno, "cannot rename the new package into %s", dir);
        if (old[0] && rename(old, dir) != 0)
            kiln_err_wrap(err, "the old package is left in %s", old);
        goto fail;
    }
    if (old[0])
        kiln_model_rmtree(old);
    return KILN_OK;
fail:
    /* Give back what was carried over before the staging tree goes. */
    if (carried && kiln_is_dir(dir))
        carry_over(stage, dir, NULL);
    kiln_model_rmtree(stage);
    return rc;
}
