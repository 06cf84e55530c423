/* Reading user-uploaded zips safely with libzip. Contract in zip.h.
 *
 * Everything is checked in kiln_zip_open, before the caller sees a single
 * entry, so a hostile zip fails as a whole and early. The archive is opened
 * read-only and closed with zip_discard: the reader never writes anything.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libdeflate.h>
#include <zip.h> /* libzip; angle brackets so this never finds data/zip.h */

#include "data/zip.h"

/* Inflate in slices so a lying entry is stopped soon after it lies. */
#define READ_CHUNK ((uint64_t)1 << 20)
/* Entry names are attacker-chosen: shown escaped and cut to this length. */
#define SHOW_MAX 160

struct kiln_zip {
    zip_t *za;
    char label[SHOW_MAX + 32];  /* "zip 'path'" for messages */
    kiln_zip_entry *entries;
    zip_uint64_t *zindex;       /* libzip index of each entry (dropped ones leave gaps) */
    uint32_t *crc;              /* CRC-32 and method of each entry, for the fast path */
    uint16_t *method;
    size_t n;
    kiln_zip_limits limits;
    struct libdeflate_decompressor *inflater; /* made on first use */
};

void kiln_zip_limits_default(kiln_zip_limits *limits)
{
    limits->max_entries = 1000000;
    limits->max_entry_bytes = (uint64_t)256 << 20;
    limits->max_total_bytes = (uint64_t)64 << 30;
    limits->max_ratio = 200.0;
}

/* ---------------- messages ---------------- */

/* Copy `s` for a message: control bytes become \xNN (a name must not be
 * able to drive the terminal), long names are cut with "...". */
