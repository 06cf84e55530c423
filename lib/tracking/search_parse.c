/* lib/tracking/search_parse.c — MLflow's search filter and order_by
 * grammar (mlflow/utils/search_utils.py), for runs, experiments and the
 * registry.
 *
 * filter   := clause (AND clause)*          (AND in any case; OR is refused)
 * clause   := identifier comparator value
 * identifier := [entity "."] key            (entity: metric(s), param(s),
 *               parameter(s), tag(s), attribute(s), attr, run; none means
 *               attribute; key: [A-Za-z0-9_.]+ or "quoted" or `quoted`)
 * comparator := = != < <= > >= LIKE ILIKE IN NOT IN IS NULL IS NOT NULL
 * value    := 'string' | "string" | number | ( 'a', 'b', ... )
 * order_by := identifier [ASC | DESC]
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracking/tracking_internal.h"

typedef struct cursor {
    const char *s;
    const char *p;
} cursor;

static const char *op_name(trk_op op)
{
    switch (op) {
    case TRK_OP_EQ: return "=";
    case TRK_OP_NE: return "!=";
    case TRK_OP_LT: return "<";
    case TRK_OP_LE: return "<=";
    case TRK_OP_GT: return ">";
    case TRK_OP_GE: return ">=";
    case TRK_OP_LIKE: return "LIKE";
    case TRK_OP_ILIKE: return "ILIKE";
    case TRK_OP_IN: return "IN";
    case TRK_OP_NOT_IN: return "NOT IN";
    case TRK_OP_IS_NULL: return "IS NULL";
    case TRK_OP_IS_NOT_NULL: return "IS NOT NULL";
    }
    return "?";
}

const char *trk_op_sql(trk_op op)
{
    return op_name(op);
}

int trk_op_is_numeric(trk_op op)
{
    return op <= TRK_OP_GE;
}

static void skip_ws(cursor *c)
{
    while (*c->p && isspace((unsigned char)*c->p))
        c->p++;
}

static int ident_char(unsigned char ch)
{
    return isalnum(ch) || ch == '_' || ch >= 0x80;
}

/* Case-insensitive keyword at the cursor, not followed by an identifier
 * character; advances past it. */
static int keyword(cursor *c, const char *kw)
{
    size_t n = strlen(kw);
    if (strncasecmp(c->p, kw, n) != 0 || ident_char((unsigned char)c->p[n]))
        return 0;
    c->p += n;
    return 1;
}

static int parse_error(trk_req *r, const cursor *c, const char *what)
{
    return trk_fail(r, TRK_INVALID, "Error on parsing filter '%.300s': %s at position %d",
                    c->s, what, (int)(c->p - c->s));
}

/* A quoted run starting at the cursor's quote; '' (or "") is a literal quote. */
static char *quoted(trk_req *r, cursor *c)
{
    char q = *c->p++;
    size_t cap = strlen(c->p) + 1, n = 0;
    char *out = malloc(cap);
    if (!out) {
        r->oom = 1;
        trk_fail(r, TRK_INTERNAL, "out of memory");
        return NULL;
    }
    for (;;) {
        if (!*c->p) {
            free(out);
            parse_error(r, c, "unterminated quoted string");
            return NULL;
        }
        if (*c->p == q) {
            if (c->p[1] == q && q != '`') {
                out[n++] = q;
                c->p += 2;
                continue;
            }
            c->p++;
            break;
        }
        out[n++] = *c->p++;
    }
    out[n] = '\0';
    return out;
}

static int entity_of(const char *word, size_t n, trk_entity *e)
{
    static const struct {
        const char *name;
        trk_entity entity;
    } names[] = {
        {"metric", TRK_E_METRIC}, {"metrics", TRK_E_METRIC},     {"param", TRK_E_PARAM},
        {"params", TRK_E_PARAM},  {"parameter", TRK_E_PARAM},   {"parameters", TRK_E_PARAM},
        {"tag", TRK_E_TAG},       {"tags", TRK_E_TAG},           {"attribute", TRK_E_ATTR},
        {"attributes", TRK_E_ATTR}, {"attr", TRK_E_ATTR},        {"run", TRK_E_ATTR},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i].name) == n && strncasecmp(names[i].name, word, n) == 0) {
            *e = names[i].entity;
            return 0;
        }
    return -1;
}

