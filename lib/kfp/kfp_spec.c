/* The PipelineSpec tree: loading, lookups, parameter types, DAG order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "kfp/ir.h"
#include "kfp/kfp_internal.h"

const cJSON *kfp_get(const cJSON *n, const char *key)
{
    return n ? cJSON_GetObjectItemCaseSensitive(n, key) : NULL;
}

const char *kfp_str(const cJSON *n, const char *key)
{
    const cJSON *v = kfp_get(n, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

const cJSON *kiln_kfp_ir_component(const kiln_kfp_ir *ir, const char *name)
{
    return name ? kfp_get(kfp_get(ir->spec, "components"), name) : NULL;
}

const cJSON *kiln_kfp_ir_executor(const kiln_kfp_ir *ir, const char *label)
{
    return label ? kfp_get(kfp_get(kfp_get(ir->spec, "deploymentSpec"), "executors"), label)
                 : NULL;
}

const cJSON *kiln_kfp_ir_task_component(const kiln_kfp_ir *ir, const cJSON *task)
{
    return kiln_kfp_ir_component(ir, kfp_str(kfp_get(task, "componentRef"), "name"));
}

const cJSON *kiln_kfp_ir_task_container(const kiln_kfp_ir *ir, const cJSON *task)
{
    const cJSON *comp = kiln_kfp_ir_task_component(ir, task);
    return kfp_get(kiln_kfp_ir_executor(ir, kfp_str(comp, "executorLabel")), "container");
}

int kiln_kfp_param_type_ok(const char *type)
{
    static const char *const types[] = {"STRING", "NUMBER_INTEGER", "NUMBER_DOUBLE", "BOOLEAN",
                                        "LIST", "STRUCT"};
    for (size_t i = 0; type && i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(type, types[i]))
            return 1;
    return 0;
}

int kiln_kfp_value_fits(const cJSON *v, const char *type)
{
    if (!v || !type)
        return 0;
    if (!strcmp(type, "STRING"))
        return cJSON_IsString(v);
    if (!strcmp(type, "NUMBER_INTEGER"))
        return cJSON_IsNumber(v) && v->valuedouble == (double)(long long)v->valuedouble;
    if (!strcmp(type, "NUMBER_DOUBLE"))
        return cJSON_IsNumber(v);
    if (!strcmp(type, "BOOLEAN"))
        return cJSON_IsBool(v);
    if (!strcmp(type, "LIST"))
        return cJSON_IsArray(v);
    if (!strcmp(type, "STRUCT"))
        return cJSON_IsObject(v);
    return 0;
}

cJSON *kiln_kfp_value_from_text(const char *text, const char *type, const char *what,
                                kiln_err *err)
{
    cJSON *v = NULL;
    char *end;
    if (!strcmp(type, "STRING")) {
        v = cJSON_CreateString(text);
    } else if (!strcmp(type, "NUMBER_INTEGER") || !strcmp(type, "NUMBER_DOUBLE")) {
        double d = strtod(text, &end);
        if (*text && !*end)
            v = cJSON_CreateNumber(d);
    } else if (!strcmp(type, "BOOLEAN")) {
        if (!strcmp(text, "true") || !strcmp(text, "True") || !strcmp(text, "1"))
            v = cJSON_CreateTrue();
        else if (!strcmp(text, "false") || !strcmp(text, "False") || !strcmp(text, "0"))
            v = cJSON_CreateFalse();
    } else {
        v = cJSON_Parse(text);
    }
    if (v && !kiln_kfp_value_fits(v, type)) {
        cJSON_Delete(v);
        v = NULL;
    }
    if (!v)
        kiln_err_set(err, KILN_EINVAL, "%s: '%s' is not a %s", what, text, type);
    return v;
}

kiln_kfp_ir *kiln_kfp_ir_from_json(cJSON *spec, cJSON *platform, const char *name,
                                   kiln_err *err)
{
    kiln_kfp_ir *ir = calloc(1, sizeof *ir);
    if (!ir) {
        cJSON_Delete(spec);
        cJSON_Delete(platform);
        kiln_err_set(err, KILN_ENOMEM, "out of memory");
        return NULL;
    }
    ir->spec = spec;
    ir->platform = platform;
    snprintf(ir->name, sizeof ir->name, "%s", name ? name : "pipeline");
    if (kiln_kfp_ir_validate(ir, NULL, err) != KILN_OK) {
        kiln_kfp_ir_free(ir);
        return NULL;
    }
    return ir;
}

kiln_kfp_ir *kiln_kfp_ir_parse(const char *yaml, size_t len, const char *name, kiln_err *err)
{
    cJSON *docs = NULL;
    if (kiln_kfp_yaml_parse(yaml, len, name, &docs, err) != KILN_OK)
        return NULL;
    int n = cJSON_GetArraySize(docs);
    if (n < 1 || n > 2) {
        cJSON_Delete(docs);
        kiln_err_set(err, KILN_EINVAL, "%s: expected a PipelineSpec document and at most one "
                     "platform document, found %d documents", name, n);
        return NULL;
    }
    cJSON *spec = cJSON_DetachItemFromArray(docs, 0);
    cJSON *platform = n == 2 ? cJSON_DetachItemFromArray(docs, 0) : NULL;
    cJSON_Delete(docs);
    return kiln_kfp_ir_from_json(spec, platform, name, err);
}

kiln_kfp_ir *kiln_kfp_ir_load(const char *path, kiln_err *err)
{
    char *text = NULL;
    size_t len = 0;
    if (kiln_read_file(path, KILN_KFP_MAX_YAML_BYTES, &text, &len, err) != KILN_OK)
        return NULL;
    const char *base = strrchr(path, '/');
    kiln_kfp_ir *ir = kiln_kfp_ir_parse(text, len, base ? base + 1 : path, err);
    free(text);
    return ir;
}

void kiln_kfp_ir_free(kiln_kfp_ir *ir)
{
    if (!ir)
        return;
    cJSON_Delete(ir->spec);
    cJSON_Delete(ir->platform);
    free(ir);
}

/* ---- DAG order (Kahn's algorithm, ties in file order) ---- */

