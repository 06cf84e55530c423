#include "common/rng.h"

/* splitmix64: tiny, full-period, and good enough to seed and drive
 * augmentation and splits; each step is a strong 64-bit mix. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void kiln_rng_seed(kiln_rng *rng, uint64_t seed)
{
    rng->state = mix64(seed + 0x9e3779b97f4a7c15ULL);
}

void kiln_rng_derive(kiln_rng *rng, uint64_t seed, uint64_t a, uint64_t b)
{
    rng->state = mix64(mix64(mix64(seed) ^ (a + 0x632be59bd9b4e019ULL)) ^
                       (b + 0x8cb92ba72f3d8dd7ULL));
}

uint64_t kiln_rng_next(kiln_rng *rng)
{
    rng->state += 0x9e3779b97f4a7c15ULL;
    return mix64(rng->state);
}

double kiln_rng_uniform(kiln_rng *rng)
{
    return (double)(kiln_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t kiln_rng_below(kiln_rng *rng, uint64_t n)
{
    /* Rejection keeps it unbiased. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do {
        x = kiln_rng_next(rng);
    } while (x >= limit);
    return x % n;
}

void kiln_rng_shuffle_u32(kiln_rng *rng, uint32_t *v, uint64_t n)
{
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = kiln_rng_below(rng, i);
        uint32_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}
