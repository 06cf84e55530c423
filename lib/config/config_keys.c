/* lib/config/config_keys.c — the one table of configuration keys: name,
 * type, place in kiln_config, range and default. kiln_config_defaults,
 * kiln_config_set, kiln_config_validate and the YAML loader all go through
 * it, so a new key is one new line in `keys` (and one in the header's
 * struct and examples/config.yaml). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config_internal.h"

typedef enum key_type { KT_INT, KT_INT64, KT_UINT64, KT_DOUBLE, KT_BOOL, KT_ENUM } key_type;

/* Open ends of a double's range: (0, 1] is LO_OPEN. */
enum { LO_OPEN = 1, HI_OPEN = 2 };

typedef struct key_spec {
    const char *name; /* dotted, and also the field's path */
    key_type type;
    size_t offset;      /* into kiln_config */
    size_t size;        /* of the field; the buffer for KT_ENUM */
    int64_t imin, imax; /* KT_INT, KT_INT64 (KT_UINT64 takes any value) */
    double dmin, dmax;  /* KT_DOUBLE, with `open` */
    int open;
    const char *const *choices; /* KT_ENUM, NULL-terminated */
    const char *def;            /* the default, as text, parsed like a value */
} key_spec;

/* clang-format off */
/* offsetof(kiln_config, f), and a compile error unless f has type T, so a
 * table line cannot store an int64 into an int. */
#define FIELD(f, T) (offsetof(kiln_config, f) + 0 * sizeof(_Generic(((kiln_config *)0)->f, T: 1)))
#define FSIZE(f) sizeof(((kiln_config *)0)->f)

/* The name is the field's path, so the two cannot drift apart. */
#define INT(f, lo, hi, d) \
    {.name = #f, .type = KT_INT, .offset = FIELD(f, int), .size = FSIZE(f), \
     .imin = (lo), .imax = (hi), .def = (d)}
#define INT64(f, lo, hi, d) \
    {.name = #f, .type = KT_INT64, .offset = FIELD(f, int64_t), .size = FSIZE(f), \
     .imin = (lo), .imax = (hi), .def = (d)}
