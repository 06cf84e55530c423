/* tests/support/testutil.h — helpers shared by kiln's CMocka tests. */
#ifndef KILN_TEST_TESTUTIL_H
#define KILN_TEST_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Make a fresh directory under $TMPDIR (or /tmp); returns a malloc'ed path. */
char *kt_mkdtemp(void);
/* CMocka setup / teardown: each test gets a fresh temporary directory as
 * *state (a char *), removed afterwards. */
int kt_setup_tmpdir(void **state);
int kt_teardown_tmpdir(void **state);
/* rm -rf `path` and free it. */
void kt_rmtree_free(char *path);
/* Path join into a static-free malloc'ed string. */
char *kt_path(const char *dir, const char *name);
/* Write bytes to a file (not atomically; test fixtures only). */
void kt_write_file(const char *path, const void *data, size_t len);
/* Run a shell command, return its exit status (-1 if it could not run). */
int kt_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Run a command and capture stdout+stderr into a malloc'ed string. */
int kt_run_capture(char **output, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* $KILN_BIN, the kiln CLI under test (asserts it is set). */
const char *kt_kiln_bin(void);

#endif
