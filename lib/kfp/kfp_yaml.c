/* YAML documents <-> cJSON trees with libyaml (parser events in, emitter
 * events out). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "kfp/ir.h"

#define MAX_DEPTH 64

typedef struct yparser {
    yaml_parser_t p;
    yaml_event_t ev;
    int have_ev;
    const char *name;
    int depth;
} yparser;

static int next_event(yparser *y, kiln_err *err)
{
    if (y->have_ev)
        yaml_event_delete(&y->ev);
    y->have_ev = 0;
    if (!yaml_parser_parse(&y->p, &y->ev))
        return kiln_err_set(err, KILN_EFORMAT, "%s: line %zu: %s", y->name,
                            y->p.problem_mark.line + 1,
                            y->p.problem ? y->p.problem : "malformed YAML");
    y->have_ev = 1;
    return KILN_OK;
}

static int is_int_text(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

static int is_float_text(const char *s, double *v)
{
    char *end;
    if (!strcmp(s, ".inf") || !strcmp(s, "+.inf") || !strcmp(s, "-.inf") || !strcmp(s, ".nan"))
        return 0; /* JSON cannot hold them: keep as strings */
    if (!*s || strchr("0123456789+-.", *s) == NULL)
        return 0;
    errno = 0;
    *v = strtod(s, &end);
    if (*end || errno || !isfinite(*v))
        return 0;
    /* Digits are required somewhere ("." or "-" alone are strings). */
    return strpbrk(s, "0123456789") != NULL;
}

