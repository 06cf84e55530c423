/* tests/test_safetensors.c — lib/nn/safetensors: round trips of every dtype
 * with metadata, the writer's layout and refusals, every malformed-file case
 * (an error naming the file and the tensor, never a crash), truncated and
 * corrupted bytes, and files exchanged with PyTorch (/usr/bin/python3) in
 * both directions. */
#include <cjson/cJSON.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "nn/safetensors.h"
#include "nn/safetensors_internal.h"
#include "support/testutil.h"

#define PYTHON "/usr/bin/python3"

static void expect_ok(int rc, const kiln_err *err, const char *what)
{
    if (rc != KILN_OK)
        fail_msg("%s: %s: %s", what, kiln_code_name(rc), err->msg);
}

static kiln_st_file *open_ok(const char *path)
{
    kiln_err err = {0};
    kiln_st_file *f = kiln_st_open(path, &err);
    if (!f)
        fail_msg("open %s: %s", path, err.msg);
    return f;
}

/* A file of 8-byte length + `header` (unpadded) + `data`. */
static void write_raw(const char *path, const char *header, const void *data, size_t data_len)
{
    size_t n = strlen(header);
    unsigned char *buf = malloc(8 + n + data_len + 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, header, n);
    if (data_len)
        memcpy(buf + 8 + n, data, data_len);
    kt_write_file(path, buf, 8 + n + data_len);
    free(buf);
}

/* ---------------- round trip ---------------- */

typedef struct sample {
    float f32[6];
    uint16_t f16[5];
    uint16_t bf16[4];
    double f64[3];
    int64_t i64[5];
    int32_t i32[2];
    uint8_t u8[7];
    float scalar;
} sample;

static void fill_sample(sample *s)
{
    for (int i = 0; i < 6; i++)
        s->f32[i] = (float)i * 0.25f - 1.0f;
    /* 1, -2, 0.5, 2^-24 (the smallest subnormal), +inf */
    const uint16_t h[5] = {0x3C00, 0xC000, 0x3800, 0x0001, 0x7C00};
    memcpy(s->f16, h, sizeof h);
    const uint16_t b[4] = {0x3F80, 0xC040, 0x3E80, 0x0000}; /* 1, -3, 0.25, 0 */
    memcpy(s->bf16, b, sizeof b);
    s->f64[0] = 1e-3, s->f64[1] = -7.5, s->f64[2] = 3.0;
    for (int i = 0; i < 5; i++)
        s->i64[i] = (int64_t)i * 1000000007LL - 2;
    s->i32[0] = -5, s->i32[1] = 1 << 20;
    for (int i = 0; i < 7; i++)
        s->u8[i] = (uint8_t)(249 + i);
    s->scalar = 42.5f;
}

static void write_sample(const char *path, const sample *s)
{
    kiln_err err = {0};
    kiln_st_writer *w = kiln_st_writer_create(&err);
    assert_non_null(w);
    const int64_t s23[] = {2, 3}, s5[] = {5}, s22[] = {2, 2}, s3[] = {3}, s2[] = {2},
                  s7[] = {7}, s03[] = {0, 3};
    expect_ok(kiln_st_writer_add(w, "layer.weight", KILN_ST_F32, 2, s23, s->f32, &err), &err,
              "f32");
    expect_ok(kiln_st_writer_add(w, "half", KILN_ST_F16, 1, s5, s->f16, &err), &err, "f16");
    expect_ok(kiln_st_writer_add(w, "brain", KILN_ST_BF16, 2, s22, s->bf16, &err), &err, "bf16");
    expect_ok(kiln_st_writer_add(w, "double", KILN_ST_F64, 1, s3, s->f64, &err), &err, "f64");
    expect_ok(kiln_st_writer_add(w, "bn.num_batches_tracked", KILN_ST_I64, 1, s5, s->i64, &err),
              &err, "i64");
    expect_ok(kiln_st_writer_add(w, "labels", KILN_ST_I32, 1, s2, s->i32, &err), &err, "i32");
    expect_ok(kiln_st_writer_add(w, "bytes", KILN_ST_U8, 1, s7, s->u8, &err), &err, "u8");
    expect_ok(kiln_st_writer_add(w, "scalar", KILN_ST_F32, 0, NULL, &s->scalar, &err), &err,
              "scalar");
    expect_ok(kiln_st_writer_add(w, "empty", KILN_ST_F32, 2, s03, NULL, &err), &err, "empty");
    expect_ok(kiln_st_writer_metadata(w, "format", "pt", &err), &err, "meta");
    expect_ok(kiln_st_writer_metadata(w, "note", "quotes \" and\nnewlines", &err), &err, "meta");
    expect_ok(kiln_st_write(w, path, &err), &err, "write");
    kiln_st_writer_destroy(w);
}