#define UINT64(f, d) \
    {.name = #f, .type = KT_UINT64, .offset = FIELD(f, uint64_t), .size = FSIZE(f), .def = (d)}
#define DOUBLE(f, lo, hi, op, d) \
    {.name = #f, .type = KT_DOUBLE, .offset = FIELD(f, double), .size = FSIZE(f), \
     .dmin = (lo), .dmax = (hi), .open = (op), .def = (d)}
#define BOOL(f, d) \
    {.name = #f, .type = KT_BOOL, .offset = FIELD(f, int), .size = FSIZE(f), \
     .imin = 0, .imax = 1, .def = (d)}
#define ENUM(f, ch, d) \
    {.name = #f, .type = KT_ENUM, .offset = offsetof(kiln_config, f), .size = FSIZE(f), \
     .choices = (ch), .def = (d)}

static const char *const normalizations[] = {"imagenet", "dataset", NULL};
static const char *const models[] = {"b0", "b1", "b2", "b3", NULL};
static const char *const optimizers[] = {"sgd", "adamw", NULL};
static const char *const schedules[] = {"warmup_cosine", "one_cycle", NULL};
static const char *const precisions[] = {"fp32", "bf16", NULL};

/* Ranges: what the code downstream can honour. max_uncompressed_mb stays
 * far below 2^44 so that prepare's "MB << 20" cannot overflow a uint64. */
static const key_spec keys[] = {
    INT(data.image_size, 16, 1024, "224"),
    DOUBLE(data.val_fraction, 0, 1, HI_OPEN, "0.15"),
    DOUBLE(data.test_fraction, 0, 1, HI_OPEN, "0.15"),
    UINT64(data.seed, "42"),
    ENUM(data.normalization, normalizations, "imagenet"),
    DOUBLE(data.max_bad_fraction, 0, 1, 0, "0.1"),
    INT64(data.max_uncompressed_mb, 1, INT64_C(1) << 24, "65536"),
    DOUBLE(data.max_compression_ratio, 1, 1e6, 0, "200"),
    INT(data.workers, 1, 256, "2"),
    ENUM(train.model, models, "b0"),
    INT(train.epochs, 1, 100000, "10"),
    INT(train.batch_size, 1, 65536, "32"),
    DOUBLE(train.learning_rate, 0, 10, LO_OPEN, "0.001"),
    ENUM(train.optimizer, optimizers, "adamw"),
    DOUBLE(train.momentum, 0, 1, HI_OPEN, "0.9"),
    DOUBLE(train.weight_decay, 0, 1, 0, "0.0001"),
    DOUBLE(train.label_smoothing, 0, 1, HI_OPEN, "0.1"),
    ENUM(train.lr_schedule, schedules, "warmup_cosine"),
    DOUBLE(train.one_cycle_pct_start, 0, 1, HI_OPEN, "0.3"),
    ENUM(train.precision, precisions, "fp32"),
    BOOL(augment.random_resized_crop, "true"),
    DOUBLE(augment.scale_min, 0, 1, LO_OPEN, "0.08"),
    DOUBLE(augment.scale_max, 0, 1, LO_OPEN, "1.0"),
    BOOL(augment.horizontal_flip, "true"),
};

/* clang-format on */

#define N_KEYS ((int)(sizeof keys / sizeof keys[0]))
_Static_assert(sizeof keys / sizeof keys[0] <= CFG_MAX_KEYS, "raise CFG_MAX_KEYS");

/* A parsed value; which member is live follows the key's type (bools in i). */
typedef union key_value {
    int64_t i;
    uint64_t u;
    double d;
    const char *s; /* one of the key's choices: static storage */
} key_value;

int cfg_key_count(void)
{
    return N_KEYS;
}

const char *cfg_key_name(int index)
{
    return keys[index].name;
}

/* Length of the section part of a dotted name. */
static size_t section_len(const char *name)
{
    return strcspn(name, ".");
}

/* ---------------- parsing and checking values ---------------- */

/* The user's text, quoted and shortened for a message. */
static const char *quoted(const char *text, char *buf, size_t size)
{
    if (strlen(text) > 60)
        snprintf(buf, size, "'%.57s...'", text);
    else
        snprintf(buf, size, "'%s'", text);
    return buf;
}

static void describe_range(const key_spec *k, char *buf, size_t size)
{
    if (k->type == KT_DOUBLE)
        snprintf(buf, size, "%s %g and %s %g", k->open & LO_OPEN ? ">" : ">=", k->dmin,
                 k->open & HI_OPEN ? "<" : "<=", k->dmax);
    else if (k->type == KT_UINT64)
        snprintf(buf, size, "between 0 and %" PRIu64, UINT64_MAX);
    else
        snprintf(buf, size, "between %" PRId64 " and %" PRId64, k->imin, k->imax);
}

static int out_of_range(const key_spec *k, const char *shown, kiln_err *err)
{
    char range[96];
    describe_range(k, range, sizeof range);
    return kiln_err_set(err, KILN_EINVAL, "%s is out of range, must be %s", shown, range);
}

/* Digits with an optional sign, nothing else: strtoll alone would accept
 * leading blanks, and strtoull would quietly wrap "-1". Always base 10. */
static int is_decimal(const char *s, int allow_minus)
{
    if (*s == '+' || (allow_minus && *s == '-'))
        s++;
    if (!isdigit((unsigned char)*s))
        return 0;
    while (isdigit((unsigned char)*s))
        s++;
    return *s == '\0';
}

static int parse_int(const key_spec *k, const char *text, key_value *v, kiln_err *err)
{
    char q[72];
    int is_unsigned = k->type == KT_UINT64;
    if (!is_decimal(text, !is_unsigned))
        return kiln_err_set(err, KILN_EINVAL, "expected %s, got %s",
                            is_unsigned ? "a non-negative integer" : "an integer",
                            quoted(text, q, sizeof q));
    errno = 0;
    if (is_unsigned)
        v->u = strtoull(text, NULL, 10);
    else
        v->i = strtoll(text, NULL, 10);
    if (errno == ERANGE)
        return out_of_range(k, quoted(text, q, sizeof q), err);
    return KILN_OK;
}

/* strtod alone would take "nan", "inf", hex floats and leading blanks. */
static int parse_double(const key_spec *k, const char *text, key_value *v, kiln_err *err)
{
    char q[72];
    char *end = NULL;
    if (*text == '\0' || text[strspn(text, "0123456789+-.eE")] != '\0')
        goto bad;
    v->d = strtod(text, &end);
    if (*end != '\0')
        goto bad;
    if (!isfinite(v->d))
        return out_of_range(k, quoted(text, q, sizeof q), err);
    return KILN_OK;
bad:
    return kiln_err_set(err, KILN_EINVAL, "expected a number, got %s", quoted(text, q, sizeof q));
}

/* YAML 1.1's spellings, since that is what people write in YAML files. */
static int parse_bool(const char *text, key_value *v, kiln_err *err)
{
    static const char *const words[] = {"true", "false", "yes", "no", "on", "off"};
    char q[72];
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (strcasecmp(text, words[i]) == 0) {
            v->i = i % 2 == 0;
            return KILN_OK;
        }
    }
    return kiln_err_set(err, KILN_EINVAL, "expected true or false (or yes/no, on/off), got %s",
                        quoted(text, q, sizeof q));
}

