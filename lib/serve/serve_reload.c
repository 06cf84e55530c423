/* lib/serve/serve_reload.c — the daemon's life: config, start, reloads
 * (serialised; the old model serves until the new one is loaded), the
 * registry poller, and the draining shutdown. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "serve/serve_daemon.h"

void kiln_serve_config_default(kiln_serve_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->stage = "Production";
    cfg->host = "127.0.0.1";
    cfg->port = 5001;
    cfg->device = "auto";
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = cores > 0 ? (int)(cores < 64 ? cores : 64) : 1;
    cfg->http_threads = 8;
    cfg->max_body_bytes = (size_t)20 << 20;
    cfg->max_pixels = 40000000;
    cfg->max_images = 32;
    cfg->max_batch = 1;
    cfg->max_wait_ms = 2;
    kiln_mlflow_config_default(&cfg->mlflow);
}

static int check_config(kiln_serve_config *c, char *cache, size_t cache_size, kiln_err *err)
{
    if (!c->model_dir && (!c->model_name || !*c->model_name))
        return kiln_err_set(err, KILN_EINVAL, "--model-name (or --model-dir) is required");
    if (c->alias && *c->alias && c->model_dir)
        return kiln_err_set(err, KILN_EINVAL, "--alias and --model-dir exclude each other");
    if (!c->device || (strcmp(c->device, "auto") != 0 && strcmp(c->device, "cpu") != 0 &&
                       strcmp(c->device, "cuda") != 0))
        return kiln_err_set(err, KILN_EINVAL, "--device must be auto, cpu or cuda, got '%s'",
                            c->device ? c->device : "(null)");
    if (strcmp(c->device, "cuda") == 0) {
        /* Fail at start, not at every (re)load, when there is no GPU. */
        kiln_nn_backend *be = kiln_nn_backend_open("cuda", 1, NULL, err);
        if (!be)
            return kiln_err_wrap(err, "--device cuda");
        kiln_nn_backend_destroy(be);
    }
    if (c->threads < 1 || c->http_threads < 1 || c->max_images < 1 || c->max_body_bytes == 0 ||
        c->poll_interval_s < 0 || c->shutdown_delay_s < 0)
        return kiln_err_set(err, KILN_EINVAL, "kiln-serve: threads, limits and intervals must "
                                              "be positive");
    if (c->max_batch < 1 || c->max_batch > KILN_SERVE_MAX_BATCH || c->max_wait_ms < 0 ||
        c->max_wait_ms > KILN_SERVE_MAX_WAIT_MS)
        return kiln_err_set(err, KILN_EINVAL, "--max-batch must be in [1, %d] and --max-wait-ms "
                            "in [0, %d]", KILN_SERVE_MAX_BATCH, KILN_SERVE_MAX_WAIT_MS);
    if (!c->model_dir && !c->mlflow.tracking_uri[0])
        return kiln_err_set(err, KILN_EINVAL,
                            "MLFLOW_TRACKING_URI is not set (needed to fetch '%s' from the "
                            "registry; or serve a local package with --model-dir)",
                            c->model_name);
    if (!c->cache_dir || !*c->cache_dir) {
        const char *tmp = getenv("TMPDIR");
        snprintf(cache, cache_size, "%s/kiln-serve-cache-%ld", tmp && *tmp ? tmp : "/tmp",
                 (long)getuid());
        c->cache_dir = cache;
    }
    return KILN_OK;
}

const char *srv_backend_name(const kiln_serve_config *cfg)
{
    /* auto is the CPU: GPU serving (best with --max-batch) is opt-in with
     * --device cuda. */
    return cfg->device && strcmp(cfg->device, "cuda") == 0 ? "cuda" : "cpu";
}

kiln_serve_batching srv_batching(const kiln_serve_config *cfg, srv_metrics *metrics)
{
    return (kiln_serve_batching){.max_batch = cfg->max_batch, .max_wait_ms = cfg->max_wait_ms,
                                 .on_forward = srv_metrics_forward, .ctx = metrics,
                                 .cuda_graphs = cfg->cuda_graphs};
}

