/* lib/s3/s3_xml.c — the XML S3 speaks, read and written with libxml2.
 *
 * Answers are parsed with XML_PARSE_NONET and without XML_PARSE_NOENT or
 * DTD loading, so a hostile server cannot make the parser fetch anything
 * or expand entities. Elements are matched by local name, whatever the
 * namespace (AWS, MinIO and s3rver do not agree on one).
 */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdlib.h>
#include <string.h>

#include "s3/s3_internal.h"

#define S3_XMLNS "http://s3.amazonaws.com/doc/2006-03-01/"

static xmlDocPtr parse(const char *body, size_t len)
{
    if (!body || len == 0 || len > (size_t)S3_MAX_XML_BODY)
        return NULL;
    return xmlReadMemory(body, (int)len, "s3.xml", NULL,
                         XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

static int named(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

static const xmlNode *child(const xmlNode *parent, const char *name)
{
    for (const xmlNode *n = parent ? parent->children : NULL; n; n = n->next)
        if (named(n, name))
            return n;
    return NULL;
}

/* The text of `parent`'s child `name` into `out` ("" when absent);
 * 1 if the child exists. */
static int child_text(const xmlNode *parent, const char *name, char *out, size_t size)
{
    const xmlNode *n = child(parent, name);
    out[0] = '\0';
    if (!n)
        return 0;
    xmlChar *text = xmlNodeGetContent(n);
    snprintf(out, size, "%s", text ? (const char *)text : "");
    xmlFree(text);
    return 1;
}

static void strip_quotes(char *s)
{
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        memmove(s, s + 1, n - 2);
        s[n - 2] = '\0';
    }
}

int s3_xml_error(const char *body, size_t len, char *code, size_t code_size, char *msg,
                 size_t msg_size)
{
    xmlDocPtr doc = parse(body, len);
    const xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
    int found = root && named(root, "Error") && child_text(root, "Code", code, code_size);
    if (found)
        child_text(root, "Message", msg, msg_size);
    xmlFreeDoc(doc);
    return found;
}

static int bad_xml(kiln_err *err, const char *what)
{
    return kiln_err_set(err, KILN_EFORMAT, "the S3 server's answer is not a valid %s", what);
}

static int list_entry(const xmlNode *n, kiln_s3_list_fn fn, void *ctx, kiln_err *err)
{
    kiln_s3_object_info info;
    char size[32];
    memset(&info, 0, sizeof info);
    if (!child_text(n, "Key", info.key, sizeof info.key) || !child_text(n, "Size", size, sizeof size))
        return bad_xml(err, "listing (Contents without Key or Size)");
    char *end = NULL;
    info.size = strtoull(size, &end, 10);
    if (end == size || *end)
        return bad_xml(err, "listing (Size is not a number)");
    child_text(n, "ETag", info.etag, sizeof info.etag);
    strip_quotes(info.etag);
    child_text(n, "LastModified", info.last_modified, sizeof info.last_modified);
    return fn(&info, ctx, err);
}

int s3_xml_list(const char *body, size_t len, s3_list_page *page, kiln_s3_list_fn fn,
                void *ctx, kiln_err *err)
{
    int rc = KILN_OK;
    char flag[16], token[2048];
    memset(page, 0, sizeof *page);
    xmlDocPtr doc = parse(body, len);
    const xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!root || !named(root, "ListBucketResult")) {
        rc = bad_xml(err, "ListBucketResult");
        goto fail;
    }
    for (const xmlNode *n = root->children; n && rc == KILN_OK; n = n->next)
        if (named(n, "Contents")) {
            rc = list_entry(n, fn, ctx, err);
            page->count++;
        }
    if (rc != KILN_OK)
        goto fail;
    child_text(root, "IsTruncated", flag, sizeof flag);
    page->truncated = strcmp(flag, "true") == 0;
    if (page->truncated) {
        if (!child_text(root, "NextContinuationToken", token, sizeof token) || !token[0]) {
            rc = bad_xml(err, "listing (truncated without NextContinuationToken)");
            goto fail;
        }
        page->next_token = strdup(token);
        if (!page->next_token)
            rc = kiln_err_set(err, KILN_ENOMEM, "out of memory reading a listing");
    }
fail:
    xmlFreeDoc(doc);
    return rc;
}

int s3_xml_upload_id(const char *body, size_t len, char **upload_id, kiln_err *err)
{
    int rc = KILN_OK;
    char id[1024];
    xmlDocPtr doc = parse(body, len);
    const xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!root || !named(root, "InitiateMultipartUploadResult") ||
        !child_text(root, "UploadId", id, sizeof id) || !id[0]) {
        rc = bad_xml(err, "InitiateMultipartUploadResult");
        goto fail;
    }
    *upload_id = strdup(id);
    if (!*upload_id)
        rc = kiln_err_set(err, KILN_ENOMEM, "out of memory");
fail:
    xmlFreeDoc(doc);
    return rc;
}

