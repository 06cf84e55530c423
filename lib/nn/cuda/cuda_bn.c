/* lib/nn/cuda/cuda_bn.c — BatchNorm2d through cuDNN's spatial batch norm
 * (per channel over n × hw), with the backend interface's semantics:
 * training normalises with the batch mean and biased variance, updates
 * running_mean / running_var in place with exponentialAverageFactor =
 * momentum (cuDNN, like PyTorch, blends in the unbiased variance
 * n*hw/(n*hw-1)), and keeps save_mean and save_invstd = 1/sqrt(var+eps)
 * (cuDNN's resultSaveInvVariance), which the backward pass takes as given.
 * x is described as [n, c, hw, 1]: the same memory as [n, c, h, w]. */
#include "nn/cuda/cuda_internal.h"

/* bn_backward's interface carries no eps: cuDNN uses the saved mean and
 * inverse std when they are given, and only checks eps against its minimum. */
#define BN_BACKWARD_EPS 1e-5

static int bn_descriptors(cuda_impl *ci, int n, int c, int hw, kiln_err *err)
{
    int rc = KILN_OK;
    KILN_CUDNN(cudnnSetTensor4dDescriptor(ci->bn_x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, hw,
                                          1));
    KILN_CUDNN(cudnnSetTensor4dDescriptor(ci->bn_param, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, c,
                                          1, 1));
fail:
    return rc;
}

int cuda_bn_forward_train(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                          const float *gamma, const float *beta, float *running_mean,
                          float *running_var, float momentum, float eps, float *y,
                          float *save_mean, float *save_invstd, kiln_err *err)
{
    cuda_impl *ci = cuda_of(be);
    const float one = 1.0f, zero = 0.0f;
    int rc = kiln_nn_check_bn_train(n, c, hw, x, gamma, beta, running_mean, running_var, y,
                                    save_mean, save_invstd, err);
    if (rc || c == 0)
        return rc;
    CUDA_GRAPH_OP(ci, err, "bn_forward_train", GW_I(n), GW_I(c), GW_I(hw), GW_P(x), GW_P(gamma),
                  GW_P(beta), GW_P(running_mean), GW_P(running_var), GW_F(momentum), GW_F(eps),
                  GW_P(y), GW_P(save_mean), GW_P(save_invstd));
    if ((rc = bn_descriptors(ci, n, c, hw, err)))
        return rc;
    KILN_CUDNN(cudnnBatchNormalizationForwardTraining(
        ci->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, ci->bn_x, x, ci->bn_x, y, ci->bn_param,
        gamma, beta, (double)momentum, running_mean, running_var, (double)eps, save_mean,
        save_invstd));
fail:
    return rc;
}

int cuda_bn_forward_eval(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                         const float *gamma, const float *beta, const float *running_mean,
                         const float *running_var, float eps, float *y, kiln_err *err)
{
    cuda_impl *ci = cuda_of(be);
    const float one = 1.0f, zero = 0.0f;
    int rc = kiln_nn_check_bn_eval(n, c, hw, x, gamma, beta, running_mean, running_var, y, err);
    if (rc || (long long)n * c * hw == 0)
        return rc;
    CUDA_GRAPH_OP(ci, err, "bn_forward_eval", GW_I(n), GW_I(c), GW_I(hw), GW_P(x), GW_P(gamma),
                  GW_P(beta), GW_P(running_mean), GW_P(running_var), GW_F(eps), GW_P(y));
    if ((rc = bn_descriptors(ci, n, c, hw, err)))
        return rc;
    KILN_CUDNN(cudnnBatchNormalizationForwardInference(
        ci->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, ci->bn_x, x, ci->bn_x, y, ci->bn_param,
        gamma, beta, running_mean, running_var, (double)eps));
fail:
    return rc;
}

int cuda_bn_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x, const float *dy,
                     const float *gamma, const float *save_mean, const float *save_invstd,
                     float *dx, float *dgamma, float *dbeta, kiln_err *err)
{
    cuda_impl *ci = cuda_of(be);
    const float one = 1.0f, zero = 0.0f;
    int rc = kiln_nn_check_bn_backward(n, c, hw, x, dy, gamma, save_mean, save_invstd, dx, dgamma,
                                       dbeta, err);
    if (rc || c == 0)
        return rc;
    CUDA_GRAPH_OP(ci, err, "bn_backward", GW_I(n), GW_I(c), GW_I(hw), GW_P(x), GW_P(dy),
                  GW_P(gamma), GW_P(save_mean), GW_P(save_invstd), GW_P(dx), GW_P(dgamma),
                  GW_P(dbeta));
    if ((long long)n * hw == 0) /* nothing to normalise: zero parameter gradients, as the CPU */
        return cuda_zero_floats(ci, dgamma, (size_t)c, dbeta, (size_t)c, err);
    if ((rc = bn_descriptors(ci, n, c, hw, err)))
        return rc;
    KILN_CUDNN(cudnnBatchNormalizationBackward(ci->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one,
                                               &zero, ci->bn_x, x, ci->bn_x, dy, ci->bn_x, dx,
                                               ci->bn_param, gamma, dgamma, dbeta,
                                               BN_BACKWARD_EPS, save_mean, save_invstd));
fail:
    return rc;
}
