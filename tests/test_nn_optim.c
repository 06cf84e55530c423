/* tests/test_nn_optim.c — lib/nn/optim on the CPU backend against torch.optim
 * (/usr/bin/python3, torch 1.13, run at test time): SGD (plain, Nesterov,
 * without momentum) and AdamW (default and other betas/eps) with per-step
 * learning rates and a no-weight-decay group, gradient clipping as
 * clip_grad_norm_, a resumed run bit-identical to an uninterrupted one, and
 * the refusals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "support/testutil.h"

#define PYTHON "/usr/bin/python3"
#define N_PARAMS 4
#define N_STEPS 4
/* torch and the backend round the same float32 formulas, possibly in a
 * different order (fused multiply-adds, AdamW's bias correction in double
 * or float): a few ulps per step. */
#define RTOL 2e-6
#define ATOL 1e-7

/* Writes the inputs (initial parameters, a gradient per step, the lr of
 * each step) and torch's parameters after every case. */
static const char py_optim[] =
    "import sys, torch\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from gen_nn_reference import write_safetensors\n"
    "torch.manual_seed(0)\n"
    "shapes = [(16, 3, 3, 3), (16,), (10, 16), (7,)]\n"
    "no_wd = [False, True, False, True]\n"
    "init = [torch.randn(s) for s in shapes]\n"
    "grads = [[torch.randn(s) * (1 + k) for s in shapes] for k in range(4)]\n"
    "lrs = [0.1, 0.05, 0.07, 0.01]\n"
    "out = {'lrs': torch.tensor(lrs)}\n"
    "for i, t in enumerate(init): out['init.%d' % i] = t\n"
    "for k in range(4):\n"
    "    for i in range(4): out['grad.%d.%d' % (k, i)] = grads[k][i]\n"
    "def run(name, make, clip=None, scale=1.0):\n"
    "    ps = [torch.nn.Parameter(t.clone()) for t in init]\n"
    "    groups = [{'params': [p for p, n in zip(ps, no_wd) if not n]},\n"
    "              {'params': [p for p, n in zip(ps, no_wd) if n], 'weight_decay': 0.0}]\n"
    "    opt, norms = make(groups), []\n"
    "    for k in range(4):\n"
    "        for g in opt.param_groups: g['lr'] = lrs[k]\n"
    "        for p, g in zip(ps, grads[k]): p.grad = g.clone() * scale\n"
    "        if clip: norms.append(torch.nn.utils.clip_grad_norm_(ps, clip).item())\n"
    "        opt.step()\n"
    "    for i, p in enumerate(ps): out['%s.%d' % (name, i)] = p.detach()\n"
    "    if clip: out[name + '.norms'] = torch.tensor(norms, dtype=torch.float64)\n"
    "O = torch.optim\n"
    "run('sgd_nesterov',\n"
    "    lambda g: O.SGD(g, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4))\n"
    "run('sgd_plain', lambda g: O.SGD(g, lr=0.1, momentum=0.9, weight_decay=5e-4))\n"
    "run('sgd_nomomentum', lambda g: O.SGD(g, lr=0.1, weight_decay=1e-4))\n"
    "run('adamw', lambda g: O.AdamW(g, lr=1e-3, weight_decay=0.05))\n"
    "run('adamw_betas', lambda g: O.AdamW(g, lr=1e-2, betas=(0.8, 0.99), eps=1e-6,\n"
    "                                    weight_decay=0.1))\n"
    "run('clip', lambda g: O.SGD(g, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4),\n"
    "    clip=5.0)\n"
    "run('noclip', lambda g: O.SGD(g, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4),\n"
    "    clip=5.0, scale=0.01)\n"
    "write_safetensors(sys.argv[2], out)\n";

static const int no_wd[N_PARAMS] = {0, 1, 0, 1};

typedef struct fixture {
    char *dir;
    kiln_nn_backend *be;
    kiln_st_file *ref;          /* torch's file; NULL without torch */
    size_t count[N_PARAMS];
    float *host_init[N_PARAMS]; /* initial parameters */
    float *host_grad[N_STEPS][N_PARAMS];
    float lrs[N_STEPS];
    float *param[N_PARAMS];     /* backend memory */
    float *grad[N_PARAMS];
} fixture;

static void expect_ok(int rc, const kiln_err *err, const char *what)
{
    if (rc != KILN_OK)
        fail_msg("%s: %s: %s", what, kiln_code_name(rc), err->msg);
}