static const char *show(char out[SHOW_MAX + 8], const char *s)
{
    size_t o = 0;
    for (; *s && o < SHOW_MAX; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(out + o, 5, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    if (*s) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

static kiln_code code_of(int ze)
{
    switch (ze) {
    case ZIP_ER_MEMORY:
        return KILN_ENOMEM;
    case ZIP_ER_NOENT:
        return KILN_ENOTFOUND;
    case ZIP_ER_OPEN:
    case ZIP_ER_READ:
    case ZIP_ER_SEEK:
    case ZIP_ER_TELL:
        return KILN_EIO;
    case ZIP_ER_INVAL:
        return KILN_EINVAL;
    case ZIP_ER_MULTIDISK:
    case ZIP_ER_COMPNOTSUPP:
    case ZIP_ER_ENCRNOTSUPP:
    case ZIP_ER_NOPASSWD:
    case ZIP_ER_WRONGPASSWD:
    case ZIP_ER_OPNOTSUPP:
        return KILN_EUNSUPPORTED;
    default: /* NOZIP, INCONS, EOF, CRC, ZLIB, COMPRESSED_DATA, ... */
        return KILN_EFORMAT;
    }
}

/* What a libzip error means for the user, ahead of libzip's own words. */
static const char *meaning_of(int ze, int truncated)
{
    switch (ze) {
    case ZIP_ER_NOZIP:
        return truncated ? "truncated or corrupt zip (no central directory)"
                         : "not a zip archive";
    case ZIP_ER_INCONS:
    case ZIP_ER_EOF:
    case ZIP_ER_CRC:
    case ZIP_ER_ZLIB:
    case ZIP_ER_COMPRESSED_DATA:
        return "truncated or corrupt zip";
    case ZIP_ER_MULTIDISK:
        return "split (multi-part) zips are not supported";
    case ZIP_ER_MEMORY:
        return "out of memory";
    default:
        return "cannot read the zip";
    }
}

/* Fill `err` from a libzip error; `entry` NULL when about the whole zip. */
static int zip_fail(kiln_err *err, const char *label, const char *entry, zip_error_t *ze,
                    int truncated)
{
    char shown[SHOW_MAX + 8];
    int code = zip_error_code_zip(ze);
    return kiln_err_set(err, code_of(code), "%s: %s%s%s%s (libzip: %s)", label,
                        entry ? "entry '" : "", entry ? show(shown, entry) : "",
                        entry ? "': " : "", meaning_of(code, truncated), zip_error_strerror(ze));
}

/* ---------------- names ---------------- */

static int is_sep(char c)
{
    return c == '/' || c == '\\';
}

/* "/x", "\x", "\\server\x" and Windows drives "C:\x", "C:/x", "C:x". */
static int is_absolute(const char *name)
{
    if (is_sep(name[0]))
        return 1;
    char d = name[0];
    return ((d >= 'A' && d <= 'Z') || (d >= 'a' && d <= 'z')) && name[1] == ':';
}

/* Write the normalised form of `raw` into `out` (at least strlen(raw)+1
 * bytes): '\' becomes '/', empty and "." components go. Returns 0, or -1
 * when a ".." component would climb out of the extraction root. */
static int normalise(const char *raw, char *out)
{
    size_t o = 0;
    const char *p = raw;
    while (*p) {
        while (is_sep(*p))
            p++;
        const char *s = p;
        while (*p && !is_sep(*p))
            p++;
        size_t n = (size_t)(p - s);
        if (n == 0 || (n == 1 && s[0] == '.'))
            continue;
        if (n == 2 && s[0] == '.' && s[1] == '.')
            return -1;
        if (o > 0)
            out[o++] = '/';
        memcpy(out + o, s, n);
        o += n;
    }
    out[o] = '\0';
    return 0;
}

/* ---------------- validation at open ---------------- */

/* Refuse absolute and climbing names; on success `*out` is the malloc'ed
 * normalised name (maybe "", for entries such as "./"). */
static int check_name(const kiln_zip *kz, const char *raw, char **out, kiln_err *err)
{
    char shown[SHOW_MAX + 8];
    *out = NULL;
    if (is_absolute(raw))
        return kiln_err_set(err, KILN_EUNSAFE, "%s: entry '%s': absolute path (unsafe)",
                            kz->label, show(shown, raw));
    char *name = malloc(strlen(raw) + 1);
    if (!name)
        return kiln_err_set(err, KILN_ENOMEM, "%s: out of memory listing entries", kz->label);
    if (normalise(raw, name) != 0) {
        free(name);
        return kiln_err_set(err, KILN_EUNSAFE, "%s: entry '%s': '..' in the path (zip-slip)",
                            kz->label, show(shown, raw));
    }
    *out = name;
    return KILN_OK;
}

/* Symlinks are refused whatever the host system byte says: Unix, macOS
 * and 7-Zip on Windows all keep a unix mode in the high 16 bits, and DOS
 * tools leave them zero, so S_IFLNK there is never an accident. */
static int check_kind(const kiln_zip *kz, zip_uint64_t i, const zip_stat_t *st, kiln_err *err)
{
    char shown[SHOW_MAX + 8];
    zip_uint8_t opsys = 0;
    zip_uint32_t attr = 0;
    if (zip_file_get_external_attributes(kz->za, i, 0, &opsys, &attr) < 0)
        return zip_fail(err, kz->label, st->name, zip_get_error(kz->za), 0);
    if (((attr >> 16) & S_IFMT) == S_IFLNK)
        return kiln_err_set(err, KILN_EUNSAFE, "%s: entry '%s': symbolic link (unsafe)",
                            kz->label, show(shown, st->name));
    if (st->encryption_method != ZIP_EM_NONE)
        return kiln_err_set(err, KILN_EUNSUPPORTED,
                            "%s: entry '%s': encrypted (method %u); kiln reads only "
                            "unencrypted zips",
                            kz->label, show(shown, st->name), (unsigned)st->encryption_method);
    if (!zip_compression_method_supported(st->comp_method, 0))
        return kiln_err_set(err, KILN_EUNSUPPORTED,
                            "%s: entry '%s': compression method %d not supported", kz->label,
                            show(shown, st->name), (int)st->comp_method);
    return KILN_OK;
}

/* Declared sizes against the limits; `total` accumulates over entries. */
static int check_size(const kiln_zip *kz, const zip_stat_t *st, uint64_t *total, kiln_err *err)
{
    char shown[SHOW_MAX + 8];
    const kiln_zip_limits *l = &kz->limits;
    if (st->size > l->max_entry_bytes)
        return kiln_err_set(err, KILN_ELIMIT,
                            "%s: entry '%s': %llu bytes uncompressed, over the limit of %llu",
                            kz->label, show(shown, st->name), (unsigned long long)st->size,
                            (unsigned long long)l->max_entry_bytes);
    if (st->size > l->max_total_bytes - *total)
        return kiln_err_set(err, KILN_ELIMIT,
                            "%s: entry '%s': total uncompressed size over the limit of %llu",
                            kz->label, show(shown, st->name),
                            (unsigned long long)l->max_total_bytes);
    *total += st->size;
    if (st->size > KILN_ZIP_RATIO_MIN_BYTES &&
        (double)st->size > l->max_ratio * (double)st->comp_size)
        return kiln_err_set(err, KILN_ELIMIT,
                            "%s: entry '%s': %llu bytes from %llu compressed, a ratio over the "
                            "limit of %g (zip bomb?)",
                            kz->label, show(shown, st->name), (unsigned long long)st->size,
                            (unsigned long long)st->comp_size, l->max_ratio);
    return KILN_OK;
}

/* Validate entry `i` and append it, unless its name normalises to nothing. */
static int add_entry(kiln_zip *kz, zip_uint64_t i, uint64_t *total, kiln_err *err)
{
    zip_stat_t st;
    char *name = NULL;
    int rc;
    if (zip_stat_index(kz->za, i, 0, &st) < 0) {
        rc = zip_fail(err, kz->label, NULL, zip_get_error(kz->za), 0);
        goto fail;
    }
    if (!(st.valid & ZIP_STAT_NAME) || !st.name) {
        rc = kiln_err_set(err, KILN_EFORMAT, "%s: entry %llu has no name", kz->label,
                          (unsigned long long)i);
        goto fail;
    }
    if ((rc = check_name(kz, st.name, &name, err)) != KILN_OK ||
        (rc = check_kind(kz, i, &st, err)) != KILN_OK ||
        (rc = check_size(kz, &st, total, err)) != KILN_OK)
        goto fail;
    if (name[0] == '\0') { /* "./" and the like: nothing to list */
        free(name);
        return KILN_OK;
    }
    size_t len = strlen(st.name);
    kiln_zip_entry *e = &kz->entries[kz->n];
    e->name = name;
    e->size = st.size;
    e->comp_size = st.comp_size;
    e->is_dir = len > 0 && is_sep(st.name[len - 1]);
    kz->crc[kz->n] = (st.valid & ZIP_STAT_CRC) ? st.crc : 0;
    kz->method[kz->n] = (st.valid & ZIP_STAT_COMP_METHOD) ? st.comp_method : ZIP_CM_STORE;
    kz->zindex[kz->n++] = i;
    return KILN_OK;
fail:
    free(name);
    return rc;
}

static int load_entries(kiln_zip *kz, kiln_err *err)
{
    zip_int64_t n = zip_get_num_entries(kz->za, 0);
    uint64_t total = 0;
    if (n < 0)
        return kiln_err_set(err, KILN_EINVAL, "%s: no archive", kz->label);
    if ((uint64_t)n > kz->limits.max_entries)
        return kiln_err_set(err, KILN_ELIMIT, "%s: %lld entries, over the limit of %llu",
                            kz->label, (long long)n, (unsigned long long)kz->limits.max_entries);
    kz->entries = calloc((size_t)n + 1, sizeof *kz->entries);
    kz->zindex = calloc((size_t)n + 1, sizeof *kz->zindex);
    kz->crc = calloc((size_t)n + 1, sizeof *kz->crc);
    kz->method = calloc((size_t)n + 1, sizeof *kz->method);
    if (!kz->entries || !kz->zindex || !kz->crc || !kz->method)
        return kiln_err_set(err, KILN_ENOMEM, "%s: out of memory listing %lld entries",
                            kz->label, (long long)n);
    for (zip_uint64_t i = 0; i < (zip_uint64_t)n; i++) {
        int rc = add_entry(kz, i, &total, err);
        if (rc != KILN_OK)
            return rc;
    }
    return KILN_OK;
}

/* ---------------- open / close ---------------- */

/* The shell both opens share; `label` names the zip in messages. */
static kiln_zip *zip_new(const char *label, const kiln_zip_limits *limits, kiln_err *err)
{
    char shown[SHOW_MAX + 8];
    kiln_zip *kz = calloc(1, sizeof *kz);
    if (!kz) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory opening zip '%s'", show(shown, label));
        return NULL;
    }
    snprintf(kz->label, sizeof kz->label, "zip '%s'", show(shown, label));
    if (limits)
        kz->limits = *limits;
    else
        kiln_zip_limits_default(&kz->limits);
    return kz;
}

static int check_limits(const kiln_zip *kz, kiln_err *err)
{
    /* Written so NaN fails too. */
    if (!(kz->limits.max_ratio > 0))
        return kiln_err_set(err, KILN_EINVAL, "%s: max_ratio must be positive", kz->label);
    return KILN_OK;
}

/* A file that starts like a zip but has no central directory was cut short:
 * worth telling apart from "not a zip" for whoever uploaded it. */
static int starts_like_zip(const uint8_t *head, size_t len)
{
    return len >= 4 && memcmp(head, "PK\3\4", 4) == 0;
}

static int file_starts_like_zip(const char *path)
{
    uint8_t head[4];
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    return starts_like_zip(head, got);
}

static int stat_zip_file(const kiln_zip *kz, const char *path, kiln_err *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT)
            return kiln_err_set(err, KILN_ENOTFOUND, "%s: no such file", kz->label);
        return kiln_err_errno(err, errno, "%s: cannot stat", kz->label);
    }
    if (!S_ISREG(sb.st_mode))
        return kiln_err_set(err, KILN_EINVAL, "%s: not a regular file", kz->label);
    /* libzip would take an empty file for an empty archive. */
    if (sb.st_size == 0)
        return kiln_err_set(err, KILN_EFORMAT, "%s: empty file, not a zip archive", kz->label);
    return KILN_OK;
}

