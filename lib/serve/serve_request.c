/* lib/serve/serve_request.c — the images of a POST /predict body:
 * multipart (libmicrohttpd's post processor via lib/http), a raw image, or
 * JSON with base64 (cJSON + OpenSSL's decoder). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "serve/serve_internal.h"

void kiln_serve_images_clear(kiln_serve_images *im)
{
    for (size_t i = 0; i < im->n; i++)
        free(im->data[i]);
    free(im->data);
    free(im->len);
    memset(im, 0, sizeof *im);
}

/* Append an empty image; its buffer grows with append_bytes. */
static int add_image(kiln_serve_images *im, size_t max, int *status, kiln_err *err)
{
    if (im->n >= max) {
        *status = 413;
        return kiln_err_set(err, KILN_ELIMIT, "more than %zu images in one request", max);
    }
    uint8_t **d = realloc(im->data, (im->n + 1) * sizeof *d);
    if (d)
        im->data = d;
    size_t *l = d ? realloc(im->len, (im->n + 1) * sizeof *l) : NULL;
    if (!l) {
        *status = 500;
        return kiln_err_set(err, KILN_ENOMEM, "out of memory reading the request");
    }
    im->len = l;
    im->data[im->n] = NULL;
    im->len[im->n] = 0;
    im->n++;
    return KILN_OK;
}

static int append_bytes(kiln_serve_images *im, const void *p, size_t n)
{
    size_t i = im->n - 1;
    uint8_t *grown = realloc(im->data[i], im->len[i] + n + 1);
    if (!grown)
        return -1;
    memcpy(grown + im->len[i], p, n);
    im->data[i] = grown;
    im->len[i] += n;
    return 0;
}

/* ---- multipart ---- */

typedef struct form_ctx {
    kiln_serve_images *im;
    size_t max;
    int status;
    kiln_err *err;
    int failed;
} form_ctx;

static int on_form_field(void *cls, const char *key, const char *filename,
                         const char *content_type, uint64_t off, const char *data, size_t size)
{
    (void)filename;
    (void)content_type;
    form_ctx *f = cls;
    if (strcmp(key, "file") != 0 && strcmp(key, "files") != 0)
        return 0; /* other fields are ignored, as FastAPI does */
    if (off == 0 && add_image(f->im, f->max, &f->status, f->err) != KILN_OK) {
        f->failed = 1;
        return 1;
    }
    if (size && append_bytes(f->im, data, size) != 0) {
        f->status = 500;
        kiln_err_set(f->err, KILN_ENOMEM, "out of memory reading the request");
        f->failed = 1;
        return 1;
    }
    return 0;
}

static int read_multipart(kiln_http_request *req, size_t max, kiln_serve_images *im, int *status,
                          kiln_err *err)
{
    form_ctx f = {.im = im, .max = max, .status = 400, .err = err};
    int rc = kiln_http_request_form(req, on_form_field, &f, err);
    if (f.failed) {
        *status = f.status;
        return err ? (int)err->code : KILN_EINVAL;
    }
    if (rc != KILN_OK) {
        *status = 400;
        return kiln_err_wrap(err, "multipart/form-data body");
    }
    if (im->n == 0) {
        *status = 400;
        return kiln_err_set(err, KILN_EINVAL, "multipart/form-data body has no field 'file'");
    }
    im->batch = im->n > 1;
    return KILN_OK;
}

/* ---- JSON + base64 ---- */

/* Decode base64 text (padding optional, whitespace allowed; a data: URL
 * prefix is skipped) as the next image. */
static int add_base64(kiln_serve_images *im, size_t max, const char *text, const char *what,
                      int *status, kiln_err *err)
{
    int rc;
    if (strncmp(text, "data:", 5) == 0) {
        const char *comma = strchr(text, ',');
        if (!comma || !strstr(text, ";base64")) {
            *status = 400;
            return kiln_err_set(err, KILN_EFORMAT, "%s: a data: URL that is not base64", what);
        }
        text = comma + 1;
    }
    size_t n = strlen(text);
    if (n > (size_t)1 << 30) {
        *status = 413;
        return kiln_err_set(err, KILN_ELIMIT, "%s: base64 text too long", what);
    }
    /* Copy without whitespace, padded to a multiple of 4 for OpenSSL. */
    char *clean = malloc(n + 4);
    uint8_t *out = malloc(n / 4 * 3 + 4);
    if (!clean || !out) {
        free(clean);
        free(out);
        *status = 500;
        return kiln_err_set(err, KILN_ENOMEM, "out of memory decoding base64");
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)text[i]))
            clean[m++] = text[i];
    while (m % 4)
        clean[m++] = '=';
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    int outl = 0, finl = 0;
    int ok = ctx != NULL;
    if (ok) {
        EVP_DecodeInit(ctx);
        ok = EVP_DecodeUpdate(ctx, out, &outl, (const unsigned char *)clean, (int)m) >= 0 &&
             EVP_DecodeFinal(ctx, out + outl, &finl) >= 0;
    }
    EVP_ENCODE_CTX_free(ctx);
    free(clean);
    if (!ok || outl + finl == 0) {
        free(out);
        *status = 400;
        return kiln_err_set(err, KILN_EFORMAT, "%s: not valid base64%s", what,
                            ok ? " (empty)" : "");
    }
    if ((rc = add_image(im, max, status, err)) != KILN_OK) {
        free(out);
        return rc;
    }
    im->data[im->n - 1] = out;
    im->len[im->n - 1] = (size_t)(outl + finl);
    return KILN_OK;
}

