/* lib/config/config.c — kiln_config from a YAML file, with libyaml's event
 * API. The file has a fixed shape (a mapping of sections, each a mapping
 * of scalar keys), so walking the events is simpler than building a
 * document, gives each message the line of the event at fault, and stops
 * at the first surprise instead of building whatever nesting the input
 * holds. Keys, types and ranges come from the table in config_keys.c.
 *
 * Codes: EFORMAT for YAML libyaml rejects and for the wrong shape (a
 * scalar or sequence where a mapping belongs, and the like); EINVAL for
 * unknown sections and keys, duplicates, missing or bad values. Every
 * message starts with the file's name; key errors give the key's line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/fs.h"
#include "config/config_internal.h"

/* A config is a screenful of text; anything this big is a wrong path. */
#define CONFIG_MAX_BYTES (1u << 20)

typedef struct reader {
    yaml_parser_t parser;
    yaml_event_t ev; /* the current event, when have_ev */
    int have_ev;
    kiln_config cfg;                /* working copy: the caller's is set on success only */
    int key_line[CFG_MAX_KEYS];     /* where each key was set, 0 = not yet */
    int section_line[CFG_MAX_KEYS]; /* by the index of the section's first key */
} reader;

/* 1-based line of the current event. */
static int line(const reader *r)
{
    return (int)r->ev.start_mark.line + 1;
}

static int syntax_error(const yaml_parser_t *p, kiln_err *err)
{
    const char *problem = p->problem ? p->problem : "unknown problem";
    if (p->error == YAML_MEMORY_ERROR)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory parsing YAML");
    if (p->error == YAML_READER_ERROR)
        return kiln_err_set(err, KILN_EFORMAT, "malformed YAML at byte %zu: %s", p->problem_offset,
                            problem);
    if (p->context)
        return kiln_err_set(err, KILN_EFORMAT,
                            "malformed YAML at line %zu, column %zu: %s (%s at line %zu)",
                            p->problem_mark.line + 1, p->problem_mark.column + 1, problem,
                            p->context, p->context_mark.line + 1);
    return kiln_err_set(err, KILN_EFORMAT, "malformed YAML at line %zu, column %zu: %s",
                        p->problem_mark.line + 1, p->problem_mark.column + 1, problem);
}

/* Move to the next event, releasing the current one. */
static int next_event(reader *r, kiln_err *err)
{
    if (r->have_ev)
        yaml_event_delete(&r->ev);
    r->have_ev = 0;
    if (!yaml_parser_parse(&r->parser, &r->ev))
        return syntax_error(&r->parser, err);
    r->have_ev = 1;
    return KILN_OK;
}

static const char *event_kind(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return "a scalar";
    case YAML_SEQUENCE_START_EVENT:
        return "a sequence";
    case YAML_MAPPING_START_EVENT:
        return "a mapping";
    case YAML_ALIAS_EVENT:
        return "an alias (aliases are not supported)";
    default:
        return "something else";
    }
}

/* A YAML null: "key:" with nothing after it, "~" or "null", unquoted. */
static int is_null(const yaml_event_t *ev)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    if (ev->type != YAML_SCALAR_EVENT || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        if (strcmp((const char *)ev->data.scalar.value, nulls[i]) == 0)
            return 1;
    return 0;
}

static const char *scalar(const reader *r)
{
    return (const char *)r->ev.data.scalar.value;
}

static size_t scalar_len(const reader *r)
{
    return r->ev.data.scalar.length;
}

/* The value event of key `index` (whose name and line are given) is current. */
static int read_value(reader *r, int index, int key_line, kiln_err *err)
{
    const char *name = cfg_key_name(index);
    if (r->ev.type != YAML_SCALAR_EVENT)
        return kiln_err_set(err, KILN_EFORMAT, "%s at line %d: expected a single value, got %s",
                            name, key_line, event_kind(&r->ev));
    if (is_null(&r->ev))
        return kiln_err_set(err, KILN_EINVAL, "%s at line %d: no value given", name, key_line);
    /* A quoted "\0" would otherwise cut the text short unnoticed. */
    if (memchr(scalar(r), '\0', scalar_len(r)))
        return kiln_err_set(err, KILN_EINVAL, "%s at line %d: the value holds a NUL character",
                            name, key_line);
    if (cfg_key_apply(index, scalar(r), &r->cfg, err) != KILN_OK)
        return kiln_err_wrap(err, "%s at line %d", name, key_line);
    return KILN_OK;
}

/* The key event of one "key: value" pair in `section` is current. */
static int read_key(reader *r, const char *section, kiln_err *err)
{
    char dotted[2 * CFG_NAME_MAX + 2], hint[256];
    int at = line(r), index;
    if (r->ev.type != YAML_SCALAR_EVENT)
        return kiln_err_set(err, KILN_EFORMAT, "%s at line %d: expected a key name, got %s",
                            section, at, event_kind(&r->ev));
    snprintf(dotted, sizeof dotted, "%s.%.*s", section, CFG_NAME_MAX, scalar(r));
    index = cfg_key_find(section, strlen(section), scalar(r), scalar_len(r));
    if (index < 0) {
        cfg_hint_key(dotted, hint, sizeof hint);
        return kiln_err_set(err, KILN_EINVAL, "unknown key '%s' at line %d%s", dotted, at, hint);
    }
    if (r->key_line[index])
        return kiln_err_set(err, KILN_EINVAL, "duplicate key '%s' at line %d (first at line %d)",
                            dotted, at, r->key_line[index]);
    r->key_line[index] = at;
    if (next_event(r, err) != KILN_OK)
        return err->code;
    return read_value(r, index, at, err);
}

