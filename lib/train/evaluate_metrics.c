/* lib/train/evaluate_metrics.c — counting predictions and deriving the
 * classification metrics from the counts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/evaluate.h"

kiln_eval_metrics *kiln_eval_metrics_new(int num_classes, const char *const *classes, int top_k,
                                         kiln_err *err)
{
    if (num_classes < 1 || !classes) {
        kiln_err_set(err, KILN_EINVAL, "evaluate: need at least one class, got %d", num_classes);
        return NULL;
    }
    if (top_k < 0) {
        kiln_err_set(err, KILN_EINVAL, "evaluate: top-k must be >= 1, got %d", top_k);
        return NULL;
    }
    kiln_eval_metrics *m = calloc(1, sizeof *m);
    size_t cells = (size_t)num_classes * (size_t)num_classes;
    if (!m)
        goto fail;
    m->num_classes = num_classes;
    m->top_k = top_k == 0 ? KILN_EVAL_DEFAULT_TOP_K : top_k;
    if (m->top_k > num_classes)
        m->top_k = num_classes;
    m->classes = calloc((size_t)num_classes, sizeof *m->classes);
    m->confusion = calloc(cells, sizeof *m->confusion);
    m->per_class = calloc((size_t)num_classes, sizeof *m->per_class);
    if (!m->classes || !m->confusion || !m->per_class)
        goto fail;
    for (int c = 0; c < num_classes; c++)
        if (!(m->classes[c] = strdup(classes[c] ? classes[c] : "")))
            goto fail;
    return m;
fail:
    kiln_eval_metrics_free(m);
    kiln_err_set(err, KILN_ENOMEM, "evaluate: out of memory for %d classes", num_classes);
    return NULL;
}

void kiln_eval_metrics_free(kiln_eval_metrics *m)
{
    if (!m)
        return;
    if (m->classes)
        for (int c = 0; c < m->num_classes; c++)
            free(m->classes[c]);
    free(m->classes);
    free(m->confusion);
    free(m->per_class);
    free(m);
}

/* Classes ranked above `label`: larger logit, or equal with a smaller index. */
static int rank_of(const float *row, int classes, int label)
{
    int rank = 0;
    for (int c = 0; c < classes; c++)
        if (row[c] > row[label] || (row[c] == row[label] && c < label))
            rank++;
    return rank;
}

static int argmax(const float *row, int classes)
{
    int best = 0;
    for (int c = 1; c < classes; c++)
        if (row[c] > row[best])
            best = c;
    return best;
}

int kiln_eval_metrics_add(kiln_eval_metrics *m, const float *logits, const int32_t *labels,
                          int n, kiln_err *err)
{
    int k = m->num_classes;
    if (n < 0)
        return kiln_err_set(err, KILN_EINVAL, "evaluate: negative batch size %d", n);
    for (int i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= k)
            return kiln_err_set(err, KILN_EINVAL,
                                "evaluate: label %d of image %d is outside 0..%d", labels[i], i,
                                k - 1);
        for (int c = 0; c < k; c++)
            if (!isfinite(logits[(size_t)i * k + c]))
                return kiln_err_set(err, KILN_EINVAL,
                                    "evaluate: the model's output for image %d, class %d is "
                                    "not finite (%g)", i, c, (double)logits[(size_t)i * k + c]);
    }
    for (int i = 0; i < n; i++) {
        const float *row = logits + (size_t)i * k;
        int pred = argmax(row, k);
        m->confusion[(size_t)labels[i] * k + pred]++;
        m->correct += pred == labels[i];
        m->top_k_correct += rank_of(row, k, labels[i]) < m->top_k;
        m->images++;
    }
    return KILN_OK;
}

void kiln_eval_metrics_add_time(kiln_eval_metrics *m, double seconds)
{
    m->batches++;
    m->forward_seconds += seconds;
}

/* a / b, 0 when b is 0 (sklearn's zero_division=0). */
static double ratio(double a, double b)
{
    return b > 0 ? a / b : 0.0;
}

static void per_class(kiln_eval_metrics *m)
{
    int k = m->num_classes;
    for (int c = 0; c < k; c++) {
        kiln_eval_class *pc = &m->per_class[c];
        memset(pc, 0, sizeof *pc);
        pc->correct = m->confusion[(size_t)c * k + c];
        for (int j = 0; j < k; j++) {
            pc->support += m->confusion[(size_t)c * k + j];
            pc->predicted += m->confusion[(size_t)j * k + c];
        }
        pc->precision = ratio((double)pc->correct, (double)pc->predicted);
        pc->recall = ratio((double)pc->correct, (double)pc->support);
        pc->f1 = ratio(2.0 * pc->precision * pc->recall, pc->precision + pc->recall);
    }
}

void kiln_eval_metrics_finish(kiln_eval_metrics *m)
{
    int k = m->num_classes;
    double n = (double)m->images;
    per_class(m);
    m->accuracy = ratio((double)m->correct, n);
    m->top_k_accuracy = ratio((double)m->top_k_correct, n);
    m->macro_precision = m->macro_recall = m->macro_f1 = 0;
    m->weighted_precision = m->weighted_recall = m->weighted_f1 = 0;
    for (int c = 0; c < k; c++) {
        const kiln_eval_class *pc = &m->per_class[c];
        m->macro_precision += pc->precision / k;
        m->macro_recall += pc->recall / k;
        m->macro_f1 += pc->f1 / k;
        m->weighted_precision += ratio(pc->precision * (double)pc->support, n);
        m->weighted_recall += ratio(pc->recall * (double)pc->support, n);
        m->weighted_f1 += ratio(pc->f1 * (double)pc->support, n);
    }
    m->latency_ms_per_image = ratio(m->forward_seconds * 1000.0, n);
    m->latency_ms_per_batch = ratio(m->forward_seconds * 1000.0, (double)m->batches);
    m->images_per_second = ratio(n, m->forward_seconds);
}
