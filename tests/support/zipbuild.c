#include "support/zipbuild.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "support/testutil.h"

/* Header field offsets from the zip appnote (4.3.7 local, 4.3.12 central). */
#define LOCAL_SIG "PK\3\4"
#define LOCAL_SIZE 22
#define LOCAL_NAMELEN 26
#define LOCAL_EXTRALEN 28
#define LOCAL_NAME 30
#define CENTRAL_SIG "PK\1\2"
#define CENTRAL_SIZE 24
#define CENTRAL_NAMELEN 28
#define CENTRAL_NAME 46

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void add_one(zip_t *za, const kt_zip_entry *e)
{
    zip_int64_t idx;
    if (e->is_dir) {
        idx = zip_dir_add(za, e->name, ZIP_FL_ENC_UTF_8);
    } else {
        zip_source_t *src = zip_source_buffer(za, e->data, e->len, 0);
        if (!src)
            fail_msg("zip_source_buffer: %s", zip_strerror(za));
        idx = zip_file_add(za, e->name, src, ZIP_FL_ENC_UTF_8);
        if (idx < 0)
            zip_source_free(src);
    }
    if (idx < 0)
        fail_msg("adding '%s': %s", e->name, zip_strerror(za));
    zip_uint64_t i = (zip_uint64_t)idx;
    if (!e->is_dir &&
        zip_set_file_compression(za, i, e->store ? ZIP_CM_STORE : ZIP_CM_DEFLATE, 0) < 0)
        fail_msg("compression of '%s': %s", e->name, zip_strerror(za));
    if (e->unix_mode &&
        zip_file_set_external_attributes(za, i, 0, ZIP_OPSYS_UNIX, e->unix_mode << 16) < 0)
        fail_msg("attributes of '%s': %s", e->name, zip_strerror(za));
    if (e->password && zip_file_set_encryption(za, i, ZIP_EM_AES_256, e->password) < 0)
        fail_msg("encryption of '%s': %s", e->name, zip_strerror(za));
}

void kt_zip_build(const char *path, const kt_zip_entry *entries)
{
    int ze = 0;
    zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &ze);
    if (!za)
        fail_msg("zip_open %s: libzip error %d", path, ze);
    for (const kt_zip_entry *e = entries; e->name; e++)
        add_one(za, e);
    if (zip_close(za) < 0) {
        fail_msg("zip_close %s: %s", path, zip_strerror(za));
    }
}

void kt_zip_write_empty(const char *path)
{
    uint8_t eocd[22] = {'P', 'K', 5, 6};
    kt_write_file(path, eocd, sizeof eocd);
}

uint8_t *kt_read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Offset of the header with signature `sig` whose name is `name`. */
static size_t find_header(const uint8_t *zip, size_t len, const char *sig, size_t namelen_at,
                          size_t name_at, const char *name)
{
    size_t nlen = strlen(name);
    for (size_t o = 0; o + name_at + nlen <= len; o++)
        if (memcmp(zip + o, sig, 4) == 0 && get16(zip + o + namelen_at) == nlen &&
            memcmp(zip + o + name_at, name, nlen) == 0)
            return o;
    fail_msg("no header for '%s'", name);
    return 0;
}

size_t kt_zip_data_offset(const uint8_t *zip, size_t len, const char *name)
{
    size_t o = find_header(zip, len, LOCAL_SIG, LOCAL_NAMELEN, LOCAL_NAME, name);
    return o + LOCAL_NAME + get16(zip + o + LOCAL_NAMELEN) + get16(zip + o + LOCAL_EXTRALEN);
}

void kt_zip_patch_size(const char *path, const char *name, uint32_t size)
{
    size_t len;
    uint8_t *zip = kt_read_all(path, &len);
    size_t lo = find_header(zip, len, LOCAL_SIG, LOCAL_NAMELEN, LOCAL_NAME, name);
    size_t co = find_header(zip, len, CENTRAL_SIG, CENTRAL_NAMELEN, CENTRAL_NAME, name);
    put32(zip + lo + LOCAL_SIZE, size);
    put32(zip + co + CENTRAL_SIZE, size);
    kt_write_file(path, zip, len);
    free(zip);
}
