/* lib/common/signals.h — SIGINT and SIGTERM as a request to stop.
 *
 * Long-running commands (kiln train, kiln pipeline run-local, the train
 * step) stop cleanly: the handler only raises a volatile sig_atomic_t that
 * the program owns, and the work loop checks it (kiln_train writes a
 * checkpoint and ends its MLflow run KILLED). No SA_RESTART, so a blocking
 * call returns EINTR and the flag is seen at once. */
#ifndef KILN_COMMON_SIGNALS_H
#define KILN_COMMON_SIGNALS_H

/* Route SIGINT and SIGTERM to `handler`. */
void kiln_stop_signals_install(void (*handler)(int));

#endif
