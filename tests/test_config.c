/* lib/config: defaults, the YAML loader, kiln_config_set, validation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "config/config.h"
#include "support/testutil.h"

/* Load `yaml` over the defaults; returns the code, the config in *cfg. */
static int load(const char *yaml, kiln_config *cfg, kiln_err *err)
{
    kiln_config_defaults(cfg);
    kiln_err_clear(err);
    return kiln_config_load_string(cfg, yaml, strlen(yaml), "t.yaml", err);
}

/* Load `yaml`, expect `code` and every one of the NULL-terminated
 * fragments in the message. */
static void expect_error(const char *yaml, int code, ...)
{
    kiln_config cfg;
    kiln_err err;
    va_list ap;
    int rc = load(yaml, &cfg, &err);
    if (rc != code)
        fail_msg("code %s, wanted %s, for:\n%s\nmessage: %s", kiln_code_name(rc),
                 kiln_code_name(code), yaml, err.msg);
    if (strncmp(err.msg, "t.yaml: ", 8) != 0)
        fail_msg("message does not start with the file name: %s", err.msg);
    va_start(ap, code);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *))
        if (!strstr(err.msg, s))
            fail_msg("message lacks \"%s\": %s", s, err.msg);
    va_end(ap);
}

static void expect_set_error(const char *key, const char *value, const char *fragment)
{
    kiln_config cfg, before;
    kiln_err err = {0};
    kiln_config_defaults(&cfg);
    before = cfg;
    assert_int_equal(kiln_config_set(&cfg, key, value, &err), KILN_EINVAL);
    if (!strstr(err.msg, fragment))
        fail_msg("set %s=%s: message lacks \"%s\": %s", key, value, fragment, err.msg);
    /* A failed set leaves the config as it was. */
    assert_int_equal(cfg.train.epochs, before.train.epochs);
    assert_int_equal(cfg.data.image_size, before.data.image_size);
    assert_string_equal(cfg.train.model, before.train.model);
}

static void assert_cfg_equal(const kiln_config *a, const kiln_config *b)
{
    assert_int_equal(a->data.image_size, b->data.image_size);
    assert_true(a->data.val_fraction == b->data.val_fraction);
    assert_true(a->data.test_fraction == b->data.test_fraction);
    assert_true(a->data.seed == b->data.seed);
    assert_string_equal(a->data.normalization, b->data.normalization);
    assert_true(a->data.max_bad_fraction == b->data.max_bad_fraction);
    assert_true(a->data.max_uncompressed_mb == b->data.max_uncompressed_mb);
    assert_true(a->data.max_compression_ratio == b->data.max_compression_ratio);
    assert_int_equal(a->data.workers, b->data.workers);
    assert_string_equal(a->train.model, b->train.model);
    assert_int_equal(a->train.epochs, b->train.epochs);
    assert_int_equal(a->train.batch_size, b->train.batch_size);
    assert_true(a->train.learning_rate == b->train.learning_rate);
    assert_string_equal(a->train.optimizer, b->train.optimizer);
    assert_true(a->train.momentum == b->train.momentum);
    assert_true(a->train.weight_decay == b->train.weight_decay);
    assert_true(a->train.label_smoothing == b->train.label_smoothing);
    assert_string_equal(a->train.lr_schedule, b->train.lr_schedule);
    assert_true(a->train.one_cycle_pct_start == b->train.one_cycle_pct_start);
    assert_int_equal(a->augment.random_resized_crop, b->augment.random_resized_crop);
    assert_true(a->augment.scale_min == b->augment.scale_min);
    assert_true(a->augment.scale_max == b->augment.scale_max);
    assert_int_equal(a->augment.horizontal_flip, b->augment.horizontal_flip);
}

