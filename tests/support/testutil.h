/* tests/support/testutil.h — helpers shared by kiln's CMocka tests. */
#ifndef KILN_TEST_TESTUTIL_H
#define KILN_TEST_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/err.h"

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
/* Write `text` to dir/rel, making the directories above it first. */
void kt_write_text(const char *dir, const char *rel, const char *text);
/* Run a shell command, return its exit status (-1 if it could not run). */
int kt_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Run a command and capture stdout+stderr into a malloc'ed string. */
int kt_run_capture(char **output, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* $KILN_BIN, the kiln CLI under test (asserts it is set). */
const char *kt_kiln_bin(void);

/* Sleep `ms` milliseconds. */
void kt_sleep_ms(long ms);
/* Seconds on the monotonic clock, for timeouts and durations. */
double kt_now_s(void);

/* Fail the test, at the caller's line, unless `rc` is KILN_OK; the message
 * names `what`, the code and err->msg. */
#define kt_expect_ok(rc, err, what) kt_expect_ok_at(__FILE__, __LINE__, (rc), (err), (what))
/* Fail the test unless `rc` is `code` and err->msg contains `needle`. */
#define kt_expect_fail(rc, err, code, needle)                                                      \
    kt_expect_fail_at(__FILE__, __LINE__, (rc), (err), (code), (needle))
/* `ptr`, or fail the test naming `what` and err->msg when it is NULL (for
 * constructors: `c = kt_expect_ptr(kiln_x_new(&cfg, &err), &err, "x")`). */
#define kt_expect_ptr(ptr, err, what) kt_expect_ptr_at(__FILE__, __LINE__, (ptr), (err), (what))
void kt_expect_ok_at(const char *file, int line, int rc, const kiln_err *err, const char *what);
void *kt_expect_ptr_at(const char *file, int line, void *ptr, const kiln_err *err,
                       const char *what);
void kt_expect_fail_at(const char *file, int line, int rc, const kiln_err *err, kiln_code code,
                       const char *needle);

#endif
