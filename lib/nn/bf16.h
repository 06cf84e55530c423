/* lib/nn/bf16.h — bfloat16 storage (1 sign, 8 exponent, 7 mantissa bits:
 * the top half of a float32), in a header that C and CUDA (.cu) units both
 * include, so the CPU's bf16 backend (the oracle of mixed precision) and the
 * GPU kernels round every value to the same bits.
 *
 * Conversions are plain integer operations rather than CUDA's intrinsics
 * (__float2bfloat16_rn): the same code on both sides, so a value the GPU
 * stores is exactly the value the CPU emulation stores. */
#ifndef KILN_NN_BF16_H
#define KILN_NN_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nn/mask.h" /* KILN_NN_HOST_DEVICE */

typedef uint16_t kiln_bf16;

/* Round to nearest, ties to even; NaN stays a (quiet) NaN, infinities and
 * overflow past the largest bf16 become infinities as in IEEE rounding. */
KILN_NN_HOST_DEVICE static inline kiln_bf16 kiln_bf16_from_f32(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (kiln_bf16)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (kiln_bf16)(u >> 16);
}

KILN_NN_HOST_DEVICE static inline float kiln_bf16_to_f32(kiln_bf16 b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* f rounded to the nearest bf16, as a float. */
KILN_NN_HOST_DEVICE static inline float kiln_bf16_round(float f)
{
    return kiln_bf16_to_f32(kiln_bf16_from_f32(f));
}

#endif
