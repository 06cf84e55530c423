/* From a zip's entry list to a plan: classes, images, skipped files, and
 * the stratified train/val/test split. Nothing is decoded here. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/rng.h"
#include "data/dataset.h"
#include "data/prepare_internal.h"

int prep_skips_add(prep_skips *s, const char *entry, const char *reason, kiln_err *err)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        prep_skip *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return kiln_err_set(err, KILN_ENOMEM, "out of memory listing skipped files");
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n].entry = strdup(entry);
    s->v[s->n].reason = strdup(reason);
    if (!s->v[s->n].entry || !s->v[s->n].reason) {
        free(s->v[s->n].entry);
        free(s->v[s->n].reason);
        return kiln_err_set(err, KILN_ENOMEM, "out of memory listing skipped files");
    }
    s->n++;
    return KILN_OK;
}

void prep_skips_free(prep_skips *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].entry);
        free(s->v[i].reason);
    }
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* ---------------- path helpers ---------------- */

static size_t count_components(const char *name)
{
    size_t n = 0;
    for (const char *p = name; *p; p++)
        if (*p == '/' && p[1])
            n++;
    return name[0] ? n + 1 : 0;
}

/* Pointer to component `k` (0-based) and its length. */
static const char *component(const char *name, size_t k, size_t *len)
{
    const char *p = name;
    for (size_t i = 0; i < k && p; i++) {
        p = strchr(p, '/');
        if (p)
            p++;
    }
    if (!p || !*p) {
        *len = 0;
        return NULL;
    }
    const char *slash = strchr(p, '/');
    *len = slash ? (size_t)(slash - p) : strlen(p);
    return p;
}

/* Files that operating systems and archivers add, not the user's data. */
static int is_ignored(const char *name)
{
    size_t n = count_components(name);
    for (size_t k = 0; k < n; k++) {
        size_t len;
        const char *c = component(name, k, &len);
        if (len == 8 && strncmp(c, "__MACOSX", 8) == 0)
            return 1;
        if (len > 0 && c[0] == '.')
            return 1; /* .DS_Store, ._AppleDouble, .git, hidden files */
        if ((len == 9 && strncasecmp(c, "Thumbs.db", 9) == 0) ||
            (len == 11 && strncasecmp(c, "desktop.ini", 11) == 0))
            return 1;
    }
    return 0;
}

static int has_image_extension(const char *name)
{
    const char *dot = strrchr(name, '.');
    const char *slash = strrchr(name, '/');
    if (!dot || (slash && dot < slash))
        return 0;
    return strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 ||
           strcasecmp(dot, ".jpe") == 0 || strcasecmp(dot, ".png") == 0;
}

/* How many leading folders every image shares while still leaving a class
 * folder and a file name below them ("data/dry/x.jpg" -> 1). Only images
 * count, so a README next to the class folders does not hide the wrapper. */
static size_t wrapper_depth(const kiln_zip *zip)
{
    size_t depth = 0;
    for (;;) {
        const char *first = NULL;
        size_t first_len = 0;
        for (size_t i = 0; i < kiln_zip_count(zip); i++) {
            const kiln_zip_entry *e = kiln_zip_entry_at(zip, i);
            if (e->is_dir || is_ignored(e->name) || !has_image_extension(e->name))
                continue;
            size_t len;
            const char *c = component(e->name, depth, &len);
            if (count_components(e->name) < depth + 3)
                return depth;
            if (!first) {
                first = c;
                first_len = len;
            } else if (len != first_len || strncmp(c, first, len) != 0) {
                return depth;
            }
        }
        if (!first)
            return depth;
        depth++;
    }
}

/* A folder that names a split ("train/", "Validation/", "test/"), or -1. */
static int split_of_folder(const char *c, size_t len)
{
    static const struct { const char *name; int split; } names[] = {
        {"train", KILN_SPLIT_TRAIN},    {"training", KILN_SPLIT_TRAIN},
        {"val", KILN_SPLIT_VAL},        {"valid", KILN_SPLIT_VAL},
        {"validation", KILN_SPLIT_VAL}, {"test", KILN_SPLIT_TEST},
        {"testing", KILN_SPLIT_TEST},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i].name) == len && strncasecmp(c, names[i].name, len) == 0)
            return names[i].split;
    return -1;
}

/* A zip that arrives split (train/<class>/..., val/<class>/..., test/...):
 * every image sits in a class folder under a split folder at `depth`, and
 * some are under train/. Then the folders decide, not the seed. */
