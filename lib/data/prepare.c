/* kiln_prepare: decode the plan's images on a thread pool, chunk by chunk,
 * and stream them into shards in a staging directory; publish at the end. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/pool.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/prepare_internal.h"

#define CHUNK_PER_THREAD 32
#define SHARD_TARGET_BYTES (256u << 20)

static const double imagenet_mean[3] = {0.485, 0.456, 0.406};
static const double imagenet_std[3] = {0.229, 0.224, 0.225};

void kiln_prepare_opts_default(kiln_prepare_opts *o)
{
    memset(o, 0, sizeof *o);
    o->image_size = 224;
    o->val_fraction = 0.15;
    o->test_fraction = 0.15;
    o->seed = 42;
    o->threads = 1;
    o->max_bad_fraction = 0.1;
    kiln_zip_limits_default(&o->limits);
}

/* One decoded image (or the reason it failed), filled by a worker. */
typedef struct slot {
    int ok;
    char reason[512];
    uint8_t *pixels;   /* size * size * 3, owned by the chunk */
} slot;

typedef struct decode_job {
    const kiln_prepare_opts *opts;
    const prep_plan *plan;
    kiln_zip **zips;      /* one per worker */
    kiln_err *worker_err; /* one per worker: fatal errors */
    slot *slots;
    size_t first;         /* plan index of slots[0] */
} decode_job;

/* Everything that is written, and the running totals for the manifest. */
typedef struct writer_state {
    const kiln_prepare_opts *opts;
    const prep_plan *plan;
    char staging[4096];
    kiln_shard_writer *shard;
    int shard_split;
    uint32_t shard_index[KILN_SPLIT_COUNT];
    kiln_manifest *m;
    int dry_run;          /* validate only: decode and count, write nothing */
    uint32_t undecodable;
    double sum[3], sumsq[3];
    uint64_t train_pixels;
} writer_state;

/* ---------------- decoding (worker threads) ---------------- */

static int decode_one(void *ctx, size_t i, int worker)
{
    decode_job *job = ctx;
    const prep_item *it = &job->plan->items[job->first + i];
    slot *s = &job->slots[i];
    int size = job->opts->image_size;
    kiln_err e = {0};
    uint8_t *bytes = NULL;
    size_t len = 0;
    kiln_image img = {0}, out = {0};
    kiln_decode_opts dopts = {.min_side = size, .max_pixels = 0};
    s->ok = 0;
    /* A zip that fails to inflate is corrupt or hostile: stop everything. */
    if (kiln_zip_read(job->zips[worker], it->zip_index, &bytes, &len, &job->worker_err[worker]) !=
        KILN_OK)
        return job->worker_err[worker].code;
    if (kiln_image_decode(bytes, len, &dopts, &img, &e) == KILN_OK &&
        kiln_image_resize_center_crop(&img, size, &out, &e) == KILN_OK) {
        memcpy(s->pixels, out.pixels, (size_t)size * size * 3);
        s->ok = 1;
    } else {
        snprintf(s->reason, sizeof s->reason, "cannot decode: %s", e.msg);
    }
    kiln_image_free(&out);
    kiln_image_free(&img);
    free(bytes);
    return 0;
}

/* ---------------- writing (calling thread) ---------------- */

static int close_shard(writer_state *w, kiln_err *err)
{
    if (!w->shard)
        return KILN_OK;
    kiln_manifest_split *sp = &w->m->splits[w->shard_split];
    uint32_t count = kiln_shard_writer_count(w->shard);
    char name[64];
    snprintf(name, sizeof name, "%s-%05u.kshard", kiln_split_name(w->shard_split),
             w->shard_index[w->shard_split]++);
    int rc = kiln_shard_writer_commit(w->shard, err);
    w->shard = NULL;
    if (rc != KILN_OK)
        return rc;
    kiln_manifest_shard *v = realloc(sp->shards, (sp->n_shards + 1) * sizeof *v);
    if (!v)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory listing shards");
    sp->shards = v;
    v[sp->n_shards].file = strdup(name);
    v[sp->n_shards].count = count;
    if (!v[sp->n_shards].file)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory listing shards");
    sp->n_shards++;
    return KILN_OK;
}

