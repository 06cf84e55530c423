#include "cli.h"

int kiln_cmd_prepare(int argc, char **argv, const kiln_logger *log)
{
    kiln_log_error(log, "prepare: under construction");
    return 1;
}
