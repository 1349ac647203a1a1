/* pw_gen.c - PNG and WebP encoders and reference decoders for the image tests (see pw_gen.h). */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>
#include <webp/encode.h>
#include <zlib.h>

#include "jpeg_gen.h"
#include "pw_gen.h"

typedef struct membuf {
    uint8_t *p;
    size_t n, cap;
} membuf;

static void mb_write(png_structp png, png_bytep data, png_size_t len)
{
    membuf *m = png_get_io_ptr(png);
    if (m->n + len > m->cap) {
        size_t cap = (m->cap ? m->cap * 2 : 4096) + len;
        uint8_t *p = realloc(m->p, cap);
        if (!p)
            png_error(png, "out of memory");
        m->p = p, m->cap = cap;
    }
    memcpy(m->p + m->n, data, len);
    m->n += len;
}

static void mb_flush(png_structp png) { (void)png; }

/* A sample of the alpha pattern at (x, y): circles of transparency. */
static unsigned alpha_at(int x, int y) { return (unsigned)((x * 7 + y * 13) % 256); }

int pw_png(const uint8_t *rgb, int w, int h, const pw_png_opts *o, uint8_t **out, size_t *size, char *err,
           size_t errlen)
{
    static const int ctype[] = { PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGBA, PNG_COLOR_TYPE_GRAY,
                                 PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_PALETTE };
    static const int chans[] = { 3, 4, 1, 2, 1 };
    int depth = o->depth ? o->depth : 8, nc = chans[o->color], bps = depth > 8 ? 2 : 1;
    size_t rowbytes = (size_t)w * nc * bps;
    uint8_t *img = calloc((size_t)h, rowbytes);
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    membuf m = { 0 };
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!img || !rows || !info) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (setjmp(png_jmpbuf(png))) {
        snprintf(err, errlen, "libpng failed to encode");
        goto fail;
    }
    png_set_write_fn(png, &m, mb_write, mb_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ctype[o->color],
                 o->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (o->color == PW_PALETTE) {
        png_color pal[216];
        png_byte trns[1] = { 0 };
        for (int i = 0; i < 216; i++)
            pal[i].red = (png_byte)(i / 36 * 51), pal[i].green = (png_byte)(i / 6 % 6 * 51), pal[i].blue = (png_byte)(i % 6 * 51);
        int n = depth >= 8 ? 216 : 1 << depth;
        png_set_PLTE(png, info, pal, n);
        png_set_tRNS(png, info, trns, 1, NULL);
    }
    png_write_info(png, info);
    int maxv = (1 << depth) - 1;
    for (int y = 0; y < h; y++) {
        uint8_t *r = img + (size_t)y * rowbytes;
        for (int x = 0; x < w; x++) {
            const uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            unsigned v[4];
            int k = 0;
            if (o->color == PW_PALETTE) {
                int idx = (p[0] + 25) / 51 * 36 + (p[1] + 25) / 51 * 6 + (p[2] + 25) / 51;
                v[k++] = (unsigned)(depth >= 8 ? idx : idx % (maxv + 1));
            } else if (o->color == PW_GRAY || o->color == PW_GA) {
                v[k++] = jg_luma(p);
            } else {
                v[k++] = p[0], v[k++] = p[1], v[k++] = p[2];
            }
            if (o->color == PW_RGBA || o->color == PW_GA)
                v[k++] = alpha_at(x, y);
            for (int c = 0; c < k; c++) {
                unsigned s = v[c];
                if (o->color != PW_PALETTE) /* an 8-bit value to this depth: 16 bits keep it in the high byte */
                    s = depth == 16 ? s * 257u ^ (unsigned)((x + y) & 0xFF) : depth < 8 ? s >> (8 - depth) : s;
                if (depth == 16) {
                    r[(x * k + c) * 2] = (uint8_t)(s >> 8);
                    r[(x * k + c) * 2 + 1] = (uint8_t)s;
                } else if (depth == 8) {
                    r[x * k + c] = (uint8_t)s;
                } else { /* 1, 2, 4 bits, one channel */
                    int per = 8 / depth, shift = 8 - depth * (x % per + 1);
                    r[x / per] = (uint8_t)(r[x / per] | (s & (unsigned)maxv) << shift);
                }
            }
        }
        rows[y] = r;
    }
    png_write_image(png, rows);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(rows);
    free(img);
    *out = m.p;
    *size = m.n;
    return 0;
fail:
    png_destroy_write_struct(&png, info ? &info : NULL);
    free(rows);
    free(img);
    free(m.p);
    return -1;
}

int pw_webp(const uint8_t *rgb, int w, int h, int quality, int lossless, int alpha, uint8_t **out, size_t *size,
            char *err, size_t errlen)
{
    uint8_t *rgba = malloc((size_t)w * h * 4), *enc = NULL;
    if (!rgba) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            memcpy(rgba + 4 * i, rgb + 3 * i, 3);
            rgba[4 * i + 3] = (uint8_t)(alpha ? alpha_at(x, y) : 255);
        }
    size_t n;
    if (lossless)
        n = alpha ? WebPEncodeLosslessRGBA(rgba, w, h, w * 4, &enc) : WebPEncodeLosslessRGB(rgb, w, h, w * 3, &enc);
    else
        n = alpha ? WebPEncodeRGBA(rgba, w, h, w * 4, (float)quality, &enc)
                  : WebPEncodeRGB(rgb, w, h, w * 3, (float)quality, &enc);
    free(rgba);
    if (!n) {
        snprintf(err, errlen, "libwebp failed to encode %dx%d", w, h);
        return -1;
    }
    *out = malloc(n);
    if (*out)
        memcpy(*out, enc, n);
    WebPFree(enc);
    *size = n;
    return *out ? 0 : -1;
}