static float *tensor_f32(const kiln_st_file *f, const char *name, size_t *count)
{
    const kiln_st_tensor *t = kiln_st_find(f, name);
    if (!t)
        fail_msg("torch's file has no %s", name);
    size_t n = t->bytes / (t->dtype == KILN_ST_F64 ? 8 : 4);
    float *out = malloc(n * sizeof *out);
    kiln_err err = {0};
    expect_ok(kiln_st_to_f32(t, out, n, &err), &err, name);
    if (count)
        *count = n;
    return out;
}

/* Runs the torch script once for all tests. */
static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    kiln_err err = {0};
    f->dir = kt_mkdtemp();
    f->be = kiln_nn_cpu_create(2, &err);
    if (!f->be)
        fail_msg("cpu backend: %s", err.msg);
    *state = f;
    const char *src = getenv("KILN_SOURCE_DIR");
    if (!src || kt_system(PYTHON " -c 'import torch' >/dev/null 2>&1") != 0)
        return 0; /* the torch tests skip */
    char *script = kt_path(f->dir, "optim.py");
    char *ref = kt_path(f->dir, "optim.safetensors");
    kt_write_file(script, py_optim, strlen(py_optim));
    char *out = NULL;
    if (kt_run_capture(&out, PYTHON " %s %s/tests %s", script, src, ref) != 0)
        fail_msg("python: %s", out);
    free(out);
    f->ref = kiln_st_open(ref, &err);
    if (!f->ref)
        fail_msg("%s", err.msg);
    char name[64];
    for (int i = 0; i < N_PARAMS; i++) {
        snprintf(name, sizeof name, "init.%d", i);
        f->host_init[i] = tensor_f32(f->ref, name, &f->count[i]);
        for (int k = 0; k < N_STEPS; k++) {
            snprintf(name, sizeof name, "grad.%d.%d", k, i);
            f->host_grad[k][i] = tensor_f32(f->ref, name, NULL);
        }
        f->param[i] = f->be->ops->alloc(f->be, f->count[i] * sizeof(float), &err);
        f->grad[i] = f->be->ops->alloc(f->be, f->count[i] * sizeof(float), &err);
        assert_true(f->param[i] && f->grad[i]);
    }
    float *lrs = tensor_f32(f->ref, "lrs", NULL);
    memcpy(f->lrs, lrs, sizeof f->lrs);
    free(lrs);
    free(script);
    free(ref);
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < N_PARAMS; i++) {
        if (f->param[i])
            f->be->ops->release(f->be, f->param[i]);
        if (f->grad[i])
            f->be->ops->release(f->be, f->grad[i]);
        free(f->host_init[i]);
        for (int k = 0; k < N_STEPS; k++)
            free(f->host_grad[k][i]);
    }
    kiln_st_close(f->ref);
    kiln_nn_backend_destroy(f->be);
    kt_rmtree_free(f->dir);
    free(f);
    return 0;
}

static fixture *need_torch(void **state)
{
    fixture *f = *state;
    if (!f->ref) {
        print_message("SKIPPED: " PYTHON " cannot import torch (or KILN_SOURCE_DIR unset)\n");
        skip();
    }
    return f;
}

static void upload(fixture *f, float *dst, const float *host, size_t n)
{
    kiln_err err = {0};
    expect_ok(f->be->ops->upload(f->be, dst, host, n * sizeof(float), &err), &err, "upload");
}

static void download(fixture *f, float *host, const float *src, size_t n)
{
    kiln_err err = {0};
    expect_ok(f->be->ops->download(f->be, host, src, n * sizeof(float), &err), &err,
              "download");
}

static kiln_optim *make_optim(fixture *f, const kiln_optim_config *cfg)
{
    kiln_optim_param params[N_PARAMS];
    for (int i = 0; i < N_PARAMS; i++)
        params[i] = (kiln_optim_param){f->param[i], f->grad[i], f->count[i], no_wd[i]};
    kiln_err err = {0};
    kiln_optim *o = kiln_optim_create(f->be, cfg, params, N_PARAMS, &err);
    if (!o)
        fail_msg("optimizer: %s", err.msg);
    return o;
}

static void reset_params(fixture *f)
{
    for (int i = 0; i < N_PARAMS; i++)
        upload(f, f->param[i], f->host_init[i], f->count[i]);
}

