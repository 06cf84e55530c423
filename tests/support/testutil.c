#include "support/testutil.h"

#include "common/fs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

char *kt_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char *path = NULL;
    if (asprintf(&path, "%s/kiln-test-XXXXXX", base && *base ? base : "/tmp") < 0)
        fail_msg("asprintf");
    if (!mkdtemp(path))
        fail_msg("mkdtemp %s", path);
    return path;
}

void kt_rmtree_free(char *path)
{
    if (!path)
        return;
    kt_system("rm -rf '%s'", path);
    free(path);
}

int kt_setup_tmpdir(void **state)
{
    *state = kt_mkdtemp();
    return 0;
}

int kt_teardown_tmpdir(void **state)
{
    kt_rmtree_free(*state);
    *state = NULL;
    return 0;
}

char *kt_path(const char *dir, const char *name)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, name) < 0)
        fail_msg("asprintf");
    return p;
}

void kt_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

void kt_write_text(const char *dir, const char *rel, const char *text)
{
    char *path = kt_path(dir, rel);
    kiln_err err = {0};
    kt_expect_ok(kiln_mkdir_parent(path, &err), &err, path);
    kt_write_file(path, text, strlen(text));
    free(path);
}

static int status_of(int st)
{
    if (st == -1)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int kt_system(const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&cmd, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    int st = system(cmd);
    free(cmd);
    return status_of(st);
}

int kt_run_capture(char **output, const char *fmt, ...)
{
    char *cmd = NULL, *full = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&cmd, fmt, ap);
    va_end(ap);
    if (n < 0 || asprintf(&full, "%s 2>&1", cmd) < 0)
        fail_msg("asprintf");
    free(cmd);
    FILE *p = popen(full, "r");
    free(full);
    assert_non_null(p);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (cap - len < 1024) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    buf[len] = '\0';
    *output = buf;
    return status_of(pclose(p));
}

const char *kt_kiln_bin(void)
{
    const char *bin = getenv("KILN_BIN");
    if (!bin || !*bin)
        fail_msg("KILN_BIN is not set (run the tests through ctest)");
    return bin;
}

void kt_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

double kt_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* fail_msg would report this file's line; _fail takes the caller's. */
void kt_expect_ok_at(const char *file, int line, int rc, const kiln_err *err, const char *what)
{
    if (rc == KILN_OK)
        return;
    print_error("ERROR: %s: %s: %s\n", what, kiln_code_name(rc), err ? err->msg : "");
    _fail(file, line);
}

void kt_expect_fail_at(const char *file, int line, int rc, const kiln_err *err, kiln_code code,
                       const char *needle)
{
    const char *msg = err ? err->msg : "";
    if (rc == (int)code && strstr(msg, needle))
        return;
    print_error("ERROR: want %s with '%s', got %s: %s\n", kiln_code_name(code), needle,
                kiln_code_name(rc), msg);
    _fail(file, line);
}

void *kt_expect_ptr_at(const char *file, int line, void *ptr, const kiln_err *err, const char *what)
{
    if (ptr)
        return ptr;
    print_error("ERROR: %s: %s: %s\n", what, err ? kiln_code_name(err->code) : "NULL",
                err ? err->msg : "");
    _fail(file, line);
    return NULL;
}