typedef struct membuf_r {
    const uint8_t *p;
    size_t n, at;
} membuf_r;

static void mb_read(png_structp png, png_bytep data, png_size_t len)
{
    membuf_r *m = png_get_io_ptr(png);
    if (len > m->n - m->at)
        png_error(png, "data ends early");
    memcpy(data, m->p + m->at, len);
    m->at += len;
}

static uint8_t *png_decode(const uint8_t *data, size_t size, int *w, int *h, char *err, size_t errlen)
{
    membuf_r m = { data, size, 0 };
    uint8_t *volatile out = NULL;
    png_bytep *volatile rows = NULL;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        snprintf(err, errlen, "out of memory");
        png_destroy_read_struct(&png, NULL, NULL);
        return NULL;
    }
    if (setjmp(png_jmpbuf(png))) {
        snprintf(err, errlen, "libpng failed to decode");
        png_destroy_read_struct(&png, &info, NULL);
        free(out);
        free(rows);
        return NULL;
    }
    png_set_read_fn(png, &m, mb_read);
    png_read_info(png, info);
    /* To 8-bit RGB: palette expanded (tRNS ignored: alpha is dropped anyway), low bits
     * widened, 16 bits by the high byte, gray to three channels, alpha stripped. */
    png_set_palette_to_rgb(png);
    png_set_expand_gray_1_2_4_to_8(png);
    png_set_strip_16(png);
    png_set_gray_to_rgb(png);
    png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    *w = (int)png_get_image_width(png, info);
    *h = (int)png_get_image_height(png, info);
    if (png_get_rowbytes(png, info) != (size_t)*w * 3)
        png_error(png, "not RGB8 after the transforms");
    out = malloc((size_t)*w * *h * 3);
    rows = malloc((size_t)*h * sizeof *rows);
    if (!out || !rows)
        png_error(png, "out of memory");
    for (int y = 0; y < *h; y++)
        rows[y] = out + (size_t)y * *w * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    return out;
}

uint8_t *pw_decode(const uint8_t *data, size_t size, int *w, int *h, char *err, size_t errlen)
{
    if (size >= 8 && data[0] == 0x89 && data[1] == 'P')
        return png_decode(data, size, w, h, err, errlen);
    uint8_t *rgba = WebPDecodeRGBA(data, size, w, h);
    if (!rgba) {
        snprintf(err, errlen, "libwebp failed to decode");
        return NULL;
    }
    uint8_t *out = malloc((size_t)*w * *h * 3);
    for (size_t i = 0; out && i < (size_t)*w * *h; i++)
        memcpy(out + 3 * i, rgba + 4 * i, 3);
    WebPFree(rgba);
    if (!out)
        snprintf(err, errlen, "out of memory");
    return out;
}

uint8_t *pw_reduce(const uint8_t *rgb, int w, int h, int k, int *ow, int *oh)
{
    *ow = (w + k - 1) / k, *oh = (h + k - 1) / k;
    uint8_t *out = malloc((size_t)*ow * *oh * 3);
    for (int by = 0; out && by < *oh; by++)
        for (int bx = 0; bx < *ow; bx++)
            for (int c = 0; c < 3; c++) {
                unsigned sum = 0, n = 0;
                for (int y = by * k; y < by * k + k && y < h; y++)
                    for (int x = bx * k; x < bx * k + k && x < w; x++, n++)
                        sum += rgb[((size_t)y * w + x) * 3 + c];
                out[((size_t)by * *ow + bx) * 3 + c] = (uint8_t)((sum + n / 2) / n);
            }
    return out;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* A chunk at p: length, type, data, CRC (libpng's crc32 through zlib). */
static size_t chunk(uint8_t *p, const char *type, const uint8_t *data, uint32_t len)
{
    put32(p, len);
    memcpy(p + 4, type, 4);
    if (len)
        memcpy(p + 8, data, len);
    uLong crc = crc32(0, p + 4, len + 4);
    put32(p + 8 + len, (uint32_t)crc);
    return 12 + len;
}

uint8_t *pw_png_bomb(uint32_t w, uint32_t h, size_t *size)
{
    uint8_t *p = malloc(128);
    if (!p)
        return NULL;
    static const uint8_t sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n' };
    memcpy(p, sig, 8);
    uint8_t ihdr[13] = { 0 };
    put32(ihdr, w);
    put32(ihdr + 4, h);
    ihdr[8] = 8, ihdr[9] = 2; /* 8-bit RGB */
    size_t n = 8 + chunk(p + 8, "IHDR", ihdr, 13);
    static const uint8_t idat[] = { 0x78, 0x9C, 0x62, 0x00, 0x00 }; /* zlib: a few deflated zero bytes */
    n += chunk(p + n, "IDAT", idat, sizeof idat);
    n += chunk(p + n, "IEND", NULL, 0);
    *size = n;
    return p;
}
