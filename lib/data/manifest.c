/* manifest.json: the dataset's description, written last by prepare. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "data/dataset.h"

#define MANIFEST_NAME "manifest.json"
#define MANIFEST_MAX_BYTES (64u << 20)

static const char *const split_names[KILN_SPLIT_COUNT] = {"train", "val", "test"};

const char *kiln_split_name(int split)
{
    return split >= 0 && split < KILN_SPLIT_COUNT ? split_names[split] : "?";
}

int kiln_split_parse(const char *name)
{
    for (int i = 0; i < KILN_SPLIT_COUNT; i++)
        if (name && strcmp(name, split_names[i]) == 0)
            return i;
    return -1;
}

/* ---------------- writing ---------------- */

static cJSON *double_array(const double *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static cJSON *split_to_json(const kiln_manifest *m, const kiln_manifest_split *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *per_class = cJSON_AddObjectToObject(o, "per_class");
    cJSON *shards = cJSON_AddArrayToObject(o, "shards");
    cJSON_AddNumberToObject(o, "count", s->count);
    for (size_t c = 0; per_class && c < m->n_classes; c++)
        cJSON_AddNumberToObject(per_class, m->classes[c], s->per_class ? s->per_class[c] : 0);
    for (size_t i = 0; shards && i < s->n_shards; i++) {
        cJSON *sh = cJSON_CreateObject();
        cJSON_AddStringToObject(sh, "file", s->shards[i].file);
        cJSON_AddNumberToObject(sh, "count", s->shards[i].count);
        cJSON_AddItemToArray(shards, sh);
    }
    return o;
}

static cJSON *skipped_to_json(const kiln_manifest *m)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < m->n_skipped; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "entry", m->skipped[i].entry);
        cJSON_AddStringToObject(e, "reason", m->skipped[i].reason);
        cJSON_AddItemToArray(a, e);
    }
    return a;
}

static cJSON *manifest_to_json(const kiln_manifest *m)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *source = cJSON_AddObjectToObject(o, "source");
    cJSON *splits = cJSON_AddObjectToObject(o, "splits");
    cJSON *classes = cJSON_CreateStringArray((const char *const *)m->classes, (int)m->n_classes);
    cJSON_AddStringToObject(o, "format", "kiln-dataset");
    cJSON_AddNumberToObject(o, "format_version", m->format_version);
    cJSON_AddStringToObject(o, "kiln_version", m->kiln_version ? m->kiln_version : KILN_VERSION);
    cJSON_AddNumberToObject(o, "image_size", m->image_size);
    cJSON_AddStringToObject(o, "layout", "HWC");
    cJSON_AddStringToObject(o, "dtype", "uint8");
    cJSON_AddNumberToObject(o, "channels", 3);
    cJSON_AddItemToObject(o, "classes", classes);
    cJSON_AddStringToObject(o, "normalization", m->normalization ? m->normalization : "imagenet");
    cJSON_AddItemToObject(o, "mean", double_array(m->mean, 3));
    cJSON_AddItemToObject(o, "std", double_array(m->std, 3));
    cJSON_AddNumberToObject(o, "val_fraction", m->val_fraction);
    cJSON_AddNumberToObject(o, "test_fraction", m->test_fraction);
    cJSON_AddStringToObject(o, "split", m->split_from_folders ? "folders" : "seeded");
    /* Seeds go as strings: a JSON number loses precision past 2^53. */
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)m->seed);
    cJSON_AddStringToObject(o, "seed", seed);
    cJSON_AddStringToObject(source, "path", m->source_path ? m->source_path : "");
    cJSON_AddStringToObject(source, "sha256", m->source_sha256 ? m->source_sha256 : "");
    cJSON_AddNumberToObject(source, "bytes", (double)m->source_bytes);
    for (int i = 0; splits && i < KILN_SPLIT_COUNT; i++)
        cJSON_AddItemToObject(splits, split_names[i], split_to_json(m, &m->splits[i]));
    cJSON_AddItemToObject(o, "skipped", skipped_to_json(m));
    cJSON_AddNumberToObject(o, "skipped_count", (double)m->n_skipped);
    cJSON_AddNumberToObject(o, "ignored_count", (double)m->n_ignored);
    return o;
}

