/* test_image_transform.c - sp_image_transform on its own: every JPEG variant (baseline and
 * progressive, 4:4:4 / 4:2:2 / 4:2:0 / 4:4:0, gray, CMYK and YCCK, restart markers, arithmetic
 * coding, smaller than the output, large enough for DCT scaling) compared with a reference made here (a whole-image
 * libjpeg decode resized by img_resize over the same box) and with the known synthetic picture;
 * img_resize against a floating-point model of its contract; crop geometry over thousands of
 * draws; dtypes and layouts; parameter and input errors. */
#include <math.h>
#include <stdarg.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img.h" /* internal: img_box, img_resize (the reference path) */
#include "it_util.h"
#include "jpeg_gen.h"
#include "test_util.h"

static uint64_t g_seed;
static int g_verbose; /* SP_TEST_VERBOSE=1 prints the measured differences */

/* ------------------------------------------------------------------------------- helpers */

static it_enc encode(const uint8_t *pic, int w, int h, jg_opts o)
{
    it_enc j;
    char err[256];
    ck_assert_msg(jg_encode(pic, w, h, &o, &j.data, &j.size, err, sizeof err) == 0, "%s", err);
    return j;
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* The stage's output for crop, made here: the whole image decoded by libjpeg at the crop's DCT
 * scale, then img_resize over the box scaled the same way. */
static void ref_decode_resize(const it_enc *j, const sp_image_crop *c, int size, uint8_t *out)
{
    int w, h;
    char err[256];
    uint8_t *pix = jg_decode(j->data, j->size, c->scale, &w, &h, err, sizeof err);
    ck_assert_msg(pix, "%s", err);
    double f = c->scale / 8.0;
    img_box b = { c->x0 * f, c->y0 * f, c->x1 * f, c->y1 * f, c->flip != 0 };
    it_resize_rgb(pix, w, h, &b, size, out);
    free(pix);
}

/* The synthetic picture itself (no JPEG) resized over the crop's box at full scale. */
static void ref_picture(const uint8_t *pic, int w, int h, const sp_image_crop *c, int size, uint8_t *out)
{
    img_box b = { c->x0, c->y0, c->x1, c->y1, c->flip != 0 };
    it_resize_rgb(pic, w, h, &b, size, out);
}

typedef struct dstat {
    int max;           /* largest |a - b| */
    double mean_abs;   /* mean |a - b| */
    double mean[3];    /* per channel mean of a - b */
    size_t nonzero;    /* bytes that differ */
} dstat;

static dstat diff_rgb(const uint8_t *a, const uint8_t *b, int size)
{
    dstat d = { 0 };
    size_t n = (size_t)size * size;
    double sum = 0, ch[3] = { 0 };
    for (size_t i = 0; i < n * 3; i++) {
        int v = (int)a[i] - (int)b[i];
        int av = v < 0 ? -v : v;
        d.max = av > d.max ? av : d.max;
        d.nonzero += av != 0;
        sum += av;
        ch[i % 3] += v;
    }
    d.mean_abs = sum / (double)(n * 3);
    for (int c = 0; c < 3; c++)
        d.mean[c] = ch[c] / (double)n;
    return d;
}

static void crop_str(const sp_image_crop *c, char *buf, size_t len)
{
    snprintf(buf, len, "box (%.3f,%.3f)-(%.3f,%.3f) of %dx%d flip %d scale %d/8", c->x0, c->y0, c->x1, c->y1, c->width,
             c->height, c->flip, c->scale);
}

static bool crop_eq(const sp_image_crop *a, const sp_image_crop *b)
{
    return a->x0 == b->x0 && a->y0 == b->y0 && a->x1 == b->x1 && a->y1 == b->y1 && a->flip == b->flip &&
           a->scale == b->scale && a->width == b->width && a->height == b->height;
}

/* ------------------------------------------------------------------------------- variants */

/* Tolerances of the two comparisons every variant goes through.
 *
 * Against the reference decode (ref_decode_resize): the stage decodes only the crop's rows and
 * columns (jpeg_crop_scanline, jpeg_skip_scanlines) at the same DCT scale with the same IDCT, and
 * resamples with the same img_resize over the same box shifted by a whole number of pixels, so
 * the decoded pixels are the same and the result should be identical. The only admitted
 * difference is a tap weight whose 14-bit rounding flips because the box was shifted in floating
 * point: one level on an isolated byte. REF_MAX = 1, and at most 1% of the bytes may differ.
 *
 * Against the synthetic picture (ref_picture: no JPEG, full scale): JPEG loss at quality 95 on
 * ramps and waves is about one level, chroma subsampling smears the rectangles' coloured edges
 * by a pixel or two, and a DCT-scaled decode averages 8x8 blocks instead of filtering the
 * original. Measured over 40 seeds: mean absolute error mostly under 1.2 levels, up to ~3 on small
 * train crops of 4:2:0 files (the rectangles' chroma edges enlarged), bias up to ~1; PIC_MEAN and
 * PIC_BIAS leave room above that; a swapped or inverted channel, a mirror, a shifted box or a
 * wrong colour conversion is tens of levels off (the channels are ramps of 170 levels across the
 * image). */
#define REF_MAX 1
#define REF_FRAC 0.01 /* measured over 40 seeds and every variant: identical, every byte */
#define PIC_MEAN 5.0
#define PIC_BIAS 2.5

typedef struct vopt {
    int size;      /* image_size */
    int samples;   /* train samples tried */
    bool gray;     /* the expected picture is the luma in three channels */
    double pic_mean, pic_bias;
    bool smooth;   /* the picture without its rectangles (jg_smooth) */
} vopt;

/* Applies eval and train transforms to the JPEG of the synthetic picture and checks each output
 * against both references. outs (may be NULL) receives the outputs, eval first. */
static void check_variant(const char *name, int w, int h, jg_opts o, vopt v, uint8_t *outs)
{
    uint8_t *pic = v.smooth ? jg_smooth(w, h, g_seed ^ name_hash(name)) : jg_picture(w, h, g_seed ^ name_hash(name));
    ck_assert_ptr_nonnull(pic);
    uint8_t *expect = v.gray ? jg_gray_rgb(pic, w, h) : pic;
    ck_assert_ptr_nonnull(expect);
    it_enc j = encode(pic, w, h, o);
    char sz[16];
    snprintf(sz, sizeof sz, "%d", v.size);
    size_t nb = (size_t)v.size * v.size * 3;
    uint8_t *out = malloc(nb), *ref = malloc(nb), *pr = malloc(nb);
    ck_assert(out && ref && pr);
    for (int tr = 0; tr < 2; tr++) {
        sp_image_transform *t = it_transform("transform", tr ? "train" : "eval", "image_size", sz, NULL);
        ck_assert_uint_eq(sp_image_transform_bytes(t), nb);
        int n = tr ? v.samples : 1;
        for (int k = 0; k < n; k++) {
            uint64_t sample = (uint64_t)k * 7919 + 3, epoch = (uint64_t)k % 3;
            sp_image_crop c = { .struct_size = sizeof c }, c2 = { .struct_size = sizeof c2 };
            memset(&c, 0xAB, sizeof c);
            c.struct_size = sizeof c;
            int rc = sp_image_transform_apply(t, j.data, j.size, epoch, sample, out, &c);
            ck_assert_msg(rc == 0, "%s %dx%d %s sample %llu: %s (%s)", name, w, h, tr ? "train" : "eval",
                          (unsigned long long)sample, sp_error_name(rc), sp_image_transform_errmsg(t));
            ck_assert_int_eq(c.width, w);
            ck_assert_int_eq(c.height, h);
            ck_assert_msg(c.scale == 1 || c.scale == 2 || c.scale == 4 || c.scale == 8, "scale %d", c.scale);
            ck_assert_int_eq(sp_image_transform_crop(t, w, h, epoch, sample, &c2), 0);
            char cs[160], cs2[160];
            crop_str(&c, cs, sizeof cs);
            crop_str(&c2, cs2, sizeof cs2);
            ck_assert_msg(crop_eq(&c, &c2), "%s: apply did %s but crop() says %s", name, cs, cs2);

            ref_decode_resize(&j, &c, v.size, ref);
            dstat d = diff_rgb(out, ref, v.size);
            ref_picture(expect, w, h, &c, v.size, pr);
            dstat dp = diff_rgb(out, pr, v.size);
            if (g_verbose)
                fprintf(stderr, "%-14s %4dx%-4d %s s%-5llu %s | ref max %d nz %zu | pic mean %.2f bias %+.2f %+.2f %+.2f max %d\n",
                        name, w, h, tr ? "train" : "eval ", (unsigned long long)sample, cs, d.max, d.nonzero,
                        dp.mean_abs, dp.mean[0], dp.mean[1], dp.mean[2], dp.max);
            ck_assert_msg(d.max <= REF_MAX && d.nonzero <= REF_FRAC * nb,
                          "%s %dx%d %s sample %llu, %s: differs from the reference decode by up to %d "
                          "(%zu of %zu bytes)", name, w, h, tr ? "train" : "eval", (unsigned long long)sample, cs,
                          d.max, d.nonzero, nb);
            ck_assert_msg(dp.mean_abs <= v.pic_mean, "%s %dx%d %s sample %llu, %s: mean error %.2f against the picture",
                          name, w, h, tr ? "train" : "eval", (unsigned long long)sample, cs, dp.mean_abs);
            for (int ch = 0; ch < 3; ch++)
                ck_assert_msg(fabs(dp.mean[ch]) <= v.pic_bias,
                              "%s %dx%d %s sample %llu, %s: channel %d is off by %.2f on average", name, w, h,
                              tr ? "train" : "eval", (unsigned long long)sample, cs, ch, dp.mean[ch]);
            if (v.gray)
                for (size_t i = 0; i < nb; i += 3)
                    TU_CHECK(out[i] == out[i + 1] && out[i] == out[i + 2], "%s: pixel %zu is (%u,%u,%u), not gray", name,
                             i / 3, out[i], out[i + 1], out[i + 2]);
            if (outs)
                memcpy(outs + (tr ? 1 + k : 0) * nb, out, nb);
        }
        sp_image_transform_destroy(t);
    }
    free(out);
    free(ref);
    free(pr);
    if (expect != pic)
        free(expect);
    free(pic);
    free(j.data);
}

static vopt vdef(void) { return (vopt){ 64, 8, false, PIC_MEAN, PIC_BIAS, false }; }
/* Pictures of a few pixels: rectangles there would be a pixel or two wide and the wave a few
 * pixels long, and JPEG's 8x8 blocks and chroma subsampling would smear them over the whole image,
 * so these use the ramps alone (jg_smooth); the reference decode stays the exact check. A crop
 * of one or two source pixels enlarged to 64 magnifies the error of those pixels, hence the wider
 * bounds. */
static vopt vsmall(void) { return (vopt){ 64, 8, false, 6.0, 6.0, true }; }

/* Two sizes per variant: one where eval and most train crops decode at 8/8, one (odd sides, not
 * whole MCUs) where train crops spread over the DCT scales. */
static void check_both_sizes(const char *name, jg_opts o, vopt v)
{
    check_variant(name, 160, 120, o, v, NULL);
    check_variant(name, 517, 389, o, v, NULL);
}

START_TEST(baseline_444) { check_both_sizes("base444", (jg_opts){ 95, JG_444, JG_YCC, 0, 0 }, vdef()); }
END_TEST
START_TEST(baseline_422) { check_both_sizes("base422", (jg_opts){ 95, JG_422, JG_YCC, 0, 0 }, vdef()); }
END_TEST
START_TEST(baseline_420) { check_both_sizes("base420", (jg_opts){ 95, JG_420, JG_YCC, 0, 0 }, vdef()); }
END_TEST
START_TEST(baseline_440) { check_both_sizes("base440", (jg_opts){ 95, JG_440, JG_YCC, 0, 0 }, vdef()); }
END_TEST
/* Luma at 4x2 or 2x4 against 1x1 chroma: at a reduced DCT scale libjpeg decodes the chroma at a
 * larger DCT size and still upsamples it, which its column crop gets wrong (the stage then decodes
 * the full width). */
START_TEST(baseline_410) { check_both_sizes("base410", (jg_opts){ 95, JG_410, JG_YCC, 0, 0 }, vdef()); }
END_TEST
START_TEST(baseline_24) { check_both_sizes("base24", (jg_opts){ 95, JG_24, JG_YCC, 0, 0 }, vdef()); }
END_TEST
START_TEST(progressive_410) { check_both_sizes("prog410", (jg_opts){ 90, JG_410, JG_YCC, 1, 0 }, vdef()); }
END_TEST

/* Progressive files hold the same quantized coefficients as baseline ones of the same quality, so
 * once every scan is in they decode to the same pixels: the outputs must be bit-identical. */
START_TEST(progressive)
{
    const int samps[] = { JG_444, JG_422, JG_420, JG_440 };
    vopt v = vdef();
    size_t nb = (size_t)v.size * v.size * 3, n = 1 + (size_t)v.samples;
    uint8_t *a = malloc(nb * n), *b = malloc(nb * n);
    ck_assert(a && b);
    for (int s = 0; s < 4; s++) {
        for (int big = 0; big < 2; big++) {
            int w = big ? 517 : 160, h = big ? 389 : 120;
            char name[32];
            snprintf(name, sizeof name, "prog%d", s); /* the same picture for both encodings */
            check_variant(name, w, h, (jg_opts){ 90, samps[s], JG_YCC, 0, 0 }, v, a);
            check_variant(name, w, h, (jg_opts){ 90, samps[s], JG_YCC, 1, 0 }, v, b);
            for (size_t k = 0; k < n; k++)
                ck_assert_msg(memcmp(a + k * nb, b + k * nb, nb) == 0,
                              "subsampling %d %dx%d output %zu: progressive differs from baseline", s, w, h, k);
        }
    }
    free(a);
    free(b);
}
END_TEST

/* Restart markers change only the entropy coding: outputs bit-identical to the file without. */
START_TEST(restart_markers)
{
    vopt v = vdef();
    size_t nb = (size_t)v.size * v.size * 3, n = 1 + (size_t)v.samples;
    uint8_t *a = malloc(nb * n), *b = malloc(nb * n);
    ck_assert(a && b);
    const int intervals[] = { 1, 3, 7 };
    const int samps[] = { JG_420, JG_444, JG_422 };
    for (int i = 0; i < 3; i++) {
        for (int prog = 0; prog < 2; prog++) {
            check_variant("restart", 517, 389, (jg_opts){ 92, samps[i], JG_YCC, prog, 0 }, v, a);
            check_variant("restart", 517, 389, (jg_opts){ 92, samps[i], JG_YCC, prog, intervals[i] }, v, b);
            for (size_t k = 0; k < n; k++)
                ck_assert_msg(memcmp(a + k * nb, b + k * nb, nb) == 0,
                              "restart interval %d (progressive %d) output %zu: differs from the file without markers",
                              intervals[i], prog, k);
        }
    }
    free(a);
    free(b);
}
END_TEST

/* Arithmetic coding, too, changes only the entropy coding: such files decode (libjpeg-turbo reads
 * them), and bit-identically to the same picture Huffman-coded. */
START_TEST(arithmetic_coding)
{
    vopt v = vdef();
    size_t nb = (size_t)v.size * v.size * 3, n = 1 + (size_t)v.samples;
    uint8_t *a = malloc(nb * n), *b = malloc(nb * n);
    ck_assert(a && b);
    /* The encoder does write arithmetic-coded frames: SOF9, SOF10 when progressive. */
    for (int prog = 0; prog < 2; prog++) {
        uint8_t *pic = jg_picture(64, 48, 1);
        it_enc j = encode(pic, 64, 48, (jg_opts){ 92, JG_420, JG_YCC, prog, 0, .arithmetic = 1 });
        const uint8_t sof[2] = { 0xFF, (uint8_t)(prog ? 0xCA : 0xC9) };
        ck_assert_msg(memmem(j.data, j.size, sof, 2) != NULL, "no SOF%d marker", prog ? 10 : 9);
        free(j.data);
        free(pic);
    }
    const int samps[] = { JG_420, JG_444 };
    for (int i = 0; i < 2; i++) {
        for (int prog = 0; prog < 2; prog++) {
            check_variant("arith", 517, 389, (jg_opts){ 92, samps[i], JG_YCC, prog, 0 }, v, a);
            check_variant("arith", 517, 389, (jg_opts){ 92, samps[i], JG_YCC, prog, 0, .arithmetic = 1 }, v, b);
            for (size_t k = 0; k < n; k++)
                ck_assert_msg(memcmp(a + k * nb, b + k * nb, nb) == 0,
                              "arithmetic coding (progressive %d) output %zu: differs from the Huffman-coded file",
                              prog, k);
        }
    }
    free(a);
    free(b);
}
END_TEST

START_TEST(grayscale)
{
    vopt v = vdef();
    v.gray = true;
    check_both_sizes("gray", (jg_opts){ 95, JG_444, JG_GRAY, 0, 0 }, v);
    check_variant("grayprog", 160, 120, (jg_opts){ 95, JG_444, JG_GRAY, 1, 0 }, v, NULL);
}
END_TEST

START_TEST(cmyk_adobe) { check_both_sizes("cmyk", (jg_opts){ 95, JG_444, JG_CMYK, 0, 0 }, vdef()); }
END_TEST
START_TEST(ycck_adobe)
{
    check_both_sizes("ycck", (jg_opts){ 95, JG_444, JG_YCCK, 0, 0 }, vdef());
    check_variant("ycckprog", 160, 120, (jg_opts){ 95, JG_444, JG_YCCK, 1, 0 }, vdef(), NULL);
}
END_TEST
/* CMYK without an Adobe marker: the inks are taken as they are (not inverted). */
START_TEST(cmyk_plain) { check_both_sizes("cmykraw", (jg_opts){ 95, JG_444, JG_CMYK_RAW, 0, 0 }, vdef()); }
END_TEST

/* Smaller than the output on both sides: every crop is enlarged, always at 8/8. */
START_TEST(small_image)
{
    const int samps[] = { JG_420, JG_444, JG_422, JG_440 };
    for (int s = 0; s < 4; s++) {
        uint8_t *outs = malloc((size_t)64 * 64 * 3 * 9);
        ck_assert_ptr_nonnull(outs);
        check_variant("small", 17, 11, (jg_opts){ 95, samps[s], JG_YCC, s & 1, 0 }, vsmall(), outs);
        free(outs);
        sp_image_transform *t = it_transform("transform", "train", "image_size", "64", NULL);
        for (uint64_t k = 0; k < 200; k++) {
            sp_image_crop c = { .struct_size = sizeof c };
            ck_assert_int_eq(sp_image_transform_crop(t, 17, 11, 0, k, &c), 0);
            ck_assert_int_eq(c.scale, 8);
        }
        sp_image_transform_destroy(t);
    }
    vopt v = vsmall();
    v.gray = true;
    check_variant("smallgray", 17, 11, (jg_opts){ 95, JG_444, JG_GRAY, 0, 0 }, v, NULL);
    check_variant("tiny", 1, 1, (jg_opts){ 95, JG_420, JG_YCC, 0, 0 }, vsmall(), NULL);
    check_variant("tiny", 2, 3, (jg_opts){ 95, JG_444, JG_YCC, 0, 0 }, vsmall(), NULL);
}
END_TEST

/* 3000x2000 at image_size 64: eval's box is ~1750 pixels, so it must be decoded at a DCT scale
 * below 8/8 (1/8 covers 64 pixels many times over). */
START_TEST(large_image)
{
    const int w = 3000, h = 2000;
    uint8_t *pic = jg_picture(w, h, g_seed ^ 0x1a3e);
    ck_assert_ptr_nonnull(pic);
    const int samps[] = { JG_420, JG_444 };
    for (int s = 0; s < 2; s++) {
        it_enc j = encode(pic, w, h, (jg_opts){ 90, samps[s], JG_YCC, s, 0 });
        size_t nb = 64 * 64 * 3;
        uint8_t out[64 * 64 * 3], ref[64 * 64 * 3], pr[64 * 64 * 3];
        for (int tr = 0; tr < 2; tr++) {
            sp_image_transform *t = it_transform("transform", tr ? "train" : "eval", "image_size", "64", NULL);
            int n = tr ? 4 : 1, below8 = 0;
            for (int k = 0; k < n; k++) {
                sp_image_crop c = { .struct_size = sizeof c }, c2 = { .struct_size = sizeof c2 };
                ck_assert_int_eq(sp_image_transform_apply(t, j.data, j.size, 1, (uint64_t)k, out, &c), 0);
                ck_assert_int_eq(sp_image_transform_crop(t, w, h, 1, (uint64_t)k, &c2), 0);
                ck_assert(crop_eq(&c, &c2));
                below8 += c.scale < 8;
                char cs[160];
                crop_str(&c, cs, sizeof cs);
                if (!tr)
                    ck_assert_msg(c.scale < 8, "eval of %dx%d at 64: %s, not DCT-scaled", w, h, cs);
                ref_decode_resize(&j, &c, 64, ref);
                dstat d = diff_rgb(out, ref, 64);
                ref_picture(pic, w, h, &c, 64, pr);
                dstat dp = diff_rgb(out, pr, 64);
                if (g_verbose)
                    fprintf(stderr, "large %s %s | ref max %d nz %zu | pic mean %.2f bias %+.2f %+.2f %+.2f max %d\n",
                            tr ? "train" : "eval", cs, d.max, d.nonzero, dp.mean_abs, dp.mean[0], dp.mean[1], dp.mean[2],
                            dp.max);
                ck_assert_msg(d.max <= REF_MAX && d.nonzero <= REF_FRAC * nb, "%s: reference differs by %d (%zu bytes)",
                              cs, d.max, d.nonzero);
                ck_assert_msg(dp.mean_abs <= PIC_MEAN, "%s: mean error %.2f against the picture", cs, dp.mean_abs);
                for (int ch = 0; ch < 3; ch++)
                    ck_assert_msg(fabs(dp.mean[ch]) <= PIC_BIAS, "%s: channel %d off by %.2f", cs, ch, dp.mean[ch]);
            }
            if (tr)
                ck_assert_msg(below8 > 0, "no train crop of a 3000x2000 image was DCT-scaled");
            sp_image_transform_destroy(t);
        }
        free(j.data);
    }
    free(pic);
}
END_TEST

/* A flat colour comes back as that colour, in every variant: the mean per channel of the output is
 * the colour within JPEG's rounding (the colour conversion of one pixel is within 2 levels, and
 * the rounding of C*K/255 in CMYK adds one), and no pixel strays further than 3. */
START_TEST(flat_colour)
{
    const uint8_t col[][3] = { { 200, 60, 30 }, { 20, 140, 230 }, { 128, 128, 128 }, { 250, 250, 5 } };
    const jg_opts vars[] = {
        { 95, JG_444, JG_YCC, 0, 0 }, { 95, JG_420, JG_YCC, 1, 0 }, { 95, JG_422, JG_YCC, 0, 2 },
        { 95, JG_440, JG_YCC, 0, 0 }, { 95, JG_444, JG_CMYK, 0, 0 }, { 95, JG_444, JG_YCCK, 1, 0 },
        { 95, JG_444, JG_CMYK_RAW, 0, 0 }, { 95, JG_444, JG_GRAY, 0, 0 },
    };
    uint8_t out[48 * 48 * 3];
    for (size_t c = 0; c < sizeof col / sizeof col[0]; c++) {
        uint8_t *pic = jg_flat(203, 157, col[c][0], col[c][1], col[c][2]);
        ck_assert_ptr_nonnull(pic);
        for (size_t vi = 0; vi < sizeof vars / sizeof vars[0]; vi++) {
            it_enc j = encode(pic, 203, 157, vars[vi]);
            uint8_t want[3];
            for (int ch = 0; ch < 3; ch++)
                want[ch] = vars[vi].color == JG_GRAY ? jg_luma(col[c]) : col[c][ch];
            for (int tr = 0; tr < 2; tr++) {
                sp_image_transform *t = it_transform("transform", tr ? "train" : "eval", "image_size", "48", NULL);
                for (uint64_t k = 0; k < 3; k++) {
                    ck_assert_int_eq(sp_image_transform_apply(t, j.data, j.size, 0, k, out, NULL), 0);
                    double mean[3] = { 0 };
                    for (size_t i = 0; i < sizeof out; i++) {
                        int dv = (int)out[i] - want[i % 3];
                        TU_CHECK(abs(dv) <= 3, "colour %zu variant %zu: byte %zu is %u, want %u", c, vi, i, out[i],
                                 want[i % 3]);
                        mean[i % 3] += out[i];
                    }
                    for (int ch = 0; ch < 3; ch++) {
                        mean[ch] /= 48 * 48;
                        ck_assert_msg(fabs(mean[ch] - want[ch]) <= 2.0, "colour %zu variant %zu channel %d: mean %.2f, want %u",
                                      c, vi, ch, mean[ch], want[ch]);
                    }
                }
                sp_image_transform_destroy(t);
            }
            free(j.data);
        }
        free(pic);
    }
}
END_TEST

/* ------------------------------------------------------------------------------- test 2 */

/* The eval path at 8/8 against the reference: image_size is chosen so the centre crop (7/8 of the
 * shorter side) is under twice image_size, which makes 8/8 the only scale that covers it. The
 * tolerance is REF_MAX (see above): identical pixels expected, one level on a rare byte allowed
 * for floating-point rounding of the shifted box. */
START_TEST(eval_reference_scale8)
{
    struct {
        int w, h, size;
        jg_opts o;
    } cases[] = {
        { 160, 120, 64, { 95, JG_420, JG_YCC, 0, 0 } },   { 120, 160, 64, { 95, JG_444, JG_YCC, 0, 0 } },
        { 301, 233, 112, { 85, JG_422, JG_YCC, 0, 0 } },  { 233, 301, 112, { 85, JG_440, JG_YCC, 1, 0 } },
        { 255, 255, 128, { 75, JG_420, JG_YCC, 1, 4 } },  { 97, 61, 32, { 95, JG_444, JG_GRAY, 0, 0 } },
        { 640, 400, 224, { 90, JG_420, JG_YCC, 0, 0 } },  { 50, 300, 24, { 90, JG_422, JG_YCC, 0, 0 } },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int w = cases[i].w, h = cases[i].h, size = cases[i].size;
        uint8_t *pic = jg_picture(w, h, g_seed + i);
        it_enc j = encode(pic, w, h, cases[i].o);
        char sz[16];
        snprintf(sz, sizeof sz, "%d", size);
        sp_image_transform *t = it_transform("transform", "eval", "image_size", sz, NULL);
        size_t nb = (size_t)size * size * 3;
        uint8_t *out = malloc(nb), *ref = malloc(nb);
        sp_image_crop c = { .struct_size = sizeof c };
        ck_assert_int_eq(sp_image_transform_apply(t, j.data, j.size, 0, i, out, &c), 0);
        ck_assert_msg(c.scale == 8, "case %zu: eval crop decoded at %d/8", i, c.scale);
        /* The reference: the whole image, decoded here at full size. */
        int dw, dh;
        char err[256];
        uint8_t *full = jg_decode(j.data, j.size, 8, &dw, &dh, err, sizeof err);
        ck_assert_msg(full, "%s", err);
        ck_assert_int_eq(dw, w);
        ck_assert_int_eq(dh, h);
        img_box b = { c.x0, c.y0, c.x1, c.y1, c.flip != 0 };
        it_resize_rgb(full, w, h, &b, size, ref);
        dstat d = diff_rgb(out, ref, size);
        if (g_verbose)
            fprintf(stderr, "eval8 case %zu %dx%d@%d: max %d nonzero %zu mean %.4f\n", i, w, h, size, d.max, d.nonzero,
                    d.mean_abs);
        ck_assert_msg(d.max <= REF_MAX && d.mean_abs < 0.5 && d.nonzero <= REF_FRAC * nb,
                      "case %zu (%dx%d at %d): differs from the reference by up to %d, mean %.4f, %zu bytes", i, w, h,
                      size, d.max, d.mean_abs, d.nonzero);
        free(full);
        free(out);
        free(ref);
        free(pic);
        free(j.data);
        sp_image_transform_destroy(t);
    }
}
END_TEST

/* img_resize against a model written from its contract in img.h, in doubles: output pixel i of
 * an axis is centred at b0 + (i + 0.5) * scale (scale = box side / size), and averages the source
 * pixels j (centres j + 0.5) inside the image with weights tri((j + 0.5 - centre) / max(scale, 1)),
 * normalized; flip mirrors the columns. The resampler keeps 14-bit weights and rounds to 8 bits
 * between its two passes, so it may differ from the exact value by up to one level. */
static void axis_model(double b0, double b1, int in, int out, int i, double *wt, int *lo, int *hi)
{
    double scale = (b1 - b0) / out, fs = scale > 1 ? scale : 1, centre = b0 + (i + 0.5) * scale, sum = 0;
    *lo = -1;
    *hi = -1;
    for (int j = 0; j < in; j++) {
        double d = fabs((j + 0.5 - centre) / fs);
        wt[j] = d < 1 ? 1 - d : 0;
        sum += wt[j];
        if (wt[j] > 0) {
            *lo = *lo < 0 ? j : *lo;
            *hi = j + 1;
        }
    }
    for (int j = 0; j < in; j++)
        wt[j] /= sum;
}

START_TEST(resampler_model)
{
    tu_rng r = { g_seed ^ 0x7e5 };
    int worst = 0;
    for (int k = 0; k < 120; k++) {
        int w = 2 + (int)tu_below(&r, 300), h = 2 + (int)tu_below(&r, 300), size = 1 + (int)tu_below(&r, 96);
        uint8_t *src = malloc((size_t)w * h * 4);
        /* Noise on half the cases (every rounding shows), smooth ramps on the rest. */
        if (k % 2)
            tu_fill_random(&r, src, (size_t)w * h * 4);
        else
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    uint8_t *q = src + ((size_t)y * w + x) * 4;
                    q[0] = (uint8_t)(255 * x / w), q[1] = (uint8_t)(255 * y / h), q[2] = (uint8_t)((x * 7 + y * 3) & 255);
                    q[3] = 255;
                }
        /* A box inside the image, shrinking by at most 8. */
        double bw = 0.5 + (double)tu_below(&r, 1000) / 1000 * (w - 0.5), bh = 0.5 + (double)tu_below(&r, 1000) / 1000 * (h - 0.5);
        bw = bw > 8.0 * size ? 8.0 * size : bw;
        bh = bh > 8.0 * size ? 8.0 * size : bh;
        double x0 = (double)tu_below(&r, 1000) / 1000 * (w - bw), y0 = (double)tu_below(&r, 1000) / 1000 * (h - bh);
        img_box b = { x0, y0, x0 + bw, y0 + bh, tu_below(&r, 2) == 1 };
        uint8_t *out = malloc((size_t)size * size * 3);
        void *tmp = malloc(img_resize_tmp_bytes((uint32_t)size, (uint32_t)(w > h ? w : h)));
        img_resize(src, (uint32_t)w, (uint32_t)h, (size_t)w * 4, &b, (uint32_t)size, out, tmp);
        double *wx = malloc(sizeof(double) * (size_t)w * size), *wy = malloc(sizeof(double) * (size_t)h * size);
        int *xlo = malloc(sizeof(int) * size * 4), *xhi = xlo + size, *ylo = xlo + 2 * size, *yhi = xlo + 3 * size;
        for (int i = 0; i < size; i++) {
            axis_model(b.x0, b.x1, w, size, i, wx + (size_t)i * w, &xlo[i], &xhi[i]);
            axis_model(b.y0, b.y1, h, size, i, wy + (size_t)i * h, &ylo[i], &yhi[i]);
        }
        for (int oy = 0; oy < size; oy++)
            for (int ox = 0; ox < size; ox++) {
                int ix = b.flip ? size - 1 - ox : ox;
                for (int c = 0; c < 3; c++) {
                    double v = 0;
                    for (int y = ylo[oy]; y < yhi[oy]; y++) {
                        double row = 0;
                        for (int x = xlo[ix]; x < xhi[ix]; x++)
                            row += wx[(size_t)ix * w + x] * src[((size_t)y * w + x) * 4 + c];
                        v += wy[(size_t)oy * h + y] * row;
                    }
                    int got = out[((size_t)oy * size + ox) * 3 + c], want = (int)floor(v + 0.5);
                    int dv = abs(got - want);
                    worst = dv > worst ? dv : worst;
                    TU_CHECK(dv <= 1, "case %d: %dx%d box (%g,%g)-(%g,%g) flip %d to %d: pixel (%d,%d) channel %d is %d, "
                             "the model says %.3f", k, w, h, b.x0, b.y0, b.x1, b.y1, b.flip, size, ox, oy, c, got, v);
                }
            }
        free(wx);
        free(wy);
        free(xlo);
        free(tmp);
        free(out);
        free(src);
    }
    if (g_verbose)
        fprintf(stderr, "resampler: worst difference from the model %d\n", worst);
}
END_TEST