/* A plain scalar typed by YAML 1.2's core schema; quoted ones are strings. */
static cJSON *scalar_node(const yaml_event_t *ev)
{
    const char *s = (const char *)ev->data.scalar.value;
    double d;
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return cJSON_CreateString(s);
    if (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"))
        return cJSON_CreateNull();
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        return cJSON_CreateTrue();
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return cJSON_CreateFalse();
    if (is_int_text(s) || is_float_text(s, &d))
        return cJSON_CreateNumber(strtod(s, NULL));
    return cJSON_CreateString(s);
}

static int parse_node(yparser *y, cJSON **out, kiln_err *err);

static int parse_mapping(yparser *y, cJSON *obj, kiln_err *err)
{
    for (;;) {
        if (next_event(y, err) != KILN_OK)
            return err->code;
        if (y->ev.type == YAML_MAPPING_END_EVENT)
            return KILN_OK;
        if (y->ev.type != YAML_SCALAR_EVENT)
            return kiln_err_set(err, KILN_EFORMAT, "%s: line %zu: mapping keys must be scalars",
                                y->name, y->ev.start_mark.line + 1);
        char *key = strdup((const char *)y->ev.data.scalar.value);
        size_t line = y->ev.start_mark.line + 1;
        cJSON *val = NULL;
        if (!key)
            return kiln_err_set(err, KILN_ENOMEM, "out of memory");
        if (cJSON_GetObjectItemCaseSensitive(obj, key)) {
            kiln_err_set(err, KILN_EFORMAT, "%s: line %zu: duplicate key '%s'", y->name, line, key);
            free(key);
            return KILN_EFORMAT;
        }
        if (next_event(y, err) != KILN_OK || parse_node(y, &val, err) != KILN_OK) {
            free(key);
            return err->code;
        }
        cJSON_AddItemToObject(obj, key, val);
        free(key);
    }
}

static int parse_sequence(yparser *y, cJSON *arr, kiln_err *err)
{
    for (;;) {
        cJSON *val = NULL;
        if (next_event(y, err) != KILN_OK)
            return err->code;
        if (y->ev.type == YAML_SEQUENCE_END_EVENT)
            return KILN_OK;
        if (parse_node(y, &val, err) != KILN_OK)
            return err->code;
        cJSON_AddItemToArray(arr, val);
    }
}

/* The node starting at the current event. */
static int parse_node(yparser *y, cJSON **out, kiln_err *err)
{
    int rc = KILN_OK;
    *out = NULL;
    switch (y->ev.type) {
    case YAML_SCALAR_EVENT:
        *out = scalar_node(&y->ev);
        break;
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT: {
        int map = y->ev.type == YAML_MAPPING_START_EVENT;
        if (++y->depth > MAX_DEPTH)
            return kiln_err_set(err, KILN_ELIMIT, "%s: line %zu: nested deeper than %d levels",
                                y->name, y->ev.start_mark.line + 1, MAX_DEPTH);
        *out = map ? cJSON_CreateObject() : cJSON_CreateArray();
        if (*out)
            rc = map ? parse_mapping(y, *out, err) : parse_sequence(y, *out, err);
        y->depth--;
        break;
    }
    case YAML_ALIAS_EVENT:
        return kiln_err_set(err, KILN_EUNSUPPORTED, "%s: line %zu: YAML aliases are not supported",
                            y->name, y->ev.start_mark.line + 1);
    default:
        return kiln_err_set(err, KILN_EFORMAT, "%s: line %zu: unexpected YAML event", y->name,
                            y->ev.start_mark.line + 1);
    }
    if (rc == KILN_OK && !*out)
        rc = kiln_err_set(err, KILN_ENOMEM, "out of memory");
    if (rc != KILN_OK) {
        cJSON_Delete(*out);
        *out = NULL;
    }
    return rc;
}

int kiln_kfp_yaml_parse(const char *yaml, size_t len, const char *name, cJSON **docs,
                        kiln_err *err)
{
    yparser y = {.name = name ? name : "YAML"};
    cJSON *arr = cJSON_CreateArray();
    int rc = KILN_OK;
    *docs = NULL;
    if (len > KILN_KFP_MAX_YAML_BYTES)
        rc = kiln_err_set(err, KILN_ELIMIT, "%s: %zu bytes, over the limit of %u", y.name, len,
                          KILN_KFP_MAX_YAML_BYTES);
    if (rc != KILN_OK || !arr || !yaml_parser_initialize(&y.p)) {
        cJSON_Delete(arr);
        return rc != KILN_OK ? rc : kiln_err_set(err, KILN_ENOMEM, "out of memory");
    }
    yaml_parser_set_input_string(&y.p, (const unsigned char *)yaml, len);
    for (;;) {
        if ((rc = next_event(&y, err)) != KILN_OK)
            goto fail;
        if (y.ev.type == YAML_STREAM_END_EVENT)
            break;
        if (y.ev.type != YAML_DOCUMENT_START_EVENT)
            continue; /* stream start, document end */
        cJSON *doc = NULL;
        if ((rc = next_event(&y, err)) != KILN_OK || (rc = parse_node(&y, &doc, err)) != KILN_OK)
            goto fail;
        cJSON_AddItemToArray(arr, doc);
    }
    yaml_event_delete(&y.ev);
    yaml_parser_delete(&y.p);
    *docs = arr;
    return KILN_OK;
fail:
    if (y.have_ev)
        yaml_event_delete(&y.ev);
    yaml_parser_delete(&y.p);
    cJSON_Delete(arr);
    return rc;
}

/* ---- emitting ---- */

typedef struct ybuf {
    char *data;
    size_t len, cap;
} ybuf;

static int write_handler(void *ctx, unsigned char *buffer, size_t size)
{
    ybuf *b = ctx;
    if (b->len + size + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + size + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p)
            return 0;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, buffer, size);
    b->len += size;
    b->data[b->len] = '\0';
    return 1;
}

/* A string must be quoted when a plain scalar of the same text would read
 * back as null, a boolean or a number. */
static int needs_quotes(const char *s)
{
    yaml_event_t ev = {.type = YAML_SCALAR_EVENT};
    ev.data.scalar.value = (yaml_char_t *)s;
    ev.data.scalar.style = YAML_PLAIN_SCALAR_STYLE;
    cJSON *n = scalar_node(&ev);
    int quote = !n || !cJSON_IsString(n);
    cJSON_Delete(n);
    return quote;
}

