/* test_image_formats.c - PNG and WebP through sp_image_transform: every PNG variant (RGB, RGBA,
 * gray, gray+alpha, palette with tRNS, 1/2/4/16-bit, Adam7) and WebP variant (lossy, lossless,
 * with alpha) against a reference made here (the whole image decoded by libpng or libwebp,
 * averaged in k x k blocks for the crop's scale, resized by img_resize over the same box), with
 * the JPEG tests' tolerance; float dtypes and NCHW from the same pixels; the format found from the
 * bytes; decompression bombs (a PNG declaring 65535 x 65535, an interlaced one beyond
 * max_image_memory, a WebP with a huge canvas) refused from the header before any large
 * allocation; corrupt PNG and WebP data a bad image; sp_image_probe of each. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "img.h" /* internal: img_box, img_resize (the reference path) */
#include "it_util.h"
#include "jpeg_gen.h"
#include "pw_gen.h"
#include "test_util.h"
#include "tu_alloc.h"

static uint64_t g_seed;

/* The JPEG tests' tolerance against the reference decode (test_image_transform.c, REF_MAX and
 * REF_FRAC): the stage reduces and resamples the same pixels over the same box shifted by whole
 * region pixels, so only a tap weight's rounding may flip. */
#define REF_MAX 1
#define REF_FRAC 0.01

static it_enc png_of(const uint8_t *pic, int w, int h, int color, int depth, int interlace)
{
    it_enc e;
    char err[256];
    pw_png_opts o = { color, depth, interlace };
    ck_assert_msg(pw_png(pic, w, h, &o, &e.data, &e.size, err, sizeof err) == 0, "%s", err);
    return e;
}

static it_enc webp_of(const uint8_t *pic, int w, int h, int lossless, int alpha)
{
    it_enc e;
    char err[256];
    ck_assert_msg(pw_webp(pic, w, h, 90, lossless, alpha, &e.data, &e.size, err, sizeof err) == 0, "%s", err);
    return e;
}

/* The reference: the whole image decoded elsewhere, averaged in blocks of 8/scale, resized over
 * the crop's box at that scale. */
static void reference(const it_enc *e, const sp_image_crop *c, int size, uint8_t *out)
{
    int w, h, ow, oh;
    char err[256];
    uint8_t *pix = pw_decode(e->data, e->size, &w, &h, err, sizeof err);
    ck_assert_msg(pix, "%s", err);
    ck_assert_int_eq(w, c->width);
    ck_assert_int_eq(h, c->height);
    int k = 8 / c->scale;
    uint8_t *red = pw_reduce(pix, w, h, k, &ow, &oh);
    ck_assert_ptr_nonnull(red);
    double f = 1.0 / k;
    img_box b = { c->x0 * f, c->y0 * f, c->x1 * f, c->y1 * f, c->flip != 0 };
    it_resize_rgb(red, ow, oh, &b, size, out);
    free(red);
    free(pix);
}

typedef struct diff {
    int max;
    size_t nonzero;
    double mean_abs;
} diff;

static diff diff_of(const uint8_t *a, const uint8_t *b, size_t n)
{
    diff d = { 0, 0, 0 };
    for (size_t i = 0; i < n; i++) {
        int v = abs((int)a[i] - (int)b[i]);
        d.max = v > d.max ? v : d.max;
        d.nonzero += v != 0;
        d.mean_abs += v;
    }
    d.mean_abs /= (double)n;
    return d;
}

/* Eval and `samples` train draws of e (the picture pic, w x h) at image_size size, each against
 * the reference; when expect is not NULL also against it (the picture the file should hold)
 * within pic_mean levels on average. Returns the largest scale seen (8/k smallest). */
typedef struct tol {
    int ref_max;       /* largest difference from the reference */
    double ref_frac;   /* fraction of bytes that may differ from it */
    double pic_mean;   /* mean error against the picture */
    const char *memory; /* max_image_memory, or NULL for the default */
} tol;