static kiln_serve_model *load_now(kiln_serve_daemon *d, kiln_err *err)
{
    kiln_serve_batching b = srv_batching(&d->cfg, d->metrics);
    if (d->cfg.model_dir) {
        kiln_serve_model_origin o = {.name = d->cfg.model_name, .source = d->cfg.model_dir};
        return kiln_serve_model_load_batched(d->cfg.model_dir, srv_backend_name(&d->cfg),
                                             d->cfg.threads, &b, &o, err);
    }
    kiln_serve_model *cur = srv_acquire(d);
    char version[64] = "";
    if (cur)
        snprintf(version, sizeof version, "%s", kiln_serve_model_version(cur));
    kiln_serve_model_unref(cur);
    return srv_registry_load(&d->cfg, d->cfg.threads, &b, version, d->log, err);
}

int kiln_serve_daemon_reload(kiln_serve_daemon *d, kiln_err *err)
{
    pthread_mutex_lock(&d->reload_lock);
    double t0 = srv_now_s();
    kiln_serve_model *m = load_now(d, err);
    int rc = m ? KILN_OK : (err && err->code ? (int)err->code : KILN_EIO);
    if (m) {
        kiln_log_info(d->log, "serve: loaded %s version %s in %.2f s",
                      *kiln_serve_model_name(m) ? kiln_serve_model_name(m) : d->cfg.model_dir,
                      *kiln_serve_model_version(m) ? kiln_serve_model_version(m) : "(local)",
                      srv_now_s() - t0);
        srv_swap(d, m);
    } else {
        kiln_log_error(d->log, "serve: reload failed, the loaded model (if any) keeps serving: "
                               "%s", err ? err->msg : "");
        pthread_mutex_lock(&d->cur_lock);
        if (!d->current)
            snprintf(d->why_unready, sizeof d->why_unready, "%s", err ? err->msg : "");
        pthread_mutex_unlock(&d->cur_lock);
    }
    srv_metrics_reload(d->metrics, m != NULL);
    /* Loading reads the weights file into buffers freed again; give those
     * pages back (RSS ~15 MB lower for a B0). */
    malloc_trim(0);
    pthread_mutex_unlock(&d->reload_lock);
    return rc;
}

/* ---- the poller ---- */

#define RETRY_POLLS 10

static int poll_wait(kiln_serve_daemon *d)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    double s = d->cfg.poll_interval_s;
    until.tv_sec += (time_t)s;
    until.tv_nsec += (long)((s - (double)(time_t)s) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&d->poll_lock);
    while (!d->poll_stop)
        if (pthread_cond_timedwait(&d->poll_cond, &d->poll_lock, &until) == ETIMEDOUT)
            break;
    int stop = d->poll_stop;
    pthread_mutex_unlock(&d->poll_lock);
    return stop;
}

static void *poller(void *arg)
{
    kiln_serve_daemon *d = arg;
    /* A version that did not load is retried every RETRY_POLLS polls only
     * (a broken package stays broken; a network failure may pass). */
    char failed[64] = "";
    int wait_polls = 0;
    while (!poll_wait(d)) {
        kiln_err err = {0};
        char *latest = NULL;
        if (srv_registry_current_version(&d->cfg, &latest, &err) != KILN_OK) {
            kiln_log_warn(d->log, "serve: polling the registry: %s", err.msg);
            continue;
        }
        kiln_serve_model *m = srv_acquire(d);
        int changed = !m || strcmp(kiln_serve_model_version(m), latest) != 0;
        kiln_serve_model_unref(m);
        int retry_later = changed && strcmp(failed, latest) == 0 && wait_polls-- > 0;
        if (changed && !retry_later) {
            kiln_log_info(d->log, "serve: the registry now has version %s; reloading", latest);
            failed[0] = '\0';
            if (kiln_serve_daemon_reload(d, &err) != KILN_OK) {
                snprintf(failed, sizeof failed, "%s", latest);
                wait_polls = RETRY_POLLS;
            }
        }
        free(latest);
    }
    return NULL;
}

