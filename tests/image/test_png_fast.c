/* test_png_fast.c - the PNG fast path (8-bit RGB and RGBA, not interlaced: zlib and the stage's own
 * unfiltering) gives libspng's pixels: PNGs made here by hand with every filter type, odd widths,
 * reduced and enlarged crops, split and empty IDAT chunks, against the same picture as an Adam7
 * PNG (which libspng decodes), bit for bit; it stops after the crop's last row (rows below it may
 * hold a bad filter type, or be missing); a bad filter type or a stream that ends within the crop
 * is a bad sample; an IDAT's CRC is not checked, a CRC error in a chunk before it still is. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "it_util.h"
#include "jpeg_gen.h"
#include "pw_gen.h"
#include "test_util.h"

static uint64_t g_seed;

/* How a PNG is made by hand. */
typedef struct hand {
    int bpp;        /* 3: RGB, 4: RGBA (alpha a pattern) */
    int filter;     /* every row's filter type 0..4, or -1: row y takes y % 5 */
    int bad_from;   /* rows from this one on carry filter type 9 (-1: none) */
    int rows;       /* rows in the zlib stream (-1: all) */
    size_t chunk;   /* IDAT chunk size (0: one chunk); a zero-length IDAT follows the first */
    bool text;      /* a tEXt chunk before the image data */
    int bad_crc;    /* 1: the first IDAT's CRC is wrong, 2: the tEXt chunk's */
} hand;

