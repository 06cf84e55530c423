/* lib/nn/cpu/cpu_simd.c — instantiates cpu_simd.inc for baseline x86-64
 * (4-wide SSE2 vectors), AVX2+FMA (8 wide) and AVX-512 (16 wide); the best
 * set the CPU supports is chosen at run time. */
#include <math.h>
#include <string.h>

#include "nn/cpu/cpu_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define KILN_CPU_X86 1
#endif

#define KBLOCK 512

/* Baseline: 16-byte vectors, separate multiply and add. */
typedef float kv4 __attribute__((vector_size(16)));
typedef int32_t kv4i __attribute__((vector_size(16)));
typedef float kv2 __attribute__((vector_size(8)));
typedef double kv2d __attribute__((vector_size(16)));
#define KSFX(name) name##_generic
#define KTARGET
#define KV kv4
#define KVI kv4i
#define KVH kv2
#define KVD kv2d
#define KW 4
#define KFMA(a, b, c) ((a) * (b) + (c))
#ifdef KILN_CPU_X86
#define KSQRT(a) ((kv4)_mm_sqrt_ps((__m128)(a)))
#else
static inline kv4 sqrt4(kv4 a)
{
    for (int i = 0; i < 4; i++)
        a[i] = sqrtf(a[i]);
    return a;
}
#define KSQRT(a) sqrt4(a)
#endif
#include "nn/cpu/cpu_simd.inc"

void cpu_kernels_generic(cpu_kernels *k)
{
    fill_table_generic(k);
    k->isa = "sse2";
}

#ifdef KILN_CPU_X86
typedef float kv8 __attribute__((vector_size(32)));
typedef int32_t kv8i __attribute__((vector_size(32)));
typedef double kv4d __attribute__((vector_size(32)));
#define KSFX(name) name##_avx2
#define KTARGET __attribute__((target("avx2,fma")))
#define KV kv8
#define KVI kv8i
#define KVH kv4
#define KVD kv4d
#define KW 8
#define KFMA(a, b, c) ((kv8)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(c)))
#define KSQRT(a) ((kv8)_mm256_sqrt_ps((__m256)(a)))
#include "nn/cpu/cpu_simd.inc"

typedef float kv16 __attribute__((vector_size(64)));
typedef int32_t kv16i __attribute__((vector_size(64)));
typedef double kv8d __attribute__((vector_size(64)));
#define KSFX(name) name##_avx512
#define KTARGET __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))
#define KV kv16
#define KVI kv16i
#define KVH kv8
#define KVD kv8d
#define KW 16
#define KFMA(a, b, c) ((kv16)_mm512_fmadd_ps((__m512)(a), (__m512)(b), (__m512)(c)))
#define KSQRT(a) ((kv16)_mm512_sqrt_ps((__m512)(a)))
#include "nn/cpu/cpu_simd.inc"

void cpu_kernels_best(cpu_kernels *k, const char *want)
{
    if (want && strcmp(want, "sse2") == 0)
        return;
    if (want && strcmp(want, "avx2") != 0 && strcmp(want, "avx512") != 0)
        want = NULL; /* unknown names do not cap anything */
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("avx512vl");
    if (avx512 && (!want || strcmp(want, "avx512") == 0)) {
        fill_table_avx512(k);
        k->isa = "avx512";
    } else if (avx2) {
        fill_table_avx2(k);
        k->isa = "avx2";
    }
}
#else
void cpu_kernels_best(cpu_kernels *k, const char *want)
{
    (void)k;
    (void)want;
}
#endif
