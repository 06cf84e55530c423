/* Checking that a PipelineSpec holds together (kiln_kfp_ir_validate). */
#include <stdio.h>
#include <string.h>

#include "kfp/ir.h"
#include "kfp/kfp_internal.h"

typedef struct vctx {
    const kiln_kfp_ir *ir;
    const char *file;
    kiln_err *err;
} vctx;

#define FAIL(v, ...) kiln_err_set((v)->err, KILN_EINVAL, __VA_ARGS__)

static int check_top(vctx *v)
{
    const cJSON *s = v->ir->spec;
    if (!cJSON_IsObject(s))
        return FAIL(v, "%s: the first document is not a mapping (a PipelineSpec)", v->file);
    if (!kfp_str(s, "schemaVersion"))
        return FAIL(v, "%s: schemaVersion: missing (KFP v2 IR has \"2.1.0\")", v->file);
    if (!kfp_str(kfp_get(s, "pipelineInfo"), "name"))
        return FAIL(v, "%s: pipelineInfo.name: missing", v->file);
    if (!cJSON_IsObject(kfp_get(s, "components")))
        return FAIL(v, "%s: components: missing or not a mapping", v->file);
    if (!cJSON_IsObject(kfp_get(kfp_get(s, "deploymentSpec"), "executors")))
        return FAIL(v, "%s: deploymentSpec.executors: missing or not a mapping", v->file);
    if (!cJSON_IsObject(kfp_get(kfp_get(kfp_get(s, "root"), "dag"), "tasks")))
        return FAIL(v, "%s: root.dag.tasks: missing or not a mapping", v->file);
    return KILN_OK;
}

/* Parameter and artifact declarations of one definitions block. */
static int check_defs(vctx *v, const char *where, const cJSON *defs)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, kfp_get(defs, "parameters")) {
        const char *type = kfp_str(p, "parameterType");
        const cJSON *def = kfp_get(p, "defaultValue");
        if (!kiln_kfp_param_type_ok(type))
            return FAIL(v, "%s: %s.parameters.%s.parameterType: '%s' is not a KFP parameter type",
                        v->file, where, p->string, type ? type : "(missing)");
        if (def && !kiln_kfp_value_fits(def, type))
            return FAIL(v, "%s: %s.parameters.%s.defaultValue: not a %s", v->file, where,
                        p->string, type);
    }
    cJSON_ArrayForEach(p, kfp_get(defs, "artifacts")) {
        if (!kfp_str(kfp_get(p, "artifactType"), "schemaTitle"))
            return FAIL(v, "%s: %s.artifacts.%s.artifactType.schemaTitle: missing", v->file, where,
                        p->string);
    }
    return KILN_OK;
}

static int check_strings(vctx *v, const char *label, const char *field, const cJSON *arr,
                         const cJSON *comp)
{
    const cJSON *s;
    int i = 0;
    cJSON_ArrayForEach(s, arr) {
        if (!cJSON_IsString(s))
            return FAIL(v, "%s: deploymentSpec.executors.%s.container.%s[%d]: not a string",
                        v->file, label, field, i);
        if (kiln_kfp_placeholders_check(s->valuestring, comp, v->err) != KILN_OK)
            return kiln_err_wrap(v->err, "%s: deploymentSpec.executors.%s.container.%s[%d]",
                                 v->file, label, field, i);
        i++;
    }
    return KILN_OK;
}

static int check_component(vctx *v, const cJSON *comp, const char *image)
{
    char where[300];
    snprintf(where, sizeof where, "components.%s.inputDefinitions", comp->string);
    if (check_defs(v, where, kfp_get(comp, "inputDefinitions")) != KILN_OK)
        return KILN_EINVAL;
    snprintf(where, sizeof where, "components.%s.outputDefinitions", comp->string);
    if (check_defs(v, where, kfp_get(comp, "outputDefinitions")) != KILN_OK)
        return KILN_EINVAL;
    const char *label = kfp_str(comp, "executorLabel");
    if (!label)
        return FAIL(v, "%s: components.%s.executorLabel: missing (kiln runs container "
                    "components only)", v->file, comp->string);
    const cJSON *ctr = kfp_get(kiln_kfp_ir_executor(v->ir, label), "container");
    if (!ctr)
        return FAIL(v, "%s: components.%s.executorLabel: no container executor '%s' in "
                    "deploymentSpec.executors", v->file, comp->string, label);
    const char *img = kfp_str(ctr, "image");
    if (!img || !*img)
        return FAIL(v, "%s: deploymentSpec.executors.%s.container.image: missing", v->file, label);
    if (image && strcmp(img, image))
        return FAIL(v, "%s: deploymentSpec.executors.%s.container.image: '%s', expected '%s'",
                    v->file, label, img, image);
    if (cJSON_GetArraySize(kfp_get(ctr, "command")) < 1)
        return FAIL(v, "%s: deploymentSpec.executors.%s.container.command: missing", v->file,
                    label);
    if (check_strings(v, label, "command", kfp_get(ctr, "command"), comp) != KILN_OK ||
        check_strings(v, label, "args", kfp_get(ctr, "args"), comp) != KILN_OK)
        return KILN_EINVAL;
    return KILN_OK;
}