int kiln_manifest_write(const char *dir, const kiln_manifest *m, kiln_err *err)
{
    char path[4096];
    int rc = kiln_path_join(path, sizeof path, dir, MANIFEST_NAME, err);
    if (rc != KILN_OK)
        return rc;
    cJSON *o = manifest_to_json(m);
    char *text = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!text)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory writing %s", path);
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the NUL: a text file ends with a newline */
    rc = kiln_write_file_atomic(path, text, len + 1, err);
    free(text);
    return rc;
}

/* ---------------- reading ---------------- */

static int get_number(const cJSON *o, const char *key, double lo, double hi, double *out,
                      const char *path, kiln_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi)
        return kiln_err_set(err, KILN_EFORMAT, "%s: '%s' must be a number in [%g, %g]", path,
                            key, lo, hi);
    *out = v->valuedouble;
    return KILN_OK;
}

static int get_string(const cJSON *o, const char *key, char **out, const char *path,
                      kiln_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v))
        return kiln_err_set(err, KILN_EFORMAT, "%s: '%s' must be a string", path, key);
    if (!(*out = strdup(v->valuestring)))
        return kiln_err_set(err, KILN_ENOMEM, "out of memory reading %s", path);
    return KILN_OK;
}

static int get_triple(const cJSON *o, const char *key, double out[3], const char *path,
                      kiln_err *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 3)
        return kiln_err_set(err, KILN_EFORMAT, "%s: '%s' must be an array of 3 numbers", path,
                            key);
    for (int i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsNumber(v))
            return kiln_err_set(err, KILN_EFORMAT, "%s: '%s' must hold numbers", path, key);
        out[i] = v->valuedouble;
    }
    return KILN_OK;
}

static int read_classes(const cJSON *o, kiln_manifest *m, const char *path, kiln_err *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "classes");
    int n = cJSON_GetArraySize(a);
    if (!cJSON_IsArray(a) || n < 1)
        return kiln_err_set(err, KILN_EFORMAT, "%s: 'classes' must be a non-empty array", path);
    m->classes = calloc((size_t)n, sizeof *m->classes);
    if (!m->classes)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory reading %s", path);
    m->n_classes = (size_t)n;
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsString(v) || !v->valuestring[0])
            return kiln_err_set(err, KILN_EFORMAT, "%s: classes[%d] must be a name", path, i);
        if (!(m->classes[i] = strdup(v->valuestring)))
            return kiln_err_set(err, KILN_ENOMEM, "out of memory reading %s", path);
    }
    return KILN_OK;
}

static int read_shards(const cJSON *a, kiln_manifest_split *s, const char *where,
                       const char *path, kiln_err *err)
{
    int n = cJSON_GetArraySize(a);
    uint64_t total = 0;
    if (!cJSON_IsArray(a))
        return kiln_err_set(err, KILN_EFORMAT, "%s: %s.shards must be an array", path, where);
    s->shards = calloc(n ? (size_t)n : 1, sizeof *s->shards);
    if (!s->shards)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory reading %s", path);
    s->n_shards = (size_t)n;
    for (int i = 0; i < n; i++) {
        const cJSON *sh = cJSON_GetArrayItem(a, i);
        double count = 0;
        int rc = get_string(sh, "file", &s->shards[i].file, path, err);
        if (rc == KILN_OK)
            rc = get_number(sh, "count", 0, 4294967295.0, &count, path, err);
        if (rc != KILN_OK)
            return kiln_err_wrap(err, "%s.shards[%d]", where, i);
        /* A shard name is a plain file in the dataset dir, never a path. */
        if (strchr(s->shards[i].file, '/') || s->shards[i].file[0] == '.')
            return kiln_err_set(err, KILN_EUNSAFE, "%s: %s.shards[%d].file '%s' is not a plain "
                                "file name", path, where, i, s->shards[i].file);
        s->shards[i].count = (uint32_t)count;
        total += s->shards[i].count;
    }
    if (total != s->count)
        return kiln_err_set(err, KILN_EFORMAT, "%s: %s.count is %u but its shards hold %llu",
                            path, where, s->count, (unsigned long long)total);
    return KILN_OK;
}

