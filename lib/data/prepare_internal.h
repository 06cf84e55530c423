/* lib/data/prepare_internal.h — the plan kiln_prepare makes from a zip's
 * entries before decoding anything (private to lib/data/prepare*.c). */
#ifndef KILN_DATA_PREPARE_INTERNAL_H
#define KILN_DATA_PREPARE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "data/prepare.h"
#include "data/zip.h"

typedef struct prep_skip {
    char *entry;
    char *reason;
} prep_skip;

typedef struct prep_skips {
    prep_skip *v;
    size_t n, cap;
} prep_skips;

typedef struct prep_item {
    size_t zip_index;
    const char *name;   /* the zip entry's name (owned by the kiln_zip) */
    uint32_t label;
    int split;
} prep_item;

typedef struct prep_plan {
    char **classes;     /* sorted */
    size_t n_classes;
    prep_item *items;   /* ordered by split, class, name */
    size_t n_items;
    prep_skips skips;
    uint64_t n_ignored;
    int presplit;       /* the zip's train/ val/ test/ folders chose the splits */
} prep_plan;

/* Classify the zip's entries, find classes, assign splits. */
int prep_plan_build(const kiln_zip *zip, const kiln_prepare_opts *opts, prep_plan *plan,
                    kiln_err *err);
void prep_plan_free(prep_plan *plan);

/* Append a copy of (entry, reason) to the list. */
int prep_skips_add(prep_skips *s, const char *entry, const char *reason, kiln_err *err);
void prep_skips_free(prep_skips *s);

#endif