static int read_json(kiln_http_request *req, size_t max, kiln_serve_images *im, int *status,
                     kiln_err *err)
{
    size_t len = 0;
    const char *body = kiln_http_request_body(req, &len);
    cJSON *root = cJSON_ParseWithLength(body, len);
    int rc = KILN_OK;
    *status = 400;
    if (!root)
        return kiln_err_set(err, KILN_EFORMAT, "the JSON body is not valid JSON");
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(root, "image");
    const cJSON *many = cJSON_GetObjectItemCaseSensitive(root, "images");
    if (!cJSON_IsObject(root) || (!one == !many)) {
        rc = kiln_err_set(err, KILN_EINVAL,
                          "the JSON body must be an object with \"image\" (base64) or "
                          "\"images\" (a list of base64 strings)");
    } else if (one) {
        if (!cJSON_IsString(one))
            rc = kiln_err_set(err, KILN_EINVAL, "\"image\" must be a base64 string");
        else
            rc = add_base64(im, max, one->valuestring, "\"image\"", status, err);
    } else if (!cJSON_IsArray(many) || cJSON_GetArraySize(many) == 0) {
        rc = kiln_err_set(err, KILN_EINVAL, "\"images\" must be a non-empty list of base64 "
                                            "strings");
    } else {
        im->batch = 1;
        int i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, many) {
            char what[40];
            snprintf(what, sizeof what, "\"images\"[%d]", i++);
            if (!cJSON_IsString(it)) {
                rc = kiln_err_set(err, KILN_EINVAL, "%s must be a base64 string", what);
                break;
            }
            if ((rc = add_base64(im, max, it->valuestring, what, status, err)) != KILN_OK)
                break;
        }
    }
    cJSON_Delete(root);
    return rc;
}

/* ---- dispatch on the Content-Type ---- */

/* The media type without parameters, lower-cased, into `out`. */
static void media_type(const char *header, char *out, size_t size)
{
    size_t n = 0;
    while (*header == ' ' || *header == '\t')
        header++;
    for (; *header && *header != ';' && n + 1 < size; header++)
        out[n++] = (char)tolower((unsigned char)*header);
    while (n && (out[n - 1] == ' ' || out[n - 1] == '\t'))
        n--;
    out[n] = '\0';
}

int kiln_serve_request_images(kiln_http_request *req, size_t max_images, kiln_serve_images *out,
                              int *status, kiln_err *err)
{
    memset(out, 0, sizeof *out);
    const char *ct = kiln_http_request_header(req, "Content-Type");
    char type[128];
    int rc;
    *status = 415;
    if (!ct || !*ct)
        return kiln_err_set(err, KILN_EUNSUPPORTED,
                            "no Content-Type: send multipart/form-data (field 'file'), "
                            "image/jpeg, image/png or application/json");
    media_type(ct, type, sizeof type);
    if (strcmp(type, "multipart/form-data") == 0) {
        rc = read_multipart(req, max_images, out, status, err);
    } else if (strcmp(type, "application/json") == 0) {
        rc = read_json(req, max_images, out, status, err);
    } else if (strcmp(type, "image/jpeg") == 0 || strcmp(type, "image/jpg") == 0 ||
               strcmp(type, "image/png") == 0 || strcmp(type, "application/octet-stream") == 0) {
        size_t len = 0;
        const char *body = kiln_http_request_body(req, &len);
        if (len == 0) {
            *status = 400;
            return kiln_err_set(err, KILN_EINVAL, "the %s body is empty", type);
        }
        if ((rc = add_image(out, max_images, status, err)) == KILN_OK &&
            append_bytes(out, body, len) != 0) {
            *status = 500;
            rc = kiln_err_set(err, KILN_ENOMEM, "out of memory reading the request");
        }
    } else {
        return kiln_err_set(err, KILN_EUNSUPPORTED,
                            "Content-Type '%s' is not one /predict takes: multipart/form-data "
                            "(field 'file'), image/jpeg, image/png or application/json", type);
    }
    if (rc != KILN_OK)
        kiln_serve_images_clear(out);
    return rc;
}
