/* lib/nn/safetensors.c — reading safetensors files: the whole file in one
 * buffer, the JSON header checked entry by entry, tensors pointing into it.
 *
 * The checks follow the reference implementation (huggingface/safetensors,
 * Metadata::validate): sorted by offset, the tensors must tile the data
 * section exactly — no overlap, no gap, no trailing bytes — and each byte
 * range must equal its shape's element count times the dtype size.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "nn/safetensors_internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "lib/nn/safetensors.c assumes a little-endian host (the format is little-endian)"
#endif

/* JSON numbers are doubles: integers above 2^53 are not exact. */
#define ST_MAX_JSON_INT 9007199254740992.0

typedef struct st_dtype_info {
    const char *name;
    size_t size;
} st_dtype_info;

static const st_dtype_info st_dtypes[] = {
    [KILN_ST_F32] = {"F32", 4}, [KILN_ST_F16] = {"F16", 2}, [KILN_ST_BF16] = {"BF16", 2},
    [KILN_ST_F64] = {"F64", 8}, [KILN_ST_I64] = {"I64", 8}, [KILN_ST_I32] = {"I32", 4},
    [KILN_ST_U8] = {"U8", 1},
};
#define ST_NDTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

const char *kiln_st_dtype_name(kiln_st_dtype d)
{
    return (unsigned)d < ST_NDTYPES ? st_dtypes[d].name : NULL;
}

size_t kiln_st_dtype_size(kiln_st_dtype d)
{
    return (unsigned)d < ST_NDTYPES ? st_dtypes[d].size : 0;
}

typedef struct st_meta {
    char *key;
    char *value;
} st_meta;

struct kiln_st_file {
    char *name;              /* the path, for messages */
    unsigned char *bytes;    /* the whole file */
    size_t len;
    kiln_st_tensor *tensors; /* sorted by data offset */
    size_t count;
    size_t *by_name;         /* indices into tensors, sorted by name */
    st_meta *meta;
    size_t meta_count;
};

/* Parse state for one file: offsets come from the JSON, the tensors get
 * their data pointers once every range is known to be valid. */
typedef struct st_range {
    size_t begin, end;
    size_t order; /* position in the header, for a stable sort */
} st_range;

typedef struct st_parse {
    kiln_st_file *f;
    st_range *ranges; /* parallel to f->tensors until sorted */
    size_t data_len;
    kiln_err *err;
} st_parse;

static int json_size(const cJSON *item, size_t *out)
{
    if (!cJSON_IsNumber(item))
        return 0;
    double v = item->valuedouble;
    if (!isfinite(v) || v < 0 || v > ST_MAX_JSON_INT || v != floor(v))
        return 0;
    if (v > (double)SIZE_MAX)
        return 0;
    *out = (size_t)v;
    return 1;
}

static int parse_dtype(st_parse *p, const char *tname, const cJSON *entry, kiln_st_dtype *out)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!cJSON_IsString(d))
        return kiln_err_set(p->err, KILN_EFORMAT,
                            "safetensors file %s: tensor '%s' has no \"dtype\" string",
                            p->f->name, tname);
    for (size_t i = 0; i < ST_NDTYPES; i++)
        if (strcmp(d->valuestring, st_dtypes[i].name) == 0) {
            *out = (kiln_st_dtype)i;
            return KILN_OK;
        }
    return kiln_err_set(p->err, KILN_EUNSUPPORTED,
                        "safetensors file %s: tensor '%s' has dtype '%.32s', which kiln does not "
                        "read (F32 F16 BF16 F64 I64 I32 U8)",
                        p->f->name, tname, d->valuestring);
}

/* Fills ndim/shape and the byte count the shape implies (0 on overflow). */
static int parse_shape(st_parse *p, const char *tname, const cJSON *entry, kiln_st_tensor *t,
                       size_t *nbytes)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    if (!cJSON_IsArray(s))
        return kiln_err_set(p->err, KILN_EFORMAT,
                            "safetensors file %s: tensor '%s' has no \"shape\" array",
                            p->f->name, tname);
    int n = cJSON_GetArraySize(s);
    if (n > KILN_ST_MAX_DIMS)
        return kiln_err_set(p->err, KILN_EUNSUPPORTED,
                            "safetensors file %s: tensor '%s' has %d dimensions (kiln reads up "
                            "to %d)", p->f->name, tname, n, KILN_ST_MAX_DIMS);
    size_t bytes = kiln_st_dtype_size(t->dtype);
    int i = 0;
    for (const cJSON *dim = s->child; dim; dim = dim->next, i++) {
        size_t v;
        if (!json_size(dim, &v))
            return kiln_err_set(p->err, KILN_EFORMAT,
                                "safetensors file %s: tensor '%s': dimension %d of its shape is "
                                "not a non-negative integer", p->f->name, tname, i);
        if (v != 0 && bytes > SIZE_MAX / v)
            return kiln_err_set(p->err, KILN_EFORMAT,
                                "safetensors file %s: tensor '%s': its shape's size overflows",
                                p->f->name, tname);
        bytes *= v;
        t->shape[i] = (int64_t)v;
    }
    t->ndim = n;
    *nbytes = bytes;
    return KILN_OK;
}