static uint32_t shard_capacity(const kiln_prepare_opts *o)
{
    if (o->shard_max_images)
        return o->shard_max_images;
    uint32_t per = SHARD_TARGET_BYTES / ((uint32_t)o->image_size * o->image_size * 3);
    return per ? per : 1;
}

static int open_shard(writer_state *w, int split, kiln_err *err)
{
    char path[4096], name[64];
    snprintf(name, sizeof name, "%s-%05u.kshard", kiln_split_name(split),
             w->shard_index[split]);
    int rc = kiln_path_join(path, sizeof path, w->staging, name, err);
    if (rc != KILN_OK)
        return rc;
    uint32_t size = (uint32_t)w->opts->image_size;
    w->shard = kiln_shard_writer_open(path, size, size, err);
    w->shard_split = split;
    return w->shard ? KILN_OK : (err ? (int)err->code : KILN_EIO);
}

static void add_stats(writer_state *w, const uint8_t *px)
{
    size_t n = (size_t)w->opts->image_size * w->opts->image_size;
    uint64_t s[3] = {0}, q[3] = {0};
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) {
            uint32_t v = px[3 * i + c];
            s[c] += v;
            q[c] += v * v;
        }
    for (int c = 0; c < 3; c++) {
        w->sum[c] += (double)s[c];
        w->sumsq[c] += (double)q[c];
    }
    w->train_pixels += n;
}

static int write_good(writer_state *w, const prep_item *it, const uint8_t *px, kiln_err *err)
{
    int rc = KILN_OK;
    if (!w->dry_run && w->shard && (w->shard_split != it->split ||
                     kiln_shard_writer_count(w->shard) >= shard_capacity(w->opts)))
        rc = close_shard(w, err);
    if (!w->dry_run && rc == KILN_OK && !w->shard)
        rc = open_shard(w, it->split, err);
    if (!w->dry_run && rc == KILN_OK)
        rc = kiln_shard_writer_add(w->shard, px, it->label, err);
    if (rc != KILN_OK)
        return rc;
    kiln_manifest_split *sp = &w->m->splits[it->split];
    sp->count++;
    sp->per_class[it->label]++;
    if (it->split == KILN_SPLIT_TRAIN && w->opts->normalize_dataset)
        add_stats(w, px);
    return KILN_OK;
}

static int write_chunk(writer_state *w, const slot *slots, size_t first, size_t n,
                       prep_skips *bad, kiln_err *err)
{
    for (size_t i = 0; i < n; i++) {
        const prep_item *it = &w->plan->items[first + i];
        int rc = slots[i].ok ? write_good(w, it, slots[i].pixels, err)
                             : prep_skips_add(bad, it->name, slots[i].reason, err);
        if (rc != KILN_OK)
            return rc;
        if (!slots[i].ok)
            w->undecodable++;
    }
    return KILN_OK;
}

/* ---------------- staging directory ---------------- */

static int make_staging(const char *out_dir, char *staging, size_t n, kiln_err *err)
{
    int rc = kiln_mkdir_p(out_dir, err);
    if (rc != KILN_OK)
        return rc;
    rc = kiln_path_join(staging, n, out_dir, ".kiln-prepare-XXXXXX", err);
    if (rc == KILN_OK && !mkdtemp(staging))
        rc = kiln_err_errno(err, errno, "cannot create a staging directory in %s", out_dir);
    return rc;
}

/* The staging directory only ever holds files kiln wrote. */
static void remove_staging(const char *staging)
{
    DIR *d = opendir(staging);
    struct dirent *de;
    char path[4096];
    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (kiln_path_join(path, sizeof path, staging, de->d_name, NULL) == KILN_OK)
            unlink(path);
    }
    closedir(d);
    rmdir(staging);
}

/* ---------------- the decode/write loop ---------------- */

