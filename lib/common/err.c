#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <errno.h>
#include <string.h>

__attribute__((format(printf, 2, 0))) static void vset(kiln_err *err, const char *fmt,
                                                      va_list ap)
{
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
}

int kiln_err_set(kiln_err *err, kiln_code code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vset(err, fmt, ap);
        va_end(ap);
    }
    return (int)code;
}

int kiln_err_errno(kiln_err *err, int errno_value, const char *fmt, ...)
{
    kiln_code code = errno_value == ENOMEM ? KILN_ENOMEM : KILN_EIO;
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vset(err, fmt, ap);
        va_end(ap);
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n, ": %s", strerror(errno_value));
    }
    return (int)code;
}

int kiln_err_wrap(kiln_err *err, const char *fmt, ...)
{
    if (!err)
        return KILN_EIO;
    char prefix[KILN_ERR_MSG_MAX];
    char old[KILN_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
    if (err->code == KILN_OK)
        err->code = KILN_EIO;
    return (int)err->code;
}

void kiln_err_clear(kiln_err *err)
{
    if (err) {
        err->code = KILN_OK;
        err->msg[0] = '\0';
    }
}

const char *kiln_code_name(int code)
{
    static const char *const names[] = {
        "OK", "EINVAL", "EIO", "ENOMEM", "EFORMAT", "ELIMIT",
        "ENOTFOUND", "EUNSUPPORTED", "EUNSAFE", "EDEVICE", "ECANCELED",
    };
    if (code < 0 || (size_t)code >= sizeof names / sizeof names[0])
        return "EUNKNOWN";
    return names[code];
}

int kiln_code_exit_status(int code)
{
    switch (code) {
    case KILN_OK:
        return 0;
    case KILN_EINVAL:
        return 2;
    default:
        return 1;
    }
}
