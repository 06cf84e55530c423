/* kiln-tracking — an MLflow-compatible tracking + model registry server.
 *
 * Flags follow `mlflow server`. It prints one line,
 * "kiln-tracking: listening on http://HOST:PORT", once it answers, and
 * stops cleanly on SIGINT / SIGTERM (requests in flight are finished).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "tracking/ui.h"
#include "app.h"

typedef struct flags {
    const char *host;
    int port;
    const char *backend_store_uri;
    const char *artifacts_destination;
    const char *default_artifact_root;
    size_t max_body_bytes;
    int workers;
    const char *static_prefix;
} flags;

static void usage(FILE *out)
{
    fprintf(out,
        "usage: kiln-tracking [options]\n\n"
        "An MLflow-compatible tracking and model registry server (REST API 2.0, artifact\n"
        "proxy, web UI) on SQLite.\n\n"
        "  --host ADDR                   IP address to bind (default 127.0.0.1; 0.0.0.0 for all)\n"
        "  --port PORT                   port (default 5000; 0 = a free port)\n"
        "  --backend-store-uri URI       sqlite:///relative.db, sqlite:////absolute.db or a\n"
        "                                file path (default .kiln/tracking/mlflow.db)\n"
        "  --artifacts-destination DIR   where proxied artifacts are kept\n"
        "                                (default .kiln/tracking/artifacts)\n"
        "  --default-artifact-root URI   artifact URI of new experiments' runs: mlflow-artifacts:\n"
        "                                (the proxy, default) or s3://bucket/prefix\n"
        "  --max-body-bytes N            largest JSON request body (default 1048576; K/M suffix)\n"
        "  --workers N                   worker threads (default 8)\n"
        "  --static-prefix PREFIX        the web UI is reached under PREFIX (e.g. /mlflow, behind\n"
        "                                a gateway route): its links start with PREFIX, and UI\n"
        "                                paths are served with or without it; the REST API and\n"
        "                                the artifact proxy stay at /api/... (default: none)\n"
        "  --log-format human|json       log lines on stderr (default $KILN_LOG_FORMAT or human)\n"
        "  --log-level LEVEL             debug, info, warn or error (default info)\n"
        "  -h, --help                    this text\n");
}

static int parse_long(const char *name, const char *text, long lo, long hi, long *out,
                      kiln_err *err)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi)
        return kiln_err_set(err, KILN_EINVAL, "--%s '%s' is not a whole number in %ld..%ld",
                            name, text, lo, hi);
    *out = v;
    return KILN_OK;
}

static int parse_size(const char *text, size_t *out, kiln_err *err)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    unsigned long long mult = 1;
    if (end && (*end == 'K' || *end == 'k'))
        mult = 1024, end++;
    else if (end && (*end == 'M' || *end == 'm'))
        mult = 1024 * 1024, end++;
    if (errno || end == text || *end || text[0] == '-' || v == 0 ||
        v > (1ull << 40) / mult)
        return kiln_err_set(err, KILN_EINVAL,
                            "--max-body-bytes '%s' is not a positive size (bytes, K or M)", text);
    *out = (size_t)(v * mult);
    return KILN_OK;
}

/* SQLAlchemy's spelling, as `mlflow server` takes it: sqlite:///rel.db is
 * relative, sqlite:////abs.db absolute. A plain path is taken as is. */
static int store_path(const char *uri, char **out, kiln_err *err)
{
    const char *path = uri;
    if (strncmp(uri, "sqlite:///", 10) == 0)
        path = uri + 10;
    else if (strncmp(uri, "sqlite:", 7) == 0)
        return kiln_err_set(err, KILN_EINVAL,
                            "--backend-store-uri '%s': an in-memory SQLite store is not "
                            "supported; give a file (sqlite:///path.db)", uri);
    else if (strstr(uri, "://") || strncmp(uri, "file:", 5) == 0)
        return kiln_err_set(err, KILN_EINVAL,
                            "--backend-store-uri '%s' is not supported: kiln-tracking keeps "
                            "its store in SQLite (sqlite:///path.db or a file path)", uri);
    if (!*path)
        return kiln_err_set(err, KILN_EINVAL, "--backend-store-uri '%s' names no file", uri);
    *out = strdup(path);
    return *out ? KILN_OK : kiln_err_set(err, KILN_ENOMEM, "out of memory");
}

