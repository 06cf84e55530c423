/* lib/nn/cpu/cpu_loss.c — softmax cross-entropy with label smoothing, as
 * torch.nn.CrossEntropyLoss(label_smoothing=ls, reduction="mean"):
 *   loss_i = (1-ls) * -log p[y_i] + ls * mean_c(-log p[c]),
 * computed per row in double from the log-sum-exp. */
#include <math.h>

#include "nn/cpu/cpu_internal.h"

int cpu_xent_forward_backward(kiln_nn_backend *be, int n, int classes, const float *logits,
                              const int32_t *labels, float ls, float *probs, float *dlogits,
                              double *host_loss, kiln_err *err)
{
    (void)be;
    int rc = kiln_nn_check_xent(n, classes, ls, err);
    if (rc)
        return rc;
    if ((rc = kiln_nn_check_ptrs(err, "xent_forward_backward", 5, logits, labels, probs, dlogits,
                             host_loss)))
        return rc;
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= classes)
            return kiln_err_set(err, KILN_EINVAL,
                                "xent_forward_backward: label %d of sample %d is not in [0, %d)",
                                (int)labels[i], i, classes);
    double total = 0, on = 1.0 - (double)ls, off = (double)ls / classes;
    for (int i = 0; i < n; i++) {
        const float *l = logits + (size_t)i * classes;
        float *p = probs + (size_t)i * classes, *d = dlogits + (size_t)i * classes;
        double mx = l[0], sum = 0, lsum = 0;
        for (int c = 1; c < classes; c++)
            mx = l[c] > mx ? l[c] : mx;
        for (int c = 0; c < classes; c++) {
            sum += exp((double)l[c] - mx);
            lsum += l[c];
        }
        double lse = mx + log(sum);
        total += lse - on * l[labels[i]] - off * lsum;
        for (int c = 0; c < classes; c++) {
            double pc = exp((double)l[c] - lse);
            double target = off + (c == labels[i] ? on : 0.0);
            p[c] = (float)pc;
            d[c] = (float)((pc - target) / n);
        }
    }
    *host_loss = total / n;
    return KILN_OK;
}