/* ZIP_CHECKCONS is left out on purpose: libzip 1.7's check rejects zips
 * made by macOS Archive Utility (libzip #341), and kiln only reads through
 * libzip's central directory, sizes and CRCs, which are checked anyway. */
kiln_zip *kiln_zip_open(const char *path, const kiln_zip_limits *limits, kiln_err *err)
{
    int ze = 0;
    kiln_zip *kz = zip_new(path ? path : "(null)", limits, err);
    if (!kz)
        return NULL;
    if (!path) {
        kiln_err_set(err, KILN_EINVAL, "%s: no path", kz->label);
        goto fail;
    }
    if (check_limits(kz, err) != KILN_OK || stat_zip_file(kz, path, err) != KILN_OK)
        goto fail;
    if (!(kz->za = zip_open(path, ZIP_RDONLY, &ze))) {
        zip_error_t zerr;
        zip_error_init_with_code(&zerr, ze);
        zip_fail(err, kz->label, NULL, &zerr, file_starts_like_zip(path));
        zip_error_fini(&zerr);
        goto fail;
    }
    if (load_entries(kz, err) != KILN_OK)
        goto fail;
    return kz;
fail:
    kiln_zip_close(kz);
    return NULL;
}

kiln_zip *kiln_zip_open_buffer(const void *data, size_t len, const kiln_zip_limits *limits,
                               kiln_err *err)
{
    zip_error_t zerr;
    zip_source_t *src = NULL;
    zip_error_init(&zerr);
    kiln_zip *kz = zip_new("<memory>", limits, err);
    if (!kz)
        goto fail;
    if (check_limits(kz, err) != KILN_OK)
        goto fail;
    if (len == 0 || !data) {
        kiln_err_set(err, KILN_EFORMAT, "%s: empty buffer, not a zip archive", kz->label);
        goto fail;
    }
    if (!(src = zip_source_buffer_create(data, len, 0, &zerr))) {
        zip_fail(err, kz->label, NULL, &zerr, 0);
        goto fail;
    }
    if (!(kz->za = zip_open_from_source(src, ZIP_RDONLY, &zerr))) {
        zip_fail(err, kz->label, NULL, &zerr, starts_like_zip(data, len));
        goto fail;
    }
    src = NULL; /* the archive owns it now */
    if (load_entries(kz, err) != KILN_OK)
        goto fail;
    zip_error_fini(&zerr);
    return kz;
fail:
    zip_source_free(src);
    zip_error_fini(&zerr);
    kiln_zip_close(kz);
    return NULL;
}