static int paeth(int a, int b, int c)
{
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* Appends a chunk to out (at *n), its CRC spoiled when bad. */
static void chunk(uint8_t *out, size_t *n, const char *type, const uint8_t *data, size_t len, bool bad)
{
    put32(out + *n, (uint32_t)len);
    memcpy(out + *n + 4, type, 4);
    if (len)
        memcpy(out + *n + 8, data, len);
    uint32_t crc = (uint32_t)crc32(0, out + *n + 4, (uInt)(len + 4));
    put32(out + *n + 8 + len, bad ? crc ^ 1 : crc);
    *n += 12 + len;
}

static it_enc hand_png(const uint8_t *rgb, int w, int h, const hand *o)
{
    const int bpp = o->bpp;
    const size_t rb = 1 + (size_t)w * bpp;
    uint8_t *px = malloc((size_t)w * h * bpp), *raw = malloc(rb * h);
    ck_assert(px && raw);
    for (size_t i = 0; i < (size_t)w * h; i++) {
        memcpy(px + i * bpp, rgb + 3 * i, 3);
        if (bpp == 4)
            px[i * 4 + 3] = (uint8_t)(i * 7 % 251);
    }
    for (int y = 0; y < h; y++) {
        const uint8_t *x = px + (size_t)y * w * bpp, *up = y ? x - (size_t)w * bpp : NULL;
        uint8_t *f = raw + (size_t)y * rb;
        int type = o->filter >= 0 ? o->filter : y % 5;
        f[0] = (uint8_t)(o->bad_from >= 0 && y >= o->bad_from ? 9 : type);
        for (int i = 0; i < w * bpp; i++) {
            int a = i >= bpp ? x[i - bpp] : 0, b = up ? up[i] : 0, c = up && i >= bpp ? up[i - bpp] : 0;
            int pred = type == 1 ? a : type == 2 ? b : type == 3 ? (a + b) >> 1 : type == 4 ? paeth(a, b, c) : 0;
            f[1 + i] = (uint8_t)(x[i] - pred);
        }
    }
    size_t rows = o->rows >= 0 ? (size_t)o->rows : (size_t)h;
    uLongf zn = compressBound((uLong)(rb * rows));
    uint8_t *z = malloc(zn);
    ck_assert_ptr_nonnull(z);
    ck_assert_int_eq(compress2(z, &zn, raw, (uLong)(rb * rows), 6), Z_OK);
    size_t step = o->chunk ? o->chunk : zn;
    it_enc e = { malloc(zn + 16 * (zn / step + 8) + 256), 0 };
    ck_assert_ptr_nonnull(e.data);
    memcpy(e.data, "\x89PNG\r\n\x1a\n", 8);
    e.size = 8;
    uint8_t ihdr[13] = { 0, 0, 0, 0, 0, 0, 0, 0, 8, (uint8_t)(bpp == 3 ? 2 : 6), 0, 0, 0 };
    put32(ihdr, (uint32_t)w);
    put32(ihdr + 4, (uint32_t)h);
    chunk(e.data, &e.size, "IHDR", ihdr, 13, false);
    if (o->text)
        chunk(e.data, &e.size, "tEXt", (const uint8_t *)"Comment\0made by hand", 20, o->bad_crc == 2);
    for (size_t at = 0; at < zn; at += step) {
        chunk(e.data, &e.size, "IDAT", z + at, zn - at < step ? zn - at : step, at == 0 && o->bad_crc == 1);
        if (at == 0 && o->chunk)
            chunk(e.data, &e.size, "IDAT", NULL, 0, false);
    }
    chunk(e.data, &e.size, "IEND", NULL, 0, false);
    free(z);
    free(raw);
    free(px);
    return e;
}

/* The same picture as libspng decodes it: an Adam7 PNG (the fast path never takes one). */
static it_enc adam7(const uint8_t *rgb, int w, int h)
{
    it_enc e;
    char err[256];
    pw_png_opts po = { PW_RGB, 8, 1 };
    ck_assert_msg(pw_png(rgb, w, h, &po, &e.data, &e.size, err, sizeof err) == 0, "%s", err);
    return e;
}

/* Samples 0 .. n-1 of epoch 0 through t from a and b give the same bytes. */
static void same(sp_image_transform *t, const it_enc *a, const it_enc *b, int n, const char *what)
{
    size_t bytes = sp_image_transform_bytes(t);
    uint8_t *oa = malloc(bytes), *ob = malloc(bytes);
    ck_assert(oa && ob);
    for (int s = 0; s < n; s++) {
        ck_assert_msg(sp_image_transform_apply(t, a->data, a->size, 0, (uint64_t)s, oa, NULL) == 0, "%s: %s", what,
                      sp_last_error());
        ck_assert_msg(sp_image_transform_apply(t, b->data, b->size, 0, (uint64_t)s, ob, NULL) == 0, "%s: %s", what,
                      sp_last_error());
        ck_assert_msg(!memcmp(oa, ob, bytes), "%s: sample %d differs from libspng's decode", what, s);
    }
    free(oa);
    free(ob);
}

/* Every filter type, RGB and RGBA, odd and even widths, crops reduced (k up to 8) and enlarged. */
START_TEST(filters_match_libspng)
{
    static const int dims[][2] = { { 203, 150 }, { 640, 481 }, { 37, 23 } };
    for (size_t d = 0; d < sizeof dims / sizeof *dims; d++) {
        int w = dims[d][0], h = dims[d][1];
        uint8_t *pic = jg_picture(w, h, g_seed + d);
        it_enc ref = adam7(pic, w, h);
        sp_image_transform *small = it_transform("image_size", "32", NULL);
        sp_image_transform *big = it_transform("image_size", "96", NULL);
        sp_image_transform *eval = it_transform("image_size", "48", "transform", "eval", "image_dtype", "float32",
                                                "image_layout", "nchw", NULL);
        for (int bpp = 3; bpp <= 4; bpp++)
            for (int f = -1; f <= 4; f++) {
                it_enc e = hand_png(pic, w, h, &(hand){ bpp, f, -1, -1, 0, false, 0 });
                char what[96];
                snprintf(what, sizeof what, "%dx%d bpp %d filter %d", w, h, bpp, f);
                same(small, &e, &ref, 12, what);
                same(big, &e, &ref, 6, what);
                same(eval, &e, &ref, 1, what);
                free(e.data);
            }
        sp_image_transform_destroy(small);
        sp_image_transform_destroy(big);
        sp_image_transform_destroy(eval);
        free(ref.data);
        free(pic);
    }
}
END_TEST

/* IDAT chunks of 1 and 997 bytes with an empty one among them; a tEXt chunk before them. */
START_TEST(split_chunks)
{
    const int w = 150, h = 100;
    uint8_t *pic = jg_picture(w, h, g_seed ^ 0x5);
    it_enc ref = adam7(pic, w, h);
    sp_image_transform *t = it_transform("image_size", "64", NULL);
    size_t sizes[] = { 1, 997 };
    for (int i = 0; i < 2; i++) {
        it_enc e = hand_png(pic, w, h, &(hand){ 3 + i, -1, -1, -1, sizes[i], true, 0 });
        same(t, &e, &ref, 8, "split IDATs");
        free(e.data);
    }
    sp_image_transform_destroy(t);
    free(ref.data);
    free(pic);
}
END_TEST

/* The crop of sample s: its last source row. */
static double crop_bottom(sp_image_transform *t, int w, int h, int s)
{
    sp_image_crop c = { sizeof c };
    ck_assert_int_eq(sp_image_transform_crop(t, w, h, 0, (uint64_t)s, &c), 0);
    return c.y1;
}

/* Rows below the crop are never read: a bad filter type there, a stream that stops there, or a
 * file cut there (inside its last IDAT, whose length runs past the end) is not seen; within the
 * crop each is a bad sample naming what is wrong. */
START_TEST(stops_after_the_crop)
{
    const int w = 200, h = 300, cut = 200, slack = 24;
    uint8_t *pic = jg_picture(w, h, g_seed ^ 0x77);
    it_enc good = hand_png(pic, w, h, &(hand){ 3, -1, -1, -1, 0, false, 0 });
    it_enc badrows = hand_png(pic, w, h, &(hand){ 3, -1, cut, -1, 0, false, 0 });
    it_enc shortz = hand_png(pic, w, h, &(hand){ 3, -1, -1, cut, 0, false, 0 });
    /* the stream of the first cut rows, less its last 10 bytes (Adler-32 and the last codes), CRC
     * and IEND: the IDAT says it is 10 bytes longer than what is left of the file */
    it_enc cutfile = { shortz.data, shortz.size - 12 - 4 - 10 };
    sp_image_transform *t = it_transform("image_size", "64", NULL);
    uint8_t a[64 * 64 * 3], b[64 * 64 * 3];
    int above = 0, below = 0;
    for (int s = 0; s < 64; s++) {
        double y1 = crop_bottom(t, w, h, s);
        ck_assert_int_eq(sp_image_transform_apply(t, good.data, good.size, 0, (uint64_t)s, a, NULL), 0);
        const it_enc *cases[] = { &badrows, &shortz, &cutfile };
        const char *want[] = { "filter type 9", "image data ends at row", "image data ends at row" };
        for (int i = 0; i < 3; i++) {
            int rc = sp_image_transform_apply(t, cases[i]->data, cases[i]->size, 0, (uint64_t)s, b, NULL);
            if (y1 + slack <= cut) {
                ck_assert_msg(rc == 0, "sample %d (crop ends at row %.1f): %s", s, y1, sp_last_error());
                ck_assert_msg(!memcmp(a, b, sizeof a), "sample %d differs", s);
                above += i == 0;
            } else if (y1 >= cut) {
                ck_assert_int_eq(rc, SP_EBADINPUT);
                ck_assert_msg(strstr(sp_last_error(), want[i]), "sample %d: %s", s, sp_last_error());
                below += i == 0;
            }
        }
    }
    ck_assert_msg(above >= 4 && below >= 4, "crops above the cut %d, below %d: draw more samples", above, below);
    sp_image_transform_destroy(t);
    free(good.data);
    free(badrows.data);
    free(shortz.data);
    free(pic);
}
END_TEST

/* An IDAT's CRC is not checked on the fast path (the shard block's checksum covers the bytes); a
 * chunk before the image data is still checked by libspng. */
START_TEST(crc_checks)
{
    const int w = 120, h = 90;
    uint8_t *pic = jg_picture(w, h, g_seed ^ 0xC);
    it_enc good = hand_png(pic, w, h, &(hand){ 4, -1, -1, -1, 0, true, 0 });
    it_enc idat = hand_png(pic, w, h, &(hand){ 4, -1, -1, -1, 0, true, 1 });
    it_enc text = hand_png(pic, w, h, &(hand){ 4, -1, -1, -1, 0, true, 2 });
    sp_image_transform *t = it_transform("image_size", "48", NULL);
    same(t, &idat, &good, 3, "IDAT with a wrong CRC");
    uint8_t out[48 * 48 * 3];
    ck_assert_int_eq(sp_image_transform_apply(t, text.data, text.size, 0, 0, out, NULL), SP_EBADINPUT);
    ck_assert_msg(strstr(sp_last_error(), "corrupt PNG"), "%s", sp_last_error());
    sp_image_transform_destroy(t);
    free(good.data);
    free(idat.data);
    free(text.data);
    free(pic);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(20261206);
    it_set_seed(g_seed);
    Suite *s = suite_create("png_fast");
    TCase *tc = tu_tcase(s, "fast", 120);
    tcase_add_test(tc, filters_match_libspng);
    tcase_add_test(tc, split_chunks);
    tcase_add_test(tc, stops_after_the_crop);
    tcase_add_test(tc, crc_checks);
    return tu_run(s, g_seed);
}
