#include "support/chromium.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/testutil.h"

#define CHROMIUM_TIMEOUT_S 120

const char *kt_chromium_path(void)
{
    static char found[4096];
    const char *env = getenv("KILN_CHROMIUM");
    if (env && *env)
        return access(env, X_OK) == 0 ? env : NULL;
    if (access("/usr/bin/chromium", X_OK) == 0)
        return "/usr/bin/chromium";
    const char *names[] = {"chromium", "chromium-browser"};
    const char *path = getenv("PATH");
    for (size_t i = 0; path && i < sizeof names / sizeof *names; i++) {
        char *copy = strdup(path), *save = NULL;
        for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
            snprintf(found, sizeof found, "%s/%s", dir, names[i]);
            if (access(found, X_OK) == 0) {
                free(copy);
                return found;
            }
        }
        free(copy);
    }
    return NULL;
}

/* 1 if /proc/<pid>/cmdline mentions `needle`. */
static int cmdline_has(const char *pid, const char *needle)
{
    char path[64], buf[16384];
    snprintf(path, sizeof path, "/proc/%s/cmdline", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

/* Kill the processes this run started that left its process group
 * (Chromium's crash handler daemonises): they name the profile dir. */
static void kill_strays(const char *profile)
{
    for (int round = 0; round < 50; round++) {
        int found = 0;
        DIR *d = opendir("/proc");
        if (!d)
            return;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] < '0' || e->d_name[0] > '9')
                continue;
            pid_t pid = (pid_t)atol(e->d_name);
            if (pid != getpid() && cmdline_has(e->d_name, profile)) {
                kill(pid, SIGKILL);
                found = 1;
            }
        }
        closedir(d);
        if (!found)
            return;
        kt_sleep_ms(40);
    }
}

static void print_tail(const char *log)
{
    char *out = NULL;
    kt_run_capture(&out, "grep -v -e dbus -e 'unexpected operator' '%s' | tail -n 25", log);
    fprintf(stderr, "---- chromium log ----\n%s----\n", out ? out : "");
    free(out);
}

/* Run Chromium with `args` (after the common flags) and `url`, stdout to
 * <profile>/stdout. Returns the exit status (-1: not run or timed out);
 * *profile_out is the profile dir, for the caller to read and remove. */
static int run_chromium(const char *const *args, size_t nargs, const char *url,
                        char **profile_out)
{
    const char *bin = kt_chromium_path();
    char *dir = kt_mkdtemp();
    *profile_out = dir;
    if (!bin) {
        fprintf(stderr, "chromium is not installed (apt-get install chromium)\n");
        return -1;
    }
    char *profile = kt_path(dir, "profile"), *out = kt_path(dir, "stdout");
    char *log = kt_path(dir, "chromium.log"), *user_dir = NULL;
    if (asprintf(&user_dir, "--user-data-dir=%s", profile) < 0)
        fail_msg("asprintf");
    const char *argv[32] = {bin, "--headless", "--no-sandbox", "--disable-gpu",
                            "--no-first-run", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync",
                            "--disable-extensions", "--hide-scrollbars", user_dir};
    size_t argc = 11;
    for (size_t i = 0; i < nargs && argc < 30; i++)
        argv[argc++] = args[i];
    argv[argc++] = url;
    argv[argc] = NULL;

    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int nul = open("/dev/null", O_RDONLY);
        if (ofd < 0 || lfd < 0 || nul < 0 || chdir(dir) != 0)
            _exit(127);
        dup2(nul, 0);
        dup2(ofd, 1);
        dup2(lfd, 2);
        /* HOME and XDG dirs inside the run's directory: nothing written to
         * the real home, and every helper process names the directory. */
        setenv("HOME", dir, 1);
        setenv("XDG_CONFIG_HOME", profile, 1);
        setenv("XDG_CACHE_HOME", profile, 1);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int rc = -1;
    if (pid > 0) {
        setpgid(pid, pid);
        double end = kt_now_s() + CHROMIUM_TIMEOUT_S;
        int status = 0;
        pid_t got = 0;
        while ((got = waitpid(pid, &status, WNOHANG)) == 0 && kt_now_s() < end)
            kt_sleep_ms(20);
        if (got == pid) {
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        } else {
            fprintf(stderr, "chromium did not finish %s in %d s: killed\n", url,
                    CHROMIUM_TIMEOUT_S);
        }
        kill(-pid, SIGKILL); /* the renderers and zygotes left in the group */
        if (got != pid)
            waitpid(pid, NULL, 0);
        kill_strays(dir);
    }
    if (rc != 0)
        print_tail(log);
    free(profile);
    free(out);
    free(log);
    free(user_dir);
    return rc;
}

char *kt_chromium_dump_dom(const char *url)
{
    const char *args[] = {"--dump-dom"};
    char *dir = NULL;
    char *dom = NULL;
    int rc = run_chromium(args, 1, url, &dir);
    if (rc == 0) {
        char *out = kt_path(dir, "stdout");
        FILE *f = fopen(out, "rb");
        if (f) {
            struct stat st;
            if (fstat(fileno(f), &st) == 0 && (dom = malloc((size_t)st.st_size + 1)) != NULL) {
                size_t n = fread(dom, 1, (size_t)st.st_size, f);
                dom[n] = '\0';
            }
            fclose(f);
        }
        free(out);
        if (dom && !*dom) {
            fprintf(stderr, "chromium printed no DOM for %s\n", url);
            free(dom);
            dom = NULL;
        }
    } else if (rc > 0) {
        fprintf(stderr, "chromium --dump-dom %s exited with %d\n", url, rc);
    }
    kt_rmtree_free(dir);
    return dom;
}

int kt_chromium_screenshot(const char *url, const char *png_path, int width, int height)
{
    char *shot = NULL, *size = NULL;
    if (asprintf(&shot, "--screenshot=%s", png_path) < 0 ||
        asprintf(&size, "--window-size=%d,%d", width, height) < 0)
        fail_msg("asprintf");
    const char *args[] = {shot, size};
    char *dir = NULL;
    unlink(png_path);
    int rc = run_chromium(args, 2, url, &dir);
    struct stat st;
    int ok = rc == 0 && stat(png_path, &st) == 0 && st.st_size > 0;
    if (rc == 0 && !ok)
        fprintf(stderr, "chromium wrote no screenshot at %s\n", png_path);
    kt_rmtree_free(dir);
    free(shot);
    free(size);
    return ok ? 0 : -1;
}