static int task_index(const cJSON *tasks, const char *name)
{
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tasks) {
        if (!strcmp(t->string, name))
            return i;
        i++;
    }
    return -1;
}

int kfp_dag_order(const char *file, const cJSON *tasks, const cJSON **out, size_t max,
                  size_t *n, kiln_err *err)
{
    int count = cJSON_GetArraySize(tasks), done[KILN_KFP_MAX_TASKS] = {0};
    const cJSON *items[KILN_KFP_MAX_TASKS];
    const cJSON *t;
    int i = 0;
    *n = 0;
    if (count > KILN_KFP_MAX_TASKS || (size_t)count > max)
        return kiln_err_set(err, KILN_ELIMIT, "%s: %d tasks, more than the %d kiln runs", file,
                            count, KILN_KFP_MAX_TASKS);
    cJSON_ArrayForEach(t, tasks) items[i++] = t;
    for (int placed = 0; placed < count; placed++) {
        int pick = -1;
        for (i = 0; i < count && pick < 0; i++) {
            if (done[i])
                continue;
            int ready = 1;
            const cJSON *d;
            cJSON_ArrayForEach(d, kfp_get(items[i], "dependentTasks")) {
                int j = cJSON_IsString(d) ? task_index(tasks, d->valuestring) : -1;
                if (j < 0)
                    return kiln_err_set(err, KILN_EINVAL, "%s: root.dag.tasks.%s.dependentTasks: "
                                        "no task named '%s'", file, items[i]->string,
                                        cJSON_IsString(d) ? d->valuestring : "?");
                if (!done[j])
                    ready = 0;
            }
            if (ready)
                pick = i;
        }
        if (pick < 0) {
            for (i = 0; i < count && done[i]; i++)
                ;
            return kiln_err_set(err, KILN_EINVAL, "%s: root.dag.tasks: dependency cycle through "
                                "task '%s'", file, items[i]->string);
        }
        done[pick] = 1;
        out[(*n)++] = items[pick];
    }
    return KILN_OK;
}

int kiln_kfp_ir_order(const kiln_kfp_ir *ir, const cJSON **tasks, size_t max, size_t *n,
                      kiln_err *err)
{
    return kfp_dag_order(ir->name, kfp_get(kfp_get(kfp_get(ir->spec, "root"), "dag"), "tasks"),
                         tasks, max, n, err);
}