/* "split" arrived after format 1's first datasets: absent means seeded. */
static int read_split_source(const cJSON *o, kiln_manifest *m, const char *path, kiln_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "split");
    if (!v)
        return KILN_OK;
    if (cJSON_IsString(v) && strcmp(v->valuestring, "folders") == 0)
        m->split_from_folders = 1;
    else if (!cJSON_IsString(v) || strcmp(v->valuestring, "seeded") != 0)
        return kiln_err_set(err, KILN_EFORMAT, "%s: split must be \"folders\" or \"seeded\"",
                            path);
    return KILN_OK;
}

static int read_split(const cJSON *splits, int idx, kiln_manifest *m, const char *path,
                      kiln_err *err)
{
    const char *name = split_names[idx];
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(splits, name);
    kiln_manifest_split *s = &m->splits[idx];
    double count = 0;
    if (!cJSON_IsObject(o))
        return kiln_err_set(err, KILN_EFORMAT, "%s: splits.%s is missing", path, name);
    int rc = get_number(o, "count", 0, 4294967295.0, &count, path, err);
    if (rc != KILN_OK)
        return kiln_err_wrap(err, "splits.%s", name);
    s->count = (uint32_t)count;
    s->per_class = calloc(m->n_classes, sizeof *s->per_class);
    if (!s->per_class)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory reading %s", path);
    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(o, "per_class");
    for (size_t c = 0; c < m->n_classes; c++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(pc, m->classes[c]);
        s->per_class[c] = cJSON_IsNumber(v) && v->valuedouble >= 0 ? (uint32_t)v->valuedouble : 0;
    }
    return read_shards(cJSON_GetObjectItemCaseSensitive(o, "shards"), s, name, path, err);
}

static int read_skipped(const cJSON *o, kiln_manifest *m, const char *path, kiln_err *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "skipped");
    int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0;
    const cJSON *ign = cJSON_GetObjectItemCaseSensitive(o, "ignored_count");
    m->n_ignored = cJSON_IsNumber(ign) && ign->valuedouble > 0 ? (uint64_t)ign->valuedouble : 0;
    if (n == 0)
        return KILN_OK;
    m->skipped = calloc((size_t)n, sizeof *m->skipped);
    if (!m->skipped)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory reading %s", path);
    m->n_skipped = (size_t)n;
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(a, i);
        int rc = get_string(e, "entry", &m->skipped[i].entry, path, err);
        if (rc == KILN_OK)
            rc = get_string(e, "reason", &m->skipped[i].reason, path, err);
        if (rc != KILN_OK)
            return kiln_err_wrap(err, "skipped[%d]", i);
    }
    return KILN_OK;
}

static int read_source(const cJSON *o, kiln_manifest *m, const char *path, kiln_err *err)
{
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(o, "source");
    double bytes = 0;
    int rc = get_string(src, "path", &m->source_path, path, err);
    if (rc == KILN_OK)
        rc = get_string(src, "sha256", &m->source_sha256, path, err);
    if (rc == KILN_OK)
        rc = get_number(src, "bytes", 0, 1e18, &bytes, path, err);
    m->source_bytes = (uint64_t)bytes;
    return rc == KILN_OK ? rc : kiln_err_wrap(err, "source");
}

static int read_seed(const cJSON *o, kiln_manifest *m, const char *path, kiln_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "seed");
    char *end = NULL;
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return kiln_err_set(err, KILN_EFORMAT, "%s: 'seed' must be a decimal string", path);
    m->seed = strtoull(v->valuestring, &end, 10);
    if (*end)
        return kiln_err_set(err, KILN_EFORMAT, "%s: 'seed' must be a decimal string", path);
    return KILN_OK;
}