static int parse_offsets(st_parse *p, const char *tname, const cJSON *entry, st_range *r)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsArray(o) || cJSON_GetArraySize(o) != 2 || !json_size(o->child, &r->begin) ||
        !json_size(o->child->next, &r->end))
        return kiln_err_set(p->err, KILN_EFORMAT,
                            "safetensors file %s: tensor '%s' needs \"data_offsets\": "
                            "[begin, end] of non-negative integers", p->f->name, tname);
    if (r->end < r->begin)
        return kiln_err_set(p->err, KILN_EFORMAT,
                            "safetensors file %s: tensor '%s' has data_offsets [%zu, %zu] that "
                            "end before they begin", p->f->name, tname, r->begin, r->end);
    if (r->end > p->data_len)
        return kiln_err_set(p->err, KILN_EFORMAT,
                            "safetensors file %s: tensor '%s' has data_offsets [%zu, %zu] past "
                            "the end of the data (%zu bytes; truncated file?)",
                            p->f->name, tname, r->begin, r->end, p->data_len);
    return KILN_OK;
}

static int parse_tensor(st_parse *p, const cJSON *entry, size_t i)
{
    kiln_st_file *f = p->f;
    kiln_st_tensor *t = &f->tensors[i];
    const char *tname = entry->string;
    size_t nbytes = 0;
    if (!cJSON_IsObject(entry))
        return kiln_err_set(p->err, KILN_EFORMAT,
                            "safetensors file %s: the entry for tensor '%s' is not an object",
                            f->name, tname);
    t->name = strdup(tname);
    if (!t->name)
        return kiln_err_set(p->err, KILN_ENOMEM, "out of memory reading %s", f->name);
    int rc = parse_dtype(p, tname, entry, &t->dtype);
    if (rc == KILN_OK)
        rc = parse_shape(p, tname, entry, t, &nbytes);
    if (rc == KILN_OK)
        rc = parse_offsets(p, tname, entry, &p->ranges[i]);
    if (rc != KILN_OK)
        return rc;
    st_range *r = &p->ranges[i];
    r->order = i;
    if (r->end - r->begin != nbytes)
        return kiln_err_set(p->err, KILN_EFORMAT,
                            "safetensors file %s: tensor '%s': its shape and dtype %s make %zu "
                            "bytes but data_offsets [%zu, %zu] hold %zu",
                            f->name, tname, st_dtypes[t->dtype].name, nbytes, r->begin, r->end,
                            r->end - r->begin);
    t->bytes = nbytes;
    return KILN_OK;
}

static int parse_metadata(st_parse *p, const cJSON *obj)
{
    kiln_st_file *f = p->f;
    if (f->meta)
        return kiln_err_set(p->err, KILN_EFORMAT,
                            "safetensors file %s: \"__metadata__\" appears twice", f->name);
    if (!cJSON_IsObject(obj))
        return kiln_err_set(p->err, KILN_EFORMAT,
                            "safetensors file %s: \"__metadata__\" is not an object", f->name);
    size_t n = (size_t)cJSON_GetArraySize(obj);
    f->meta = calloc(n ? n : 1, sizeof *f->meta);
    if (!f->meta)
        return kiln_err_set(p->err, KILN_ENOMEM, "out of memory reading %s", f->name);
    for (const cJSON *kv = obj->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return kiln_err_set(p->err, KILN_EFORMAT,
                                "safetensors file %s: __metadata__ value '%s' is not a string",
                                f->name, kv->string);
        for (size_t j = 0; j < f->meta_count; j++)
            if (strcmp(f->meta[j].key, kv->string) == 0)
                return kiln_err_set(p->err, KILN_EFORMAT,
                                    "safetensors file %s: __metadata__ key '%s' appears twice",
                                    f->name, kv->string);
        st_meta *m = &f->meta[f->meta_count];
        m->key = strdup(kv->string);
        m->value = strdup(kv->valuestring);
        f->meta_count++;
        if (!m->key || !m->value)
            return kiln_err_set(p->err, KILN_ENOMEM, "out of memory reading %s", f->name);
    }
    return KILN_OK;
}

