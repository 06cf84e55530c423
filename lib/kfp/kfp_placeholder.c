/* KFP v2 string placeholders ({{$...}}): resolving them against an executor
 * input, checking them against a component's declarations, and artifact
 * URIs as the launcher mounts them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kfp/ir.h"

/* One parsed placeholder: {{$}} or {{$.<side>.<kind>['<name>'][.<field>]}},
 * or {{$.outputs.output_file}}. */
typedef struct ph {
    int whole;           /* {{$}} */
    int output_file;     /* {{$.outputs.output_file}} */
    int outputs;         /* 0 inputs, 1 outputs */
    int artifact;        /* 0 parameters, 1 artifacts */
    char name[256];
    char field[32];      /* "", "path", "uri", "output_file" */
} ph;

static int parse_ph(const char *body, size_t len, ph *p, kiln_err *err)
{
    char text[512];
    const char *s;
    memset(p, 0, sizeof *p);
    if (len >= sizeof text)
        return kiln_err_set(err, KILN_EINVAL, "placeholder too long: {{%.40s...}}", body);
    memcpy(text, body, len);
    text[len] = '\0';
    if (!strcmp(text, "$")) {
        p->whole = 1;
        return KILN_OK;
    }
    if (!strcmp(text, "$.outputs.output_file")) {
        p->output_file = 1;
        return KILN_OK;
    }
    s = text;
    if (!strncmp(s, "$.inputs.", 9)) {
        s += 9;
    } else if (!strncmp(s, "$.outputs.", 10)) {
        p->outputs = 1;
        s += 10;
    } else {
        goto bad;
    }
    if (!strncmp(s, "parameters['", 12)) {
        s += 12;
    } else if (!strncmp(s, "artifacts['", 11)) {
        p->artifact = 1;
        s += 11;
    } else {
        goto bad;
    }
    const char *q = strstr(s, "']");
    if (!q || q == s || (size_t)(q - s) >= sizeof p->name)
        goto bad;
    memcpy(p->name, s, (size_t)(q - s));
    s = q + 2;
    if (*s == '.') {
        snprintf(p->field, sizeof p->field, "%s", s + 1);
    } else if (*s) {
        goto bad;
    }
    if (p->artifact && strcmp(p->field, "path") && strcmp(p->field, "uri"))
        goto bad;
    if (!p->artifact && p->outputs && strcmp(p->field, "output_file"))
        goto bad;
    if (!p->artifact && !p->outputs && p->field[0])
        goto bad;
    return KILN_OK;
bad:
    return kiln_err_set(err, KILN_EINVAL, "malformed placeholder {{%s}}", text);
}

/* Calls fn for every placeholder of `in`; text between them with ph NULL. */
typedef int (*ph_fn)(void *ctx, const ph *p, const char *text, size_t len, kiln_err *err);

static int scan(const char *in, ph_fn fn, void *ctx, kiln_err *err)
{
    const char *s = in;
    ph p;
    int rc;
    while (*s) {
        const char *open = strstr(s, "{{$");
        if (!open)
            return fn(ctx, NULL, s, strlen(s), err);
        if (open > s && (rc = fn(ctx, NULL, s, (size_t)(open - s), err)) != KILN_OK)
            return rc;
        const char *close = strstr(open, "}}");
        if (!close)
            return kiln_err_set(err, KILN_EINVAL, "unterminated placeholder in '%s'", in);
        if ((rc = parse_ph(open + 2, (size_t)(close - open - 2), &p, err)) != KILN_OK ||
            (rc = fn(ctx, &p, NULL, 0, err)) != KILN_OK)
            return rc;
        s = close + 2;
    }
    return KILN_OK;
}

typedef struct sbuf {
    char *data;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void sb_json(sbuf *b, const cJSON *v)
{
    if (cJSON_IsString(v)) {
        sb_add(b, v->valuestring, strlen(v->valuestring));
        return;
    }
    char *t = cJSON_PrintUnformatted(v);
    if (!t) {
        b->oom = 1;
        return;
    }
    sb_add(b, t, strlen(t));
    free(t);
}

typedef struct resolve_ctx {
    const cJSON *in;
    sbuf out;
} resolve_ctx;

static const cJSON *path_get(const cJSON *root, const char *a, const char *b, const char *c)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, a);
    n = n ? cJSON_GetObjectItemCaseSensitive(n, b) : NULL;
    return n && c ? cJSON_GetObjectItemCaseSensitive(n, c) : n;
}

