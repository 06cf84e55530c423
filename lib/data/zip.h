/* lib/data/zip.h — reading user-uploaded zips safely (libzip).
 *
 * kiln_zip_open validates every entry before anything is extracted and
 * fails with a message naming the zip and the entry when one is unsafe:
 *   - KILN_EUNSAFE: absolute names ("/etc/x", "C:\x"), ".." components
 *     (zip-slip), symlink entries (unix mode S_IFLNK in external attributes);
 *   - KILN_EUNSUPPORTED: encrypted entries;
 *   - KILN_ELIMIT: too many entries, an entry or the total declared
 *     uncompressed size over the limits, or an entry over
 *     KILN_ZIP_RATIO_MIN_BYTES whose declared compression ratio is over
 *     max_ratio (a zip bomb);
 *   - KILN_EFORMAT: not a zip, an empty file, a truncated or inconsistent zip.
 * kiln_zip_read enforces the limits again on the bytes actually inflated,
 * since a hostile zip can declare small sizes and inflate to more: it stops
 * (ELIMIT) as soon as an entry inflates past its declared size, which the
 * limits were checked against at open.
 *
 * Entry names are normalised: backslashes become '/', "./" and repeated
 * slashes are removed; entries left with an empty name ("./") are dropped.
 * Directory entries (name ending in '/' or '\') are listed with is_dir set.
 * Messages show names with control bytes escaped. The reader never writes
 * to disk. Ownership: the kiln_zip owns its entries and names;
 * buffers returned by kiln_zip_read belong to the caller (free()).
 * A kiln_zip is not thread-safe; open one per thread.
 */
#ifndef KILN_DATA_ZIP_H
#define KILN_DATA_ZIP_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct kiln_zip_limits {
    uint64_t max_entries;          /* default 1,000,000 */
    uint64_t max_entry_bytes;      /* default 256 MiB uncompressed per entry */
    uint64_t max_total_bytes;      /* default 64 GiB uncompressed in all */
    double max_ratio;              /* default 200 (uncompressed / compressed) */
} kiln_zip_limits;

/* Entries this small are exempt from max_ratio: a small file of zeros or
 * blank text compresses far past 200 and is no bomb; max_total_bytes still
 * bounds many of them together. */
#define KILN_ZIP_RATIO_MIN_BYTES ((uint64_t)1 << 20)

void kiln_zip_limits_default(kiln_zip_limits *limits);

typedef struct kiln_zip_entry {
    const char *name;      /* normalised relative path, never absolute, no ".." */
    uint64_t size;         /* declared uncompressed size */
    uint64_t comp_size;    /* declared compressed size */
    int is_dir;
} kiln_zip_entry;

typedef struct kiln_zip kiln_zip;

/* Open and validate a zip file. `limits` NULL = defaults (max_ratio must be
 * > 0). NULL on failure; ENOTFOUND when there is no such file. */
kiln_zip *kiln_zip_open(const char *path, const kiln_zip_limits *limits, kiln_err *err);

/* The same from memory (for fuzzing and tests); `data` must outlive the zip. */
kiln_zip *kiln_zip_open_buffer(const void *data, size_t len, const kiln_zip_limits *limits,
                               kiln_err *err);

size_t kiln_zip_count(const kiln_zip *zip);
const kiln_zip_entry *kiln_zip_entry_at(const kiln_zip *zip, size_t index);

/* Inflate entry `index` into a malloc'ed buffer (NUL-terminated, `*len`
 * excludes the NUL); CRC checked by libzip. EFORMAT on corrupt data,
 * ELIMIT when it inflates past its declared size, EINVAL for a directory
 * or an index out of range. */
int kiln_zip_read(kiln_zip *zip, size_t index, uint8_t **data, size_t *len, kiln_err *err);

void kiln_zip_close(kiln_zip *zip);

/* ---- writing ---- */

/* Zip the regular files under `dir` (recursively, in sorted order) into
 * `zip_path`, with names relative to `dir` ("dry/a.jpg"). JPEG and PNG
 * files are stored (they do not compress), others deflated. libzip writes
 * the archive under a temporary name and renames it at the end, so
 * `zip_path` is never half-written. A symlink or special file under `dir`
 * is an error (KILN_EUNSAFE), as it would be in an uploaded zip.
 * `n_files` (may be NULL) receives the number of files added. */
int kiln_zip_create_from_dir(const char *dir, const char *zip_path, size_t *n_files,
                             kiln_err *err);

#endif
