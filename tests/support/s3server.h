/* tests/support/s3server.h — a real S3 server (s3rver, node) on loopback
 * for the lib/s3 tests, and the SigV4-verifying proxy in front of it.
 *
 * Each server runs in its own process group with its own data directory,
 * on a free 127.0.0.1 port; stop kills the group and reaps it, so no test
 * leaves a process behind. s3rver accepts the access key S3RVER with
 * secret S3RVER. Nothing here talks to anything but 127.0.0.1.
 */
#ifndef KILN_TEST_S3SERVER_H
#define KILN_TEST_S3SERVER_H

#include <stdint.h>
#include <sys/types.h>

typedef struct kt_s3server {
    pid_t pid;            /* process group leader; 0 when stopped */
    int port;
    char *dir;            /* data directory (owned; removed by _free) */
    char *log;            /* <dir>.log: the server's stdout+stderr (owned) */
    char endpoint[64];    /* "http://127.0.0.1:<port>" */
    char extra[128];      /* extra s3rver arguments, e.g. "--service-endpoint localhost" */
} kt_s3server;

/* Path of the s3rver launcher ($KILN_S3RVER, else
 * $KILN_SOURCE_DIR/.tools/node_modules/.bin/s3rver) or NULL if absent. */
const char *kt_s3rver_path(void);

/* Start s3rver on a free port with a fresh data directory and wait until it
 * answers. Returns 0, or -1 after printing why (the caller skips or fails). */
int kt_s3server_start(kt_s3server *s);
/* For a test that needs s3rver: skip it when s3rver is not installed,
 * fail it when s3rver does not start. */
void kt_s3server_need(kt_s3server *s);
/* Start again on the same port and directory (after kt_s3server_kill). */
int kt_s3server_restart(kt_s3server *s);
/* SIGKILL the server's process group and reap it (a crash, for tests). */
void kt_s3server_kill(kt_s3server *s);
/* SIGTERM, then SIGKILL after 3 s; reap. Safe to call twice. */
void kt_s3server_stop(kt_s3server *s);
/* Stop, remove the data directory and log, free the strings. Safe on a
 * zeroed server that never started. */
void kt_s3server_free(kt_s3server *s);

typedef struct kt_s3proxy {
    pid_t pid;
    int port;
    char endpoint[64];    /* "http://127.0.0.1:<port>", or https:// with TLS */
    char *log;            /* one line per request: "METHOD PATH?QUERY STATUS" (owned) */
} kt_s3proxy;

/* 1 if /usr/bin/python3 (or $KILN_PYTHON) can import botocore. */
int kt_botocore_available(void);

/* Start tests/support/sigv4_proxy.py in front of `upstream`, verifying
 * signatures with `secret` for every access key. `options` are extra
 * proxy arguments ("" for none), e.g. "--drop-get-after 1048576" or
 * "--part-status 2:503:1". Returns 0 or -1. */
int kt_s3proxy_start(kt_s3proxy *p, const kt_s3server *upstream, const char *secret,
                     const char *options);
/* The same, serving HTTPS with the PEM certificate `cert_pem` and its
 * unencrypted private key `key_pem` (the proxy's --tls); the endpoint is
 * "https://127.0.0.1:<port>". s3rver behind it stays plain HTTP. */
int kt_s3proxy_start_tls(kt_s3proxy *p, const kt_s3server *upstream, const char *secret,
                         const char *options, const char *cert_pem, const char *key_pem);
void kt_s3proxy_stop(kt_s3proxy *p);

/* A client configuration for s3rver at `endpoint`: key/secret S3RVER,
 * path-style, fast retries (base 20 ms, cap 500 ms). */
struct kiln_s3_config;
void kt_s3_test_config(struct kiln_s3_config *cfg, const char *endpoint);
/* Write `size` pseudo-random bytes (from `seed`) to `path`, 1 MiB at a
 * time, making the directories above it first. */
void kt_random_file(const char *path, uint64_t size, uint64_t seed);
/* 1 if the two files have the same bytes. */
int kt_files_equal(const char *a, const char *b);

#endif