static int manifest_from_json(const cJSON *o, kiln_manifest *m, const char *path,
                              kiln_err *err)
{
    double v = 0;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "kiln-dataset") != 0)
        return kiln_err_set(err, KILN_EFORMAT, "%s is not a kiln dataset manifest", path);
    int rc = get_number(o, "format_version", 1, 1, &v, path, err);
    m->format_version = (int)v;
    if (rc == KILN_OK)
        rc = get_string(o, "kiln_version", &m->kiln_version, path, err);
    if (rc == KILN_OK && (rc = get_number(o, "image_size", 1, 65536, &v, path, err)) == KILN_OK)
        m->image_size = (uint32_t)v;
    if (rc == KILN_OK)
        rc = read_classes(o, m, path, err);
    if (rc == KILN_OK)
        rc = get_string(o, "normalization", &m->normalization, path, err);
    if (rc == KILN_OK)
        rc = get_triple(o, "mean", m->mean, path, err);
    if (rc == KILN_OK)
        rc = get_triple(o, "std", m->std, path, err);
    if (rc == KILN_OK)
        rc = get_number(o, "val_fraction", 0, 1, &m->val_fraction, path, err);
    if (rc == KILN_OK)
        rc = get_number(o, "test_fraction", 0, 1, &m->test_fraction, path, err);
    if (rc == KILN_OK)
        rc = read_split_source(o, m, path, err);
    if (rc == KILN_OK)
        rc = read_seed(o, m, path, err);
    if (rc == KILN_OK)
        rc = read_source(o, m, path, err);
    const cJSON *splits = cJSON_GetObjectItemCaseSensitive(o, "splits");
    for (int i = 0; rc == KILN_OK && i < KILN_SPLIT_COUNT; i++)
        rc = read_split(splits, i, m, path, err);
    if (rc == KILN_OK)
        rc = read_skipped(o, m, path, err);
    return rc;
}

int kiln_manifest_read(const char *dir, kiln_manifest *m, kiln_err *err)
{
    char path[4096];
    char *text = NULL;
    size_t len = 0;
    cJSON *o = NULL;
    memset(m, 0, sizeof *m);
    int rc = kiln_path_join(path, sizeof path, dir, MANIFEST_NAME, err);
    if (rc == KILN_OK)
        rc = kiln_read_file(path, MANIFEST_MAX_BYTES, &text, &len, err);
    if (rc != KILN_OK)
        goto fail;
    const char *end = NULL;
    o = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!cJSON_IsObject(o)) {
        rc = kiln_err_set(err, KILN_EFORMAT, "%s is not a valid JSON object (near byte %ld)",
                          path, end ? (long)(end - text) : -1L);
        goto fail;
    }
    rc = manifest_from_json(o, m, path, err);
fail:
    cJSON_Delete(o);
    free(text);
    if (rc != KILN_OK)
        kiln_manifest_free(m);
    return rc;
}

void kiln_manifest_free(kiln_manifest *m)
{
    if (!m)
        return;
    for (size_t i = 0; m->classes && i < m->n_classes; i++)
        free(m->classes[i]);
    free(m->classes);
    for (int s = 0; s < KILN_SPLIT_COUNT; s++) {
        for (size_t i = 0; m->splits[s].shards && i < m->splits[s].n_shards; i++)
            free(m->splits[s].shards[i].file);
        free(m->splits[s].shards);
        free(m->splits[s].per_class);
    }
    for (size_t i = 0; m->skipped && i < m->n_skipped; i++) {
        free(m->skipped[i].entry);
        free(m->skipped[i].reason);
    }
    free(m->skipped);
    free(m->kiln_version);
    free(m->normalization);
    free(m->source_path);
    free(m->source_sha256);
    memset(m, 0, sizeof *m);
}
