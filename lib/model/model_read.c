/* model_read.c — reading and validating a model package (cJSON), and
 * loading its weights strictly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/fs.h"
#include "model/model_internal.h"

#define INFO_MAX_BYTES (16u << 20)

int kiln_model_info_check(const kiln_model_info *info, const char *where, kiln_err *err)
{
    if (info->format_version != KILN_MODEL_FORMAT_VERSION)
        return kiln_err_set(err, KILN_EFORMAT, "%s: format_version %d is not one kiln reads (%d)",
                            where, info->format_version, KILN_MODEL_FORMAT_VERSION);
    if (!kiln_effnet_variant_known(info->variant) || strlen(info->variant) != 2)
        return kiln_err_set(err, KILN_EFORMAT, "%s: variant '%s' is not b0..b3", where,
                            info->variant);
    if (info->num_classes < 2 || !info->classes)
        return kiln_err_set(err, KILN_EFORMAT, "%s: classes: need at least 2, got %d", where,
                            info->num_classes);
    for (int i = 0; i < info->num_classes; i++) {
        if (!info->classes[i] || !info->classes[i][0])
            return kiln_err_set(err, KILN_EFORMAT, "%s: classes[%d] is empty", where, i);
        for (int j = 0; j < i; j++)
            if (strcmp(info->classes[i], info->classes[j]) == 0)
                return kiln_err_set(err, KILN_EFORMAT, "%s: classes[%d] '%s' is a duplicate",
                                    where, i, info->classes[i]);
    }
    if (info->input_size < KILN_MODEL_SIZE_MIN || info->input_size > KILN_MODEL_SIZE_MAX)
        return kiln_err_set(err, KILN_EFORMAT, "%s: input_size %d is outside %d..%d", where,
                            info->input_size, KILN_MODEL_SIZE_MIN, KILN_MODEL_SIZE_MAX);
    if (info->resize_size < info->input_size || info->resize_size > 4 * KILN_MODEL_SIZE_MAX)
        return kiln_err_set(err, KILN_EFORMAT,
                            "%s: preprocessing.resize_size %d must be >= input_size %d and <= %d",
                            where, info->resize_size, info->input_size, 4 * KILN_MODEL_SIZE_MAX);
    for (int c = 0; c < 3; c++) {
        if (!isfinite(info->mean[c]) || info->mean[c] < 0 || info->mean[c] > 1)
            return kiln_err_set(err, KILN_EFORMAT, "%s: preprocessing.mean[%d] %g is not in 0..1",
                                where, c, (double)info->mean[c]);
        if (!isfinite(info->std[c]) || info->std[c] <= 0 || info->std[c] > 1)
            return kiln_err_set(err, KILN_EFORMAT, "%s: preprocessing.std[%d] %g is not in (0, 1]",
                                where, c, (double)info->std[c]);
    }
    return KILN_OK;
}

/* --- JSON fields ------------------------------------------------------ */

static int get_int(const cJSON *obj, const char *key, const char *where, int *out, kiln_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return kiln_err_set(err, KILN_EFORMAT, "%s: '%s' is missing", where, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        fabs(v->valuedouble) > 1e9)
        return kiln_err_set(err, KILN_EFORMAT, "%s: '%s' must be an integer", where, key);
    *out = (int)v->valuedouble;
    return KILN_OK;
}

static const char *get_string(const cJSON *obj, const char *key, const char *where, int required,
                              kiln_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        if (required)
            kiln_err_set(err, KILN_EFORMAT, "%s: '%s' is missing", where, key);
        return NULL;
    }
    if (!cJSON_IsString(v)) {
        kiln_err_set(err, KILN_EFORMAT, "%s: '%s' must be a string", where, key);
        return NULL;
    }
    return v->valuestring;
}