static int is_dependency(const cJSON *task, const char *producer)
{
    const cJSON *d;
    cJSON_ArrayForEach(d, kfp_get(task, "dependentTasks"))
        if (cJSON_IsString(d) && !strcmp(d->valuestring, producer))
            return 1;
    return 0;
}

/* One task input parameter: declared by the component, wired to something of its type. */
static int check_param_input(vctx *v, const cJSON *task, const cJSON *comp, const cJSON *in)
{
    const char *tn = task->string, *pn = in->string;
    const char *type = kfp_str(kfp_get(kfp_get(kfp_get(comp, "inputDefinitions"), "parameters"),
                                       pn), "parameterType");
    const cJSON *tasks = kfp_get(kfp_get(kfp_get(v->ir->spec, "root"), "dag"), "tasks");
    const char *src, *other = NULL;
    if (!type)
        return FAIL(v, "%s: root.dag.tasks.%s.inputs.parameters.%s: component '%s' has no such "
                    "input", v->file, tn, pn, comp->string);
    if ((src = kfp_str(in, "componentInputParameter"))) {
        other = kfp_str(kfp_get(kfp_get(kfp_get(kfp_get(v->ir->spec, "root"), "inputDefinitions"),
                                        "parameters"), src), "parameterType");
        if (!other)
            return FAIL(v, "%s: root.dag.tasks.%s.inputs.parameters.%s: pipeline parameter '%s' "
                        "does not exist", v->file, tn, pn, src);
    } else if (kfp_get(in, "taskOutputParameter")) {
        const cJSON *o = kfp_get(in, "taskOutputParameter");
        const char *prod = kfp_str(o, "producerTask"), *key = kfp_str(o, "outputParameterKey");
        const cJSON *pt = prod ? kfp_get(tasks, prod) : NULL;
        if (!pt)
            return FAIL(v, "%s: root.dag.tasks.%s.inputs.parameters.%s: producer task '%s' does "
                        "not exist", v->file, tn, pn, prod ? prod : "(missing)");
        other = kfp_str(kfp_get(kfp_get(kfp_get(kiln_kfp_ir_task_component(v->ir, pt),
                                                "outputDefinitions"), "parameters"),
                                key ? key : ""), "parameterType");
        if (!other)
            return FAIL(v, "%s: root.dag.tasks.%s.inputs.parameters.%s: task '%s' has no output "
                        "parameter '%s'", v->file, tn, pn, prod, key ? key : "(missing)");
        if (!is_dependency(task, prod))
            return FAIL(v, "%s: root.dag.tasks.%s: reads an output of '%s' but does not list it "
                        "in dependentTasks", v->file, tn, prod);
    } else if (kfp_get(kfp_get(in, "runtimeValue"), "constant")) {
        if (!kiln_kfp_value_fits(kfp_get(kfp_get(in, "runtimeValue"), "constant"), type))
            return FAIL(v, "%s: root.dag.tasks.%s.inputs.parameters.%s: constant is not a %s",
                        v->file, tn, pn, type);
        return KILN_OK;
    } else {
        return FAIL(v, "%s: root.dag.tasks.%s.inputs.parameters.%s: wired to nothing (expected "
                    "componentInputParameter, taskOutputParameter or runtimeValue)", v->file, tn,
                    pn);
    }
    if (strcmp(type, other))
        return FAIL(v, "%s: root.dag.tasks.%s.inputs.parameters.%s: a %s wired to a %s", v->file,
                    tn, pn, type, other);
    return KILN_OK;
}