static int in_list(const char *const *list, const char *key)
{
    for (; list && *list; list++)
        if (strcmp(*list, key) == 0)
            return 1;
    return 0;
}

static void list_text(const char *const *list, char *out, size_t size)
{
    size_t used = (size_t)snprintf(out, size, "[");
    for (int i = 0; list && list[i] && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s'%s'", i ? ", " : "", list[i]);
    if (used < size)
        snprintf(out + used, size - used, "]");
}

static int check_identifier(trk_req *r, const trk_search_spec *spec, trk_entity e,
                            const char *key)
{
    int allowed = e == TRK_E_ATTR || (e == TRK_E_METRIC && spec->has_metrics) ||
                  (e == TRK_E_PARAM && spec->has_params) || (e == TRK_E_TAG && spec->has_tags);
    if (!allowed)
        return trk_fail(r, TRK_INVALID, "Invalid entity type for a %s search in '%.200s'",
                        spec->what, key);
    if (e == TRK_E_ATTR && !in_list(spec->attrs, key)) {
        char valid[512];
        list_text(spec->attrs, valid, sizeof valid);
        return trk_fail(r, TRK_INVALID, "Invalid attribute key '%.200s' specified. Valid keys are '%s'",
                        key, valid);
    }
    return 0;
}

/* identifier at the cursor → entity + malloc'ed key. */
static int parse_identifier(trk_req *r, const trk_search_spec *spec, cursor *c, trk_entity *e,
                            char **key)
{
    *key = NULL;
    *e = TRK_E_ATTR;
    skip_ws(c);
    if (*c->p == '"' || *c->p == '`') {
        *key = quoted(r, c);
    } else {
        const char *start = c->p;
        while (ident_char((unsigned char)*c->p))
            c->p++;
        if (c->p == start)
            return parse_error(r, c, "expected an identifier");
        if (*c->p == '.') {
            if (entity_of(start, (size_t)(c->p - start), e) != 0)
                return trk_fail(r, TRK_INVALID,
                                "Invalid entity type '%.*s'. Valid values are ['metric', "
                                "'parameter', 'tag', 'attribute']",
                                (int)(c->p - start), start);
            c->p++;
            if (*c->p == '"' || *c->p == '`') {
                *key = quoted(r, c);
            } else {
                start = c->p;
                while (ident_char((unsigned char)*c->p) || *c->p == '.')
                    c->p++;
                if (c->p == start)
                    return parse_error(r, c, "expected a key after the entity type");
                *key = strndup(start, (size_t)(c->p - start));
            }
        } else {
            *key = strndup(start, (size_t)(c->p - start));
        }
    }
    if (!*key) {
        if (!r->err.code) {
            r->oom = 1;
            trk_fail(r, TRK_INTERNAL, "out of memory");
        }
        return -1;
    }
    if (check_identifier(r, spec, *e, *key) != 0) {
        free(*key);
        *key = NULL;
        return -1;
    }
    return 0;
}

static int parse_comparator(trk_req *r, cursor *c, trk_op *op)
{
    static const struct {
        const char *text;
        trk_op op;
    } symbols[] = {{"!=", TRK_OP_NE}, {"<=", TRK_OP_LE}, {">=", TRK_OP_GE},
                   {"<", TRK_OP_LT},  {">", TRK_OP_GT},  {"=", TRK_OP_EQ}};
    skip_ws(c);
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++)
        if (strncmp(c->p, symbols[i].text, strlen(symbols[i].text)) == 0) {
            c->p += strlen(symbols[i].text);
            *op = symbols[i].op;
            return 0;
        }
    if (keyword(c, "LIKE")) {
        *op = TRK_OP_LIKE;
    } else if (keyword(c, "ILIKE")) {
        *op = TRK_OP_ILIKE;
    } else if (keyword(c, "IN")) {
        *op = TRK_OP_IN;
    } else if (keyword(c, "NOT")) {
        skip_ws(c);
        if (!keyword(c, "IN"))
            return parse_error(r, c, "expected IN after NOT");
        *op = TRK_OP_NOT_IN;
    } else if (keyword(c, "IS")) {
        skip_ws(c);
        int negated = keyword(c, "NOT");
        skip_ws(c);
        if (!keyword(c, "NULL"))
            return parse_error(r, c, "expected NULL after IS");
        *op = negated ? TRK_OP_IS_NOT_NULL : TRK_OP_IS_NULL;
    } else {
        return parse_error(r, c, "expected a comparator");
    }
    return 0;
}

