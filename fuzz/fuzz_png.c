/* fuzz/fuzz_png.c — libFuzzer target: decode any bytes as an image (PNG
 * seeds), then resize a box of it, which exercises the resizer on the
 * odd shapes PNG makes cheap (1 x N, N x 1). Input: one parameter byte
 * (box and output size), then the image. Every chunk's CRC is recomputed
 * first: otherwise nearly every mutation dies at libpng's CRC check and
 * the fuzzer never gets past it. A 4-megapixel limit keeps each run
 * within libFuzzer's memory cap. Seeds: fuzz/corpus/png/ (every colour
 * type and depth, tRNS, interlaced, each behind its byte). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Resize the box that drops `cut` pixels (as far as possible) from the
 * right and bottom edges to out_w x out_h, with the caller's scratch. */
static void resize_some(const kiln_image *img, uint8_t p)
{
    int cut = p & 3, out_w = 1 + (p >> 2 & 7) * 9, out_h = 1 + (p >> 5) * 9;
    int w = img->width > cut ? img->width - cut : img->width;
    int h = img->height > cut ? img->height - cut : img->height;
    kiln_image dst;
    kiln_err err = {0};
    if (kiln_image_alloc(&dst, out_w, out_h, &err) != KILN_OK)
        return;
    void *scratch = malloc(kiln_resize_scratch_size(w, h, out_w, out_h));
    if (scratch && kiln_image_resize_box(img, img->width - w, img->height - h, w, h, &dst, scratch,
                                         &err) != KILN_OK)
        abort(); /* the box is valid, so this cannot fail */
    free(scratch);
    kiln_image_free(&dst);
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Rewrite the CRC of every whole chunk after the 8-byte signature. */
static void fix_crcs(uint8_t *p, size_t n)
{
    size_t off = 8;
    while (off + 12 <= n && be32(p + off) <= n - off - 12) {
        size_t len = be32(p + off);
        uint32_t crc = crc32_of(p + off + 4, len + 4);
        uint8_t *c = p + off + 8 + len;
        c[0] = (uint8_t)(crc >> 24);
        c[1] = (uint8_t)(crc >> 16);
        c[2] = (uint8_t)(crc >> 8);
        c[3] = (uint8_t)crc;
        off += 12 + len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    kiln_decode_opts opts = {.min_side = data[0], .max_pixels = 4u << 20};
    kiln_image img;
    kiln_err err = {0};
    uint8_t *bytes = malloc(size - 1 + 1); /* +1: malloc(0) may return NULL */
    if (!bytes)
        return 0;
    memcpy(bytes, data + 1, size - 1);
    fix_crcs(bytes, size - 1);
    int rc = kiln_image_decode(bytes, size - 1, &opts, &img, &err);
    free(bytes);
    if (rc != KILN_OK) {
        if (img.pixels || img.width || img.height)
            abort();
        return 0;
    }
    resize_some(&img, data[0]);
    kiln_image_free(&img);
    return 0;
}