static int check(const char *name, const it_enc *e, int w, int h, int size, int samples, const uint8_t *expect, tol t0)
{
    char sz[16];
    snprintf(sz, sizeof sz, "%d", size);
    size_t nb = (size_t)size * size * 3;
    uint8_t *out = malloc(nb), *ref = malloc(nb), *pr = malloc(nb);
    ck_assert(out && ref && pr);
    int min_scale = 8;
    for (int tr = 0; tr < 2; tr++) {
        sp_image_transform *t = t0.memory ? it_transform("transform", tr ? "train" : "eval", "image_size", sz, "max_image_memory",
                                               t0.memory, NULL)
                                          : it_transform("transform", tr ? "train" : "eval", "image_size", sz, NULL);
        for (int k = 0; k < (tr ? samples : 1); k++) {
            uint64_t sample = (uint64_t)k * 7919 + 11, epoch = (uint64_t)k % 2;
            sp_image_crop c = { .struct_size = sizeof c }, c2 = { .struct_size = sizeof c2 };
            int rc = sp_image_transform_apply(t, e->data, e->size, epoch, sample, out, &c);
            ck_assert_msg(rc == 0, "%s %s sample %llu: %s (%s)", name, tr ? "train" : "eval",
                          (unsigned long long)sample, sp_error_name(rc), sp_image_transform_errmsg(t));
            ck_assert_int_eq(c.width, w);
            ck_assert_int_eq(c.height, h);
            ck_assert_int_eq(sp_image_transform_crop(t, w, h, epoch, sample, &c2), 0);
            ck_assert(c.x0 == c2.x0 && c.y1 == c2.y1 && c.scale == c2.scale && c.flip == c2.flip);
            min_scale = c.scale < min_scale ? c.scale : min_scale;
            reference(e, &c, size, ref);
            diff d = diff_of(out, ref, nb);
            if (getenv("SP_TEST_VERBOSE"))
                fprintf(stderr, "%s %s s%llu scale %d: ref max %d nz %zu mean %.3f\n", name, tr ? "train" : "eval",
                        (unsigned long long)sample, c.scale, d.max, d.nonzero, d.mean_abs);
            ck_assert_msg(d.max <= t0.ref_max && d.nonzero <= t0.ref_frac * nb,
                          "%s %dx%d %s sample %llu scale %d/8: differs from the reference by up to %d (%zu of %zu "
                          "bytes)", name, w, h, tr ? "train" : "eval", (unsigned long long)sample, c.scale, d.max,
                          d.nonzero, nb);
            if (expect) {
                img_box b = { c.x0, c.y0, c.x1, c.y1, c.flip != 0 };
                it_resize_rgb(expect, w, h, &b, size, pr);
                diff dp = diff_of(out, pr, nb);
                ck_assert_msg(dp.mean_abs <= t0.pic_mean, "%s %s sample %llu: mean error %.2f against the picture", name,
                              tr ? "train" : "eval", (unsigned long long)sample, dp.mean_abs);
            }
        }
        sp_image_transform_destroy(t);
    }
    free(out);
    free(ref);
    free(pr);
    return min_scale;
}

/* Both sizes: 400x300 (train crops shrink enough for 1/2 and 1/4 reduction at image_size 48) and
 * 37x23 (every crop enlarged). */
static void png_variant(const char *name, int color, int depth, int interlace, bool compare_picture)
{
    static const int dims[2][2] = { { 400, 300 }, { 37, 23 } };
    for (int i = 0; i < 2; i++) {
        int w = dims[i][0], h = dims[i][1];
        uint8_t *pic = jg_picture(w, h, g_seed ^ (uint64_t)(color * 131 + depth * 7 + interlace));
        uint8_t *expect = color == PW_GRAY || color == PW_GA ? jg_gray_rgb(pic, w, h) : pic;
        it_enc e = png_of(pic, w, h, color, depth, interlace);
        sp_image_info info = { .struct_size = sizeof info };
        ck_assert_msg(sp_image_probe(e.data, e.size, 0, &info) == 0, "%s", sp_last_error());
        ck_assert_int_eq(info.format, SP_IMAGE_FORMAT_PNG);
        ck_assert_int_eq(info.width, w);
        ck_assert_int_eq(info.height, h);
        ck_assert_int_eq(info.bit_depth, depth);
        ck_assert_int_eq(info.progressive, interlace);
        int scale = check(name, &e, w, h, 48, 12, compare_picture ? expect : NULL, (tol){ REF_MAX, REF_FRAC, 0.8, NULL });
        if (i == 0)
            ck_assert_msg(scale < 8, "%s: no train crop was reduced (scale %d)", name, scale);
        if (expect != pic)
            free(expect);
        free(pic);
        free(e.data);
    }
}