static void check_tensor(const kiln_st_file *f, size_t i, const char *name, kiln_st_dtype dtype,
                         int ndim, const int64_t *shape, const void *data, size_t bytes)
{
    const kiln_st_tensor *t = kiln_st_at(f, i);
    assert_non_null(t);
    assert_string_equal(t->name, name);
    assert_int_equal(t->dtype, dtype);
    assert_int_equal(t->ndim, ndim);
    for (int d = 0; d < ndim; d++)
        assert_int_equal(t->shape[d], shape[d]);
    assert_int_equal(t->bytes, bytes);
    if (bytes)
        assert_memory_equal(t->data, data, bytes);
    assert_ptr_equal(kiln_st_find(f, name), t);
}

static void test_round_trip(void **state)
{
    char *path = kt_path(*state, "rt.safetensors");
    sample s;
    fill_sample(&s);
    write_sample(path, &s);

    kiln_st_file *f = open_ok(path);
    assert_int_equal(kiln_st_count(f), 9);
    const int64_t s23[] = {2, 3}, s5[] = {5}, s22[] = {2, 2}, s3[] = {3}, s2[] = {2},
                  s7[] = {7}, s03[] = {0, 3};
    /* In the order added (which is also data order). */
    check_tensor(f, 0, "layer.weight", KILN_ST_F32, 2, s23, s.f32, sizeof s.f32);
    check_tensor(f, 1, "half", KILN_ST_F16, 1, s5, s.f16, sizeof s.f16);
    check_tensor(f, 2, "brain", KILN_ST_BF16, 2, s22, s.bf16, sizeof s.bf16);
    check_tensor(f, 3, "double", KILN_ST_F64, 1, s3, s.f64, sizeof s.f64);
    check_tensor(f, 4, "bn.num_batches_tracked", KILN_ST_I64, 1, s5, s.i64, sizeof s.i64);
    check_tensor(f, 5, "labels", KILN_ST_I32, 1, s2, s.i32, sizeof s.i32);
    check_tensor(f, 6, "bytes", KILN_ST_U8, 1, s7, s.u8, sizeof s.u8);
    check_tensor(f, 7, "scalar", KILN_ST_F32, 0, NULL, &s.scalar, 4);
    check_tensor(f, 8, "empty", KILN_ST_F32, 2, s03, NULL, 0);
    assert_null(kiln_st_at(f, 9));
    assert_null(kiln_st_find(f, "missing"));
    assert_null(kiln_st_find(f, "layer"));
    assert_string_equal(kiln_st_metadata(f, "format"), "pt");
    assert_string_equal(kiln_st_metadata(f, "note"), "quotes \" and\nnewlines");
    assert_null(kiln_st_metadata(f, "absent"));
    kiln_st_close(f);
    free(path);
}

