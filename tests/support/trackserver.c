/* tests/support/trackserver.c — run kiln-tracking for a test.
 *
 * The server is exec'ed directly (no shell, so the pid is its own) in its
 * own process group, with --port 0; the port is read from the
 * "kiln-tracking: listening on http://127.0.0.1:PORT" line it writes to
 * server.log, then GET /health must answer 200.
 *
 * Ownership of `dir`: kt_trackserver_start makes it; kt_trackserver_stop
 * with keep_dir 0 removes it and frees the string; with keep_dir non-zero
 * both stay, for kt_trackserver_start_in(s, s->dir) (which takes over the
 * string) or for the test to read, and a later stop with keep_dir 0 frees
 * them. kt_trackserver_start_in copies a `dir` that is not s->dir.
 */
#include "support/trackserver.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/testutil.h"

static void print_log(const char *dir)
{
    char *out = NULL;
    kt_run_capture(&out, "tail -n 40 '%s/server.log' 2>&1", dir);
    fprintf(stderr, "---- %s/server.log ----\n%s\n----\n", dir, out ? out : "");
    free(out);
}

static pid_t spawn(const char *bin, const char *dir)
{
    char *log = kt_path(dir, "server.log");
    char *db = kt_path(dir, "store.db");
    char *art = kt_path(dir, "artifacts");
    /* A restart's log starts afresh here, before the fork, so the port of
     * the previous run is never read back; the old log stays as .1. */
    char *old = kt_path(dir, "server.log.1");
    rename(log, old);
    free(old);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int nul = open("/dev/null", O_RDONLY);
        if (lfd < 0 || nul < 0)
            _exit(127);
        dup2(nul, 0);
        dup2(lfd, 1);
        dup2(lfd, 2);
        execl(bin, bin, "--host", "127.0.0.1", "--port", "0", "--backend-store-uri", db,
              "--artifacts-destination", art, "--workers", "4", (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        setpgid(pid, pid);
    free(log);
    free(db);
    free(art);
    return pid;
}

/* The port from the "listening on" line, or 0 while it is not there. */
static int read_port(const char *dir)
{
    char *log = kt_path(dir, "server.log");
    FILE *f = fopen(log, "r");
    free(log);
    if (!f)
        return 0;
    char line[512];
    int port = 0;
    while (!port && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "kiln-tracking: listening on http://127.0.0.1:");
        if (p && strchr(line, '\n'))
            port = atoi(p + strlen("kiln-tracking: listening on http://127.0.0.1:"));
    }
    fclose(f);
    return port;
}

static size_t discard(char *data, size_t size, size_t n, void *ctx)
{
    (void)data;
    (void)ctx;
    return size * n;
}

static long health_status(const char *uri)
{
    char url[128];
    long status = 0;
    snprintf(url, sizeof url, "%s/health", uri);
    CURL *c = curl_easy_init();
    if (!c)
        return 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    return status;
}

static void reap(pid_t pid, double grace_s)
{
    kill(-pid, SIGTERM);
    double end = kt_now_s() + grace_s;
    while (kt_now_s() < end) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            kill(-pid, SIGKILL);
            return;
        }
        kt_sleep_ms(10);
    }
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static int launch(kt_trackserver *s)
{
    const char *bin = getenv("KILN_TRACKING_BIN");
    if (!bin || !*bin || access(bin, X_OK) != 0) {
        fprintf(stderr, "KILN_TRACKING_BIN is not set or not executable ('%s')\n",
                bin ? bin : "");
        return -1;
    }
    s->pid = spawn(bin, s->dir);
    if (s->pid < 0) {
        s->pid = 0;
        return -1;
    }
    double end = kt_now_s() + 30;
    while (kt_now_s() < end) {
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            s->pid = 0;
            fprintf(stderr, "kiln-tracking exited before it listened\n");
            print_log(s->dir);
            return -1;
        }
        if (!s->port && (s->port = read_port(s->dir)) > 0)
            snprintf(s->uri, sizeof s->uri, "http://127.0.0.1:%d", s->port);
        if (s->port && health_status(s->uri) == 200)
            return 0;
        kt_sleep_ms(20);
    }
    fprintf(stderr, "kiln-tracking did not answer /health in 30 s\n");
    print_log(s->dir);
    reap(s->pid, 3);
    s->pid = 0;
    return -1;
}

int kt_trackserver_start_in(kt_trackserver *s, const char *dir)
{
    char *copy = strdup(dir);
    if (!copy)
        return -1;
    if (dir == s->dir)
        free(s->dir); /* taken over: the copy replaces it */
    memset(s, 0, sizeof *s);
    s->dir = copy;
    return launch(s);
}

int kt_trackserver_start(kt_trackserver *s)
{
    memset(s, 0, sizeof *s);
    s->dir = kt_mkdtemp();
    return launch(s);
}

void kt_trackserver_stop(kt_trackserver *s, int keep_dir)
{
    if (s->pid > 0)
        reap(s->pid, 5);
    s->pid = 0;
    s->port = 0;
    if (!keep_dir && s->dir) {
        kt_rmtree_free(s->dir);
        s->dir = NULL;
    }
}

int kt_trackserver_setup(void **state)
{
    *state = calloc(1, sizeof(kt_trackserver));
    return *state ? 0 : -1;
}

int kt_trackserver_teardown(void **state)
{
    kt_trackserver *s = *state;
    kt_trackserver_stop(s, 0);
    free(s);
    return 0;
}