static void test_defaults(void **state)
{
    kiln_config c;
    kiln_err err = {0};
    kiln_config_defaults(&c);
    assert_int_equal(c.data.image_size, 224);
    assert_true(c.data.val_fraction == 0.15);
    assert_true(c.data.test_fraction == 0.15);
    assert_true(c.data.seed == 42);
    assert_string_equal(c.data.normalization, "imagenet");
    assert_true(c.data.max_bad_fraction == 0.1);
    assert_true(c.data.max_uncompressed_mb == 65536);
    assert_true(c.data.max_compression_ratio == 200);
    assert_int_equal(c.data.workers, 2);
    assert_string_equal(c.train.model, "b0");
    assert_int_equal(c.train.epochs, 10);
    assert_int_equal(c.train.batch_size, 32);
    assert_true(c.train.learning_rate == 0.001);
    assert_string_equal(c.train.optimizer, "adamw");
    assert_true(c.train.momentum == 0.9);
    assert_true(c.train.weight_decay == 0.0001);
    assert_true(c.train.label_smoothing == 0.1);
    assert_string_equal(c.train.lr_schedule, "warmup_cosine");
    assert_true(c.train.one_cycle_pct_start == 0.3);
    assert_int_equal(c.augment.random_resized_crop, 1);
    assert_true(c.augment.scale_min == 0.08);
    assert_true(c.augment.scale_max == 1.0);
    assert_int_equal(c.augment.horizontal_flip, 1);
    assert_int_equal(kiln_config_validate(&c, &err), KILN_OK);
}

/* Every key set away from its default, in every scalar style. */
static const char full_yaml[] =
    "# every key\n"
    "data:\n"
    "  image_size: 128\n"
    "  val_fraction: 0.2\n"
    "  test_fraction: 0.1\n"
    "  seed: 18446744073709551615\n"
    "  normalization: dataset\n"
    "  max_bad_fraction: 0\n"
    "  max_uncompressed_mb: 1024\n"
    "  max_compression_ratio: 50.5\n"
    "  workers: 8\n"
    "train:\n"
    "  model: 'b3'\n"
    "  epochs: \"25\"\n"
    "  batch_size: +64\n"
    "  learning_rate: 3e-4\n"
    "  optimizer: sgd\n"
    "  momentum: .95\n"
    "  weight_decay: 0.05\n"
    "  label_smoothing: 0\n"
    "  lr_schedule: one_cycle\n"
    "  one_cycle_pct_start: 0.1\n"
    "augment: {random_resized_crop: Off, scale_min: 0.25, scale_max: 0.9, horizontal_flip: NO}\n";

static void check_full(const kiln_config *c)
{
    assert_int_equal(c->data.image_size, 128);
    assert_true(c->data.val_fraction == 0.2);
    assert_true(c->data.test_fraction == 0.1);
    assert_true(c->data.seed == UINT64_MAX);
    assert_string_equal(c->data.normalization, "dataset");
    assert_true(c->data.max_bad_fraction == 0);
    assert_true(c->data.max_uncompressed_mb == 1024);
    assert_true(c->data.max_compression_ratio == 50.5);
    assert_int_equal(c->data.workers, 8);
    assert_string_equal(c->train.model, "b3");
    assert_int_equal(c->train.epochs, 25);
    assert_int_equal(c->train.batch_size, 64);
    assert_true(c->train.learning_rate == 3e-4);
    assert_string_equal(c->train.optimizer, "sgd");
    assert_true(c->train.momentum == 0.95);
    assert_true(c->train.weight_decay == 0.05);
    assert_true(c->train.label_smoothing == 0);
    assert_string_equal(c->train.lr_schedule, "one_cycle");
    assert_true(c->train.one_cycle_pct_start == 0.1);
    assert_int_equal(c->augment.random_resized_crop, 0);
    assert_true(c->augment.scale_min == 0.25);
    assert_true(c->augment.scale_max == 0.9);
    assert_int_equal(c->augment.horizontal_flip, 0);
}

