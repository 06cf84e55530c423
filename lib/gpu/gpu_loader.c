/* kiln_gpu_probe and kiln_nn_cuda_create through libkiln_cuda.so, loaded on
 * demand with dlopen and refused unless its version is this build's.
 *
 * Where the module is looked for, first found wins:
 *   $KILN_CUDA_MODULE (a path: when set, the only place looked at), the
 *   kiln binary's own folder, ../lib from it, the build tree's copy, then
 *   the dynamic linker's search path.
 * The module is opened with RTLD_NODELETE: CUDA's runtime registers exit
 * handlers, so its code must stay mapped until the process ends. */
#include <dlfcn.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpu/gpu_module.h"

#define N_CANDIDATES 5

/* Fill `paths` with the candidates (some may be empty strings). */
static void candidates(char paths[N_CANDIDATES][4096])
{
    char exe[4096];
    const char *env = getenv("KILN_CUDA_MODULE");
    memset(paths, 0, sizeof(char[N_CANDIDATES][4096]));
    if (env && *env) {
        snprintf(paths[0], 4096, "%s", env);
        return;
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        const char *dir = dirname(exe);
        snprintf(paths[1], 4096, "%s/%s", dir, KILN_CUDA_MODULE_NAME);
        snprintf(paths[2], 4096, "%s/../lib/%s", dir, KILN_CUDA_MODULE_NAME);
    }
    snprintf(paths[3], 4096, "%s", KILN_CUDA_MODULE_BUILD_PATH);
    snprintf(paths[4], 4096, "%s", KILN_CUDA_MODULE_NAME);
}

static void *open_module(kiln_err *err)
{
    char paths[N_CANDIDATES][4096];
    char last[512] = "not found";
    candidates(paths);
    for (int i = 0; i < N_CANDIDATES; i++) {
        /* A bare name goes to the linker's search; a path must exist. */
        if (!paths[i][0] || (strchr(paths[i], '/') && access(paths[i], R_OK) != 0))
            continue;
        void *h = dlopen(paths[i], RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (h)
            return h;
        /* The first module found that fails to load says the most. */
        if (strcmp(last, "not found") == 0)
            snprintf(last, sizeof last, "%s", dlerror());
    }
    kiln_err_set(err, KILN_EDEVICE,
                 "cannot load the CUDA backend (%s): %s; set KILN_CUDA_MODULE to its path, "
                 "or make CUDA's and cuDNN's libraries findable (LD_LIBRARY_PATH)",
                 KILN_CUDA_MODULE_NAME, last);
    return NULL;
}

/* The module, opened and checked to be this build's version; NULL with
 * KILN_EDEVICE otherwise. dlclose it when done (it stays mapped). */
static void *open_checked(kiln_err *err)
{
    void *h = open_module(err);
    if (!h)
        return NULL;
    kiln_cuda_module_version_fn version =
        (kiln_cuda_module_version_fn)dlsym(h, "kiln_cuda_module_version");
    int got = version ? version() : -1;
    if (got != KILN_CUDA_MODULE_VERSION) {
        kiln_err_set(err, KILN_EDEVICE,
                     "%s is not a matching kiln CUDA module (version %d wanted, %d found); "
                     "rebuild it with this kiln",
                     KILN_CUDA_MODULE_NAME, KILN_CUDA_MODULE_VERSION, got);
        dlclose(h);
        return NULL;
    }
    return h;
}

int kiln_gpu_probe(kiln_gpu_info *info, kiln_err *err)
{
    int rc;
    memset(info, 0, sizeof *info);
    info->built_with_cuda = 1;
    void *h = open_checked(err);
    if (!h)
        return KILN_EDEVICE;
    kiln_cuda_module_probe_fn probe = (kiln_cuda_module_probe_fn)dlsym(h, "kiln_cuda_module_probe");
    if (!probe)
        rc = kiln_err_set(err, KILN_EDEVICE, "%s lacks kiln_cuda_module_probe",
                          KILN_CUDA_MODULE_NAME);
    else
        rc = probe(info, err);
    info->built_with_cuda = 1;
    dlclose(h);
    return rc;
}

kiln_nn_backend *kiln_nn_cuda_create(const kiln_nn_cuda_opts *opts, kiln_err *err)
{
    kiln_nn_cuda_opts defaults;
    if (!opts) {
        kiln_nn_cuda_opts_default(&defaults);
        opts = &defaults;
    }
    void *h = open_checked(err);
    if (!h)
        return NULL;
    kiln_cuda_module_backend_create_fn create =
        (kiln_cuda_module_backend_create_fn)dlsym(h, "kiln_cuda_module_backend_create");
    kiln_nn_backend *be = NULL;
    if (!create)
        kiln_err_set(err, KILN_EDEVICE, "%s lacks kiln_cuda_module_backend_create",
                     KILN_CUDA_MODULE_NAME);
    else if (!(be = create(opts, err)) && err && err->code == KILN_EDEVICE)
        kiln_err_wrap(err, "no usable GPU");
    /* RTLD_NODELETE: the backend's code stays mapped after this. */
    dlclose(h);
    return be;
}
