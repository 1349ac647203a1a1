/* img_png.c - PNG through libspng: the header checked against the limits before any pixel, then
 * the rows decoded one at a time (RGBA8, whatever the colour type and bit depth: palette, gray,
 * gray+alpha, 16-bit to 8 by the high byte), stopping after the crop's last row, and reduced on
 * the way by the 1/k average a JPEG's DCT scale would give, so the region the resampler reads is
 * no larger than a JPEG's. An interlaced (Adam7) image is only whole after its last pass: its
 * crop rows are kept at full width, within max_image_memory. Alpha is dropped: colour kept as
 * stored (what PIL's convert("RGB") gives, and so torchvision's ImageFolder). libspng allocates
 * through a counter capped at max_image_memory plus its row buffers.
 *
 * The common case, an 8-bit RGB or RGBA image without interlacing (a photo saved as PNG), has a
 * path of its own after libspng has read and checked every chunk before the image data: the IDAT
 * chunks are inflated by zlib many rows at a time, each row unfiltered only as far as the crop's
 * right edge (no filter reads to its right) with SIMD Paeth and Average where the CPU has SSE2,
 * and the crop's columns written straight into the region. Its pixels are libspng's, bit for bit.
 * Neither the IDAT chunks' CRCs nor zlib's Adler-32 are checked on it (libspng checked both, and
 * they were a twentieth of the time): the shard block holding the image has its own checksums,
 * which the loader verifies when it reads the block, and every chunk before the image data is
 * still checked by libspng. */
#include <stdio.h>
#include <stdlib.h>

#include <spng.h>
#include <zlib.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "img.h"

/* Beyond max_image_memory, what libspng may allocate for one image: its context, zlib's window
 * and state (about 300 KiB), two rows of the widest image at 16 bits and 4 channels, and the
 * chunk cache below. */
#define PNG_ROWS ((uint64_t)IMG_MAX_SIDE * 8 * 3 + (4u << 20))
/* Ancillary chunk data libspng keeps (text, ICC profile, ...): never needed for pixels. It is also
 * the most one chunk may hold once inflated (a zTXt, compressed iTXt or iCCP): real files carry
 * text and profiles that inflate to several times the file's size (a 14 KB PNG of Debian's
 * desktop-base with a 6.5 KB zTXt), so the file's size is no bound for them; PIL refuses text
 * beyond 1 MiB. */
#define PNG_CHUNK_CACHE (2u << 20)

/* libspng's allocator has no user pointer: the budget of the decode on this thread. Every block
 * has a 16-byte header holding its size. */
typedef struct png_budget {
    uint64_t used, cap;
    bool over; /* a request was refused for the cap */
} png_budget;

static _Thread_local png_budget *tl_budget;

static void *pa_take(void *old, size_t n, bool zero)
{
    png_budget *b = tl_budget;
    size_t had = old ? *(size_t *)((char *)old - 16) : 0;
    if (n > SIZE_MAX - 16 || (b && b->used - had + n > b->cap)) {
        if (b)
            b->over = true;
        return NULL;
    }
    char *p = old ? sp_realloc((char *)old - 16, n + 16) : zero ? sp_calloc(1, n + 16) : sp_malloc(n + 16);
    if (!p)
        return NULL;
    if (b)
        b->used = b->used - had + n;
    *(size_t *)p = n;
    return p + 16;
}

static void *pa_malloc(size_t n) { return pa_take(NULL, n, false); }
static void *pa_realloc(void *p, size_t n) { return pa_take(p, n, false); }
static void *pa_calloc(size_t count, size_t n)
{
    return n && count > SIZE_MAX / n ? NULL : pa_take(NULL, count * n, true);
}
static void pa_free(void *p)
{
    if (!p)
        return;
    char *h = (char *)p - 16;
    if (tl_budget)
        tl_budget->used -= *(size_t *)h;
    sp_free(h);
}

static struct spng_alloc png_alloc = { pa_malloc, pa_realloc, pa_calloc, pa_free };