/* ------------------------------------------------------------------------------- test 3 */

/* torchvision's fallback when ten draws fail: the centre crop with the ratio clamped to
 * [3/4, 4/3] (written here from its documentation, not from the library). */
static void fallback_box(int w, int h, double *x0, double *y0, double *x1, double *y1)
{
    double r = (double)w / h, cw = w, ch = h;
    if (r < 0.75)
        ch = floor(w / 0.75 + 0.5);
    else if (r > 4.0 / 3.0)
        cw = floor(h * 4.0 / 3.0 + 0.5);
    cw = cw > w ? w : cw;
    ch = ch > h ? h : ch;
    *x0 = floor((w - cw) / 2);
    *y0 = floor((h - ch) / 2);
    *x1 = *x0 + cw;
    *y1 = *y0 + ch;
}

static int rand_side(tu_rng *r)
{
    switch (tu_below(r, 4)) {
    case 0:
        return 1 + (int)tu_below(r, 40); /* tiny */
    case 1:
        return 8 + (int)tu_below(r, 600);
    case 2:
        return 100 + (int)tu_below(r, 4000);
    default:
        return 1 + (int)tu_below(r, 20000); /* extreme aspect ratios come from mixing these */
    }
}

START_TEST(train_crop_properties)
{
    sp_image_transform *t = it_transform("transform", "train", "image_size", "96", NULL);
    tu_rng r = { g_seed ^ 0xc409 };
    const int N = 20000;
    int flips = 0, fallbacks = 0, regular = 0;
    double fmin = 1, fmax = 0, rmin = 10, rmax = 0, xpos = 0;
    int xpos_n = 0;
    for (int i = 0; i < N; i++) {
        int w = rand_side(&r), h = rand_side(&r);
        uint64_t sample = tu_next(&r) >> 20, epoch = tu_below(&r, 100);
        sp_image_crop c = { .struct_size = sizeof c };
        ck_assert_int_eq(sp_image_transform_crop(t, w, h, epoch, sample, &c), 0);
        ck_assert_int_eq(c.width, w);
        ck_assert_int_eq(c.height, h);
        TU_CHECK(c.x0 >= 0 && c.y0 >= 0 && c.x1 <= w && c.y1 <= h && c.x1 > c.x0 && c.y1 > c.y0,
                 "%dx%d: box (%g,%g)-(%g,%g) not inside the image", w, h, c.x0, c.y0, c.x1, c.y1);
        /* Whole pixels: the crop is an integer rectangle. */
        TU_CHECK(c.x0 == floor(c.x0) && c.y0 == floor(c.y0) && c.x1 == floor(c.x1) && c.y1 == floor(c.y1),
                 "%dx%d: box (%g,%g)-(%g,%g) not on whole pixels", w, h, c.x0, c.y0, c.x1, c.y1);
        flips += c.flip != 0;
        TU_CHECK(c.flip == 0 || c.flip == 1, "flip %d", c.flip);
        double cw = c.x1 - c.x0, ch = c.y1 - c.y0, area = (double)w * h;
        /* The drawn (unrounded) sides are within half a pixel of these, so the drawn area and ratio
         * lie within these bounds. */
        bool area_ok = (cw + 0.5) * (ch + 0.5) >= 0.08 * area * (1 - 1e-12) &&
                       (cw - 0.5) * (ch - 0.5) <= area * (1 + 1e-12);
        bool ratio_ok = (cw + 0.5) / (ch - 0.5 > 0 ? ch - 0.5 : 1e-300) >= 0.75 * (1 - 1e-12) &&
                        (cw - 0.5) / (ch + 0.5) <= 4.0 / 3.0 * (1 + 1e-12);
        double fx0, fy0, fx1, fy1;
        fallback_box(w, h, &fx0, &fy0, &fx1, &fy1);
        bool is_fallback = c.x0 == fx0 && c.y0 == fy0 && c.x1 == fx1 && c.y1 == fy1;
        TU_CHECK((area_ok && ratio_ok) || is_fallback,
                 "%dx%d epoch %llu sample %llu: box %gx%g at (%g,%g): area fraction %.4f ratio %.4f, and not the "
                 "fallback (%g,%g)-(%g,%g)", w, h, (unsigned long long)epoch, (unsigned long long)sample, cw, ch, c.x0,
                 c.y0, cw * ch / area, cw / ch, fx0, fy0, fx1, fy1);
        if (area_ok && ratio_ok && !is_fallback) {
            regular++;
            if (w >= 200 && h >= 200 && (double)w / h > 0.8 && (double)w / h < 1.25) {
                double f = cw * ch / area;
                fmin = f < fmin ? f : fmin;
                fmax = f > fmax ? f : fmax;
                rmin = cw / ch < rmin ? cw / ch : rmin;
                rmax = cw / ch > rmax ? cw / ch : rmax;
                if (w - cw >= 50) {
                    xpos += c.x0 / (w - cw);
                    xpos_n++;
                }
            }
        } else {
            fallbacks++;
        }
        /* The DCT scale: the smallest of 1/8, 2/8, 4/8 that still covers image_size on both sides,
         * else 8/8. */
        int want = 8;
        for (int m = 1; m <= 4; m *= 2)
            if (cw * m / 8 >= 96 && ch * m / 8 >= 96) {
                want = m;
                break;
            }
        TU_CHECK(c.scale == want, "%gx%g box at image_size 96: scale %d/8, want %d/8", cw, ch, c.scale, want);
    }
    double pf = (double)flips / N;
    ck_assert_msg(fabs(pf - 0.5) < 0.02, "flip frequency %.4f over %d draws (sigma 0.0035)", pf, N);
    ck_assert_msg(fallbacks > 500 && regular > N / 4, "fallback %d, regular %d: both paths should be common", fallbacks,
                  regular);
    /* On roughly square images the draws should span the whole range, and the position should be
     * uniform (mean 0.5, sigma of the mean ~0.29/sqrt(n)). */
    ck_assert_msg(fmin < 0.1 && fmax > 0.9, "area fractions only in [%.3f, %.3f]", fmin, fmax);
    ck_assert_msg(rmin < 0.78 && rmax > 1.28, "ratios only in [%.3f, %.3f]", rmin, rmax);
    ck_assert_msg(xpos_n > 500 && fabs(xpos / xpos_n - 0.5) < 0.05, "mean horizontal position %.3f over %d",
                  xpos / xpos_n, xpos_n);
    if (g_verbose)
        fprintf(stderr, "crops: flips %.4f fallbacks %d regular %d frac [%.3f,%.3f] ratio [%.3f,%.3f] xpos %.3f\n", pf,
                fallbacks, regular, fmin, fmax, rmin, rmax, xpos / xpos_n);
    sp_image_transform_destroy(t);
}
END_TEST

