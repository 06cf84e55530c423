/* lib/config/config_internal.h — the key table's interface, private to
 * lib/config: config_keys.c owns the one table of keys; config.c (the YAML
 * loader) and config_hint.c (did-you-mean) reach it only through these.
 * A key is named by its index in the table; the keys of one section are
 * contiguous there. */
#ifndef KILN_CONFIG_CONFIG_INTERNAL_H
#define KILN_CONFIG_CONFIG_INTERNAL_H

#include <stddef.h>

#include "common/err.h"
#include "config/config.h"

/* Upper bound on the table's size, for per-key arrays on the stack. */
#define CFG_MAX_KEYS 64
/* Longest name the did-you-mean hints compare; longer ones get no hint. */
#define CFG_NAME_MAX 64

/* Number of keys in the table (<= CFG_MAX_KEYS). */
int cfg_key_count(void);

/* Dotted name of key `index` ("train.epochs"). */
const char *cfg_key_name(int index);

/* Index of the key `section`.`key`, or -1. Length-counted because the
 * names come from YAML scalars, which may hold NUL bytes. */
int cfg_key_find(const char *section, size_t section_len, const char *key, size_t key_len);

/* Index of the first key of `section`, which stands for the section; -1 if
 * there is no such section. */
int cfg_section_find(const char *section, size_t len);

/* Parse `text` as key `index`'s value, check its range and store it in
 * `cfg`. On failure `cfg` is unchanged and the message does not name the
 * key ("expected an integer, got 'ten'"): callers add the key and place. */
int cfg_key_apply(int index, const char *text, kiln_config *cfg, kiln_err *err);

/* A hint to append to "unknown key 'x'" / "unknown section 'x'", written
 * into `out`: " (did you mean 'train.epochs'?)", or the list of known
 * names, or "" when there is nothing useful to say. */
void cfg_hint_key(const char *dotted, char *out, size_t out_size);
void cfg_hint_section(const char *section, char *out, size_t out_size);

#endif
