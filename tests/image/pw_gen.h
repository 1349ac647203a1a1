/* pw_gen.h - test PNGs (libpng: every colour type, bit depth 1..16, Adam7) and WebPs (libwebp's
 * encoder: lossy, lossless, with alpha) made in memory from an RGB picture, and whole-image
 * reference decoders (libpng, WebPDecodeRGBA) independent of the image stage's decode path.
 * Nothing here calls Check; failures return NULL / nonzero with a message in err. */
#ifndef SP_PW_GEN_H
#define SP_PW_GEN_H

#include <stddef.h>
#include <stdint.h>

/* How a PNG stores the picture. */
enum {
    PW_RGB = 0,     /* colour type 2 */
    PW_RGBA = 1,    /* colour type 6, alpha a pattern of its own */
    PW_GRAY = 2,    /* colour type 0: the picture's luma (jg_luma) */
    PW_GA = 3,      /* colour type 4 */
    PW_PALETTE = 4, /* colour type 3: the picture quantized to a 6x6x6 cube, with a tRNS entry */
};

typedef struct pw_png_opts {
    int color;     /* PW_* */
    int depth;     /* bits per sample: 8 or 16 (gray and palette also 1, 2, 4) */
    int interlace; /* Adam7 */
} pw_png_opts;

/* Encodes rgb (w x h, 3 bytes a pixel) into *out (malloc'd, free()), *size bytes; 0 or -1. */
int pw_png(const uint8_t *rgb, int w, int h, const pw_png_opts *o, uint8_t **out, size_t *size, char *err,
           size_t errlen);

/* quality 0..100 (lossy), lossless 1 for VP8L; alpha adds a pattern in an alpha channel. */
int pw_webp(const uint8_t *rgb, int w, int h, int quality, int lossless, int alpha, uint8_t **out, size_t *size,
            char *err, size_t errlen);

/* What the stage should see of a PNG or WebP: the whole image decoded to RGB (alpha dropped,
 * 16-bit samples by their high byte, gray into three channels, the palette's colours), by libpng
 * or libwebp. malloc'd; NULL with err filled on failure. */
uint8_t *pw_decode(const uint8_t *data, size_t size, int *w, int *h, char *err, size_t errlen);

/* The image averaged in k x k blocks (k 1, 2, 4 or 8; the last row and column of blocks over the
 * pixels there are), as the stage reduces a PNG: ceil(w/k) x ceil(h/k), malloc'd. */
uint8_t *pw_reduce(const uint8_t *rgb, int w, int h, int k, int *ow, int *oh);

/* A PNG whose IHDR declares w x h (any up to 2^31 - 1) with one tiny, valid IDAT stream of
 * nothing but a zlib header: the decompression bomb's header (malloc'd). */
uint8_t *pw_png_bomb(uint32_t w, uint32_t h, size_t *size);

#endif
