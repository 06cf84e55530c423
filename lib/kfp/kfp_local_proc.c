/* run-local: one step as a child process, its output copied line by line. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kfp/kfp_local_internal.h"

/* Keep the line as the step's message when it looks like one: the last
 * line a kiln program prints on failure starts with its name. */
static void note_line(local_proc *p, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (!n)
        return;
    if (n >= sizeof p->last_line)
        n = sizeof p->last_line - 1;
    int preferred = !strncmp(line, "kiln", 4) || strstr(line, " error ");
    if (preferred || !p->have_preferred) {
        memcpy(p->last_line, line, n);
        p->last_line[n] = '\0';
        p->have_preferred |= preferred;
    }
}

static void copy_output(local_proc *p, const char *buf, size_t n, char *line, size_t *ll)
{
    for (size_t i = 0; i < n; i++) {
        if (*ll < KILN_KFP_LOCAL_MAX_LINE - 2)
            line[(*ll)++] = buf[i];
        if (buf[i] != '\n')
            continue;
        line[*ll] = '\0';
        if (p->log)
            fputs(line, p->log);
        fprintf(p->out, "  [%s] %s", p->task, line);
        if (line[*ll - 1] != '\n')
            fputc('\n', p->out);
        note_line(p, line);
        *ll = 0;
    }
}

static void child(char *const *argv, const char *const *env, int fd)
{
    setpgid(0, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    int nul = open("/dev/null", O_RDONLY);
    if (nul >= 0) {
        dup2(nul, 0);
        close(nul);
    }
    for (size_t i = 0; env && env[i]; i++)
        putenv((char *)env[i]);
    execv(argv[0], argv);
    fprintf(stderr, "kiln pipeline run-local: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int local_proc_run(local_proc *p, char *const *argv, const char *const *env, kiln_err *err)
{
    int fds[2];
    char buf[4096], line[KILN_KFP_LOCAL_MAX_LINE];
    size_t ll = 0;
    int status = 0, sent_term = 0;
    p->last_line[0] = '\0';
    p->have_preferred = 0;
    fflush(p->out);
    if (pipe(fds) != 0)
        return kiln_err_errno(err, errno, "pipe");
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return kiln_err_errno(err, errno, "fork");
    }
    if (pid == 0) {
        close(fds[0]);
        child(argv, env, fds[1]);
    }
    setpgid(pid, pid);
    close(fds[1]);
    for (;;) {
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        int r = poll(&pfd, 1, 200);
        if (p->stop && *p->stop && !sent_term) {
            kill(-pid, SIGTERM);
            sent_term = 1;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        ssize_t n = read(fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        copy_output(p, buf, (size_t)n, line, &ll);
    }
    if (ll) { /* a last line without its newline */
        line[ll] = '\0';
        if (p->log)
            fprintf(p->log, "%s\n", line);
        fprintf(p->out, "  [%s] %s\n", p->task, line);
        note_line(p, line);
    }
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (p->log)
        fflush(p->log);
    if (WIFEXITED(status))
        p->exit_status = WEXITSTATUS(status);
    else
        p->exit_status = 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    p->canceled = sent_term;
    if (p->exit_status != 0 && !p->last_line[0])
        snprintf(p->last_line, sizeof p->last_line, "%s exited with status %d", argv[0],
                 p->exit_status);
    return KILN_OK;
}