/* The draws are a function of (seed, epoch, sample) alone. */
START_TEST(train_crop_determinism)
{
    sp_image_transform *a = it_transform("transform", "train", "image_size", "64", NULL);
    sp_image_transform *b = it_transform("transform", "train", "image_size", "64", NULL);
    char other[32];
    snprintf(other, sizeof other, "%llu", (unsigned long long)(g_seed + 1));
    sp_image_transform *s2 = it_transform("transform", "train", "image_size", "64", "seed", other, NULL);
    tu_rng r = { g_seed ^ 0xde7 };
    const int N = 5000;
    int same_epoch = 0, same_seed = 0, same_sample = 0, compared = 0;
    for (int i = 0; i < N; i++) {
        /* Aspect ratios in [0.6, 1.7]: the ten tries rarely all fail, and the fallback (a fixed
         * centre crop) is left out of the comparison below. */
        int w = 64 + (int)tu_below(&r, 2000), h = (int)(w * (0.6 + (double)tu_below(&r, 1100) / 1000.0));
        uint64_t e = tu_below(&r, 1000), s = tu_next(&r) >> 16;
        sp_image_crop c1 = { .struct_size = sizeof c1 };
        sp_image_crop c2 = { .struct_size = sizeof c2 };
        sp_image_crop c3 = { .struct_size = sizeof c3 };
        sp_image_crop c4 = { .struct_size = sizeof c4 };
        sp_image_crop c5 = { .struct_size = sizeof c5 };
        ck_assert_int_eq(sp_image_transform_crop(a, w, h, e, s, &c1), 0);
        ck_assert_int_eq(sp_image_transform_crop(b, w, h, e, s, &c2), 0);
        /* Interleaved calls on a: no state carried between draws. */
        ck_assert_int_eq(sp_image_transform_crop(a, w, h, e + 1, s, &c3), 0);
        sp_image_crop again = { .struct_size = sizeof again };
        ck_assert_int_eq(sp_image_transform_crop(a, w, h, e, s, &again), 0);
        TU_CHECK(crop_eq(&c1, &c2) && crop_eq(&c1, &again), "%dx%d e %llu s %llu: two draws differ", w, h,
                 (unsigned long long)e, (unsigned long long)s);
        ck_assert_int_eq(sp_image_transform_crop(s2, w, h, e, s, &c4), 0);
        ck_assert_int_eq(sp_image_transform_crop(a, w, h, e, s + 1, &c5), 0);
        double fx0, fy0, fx1, fy1;
        fallback_box(w, h, &fx0, &fy0, &fx1, &fy1);
        if (c1.x0 == fx0 && c1.y0 == fy0 && c1.x1 == fx1 && c1.y1 == fy1)
            continue;
        compared++;
        same_epoch += crop_eq(&c1, &c3);
        same_seed += crop_eq(&c1, &c4);
        same_sample += crop_eq(&c1, &c5);
    }
    /* Boxes are drawn from millions of possibilities on these sizes: a repeat is rare. */
    ck_assert_msg(compared > N * 9 / 10, "only %d of %d draws were not the fallback", compared, N);
    ck_assert_msg(same_epoch < compared / 100, "%d of %d crops the same in the next epoch", same_epoch, compared);
    ck_assert_msg(same_seed < compared / 100, "%d of %d crops the same with another seed", same_seed, compared);
    ck_assert_msg(same_sample < compared / 100, "%d of %d crops the same for the next sample", same_sample, compared);
    sp_image_transform_destroy(a);
    sp_image_transform_destroy(b);
    sp_image_transform_destroy(s2);
}
END_TEST

