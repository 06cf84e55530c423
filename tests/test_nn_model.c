/* tests/test_nn_model.c — lib/nn/efficientnet on the CPU backend: the
 * variants' parameter counts, names and shapes against torchvision, the
 * initialisation, save / load round trips and refusals, and pretrained
 * import with a new head. Running the model (masks, re-planning, finite
 * differences, overfitting) is test_nn_model_train.c; the comparison with
 * torch's numbers is test_nn_torch.c. */
#include "nn/safetensors.h"
#include "test_nn_model.h"

/* --- counts, names, shapes --------------------------------------------- */

/* torchvision 0.14.1: sum(p.numel() for p in efficientnet_bN(num_classes=K).parameters()),
 * len(list(parameters())), len(state_dict()), measured with /usr/bin/python3 here. */
static const struct {
    const char *variant;
    size_t params_1000, params_3, tensors, keys;
} TORCH_COUNTS[] = {
    {"b0", 5288548, 4011391, 213, 360},
    {"b1", 7794184, 6517027, 301, 508},
    {"b2", 9109994, 7705221, 301, 508},
    {"b3", 12233232, 10700843, 340, 574},
};

static void test_param_counts(void **state)
{
    fixture *f = *state;
    for (size_t v = 0; v < 4; v++) {
        const char *name = TORCH_COUNTS[v].variant;
        assert_int_equal(kiln_effnet_variant_param_count(name, 1000), TORCH_COUNTS[v].params_1000);
        assert_int_equal(kiln_effnet_variant_param_count(name, 3), TORCH_COUNTS[v].params_3);
        kiln_effnet *m = make(f, name, 3, 0);
        assert_int_equal(kiln_effnet_param_count(m), TORCH_COUNTS[v].params_3);
        assert_int_equal(kiln_effnet_param_tensors(m), TORCH_COUNTS[v].tensors);
        assert_int_equal(kiln_effnet_param_tensors(m) + kiln_effnet_buffer_tensors(m),
                         TORCH_COUNTS[v].keys);
        /* Layout: every tensor aligned, decay tensors first, no overlap. */
        size_t sum = 0, end_decay = 0;
        for (size_t i = 0; i < kiln_effnet_param_tensors(m); i++) {
            const kiln_effnet_tensor *p = kiln_effnet_param(m, i);
            sum += p->count;
            assert_int_equal(p->offset % 16, 0);
            assert_int_equal(p->no_weight_decay, p->ndim == 1); /* BN and biases are 1-d */
            assert_ptr_equal(p->data, kiln_effnet_params_flat(m) + p->offset);
            assert_ptr_equal(p->grad, kiln_effnet_grads_flat(m) + p->offset);
            if (!p->no_weight_decay) {
                assert_true(p->offset + p->count <= kiln_effnet_decay_floats(m));
                if (p->offset + p->count > end_decay)
                    end_decay = p->offset + p->count;
            } else {
                assert_true(p->offset >= kiln_effnet_decay_floats(m));
                assert_true(p->offset + p->count <= kiln_effnet_flat_floats(m));
            }
            assert_ptr_equal(kiln_effnet_find(m, p->name), p);
        }
        assert_int_equal(sum, kiln_effnet_param_count(m));
        assert_true(end_decay <= kiln_effnet_decay_floats(m));
        kiln_effnet_destroy(m);
    }
    assert_int_equal(kiln_effnet_variant_param_count("b7", 10), 0);
    assert_int_equal(kiln_effnet_variant_param_count("b0", 0), 0);
    kiln_err err = {0};
    assert_null(kiln_effnet_create("b4", 10, f->be, &err));
    assert_int_equal(err.code, KILN_EINVAL);
    assert_non_null(strstr(err.msg, "b4"));
    assert_null(kiln_effnet_create("b0", 0, f->be, &err));
    assert_int_equal(err.code, KILN_EINVAL);
}

/* Every parameter and buffer name and shape, in order, against torchvision. */
static const char py_names[] =
    "import torchvision\n"
    "for v in ('b0', 'b1', 'b2', 'b3'):\n"
    "    m = getattr(torchvision.models, 'efficientnet_' + v)(num_classes=7)\n"
    "    for k, p in m.named_parameters(): print(v, 'P', k, list(p.shape))\n"
    "    for k, b in m.named_buffers(): print(v, 'B', k, list(b.shape))\n";

