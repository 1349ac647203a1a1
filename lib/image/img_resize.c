/* img_resize.c - a separable resampler: a triangle filter whose support widens with the shrink
 * factor, so shrinking averages every covered pixel (antialiased) and growing is bilinear.
 * Pixels are RGBX (4 bytes). The vertical pass runs first, over only the columns the horizontal
 * pass reads, on whole rows the compiler vectorizes; the horizontal pass multiplies two taps of
 * all four channels at once (SSE2 pmaddwd) where the target has it. Weights are 14-bit fixed
 * point and each pass rounds to uint8, as Pillow's resampler does. */
#include <math.h>
#include <stdatomic.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

#include "img.h"

#define W_BITS 14
#define W_ONE (1 << W_BITS)

/* The taps of one output axis: output i reads src[start[i] .. start[i] + n[i]) with weights
 * w[i * taps ...]. */
typedef struct axis {
    int32_t *start, *n;
    int16_t *w;
    int taps;
} axis;

/* Upper bound on taps for an axis shrinking by `scale`, rounded up to an even count: the
 * horizontal pass takes taps in pairs, the last weight of an odd count being zero. */
static int taps_for(double scale)
{
    double support = scale > 1 ? scale : 1;
    return (int)ceil(support) * 2 + 2;
}

static double triangle(double x)
{
    x = fabs(x);
    return x < 1 ? 1 - x : 0;
}

/* Fills a for `out` outputs covering [b0, b1) of an input of `in` pixels. */
static void axis_build(axis *a, double b0, double b1, uint32_t in, uint32_t out, bool flip)
{
    double scale = (b1 - b0) / out, fs = scale > 1 ? scale : 1, support = fs;
    for (uint32_t i = 0; i < out; i++) {
        double centre = b0 + (i + 0.5) * scale;
        int lo = (int)floor(centre - support + 0.5), hi = (int)floor(centre + support + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > (int)in)
            hi = (int)in;
        if (hi - lo > a->taps) { /* cannot happen (taps_for bounds the support); keep the centre taps */
            lo = (int)floor(centre) - a->taps / 2;
            lo = lo < 0 ? 0 : lo;
            hi = lo + a->taps <= (int)in ? lo + a->taps : (int)in;
        }
        if (hi <= lo) { /* a box outside the image: take the nearest edge pixel */
            lo = centre < 0 ? 0 : (int)in - 1;
            hi = lo + 1;
        }
        double sum = 0;
        for (int j = lo; j < hi; j++)
            sum += triangle((j + 0.5 - centre) / fs);
        uint32_t o = flip ? out - 1 - i : i;
        int16_t *w = a->w + (size_t)o * a->taps;
        int total = 0, n = hi - lo;
        if (sum <= 0) { /* every tap at weight zero: the nearest pixel */
            int c = (int)floor(centre) - lo;
            c = c < 0 ? 0 : c >= n ? n - 1 : c;
            for (int j = 0; j < n; j++)
                w[j] = (int16_t)(j == c ? W_ONE : 0);
            total = W_ONE;
        } else {
            for (int j = 0; j < n; j++)
                total += w[j] = (int16_t)lrint(triangle((lo + j + 0.5 - centre) / fs) / sum * W_ONE);
        }
        /* Rounding can leave the sum a little off one: put the rest on the largest tap. */
        int big = 0;
        for (int j = 1; j < n; j++)
            big = w[j] > w[big] ? j : big;
        w[big] = (int16_t)(w[big] + (W_ONE - total));
        for (int j = n; j < a->taps; j++)
            w[j] = 0;
        a->start[o] = lo;
        a->n[o] = n;
    }
}