static int cmp_range(const void *a, const void *b)
{
    const st_range *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Sort tensors by offset and check that they tile the data exactly. */
static int check_layout(st_parse *p, const unsigned char *data)
{
    kiln_st_file *f = p->f;
    qsort(p->ranges, f->count, sizeof *p->ranges, cmp_range);
    kiln_st_tensor *sorted = calloc(f->count ? f->count : 1, sizeof *sorted);
    if (!sorted)
        return kiln_err_set(p->err, KILN_ENOMEM, "out of memory reading %s", f->name);
    for (size_t i = 0; i < f->count; i++)
        sorted[i] = f->tensors[p->ranges[i].order];
    free(f->tensors);
    f->tensors = sorted;
    size_t expect = 0;
    for (size_t i = 0; i < f->count; i++) {
        const st_range *r = &p->ranges[i];
        if (r->begin != expect)
            return kiln_err_set(p->err, KILN_EFORMAT,
                                "safetensors file %s: tensor '%s' starts at data offset %zu, "
                                "expected %zu (%s)", f->name, sorted[i].name, r->begin, expect,
                                r->begin < expect ? "it overlaps the tensor before it"
                                                  : "a gap before it");
        sorted[i].data = data + r->begin;
        expect = r->end;
    }
    if (expect != p->data_len)
        return kiln_err_set(p->err, KILN_EFORMAT,
                            "safetensors file %s: %zu bytes after the last tensor belong to no "
                            "tensor", f->name, p->data_len - expect);
    return KILN_OK;
}

/* qsort_r: the tensor array travels as the context, no global state. */
static int cmp_by_name(const void *a, const void *b, void *ctx)
{
    const kiln_st_tensor *t = ctx;
    return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

static int index_names(st_parse *p)
{
    kiln_st_file *f = p->f;
    f->by_name = malloc((f->count ? f->count : 1) * sizeof *f->by_name);
    if (!f->by_name)
        return kiln_err_set(p->err, KILN_ENOMEM, "out of memory reading %s", f->name);
    for (size_t i = 0; i < f->count; i++)
        f->by_name[i] = i;
    qsort_r(f->by_name, f->count, sizeof *f->by_name, cmp_by_name, f->tensors);
    for (size_t i = 1; i < f->count; i++)
        if (strcmp(f->tensors[f->by_name[i]].name, f->tensors[f->by_name[i - 1]].name) == 0)
            return kiln_err_set(p->err, KILN_EFORMAT,
                                "safetensors file %s: tensor '%s' appears twice in the header",
                                f->name, f->tensors[f->by_name[i]].name);
    return KILN_OK;
}

/* Header length and the JSON text inside the file's bytes. */
static int read_header(st_parse *p, cJSON **root)
{
    kiln_st_file *f = p->f;
    if (f->len < 8)
        return kiln_err_set(p->err, KILN_EFORMAT,
                            "safetensors file %s: %zu bytes, too short for the 8-byte header "
                            "length", f->name, f->len);
    uint64_t n;
    memcpy(&n, f->bytes, 8);
    if (n > KILN_ST_MAX_HEADER)
        return kiln_err_set(p->err, KILN_ELIMIT,
                            "safetensors file %s: header length %llu is over the limit of %zu "
                            "bytes (not a safetensors file?)",
                            f->name, (unsigned long long)n, KILN_ST_MAX_HEADER);
    if (n > f->len - 8)
        return kiln_err_set(p->err, KILN_EFORMAT,
                            "safetensors file %s: header length %llu is larger than the %zu "
                            "bytes after it (truncated or not a safetensors file)",
                            f->name, (unsigned long long)n, f->len - 8);
    const char *text = (const char *)f->bytes + 8;
    if (n < 2 || text[0] != '{')
        return kiln_err_set(p->err, KILN_EFORMAT,
                            "safetensors file %s: the header does not start with a JSON object",
                            f->name);
    const char *end = NULL;
    *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &end, 0);
    if (!*root || !cJSON_IsObject(*root))
        return kiln_err_set(p->err, KILN_EFORMAT,
                            "safetensors file %s: the header is not valid JSON (near byte %td)",
                            f->name, (end ? end : text) - text + 8);
    /* The reference writer pads with spaces to a multiple of 8 bytes. */
    for (; end && end < text + n; end++)
        if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r')
            return kiln_err_set(p->err, KILN_EFORMAT,
                                "safetensors file %s: bytes after the header's JSON object "
                                "(at byte %td)", f->name, end - text + 8);
    p->data_len = f->len - 8 - (size_t)n;
    return KILN_OK;
}

static int parse_entries(st_parse *p, const cJSON *root)
{
    kiln_st_file *f = p->f;
    size_t n = (size_t)cJSON_GetArraySize(root);
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    p->ranges = calloc(n ? n : 1, sizeof *p->ranges);
    if (!f->tensors || !p->ranges)
        return kiln_err_set(p->err, KILN_ENOMEM, "out of memory reading %s", f->name);
    for (const cJSON *e = root->child; e; e = e->next) {
        int rc = strcmp(e->string, "__metadata__") == 0 ? parse_metadata(p, e)
                                                         : parse_tensor(p, e, f->count++);
        if (rc != KILN_OK)
            return rc;
    }
    return KILN_OK;
}

/* Takes ownership of `bytes` (malloc'ed), also on failure. */
static kiln_st_file *parse_owned(const char *name, unsigned char *bytes, size_t len,
                                 kiln_err *err)
{
    cJSON *root = NULL;
    st_parse p = {.err = err};
    kiln_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->name = strdup(name))) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory reading %s", name);
        free(bytes);
        free(f);
        return NULL;
    }
    f->bytes = bytes;
    f->len = len;
    p.f = f;
    int rc = read_header(&p, &root);
    if (rc == KILN_OK)
        rc = parse_entries(&p, root);
    if (rc == KILN_OK)
        rc = check_layout(&p, f->bytes + (f->len - p.data_len));
    if (rc == KILN_OK)
        rc = index_names(&p);
    cJSON_Delete(root);
    free(p.ranges);
    if (rc != KILN_OK) {
        kiln_st_close(f);
        return NULL;
    }
    return f;
}