/* Eval: the shorter side resized to `resize` (image_size / 0.875 by default), the longer one
 * truncated, and the centre image_size x image_size of that: in output terms a centred square. */
START_TEST(eval_crop_geometry)
{
    struct {
        const char *size, *resize;
        int S, R;
    } cfgs[] = { { "224", "0", 224, 256 }, { "64", "0", 64, 73 }, { "96", "96", 96, 96 }, { "32", "200", 32, 200 } };
    tu_rng r = { g_seed ^ 0xe7a1 };
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        sp_image_transform *t = it_transform("transform", "eval", "image_size", cfgs[k].size, "resize", cfgs[k].resize, NULL);
        const double S = cfgs[k].S, R = cfgs[k].R;
        for (int i = 0; i < 3000; i++) {
            int w = 1 + (int)tu_below(&r, i % 3 ? 3000 : 60), h = 1 + (int)tu_below(&r, i % 2 ? 3000 : 60);
            sp_image_crop c = { .struct_size = sizeof c }, c2 = { .struct_size = sizeof c2 };
            ck_assert_int_eq(sp_image_transform_crop(t, w, h, tu_below(&r, 9), tu_next(&r), &c), 0);
            ck_assert_int_eq(sp_image_transform_crop(t, w, h, 0, 0, &c2), 0);
            TU_CHECK(crop_eq(&c, &c2), "eval crop of %dx%d depends on epoch or sample", w, h);
            TU_CHECK(c.flip == 0, "eval flipped");
            /* Resized sides: the shorter is R, the longer R * long / short truncated. */
            double nw = w <= h ? R : floor(R * w / h), nh = w <= h ? floor(R * h / w) : R;
            double sx = w / nw, sy = h / nh; /* source pixels per resized pixel */
            double bw = c.x1 - c.x0, bh = c.y1 - c.y0;
            /* Square in output terms: S resized pixels on each side. */
            TU_CHECK(fabs(bw / sx - S) < 1e-6 && fabs(bh / sy - S) < 1e-6,
                     "%dx%d (S %g R %g): box %gx%g is %gx%g resized pixels", w, h, S, R, bw, bh, bw / sx, bh / sy);
            /* Centred: within half a resized pixel (the offset is rounded to whole resized pixels). */
            TU_CHECK(fabs((c.x0 + c.x1) / 2 - w / 2.0) <= 0.5 * sx + 1e-9 &&
                         fabs((c.y0 + c.y1) / 2 - h / 2.0) <= 0.5 * sy + 1e-9,
                     "%dx%d (S %g R %g): box (%g,%g)-(%g,%g) not centred", w, h, S, R, c.x0, c.y0, c.x1, c.y1);
            /* And the offset is a whole number of resized pixels. */
            TU_CHECK(fabs(c.x0 / sx - floor(c.x0 / sx + 0.5)) < 1e-6 && fabs(c.y0 / sy - floor(c.y0 / sy + 0.5)) < 1e-6,
                     "%dx%d: offset (%g,%g) not on resized pixels", w, h, c.x0 / sx, c.y0 / sy);
            /* Inside the image: resize >= image_size. */
            TU_CHECK(c.x0 >= -1e-9 && c.y0 >= -1e-9 && c.x1 <= w + 1e-9 && c.y1 <= h + 1e-9,
                     "%dx%d: box (%g,%g)-(%g,%g) outside the image", w, h, c.x0, c.y0, c.x1, c.y1);
        }
        sp_image_transform_destroy(t);
    }
}
END_TEST