static void test_to_f32(void **state)
{
    char *path = kt_path(*state, "conv.safetensors");
    sample s;
    fill_sample(&s);
    write_sample(path, &s);
    kiln_st_file *f = open_ok(path);
    kiln_err err = {0};
    float out[8];

    expect_ok(kiln_st_to_f32(kiln_st_find(f, "layer.weight"), out, 6, &err), &err, "f32");
    assert_memory_equal(out, s.f32, sizeof s.f32);
    expect_ok(kiln_st_to_f32(kiln_st_find(f, "half"), out, 5, &err), &err, "f16");
    assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == 0.5f);
    assert_true(out[3] == ldexpf(1.0f, -24));
    assert_true(isinf(out[4]) && out[4] > 0);
    expect_ok(kiln_st_to_f32(kiln_st_find(f, "brain"), out, 4, &err), &err, "bf16");
    assert_true(out[0] == 1.0f && out[1] == -3.0f && out[2] == 0.25f && out[3] == 0.0f);
    expect_ok(kiln_st_to_f32(kiln_st_find(f, "double"), out, 3, &err), &err, "f64");
    assert_true(out[0] == 1e-3f && out[1] == -7.5f && out[2] == 3.0f);
    expect_ok(kiln_st_to_f32(kiln_st_find(f, "bn.num_batches_tracked"), out, 5, &err), &err,
              "i64");
    for (int i = 0; i < 5; i++)
        assert_true(out[i] == (float)s.i64[i]);
    expect_ok(kiln_st_to_f32(kiln_st_find(f, "labels"), out, 2, &err), &err, "i32");
    assert_true(out[0] == -5.0f && out[1] == 1048576.0f);
    expect_ok(kiln_st_to_f32(kiln_st_find(f, "scalar"), out, 1, &err), &err, "scalar");
    assert_true(out[0] == 42.5f);
    expect_ok(kiln_st_to_f32(kiln_st_find(f, "empty"), out, 0, &err), &err, "empty");

    /* Wrong element count: EINVAL naming the tensor. */
    assert_int_equal(kiln_st_to_f32(kiln_st_find(f, "layer.weight"), out, 5, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "layer.weight"));
    assert_non_null(strstr(err.msg, "6 elements"));
    assert_int_equal(kiln_st_to_f32(kiln_st_find(f, "bytes"), out, 7, &err), KILN_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "bytes"));
    kiln_st_close(f);
    free(path);
}

/* The layout on disk: header length a multiple of 8, padded with spaces,
 * metadata first, data right after the header. */
static void test_layout_on_disk(void **state)
{
    char *path = kt_path(*state, "layout.safetensors");
    sample s;
    fill_sample(&s);
    write_sample(path, &s);
    char *bytes = NULL;
    size_t len = 0;
    kiln_err err = {0};
    expect_ok(kiln_read_file(path, 0, &bytes, &len, &err), &err, "read");
    uint64_t n = 0;
    for (int i = 0; i < 8; i++)
        n |= (uint64_t)(unsigned char)bytes[i] << (8 * i);
    assert_int_equal(n % 8, 0);
    assert_true(8 + n < len);
    assert_int_equal(bytes[8], '{');
    size_t close = 8 + n - 1;
    while (bytes[close] == ' ')
        close--;
    assert_int_equal(bytes[close], '}');
    assert_true(8 + n - 1 - close < 8); /* at most 7 padding spaces */
    assert_int_equal(strncmp(bytes + 8, "{\"__metadata__\":", 16), 0);
    assert_memory_equal(bytes + 8 + n, s.f32, sizeof s.f32); /* first tensor's data */
    free(bytes);

    /* Rewriting replaces the file whole and leaves no temporary file. */
    write_sample(path, &s);
    char *pattern = kt_path(*state, "*.tmp.*");
    glob_t g;
    assert_int_equal(glob(pattern, 0, NULL, &g), GLOB_NOMATCH);
    free(pattern);
    free(path);
}

static void test_empty_file_ok(void **state)
{
    char *path = kt_path(*state, "none.safetensors");
    kiln_err err = {0};
    kiln_st_writer *w = kiln_st_writer_create(&err);
    expect_ok(kiln_st_write(w, path, &err), &err, "write");
    kiln_st_writer_destroy(w);
    kiln_st_file *f = open_ok(path);
    assert_int_equal(kiln_st_count(f), 0);
    assert_null(kiln_st_find(f, "x"));
    assert_null(kiln_st_metadata(f, "x"));
    kiln_st_close(f);
    free(path);
}

