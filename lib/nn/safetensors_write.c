/* lib/nn/safetensors_write.c — writing safetensors files atomically.
 *
 * The header is cJSON's compact text, padded with spaces to a multiple of
 * 8 bytes as the reference writer does, so the data section (and every
 * tensor whose offset is a multiple of its size) starts 8-byte aligned.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "nn/safetensors_internal.h"

typedef struct st_entry {
    char *name;
    kiln_st_dtype dtype;
    int ndim;
    int64_t shape[KILN_ST_MAX_DIMS];
    const void *data; /* borrowed */
    size_t bytes;
} st_entry;

typedef struct st_kv {
    char *key;
    char *value;
} st_kv;

struct kiln_st_writer {
    st_entry *entries;
    size_t count, cap;
    st_kv *meta;
    size_t meta_count, meta_cap;
};

kiln_st_writer *kiln_st_writer_create(kiln_err *err)
{
    kiln_st_writer *w = calloc(1, sizeof *w);
    if (!w)
        kiln_err_set(err, KILN_ENOMEM, "out of memory making a safetensors writer");
    return w;
}

void kiln_st_writer_destroy(kiln_st_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->count; i++)
        free(w->entries[i].name);
    for (size_t i = 0; i < w->meta_count; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->entries);
    free(w->meta);
    free(w);
}

/* `arr` with room for twice its *cap elements (`first` when empty); NULL,
 * with arr and *cap as they were, when out of memory. */
static void *grow_array(void *arr, size_t *cap, size_t elem_size, size_t first)
{
    size_t n = *cap ? 2 * *cap : first;
    void *grown = realloc(arr, n * elem_size);
    if (grown)
        *cap = n;
    return grown;
}

/* Bytes of a shape, 0 with *ok = 0 when it is negative or overflows. */
static size_t shape_bytes(kiln_st_dtype dtype, int ndim, const int64_t *shape, int *ok)
{
    size_t bytes = kiln_st_dtype_size(dtype);
    *ok = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > (1ull << 53) ||
            (shape[i] != 0 && bytes > SIZE_MAX / (size_t)shape[i])) {
            *ok = 0;
            return 0;
        }
        bytes *= (size_t)shape[i];
    }
    return bytes;
}

static int check_new_entry(const kiln_st_writer *w, const char *name, kiln_st_dtype dtype,
                           int ndim, const int64_t *shape, kiln_err *err)
{
    if (!name || !*name || strcmp(name, "__metadata__") == 0)
        return kiln_err_set(err, KILN_EINVAL, "safetensors: invalid tensor name '%s'",
                            name ? name : "(null)");
    if (!kiln_st_dtype_name(dtype))
        return kiln_err_set(err, KILN_EINVAL, "safetensors: tensor '%s' has an unknown dtype %d",
                            name, (int)dtype);
    if (ndim < 0 || ndim > KILN_ST_MAX_DIMS || (ndim > 0 && !shape))
        return kiln_err_set(err, KILN_EINVAL, "safetensors: tensor '%s' has %d dimensions "
                            "(0..%d)", name, ndim, KILN_ST_MAX_DIMS);
    for (size_t i = 0; i < w->count; i++)
        if (strcmp(w->entries[i].name, name) == 0)
            return kiln_err_set(err, KILN_EINVAL, "safetensors: tensor '%s' added twice", name);
    return KILN_OK;
}

int kiln_st_writer_add(kiln_st_writer *w, const char *name, kiln_st_dtype dtype, int ndim,
                       const int64_t *shape, const void *data, kiln_err *err)
{
    int rc = check_new_entry(w, name, dtype, ndim, shape, err);
    if (rc != KILN_OK)
        return rc;
    int ok;
    size_t bytes = shape_bytes(dtype, ndim, shape, &ok);
    if (!ok)
        return kiln_err_set(err, KILN_EINVAL,
                            "safetensors: tensor '%s' has a negative or oversized shape", name);
    if (bytes && !data)
        return kiln_err_set(err, KILN_EINVAL, "safetensors: tensor '%s' has no data", name);
    if (w->count == w->cap) {
        st_entry *grown = grow_array(w->entries, &w->cap, sizeof *grown, 16);
        if (!grown)
            return kiln_err_set(err, KILN_ENOMEM, "out of memory adding tensor '%s'", name);
        w->entries = grown;
    }
    st_entry *e = &w->entries[w->count];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory adding tensor '%s'", name);
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        e->shape[i] = shape[i];
    e->data = data;
    e->bytes = bytes;
    w->count++;
    return KILN_OK;
}

