#include "support/s3server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/rng.h"
#include "s3/s3.h"
#include "support/testutil.h"

/* A port nobody listens on right now (the kernel's pick for port 0). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int port_answers(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

const char *kt_s3rver_path(void)
{
    static char path[4096];
    const char *env = getenv("KILN_S3RVER");
    if (env && *env)
        snprintf(path, sizeof path, "%s", env);
    else
        snprintf(path, sizeof path, "%s/.tools/node_modules/.bin/s3rver",
                 getenv("KILN_SOURCE_DIR") ? getenv("KILN_SOURCE_DIR") : ".");
    return access(path, X_OK) == 0 ? path : NULL;
}

/* fork + exec `cmd` through sh (exec'ed, so the pid is the program's) in
 * a new process group, stdout to `out_fd` (or the log), stderr to `log`. */
static pid_t spawn(const char *cmd, const char *log, int out_fd)
{
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        int lfd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int nul = open("/dev/null", O_RDONLY);
        if (lfd < 0 || nul < 0)
            _exit(127);
        dup2(nul, 0);
        dup2(out_fd >= 0 ? out_fd : lfd, 1);
        dup2(lfd, 2);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        setpgid(pid, pid); /* also here: no race with a kill right after */
    return pid;
}

static void reap_group(pid_t pid, double grace_s)
{
    if (pid <= 0)
        return;
    kill(-pid, grace_s > 0 ? SIGTERM : SIGKILL);
    double end = kt_now_s() + grace_s;
    while (grace_s > 0 && kt_now_s() < end) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            kill(-pid, SIGKILL); /* stragglers in the group, if any */
            return;
        }
        kt_sleep_ms(20);
    }
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void print_log(const char *log)
{
    char *out = NULL;
    kt_run_capture(&out, "tail -n 30 '%s'", log);
    fprintf(stderr, "---- %s ----\n%s\n----\n", log, out ? out : "");
    free(out);
}

static int launch(kt_s3server *s)
{
    const char *bin = kt_s3rver_path();
    char *cmd = NULL;
    if (!bin) {
        fprintf(stderr, "s3rver not found (npm install s3rver in .tools, or set KILN_S3RVER)\n");
        return -1;
    }
    /* s3rver's continuation tokens use DES, which OpenSSL 3 (node >= 17)
     * only has in its legacy provider. */
    if (asprintf(&cmd, "NODE_OPTIONS=--openssl-legacy-provider exec '%s' -d '%s' -a 127.0.0.1 "
                 "-p %d --silent %s", bin, s->dir,
                 s->port, s->extra) < 0)
        return -1;
    s->pid = spawn(cmd, s->log, -1);
    free(cmd);
    if (s->pid < 0)
        return -1;
    double end = kt_now_s() + 20;
    while (kt_now_s() < end) {
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            s->pid = 0;
            print_log(s->log);
            return -1;
        }
        if (port_answers(s->port))
            return 0;
        kt_sleep_ms(25);
    }
    fprintf(stderr, "s3rver did not answer on port %d in 20 s\n", s->port);
    kt_s3server_stop(s);
    return -1;
}

int kt_s3server_start(kt_s3server *s)
{
    char extra[sizeof s->extra];
    memcpy(extra, s->extra, sizeof extra);
    memset(s, 0, sizeof *s);
    memcpy(s->extra, extra, sizeof extra);
    s->dir = kt_mkdtemp();
    if (asprintf(&s->log, "%s.log", s->dir) < 0)
        return -1;
    /* Another process may take the free port before s3rver binds it. */
    for (int tries = 0; tries < 3; tries++) {
        s->port = free_port();
        snprintf(s->endpoint, sizeof s->endpoint, "http://127.0.0.1:%d", s->port);
        if (s->port > 0 && launch(s) == 0)
            return 0;
    }
    return -1;
}

void kt_s3server_need(kt_s3server *s)
{
    if (!kt_s3rver_path()) {
        printf("SKIPPED: s3rver is not installed (scripts/install-deps.sh)\n");
        skip();
    }
    if (kt_s3server_start(s) != 0)
        fail_msg("cannot start s3rver");
}

int kt_s3server_restart(kt_s3server *s)
{
    kt_s3server_stop(s);
    return launch(s);
}

void kt_s3server_kill(kt_s3server *s)
{
    reap_group(s->pid, 0);
    s->pid = 0;
}

void kt_s3server_stop(kt_s3server *s)
{
    reap_group(s->pid, 3);
    s->pid = 0;
}

void kt_s3server_free(kt_s3server *s)
{
    kt_s3server_stop(s);
    if (s->log)
        unlink(s->log);
    free(s->log);
    kt_rmtree_free(s->dir);
    s->log = s->dir = NULL;
}

