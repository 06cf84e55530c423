/* JPEG decoding with libjpeg-turbo (and libexif for the orientation tag).
 * Contract in image.h.
 *
 * libjpeg reports errors through error_exit, which must not return: ours
 * formats the message into the job and longjmps back to jpeg_run. All
 * state that must survive the jump lives in a jpeg_job owned by the
 * caller of jpeg_run (not in jpeg_run's own locals), so nothing needs to
 * be volatile. Warnings are silenced, except "premature end of file":
 * libjpeg would pad the missing part with gray and carry on, and a
 * half-gray image is not something a training set should contain.
 */
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE and size_t first */
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <libexif/exif-data.h>

#include "data/image.h"
#include "data/image_internal.h"

/* A progressive JPEG can declare thousands of tiny scans and make the
 * decoder spin for minutes on a few KB; real files have about 10. This
 * is the limit libjpeg-turbo's own TJFLAG_LIMITSCANS uses. */
#define MAX_SCANS 500
/* Rows handed to jpeg_read_scanlines per call. */
#define ROWS_PER_CALL 16

typedef struct jpeg_job {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr jerr;
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    int created;    /* cinfo needs jpeg_destroy_decompress */
    kiln_code code; /* set with msg before every longjmp */
    char msg[JMSG_LENGTH_MAX + 64];
    kiln_image img;  /* the output, freed by the caller on failure */
    int orientation; /* EXIF orientation, 1 when absent */
} jpeg_job;

/* ---------------- libjpeg callbacks ---------------- */

_Noreturn static void fail_jump(jpeg_job *job, kiln_code code)
{
    job->code = code;
    longjmp(job->jump, 1);
}

static void on_error_exit(j_common_ptr c)
{
    jpeg_job *job = c->client_data;
    char text[JMSG_LENGTH_MAX];
    (*c->err->format_message)(c, text);
    snprintf(job->msg, sizeof job->msg, "JPEG: %s", text);
    fail_jump(job, c->err->msg_code == JERR_OUT_OF_MEMORY ? KILN_ENOMEM : KILN_EFORMAT);
}

static void on_emit_message(j_common_ptr c, int level)
{
    jpeg_job *job = c->client_data;
    if (level >= 0 || c->err->msg_code != JWRN_JPEG_EOF)
        return; /* trace output and recoverable corruption warnings */
    snprintf(job->msg, sizeof job->msg, "JPEG: truncated (premature end of data)");
    fail_jump(job, KILN_EFORMAT);
}

static void on_progress(j_common_ptr c)
{
    jpeg_job *job = c->client_data;
    j_decompress_ptr d = (j_decompress_ptr)c;
    if (d->input_scan_number <= MAX_SCANS)
        return;
    snprintf(job->msg, sizeof job->msg, "JPEG: more than %d scans", MAX_SCANS);
    fail_jump(job, KILN_EFORMAT);
}

/* ---------------- EXIF ---------------- */

static int orientation_of_exif(const uint8_t *data, unsigned len)
{
    int o = 1;
    ExifData *ed = exif_data_new();
    if (!ed)
        return 1;
    /* We read one tag: skip libexif's "fix the data to the spec" pass,
     * which would add and rewrite entries we never look at. */
    exif_data_unset_option(ed, EXIF_DATA_OPTION_FOLLOW_SPECIFICATION);
    exif_data_load_data(ed, data, len);
    /* IFD 0 describes the main image; IFD 1 (the thumbnail) may differ. */
    ExifEntry *e = exif_content_get_entry(ed->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
    if (e && e->format == EXIF_FORMAT_SHORT && e->components >= 1 && e->data && e->size >= 2)
        o = exif_get_short(e->data, exif_data_get_byte_order(ed));
    exif_data_unref(ed);
    return o >= 1 && o <= 8 ? o : 1;
}

/* The first APP1 marker that holds EXIF (XMP also lives in APP1). */
static int orientation_of(j_decompress_ptr ci)
{
    for (jpeg_saved_marker_ptr m = ci->marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 &&
            memcmp(m->data, "Exif\0\0", 6) == 0)
            return orientation_of_exif(m->data, m->data_length);
    }
    return 1;
}

/* ---------------- decoding ---------------- */

/* Smallest scale n/8 whose shorter output side is still >= min_side
 * (8/8 when even full size is smaller). EXIF rotation swaps width and
 * height but not which side is shorter, so it does not matter here. */
static void choose_scale(j_decompress_ptr ci, int min_side)
{
    ci->scale_denom = 8;
    for (unsigned n = min_side > 0 ? 1 : 8; n <= 8; n++) {
        ci->scale_num = n;
        jpeg_calc_output_dimensions(ci);
        JDIMENSION s = ci->output_width < ci->output_height ? ci->output_width : ci->output_height;
        if (s >= (JDIMENSION)min_side)
            return;
    }
}