static void append_ours(char **out, size_t *len, size_t *cap, const char *v, char kind,
                        const kiln_effnet_tensor *t)
{
    char line[256];
    int n = snprintf(line, sizeof line, "%s %c %s [", v, kind, t->name);
    for (int d = 0; d < t->ndim; d++)
        n += snprintf(line + n, sizeof line - (size_t)n, "%s%lld", d ? ", " : "",
                      (long long)t->shape[d]);
    n += snprintf(line + n, sizeof line - (size_t)n, "]\n");
    if (*len + (size_t)n + 1 > *cap) {
        *cap = 2 * (*cap + (size_t)n + 1);
        *out = realloc(*out, *cap);
    }
    memcpy(*out + *len, line, (size_t)n + 1);
    *len += (size_t)n;
}

static void test_names_match_torchvision(void **state)
{
    fixture *f = *state;
    char *script = kt_path(f->dir, "names.py");
    kt_write_file(script, py_names, strlen(py_names));
    char *torch = NULL;
    int rc = kt_run_capture(&torch, "/usr/bin/python3 '%s' 2>/dev/null", script);
    if (rc != 0)
        fail_msg("/usr/bin/python3 with torchvision is needed (python3-torchvision): %s",
                 torch ? torch : "");
    char *ours = NULL;
    size_t len = 0, cap = 0;
    static const char *const variants[] = {"b0", "b1", "b2", "b3"};
    for (size_t v = 0; v < 4; v++) {
        kiln_effnet *m = make(f, variants[v], 7, 0);
        for (size_t i = 0; i < kiln_effnet_param_tensors(m); i++)
            append_ours(&ours, &len, &cap, variants[v], 'P', kiln_effnet_param(m, i));
        for (size_t i = 0; i < kiln_effnet_buffer_tensors(m); i++)
            append_ours(&ours, &len, &cap, variants[v], 'B', kiln_effnet_buffer(m, i));
        kiln_effnet_destroy(m);
    }
    /* First differing line, for a readable failure. */
    const char *a = ours, *b = torch;
    while (*a && *b) {
        const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
        if (!ea || !eb || ea - a != eb - b || memcmp(a, b, (size_t)(ea - a)) != 0)
            fail_msg("kiln: %.*s\ntorch: %.*s", (int)(ea ? ea - a : 80), a,
                     (int)(eb ? eb - b : 80), b);
        a = ea + 1;
        b = eb + 1;
    }
    assert_string_equal(a, b);
    free(ours);
    free(torch);
    free(script);
}

/* --- initialisation ---------------------------------------------------- */

static void moments(const float *x, size_t n, double *mean, double *std)
{
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) {
        s += x[i];
        s2 += (double)x[i] * x[i];
    }
    *mean = s / (double)n;
    *std = sqrt(s2 / (double)n - *mean * *mean);
}

/* Sample mean within 5 standard errors of `want_mean`, sample std within
 * `tol` (relative) of `want_std`; a constant tensor exactly. */
static void check_tensor_init(fixture *f, kiln_effnet *m, const char *name, double want_mean,
                              double want_std, double tol)
{
    const kiln_effnet_tensor *t = kiln_effnet_find(m, name);
    assert_non_null(t);
    float *x = download(f, t->data, t->count);
    double mean, std;
    moments(x, t->count, &mean, &std);
    double mean_tol = 5 * want_std / sqrt((double)t->count);
    if (fabs(mean - want_mean) > mean_tol || fabs(std - want_std) > tol * want_std)
        fail_msg("%s: mean %g std %g, expected %g and %g", name, mean, std, want_mean, want_std);
    free(x);
}

