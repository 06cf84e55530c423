/* kiln's training pipeline as a KFP v2 PipelineSpec: the one place that
 * says which steps exist, how they are wired and which image runs them.
 * pipelines/kiln-train.yaml is this file's output (`kiln pipeline compile`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kfp/ir.h"

/* Pipeline parameters, named after seed 004's run_train_pipeline.py flags. */
typedef struct param_def {
    const char *name, *type, *def, *desc;
} param_def;

static const param_def pipeline_params[] = {
    {"minio_endpoint", "STRING", "minio-service.kubeflow:9000", "MinIO host:port (or URL)"},
    {"source_data_bucket", "STRING", "ml-data", "bucket holding the data zip"},
    {"source_data_object", "STRING", "dry-wet-data.zip", "the zip of class folders"},
    {"destination_model_bucket", "STRING", "ml-models", "bucket the model package goes to"},
    {"destination_model_name", "STRING", "dry-wet-road-classifier", "folder in that bucket"},
    {"mlflow_tracking_uri", "STRING", "http://mlflow-server.kubeflow.svc:5000", "MLflow server"},
    {"mlflow_experiment_name", "STRING", "dry-wet-road-classifier", "MLflow experiment"},
    {"registered_model_name", "STRING", "dry-wet-road-classifier", "MLflow registered model"},
    {"epochs", "NUMBER_INTEGER", "10", "training epochs"},
    {"batch_size", "NUMBER_INTEGER", "32", "images per step"},
    {"image_size", "NUMBER_INTEGER", "224", "side of the prepared images"},
    {"model_variant", "STRING", "b0", "EfficientNet b0..b3"},
    {"learning_rate", "NUMBER_DOUBLE", "0.001", "peak learning rate"},
    {"min_accuracy_gain", "NUMBER_DOUBLE", "0.0",
     "promote when test accuracy >= Production's + this"},
    {"train_config", "STRING", "",
     "kiln config YAML for train.* and augment.* (e.g. 'augment: {random_resized_crop: false}'); "
     "epochs, batch_size, model_variant and learning_rate override it"},
};
#define N_PARAMS (sizeof pipeline_params / sizeof pipeline_params[0])

static const param_def *find_param(const char *name)
{
    for (size_t i = 0; i < N_PARAMS; i++)
        if (!strcmp(pipeline_params[i].name, name))
            return &pipeline_params[i];
    return NULL;
}

/* One step. Inputs are "name" (a pipeline parameter of the same name),
 * "name=task.output" (an upstream output parameter), "@name:Schema=task.key"
 * (an upstream artifact); outputs "name:TYPE" or "@name:Schema". */
typedef struct step_def {
    const char *name;
    const char *inputs[10];
    const char *outputs[4];
    const char *args[24];
    int gpu, retries, no_cache;
    const char *secrets; /* "s3", "s3,mlflow" */
} step_def;

#define IN_ART(n) "{{$.inputs.artifacts['" n "'].path}}"
#define OUT_ART(n) "{{$.outputs.artifacts['" n "'].path}}"
#define IN_PAR(n) "{{$.inputs.parameters['" n "']}}"
#define OUT_PAR(n) "{{$.outputs.parameters['" n "'].output_file}}"