size_t kiln_zip_count(const kiln_zip *zip)
{
    return zip ? zip->n : 0;
}

const kiln_zip_entry *kiln_zip_entry_at(const kiln_zip *zip, size_t index)
{
    return zip && index < zip->n ? &zip->entries[index] : NULL;
}

void kiln_zip_close(kiln_zip *zip)
{
    if (!zip)
        return;
    /* zip_discard, not zip_close: nothing may ever be written back. */
    if (zip->za)
        zip_discard(zip->za);
    for (size_t i = 0; i < zip->n; i++)
        free((char *)zip->entries[i].name);
    free(zip->entries);
    free(zip->zindex);
    free(zip->crc);
    free(zip->method);
    if (zip->inflater)
        libdeflate_free_decompressor(zip->inflater);
    free(zip);
}

/* ---------------- reading ---------------- */

/* Inflate exactly the declared size into `buf`, then make sure nothing is
 * left: the declared sizes passed the limits at open, so stopping there
 * enforces max_entry_bytes, max_total_bytes and max_ratio on the real bytes
 * too, without ever inflating more than one byte past a lie. */
static int inflate_entry(kiln_zip *kz, zip_file_t *zf, const kiln_zip_entry *e, uint8_t *buf,
                         kiln_err *err)
{
    char shown[SHOW_MAX + 8];
    uint64_t got = 0;
    uint8_t extra;
    while (got < e->size) {
        uint64_t want = e->size - got < READ_CHUNK ? e->size - got : READ_CHUNK;
        zip_int64_t n = zip_fread(zf, buf + got, want);
        if (n < 0)
            return zip_fail(err, kz->label, e->name, zip_file_get_error(zf), 0);
        if (n == 0)
            return kiln_err_set(err, KILN_EFORMAT,
                                "%s: entry '%s': truncated or corrupt zip (%llu of %llu bytes)",
                                kz->label, show(shown, e->name), (unsigned long long)got,
                                (unsigned long long)e->size);
        got += (uint64_t)n;
    }
    zip_int64_t n = zip_fread(zf, &extra, 1); /* at the end libzip checks the CRC */
    if (n < 0)
        return zip_fail(err, kz->label, e->name, zip_file_get_error(zf), 0);
    if (n > 0)
        return kiln_err_set(err, KILN_ELIMIT,
                            "%s: entry '%s': inflates past its declared %llu bytes (zip bomb?)",
                            kz->label, show(shown, e->name), (unsigned long long)e->size);
    return KILN_OK;
}

