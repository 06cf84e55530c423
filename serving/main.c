/* kiln-serve — the inference daemon: flags and the MLflow environment
 * become a kiln_serve_config; lib/serve does the rest. SIGTERM / SIGINT
 * drain and stop it (exit 0). */
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serve/serve.h"

static void usage(FILE *out, const kiln_serve_config *d)
{
    fprintf(out,
            "usage: kiln-serve --model-name NAME [--stage STAGE | --alias ALIAS] [options]\n"
            "       kiln-serve --model-dir DIR [options]\n\n"
            "Serves a kiln model package over HTTP: GET /, GET /model/info, POST /predict,\n"
            "POST /model/reload, GET /healthz, GET /readyz, GET /metrics (serving/README.md).\n"
            "The registry is MLflow's at $MLFLOW_TRACKING_URI (with MLFLOW_TRACKING_TOKEN,\n"
            "_USERNAME/_PASSWORD, MLFLOW_S3_ENDPOINT_URL and the AWS_* variables).\n\n"
            "options (default):\n"
            "  --model-name NAME       registered model to serve (required unless --model-dir)\n"
            "  --stage STAGE           registry stage to serve (%s)\n"
            "  --alias ALIAS           serve the version this alias points at, not a stage\n"
            "  --model-dir DIR         serve a local model package; reload re-reads it\n"
            "  --cache-dir DIR         where registry downloads go ($TMPDIR/kiln-serve-cache-UID)\n"
            "  --host ADDR             address to listen on (%s; 0.0.0.0 in a container)\n"
            "  --port N                port, 0 = a free one (%d)\n"
            "  --device auto|cpu|cuda  inference device (%s = cpu; cuda needs a usable GPU)\n"
            "  --threads N             inference threads (%d: the online CPUs)\n"
            "  --http-threads N        HTTP worker threads (%d)\n"
            "  --max-body-mb N         request body limit in MiB, else 413 (%zu)\n"
            "  --max-pixels N          pixels per image, else 413 (%llu)\n"
            "  --max-images N          images per request, else 413 (%d)\n"
            "  --max-batch N           inputs per forward, 1-256 (%d: no batching; the CPU\n"
            "                          pays the full batch, cuda: e.g. 16)\n"
            "  --max-wait-ms M         how long a forming batch waits for more, 0-1000 (%d)\n"
            "  --cuda-graphs           with cuda, each forward after the first is one CUDA\n"
            "                          graph (one launch; off)\n"
            "  --poll-interval S       reload when the registry's version changes, checked\n"
            "                          every S seconds (0 = off)\n"
            "  --shutdown-delay S      after SIGTERM, answer (unready) for S more seconds\n"
            "                          before draining (0)\n"
            "  --access-log off|json   one JSON line per request on stdout (off)\n"
            "  --log-format human|json diagnostics on stderr (human)\n"
            "  --log-level LEVEL       debug, info, warn, error (info)\n"
            "  --help                  this text\n\n"
            "GET / reports $KILN_SERVING_IMAGE_VERSION as image_version.\n",
            d->stage, d->host, d->port, d->device, d->threads, d->http_threads,
            d->max_body_bytes >> 20, (unsigned long long)d->max_pixels, d->max_images,
            d->max_batch, d->max_wait_ms);
}

enum { O_NAME = 1000, O_STAGE, O_ALIAS, O_DIR, O_CACHE, O_HOST, O_PORT, O_DEVICE, O_THREADS,
       O_HTTP_THREADS, O_BODY, O_PIXELS, O_IMAGES, O_BATCH, O_WAIT, O_GRAPHS, O_POLL, O_DELAY, O_ACCESS,
       O_LOGFMT, O_LOGLEVEL };

static const struct option options[] = {
    {"model-name", required_argument, NULL, O_NAME},
    {"stage", required_argument, NULL, O_STAGE},
    {"alias", required_argument, NULL, O_ALIAS},
    {"model-dir", required_argument, NULL, O_DIR},
    {"cache-dir", required_argument, NULL, O_CACHE},
    {"host", required_argument, NULL, O_HOST},
    {"port", required_argument, NULL, O_PORT},
    {"device", required_argument, NULL, O_DEVICE},
    {"threads", required_argument, NULL, O_THREADS},
    {"http-threads", required_argument, NULL, O_HTTP_THREADS},
    {"max-body-mb", required_argument, NULL, O_BODY},
    {"max-pixels", required_argument, NULL, O_PIXELS},
    {"max-images", required_argument, NULL, O_IMAGES},
    {"max-batch", required_argument, NULL, O_BATCH},
    {"max-wait-ms", required_argument, NULL, O_WAIT},
    {"cuda-graphs", no_argument, NULL, O_GRAPHS},
    {"poll-interval", required_argument, NULL, O_POLL},
    {"shutdown-delay", required_argument, NULL, O_DELAY},
    {"access-log", required_argument, NULL, O_ACCESS},
    {"log-format", required_argument, NULL, O_LOGFMT},
    {"log-level", required_argument, NULL, O_LOGLEVEL},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int int_flag(const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) {
        fprintf(stderr, "kiln-serve: %s must be an integer in [%ld, %ld], got '%s'\n", flag, lo,
                hi, s);
        return 2;
    }
    *out = v;
    return 0;
}

static int seconds_flag(const char *flag, const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= 0 && v <= 86400)) {
        fprintf(stderr, "kiln-serve: %s must be seconds in [0, 86400], got '%s'\n", flag, s);
        return 2;
    }
    *out = v;
    return 0;
}

