/* tests/support/zipbuild.h — building (and spoiling) zips for tests with libzip. */
#ifndef KILN_TEST_ZIPBUILD_H
#define KILN_TEST_ZIPBUILD_H

#include <stddef.h>
#include <stdint.h>

typedef struct kt_zip_entry {
    const char *name;      /* stored as is; NULL ends the array */
    const void *data;      /* may be NULL when len is 0 */
    size_t len;
    int is_dir;            /* add with zip_dir_add (libzip appends the '/') */
    int store;             /* 1: stored; 0: deflated */
    uint32_t unix_mode;    /* 0: libzip's default; else e.g. S_IFLNK | 0777 */
    const char *password;  /* non-NULL: encrypted with ZIP_EM_AES_256 */
} kt_zip_entry;

/* Write a zip of `entries` (up to the one with a NULL name) at `path`;
 * fails the test on any libzip error. Needs at least one entry: libzip
 * does not write empty archives (see kt_zip_write_empty). */
void kt_zip_build(const char *path, const kt_zip_entry *entries);

/* Write an empty zip: the 22-byte end-of-central-directory record alone. */
void kt_zip_write_empty(const char *path);

/* Read a whole file into a malloc'ed buffer (fails the test on error). */
uint8_t *kt_read_all(const char *path, size_t *len);

/* Offset of entry `name`'s data in a zip image, from its local header;
 * fails the test if there is no such local header. */
size_t kt_zip_data_offset(const uint8_t *zip, size_t len, const char *name);

/* Rewrite the declared uncompressed size of entry `name` in both its local
 * and central headers, to make a zip that lies about its size. */
void kt_zip_patch_size(const char *path, const char *name, uint32_t size);

#endif