/* ---- start / stop ---- */

kiln_serve_daemon *kiln_serve_daemon_start(const kiln_serve_config *cfg, const kiln_logger *log,
                                           kiln_err *err)
{
    kiln_serve_daemon *d = calloc(1, sizeof *d);
    if (!d) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory starting kiln-serve");
        return NULL;
    }
    d->cfg = *cfg;
    d->log = log;
    pthread_mutex_init(&d->cur_lock, NULL);
    pthread_mutex_init(&d->reload_lock, NULL);
    pthread_mutex_init(&d->poll_lock, NULL);
    pthread_cond_init(&d->poll_cond, NULL);
    atomic_init(&d->draining, 0);
    char *cache = malloc(4096);
    if (!cache || check_config(&d->cfg, cache, 4096, err) != KILN_OK)
        goto fail;
    d->cache_buf = cache;
    cache = NULL;
    d->image_version = cfg->image_version ? cfg->image_version
                                          : getenv("KILN_SERVING_IMAGE_VERSION");
    if (!(d->metrics = srv_metrics_new(err)))
        goto fail;
    kiln_err load_err = {0};
    if (kiln_serve_daemon_reload(d, &load_err) != KILN_OK) {
        if (d->cfg.model_dir) {
            if (err)
                *err = load_err;
            goto fail;
        }
        kiln_log_warn(log, "serve: starting without a model (not ready) until a reload "
                           "succeeds");
    }
    if (srv_http_start(d, err) != KILN_OK)
        goto fail;
    if (d->cfg.poll_interval_s > 0 && !d->cfg.model_dir) {
        if (pthread_create(&d->poller, NULL, poller, d) != 0) {
            kiln_err_set(err, KILN_EIO, "cannot start the registry poller thread");
            goto fail;
        }
        d->poller_running = 1;
    }
    return d;
fail:
    free(cache);
    kiln_serve_daemon_free(d);
    return NULL;
}

void kiln_serve_daemon_shutdown(kiln_serve_daemon *d)
{
    if (!d || d->shut)
        return;
    d->shut = 1;
    atomic_store(&d->draining, 1);
    if (d->http)
        kiln_log_info(d->log, "serve: draining (not ready)%s", d->cfg.shutdown_delay_s > 0
                                                              ? ", serving a while longer"
                                                              : "");
    if (d->cfg.shutdown_delay_s > 0) {
        struct timespec ts = {(time_t)d->cfg.shutdown_delay_s,
                              (long)((d->cfg.shutdown_delay_s -
                                      (double)(time_t)d->cfg.shutdown_delay_s) * 1e9)};
        nanosleep(&ts, NULL);
    }
    if (d->poller_running) {
        pthread_mutex_lock(&d->poll_lock);
        d->poll_stop = 1;
        pthread_cond_signal(&d->poll_cond);
        pthread_mutex_unlock(&d->poll_lock);
        pthread_join(d->poller, NULL);
        d->poller_running = 0;
    }
    /* Requests in flight finish; keep-alive clients are told to close. */
    kiln_http_server_stop(d->http);
}

void kiln_serve_daemon_free(kiln_serve_daemon *d)
{
    if (!d)
        return;
    kiln_serve_daemon_shutdown(d);
    kiln_http_server_free(d->http);
    kiln_serve_model_unref(d->current);
    srv_metrics_free(d->metrics);
    pthread_mutex_destroy(&d->cur_lock);
    pthread_mutex_destroy(&d->reload_lock);
    pthread_mutex_destroy(&d->poll_lock);
    pthread_cond_destroy(&d->poll_cond);
    free(d->cache_buf);
    free(d);
}