static const step_def steps[] = {
    {"download", {"minio_endpoint", "source_data_bucket", "source_data_object"},
     {"@data_zip:system.Dataset"},
     {"--endpoint", IN_PAR("minio_endpoint"), "--bucket", IN_PAR("source_data_bucket"), "--object",
      IN_PAR("source_data_object"), "--out", OUT_ART("data_zip")},
     0, 3, 1, "s3"},
    {"prepare", {"@data_zip:system.Dataset=download.data_zip", "image_size"},
     {"@dataset:system.Dataset"},
     {"--zip", IN_ART("data_zip"), "--image-size", IN_PAR("image_size"), "--out", OUT_ART("dataset")},
     0, 0, 0, NULL},
    {"train", {"@dataset:system.Dataset=prepare.dataset", "model_variant", "epochs", "batch_size",
               "learning_rate", "mlflow_tracking_uri", "mlflow_experiment_name", "train_config"},
     {"@model:system.Model", "run_id:STRING"},
     {"--dataset", IN_ART("dataset"), "--model-variant", IN_PAR("model_variant"), "--epochs",
      IN_PAR("epochs"), "--batch-size", IN_PAR("batch_size"), "--learning-rate",
      IN_PAR("learning_rate"), "--mlflow-tracking-uri", IN_PAR("mlflow_tracking_uri"),
      "--experiment-name", IN_PAR("mlflow_experiment_name"), "--config-yaml",
      IN_PAR("train_config"), "--out", OUT_ART("model"), "--run-id-file", OUT_PAR("run_id")},
     1, 0, 0, "s3,mlflow"},
    {"evaluate", {"@model:system.Model=train.model", "@dataset:system.Dataset=prepare.dataset",
                  "run_id=train.run_id", "mlflow_tracking_uri"},
     {"@metrics:system.Metrics", "@classification_metrics:system.ClassificationMetrics",
      "test_accuracy:NUMBER_DOUBLE"},
     {"--executor-input", "{{$}}"},
     0, 0, 0, "s3,mlflow"},
    {"register", {"run_id=train.run_id", "test_accuracy=evaluate.test_accuracy",
                  "registered_model_name", "mlflow_tracking_uri", "min_accuracy_gain"},
     {"model_version:STRING", "promoted:BOOLEAN"},
     {"--mlflow-tracking-uri", IN_PAR("mlflow_tracking_uri"), "--registered-model-name",
      IN_PAR("registered_model_name"), "--run-id", IN_PAR("run_id"), "--test-accuracy",
      IN_PAR("test_accuracy"), "--min-accuracy-gain", IN_PAR("min_accuracy_gain"),
      "--model-version-file", OUT_PAR("model_version"), "--promoted-file", OUT_PAR("promoted")},
     0, 0, 0, "s3,mlflow"},
    {"upload", {"@model:system.Model=train.model", "model_version=register.model_version",
                "promoted=register.promoted", "minio_endpoint", "destination_model_bucket",
                "destination_model_name"},
     {NULL},
     {"--model", IN_ART("model"), "--endpoint", IN_PAR("minio_endpoint"), "--bucket",
      IN_PAR("destination_model_bucket"), "--name", IN_PAR("destination_model_name"),
      "--model-version", IN_PAR("model_version"), "--promoted", IN_PAR("promoted")},
     0, 0, 0, "s3"},
};
#define N_STEPS (sizeof steps / sizeof steps[0])

