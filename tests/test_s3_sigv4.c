/* tests/test_s3_sigv4.c — kiln's S3 requests are signed correctly.
 *
 * s3rver does not check SigV4 signatures, so they are proven two ways:
 *   1. against AWS's published Signature V4 examples for S3 (inputs and
 *      expected signatures typed in from the S3 API reference, "Examples:
 *      Signature Calculations in AWS Signature Version 4"), by capturing
 *      what kiln sends for those inputs on a loopback socket;
 *   2. by botocore's independent signer, in tests/support/sigv4_proxy.py
 *      between kiln and s3rver: real operations pass with the right secret
 *      and fail with SignatureDoesNotMatch with a wrong one.
 * The proxy also injects faults for the resume and part-retry tests, and
 * serves HTTPS with a throwaway self-signed certificate for the TLS tests
 * (ca_bundle, verify_tls, and an untrusted certificate not being retried).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/fs.h"
#include "s3/s3.h"
#include "s3/s3_internal.h"
#include "support/s3server.h"
#include "support/testutil.h"

#define BUCKET "kiln-test"

/* ---------------- AWS's published examples ---------------- */

/* The documented example credentials and date. */
#define EX_ACCESS "AKIAIOSFODNN7EXAMPLE"
#define EX_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define EX_DATE "20130524T000000Z"

typedef struct capture {
    int fd;                 /* listening socket */
    int port;
    char request[8192];     /* what the client sent (headers) */
} capture;

/* Accept one connection, keep its request head, answer 200 empty. */
static void *capture_run(void *arg)
{
    capture *c = arg;
    int conn = accept(c->fd, NULL, NULL);
    size_t len = 0;
    while (conn >= 0 && len < sizeof c->request - 1 && !strstr(c->request, "\r\n\r\n")) {
        ssize_t n = read(conn, c->request + len, sizeof c->request - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        c->request[len] = '\0';
    }
    static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    if (conn >= 0) {
        ssize_t w = write(conn, reply, sizeof reply - 1);
        (void)w;
        close(conn);
    }
    return NULL;
}

static void capture_listen(capture *c)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    assert_int_equal(bind(c->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(c->fd, 1), 0);
    assert_int_equal(getsockname(c->fd, (struct sockaddr *)&a, &len), 0);
    c->port = ntohs(a.sin_port);
}

/* Send `req` as kiln would, to examplebucket.s3.amazonaws.com (redirected
 * to the capture socket: nothing leaves the machine), and return the
 * Authorization header it carried. */
static void sign_example(s3_req *req, char *auth, size_t size)
{
    capture cap;
    capture_listen(&cap);
    kiln_s3_config cfg;
    kiln_err err = {0};
    kiln_s3_config_default(&cfg);
    snprintf(cfg.endpoint, sizeof cfg.endpoint, "http://s3.amazonaws.com");
    snprintf(cfg.connect_to, sizeof cfg.connect_to, "::127.0.0.1:%d", cap.port);
    snprintf(cfg.access_key, sizeof cfg.access_key, EX_ACCESS);
    snprintf(cfg.secret_key, sizeof cfg.secret_key, EX_SECRET);
    cfg.addressing = KILN_S3_ADDRESSING_VIRTUAL;
    cfg.max_retries = 0;
    kiln_s3_client *c = kt_expect_ptr(kiln_s3_client_new(&cfg, NULL, &err), &err, "client");
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, capture_run, &cap), 0);
    s3_resp resp = {0};
    req->amz_date = EX_DATE;
    int rc = s3_perform(c, req, &resp, &err);
    pthread_join(t, NULL);
    close(cap.fd);
    kt_expect_ok(rc, &err, "request");
    s3_resp_free(&resp);
    kiln_s3_client_free(c);
    assert_non_null(strstr(cap.request, "Host: examplebucket.s3.amazonaws.com\r\n"));
    const char *a = strstr(cap.request, "Authorization: ");
    assert_non_null(a);
    const char *end = strstr(a, "\r\n");
    snprintf(auth, size, "%.*s", (int)(end - a), a);
}

