/* efficientnet_io.c — the state_dict as safetensors with torchvision's
 * keys: save, strict load, pretrained import with a new head, and a model
 * shaped after a file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/efficientnet_internal.h"
#include "nn/safetensors_internal.h"

/* --- save ------------------------------------------------------------- */

/* Host copies of the parameter and buffer memory. */
static int download_state(kiln_effnet *m, float **params, float **buffers, kiln_err *err)
{
    kiln_nn_backend *be = m->be;
    *params = malloc((m->flat_floats ? m->flat_floats : 1) * sizeof **params);
    *buffers = malloc((m->buffer_floats ? m->buffer_floats : 1) * sizeof **buffers);
    if (!*params || !*buffers)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory copying EfficientNet weights");
    int rc = be->ops->download(be, *params, m->params, m->flat_floats * sizeof **params, err);
    if (rc == KILN_OK)
        rc = be->ops->download(be, *buffers, m->buffers, m->buffer_floats * sizeof **buffers,
                               err);
    return rc;
}

static int add_entries(kiln_effnet *m, kiln_st_writer *w, const float *params,
                       const float *buffers, kiln_err *err)
{
    for (size_t i = 0; i < m->spec.n; i++) {
        const effnet_entry *e = &m->spec.e[i];
        const kiln_effnet_tensor *t = &m->t[i];
        int rc;
        if (e->kind == EFFNET_BUF_COUNTER)
            rc = kiln_st_writer_add(w, e->name, KILN_ST_I64, 0, e->shape, t->counter, err);
        else
            rc = kiln_st_writer_add(w, e->name, KILN_ST_F32, e->ndim, e->shape,
                                    (e->kind == EFFNET_BUF_FLOAT ? buffers : params) + t->offset,
                                    err);
        if (rc != KILN_OK)
            return rc;
    }
    return KILN_OK;
}

int kiln_effnet_save(kiln_effnet *m, const char *path, kiln_err *err)
{
    float *params = NULL, *buffers = NULL;
    kiln_st_writer *w = NULL;
    char arch[32], classes[32];
    snprintf(arch, sizeof arch, "efficientnet_%s", m->cfg.variant);
    snprintf(classes, sizeof classes, "%d", m->num_classes);
    int rc = download_state(m, &params, &buffers, err);
    if (rc != KILN_OK)
        goto done;
    if (!(w = kiln_st_writer_create(err))) {
        rc = err ? err->code : KILN_ENOMEM;
        goto done;
    }
    if ((rc = add_entries(m, w, params, buffers, err)) != KILN_OK ||
        (rc = kiln_st_writer_metadata(w, "format", "pt", err)) != KILN_OK ||
        (rc = kiln_st_writer_metadata(w, "arch", arch, err)) != KILN_OK ||
        (rc = kiln_st_writer_metadata(w, "variant", m->cfg.variant, err)) != KILN_OK ||
        (rc = kiln_st_writer_metadata(w, "num_classes", classes, err)) != KILN_OK)
        goto done;
    rc = kiln_st_write(w, path, err);
done:
    kiln_st_writer_destroy(w);
    free(params);
    free(buffers);
    if (rc != KILN_OK)
        kiln_err_wrap(err, "saving EfficientNet-%s to %s", m->cfg.variant, path);
    return rc;
}

/* --- checking a file against the model -------------------------------- */

static void shape_str(char *out, size_t size, int ndim, const int64_t *shape)
{
    size_t used = (size_t)snprintf(out, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%lld", i ? ", " : "",
                                 (long long)shape[i]);
    if (used < size)
        snprintf(out + used, size - used, "]");
}

static int same_shape(const effnet_entry *e, const kiln_st_tensor *t)
{
    if (e->kind == EFFNET_BUF_COUNTER) /* a 0-d counter; [1] is read the same */
        return t->ndim == 0 || (t->ndim == 1 && t->shape[0] == 1);
    if (e->ndim != t->ndim)
        return 0;
    for (int i = 0; i < e->ndim; i++)
        if (e->shape[i] != t->shape[i])
            return 0;
    return 1;
}