START_TEST(png_rgb8) { png_variant("png rgb8", PW_RGB, 8, 0, true); }
END_TEST
START_TEST(png_rgba8) { png_variant("png rgba8", PW_RGBA, 8, 0, true); }
END_TEST
START_TEST(png_gray8) { png_variant("png gray8", PW_GRAY, 8, 0, true); }
END_TEST
START_TEST(png_gray_alpha8) { png_variant("png gray+alpha8", PW_GA, 8, 0, true); }
END_TEST
START_TEST(png_palette) { png_variant("png palette8", PW_PALETTE, 8, 0, false); }
END_TEST
START_TEST(png_palette4) { png_variant("png palette4", PW_PALETTE, 4, 0, false); }
END_TEST
START_TEST(png_gray_low_bits)
{
    png_variant("png gray1", PW_GRAY, 1, 0, false);
    png_variant("png gray2", PW_GRAY, 2, 0, false);
    png_variant("png gray4", PW_GRAY, 4, 1, false);
}
END_TEST
START_TEST(png_rgb16) { png_variant("png rgb16", PW_RGB, 16, 0, true); }
END_TEST
START_TEST(png_rgba16) { png_variant("png rgba16", PW_RGBA, 16, 0, true); }
END_TEST
START_TEST(png_gray_alpha16) { png_variant("png gray+alpha16", PW_GA, 16, 0, true); }
END_TEST
START_TEST(png_interlaced)
{
    png_variant("png rgb8 adam7", PW_RGB, 8, 1, true);
    png_variant("png rgba16 adam7", PW_RGBA, 16, 1, true);
    png_variant("png palette adam7", PW_PALETTE, 8, 1, false);
}
END_TEST

static void webp_variant(const char *name, int lossless, int alpha)
{
    static const int dims[2][2] = { { 400, 300 }, { 37, 23 } };
    for (int i = 0; i < 2; i++) {
        int w = dims[i][0], h = dims[i][1];
        uint8_t *pic = jg_picture(w, h, g_seed ^ (uint64_t)(lossless * 2 + alpha + 77));
        it_enc e = webp_of(pic, w, h, lossless, alpha);
        sp_image_info info = { .struct_size = sizeof info };
        ck_assert_msg(sp_image_probe(e.data, e.size, 0, &info) == 0, "%s", sp_last_error());
        ck_assert_int_eq(info.format, SP_IMAGE_FORMAT_WEBP);
        ck_assert_int_eq(info.width, w);
        ck_assert_int_eq(info.components, alpha ? 4 : 3);
        /* Lossless is exact; lossy at quality 90 on ramps and rectangles is a few levels off. */
        int scale = check(name, &e, w, h, 48, 12, pic, (tol){ REF_MAX, REF_FRAC, lossless ? 0.8 : 6.0, NULL });
        if (i == 0)
            ck_assert_msg(scale < 8, "%s: no train crop was reduced (scale %d)", name, scale);
        free(pic);
        free(e.data);
    }
}

/* A large crop whose full-resolution buffer would not fit max_image_memory is scaled by libwebp
 * itself (use_scaling): its area filter rounds differently from the block average, so the
 * reference bound is looser, and the picture is still matched. */