/* Deflated entries: read the raw stream and inflate it with libdeflate,
 * two to three times faster than zlib through libzip. The output buffer is
 * exactly the declared size, so an entry that inflates to more is refused
 * (INSUFFICIENT_SPACE) without writing a byte past it; the CRC is checked. */
static int inflate_fast(kiln_zip *kz, size_t index, const kiln_zip_entry *e, uint8_t *buf,
                        kiln_err *err)
{
    char shown[SHOW_MAX + 8];
    uint8_t *raw = NULL;
    zip_file_t *zf = NULL;
    size_t actual = 0;
    int rc = KILN_OK;
    if (!kz->inflater && !(kz->inflater = libdeflate_alloc_decompressor())) {
        rc = kiln_err_set(err, KILN_ENOMEM, "%s: out of memory for the inflater", kz->label);
        goto fail;
    }
    /* Deflate never grows data by more than a few bytes per 64 KiB block. */
    if (e->comp_size > e->size + e->size / 64 + 1024) {
        rc = kiln_err_set(err, KILN_EFORMAT, "%s: entry '%s': declares %llu compressed bytes "
                          "for %llu bytes of data (corrupt zip)", kz->label, show(shown, e->name),
                          (unsigned long long)e->comp_size, (unsigned long long)e->size);
        goto fail;
    }
    if (e->comp_size >= SIZE_MAX || !(raw = malloc((size_t)e->comp_size + 1))) {
        rc = kiln_err_set(err, KILN_ENOMEM, "%s: entry '%s': out of memory", kz->label,
                          show(shown, e->name));
        goto fail;
    }
    if (!(zf = zip_fopen_index(kz->za, kz->zindex[index], ZIP_FL_COMPRESSED))) {
        rc = zip_fail(err, kz->label, e->name, zip_get_error(kz->za), 0);
        zip_error_clear(kz->za);
        goto fail;
    }
    zip_int64_t n = zip_fread(zf, raw, e->comp_size);
    if (n < 0) {
        rc = zip_fail(err, kz->label, e->name, zip_file_get_error(zf), 0);
        goto fail;
    }
    enum libdeflate_result r = libdeflate_deflate_decompress(kz->inflater, raw, (size_t)n, buf,
                                                             (size_t)e->size, &actual);
    if (r == LIBDEFLATE_INSUFFICIENT_SPACE)
        rc = kiln_err_set(err, KILN_ELIMIT,
                          "%s: entry '%s': inflates past its declared %llu bytes (zip bomb?)",
                          kz->label, show(shown, e->name), (unsigned long long)e->size);
    else if (r != LIBDEFLATE_SUCCESS || actual != e->size ||
             libdeflate_crc32(0, buf, actual) != kz->crc[index])
        rc = kiln_err_set(err, KILN_EFORMAT,
                          "%s: entry '%s': truncated or corrupt zip (bad deflate data or CRC)",
                          kz->label, show(shown, e->name));
fail:
    if (zf)
        zip_fclose(zf);
    free(raw);
    return rc;
}