static int read_keys(reader *r, const char *section, kiln_err *err)
{
    for (;;) {
        if (next_event(r, err) != KILN_OK)
            return err->code;
        if (r->ev.type == YAML_MAPPING_END_EVENT)
            return KILN_OK;
        if (read_key(r, section, err) != KILN_OK)
            return err->code;
    }
}

/* The key event naming a section is current. */
static int read_section(reader *r, kiln_err *err)
{
    char name[CFG_NAME_MAX + 1], hint[256];
    int at = line(r), first;
    if (r->ev.type != YAML_SCALAR_EVENT)
        return kiln_err_set(err, KILN_EFORMAT, "expected a section name at line %d, got %s", at,
                            event_kind(&r->ev));
    snprintf(name, sizeof name, "%s", scalar(r));
    first = cfg_section_find(scalar(r), scalar_len(r));
    if (first < 0) {
        cfg_hint_section(name, hint, sizeof hint);
        return kiln_err_set(err, KILN_EINVAL, "unknown section '%s' at line %d%s", name, at, hint);
    }
    if (r->section_line[first])
        return kiln_err_set(err, KILN_EINVAL,
                            "duplicate section '%s' at line %d (first at line %d)", name, at,
                            r->section_line[first]);
    r->section_line[first] = at;
    if (next_event(r, err) != KILN_OK)
        return err->code;
    /* "train:" with every key commented out is an empty section, not an error. */
    if (is_null(&r->ev))
        return KILN_OK;
    if (r->ev.type != YAML_MAPPING_START_EVENT)
        return kiln_err_set(err, KILN_EFORMAT,
                            "section '%s' at line %d: expected a mapping of keys, got %s", name, at,
                            event_kind(&r->ev));
    return read_keys(r, name, err);
}

/* The document's root event is current. */
static int read_root(reader *r, kiln_err *err)
{
    /* "---" alone is an empty document: nothing to set. */
    if (is_null(&r->ev))
        return KILN_OK;
    if (r->ev.type != YAML_MAPPING_START_EVENT)
        return kiln_err_set(err, KILN_EFORMAT, "expected a mapping of sections at line %d, got %s",
                            line(r), event_kind(&r->ev));
    for (;;) {
        if (next_event(r, err) != KILN_OK)
            return err->code;
        if (r->ev.type == YAML_MAPPING_END_EVENT)
            return KILN_OK;
        if (read_section(r, err) != KILN_OK)
            return err->code;
    }
}

/* STREAM-START, then nothing (an empty or all-comment file) or one
 * document, then STREAM-END. */
static int read_stream(reader *r, kiln_err *err)
{
    if (next_event(r, err) != KILN_OK || next_event(r, err) != KILN_OK)
        return err->code;
    if (r->ev.type == YAML_STREAM_END_EVENT)
        return KILN_OK;
    if (next_event(r, err) != KILN_OK || read_root(r, err) != KILN_OK)
        return err->code;
    /* DOCUMENT-END, then the stream's end or a second document. */
    if (next_event(r, err) != KILN_OK || next_event(r, err) != KILN_OK)
        return err->code;
    if (r->ev.type != YAML_STREAM_END_EVENT)
        return kiln_err_set(err, KILN_EFORMAT,
                            "only one YAML document is allowed, another starts at line %d",
                            line(r));
    return KILN_OK;
}

int kiln_config_load_string(kiln_config *cfg, const char *yaml, size_t len, const char *name,
                            kiln_err *err)
{
    kiln_err local;
    kiln_err *e = err ? err : &local;
    reader *r = NULL;
    int rc;
    name = name ? name : "<config>";
    if (!cfg || (!yaml && len)) {
        rc = kiln_err_set(e, KILN_EINVAL, "kiln_config_load_string: NULL argument");
        goto fail;
    }
    /* On the heap: the parser and the copy are a few KiB. */
    r = calloc(1, sizeof *r);
    if (!r || !yaml_parser_initialize(&r->parser)) {
        free(r);
        r = NULL;
        rc = kiln_err_set(e, KILN_ENOMEM, "out of memory");
        goto fail;
    }
    r->cfg = *cfg;
    /* libyaml asserts on a NULL input, even an empty one. */
    yaml_parser_set_input_string(&r->parser, (const unsigned char *)(yaml ? yaml : ""), len);
    rc = read_stream(r, e);
    if (rc == KILN_OK)
        *cfg = r->cfg;
fail:
    if (r) {
        if (r->have_ev)
            yaml_event_delete(&r->ev);
        yaml_parser_delete(&r->parser);
        free(r);
    }
    if (rc != KILN_OK)
        kiln_err_wrap(e, "%s", name);
    return rc;
}

int kiln_config_load_file(kiln_config *cfg, const char *path, kiln_err *err)
{
    char *data = NULL;
    size_t len = 0;
    int rc;
    if (!path) {
        rc = kiln_err_set(err, KILN_EINVAL, "kiln_config_load_file: NULL path");
        goto fail;
    }
    /* kiln_read_file's messages name the path already. */
    rc = kiln_read_file(path, CONFIG_MAX_BYTES, &data, &len, err);
    if (rc == KILN_OK)
        rc = kiln_config_load_string(cfg, data, len, path, err);
fail:
    free(data);
    return rc;
}