void img_reduce_init(img_reducer *r, img_ctx *c, int k, int fx0, int fx1, uint32_t cw)
{
    *r = (img_reducer){ c, k, fx0, fx1, cw, 0, 0, (size_t)cw * 4 };
    memset(c->acc, 0, (size_t)cw * 4 * sizeof *c->acc);
}

static void reduce_emit(img_reducer *r)
{
    uint8_t *dst = r->c->region + (size_t)r->out_row * r->stride;
    for (uint32_t i = 0; i < r->cw; i++) {
        int cols = r->fx1 - (r->fx0 + (int)i * r->k);
        uint32_t n = (uint32_t)(cols < r->k ? cols : r->k) * r->nrows;
        for (int ch = 0; ch < 4; ch++)
            dst[4 * i + ch] = (uint8_t)((r->c->acc[4 * i + ch] + n / 2) / n);
    }
    memset(r->c->acc, 0, (size_t)r->cw * 4 * sizeof *r->c->acc);
    r->nrows = 0;
    r->out_row++;
}

void img_reduce_row(img_reducer *r, const uint8_t *src, int y, int fy0, int fy1)
{
    if (r->k == 1) {
        memcpy(r->c->region + (size_t)r->out_row++ * r->stride, src, (size_t)r->cw * 4);
        return;
    }
    uint32_t *acc = r->c->acc;
    int n = r->fx1 - r->fx0, sh = r->k == 2 ? 1 : r->k == 4 ? 2 : 3;
    for (int x = 0; x < n; x++) {
        uint32_t *a = acc + 4 * (x >> sh);
        a[0] += src[4 * x], a[1] += src[4 * x + 1], a[2] += src[4 * x + 2], a[3] += src[4 * x + 3];
    }
    r->nrows++;
    if ((y - fy0 + 1) % r->k == 0 || y == fy1 - 1)
        reduce_emit(r);
}

/* ---- the fast path: 8-bit RGB or RGBA, not interlaced ---- */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The IDAT chunks of a PNG in memory, fed to zlib one after another. */
typedef struct idat_feed {
    const uint8_t *data;
    size_t size, next; /* the chunk header after the current chunk's data */
    bool done;         /* the chunk after the last IDAT reached */
} idat_feed;

/* Finds the first IDAT (libspng has checked every chunk before it); false when there is none. */
static bool idat_first(idat_feed *f, const uint8_t *data, size_t size)
{
    *f = (idat_feed){ data, size, 8, false };
    while (f->next + 8 <= size) {
        if (!memcmp(data + f->next + 4, "IDAT", 4))
            return true; /* one running past the file's end gives what there is (idat_next) */
        uint32_t len = be32(data + f->next);
        if (len > size - f->next - 8 || size - f->next - 8 - len < 4)
            return false;
        f->next += 12 + (size_t)len;
    }
    return false;
}

/* Gives zlib the next IDAT's data; false when the image data has ended (the next chunk is not an
 * IDAT, or the file ends). */
static bool idat_next(idat_feed *f, z_stream *z)
{
    while (!f->done) {
        if (f->next + 8 > f->size || memcmp(f->data + f->next + 4, "IDAT", 4)) {
            f->done = true;
            break;
        }
        uint32_t len = be32(f->data + f->next);
        size_t at = f->next + 8;
        if (len > f->size - at) { /* a chunk longer than the file: what there is, then the end */
            len = (uint32_t)(f->size - at);
            f->done = true;
        }
        f->next = at + len + 4;
        if (len == 0)
            continue;
        z->next_in = (Bytef *)(uintptr_t)(f->data + at);
        z->avail_in = len;
        return true;
    }
    return false;
}

static voidpf z_take(voidpf op, uInt items, uInt size)
{
    (void)op;
    return (uint64_t)items * size > SIZE_MAX ? NULL : pa_malloc((size_t)items * size); /* zlib wants no zeroes */
}
static void z_give(voidpf op, voidpf p)
{
    (void)op;
    pa_free(p);
}

