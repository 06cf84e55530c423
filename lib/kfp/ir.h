/* lib/kfp/ir.h — the compiled Kubeflow Pipelines v2 pipeline (a PipelineSpec,
 * "IR YAML"): reading and writing it, checking it, ordering its DAG,
 * resolving its placeholders, and generating kiln's own pipeline.
 *
 * Representation. An IR file is one or two YAML documents: the PipelineSpec,
 * and optionally a PlatformSpec ({platforms: {kubernetes: ...}}, what
 * kfp-kubernetes writes). kiln reads each document with libyaml into a cJSON
 * tree — the same shape the KFP REST API takes as JSON — and works on that
 * tree; writing goes the other way through libyaml's emitter. Plain YAML
 * scalars become numbers, booleans or null when they read as such (YAML 1.2
 * core schema), quoted ones stay strings; anchors, aliases and duplicate
 * keys are refused (KFP's compiler never writes them).
 *
 * A kiln_kfp_ir owns its trees (spec, platform) and is freed with
 * kiln_kfp_ir_free. Errors are KILN_EFORMAT for YAML that cannot be read,
 * KILN_EINVAL for a spec that does not hold together, each naming the file
 * and the place: "kiln-train.yaml: root.dag.tasks.train.inputs.parameters.
 * epochs: pipeline parameter 'epoch' does not exist".
 */
#ifndef KILN_KFP_IR_H
#define KILN_KFP_IR_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "common/err.h"

#define KILN_KFP_MAX_TASKS 64
#define KILN_KFP_MAX_YAML_BYTES (16u << 20)

/* ---- YAML <-> JSON ---- */

/* Parse every document of `yaml` (len bytes) into a cJSON array of trees
 * (*docs, caller frees). `name` is used in messages. */
int kiln_kfp_yaml_parse(const char *yaml, size_t len, const char *name, cJSON **docs,
                        kiln_err *err);

/* Emit the trees of the array `docs` as YAML documents (the second and
 * later ones start with "---"), block style, keys in tree order, strings
 * quoted when they would otherwise read back as another type. `header`
 * (may be NULL) is written first as is (comment lines). *out is malloc'ed
 * and NUL-terminated. */
int kiln_kfp_yaml_emit(const cJSON *docs, const char *header, char **out, kiln_err *err);

/* ---- the pipeline ---- */

typedef struct kiln_kfp_ir {
    cJSON *spec;      /* the PipelineSpec document (owned) */
    cJSON *platform;  /* the PlatformSpec document, or NULL (owned) */
    char name[256];   /* file name for messages */
} kiln_kfp_ir;

/* Read and validate (kiln_kfp_ir_validate with no expected image). */
kiln_kfp_ir *kiln_kfp_ir_load(const char *path, kiln_err *err);
kiln_kfp_ir *kiln_kfp_ir_parse(const char *yaml, size_t len, const char *name, kiln_err *err);
/* Take ownership of already-parsed trees (platform may be NULL) and validate. */
kiln_kfp_ir *kiln_kfp_ir_from_json(cJSON *spec, cJSON *platform, const char *name,
                                   kiln_err *err);
void kiln_kfp_ir_free(kiln_kfp_ir *ir);

/* Every check: schemaVersion and pipelineInfo.name present; each task's
 * componentRef names a component; each component's executorLabel names a
 * container executor with an image and a command; each task input is a
 * declared input of its component and is wired to a pipeline parameter, an
 * upstream task's output or a constant of the same type (artifacts: the
 * same schemaTitle); every required input is wired; producers are listed in
 * dependentTasks; dependentTasks name tasks; the DAG has no cycle; every
 * placeholder of every command and argument names a declared input or
 * output; platform executors name executors. With `image` non-NULL every
 * container's image must equal it. */
int kiln_kfp_ir_validate(const kiln_kfp_ir *ir, const char *image, kiln_err *err);

/* The tasks of root.dag (borrowed nodes of ir->spec) in an order where each
 * task comes after its dependencies; ties in file order. */
int kiln_kfp_ir_order(const kiln_kfp_ir *ir, const cJSON **tasks, size_t max, size_t *n,
                      kiln_err *err);

