/* tests/test_nn_torch.c — kiln's EfficientNet (lib/nn/efficientnet)
 * on the CPU backend against torchvision's own outputs, written by
 * tests/gen_nn_reference.py into $KILN_NN_REF_DIR/<variant>/ (the ctest
 * fixture nn_reference): B0 and B3 with torchvision's weights, eval and
 * train logits, the loss, every parameter's gradient, the BatchNorm running
 * statistics after a train forward, and every parameter after 1 and 3 SGD
 * and AdamW steps (lib/nn/optim) with the losses and running statistics
 * after 3.
 *
 * Error metric for logits, gradients and statistics: max|kiln - torch| /
 * max|torch| over the whole tensor. Element-wise relative error is
 * meaningless for the many elements near zero (gradients, logits that cross
 * 0); normalising by the tensor's largest magnitude measures the rounding
 * error against the tensor's own scale, as llm.c and ggml's test-backend-ops
 * do. One exception: a bias's gradient is normalised by the larger of its
 * own max|torch| and that of its layer's weight gradient. The projection
 * BatchNorm biases have a gradient of exactly 0 in exact arithmetic (the
 * next train-mode BatchNorm removes any per-channel shift), so both sides
 * hold only rounding noise (~1e-6); that noise comes from summing the same
 * dy that makes the layer's weight gradient, which is therefore its scale.
 * Float32 sums run in a different order on each side (oneDNN vs im2col +
 * OpenBLAS, other thread splits), and the differences compound over ~100
 * layers:
 *   - logits, loss, running statistics: <= 1e-4;
 *   - gradients: <= 1e-3 (each BatchNorm backward sums over N*H*W twice,
 *     filter gradients over N*OH*OW, and the backward chain is as deep again);
 *   - parameters after 1 and 3 optimizer steps: <= 1e-3 of the tensor's
 *     update beyond float32 rounding (see "optimizer runs" below); the
 *     loss before step 1: <= 1e-4, before steps 2 and 3: <= 1e-3 of its
 *     change since step 1 (see check_losses).
 * Fixed tolerances throughout. A test fails naming the worst tensor and
 * its error; KILN_TEST_VERBOSE=1 prints every tensor's.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "nn/backend.h"
#include "nn/efficientnet.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "support/testutil.h"

#define TOL_LOGITS 1e-4
#define TOL_GRAD 1e-3
#define TOL_STATE 1e-4
#define TOL_PARAM 1e-3

typedef struct ref {
    char dir[4096];
    const char *variant;
    cJSON *meta;
    int classes, batch, size;
    float label_smoothing;
    kiln_st_file *weights, *input, *eval, *train, *sgd, *adamw;
} ref;

/* The worst tensor of a comparison group: the largest error / tolerance. */
typedef struct worst {
    char name[128];
    double err, tol;
    size_t tensors;
} worst;

/* --- reference files --------------------------------------------------- */

static kiln_st_file *open_ref(const ref *r, const char *file)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", r->dir, file);
    if (!kiln_is_file(path))
        fail_msg("%s is missing: the nn_reference fixture writes it (ctest runs it before "
                 "test_nn_torch*; by hand: /usr/bin/python3 tests/gen_nn_reference.py --out "
                 "$KILN_NN_REF_DIR)",
                 path);
    kiln_err err = {0};
    kiln_st_file *f = kiln_st_open(path, &err);
    if (!f)
        fail_msg("%s", err.msg);
    return f;
}

static double meta_number(const cJSON *obj, const char *key, const char *where)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v))
        fail_msg("%s: meta.json has no number \"%s\"", where, key);
    return v->valuedouble;
}