static void test_init(void **state)
{
    fixture *f = *state;
    kiln_effnet *m = make(f, "b0", 10, 5);
    /* kaiming_normal_(mode="fan_out"): std sqrt(2 / (out * k * k)). */
    check_tensor_init(f, m, "features.8.0.weight", 0, sqrt(2.0 / 1280), 0.02);
    check_tensor_init(f, m, "features.6.0.block.0.0.weight", 0, sqrt(2.0 / 672), 0.03);
    check_tensor_init(f, m, "features.6.1.block.1.0.weight", 0, sqrt(2.0 / (1152 * 25)), 0.05);
    check_tensor_init(f, m, "features.6.1.block.2.fc1.weight", 0, sqrt(2.0 / 48), 0.05);
    /* Linear: uniform(±1/sqrt(out_features)), std = range / sqrt(3). */
    check_tensor_init(f, m, "classifier.1.weight", 0, 1.0 / sqrt(10.0) / sqrt(3.0), 0.03);
    check_tensor_init(f, m, "classifier.1.bias", 0, 0, 1e-12);
    check_tensor_init(f, m, "features.3.1.block.1.1.weight", 1, 0, 1e-12);
    check_tensor_init(f, m, "features.3.1.block.1.1.bias", 0, 0, 1e-12);
    check_tensor_init(f, m, "features.3.1.block.2.fc2.bias", 0, 0, 1e-12);
    check_tensor_init(f, m, "features.3.1.block.1.1.running_var", 1, 0, 1e-12);
    check_tensor_init(f, m, "features.3.1.block.1.1.running_mean", 0, 0, 1e-12);
    const kiln_effnet_tensor *w = kiln_effnet_find(m, "classifier.1.weight");
    float *x = download(f, w->data, w->count);
    for (size_t i = 0; i < w->count; i++)
        assert_true(fabsf(x[i]) <= 1.0f / sqrtf(10.0f));
    free(x);

    /* The same seed gives the same model, another seed another one. */
    size_t n;
    float *a = all_params(f, m, &n);
    kiln_effnet *same = make(f, "b0", 10, 5), *other = make(f, "b0", 10, 6);
    float *b = all_params(f, same, &n), *c = all_params(f, other, &n);
    assert_true(same_floats(a, b, n));
    assert_false(same_floats(a, c, n));
    free(a);
    free(b);
    free(c);
    kiln_effnet_destroy(m);
    kiln_effnet_destroy(same);
    kiln_effnet_destroy(other);
}

/* --- save and load ----------------------------------------------------- */

static void save(kiln_effnet *m, const char *path)
{
    kiln_err err = {0};
    if (kiln_effnet_save(m, path, &err) != KILN_OK)
        fail_msg("%s", err.msg);
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc(*len + 1);
    assert_int_equal(fread(buf, 1, *len, fp), *len);
    fclose(fp);
    return buf;
}

/* One train forward so that running stats and counters are not at init. */
static void touch_stats(fixture *f, kiln_effnet *m)
{
    plan(m, 2, 32, 32);
    float *x = random_input(f, 2, 32, 32, 11);
    forward(m, x, 1, 3);
    f->be->ops->release(f->be, x);
}