static int check_artifact_input(vctx *v, const cJSON *task, const cJSON *comp, const cJSON *in)
{
    const char *tn = task->string, *an = in->string;
    const char *want = kfp_str(kfp_get(kfp_get(kfp_get(kfp_get(comp, "inputDefinitions"),
                                                       "artifacts"), an), "artifactType"),
                               "schemaTitle");
    const cJSON *o = kfp_get(in, "taskOutputArtifact");
    const char *prod = kfp_str(o, "producerTask"), *key = kfp_str(o, "outputArtifactKey");
    const cJSON *tasks = kfp_get(kfp_get(kfp_get(v->ir->spec, "root"), "dag"), "tasks");
    const cJSON *pt = prod ? kfp_get(tasks, prod) : NULL;
    if (!want)
        return FAIL(v, "%s: root.dag.tasks.%s.inputs.artifacts.%s: component '%s' has no such "
                    "input", v->file, tn, an, comp->string);
    if (!o)
        return FAIL(v, "%s: root.dag.tasks.%s.inputs.artifacts.%s: not wired to a "
                    "taskOutputArtifact", v->file, tn, an);
    if (!pt)
        return FAIL(v, "%s: root.dag.tasks.%s.inputs.artifacts.%s: producer task '%s' does not "
                    "exist", v->file, tn, an, prod ? prod : "(missing)");
    const char *got = kfp_str(kfp_get(kfp_get(kfp_get(kfp_get(kiln_kfp_ir_task_component(v->ir, pt),
                                                              "outputDefinitions"), "artifacts"),
                                              key ? key : ""), "artifactType"), "schemaTitle");
    if (!got)
        return FAIL(v, "%s: root.dag.tasks.%s.inputs.artifacts.%s: task '%s' has no output "
                    "artifact '%s'", v->file, tn, an, prod, key ? key : "(missing)");
    if (strcmp(got, want))
        return FAIL(v, "%s: root.dag.tasks.%s.inputs.artifacts.%s: a %s wired to a %s", v->file,
                    tn, an, want, got);
    if (!is_dependency(task, prod))
        return FAIL(v, "%s: root.dag.tasks.%s: reads an output of '%s' but does not list it in "
                    "dependentTasks", v->file, tn, prod);
    return KILN_OK;
}

/* Required inputs (no default, not optional) must be wired. */
static int check_required(vctx *v, const cJSON *task, const cJSON *comp)
{
    const char *kinds[] = {"parameters", "artifacts"};
    for (int k = 0; k < 2; k++) {
        const cJSON *d;
        cJSON_ArrayForEach(d, kfp_get(kfp_get(comp, "inputDefinitions"), kinds[k])) {
            if (cJSON_IsTrue(kfp_get(d, "isOptional")) || kfp_get(d, "defaultValue"))
                continue;
            if (!kfp_get(kfp_get(kfp_get(task, "inputs"), kinds[k]), d->string))
                return FAIL(v, "%s: root.dag.tasks.%s: required input %s '%s' of component '%s' "
                            "is not wired", v->file, task->string, k ? "artifact" : "parameter",
                            d->string, comp->string);
        }
    }
    return KILN_OK;
}

static int check_task(vctx *v, const cJSON *task)
{
    const char *ref = kfp_str(kfp_get(task, "componentRef"), "name");
    const cJSON *comp = kiln_kfp_ir_component(v->ir, ref), *in;
    if (!comp)
        return FAIL(v, "%s: root.dag.tasks.%s.componentRef.name: no component '%s'", v->file,
                    task->string, ref ? ref : "(missing)");
    cJSON_ArrayForEach(in, kfp_get(kfp_get(task, "inputs"), "parameters"))
        if (check_param_input(v, task, comp, in) != KILN_OK)
            return KILN_EINVAL;
    cJSON_ArrayForEach(in, kfp_get(kfp_get(task, "inputs"), "artifacts"))
        if (check_artifact_input(v, task, comp, in) != KILN_OK)
            return KILN_EINVAL;
    return check_required(v, task, comp);
}

static int check_platform(vctx *v)
{
    const cJSON *plat, *ex;
    if (!v->ir->platform)
        return KILN_OK;
    if (!cJSON_IsObject(kfp_get(v->ir->platform, "platforms")))
        return FAIL(v, "%s: second document: expected 'platforms' (a PlatformSpec)", v->file);
    cJSON_ArrayForEach(plat, kfp_get(v->ir->platform, "platforms")) {
        cJSON_ArrayForEach(ex, kfp_get(kfp_get(plat, "deploymentSpec"), "executors")) {
            if (!kiln_kfp_ir_executor(v->ir, ex->string))
                return FAIL(v, "%s: platforms.%s.deploymentSpec.executors.%s: no such executor",
                            v->file, plat->string, ex->string);
        }
    }
    return KILN_OK;
}

int kiln_kfp_ir_validate(const kiln_kfp_ir *ir, const char *image, kiln_err *err)
{
    vctx v = {.ir = ir, .file = ir->name, .err = err};
    const cJSON *c;
    const cJSON *order[KILN_KFP_MAX_TASKS];
    size_t n;
    if (check_top(&v) != KILN_OK ||
        check_defs(&v, "root.inputDefinitions", kfp_get(kfp_get(ir->spec, "root"),
                                                        "inputDefinitions")) != KILN_OK)
        return KILN_EINVAL;
    cJSON_ArrayForEach(c, kfp_get(ir->spec, "components"))
        if (check_component(&v, c, image) != KILN_OK)
            return KILN_EINVAL;
    if (kiln_kfp_ir_order(ir, order, KILN_KFP_MAX_TASKS, &n, err) != KILN_OK)
        return err ? err->code : KILN_EINVAL;
    if (n == 0)
        return FAIL(&v, "%s: root.dag.tasks: the pipeline has no tasks", v.file);
    for (size_t i = 0; i < n; i++)
        if (check_task(&v, order[i]) != KILN_OK)
            return KILN_EINVAL;
    return check_platform(&v);
}
