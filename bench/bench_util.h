/* bench/bench_util.h — what the bench_*.c drivers share: a monotonic clock,
 * integer flags and the getopt loop. Every bench_*.c is its own program
 * (bench/CMakeLists.txt), so these are static inline. */
#ifndef KILN_BENCH_UTIL_H
#define KILN_BENCH_UTIL_H

#include <getopt.h>
#include <stdlib.h>
#include <time.h>

#include "common/err.h"

static inline double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* An integer in [min, max], or EINVAL naming the flag. */
static inline int bench_parse_int(const char *flag, const char *s, int min, int max, int *out,
                                  kiln_err *err)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < min || v > max)
        return kiln_err_set(err, KILN_EINVAL, "--%s: expected an integer in %d..%d, got '%s'",
                            flag, min, max, s);
    *out = (int)v;
    return KILN_OK;
}

/* Applies one option (getopt_long's value and optarg) to a driver's args. */
typedef int (*bench_option_fn)(int opt, const char *val, void *args, kiln_err *err);

/* getopt_long over argv with long options only; `options` maps "help" to
 * 'h', which sets *help and stops. Every other option goes to `apply`. On
 * return optind is the first operand. */
static inline int bench_parse_options(int argc, char **argv, const struct option *options,
                                      bench_option_fn apply, void *args, int *help, kiln_err *err)
{
    int opt;
    *help = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == 'h') {
            *help = 1;
            return KILN_OK;
        }
        if (opt == '?' || opt == ':')
            return kiln_err_set(err, KILN_EINVAL, "unknown option or missing value: %s",
                                argv[optind - 1]);
        int rc = apply(opt, optarg, args, err);
        if (rc != KILN_OK)
            return rc;
    }
    return KILN_OK;
}

#endif