/* ------------------------------------------------------------------------------- test 6 */

static float half_to_float(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 1024), e - 25);
    return s ? -v : v;
}

static float bf16_to_float(uint16_t b)
{
    uint32_t x = (uint32_t)b << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* Whether bits (a float16 or bfloat16, decoded by dec) is the representable value nearest to f:
 * no closer than its neighbours in magnitude, and of f's sign unless zero. */
static bool is_nearest(uint16_t bits, float f, float (*dec)(uint16_t))
{
    double v = dec(bits), err = fabs(v - f);
    uint16_t sign = bits & 0x8000u, mag = bits & 0x7fffu;
    if (v != 0 && (v < 0) != (f < 0))
        return false;
    double up = dec((uint16_t)(sign | (mag + 1)));
    if (fabs(up - f) < err)
        return false;
    if (mag > 0 && fabs((double)dec((uint16_t)(sign | (mag - 1))) - f) < err)
        return false;
    if (mag == 0 && fabs((double)dec((uint16_t)((sign ^ 0x8000u) | 1)) - f) < err)
        return false;
    return true;
}

static void check_dtypes(const char *mean_s, const char *std_s, const double mean[3], const double stdv[3])
{
    const int S = 40;
    const int w = 211, h = 157;
    uint8_t *pic = jg_picture(w, h, g_seed ^ 0xd7);
    it_enc j = encode(pic, w, h, (jg_opts){ 90, JG_420, JG_YCC, 0, 0 });
    static const char *dtypes[] = { "uint8", "float16", "bfloat16", "float32" };
    static const size_t esz[] = { 1, 2, 2, 4 };
    static const char *layouts[] = { "nhwc", "nchw" };
    void *out[4][2];
    const size_t n = (size_t)S * S * 3;
    for (int tr = 0; tr < 2; tr++) {
        for (uint64_t sample = 5; sample < 8; sample++) {
            for (int d = 0; d < 4; d++)
                for (int L = 0; L < 2; L++) {
                    sp_image_transform *t = it_transform("transform", tr ? "train" : "eval", "image_size", "40", "image_dtype",
                                               dtypes[d], "image_layout", layouts[L], "mean", mean_s, "std", std_s, NULL);
                    ck_assert_uint_eq(sp_image_transform_bytes(t), n * esz[d]);
                    out[d][L] = malloc(n * esz[d]);
                    ck_assert_int_eq(sp_image_transform_apply(t, j.data, j.size, 2, sample, out[d][L], NULL), 0);
                    sp_image_transform_destroy(t);
                }
            const uint8_t *u8 = out[0][0], *u8c = out[0][1];
            for (int L = 0; L < 2; L++) {
                const uint8_t *u = L ? u8c : u8;
                const float *f32 = out[3][L];
                const uint16_t *f16 = out[1][L], *b16 = out[2][L];
                for (int y = 0; y < S; y++)
                    for (int x = 0; x < S; x++)
                        for (int c = 0; c < 3; c++) {
                            size_t hwc = ((size_t)y * S + x) * 3 + c, chw = (size_t)c * S * S + (size_t)y * S + x;
                            size_t idx = L ? chw : hwc;
                            if (L)
                                TU_CHECK(u8c[chw] == u8[hwc], "NCHW (%d,%d,%d) is %u, NHWC has %u", c, y, x, u8c[chw],
                                         u8[hwc]);
                            double want = ((double)u[idx] / 255.0 - mean[c]) / stdv[c];
                            TU_CHECK(fabs(f32[idx] - want) <= 1e-6 * (fabs(want) > 1 ? fabs(want) : 1),
                                     "%s float32 (%d,%d,%d): %.9g, want %.9g for %u", layouts[L], c, y, x, f32[idx], want,
                                     u[idx]);
                            TU_CHECK(is_nearest(f16[idx], f32[idx], half_to_float),
                                     "%s float16 (%d,%d,%d): 0x%04x = %.9g is not the nearest to %.9g", layouts[L], c, y, x,
                                     f16[idx], half_to_float(f16[idx]), f32[idx]);
                            TU_CHECK(is_nearest(b16[idx], f32[idx], bf16_to_float),
                                     "%s bfloat16 (%d,%d,%d): 0x%04x = %.9g is not the nearest to %.9g", layouts[L], c, y, x,
                                     b16[idx], bf16_to_float(b16[idx]), f32[idx]);
                        }
            }
            for (int d = 0; d < 4; d++)
                for (int L = 0; L < 2; L++)
                    free(out[d][L]);
        }
    }
    free(pic);
    free(j.data);
}

START_TEST(dtypes_layouts_default_norm)
{
    /* The defaults, from the parameter table (ImageNet's statistics). */
    double m[3], s[3];
    ck_assert_int_eq(sp_params_get_float3(NULL, SP_PARAM_MEAN, m), 0);
    ck_assert_int_eq(sp_params_get_float3(NULL, SP_PARAM_STD, s), 0);
    ck_assert(fabs(m[0] - 0.485) < 1e-12 && fabs(s[2] - 0.225) < 1e-12);
    check_dtypes("0.485,0.456,0.406", "0.229,0.224,0.225", m, s);
}
END_TEST

START_TEST(dtypes_layouts_custom_norm)
{
    const double m[3] = { 0.5, 0.5, 0.5 }, s[3] = { 0.5, 0.5, 0.5 };
    check_dtypes("0.5,0.5,0.5", "0.5,0.5,0.5", m, s);
    const double m2[3] = { 0.1, 0.9, -0.25 }, s2[3] = { 0.001, 3, 0.7 }; /* large values: float16 near 1000 */
    check_dtypes("0.1,0.9,-0.25", "0.001,3,0.7", m2, s2);
}
END_TEST

/* ------------------------------------------------------------------------------- test 7 and errors */

START_TEST(eval_resize_refused)
{
    sp_params *p = sp_params_create();
    ck_assert_int_eq(sp_params_set_str(p, "transform", "eval"), 0);
    ck_assert_int_eq(sp_params_set_str(p, "image_size", "224"), 0);
    ck_assert_int_eq(sp_params_set_str(p, "resize", "200"), 0);
    sp_image_transform *t = (sp_image_transform *)(uintptr_t)1;
    ck_assert_int_eq(sp_image_transform_create(p, &t), SP_EINVAL);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(sp_last_error(), "resize"), "message does not name resize: %s", sp_last_error());
    ck_assert_int_eq(sp_params_set_str(p, "resize", "223"), 0);
    ck_assert_int_eq(sp_image_transform_create(p, &t), SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "resize"), "%s", sp_last_error());
    /* Equal is fine, as is the default (image_size / 0.875). */
    ck_assert_int_eq(sp_params_set_str(p, "resize", "224"), 0);
    ck_assert_int_eq(sp_image_transform_create(p, &t), 0);
    sp_image_transform_destroy(t);
    ck_assert_int_eq(sp_params_set_str(p, "resize", "0"), 0);
    ck_assert_int_eq(sp_image_transform_create(p, &t), 0);
    sp_image_transform_destroy(t);
    /* Train does not use resize. */
    ck_assert_int_eq(sp_params_set_str(p, "transform", "train"), 0);
    ck_assert_int_eq(sp_params_set_str(p, "resize", "100"), 0);
    ck_assert_int_eq(sp_image_transform_create(p, &t), 0);
    sp_image_transform_destroy(t);
    /* NULL params: the defaults. */
    ck_assert_int_eq(sp_image_transform_create(NULL, &t), 0);
    ck_assert_uint_eq(sp_image_transform_bytes(t), 224 * 224 * 3);
    sp_image_transform_destroy(t);
    sp_params_destroy(p);
}
END_TEST

