/* img_png.c - PNG through libspng: the header checked against the limits before any pixel, then
 * the rows decoded one at a time (RGBA8, whatever the colour type and bit depth: palette, gray,
 * gray+alpha, 16-bit to 8 by the high byte), stopping after the crop's last row, and reduced on
 * the way by the 1/k average a JPEG's DCT scale would give, so the region the resampler reads is
 * no larger than a JPEG's. An interlaced (Adam7) image is only whole after its last pass: its
 * crop rows are kept at full width, within max_image_memory. Alpha is dropped: colour kept as
 * stored (what PIL's convert("RGB") gives, and so torchvision's ImageFolder). libspng allocates
 * through a counter capped at max_image_memory plus its row buffers. */
#include <stdio.h>

#include <spng.h>

#include "img.h"

/* Beyond max_image_memory, what libspng may allocate for one image: its context, zlib's window
 * and state (about 300 KiB), two rows of the widest image at 16 bits and 4 channels, and the
 * chunk cache below. */
#define PNG_ROWS ((uint64_t)IMG_MAX_SIDE * 8 * 3 + (4u << 20))
/* Ancillary chunk data libspng keeps (text, ICC profile, ...): never needed for pixels. */
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

/* The decode; libspng's context is freed by the caller. */
static int decode(img_ctx *c, spng_ctx *s, png_budget *bud, uint64_t epoch, uint64_t sample, void *out,
                  img_result *res, char *why, size_t whylen)
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
        return snprintf(why, whylen, "a %ux%u crop region is beyond the decoder's buffers", cw, rows), SP_ELIMIT;
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
    e = spng_decode_image(s, NULL, 0, SPNG_FMT_RGBA8, SPNG_DECODE_PROGRESSIVE);
    img_reducer r;
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
    if (e) {
        if (e == SPNG_EMEM && bud->over)
            return snprintf(why, whylen, "decoding it needs more than max_image_memory (%llu MiB)",
                            (unsigned long long)(c->cfg.max_image_memory >> 20)),
                   SP_ELIMIT;
        if (e == SPNG_EMEM)
            return snprintf(why, whylen, "out of memory decoding it"), SP_ENOMEM;
        return snprintf(why, whylen, "corrupt PNG: %s", spng_strerror(e)), SP_EBADINPUT;
    }
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
        spng_set_chunk_limits(s, size, PNG_CHUNK_CACHE);
        int e = spng_set_png_buffer(s, data, size);
        rc = e ? (snprintf(why, whylen, "corrupt PNG: %s", spng_strerror(e)), SP_EBADINPUT)
               : decode(c, s, &bud, epoch, sample, out, res, why, whylen);
        spng_ctx_free(s);
    }
    tl_budget = NULL;
    return rc;
}
