/* tests/test_tracking_support.h — helpers shared by the test_tracking_*.c
 * tests: a fresh kiln_tracking in a temp dir, REST calls with printf-built
 * JSON bodies, and field access by dotted paths ("run.info.run_id",
 * "runs.0.data.tags"). Everything is static inline so each test takes
 * what it uses. */
#ifndef KILN_TEST_TRACKING_SUPPORT_H
#define KILN_TEST_TRACKING_SUPPORT_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "support/testutil.h"
#include "tracking/tracking.h"

typedef struct tt_fixture {
    char *dir;
    char *db;
    char *artifacts;
    kiln_tracking *t;
} tt_fixture;

static inline kiln_tracking *tt_open(tt_fixture *f)
{
    kiln_err err = {0};
    kiln_tracking_options o = {.db_path = f->db, .artifacts_root = f->artifacts};
    kiln_tracking *t = kiln_tracking_open(&o, &err);
    if (!t)
        fail_msg("kiln_tracking_open: %s", err.msg);
    return t;
}

static inline int tt_setup(void **state)
{
    tt_fixture *f = calloc(1, sizeof *f);
    f->dir = kt_mkdtemp();
    f->db = kt_path(f->dir, "store.db");
    f->artifacts = kt_path(f->dir, "artifacts");
    f->t = tt_open(f);
    *state = f;
    return 0;
}

static inline int tt_teardown(void **state)
{
    tt_fixture *f = *state;
    kiln_tracking_close(f->t);
    free(f->db);
    free(f->artifacts);
    kt_rmtree_free(f->dir);
    free(f);
    return 0;
}

/* Close and reopen the store on the same files. */
static inline void tt_reopen(tt_fixture *f)
{
    kiln_tracking_close(f->t);
    f->t = tt_open(f);
}

__attribute__((format(printf, 1, 0))) static inline char *tt_vfmt(const char *fmt,
                                                                va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        fail_msg("vasprintf");
    return s;
}

/* One call; `body` is JSON text (NULL: no body). Returns the response. */
static inline cJSON *tt_call_body(kiln_tracking *t, const char *method, const char *path,
                                  const char *body, int *status)
{
    cJSON *req = NULL;
    if (body) {
        req = cJSON_Parse(body);
        if (!req)
            fail_msg("test bug: bad JSON body %s", body);
    }
    *status = -1;
    cJSON *resp = kiln_tracking_api(t, method, path, req, status);
    cJSON_Delete(req);
    if (!resp)
        fail_msg("%s %s returned NULL", method, path);
    return resp;
}

/* tt_call_body with a printf-built body (fmt NULL: none); *body keeps
 * the text for failure messages (caller frees). */
__attribute__((format(printf, 6, 0))) static inline cJSON *
tt_vcall(kiln_tracking *t, const char *method, const char *path, int *status, char **body,
         const char *fmt, va_list ap)
{
    *body = fmt ? tt_vfmt(fmt, ap) : NULL;
    return tt_call_body(t, method, path, *body, status);
}

__attribute__((format(printf, 5, 6))) static inline cJSON *
tt_call(kiln_tracking *t, const char *method, const char *path, int *status, const char *fmt, ...)
{
    char *body;
    va_list ap;
    va_start(ap, fmt);
    cJSON *resp = tt_vcall(t, method, path, status, &body, fmt, ap);
    va_end(ap);
    free(body);
    return resp;
}

__attribute__((format(printf, 4, 0))) static inline cJSON *
tt_vok(kiln_tracking *t, const char *method, const char *path, const char *fmt, va_list ap)
{
    char *body;
    int status;
    cJSON *resp = tt_vcall(t, method, path, &status, &body, fmt, ap);
    if (status != 200) {
        char *text = cJSON_PrintUnformatted(resp);
        fail_msg("%s %s %s: status %d: %s", method, path, body ? body : "", status, text);
    }
    free(body);
    return resp;
}

/* A call that must answer 200. */
__attribute__((format(printf, 4, 5))) static inline cJSON *
tt_ok(kiln_tracking *t, const char *method, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cJSON *resp = tt_vok(t, method, path, fmt, ap);
    va_end(ap);
    return resp;
}

/* A call that must answer 200, whose answer is not needed. */
__attribute__((format(printf, 4, 5))) static inline void
tt_do(kiln_tracking *t, const char *method, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cJSON_Delete(tt_vok(t, method, path, fmt, ap));
    va_end(ap);
}

/* A call that must fail with `status`, `code` and a message containing
 * `msg_part` (NULL: any). */