static int is_presplit(const kiln_zip *zip, size_t depth)
{
    int train = 0;
    for (size_t i = 0; i < kiln_zip_count(zip); i++) {
        const kiln_zip_entry *e = kiln_zip_entry_at(zip, i);
        if (e->is_dir || is_ignored(e->name) || !has_image_extension(e->name))
            continue;
        size_t len;
        const char *c = component(e->name, depth, &len);
        int split = c ? split_of_folder(c, len) : -1;
        if (count_components(e->name) < depth + 3 || split < 0)
            return 0;
        train |= split == KILN_SPLIT_TRAIN;
    }
    return train;
}

/* The split folder of an entry in a pre-split zip, or -1. */
static int entry_split(const char *name, size_t depth)
{
    size_t len;
    const char *c = component(name, depth, &len);
    return c ? split_of_folder(c, len) : -1;
}

/* ---------------- classes ---------------- */

typedef struct name_list {
    char **v;
    size_t n, cap;
} name_list;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int class_add(name_list *l, const char *c, size_t len, kiln_err *err)
{
    for (size_t i = 0; i < l->n; i++)
        if (strlen(l->v[i]) == len && strncmp(l->v[i], c, len) == 0)
            return KILN_OK;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return kiln_err_set(err, KILN_ENOMEM, "out of memory listing classes");
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strndup(c, len)))
        return kiln_err_set(err, KILN_ENOMEM, "out of memory listing classes");
    l->n++;
    return KILN_OK;
}