static const char *python_path(void)
{
    const char *env = getenv("KILN_PYTHON");
    return env && *env ? env : "/usr/bin/python3";
}

int kt_botocore_available(void)
{
    return kt_system("'%s' -c 'import botocore.auth' >/dev/null 2>&1", python_path()) == 0;
}

/* The proxy prints "PORT <n>" once it listens. */
static int read_port(int fd, double timeout_s)
{
    char buf[64];
    size_t len = 0;
    double end = kt_now_s() + timeout_s;
    while (len < sizeof buf - 1 && kt_now_s() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        int port;
        if (strchr(buf, '\n') && sscanf(buf, "PORT %d", &port) == 1)
            return port;
    }
    return -1;
}

static int proxy_start(kt_s3proxy *p, const kt_s3server *upstream, const char *secret,
                       const char *options, const char *cert, const char *key)
{
    int fds[2];
    char *cmd = NULL, *tls = NULL;
    const char *src = getenv("KILN_SOURCE_DIR") ? getenv("KILN_SOURCE_DIR") : ".";
    memset(p, 0, sizeof *p);
    if (asprintf(&p->log, "%s.proxy.log", upstream->dir) < 0) {
        p->log = NULL;
        return -1;
    }
    if (!cert)
        tls = strdup("");
    else if (asprintf(&tls, "--tls '%s' '%s'", cert, key) < 0)
        tls = NULL;
    if (!tls || pipe(fds) != 0) {
        free(tls);
        kt_s3proxy_stop(p);
        return -1;
    }
    int n = asprintf(&cmd, "exec '%s' '%s/tests/support/sigv4_proxy.py' --upstream %s "
                     "--secret '%s' --log '%s' %s %s", python_path(), src,
                     upstream->endpoint, secret, p->log, tls, options);
    free(tls);
    if (n < 0) {
        kt_s3proxy_stop(p);
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    p->pid = spawn(cmd, p->log, fds[1]);
    free(cmd);
    close(fds[1]);
    p->port = p->pid > 0 ? read_port(fds[0], 20) : -1;
    close(fds[0]);
    if (p->port <= 0) {
        print_log(p->log);
        kt_s3proxy_stop(p);
        return -1;
    }
    snprintf(p->endpoint, sizeof p->endpoint, "%s://127.0.0.1:%d", cert ? "https" : "http",
             p->port);
    return 0;
}

int kt_s3proxy_start(kt_s3proxy *p, const kt_s3server *upstream, const char *secret,
                     const char *options)
{
    return proxy_start(p, upstream, secret, options, NULL, NULL);
}

int kt_s3proxy_start_tls(kt_s3proxy *p, const kt_s3server *upstream, const char *secret,
                         const char *options, const char *cert_pem, const char *key_pem)
{
    return proxy_start(p, upstream, secret, options, cert_pem, key_pem);
}

void kt_s3proxy_stop(kt_s3proxy *p)
{
    reap_group(p->pid, 3);
    p->pid = 0;
    if (p->log)
        unlink(p->log);
    free(p->log);
    p->log = NULL;
}

void kt_s3_test_config(kiln_s3_config *cfg, const char *endpoint)
{
    kiln_s3_config_default(cfg);
    snprintf(cfg->endpoint, sizeof cfg->endpoint, "%s", endpoint);
    snprintf(cfg->access_key, sizeof cfg->access_key, "S3RVER");
    snprintf(cfg->secret_key, sizeof cfg->secret_key, "S3RVER");
    cfg->retry_base_ms = 20;
    cfg->retry_cap_ms = 500;
    cfg->connect_timeout_s = 5;
}

void kt_random_file(const char *path, uint64_t size, uint64_t seed)
{
    kiln_rng rng;
    kiln_rng_seed(&rng, seed);
    kiln_err err = {0};
    kt_expect_ok(kiln_mkdir_parent(path, &err), &err, path);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t *buf = malloc(1 << 20);
    assert_non_null(buf);
    for (uint64_t done = 0; done < size;) {
        for (size_t i = 0; i < (1 << 20) / 8; i++)
            buf[i] = kiln_rng_next(&rng);
        size_t n = size - done < (1 << 20) ? (size_t)(size - done) : (size_t)1 << 20;
        assert_int_equal(fwrite(buf, 1, n, f), n);
        done += n;
    }
    free(buf);
    assert_int_equal(fclose(f), 0);
}

int kt_files_equal(const char *a, const char *b)
{
    return kt_system("cmp -s '%s' '%s'", a, b) == 0;
}
