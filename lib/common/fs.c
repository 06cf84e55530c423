#include "common/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct kiln_atomic_file {
    FILE *stream;
    char *path;
    char *tmp_path;
};

kiln_atomic_file *kiln_atomic_open(const char *path, kiln_err *err)
{
    kiln_atomic_file *f = calloc(1, sizeof *f);
    int fd = -1;
    if (!f)
        goto nomem;
    f->path = strdup(path);
    if (!f->path || asprintf(&f->tmp_path, "%s.tmp.XXXXXX", path) < 0) {
        f->tmp_path = NULL;
        goto nomem;
    }
    fd = mkstemp(f->tmp_path);
    if (fd < 0) {
        kiln_err_errno(err, errno, "cannot create a temporary file for %s", path);
        goto fail;
    }
    /* mkstemp makes 0600; a dataset or model file is meant to be shared. */
    fchmod(fd, 0644);
    f->stream = fdopen(fd, "wb");
    if (!f->stream) {
        kiln_err_errno(err, errno, "cannot open %s", f->tmp_path);
        close(fd);
        unlink(f->tmp_path);
        goto fail;
    }
    return f;
nomem:
    kiln_err_set(err, KILN_ENOMEM, "out of memory opening %s", path);
fail:
    if (f) {
        free(f->path);
        free(f->tmp_path);
        free(f);
    }
    return NULL;
}

FILE *kiln_atomic_stream(kiln_atomic_file *f)
{
    return f->stream;
}

static void free_atomic(kiln_atomic_file *f)
{
    free(f->path);
    free(f->tmp_path);
    free(f);
}

static void fsync_parent_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(copy);
}

int kiln_atomic_commit(kiln_atomic_file *f, kiln_err *err)
{
    int rc = KILN_OK;
    if (fflush(f->stream) != 0 || ferror(f->stream))
        rc = kiln_err_errno(err, errno, "cannot write %s", f->path);
    else if (fsync(fileno(f->stream)) != 0)
        rc = kiln_err_errno(err, errno, "cannot sync %s", f->path);
    if (fclose(f->stream) != 0 && rc == KILN_OK)
        rc = kiln_err_errno(err, errno, "cannot close %s", f->path);
    f->stream = NULL;
    if (rc == KILN_OK && rename(f->tmp_path, f->path) != 0)
        rc = kiln_err_errno(err, errno, "cannot rename %s to %s", f->tmp_path, f->path);
    if (rc != KILN_OK)
        unlink(f->tmp_path);
    else
        fsync_parent_dir(f->path);
    free_atomic(f);
    return rc;
}

void kiln_atomic_abort(kiln_atomic_file *f)
{
    if (!f)
        return;
    if (f->stream)
        fclose(f->stream);
    unlink(f->tmp_path);
    free_atomic(f);
}

int kiln_write_file_atomic(const char *path, const void *data, size_t len, kiln_err *err)
{
    kiln_atomic_file *f = kiln_atomic_open(path, err);
    if (!f)
        return err ? (int)err->code : KILN_EIO;
    if (len && fwrite(data, 1, len, kiln_atomic_stream(f)) != len) {
        int e = errno;
        kiln_atomic_abort(f);
        return kiln_err_errno(err, e, "cannot write %s", path);
    }
    return kiln_atomic_commit(f, err);
}

int kiln_read_file(const char *path, size_t max_len, char **data, size_t *len, kiln_err *err)
{
    int rc = KILN_OK;
    char *buf = NULL;
    FILE *fp = fopen(path, "rb");
    struct stat st;
    *data = NULL;
    *len = 0;
    if (!fp)
        return kiln_err_errno(err, errno, "cannot open %s", path);
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = kiln_err_set(err, KILN_EIO, "%s is not a regular file", path);
        goto fail;
    }
    if (max_len && (uint64_t)st.st_size > max_len) {
        rc = kiln_err_set(err, KILN_ELIMIT, "%s is %lld bytes, over the limit of %zu", path,
                          (long long)st.st_size, max_len);
        goto fail;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        rc = kiln_err_set(err, KILN_ENOMEM, "out of memory reading %s", path);
        goto fail;
    }
    if (fread(buf, 1, (size_t)st.st_size, fp) != (size_t)st.st_size) {
        rc = kiln_err_errno(err, errno, "cannot read %s", path);
        goto fail;
    }
    buf[st.st_size] = '\0';
    *data = buf;
    *len = (size_t)st.st_size;
    fclose(fp);
    return KILN_OK;
fail:
    free(buf);
    fclose(fp);
    return rc;
}

int kiln_mkdir_p(const char *path, kiln_err *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return kiln_err_set(err, KILN_EINVAL, "invalid directory path '%s'", path);
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return kiln_err_errno(err, errno, "cannot create directory %s", buf);
            if (!kiln_is_dir(buf))
                return kiln_err_set(err, KILN_EIO, "%s exists and is not a directory", buf);
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    return KILN_OK;
}

int kiln_mkdir_parent(const char *path, kiln_err *err)
{
    char *copy = strdup(path);
    if (!copy)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory making the directory of %s", path);
    int rc = kiln_mkdir_p(dirname(copy), err);
    free(copy);
    return rc;
}

int kiln_path_join(char *out, size_t out_size, const char *a, const char *b, kiln_err *err)
{
    size_t la = strlen(a);
    const char *sep = (la > 0 && a[la - 1] == '/') ? "" : "/";
    int n = snprintf(out, out_size, "%s%s%s", a, sep, b);
    if (n < 0 || (size_t)n >= out_size)
        return kiln_err_set(err, KILN_ELIMIT, "path too long: %s/%s", a, b);
    return KILN_OK;
}

int kiln_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int kiln_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int kiln_sha256_file(const char *path, char hex_out[65], kiln_err *err)
{
    int rc = KILN_OK;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    unsigned char buf[1 << 16];
    size_t n;
    EVP_MD_CTX *ctx = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return kiln_err_errno(err, errno, "cannot open %s", path);
    ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        rc = kiln_err_set(err, KILN_ENOMEM, "cannot start SHA-256 of %s", path);
        goto fail;
    }
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
        EVP_DigestUpdate(ctx, buf, n);
    if (ferror(fp)) {
        rc = kiln_err_errno(err, errno, "cannot read %s", path);
        goto fail;
    }
    EVP_DigestFinal_ex(ctx, digest, &dlen);
    for (unsigned int i = 0; i < dlen; i++)
        snprintf(hex_out + 2 * i, 3, "%02x", digest[i]);
fail:
    EVP_MD_CTX_free(ctx);
    fclose(fp);
    return rc;
}