static void test_full_file(void **state)
{
    kiln_config c;
    kiln_err err = {0};
    char *dir = kt_mkdtemp();
    char *path = kt_path(dir, "full.yaml");
    assert_int_equal(load(full_yaml, &c, &err), KILN_OK);
    check_full(&c);
    assert_int_equal(kiln_config_validate(&c, &err), KILN_OK);
    /* The same through a file. */
    kt_write_file(path, full_yaml, strlen(full_yaml));
    kiln_config_defaults(&c);
    assert_int_equal(kiln_config_load_file(&c, path, &err), KILN_OK);
    check_full(&c);
    /* A file sets only what it names: the rest keeps its current value. */
    assert_int_equal(kiln_config_load_string(&c, "train:\n  epochs: 3\n", 19, "x", &err), KILN_OK);
    assert_int_equal(c.train.epochs, 3);
    assert_int_equal(c.data.image_size, 128);
    free(path);
    kt_rmtree_free(dir);
}

static void test_empty_documents(void **state)
{
    static const char *const empties[] = {
        "",        "\n\n",    "# only a comment\n   # and another\n", "---\n",
        "--- ~\n", "data:\n", "data: ~\ntrain:\naugment: {}\n",       "{}\n",
    };
    kiln_config c, d;
    kiln_err err = {0};
    kiln_config_defaults(&d);
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        if (load(empties[i], &c, &err) != KILN_OK)
            fail_msg("'%s': %s", empties[i], err.msg);
        assert_cfg_equal(&c, &d);
    }
    assert_int_equal(kiln_config_load_string(&c, NULL, 0, "none", &err), KILN_OK);
    assert_int_equal(kiln_config_load_string(&c, NULL, 1, "none", &err), KILN_EINVAL);
    assert_int_equal(kiln_config_load_string(NULL, "", 0, "none", &err), KILN_EINVAL);
}

static void test_unknown_names(void **state)
{
    expect_error("train:\n  epochs: 5\n\n  # the number of passes\n  batch_size: 4\n\n"
                 "  epoch: 7\n",
                 KILN_EINVAL,
                 "t.yaml: unknown key 'train.epoch' at line 7 (did you mean 'train.epochs'?)",
                 NULL);
    /* A key of another section is pointed there. */
    expect_error("train:\n  seed: 1\n", KILN_EINVAL,
                 "unknown key 'train.seed' at line 2 (did you mean 'data.seed'?)", NULL);
    /* Nothing close: the section's keys are listed. */
    expect_error("augment:\n  rotate: 15\n", KILN_EINVAL, "unknown key 'augment.rotate' at line 2",
                 "(augment keys: random_resized_crop scale_min scale_max horizontal_flip)", NULL);
    expect_error("data:\n  seed: 1\ntrian:\n  epochs: 3\n", KILN_EINVAL,
                 "unknown section 'trian' at line 3 (did you mean 'train'?)", NULL);
    expect_error("model:\n  name: b0\n", KILN_EINVAL,
                 "unknown section 'model' at line 1 (sections: data train augment)", NULL);
    /* A NUL inside a quoted name does not make it match "epochs". */
    expect_error("train:\n  \"epochs\\0x\": 5\n", KILN_EINVAL, "unknown key 'train.epochs'",
                 "at line 2", NULL);
}

