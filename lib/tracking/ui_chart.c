/* lib/tracking/ui_chart.c — a metric's history as an inline SVG line
 * chart: axes with nice ticks, grid lines, labels, the line and its points.
 * Non-finite values are skipped (the line breaks there), so a NaN loss
 * shows as a gap rather than a chart scaled to nothing. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tracking/ui_internal.h"

/* The chart's geometry in SVG user units. */
enum { CHART_W = 560, CHART_H = 280, PAD_L = 64, PAD_R = 18, PAD_T = 30, PAD_B = 46 };
/* Points are drawn as dots up to this many finite points. */
#define CHART_MAX_DOTS 60
/* Longer series are drawn through their per-pixel extremes. */
#define CHART_MAX_LINE_POINTS 2000

/* A step of 1, 2 or 5 × 10^k near span / 5. */
static double nice_step(double span)
{
    double raw = span / 5.0;
    double mag = pow(10.0, floor(log10(raw)));
    double norm = raw / mag;
    double unit = norm < 1.5 ? 1.0 : norm < 3.0 ? 2.0 : norm < 7.0 ? 5.0 : 10.0;
    return unit * mag;
}

static void fit_ticks(kiln_ui_axis *a, double lo, double hi, int integer_ticks)
{
    double step = nice_step(hi - lo);
    if (integer_ticks && step < 1.0)
        step = 1.0;
    double first = floor(lo / step) * step, last = ceil(hi / step) * step;
    if (!isfinite(first) || !isfinite(last) || !(last > first)) {
        /* Near the ends of the double range: plain ticks at the data range. */
        a->lo = lo;
        a->hi = hi;
        a->step = 0;
        a->ticks[0] = lo;
        a->ticks[1] = lo / 2 + hi / 2;
        a->ticks[2] = hi;
        a->nticks = 3;
        return;
    }
    a->lo = first;
    a->hi = last;
    a->step = step;
    a->nticks = 0;
    for (int i = 0; i < KILN_UI_MAX_TICKS; i++) {
        double t = first + step * i;
        if (t > last + step * 1e-9)
            break;
        if (fabs(t) < step * 1e-9)
            t = 0; /* no "-1.2e-17" labels for zero */
        a->ticks[a->nticks++] = t;
    }
}

void kiln_ui_axis_fit(const double *v, size_t n, size_t stride, int integer_ticks,
                      kiln_ui_axis *axis)
{
    memset(axis, 0, sizeof *axis);
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double x = v[i * stride];
        if (!isfinite(x))
            continue;
        axis->nfinite++;
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
    }
    if (axis->nfinite == 0) {
        lo = 0;
        hi = 1;
    } else if (hi - lo <= fabs(hi) * 1e-9 || hi == lo) {
        /* One value, or differences below what a label can show: centre it. */
        double mid = lo / 2 + hi / 2;
        double pad = mid == 0 ? 1.0 : fabs(mid) * 0.1;
        if (integer_ticks && pad < 1.0)
            pad = 1.0;
        lo = mid - pad > -DBL_MAX ? mid - pad : -DBL_MAX;
        hi = mid + pad < DBL_MAX ? mid + pad : DBL_MAX;
    }
    fit_ticks(axis, lo, hi, integer_ticks);
}

double kiln_ui_axis_map(const kiln_ui_axis *axis, double v, double pix_lo, double pix_hi)
{
    /* Halves keep hi - lo finite even for ranges spanning the doubles. */
    double f = (v / 2 - axis->lo / 2) / (axis->hi / 2 - axis->lo / 2);
    return pix_lo + f * (pix_hi - pix_lo);
}

static void put_tick_label(kiln_ui_buf *b, double v)
{
    if (v == 0)
        kiln_ui_put(b, "0");
    else
        kiln_ui_putf(b, "%.4g", v);
}

