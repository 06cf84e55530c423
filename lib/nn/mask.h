/* lib/nn/mask.h — the uniform draw behind the backends' `mask` op, in a
 * header that both C and CUDA (.cu) translation units include, so the CPU
 * and CUDA backends draw bit-identical masks. */
#ifndef KILN_NN_MASK_H
#define KILN_NN_MASK_H

#include <stdint.h>

#if defined(__CUDACC__)
#define KILN_NN_HOST_DEVICE __host__ __device__
#else
#define KILN_NN_HOST_DEVICE
#endif

/* A pure function of (seed, index) (splitmix64's finaliser), in [0, 1):
 * the top 24 bits, so the float is exact. */
KILN_NN_HOST_DEVICE static inline float kiln_nn_mask_uniform(uint64_t seed, uint64_t index)
{
    uint64_t z = seed ^ (index * 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

#endif