static void test_writer_refusals(void **state)
{
    kiln_err err = {0};
    kiln_st_writer *w = kiln_st_writer_create(&err);
    float v[4] = {0};
    const int64_t s4[] = {4}, neg[] = {-1}, nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    expect_ok(kiln_st_writer_add(w, "a", KILN_ST_F32, 1, s4, v, &err), &err, "add");
    assert_int_equal(kiln_st_writer_add(w, "a", KILN_ST_F32, 1, s4, v, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "'a' added twice"));
    assert_int_equal(kiln_st_writer_add(w, "__metadata__", KILN_ST_F32, 1, s4, v, &err),
                     KILN_EINVAL);
    assert_int_equal(kiln_st_writer_add(w, "", KILN_ST_F32, 1, s4, v, &err), KILN_EINVAL);
    assert_int_equal(kiln_st_writer_add(w, "b", KILN_ST_F32, 1, neg, v, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "'b'"));
    assert_int_equal(kiln_st_writer_add(w, "c", KILN_ST_F32, 9, nine, v, &err), KILN_EINVAL);
    assert_int_equal(kiln_st_writer_add(w, "d", (kiln_st_dtype)99, 1, s4, v, &err), KILN_EINVAL);
    assert_int_equal(kiln_st_writer_add(w, "e", KILN_ST_F32, 1, s4, NULL, &err), KILN_EINVAL);
    expect_ok(kiln_st_writer_metadata(w, "k", "v", &err), &err, "meta");
    assert_int_equal(kiln_st_writer_metadata(w, "k", "w", &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "'k'"));

    /* A directory that does not exist: an error and no file. */
    char *path = kt_path(*state, "no/such/dir/x.safetensors");
    assert_int_not_equal(kiln_st_write(w, path, &err), KILN_OK);
    assert_non_null(strstr(err.msg, "x.safetensors"));
    assert_false(kiln_is_file(path));
    free(path);
    kiln_st_writer_destroy(w);
}

/* ---------------- malformed files ---------------- */

typedef struct bad_case {
    const char *what;
    const char *header; /* NULL: `raw` bytes are the whole file */
    size_t data_len;    /* zero bytes of data after the header */
    kiln_code code;
    const char *needle; /* in the message besides the file name */
} bad_case;

static const bad_case bad_cases[] = {
    {"not json", "{\"a\": {\"dtype\": \"F32\"", 0, KILN_EFORMAT, "not valid JSON"},
    {"array header", "[1, 2]", 0, KILN_EFORMAT, "does not start with a JSON object"},
    {"garbage after json", "{}  x", 0, KILN_EFORMAT, "after the header"},
    {"entry not object", "{\"w\": 3}", 0, KILN_EFORMAT, "'w' is not an object"},
    {"no dtype", "{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, KILN_EFORMAT,
     "'w' has no \"dtype\""},
    {"unknown dtype", "{\"w\": {\"dtype\": \"I8\", \"shape\": [4], \"data_offsets\": [0, 4]}}", 4,
     KILN_EUNSUPPORTED, "'w' has dtype 'I8'"},
    {"bogus dtype", "{\"w\": {\"dtype\": \"Q7\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
     KILN_EUNSUPPORTED, "'Q7'"},
    {"no shape", "{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, KILN_EFORMAT,
     "'w' has no \"shape\""},
    {"negative dim", "{\"w\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}",
     4, KILN_EFORMAT, "'w': dimension 0"},
    {"fractional dim",
     "{\"w\": {\"dtype\": \"F32\", \"shape\": [1, 1.5], \"data_offsets\": [0, 4]}}", 4,
     KILN_EFORMAT, "'w': dimension 1"},
    {"string dim", "{\"w\": {\"dtype\": \"F32\", \"shape\": [\"1\"], \"data_offsets\": [0, 4]}}",
     4, KILN_EFORMAT, "'w': dimension 0"},
    {"too many dims",
     "{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}", 4,
     KILN_EUNSUPPORTED, "'w' has 9 dimensions"},
    {"shape overflow",
     "{\"w\": {\"dtype\": \"F64\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 8]}}",
     8, KILN_EFORMAT, "'w': its shape's size overflows"},
    {"shape vs range",
     "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 20]}}", 20,
     KILN_EFORMAT, "'w': its shape and dtype F32 make 24 bytes"},
    {"no offsets", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, KILN_EFORMAT,
     "'w' needs \"data_offsets\""},
    {"three offsets", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}",
     8, KILN_EFORMAT, "'w' needs \"data_offsets\""},
    {"reversed offsets", "{\"w\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [4, 0]}}",
     4, KILN_EFORMAT, "'w' has data_offsets [4, 0] that end before"},
    {"range past data", "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}",
     12, KILN_EFORMAT, "'w' has data_offsets [0, 16] past the end"},
    {"overlap",
     "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
     " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
     12, KILN_EFORMAT, "'b' starts at data offset 4, expected 8 (it overlaps"},
    {"gap",
     "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
     " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}",
     12, KILN_EFORMAT, "'b' starts at data offset 8, expected 4 (a gap"},
    {"trailing bytes", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
     9, KILN_EFORMAT, "5 bytes after the last tensor"},
    {"duplicate name",
     "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
     " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
     8, KILN_EFORMAT, "'a' appears twice"},
    {"metadata not object", "{\"__metadata__\": [1]}", 0, KILN_EFORMAT,
     "\"__metadata__\" is not an object"},
    {"metadata number", "{\"__metadata__\": {\"epoch\": 3}}", 0, KILN_EFORMAT,
     "value 'epoch' is not a string"},
    {"metadata twice", "{\"__metadata__\": {}, \"__metadata__\": {}}", 0, KILN_EFORMAT,
     "appears twice"},
};