/* Adobe CMYK as Photoshop writes it is stored inverted (0 = full ink) and
 * libjpeg hands it over as stored, so R = C*K/255; plain CMYK is the other
 * way round. Same convention as PIL's. */
static void cmyk_row_to_rgb(const JSAMPLE *in, uint8_t *out, JDIMENSION w, int inverted)
{
    for (JDIMENSION x = 0; x < w; x++, in += 4, out += 3) {
        unsigned k = inverted ? in[3] : 255u - in[3];
        for (int c = 0; c < 3; c++) {
            unsigned v = inverted ? in[c] : 255u - in[c];
            out[c] = (uint8_t)((v * k + 127) / 255);
        }
    }
}

/* A memory source never suspends, so libjpeg always returns rows; if it
 * ever did not, looping on would never end. */
_Noreturn static void no_progress(jpeg_job *job)
{
    snprintf(job->msg, sizeof job->msg, "JPEG: decoder returned no rows");
    fail_jump(job, KILN_EFORMAT);
}

static void read_rgb(jpeg_job *job)
{
    j_decompress_ptr ci = &job->cinfo;
    size_t stride = (size_t)ci->output_width * 3;
    while (ci->output_scanline < ci->output_height) {
        JSAMPROW rows[ROWS_PER_CALL];
        JDIMENSION n = ci->output_height - ci->output_scanline;
        if (n > ROWS_PER_CALL)
            n = ROWS_PER_CALL;
        for (JDIMENSION i = 0; i < n; i++)
            rows[i] = job->img.pixels + (ci->output_scanline + i) * stride;
        if (jpeg_read_scanlines(ci, rows, n) == 0)
            no_progress(job);
    }
}

static void read_cmyk(jpeg_job *job)
{
    j_decompress_ptr ci = &job->cinfo;
    size_t stride = (size_t)ci->output_width * 3;
    /* Pool memory: freed by jpeg_destroy_decompress, even after a longjmp. */
    JSAMPARRAY tmp =
        (*ci->mem->alloc_sarray)((j_common_ptr)ci, JPOOL_IMAGE, ci->output_width * 4, 1);
    while (ci->output_scanline < ci->output_height) {
        uint8_t *out = job->img.pixels + ci->output_scanline * stride;
        if (jpeg_read_scanlines(ci, tmp, 1) == 0)
            no_progress(job);
        cmyk_row_to_rgb(tmp[0], out, ci->output_width, ci->saw_Adobe_marker);
    }
}

/* Everything that can longjmp. Returns KILN_OK or a code with job->msg. */
static int jpeg_run(jpeg_job *job, const uint8_t *data, size_t len, int min_side,
                    uint64_t max_pixels)
{
    j_decompress_ptr ci = &job->cinfo;
    kiln_err aerr;
    if (setjmp(job->jump))
        return job->code;
    ci->err = jpeg_std_error(&job->jerr);
    job->jerr.error_exit = on_error_exit;
    job->jerr.emit_message = on_emit_message;
    ci->client_data = job;
    jpeg_create_decompress(ci);
    job->created = 1;
    ci->client_data = job;
    job->progress.progress_monitor = on_progress;
    ci->progress = &job->progress;
    jpeg_mem_src(ci, data, (unsigned long)len);
    jpeg_save_markers(ci, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(ci, TRUE);
    if ((uint64_t)ci->image_width * ci->image_height > max_pixels) {
        snprintf(job->msg, sizeof job->msg, "JPEG: %ux%u is more than %llu pixels", ci->image_width,
                 ci->image_height, (unsigned long long)max_pixels);
        return KILN_ELIMIT;
    }
    job->orientation = orientation_of(ci);
    int cmyk = ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK;
    ci->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    choose_scale(ci, min_side);
    jpeg_start_decompress(ci);
    if (kiln_image_alloc(&job->img, (int)ci->output_width, (int)ci->output_height, &aerr)) {
        snprintf(job->msg, sizeof job->msg, "JPEG: %s", aerr.msg);
        return aerr.code;
    }
    if (cmyk)
        read_cmyk(job);
    else
        read_rgb(job);
    /* No jpeg_finish_decompress: every pixel is in, and whatever follows
     * the last scan (or a missing EOI) does not change them. */
    return KILN_OK;
}

int img_jpeg_decode(const uint8_t *data, size_t len, int min_side, uint64_t max_pixels,
                    kiln_image *out, kiln_err *err)
{
    jpeg_job job;
    memset(&job, 0, sizeof job);
    int rc = jpeg_run(&job, data, len, min_side, max_pixels);
    if (job.created)
        jpeg_destroy_decompress(&job.cinfo);
    if (rc != KILN_OK) {
        kiln_err_set(err, (kiln_code)rc, "%s", job.msg);
        goto fail;
    }
    rc = img_apply_orientation(&job.img, job.orientation, err);
    if (rc != KILN_OK)
        goto fail;
    *out = job.img;
    return KILN_OK;
fail:
    kiln_image_free(&job.img);
    return rc;
}
