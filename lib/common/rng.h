/* lib/common/rng.h — small deterministic random numbers.
 *
 * A kiln_rng is a value (no global state). Streams are derived from a seed
 * and a tuple of counters (epoch, sample index, ...) with kiln_rng_derive,
 * so results do not depend on thread count or on the order work is done.
 * Not for cryptography.
 */
#ifndef KILN_COMMON_RNG_H
#define KILN_COMMON_RNG_H

#include <stdint.h>

typedef struct kiln_rng {
    uint64_t state;
} kiln_rng;

void kiln_rng_seed(kiln_rng *rng, uint64_t seed);
/* A stream that depends only on (seed, a, b). */
void kiln_rng_derive(kiln_rng *rng, uint64_t seed, uint64_t a, uint64_t b);
uint64_t kiln_rng_next(kiln_rng *rng);
/* Uniform in [0, 1). */
double kiln_rng_uniform(kiln_rng *rng);
/* Uniform integer in [0, n); n > 0. */
uint64_t kiln_rng_below(kiln_rng *rng, uint64_t n);
/* Fisher–Yates shuffle of n indices. */
void kiln_rng_shuffle_u32(kiln_rng *rng, uint32_t *v, uint64_t n);

#endif
