/* Zipping a folder of class folders (libzip), for `kiln data push`. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <zip.h> /* libzip; angle brackets so this never finds data/zip.h */

#include "common/fs.h"
#include "data/zip.h"

#define MAX_DEPTH 64

typedef struct zip_writer {
    zip_t *za;
    const char *root;
    size_t n_files;
} zip_writer;

static int already_compressed(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 ||
                   strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".zip") == 0);
}

static int add_file(zip_writer *w, const char *path, const char *name, kiln_err *err)
{
    zip_source_t *src = zip_source_file(w->za, path, 0, -1);
    if (!src)
        return kiln_err_set(err, KILN_EIO, "cannot read %s: %s", path,
                            zip_strerror(w->za));
    zip_int64_t idx = zip_file_add(w->za, name, src, ZIP_FL_ENC_UTF_8);
    if (idx < 0) {
        zip_source_free(src);
        return kiln_err_set(err, KILN_EIO, "cannot add %s to the zip: %s", path,
                            zip_strerror(w->za));
    }
    if (already_compressed(name) && zip_set_file_compression(w->za, (zip_uint64_t)idx,
                                                             ZIP_CM_STORE, 0) < 0)
        return kiln_err_set(err, KILN_EIO, "cannot store %s: %s", path, zip_strerror(w->za));
    w->n_files++;
    return KILN_OK;
}

static int add_tree(zip_writer *w, const char *rel, int depth, kiln_err *err);

/* One directory entry: recurse into folders, add regular files, refuse the rest. */
static int add_one(zip_writer *w, const char *rel, const char *entry, int depth, kiln_err *err)
{
    char name[4096], path[8192];
    struct stat st;
    int n = rel[0] ? snprintf(name, sizeof name, "%s/%s", rel, entry)
                   : snprintf(name, sizeof name, "%s", entry);
    if (n < 0 || (size_t)n >= sizeof name)
        return kiln_err_set(err, KILN_ELIMIT, "path too long under %s: %s", w->root, entry);
    int rc = kiln_path_join(path, sizeof path, w->root, name, err);
    if (rc != KILN_OK)
        return rc;
    if (lstat(path, &st) != 0)
        return kiln_err_errno(err, errno, "cannot stat %s", path);
    if (S_ISDIR(st.st_mode))
        return add_tree(w, name, depth + 1, err);
    if (S_ISREG(st.st_mode))
        return add_file(w, path, name, err);
    return kiln_err_set(err, KILN_EUNSAFE,
                        "%s is a symlink or special file; only regular files are zipped", path);
}

static int add_tree(zip_writer *w, const char *rel, int depth, kiln_err *err)
{
    char path[8192];
    struct dirent **list = NULL;
    int rc = KILN_OK;
    if (depth > MAX_DEPTH)
        return kiln_err_set(err, KILN_ELIMIT, "%s: folders nested deeper than %d", w->root,
                            MAX_DEPTH);
    rc = rel[0] ? kiln_path_join(path, sizeof path, w->root, rel, err)
                : kiln_path_join(path, sizeof path, w->root, ".", err);
    if (rc != KILN_OK)
        return rc;
    int n = scandir(path, &list, NULL, alphasort);
    if (n < 0)
        return kiln_err_errno(err, errno, "cannot list %s", path);
    for (int i = 0; i < n; i++) {
        const char *e = list[i]->d_name;
        if (rc == KILN_OK && strcmp(e, ".") != 0 && strcmp(e, "..") != 0)
            rc = add_one(w, rel, e, depth, err);
        free(list[i]);
    }
    free(list);
    return rc;
}

int kiln_zip_create_from_dir(const char *dir, const char *zip_path, size_t *n_files,
                             kiln_err *err)
{
    int ze = 0, rc;
    zip_writer w = {.root = dir};
    if (n_files)
        *n_files = 0;
    if (!kiln_is_dir(dir))
        return kiln_err_set(err, KILN_ENOTFOUND, "%s is not a folder", dir);
    w.za = zip_open(zip_path, ZIP_CREATE | ZIP_TRUNCATE, &ze);
    if (!w.za) {
        zip_error_t zerr;
        zip_error_init_with_code(&zerr, ze);
        rc = kiln_err_set(err, KILN_EIO, "cannot create %s: %s", zip_path,
                          zip_error_strerror(&zerr));
        zip_error_fini(&zerr);
        return rc;
    }
    rc = add_tree(&w, "", 0, err);
    if (rc == KILN_OK && w.n_files == 0)
        rc = kiln_err_set(err, KILN_EINVAL, "%s holds no files to zip", dir);
    /* zip_close writes to a temporary file and renames it into place. */
    if (rc == KILN_OK && zip_close(w.za) != 0)
        rc = kiln_err_set(err, KILN_EIO, "cannot write %s: %s", zip_path, zip_strerror(w.za));
    else if (rc == KILN_OK)
        w.za = NULL;
    if (w.za)
        zip_discard(w.za);
    if (rc == KILN_OK && n_files)
        *n_files = w.n_files;
    return rc;
}