static void test_aws_example_get_object(void **state)
{
    (void)state;
    /* GET /test.txt, Range: bytes=0-9, payload hash of the empty body. */
    s3_req req = {.method = "GET", .bucket = "examplebucket", .key = "test.txt",
                  .payload_hash = S3_EMPTY_SHA256, .headers = {"Range: bytes=0-9"}};
    char auth[1024];
    sign_example(&req, auth, sizeof auth);
    assert_string_equal(auth,
                        "Authorization: AWS4-HMAC-SHA256 "
                        "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

static void test_aws_example_list_objects(void **state)
{
    (void)state;
    /* GET /?max-keys=2&prefix=J on the bucket. */
    s3_req req = {.method = "GET", .bucket = "examplebucket", .query = "max-keys=2&prefix=J",
                  .payload_hash = S3_EMPTY_SHA256};
    char auth[1024];
    sign_example(&req, auth, sizeof auth);
    assert_non_null(strstr(auth, "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "));
    assert_non_null(strstr(
        auth, "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"));
}

/* ---------------- botocore behind a proxy ---------------- */

typedef struct fixture {
    char *dir;
    kt_s3server server;
    kt_s3proxy proxy;
    kiln_s3_client *client;  /* to the proxy */
    kiln_s3_config cfg;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = kt_mkdtemp();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kiln_s3_client_free(f->client);
    kt_s3proxy_stop(&f->proxy);
    kt_s3server_free(&f->server);
    kt_rmtree_free(f->dir);
    free(f);
    return 0;
}

/* s3rver + the proxy (knowing secret S3RVER, serving HTTPS with `cert` and
 * `key` when they are not NULL) + a client configuration for it with
 * `secret`; BUCKET is made directly on s3rver. */
static void need_proxy_tls(fixture *f, const char *secret, const char *options,
                           const char *cert, const char *key)
{
    if (!kt_botocore_available()) {
        printf("SKIPPED: python3-botocore is not installed\n");
        skip();
    }
    kt_s3server_need(&f->server);
    if ((cert ? kt_s3proxy_start_tls(&f->proxy, &f->server, "S3RVER", options, cert, key)
              : kt_s3proxy_start(&f->proxy, &f->server, "S3RVER", options)) != 0)
        fail_msg("cannot start the SigV4 proxy");
    kiln_err err = {0};
    kiln_s3_config direct;
    kt_s3_test_config(&direct, f->server.endpoint);
    kiln_s3_client *c = kt_expect_ptr(kiln_s3_client_new(&direct, NULL, &err), &err, "client");
    kt_expect_ok(kiln_s3_create_bucket(c, BUCKET, &err), &err, "create bucket");
    kiln_s3_client_free(c);
    kt_s3_test_config(&f->cfg, f->proxy.endpoint);
    snprintf(f->cfg.secret_key, sizeof f->cfg.secret_key, "%s", secret);
    f->cfg.part_size = KILN_S3_MIN_PART_SIZE;
    f->cfg.multipart_threshold = KILN_S3_MIN_PART_SIZE;
}

static void need_proxy(fixture *f, const char *secret, const char *options)
{
    need_proxy_tls(f, secret, options, NULL, NULL);
}

static kiln_s3_client *connect_client(fixture *f)
{
    kiln_err err = {0};
    f->client = kt_expect_ptr(kiln_s3_client_new(&f->cfg, NULL, &err), &err, "client");
    return f->client;
}

static int count_cb(const kiln_s3_object_info *o, void *ctx, kiln_err *err)
{
    (void)o;
    (void)err;
    (*(int *)ctx)++;
    return KILN_OK;
}

static int proxy_log_has(const fixture *f, const char *pattern)
{
    return kt_system("grep -Eq '%s' '%s'", pattern, f->proxy.log) == 0;
}

static void test_botocore_accepts_kiln_signatures(void **state)
{
    fixture *f = *state;
    need_proxy(f, "S3RVER", "");
    kiln_s3_client *c = connect_client(f);
    kiln_err err = {0};
    char *src = kt_path(f->dir, "src"), *dst = kt_path(f->dir, "dst");
    /* Multipart (3 parts of 5 MiB), odd key characters, every operation. */
    const char *key = "a dir/ünï code+plus=eq&amp%25.bin";
    kt_random_file(src, ((uint64_t)11 << 20), 5);
    kt_expect_ok(kiln_s3_put(c, BUCKET, key, src, "application/x-kiln", &err), &err, "put");
    kiln_s3_object_info info;
    kt_expect_ok(kiln_s3_head(c, BUCKET, key, &info, &err), &err, "head");
    kt_expect_ok(kiln_s3_get(c, BUCKET, key, dst, &err), &err, "get");
    assert_true(kt_files_equal(src, dst));
    int n = 0;
    kt_expect_ok(kiln_s3_list(c, BUCKET, "a dir/ü", count_cb, &n, &err), &err, "list");
    assert_int_equal(n, 1);
    kt_write_file(src, "small", 5);
    kt_expect_ok(kiln_s3_put(c, BUCKET, "small", src, NULL, &err), &err, "put small");
    kt_expect_ok(kiln_s3_delete(c, BUCKET, key, &err), &err, "delete");
    kt_expect_ok(kiln_s3_create_bucket(c, "second-bucket", &err), &err, "create");
    assert_true(proxy_log_has(f, "^POST .*uploads= 200"));
    assert_true(proxy_log_has(f, "^PUT .*partNumber=3&uploadId=.* 200"));
    assert_false(proxy_log_has(f, " 40[03]$"));
    free(src);
    free(dst);
}

static void test_wrong_secret_is_detected(void **state)
{
    fixture *f = *state;
    need_proxy(f, "not-the-secret", "");
    kiln_s3_client *c = connect_client(f);
    kiln_err err = {0};
    char *dst = kt_path(f->dir, "dst");
    int rc = kiln_s3_get(c, BUCKET, "any/key", dst, &err);
    if (rc != KILN_EINVAL || !strstr(err.msg, "s3://" BUCKET "/any/key: SignatureDoesNotMatch") ||
        !strstr(err.msg, "AWS_SECRET_ACCESS_KEY"))
        fail_msg("want SignatureDoesNotMatch, got %s: %s", kiln_code_name(rc), err.msg);
    assert_false(kiln_is_file(dst));
    kiln_s3_stats st;
    kiln_s3_client_stats(c, &st);
    assert_int_equal(st.retries, 0);
    free(dst);
}

static void test_session_token_is_sent_and_signed(void **state)
{
    fixture *f = *state;
    need_proxy(f, "S3RVER", "--token 'tok/en+=='");
    snprintf(f->cfg.session_token, sizeof f->cfg.session_token, "tok/en+==");
    kiln_s3_client *c = connect_client(f);
    kiln_err err = {0};
    char *src = kt_path(f->dir, "src");
    kt_write_file(src, "hello", 5);
    kt_expect_ok(kiln_s3_put(c, BUCKET, "tok", src, NULL, &err), &err, "put with token");
    free(src);
}

/* The proxy cuts the first download after 3 MiB; kiln must continue with
 * a Range request and fetch each byte once. */
static void test_resumed_download(void **state)
{
    fixture *f = *state;
    need_proxy(f, "S3RVER", "--drop-get-after 3145728");
    kiln_s3_client *c = connect_client(f);
    kiln_err err = {0};
    char *src = kt_path(f->dir, "src"), *dst = kt_path(f->dir, "dst");
    const uint64_t size = (uint64_t)8 << 20;
    kt_random_file(src, size, 9);
    f->cfg.multipart_threshold = size; /* single part: the ETag is the MD5 */
    kiln_s3_client_free(f->client);
    c = connect_client(f);
    kt_expect_ok(kiln_s3_put(c, BUCKET, "resume.bin", src, NULL, &err), &err, "put");
    kiln_s3_stats before, after;
    kiln_s3_client_stats(c, &before);
    kt_expect_ok(kiln_s3_get(c, BUCKET, "resume.bin", dst, &err), &err, "get");
    kiln_s3_client_stats(c, &after);
    assert_true(kt_files_equal(src, dst));
    assert_true(proxy_log_has(f, "^DROPPED after 3145728"));
    assert_int_equal(after.resumes - before.resumes, 1);
    assert_int_equal(after.restarts - before.restarts, 0);
    assert_int_equal(after.retries - before.retries, 1);
    assert_int_equal(after.bytes_received - before.bytes_received, size);
    free(src);
    free(dst);
}

/* A 503 SlowDown on part 2 is retried; the upload completes. */
static void test_part_retried_on_slowdown(void **state)
{
    fixture *f = *state;
    need_proxy(f, "S3RVER", "--part-status 2:503:1");
    kiln_s3_client *c = connect_client(f);
    kiln_err err = {0};
    char *src = kt_path(f->dir, "src"), *dst = kt_path(f->dir, "dst");
    kt_random_file(src, ((uint64_t)12 << 20), 13);
    kt_expect_ok(kiln_s3_put(c, BUCKET, "retry.bin", src, NULL, &err), &err, "put");
    kiln_s3_stats st;
    kiln_s3_client_stats(c, &st);
    assert_int_equal(st.retries, 1);
    assert_true(proxy_log_has(f, "partNumber=2&.* 503$"));
    kt_expect_ok(kiln_s3_get(c, BUCKET, "retry.bin", dst, &err), &err, "get");
    assert_true(kt_files_equal(src, dst));
    free(src);
    free(dst);
}

/* A 4xx on a part is not retried, later parts are not sent, and the
 * upload is aborted. */
static void test_failed_part_aborts_upload(void **state)
{
    fixture *f = *state;
    need_proxy(f, "S3RVER", "--part-status 2:400:0");
    kiln_s3_client *c = connect_client(f);
    kiln_err err = {0};
    char *src = kt_path(f->dir, "src");
    kt_random_file(src, ((uint64_t)12 << 20), 17);
    int rc = kiln_s3_put(c, BUCKET, "fail.bin", src, NULL, &err);
    if (rc != KILN_EINVAL || !strstr(err.msg, "part 2") || !strstr(err.msg, "InjectedFault"))
        fail_msg("want EINVAL for part 2, got %s: %s", kiln_code_name(rc), err.msg);
    kiln_s3_stats st;
    kiln_s3_client_stats(c, &st);
    assert_int_equal(st.retries, 0);
    /* The abort was sent for this upload. s3rver 3.7 has no
     * AbortMultipartUpload and answers 405 (then kiln only logs it and
     * multipart_aborts stays 0); S3 and MinIO answer 204. */
    assert_true(proxy_log_has(f, "^DELETE /" BUCKET "/fail.bin\\?uploadId=[0-9a-f]+ (204|405)$"));
    assert_false(proxy_log_has(f, "partNumber=3"));
    kiln_s3_object_info info;
    assert_int_equal(kiln_s3_head(c, BUCKET, "fail.bin", &info, &err), KILN_ENOTFOUND);
    free(src);
}

/* ---------------- HTTPS ---------------- */

/* A throwaway self-signed certificate for 127.0.0.1 (also its own CA) in
 * f->dir, made with the openssl command line; skips without it. */
static void make_cert(fixture *f, char **cert, char **key)
{
    if (kt_system("openssl version >/dev/null 2>&1") != 0) {
        printf("SKIPPED: the openssl command line is not installed\n");
        skip();
    }
    *cert = kt_path(f->dir, "cert.pem");
    *key = kt_path(f->dir, "key.pem");
    if (kt_system("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
                  "-addext subjectAltName=IP:127.0.0.1 -keyout '%s' -out '%s' >/dev/null 2>&1",
                  *key, *cert) != 0)
        fail_msg("openssl req could not make a self-signed certificate");
}

/* The proxy serves HTTPS with a self-signed certificate; the client trusts
 * it through its ca_bundle, or with verify_tls = 0, and does a signed
 * put / head / get round trip through it. */
static void tls_round_trip(fixture *f, int use_ca_bundle)
{
    char *cert, *key;
    make_cert(f, &cert, &key);
    need_proxy_tls(f, "S3RVER", "", cert, key);
    assert_memory_equal(f->proxy.endpoint, "https://", 8);
    if (use_ca_bundle)
        snprintf(f->cfg.ca_bundle, sizeof f->cfg.ca_bundle, "%s", cert);
    else
        f->cfg.verify_tls = 0;
    kiln_s3_client *c = connect_client(f);
    kiln_err err = {0};
    char *src = kt_path(f->dir, "src"), *dst = kt_path(f->dir, "dst");
    kt_random_file(src, 300000, 21);
    kt_expect_ok(kiln_s3_put(c, BUCKET, "tls/obj.bin", src, NULL, &err), &err, "put over https");
    kiln_s3_object_info info;
    kt_expect_ok(kiln_s3_head(c, BUCKET, "tls/obj.bin", &info, &err), &err, "head over https");
    assert_int_equal(info.size, 300000);
    kt_expect_ok(kiln_s3_get(c, BUCKET, "tls/obj.bin", dst, &err), &err, "get over https");
    assert_true(kt_files_equal(src, dst));
    kiln_s3_stats st;
    kiln_s3_client_stats(c, &st);
    assert_int_equal(st.retries, 0);
    /* Every request reached s3rver through botocore's signature check. */
    assert_true(proxy_log_has(f, "^PUT /" BUCKET "/tls/obj.bin 200$"));
    assert_true(proxy_log_has(f, "^GET /" BUCKET "/tls/obj.bin 200$"));
    assert_false(proxy_log_has(f, " 40[03]$"));
    assert_false(proxy_log_has(f, "^TLS-FAIL"));
    free(src);
    free(dst);
    free(cert);
    free(key);
}

static void test_https_with_ca_bundle(void **state)
{
    tls_round_trip(*state, 1);
}

static void test_https_without_verification(void **state)
{
    tls_round_trip(*state, 0);
}

/* Without the certificate in its trust store the client fails at once,
 * naming the certificate problem: a verification failure is not transient
 * and is not retried. */
static void test_https_untrusted_certificate(void **state)
{
    fixture *f = *state;
    char *cert, *key;
    make_cert(f, &cert, &key);
    need_proxy_tls(f, "S3RVER", "", cert, key);
    f->cfg.max_retries = 5;
    kiln_s3_client *c = connect_client(f);
    kiln_err err = {0};
    char *dst = kt_path(f->dir, "dst");
    int rc = kiln_s3_get(c, BUCKET, "any/key", dst, &err);
    if (rc != KILN_EIO || !strstr(err.msg, "s3://" BUCKET "/any/key") ||
        !strstr(err.msg, "certificate") || !strstr(err.msg, "after 1 attempt)"))
        fail_msg("want EIO naming the certificate, got %s: %s", kiln_code_name(rc), err.msg);
    assert_false(kiln_is_file(dst));
    kiln_s3_stats st;
    kiln_s3_client_stats(c, &st);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.retries, 0);
    /* One handshake, refused by the client; nothing reached s3rver. The
     * proxy logs the failed handshake on its own thread, after the client
     * has already given up: wait for the line (a loaded machine is slow). */
    for (int i = 0; i < 100 && kt_system("grep -q '^TLS-FAIL' '%s'", f->proxy.log) != 0; i++)
        kt_sleep_ms(50);
    assert_int_equal(kt_system("test \"$(grep -c '^TLS-FAIL' '%s')\" = 1", f->proxy.log), 0);
    assert_false(proxy_log_has(f, "^(GET|PUT|HEAD) "));

    /* A CA bundle that cannot be read is a configuration error, not
     * retried either. */
    kiln_s3_client_free(f->client);
    char *missing = kt_path(f->dir, "no-such-ca.pem");
    snprintf(f->cfg.ca_bundle, sizeof f->cfg.ca_bundle, "%s", missing);
    c = connect_client(f);
    rc = kiln_s3_get(c, BUCKET, "any/key", dst, &err);
    if (rc != KILN_EIO || !strstr(err.msg, "after 1 attempt)"))
        fail_msg("want EIO for a missing CA bundle, got %s: %s", kiln_code_name(rc), err.msg);
    kiln_s3_client_stats(c, &st);
    assert_int_equal(st.retries, 0);
    free(missing);
    free(dst);
    free(cert);
    free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aws_example_get_object),
        cmocka_unit_test(test_aws_example_list_objects),
        cmocka_unit_test_setup_teardown(test_botocore_accepts_kiln_signatures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_secret_is_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_token_is_sent_and_signed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resumed_download, setup, teardown),
        cmocka_unit_test_setup_teardown(test_part_retried_on_slowdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_part_aborts_upload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_https_with_ca_bundle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_https_untrusted_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_https_without_verification, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