static void number_text(double v, char *buf, size_t size)
{
    if (v == floor(v) && fabs(v) < 9e15) {
        snprintf(buf, size, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static int emit(yaml_emitter_t *e, yaml_event_t *ev)
{
    return yaml_emitter_emit(e, ev) ? KILN_OK : KILN_EIO;
}

static int emit_scalar(yaml_emitter_t *e, const char *text, yaml_scalar_style_t style)
{
    yaml_event_t ev;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)strlen(text), 1,
                                      1, style))
        return KILN_ENOMEM;
    return emit(e, &ev);
}

static int emit_node(yaml_emitter_t *e, const cJSON *n)
{
    yaml_event_t ev;
    char num[64];
    const cJSON *c;
    int rc;
    if (cJSON_IsObject(n) || cJSON_IsArray(n)) {
        int map = cJSON_IsObject(n);
        int ok = map ? yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                                           YAML_BLOCK_MAPPING_STYLE)
                     : yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                            YAML_BLOCK_SEQUENCE_STYLE);
        if (!ok || emit(e, &ev) != KILN_OK)
            return KILN_EIO;
        cJSON_ArrayForEach(c, n) {
            if (map && (rc = emit_scalar(e, c->string, YAML_ANY_SCALAR_STYLE)) != KILN_OK)
                return rc;
            if ((rc = emit_node(e, c)) != KILN_OK)
                return rc;
        }
        ok = map ? yaml_mapping_end_event_initialize(&ev) : yaml_sequence_end_event_initialize(&ev);
        return ok ? emit(e, &ev) : KILN_EIO;
    }
    if (cJSON_IsString(n))
        return emit_scalar(e, n->valuestring,
                           needs_quotes(n->valuestring) ? YAML_SINGLE_QUOTED_SCALAR_STYLE
                                                        : YAML_ANY_SCALAR_STYLE);
    if (cJSON_IsNumber(n)) {
        number_text(n->valuedouble, num, sizeof num);
        return emit_scalar(e, num, YAML_PLAIN_SCALAR_STYLE);
    }
    if (cJSON_IsBool(n))
        return emit_scalar(e, cJSON_IsTrue(n) ? "true" : "false", YAML_PLAIN_SCALAR_STYLE);
    return emit_scalar(e, "null", YAML_PLAIN_SCALAR_STYLE);
}

int kiln_kfp_yaml_emit(const cJSON *docs, const char *header, char **out, kiln_err *err)
{
    yaml_emitter_t e;
    yaml_event_t ev;
    ybuf b = {0};
    int rc = KILN_OK, first = 1;
    const cJSON *doc;
    *out = NULL;
    if (header && !write_handler(&b, (unsigned char *)header, strlen(header)))
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    if (!yaml_emitter_initialize(&e)) {
        free(b.data);
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    }
    yaml_emitter_set_output(&e, write_handler, &b);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, 100);
    yaml_emitter_set_indent(&e, 2);
    if (!yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) || emit(&e, &ev) != KILN_OK)
        rc = KILN_EIO;
    cJSON_ArrayForEach(doc, docs) {
        if (rc != KILN_OK)
            break;
        if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, first) ||
            emit(&e, &ev) != KILN_OK || emit_node(&e, doc) != KILN_OK ||
            !yaml_document_end_event_initialize(&ev, 1) || emit(&e, &ev) != KILN_OK)
            rc = KILN_EIO;
        first = 0;
    }
    if (rc == KILN_OK && (!yaml_stream_end_event_initialize(&ev) || emit(&e, &ev) != KILN_OK))
        rc = KILN_EIO;
    if (rc != KILN_OK)
        kiln_err_set(err, KILN_EIO, "writing YAML: %s", e.problem ? e.problem : "out of memory");
    yaml_emitter_delete(&e);
    if (rc != KILN_OK) {
        free(b.data);
        return rc;
    }
    *out = b.data;
    return KILN_OK;
}