static int dtype_ok(const effnet_entry *e, kiln_st_dtype d)
{
    if (e->kind == EFFNET_BUF_COUNTER)
        return d == KILN_ST_I64 || d == KILN_ST_I32;
    return d == KILN_ST_F32 || d == KILN_ST_F16 || d == KILN_ST_BF16;
}

/* In NEW_HEAD mode: 1 if the file's classifier differs only in its class
 * count (then it is not loaded), 0 if it matches; -1 on any other shape. */
static int head_differs(const kiln_effnet *m, const kiln_st_file *f)
{
    const kiln_st_tensor *w = kiln_st_find(f, "classifier.1.weight");
    const kiln_st_tensor *b = kiln_st_find(f, "classifier.1.bias");
    if (!w || !b)
        return 0; /* reported as missing by the full check */
    if (w->ndim != 2 || b->ndim != 1 || w->shape[1] != m->cfg.head_c ||
        w->shape[0] != b->shape[0] || w->shape[0] < 1)
        return -1;
    return w->shape[0] != m->num_classes;
}

static int is_head(const kiln_effnet *m, size_t i)
{
    return i == (size_t)m->fc_idx || i == (size_t)m->fc_idx + 1;
}

static int check_expected(const kiln_effnet *m, const kiln_st_file *f, const char *what,
                          int skip_head, kiln_err *err)
{
    char want[96], got[96];
    size_t missing = 0, first = 0;
    for (size_t i = 0; i < m->spec.n; i++) {
        const effnet_entry *e = &m->spec.e[i];
        const kiln_st_tensor *t = kiln_st_find(f, e->name);
        if (!t) {
            if (missing++ == 0)
                first = i;
            continue;
        }
        if (skip_head && is_head(m, i))
            continue;
        if (!same_shape(e, t)) {
            shape_str(want, sizeof want, e->ndim, e->shape);
            shape_str(got, sizeof got, t->ndim, t->shape);
            return kiln_err_set(err, KILN_EFORMAT,
                                "%s: key '%s' has shape %s, EfficientNet-%s with %d classes "
                                "expects %s",
                                what, e->name, got, m->cfg.variant, m->num_classes, want);
        }
        if (!dtype_ok(e, t->dtype))
            return kiln_err_set(err, KILN_EFORMAT, "%s: key '%s' has dtype %s, expected %s",
                                what, e->name, kiln_st_dtype_name(t->dtype),
                                e->kind == EFFNET_BUF_COUNTER ? "I64 or I32"
                                                              : "F32, F16 or BF16");
    }
    if (missing)
        return kiln_err_set(err, KILN_EFORMAT,
                            "%s: missing key '%s' (%zu of the %zu keys of EfficientNet-%s are "
                            "missing)",
                            what, m->spec.e[first].name, missing, m->spec.n, m->cfg.variant);
    return KILN_OK;
}

static int check_unexpected(const kiln_effnet *m, const kiln_st_file *f, const char *what,
                            kiln_err *err)
{
    size_t extra = 0;
    const char *first = NULL;
    for (size_t i = 0; i < kiln_st_count(f); i++) {
        const kiln_st_tensor *t = kiln_st_at(f, i);
        if (effnet_spec_find(&m->spec, t->name) < 0 && extra++ == 0)
            first = t->name;
    }
    if (extra)
        return kiln_err_set(err, KILN_EFORMAT,
                            "%s: unexpected key '%s' (%zu keys are not part of "
                            "EfficientNet-%s)",
                            what, first, extra, m->cfg.variant);
    return KILN_OK;
}

