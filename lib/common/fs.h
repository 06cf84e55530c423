/* lib/common/fs.h — files that are never half-written, and small path helpers.
 *
 * An atomic file is written under a temporary name in the destination's
 * directory ("<path>.tmp.XXXXXX"), then flushed, fsync'ed and renamed over
 * the destination, and the directory is fsync'ed, so a reader sees either
 * the old file or the whole new one. A crash leaves at most a ".tmp." file.
 */
#ifndef KILN_COMMON_FS_H
#define KILN_COMMON_FS_H

#include <stdint.h>
#include <stdio.h>

#include "common/err.h"

typedef struct kiln_atomic_file kiln_atomic_file;

/* Create the temporary file next to `path`. Returns NULL on failure. */
kiln_atomic_file *kiln_atomic_open(const char *path, kiln_err *err);

/* The stream to write into; owned by the atomic file. */
FILE *kiln_atomic_stream(kiln_atomic_file *f);

/* Flush, fsync, rename over the destination, fsync the directory, free `f`.
 * On failure the temporary file is removed and `f` is freed all the same. */
int kiln_atomic_commit(kiln_atomic_file *f, kiln_err *err);

/* Remove the temporary file and free `f` (NULL is fine). */
void kiln_atomic_abort(kiln_atomic_file *f);

/* Whole-buffer convenience over the three calls above. */
int kiln_write_file_atomic(const char *path, const void *data, size_t len, kiln_err *err);

/* Read a whole file into a malloc'ed buffer (NUL-terminated, `*len`
 * excludes the NUL); the caller frees `*data`. `max_len` 0 = no limit. */
int kiln_read_file(const char *path, size_t max_len, char **data, size_t *len, kiln_err *err);

/* mkdir -p with mode 0755. */
int kiln_mkdir_p(const char *path, kiln_err *err);

/* mkdir -p of the directory holding `path` (its dirname), so a file can be
 * created at `path`. Nothing to do for a bare file name. */
int kiln_mkdir_parent(const char *path, kiln_err *err);

/* Join two path parts with one '/' into `out`; ELIMIT if it does not fit. */
int kiln_path_join(char *out, size_t out_size, const char *a, const char *b, kiln_err *err);

/* 1 if a regular file / directory exists at `path`, 0 otherwise. */
int kiln_is_file(const char *path);
int kiln_is_dir(const char *path);

/* SHA-256 of a file as 64 lowercase hex characters + NUL. */
int kiln_sha256_file(const char *path, char hex_out[65], kiln_err *err);

#endif