static void list_choices(const key_spec *k, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; k->choices[i] && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? ", " : "", k->choices[i]);
}

static int parse_enum(const key_spec *k, const char *text, key_value *v, kiln_err *err)
{
    char q[72], list[128];
    for (int i = 0; k->choices[i]; i++) {
        if (strcmp(text, k->choices[i]) == 0) {
            v->s = k->choices[i];
            return KILN_OK;
        }
    }
    list_choices(k, list, sizeof list);
    return kiln_err_set(err, KILN_EINVAL, "expected one of %s, got %s", list,
                        quoted(text, q, sizeof q));
}

static int parse_value(const key_spec *k, const char *text, key_value *v, kiln_err *err)
{
    switch (k->type) {
    case KT_INT:
    case KT_INT64:
    case KT_UINT64:
        return parse_int(k, text, v, err);
    case KT_DOUBLE:
        return parse_double(k, text, v, err);
    case KT_BOOL:
        return parse_bool(text, v, err);
    case KT_ENUM:
        return parse_enum(k, text, v, err);
    }
    return kiln_err_set(err, KILN_EINVAL, "key of unknown type");
}

/* Range check of a parsed or stored value. Written as "inside" tests so
 * that a NaN put in by code fails them. */
static int check_value(const key_spec *k, const key_value *v, kiln_err *err)
{
    char shown[64];
    int inside = 1;
    if (k->type == KT_INT || k->type == KT_INT64 || k->type == KT_BOOL) {
        inside = v->i >= k->imin && v->i <= k->imax;
        snprintf(shown, sizeof shown, "%" PRId64, v->i);
    } else if (k->type == KT_DOUBLE) {
        inside = (k->open & LO_OPEN ? v->d > k->dmin : v->d >= k->dmin) &&
                 (k->open & HI_OPEN ? v->d < k->dmax : v->d <= k->dmax);
        snprintf(shown, sizeof shown, "%g", v->d);
    }
    return inside ? KILN_OK : out_of_range(k, shown, err);
}

/* ---------------- reading and writing the struct ---------------- */

static void store_value(const key_spec *k, const key_value *v, kiln_config *cfg)
{
    char *field = (char *)cfg + k->offset;
    int n = (int)v->i;
    switch (k->type) {
    case KT_INT:
    case KT_BOOL:
        memcpy(field, &n, sizeof n);
        break;
    case KT_INT64:
        memcpy(field, &v->i, sizeof v->i);
        break;
    case KT_UINT64:
        memcpy(field, &v->u, sizeof v->u);
        break;
    case KT_DOUBLE:
        memcpy(field, &v->d, sizeof v->d);
        break;
    case KT_ENUM:
        /* Zero-filled, so two configs with the same values compare equal. */
        memset(field, 0, k->size);
        snprintf(field, k->size, "%s", v->s);
        break;
    }
}

/* The stored value of `k`, for validation; EINVAL if an enum field holds
 * something other than one of its choices. */