static void test_bad_values(void **state)
{
    expect_error("train:\n  batch_size: 8\n  epochs: ten\n", KILN_EINVAL,
                 "t.yaml: train.epochs at line 3: expected an integer, got 'ten'", NULL);
    expect_error("train:\n  epochs: 10.5\n", KILN_EINVAL,
                 "train.epochs at line 2: expected an integer, got '10.5'", NULL);
    expect_error("train:\n  epochs: 1e3\n", KILN_EINVAL, "expected an integer, got '1e3'", NULL);
    expect_error("train:\n  epochs: 0x10\n", KILN_EINVAL, "expected an integer, got '0x10'", NULL);
    expect_error("train:\n  epochs: \" 5\"\n", KILN_EINVAL, "expected an integer, got ' 5'", NULL);
    expect_error("data:\n  seed: -1\n", KILN_EINVAL,
                 "data.seed at line 2: expected a non-negative integer, got '-1'", NULL);
    expect_error("train:\n  learning_rate: fast\n", KILN_EINVAL,
                 "train.learning_rate at line 2: expected a number, got 'fast'", NULL);
    expect_error("train:\n  learning_rate: nan\n", KILN_EINVAL, "expected a number, got 'nan'",
                 NULL);
    expect_error("train:\n  learning_rate: .inf\n", KILN_EINVAL, "expected a number", NULL);
    expect_error("train:\n  learning_rate: 0x1p-3\n", KILN_EINVAL, "expected a number", NULL);
    expect_error("train:\n  learning_rate: 1e999\n", KILN_EINVAL,
                 "train.learning_rate at line 2: '1e999' is out of range", NULL);
    expect_error("augment:\n  horizontal_flip: maybe\n", KILN_EINVAL,
                 "augment.horizontal_flip at line 2: expected true or false", "got 'maybe'", NULL);
    expect_error("augment:\n  horizontal_flip: 1\n", KILN_EINVAL, "expected true or false", NULL);
    expect_error("train:\n  model: b7\n", KILN_EINVAL,
                 "train.model at line 2: expected one of b0, b1, b2, b3, got 'b7'", NULL);
    expect_error("train:\n  optimizer: Adam\n", KILN_EINVAL, "expected one of sgd, adamw", NULL);
    expect_error("data:\n  normalization: none\n", KILN_EINVAL,
                 "expected one of imagenet, dataset, got 'none'", NULL);
    expect_error("train:\n  epochs: \"1\\02\"\n", KILN_EINVAL,
                 "train.epochs at line 2: the value holds a NUL character", NULL);
}

static void test_out_of_range(void **state)
{
    expect_error("data:\n  image_size: 8\n", KILN_EINVAL,
                 "data.image_size at line 2: 8 is out of range, must be between 16 and 1024", NULL);
    expect_error("data:\n  workers: 257\n", KILN_EINVAL,
                 "data.workers at line 2: 257 is out of range, must be between 1 and 256", NULL);
    expect_error("data:\n  val_fraction: 1\n", KILN_EINVAL,
                 "data.val_fraction at line 2: 1 is out of range, must be >= 0 and < 1", NULL);
    expect_error("data:\n  test_fraction: -0.1\n", KILN_EINVAL, "-0.1 is out of range", NULL);
    expect_error("train:\n  learning_rate: 0\n", KILN_EINVAL,
                 "0 is out of range, must be > 0 and <= 10", NULL);
    expect_error("train:\n  epochs: 99999999999999999999\n", KILN_EINVAL,
                 "train.epochs at line 2: '99999999999999999999' is out of range, "
                 "must be between 1 and 100000",
                 NULL);
    expect_error("train:\n  epochs: 4294967297\n", KILN_EINVAL, "4294967297 is out of range", NULL);
    expect_error("data:\n  seed: 18446744073709551616\n", KILN_EINVAL,
                 "must be between 0 and 18446744073709551615", NULL);
    expect_error("data:\n  max_uncompressed_mb: 0\n", KILN_EINVAL,
                 "data.max_uncompressed_mb at line 2: 0 is out of range", NULL);
    expect_error("augment:\n  scale_min: 0\n", KILN_EINVAL, "augment.scale_min at line 2", NULL);
}

static void test_wrong_shapes(void **state)
{
    expect_error("hello\n", KILN_EFORMAT,
                 "t.yaml: expected a mapping of sections at line 1, got a scalar", NULL);
    expect_error("- data\n- train\n", KILN_EFORMAT, "at line 1, got a sequence", NULL);
    expect_error("data: 5\n", KILN_EFORMAT,
                 "section 'data' at line 1: expected a mapping of keys, got a scalar", NULL);
    expect_error("data:\n  - image_size: 5\n", KILN_EFORMAT,
                 "section 'data' at line 1: expected a mapping of keys, got a sequence", NULL);
    expect_error("train:\n  epochs: [1, 2]\n", KILN_EFORMAT,
                 "train.epochs at line 2: expected a single value, got a sequence", NULL);
    expect_error("train:\n  batch_size: 2\n  epochs:\n    max: 3\n", KILN_EFORMAT,
                 "train.epochs at line 3: expected a single value, got a mapping", NULL);
    expect_error("data:\n  seed: &s 7\ntrain:\n  epochs: *s\n", KILN_EFORMAT,
                 "train.epochs at line 4: expected a single value, got an alias", NULL);
    expect_error("train:\n  ? [a, b]\n  : 1\n", KILN_EFORMAT,
                 "train at line 2: expected a key name, got a sequence", NULL);
    expect_error("? [data]\n: 1\n", KILN_EFORMAT, "expected a section name at line 1", NULL);
    expect_error("train:\n  epochs: 5\n---\ntrain:\n  epochs: 6\n", KILN_EFORMAT,
                 "only one YAML document is allowed, another starts at line 3", NULL);
}

