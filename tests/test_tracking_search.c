/* tests/test_tracking_search.c — runs/search: filters on metrics, params,
 * tags and attributes with every comparator, AND, quoting, order_by with
 * missing values last, run_view_type, paging, and MLflow's errors. */
#include "test_tracking_support.h"

typedef struct run_spec {
    const char *name;
    double acc;        /* < 0: no acc metric */
    const char *model; /* NULL: no param */
    const char *team;  /* NULL: no tag */
    long long start;
} run_spec;

static const run_spec specs[] = {
    {"r-alpha", 0.91, "resnet", "vision", 1000},
    {"r-beta", 0.75, "ResNet-big", "vision", 2000},
    {"r-gamma", 0.50, "efficientnet", "nlp", 3000},
    {"r-delta", -1, "efficientnet", NULL, 4000},
    {"r-eps", 0.75, NULL, "speech team", 5000},
};

static char *exp_id;

static void make_runs(kiln_tracking *t)
{
    exp_id = tt_create_experiment(t, "search");
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        const run_spec *s = &specs[i];
        cJSON *r = tt_ok(t, "POST", TT_API "runs/create",
                         "{\"experiment_id\": \"%s\", \"run_name\": \"%s\", \"start_time\": %lld}",
                         exp_id, s->name, s->start);
        const char *id = tt_str(r, "run.info.run_id");
        if (s->acc >= 0)
            tt_do(t, "POST", TT_API "runs/log-metric",
                  "{\"run_id\": \"%s\", \"key\": \"acc\", \"value\": %g, "
                  "\"timestamp\": 1}",
                  id, s->acc);
        if (s->model)
            tt_do(t, "POST", TT_API "runs/log-parameter",
                  "{\"run_id\": \"%s\", \"key\": \"model\", \"value\": \"%s\"}", id, s->model);
        if (s->team)
            tt_do(t, "POST", TT_API "runs/set-tag",
                  "{\"run_id\": \"%s\", \"key\": \"team name\", \"value\": \"%s\"}", id, s->team);
        cJSON_Delete(r);
    }
}

static int setup(void **state)
{
    tt_setup(state);
    make_runs(((tt_fixture *)*state)->t);
    return 0;
}

static int teardown(void **state)
{
    free(exp_id);
    exp_id = NULL;
    return tt_teardown(state);
}

/* The run names a search answers, comma-separated, in order. */
static void search(kiln_tracking *t, const char *extra, char *out, size_t size)
{
    cJSON *r = tt_ok(t, "POST", TT_API "runs/search", "{\"experiment_ids\": [\"%s\"]%s%s}", exp_id,
                     *extra ? ", " : "", extra);
    tt_join(r, "runs", "info.run_name", out, size);
    cJSON_Delete(r);
}

#define EXPECT(t, extra, names)                                                           \
    do {                                                                                  \
        char got_[512];                                                                   \
        search((t), (extra), got_, sizeof got_);                                          \
        if (strcmp(got_, (names)) != 0)                                                   \
            fail_msg("search %s: expected '%s', got '%s'", (extra), (names), got_);       \
    } while (0)

static void test_default_order_and_metrics(void **state)
{
    kiln_tracking *t = ((tt_fixture *)*state)->t;
    EXPECT(t, "", "r-eps,r-delta,r-gamma,r-beta,r-alpha");
    EXPECT(t, "\"filter\": \"metrics.acc > 0.7\"", "r-eps,r-beta,r-alpha");
    EXPECT(t, "\"filter\": \"metrics.acc >= 0.75\"", "r-eps,r-beta,r-alpha");
    EXPECT(t, "\"filter\": \"metrics.acc < 0.75\"", "r-gamma");
    EXPECT(t, "\"filter\": \"metrics.acc <= 0.75\"", "r-eps,r-gamma,r-beta");
    EXPECT(t, "\"filter\": \"metrics.acc = 0.75\"", "r-eps,r-beta");
    EXPECT(t, "\"filter\": \"metrics.acc != 0.75\"", "r-gamma,r-alpha");
    EXPECT(t, "\"filter\": \"metric.acc > -1e3 and metrics.acc < 0.8\"", "r-eps,r-gamma,r-beta");
}