/* Every check, before anything is written. *new_head: the head is skipped. */
static int check_file(const kiln_effnet *m, const kiln_st_file *f, const char *what,
                      kiln_effnet_load_mode mode, int *new_head, kiln_err *err)
{
    const char *variant = kiln_st_metadata(f, "variant");
    if (variant && strcmp(variant, m->cfg.variant) != 0)
        return kiln_err_set(err, KILN_EFORMAT,
                            "%s holds EfficientNet-%s weights, the model is EfficientNet-%s",
                            what, variant, m->cfg.variant);
    *new_head = 0;
    if (mode == KILN_EFFNET_LOAD_NEW_HEAD) {
        int d = head_differs(m, f);
        if (d < 0) {
            const kiln_st_tensor *w = kiln_st_find(f, "classifier.1.weight");
            char got[96];
            shape_str(got, sizeof got, w->ndim, w->shape);
            return kiln_err_set(err, KILN_EFORMAT,
                                "%s: key 'classifier.1.weight' has shape %s, expected [classes, "
                                "%d] with a matching classifier.1.bias",
                                what, got, m->cfg.head_c);
        }
        *new_head = d;
    }
    int rc = check_expected(m, f, what, *new_head, err);
    if (rc == KILN_OK)
        rc = check_unexpected(m, f, what, err);
    return rc;
}

/* --- load ------------------------------------------------------------- */

static int read_counter(const kiln_st_tensor *t, int64_t *out)
{
    if (t->dtype == KILN_ST_I64) {
        memcpy(out, t->data, sizeof *out);
    } else {
        int32_t v;
        memcpy(&v, t->data, sizeof v);
        *out = v;
    }
    return KILN_OK;
}

/* Convert every tensor into host images of the flat buffers. */
static int convert(const kiln_effnet *m, const kiln_st_file *f, int new_head, float *params,
                   float *buffers, int64_t *counters, kiln_err *err)
{
    for (size_t i = 0; i < m->spec.n; i++) {
        const effnet_entry *e = &m->spec.e[i];
        const kiln_st_tensor *t = kiln_st_find(f, e->name);
        if (new_head && is_head(m, i))
            continue;
        int rc = KILN_OK;
        if (e->kind == EFFNET_BUF_COUNTER)
            rc = read_counter(t, &counters[m->t[i].offset]);
        else
            rc = kiln_st_to_f32(t, (e->kind == EFFNET_BUF_FLOAT ? buffers : params) +
                                       m->t[i].offset, e->count, err);
        if (rc != KILN_OK)
            return rc;
    }
    return KILN_OK;
}

int effnet_load_st(kiln_effnet *m, const kiln_st_file *f, const char *what,
                   kiln_effnet_load_mode mode, uint64_t head_seed, kiln_err *err)
{
    kiln_nn_backend *be = m->be;
    int new_head = 0;
    int rc = check_file(m, f, what, mode, &new_head, err);
    if (rc != KILN_OK)
        return rc;
    float *params = calloc(m->flat_floats ? m->flat_floats : 1, sizeof *params);
    float *buffers = calloc(m->buffer_floats ? m->buffer_floats : 1, sizeof *buffers);
    int64_t *counters = calloc(m->n_counters ? m->n_counters : 1, sizeof *counters);
    if (!params || !buffers || !counters) {
        rc = kiln_err_set(err, KILN_ENOMEM, "out of memory loading %s", what);
        goto done;
    }
    if ((rc = convert(m, f, new_head, params, buffers, counters, err)) != KILN_OK)
        goto done;
    if ((rc = be->ops->upload(be, m->params, params, m->flat_floats * sizeof *params, err)) !=
            KILN_OK ||
        (rc = be->ops->upload(be, m->buffers, buffers, m->buffer_floats * sizeof *buffers,
                              err)) != KILN_OK)
        goto done;
    memcpy(m->counters, counters, m->n_counters * sizeof *counters);
    if (new_head)
        rc = effnet_init_head(m, head_seed, err);
done:
    free(params);
    free(buffers);
    free(counters);
    return rc;
}

