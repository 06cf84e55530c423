/* lib/http/http_form.c — form bodies (multipart/form-data and
 * x-www-form-urlencoded) through libmicrohttpd's post processor, fed from
 * the buffered body once it is complete. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http/http_internal.h"

typedef struct form_run {
    kiln_http_form_fn fn;
    void *ctx;
    int stopped;
} form_run;

static enum MHD_Result on_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *filename, const char *content_type,
                                const char *transfer_encoding, const char *data, uint64_t off,
                                size_t size)
{
    (void)kind;
    (void)transfer_encoding;
    form_run *run = cls;
    if (run->fn(run->ctx, key ? key : "", filename, content_type, off, data ? data : "", size)) {
        run->stopped = 1;
        return MHD_NO;
    }
    return MHD_YES;
}

int kiln_http_request_form(kiln_http_request *req, kiln_http_form_fn fn, void *ctx,
                           kiln_err *err)
{
    const char *type = kiln_http_request_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
    form_run run = {.fn = fn, .ctx = ctx};
    if (!type)
        return kiln_err_set(err, KILN_EUNSUPPORTED, "the request has no Content-Type");
    if (strncasecmp(type, "multipart/form-data", 19) == 0 && !strcasestr(type, "boundary="))
        return kiln_err_set(err, KILN_EUNSUPPORTED,
                            "Content-Type multipart/form-data without a boundary");
    /* 64 KiB: the processor's working buffer, not a limit on field sizes. */
    struct MHD_PostProcessor *pp = MHD_create_post_processor(req->conn, 64 * 1024, on_field, &run);
    if (!pp)
        return kiln_err_set(err, KILN_EUNSUPPORTED,
                            "Content-Type '%s' is not a form (multipart/form-data or "
                            "application/x-www-form-urlencoded)", type);
    size_t len = 0;
    const char *body = kiln_http_request_body(req, &len);
    enum MHD_Result ok = len ? MHD_post_process(pp, body, len) : MHD_YES;
    /* MHD_NO from destroy: the body ended in the middle of a part. */
    enum MHD_Result done = MHD_destroy_post_processor(pp);
    if (run.stopped)
        return kiln_err_set(err, KILN_ECANCELED, "form parsing stopped");
    if (ok != MHD_YES)
        return kiln_err_set(err, KILN_EFORMAT, "malformed form body");
    if (done != MHD_YES)
        return kiln_err_set(err, KILN_EFORMAT,
                            "form body ends before its closing boundary (truncated?)");
    return KILN_OK;
}