int s3_xml_complete_etag(const char *body, size_t len, char *etag, size_t size, kiln_err *err)
{
    int rc = KILN_OK;
    xmlDocPtr doc = parse(body, len);
    const xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
    if (!root || !named(root, "CompleteMultipartUploadResult")) {
        rc = bad_xml(err, "CompleteMultipartUploadResult");
        goto fail;
    }
    child_text(root, "ETag", etag, size);
    strip_quotes(etag);
fail:
    xmlFreeDoc(doc);
    return rc;
}

/* A document whose root element `name` is in S3's namespace; NULL when out
 * of memory. The caller frees it with xmlFreeDoc. */
static xmlDocPtr new_s3_doc(const char *name, xmlNodePtr *root)
{
    xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    *root = doc ? xmlNewNode(NULL, BAD_CAST name) : NULL;
    if (!*root) {
        xmlFreeDoc(doc);
        return NULL;
    }
    xmlDocSetRootElement(doc, *root);
    xmlNsPtr ns = xmlNewNs(*root, BAD_CAST S3_XMLNS, NULL);
    if (!ns) {
        xmlFreeDoc(doc);
        return NULL;
    }
    xmlSetNs(*root, ns);
    return doc;
}

/* The document as a malloc'ed, NUL-terminated UTF-8 string. */
static int dump_doc(xmlDocPtr doc, char **out, size_t *len)
{
    xmlChar *mem = NULL;
    int mem_len = 0;
    xmlDocDumpMemoryEnc(doc, &mem, &mem_len, "UTF-8");
    if (!mem || mem_len <= 0 || !(*out = malloc((size_t)mem_len + 1))) {
        xmlFree(mem);
        return KILN_ENOMEM;
    }
    memcpy(*out, mem, (size_t)mem_len);
    (*out)[mem_len] = '\0';
    *len = (size_t)mem_len;
    xmlFree(mem);
    return KILN_OK;
}

/* <CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"…"</ETag>
 * </Part>…</CompleteMultipartUpload>, built as a tree so values are
 * escaped by libxml2 rather than pasted into a string. */
int s3_xml_complete_body(const s3_part *parts, int n, char **out, size_t *len, kiln_err *err)
{
    int rc = KILN_OK;
    xmlNodePtr root = NULL;
    xmlDocPtr doc = new_s3_doc("CompleteMultipartUpload", &root);
    if (!doc)
        goto nomem;
    for (int i = 0; i < n; i++) {
        char num[16], etag[132];
        snprintf(num, sizeof num, "%d", parts[i].number);
        snprintf(etag, sizeof etag, "\"%s\"", parts[i].etag);
        xmlNodePtr p = xmlNewChild(root, NULL, BAD_CAST "Part", NULL);
        if (!p || !xmlNewTextChild(p, NULL, BAD_CAST "PartNumber", BAD_CAST num) ||
            !xmlNewTextChild(p, NULL, BAD_CAST "ETag", BAD_CAST etag))
            goto nomem;
    }
    if (dump_doc(doc, out, len) != KILN_OK)
        goto nomem;
    goto done;
nomem:
    rc = kiln_err_set(err, KILN_ENOMEM, "out of memory building CompleteMultipartUpload");
done:
    xmlFreeDoc(doc);
    return rc;
}

/* <CreateBucketConfiguration><LocationConstraint>region</…></…>. */
int s3_xml_create_bucket_body(const char *region, char **out, size_t *len, kiln_err *err)
{
    int rc = KILN_OK;
    xmlNodePtr root = NULL;
    xmlDocPtr doc = new_s3_doc("CreateBucketConfiguration", &root);
    if (!doc)
        goto nomem;
    if (!xmlNewTextChild(root, NULL, BAD_CAST "LocationConstraint", BAD_CAST region))
        goto nomem;
    if (dump_doc(doc, out, len) != KILN_OK)
        goto nomem;
    goto done;
nomem:
    rc = kiln_err_set(err, KILN_ENOMEM, "out of memory building CreateBucketConfiguration");
done:
    xmlFreeDoc(doc);
    return rc;
}