static int artifacts_dir(const char *dest, const char **out, kiln_err *err)
{
    if (strncmp(dest, "file://", 7) == 0)
        dest += 7;
    else if (strstr(dest, "://"))
        return kiln_err_set(err, KILN_EINVAL,
                            "--artifacts-destination '%s': the proxy keeps artifacts in a local "
                            "directory; for S3 use --default-artifact-root s3://bucket/prefix "
                            "so clients write there directly", dest);
    if (!*dest)
        return kiln_err_set(err, KILN_EINVAL, "--artifacts-destination is empty");
    *out = dest;
    return KILN_OK;
}

enum { OPT_HOST = 1000, OPT_PORT, OPT_STORE, OPT_ARTIFACTS, OPT_ROOT, OPT_BODY, OPT_WORKERS,
       OPT_LOG_FORMAT, OPT_LOG_LEVEL, OPT_STATIC_PREFIX };

/* 0 to run, -1 after --help, 2 for a usage error (printed). */
static int parse_flags(int argc, char **argv, flags *f, kiln_logger *log)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"backend-store-uri", required_argument, NULL, OPT_STORE},
        {"artifacts-destination", required_argument, NULL, OPT_ARTIFACTS},
        {"default-artifact-root", required_argument, NULL, OPT_ROOT},
        {"max-body-bytes", required_argument, NULL, OPT_BODY},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"static-prefix", required_argument, NULL, OPT_STATIC_PREFIX},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    kiln_err err = {0};
    long v = 0;
    int rc = KILN_OK;
    const char *env = getenv("KILN_LOG_FORMAT");
    if (env && *env && kiln_log_format_parse(env, &log->format, &err) != KILN_OK) {
        fprintf(stderr, "kiln-tracking: KILN_LOG_FORMAT: %s\n", err.msg);
        return 2;
    }
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_HOST: f->host = optarg; break;
        case OPT_PORT:
            if ((rc = parse_long("port", optarg, 0, 65535, &v, &err)) == KILN_OK)
                f->port = (int)v;
            break;
        case OPT_STORE: f->backend_store_uri = optarg; break;
        case OPT_ARTIFACTS: f->artifacts_destination = optarg; break;
        case OPT_ROOT: f->default_artifact_root = optarg; break;
        case OPT_BODY: rc = parse_size(optarg, &f->max_body_bytes, &err); break;
        case OPT_WORKERS:
            if ((rc = parse_long("workers", optarg, 1, 256, &v, &err)) == KILN_OK)
                f->workers = (int)v;
            break;
        case OPT_STATIC_PREFIX:
            f->static_prefix = optarg;
            rc = kiln_tracking_ui_prefix_check("--static-prefix", optarg, &err);
            break;
        case OPT_LOG_FORMAT: rc = kiln_log_format_parse(optarg, &log->format, &err); break;
        case OPT_LOG_LEVEL: rc = kiln_log_level_parse(optarg, &log->min_level, &err); break;
        case 'h': usage(stdout); return -1;
        case ':':
            rc = kiln_err_set(&err, KILN_EINVAL, "%s needs a value", argv[optind - 1]);
            break;
        default:
            rc = kiln_err_set(&err, KILN_EINVAL, "unknown option '%s'", argv[optind - 1]);
            break;
        }
        if (rc != KILN_OK)
            break;
    }
    if (rc == KILN_OK && optind < argc)
        rc = kiln_err_set(&err, KILN_EINVAL, "unexpected argument '%s'", argv[optind]);
    if (rc == KILN_OK && !*f->host)
        rc = kiln_err_set(&err, KILN_EINVAL, "--host is empty");
    if (rc != KILN_OK) {
        fprintf(stderr, "kiln-tracking: %s\nTry 'kiln-tracking --help'.\n", err.msg);
        return 2;
    }
    return 0;
}

