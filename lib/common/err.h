/* lib/common/err.h — kiln's one error type.
 *
 * Every fallible library function returns an int status (KILN_OK or a
 * kiln_code) or a pointer (NULL on failure), and takes a `kiln_err *err`
 * as its last argument. On failure it fills `err` with the code and a
 * human message the caller prints as is; `err` may be NULL when the caller
 * does not care. The message is owned by the struct (fixed buffer): nothing
 * to free. Library code never prints and never calls exit().
 */
#ifndef KILN_COMMON_ERR_H
#define KILN_COMMON_ERR_H

#include <stddef.h>

typedef enum kiln_code {
    KILN_OK = 0,
    KILN_EINVAL,      /* bad argument, flag or value */
    KILN_EIO,         /* a read, write or system call failed */
    KILN_ENOMEM,      /* allocation failed */
    KILN_EFORMAT,     /* malformed input: zip, image, JSON, YAML, shard */
    KILN_ELIMIT,      /* input exceeds a configured safety limit */
    KILN_ENOTFOUND,   /* a named thing does not exist */
    KILN_EUNSUPPORTED,/* valid input of a kind kiln does not handle */
    KILN_EUNSAFE,     /* input that would escape its place (zip-slip, symlink) */
    KILN_EDEVICE,     /* GPU / CUDA / cuDNN / cuBLAS failure or absence */
    KILN_ECANCELED,   /* stopped on request */
} kiln_code;

#define KILN_ERR_MSG_MAX 1024

typedef struct kiln_err {
    kiln_code code;
    char msg[KILN_ERR_MSG_MAX];
} kiln_err;

/* Set `err` (if not NULL) and return `code`, so callers can write
 * `return kiln_err_set(err, KILN_EINVAL, "bad --size %d", n);`. */
int kiln_err_set(kiln_err *err, kiln_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like kiln_err_set, appending ": strerror(errno_value)". */
int kiln_err_errno(kiln_err *err, int errno_value, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the existing message with context: "ctx: old message". Keeps code. */
int kiln_err_wrap(kiln_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void kiln_err_clear(kiln_err *err);

/* Static name of a code, e.g. "EFORMAT". */
const char *kiln_code_name(int code);

/* Process exit status for a code: 2 for usage/input errors, 1 otherwise. */
int kiln_code_exit_status(int code);

#endif
