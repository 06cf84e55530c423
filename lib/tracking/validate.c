/* lib/tracking/validate.c — MLflow's input rules (mlflow/utils/validation.py)
 * with its messages, and the small generators (ids, times, run names).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "tracking/tracking_internal.h"

#define BAD_CHARS                                                                              \
    "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( " \
    "), and slashes (/)."

/* Python counts characters, not bytes: count UTF-8 code points. */
static size_t char_count(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        n += (*p & 0xC0) != 0x80;
    return n;
}

int trk_check_len(trk_req *r, const char *entity, size_t limit, const char *value)
{
    if (!value)
        return 0;
    size_t n = char_count(value);
    if (n <= limit)
        return 0;
    return trk_fail(r, TRK_INVALID, "%s '%.250s' had length %zu, which exceeded length limit of %zu",
                    entity, value, n, limit);
}

/* \w in Python 3 matches any Unicode letter or digit: bytes >= 0x80 are
 * taken as such. */
static int word_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c >= 0x80;
}

/* posixpath.normpath into `out`. */
static void normpath(const char *path, char *out, size_t size)
{
    const char *segs[256];
    size_t lens[256];
    int n = 0;
    int absolute = path[0] == '/';
    for (const char *p = path; *p;) {
        while (*p == '/')
            p++;
        const char *start = p;
        while (*p && *p != '/')
            p++;
        size_t len = (size_t)(p - start);
        if (len == 0 || (len == 1 && start[0] == '.'))
            continue;
        if (len == 2 && start[0] == '.' && start[1] == '.') {
            if (n > 0 && !(lens[n - 1] == 2 && strncmp(segs[n - 1], "..", 2) == 0)) {
                n--;
                continue;
            }
            if (absolute)
                continue;
        }
        if (n < 256) {
            segs[n] = start;
            lens[n++] = len;
        }
    }
    size_t used = 0;
    out[0] = '\0';
    if (absolute)
        used += (size_t)snprintf(out, size, "/");
    for (int i = 0; i < n && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%.*s", i ? "/" : "", (int)lens[i],
                                 segs[i]);
    if (!out[0])
        snprintf(out, size, ".");
}

int trk_check_key(trk_req *r, const char *what, const char *key)
{
    char norm[1024];
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        if (!word_byte(*p) && *p != '/' && *p != '.' && *p != '-' && *p != ' ')
            return trk_fail(r, TRK_INVALID, "Invalid %s name: '%.300s'. " BAD_CHARS, what, key);
    normpath(key, norm, sizeof norm);
    if (strcmp(norm, key) != 0 || strcmp(norm, ".") == 0 || strncmp(norm, "..", 2) == 0 ||
        norm[0] == '/')
        return trk_fail(r, TRK_INVALID,
                        "Invalid %s name: '%.300s'. Names may be treated as files in certain "
                        "cases, and must not resolve to other names when treated as such. This "
                        "name would resolve to '%.300s'",
                        what, key, norm);
    return 0;
}

const trk_tag_rule trk_run_tags = {"Tag key", "Tag value", TRK_MAX_TAG_VAL_LEN};
const trk_tag_rule trk_experiment_tags = {"Tag key", "Tag value", TRK_MAX_EXP_TAG_VAL_LEN};
const trk_tag_rule trk_model_tags = {"Registered model key", "Registered model value",
                                     TRK_MAX_REGISTRY_TAG_VAL_LEN};
const trk_tag_rule trk_version_tags = {"Model version key", "Model version value",
                                       TRK_MAX_REGISTRY_TAG_VAL_LEN};

int trk_check_tag(trk_req *r, const trk_tag_rule *rule, const char *key, const char *value)
{
    if (trk_check_key(r, "tag", key) != 0 ||
        trk_check_len(r, rule->key_name, TRK_MAX_KEY_LEN, key) != 0)
        return -1;
    return trk_check_len(r, rule->value_name, rule->value_limit, value ? value : "");
}