int kiln_effnet_load(kiln_effnet *m, const char *path, kiln_effnet_load_mode mode,
                     uint64_t head_seed, kiln_err *err)
{
    kiln_st_file *f = kiln_st_open(path, err);
    if (!f)
        return kiln_err_wrap(err, "loading EfficientNet-%s weights", m->cfg.variant);
    int rc = effnet_load_st(m, f, path, mode, head_seed, err);
    kiln_st_close(f);
    return rc;
}

/* --- a model shaped after a file -------------------------------------- */

/* The class count: metadata "num_classes", else classifier.1.weight's rows. */
static int file_classes(const kiln_st_file *f, const char *path, int *classes, kiln_err *err)
{
    const char *meta = kiln_st_metadata(f, "num_classes");
    if (meta) {
        char *end = NULL;
        long v = strtol(meta, &end, 10);
        if (end == meta || *end || v < 1 || v > 1000000)
            return kiln_err_set(err, KILN_EFORMAT, "%s: metadata num_classes '%s' is not a "
                                "class count", path, meta);
        *classes = (int)v;
        return KILN_OK;
    }
    const kiln_st_tensor *w = kiln_st_find(f, "classifier.1.weight");
    if (!w || w->ndim != 2 || w->shape[0] < 1 || w->shape[0] > 1000000)
        return kiln_err_set(err, KILN_EFORMAT,
                            "%s: no num_classes metadata and no 2-d classifier.1.weight to "
                            "take the class count from",
                            path);
    *classes = (int)w->shape[0];
    return KILN_OK;
}

/* The variant: metadata "variant" (or "arch"), else the first of b0..b3
 * whose keys and shapes the file matches. */
static int file_variant(const kiln_st_file *f, const char *path, int classes, char out[4],
                        kiln_err *err)
{
    const char *meta = kiln_st_metadata(f, "variant");
    if (!meta)
        meta = kiln_st_metadata(f, "arch");
    if (meta) {
        effnet_cfg cfg;
        if (effnet_cfg_make(meta, &cfg, err) != KILN_OK)
            return kiln_err_wrap(err, "%s: metadata", path);
        memcpy(out, cfg.variant, 4);
        return KILN_OK;
    }
    static const char *const variants[] = {"b0", "b1", "b2", "b3"};
    for (size_t i = 0; i < 4; i++) {
        kiln_effnet *m = effnet_describe(variants[i], classes, err);
        if (!m)
            return err ? err->code : KILN_ENOMEM;
        int new_head = 0;
        int rc = check_file(m, f, path, KILN_EFFNET_LOAD_STRICT, &new_head, NULL);
        kiln_effnet_destroy(m);
        if (rc == KILN_OK) {
            memcpy(out, variants[i], 3);
            return KILN_OK;
        }
    }
    return kiln_err_set(err, KILN_EFORMAT,
                        "%s: no variant metadata, and its keys and shapes match none of "
                        "EfficientNet b0, b1, b2, b3",
                        path);
}

kiln_effnet *kiln_effnet_create_from_file(const char *path, kiln_nn_backend *be, kiln_err *err)
{
    kiln_effnet *m = NULL;
    int classes = 0;
    char variant[4] = {0};
    kiln_st_file *f = kiln_st_open(path, err);
    if (!f)
        return NULL;
    if (!be) {
        kiln_err_set(err, KILN_EINVAL, "EfficientNet needs a backend");
        goto fail;
    }
    if (file_classes(f, path, &classes, err) != KILN_OK ||
        file_variant(f, path, classes, variant, err) != KILN_OK)
        goto fail;
    if (!(m = effnet_describe(variant, classes, err)) || effnet_attach(m, be, err) != KILN_OK ||
        effnet_load_st(m, f, path, KILN_EFFNET_LOAD_STRICT, 0, err) != KILN_OK)
        goto fail;
    kiln_st_close(f);
    return m;
fail:
    kiln_effnet_destroy(m);
    kiln_st_close(f);
    return NULL;
}
