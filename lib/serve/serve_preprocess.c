/* lib/serve/serve_preprocess.c — encoded image -> the network's input, as
 * kiln-model.json's preprocessing says (see serve.h). */
#include <string.h>

#include "data/image.h"
#include "serve/serve.h"

/* Resize the shorter side to `resize` and centre-crop `crop`, with
 * torchvision's rounding: the longer side becomes int(resize * long /
 * short), the crop offset int(round((side - crop) / 2)). */
static int resize_then_crop(const kiln_image *src, int resize, int crop, kiln_image *dst,
                            kiln_err *err)
{
    if (resize == crop)
        return kiln_image_resize_center_crop(src, crop, dst, err);
    kiln_image full = {0};
    int w = src->width, h = src->height, rc;
    int rw = w <= h ? resize : (int)((double)resize * w / h);
    int rh = w <= h ? (int)((double)resize * h / w) : resize;
    if (rw < crop || rh < crop)
        return kiln_err_set(err, KILN_EFORMAT, "image %dx%d is too thin to crop %dx%d", w, h,
                            crop, crop);
    if ((rc = kiln_image_alloc(&full, rw, rh, err)) != KILN_OK)
        return rc;
    if ((rc = kiln_image_resize_box(src, 0, 0, w, h, &full, NULL, err)) != KILN_OK)
        goto done;
    if ((rc = kiln_image_alloc(dst, crop, crop, err)) != KILN_OK)
        goto done;
    int x0 = (int)((rw - crop) / 2.0 + 0.5), y0 = (int)((rh - crop) / 2.0 + 0.5);
    for (int y = 0; y < crop; y++)
        memcpy(dst->pixels + (size_t)y * crop * 3,
               full.pixels + ((size_t)(y0 + y) * rw + x0) * 3, (size_t)crop * 3);
done:
    kiln_image_free(&full);
    return rc;
}

int kiln_serve_preprocess(const kiln_model_info *info, const uint8_t *data, size_t len,
                          uint64_t max_pixels, float *out, kiln_err *err)
{
    kiln_decode_opts dopts = {.min_side = info->resize_size, .max_pixels = max_pixels};
    kiln_image img = {0}, cut = {0};
    int rc, s = info->input_size;
    if ((rc = kiln_image_decode(data, len, &dopts, &img, err)) != KILN_OK)
        return rc;
    if ((rc = resize_then_crop(&img, info->resize_size, s, &cut, err)) != KILN_OK)
        goto done;
    /* The loader's formula, in double, so served inputs are the bits
     * training and evaluation saw. */
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++)
            lut[c][v] = (float)((v / 255.0 - (double)info->mean[c]) / (double)info->std[c]);
    size_t plane = (size_t)s * s;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++)
            out[c * plane + i] = lut[c][cut.pixels[i * 3 + c]];
done:
    kiln_image_free(&img);
    kiln_image_free(&cut);
    return rc;
}