static void draw_axes(kiln_ui_buf *b, const kiln_ui_axis *ax, const kiln_ui_axis *ay,
                      const char *x_label)
{
    const double x0 = PAD_L, x1 = CHART_W - PAD_R, y0 = CHART_H - PAD_B, y1 = PAD_T;
    kiln_ui_put(b, "<g class=\"grid\" stroke=\"#e4e7eb\" stroke-width=\"1\">");
    for (int i = 0; i < ay->nticks; i++) {
        double y = kiln_ui_axis_map(ay, ay->ticks[i], y0, y1);
        kiln_ui_putf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x0, y, x1, y);
    }
    kiln_ui_put(b, "</g><g class=\"axes\" stroke=\"#7b8794\" stroke-width=\"1\">");
    kiln_ui_putf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x0, y0, x1, y0);
    kiln_ui_putf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x0, y0, x0, y1);
    for (int i = 0; i < ax->nticks; i++) {
        double x = kiln_ui_axis_map(ax, ax->ticks[i], x0, x1);
        kiln_ui_putf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x, y0, x,
                     y0 + 5);
    }
    for (int i = 0; i < ay->nticks; i++) {
        double y = kiln_ui_axis_map(ay, ay->ticks[i], y0, y1);
        kiln_ui_putf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x0 - 5, y, x0,
                     y);
    }
    kiln_ui_put(b, "</g><g class=\"ticks\" fill=\"#52606d\" font-size=\"11\">");
    for (int i = 0; i < ax->nticks; i++) {
        double x = kiln_ui_axis_map(ax, ax->ticks[i], x0, x1);
        kiln_ui_putf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", x, y0 + 18);
        put_tick_label(b, ax->ticks[i]);
        kiln_ui_put(b, "</text>");
    }
    for (int i = 0; i < ay->nticks; i++) {
        double y = kiln_ui_axis_map(ay, ay->ticks[i], y0, y1);
        kiln_ui_putf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", x0 - 8, y + 4);
        put_tick_label(b, ay->ticks[i]);
        kiln_ui_put(b, "</text>");
    }
    kiln_ui_putf(b, "</g><text class=\"xlabel\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" "
                    "font-size=\"12\" fill=\"#334e68\">", (x0 + x1) / 2, CHART_H - 8);
    kiln_ui_esc(b, x_label);
    kiln_ui_put(b, "</text>");
}

static int finite_point(const kiln_ui_point *p)
{
    return isfinite(p->x) && isfinite(p->y);
}

/* One step of the pen: "M" starts a segment, "L" continues it. */
static void pen_to(kiln_ui_buf *b, int *down, double px, double py)
{
    kiln_ui_putf(b, "%s%.1f %.1f", *down ? "L" : "M", px, py);
    *down = 1;
}

/* The points of one pixel column, in their order, each once. */
static void emit_column(kiln_ui_buf *b, int *down, const kiln_ui_axis *ax,
                        const kiln_ui_axis *ay, const kiln_ui_point *pts, size_t idx[4])
{
    for (int i = 1; i < 4; i++)
        for (int j = i; j > 0 && idx[j] < idx[j - 1]; j--) {
            size_t t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    for (int i = 0; i < 4; i++)
        if (i == 0 || idx[i] != idx[i - 1])
            pen_to(b, down, kiln_ui_axis_map(ax, pts[idx[i]].x, PAD_L, CHART_W - PAD_R),
                   kiln_ui_axis_map(ay, pts[idx[i]].y, CHART_H - PAD_B, PAD_T));
}

/* The line as one <path>, broken at non-finite points. Long histories keep,
 * per pixel column, the first, lowest, highest and last point: the same
 * picture with a path of bounded size. */
static void draw_line(kiln_ui_buf *b, const kiln_ui_axis *ax, const kiln_ui_axis *ay,
                      const kiln_ui_point *pts, size_t n)
{
    const double x0 = PAD_L, x1 = CHART_W - PAD_R, y0 = CHART_H - PAD_B, y1 = PAD_T;
    const int decimate = n > CHART_MAX_LINE_POINTS;
    kiln_ui_put(b, "<path class=\"line\" fill=\"none\" stroke=\"#0c8599\" stroke-width=\"2\" "
                   "stroke-linejoin=\"round\" stroke-linecap=\"round\" d=\"");
    int down = 0, have = 0;
    long col = 0;
    size_t idx[4] = {0}; /* first, lowest, highest, last of the column */
    for (size_t i = 0; i <= n; i++) {
        int finite = i < n && finite_point(&pts[i]);
        long c = finite ? (long)floor(kiln_ui_axis_map(ax, pts[i].x, x0, x1)) : 0;
        if (have && (!finite || c != col || !decimate)) {
            emit_column(b, &down, ax, ay, pts, idx);
            have = 0;
        }
        if (!finite) {
            down = 0;
            continue;
        }
        if (!have) {
            have = 1;
            col = c;
            idx[0] = idx[1] = idx[2] = idx[3] = i;
            continue;
        }
        if (pts[i].y < pts[idx[1]].y)
            idx[1] = i;
        if (pts[i].y > pts[idx[2]].y)
            idx[2] = i;
        idx[3] = i;
    }
    kiln_ui_put(b, "\"/>");
    if (ay->nfinite > CHART_MAX_DOTS)
        return;
    kiln_ui_put(b, "<g class=\"dots\" fill=\"#0c8599\">");
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(pts[i].x) || !isfinite(pts[i].y))
            continue;
        kiln_ui_putf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%s\"/>",
                     kiln_ui_axis_map(ax, pts[i].x, x0, x1),
                     kiln_ui_axis_map(ay, pts[i].y, y0, y1), ay->nfinite == 1 ? "4" : "2.5");
    }
    kiln_ui_put(b, "</g>");
}