/* Steps [from, to) of the shared schedule: lr, gradients, clip, update. */
static void run_steps(fixture *f, kiln_optim *o, int from, int to, double clip, float scale,
                      double *norms)
{
    kiln_err err = {0};
    for (int k = from; k < to; k++) {
        kiln_optim_set_lr(o, f->lrs[k]);
        for (int i = 0; i < N_PARAMS; i++) {
            float *g = malloc(f->count[i] * sizeof *g);
            for (size_t j = 0; j < f->count[i]; j++)
                g[j] = f->host_grad[k][i][j] * scale;
            upload(f, f->grad[i], g, f->count[i]);
            free(g);
        }
        if (clip > 0)
            expect_ok(kiln_optim_clip_grad_norm(o, clip, &norms[k], &err), &err, "clip");
        expect_ok(kiln_optim_step(o, &err), &err, "step");
    }
}

static void compare_params(fixture *f, const char *name)
{
    char key[64];
    double worst = 0;
    for (int i = 0; i < N_PARAMS; i++) {
        snprintf(key, sizeof key, "%s.%d", name, i);
        float *want = tensor_f32(f->ref, key, NULL);
        float *got = malloc(f->count[i] * sizeof *got);
        download(f, got, f->param[i], f->count[i]);
        for (size_t j = 0; j < f->count[i]; j++) {
            double d = fabs((double)got[j] - want[j]);
            if (d > ATOL + RTOL * fabs(want[j]))
                fail_msg("%s[%zu]: kiln %.9g, torch %.9g", key, j, got[j], want[j]);
            worst = fmax(worst, d / (ATOL + fabs(want[j])));
        }
        free(want);
        free(got);
    }
    print_message("%s: %d steps match torch (worst |diff| / (1e-7 + |torch|) = %.2g)\n", name,
                  N_STEPS, worst);
}

static void run_case(fixture *f, const char *name, const kiln_optim_config *cfg)
{
    reset_params(f);
    kiln_optim *o = make_optim(f, cfg);
    run_steps(f, o, 0, N_STEPS, 0, 1.0f, NULL);
    assert_int_equal(kiln_optim_steps(o), N_STEPS);
    compare_params(f, name);
    kiln_optim_destroy(o);
}

static void test_sgd_matches_torch(void **state)
{
    fixture *f = need_torch(state);
    kiln_optim_config cfg;
    kiln_optim_config_sgd(&cfg, 0.1f, 0.9f, 1, 1e-4f);
    run_case(f, "sgd_nesterov", &cfg);
    kiln_optim_config_sgd(&cfg, 0.1f, 0.9f, 0, 5e-4f);
    run_case(f, "sgd_plain", &cfg);
    kiln_optim_config_sgd(&cfg, 0.1f, 0.0f, 0, 1e-4f);
    run_case(f, "sgd_nomomentum", &cfg);
}

static void test_adamw_matches_torch(void **state)
{
    fixture *f = need_torch(state);
    kiln_optim_config cfg;
    kiln_optim_config_adamw(&cfg, 1e-3f, 0.05f);
    run_case(f, "adamw", &cfg);
    cfg.lr = 1e-2f;
    cfg.beta1 = 0.8f;
    cfg.beta2 = 0.99f;
    cfg.eps = 1e-6f;
    cfg.weight_decay = 0.1f;
    run_case(f, "adamw_betas", &cfg);
}

static void clip_case(fixture *f, const char *name, float scale)
{
    kiln_optim_config cfg;
    kiln_optim_config_sgd(&cfg, 0.1f, 0.9f, 1, 1e-4f);
    reset_params(f);
    kiln_optim *o = make_optim(f, &cfg);
    double norms[N_STEPS];
    run_steps(f, o, 0, N_STEPS, 5.0, scale, norms);
    char key[64];
    snprintf(key, sizeof key, "%s.norms", name);
    float *want = tensor_f32(f->ref, key, NULL);
    for (int k = 0; k < N_STEPS; k++)
        if (fabs(norms[k] - want[k]) > 1e-5 * want[k])
            fail_msg("%s step %d: norm %.9g, torch %.9g", name, k, norms[k], want[k]);
    free(want);
    compare_params(f, name);
    kiln_optim_destroy(o);
}

