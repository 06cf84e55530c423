/* lib/nn/cuda/cuda_input.c — the input batch on the device: the loader's
 * bytes normalised through its table (normalize_u8), so a training step
 * copies a quarter of the float batch's bytes to the GPU. The same in both
 * precisions: the model's input is float32 (its first act_from_f32 makes
 * the bf16 copy). */
#include "nn/backend_check.h"
#include "nn/cuda/cuda_internal.h"

int cuda_normalize_u8(kiln_nn_backend *be, int n, int c, int hw, const uint8_t *src,
                      const float *lut, float *dst, kiln_err *err)
{
    int rc = kiln_nn_check_dims(err, "normalize_u8", n, c, hw);
    if (rc)
        return rc;
    size_t count = (size_t)n * (size_t)c * (size_t)hw;
    if (count == 0)
        return KILN_OK;
    if (!src || !lut || !dst)
        return kiln_err_set(err, KILN_EINVAL, "normalize_u8: NULL buffer");
    cuda_impl *k = cuda_of(be);
    CUDA_GRAPH_OP(k, err, "normalize_u8", GW_I(n), GW_I(c), GW_I(hw), GW_P(src), GW_P(lut),
                  GW_P(dst));
    KILN_CUDA(cuda_launch_normalize_u8(k->stream, n, c, hw, src, lut, dst));
fail:
    return rc;
}
