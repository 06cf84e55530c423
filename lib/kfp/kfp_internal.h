/* lib/kfp/kfp_internal.h — helpers shared by lib/kfp's files (not public). */
#ifndef KILN_KFP_INTERNAL_H
#define KILN_KFP_INTERNAL_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "common/err.h"

/* Member `key` of object `n` (NULL-safe), or NULL. */
const cJSON *kfp_get(const cJSON *n, const char *key);
/* Member `key` when it is a string, else NULL. */
const char *kfp_str(const cJSON *n, const char *key);

/* Order the tasks object (name -> PipelineTaskSpec) by dependentTasks. */
int kfp_dag_order(const char *file, const cJSON *tasks, const cJSON **out, size_t max,
                  size_t *n, kiln_err *err);

#endif