static void expect_bad(const char *path, kiln_code code, const char *needle)
{
    if (getenv("KT_VERBOSE"))
        print_message("%s\n", needle);
    kiln_err err = {0};
    kiln_st_file *f = kiln_st_open(path, &err);
    if (f) {
        kiln_st_close(f);
        fail_msg("%s: opened a malformed file", needle);
    }
    if (err.code != code || !strstr(err.msg, needle) || !strstr(err.msg, path))
        fail_msg("want %s with '%s' and the path, got %s: %s", kiln_code_name(code), needle,
                 kiln_code_name(err.code), err.msg);
    if (getenv("KT_VERBOSE"))
        print_message("  -> %s\n", err.msg);
}

static void test_malformed_headers(void **state)
{
    char *path = kt_path(*state, "bad.safetensors");
    unsigned char zeros[32] = {0};
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        assert_true(c->data_len <= sizeof zeros);
        write_raw(path, c->header, zeros, c->data_len);
        expect_bad(path, c->code, c->needle);
    }
    free(path);
}

static void test_malformed_lengths(void **state)
{
    char *path = kt_path(*state, "short.safetensors");
    unsigned char buf[16] = {0};
    /* Empty, and shorter than the length field. */
    kt_write_file(path, buf, 0);
    expect_bad(path, KILN_EFORMAT, "too short");
    kt_write_file(path, buf, 5);
    expect_bad(path, KILN_EFORMAT, "too short");
    /* A header length beyond the file. */
    buf[0] = 100;
    memcpy(buf + 8, "{}      ", 8);
    kt_write_file(path, buf, 16);
    expect_bad(path, KILN_EFORMAT, "header length 100 is larger than the 8 bytes");
    /* An absurd header length is refused before any parsing. */
    memset(buf, 0xff, 8);
    kt_write_file(path, buf, 16);
    expect_bad(path, KILN_ELIMIT, "over the limit");
    /* Zero-length header. */
    memset(buf, 0, 8);
    kt_write_file(path, buf, 16);
    expect_bad(path, KILN_EFORMAT, "does not start with a JSON object");
    /* Not a file at all. */
    kiln_err err = {0};
    char *missing = kt_path(*state, "missing.safetensors");
    assert_null(kiln_st_open(missing, &err));
    assert_non_null(strstr(err.msg, "missing.safetensors"));
    free(missing);
    free(path);
}

/* Every truncation of a valid file fails cleanly; single-byte corruptions
 * either parse to a consistent file or fail — never crash (ASan watches). */
static void test_truncated_and_corrupted(void **state)
{
    char *path = kt_path(*state, "whole.safetensors");
    sample s;
    fill_sample(&s);
    write_sample(path, &s);
    char *bytes = NULL;
    size_t len = 0;
    kiln_err err = {0};
    expect_ok(kiln_read_file(path, 0, &bytes, &len, &err), &err, "read");
    for (size_t cut = 0; cut < len; cut++) {
        kiln_st_file *f = kiln_st_parse("cut", bytes, cut, &err);
        if (f)
            fail_msg("a file cut to %zu of %zu bytes parsed", cut, len);
        assert_int_not_equal(err.code, KILN_OK);
        assert_non_null(strstr(err.msg, "cut"));
    }
    const unsigned char flips[] = {0x01, 0x80, 0xff};
    for (size_t i = 0; i < len; i++)
        for (size_t k = 0; k < sizeof flips; k++) {
            bytes[i] = (char)(bytes[i] ^ flips[k]);
            kiln_st_file *f = kiln_st_parse("flip", bytes, len, &err);
            for (size_t t = 0; f && t < kiln_st_count(f); t++) {
                const kiln_st_tensor *tt = kiln_st_at(f, t);
                assert_ptr_equal(kiln_st_find(f, tt->name), tt);
                assert_true(tt->bytes <= len);
            }
            kiln_st_close(f);
            bytes[i] = (char)(bytes[i] ^ flips[k]);
        }
    free(bytes);
    free(path);
}

