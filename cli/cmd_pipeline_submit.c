/* kiln pipeline submit / schedule: the KFP REST client lands next. */
#include <stdio.h>

#include "cmd_pipeline.h"

int kiln_cmd_pipeline_submit(int argc, char **argv, const kiln_logger *log, int schedule)
{
    (void)argc;
    (void)log;
    fprintf(stderr, "kiln pipeline %s: not available in this build yet\n", argv[0]);
    return schedule ? 2 : 2;
}