static int open_worker_zips(decode_job *job, kiln_zip *main_zip, int threads, kiln_err *err)
{
    job->zips[0] = main_zip;
    for (int t = 1; t < threads; t++) {
        job->zips[t] = kiln_zip_open(job->opts->zip_path, &job->opts->limits, err);
        if (!job->zips[t])
            return err ? (int)err->code : KILN_EIO;
    }
    return KILN_OK;
}

static int first_worker_error(const decode_job *job, int threads, kiln_err *err)
{
    for (int t = 0; t < threads; t++)
        if (job->worker_err[t].code != KILN_OK) {
            if (err)
                *err = job->worker_err[t];
            return job->worker_err[t].code;
        }
    return kiln_err_set(err, KILN_EIO, "a decode worker failed");
}

static int run_chunks(writer_state *w, decode_job *job, kiln_pool *pool, size_t chunk,
                      prep_skips *bad, const kiln_logger *log, kiln_err *err)
{
    size_t total = w->plan->n_items;
    struct timespec last, now;
    clock_gettime(CLOCK_MONOTONIC, &last);
    for (size_t first = 0; first < total; first += chunk) {
        size_t n = total - first < chunk ? total - first : chunk;
        job->first = first;
        if (kiln_pool_run(pool, n, decode_one, job) != 0)
            return first_worker_error(job, kiln_pool_threads(pool), err);
        int rc = write_chunk(w, job->slots, first, n, bad, err);
        if (rc != KILN_OK)
            return rc;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - last.tv_sec >= 5) {
            kiln_log_info(log, "prepare: %zu/%zu images", first + n, total);
            last = now;
        }
    }
    return close_shard(w, err);
}

static slot *alloc_slots(size_t n, int size, uint8_t **block, kiln_err *err)
{
    size_t per = (size_t)size * size * 3;
    slot *slots = calloc(n, sizeof *slots);
    *block = malloc(n * per);
    if (!slots || !*block) {
        free(slots);
        free(*block);
        *block = NULL;
        kiln_err_set(err, KILN_ENOMEM, "out of memory for %zu decode buffers", n);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        slots[i].pixels = *block + i * per;
    return slots;
}

static int decode_all(writer_state *w, kiln_zip *zip, prep_skips *bad, const kiln_logger *log,
                      kiln_err *err)
{
    int threads = w->opts->threads, rc;
    size_t chunk = (size_t)CHUNK_PER_THREAD * (size_t)threads;
    uint8_t *block = NULL;
    kiln_pool *pool = NULL;
    decode_job job = {.opts = w->opts, .plan = w->plan};
    job.zips = calloc((size_t)threads, sizeof *job.zips);
    job.worker_err = calloc((size_t)threads, sizeof *job.worker_err);
    job.slots = alloc_slots(chunk, w->opts->image_size, &block, err);
    if (!job.zips || !job.worker_err || !job.slots) {
        rc = kiln_err_set(err, KILN_ENOMEM, "out of memory starting the decoders");
        goto fail;
    }
    rc = open_worker_zips(&job, zip, threads, err);
    if (rc != KILN_OK)
        goto fail;
    pool = kiln_pool_create(threads, err);
    if (!pool) {
        rc = err ? (int)err->code : KILN_ENOMEM;
        goto fail;
    }
    rc = run_chunks(w, &job, pool, chunk, bad, log, err);
fail:
    kiln_pool_destroy(pool);
    for (int t = 1; job.zips && t < threads; t++)
        kiln_zip_close(job.zips[t]);
    free(job.zips);
    free(job.worker_err);
    free(job.slots);
    free(block);
    return rc;
}

/* ---------------- checks and the manifest ---------------- */

static int check_results(const writer_state *w, const prep_skips *bad, kiln_err *err)
{
    const kiln_manifest *m = w->m;
    size_t candidates = w->plan->n_items;
    for (size_t c = 0; c < m->n_classes; c++) {
        uint32_t ok = 0;
        for (int s = 0; s < KILN_SPLIT_COUNT; s++)
            ok += m->splits[s].per_class[c];
        if (ok == 0)
            return kiln_err_set(err, KILN_EFORMAT,
                                "class folder '%s/' has no image that could be decoded",
                                m->classes[c]);
    }
    if (candidates && (double)w->undecodable / (double)candidates > w->opts->max_bad_fraction)
        return kiln_err_set(err, KILN_EFORMAT,
                            "%u of %zu images (%.1f%%) could not be decoded, more than the "
                            "%.1f%% allowed (data.max_bad_fraction); first: %s: %s",
                            w->undecodable, candidates, 100.0 * w->undecodable / candidates,
                            100.0 * w->opts->max_bad_fraction, bad->v[0].entry,
                            bad->v[0].reason);
    return KILN_OK;
}

static void set_normalization(writer_state *w)
{
    kiln_manifest *m = w->m;
    if (!w->opts->normalize_dataset || w->train_pixels == 0) {
        memcpy(m->mean, imagenet_mean, sizeof m->mean);
        memcpy(m->std, imagenet_std, sizeof m->std);
        m->normalization = strdup("imagenet");
        return;
    }
    for (int c = 0; c < 3; c++) {
        double n = (double)w->train_pixels;
        double mean = w->sum[c] / n / 255.0;
        double var = w->sumsq[c] / n / (255.0 * 255.0) - mean * mean;
        m->mean[c] = mean;
        m->std[c] = var > 1e-12 ? sqrt(var) : 1.0;
    }
    m->normalization = strdup("dataset");
}

/* The manifest's skipped list: files skipped while planning, then images
 * that failed to decode. Moves the strings out of both lists. */
static int take_skips(kiln_manifest *m, prep_skips *planned, prep_skips *bad, kiln_err *err)
{
    size_t n = planned->n + bad->n;
    m->skipped = calloc(n ? n : 1, sizeof *m->skipped);
    if (!m->skipped)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory listing skipped files");
    prep_skips *lists[2] = {planned, bad};
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < lists[l]->n; i++) {
            m->skipped[m->n_skipped].entry = lists[l]->v[i].entry;
            m->skipped[m->n_skipped++].reason = lists[l]->v[i].reason;
        }
        free(lists[l]->v);
        memset(lists[l], 0, sizeof *lists[l]);
    }
    return KILN_OK;
}

