/* libFuzzer: arbitrary bytes as a KFP IR YAML file — parsed (libyaml into
 * cJSON), validated, ordered, its placeholders resolved against an empty
 * executor input, written back as YAML and parsed again. Nothing may crash,
 * leak or read out of bounds; a valid spec must survive the round trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kfp/ir.h"

static void resolve_all(const kiln_kfp_ir *ir)
{
    const cJSON *ex, *s;
    cJSON *in = cJSON_Parse("{\"inputs\":{\"parameterValues\":{\"x\":1}},\"outputs\":{}}");
    cJSON_ArrayForEach(ex, cJSON_GetObjectItem(cJSON_GetObjectItem(ir->spec, "deploymentSpec"),
                                               "executors")) {
        cJSON_ArrayForEach(s, cJSON_GetObjectItem(cJSON_GetObjectItem(ex, "container"), "args")) {
            char *out = NULL;
            kiln_err err = {0};
            if (cJSON_IsString(s) &&
                kiln_kfp_placeholders_resolve(s->valuestring, in, &out, &err) == KILN_OK)
                free(out);
        }
    }
    cJSON_Delete(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kiln_err err = {0};
    kiln_kfp_ir *ir = kiln_kfp_ir_parse((const char *)data, size, "fuzz.yaml", &err);
    if (!ir)
        return 0;
    const cJSON *tasks[KILN_KFP_MAX_TASKS];
    size_t n = 0;
    if (kiln_kfp_ir_order(ir, tasks, KILN_KFP_MAX_TASKS, &n, &err) != KILN_OK)
        abort(); /* validation accepted it: ordering must work */
    resolve_all(ir);
    cJSON *docs = cJSON_CreateArray();
    cJSON_AddItemToArray(docs, cJSON_Duplicate(ir->spec, 1));
    char *yaml = NULL;
    if (kiln_kfp_yaml_emit(docs, NULL, &yaml, &err) == KILN_OK) {
        cJSON *again = NULL;
        if (kiln_kfp_yaml_parse(yaml, strlen(yaml), "again.yaml", &again, &err) != KILN_OK ||
            !cJSON_Compare(cJSON_GetArrayItem(again, 0), ir->spec, 1))
            abort(); /* what kiln writes, kiln reads back the same */
        cJSON_Delete(again);
        free(yaml);
    }
    cJSON_Delete(docs);
    kiln_kfp_ir_free(ir);
    return 0;
}