static int load_value(const key_spec *k, const kiln_config *cfg, key_value *v, kiln_err *err)
{
    const char *field = (const char *)cfg + k->offset;
    int n;
    switch (k->type) {
    case KT_INT:
    case KT_BOOL:
        memcpy(&n, field, sizeof n);
        v->i = n;
        return KILN_OK;
    case KT_INT64:
        memcpy(&v->i, field, sizeof v->i);
        return KILN_OK;
    case KT_UINT64:
        memcpy(&v->u, field, sizeof v->u);
        return KILN_OK;
    case KT_DOUBLE:
        memcpy(&v->d, field, sizeof v->d);
        return KILN_OK;
    case KT_ENUM:
        if (!memchr(field, '\0', k->size))
            return kiln_err_set(err, KILN_EINVAL, "value is not NUL-terminated");
        return parse_enum(k, field, v, err);
    }
    return kiln_err_set(err, KILN_EINVAL, "key of unknown type");
}

int cfg_key_apply(int index, const char *text, kiln_config *cfg, kiln_err *err)
{
    const key_spec *k = &keys[index];
    key_value v;
    int rc = parse_value(k, text, &v, err);
    if (rc == KILN_OK)
        rc = check_value(k, &v, err);
    if (rc == KILN_OK)
        store_value(k, &v, cfg);
    return rc;
}

/* ---------------- finding keys ---------------- */

int cfg_key_find(const char *section, size_t slen, const char *key, size_t klen)
{
    for (int i = 0; i < N_KEYS; i++) {
        const char *name = keys[i].name;
        size_t s = section_len(name);
        if (s == slen && memcmp(name, section, slen) == 0 && strlen(name + s + 1) == klen &&
            memcmp(name + s + 1, key, klen) == 0)
            return i;
    }
    return -1;
}

int cfg_section_find(const char *section, size_t len)
{
    for (int i = 0; i < N_KEYS; i++)
        if (section_len(keys[i].name) == len && memcmp(keys[i].name, section, len) == 0)
            return i;
    return -1;
}

/* ---------------- the public calls that need only the table ---------------- */

void kiln_config_defaults(kiln_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    /* The defaults are constants the tests check; they cannot fail. */
    for (int i = 0; i < N_KEYS; i++)
        cfg_key_apply(i, keys[i].def, cfg, NULL);
}

int kiln_config_set(kiln_config *cfg, const char *key, const char *value, kiln_err *err)
{
    char hint[256];
    const char *dot = key ? strchr(key, '.') : NULL;
    int index = -1;
    if (!cfg || !key || !value)
        return kiln_err_set(err, KILN_EINVAL, "kiln_config_set: NULL argument");
    if (dot)
        index = cfg_key_find(key, (size_t)(dot - key), dot + 1, strlen(dot + 1));
    if (index < 0) {
        cfg_hint_key(key, hint, sizeof hint);
        return kiln_err_set(err, KILN_EINVAL, "unknown key '%s'%s", key, hint);
    }
    if (cfg_key_apply(index, value, cfg, err) != KILN_OK)
        return err ? kiln_err_wrap(err, "%s", keys[index].name) : KILN_EINVAL;
    return KILN_OK;
}

/* The cross-field rules; each key's own range is checked from the table. */
static int validate_pairs(const kiln_config *cfg, kiln_err *err)
{
    if (!(cfg->data.val_fraction + cfg->data.test_fraction < 1))
        return kiln_err_set(err, KILN_EINVAL,
                            "data.val_fraction + data.test_fraction is %g + %g, must be < 1 "
                            "(nothing would be left to train on)",
                            cfg->data.val_fraction, cfg->data.test_fraction);
    if (!(cfg->augment.scale_min <= cfg->augment.scale_max))
        return kiln_err_set(err, KILN_EINVAL,
                            "augment.scale_min (%g) must be <= augment.scale_max (%g)",
                            cfg->augment.scale_min, cfg->augment.scale_max);
    return KILN_OK;
}

int kiln_config_validate(const kiln_config *cfg, kiln_err *err)
{
    key_value v;
    if (!cfg)
        return kiln_err_set(err, KILN_EINVAL, "kiln_config_validate: NULL config");
    for (int i = 0; i < N_KEYS; i++) {
        if (load_value(&keys[i], cfg, &v, err) != KILN_OK ||
            check_value(&keys[i], &v, err) != KILN_OK)
            return err ? kiln_err_wrap(err, "%s", keys[i].name) : KILN_EINVAL;
    }
    return validate_pairs(cfg, err);
}