static int describe_source(kiln_manifest *m, const kiln_prepare_opts *o, kiln_err *err)
{
    char hex[65];
    struct stat st;
    int rc = kiln_sha256_file(o->zip_path, hex, err);
    if (rc != KILN_OK)
        return rc;
    if (stat(o->zip_path, &st) != 0)
        return kiln_err_errno(err, errno, "cannot stat %s", o->zip_path);
    m->source_path = strdup(o->zip_path);
    m->source_sha256 = strdup(hex);
    m->source_bytes = (uint64_t)st.st_size;
    if (!m->source_path || !m->source_sha256)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    return KILN_OK;
}

static int init_manifest(kiln_manifest *m, prep_plan *plan, const kiln_prepare_opts *o,
                         kiln_err *err)
{
    memset(m, 0, sizeof *m);
    m->format_version = 1;
    m->kiln_version = strdup(KILN_VERSION);
    m->image_size = (uint32_t)o->image_size;
    m->val_fraction = o->val_fraction;
    m->test_fraction = o->test_fraction;
    m->split_from_folders = plan->presplit;
    if (plan->presplit && plan->n_items > 0) {
        size_t n[KILN_SPLIT_COUNT] = {0};
        for (size_t i = 0; i < plan->n_items; i++)
            n[plan->items[i].split]++;
        m->val_fraction = (double)n[KILN_SPLIT_VAL] / (double)plan->n_items;
        m->test_fraction = (double)n[KILN_SPLIT_TEST] / (double)plan->n_items;
    }
    m->seed = o->seed;
    m->n_ignored = plan->n_ignored;
    /* The manifest takes the class names over from the plan. */
    m->classes = plan->classes;
    m->n_classes = plan->n_classes;
    plan->classes = NULL;
    plan->n_classes = 0;
    for (int s = 0; s < KILN_SPLIT_COUNT; s++) {
        m->splits[s].per_class = calloc(m->n_classes, sizeof(uint32_t));
        if (!m->splits[s].per_class)
            return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    }
    return m->kiln_version ? KILN_OK : kiln_err_set(err, KILN_ENOMEM, "out of memory");
}