int trk_req_tag_at(trk_req *r, const cJSON *tags, int i, const trk_tag_rule *rule,
                   const char **key, const char **value)
{
    const cJSON *tag = cJSON_GetArrayItem(tags, i);
    if (trk_item_str(r, tag, "tags", i, "key", 1, key) != 0 ||
        trk_item_str(r, tag, "tags", i, "value", 0, value) != 0)
        return -1;
    if (!*value)
        *value = "";
    return trk_check_tag(r, rule, *key, *value);
}

int trk_check_alias(trk_req *r, const char *alias)
{
    if (!alias || !*alias)
        return trk_fail(r, TRK_INVALID, "Registered model alias name cannot be empty.");
    for (const unsigned char *p = (const unsigned char *)alias; *p; p++)
        if (!word_byte(*p) && *p != '-')
            return trk_fail(r, TRK_INVALID,
                            "Invalid alias name: '%.300s'. Names may only contain alphanumerics, "
                            "underscores (_), and dashes (-).",
                            alias);
    if (trk_check_len(r, "Registered model alias name", TRK_MAX_ALIAS_LEN, alias) != 0)
        return -1;
    if (strcasecmp(alias, "latest") == 0)
        return trk_fail(r, TRK_INVALID, "'latest' alias name (case insensitive) is reserved.");
    if ((alias[0] == 'v' || alias[0] == 'V') && alias[1] &&
        strspn(alias + 1, "0123456789") == strlen(alias + 1))
        return trk_fail(r, TRK_INVALID, "Version alias name '%s' is reserved.", alias);
    return 0;
}

int trk_parse_exp_id(trk_req *r, const char *s, int64_t *out)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 18 || strspn(s, "0123456789") != n)
        return trk_fail(r, TRK_NOT_FOUND, "No Experiment with id=%.100s exists", s ? s : "");
    *out = strtoll(s, NULL, 10);
    return 0;
}

int64_t trk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int random_bytes(unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = getrandom(buf + got, n - got, 0);
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    return 0;
}

int trk_new_run_id(char out[33])
{
    unsigned char b[16];
    if (random_bytes(b, sizeof b) != 0)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);  /* UUID version 4 */
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);  /* RFC 4122 variant */
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    return 0;
}

/* Our own word lists; MLflow names runs "<adjective>-<noun>-<number>". */
static const char *const adjectives[] = {
    "amber",   "bold",    "brisk",   "calm",    "clever",  "crisp",   "daring",  "eager",
    "fancy",   "gentle",  "glowing", "honest",  "jolly",   "keen",    "lively",  "lucky",
    "merry",   "mighty",  "nimble",  "patient", "polite",  "proud",   "quiet",   "rapid",
    "silent",  "smooth",  "steady",  "sunny",   "swift",   "tidy",    "vivid",   "wise",
};
static const char *const nouns[] = {
    "ant",     "badger",  "bee",     "bison",   "crane",   "deer",    "dove",    "eagle",
    "falcon",  "finch",   "fox",     "gull",    "hare",    "heron",   "ibis",    "jay",
    "kestrel", "koala",   "lark",    "lynx",    "mole",    "newt",    "otter",   "owl",
    "panda",   "quail",   "raven",   "seal",    "shrew",   "stoat",   "toad",    "wren",
};

void trk_random_run_name(char *out, size_t size)
{
    unsigned char b[4] = {0};
    if (random_bytes(b, sizeof b) != 0) {
        int64_t now = trk_now_ms();
        memcpy(b, &now, sizeof b);
    }
    size_t na = sizeof adjectives / sizeof adjectives[0];
    size_t nn = sizeof nouns / sizeof nouns[0];
    unsigned number = ((unsigned)b[2] << 8 | b[3]) % 1000;
    snprintf(out, size, "%s-%s-%u", adjectives[b[0] % na], nouns[b[1] % nn], number);
}
