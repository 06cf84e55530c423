/* lib/common/log.h — logging for kiln's programs.
 *
 * A kiln_logger is a small value owned by the program's main (no global
 * state): library functions that report progress take a
 * `const kiln_logger *` and may be passed NULL to stay silent.
 * Human format:  "2026-11-23T08:40:01Z info  prepare: 120 images"
 * JSON format:   {"ts":"...","level":"info","msg":"prepare: 120 images"}
 * one object per line, for Kubernetes log collectors.
 */
#ifndef KILN_COMMON_LOG_H
#define KILN_COMMON_LOG_H

#include <stdio.h>

#include "common/err.h"

typedef enum kiln_log_level {
    KILN_LOG_DEBUG = 0,
    KILN_LOG_INFO,
    KILN_LOG_WARN,
    KILN_LOG_ERROR,
} kiln_log_level;

typedef enum kiln_log_format {
    KILN_LOG_HUMAN = 0,
    KILN_LOG_JSON,
} kiln_log_format;

typedef struct kiln_logger {
    FILE *out;              /* stderr by default; not owned */
    kiln_log_level min_level;
    kiln_log_format format;
} kiln_logger;

/* stderr, info, human. */
void kiln_logger_init(kiln_logger *log);

/* Parse "human" / "json"; EINVAL naming the value otherwise. */
int kiln_log_format_parse(const char *s, kiln_log_format *out, kiln_err *err);
/* Parse "debug" / "info" / "warn" / "error". */
int kiln_log_level_parse(const char *s, kiln_log_level *out, kiln_err *err);

/* Write one line. `log` may be NULL (nothing is written). */
void kiln_log(const kiln_logger *log, kiln_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define kiln_log_debug(l, ...) kiln_log((l), KILN_LOG_DEBUG, __VA_ARGS__)
#define kiln_log_info(l, ...)  kiln_log((l), KILN_LOG_INFO, __VA_ARGS__)
#define kiln_log_warn(l, ...)  kiln_log((l), KILN_LOG_WARN, __VA_ARGS__)
#define kiln_log_error(l, ...) kiln_log((l), KILN_LOG_ERROR, __VA_ARGS__)

#endif