/* ---------------- publishing ---------------- */

static int in_manifest(const kiln_manifest *m, const char *file)
{
    for (int s = 0; s < KILN_SPLIT_COUNT; s++)
        for (size_t i = 0; i < m->splits[s].n_shards; i++)
            if (strcmp(m->splits[s].shards[i].file, file) == 0)
                return 1;
    return 0;
}

/* Shards of a dataset previously prepared in out_dir that the new one does
 * not overwrite would be left behind; remove them once the new manifest is in place. */
static void remove_stale_shards(const char *out_dir, const kiln_manifest *old,
                                const kiln_manifest *m)
{
    char path[4096];
    for (int s = 0; s < KILN_SPLIT_COUNT; s++)
        for (size_t i = 0; i < old->splits[s].n_shards; i++) {
            const char *f = old->splits[s].shards[i].file;
            if (!in_manifest(m, f) && kiln_path_join(path, sizeof path, out_dir, f, NULL) == 0)
                unlink(path);
        }
}

static int publish(const writer_state *w, kiln_err *err)
{
    const kiln_manifest *m = w->m;
    const char *out_dir = w->opts->out_dir;
    kiln_manifest old;
    int have_old = kiln_manifest_read(out_dir, &old, NULL) == KILN_OK;
    int rc = KILN_OK;
    char from[4096], to[4096];
    for (int s = 0; s < KILN_SPLIT_COUNT && rc == KILN_OK; s++)
        for (size_t i = 0; i < m->splits[s].n_shards && rc == KILN_OK; i++) {
            const char *f = m->splits[s].shards[i].file;
            rc = kiln_path_join(from, sizeof from, w->staging, f, err);
            if (rc == KILN_OK)
                rc = kiln_path_join(to, sizeof to, out_dir, f, err);
            if (rc == KILN_OK && rename(from, to) != 0)
                rc = kiln_err_errno(err, errno, "cannot move %s into %s", f, out_dir);
        }
    if (rc == KILN_OK)
        rc = kiln_manifest_write(out_dir, m, err);
    if (rc == KILN_OK && have_old)
        remove_stale_shards(out_dir, &old, m);
    if (have_old)
        kiln_manifest_free(&old);
    return rc;
}

/* ---------------- entry point ---------------- */

static int check_opts(const kiln_prepare_opts *o, int dry_run, kiln_err *err)
{
    if (!o->zip_path || !*o->zip_path)
        return kiln_err_set(err, KILN_EINVAL, "no zip given (--zip)");
    if (!dry_run && (!o->out_dir || !*o->out_dir))
        return kiln_err_set(err, KILN_EINVAL, "no output directory given (--out)");
    if (o->image_size < 16 || o->image_size > 1024)
        return kiln_err_set(err, KILN_EINVAL, "image size %d is not in 16..1024", o->image_size);
    if (!(o->val_fraction >= 0 && o->test_fraction >= 0 &&
          o->val_fraction + o->test_fraction < 1))
        return kiln_err_set(err, KILN_EINVAL,
                            "split fractions val %g + test %g must be >= 0 and sum below 1",
                            o->val_fraction, o->test_fraction);
    if (o->threads < 1 || o->threads > 256)
        return kiln_err_set(err, KILN_EINVAL, "workers %d is not in 1..256", o->threads);
    if (!(o->max_bad_fraction >= 0 && o->max_bad_fraction <= 1))
        return kiln_err_set(err, KILN_EINVAL, "max bad fraction %g is not in 0..1",
                            o->max_bad_fraction);
    return KILN_OK;
}