/* A single value: sets is_number/number or text (malloc'ed). */
static int parse_value(trk_req *r, cursor *c, trk_clause *cl)
{
    skip_ws(c);
    if (*c->p == '\'' || *c->p == '"') {
        cl->text = quoted(r, c);
        return cl->text ? 0 : -1;
    }
    char *end = NULL;
    double d = strtod(c->p, &end);
    if (end == c->p || isnan(d) || isinf(d) || ident_char((unsigned char)*end) || *end == '.')
        return parse_error(r, c, "expected a quoted string or a number");
    cl->is_number = 1;
    cl->number = d;
    cl->text = strndup(c->p, (size_t)(end - c->p));
    c->p = end;
    if (!cl->text) {
        r->oom = 1;
        return trk_fail(r, TRK_INTERNAL, "out of memory");
    }
    return 0;
}

static int parse_list(trk_req *r, cursor *c, trk_clause *cl)
{
    skip_ws(c);
    if (*c->p != '(')
        return parse_error(r, c, "expected '(' after IN");
    c->p++;
    for (;;) {
        skip_ws(c);
        if (*c->p != '\'' && *c->p != '"')
            return parse_error(r, c, "expected a quoted string in the IN list");
        if (cl->n_list == TRK_MAX_IN_VALUES)
            return parse_error(r, c, "too many values in the IN list");
        char *v = quoted(r, c);
        if (!v)
            return -1;
        cl->list[cl->n_list++] = v;
        skip_ws(c);
        if (*c->p == ',') {
            c->p++;
            continue;
        }
        if (*c->p == ')') {
            c->p++;
            return 0;
        }
        return parse_error(r, c, "expected ',' or ')' in the IN list");
    }
}

static const char *entity_name(trk_entity e)
{
    return e == TRK_E_METRIC ? "metric" : e == TRK_E_PARAM ? "param" : e == TRK_E_TAG ? "tag"
                                                                                      : "attribute";
}

/* The comparator and value types each kind of identifier takes. */
static int check_clause(trk_req *r, const trk_search_spec *spec, const trk_clause *cl)
{
    int numeric = cl->entity == TRK_E_METRIC ||
                  (cl->entity == TRK_E_ATTR && in_list(spec->numeric_attrs, cl->key));
    if (numeric) {
        if (!trk_op_is_numeric(cl->op))
            return trk_fail(r, TRK_INVALID,
                            "Invalid comparator '%s' not one of '['!=', '<', '<=', '=', '>', "
                            "'>=']'",
                            op_name(cl->op));
        if (!cl->is_number)
            return trk_fail(r, TRK_INVALID, "Expected numeric value type for %s '%s'. Found '%s'",
                            entity_name(cl->entity), cl->key, cl->text);
        return 0;
    }
    int ok_op = cl->op == TRK_OP_EQ || cl->op == TRK_OP_NE || cl->op == TRK_OP_LIKE ||
                cl->op == TRK_OP_ILIKE ||
                ((cl->op == TRK_OP_IN || cl->op == TRK_OP_NOT_IN) && cl->entity == TRK_E_ATTR) ||
                ((cl->op == TRK_OP_IS_NULL || cl->op == TRK_OP_IS_NOT_NULL) &&
                 cl->entity != TRK_E_ATTR);
    if (!ok_op)
        return trk_fail(r, TRK_INVALID,
                        "Invalid comparator '%s' not one of '['!=', '=', 'LIKE', 'ILIKE']' for %s "
                        "'%s'",
                        op_name(cl->op), entity_name(cl->entity), cl->key);
    if (cl->is_number)
        return trk_fail(r, TRK_INVALID, "Expected a quoted string value for %s '%s'. Got value %s",
                        entity_name(cl->entity), cl->key, cl->text);
    return 0;
}