static void test_null_and_duplicates(void **state)
{
    expect_error("train:\n  epochs:\n  batch_size: 4\n", KILN_EINVAL,
                 "t.yaml: train.epochs at line 2: no value given", NULL);
    expect_error("data:\n  seed: ~\n", KILN_EINVAL, "data.seed at line 2: no value given", NULL);
    expect_error("train:\n  model: null\n", KILN_EINVAL, "train.model at line 2: no value", NULL);
    /* Quoted, it is a string, and the wrong one. */
    expect_error("train:\n  model: \"\"\n", KILN_EINVAL, "expected one of b0, b1, b2, b3, got ''",
                 NULL);
    expect_error("train:\n  epochs: 5\n  batch_size: 4\n  epochs: 6\n", KILN_EINVAL,
                 "duplicate key 'train.epochs' at line 4 (first at line 2)", NULL);
    expect_error("train:\n  epochs: 5\ndata:\n  seed: 1\ntrain:\n  batch_size: 6\n", KILN_EINVAL,
                 "duplicate section 'train' at line 5 (first at line 1)", NULL);
}

static void test_malformed(void **state)
{
    expect_error("train:\n  epochs: 5\n  model: b0\n  batch_size: 4: 5\n", KILN_EFORMAT,
                 "t.yaml: malformed YAML at line 4, column 16: mapping values are not allowed",
                 NULL);
    expect_error("train:\n  epochs: 5\n bad: 1\n", KILN_EFORMAT, "malformed YAML at line 3", NULL);
    expect_error("train:\n\tepochs: 5\n", KILN_EFORMAT, "malformed YAML at line 2", NULL);
    expect_error("train: {epochs: 5\n", KILN_EFORMAT, "malformed YAML", NULL);
    expect_error("train:\n  epochs: \"5\n", KILN_EFORMAT, "malformed YAML", NULL);
    /* Not UTF-8, and a control character: libyaml's reader rejects both. */
    expect_error("train:\n  model: \xff\xfe\n", KILN_EFORMAT, "malformed YAML at byte", NULL);
    expect_error("train:\n  model: b\x01\n", KILN_EFORMAT, "malformed YAML at byte", NULL);
    /* A deep nest fails at the first unexpected event without recursion. */
    {
        char deep[20001];
        memset(deep, '[', sizeof deep - 1);
        deep[sizeof deep - 1] = '\0';
        expect_error(deep, KILN_EFORMAT, "line 1", NULL);
    }
}

/* A failed load leaves the caller's config as it was. */
static void test_load_is_all_or_nothing(void **state)
{
    kiln_config c, d;
    kiln_err err = {0};
    kiln_config_defaults(&c);
    kiln_config_defaults(&d);
    const char *yaml = "train:\n  epochs: 99\n  model: b2\n  batch_size: zero\n";
    assert_int_equal(kiln_config_load_string(&c, yaml, strlen(yaml), "x", &err), KILN_EINVAL);
    assert_cfg_equal(&c, &d);
    /* NULL err is allowed. */
    assert_int_equal(kiln_config_load_string(&c, yaml, strlen(yaml), "x", NULL), KILN_EINVAL);
    assert_int_equal(kiln_config_load_string(&c, "{", 1, NULL, &err), KILN_EFORMAT);
    assert_non_null(strstr(err.msg, "<config>: malformed YAML"));
    assert_cfg_equal(&c, &d);
}