static void ref_open(ref *r, const char *variant)
{
    memset(r, 0, sizeof *r);
    const char *base = getenv("KILN_NN_REF_DIR");
    if (!base || !*base)
        fail_msg("KILN_NN_REF_DIR is not set: run this test through ctest, which runs the "
                 "nn_reference fixture (tests/gen_nn_reference.py) first");
    snprintf(r->dir, sizeof r->dir, "%s/%s", base, variant);
    r->variant = variant;
    char path[4200];
    snprintf(path, sizeof path, "%s/meta.json", r->dir);
    char *text = NULL;
    size_t len = 0;
    kiln_err err = {0};
    if (!kiln_is_file(path))
        fail_msg("%s is missing: the nn_reference fixture writes it "
                 "(/usr/bin/python3 tests/gen_nn_reference.py --out $KILN_NN_REF_DIR)",
                 path);
    if (kiln_read_file(path, 0, &text, &len, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    r->meta = cJSON_Parse(text);
    free(text);
    if (!r->meta)
        fail_msg("%s is not JSON", path);
    r->classes = (int)meta_number(r->meta, "num_classes", path);
    r->batch = (int)meta_number(r->meta, "batch", path);
    r->size = (int)meta_number(r->meta, "size", path);
    r->label_smoothing = (float)meta_number(r->meta, "label_smoothing", path);
    /* The model hard-codes torchvision's BatchNorm settings for b0-b3. */
    assert_float_equal(meta_number(r->meta, "eps", path), 1e-5, 1e-12);
    assert_float_equal(meta_number(r->meta, "momentum", path), 0.1, 1e-12);
    r->weights = open_ref(r, "weights.safetensors");
    r->input = open_ref(r, "input.safetensors");
    r->eval = open_ref(r, "eval.safetensors");
    r->train = open_ref(r, "train.safetensors");
    r->sgd = open_ref(r, "sgd.safetensors");
    r->adamw = open_ref(r, "adamw.safetensors");
}

static void ref_close(ref *r)
{
    cJSON_Delete(r->meta);
    kiln_st_close(r->weights);
    kiln_st_close(r->input);
    kiln_st_close(r->eval);
    kiln_st_close(r->train);
    kiln_st_close(r->sgd);
    kiln_st_close(r->adamw);
}

static const kiln_st_tensor *need(const kiln_st_file *f, const char *file, const char *name)
{
    const kiln_st_tensor *t = kiln_st_find(f, name);
    if (!t)
        fail_msg("%s has no tensor '%s'", file, name);
    return t;
}

static float *st_floats(const kiln_st_tensor *t, size_t count)
{
    float *out = malloc((count ? count : 1) * sizeof *out);
    kiln_err err = {0};
    if (kiln_st_to_f32(t, out, count, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    return out;
}

/* --- comparisons ------------------------------------------------------- */

/* max|a - b| / max(max|b|, floor); max|a - b| when both are 0. */
static double rel_err_floor(const float *a, const float *b, size_t n, double floor)
{
    double diff = 0, scale = floor;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= diff)) /* NaN counts as the worst */
            diff = isnan(d) ? INFINITY : d;
        if (fabs((double)b[i]) > scale)
            scale = fabs((double)b[i]);
    }
    return scale > 0 ? diff / scale : diff;
}

static double rel_err(const float *a, const float *b, size_t n)
{
    return rel_err_floor(a, b, n, 0);
}

/* Record one tensor's error against its tolerance. KILN_TEST_VERBOSE=1
 * prints every tensor. */
static void note(worst *w, const char *name, double err, double tol)
{
    if (getenv("KILN_TEST_VERBOSE"))
        printf("  %-52s %.3g (tolerance %.3g)\n", name, err, tol);
    w->tensors++;
    if (w->tensors == 1 || !(err / tol <= w->err / w->tol)) {
        w->err = err;
        w->tol = tol;
        snprintf(w->name, sizeof w->name, "%s", name);
    }
}

static void verdict(const ref *r, const char *what, const worst *w)
{
    printf("%s %-32s %4zu tensors, worst %-42s %.3g (tolerance %.2g)\n", r->variant, what,
           w->tensors, w->name, w->err, w->tol);
    if (!(w->err <= w->tol))
        fail_msg("%s %s: '%s' differs from torch by %.3g (relative, as the file's header says), "
                 "over its tolerance %.2g",
                 r->variant, what, w->name, w->err, w->tol);
}

/* Compare backend memory `dev` [count] with a reference tensor. */
static double compare_dev_floor(kiln_nn_backend *be, const float *dev, const kiln_st_tensor *t,
                                size_t count, double floor)
{
    float *want = st_floats(t, count);
    float *got = malloc(count * sizeof *got);
    kiln_err err = {0};
    if (be->ops->download(be, got, dev, count * sizeof *got, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    double e = rel_err_floor(got, want, count, floor);
    free(want);
    free(got);
    return e;
}

static double compare_dev(kiln_nn_backend *be, const float *dev, const kiln_st_tensor *t,
                          size_t count)
{
    return compare_dev_floor(be, dev, t, count, 0);
}

/* For "<layer>.bias", max|torch| of "grad.<layer>.weight"; else 0. */
static double bias_floor(const ref *r, const char *name)
{
    size_t len = strlen(name);
    if (len < 5 || strcmp(name + len - 5, ".bias") != 0)
        return 0;
    char key[160];
    snprintf(key, sizeof key, "grad.%.*sweight", (int)(len - 4), name);
    const kiln_st_tensor *t = need(r->train, "train.safetensors", key);
    size_t count = 1;
    for (int i = 0; i < t->ndim; i++)
        count *= (size_t)t->shape[i];
    float *w = st_floats(t, count);
    double m = 0;
    for (size_t i = 0; i < count; i++)
        m = fmax(m, fabs((double)w[i]));
    free(w);
    return m;
}

/* Every running_mean / running_var and num_batches_tracked against
 * "state.<name>" of a reference file. */
static void compare_buffers(const ref *r, kiln_nn_backend *be, kiln_effnet *m,
                            const kiln_st_file *f, const char *file, const char *what)
{
    worst w = {0};
    for (size_t i = 0; i < kiln_effnet_buffer_tensors(m); i++) {
        const kiln_effnet_tensor *b = kiln_effnet_buffer(m, i);
        char key[160];
        snprintf(key, sizeof key, "state.%s", b->name);
        const kiln_st_tensor *t = need(f, file, key);
        if (b->counter) {
            int64_t want;
            assert_int_equal(t->bytes, sizeof want);
            memcpy(&want, t->data, sizeof want);
            if (*b->counter != want)
                fail_msg("%s %s: %s is %lld, torch has %lld", r->variant, what, b->name,
                         (long long)*b->counter, (long long)want);
            continue;
        }
        note(&w, b->name, compare_dev(be, b->data, t, b->count), TOL_STATE);
    }
    verdict(r, what, &w);
}

/* --- running the model ------------------------------------------------- */

typedef struct run {
    kiln_nn_backend *be;
    kiln_effnet *m;
    float *input;    /* backend */
    int32_t *labels; /* backend */
    float *probs, *dlogits;
} run;

static void *dev_alloc(kiln_nn_backend *be, size_t bytes)
{
    kiln_err err = {0};
    void *p = be->ops->alloc(be, bytes, &err);
    if (!p)
        fail_msg("%s", err.msg);
    return p;
}

static void run_open(run *x, const ref *r)
{
    kiln_err err = {0};
    memset(x, 0, sizeof *x);
    x->be = kiln_nn_cpu_create(2, &err);
    if (!x->be)
        fail_msg("%s", err.msg);
    x->m = kiln_effnet_create(r->variant, r->classes, x->be, &err);
    if (!x->m)
        fail_msg("%s", err.msg);
    assert_int_equal(kiln_effnet_set_dropout(x->m, 0.0f, &err), KILN_OK);
    assert_int_equal(kiln_effnet_set_stochastic_depth(x->m, 0.0f, &err), KILN_OK);
    if (kiln_effnet_plan(x->m, r->batch, r->size, r->size, &err) != KILN_OK)
        fail_msg("%s", err.msg);

    size_t n_in = (size_t)r->batch * 3 * r->size * r->size;
    float *host = st_floats(need(r->input, "input.safetensors", "input"), n_in);
    x->input = dev_alloc(x->be, n_in * sizeof(float));
    assert_int_equal(x->be->ops->upload(x->be, x->input, host, n_in * sizeof(float), &err),
                     KILN_OK);
    free(host);
    const kiln_st_tensor *lt = need(r->input, "input.safetensors", "labels");
    assert_int_equal(lt->dtype, KILN_ST_I64);
    assert_int_equal(lt->bytes, (size_t)r->batch * sizeof(int64_t));
    int32_t *labels = malloc((size_t)r->batch * sizeof *labels);
    for (int i = 0; i < r->batch; i++) {
        int64_t v;
        memcpy(&v, (const char *)lt->data + (size_t)i * sizeof v, sizeof v);
        labels[i] = (int32_t)v;
    }
    x->labels = dev_alloc(x->be, (size_t)r->batch * sizeof(int32_t));
    assert_int_equal(
        x->be->ops->upload(x->be, x->labels, labels, (size_t)r->batch * sizeof(int32_t), &err),
        KILN_OK);
    free(labels);
    x->probs = dev_alloc(x->be, (size_t)r->batch * r->classes * sizeof(float));
    x->dlogits = dev_alloc(x->be, (size_t)r->batch * r->classes * sizeof(float));
}

static void run_close(run *x)
{
    kiln_effnet_destroy(x->m);
    x->be->ops->release(x->be, x->input);
    x->be->ops->release(x->be, x->labels);
    x->be->ops->release(x->be, x->probs);
    x->be->ops->release(x->be, x->dlogits);
    kiln_nn_backend_destroy(x->be);
}

static void load_weights(const ref *r, run *x)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/weights.safetensors", r->dir);
    kiln_err err = {0};
    if (kiln_effnet_load(x->m, path, KILN_EFFNET_LOAD_STRICT, 0, &err) != KILN_OK)
        fail_msg("%s", err.msg);
}

/* Train forward + loss + backward; returns the loss, leaves the logits in *logits. */
static double train_step(const ref *r, run *x, const float **logits)
{
    kiln_err err = {0};
    const float *l = kiln_effnet_forward(x->m, x->input, 1, 1234, &err);
    if (!l)
        fail_msg("%s", err.msg);
    double loss = 0;
    if (x->be->ops->xent_forward_backward(x->be, r->batch, r->classes, l, x->labels,
                                          r->label_smoothing, x->probs, x->dlogits, &loss,
                                          &err) != KILN_OK ||
        kiln_effnet_backward(x->m, x->dlogits, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    if (logits)
        *logits = l;
    return loss;
}

static void check_logits(const ref *r, run *x, const float *logits, const kiln_st_file *f,
                         const char *file, const char *what)
{
    worst w = {0};
    note(&w, what,
         compare_dev(x->be, logits, need(f, file, "logits"), (size_t)r->batch * r->classes),
         TOL_LOGITS);
    verdict(r, what, &w);
}

static void check_eval(const ref *r, run *x)
{
    kiln_err err = {0};
    const float *logits = kiln_effnet_forward(x->m, x->input, 0, 0, &err);
    if (!logits)
        fail_msg("%s", err.msg);
    check_logits(r, x, logits, r->eval, "eval.safetensors", "eval logits");
}

static void check_train(const ref *r, run *x)
{
    const float *logits = NULL;
    double loss = train_step(r, x, &logits);
    check_logits(r, x, logits, r->train, "train.safetensors", "train logits");

    worst w = {0};
    float want_loss = 0;
    assert_int_equal(
        kiln_st_to_f32(need(r->train, "train.safetensors", "loss"), &want_loss, 1, NULL), KILN_OK);
    float got_loss = (float)loss;
    note(&w, "loss", rel_err(&got_loss, &want_loss, 1), TOL_LOGITS);
    verdict(r, "loss", &w);

    memset(&w, 0, sizeof w);
    for (size_t i = 0; i < kiln_effnet_param_tensors(x->m); i++) {
        const kiln_effnet_tensor *p = kiln_effnet_param(x->m, i);
        char key[160];
        snprintf(key, sizeof key, "grad.%s", p->name);
        note(&w, p->name,
             compare_dev_floor(x->be, p->grad, need(r->train, "train.safetensors", key), p->count,
                               bias_floor(r, p->name)),
             TOL_GRAD);
    }
    verdict(r, "gradients", &w);
    compare_buffers(r, x->be, x->m, r->train, "train.safetensors", "running stats (train)");
}

/* --- optimizer runs ------------------------------------------------------
 *
 * gen_nn_reference.py's settings (SGD and AdamW at lr 3e-6: this batch's
 * gradients are huge, up to 650 x the weights of the depthwise
 * convolutions, so larger rates make 3 steps chaotic and float32 stops
 * following float64, in torch as in kiln; the generator's --conditioning
 * shows it) and torch's parameters after step 1 and step 3. A parameter is
 * judged by its update, Δ = p - p0 (both sides start from the same float32
 * weights), because that is what the optimizer computes:
 *
 *   err = max_i excess_i / max_i |Δ_torch,i|,
 *   excess_i = max(0, |kiln_i - torch_i| - ROUNDINGS x steps x ulp(p_i)).
 *
 * The ulps: each side rounds each element to float32 at most twice a step
 * (torch's AdamW decays p, then adds the step), so the same update may land
 * a few ulps apart (ulps of the largest of p0, kiln's and torch's value),
 * and an update below an ulp is not representable at all; beyond that the
 * check is as strict as the update's own error.
 * SGD's first step is -lr (1 + momentum)(g + wd p0) (Nesterov, buffer = g),
 * linear in the gradient, so its error is the gradient's (<= 1e-3 above).
 *
 * AdamW's first step is -lr g / (|g| + eps) - lr wd p0: a sign. Where
 * torch's gradient is within the gradient tolerance of 0 (|g| <= 1e-3 x the
 * tensor's gradient scale: the projection BatchNorm biases, whose exact
 * gradient is 0, and ~4% of the other elements) float32 does not decide
 * that sign, so those elements are held only to the bound any two Adam runs
 * meet: each step moves an element by at most adam_step_bound() x lr.
 * Every other element is held to TOL_PARAM as above. From step 2 on,
 * Adam's direction m / sqrt(v) depends on the ratios of an element's
 * gradients, not on their size, so an element whose gradients are small or
 * change sign turns float32 rounding into an O(lr) difference at any
 * learning rate (measured at lr 3e-6 to 1e-4: 8e-4 to 8e-3 of the update
 * after step 3 on a few elements, ~1e-5 for the bulk). AdamW's step 3 is
 * therefore held to the bound element by element and to TOL_PARAM in RMS
 * over the decided elements: sqrt(sum excess^2) / sqrt(sum Δ^2). */
#define ROUNDINGS 2
#define ADAM_SLACK 1e-4

typedef struct optim_ref {
    const ref *r;
    const kiln_st_file *f;
    const char *file;
    const kiln_optim_config *cfg;
} optim_ref;

static float *download_flat(run *x, const float *dev)
{
    kiln_err err = {0};
    size_t n = kiln_effnet_flat_floats(x->m);
    float *host = malloc(n * sizeof *host);
    if (x->be->ops->download(x->be, host, dev, n * sizeof *host, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    return host;
}

/* The most |m_hat / (sqrt(v_hat) + eps)| can be at step t: m_hat = sum w_i
 * g_i, v_hat = sum u_i g_i^2, so by Cauchy-Schwarz |m_hat| <= sqrt(sum
 * w_i^2 / u_i) sqrt(v_hat) (1.0036 at t = 3 for betas 0.9, 0.999). */
static double adam_step_bound(double beta1, double beta2, int t)
{
    double s = 0;
    for (int i = 1; i <= t; i++) {
        double w = (1 - beta1) * pow(beta1, t - i) / (1 - pow(beta1, t));
        double u = (1 - beta2) * pow(beta2, t - i) / (1 - pow(beta2, t));
        s += w * w / u;
    }
    return sqrt(s);
}

/* The gradient threshold under which AdamW's sign is undecided: the
 * gradient tolerance times the scale the gradient comparison uses. */
static double undecided_below(const ref *r, const char *name, const float *g, size_t n)
{
    double s = bias_floor(r, name);
    for (size_t i = 0; i < n; i++)
        s = fmax(s, fabs((double)g[i]));
    return TOL_GRAD * s;
}

/* The spacing of float32 numbers at |x|. */
static double f32_ulp(double x)
{
    int e;
    frexp(fabs(x), &e);
    return ldexp(1.0, e - 24);
}

/* One parameter tensor after `steps` steps: p0 the start, `got` kiln's,
 * `want` torch's, `g` torch's first gradient (AdamW; NULL for SGD). Notes
 * the max (SGD, AdamW step 1) or RMS (AdamW step 3) error over the decided
 * elements in `w`, and AdamW's per-element bound in `wb`. */
static void check_param(const optim_ref *o, const kiln_effnet_tensor *p, const float *p0,
                        const float *got, const float *want, const float *g, int steps, worst *w,
                        worst *wb, size_t *undecided)
{
    double gmin = g ? undecided_below(o->r, p->name, g, p->count) : -1;
    double step = g ? adam_step_bound(o->cfg->beta1, o->cfg->beta2, steps) : 0;
    double dmax = 0, dsq = 0, emax = 0, esq = 0, over = 0;
    for (size_t i = 0; i < p->count; i++) {
        double update = (double)want[i] - (double)p0[i];
        double d = fabs((double)got[i] - (double)want[i]);
        double mag = fmax(fabs((double)p0[i]), fmax(fabs((double)want[i]), fabs((double)got[i])));
        double ulps = ROUNDINGS * steps * f32_ulp(mag);
        if (isnan(d))
            d = INFINITY;
        if (g) /* ADAM_SLACK: each side evaluates m / (sqrt(v) + eps) in float32 */
            over = fmax(over, d / (2 * o->cfg->lr * step * steps * (1 + ADAM_SLACK) + ulps));
        if (g && fabs((double)g[i]) <= gmin) {
            (*undecided)++;
            continue;
        }
        double excess = d > ulps ? d - ulps : 0;
        dmax = fmax(dmax, fabs(update));
        dsq += update * update;
        emax = fmax(emax, excess);
        esq += excess * excess;
    }
    int rms = g && steps > 1;
    double num = rms ? sqrt(esq) : emax, den = rms ? sqrt(dsq) : dmax;
    note(w, p->name, den > 0 ? num / den : (num > 0 ? INFINITY : 0), TOL_PARAM);
    if (g)
        note(wb, p->name, over, 1.0);
}

/* Every parameter after `steps` steps against "<prefix>.<name>". */
static void check_params(const optim_ref *o, run *x, const char *prefix, const float *p0,
                         const float *got, int steps, const char *what)
{
    int adamw = o->cfg->kind == KILN_OPTIM_ADAMW;
    worst w = {0}, wb = {0};
    size_t undecided = 0;
    for (size_t i = 0; i < kiln_effnet_param_tensors(x->m); i++) {
        const kiln_effnet_tensor *p = kiln_effnet_param(x->m, i);
        char key[160];
        snprintf(key, sizeof key, "%s.%s", prefix, p->name);
        float *want = st_floats(need(o->f, o->file, key), p->count);
        float *g = NULL;
        if (adamw) {
            snprintf(key, sizeof key, "grad.%s", p->name);
            g = st_floats(need(o->r->train, "train.safetensors", key), p->count);
        }
        check_param(o, p, p0 + p->offset, got + p->offset, want, g, steps, &w, &wb, &undecided);
        free(want);
        free(g);
    }
    char label[80];
    snprintf(label, sizeof label, "%s%s", what, adamw && steps > 1 ? " (RMS)" : "");
    verdict(o->r, label, &w);
    if (adamw) {
        snprintf(label, sizeof label, "%s Adam bound", what);
        printf("%s %s: %zu elements with an undecided sign\n", o->r->variant, what, undecided);
        verdict(o->r, label, &wb);
    }
}

/* The loss before each step. Step 1's is a plain forward (TOL_LOGITS); the
 * later ones come after updates that agree only to TOL_PARAM, and to first
 * order a loss moves by g . Δ, so they are held to TOL_PARAM of their
 * change since step 1. */
static void check_losses(const optim_ref *o, const float *got, const char *what)
{
    worst w = {0};
    float *want = st_floats(need(o->f, o->file, "losses"), 3);
    printf("%s %s losses: kiln %.6f %.6f %.6f, torch %.6f %.6f %.6f\n", o->r->variant, what, got[0],
           got[1], got[2], want[0], want[1], want[2]);
    note(&w, "loss of step 1", rel_err(&got[0], &want[0], 1), TOL_LOGITS);
    for (int s = 1; s < 3; s++) {
        char name[48];
        snprintf(name, sizeof name, "loss of step %d (of its change)", s + 1);
        double change = fabs((double)want[s] - (double)want[0]);
        double d = fabs((double)got[s] - (double)want[s]);
        note(&w, name, change > 0 ? d / change : (d > 0 ? INFINITY : 0), TOL_PARAM);
    }
    free(want);
    char label[64];
    snprintf(label, sizeof label, "%s losses", what);
    verdict(o->r, label, &w);
}

/* 3 optimizer steps from the reference weights, as gen_nn_reference.py's
 * optimizer_run: one parameter group, weight decay on every parameter. */
static void check_optimizer(const ref *r, run *x, const kiln_optim_config *cfg,
                            const kiln_st_file *f, const char *file, const char *what)
{
    assert_int_equal((int)meta_number(r->meta, "steps", "meta.json"), 3);
    const optim_ref o = {.r = r, .f = f, .file = file, .cfg = cfg};
    kiln_err err = {0};
    load_weights(r, x);
    float *p0 = download_flat(x, kiln_effnet_params_flat(x->m)), *p1 = NULL;
    size_t n = kiln_effnet_param_tensors(x->m);
    kiln_optim_param *list = calloc(n, sizeof *list);
    for (size_t i = 0; i < n; i++) {
        const kiln_effnet_tensor *p = kiln_effnet_param(x->m, i);
        list[i] = (kiln_optim_param){
            .param = p->data, .grad = p->grad, .count = p->count, .no_weight_decay = 0};
    }
    kiln_optim *opt = kiln_optim_create(x->be, cfg, list, n, &err);
    free(list);
    if (!opt)
        fail_msg("%s", err.msg);
    float losses[3];
    for (int s = 0; s < 3; s++) {
        losses[s] = (float)train_step(r, x, NULL);
        if (kiln_optim_step(opt, &err) != KILN_OK)
            fail_msg("%s", err.msg);
        if (s == 0)
            p1 = download_flat(x, kiln_effnet_params_flat(x->m));
    }
    kiln_optim_destroy(opt);
    float *p3 = download_flat(x, kiln_effnet_params_flat(x->m));

    char label[64];
    snprintf(label, sizeof label, "%s step 1", what);
    check_params(&o, x, "param1", p0, p1, 1, label);
    check_losses(&o, losses, what);
    snprintf(label, sizeof label, "%s step 3", what);
    check_params(&o, x, "param", p0, p3, 3, label);
    snprintf(label, sizeof label, "%s running stats", what);
    compare_buffers(r, x->be, x->m, f, file, label);
    free(p0);
    free(p1);
    free(p3);
}

static float meta_float(const cJSON *obj, const char *key)
{
    return (float)meta_number(obj, key, "meta.json");
}

static void check_variant(const char *variant)
{
    ref r;
    run x;
    ref_open(&r, variant);
    run_open(&x, &r);

    /* torchvision's state_dict carries no metadata: the variant and class
     * count come from its keys and shapes. */
    char path[4200];
    snprintf(path, sizeof path, "%s/weights.safetensors", r.dir);
    kiln_err err = {0};
    kiln_effnet *guess = kiln_effnet_create_from_file(path, x.be, &err);
    if (!guess)
        fail_msg("%s", err.msg);
    assert_string_equal(kiln_effnet_variant(guess), variant);
    assert_int_equal(kiln_effnet_num_classes(guess), r.classes);
    kiln_effnet_destroy(guess);

    load_weights(&r, &x);
    check_eval(&r, &x);
    check_train(&r, &x);

    const cJSON *sgd = cJSON_GetObjectItemCaseSensitive(r.meta, "sgd");
    const cJSON *adamw = cJSON_GetObjectItemCaseSensitive(r.meta, "adamw");
    assert_non_null(sgd);
    assert_non_null(adamw);
    kiln_optim_config cfg;
    kiln_optim_config_sgd(&cfg, meta_float(sgd, "lr"), meta_float(sgd, "momentum"),
                          cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(sgd, "nesterov")),
                          meta_float(sgd, "weight_decay"));
    check_optimizer(&r, &x, &cfg, r.sgd, "sgd.safetensors", "SGD x3");

    kiln_optim_config_adamw(&cfg, meta_float(adamw, "lr"), meta_float(adamw, "weight_decay"));
    const cJSON *betas = cJSON_GetObjectItemCaseSensitive(adamw, "betas");
    assert_int_equal(cJSON_GetArraySize(betas), 2);
    cfg.beta1 = (float)cJSON_GetArrayItem(betas, 0)->valuedouble;
    cfg.beta2 = (float)cJSON_GetArrayItem(betas, 1)->valuedouble;
    cfg.eps = meta_float(adamw, "eps");
    check_optimizer(&r, &x, &cfg, r.adamw, "adamw.safetensors", "AdamW x3");

    run_close(&x);
    ref_close(&r);
}

static void test_b0(void **state)
{
    (void)state;
    check_variant("b0");
}

static void test_b3(void **state)
{
    (void)state;
    check_variant("b3");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b0),
        cmocka_unit_test(test_b3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