static int get_triple(const cJSON *obj, const char *key, const char *where, float out[3],
                      kiln_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3)
        return kiln_err_set(err, KILN_EFORMAT, "%s: 'preprocessing.%s' must be 3 numbers", where,
                            key);
    for (int c = 0; c < 3; c++) {
        const cJSON *x = cJSON_GetArrayItem(v, c);
        if (!cJSON_IsNumber(x))
            return kiln_err_set(err, KILN_EFORMAT, "%s: 'preprocessing.%s[%d]' is not a number",
                                where, key, c);
        out[c] = (float)x->valuedouble;
    }
    return KILN_OK;
}

static int get_classes(const cJSON *root, const char *where, kiln_model_info *info,
                       kiln_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "classes");
    if (!cJSON_IsArray(v))
        return kiln_err_set(err, KILN_EFORMAT, "%s: 'classes' must be an array of names", where);
    int n = cJSON_GetArraySize(v);
    if (n < 1)
        return kiln_err_set(err, KILN_EFORMAT, "%s: 'classes' is empty", where);
    if (!(info->classes = calloc((size_t)n, sizeof *info->classes)))
        return kiln_err_set(err, KILN_ENOMEM, "out of memory reading %s", where);
    info->num_classes = n;
    for (int i = 0; i < n; i++) {
        const cJSON *c = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsString(c))
            return kiln_err_set(err, KILN_EFORMAT, "%s: classes[%d] is not a string", where, i);
        if (!(info->classes[i] = strdup(c->valuestring)))
            return kiln_err_set(err, KILN_ENOMEM, "out of memory reading %s", where);
    }
    return KILN_OK;
}

static int copy_fixed(char *dst, size_t size, const char *src, const char *where, const char *key,
                      kiln_err *err)
{
    if (strlen(src) >= size)
        return kiln_err_set(err, KILN_EFORMAT, "%s: '%s' is too long", where, key);
    memcpy(dst, src, strlen(src) + 1);
    return KILN_OK;
}

static int parse_provenance(const cJSON *root, const char *where, kiln_model_info *info,
                            kiln_err *err)
{
    const cJSON *prov = cJSON_GetObjectItemCaseSensitive(root, "provenance");
    if (!prov)
        return KILN_OK;
    if (!cJSON_IsObject(prov))
        return kiln_err_set(err, KILN_EFORMAT, "%s: 'provenance' must be an object", where);
    const char *run = get_string(prov, "run_id", where, 0, err);
    const char *sha = get_string(prov, "dataset_sha256", where, 0, err);
    if ((!run && cJSON_HasObjectItem(prov, "run_id")) ||
        (!sha && cJSON_HasObjectItem(prov, "dataset_sha256")))
        return err ? (int)err->code : KILN_EFORMAT;
    if ((run && !(info->run_id = strdup(run))) || (sha && !(info->dataset_sha256 = strdup(sha))))
        return kiln_err_set(err, KILN_ENOMEM, "out of memory reading %s", where);
    return KILN_OK;
}