static long class_index(const prep_plan *plan, const char *c, size_t len)
{
    size_t lo = 0, hi = plan->n_classes;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int r = strncmp(plan->classes[mid], c, len);
        if (r == 0 && plan->classes[mid][len] != '\0')
            r = 1;
        if (r == 0)
            return (long)mid;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Pass 1: every class folder, from files and from directory entries. */
static int find_classes(const kiln_zip *zip, size_t depth, prep_plan *plan, kiln_err *err)
{
    name_list l = {0};
    int rc = KILN_OK;
    for (size_t i = 0; i < kiln_zip_count(zip) && rc == KILN_OK; i++) {
        const kiln_zip_entry *e = kiln_zip_entry_at(zip, i);
        size_t n = count_components(e->name), len;
        if (is_ignored(e->name) || n < depth + (e->is_dir ? 1 : 2))
            continue;
        if (plan->presplit && entry_split(e->name, depth - 1) < 0)
            continue;
        const char *c = component(e->name, depth, &len);
        rc = class_add(&l, c, len, err);
    }
    if (rc == KILN_OK && l.n > 0)
        qsort(l.v, l.n, sizeof *l.v, cmp_str);
    plan->classes = l.v;
    plan->n_classes = l.n;
    return rc;
}

/* Pass 2: candidate images (with labels) and skipped files. */
static int classify_files(const kiln_zip *zip, size_t depth, prep_plan *plan, kiln_err *err)
{
    int rc = KILN_OK;
    plan->items = calloc(kiln_zip_count(zip) + 1, sizeof *plan->items);
    if (!plan->items)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory planning the dataset");
    for (size_t i = 0; i < kiln_zip_count(zip) && rc == KILN_OK; i++) {
        const kiln_zip_entry *e = kiln_zip_entry_at(zip, i);
        size_t len;
        if (e->is_dir || is_ignored(e->name)) {
            plan->n_ignored++;
            continue;
        }
        if (plan->presplit && entry_split(e->name, depth - 1) < 0) {
            rc = prep_skips_add(&plan->skips, e->name,
                                "not inside a train/, val/ or test/ folder", err);
            continue;
        }
        if (count_components(e->name) < depth + 2) {
            rc = prep_skips_add(&plan->skips, e->name, "not inside a class folder", err);
            continue;
        }
        if (!has_image_extension(e->name)) {
            rc = prep_skips_add(&plan->skips, e->name,
                                "not a .jpg, .jpeg or .png file", err);
            continue;
        }
        const char *c = component(e->name, depth, &len);
        prep_item *it = &plan->items[plan->n_items++];
        it->zip_index = i;
        it->name = e->name;
        it->label = (uint32_t)class_index(plan, c, len);
        it->split = plan->presplit ? entry_split(e->name, depth - 1) : KILN_SPLIT_TRAIN;
    }
    return rc;
}

/* ---------------- split ---------------- */

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static int cmp_item_name(const void *a, const void *b)
{
    return strcmp(((const prep_item *)a)->name, ((const prep_item *)b)->name);
}

static int cmp_item_order(const void *a, const void *b)
{
    const prep_item *x = a, *y = b;
    if (x->split != y->split)
        return x->split - y->split;
    if (x->label != y->label)
        return x->label < y->label ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void split_counts(uint32_t n, const kiln_prepare_opts *o, uint32_t *n_val,
                         uint32_t *n_test)
{
    *n_val = (uint32_t)(n * o->val_fraction + 0.5);
    *n_test = (uint32_t)(n * o->test_fraction + 0.5);
    /* Keep at least one training image per class. */
    while (*n_val + *n_test >= n && (*n_val || *n_test)) {
        if (*n_test >= *n_val && *n_test)
            (*n_test)--;
        else
            (*n_val)--;
    }
}

/* Items of one class: [begin, end) after sorting by label then name. The
 * class's own stream (seeded by its name) decides which go to test and val,
 * so adding a class does not reshuffle the others. */
static int split_class(prep_item *items, uint32_t n, const char *class_name,
                       const kiln_prepare_opts *o, kiln_err *err)
{
    uint32_t n_val, n_test;
    uint32_t *perm = malloc((n ? n : 1) * sizeof *perm);
    kiln_rng rng;
    if (!perm)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory splitting the dataset");
    qsort(items, n, sizeof *items, cmp_item_name);
    for (uint32_t i = 0; i < n; i++)
        perm[i] = i;
    kiln_rng_derive(&rng, o->seed, 0x5b117ULL, hash_name(class_name));
    kiln_rng_shuffle_u32(&rng, perm, n);
    split_counts(n, o, &n_val, &n_test);
    for (uint32_t k = 0; k < n; k++) {
        int split = k < n_test ? KILN_SPLIT_TEST
                    : k < n_test + n_val ? KILN_SPLIT_VAL : KILN_SPLIT_TRAIN;
        items[perm[k]].split = split;
    }
    free(perm);
    return KILN_OK;
}

static int cmp_item_label(const void *a, const void *b)
{
    const prep_item *x = a, *y = b;
    return x->label != y->label ? (x->label < y->label ? -1 : 1) : 0;
}

/* A pre-split class needs training images; val/ and test/ may lack it. */
static int check_presplit_class(const prep_item *items, size_t n, const char *class_name,
                                kiln_err *err)
{
    for (size_t i = 0; i < n; i++)
        if (items[i].split == KILN_SPLIT_TRAIN)
            return KILN_OK;
    return kiln_err_set(err, KILN_EFORMAT,
                        "class '%s' has images only under val/ or test/; a split zip needs "
                        "train/%s/ images too", class_name, class_name);
}

static int assign_splits(prep_plan *plan, const kiln_prepare_opts *o, kiln_err *err)
{
    size_t begin = 0;
    qsort(plan->items, plan->n_items, sizeof *plan->items, cmp_item_label);
    for (uint32_t c = 0; c < plan->n_classes; c++) {
        size_t end = begin;
        while (end < plan->n_items && plan->items[end].label == c)
            end++;
        if (end == begin)
            return kiln_err_set(err, KILN_EFORMAT,
                                "class folder '%s/' has no .jpg, .jpeg or .png images",
                                plan->classes[c]);
        int rc = plan->presplit ? check_presplit_class(plan->items + begin, end - begin,
                                                       plan->classes[c], err)
                                : split_class(plan->items + begin, (uint32_t)(end - begin),
                                              plan->classes[c], o, err);
        if (rc != KILN_OK)
            return rc;
        begin = end;
    }
    qsort(plan->items, plan->n_items, sizeof *plan->items, cmp_item_order);
    return KILN_OK;
}

static int check_classes(const prep_plan *plan, kiln_err *err)
{
    if (plan->n_classes >= 2)
        return KILN_OK;
    if (plan->n_classes == 1)
        return kiln_err_set(err, KILN_EFORMAT,
                            "found only one class folder ('%s/'); a dataset needs at least 2 "
                            "folders of images, one per class (e.g. dry/ and wet/)",
                            plan->classes[0]);
    return kiln_err_set(err, KILN_EFORMAT,
                        "found no class folders; the zip must hold one folder of images per "
                        "class (e.g. dry/ and wet/)");
}

int prep_plan_build(const kiln_zip *zip, const kiln_prepare_opts *opts, prep_plan *plan,
                    kiln_err *err)
{
    memset(plan, 0, sizeof *plan);
    size_t depth = wrapper_depth(zip);
    /* Class folders sit one level below the split folders of a split zip. */
    plan->presplit = is_presplit(zip, depth);
    if (plan->presplit)
        depth++;
    int rc = find_classes(zip, depth, plan, err);
    if (rc == KILN_OK)
        rc = check_classes(plan, err);
    if (rc == KILN_OK)
        rc = classify_files(zip, depth, plan, err);
    if (rc == KILN_OK)
        rc = assign_splits(plan, opts, err);
    if (rc != KILN_OK)
        prep_plan_free(plan);
    return rc;
}

void prep_plan_free(prep_plan *plan)
{
    for (size_t i = 0; i < plan->n_classes; i++)
        free(plan->classes[i]);
    free(plan->classes);
    free(plan->items);
    prep_skips_free(&plan->skips);
    memset(plan, 0, sizeof *plan);
}