static inline uint8_t paeth1(int a, int b, int c)
{
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    return (uint8_t)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

#if defined(__SSE2__)
/* Average (paeth false) or Paeth over whole pixels of bpp (3 or 4, a constant where inlined) bytes,
 * one at a time in 16-bit lanes: each depends on the one to its left. Stops where a 4-byte load
 * would pass n; returns the bytes done. */
static inline __attribute__((always_inline)) size_t unfilter_sse2(uint8_t *row, const uint8_t *prev, size_t n,
                                                                  const int bpp, const bool paeth)
{
    const __m128i zero = _mm_setzero_si128(), low = _mm_set1_epi16(0xff);
    __m128i a = zero, c = zero;
    size_t i = 0;
    for (; i + 4 <= n; i += (size_t)bpp) {
        uint32_t vx, vb;
        memcpy(&vx, row + i, 4);
        memcpy(&vb, prev + i, 4);
        __m128i x = _mm_unpacklo_epi8(_mm_cvtsi32_si128((int)vx), zero);
        __m128i b = _mm_unpacklo_epi8(_mm_cvtsi32_si128((int)vb), zero), pred;
        if (paeth) {
            __m128i bc = _mm_sub_epi16(b, c), ac = _mm_sub_epi16(a, c), abc = _mm_add_epi16(bc, ac);
            __m128i pa = _mm_max_epi16(bc, _mm_sub_epi16(zero, bc));
            __m128i pb = _mm_max_epi16(ac, _mm_sub_epi16(zero, ac));
            __m128i pc = _mm_max_epi16(abc, _mm_sub_epi16(zero, abc));
            __m128i least = _mm_min_epi16(pa, _mm_min_epi16(pb, pc));
            __m128i use_a = _mm_cmpeq_epi16(pa, least);
            __m128i use_b = _mm_andnot_si128(use_a, _mm_cmpeq_epi16(pb, least));
            __m128i use_c = _mm_andnot_si128(_mm_or_si128(use_a, use_b), _mm_set1_epi16(-1));
            pred = _mm_or_si128(_mm_or_si128(_mm_and_si128(use_a, a), _mm_and_si128(use_b, b)),
                                _mm_and_si128(use_c, c));
            c = b;
        } else {
            pred = _mm_srli_epi16(_mm_add_epi16(a, b), 1);
        }
        a = _mm_and_si128(_mm_add_epi16(x, pred), low);
        uint32_t o = (uint32_t)_mm_cvtsi128_si32(_mm_packus_epi16(a, zero));
        if (bpp == 3) { /* two stores: one of four bytes would overlap the next pixel's load */
            uint16_t o2 = (uint16_t)o;
            memcpy(row + i, &o2, 2);
            row[i + 2] = (uint8_t)(o >> 16);
        } else {
            memcpy(row + i, &o, 4);
        }
    }
    return i;
}
#endif

/* Unfilters the first n bytes of row (filter byte already taken) against prev, bpp 3 or 4. */
static void unfilter(int filter, uint8_t *row, const uint8_t *prev, size_t n, int bpp)
{
    size_t i = 0;
    switch (filter) {
    case 1: /* Sub */
        for (i = (size_t)bpp; i < n; i++)
            row[i] = (uint8_t)(row[i] + row[i - bpp]);
        return;
    case 2: /* Up */
        for (i = 0; i < n; i++)
            row[i] = (uint8_t)(row[i] + prev[i]);
        return;
    case 3: /* Average */
#if defined(__SSE2__)
        i = bpp == 3 ? unfilter_sse2(row, prev, n, 3, false) : unfilter_sse2(row, prev, n, 4, false);
#endif
        for (; i < n; i++)
            row[i] = (uint8_t)(row[i] + (((i >= (size_t)bpp ? row[i - bpp] : 0) + prev[i]) >> 1));
        return;
    case 4: /* Paeth */
#if defined(__SSE2__)
        i = bpp == 3 ? unfilter_sse2(row, prev, n, 3, true) : unfilter_sse2(row, prev, n, 4, true);
#endif
        for (; i < n; i++) {
            bool left = i >= (size_t)bpp;
            row[i] = (uint8_t)(row[i] + paeth1(left ? row[i - bpp] : 0, prev[i], left ? prev[i - bpp] : 0));
        }
        return;
    default: /* None */
        return;
    }
}

/* Whether the fast path takes this image, with c->row holding its rows: two rows and the crop's
 * pixels at RGBA. */
static bool fast_fits(const struct spng_ihdr *ih, int fx0, int fx1)
{
    if (ih->interlace_method || ih->bit_depth != 8 ||
        (ih->color_type != SPNG_COLOR_TYPE_TRUECOLOR && ih->color_type != SPNG_COLOR_TYPE_TRUECOLOR_ALPHA))
        return false;
    uint64_t rb = 1 + (uint64_t)ih->width * (ih->color_type == SPNG_COLOR_TYPE_TRUECOLOR ? 3 : 4);
    return 2 * rb + (uint64_t)(fx1 - fx0) * 4 <= (uint64_t)IMG_MAX_SIDE * 4;
}

/* Rows fed to the reducer in a batch: enough for zlib's inner loop, few enough for the cache. */
#define FAST_BATCH_BYTES (64u << 10)

/* Rows 0 .. fy1 - 1 of the image, rows fy0 .. fy1 - 1 handed to r (columns fx0 .. fx1). Returns 0,
 * or SP_EBADINPUT / SP_ENOMEM with why. */
static int fast_rows(img_ctx *c, const struct spng_ihdr *ih, const uint8_t *data, size_t size, img_reducer *r,
                     int fx0, int fy0, int fx1, int fy1, char *why, size_t whylen)
{
    const int bpp = ih->color_type == SPNG_COLOR_TYPE_TRUECOLOR ? 3 : 4;
    const size_t rb = 1 + (size_t)ih->width * (size_t)bpp, keep = (size_t)fx1 * (size_t)bpp;
    const size_t avail = (size_t)IMG_MAX_SIDE * 4 - (size_t)(fx1 - fx0) * 4;
    size_t batch = FAST_BATCH_BYTES / rb;
    batch = batch < 1 ? 1 : batch;
    batch = batch + 1 > avail / rb ? avail / rb - 1 : batch;
    uint8_t *buf = c->row, *px = c->row + (batch + 1) * rb; /* row slot 0: the row above */
    memset(buf, 0, rb);
    idat_feed f;
    if (!idat_first(&f, data, size))
        return snprintf(why, whylen, "corrupt PNG: no image data"), SP_EBADINPUT;
    z_stream z;
    memset(&z, 0, sizeof z);
    z.zalloc = z_take;
    z.zfree = z_give;
    if (inflateInit(&z) != Z_OK)
        return snprintf(why, whylen, "out of memory for zlib"), SP_ENOMEM;
    inflateValidate(&z, 0); /* no Adler-32: see the top of the file */
    int rc = SP_OK;
    for (int y = 0; y < fy1 && !rc;) {
        size_t n = (size_t)(fy1 - y) < batch ? (size_t)(fy1 - y) : batch;
        z.next_out = buf + rb;
        z.avail_out = (uInt)(n * rb);
        while (z.avail_out && !rc) {
            if (!z.avail_in && !idat_next(&f, &z))
                break;
            int e = inflate(&z, Z_NO_FLUSH);
            if (e == Z_STREAM_END)
                break;
            if (e == Z_MEM_ERROR)
                rc = (snprintf(why, whylen, "out of memory decoding it"), SP_ENOMEM);
            else if (e != Z_OK && e != Z_BUF_ERROR)
                rc = (snprintf(why, whylen, "corrupt PNG: %s", z.msg ? z.msg : "bad image data"), SP_EBADINPUT);
        }
        if (!rc && z.avail_out) /* the stream ended before the crop's last row */
            rc = (snprintf(why, whylen, "corrupt PNG: the image data ends at row %d of %u",
                           y + (int)((n * rb - z.avail_out) / rb), ih->height),
                  SP_EBADINPUT);
        for (size_t i = 0; i < n && !rc; i++, y++) {
            uint8_t *row = buf + (i + 1) * rb, *prev = buf + i * rb;
            if (row[0] > 4) {
                rc = (snprintf(why, whylen, "corrupt PNG: filter type %d in row %d", row[0], y), SP_EBADINPUT);
                break;
            }
            /* The row above is unfiltered in place one slot up, its filter byte in front. */
            unfilter(row[0], row + 1, prev + 1, keep, bpp);
            if (y < fy0)
                continue;
            const uint8_t *src = row + 1 + (size_t)fx0 * bpp;
            if (bpp == 4) {
                img_reduce_row(r, src, y, fy0, fy1);
                continue;
            }
            uint8_t *dst = r->k == 1 ? c->region + (size_t)r->out_row * r->stride : px;
            for (int x = 0; x < fx1 - fx0; x++) {
                dst[4 * x] = src[3 * x], dst[4 * x + 1] = src[3 * x + 1], dst[4 * x + 2] = src[3 * x + 2];
                dst[4 * x + 3] = 255;
            }
            if (r->k == 1)
                r->out_row++;
            else
                img_reduce_row(r, px, y, fy0, fy1);
        }
        if (!rc)
            memcpy(buf, buf + n * rb, rb); /* the last row becomes the row above */
    }
    inflateEnd(&z);
    return rc;
}

/* The decode; libspng's context is freed by the caller. */
static int decode(img_ctx *c, spng_ctx *s, const uint8_t *data, size_t size, png_budget *bud, uint64_t epoch,
                  uint64_t sample, void *out, img_result *res, char *why, size_t whylen)
{
    struct spng_ihdr ih;
    int e = spng_get_ihdr(s, &ih);
    if (e)
        return snprintf(why, whylen, "damaged PNG header: %s", spng_strerror(e)), SP_EBADINPUT;
    uint64_t w = ih.width, h = ih.height;
    res->width = (uint32_t)w;
    res->height = (uint32_t)h;
    int rc = img_size_check(&c->cfg, w, h, why, whylen);
    if (rc)
        return rc;
    img_box b;
    int need[4], fr[4];
    int k = img_plan_reduced(&c->cfg, (uint32_t)w, (uint32_t)h, epoch, sample, res, &b, need, fr);
    uint32_t cw = (uint32_t)(need[2] - need[0]), rows = (uint32_t)(need[3] - need[1]);
    if ((uint64_t)cw * rows * 4 > c->region_cap || rows > c->rows_cap || cw > c->tmp_cols)
        return snprintf(why, whylen, "a %ux%u crop region is beyond the decoder's buffers%s", cw, rows,
                        img_sizes_note(&c->cfg)), SP_ELIMIT;
    int fx0 = fr[0], fy0 = fr[1], fx1 = fr[2], fy1 = fr[3];
    size_t full = (size_t)w * 4;
    uint8_t *keep = NULL; /* interlaced: rows fy0..fy1 at full width */
    if (ih.interlace_method) {
        uint64_t bytes = (uint64_t)(fy1 - fy0) * full;
        if (bytes > c->cfg.max_image_memory)
            return snprintf(why, whylen, "decoding it needs more than max_image_memory (%llu MiB): an interlaced PNG "
                            "is whole only after its last pass, and its crop's rows take %.1f MiB; set "
                            "max_image_memory >= %lluM", (unsigned long long)(c->cfg.max_image_memory >> 20),
                            (double)bytes / (1 << 20), (unsigned long long)(bytes >> 20) + 1),
                   SP_ELIMIT;
        img_mem_take(c, bytes); /* the workers' shared whole-image memory */
        keep = pa_malloc(bytes);
        if (!keep)
            return snprintf(why, whylen, "out of memory for an interlaced PNG's %llu bytes", (unsigned long long)bytes),
                   SP_ENOMEM;
    }
    img_reducer r;
    if (fast_fits(&ih, fx0, fx1)) {
        /* libspng reads and checks every chunk before the image data (CRCs included) */
        struct spng_plte plte;
        e = spng_get_plte(s, &plte);
        if (e && e != SPNG_ECHUNKAVAIL)
            goto failed;
        img_reduce_init(&r, c, k, fx0, fx1, cw);
        rc = fast_rows(c, &ih, data, size, &r, fx0, fy0, fx1, fy1, why, whylen);
        if (rc)
            return rc;
        goto done;
    }
    e = spng_decode_image(s, NULL, 0, SPNG_FMT_RGBA8, SPNG_DECODE_PROGRESSIVE);
    img_reduce_init(&r, c, k, fx0, fx1, cw);
    if (!keep) {
        for (int y = 0; !e && y < fy1; y++) {
            e = spng_decode_row(s, c->row, full);
            if ((!e || e == SPNG_EOI) && y >= fy0)
                img_reduce_row(&r, c->row + (size_t)fx0 * 4, y, fy0, fy1);
            if (e == SPNG_EOI && y + 1 < fy1)
                e = SPNG_EOF;
            else if (e == SPNG_EOI)
                e = 0;
        }
    } else {
        while (!e) {
            struct spng_row_info ri;
            if ((e = spng_get_row_info(s, &ri)) != 0)
                break;
            int y = (int)ri.row_num;
            e = spng_decode_row(s, y >= fy0 && y < fy1 ? keep + (size_t)(y - fy0) * full : c->row, full);
        }
        if (e == SPNG_EOI) {
            e = 0;
            for (int y = fy0; y < fy1; y++)
                img_reduce_row(&r, keep + (size_t)(y - fy0) * full + (size_t)fx0 * 4, y, fy0, fy1);
        }
        pa_free(keep);
    }
failed:
    if (e) {
        if (e == SPNG_EMEM && bud->over)
            return snprintf(why, whylen, "decoding it needs more than max_image_memory (%llu MiB)",
                            (unsigned long long)(c->cfg.max_image_memory >> 20)),
                   SP_ELIMIT;
        if (e == SPNG_EMEM)
            return snprintf(why, whylen, "out of memory decoding it"), SP_ENOMEM;
        return snprintf(why, whylen, "corrupt PNG: %s", spng_strerror(e)), SP_EBADINPUT;
    }
done:
    b.x0 -= need[0], b.x1 -= need[0], b.y0 -= need[1], b.y1 -= need[1];
    img_finish(c, c->region, cw, rows, (size_t)cw * 4, &b, out);
    return SP_OK;
}

int img_png(img_ctx *c, const uint8_t *data, size_t size, uint64_t epoch, uint64_t sample, void *out,
            img_result *res, char *why, size_t whylen)
{
    png_budget bud = { 0, c->cfg.max_image_memory + PNG_ROWS, false };
    tl_budget = &bud;
    spng_ctx *s = spng_ctx_new2(&png_alloc, 0);
    int rc;
    if (!s) {
        snprintf(why, whylen, "cannot create a PNG decoder");
        rc = SP_ENOMEM;
    } else {
        /* A CRC error in any chunk is a bad sample, as a libjpeg warning is. */
        spng_set_crc_action(s, SPNG_CRC_ERROR, SPNG_CRC_ERROR);
        spng_set_chunk_limits(s, size > PNG_CHUNK_CACHE ? size : PNG_CHUNK_CACHE, PNG_CHUNK_CACHE);
        int e = spng_set_png_buffer(s, data, size);
        rc = e ? (snprintf(why, whylen, "corrupt PNG: %s", spng_strerror(e)), SP_EBADINPUT)
               : decode(c, s, data, size, &bud, epoch, sample, out, res, why, whylen);
        spng_ctx_free(s);
    }
    tl_budget = NULL;
    return rc;
}