int kiln_zip_read(kiln_zip *zip, size_t index, uint8_t **data, size_t *len, kiln_err *err)
{
    char shown[SHOW_MAX + 8];
    zip_file_t *zf = NULL;
    uint8_t *buf = NULL;
    int rc;
    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    if (!zip || !data || !len || index >= zip->n) {
        rc = kiln_err_set(err, KILN_EINVAL, "zip read: bad arguments (entry %zu of %zu)", index,
                          zip ? zip->n : 0);
        goto fail;
    }
    const kiln_zip_entry *e = &zip->entries[index];
    if (e->is_dir) {
        rc = kiln_err_set(err, KILN_EINVAL, "%s: entry '%s': is a directory", zip->label,
                          show(shown, e->name));
        goto fail;
    }
    /* +1 so an empty entry is still a real allocation, and text gets a NUL. */
    if (e->size >= SIZE_MAX || !(buf = malloc((size_t)e->size + 1))) {
        rc = kiln_err_set(err, KILN_ENOMEM, "%s: entry '%s': out of memory for %llu bytes",
                          zip->label, show(shown, e->name), (unsigned long long)e->size);
        goto fail;
    }
    if (zip->method[index] == ZIP_CM_DEFLATE) {
        if ((rc = inflate_fast(zip, index, e, buf, err)) != KILN_OK)
            goto fail;
    } else {
        if (!(zf = zip_fopen_index(zip->za, zip->zindex[index], 0))) {
            rc = zip_fail(err, zip->label, e->name, zip_get_error(zip->za), 0);
            zip_error_clear(zip->za);
            goto fail;
        }
        if ((rc = inflate_entry(zip, zf, e, buf, err)) != KILN_OK)
            goto fail;
        zip_fclose(zf);
        zf = NULL;
    }
    buf[e->size] = '\0';
    *data = buf;
    *len = (size_t)e->size;
    return KILN_OK;
fail:
    if (zf)
        zip_fclose(zf);
    free(buf);
    return rc;
}