static void fill_report(kiln_prepare_report *r, const writer_state *w, const prep_plan *plan,
                        double seconds)
{
    if (!r)
        return;
    memset(r, 0, sizeof *r);
    r->n_classes = (uint32_t)w->m->n_classes;
    for (int s = 0; s < KILN_SPLIT_COUNT; s++) {
        r->split_counts[s] = w->m->splits[s].count;
        r->images += w->m->splits[s].count;
    }
    r->undecodable = w->undecodable;
    r->skipped = (uint32_t)w->m->n_skipped;
    r->ignored = plan->n_ignored;
    r->seconds = seconds;
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int build_dataset(writer_state *w, kiln_zip *zip, prep_plan *plan,
                         const kiln_logger *log, kiln_err *err)
{
    prep_skips bad = {0};
    int existed = kiln_is_dir(w->opts->out_dir);
    int rc = make_staging(w->opts->out_dir, w->staging, sizeof w->staging, err);
    if (rc != KILN_OK)
        return rc;
    rc = decode_all(w, zip, &bad, log, err);
    if (rc == KILN_OK)
        rc = check_results(w, &bad, err);
    if (rc == KILN_OK) {
        set_normalization(w);
        rc = take_skips(w->m, &plan->skips, &bad, err);
    }
    if (rc == KILN_OK)
        rc = describe_source(w->m, w->opts, err);
    if (rc == KILN_OK)
        rc = publish(w, err);
    kiln_shard_writer_abort(w->shard);
    w->shard = NULL;
    remove_staging(w->staging);
    if (rc != KILN_OK && !existed)
        rmdir(w->opts->out_dir); /* only if still empty: nothing of ours is left */
    prep_skips_free(&bad);
    return rc;
}

/* The checks of a dataset without writing it: what `kiln data push` runs
 * before uploading. */
static int validate_dataset(writer_state *w, kiln_zip *zip, prep_plan *plan,
                            const kiln_logger *log, kiln_err *err)
{
    prep_skips bad = {0};
    int rc = decode_all(w, zip, &bad, log, err);
    if (rc == KILN_OK)
        rc = check_results(w, &bad, err);
    if (rc == KILN_OK)
        rc = take_skips(w->m, &plan->skips, &bad, err);
    prep_skips_free(&bad);
    return rc;
}

static int run_prepare(const kiln_prepare_opts *opts, int dry_run, const kiln_logger *log,
                       kiln_prepare_report *report, kiln_err *err)
{
    double t0 = now_seconds();
    prep_plan plan = {0};
    kiln_manifest m = {0};
    writer_state w = {.opts = opts, .m = &m, .dry_run = dry_run};
    kiln_zip *zip = NULL;
    int rc = check_opts(opts, dry_run, err);
    if (rc != KILN_OK)
        return rc;
    /* Everything about the zip is checked before anything is written. */
    zip = kiln_zip_open(opts->zip_path, &opts->limits, err);
    if (!zip) {
        rc = err ? (int)err->code : KILN_EFORMAT;
        goto fail;
    }
    rc = prep_plan_build(zip, opts, &plan, err);
    if (rc != KILN_OK)
        goto fail;
    w.plan = &plan;
    kiln_log_info(log, "prepare: %zu images in %zu classes, %zu other files skipped",
                  plan.n_items, plan.n_classes, plan.skips.n);
    rc = init_manifest(&m, &plan, opts, err);
    if (rc == KILN_OK)
        rc = dry_run ? validate_dataset(&w, zip, &plan, log, err)
                     : build_dataset(&w, zip, &plan, log, err);
    if (rc == KILN_OK)
        fill_report(report, &w, &plan, now_seconds() - t0);
fail:
    if (rc != KILN_OK && err)
        kiln_err_wrap(err, "%s %s", dry_run ? "check" : "prepare", opts->zip_path);
    kiln_manifest_free(&m);
    prep_plan_free(&plan);
    kiln_zip_close(zip);
    return rc;
}

int kiln_prepare(const kiln_prepare_opts *opts, const kiln_logger *log,
                 kiln_prepare_report *report, kiln_err *err)
{
    return run_prepare(opts, 0, log, report, err);
}

int kiln_prepare_validate(const kiln_prepare_opts *opts, const kiln_logger *log,
                          kiln_prepare_report *report, kiln_err *err)
{
    return run_prepare(opts, 1, log, report, err);
}