START_TEST(webp_scaled_by_libwebp)
{
    const int w = 400, h = 300;
    uint8_t *pic = jg_picture(w, h, g_seed ^ 0x5CA1Eull);
    it_enc e = webp_of(pic, w, h, 1, 0);
    /* libwebp's planes for a lossless 400x300 (img_webp_memory) take 1,353,344 bytes: a crop buffer
     * above 60 KB does not fit beside them */
    int scale = check("webp lossless, libwebp scaling", &e, w, h, 48, 12, pic, (tol){ 2, 0.5, 1.0, "1413344" });
    ck_assert_int_lt(scale, 8);
    free(pic);
    free(e.data);
}
END_TEST

START_TEST(webp_lossy) { webp_variant("webp lossy", 0, 0); }
END_TEST
START_TEST(webp_lossless) { webp_variant("webp lossless", 1, 0); }
END_TEST
START_TEST(webp_lossy_alpha) { webp_variant("webp lossy+alpha", 0, 1); }
END_TEST
START_TEST(webp_lossless_alpha) { webp_variant("webp lossless+alpha", 1, 1); }
END_TEST

/* One transform takes JPEG, PNG and WebP one after the other (the format from the bytes alone);
 * float32 NCHW rows are the uint8 NHWC pixels through the mean/std table. */
START_TEST(mixed_formats_and_dtypes)
{
    enum { S = 32 };
    const int w = 120, h = 90;
    uint8_t *pic = jg_picture(w, h, g_seed ^ 0xF00D);
    it_enc e[3];
    char err[256];
    jg_opts jo = { 95, JG_444, JG_YCC, 0, 0, 0, 0 };
    ck_assert_msg(jg_encode(pic, w, h, &jo, &e[0].data, &e[0].size, err, sizeof err) == 0, "%s", err);
    e[1] = png_of(pic, w, h, PW_RGBA, 8, 0);
    e[2] = webp_of(pic, w, h, 1, 0);
    sp_image_transform *u8 = it_transform("transform", "train", "image_size", "32", NULL);
    sp_image_transform *f32 =
        it_transform("transform", "train", "image_size", "32", "image_dtype", "float32", "image_layout", "nchw", NULL);
    uint8_t a[S * S * 3];
    float f[S * S * 3];
    const float mean[3] = { 0.485f, 0.456f, 0.406f }, sd[3] = { 0.229f, 0.224f, 0.225f };
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 3; i++) {
            ck_assert_msg(sp_image_transform_apply(u8, e[i].data, e[i].size, 1, (uint64_t)i, a, NULL) == 0, "%s",
                          sp_image_transform_errmsg(u8));
            ck_assert_msg(sp_image_transform_apply(f32, e[i].data, e[i].size, 1, (uint64_t)i, f, NULL) == 0, "%s",
                          sp_image_transform_errmsg(f32));
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++)
                    for (int c = 0; c < 3; c++) {
                        float want = ((float)a[(y * S + x) * 3 + c] / 255.0f - mean[c]) / sd[c];
                        ck_assert_msg(fabsf(f[(c * S + y) * S + x] - want) < 1e-5f, "format %d pixel %d,%d", i, x, y);
                    }
        }
    sp_image_transform_destroy(u8);
    sp_image_transform_destroy(f32);
    for (int i = 0; i < 3; i++)
        free(e[i].data);
    free(pic);
}
END_TEST

/* apply of bytes, expecting code and a message holding want; returns the largest single
 * allocation made (tu_alloc: the library's and libspng's, which allocates through it). */
static size_t refused(sp_image_transform *t, const uint8_t *data, size_t size, int code, const char *want)
{
    uint8_t out[32 * 32 * 3];
    tu_alloc_reset_max();
    int rc = sp_image_transform_apply(t, data, size, 0, 1, out, NULL);
    size_t big = tu_alloc_max();
    ck_assert_msg(rc == code && strstr(sp_image_transform_errmsg(t), want), "want %s '%s', got %s: %s",
                  sp_error_name(code), want, sp_error_name(rc), sp_image_transform_errmsg(t));
    return big;
}