static void test_params_tags_attributes(void **state)
{
    kiln_tracking *t = ((tt_fixture *)*state)->t;
    EXPECT(t, "\"filter\": \"params.model = 'efficientnet'\"", "r-delta,r-gamma");
    EXPECT(t, "\"filter\": \"params.model != 'efficientnet'\"", "r-beta,r-alpha");
    EXPECT(t, "\"filter\": \"params.model LIKE 'res%'\"", "r-alpha");
    EXPECT(t, "\"filter\": \"params.model ILIKE 'res%'\"", "r-beta,r-alpha");
    EXPECT(t, "\"filter\": \"params.model LIKE '%net'\"", "r-delta,r-gamma,r-alpha");
    EXPECT(t, "\"filter\": \"params.model LIKE 'resne_'\"", "r-alpha");
    EXPECT(t, "\"filter\": \"tags.`team name` = 'vision'\"", "r-beta,r-alpha");
    EXPECT(t, "\"filter\": \"tags.\\\"team name\\\" LIKE '%team'\"", "r-eps");
    EXPECT(t, "\"filter\": \"tag.`team name` = \\\"nlp\\\"\"", "r-gamma");
    EXPECT(t, "\"filter\": \"attributes.run_name = 'r-beta'\"", "r-beta");
    EXPECT(t, "\"filter\": \"attributes.run_name LIKE 'r-%a'\"", "r-delta,r-gamma,r-beta,r-alpha");
    EXPECT(t, "\"filter\": \"attributes.start_time > 2500 AND attributes.start_time <= 4000\"",
           "r-delta,r-gamma");
    EXPECT(t, "\"filter\": \"attributes.status = 'RUNNING' and params.model = 'resnet'\"",
           "r-alpha");
    EXPECT(t, "\"filter\": \"run_name = 'r-eps'\"", "r-eps");
    EXPECT(t, "\"filter\": \"tags.`team name` = 'vision' AND metrics.acc > 0.8 AND "
              "params.model = 'resnet'\"",
           "r-alpha");
    EXPECT(t, "\"filter\": \"params.missing = 'x'\"", "");
}

static void test_order_by(void **state)
{
    kiln_tracking *t = ((tt_fixture *)*state)->t;
    /* Runs without the metric come last both ways; ties by start_time DESC. */
    EXPECT(t, "\"order_by\": [\"metrics.acc DESC\"]", "r-alpha,r-eps,r-beta,r-gamma,r-delta");
    EXPECT(t, "\"order_by\": [\"metrics.acc\"]", "r-gamma,r-eps,r-beta,r-alpha,r-delta");
    EXPECT(t, "\"order_by\": [\"attributes.start_time ASC\"]",
           "r-alpha,r-beta,r-gamma,r-delta,r-eps");
    /* Byte order: "resnet" > "efficientnet" > "ResNet-big". */
    EXPECT(t, "\"order_by\": [\"params.model DESC\", \"attributes.run_name\"]",
           "r-alpha,r-delta,r-gamma,r-beta,r-eps");
    EXPECT(t, "\"order_by\": [\"tags.`team name`\"]", "r-gamma,r-eps,r-beta,r-alpha,r-delta");
    EXPECT(t, "\"order_by\": [\"attributes.run_name DESC\"]",
           "r-gamma,r-eps,r-delta,r-beta,r-alpha");
}