static inline uint8_t clamp8(int32_t v)
{
    v >>= W_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

size_t img_resize_tmp_bytes(uint32_t size, uint32_t max_w)
{
    /* Taps per output on either axis: at most the whole source side over size, doubled, plus the
     * pair padding (taps_for of the largest shrink). */
    size_t taps = 2 * (((size_t)max_w + size - 1) / size) + 4;
    return 2 * (size_t)size * (sizeof(int32_t) * 2 + sizeof(int16_t) * taps) + 16 +
           ((size_t)max_w + 2) * 4 * sizeof(int32_t) + (size_t)size * ((size_t)max_w + 2) * 4 + 64;
}

/* One output row of the horizontal pass: size RGB pixels from a row of RGBX pixels. */
__attribute__((noinline)) static void hpass(const uint8_t *row, const axis *ax, int32_t shift, uint32_t size, uint8_t *o)
{
    for (uint32_t x = 0; x < size; x++) {
        const uint8_t *q = row + 4 * (size_t)(ax->start[x] - shift);
        const int16_t *wt = ax->w + (size_t)x * ax->taps;
        int32_t n = ax->n[x];
#if defined(__SSE2__)
        /* Taps in pairs: an odd count's last pair reads the next pixel (inside the row or its
         * zeroed slack) at weight zero. */
        const __m128i zero = _mm_setzero_si128();
        __m128i acc = _mm_set1_epi32(1 << (W_BITS - 1));
        for (int32_t k = 0; k < n; k += 2) {
            /* pixels k and k+1 as int16 [r0 g0 b0 x0 r1 g1 b1 x1], paired per channel */
            __m128i px = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(const void *)(q + 4 * k)), zero);
            __m128i pairs = _mm_unpacklo_epi16(px, _mm_unpackhi_epi64(px, px));
            int32_t wp;
            memcpy(&wp, wt + k, 4); /* w[k] low, w[k+1] high: the pair's weights as pmaddwd wants them */
            acc = _mm_add_epi32(acc, _mm_madd_epi16(pairs, _mm_set1_epi32(wp)));
        }
        acc = _mm_srai_epi32(acc, W_BITS);
        __m128i packed = _mm_packus_epi16(_mm_packs_epi32(acc, acc), zero);
        uint32_t rgbx = (uint32_t)_mm_cvtsi128_si32(packed);
        if (x + 1 < size) { /* the fourth byte lands on the next pixel, written next */
            memcpy(o + 3 * x, &rgbx, 4);
        } else {
            o[3 * x] = (uint8_t)rgbx;
            o[3 * x + 1] = (uint8_t)(rgbx >> 8);
            o[3 * x + 2] = (uint8_t)(rgbx >> 16);
        }
#else
        int32_t r = 1 << (W_BITS - 1), g = r, b = r;
        for (int32_t k = 0; k < n; k++) {
            r += wt[k] * q[4 * k];
            g += wt[k] * q[4 * k + 1];
            b += wt[k] * q[4 * k + 2];
        }
        o[3 * x] = clamp8(r);
        o[3 * x + 1] = clamp8(g);
        o[3 * x + 2] = clamp8(b);
#endif
    }
}

#ifdef HAVE_AVX2_PATH
/* The vertical pass 32 bytes at a time, for CPUs with AVX2 (chosen at run time); returns how many
 * bytes it did, leaving the tail to vpass. */
