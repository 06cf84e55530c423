/* lib/tracking/api_json.c — reading request fields the way MLflow's
 * handlers do (protobuf JSON parsing + the handlers' schema checks), and
 * building responses the way MLflow's message_to_json prints them.
 *
 * Requests: a JSON null is an absent field; int64 fields take numbers or
 * decimal strings; doubles also "NaN", "Infinity", "-Infinity"; booleans
 * also "true"/"false"; GET fields are strings (a repeated key is an array
 * whose first element a scalar field takes). Responses: empty repeated
 * fields are left out, int64 are JSON numbers, NaN/±Infinity are strings.
 */
#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracking/tracking_internal.h"

#define SEE_DOCS " See the API docs for more information about request parameters."

static const char *python_type(const cJSON *v)
{
    if (cJSON_IsString(v))
        return "str";
    if (cJSON_IsBool(v))
        return "bool";
    if (cJSON_IsNumber(v))
        return v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 9.2e18 ? "int"
                                                                                        : "float";
    if (cJSON_IsArray(v))
        return "list";
    if (cJSON_IsObject(v))
        return "dict";
    return "NoneType";
}

static int missing(trk_req *r, const char *path)
{
    return trk_fail(r, TRK_INVALID, "Missing value for required parameter '%s'." SEE_DOCS, path);
}

/* MLflow's invalid_value(): the value as compact JSON and its Python type. */
static int invalid(trk_req *r, const char *path, const cJSON *v)
{
    char *json = cJSON_PrintUnformatted(v);
    if (!json)
        r->oom = 1;
    trk_fail(r, TRK_INVALID,
             "Invalid value %.300s for parameter '%s' supplied:  Hint: Value was of type '%s'."
             SEE_DOCS,
             json ? json : "?", path, python_type(v));
    free(json);
    return -1;
}

static const cJSON *field_in(const trk_req *r, const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (v && r->is_get && cJSON_IsArray(v))
        v = v->child;
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int get_str(trk_req *r, const cJSON *v, const char *path, int required, const char **out)
{
    *out = NULL;
    if (!v)
        return required ? missing(r, path) : 0;
    if (!cJSON_IsString(v))
        return invalid(r, path, v);
    if (required && !*v->valuestring)
        return missing(r, path);
    *out = v->valuestring;
    return 0;
}

static int parse_i64_text(const char *s, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (errno || end == s || *end || (*s != '-' && (*s < '0' || *s > '9')))
        return -1;
    *out = n;
    return 0;
}

static int get_i64(trk_req *r, const cJSON *v, const char *path, int required, int64_t *out,
                   int *present)
{
    int dummy;
    if (!present)
        present = &dummy;
    *present = 0;
    if (!v)
        return required ? missing(r, path) : 0;
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d != floor(d) || d < -9.2e18 || d > 9.2e18)
            return invalid(r, path, v);
        *out = (int64_t)d;
    } else if (!cJSON_IsString(v) || parse_i64_text(v->valuestring, out) != 0) {
        return (cJSON_IsString(v) && !*v->valuestring && required) ? missing(r, path)
                                                                    : invalid(r, path, v);
    }
    *present = 1;
    return 0;
}