/* Lookups into the spec (borrowed; NULL when absent). */
const cJSON *kiln_kfp_ir_component(const kiln_kfp_ir *ir, const char *name);
const cJSON *kiln_kfp_ir_executor(const kiln_kfp_ir *ir, const char *label);
const cJSON *kiln_kfp_ir_task_component(const kiln_kfp_ir *ir, const cJSON *task);
/* The container of the executor the task's component runs. */
const cJSON *kiln_kfp_ir_task_container(const kiln_kfp_ir *ir, const cJSON *task);

/* KFP's parameter types: STRING, NUMBER_INTEGER, NUMBER_DOUBLE, BOOLEAN,
 * LIST, STRUCT. 1 if `type` is one. */
int kiln_kfp_param_type_ok(const char *type);
/* 1 if the JSON value fits the parameter type (an integer for
 * NUMBER_INTEGER, any number for NUMBER_DOUBLE ...). */
int kiln_kfp_value_fits(const cJSON *value, const char *type);
/* Parse text given on a command line ("--param epochs=3") as a value of
 * `type` into a new cJSON (caller frees). EINVAL naming `what`. */
cJSON *kiln_kfp_value_from_text(const char *text, const char *type, const char *what,
                                kiln_err *err);

/* ---- placeholders ----
 * Resolved against an executor input (ExecutorInput as JSON, see
 * executor.h): {{$}} (the whole executor input, compact JSON),
 * {{$.inputs.parameters['x']}}, {{$.inputs.artifacts['x'].path|uri}},
 * {{$.outputs.artifacts['x'].path|uri}}, {{$.outputs.parameters['x'].output_file}},
 * {{$.outputs.output_file}}. Several may appear in one string. Strings are
 * inserted as is, numbers and booleans as JSON writes them, lists and
 * structs as compact JSON. */

/* Resolve every placeholder of `in` into *out (malloc'ed). EINVAL naming
 * the placeholder when it is malformed or names nothing. */
int kiln_kfp_placeholders_resolve(const char *in, const cJSON *executor_input, char **out,
                                  kiln_err *err);

/* Check, without an executor input, that every placeholder of `in` names
 * an input or output declared by `component` (a ComponentSpec). */
int kiln_kfp_placeholders_check(const char *in, const cJSON *component, kiln_err *err);

/* The local path KFP's launcher mounts an artifact URI at: gs://b/k ->
 * /gcs/b/k, minio://b/k -> /minio/b/k, s3://b/k -> /s3/b/k, file:///p -> /p.
 * *out malloc'ed. EUNSUPPORTED for another scheme. */
int kiln_kfp_uri_to_path(const char *uri, char **out, kiln_err *err);

/* ---- kiln's pipeline ---- */

/* The one source of truth for the image the pipeline's containers run. */
#define KILN_KFP_IMAGE_NAME "kiln"
#define KILN_KFP_DEFAULT_IMAGE KILN_KFP_IMAGE_NAME ":" KILN_VERSION
/* The program inside the image every executor runs ("kiln-component STEP"). */
#define KILN_KFP_COMPONENT_PROGRAM "kiln-component"
#define KILN_KFP_PIPELINE_NAME "kiln-train"

typedef struct kiln_kfp_gen_opts {
    const char *image;              /* NULL: KILN_KFP_DEFAULT_IMAGE */
    const char *s3_secret;          /* NULL: "kiln-s3-credentials" */
    const char *mlflow_secret;      /* NULL: "kiln-mlflow-credentials" */
} kiln_kfp_gen_opts;

/* kiln's training pipeline (download -> prepare -> train -> evaluate ->
 * register -> upload) as trees: *spec and *platform (caller frees). */
int kiln_kfp_generate(const kiln_kfp_gen_opts *o, cJSON **spec, cJSON **platform,
                      kiln_err *err);
/* The same as YAML text, exactly what pipelines/kiln-train.yaml holds. */
int kiln_kfp_generate_yaml(const kiln_kfp_gen_opts *o, char **yaml, kiln_err *err);

#endif
