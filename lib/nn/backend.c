/* lib/nn/backend.c — what every backend shares. */
#include "nn/backend.h"

void kiln_nn_backend_destroy(kiln_nn_backend *be)
{
    if (be)
        be->ops->destroy(be);
}