void kiln_ui_chart_svg(kiln_ui_buf *b, const char *title, const char *x_label, int integer_x,
                       const kiln_ui_point *pts, size_t n)
{
    /* Fit the axes to the points whose x and y are both finite. */
    double *xs = malloc((n ? n : 1) * 2 * sizeof *xs);
    if (!xs) {
        b->oom = 1;
        return;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (isfinite(pts[i].x) && isfinite(pts[i].y)) {
            xs[2 * m] = pts[i].x;
            xs[2 * m + 1] = pts[i].y;
            m++;
        }
    }
    kiln_ui_axis ax, ay;
    kiln_ui_axis_fit(xs, m, 2, integer_x, &ax);
    kiln_ui_axis_fit(xs + 1, m, 2, 0, &ay);
    free(xs);

    kiln_ui_putf(b, "<svg class=\"chart\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                    "role=\"img\" font-family=\"system-ui,'DejaVu Sans',sans-serif\" "
                    "aria-label=\"", CHART_W, CHART_H, CHART_W, CHART_H);
    kiln_ui_esc(b, title);
    kiln_ui_put(b, "\"><title>");
    kiln_ui_esc(b, title);
    kiln_ui_putf(b, "</title><rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>"
                    "<text class=\"title\" x=\"%d\" y=\"18\" font-size=\"13\" font-weight=\"600\" "
                    "fill=\"#1f2933\">", CHART_W, CHART_H, PAD_L);
    kiln_ui_esc(b, title);
    kiln_ui_put(b, "</text>");
    draw_axes(b, &ax, &ay, x_label);
    draw_line(b, &ax, &ay, pts, n);
    if (m == 0)
        kiln_ui_putf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#9b1c1c\" "
                        "font-size=\"12\">no finite values to draw</text>",
                     (PAD_L + CHART_W - PAD_R) / 2, (PAD_T + CHART_H - PAD_B) / 2);
    kiln_ui_put(b, "</svg>");
}

typedef struct hist_entry {
    int64_t step, ts;
    double value;
} hist_entry;

static int cmp_entry(const void *pa, const void *pb)
{
    const hist_entry *a = pa, *b = pb;
    if (a->step != b->step)
        return a->step < b->step ? -1 : 1;
    if (a->ts != b->ts)
        return a->ts < b->ts ? -1 : 1;
    return 0;
}

kiln_ui_point *kiln_ui_history_points(const cJSON *metrics, size_t *n, const char **x_label,
                                      int *oom)
{
    *n = 0;
    *x_label = "step";
    int count = cJSON_GetArraySize(metrics);
    if (count <= 0)
        return NULL;
    hist_entry *e = calloc((size_t)count, sizeof *e);
    kiln_ui_point *pts = calloc((size_t)count, sizeof *pts);
    if (!e || !pts) {
        free(e);
        free(pts);
        *oom = 1;
        return NULL;
    }
    size_t k = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, metrics) {
        hist_entry *h = &e[k++];
        if (!kiln_ui_i64(m, "step", &h->step))
            h->step = 0;
        if (!kiln_ui_i64(m, "timestamp", &h->ts))
            h->ts = 0;
        if (!kiln_ui_double(cJSON_GetObjectItemCaseSensitive(m, "value"), &h->value))
            h->value = NAN;
    }
    qsort(e, k, sizeof *e, cmp_entry);
    int by_time = k > 1 && e[0].step == e[k - 1].step && e[0].ts != e[k - 1].ts;
    if (by_time)
        *x_label = "time (s)";
    for (size_t i = 0; i < k; i++) {
        pts[i].x = by_time ? (double)(e[i].ts - e[0].ts) / 1000.0 : (double)e[i].step;
        pts[i].y = e[i].value;
    }
    free(e);
    *n = k;
    return pts;
}
