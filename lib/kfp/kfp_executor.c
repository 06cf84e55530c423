/* The executor input / output JSON of KFP v2, a step's side. */
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "kfp/executor.h"
#include "kfp/ir.h"
#include "kfp/kfp_internal.h"

cJSON *kiln_kfp_executor_input_parse(const char *json, kiln_err *err)
{
    cJSON *in = cJSON_Parse(json);
    if (!cJSON_IsObject(in) || !cJSON_IsObject(kfp_get(in, "inputs")) ||
        !cJSON_IsObject(kfp_get(in, "outputs"))) {
        cJSON_Delete(in);
        kiln_err_set(err, KILN_EFORMAT, "--executor-input: not a KFP executor input (a JSON "
                     "object with \"inputs\" and \"outputs\")");
        return NULL;
    }
    return in;
}

const cJSON *kiln_kfp_exec_param(const cJSON *in, const char *name, kiln_err *err)
{
    const cJSON *v = kfp_get(kfp_get(kfp_get(in, "inputs"), "parameterValues"), name);
    if (!v)
        kiln_err_set(err, KILN_EINVAL, "executor input: no value for input parameter '%s'", name);
    return v;
}

const char *kiln_kfp_exec_param_string(const cJSON *in, const char *name, kiln_err *err)
{
    const cJSON *v = kiln_kfp_exec_param(in, name, err);
    if (v && !cJSON_IsString(v)) {
        kiln_err_set(err, KILN_EINVAL, "executor input: input parameter '%s' is not a string",
                     name);
        return NULL;
    }
    return v ? v->valuestring : NULL;
}

const cJSON *kiln_kfp_exec_artifact(const cJSON *in, int outputs, const char *name, kiln_err *err)
{
    const cJSON *list = kfp_get(kfp_get(kfp_get(in, outputs ? "outputs" : "inputs"), "artifacts"),
                                name);
    const cJSON *a = cJSON_GetArrayItem(kfp_get(list, "artifacts"), 0);
    if (!kfp_str(a, "uri"))
        kiln_err_set(err, KILN_EINVAL, "executor input: no %s artifact '%s' with a uri",
                     outputs ? "output" : "input", name);
    return kfp_str(a, "uri") ? a : NULL;
}

char *kiln_kfp_exec_artifact_path(const cJSON *in, int outputs, const char *name, kiln_err *err)
{
    const cJSON *a = kiln_kfp_exec_artifact(in, outputs, name, err);
    char *path = NULL;
    if (!a || kiln_kfp_uri_to_path(kfp_str(a, "uri"), &path, err) != KILN_OK)
        return NULL;
    return path;
}

int kiln_kfp_output_param_write(const char *path, const char *text, kiln_err *err)
{
    if (kiln_mkdir_parent(path, err) != KILN_OK)
        return err ? err->code : KILN_EIO;
    return kiln_write_file_atomic(path, text, strlen(text), err);
}

cJSON *kiln_kfp_executor_output_new(void)
{
    cJSON *o = cJSON_CreateObject();
    if (o && (!cJSON_AddObjectToObject(o, "artifacts") ||
              !cJSON_AddObjectToObject(o, "parameterValues"))) {
        cJSON_Delete(o);
        o = NULL;
    }
    return o;
}

int kiln_kfp_executor_output_param(cJSON *out, const char *name, cJSON *value, kiln_err *err)
{
    cJSON *pv = cJSON_GetObjectItemCaseSensitive(out, "parameterValues");
    if (!pv || !value) {
        cJSON_Delete(value);
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    }
    cJSON_DeleteItemFromObjectCaseSensitive(pv, name);
    cJSON_AddItemToObject(pv, name, value);
    return KILN_OK;
}

int kiln_kfp_executor_output_artifact(cJSON *out, const cJSON *in, const char *name,
                                      cJSON *metadata, kiln_err *err)
{
    const cJSON *src = kiln_kfp_exec_artifact(in, 1, name, err);
    cJSON *arts = cJSON_GetObjectItemCaseSensitive(out, "artifacts");
    if (!src || !arts || !metadata) {
        cJSON_Delete(metadata);
        return src ? kiln_err_set(err, KILN_ENOMEM, "out of memory") : KILN_EINVAL;
    }
    cJSON *a = cJSON_Duplicate(src, 1);
    cJSON *list = cJSON_CreateObject();
    cJSON *items = list ? cJSON_AddArrayToObject(list, "artifacts") : NULL;
    if (!a || !items) {
        cJSON_Delete(a);
        cJSON_Delete(list);
        cJSON_Delete(metadata);
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    }
    cJSON_DeleteItemFromObjectCaseSensitive(a, "metadata");
    cJSON_AddItemToObject(a, "metadata", metadata);
    cJSON_AddItemToArray(items, a);
    cJSON_DeleteItemFromObjectCaseSensitive(arts, name);
    cJSON_AddItemToObject(arts, name, list);
    return KILN_OK;
}

int kiln_kfp_executor_output_write(const cJSON *out, const cJSON *in, kiln_err *err)
{
    const char *path = kfp_str(kfp_get(in, "outputs"), "outputFile");
    if (!path)
        return kiln_err_set(err, KILN_EINVAL, "executor input: outputs.outputFile is not set");
    char *text = cJSON_Print(out);
    if (!text)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    int rc = kiln_kfp_output_param_write(path, text, err);
    free(text);
    return rc;
}

cJSON *kiln_kfp_confusion_matrix_metadata(int n, const char *const *classes,
                                          const unsigned long long *counts)
{
    cJSON *md = cJSON_CreateObject();
    cJSON *cm = cJSON_AddObjectToObject(md, "confusionMatrix");
    cJSON *specs = cJSON_AddArrayToObject(cm, "annotationSpecs");
    cJSON *rows = cJSON_AddArrayToObject(cm, "rows");
    if (!specs || !rows) {
        cJSON_Delete(md);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        cJSON *s = cJSON_CreateObject(), *r = cJSON_CreateObject();
        cJSON *row = r ? cJSON_AddArrayToObject(r, "row") : NULL;
        cJSON_AddStringToObject(s, "displayName", classes[i]);
        cJSON_AddItemToArray(specs, s);
        for (int j = 0; row && j < n; j++)
            cJSON_AddItemToArray(row, cJSON_CreateNumber((double)counts[(size_t)i * n + j]));
        cJSON_AddItemToArray(rows, r);
    }
    return md;
}