/* Secret name -> (secret key = env var) pairs. */
static const char *const s3_keys[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"};
static const char *const mlflow_keys[] = {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"};

static cJSON *obj(cJSON *parent, const char *key)
{
    cJSON *o = cJSON_GetObjectItemCaseSensitive(parent, key);
    return o ? o : cJSON_AddObjectToObject(parent, key);
}

static cJSON *type_schema(const char *schema)
{
    cJSON *a = cJSON_CreateObject();
    cJSON *t = cJSON_AddObjectToObject(a, "artifactType");
    cJSON_AddStringToObject(t, "schemaTitle", schema);
    cJSON_AddStringToObject(t, "schemaVersion", "0.0.1");
    return a;
}

static cJSON *default_value(const param_def *p)
{
    if (!strcmp(p->type, "STRING"))
        return cJSON_CreateString(p->def);
    return cJSON_CreateNumber(strtod(p->def, NULL));
}

/* Output type of `task.key` (parameters only). */
static const char *output_type(const char *task, const char *key)
{
    for (size_t i = 0; i < N_STEPS; i++) {
        if (strcmp(steps[i].name, task))
            continue;
        for (int j = 0; steps[i].outputs[j]; j++) {
            const char *o = steps[i].outputs[j], *colon = strchr(o, ':');
            if (o[0] != '@' && colon && strlen(key) == (size_t)(colon - o) &&
                !strncmp(o, key, strlen(key)))
                return colon + 1;
        }
    }
    return NULL;
}

/* "a=b.c" -> name a, producer b, key c (buffers of 64). */
static void split_wire(const char *spec, char *name, char *prod, char *key, char *schema)
{
    const char *s = spec[0] == '@' ? spec + 1 : spec;
    const char *colon = strchr(s, ':'), *eq = strchr(s, '=');
    size_t n = colon && (!eq || colon < eq) ? (size_t)(colon - s) : eq ? (size_t)(eq - s) : strlen(s);
    snprintf(name, 64, "%.*s", (int)n, s);
    schema[0] = prod[0] = key[0] = '\0';
    if (colon && (!eq || colon < eq))
        snprintf(schema, 64, "%.*s", (int)(eq ? (size_t)(eq - colon - 1) : strlen(colon + 1)),
                 colon + 1);
    if (eq) {
        const char *dot = strchr(eq + 1, '.');
        snprintf(prod, 64, "%.*s", dot ? (int)(dot - eq - 1) : 0, eq + 1);
        snprintf(key, 64, "%s", dot ? dot + 1 : "");
    }
}

static void add_dependency(cJSON *task, const char *prod)
{
    cJSON *deps = cJSON_GetObjectItemCaseSensitive(task, "dependentTasks"), *d;
    if (!deps)
        deps = cJSON_AddArrayToObject(task, "dependentTasks");
    cJSON_ArrayForEach(d, deps)
        if (!strcmp(d->valuestring, prod))
            return;
    cJSON_AddItemToArray(deps, cJSON_CreateString(prod));
}

static int add_step(const step_def *s, cJSON *components, cJSON *executors, cJSON *tasks,
                    const char *image)
{
    char comp_name[80], exec_name[80], name[64], prod[64], key[64], schema[64];
    snprintf(comp_name, sizeof comp_name, "comp-%s", s->name);
    snprintf(exec_name, sizeof exec_name, "exec-%s", s->name);
    cJSON *comp = cJSON_AddObjectToObject(components, comp_name);
    cJSON *task = cJSON_AddObjectToObject(tasks, s->name);
    cJSON_AddStringToObject(comp, "executorLabel", exec_name);
    cJSON *caching = cJSON_AddObjectToObject(task, "cachingOptions");
    cJSON_AddBoolToObject(caching, "enableCache", !s->no_cache);
    cJSON_AddStringToObject(obj(task, "componentRef"), "name", comp_name);
    for (int i = 0; s->inputs[i]; i++) {
        const char *in = s->inputs[i];
        split_wire(in, name, prod, key, schema);
        cJSON *defs = obj(obj(comp, "inputDefinitions"), in[0] == '@' ? "artifacts" : "parameters");
        cJSON *wires = obj(obj(task, "inputs"), in[0] == '@' ? "artifacts" : "parameters");
        cJSON *w = cJSON_AddObjectToObject(wires, name);
        if (in[0] == '@') {
            cJSON_AddItemToObject(defs, name, type_schema(schema));
            cJSON *o = cJSON_AddObjectToObject(w, "taskOutputArtifact");
            cJSON_AddStringToObject(o, "outputArtifactKey", key);
            cJSON_AddStringToObject(o, "producerTask", prod);
        } else if (prod[0]) {
            const char *type = output_type(prod, key);
            if (!type)
                return KILN_EINVAL;
            cJSON_AddStringToObject(cJSON_AddObjectToObject(defs, name), "parameterType", type);
            cJSON *o = cJSON_AddObjectToObject(w, "taskOutputParameter");
            cJSON_AddStringToObject(o, "outputParameterKey", key);
            cJSON_AddStringToObject(o, "producerTask", prod);
        } else {
            const param_def *p = find_param(name);
            if (!p)
                return KILN_EINVAL;
            cJSON_AddStringToObject(cJSON_AddObjectToObject(defs, name), "parameterType", p->type);
            cJSON_AddStringToObject(w, "componentInputParameter", name);
        }
        if (prod[0])
            add_dependency(task, prod);
    }
    for (int i = 0; s->outputs[i]; i++) {
        const char *o = s->outputs[i];
        split_wire(o, name, prod, key, schema);
        cJSON *defs = obj(obj(comp, "outputDefinitions"), o[0] == '@' ? "artifacts" : "parameters");
        if (o[0] == '@')
            cJSON_AddItemToObject(defs, name, type_schema(schema));
        else
            cJSON_AddStringToObject(cJSON_AddObjectToObject(defs, name), "parameterType", schema);
    }
    cJSON *deps = cJSON_DetachItemFromObjectCaseSensitive(task, "dependentTasks");
    if (deps)
        cJSON_AddItemToObject(task, "dependentTasks", deps);
    if (s->retries) {
        cJSON *r = cJSON_AddObjectToObject(task, "retryPolicy");
        cJSON_AddStringToObject(r, "backoffDuration", "10s");
        cJSON_AddNumberToObject(r, "backoffFactor", 2);
        cJSON_AddStringToObject(r, "backoffMaxDuration", "300s");
        cJSON_AddNumberToObject(r, "maxRetryCount", s->retries);
    }
    cJSON_AddStringToObject(obj(task, "taskInfo"), "name", s->name);

    cJSON *ctr = cJSON_AddObjectToObject(cJSON_AddObjectToObject(executors, exec_name), "container");
    cJSON *args = cJSON_AddArrayToObject(ctr, "args");
    for (int i = 0; s->args[i]; i++)
        cJSON_AddItemToArray(args, cJSON_CreateString(s->args[i]));
    cJSON *cmd = cJSON_AddArrayToObject(ctr, "command");
    cJSON_AddItemToArray(cmd, cJSON_CreateString(KILN_KFP_COMPONENT_PROGRAM));
    cJSON_AddItemToArray(cmd, cJSON_CreateString(s->name));
    cJSON_AddStringToObject(ctr, "image", image);
    if (s->gpu) {
        /* Both spellings: KFP >= 2.3 reads resource*, older backends type/count. */
        cJSON *acc = cJSON_AddObjectToObject(cJSON_AddObjectToObject(ctr, "resources"),
                                             "accelerator");
        cJSON_AddStringToObject(acc, "count", "1");
        cJSON_AddStringToObject(acc, "resourceCount", "1");
        cJSON_AddStringToObject(acc, "resourceType", "nvidia.com/gpu");
        cJSON_AddStringToObject(acc, "type", "nvidia.com/gpu");
    }
    return KILN_OK;
}

static void add_secret(cJSON *list, const char *secret, const char *const *keys, int n)
{
    cJSON *s = cJSON_CreateObject();
    cJSON *k2e = cJSON_AddArrayToObject(s, "keyToEnv");
    for (int i = 0; i < n; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "envVar", keys[i]);
        cJSON_AddStringToObject(m, "secretKey", keys[i]);
        cJSON_AddItemToArray(k2e, m);
    }
    cJSON_AddStringToObject(s, "secretName", secret);
    cJSON_AddItemToArray(list, s);
}

static cJSON *platform_doc(const kiln_kfp_gen_opts *o)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *ex = obj(obj(obj(obj(doc, "platforms"), "kubernetes"), "deploymentSpec"), "executors");
    for (size_t i = 0; i < N_STEPS; i++) {
        if (!steps[i].secrets)
            continue;
        char label[80];
        snprintf(label, sizeof label, "exec-%s", steps[i].name);
        cJSON *list = cJSON_AddArrayToObject(cJSON_AddObjectToObject(ex, label), "secretAsEnv");
        if (strstr(steps[i].secrets, "s3"))
            add_secret(list, o->s3_secret ? o->s3_secret : "kiln-s3-credentials", s3_keys, 2);
        if (strstr(steps[i].secrets, "mlflow"))
            add_secret(list, o->mlflow_secret ? o->mlflow_secret : "kiln-mlflow-credentials",
                       mlflow_keys, 2);
    }
    return doc;
}

