/* tests/support/trackserver.h — run kiln-tracking for a test.
 *
 * Starts $KILN_TRACKING_BIN on 127.0.0.1 with a free port, a fresh temp
 * directory for its SQLite store and artifacts, waits until GET /health
 * answers, and stops it (SIGTERM, then SIGKILL) on kt_trackserver_stop,
 * removing the directory. The `uri` is what MLFLOW_TRACKING_URI takes.
 */
#ifndef KILN_TEST_TRACKSERVER_H
#define KILN_TEST_TRACKSERVER_H

#include <sys/types.h>

typedef struct kt_trackserver {
    pid_t pid;
    int port;
    char *dir;          /* temp dir: store.db, artifacts/, server.log */
    char uri[64];       /* "http://127.0.0.1:<port>" */
} kt_trackserver;

/* Returns 0 when the server answers, -1 otherwise (the log is printed). */
int kt_trackserver_start(kt_trackserver *s);
/* Same, reusing an existing directory (restart durability tests). */
int kt_trackserver_start_in(kt_trackserver *s, const char *dir);
/* Stops the process; keeps `dir` when keep_dir is non-zero. */
void kt_trackserver_stop(kt_trackserver *s, int keep_dir);

/* cmocka fixtures: *state becomes a kt_trackserver not started yet; the
 * teardown stops it (when it runs), removes its directory and frees it. */
int kt_trackserver_setup(void **state);
int kt_trackserver_teardown(void **state);

#endif
