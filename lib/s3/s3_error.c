/* lib/s3/s3_error.c — S3 error answers as messages naming the object, and
 * their kiln codes. */
#include <stdio.h>
#include <string.h>

#include "s3/s3_internal.h"

typedef struct code_map {
    const char *s3_code;
    kiln_code code;
    const char *hint;
} code_map;

static const code_map codes[] = {
    {"NoSuchKey", KILN_ENOTFOUND, NULL},
    {"NoSuchBucket", KILN_ENOTFOUND, NULL},
    {"NoSuchUpload", KILN_ENOTFOUND, NULL},
    {"NotFound", KILN_ENOTFOUND, NULL},
    {"AccessDenied", KILN_EINVAL, "check the credentials' permissions on this bucket"},
    {"SignatureDoesNotMatch", KILN_EINVAL,
     "check the secret key (AWS_SECRET_ACCESS_KEY) and the region (AWS_REGION)"},
    {"InvalidAccessKeyId", KILN_EINVAL, "check the access key (AWS_ACCESS_KEY_ID)"},
    {"ExpiredToken", KILN_EINVAL, "the session token (AWS_SESSION_TOKEN) has expired"},
    {"InvalidToken", KILN_EINVAL, "check the session token (AWS_SESSION_TOKEN)"},
    {"SlowDown", KILN_EIO, "the server kept asking to slow down"},
    {"InternalError", KILN_EIO, NULL},
};

/* A code for answers without an XML body (HEAD, proxies). */
static const char *status_code_name(long status)
{
    switch (status) {
    case 400: return "BadRequest";
    case 403: return "AccessDenied";
    case 404: return "NotFound";
    case 412: return "PreconditionFailed";
    case 503: return "ServiceUnavailable";
    default: return status >= 500 ? "ServerError" : "HTTPError";
    }
}

int s3_error_from_resp(const s3_resp *resp, const char *bucket, const char *key,
                       kiln_err *err)
{
    char what[KILN_S3_MAX_KEY + 128], code[128] = "", msg[512] = "";
    s3_describe(what, sizeof what, bucket, key);
    if (!resp->body || !s3_xml_error(resp->body, resp->body_len, code, sizeof code, msg,
                                     sizeof msg)) {
        snprintf(code, sizeof code, "%s", status_code_name(resp->status));
        if (resp->status == 404)
            snprintf(msg, sizeof msg, "%s does not exist.", key ? "The object" : "The bucket");
    }
    kiln_code kc = resp->status >= 500 ? KILN_EIO
                   : resp->status == 404 ? KILN_ENOTFOUND
                                         : KILN_EINVAL;
    const char *hint = NULL;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(codes[i].s3_code, code) == 0) {
            kc = codes[i].code;
            hint = codes[i].hint;
        }
    return kiln_err_set(err, kc, "%s: %s%s%s (HTTP %ld)%s%s", what, code, msg[0] ? ": " : "",
                        msg, resp->status, hint ? "; " : "", hint ? hint : "");
}