__attribute__((target("avx2"), noinline)) static size_t vpass_avx2(const uint8_t *base, size_t stride,
                                                                  const int16_t *wt, int32_t n, size_t bytes,
                                                                  uint8_t *o)
{
    const __m256i zero = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 32 <= bytes; i += 32) {
        __m256i a0 = _mm256_set1_epi32(1 << (W_BITS - 1)), a1 = a0, a2 = a0, a3 = a0;
        for (int32_t k = 0; k < n; k += 2) {
            __m256i r0 = _mm256_loadu_si256((const __m256i *)(const void *)(base + (size_t)k * stride + i));
            __m256i r1 = k + 1 < n
                             ? _mm256_loadu_si256((const __m256i *)(const void *)(base + (size_t)(k + 1) * stride + i))
                             : zero;
            uint16_t w1 = k + 1 < n ? (uint16_t)wt[k + 1] : 0;
            __m256i w = _mm256_set1_epi32((int32_t)(((uint32_t)w1 << 16) | (uint16_t)wt[k]));
            /* unpacks work within each 128-bit half; the packs below undo it in the same way */
            __m256i lo0 = _mm256_unpacklo_epi8(r0, zero), hi0 = _mm256_unpackhi_epi8(r0, zero);
            __m256i lo1 = _mm256_unpacklo_epi8(r1, zero), hi1 = _mm256_unpackhi_epi8(r1, zero);
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_unpacklo_epi16(lo0, lo1), w));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_unpackhi_epi16(lo0, lo1), w));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_unpacklo_epi16(hi0, hi1), w));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_unpackhi_epi16(hi0, hi1), w));
        }
        a0 = _mm256_srai_epi32(a0, W_BITS), a1 = _mm256_srai_epi32(a1, W_BITS);
        a2 = _mm256_srai_epi32(a2, W_BITS), a3 = _mm256_srai_epi32(a3, W_BITS);
        __m256i packed = _mm256_packus_epi16(_mm256_packs_epi32(a0, a1), _mm256_packs_epi32(a2, a3));
        _mm256_storeu_si256((__m256i *)(void *)(o + i), packed);
    }
    return i;
}

static int have_avx2(void)
{
    static atomic_int cached = -1; /* every thread computes the same answer */
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") ? 1 : 0;
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v;
}
#endif

/* One output row of the vertical pass: n source rows (stride apart) weighted into bytes bytes. */
__attribute__((noinline)) static void vpass(const uint8_t *base, size_t stride, const int16_t *wt, int32_t n, size_t bytes, int32_t *acc,
                  uint8_t *o)
{
    size_t i = 0;
#ifdef HAVE_AVX2_PATH
    if (have_avx2())
        i = vpass_avx2(base, stride, wt, n, bytes, o);
#endif
#if defined(__SSE2__)
    /* 16 bytes at a time, two source rows per pmaddwd, the sums kept in registers. */
    const __m128i zero = _mm_setzero_si128();
    for (; i + 16 <= bytes; i += 16) {
        __m128i a0 = _mm_set1_epi32(1 << (W_BITS - 1)), a1 = a0, a2 = a0, a3 = a0;
        for (int32_t k = 0; k < n; k += 2) {
            __m128i r0 = _mm_loadu_si128((const __m128i *)(const void *)(base + (size_t)k * stride + i));
            __m128i r1 = k + 1 < n ? _mm_loadu_si128((const __m128i *)(const void *)(base + (size_t)(k + 1) * stride + i))
                                   : zero;
            uint16_t w1 = k + 1 < n ? (uint16_t)wt[k + 1] : 0;
            __m128i w = _mm_set1_epi32((int32_t)(((uint32_t)w1 << 16) | (uint16_t)wt[k]));
            __m128i lo0 = _mm_unpacklo_epi8(r0, zero), hi0 = _mm_unpackhi_epi8(r0, zero);
            __m128i lo1 = _mm_unpacklo_epi8(r1, zero), hi1 = _mm_unpackhi_epi8(r1, zero);
            a0 = _mm_add_epi32(a0, _mm_madd_epi16(_mm_unpacklo_epi16(lo0, lo1), w));
            a1 = _mm_add_epi32(a1, _mm_madd_epi16(_mm_unpackhi_epi16(lo0, lo1), w));
            a2 = _mm_add_epi32(a2, _mm_madd_epi16(_mm_unpacklo_epi16(hi0, hi1), w));
            a3 = _mm_add_epi32(a3, _mm_madd_epi16(_mm_unpackhi_epi16(hi0, hi1), w));
        }
        a0 = _mm_srai_epi32(a0, W_BITS), a1 = _mm_srai_epi32(a1, W_BITS);
        a2 = _mm_srai_epi32(a2, W_BITS), a3 = _mm_srai_epi32(a3, W_BITS);
        __m128i packed = _mm_packus_epi16(_mm_packs_epi32(a0, a1), _mm_packs_epi32(a2, a3));
        _mm_storeu_si128((__m128i *)(void *)(o + i), packed);
    }
#endif
    for (size_t j = i; j < bytes; j++)
        acc[j] = 1 << (W_BITS - 1);
    for (int32_t k = 0; k < n; k++) {
        const uint8_t *q = base + (size_t)k * stride;
        int32_t wk = wt[k];
        for (size_t j = i; j < bytes; j++)
            acc[j] += wk * q[j];
    }
    for (size_t j = i; j < bytes; j++)
        o[j] = clamp8(acc[j]);
}