int kiln_st_writer_metadata(kiln_st_writer *w, const char *key, const char *value,
                            kiln_err *err)
{
    if (!key || !value)
        return kiln_err_set(err, KILN_EINVAL, "safetensors: metadata key and value are needed");
    for (size_t i = 0; i < w->meta_count; i++)
        if (strcmp(w->meta[i].key, key) == 0)
            return kiln_err_set(err, KILN_EINVAL, "safetensors: metadata key '%s' set twice",
                                key);
    if (w->meta_count == w->meta_cap) {
        st_kv *grown = grow_array(w->meta, &w->meta_cap, sizeof *grown, 8);
        if (!grown)
            return kiln_err_set(err, KILN_ENOMEM, "out of memory adding metadata '%s'", key);
        w->meta = grown;
    }
    st_kv *kv = &w->meta[w->meta_count];
    kv->key = strdup(key);
    kv->value = strdup(value);
    if (!kv->key || !kv->value) {
        free(kv->key);
        free(kv->value);
        return kiln_err_set(err, KILN_ENOMEM, "out of memory adding metadata '%s'", key);
    }
    w->meta_count++;
    return KILN_OK;
}

static cJSON *entry_json(const st_entry *e, size_t begin)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON *shape = cJSON_AddArrayToObject(obj, "shape");
    cJSON *offsets = cJSON_AddArrayToObject(obj, "data_offsets");
    if (!cJSON_AddStringToObject(obj, "dtype", kiln_st_dtype_name(e->dtype)) || !shape ||
        !offsets)
        goto fail;
    for (int i = 0; i < e->ndim; i++)
        if (!cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[i])))
            goto fail;
    if (!cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)begin)) ||
        !cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)(begin + e->bytes))))
        goto fail;
    return obj;
fail:
    cJSON_Delete(obj);
    return NULL;
}

/* The header's JSON text (malloc'ed), without padding. */
static char *header_json(const kiln_st_writer *w)
{
    cJSON *root = cJSON_CreateObject();
    char *text = NULL;
    if (!root)
        return NULL;
    if (w->meta_count) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        if (!meta)
            goto done;
        for (size_t i = 0; i < w->meta_count; i++)
            if (!cJSON_AddStringToObject(meta, w->meta[i].key, w->meta[i].value))
                goto done;
    }
    size_t offset = 0;
    for (size_t i = 0; i < w->count; i++) {
        cJSON *e = entry_json(&w->entries[i], offset);
        if (!e || !cJSON_AddItemToObject(root, w->entries[i].name, e)) {
            cJSON_Delete(e);
            goto done;
        }
        offset += w->entries[i].bytes;
    }
    text = cJSON_PrintUnformatted(root);
done:
    cJSON_Delete(root);
    return text;
}

static int write_all(kiln_atomic_file *af, const kiln_st_writer *w, const char *header,
                     size_t header_len, const char *path, kiln_err *err)
{
    FILE *fp = kiln_atomic_stream(af);
    size_t padded = (header_len + 7) / 8 * 8;
    unsigned char len_le[8];
    for (int i = 0; i < 8; i++)
        len_le[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    if (fwrite(len_le, 1, 8, fp) != 8 || fwrite(header, 1, header_len, fp) != header_len)
        goto io;
    for (size_t i = header_len; i < padded; i++)
        if (fputc(' ', fp) == EOF)
            goto io;
    for (size_t i = 0; i < w->count; i++)
        if (w->entries[i].bytes &&
            fwrite(w->entries[i].data, 1, w->entries[i].bytes, fp) != w->entries[i].bytes)
            goto io;
    return KILN_OK;
io:
    return kiln_err_errno(err, errno, "cannot write %s", path);
}

int kiln_st_write(kiln_st_writer *w, const char *path, kiln_err *err)
{
    char *header = header_json(w);
    if (!header)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory writing the header of %s", path);
    kiln_atomic_file *af = kiln_atomic_open(path, err);
    if (!af) {
        free(header);
        return err ? (int)err->code : KILN_EIO;
    }
    int rc = write_all(af, w, header, strlen(header), path, err);
    free(header);
    if (rc != KILN_OK) {
        kiln_atomic_abort(af);
        return rc;
    }
    return kiln_atomic_commit(af, err);
}