int kiln_kfp_generate(const kiln_kfp_gen_opts *o, cJSON **spec, cJSON **platform,
                      kiln_err *err)
{
    kiln_kfp_gen_opts def = {0};
    const kiln_kfp_gen_opts *opts = o ? o : &def;
    const char *image = opts->image && *opts->image ? opts->image : KILN_KFP_DEFAULT_IMAGE;
    cJSON *s = cJSON_CreateObject();
    *spec = *platform = NULL;
    cJSON *components = cJSON_AddObjectToObject(s, "components");
    cJSON *executors = cJSON_AddObjectToObject(cJSON_AddObjectToObject(s, "deploymentSpec"),
                                               "executors");
    cJSON *info = cJSON_AddObjectToObject(s, "pipelineInfo");
    cJSON_AddStringToObject(info, "description",
                            "kiln: download a zip of class folders from MinIO, prepare, train an "
                            "EfficientNet, evaluate, register in MLflow (promotion gate), upload "
                            "the model package");
    cJSON_AddStringToObject(info, "name", KILN_KFP_PIPELINE_NAME);
    cJSON *root = cJSON_AddObjectToObject(s, "root");
    cJSON *tasks = cJSON_AddObjectToObject(cJSON_AddObjectToObject(root, "dag"), "tasks");
    cJSON *params = cJSON_AddObjectToObject(cJSON_AddObjectToObject(root, "inputDefinitions"),
                                            "parameters");
    for (size_t i = 0; i < N_PARAMS; i++) {
        cJSON *p = cJSON_AddObjectToObject(params, pipeline_params[i].name);
        cJSON_AddItemToObject(p, "defaultValue", default_value(&pipeline_params[i]));
        cJSON_AddStringToObject(p, "description", pipeline_params[i].desc);
        cJSON_AddBoolToObject(p, "isOptional", 1);
        cJSON_AddStringToObject(p, "parameterType", pipeline_params[i].type);
    }
    for (size_t i = 0; i < N_STEPS; i++) {
        if (add_step(&steps[i], components, executors, tasks, image) != KILN_OK) {
            cJSON_Delete(s);
            return kiln_err_set(err, KILN_EINVAL, "pipeline generator: step '%s' is miswired",
                                steps[i].name);
        }
    }
    cJSON_AddStringToObject(s, "schemaVersion", "2.1.0");
    cJSON_AddStringToObject(s, "sdkVersion", "kiln-" KILN_VERSION);
    *spec = s;
    *platform = platform_doc(opts);
    return KILN_OK;
}

int kiln_kfp_generate_yaml(const kiln_kfp_gen_opts *o, char **yaml, kiln_err *err)
{
    cJSON *spec, *platform;
    *yaml = NULL;
    if (kiln_kfp_generate(o, &spec, &platform, err) != KILN_OK)
        return err ? err->code : KILN_EINVAL;
    cJSON *docs = cJSON_CreateArray();
    cJSON_AddItemToArray(docs, spec);
    cJSON_AddItemToArray(docs, platform);
    int rc = kiln_kfp_yaml_emit(docs,
                                "# PIPELINE DEFINITION\n"
                                "# Name: " KILN_KFP_PIPELINE_NAME "\n"
                                "# Generated by `kiln pipeline compile`; do not edit by hand.\n",
                                yaml, err);
    cJSON_Delete(docs);
    return rc;
}