/* Bad input: refused with the right code and a message naming the sample, and the transform
 * still gives the same bytes for a good image afterwards. */
START_TEST(bad_input)
{
    const int w = 200, h = 150;
    uint8_t *pic = jg_picture(w, h, g_seed ^ 0xbad);
    it_enc j = encode(pic, w, h, (jg_opts){ 90, JG_420, JG_YCC, 0, 0 });
    it_enc jp = encode(pic, w, h, (jg_opts){ 90, JG_420, JG_YCC, 1, 0 });
    sp_image_transform *t = it_transform("transform", "train", "image_size", "32", "max_pixels", "40000", NULL);
    uint8_t good[32 * 32 * 3], out[32 * 32 * 3];
    ck_assert_int_eq(sp_image_transform_apply(t, j.data, j.size, 0, 1, good, NULL), 0);
    /* Random bytes, with and without a start-of-image marker. */
    tu_rng r = { g_seed ^ 0x7a };
    uint8_t noise[4096];
    for (int k = 0; k < 50; k++) {
        tu_fill_random(&r, noise, sizeof noise);
        if (k & 1)
            noise[0] = 0xFF, noise[1] = 0xD8;
        int rc = sp_image_transform_apply(t, noise, sizeof noise, 0, 777, out, NULL);
        ck_assert_msg(rc == SP_EBADINPUT, "noise %d: %s", k, sp_error_name(rc));
        ck_assert_msg(strstr(sp_image_transform_errmsg(t), "777"), "message does not name the sample: %s",
                      sp_image_transform_errmsg(t));
        ck_assert_msg(strstr(sp_last_error(), "777"), "%s", sp_last_error());
    }
    ck_assert_int_eq(sp_image_transform_apply(t, noise, 0, 0, 1, out, NULL), SP_EBADINPUT);
    /* Truncated: cut right after the scan header, every crop lacks its data; progressive files
     * need every scan, so any cut short of the end fails them. */
    for (int prog = 0; prog < 2; prog++) {
        const it_enc *e = prog ? &jp : &j;
        size_t sos = 0;
        for (size_t i = 2; i + 4 <= e->size;) {
            size_t len = ((size_t)e->data[i + 2] << 8) | e->data[i + 3];
            if (e->data[i + 1] == 0xDA) {
                sos = i + 2 + len;
                break;
            }
            i += 2 + len;
        }
        ck_assert(sos > 0);
        size_t cuts[] = { 3, 20, sos - 1, sos, sos + 16, prog ? e->size - 3 : sos + 40 };
        for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
            uint8_t *cut = malloc(cuts[c]); /* exact size, so a sanitizer sees an overread */
            memcpy(cut, e->data, cuts[c]);
            for (uint64_t s = 0; s < 4; s++) {
                int rc = sp_image_transform_apply(t, cut, cuts[c], 0, s, out, NULL);
                ck_assert_msg(rc == SP_EBADINPUT, "progressive %d cut at %zu of %zu, sample %llu: %s", prog, cuts[c],
                              e->size, (unsigned long long)s, sp_error_name(rc));
            }
            free(cut);
        }
    }
    /* Above max_pixels. */
    uint8_t *big = jg_picture(250, 170, 3);
    it_enc jb = encode(big, 250, 170, (jg_opts){ 80, JG_444, JG_YCC, 0, 0 });
    sp_image_crop c = { .struct_size = sizeof c };
    int rc = sp_image_transform_apply(t, jb.data, jb.size, 0, 4242, out, &c);
    ck_assert_msg(rc == SP_ELIMIT, "%s", sp_error_name(rc));
    ck_assert_msg(strstr(sp_image_transform_errmsg(t), "4242") && strstr(sp_image_transform_errmsg(t), "max_pixels"),
                  "%s", sp_image_transform_errmsg(t));
    /* And the decoder is still sound. */
    ck_assert_int_eq(sp_image_transform_apply(t, j.data, j.size, 0, 1, out, NULL), 0);
    ck_assert(memcmp(out, good, sizeof out) == 0);
    ck_assert_int_eq(sp_image_transform_apply(t, NULL, 0, 0, 1, out, NULL), SP_EBADINPUT);
    ck_assert_int_eq(sp_image_transform_apply(t, j.data, j.size, 0, 1, NULL, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_image_transform_apply(NULL, j.data, j.size, 0, 1, out, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_image_transform_crop(t, 0, 10, 0, 0, &c), SP_EINVAL);
    ck_assert_int_eq(sp_image_transform_crop(t, 10, 10, 0, 0, NULL), SP_EINVAL);
    sp_image_transform_destroy(t);
    sp_image_transform_destroy(NULL);
    free(big);
    free(jb.data);
    free(pic);
    free(j.data);
    free(jp.data);
}
END_TEST

/* A progressive JPEG keeps every coefficient in libjpeg's memory: beyond max_image_memory it is
 * refused with SP_ELIMIT and a message naming the parameter, the baseline file of the same picture
 * still decodes, and so does the progressive one under a larger cap. */
START_TEST(decoder_memory_cap)
{
    const int w = 1200, h = 1000; /* 4:4:4 progressive: 3 x 1200 x 1000 x 2 bytes = 6.9 MB */
    uint8_t *pic = jg_picture(w, h, g_seed ^ 0x3e3);
    it_enc base = encode(pic, w, h, (jg_opts){ 90, JG_444, JG_YCC, 0, 0 });
    it_enc prog = encode(pic, w, h, (jg_opts){ 90, JG_444, JG_YCC, 1, 0 });
    uint8_t out[32 * 32 * 3];
    sp_image_transform *t = it_transform("image_size", "32", "max_image_memory", "4M", NULL);
    ck_assert_int_eq(sp_image_transform_apply(t, base.data, base.size, 0, 5, out, NULL), 0);
    int rc = sp_image_transform_apply(t, prog.data, prog.size, 0, 5, out, NULL);
    ck_assert_msg(rc == SP_ELIMIT, "%s: %s", sp_error_name(rc), sp_image_transform_errmsg(t));
    ck_assert_msg(strstr(sp_image_transform_errmsg(t), "max_image_memory"), "%s", sp_image_transform_errmsg(t));
    ck_assert_int_eq(sp_image_transform_apply(t, base.data, base.size, 0, 5, out, NULL), 0); /* still usable */
    /* the message names a value that decodes it, within a couple of MiB of what it needs */
    const char *set = strstr(sp_image_transform_errmsg(t), "set max_image_memory >= ");
    ck_assert_msg(set, "no value named: %s", sp_image_transform_errmsg(t));
    unsigned mib = 0;
    ck_assert_int_eq(sscanf(set + 24, "%uM", &mib), 1);
    ck_assert_uint_eq(mib, 8); /* 150 x 125 blocks x 3 components x 128 bytes = 6.9 MiB */
    sp_image_transform_destroy(t);
    char v[16];
    snprintf(v, sizeof v, "%uM", mib);
    t = it_transform("image_size", "32", "max_image_memory", v, NULL);
    ck_assert_msg(sp_image_transform_apply(t, prog.data, prog.size, 0, 5, out, NULL) == 0, "at %s: %s", v,
                  sp_image_transform_errmsg(t));
    sp_image_transform_destroy(t);
    t = it_transform("image_size", "32", "max_image_memory", "6M", NULL);
    ck_assert_int_eq(sp_image_transform_apply(t, prog.data, prog.size, 0, 5, out, NULL), SP_ELIMIT);
    sp_image_transform_destroy(t);
    t = it_transform("image_size", "32", "max_image_memory", "16M", NULL);
    ck_assert_int_eq(sp_image_transform_apply(t, prog.data, prog.size, 0, 5, out, NULL), 0);
    sp_image_transform_destroy(t);
    free(base.data);
    free(prog.data);
    free(pic);
}
END_TEST

/* CPU seconds this process has used. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Decodes j with t and returns the CPU seconds it took; the code in *rc. */
static double timed_apply(sp_image_transform *t, const it_enc *j, uint8_t *out, int *rc)
{
    double t0 = cpu_now();
    *rc = sp_image_transform_apply(t, j->data, j->size, 0, 3, out, NULL);
    return cpu_now() - t0;
}

/* sp_image_probe refuses bad for its scans, naming the limit, and takes good, progressive. */
static void probe_scans(const it_enc *bad, const it_enc *good)
{
    char want[64];
    snprintf(want, sizeof want, "more than %d scans", IMG_MAX_SCANS);
    sp_image_info info = { .struct_size = sizeof info };
    int rc = sp_image_probe(bad->data, bad->size, 0, &info);
    ck_assert_msg(rc == SP_ELIMIT && strstr(sp_last_error(), want), "probe: %s: %s", sp_error_name(rc),
                  sp_last_error());
    ck_assert_int_eq(sp_image_probe(good->data, good->size, 0, &info), 0);
    ck_assert_int_eq(info.progressive, 1);
}

/* A progressive JPEG whose last scan comes again 1,000 times: every copy is a pass over the whole
 * 2048x2048 image, yet of a flat picture each is a few bytes. The decode stops at the first copy
 * (libjpeg warns that the progression is inconsistent, and the first warning ends it) instead of
 * running through them all; the file is refused as corrupt, and the decoder stays usable. Its
 * scans are also too many for sp_image_probe, which counts them without decoding. */
START_TEST(repeated_scan_stops_early)
{
    const int w = 2048, h = 2048, copies = 1000;
    uint8_t *pic = jg_flat(w, h, 90, 140, 200);
    it_enc prog = encode(pic, w, h, (jg_opts){ 90, JG_420, JG_YCC, 1, 0, 0 });
    it_enc evil;
    evil.data = jg_repeat_last_scan(prog.data, prog.size, copies, &evil.size);
    ck_assert_ptr_nonnull(evil.data);
    uint8_t out[32 * 32 * 3];
    sp_image_transform *t = it_transform("image_size", "32", NULL);
    int rc;
    double good = timed_apply(t, &prog, out, &rc);
    ck_assert_int_eq(rc, 0);
    double bad = timed_apply(t, &evil, out, &rc);
    fprintf(stderr, "image: %dx%d progressive, %zu bytes: %.3f s of CPU; last scan repeated %d times, %zu bytes: "
            "%.3f s, %s: %s\n", w, h, prog.size, good, copies, evil.size, bad, sp_error_name(rc),
            sp_image_transform_errmsg(t));
    ck_assert_msg(rc == SP_EBADINPUT, "%s: %s", sp_error_name(rc), sp_image_transform_errmsg(t));
    ck_assert_msg(strstr(sp_image_transform_errmsg(t), "corrupt JPEG data"), "%s", sp_image_transform_errmsg(t));
    /* All the passes would take hundreds of times the good file's decode. */
    ck_assert_msg(bad < 0.2 + 4 * good, "refusing it took %.3f s of CPU (the file itself: %.3f s)", bad, good);
    ck_assert_int_eq(timed_apply(t, &prog, out, &rc) >= 0, 1);
    ck_assert_int_eq(rc, 0); /* still usable */
    probe_scans(&evil, &prog);
    sp_image_transform_destroy(t);
    free(evil.data);
    free(prog.data);
    free(pic);
}
END_TEST

/* A progressive JPEG with a scan for every coefficient, component and bit (3 x 64 x 11 = 2,112
 * scans, each a valid refinement, no warning): past IMG_MAX_SCANS the decode stops, with
 * SP_ELIMIT and a message naming the limit; sp_image_probe refuses it too. A gray one of 64 x 7 =
 * 448 scans is inside the limit and decodes. */
START_TEST(scan_limit)
{
    const int w = 256, h = 256;
    uint8_t *pic = jg_picture(w, h, g_seed ^ 0x5ca1);
    it_enc colour = encode(pic, w, h, (jg_opts){ 90, JG_444, JG_YCC, 0, 0, .many_scans = 10 });
    it_enc gray = encode(pic, w, h, (jg_opts){ 90, JG_444, JG_GRAY, 0, 0, .many_scans = 6 });
    uint8_t out[32 * 32 * 3];
    sp_image_transform *t = it_transform("image_size", "32", NULL);
    int rc;
    double cpu = timed_apply(t, &colour, out, &rc);
    fprintf(stderr, "image: %d scans: %.3f s of CPU, %s: %s\n", 3 * 64 * 11, cpu, sp_error_name(rc),
            sp_image_transform_errmsg(t));
    ck_assert_msg(rc == SP_ELIMIT, "%s: %s", sp_error_name(rc), sp_image_transform_errmsg(t));
    char want[64];
    snprintf(want, sizeof want, "more than %d scans", IMG_MAX_SCANS);
    ck_assert_msg(strstr(sp_image_transform_errmsg(t), want), "%s", sp_image_transform_errmsg(t));
    timed_apply(t, &gray, out, &rc);
    ck_assert_msg(rc == 0, "%d scans: %s: %s", 64 * 7, sp_error_name(rc), sp_image_transform_errmsg(t));
    probe_scans(&colour, &gray);
    sp_image_transform_destroy(t);
    free(colour.data);
    free(gray.data);
    free(pic);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(20240611);
    it_set_seed(g_seed);
    const char *v = getenv("SP_TEST_VERBOSE");
    g_verbose = v && *v && *v != '0';
    Suite *s = suite_create("image_transform");
    TCase *tv = tu_tcase(s, "variants", 60);
    tcase_add_test(tv, baseline_444);
    tcase_add_test(tv, baseline_422);
    tcase_add_test(tv, baseline_420);
    tcase_add_test(tv, baseline_440);
    tcase_add_test(tv, baseline_410);
    tcase_add_test(tv, baseline_24);
    tcase_add_test(tv, progressive_410);
    tcase_add_test(tv, progressive);
    tcase_add_test(tv, restart_markers);
    tcase_add_test(tv, arithmetic_coding);
    tcase_add_test(tv, grayscale);
    tcase_add_test(tv, cmyk_adobe);
    tcase_add_test(tv, ycck_adobe);
    tcase_add_test(tv, cmyk_plain);
    tcase_add_test(tv, small_image);
    tcase_add_test(tv, large_image);
    tcase_add_test(tv, flat_colour);
    TCase *tr = tu_tcase(s, "reference", 60);
    tcase_add_test(tr, eval_reference_scale8);
    tcase_add_test(tr, resampler_model);
    TCase *tg = tu_tcase(s, "geometry", 60);
    tcase_add_test(tg, train_crop_properties);
    tcase_add_test(tg, train_crop_determinism);
    tcase_add_test(tg, eval_crop_geometry);
    TCase *td = tu_tcase(s, "dtypes", 60);
    tcase_add_test(td, dtypes_layouts_default_norm);
    tcase_add_test(td, dtypes_layouts_custom_norm);
    TCase *te = tu_tcase(s, "errors", 60);
    tcase_add_test(te, eval_resize_refused);
    tcase_add_test(te, bad_input);
    tcase_add_test(te, decoder_memory_cap);
    tcase_add_test(te, repeated_scan_stops_early);
    tcase_add_test(te, scan_limit);
    return tu_run(s, g_seed);
}