static void test_pages_and_views(void **state)
{
    tt_fixture *f = *state;
    char seen[512] = "";
    char token[128] = "";
    int pages = 0;
    for (;;) {
        cJSON *r = tt_ok(f->t, "POST", TT_API "runs/search",
                         "{\"experiment_ids\": [\"%s\"], \"max_results\": 2, "
                         "\"order_by\": [\"attributes.start_time\"]%s%s%s}",
                         exp_id, *token ? ", \"page_token\": \"" : "", token, *token ? "\"" : "");
        pages++;
        for (int i = 0; i < tt_len(r, "runs"); i++) {
            char path[48];
            snprintf(path, sizeof path, "runs.%d.info.run_name", i);
            size_t n = strlen(seen);
            snprintf(seen + n, sizeof seen - n, "%s%s", n ? "," : "", tt_str(r, path));
        }
        const cJSON *next = tt_get(r, "next_page_token");
        snprintf(token, sizeof token, "%s", next ? next->valuestring : "");
        cJSON_Delete(r);
        if (!*token)
            break;
    }
    assert_int_equal(pages, 3);
    assert_string_equal(seen, "r-alpha,r-beta,r-gamma,r-delta,r-eps");
    /* Deleted runs: only with DELETED_ONLY or ALL. */
    cJSON *r = tt_ok(f->t, "POST", TT_API "runs/search",
                     "{\"experiment_ids\": [\"%s\"], \"filter\": \"run_name = 'r-beta'\"}", exp_id);
    char *beta = strdup(tt_str(r, "runs.0.info.run_id"));
    cJSON_Delete(r);
    tt_do(f->t, "POST", TT_API "runs/delete", "{\"run_id\": \"%s\"}", beta);
    EXPECT(f->t, "\"run_view_type\": \"DELETED_ONLY\"", "r-beta");
    EXPECT(f->t, "\"run_view_type\": \"ALL\", \"filter\": \"metrics.acc = 0.75\"", "r-eps,r-beta");
    EXPECT(f->t, "\"run_view_type\": 1, \"filter\": \"metrics.acc = 0.75\"", "r-eps");
    free(beta);
    /* Runs of several experiments; none listed, none found. */
    char *other = tt_create_experiment(f->t, "other");
    free(tt_create_run(f->t, other));
    r = tt_ok(f->t, "POST", TT_API "runs/search", "{\"experiment_ids\": [\"%s\", \"%s\"]}", exp_id,
              other);
    assert_int_equal(tt_len(r, "runs"), 5);
    cJSON_Delete(r);
    r = tt_ok(f->t, "POST", TT_API "runs/search", "{}");
    assert_int_equal(cJSON_GetArraySize(r), 0);
    cJSON_Delete(r);
    free(other);
}

static void test_search_errors(void **state)
{
    kiln_tracking *t = ((tt_fixture *)*state)->t;
    static const struct {
        const char *body;
        const char *msg;
    } cases[] = {
        {"{\"filter\": \"metrics.acc > 'high'\"}", "Expected numeric value type for metric"},
        {"{\"filter\": \"metrics.acc LIKE '1'\"}", "Invalid comparator 'LIKE'"},
        {"{\"filter\": \"params.model > 'a'\"}", "Invalid comparator '>'"},
        {"{\"filter\": \"params.model = 3\"}", "Expected a quoted string value for param"},
        {"{\"filter\": \"attributes.start_time = 'x'\"}", "Expected numeric value type"},
        {"{\"filter\": \"attributes.colour = 'x'\"}", "Invalid attribute key 'colour'"},
        {"{\"filter\": \"things.x = 'x'\"}", "Invalid entity type 'things'"},
        {"{\"filter\": \"params.model = 'a' OR params.model = 'b'\"}", "Only AND"},
        {"{\"filter\": \"params.model = 'unterminated\"}", "unterminated quoted string"},
        {"{\"filter\": \"params.model =\"}", "expected a quoted string or a number"},
        {"{\"filter\": \"params.model = 'a' AND\"}", "expected a condition after AND"},
        {"{\"order_by\": [\"metrics.acc UP\"]}", "Invalid order_by clause 'metrics.acc UP'"},
        {"{\"order_by\": \"metrics.acc\"}", "Invalid value \"metrics.acc\" for parameter 'order_by'"},
        {"{\"max_results\": 50001}", "Invalid value 50001 for parameter 'max_results' supplied"},
        {"{\"max_results\": 0}", "max_results"},
        {"{\"experiment_ids\": \"0\"}", "parameter 'experiment_ids'"},
        {"{\"experiment_ids\": [0]}", "parameter 'experiment_ids'"},
        {"{\"run_view_type\": \"SOME\"}", "run_view_type"},
        {"{\"page_token\": \"eyJvZmZzZXQiOiAtMX0=\"}", "Invalid page token"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        tt_err(t, "POST", TT_API "runs/search", 400, "INVALID_PARAMETER_VALUE", cases[i].msg,
               "%s", cases[i].body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_default_order_and_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_params_tags_attributes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_by, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pages_and_views, setup, teardown),
        cmocka_unit_test_setup_teardown(test_search_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