/* ---------------- with PyTorch ---------------- */

/* Writes a file by hand as the reference implementation lays it out
 * (tensors sorted by dtype size then name, header padded with spaces), and
 * the expected values as JSON. */
static const char py_write[] =
    "import json, struct, sys, torch\n"
    "torch.manual_seed(0)\n"
    "t = {'conv.weight': torch.randn(3, 2, 2, 2),\n"
    "     'bn.num_batches_tracked': torch.tensor(7, dtype=torch.int64),\n"
    "     'ids': torch.arange(-3, 3, dtype=torch.int64),\n"
    "     'half': (torch.randn(5) * 100).half(),\n"
    "     'brain': torch.randn(2, 3).bfloat16(),\n"
    "     'dbl': torch.randn(4, dtype=torch.float64),\n"
    "     'i32': torch.tensor([-(2**31), 2**31 - 1], dtype=torch.int32)}\n"
    "code = {torch.float32: 'F32', torch.float16: 'F16', torch.bfloat16: 'BF16',\n"
    "        torch.float64: 'F64', torch.int64: 'I64', torch.int32: 'I32'}\n"
    "def raw(x):\n"
    "    x = x.contiguous()\n"
    "    if x.dtype == torch.bfloat16: x = x.view(torch.int16)\n"
    "    return x.numpy().tobytes()\n"
    "order = sorted(t, key=lambda k: (-t[k].element_size(), k))\n"
    "header, data = {'__metadata__': {'format': 'pt'}}, b''\n"
    "for k in order:\n"
    "    b = raw(t[k])\n"
    "    header[k] = {'dtype': code[t[k].dtype], 'shape': list(t[k].shape),\n"
    "                 'data_offsets': [len(data), len(data) + len(b)]}\n"
    "    data += b\n"
    "h = json.dumps(header, separators=(',', ':')).encode()\n"
    "h += b' ' * ((8 - len(h) % 8) % 8)\n"
    "open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h + data)\n"
    "json.dump({k: {'values': v.double().flatten().tolist(), 'shape': list(v.shape)}\n"
    "           for k, v in t.items()}, open(sys.argv[2], 'w'))\n";

static int python_has_torch(void)
{
    if (kt_system(PYTHON " -c 'import torch' >/dev/null 2>&1") != 0) {
        print_message("SKIPPED: " PYTHON " cannot import torch (apt-get install python3-torch)\n");
        return 0;
    }
    return 1;
}

static cJSON *read_json(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    kiln_err err = {0};
    expect_ok(kiln_read_file(path, 0, &text, &len, &err), &err, "read json");
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    return j;
}

