/* tests/support/trackapi.h — a tiny libcurl client for kiln-tracking's
 * REST API in tests (seeding data, reading it back, fetching pages).
 * Independent of lib/mlflow, so tests check the server, not our client.
 * Nothing here asserts: safe in forked children. Loopback URIs only.
 */
#ifndef KILN_TEST_TRACKAPI_H
#define KILN_TEST_TRACKAPI_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* `method` `uri``path` with `body` (JSON text, or NULL for none) sent as
 * application/json. Returns the parsed JSON answer (caller frees; NULL if
 * the answer is not JSON or the request failed) and sets *status (the HTTP
 * status, 0 when there was no answer). */
cJSON *kt_track_call(const char *uri, const char *method, const char *path, const char *body,
                     int *status);

/* The same with a printf-formatted body; fails the test (cmocka) unless
 * the answer is 200 with JSON. Not for forked children. */
cJSON *kt_track_ok(const char *uri, const char *method, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Raw request: `body` (len bytes, may be NULL) sent as is; the answer's
 * bytes returned malloc'ed and NUL-terminated (*len without the NUL), and
 * *status set. NULL when the request failed. */
char *kt_http_request(const char *method, const char *url, const void *body, size_t body_len,
                      int *status, size_t *len);

/* `s` percent-encoded for a query value (malloc'ed). */
char *kt_url_escape(const char *s);

#endif