kiln_st_file *kiln_st_parse(const char *name, const void *bytes, size_t len, kiln_err *err)
{
    unsigned char *copy = malloc(len ? len : 1);
    if (!copy) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory reading %s (%zu bytes)", name, len);
        return NULL;
    }
    if (len)
        memcpy(copy, bytes, len);
    return parse_owned(name, copy, len, err);
}

kiln_st_file *kiln_st_open(const char *path, kiln_err *err)
{
    char *bytes = NULL;
    size_t len = 0;
    if (kiln_read_file(path, 0, &bytes, &len, err) != KILN_OK)
        return NULL;
    return parse_owned(path, (unsigned char *)bytes, len, err);
}

void kiln_st_close(kiln_st_file *f)
{
    if (!f)
        return;
    if (f->tensors)
        for (size_t i = 0; i < f->count; i++)
            free((char *)f->tensors[i].name);
    for (size_t i = 0; i < f->meta_count; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->meta);
    free(f->tensors);
    free(f->by_name);
    free(f->bytes);
    free(f->name);
    free(f);
}

size_t kiln_st_count(const kiln_st_file *f)
{
    return f->count;
}

const kiln_st_tensor *kiln_st_at(const kiln_st_file *f, size_t i)
{
    return i < f->count ? &f->tensors[i] : NULL;
}

const kiln_st_tensor *kiln_st_find(const kiln_st_file *f, const char *name)
{
    size_t lo = 0, hi = f->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const kiln_st_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0)
            return t;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *kiln_st_metadata(const kiln_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->meta_count; i++)
        if (strcmp(f->meta[i].key, key) == 0)
            return f->meta[i].value;
    return NULL;
}

/* IEEE half to float, subnormals, infinities and NaNs included. */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0) {
        float v = ldexpf((float)mant, -24);
        return sign ? -v : v;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (mant << 13);
    else
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

/* Element i of an unaligned little-endian buffer, as float. */
static float element_f32(const unsigned char *src, kiln_st_dtype dtype, size_t i)
{
    switch (dtype) {
    case KILN_ST_F16: {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        return half_to_float(h);
    }
    case KILN_ST_BF16: {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        uint32_t bits = (uint32_t)h << 16;
        float v;
        memcpy(&v, &bits, sizeof v);
        return v;
    }
    case KILN_ST_F64: {
        double d;
        memcpy(&d, src + 8 * i, 8);
        return (float)d;
    }
    case KILN_ST_I64: {
        int64_t v;
        memcpy(&v, src + 8 * i, 8);
        return (float)v;
    }
    case KILN_ST_I32: {
        int32_t v;
        memcpy(&v, src + 4 * i, 4);
        return (float)v;
    }
    default: {
        float v;
        memcpy(&v, src + 4 * i, 4);
        return v;
    }
    }
}

int kiln_st_to_f32(const kiln_st_tensor *t, float *out, size_t count, kiln_err *err)
{
    size_t size = kiln_st_dtype_size(t->dtype);
    if (t->dtype == KILN_ST_U8 || size == 0)
        return kiln_err_set(err, KILN_EUNSUPPORTED,
                            "tensor '%s' is %s, which kiln does not convert to float32", t->name,
                            size ? st_dtypes[t->dtype].name : "of an unknown dtype");
    size_t have = t->bytes / size;
    if (have != count)
        return kiln_err_set(err, KILN_EINVAL,
                            "tensor '%s' has %zu elements, expected %zu", t->name, have, count);
    if (t->dtype == KILN_ST_F32) {
        if (count)
            memcpy(out, t->data, count * sizeof *out);
        return KILN_OK;
    }
    for (size_t i = 0; i < count; i++)
        out[i] = element_f32(t->data, t->dtype, i);
    return KILN_OK;
}