/* A 60-byte PNG declaring 65535 x 65535 is refused for max_pixels from its header; one within
 * max_pixels (10000 x 3000) but holding no pixel data decodes a row at a time and fails at the
 * data's end, never allocating more than a few rows; an interlaced one whose crop rows exceed
 * max_image_memory is refused before any. probe refuses the first with the pixel cap. */
START_TEST(png_bombs)
{
    sp_image_transform *t = it_transform("image_size", "32", "max_image_memory", "8M", NULL);
    size_t n;
    uint8_t *bomb = pw_png_bomb(65535, 65535, &n);
    size_t big = refused(t, bomb, n, SP_ELIMIT, "65535x65535 pixels is more than max_pixels");
    ck_assert_msg(big < (1u << 20), "largest allocation %zu bytes", big);
    sp_image_info info = { .struct_size = sizeof info };
    ck_assert_int_eq(sp_image_probe(bomb, n, 1 << 25, &info), SP_ELIMIT);
    ck_assert_msg(strstr(sp_last_error(), "PNG is 65535x65535"), "%s", sp_last_error());
    free(bomb);

    bomb = pw_png_bomb(10000, 3000, &n);
    big = refused(t, bomb, n, SP_EBADINPUT, "corrupt PNG");
    ck_assert_msg(big < (2u << 20), "largest allocation %zu bytes for a 10000x3000 PNG", big);
    free(bomb);

    bomb = pw_png_bomb(10000, 3000, &n);
    bomb[8 + 8 + 12] = 1; /* IHDR interlace method: Adam7 (the CRC made again below) */
    uLong crc = crc32(0, bomb + 12, 17);
    bomb[29] = (uint8_t)(crc >> 24), bomb[30] = (uint8_t)(crc >> 16), bomb[31] = (uint8_t)(crc >> 8),
    bomb[32] = (uint8_t)crc;
    big = refused(t, bomb, n, SP_ELIMIT, "set max_image_memory >=");
    ck_assert_msg(big < (1u << 20), "largest allocation %zu bytes", big);
    free(bomb);
    sp_image_transform_destroy(t);
}
END_TEST

/* A lossless WebP whose header says 16384 x 16384: beyond max_pixels by default; within a raised
 * max_pixels, beyond max_image_memory for libwebp's whole-image ARGB plane (2 GiB), refused from
 * the header without calling the decoder. */
START_TEST(webp_bombs)
{
    uint8_t *pic = jg_flat(16, 16, 10, 20, 30);
    it_enc e = webp_of(pic, 16, 16, 1, 0);
    ck_assert(e.size > 25 && !memcmp(e.data + 12, "VP8L", 4) && e.data[20] == 0x2F);
    uint32_t bits = (uint32_t)e.data[21] | (uint32_t)e.data[22] << 8 | (uint32_t)e.data[23] << 16 |
                    (uint32_t)e.data[24] << 24;
    bits = (bits & ~0x0FFFFFFFu) | 16383u | 16383u << 14;
    for (int i = 0; i < 4; i++)
        e.data[21 + i] = (uint8_t)(bits >> (8 * i));
    sp_image_transform *t = it_transform("image_size", "32", NULL);
    refused(t, e.data, e.size, SP_ELIMIT, "16384x16384 pixels is more than max_pixels");
    sp_image_transform_destroy(t);
    t = it_transform("image_size", "32", "max_pixels", "300000000", NULL);
    refused(t, e.data, e.size, SP_ELIMIT, "needs more than max_image_memory");
    sp_image_transform_destroy(t);
    sp_image_info info = { .struct_size = sizeof info };
    ck_assert_int_eq(sp_image_probe(e.data, e.size, 1 << 25, &info), SP_ELIMIT);
    free(e.data);
    /* the least max_image_memory decodes small WebPs of every kind (libwebp needs tens of KiB) */
    t = it_transform("image_size", "32", "max_image_memory", "1M", NULL);
    uint8_t out[32 * 32 * 3];
    for (int kind = 0; kind < 3; kind++) {
        e = webp_of(pic, 16, 16, kind == 1, kind == 2);
        ck_assert_msg(sp_image_transform_apply(t, e.data, e.size, 0, 1, out, NULL) == 0, "kind %d at 1M: %s", kind,
                      sp_image_transform_errmsg(t));
        free(e.data);
    }
    free(pic);
    /* a plain lossy one too wide for it: the message names what it is and what decodes it */
    pic = jg_flat(4000, 16, 10, 20, 30);
    e = webp_of(pic, 4000, 16, 0, 0);
    refused(t, e.data, e.size, SP_ELIMIT, "a lossy WebP keeps whole-image planes");
    ck_assert_msg(strstr(sp_image_transform_errmsg(t), "set max_image_memory >= 2M"), "%s",
                  sp_image_transform_errmsg(t));
    sp_image_transform_destroy(t);
    free(e.data);
    free(pic);
}
END_TEST