static void test_clip_matches_torch(void **state)
{
    fixture *f = need_torch(state);
    clip_case(f, "clip", 1.0f);     /* norms ~25-100: clipped to 5 */
    clip_case(f, "noclip", 0.01f);  /* norms < 5: untouched */
}

/* Gradients under the limit are not touched at all (bit for bit); a
 * non-finite norm leaves them as they are and is reported. */
static void test_clip_leaves_small_and_nonfinite(void **state)
{
    fixture *f = need_torch(state);
    kiln_optim_config cfg;
    kiln_optim_config_sgd(&cfg, 0.1f, 0.9f, 0, 0.0f);
    kiln_optim *o = make_optim(f, &cfg);
    kiln_err err = {0};
    double sum = 0;
    for (int i = 0; i < N_PARAMS; i++) {
        upload(f, f->grad[i], f->host_grad[0][i], f->count[i]);
        for (size_t j = 0; j < f->count[i]; j++)
            sum += (double)f->host_grad[0][i][j] * f->host_grad[0][i][j];
    }
    double norm = 0;
    expect_ok(kiln_optim_grad_norm(o, &norm, &err), &err, "norm");
    assert_true(fabs(norm - sqrt(sum)) < 1e-9 * sqrt(sum));
    expect_ok(kiln_optim_clip_grad_norm(o, norm * 2, &norm, &err), &err, "clip");
    for (int i = 0; i < N_PARAMS; i++) {
        float *got = malloc(f->count[i] * sizeof *got);
        download(f, got, f->grad[i], f->count[i]);
        assert_memory_equal(got, f->host_grad[0][i], f->count[i] * sizeof *got);
        free(got);
    }
    float inf = INFINITY;
    upload(f, f->grad[1], &inf, 1);
    expect_ok(kiln_optim_clip_grad_norm(o, 1.0, &norm, &err), &err, "clip inf");
    assert_true(isinf(norm));
    float *got = malloc(f->count[0] * sizeof *got);
    download(f, got, f->grad[0], f->count[0]);
    assert_memory_equal(got, f->host_grad[0][0], f->count[0] * sizeof *got);
    free(got);
    assert_int_equal(kiln_optim_clip_grad_norm(o, 0.0, NULL, &err), KILN_EINVAL);
    kiln_optim_destroy(o);
}

/* Stop after 2 steps, export, rebuild everything from host copies, import,
 * finish: parameters and state equal an uninterrupted run bit for bit. */
static void resume_case(fixture *f, const kiln_optim_config *cfg)
{
    kiln_err err = {0};
    reset_params(f);
    kiln_optim *straight = make_optim(f, cfg);
    run_steps(f, straight, 0, N_STEPS, 0, 1.0f, NULL);
    size_t n_state = kiln_optim_state_count(straight);
    float *want_state = malloc(n_state * sizeof(float));
    expect_ok(kiln_optim_state_export(straight, want_state, n_state, &err), &err, "export");
    float *want[N_PARAMS];
    for (int i = 0; i < N_PARAMS; i++) {
        want[i] = malloc(f->count[i] * sizeof(float));
        download(f, want[i], f->param[i], f->count[i]);
    }
    kiln_optim_destroy(straight);

    reset_params(f);
    kiln_optim *first = make_optim(f, cfg);
    run_steps(f, first, 0, 2, 0, 1.0f, NULL);
    float *saved_state = malloc(n_state * sizeof(float));
    expect_ok(kiln_optim_state_export(first, saved_state, n_state, &err), &err, "export");
    int64_t saved_steps = kiln_optim_steps(first);
    float *saved[N_PARAMS];
    for (int i = 0; i < N_PARAMS; i++) {
        saved[i] = malloc(f->count[i] * sizeof(float));
        download(f, saved[i], f->param[i], f->count[i]);
    }
    kiln_optim_destroy(first);

    /* A "new process": parameters scrambled, then restored from the copies. */
    for (int i = 0; i < N_PARAMS; i++) {
        expect_ok(f->be->ops->fill(f->be, f->param[i], 123.0f, f->count[i], &err), &err, "fill");
        upload(f, f->param[i], saved[i], f->count[i]);
    }
    kiln_optim *resumed = make_optim(f, cfg);
    expect_ok(kiln_optim_state_import(resumed, saved_state, n_state, saved_steps, &err), &err,
              "import");
    assert_int_equal(kiln_optim_steps(resumed), 2);
    run_steps(f, resumed, 2, N_STEPS, 0, 1.0f, NULL);
    float *got_state = malloc(n_state * sizeof(float));
    expect_ok(kiln_optim_state_export(resumed, got_state, n_state, &err), &err, "export");
    assert_memory_equal(got_state, want_state, n_state * sizeof(float));
    for (int i = 0; i < N_PARAMS; i++) {
        float *got = malloc(f->count[i] * sizeof(float));
        download(f, got, f->param[i], f->count[i]);
        assert_memory_equal(got, want[i], f->count[i] * sizeof(float));
        free(got);
        free(want[i]);
        free(saved[i]);
    }
    kiln_optim_destroy(resumed);
    free(want_state);
    free(saved_state);
    free(got_state);
}

