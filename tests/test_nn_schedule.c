/* tests/test_nn_schedule.c — lib/nn/schedule against torch's own schedulers
 * (/usr/bin/python3, torch 1.13), run at test time: the script below steps
 * SequentialLR(LinearLR, CosineAnnealingLR) and OneCycleLR over a range of
 * settings and prints every lr as JSON; kiln must match each within 1e-6
 * relative. Plus the refusals and the clamping outside [0, total]. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "nn/schedule.h"
#include "support/testutil.h"

#define PYTHON "/usr/bin/python3"
#define REL_TOL 1e-6

static const char py_schedules[] =
    "import json, sys, warnings, torch\n"
    "from torch.optim import lr_scheduler as S\n"
    "warnings.filterwarnings('ignore')\n"
    "def run(make, lr, steps):\n"
    "    p = torch.nn.Parameter(torch.zeros(1))\n"
    "    opt = torch.optim.SGD([p], lr=lr, momentum=0.9)\n"
    "    sched = make(opt)\n"
    "    out, mom = [], []\n"
    "    for _ in range(steps + 1):\n"
    "        out.append(opt.param_groups[0]['lr'])\n"
    "        mom.append(opt.param_groups[0]['momentum'])\n"
    "        opt.step()\n"
    "        if len(out) <= steps: sched.step()\n"
    "    return out, mom\n"
    "cases = []\n"
    "for lr, total, warmup, sf, eta in [(0.5, 30, 5, 0.01, 0.0), (0.1, 10, 3, 0.1, 1e-4),\n"
    "                                   (0.8, 7, 0, 1.0, 0.0), (0.2, 2, 1, 0.5, 0.0),\n"
    "                                   (1.0, 600, 25, 0.001, 1e-5)]:\n"
    "    def make(opt):\n"
    "        cos = S.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=eta)\n"
    "        if warmup == 0: return cos\n"
    "        lin = S.LinearLR(opt, start_factor=sf, total_iters=warmup)\n"
    "        return S.SequentialLR(opt, schedulers=[lin, cos], milestones=[warmup])\n"
    "    cases.append({'kind': 'warmup_cosine', 'lr': lr, 'total': total, 'warmup': warmup,\n"
    "                  'start_factor': sf, 'eta_min': eta, 'lrs': run(make, lr, total)[0]})\n"
    "for mx, total, pct, div, fdiv, anneal in [(0.1, 100, 0.3, 25.0, 1e4, 'cos'),\n"
    "        (0.4, 37, 0.25, 10.0, 100.0, 'cos'), (1.0, 10, 0.0, 25.0, 1e4, 'cos'),\n"
    "        (0.05, 50, 0.5, 5.0, 20.0, 'linear'), (0.3, 1, 0.3, 25.0, 1e4, 'cos'),\n"
    "        (2.0, 999, 0.15, 25.0, 1e4, 'cos')]:\n"
    "    make = lambda opt: S.OneCycleLR(opt, max_lr=mx, total_steps=total, pct_start=pct,\n"
    "        div_factor=div, final_div_factor=fdiv, anneal_strategy=anneal, three_phase=False)\n"
    "    lrs, mom = run(make, mx, total)\n"
    "    cases.append({'kind': 'one_cycle', 'lr': mx, 'total': total, 'pct_start': pct,\n"
    "                  'div_factor': div, 'final_div_factor': fdiv,\n"
    "                  'linear': anneal == 'linear', 'lrs': lrs, 'momentum': mom})\n"
    "json.dump({'torch': torch.__version__, 'cases': cases}, open(sys.argv[1], 'w'))\n";

static double num(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(obj, key);
    if (!cJSON_IsNumber(v) && !cJSON_IsBool(v))
        fail_msg("torch's JSON has no '%s'", key);
    return cJSON_IsBool(v) ? (double)cJSON_IsTrue(v) : v->valuedouble;
}

static void schedule_from_case(const cJSON *c, kiln_lr_schedule *s)
{
    const char *kind = cJSON_GetObjectItem(c, "kind")->valuestring;
    if (strcmp(kind, "warmup_cosine") == 0) {
        kiln_lr_warmup_cosine(s, num(c, "lr"), (int64_t)num(c, "total"),
                              (int64_t)num(c, "warmup"), num(c, "start_factor"));
        s->eta_min = num(c, "eta_min");
    } else {
        kiln_lr_one_cycle(s, num(c, "lr"), (int64_t)num(c, "total"));
        s->pct_start = num(c, "pct_start");
        s->div_factor = num(c, "div_factor");
        s->final_div_factor = num(c, "final_div_factor");
        s->anneal_linear = (int)num(c, "linear");
    }
}

static void test_matches_torch(void **state)
{
    if (kt_system(PYTHON " -c 'import torch' >/dev/null 2>&1") != 0) {
        print_message("SKIPPED: " PYTHON " cannot import torch\n");
        skip();
    }
    char *script = kt_path(*state, "sched.py");
    char *json_path = kt_path(*state, "sched.json");
    kt_write_file(script, py_schedules, strlen(py_schedules));
    char *out = NULL;
    if (kt_run_capture(&out, PYTHON " %s %s", script, json_path) != 0)
        fail_msg("python: %s", out);
    free(out);
    char *text = NULL;
    size_t len = 0;
    kiln_err err = {0};
    if (kiln_read_file(json_path, 0, &text, &len, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    cJSON *root = cJSON_Parse(text);
    free(text);
    assert_non_null(root);
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    assert_true(cJSON_GetArraySize(cases) >= 10);
    double worst = 0.0;
    size_t compared = 0, momenta = 0;
    for (const cJSON *c = cases->child; c; c = c->next) {
        kiln_lr_schedule s;
        schedule_from_case(c, &s);
        if (kiln_lr_schedule_check(&s, &err) != KILN_OK)
            fail_msg("a schedule torch accepts: %s", err.msg);
        const cJSON *lrs = cJSON_GetObjectItem(c, "lrs");
        assert_int_equal(cJSON_GetArraySize(lrs), s.total_steps + 1);
        int64_t step = 0;
        for (const cJSON *v = lrs->child; v; v = v->next, step++) {
            double want = v->valuedouble, got = kiln_lr_at(&s, step);
            /* Relative, with a floor for the lr of ~0 at the end of a decay. */
            double rel = fabs(got - want) / fmax(fabs(want), 1e-9 * s.lr);
            if (rel > REL_TOL)
                fail_msg("%s (lr %g, total %lld): step %lld: kiln %.17g, torch %.17g",
                         cJSON_GetObjectItem(c, "kind")->valuestring, s.lr,
                         (long long)s.total_steps, (long long)step, got, want);
            worst = fmax(worst, rel);
            compared++;
        }
        /* OneCycleLR cycles SGD's momentum (AdamW's beta1) the other way. */
        const cJSON *mom = cJSON_GetObjectItem(c, "momentum");
        step = 0;
        for (const cJSON *v = mom ? mom->child : NULL; v; v = v->next, step++) {
            double want = v->valuedouble, got = kiln_momentum_at(&s, step, 0.9);
            if (fabs(got - want) > 1e-12)
                fail_msg("one_cycle momentum (total %lld): step %lld: kiln %.17g, torch %.17g",
                         (long long)s.total_steps, (long long)step, got, want);
            momenta++;
        }
    }
    assert_true(momenta > 1000);
    print_message("compared %zu learning rates and %zu momenta with torch %s: worst relative "
                  "lr difference %.3g\n", compared, momenta, cJSON_GetObjectItem(root, "torch")->valuestring, worst);
    cJSON_Delete(root);
    free(script);
    free(json_path);
}