static int resolve_artifact(resolve_ctx *r, const ph *p, kiln_err *err)
{
    const char *side = p->outputs ? "outputs" : "inputs";
    const cJSON *list = path_get(r->in, side, "artifacts", p->name);
    const cJSON *arts = cJSON_GetObjectItemCaseSensitive(list, "artifacts");
    const cJSON *uri = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(arts, 0), "uri");
    char *path = NULL;
    if (!cJSON_IsString(uri))
        return kiln_err_set(err, KILN_EINVAL, "{{$.%s.artifacts['%s'].%s}}: no such artifact in "
                            "the executor input", side, p->name, p->field);
    if (!strcmp(p->field, "uri")) {
        sb_add(&r->out, uri->valuestring, strlen(uri->valuestring));
        return KILN_OK;
    }
    if (kiln_kfp_uri_to_path(uri->valuestring, &path, err) != KILN_OK)
        return err->code;
    sb_add(&r->out, path, strlen(path));
    free(path);
    return KILN_OK;
}

static int resolve_one(void *ctx, const ph *p, const char *text, size_t len, kiln_err *err)
{
    resolve_ctx *r = ctx;
    const cJSON *v;
    if (!p) {
        sb_add(&r->out, text, len);
    } else if (p->whole) {
        sb_json(&r->out, r->in);
    } else if (p->output_file) {
        v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r->in, "outputs"),
                                             "outputFile");
        if (!cJSON_IsString(v))
            return kiln_err_set(err, KILN_EINVAL, "{{$.outputs.output_file}}: not set");
        sb_add(&r->out, v->valuestring, strlen(v->valuestring));
    } else if (p->artifact) {
        return resolve_artifact(r, p, err);
    } else if (p->outputs) {
        v = path_get(r->in, "outputs", "parameters", p->name);
        v = v ? cJSON_GetObjectItemCaseSensitive(v, "outputFile") : NULL;
        if (!cJSON_IsString(v))
            return kiln_err_set(err, KILN_EINVAL, "{{$.outputs.parameters['%s'].output_file}}: "
                                "no such output parameter", p->name);
        sb_add(&r->out, v->valuestring, strlen(v->valuestring));
    } else {
        v = path_get(r->in, "inputs", "parameterValues", p->name);
        if (!v)
            return kiln_err_set(err, KILN_EINVAL, "{{$.inputs.parameters['%s']}}: no value for "
                                "this input parameter", p->name);
        sb_json(&r->out, v);
    }
    return KILN_OK;
}

int kiln_kfp_placeholders_resolve(const char *in, const cJSON *executor_input, char **out,
                                  kiln_err *err)
{
    resolve_ctx r = {.in = executor_input};
    *out = NULL;
    sb_add(&r.out, "", 0);
    int rc = scan(in, resolve_one, &r, err);
    if (rc == KILN_OK && r.out.oom)
        rc = kiln_err_set(err, KILN_ENOMEM, "out of memory");
    if (rc != KILN_OK) {
        free(r.out.data);
        return rc;
    }
    *out = r.out.data;
    return KILN_OK;
}

static int check_one(void *ctx, const ph *p, const char *text, size_t len, kiln_err *err)
{
    const cJSON *comp = ctx;
    (void)text;
    (void)len;
    if (!p || p->whole || p->output_file)
        return KILN_OK;
    const char *side = p->outputs ? "outputDefinitions" : "inputDefinitions";
    const char *kind = p->artifact ? "artifacts" : "parameters";
    if (!path_get(comp, side, kind, p->name))
        return kiln_err_set(err, KILN_EINVAL, "placeholder names %s %s '%s', which the "
                            "component does not declare", p->outputs ? "output" : "input",
                            p->artifact ? "artifact" : "parameter", p->name);
    return KILN_OK;
}

int kiln_kfp_placeholders_check(const char *in, const cJSON *component, kiln_err *err)
{
    return scan(in, check_one, (void *)component, err);
}

int kiln_kfp_uri_to_path(const char *uri, char **out, kiln_err *err)
{
    static const struct { const char *scheme, *mount; } map[] = {
        {"gs://", "/gcs/"}, {"minio://", "/minio/"}, {"s3://", "/s3/"}, {"file://", ""},
    };
    *out = NULL;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        size_t n = strlen(map[i].scheme);
        if (strncmp(uri, map[i].scheme, n) == 0) {
            if (asprintf(out, "%s%s", map[i].mount, uri + n) < 0) {
                *out = NULL;
                return kiln_err_set(err, KILN_ENOMEM, "out of memory");
            }
            if (!**out || (*out)[0] != '/') {
                free(*out);
                *out = NULL;
                return kiln_err_set(err, KILN_EINVAL, "artifact URI '%s' has no path", uri);
            }
            return KILN_OK;
        }
    }
    return kiln_err_set(err, KILN_EUNSUPPORTED,
                        "artifact URI '%s': kiln mounts gs://, minio://, s3:// and file:// only",
                        uri);
}