void img_resize_wh(const uint8_t *src, uint32_t w, uint32_t h, size_t stride, const img_box *box, uint32_t ow,
                   uint32_t oh, uint8_t *dst, void *tmp)
{
    axis ax, ay;
    ax.taps = taps_for((box->x1 - box->x0) / ow);
    ay.taps = taps_for((box->y1 - box->y0) / oh);
    uint8_t *p = tmp;
    ax.start = (int32_t *)p, p += ow * sizeof(int32_t);
    ax.n = (int32_t *)p, p += ow * sizeof(int32_t);
    ay.start = (int32_t *)p, p += oh * sizeof(int32_t);
    ay.n = (int32_t *)p, p += oh * sizeof(int32_t);
    ax.w = (int16_t *)p, p += (size_t)ow * ax.taps * sizeof(int16_t);
    ay.w = (int16_t *)p, p += (size_t)oh * ay.taps * sizeof(int16_t);
    p = (uint8_t *)sp_align_up((uintptr_t)p, 16);
    axis_build(&ax, box->x0, box->x1, w, ow, box->flip);
    axis_build(&ay, box->y0, box->y1, h, oh, false);

    /* Only the source columns some output column reads go through the vertical pass. */
    int32_t xlo = ax.start[0], xhi = ax.start[0] + ax.n[0];
    for (uint32_t i = 0; i < ow; i++) {
        xlo = ax.start[i] < xlo ? ax.start[i] : xlo;
        xhi = ax.start[i] + ax.n[i] > xhi ? ax.start[i] + ax.n[i] : xhi;
    }
    const size_t cols = (size_t)(xhi - xlo), rb = (cols + 2) * 4; /* a zero pixel of slack for pairs */
    int32_t *acc = (int32_t *)(void *)p;
    p += rb * sizeof(int32_t);
    uint8_t *rows = p; /* vertical pass output: oh rows of cols RGBX pixels */
    for (uint32_t y = 0; y < oh; y++) {
        const int16_t *wt = ay.w + (size_t)y * ay.taps;
        const uint8_t *base = src + (size_t)ay.start[y] * stride + 4 * (size_t)xlo;
        uint8_t *o = rows + (size_t)y * rb;
        vpass(base, stride, wt, ay.n[y], cols * 4, acc, o);
        memset(o + cols * 4, 0, rb - cols * 4);
        hpass(o, &ax, xlo, ow, dst + (size_t)y * ow * 3);
    }
}

void img_resize(const uint8_t *src, uint32_t w, uint32_t h, size_t stride, const img_box *box, uint32_t size,
                uint8_t *dst, void *tmp)
{
    img_resize_wh(src, w, h, stride, box, size, size, dst, tmp);
}

size_t img_resize_wh_tmp_bytes(uint32_t ow, uint32_t oh, uint32_t w, uint32_t h)
{
    size_t tx = 2 * (((size_t)w + ow - 1) / ow) + 4, ty = 2 * (((size_t)h + oh - 1) / oh) + 4;
    return ((size_t)ow + oh) * 2 * sizeof(int32_t) + ((size_t)ow * tx + (size_t)oh * ty) * sizeof(int16_t) + 16 +
           ((size_t)w + 2) * 4 * sizeof(int32_t) + (size_t)oh * ((size_t)w + 2) * 4 + 64;
}