static int set_flag(kiln_serve_config *c, kiln_logger *log, int opt, const char *a)
{
    long v = 0;
    int rc = 0;
    kiln_err err = {0};
    switch (opt) {
    case O_NAME: c->model_name = a; break;
    case O_STAGE: c->stage = a; break;
    case O_ALIAS: c->alias = a; break;
    case O_DIR: c->model_dir = a; break;
    case O_CACHE: c->cache_dir = a; break;
    case O_HOST: c->host = a; break;
    case O_DEVICE: c->device = a; break;
    case O_PORT: rc = int_flag("--port", a, 0, 65535, &v); c->port = (int)v; break;
    case O_THREADS: rc = int_flag("--threads", a, 1, 256, &v); c->threads = (int)v; break;
    case O_HTTP_THREADS:
        rc = int_flag("--http-threads", a, 1, 1024, &v);
        c->http_threads = (int)v;
        break;
    case O_BODY:
        rc = int_flag("--max-body-mb", a, 1, 4096, &v);
        c->max_body_bytes = (size_t)v << 20;
        break;
    case O_PIXELS:
        rc = int_flag("--max-pixels", a, 1, 1000000000L, &v);
        c->max_pixels = (uint64_t)v;
        break;
    case O_IMAGES: rc = int_flag("--max-images", a, 1, 4096, &v); c->max_images = (int)v; break;
    case O_BATCH:
        rc = int_flag("--max-batch", a, 1, KILN_SERVE_MAX_BATCH, &v);
        c->max_batch = (int)v;
        break;
    case O_WAIT:
        rc = int_flag("--max-wait-ms", a, 0, KILN_SERVE_MAX_WAIT_MS, &v);
        c->max_wait_ms = (int)v;
        break;
    case O_GRAPHS: c->cuda_graphs = 1; break;
    case O_POLL: rc = seconds_flag("--poll-interval", a, &c->poll_interval_s); break;
    case O_DELAY: rc = seconds_flag("--shutdown-delay", a, &c->shutdown_delay_s); break;
    case O_ACCESS:
        if (strcmp(a, "json") != 0 && strcmp(a, "off") != 0) {
            fprintf(stderr, "kiln-serve: --access-log must be off or json, got '%s'\n", a);
            return 2;
        }
        c->access_log_json = strcmp(a, "json") == 0;
        break;
    case O_LOGFMT:
    case O_LOGLEVEL:
        if ((opt == O_LOGFMT ? kiln_log_format_parse(a, &log->format, &err)
                             : kiln_log_level_parse(a, &log->min_level, &err)) != KILN_OK) {
            fprintf(stderr, "kiln-serve: %s\n", err.msg);
            return 2;
        }
        break;
    default: return 2;
    }
    return rc;
}

/* 0 to run, 1 for --help, 2 for a usage error. */
static int parse(int argc, char **argv, kiln_serve_config *c, kiln_logger *log)
{
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (opt == 'h')
            return 1;
        if (opt == '?' || opt == ':') {
            fprintf(stderr, "kiln-serve: unknown option or missing value: %s\n",
                    argv[optind - 1]);
            return 2;
        }
        if (set_flag(c, log, opt, optarg) != 0)
            return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "kiln-serve: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!c->model_name && !c->model_dir) {
        fprintf(stderr, "kiln-serve: --model-name (or --model-dir) is required\n");
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    kiln_logger log;
    kiln_logger_init(&log);
    kiln_serve_config cfg;
    kiln_serve_config_default(&cfg);
    kiln_err err = {0};
    const char *fmt = getenv("KILN_LOG_FORMAT");
    if (fmt && *fmt && kiln_log_format_parse(fmt, &log.format, &err) != KILN_OK) {
        fprintf(stderr, "kiln-serve: KILN_LOG_FORMAT: %s\n", err.msg);
        return 2;
    }
    int rc = parse(argc, argv, &cfg, &log);
    if (rc == 1) {
        usage(stdout, &cfg);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "Try 'kiln-serve --help'.\n");
        return 2;
    }
    if (!cfg.model_dir && kiln_mlflow_config_from_env(&cfg.mlflow, &err) != KILN_OK) {
        fprintf(stderr, "kiln-serve: %s\n", err.msg);
        return 2;
    }
    /* Decoding allocates a few hundred KB per image: keep it on the heap
     * rather than mmap'ing and faulting it in again for every request. */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    /* Block the stop signals before any thread starts, so every worker
     * inherits the mask and main alone receives them, in sigwait. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    kiln_serve_daemon *d = kiln_serve_daemon_start(&cfg, &log, &err);
    if (!d) {
        kiln_log_error(&log, "kiln-serve: %s", err.msg);
        return err.code == KILN_EINVAL ? 2 : 1;
    }
    kiln_log_info(&log, "kiln-serve: listening on http://%s:%d",
                  strcmp(cfg.host, "0.0.0.0") == 0 ? "127.0.0.1" : cfg.host,
                  kiln_serve_daemon_port(d));
    int sig = 0;
    sigwait(&stop, &sig);
    /* Draining runs to its end: OpenBLAS starts its threads before main
     * can block signals for them, so a second signal would otherwise kill
     * the process there, cutting the requests in flight. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    kiln_log_info(&log, "kiln-serve: %s, draining (further SIGTERM/SIGINT are ignored)",
                  strsignal(sig));
    kiln_serve_daemon_free(d);
    kiln_log_info(&log, "kiln-serve: stopped");
    return 0;
}