int trk_filter_parse(trk_req *r, const trk_search_spec *spec, const char *text, trk_filter *f)
{
    cursor c = {text ? text : "", text ? text : ""};
    memset(f, 0, sizeof *f);
    skip_ws(&c);
    while (*c.p) {
        if (f->n == TRK_MAX_CLAUSES)
            return trk_fail(r, TRK_INVALID, "Filter '%.200s' has more than %d clauses", text,
                            TRK_MAX_CLAUSES);
        trk_clause *cl = &f->c[f->n++];
        if (parse_identifier(r, spec, &c, &cl->entity, &cl->key) != 0 ||
            parse_comparator(r, &c, &cl->op) != 0)
            return -1;
        if (cl->op == TRK_OP_IN || cl->op == TRK_OP_NOT_IN) {
            if (parse_list(r, &c, cl) != 0)
                return -1;
        } else if (cl->op != TRK_OP_IS_NULL && cl->op != TRK_OP_IS_NOT_NULL) {
            if (parse_value(r, &c, cl) != 0)
                return -1;
        }
        if (check_clause(r, spec, cl) != 0)
            return -1;
        skip_ws(&c);
        if (!*c.p)
            break;
        if (keyword(&c, "OR"))
            return trk_fail(r, TRK_INVALID,
                            "Invalid clause(s) in filter string: '%.300s'. Only AND is supported "
                            "between conditions",
                            text);
        if (!keyword(&c, "AND"))
            return parse_error(r, &c, "expected AND between conditions");
        skip_ws(&c);
        if (!*c.p)
            return parse_error(r, &c, "expected a condition after AND");
    }
    return 0;
}

void trk_filter_free(trk_filter *f)
{
    for (int i = 0; i < f->n; i++) {
        free(f->c[i].key);
        free(f->c[i].text);
        for (int j = 0; j < f->c[i].n_list; j++)
            free(f->c[i].list[j]);
    }
    memset(f, 0, sizeof *f);
}

int trk_order_parse(trk_req *r, const trk_search_spec *spec, const char *text, trk_order *o)
{
    cursor c = {text ? text : "", text ? text : ""};
    memset(o, 0, sizeof *o);
    o->ascending = 1;
    if (parse_identifier(r, spec, &c, &o->entity, &o->key) != 0) {
        if (r->err.code && strcmp(r->err.code, TRK_INVALID) == 0 &&
            strncmp(r->err.msg, "Error on parsing", 16) == 0)
            trk_fail(r, TRK_INVALID, "Invalid order_by clause '%.300s'. Could not be parsed.",
                     c.s);
        return -1;
    }
    skip_ws(&c);
    if (keyword(&c, "DESC"))
        o->ascending = 0;
    else
        keyword(&c, "ASC");
    skip_ws(&c);
    if (*c.p) {
        trk_order_free(o);
        return trk_fail(r, TRK_INVALID, "Invalid order_by clause '%.300s'. Could not be parsed.",
                        c.s);
    }
    return 0;
}

void trk_order_free(trk_order *o)
{
    free(o->key);
    o->key = NULL;
}