static void print_listening(const char *host, int port)
{
    int v6 = strchr(host, ':') != NULL;
    printf("kiln-tracking: listening on http://%s%s%s:%d\n", v6 ? "[" : "", host, v6 ? "]" : "",
           port);
    fflush(stdout);
}

/* Everything after the flags. Returns the process exit status. */
static int serve(const flags *f, const kiln_logger *log, const sigset_t *stop_signals)
{
    kiln_err err = {0};
    char *db = NULL;
    const char *artifacts = NULL;
    kiln_tracking *store = NULL;
    kiln_http_server *server = NULL;
    int status = 1;
    int rc = store_path(f->backend_store_uri, &db, &err);
    if (rc == KILN_OK)
        rc = artifacts_dir(f->artifacts_destination, &artifacts, &err);
    if (rc != KILN_OK) {
        fprintf(stderr, "kiln-tracking: %s\nTry 'kiln-tracking --help'.\n", err.msg);
        free(db);
        return 2;
    }
    if (kiln_mkdir_parent(db, &err) != KILN_OK || kiln_mkdir_p(artifacts, &err) != KILN_OK)
        goto fail;
    kiln_tracking_options topts = {.db_path = db, .artifacts_root = artifacts,
                                   .default_artifact_root = f->default_artifact_root};
    store = kiln_tracking_open(&topts, &err);
    if (!store)
        goto fail;
    tracking_app app = {.store = store, .log = log, .static_prefix = f->static_prefix};
    kiln_http_options hopts;
    kiln_http_options_default(&hopts);
    hopts.host = f->host;
    hopts.port = f->port;
    hopts.threads = f->workers;
    hopts.max_body_bytes = f->max_body_bytes;
    hopts.log = log;
    server = kiln_http_server_new(&hopts, &err);
    if (!server || tracking_add_routes(server, &app, &err) != KILN_OK ||
        kiln_http_server_start(server, &err) != KILN_OK)
        goto fail;
    kiln_log_info(log, "kiln-tracking: store %s, artifacts %s, default artifact root %s", db,
                  artifacts, f->default_artifact_root);
    if (*f->static_prefix)
        kiln_log_info(log, "kiln-tracking: web UI links under %s/", f->static_prefix);
    print_listening(f->host, kiln_http_server_port(server));
    int sig = 0;
    sigwait(stop_signals, &sig);
    kiln_log_info(log, "kiln-tracking: %s, stopping", strsignal(sig));
    kiln_http_server_free(server);
    server = NULL;
    status = 0;
fail:
    if (status != 0) {
        kiln_log_error(log, "kiln-tracking: %s", err.msg);
        status = kiln_code_exit_status(err.code);
    }
    kiln_http_server_free(server);
    kiln_tracking_close(store);
    free(db);
    return status;
}

int main(int argc, char **argv)
{
    kiln_logger log;
    kiln_logger_init(&log);
    flags f = {
        .host = "127.0.0.1",
        .port = 5000,
        .backend_store_uri = ".kiln/tracking/mlflow.db",
        .artifacts_destination = ".kiln/tracking/artifacts",
        .default_artifact_root = "mlflow-artifacts:",
        .max_body_bytes = (size_t)1 << 20,
        .workers = 8,
        .static_prefix = "",
    };
    int rc = parse_flags(argc, argv, &f, &log);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    /* Block the stop signals before any thread starts, so every worker
     * inherits the mask and main alone receives them, in sigwait. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    return serve(&f, &log, &stop);
}
