/* lib/s3/s3_list.c — ListObjectsV2, page after page. */
#include <stdlib.h>
#include <string.h>

#include "s3/s3_internal.h"

/* The query string with its keys in sorted order, so that it is also the
 * canonical query string SigV4 signs (curl 7.88 signs it as sent). */
static char *list_query(const char *token, int page_size, const char *prefix)
{
    char *etoken = s3_uri_encode(token ? token : "", 0);
    char *eprefix = s3_uri_encode(prefix ? prefix : "", 0);
    char *q = NULL;
    if (etoken && eprefix &&
        asprintf(&q, "%s%s%slist-type=2&max-keys=%d%s%s", token ? "continuation-token=" : "",
                 token ? etoken : "", token ? "&" : "", page_size, *eprefix ? "&prefix=" : "",
                 eprefix) < 0)
        q = NULL;
    free(etoken);
    free(eprefix);
    return q;
}

int kiln_s3_list(kiln_s3_client *client, const char *bucket, const char *prefix,
                 kiln_s3_list_fn fn, void *ctx, kiln_err *err)
{
    int rc = s3_check_names(bucket, NULL, err);
    if (rc != KILN_OK)
        return rc;
    char *token = NULL;
    s3_list_page page = {0};
    do {
        s3_resp resp = {0};
        char *query = list_query(token, client->cfg.list_page_size, prefix);
        if (!query) {
            rc = kiln_err_set(err, KILN_ENOMEM, "out of memory listing s3://%s", bucket);
            break;
        }
        s3_req req = {.method = "GET", .bucket = bucket, .query = query,
                      .payload_hash = S3_EMPTY_SHA256};
        rc = s3_perform(client, &req, &resp, err);
        if (rc == KILN_OK)
            rc = s3_xml_list(resp.body, resp.body_len, &page, fn, ctx, err);
        free(query);
        s3_resp_free(&resp);
        free(token);
        token = page.next_token;
        page.next_token = NULL;
        /* A truncated page with nothing on it would loop forever. */
        if (rc == KILN_OK && page.truncated && page.count == 0 && !token)
            rc = kiln_err_set(err, KILN_EFORMAT, "s3://%s: empty truncated listing", bucket);
    } while (rc == KILN_OK && page.truncated);
    free(token);
    return rc;
}
