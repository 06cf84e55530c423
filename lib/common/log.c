#include "common/log.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void kiln_logger_init(kiln_logger *log)
{
    log->out = stderr;
    log->min_level = KILN_LOG_INFO;
    log->format = KILN_LOG_HUMAN;
}

int kiln_log_format_parse(const char *s, kiln_log_format *out, kiln_err *err)
{
    if (s && strcmp(s, "human") == 0) {
        *out = KILN_LOG_HUMAN;
        return KILN_OK;
    }
    if (s && strcmp(s, "json") == 0) {
        *out = KILN_LOG_JSON;
        return KILN_OK;
    }
    return kiln_err_set(err, KILN_EINVAL, "--log-format: '%s' is not one of human, json",
                        s ? s : "");
}

int kiln_log_level_parse(const char *s, kiln_log_level *out, kiln_err *err)
{
    for (int i = 0; i < 4; i++) {
        if (s && strcmp(s, level_names[i]) == 0) {
            *out = (kiln_log_level)i;
            return KILN_OK;
        }
    }
    return kiln_err_set(err, KILN_EINVAL,
                        "--log-level: '%s' is not one of debug, info, warn, error", s ? s : "");
}

static void format_time(char *buf, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t len = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + len, n - len, ".%03ldZ", ts.tv_nsec / 1000000L);
}

static void write_json(const kiln_logger *log, const char *ts, kiln_log_level level,
                       const char *msg)
{
    /* cJSON does the escaping, so a message with quotes or newlines stays one valid line. */
    cJSON *obj = cJSON_CreateObject();
    char *line = NULL;
    if (!obj)
        goto fallback;
    cJSON_AddStringToObject(obj, "ts", ts);
    cJSON_AddStringToObject(obj, "level", level_names[level]);
    cJSON_AddStringToObject(obj, "msg", msg);
    line = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!line)
        goto fallback;
    fprintf(log->out, "%s\n", line);
    free(line);
    return;
fallback:
    fprintf(log->out, "{\"level\":\"error\",\"msg\":\"log: out of memory\"}\n");
}

void kiln_log(const kiln_logger *log, kiln_log_level level, const char *fmt, ...)
{
    if (!log || !log->out || level < log->min_level)
        return;
    char msg[4096];
    char ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    format_time(ts, sizeof ts);
    if (log->format == KILN_LOG_JSON)
        write_json(log, ts, level, msg);
    else
        fprintf(log->out, "%s %-5s %s\n", ts, level_names[level], msg);
    fflush(log->out);
}