static void test_save_load_round_trip(void **state)
{
    fixture *f = *state;
    kiln_effnet *a = make(f, "b0", 5, 7);
    touch_stats(f, a);
    char *p1 = kt_path(f->dir, "a.safetensors"), *p2 = kt_path(f->dir, "b.safetensors");
    save(a, p1);

    kiln_effnet *b = make(f, "b0", 5, 99);
    kiln_err err = {0};
    assert_int_equal(kiln_effnet_load(b, p1, KILN_EFFNET_LOAD_STRICT, 0, &err), KILN_OK);
    save(b, p2);
    size_t l1, l2, n;
    unsigned char *f1 = slurp(p1, &l1), *f2 = slurp(p2, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(f1, f2, l1);
    float *pa = all_params(f, a, &n), *pb = all_params(f, b, &n);
    assert_true(same_floats(pa, pb, n));
    for (size_t i = 0; i < kiln_effnet_buffer_tensors(a); i++) {
        const kiln_effnet_tensor *ta = kiln_effnet_buffer(a, i), *tb = kiln_effnet_buffer(b, i);
        if (ta->counter) {
            assert_int_equal(*ta->counter, 1);
            assert_int_equal(*tb->counter, 1);
            continue;
        }
        float *xa = download(f, ta->data, ta->count), *xb = download(f, tb->data, tb->count);
        assert_true(same_floats(xa, xb, ta->count));
        free(xa);
        free(xb);
    }

    /* The file as PyTorch reads it: F32, I64 0-d counters, the metadata. */
    kiln_st_file *st = kiln_st_open(p1, &err);
    assert_non_null(st);
    assert_int_equal(kiln_st_count(st), 360);
    const kiln_st_tensor *c = kiln_st_find(st, "features.1.0.block.0.1.num_batches_tracked");
    assert_non_null(c);
    assert_int_equal(c->dtype, KILN_ST_I64);
    assert_int_equal(c->ndim, 0);
    assert_int_equal(kiln_st_find(st, "classifier.1.weight")->dtype, KILN_ST_F32);
    assert_string_equal(kiln_st_metadata(st, "variant"), "b0");
    assert_string_equal(kiln_st_metadata(st, "num_classes"), "5");
    assert_string_equal(kiln_st_metadata(st, "arch"), "efficientnet_b0");
    kiln_st_close(st);

    /* A model shaped after the file. */
    kiln_effnet *c2 = kiln_effnet_create_from_file(p1, f->be, &err);
    assert_non_null(c2);
    assert_string_equal(kiln_effnet_variant(c2), "b0");
    assert_int_equal(kiln_effnet_num_classes(c2), 5);
    float *pc = all_params(f, c2, &n);
    assert_true(same_floats(pa, pc, n));
    free(pc);
    kiln_effnet_destroy(c2);

    free(pa);
    free(pb);
    free(f1);
    free(f2);
    free(p1);
    free(p2);
    kiln_effnet_destroy(a);
    kiln_effnet_destroy(b);
}

/* What rewrite() changes while copying a saved file. */
typedef struct edit {
    const char *drop;      /* leave this key out */
    const char *reshape;   /* give this key shape [2] */
    const char *extra;     /* add this key */
    int bf16;              /* store F32 tensors as BF16 */
    int no_metadata;
    const char *variant;   /* metadata variant to claim */
} edit;

static uint16_t to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u += 0x7fff + ((u >> 16) & 1); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

static void rewrite(const char *src, const char *dst, const edit *e)
{
    kiln_err err = {0};
    kiln_st_file *in = kiln_st_open(src, &err);
    assert_non_null(in);
    kiln_st_writer *w = kiln_st_writer_create(&err);
    assert_non_null(w);
    static const float two[2] = {1, 2};
    const int64_t shape2[1] = {2};
    uint16_t **halves = calloc(kiln_st_count(in), sizeof *halves);
    for (size_t i = 0; i < kiln_st_count(in); i++) {
        const kiln_st_tensor *t = kiln_st_at(in, i);
        if (e->drop && strcmp(t->name, e->drop) == 0)
            continue;
        int rc;
        if (e->reshape && strcmp(t->name, e->reshape) == 0) {
            rc = kiln_st_writer_add(w, t->name, KILN_ST_F32, 1, shape2, two, &err);
        } else if (e->bf16 && t->dtype == KILN_ST_F32) {
            size_t n = t->bytes / 4;
            halves[i] = malloc((n ? n : 1) * sizeof **halves);
            for (size_t k = 0; k < n; k++) {
                float v;
                memcpy(&v, (const char *)t->data + 4 * k, 4);
                halves[i][k] = to_bf16(v);
            }
            rc = kiln_st_writer_add(w, t->name, KILN_ST_BF16, t->ndim, t->shape, halves[i], &err);
        } else {
            rc = kiln_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err);
        }
        assert_int_equal(rc, KILN_OK);
    }
    if (e->extra)
        assert_int_equal(kiln_st_writer_add(w, e->extra, KILN_ST_F32, 1, shape2, two, &err),
                         KILN_OK);
    if (!e->no_metadata) {
        const char *keys[] = {"variant", "num_classes", "arch", "format"};
        for (size_t k = 0; k < 4; k++) {
            const char *v = kiln_st_metadata(in, keys[k]);
            if (k == 0 && e->variant)
                v = e->variant;
            if (v)
                assert_int_equal(kiln_st_writer_metadata(w, keys[k], v, &err), KILN_OK);
        }
    }
    if (kiln_st_write(w, dst, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    kiln_st_writer_destroy(w);
    for (size_t i = 0; i < kiln_st_count(in); i++)
        free(halves[i]);
    free(halves);
    kiln_st_close(in);
}

/* Load `path` into `m`, expect failure with `code` and every word of
 * `needles` in the message, and the model unchanged. */
static void expect_load_error(fixture *f, kiln_effnet *m, const char *path,
                              kiln_effnet_load_mode mode, int code, const char *n1,
                              const char *n2)
{
    size_t n;
    float *before = all_params(f, m, &n);
    kiln_err err = {0};
    assert_int_not_equal(kiln_effnet_load(m, path, mode, 0, &err), KILN_OK);
    printf("expected error: %s\n", err.msg);
    assert_int_equal(err.code, code);
    if (n1 && !strstr(err.msg, n1))
        fail_msg("'%s' not in: %s", n1, err.msg);
    if (n2 && !strstr(err.msg, n2))
        fail_msg("'%s' not in: %s", n2, err.msg);
    float *after = all_params(f, m, &n);
    assert_true(same_floats(before, after, n));
    free(before);
    free(after);
}

static void test_load_errors(void **state)
{
    fixture *f = *state;
    kiln_effnet *m = make(f, "b0", 4, 3);
    char *good = kt_path(f->dir, "good.safetensors"), *bad = kt_path(f->dir, "bad.safetensors");
    save(m, good);
    kiln_effnet *target = make(f, "b0", 4, 8);

    rewrite(good, bad, &(edit){.drop = "features.3.1.block.2.fc1.bias"});
    expect_load_error(f, target, bad, KILN_EFFNET_LOAD_STRICT, KILN_EFORMAT, "missing key",
                      "features.3.1.block.2.fc1.bias");
    rewrite(good, bad, &(edit){.drop = "features.5.0.block.1.1.num_batches_tracked"});
    expect_load_error(f, target, bad, KILN_EFFNET_LOAD_STRICT, KILN_EFORMAT, "missing key",
                      "features.5.0.block.1.1.num_batches_tracked");
    rewrite(good, bad, &(edit){.reshape = "features.4.0.block.1.1.running_var"});
    expect_load_error(f, target, bad, KILN_EFFNET_LOAD_STRICT, KILN_EFORMAT,
                      "'features.4.0.block.1.1.running_var' has shape [2]", "expects [240]");
    rewrite(good, bad, &(edit){.extra = "features.9.0.weight"});
    expect_load_error(f, target, bad, KILN_EFFNET_LOAD_STRICT, KILN_EFORMAT, "unexpected key",
                      "features.9.0.weight");
    rewrite(good, bad, &(edit){.variant = "b1"});
    expect_load_error(f, target, bad, KILN_EFFNET_LOAD_STRICT, KILN_EFORMAT, "b1", "b0");

    /* Truncated: the safetensors reader's error, with the path. */
    size_t len;
    unsigned char *bytes = slurp(good, &len);
    kt_write_file(bad, bytes, len / 2);
    expect_load_error(f, target, bad, KILN_EFFNET_LOAD_STRICT, KILN_EFORMAT, bad, NULL);
    kt_write_file(bad, bytes, 5);
    expect_load_error(f, target, bad, KILN_EFFNET_LOAD_STRICT, KILN_EFORMAT, bad, NULL);
    free(bytes);
    char *missing = kt_path(f->dir, "nope.safetensors");
    kiln_err err = {0};
    assert_int_not_equal(kiln_effnet_load(target, missing, KILN_EFFNET_LOAD_STRICT, 0, &err),
                         KILN_OK);
    assert_non_null(strstr(err.msg, "nope.safetensors"));
    free(missing);

    /* A b1 model refuses b0 weights on its keys too (no metadata). */
    rewrite(good, bad, &(edit){.no_metadata = 1});
    kiln_effnet *b1 = make(f, "b1", 4, 0);
    expect_load_error(f, b1, bad, KILN_EFFNET_LOAD_STRICT, KILN_EFORMAT, "missing key",
                      "features.1.1.block.0.0.weight");
    expect_load_error(f, b1, bad, KILN_EFFNET_LOAD_NEW_HEAD, KILN_EFORMAT, "missing key", NULL);
    kiln_effnet_destroy(b1);
    /* ... and without metadata the file is still recognised as b0. */
    kiln_effnet *guess = kiln_effnet_create_from_file(bad, f->be, &err);
    assert_non_null(guess);
    assert_string_equal(kiln_effnet_variant(guess), "b0");
    assert_int_equal(kiln_effnet_num_classes(guess), 4);
    kiln_effnet_destroy(guess);

    /* BF16 weights load, rounded as stored. */
    rewrite(good, bad, &(edit){.bf16 = 1});
    assert_int_equal(kiln_effnet_load(target, bad, KILN_EFFNET_LOAD_STRICT, 0, &err), KILN_OK);
    const kiln_effnet_tensor *ws = kiln_effnet_find(m, "features.2.1.block.3.0.weight");
    const kiln_effnet_tensor *wt = kiln_effnet_find(target, "features.2.1.block.3.0.weight");
    float *src = download(f, ws->data, ws->count), *dst = download(f, wt->data, wt->count);
    for (size_t i = 0; i < ws->count; i++) {
        uint32_t u = (uint32_t)to_bf16(src[i]) << 16;
        float want;
        memcpy(&want, &u, sizeof want);
        assert_true(dst[i] == want);
    }
    free(src);
    free(dst);

    free(good);
    free(bad);
    kiln_effnet_destroy(m);
    kiln_effnet_destroy(target);
}

static void test_pretrained_new_head(void **state)
{
    fixture *f = *state;
    kiln_effnet *src = make(f, "b0", 10, 21);
    touch_stats(f, src);
    char *path = kt_path(f->dir, "pretrained.safetensors");
    save(src, path);

    kiln_effnet *dst = make(f, "b0", 3, 0);
    expect_load_error(f, dst, path, KILN_EFFNET_LOAD_STRICT, KILN_EFORMAT,
                      "'classifier.1.weight' has shape [10, 1280]", "expects [3, 1280]");
    kiln_err err = {0};
    /* The file's metadata says 10 classes; the head is the only difference. */
    assert_int_equal(kiln_effnet_load(dst, path, KILN_EFFNET_LOAD_NEW_HEAD, 77, &err), KILN_OK);
    for (size_t i = 0; i < kiln_effnet_param_tensors(dst); i++) {
        const kiln_effnet_tensor *d = kiln_effnet_param(dst, i);
        const kiln_effnet_tensor *s = kiln_effnet_find(src, d->name);
        float *xd = download(f, d->data, d->count);
        if (strncmp(d->name, "classifier.", 11) == 0) {
            float range = 1.0f / sqrtf(3.0f);
            int nonzero = 0;
            for (size_t k = 0; k < d->count; k++) {
                assert_true(fabsf(xd[k]) <= range);
                nonzero += xd[k] != 0.0f;
            }
            if (d->ndim == 2) {
                assert_int_equal(d->shape[0], 3);
                assert_true(nonzero > (int)d->count / 2);
            } else {
                assert_int_equal(nonzero, 0); /* zero bias */
            }
        } else {
            float *xs = download(f, s->data, s->count);
            assert_true(same_floats(xd, xs, d->count));
            free(xs);
        }
        free(xd);
    }
    assert_int_equal(*kiln_effnet_find(dst, "features.0.1.num_batches_tracked")->counter, 1);

    /* The same class count: the head loads too. */
    kiln_effnet *same = make(f, "b0", 10, 0);
    assert_int_equal(kiln_effnet_load(same, path, KILN_EFFNET_LOAD_NEW_HEAD, 77, &err), KILN_OK);
    const kiln_effnet_tensor *hs = kiln_effnet_find(src, "classifier.1.weight");
    const kiln_effnet_tensor *hd = kiln_effnet_find(same, "classifier.1.weight");
    float *a = download(f, hs->data, hs->count), *b = download(f, hd->data, hd->count);
    assert_true(same_floats(a, b, hs->count));
    free(a);
    free(b);

    /* Any other mismatch is still an error in NEW_HEAD mode. */
    char *bad = kt_path(f->dir, "bad.safetensors");
    rewrite(path, bad, &(edit){.reshape = "features.8.1.bias"});
    expect_load_error(f, dst, bad, KILN_EFFNET_LOAD_NEW_HEAD, KILN_EFORMAT, "features.8.1.bias",
                      "shape");
    rewrite(path, bad, &(edit){.reshape = "classifier.1.weight"});
    expect_load_error(f, dst, bad, KILN_EFFNET_LOAD_NEW_HEAD, KILN_EFORMAT, "classifier.1.weight",
                      NULL);
    free(bad);
    free(path);
    kiln_effnet_destroy(src);
    kiln_effnet_destroy(dst);
    kiln_effnet_destroy(same);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, kt_model_setup, kt_model_teardown)
    const struct CMUnitTest tests[] = {
        T(test_param_counts),
        T(test_names_match_torchvision),
        T(test_init),
        T(test_save_load_round_trip),
        T(test_load_errors),
        T(test_pretrained_new_head),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