static void test_reads_file_from_python(void **state)
{
    if (!python_has_torch())
        skip();
    char *script = kt_path(*state, "write.py");
    char *st = kt_path(*state, "py.safetensors");
    char *expect = kt_path(*state, "expect.json");
    kt_write_file(script, py_write, strlen(py_write));
    char *out = NULL;
    if (kt_run_capture(&out, PYTHON " %s %s %s", script, st, expect) != 0)
        fail_msg("python: %s", out);
    free(out);

    kiln_st_file *f = open_ok(st);
    cJSON *want = read_json(expect);
    assert_int_equal(kiln_st_count(f), (size_t)cJSON_GetArraySize(want));
    assert_string_equal(kiln_st_metadata(f, "format"), "pt");
    /* Data order is the writer's (sizes descending, then names). */
    assert_string_equal(kiln_st_at(f, 0)->name, "bn.num_batches_tracked");
    for (const cJSON *e = want->child; e; e = e->next) {
        const kiln_st_tensor *t = kiln_st_find(f, e->string);
        if (!t)
            fail_msg("tensor %s missing", e->string);
        const cJSON *shape = cJSON_GetObjectItem(e, "shape");
        const cJSON *values = cJSON_GetObjectItem(e, "values");
        assert_int_equal(t->ndim, cJSON_GetArraySize(shape));
        for (int d = 0; d < t->ndim; d++)
            assert_int_equal(t->shape[d], (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble);
        size_t n = (size_t)cJSON_GetArraySize(values);
        float *got = calloc(n ? n : 1, sizeof *got);
        kiln_err err = {0};
        expect_ok(kiln_st_to_f32(t, got, n, &err), &err, e->string);
        size_t i = 0;
        for (const cJSON *v = values->child; v; v = v->next, i++)
            if (got[i] != (float)v->valuedouble)
                fail_msg("%s[%zu]: %.9g, torch has %.9g", e->string, i, got[i], v->valuedouble);
        free(got);
    }
    if (kiln_st_find(f, "bn.num_batches_tracked")->dtype != KILN_ST_I64)
        fail_msg("num_batches_tracked should be I64");
    cJSON_Delete(want);
    kiln_st_close(f);
    free(script);
    free(st);
    free(expect);
}

/* Reads a kiln-written file by hand and prints its tensors as JSON. */
static const char py_read[] =
    "import json, math, struct, sys, torch\n"
    "b = open(sys.argv[1], 'rb').read()\n"
    "(n,) = struct.unpack('<Q', b[:8])\n"
    "assert n % 8 == 0\n"
    "h = json.loads(b[8:8 + n])\n"
    "dt = {'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16,\n"
    "      'F64': torch.float64, 'I64': torch.int64, 'I32': torch.int32, 'U8': torch.uint8}\n"
    "out = {'__metadata__': h.pop('__metadata__')}\n"
    "for k, v in h.items():\n"
    "    s, e = v['data_offsets']\n"
    "    raw = bytearray(b[8 + n + s:8 + n + e])\n"
    "    x = torch.frombuffer(raw, dtype=dt[v['dtype']]) if raw else torch.zeros(0)\n"
    "    x = x.reshape(v['shape'])\n"
    "    out[k] = [v if math.isfinite(v) else str(v) for v in x.double().flatten().tolist()]\n"
    "json.dump(out, open(sys.argv[2], 'w'))\n";

static void test_python_reads_kiln_file(void **state)
{
    if (!python_has_torch())
        skip();
    char *script = kt_path(*state, "read.py");
    char *st = kt_path(*state, "kiln.safetensors");
    char *got_path = kt_path(*state, "got.json");
    sample s;
    fill_sample(&s);
    write_sample(st, &s);
    kt_write_file(script, py_read, strlen(py_read));
    char *out = NULL;
    if (kt_run_capture(&out, PYTHON " %s %s %s", script, st, got_path) != 0)
        fail_msg("python: %s", out);
    free(out);
    cJSON *got = read_json(got_path);
    const cJSON *meta = cJSON_GetObjectItem(got, "__metadata__");
    assert_string_equal(cJSON_GetObjectItem(meta, "format")->valuestring, "pt");
    assert_string_equal(cJSON_GetObjectItem(meta, "note")->valuestring, "quotes \" and\nnewlines");
    const cJSON *w = cJSON_GetObjectItem(got, "layer.weight");
    assert_int_equal(cJSON_GetArraySize(w), 6);
    for (int i = 0; i < 6; i++)
        assert_true((float)cJSON_GetArrayItem(w, i)->valuedouble == s.f32[i]);
    const cJSON *h = cJSON_GetObjectItem(got, "half");
    assert_true(cJSON_GetArrayItem(h, 1)->valuedouble == -2.0);
    const cJSON *i64 = cJSON_GetObjectItem(got, "bn.num_batches_tracked");
    assert_true(cJSON_GetArrayItem(i64, 4)->valuedouble == (double)s.i64[4]);
    const cJSON *u8 = cJSON_GetObjectItem(got, "bytes");
    assert_true(cJSON_GetArrayItem(u8, 6)->valuedouble == 255.0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(got, "empty")), 0);
    assert_true(cJSON_GetArrayItem(cJSON_GetObjectItem(got, "scalar"), 0)->valuedouble == 42.5);
    cJSON_Delete(got);
    free(script);
    free(st);
    free(got_path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_to_f32, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_layout_on_disk, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_empty_file_ok, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_writer_refusals, kt_setup_tmpdir,
                                        kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_malformed_headers, kt_setup_tmpdir,
                                        kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_malformed_lengths, kt_setup_tmpdir,
                                        kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_truncated_and_corrupted, kt_setup_tmpdir,
                                        kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_reads_file_from_python, kt_setup_tmpdir,
                                        kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_python_reads_kiln_file, kt_setup_tmpdir,
                                        kt_teardown_tmpdir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
