/* lib/config/config_hint.c — the "did you mean" of an unknown key or
 * section. It reads the key table only through cfg_key_count and
 * cfg_key_name, so it knows no key itself. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config/config_internal.h"

/* Length of the section part of a dotted name. */
static size_t section_len(const char *name)
{
    return strcspn(name, ".");
}

/* Levenshtein distance; SIZE_MAX for names too long to be a typo of ours. */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t row[CFG_NAME_MAX + 1];
    if (la > CFG_NAME_MAX || lb > CFG_NAME_MAX)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Close enough to be a typo: a couple of edits, a few more for long names. */
static int is_typo(size_t distance, size_t len)
{
    return distance <= 2 + len / 16;
}

/* The key with the same leaf in another section ("train.seed" ->
 * "data.seed"), else the nearest name by edit distance; -1 if none. */
static int nearest_key(const char *dotted)
{
    const char *dot = strchr(dotted, '.');
    const char *leaf = dot ? dot + 1 : dotted;
    int best = -1;
    size_t best_d = SIZE_MAX;
    for (int i = 0; i < cfg_key_count(); i++) {
        const char *name = cfg_key_name(i);
        if (strcmp(name + section_len(name) + 1, leaf) == 0)
            return i;
    }
    for (int i = 0; i < cfg_key_count(); i++) {
        const char *name = cfg_key_name(i);
        size_t d = edit_distance(dotted, strlen(dotted), name, strlen(name));
        if (d < best_d && is_typo(d, strlen(name))) {
            best = i;
            best_d = d;
        }
    }
    return best;
}

/* Index of the first key of the section nearest to `section`, or -1. */
static int nearest_section(const char *section)
{
    int best = -1;
    size_t best_d = SIZE_MAX;
    for (int i = 0; i < cfg_key_count(); i++) {
        const char *name = cfg_key_name(i);
        size_t d = edit_distance(section, strlen(section), name, section_len(name));
        if (d < best_d && is_typo(d, section_len(name))) {
            best = i;
            best_d = d;
        }
    }
    return best;
}

/* Append `len` bytes of `text` at out + *n, truncating to fit. */
static void append(char *out, size_t size, size_t *n, const char *text, size_t len)
{
    if (*n + 1 >= size)
        return;
    if (len > size - 1 - *n)
        len = size - 1 - *n;
    memcpy(out + *n, text, len);
    *n += len;
    out[*n] = '\0';
}

static void append_str(char *out, size_t size, size_t *n, const char *text)
{
    append(out, size, n, text, strlen(text));
}

void cfg_hint_key(const char *dotted, char *out, size_t out_size)
{
    size_t slen = section_len(dotted), n = 0;
    int near = nearest_key(dotted);
    int first = cfg_section_find(dotted, slen);
    out[0] = '\0';
    if (near >= 0) {
        snprintf(out, out_size, " (did you mean '%s'?)", cfg_key_name(near));
        return;
    }
    if (first < 0)
        return;
    /* No near miss: list the section's keys, which is short enough. */
    append_str(out, out_size, &n, " (");
    append(out, out_size, &n, dotted, slen);
    append_str(out, out_size, &n, " keys:");
    for (int i = first; i < cfg_key_count(); i++) {
        const char *name = cfg_key_name(i);
        if (section_len(name) != slen || memcmp(name, dotted, slen) != 0)
            break;
        append_str(out, out_size, &n, " ");
        append_str(out, out_size, &n, name + slen + 1);
    }
    append_str(out, out_size, &n, ")");
}

void cfg_hint_section(const char *section, char *out, size_t out_size)
{
    int near = nearest_section(section);
    size_t n = 0;
    out[0] = '\0';
    if (near >= 0) {
        const char *name = cfg_key_name(near);
        snprintf(out, out_size, " (did you mean '%.*s'?)", (int)section_len(name), name);
        return;
    }
    append_str(out, out_size, &n, " (sections:");
    for (int i = 0; i < cfg_key_count(); i++) {
        const char *name = cfg_key_name(i);
        if (cfg_section_find(name, section_len(name)) != i)
            continue;
        append_str(out, out_size, &n, " ");
        append(out, out_size, &n, name, section_len(name));
    }
    append_str(out, out_size, &n, ")");
}
