/* Shard files: writer (atomic) and mmap reader. Format in dataset.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "data/dataset.h"

static const char shard_magic[8] = {'K', 'I', 'L', 'N', 'S', 'H', 'D', '1'};

struct kiln_shard_writer {
    kiln_atomic_file *file;
    char *path;
    uint32_t count, height, width;
    uint32_t *labels;
    uint32_t labels_cap;
};

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static size_t image_bytes(uint32_t height, uint32_t width)
{
    return (size_t)height * width * 3;
}

static int write_header(kiln_shard_writer *w, kiln_err *err)
{
    uint8_t header[KILN_SHARD_HEADER_BYTES] = {0};
    memcpy(header, shard_magic, 8);
    put_u32(header + 8, w->count);
    put_u32(header + 12, w->height);
    put_u32(header + 16, w->width);
    put_u32(header + 20, 3);
    if (fwrite(header, 1, sizeof header, kiln_atomic_stream(w->file)) != sizeof header)
        return kiln_err_errno(err, errno, "cannot write %s", w->path);
    return KILN_OK;
}

kiln_shard_writer *kiln_shard_writer_open(const char *path, uint32_t height, uint32_t width,
                                          kiln_err *err)
{
    kiln_shard_writer *w = calloc(1, sizeof *w);
    if (height == 0 || width == 0 || height > 65536 || width > 65536) {
        kiln_err_set(err, KILN_EINVAL, "shard %s: bad image size %ux%u", path, height, width);
        goto fail;
    }
    if (!w || !(w->path = strdup(path))) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory opening shard %s", path);
        goto fail;
    }
    w->height = height;
    w->width = width;
    w->file = kiln_atomic_open(path, err);
    /* The header is written now with count 0 and patched at commit. */
    if (!w->file || write_header(w, err) != KILN_OK)
        goto fail;
    return w;
fail:
    kiln_shard_writer_abort(w);
    return NULL;
}

static int grow_labels(kiln_shard_writer *w, kiln_err *err)
{
    uint32_t cap = w->labels_cap ? w->labels_cap * 2 : 1024;
    uint32_t *labels = realloc(w->labels, (size_t)cap * sizeof *labels);
    if (!labels)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory writing %s", w->path);
    w->labels = labels;
    w->labels_cap = cap;
    return KILN_OK;
}

int kiln_shard_writer_add(kiln_shard_writer *w, const uint8_t *pixels, uint32_t label,
                          kiln_err *err)
{
    size_t n = image_bytes(w->height, w->width);
    if (w->count == UINT32_MAX)
        return kiln_err_set(err, KILN_ELIMIT, "shard %s is full", w->path);
    if (w->count == w->labels_cap && grow_labels(w, err) != KILN_OK)
        return KILN_ENOMEM;
    if (fwrite(pixels, 1, n, kiln_atomic_stream(w->file)) != n)
        return kiln_err_errno(err, errno, "cannot write %s", w->path);
    w->labels[w->count++] = label;
    return KILN_OK;
}

uint32_t kiln_shard_writer_count(const kiln_shard_writer *w)
{
    return w->count;
}

static int write_labels_and_count(kiln_shard_writer *w, kiln_err *err)
{
    FILE *fp = kiln_atomic_stream(w->file);
    for (uint32_t i = 0; i < w->count; i++) {
        uint8_t b[4];
        put_u32(b, w->labels[i]);
        if (fwrite(b, 1, 4, fp) != 4)
            return kiln_err_errno(err, errno, "cannot write %s", w->path);
    }
    if (fseek(fp, 0, SEEK_SET) != 0)
        return kiln_err_errno(err, errno, "cannot seek in %s", w->path);
    return write_header(w, err);
}

int kiln_shard_writer_commit(kiln_shard_writer *w, kiln_err *err)
{
    int rc = write_labels_and_count(w, err);
    if (rc == KILN_OK) {
        rc = kiln_atomic_commit(w->file, err);
        w->file = NULL;
    }
    kiln_shard_writer_abort(w);
    return rc;
}

void kiln_shard_writer_abort(kiln_shard_writer *w)
{
    if (!w)
        return;
    kiln_atomic_abort(w->file);
    free(w->labels);
    free(w->path);
    free(w);
}

struct kiln_shard {
    const uint8_t *map;
    size_t map_len;
    uint32_t count, height, width;
};

static int validate_header(kiln_shard *s, const char *path, kiln_err *err)
{
    if (s->map_len < KILN_SHARD_HEADER_BYTES || memcmp(s->map, shard_magic, 8) != 0)
        return kiln_err_set(err, KILN_EFORMAT, "%s is not a kiln shard (bad magic)", path);
    s->count = get_u32(s->map + 8);
    s->height = get_u32(s->map + 12);
    s->width = get_u32(s->map + 16);
    if (get_u32(s->map + 20) != 3 || s->height == 0 || s->width == 0 || s->height > 65536 ||
        s->width > 65536)
        return kiln_err_set(err, KILN_EFORMAT, "%s: bad shard header (%ux%u)", path,
                            s->height, s->width);
    uint64_t want = KILN_SHARD_HEADER_BYTES + (uint64_t)s->count * 4 +
                    (uint64_t)s->count * image_bytes(s->height, s->width);
    if (want != s->map_len)
        return kiln_err_set(err, KILN_EFORMAT,
                            "%s: shard is %zu bytes, its header says %llu (truncated?)", path,
                            s->map_len, (unsigned long long)want);
    return KILN_OK;
}

kiln_shard *kiln_shard_open(const char *path, kiln_err *err)
{
    struct stat st;
    kiln_shard *s = calloc(1, sizeof *s);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (!s) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory opening %s", path);
        goto fail;
    }
    if (fd < 0 || fstat(fd, &st) != 0) {
        kiln_err_errno(err, errno, "cannot open shard %s", path);
        goto fail;
    }
    s->map_len = (size_t)st.st_size;
    if (s->map_len > 0) {
        void *m = mmap(NULL, s->map_len, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            kiln_err_errno(err, errno, "cannot map shard %s", path);
            goto fail;
        }
        s->map = m;
    }
    if (validate_header(s, path, err) != KILN_OK)
        goto fail;
    close(fd);
    return s;
fail:
    if (fd >= 0)
        close(fd);
    kiln_shard_close(s);
    return NULL;
}

uint32_t kiln_shard_count(const kiln_shard *s)
{
    return s->count;
}

uint32_t kiln_shard_height(const kiln_shard *s)
{
    return s->height;
}

uint32_t kiln_shard_width(const kiln_shard *s)
{
    return s->width;
}

const uint8_t *kiln_shard_pixels(const kiln_shard *s, uint32_t i)
{
    return s->map + KILN_SHARD_HEADER_BYTES + (size_t)i * image_bytes(s->height, s->width);
}

uint32_t kiln_shard_label(const kiln_shard *s, uint32_t i)
{
    return get_u32(s->map + KILN_SHARD_HEADER_BYTES +
                   (size_t)s->count * image_bytes(s->height, s->width) + (size_t)i * 4);
}

void kiln_shard_close(kiln_shard *s)
{
    if (!s)
        return;
    if (s->map)
        munmap((void *)s->map, s->map_len);
    free(s);
}
