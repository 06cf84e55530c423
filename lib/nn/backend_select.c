/* lib/nn/backend_select.c — a backend by name (--device auto|cpu|cuda) and
 * the CUDA backend's default options. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/backend.h"
#include "nn/graph_check.h"

void kiln_nn_cuda_opts_default(kiln_nn_cuda_opts *o)
{
    memset(o, 0, sizeof *o);
    const char *tf32 = getenv("KILN_CUDA_TF32");
    o->tf32 = tf32 && strcmp(tf32, "1") == 0;
    o->deterministic = 1;
    /* KILN_CUDA_FIND=0: cuDNN's heuristics, the same algorithms in every run. */
    const char *find = getenv("KILN_CUDA_FIND");
    o->find = !(find && strcmp(find, "0") == 0);
    const char *bf16 = getenv("KILN_CUDA_BF16");
    o->bf16 = bf16 && strcmp(bf16, "1") == 0;
    const char *fuse = getenv("KILN_CUDA_FUSE");
    o->fuse = !(fuse && strcmp(fuse, "0") == 0);
}

/* -1 for a precision that is neither fp32 nor bf16; NULL keeps the default. */
static int precision_bf16(const char *precision, int dflt)
{
    if (!precision)
        return dflt;
    if (strcmp(precision, "fp32") == 0)
        return 0;
    if (strcmp(precision, "bf16") == 0)
        return 1;
    return -1;
}

#ifdef KILN_HAVE_CUDA
/* Without an NVIDIA driver there is no GPU to find, and `auto` need not
 * map cuBLAS and cuDNN (~200 MB, 60 ms) to learn that. */
static int driver_present(void)
{
    return access("/dev/nvidiactl", F_OK) == 0 || access("/proc/driver/nvidia/version", F_OK) == 0;
}
#endif

static kiln_nn_backend *open_auto(const kiln_nn_cuda_opts *opts, int threads,
                                  const kiln_logger *log, kiln_err *err)
{
    kiln_err why = {0};
    kiln_nn_cuda_opts o = *opts;
    kiln_nn_backend *be = NULL;
#ifdef KILN_HAVE_CUDA
    if (!driver_present())
        kiln_err_set(&why, KILN_EDEVICE, "no NVIDIA driver (/dev/nvidiactl is missing)");
    else
        be = kiln_nn_cuda_create(&o, &why);
#else
    be = kiln_nn_cuda_create(&o, &why);
#endif
    if (be) {
        kiln_log_info(log, "device auto: using the GPU (cuda backend, %s%s)",
                      kiln_act_precision(be->act), o.tf32 ? ", TF32 on" : "");
        return be;
    }
    kiln_log_info(log, "device auto: using the CPU (%d threads%s): %s", threads,
                  o.bf16 ? ", fp32: bf16 is for the GPU" : "", why.msg);
    return kiln_nn_cpu_create(threads, err);
}

kiln_nn_backend *kiln_nn_backend_open(const char *device, int threads, const kiln_logger *log,
                                      kiln_err *err)
{
    return kiln_nn_backend_open_precision(device, NULL, threads, log, err);
}

kiln_nn_backend *kiln_nn_backend_open_precision(const char *device, const char *precision,
                                                int threads, const kiln_logger *log,
                                                kiln_err *err)
{
    kiln_nn_cuda_opts o;
    kiln_nn_cuda_opts_default(&o);
    int bf16 = precision_bf16(precision, o.bf16);
    if (bf16 < 0) {
        kiln_err_set(err, KILN_EINVAL, "precision '%s': expected fp32 or bf16", precision);
        return NULL;
    }
    o.bf16 = bf16;
    if (!device || strcmp(device, "auto") == 0)
        return open_auto(&o, threads, log, err);
    if (strcmp(device, "cpu") == 0) {
        if (precision && bf16) {
            kiln_err_set(err, KILN_EINVAL,
                         "precision bf16 needs the GPU (--device cuda or auto); the CPU "
                         "trains in fp32");
            return NULL;
        }
        return kiln_nn_cpu_create(threads, err);
    }
    if (strcmp(device, "cuda") == 0) {
        kiln_nn_backend *be = kiln_nn_cuda_create(&o, err);
        if (!be)
            kiln_err_wrap(err, "device cuda");
        return be;
    }
    /* The CPU under lib/nn/graph_check: step-graph passes checked, not
     * launched (tests; not offered by the command line). */
    if (strcmp(device, "cpu-graph-check") == 0)
        return kiln_nn_graph_checker_create(kiln_nn_cpu_create(threads, err), err);
    /* The CPU on bf16 activations: the oracle of the GPU's mixed precision. */
    if (strcmp(device, "cpu-bf16") == 0)
        return kiln_nn_cpu_bf16_create(threads, err);
    if (strcmp(device, "cpu-bf16-graph-check") == 0)
        return kiln_nn_graph_checker_create(kiln_nn_cpu_bf16_create(threads, err), err);

    kiln_err_set(err, KILN_EINVAL, "device '%s': expected auto, cpu or cuda", device);
    return NULL;
}
