/* sp_rng.c - the one deterministic generator: the planner's shuffles and the image transforms'
 * crops both draw from it, so the same seed gives the same stream on every machine. */
#include "sp_rng.h"

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void sp_rng_seed(sp_rng *r, uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    /* Each input is folded in through its own splitmix step, so (a, b) and (b, a) differ. */
    uint64_t x = a;
    uint64_t h = splitmix(&x);
    x = h ^ b;
    h = splitmix(&x);
    x = h ^ c;
    h = splitmix(&x);
    x = h ^ d;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&x);
}

static uint64_t rotl(uint64_t v, int k) { return (v << k) | (v >> (64 - k)); }

/* xoshiro256** */
uint64_t sp_rng_next(sp_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Multiply-shift with rejection of the biased low range. */
uint64_t sp_rng_below(sp_rng *r, uint64_t n)
{
    for (;;) {
        unsigned __int128 m = (unsigned __int128)sp_rng_next(r) * n;
        uint64_t low = (uint64_t)m;
        if (low >= n || low >= (0 - n) % n)
            return (uint64_t)(m >> 64);
    }
}