int trk_parse_double_text(const char *s, double *out)
{
    if (strcmp(s, "NaN") == 0) {
        *out = NAN;
        return 0;
    }
    if (strcmp(s, "Infinity") == 0 || strcmp(s, "-Infinity") == 0) {
        *out = *s == '-' ? -INFINITY : INFINITY;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    double d = strtod(s, &end);
    /* strtod also reads "nan" and "inf"; protobuf's JSON does not. */
    if (end == s || *end || isnan(d) || isinf(d))
        return -1;
    *out = d;
    return 0;
}

static int get_double(trk_req *r, const cJSON *v, const char *path, int required, double *out,
                      int *present)
{
    *present = 0;
    if (!v)
        return required ? missing(r, path) : 0;
    if (cJSON_IsNumber(v))
        *out = v->valuedouble;
    else if (!cJSON_IsString(v) || trk_parse_double_text(v->valuestring, out) != 0)
        return invalid(r, path, v);
    *present = 1;
    return 0;
}

int trk_req_str(trk_req *r, const char *name, int required, const char **out)
{
    return get_str(r, field_in(r, r->body, name), name, required, out);
}

int trk_req_i64(trk_req *r, const char *name, int required, int64_t *out, int *present)
{
    return get_i64(r, field_in(r, r->body, name), name, required, out, present);
}

int trk_req_double(trk_req *r, const char *name, int required, double *out, int *present)
{
    int dummy;
    return get_double(r, field_in(r, r->body, name), name, required, out,
                      present ? present : &dummy);
}

int trk_req_bool(trk_req *r, const char *name, int required, int *out, int *present)
{
    const cJSON *v = field_in(r, r->body, name);
    int dummy;
    if (!present)
        present = &dummy;
    *present = 0;
    if (!v)
        return required ? missing(r, name) : 0;
    if (cJSON_IsBool(v))
        *out = cJSON_IsTrue(v);
    else if (cJSON_IsString(v) && strcmp(v->valuestring, "true") == 0)
        *out = 1;
    else if (cJSON_IsString(v) && strcmp(v->valuestring, "false") == 0)
        *out = 0;
    else
        return invalid(r, name, v);
    *present = 1;
    return 0;
}

int trk_req_run_id(trk_req *r, const char **out)
{
    const cJSON *v = field_in(r, r->body, "run_id");
    const cJSON *legacy = field_in(r, r->body, "run_uuid");
    if ((!v || (cJSON_IsString(v) && !*v->valuestring)) && legacy)
        return get_str(r, legacy, "run_uuid", 1, out);
    return get_str(r, v, "run_id", 1, out);
}

int trk_req_str_list(trk_req *r, const char *name, const cJSON **items, int *count)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->body, name);
    *items = NULL;
    *count = 0;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (r->is_get && cJSON_IsString(v)) {
        *items = v;
        *count = 1;
        return 0;
    }
    if (!cJSON_IsArray(v))
        return invalid(r, name, v);
    for (const cJSON *e = v->child; e; e = e->next)
        if (!cJSON_IsString(e))
            return invalid(r, name, v);
    *items = v;
    *count = cJSON_GetArraySize(v);
    return 0;
}

const char *trk_str_at(const cJSON *items, int i)
{
    if (cJSON_IsString(items))
        return i == 0 ? items->valuestring : NULL;
    const cJSON *e = cJSON_GetArrayItem(items, i);
    return e ? e->valuestring : NULL;
}

int trk_req_obj_list(trk_req *r, const char *name, const cJSON **items, int *count)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->body, name);
    *items = NULL;
    *count = 0;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsArray(v))
        return invalid(r, name, v);
    for (const cJSON *e = v->child; e; e = e->next)
        if (!cJSON_IsObject(e))
            return invalid(r, name, v);
    *items = v;
    *count = cJSON_GetArraySize(v);
    return 0;
}

static void item_path(char *out, size_t size, const char *list, int i, const char *name)
{
    snprintf(out, size, "%s[%d].%s", list, i, name);
}

int trk_item_str(trk_req *r, const cJSON *obj, const char *list, int i, const char *name,
                 int required, const char **out)
{
    char path[128];
    item_path(path, sizeof path, list, i, name);
    return get_str(r, field_in(r, obj, name), path, required, out);
}

int trk_item_i64(trk_req *r, const cJSON *obj, const char *list, int i, const char *name,
                 int required, int64_t *out, int *present)
{
    char path[128];
    item_path(path, sizeof path, list, i, name);
    return get_i64(r, field_in(r, obj, name), path, required, out, present);
}

int trk_item_double(trk_req *r, const cJSON *obj, const char *list, int i, const char *name,
                    int required, double *out)
{
    char path[128];
    int present;
    item_path(path, sizeof path, list, i, name);
    return get_double(r, field_in(r, obj, name), path, required, out, &present);
}

/* --- responses --- */

static void check(trk_req *r, const void *added)
{
    if (!added)
        r->oom = 1;
}

void trk_put_str(trk_req *r, cJSON *o, const char *k, const char *v)
{
    check(r, cJSON_AddStringToObject(o, k, v ? v : ""));
}

void trk_put_i64(trk_req *r, cJSON *o, const char *k, int64_t v)
{
    check(r, cJSON_AddNumberToObject(o, k, (double)v));
}

void trk_put_double(trk_req *r, cJSON *o, const char *k, double v)
{
    if (isnan(v))
        check(r, cJSON_AddStringToObject(o, k, "NaN"));
    else if (isinf(v))
        check(r, cJSON_AddStringToObject(o, k, v > 0 ? "Infinity" : "-Infinity"));
    else
        check(r, cJSON_AddNumberToObject(o, k, v));
}

