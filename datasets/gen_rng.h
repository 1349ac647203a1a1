/* gen_rng.h - small seeded PRNG (splitmix64 seeding a xoshiro256** state) for the dataset generators. */
#ifndef SP_GEN_RNG_H
#define SP_GEN_RNG_H

#include <math.h>
#include <stdint.h>

/* A generator is a value: each image or stream owns one, so no state is ever shared between threads. */
typedef struct {
    uint64_t s[4];
} gen_rng;

/* splitmix64: spreads consecutive seeds far apart, which is why it, not the seed, fills xoshiro's state. */
static inline uint64_t gen_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* One independent stream per (seed, stream) pair: an image's bytes depend on its index, never on scheduling. */
static inline void gen_rng_seed(gen_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t mix = stream;
    uint64_t st = seed ^ gen_splitmix64(&mix);
    for (int i = 0; i < 4; i++)
        r->s[i] = gen_splitmix64(&st);
}

static inline uint64_t gen_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256**: fast, 256-bit state, good enough statistics for synthetic data. */
static inline uint64_t gen_next(gen_rng *r)
{
    uint64_t *s = r->s;
    const uint64_t out = gen_rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = gen_rotl(s[3], 45);
    return out;
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double gen_uniform(gen_rng *r)
{
    return (double)(gen_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform in [lo, hi). */
static inline double gen_range(gen_rng *r, double lo, double hi)
{
    return lo + (hi - lo) * gen_uniform(r);
}

/* Uniform integer in [0, n), n < 2^32; multiply-shift, whose bias (< n / 2^32) is irrelevant here. */
static inline uint32_t gen_below(gen_rng *r, uint32_t n)
{
    return (uint32_t)(((gen_next(r) >> 32) * (uint64_t)n) >> 32);
}

/* Standard normal by Box-Muller; only used for a few per-image parameters, so speed does not matter. */
static inline double gen_normal(gen_rng *r)
{
    const double u1 = 1.0 - gen_uniform(r); /* (0, 1], so log() is finite */
    const double u2 = gen_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif /* SP_GEN_RNG_H */
