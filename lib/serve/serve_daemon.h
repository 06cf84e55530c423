/* lib/serve/serve_daemon.h — the daemon's state, shared by
 * serve_daemon.c (HTTP API) and serve_reload.c (life cycle, reloads);
 * not a public API. */
#ifndef KILN_SERVE_SERVE_DAEMON_H
#define KILN_SERVE_SERVE_DAEMON_H

#include "serve/serve_internal.h"

struct kiln_serve_daemon {
    kiln_serve_config cfg;
    const kiln_logger *log;
    const char *image_version;
    char *cache_buf;               /* the default cache_dir, when cfg had none */
    kiln_http_server *http;
    srv_metrics *metrics;
    pthread_mutex_t cur_lock;      /* guards current and why_unready */
    kiln_serve_model *current;     /* one reference held here */
    char why_unready[KILN_ERR_MSG_MAX];
    pthread_mutex_t reload_lock;   /* one reload at a time */
    atomic_int draining;
    int shut;
    /* the registry poller */
    pthread_t poller;
    int poller_running;
    pthread_mutex_t poll_lock;
    pthread_cond_t poll_cond;
    int poll_stop;
};

/* The current model with a reference taken, or NULL. */
kiln_serve_model *srv_acquire(kiln_serve_daemon *d);
/* Make `m` current (taking its reference) and drop the old one's. */
void srv_swap(kiln_serve_daemon *d, kiln_serve_model *m);
int srv_http_start(kiln_serve_daemon *d, kiln_err *err);

#endif