__attribute__((format(printf, 7, 8))) static inline void
tt_err(kiln_tracking *t, const char *method, const char *path, int status, const char *code,
       const char *msg_part, const char *fmt, ...)
{
    char *body;
    int got;
    va_list ap;
    va_start(ap, fmt);
    cJSON *resp = tt_vcall(t, method, path, &got, &body, fmt, ap);
    va_end(ap);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(resp, "error_code");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(resp, "message");
    if (got != status || !cJSON_IsString(c) || strcmp(c->valuestring, code) != 0 ||
        !cJSON_IsString(m) || (msg_part && !strstr(m->valuestring, msg_part))) {
        char *text = cJSON_PrintUnformatted(resp);
        fail_msg("%s %s %s: expected %d %s '%s', got %d %s", method, path, body ? body : "",
                 status, code, msg_part ? msg_part : "", got, text);
    }
    assert_int_equal(cJSON_GetArraySize(resp), 2);
    free(body);
    cJSON_Delete(resp);
}

/* The item at a dotted path: object keys and array indexes. */
static inline const cJSON *tt_get(const cJSON *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *cur = o;
    for (char *save = NULL, *part = strtok_r(buf, ".", &save); part && cur;
         part = strtok_r(NULL, ".", &save)) {
        if (cJSON_IsArray(cur) && part[0] >= '0' && part[0] <= '9')
            cur = cJSON_GetArrayItem(cur, atoi(part));
        else
            cur = cJSON_GetObjectItemCaseSensitive(cur, part);
    }
    return cur;
}

static inline const char *tt_str(const cJSON *o, const char *path)
{
    const cJSON *v = tt_get(o, path);
    if (!cJSON_IsString(v))
        fail_msg("%s is not a string", path);
    return v->valuestring;
}

/* A call that must answer 200 with the string `want` at the dotted path
 * `field` of its answer. */
__attribute__((format(printf, 6, 7))) static inline void
tt_ok_str(kiln_tracking *t, const char *method, const char *path, const char *field,
          const char *want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cJSON *resp = tt_vok(t, method, path, fmt, ap);
    va_end(ap);
    assert_string_equal(tt_str(resp, field), want);
    cJSON_Delete(resp);
}

/* The string `field` of every element of the array at `list_path`,
 * comma-separated, into `out`. */
static inline void tt_join(const cJSON *o, const char *list_path, const char *field, char *out,
                           size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    const cJSON *list = tt_get(o, list_path);
    for (const cJSON *e = list ? list->child : NULL; e && used < size; e = e->next)
        used += (size_t)snprintf(out + used, size - used, "%s%s", used ? "," : "",
                                 tt_str(e, field));
}

static inline double tt_num(const cJSON *o, const char *path)
{
    const cJSON *v = tt_get(o, path);
    if (!cJSON_IsNumber(v))
        fail_msg("%s is not a number", path);
    return v->valuedouble;
}

static inline int tt_len(const cJSON *o, const char *path)
{
    const cJSON *v = tt_get(o, path);
    return cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;
}

/* The value of key `key` in a list of {key, value} objects, or NULL. */
static inline const cJSON *tt_kv(const cJSON *o, const char *list_path, const char *key)
{
    const cJSON *list = tt_get(o, list_path);
    for (const cJSON *e = list ? list->child : NULL; e; e = e->next) {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(e, "key");
        if (cJSON_IsString(k) && strcmp(k->valuestring, key) == 0)
            return cJSON_GetObjectItemCaseSensitive(e, "value");
    }
    return NULL;
}

/* Exactly these keys in object `o` (a NULL-terminated list). */
static inline void tt_keys(const cJSON *o, const char *const *keys)
{
    int n = 0;
    for (; keys[n]; n++)
        if (!cJSON_GetObjectItemCaseSensitive(o, keys[n]))
            fail_msg("missing field '%s' in %s", keys[n], cJSON_PrintUnformatted(o));
    if (cJSON_GetArraySize(o) != n)
        fail_msg("expected %d fields, got %d: %s", n, cJSON_GetArraySize(o),
                 cJSON_PrintUnformatted(o));
}

#define TT_API "/api/2.0/mlflow/"

static inline char *tt_create_experiment(kiln_tracking *t, const char *name)
{
    cJSON *r = tt_ok(t, "POST", TT_API "experiments/create", "{\"name\": \"%s\"}", name);
    char *id = strdup(tt_str(r, "experiment_id"));
    cJSON_Delete(r);
    return id;
}

static inline char *tt_create_run(kiln_tracking *t, const char *exp_id)
{
    cJSON *r = tt_ok(t, "POST", TT_API "runs/create",
                     "{\"experiment_id\": \"%s\", \"start_time\": 1000}", exp_id);
    char *id = strdup(tt_str(r, "run.info.run_id"));
    cJSON_Delete(r);
    return id;
}

#endif
