/* img_resize.c - a separable resampler: a triangle filter whose support widens with the shrink
 * factor, so shrinking averages every covered pixel (antialiased) and growing is bilinear. The
 * horizontal pass runs first, over only the rows the vertical pass reads; weights are 14-bit fixed
 * point and every pass rounds to uint8, as Pillow's resampler does. */
#include <math.h>

#include "img.h"

#define W_BITS 14
#define W_ONE (1 << W_BITS)
#define MAX_TAPS_CAP 64 /* a box shrunk by more than ~31x is first reduced by the DCT scale */

/* The taps of one output axis: output i reads src[start[i] .. start[i] + n[i]) with weights
 * w[i * taps ...]. */
typedef struct axis {
    int32_t *start, *n;
    int16_t *w;
    int taps;
} axis;

/* Upper bound on taps for an axis shrinking by `scale`. */
static int taps_for(double scale)
{
    double support = scale > 1 ? scale : 1;
    int t = (int)ceil(support) * 2 + 1;
    return t < MAX_TAPS_CAP ? t : MAX_TAPS_CAP;
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
    double k[MAX_TAPS_CAP];
    for (uint32_t i = 0; i < out; i++) {
        double centre = b0 + (i + 0.5) * scale;
        int lo = (int)floor(centre - support + 0.5), hi = (int)floor(centre + support + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > (int)in)
            hi = (int)in;
        if (hi - lo > a->taps) { /* only when the support was capped: keep the centre taps */
            int mid = (int)floor(centre);
            lo = mid - a->taps / 2;
            lo = lo < 0 ? 0 : lo;
            hi = lo + a->taps <= (int)in ? lo + a->taps : (int)in;
        }
        if (hi <= lo) { /* a box outside the image: take the nearest edge pixel */
            lo = centre < 0 ? 0 : (int)in - 1;
            hi = lo + 1;
        }
        double sum = 0;
        for (int j = lo; j < hi; j++)
            sum += k[j - lo] = triangle((j + 0.5 - centre) / fs);
        uint32_t o = flip ? out - 1 - i : i;
        int16_t *w = a->w + (size_t)o * a->taps;
        int total = 0, n = hi - lo;
        if (sum <= 0) { /* every tap at weight zero: the nearest pixel */
            for (int j = 0; j < n; j++)
                k[j] = 0;
            int c = (int)floor(centre) - lo;
            k[c < 0 ? 0 : c >= n ? n - 1 : c] = sum = 1;
        }
        for (int j = 0; j < n; j++)
            total += w[j] = (int16_t)lrint(k[j] / sum * W_ONE);
        /* Rounding can leave the sum a little off one: put the rest on the largest tap. */
        int big = 0;
        for (int j = 1; j < n; j++)
            big = w[j] > w[big] ? j : big;
        w[big] = (int16_t)(w[big] + (W_ONE - total));
        a->start[o] = lo;
        a->n[o] = n;
    }
}

static inline uint8_t clamp8(int32_t v)
{
    v >>= W_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

size_t img_resize_tmp_bytes(uint32_t size, uint32_t h)
{
    int taps = MAX_TAPS_CAP;
    return 2 * (size_t)size * (sizeof(int32_t) * 2 + sizeof(int16_t) * taps) + (size_t)size * 3 * sizeof(int32_t) +
           (size_t)size * 3 * h + 64;
}

void img_resize(const uint8_t *src, uint32_t w, uint32_t h, size_t stride, const img_box *box, uint32_t size,
                uint8_t *dst, void *tmp)
{
    axis ax, ay;
    ax.taps = taps_for((box->x1 - box->x0) / size);
    ay.taps = taps_for((box->y1 - box->y0) / size);
    uint8_t *p = tmp;
    ax.start = (int32_t *)p, p += size * sizeof(int32_t);
    ax.n = (int32_t *)p, p += size * sizeof(int32_t);
    ay.start = (int32_t *)p, p += size * sizeof(int32_t);
    ay.n = (int32_t *)p, p += size * sizeof(int32_t);
    int32_t *acc = (int32_t *)p;
    p += (size_t)size * 3 * sizeof(int32_t);
    ax.w = (int16_t *)p, p += (size_t)size * ax.taps * sizeof(int16_t);
    ay.w = (int16_t *)p, p += (size_t)size * ay.taps * sizeof(int16_t);
    uint8_t *rows = p; /* horizontal pass output: 3*size bytes per source row */
    axis_build(&ax, box->x0, box->x1, w, size, box->flip);
    axis_build(&ay, box->y0, box->y1, h, size, false);

    /* Only the source rows some output row reads go through the horizontal pass. */
    int32_t ylo = ay.start[0], yhi = ay.start[size - 1] + ay.n[size - 1];
    for (uint32_t i = 0; i < size; i++) {
        ylo = ay.start[i] < ylo ? ay.start[i] : ylo;
        yhi = ay.start[i] + ay.n[i] > yhi ? ay.start[i] + ay.n[i] : yhi;
    }
    const size_t rb = (size_t)size * 3;
    for (int32_t y = ylo; y < yhi; y++) {
        const uint8_t *s = src + (size_t)y * stride;
        uint8_t *o = rows + (size_t)(y - ylo) * rb;
        for (uint32_t x = 0; x < size; x++) {
            const uint8_t *q = s + 3 * (size_t)ax.start[x];
            const int16_t *wt = ax.w + (size_t)x * ax.taps;
            int32_t r = 1 << (W_BITS - 1), g = r, b = r;
            for (int32_t k = 0; k < ax.n[x]; k++, q += 3) {
                r += wt[k] * q[0];
                g += wt[k] * q[1];
                b += wt[k] * q[2];
            }
            o[3 * x] = clamp8(r);
            o[3 * x + 1] = clamp8(g);
            o[3 * x + 2] = clamp8(b);
        }
    }
    for (uint32_t y = 0; y < size; y++) {
        const int16_t *wt = ay.w + (size_t)y * ay.taps;
        const uint8_t *base = rows + (size_t)(ay.start[y] - ylo) * rb;
        for (size_t i = 0; i < rb; i++)
            acc[i] = 1 << (W_BITS - 1);
        for (int32_t k = 0; k < ay.n[y]; k++) {
            const uint8_t *q = base + (size_t)k * rb;
            int32_t wk = wt[k];
            for (size_t i = 0; i < rb; i++)
                acc[i] += wk * q[i];
        }
        uint8_t *o = dst + (size_t)y * rb;
        for (size_t i = 0; i < rb; i++)
            o[i] = clamp8(acc[i]);
    }
}
