/* cli/cli_flags.c — flag value parsing shared by the subcommands. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

int kiln_cli_int_flag(const char *cmd, const char *flag, const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "kiln %s: %s must be an integer in [%d, %d], got '%s'\n", cmd, flag, lo,
                hi, s);
        return 2;
    }
    *out = (int)v;
    return 0;
}