static void test_shape_and_clamping(void **state)
{
    (void)state;
    kiln_lr_schedule s;
    kiln_err err = {0};
    kiln_lr_warmup_cosine(&s, 0.5, 100, 10, 0.01);
    assert_int_equal(kiln_lr_schedule_check(&s, &err), KILN_OK);
    assert_true(fabs(kiln_lr_at(&s, 0) - 0.005) < 1e-15);
    assert_true(kiln_lr_at(&s, 10) == 0.5); /* the peak, at the milestone */
    assert_true(kiln_lr_at(&s, 5) < kiln_lr_at(&s, 9));
    assert_true(kiln_lr_at(&s, 60) < kiln_lr_at(&s, 50));
    assert_true(fabs(kiln_lr_at(&s, 100)) < 1e-15); /* eta_min 0 */
    assert_true(kiln_lr_at(&s, -3) == kiln_lr_at(&s, 0));
    assert_true(kiln_lr_at(&s, 250) == kiln_lr_at(&s, 100));

    kiln_lr_one_cycle(&s, 0.1, 100);
    assert_int_equal(kiln_lr_schedule_check(&s, &err), KILN_OK);
    assert_true(fabs(kiln_lr_at(&s, 0) - 0.1 / 25) < 1e-15);
    assert_true(fabs(kiln_lr_at(&s, 29) - 0.1) < 1e-15); /* pct_start * total - 1 */
    assert_true(fabs(kiln_lr_at(&s, 99) - 0.1 / 25 / 1e4) < 1e-15);
    assert_true(kiln_lr_at(&s, 1000) == kiln_lr_at(&s, 100));

    kiln_lr_constant(&s, 0.25);
    assert_int_equal(kiln_lr_schedule_check(&s, &err), KILN_OK);
    assert_true(kiln_lr_at(&s, 0) == 0.25 && kiln_lr_at(&s, 12345) == 0.25);
}

static void expect_refused(const kiln_lr_schedule *s, const char *needle)
{
    kiln_err err = {0};
    if (kiln_lr_schedule_check(s, &err) != KILN_EINVAL || !strstr(err.msg, needle))
        fail_msg("want EINVAL with '%s', got: %s", needle, err.msg);
}

static void test_refusals(void **state)
{
    (void)state;
    kiln_lr_schedule s;
    kiln_lr_warmup_cosine(&s, 0.1, 10, 10, 0.1);
    expect_refused(&s, "warmup of 10 steps must be shorter");
    kiln_lr_warmup_cosine(&s, 0.1, 10, -1, 0.1);
    expect_refused(&s, "warmup of -1");
    kiln_lr_warmup_cosine(&s, 0.1, 10, 2, 0.0);
    expect_refused(&s, "start factor 0");
    kiln_lr_warmup_cosine(&s, 0.1, 10, 2, 0.1);
    s.eta_min = -1;
    expect_refused(&s, "minimum lr -1");
    kiln_lr_warmup_cosine(&s, 0.0, 10, 2, 0.1);
    expect_refused(&s, "learning rate 0");
    kiln_lr_warmup_cosine(&s, 0.1, 0, 0, 0.1);
    expect_refused(&s, "total steps 0");
    kiln_lr_one_cycle(&s, 0.1, 10);
    s.pct_start = 1.0;
    expect_refused(&s, "pct_start 1");
    s.pct_start = 0.1; /* 0.1 * 10 == 1: a warm-up of zero steps */
    expect_refused(&s, "must not be 1");
    s.pct_start = 0.3;
    s.div_factor = 0;
    expect_refused(&s, "div_factor 0");
    s.kind = (kiln_lr_kind)42;
    s.div_factor = 25;
    expect_refused(&s, "unknown kind 42");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_matches_torch, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test(test_shape_and_clamping),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
