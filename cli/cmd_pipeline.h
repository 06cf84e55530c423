/* cli/cmd_pipeline.h — the parts of `kiln pipeline` in their own files. */
#ifndef KILN_CLI_CMD_PIPELINE_H
#define KILN_CLI_CMD_PIPELINE_H

#include "common/log.h"

/* kiln pipeline run-local FILE.yaml ... (argv[0] is "run-local"). */
int kiln_cmd_pipeline_run_local(int argc, char **argv, const kiln_logger *log);
/* kiln pipeline submit / schedule (argv[0] is the command); `schedule`
 * non-zero creates a recurring run instead of a run. */
int kiln_cmd_pipeline_submit(int argc, char **argv, const kiln_logger *log, int schedule);

#endif
