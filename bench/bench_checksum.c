/* bench_checksum.c - measures the checksum candidates for the shard format on one buffer, in one
 * run: XXH3-64 (the format's choice) against CRC32C with the SSE4.2 instruction and XXH32. Prints
 * GB/s for each and the ratios, so the choice recorded in docs/performance.md can be re-checked. */
#define XXH_INLINE_ALL
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
__attribute__((target("sse4.2"))) static uint64_t crc32c_hw(const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t c = 0xFFFFFFFFu;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
    }
    for (; n; n--, p++)
        c = _mm_crc32_u8((uint32_t)c, *p);
    return c ^ 0xFFFFFFFFu;
}
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef uint64_t (*hash_fn)(const void *, size_t);

static uint64_t xxh3(const void *p, size_t n) { return XXH3_64bits(p, n); }
static uint64_t xxh32(const void *p, size_t n) { return XXH32(p, n, 0); }

/* Best of several passes: the machine is shared, the minimum is the least disturbed. */
static double rate(hash_fn f, const uint8_t *buf, size_t n, size_t block, uint64_t *sink)
{
    double best = 1e30;
    for (int rep = 0; rep < 7; rep++) {
        double t0 = now();
        for (size_t off = 0; off + block <= n; off += block)
            *sink ^= f(buf + off, block);
        double t = now() - t0;
        if (t < best)
            best = t;
    }
    return (double)n / best / 1e9;
}

int main(int argc, char **argv)
{
    size_t block = argc > 1 ? strtoull(argv[1], NULL, 0) : (1u << 20);
    size_t n = 256u << 20;
    uint8_t *buf = malloc(n);
    if (!buf || block == 0 || block > n) {
        fprintf(stderr, "bench_checksum: bad block size or out of memory\n");
        return 1;
    }
    uint64_t x = 0x9E3779B97F4A7C15ull, sink = 0;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
    double r3 = rate(xxh3, buf, n, block, &sink);
    double r32 = rate(xxh32, buf, n, block, &sink);
    printf("block_bytes %zu\n", block);
    printf("xxh3_64 GB/s %.2f\n", r3);
    printf("xxh32 GB/s %.2f\n", r32);
#if defined(__x86_64__)
    double rc = rate(crc32c_hw, buf, n, block, &sink);
    printf("crc32c_sse42 GB/s %.2f\n", rc);
    printf("ratio xxh3/crc32c %.2f\n", r3 / rc);
#endif
    printf("ratio xxh3/xxh32 %.2f\n(sink %llx)\n", r3 / r32, (unsigned long long)sink);
    free(buf);
    return 0;
}