static int parse_info(const cJSON *root, const char *where, kiln_model_info *info,
                      kiln_err *err)
{
    int rc, num_classes;
    const char *s;
    if (!cJSON_IsObject(root))
        return kiln_err_set(err, KILN_EFORMAT, "%s: not a JSON object", where);
    if ((rc = get_int(root, "format_version", where, &info->format_version, err)) != KILN_OK)
        return rc;
    if (info->format_version != KILN_MODEL_FORMAT_VERSION)
        return kiln_err_set(err, KILN_EFORMAT, "%s: format_version %d is not one kiln reads (%d)",
                            where, info->format_version, KILN_MODEL_FORMAT_VERSION);
    if (!(s = get_string(root, "variant", where, 1, err)))
        return err ? (int)err->code : KILN_EFORMAT;
    if ((rc = copy_fixed(info->variant, sizeof info->variant, s, where, "variant", err)))
        return rc;
    if ((rc = get_classes(root, where, info, err)) != KILN_OK ||
        (rc = get_int(root, "num_classes", where, &num_classes, err)) != KILN_OK ||
        (rc = get_int(root, "input_size", where, &info->input_size, err)) != KILN_OK)
        return rc;
    if (num_classes != info->num_classes)
        return kiln_err_set(err, KILN_EFORMAT, "%s: num_classes %d but 'classes' lists %d", where,
                            num_classes, info->num_classes);
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "preprocessing");
    if (!cJSON_IsObject(pre))
        return kiln_err_set(err, KILN_EFORMAT, "%s: 'preprocessing' must be an object", where);
    if ((rc = get_int(pre, "resize_size", where, &info->resize_size, err)) != KILN_OK ||
        (rc = get_triple(pre, "mean", where, info->mean, err)) != KILN_OK ||
        (rc = get_triple(pre, "std", where, info->std, err)) != KILN_OK)
        return rc;
    if (!(s = get_string(root, "kiln_version", where, 1, err)))
        return err ? (int)err->code : KILN_EFORMAT;
    if ((rc = copy_fixed(info->kiln_version, sizeof info->kiln_version, s, where,
                         "kiln_version", err)))
        return rc;
    if ((rc = parse_provenance(root, where, info, err)) != KILN_OK)
        return rc;
    return kiln_model_info_check(info, where, err);
}

int kiln_model_info_read(const char *dir, kiln_model_info *info, kiln_err *err)
{
    char path[4096];
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    memset(info, 0, sizeof *info);
    int rc = kiln_path_join(path, sizeof path, dir, KILN_MODEL_INFO_FILE, err);
    if (rc != KILN_OK)
        return rc;
    if (!kiln_is_dir(dir)) {
        rc = kiln_err_set(err, KILN_ENOTFOUND, "model package %s: no such directory", dir);
        goto fail;
    }
    if (!kiln_is_file(path)) {
        rc = kiln_err_set(err, KILN_ENOTFOUND, "%s: missing (not a kiln model package?)", path);
        goto fail;
    }
    if ((rc = kiln_read_file(path, INFO_MAX_BYTES, &text, &len, err)) != KILN_OK)
        goto fail;
    if (!(root = cJSON_ParseWithLength(text, len))) {
        rc = kiln_err_set(err, KILN_EFORMAT, "%s: not valid JSON", path);
        goto fail;
    }
    if ((rc = parse_info(root, path, info, err)) != KILN_OK)
        goto fail;
    cJSON_Delete(root);
    free(text);
    return KILN_OK;
fail:
    cJSON_Delete(root);
    free(text);
    kiln_model_info_clear(info);
    return rc;
}

kiln_effnet *kiln_model_load(const char *dir, kiln_nn_backend *be, kiln_model_info *info,
                             kiln_err *err)
{
    char path[4096];
    kiln_effnet *m = NULL;
    int rc = kiln_model_info_read(dir, info, err);
    if (rc != KILN_OK)
        return NULL;
    if ((rc = kiln_path_join(path, sizeof path, dir, KILN_MODEL_WEIGHTS_FILE, err)) != KILN_OK)
        goto fail;
    if (!kiln_is_file(path)) {
        kiln_err_set(err, KILN_ENOTFOUND, "%s: missing", path);
        goto fail;
    }
    if (!(m = kiln_effnet_create_from_file(path, be, err))) {
        kiln_err_wrap(err, "model package %s", dir);
        goto fail;
    }
    if (strcmp(kiln_effnet_variant(m), info->variant) != 0 ||
        kiln_effnet_num_classes(m) != info->num_classes) {
        kiln_err_set(err, KILN_EFORMAT,
                     "%s: the weights are %s with %d classes but %s says %s with %d classes",
                     path, kiln_effnet_variant(m), kiln_effnet_num_classes(m),
                     KILN_MODEL_INFO_FILE, info->variant, info->num_classes);
        goto fail;
    }
    return m;
fail:
    kiln_effnet_destroy(m);
    kiln_model_info_clear(info);
    return NULL;
}
