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
}

#ifdef KILN_HAVE_CUDA
/* Without an NVIDIA driver there is no GPU to find, and `auto` need not
 * map cuBLAS and cuDNN (~200 MB, 60 ms) to learn that. */
static int driver_present(void)
{
    return access("/dev/nvidiactl", F_OK) == 0 || access("/proc/driver/nvidia/version", F_OK) == 0;
}
#endif

static kiln_nn_backend *open_auto(int threads, const kiln_logger *log, kiln_err *err)
{
    kiln_err why = {0};
    kiln_nn_cuda_opts o;
    kiln_nn_cuda_opts_default(&o);
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
        kiln_log_info(log, "device auto: using the GPU (cuda backend%s)",
                      o.tf32 ? ", TF32 on" : "");
        return be;
    }
    kiln_log_info(log, "device auto: using the CPU (%d threads): %s", threads, why.msg);
    return kiln_nn_cpu_create(threads, err);
}

kiln_nn_backend *kiln_nn_backend_open(const char *device, int threads, const kiln_logger *log,
                                      kiln_err *err)
{
    if (!device || strcmp(device, "auto") == 0)
        return open_auto(threads, log, err);
    if (strcmp(device, "cpu") == 0)
        return kiln_nn_cpu_create(threads, err);
    if (strcmp(device, "cuda") == 0) {
        kiln_nn_cuda_opts o;
        kiln_nn_cuda_opts_default(&o);
        kiln_nn_backend *be = kiln_nn_cuda_create(&o, err);
        if (!be)
            kiln_err_wrap(err, "device cuda");
        return be;
    }
    /* The CPU under lib/nn/graph_check: step-graph passes checked, not
     * launched (tests; not offered by the command line). */
    if (strcmp(device, "cpu-graph-check") == 0)
        return kiln_nn_graph_checker_create(kiln_nn_cpu_create(threads, err), err);
    kiln_err_set(err, KILN_EINVAL, "device '%s': expected auto, cpu or cuda", device);
    return NULL;
}