/* Damage is a bad image: a PNG's IDAT byte changed (CRC mismatch), a PNG cut in its data, a WebP
 * cut short, neither format's magic; the transform stays usable. */
START_TEST(corrupt)
{
    const int w = 200, h = 150;
    uint8_t *pic = jg_picture(w, h, g_seed ^ 0xBAD);
    it_enc p = png_of(pic, w, h, PW_RGB, 8, 0), wl = webp_of(pic, w, h, 0, 0);
    sp_image_transform *t = it_transform("image_size", "32", NULL);
    uint8_t out[32 * 32 * 3];
    /* the first IDAT: after the signature and IHDR */
    size_t idat = 8 + 25;
    ck_assert(!memcmp(p.data + idat + 4, "IDAT", 4));
    p.data[idat + 8 + 40] ^= 0x55;
    refused(t, p.data, p.size, SP_EBADINPUT, "corrupt PNG");
    p.data[idat + 8 + 40] ^= 0x55;
    refused(t, p.data, idat + 8 + 100, SP_EBADINPUT, "PNG");
    refused(t, wl.data, wl.size / 3, SP_EBADINPUT, "WebP");
    refused(t, (const uint8_t *)"GIF89a..........", 16, SP_EBADINPUT, "neither JPEG, PNG nor WebP");
    ck_assert_int_eq(sp_image_transform_apply(t, p.data, p.size, 0, 1, out, NULL), 0);
    ck_assert_int_eq(sp_image_transform_apply(t, wl.data, wl.size, 0, 1, out, NULL), 0);
    sp_image_transform_destroy(t);
    free(p.data);
    free(wl.data);
    free(pic);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(20261206);
    it_set_seed(g_seed);
    Suite *s = suite_create("image_formats");
    TCase *tp = tu_tcase(s, "png", 60);
    tcase_add_test(tp, png_rgb8);
    tcase_add_test(tp, png_rgba8);
    tcase_add_test(tp, png_gray8);
    tcase_add_test(tp, png_gray_alpha8);
    tcase_add_test(tp, png_palette);
    tcase_add_test(tp, png_palette4);
    tcase_add_test(tp, png_gray_low_bits);
    tcase_add_test(tp, png_rgb16);
    tcase_add_test(tp, png_rgba16);
    tcase_add_test(tp, png_gray_alpha16);
    tcase_add_test(tp, png_interlaced);
    TCase *tw = tu_tcase(s, "webp", 60);
    tcase_add_test(tw, webp_lossy);
    tcase_add_test(tw, webp_lossless);
    tcase_add_test(tw, webp_lossy_alpha);
    tcase_add_test(tw, webp_lossless_alpha);
    tcase_add_test(tw, webp_scaled_by_libwebp);
    TCase *tm = tu_tcase(s, "mixed", 60);
    tcase_add_test(tm, mixed_formats_and_dtypes);
    TCase *te = tu_tcase(s, "limits", 60);
    tcase_add_test(te, png_bombs);
    tcase_add_test(te, webp_bombs);
    tcase_add_test(te, corrupt);
    return tu_run(s, g_seed);
}