void trk_put_bool(trk_req *r, cJSON *o, const char *k, int v)
{
    check(r, cJSON_AddBoolToObject(o, k, v));
}

cJSON *trk_put_obj(trk_req *r, cJSON *o, const char *k)
{
    cJSON *c = cJSON_AddObjectToObject(o, k);
    check(r, c);
    return c;
}

cJSON *trk_put_arr(trk_req *r, cJSON *o, const char *k)
{
    cJSON *a = cJSON_GetObjectItemCaseSensitive(o, k);
    if (a)
        return a;
    a = cJSON_AddArrayToObject(o, k);
    check(r, a);
    return a;
}

cJSON *trk_arr_add_obj(trk_req *r, cJSON *arr)
{
    cJSON *o = arr ? cJSON_CreateObject() : NULL;
    if (!o || !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        r->oom = 1;
        return NULL;
    }
    return o;
}

void trk_put_kv(trk_req *r, cJSON *o, const char *list, const char *key, const char *value)
{
    cJSON *item = trk_arr_add_obj(r, trk_put_arr(r, o, list));
    if (!item)
        return;
    trk_put_str(r, item, "key", key);
    trk_put_str(r, item, "value", value);
}

int trk_put_kv_rows_at(trk_req *r, const char *file, int line, cJSON *o, const char *list,
                       sqlite3_stmt *st)
{
    if (!st)
        return -1;
    int rc;
    while ((rc = trk_step_at(r, file, line, st)) == 1)
        trk_put_kv(r, o, list, trk_col_text(st, 0), trk_col_text(st, 1));
    sqlite3_finalize(st);
    return rc < 0 ? -1 : 0;
}

/* --- paging --- */

int trk_page_token_parse(trk_req *r, const char *token, int64_t *offset)
{
    *offset = 0;
    if (!token || !*token)
        return 0;
    size_t n = strlen(token);
    unsigned char *raw = malloc(n + 4);
    if (!raw) {
        r->oom = 1;
        return trk_fail(r, TRK_INTERNAL, "out of memory");
    }
    int len = (n % 4 == 0) ? EVP_DecodeBlock(raw, (const unsigned char *)token, (int)n) : -1;
    if (len < 0) {
        free(raw);
        return trk_fail(r, TRK_INVALID, "Invalid page token, could not base64-decode");
    }
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    for (size_t i = n; i > 0 && token[i - 1] == '='; i--)
        len--;
    raw[len < 0 ? 0 : len] = '\0';
    cJSON *doc = cJSON_Parse((const char *)raw);
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(doc, "offset");
    int ok = cJSON_IsNumber(off) && off->valuedouble >= 0 &&
             off->valuedouble == floor(off->valuedouble) && off->valuedouble < 9e15;
    if (ok)
        *offset = (int64_t)off->valuedouble;
    else
        trk_fail(r, TRK_INVALID, "Invalid page token, decoded value=%.200s", (const char *)raw);
    cJSON_Delete(doc);
    free(raw);
    return ok ? 0 : -1;
}

void trk_page_token_put(trk_req *r, cJSON *resp, int64_t offset)
{
    char json[64];
    unsigned char b64[128];
    int n = snprintf(json, sizeof json, "{\"offset\": %lld}", (long long)offset);
    EVP_EncodeBlock(b64, (const unsigned char *)json, n);
    trk_put_str(r, resp, "next_page_token", (const char *)b64);
}

int trk_req_max_results(trk_req *r, int64_t dflt, int64_t max, int store_style, int64_t *out)
{
    int present = 0;
    if (trk_req_i64(r, "max_results", 0, out, &present) != 0)
        return -1;
    if (!present) {
        *out = dflt;
        return 0;
    }
    if (*out > max && !store_style)
        return invalid(r, "max_results", field_in(r, r->body, "max_results"));
    if (*out > max)
        return trk_fail(r, TRK_INVALID,
                        "Invalid value for request parameter max_results. It must be at most "
                        "%lld, but got %lld",
                        (long long)max, (long long)*out);
    if (*out < 1)
        return trk_fail(r, TRK_INVALID,
                        "Invalid value for request parameter max_results. It must be a positive "
                        "integer, but got %lld",
                        (long long)*out);
    return 0;
}