static void test_resume_is_bit_identical(void **state)
{
    fixture *f = need_torch(state);
    kiln_optim_config cfg;
    kiln_optim_config_sgd(&cfg, 0.1f, 0.9f, 1, 1e-4f);
    resume_case(f, &cfg);
    kiln_optim_config_adamw(&cfg, 1e-3f, 0.05f);
    resume_case(f, &cfg);
}

static void expect_create_refused(fixture *f, const kiln_optim_config *cfg,
                                  const kiln_optim_param *p, size_t n, const char *needle)
{
    kiln_err err = {0};
    kiln_optim *o = kiln_optim_create(f->be, cfg, p, n, &err);
    if (o) {
        kiln_optim_destroy(o);
        fail_msg("accepted: %s", needle);
    }
    if (err.code != KILN_EINVAL || !strstr(err.msg, needle))
        fail_msg("want EINVAL with '%s', got %s", needle, err.msg);
}

static void test_refusals(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    float *buf = f->be->ops->alloc(f->be, 8 * sizeof(float), &err);
    assert_non_null(buf);
    kiln_optim_param p = {buf, buf + 4, 4, 0};
    kiln_optim_config cfg;
    kiln_optim_config_sgd(&cfg, 0.0f, 0.9f, 0, 0.0f);
    expect_create_refused(f, &cfg, &p, 1, "learning rate 0");
    kiln_optim_config_sgd(&cfg, 0.1f, 1.0f, 0, 0.0f);
    expect_create_refused(f, &cfg, &p, 1, "momentum 1");
    kiln_optim_config_sgd(&cfg, 0.1f, 0.0f, 1, 0.0f);
    expect_create_refused(f, &cfg, &p, 1, "Nesterov");
    kiln_optim_config_sgd(&cfg, 0.1f, 0.9f, 0, -1.0f);
    expect_create_refused(f, &cfg, &p, 1, "weight decay -1");
    kiln_optim_config_adamw(&cfg, 1e-3f, 0.0f);
    cfg.beta2 = 1.0f;
    expect_create_refused(f, &cfg, &p, 1, "betas (0.9, 1)");
    kiln_optim_config_adamw(&cfg, 1e-3f, 0.0f);
    cfg.eps = -1.0f;
    expect_create_refused(f, &cfg, &p, 1, "eps -1");
    kiln_optim_config_adamw(&cfg, 1e-3f, 0.0f);
    expect_create_refused(f, &cfg, &p, 0, "no parameters");
    kiln_optim_param bad = {buf, NULL, 4, 0};
    expect_create_refused(f, &cfg, &bad, 1, "parameter 0 has no buffer");

    /* State of the wrong size or a negative step count. */
    kiln_optim *o = kiln_optim_create(f->be, &cfg, &p, 1, &err);
    assert_non_null(o);
    assert_int_equal(kiln_optim_state_count(o), 8); /* m and v */
    float host[9] = {0};
    assert_int_equal(kiln_optim_state_import(o, host, 9, 0, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "needs 8"));
    assert_int_equal(kiln_optim_state_export(o, host, 4, &err), KILN_EINVAL);
    assert_int_equal(kiln_optim_state_import(o, host, 8, -1, &err), KILN_EINVAL);
    assert_int_equal(kiln_optim_steps(o), 0);
    kiln_optim_destroy(o);
    f->be->ops->release(f->be, buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_matches_torch),
        cmocka_unit_test(test_adamw_matches_torch),
        cmocka_unit_test(test_clip_matches_torch),
        cmocka_unit_test(test_clip_leaves_small_and_nonfinite),
        cmocka_unit_test(test_resume_is_bit_identical),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