static void test_set(void **state)
{
    kiln_config c;
    kiln_err err = {0};
    kiln_config_defaults(&c);
    assert_int_equal(kiln_config_set(&c, "train.epochs", "5", &err), KILN_OK);
    assert_int_equal(c.train.epochs, 5);
    assert_int_equal(kiln_config_set(&c, "data.seed", "18446744073709551615", &err), KILN_OK);
    assert_true(c.data.seed == UINT64_MAX);
    assert_int_equal(kiln_config_set(&c, "data.val_fraction", "0.3", &err), KILN_OK);
    assert_true(c.data.val_fraction == 0.3);
    assert_int_equal(kiln_config_set(&c, "data.max_uncompressed_mb", "16777216", &err), KILN_OK);
    assert_true(c.data.max_uncompressed_mb == 16777216);
    assert_int_equal(kiln_config_set(&c, "augment.horizontal_flip", "FALSE", &err), KILN_OK);
    assert_int_equal(c.augment.horizontal_flip, 0);
    assert_int_equal(kiln_config_set(&c, "augment.horizontal_flip", "on", &err), KILN_OK);
    assert_int_equal(c.augment.horizontal_flip, 1);
    assert_int_equal(kiln_config_set(&c, "data.normalization", "dataset", &err), KILN_OK);
    assert_string_equal(c.data.normalization, "dataset");
    assert_int_equal(kiln_config_set(&c, "train.model", "b1", &err), KILN_OK);
    assert_string_equal(c.train.model, "b1");
    assert_int_equal(kiln_config_validate(&c, &err), KILN_OK);

    expect_set_error("train.epochs", "ten", "train.epochs: expected an integer, got 'ten'");
    expect_set_error("train.epochs", "", "train.epochs: expected an integer, got ''");
    expect_set_error("train.epochs", "0", "train.epochs: 0 is out of range, must be between 1");
    expect_set_error("data.image_size", "2048", "data.image_size: 2048 is out of range");
    expect_set_error("train.model", "b9", "train.model: expected one of b0, b1, b2, b3");
    expect_set_error("train.learning_rate", "inf", "train.learning_rate: expected a number");
    expect_set_error("train.epoch", "5",
                     "unknown key 'train.epoch' (did you mean 'train.epochs'?)");
    expect_set_error("epochs", "5", "unknown key 'epochs' (did you mean 'train.epochs'?)");
    expect_set_error("data.image_sise", "5", "(did you mean 'data.image_size'?)");
    expect_set_error("", "5", "unknown key ''");
    expect_set_error("train.", "5", "unknown key 'train.' (train keys: model epochs");
    expect_set_error("train.epochs.x", "5", "unknown key 'train.epochs.x'");
    assert_int_equal(kiln_config_set(&c, "train.epochs", NULL, &err), KILN_EINVAL);
    assert_int_equal(kiln_config_set(&c, NULL, "5", &err), KILN_EINVAL);
    assert_int_equal(kiln_config_set(NULL, "train.epochs", "5", &err), KILN_EINVAL);
    assert_int_equal(kiln_config_set(&c, "train.epochs", "x", NULL), KILN_EINVAL);
    assert_int_equal(kiln_config_set(&c, "nope", "x", NULL), KILN_EINVAL);
}

static void expect_invalid(const kiln_config *c, const char *fragment)
{
    kiln_err err = {0};
    assert_int_equal(kiln_config_validate(c, &err), KILN_EINVAL);
    if (!strstr(err.msg, fragment))
        fail_msg("validate: message lacks \"%s\": %s", fragment, err.msg);
    assert_int_equal(kiln_config_validate(c, NULL), KILN_EINVAL);
}

