/* sp_rng.h - a small deterministic generator (xoshiro256**, seeded through splitmix64). The same
 * four seed words give the same stream on every machine and thread count. */
#ifndef SP_RNG_H
#define SP_RNG_H

#include <stdint.h>

typedef struct sp_rng {
    uint64_t s[4];
} sp_rng;

/* Each word is folded in by its own step, so (a, b) and (b, a) give different streams. */
void sp_rng_seed(sp_rng *r, uint64_t a, uint64_t b, uint64_t c, uint64_t d);
uint64_t sp_rng_next(sp_rng *r);
/* Uniform in [0, n), n > 0, without modulo bias. */
uint64_t sp_rng_below(sp_rng *r, uint64_t n);

#endif