static void test_validate(void **state)
{
    kiln_config c;
    kiln_err err = {0};
    kiln_config_defaults(&c);
    c.data.val_fraction = 0.5;
    c.data.test_fraction = 0.5;
    expect_invalid(&c, "data.val_fraction + data.test_fraction is 0.5 + 0.5, must be < 1");
    c.data.test_fraction = 0.49;
    assert_int_equal(kiln_config_validate(&c, &err), KILN_OK);
    c.data.val_fraction = 0;
    c.data.test_fraction = 0;
    assert_int_equal(kiln_config_validate(&c, &err), KILN_OK);
    c.data.val_fraction = -0.1;
    expect_invalid(&c, "data.val_fraction: -0.1 is out of range");

    kiln_config_defaults(&c);
    c.augment.scale_min = 0.9;
    c.augment.scale_max = 0.5;
    expect_invalid(&c, "augment.scale_min (0.9) must be <= augment.scale_max (0.5)");
    c.augment.scale_max = 0.9;
    assert_int_equal(kiln_config_validate(&c, &err), KILN_OK);
    c.augment.scale_min = 0;
    c.augment.scale_max = 0.5;
    expect_invalid(&c, "augment.scale_min: 0 is out of range, must be > 0 and <= 1");

    /* Values put in by code, not through set, get the same range checks. */
    kiln_config_defaults(&c);
    c.train.epochs = 0;
    expect_invalid(&c, "train.epochs: 0 is out of range, must be between 1 and 100000");
    kiln_config_defaults(&c);
    c.train.learning_rate = NAN;
    expect_invalid(&c, "train.learning_rate: nan is out of range");
    kiln_config_defaults(&c);
    c.augment.horizontal_flip = 5;
    expect_invalid(&c, "augment.horizontal_flip: 5 is out of range");
    kiln_config_defaults(&c);
    snprintf(c.train.optimizer, sizeof c.train.optimizer, "adam");
    expect_invalid(&c, "train.optimizer: expected one of sgd, adamw, got 'adam'");
    kiln_config_defaults(&c);
    memset(c.train.model, 'b', sizeof c.train.model);
    expect_invalid(&c, "train.model: value is not NUL-terminated");
    assert_int_equal(kiln_config_validate(NULL, &err), KILN_EINVAL);
}

static void test_files(void **state)
{
    kiln_config c;
    kiln_err err = {0};
    char *dir = kt_mkdtemp();
    char *missing = kt_path(dir, "missing.yaml");
    char *big = kt_path(dir, "big.yaml");
    char *bad = kt_path(dir, "bad.yaml");
    char *blob = malloc((1u << 20) + 2);
    kiln_config_defaults(&c);
    assert_int_not_equal(kiln_config_load_file(&c, missing, &err), KILN_OK);
    assert_non_null(strstr(err.msg, missing));
    /* Over the 1 MiB limit, even if it is all comment. */
    assert_non_null(blob);
    memset(blob, '#', (1u << 20) + 2);
    kt_write_file(big, blob, (1u << 20) + 1);
    assert_int_equal(kiln_config_load_file(&c, big, &err), KILN_ELIMIT);
    assert_non_null(strstr(err.msg, big));
    /* Errors in a file name the file's path. */
    kt_write_file(bad, "data:\n  workers: 0\n", 19);
    assert_int_equal(kiln_config_load_file(&c, bad, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, bad));
    assert_non_null(strstr(err.msg, ": data.workers at line 2: 0 is out of range"));
    assert_int_equal(kiln_config_load_file(&c, NULL, &err), KILN_EINVAL);
    assert_int_equal(kiln_config_load_file(&c, dir, &err) != KILN_OK, 1);
    free(blob);
    free(missing);
    free(big);
    free(bad);
    kt_rmtree_free(dir);
}

/* The documented example must load and say exactly the defaults. */
static void test_example_file(void **state)
{
    const char *src = getenv("KILN_SOURCE_DIR");
    kiln_config c, d;
    kiln_err err = {0};
    char *path;
    assert_non_null(src);
    path = kt_path(src, "examples/config.yaml");
    kiln_config_defaults(&d);
    memset(&c, 0, sizeof c);
    /* Over zeros, not defaults: the file must name every key. */
    c.data.seed = 7;
    if (kiln_config_load_file(&c, path, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    assert_cfg_equal(&c, &d);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_empty_documents),
        cmocka_unit_test(test_unknown_names),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_wrong_shapes),
        cmocka_unit_test(test_null_and_duplicates),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_load_is_all_or_nothing),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_example_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
