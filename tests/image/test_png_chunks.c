/* test_png_chunks.c - ancillary chunks as real PNGs carry them (Debian's desktop-base plymouth
 * images: a zTXt, iTXt or iCCP chunk that inflates to more bytes than the whole file holds) are
 * skipped over: the image decodes to the same pixels as without them, on the fast path (RGB) and
 * through libspng (palette); a compressed text chunk inflating past 2 MiB (beyond PIL's 1 MiB
 * text limit) is a bad sample naming the limit, never an allocation of its size. */
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

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* A chunk of type whose data is head (hn bytes) then n bytes of text, zlib-compressed. */
typedef struct extra {
    const char *type;
    const char *head;
    size_t hn;
    size_t n;
} extra;

/* png with the chunks of x[0..nx) inserted after its IHDR (8 + 25 bytes in). */
static it_enc with_chunks(const it_enc *png, const extra *x, int nx)
{
    size_t cap = png->size;
    uLongf zcap[8];
    uint8_t *z[8];
    ck_assert_int_le(nx, 8);
    for (int i = 0; i < nx; i++) {
        uint8_t *text = malloc(x[i].n);
        ck_assert_ptr_nonnull(text);
        for (size_t k = 0; k < x[i].n; k++) /* XML-like, as an XMP packet or an ICC profile's tags */
            text[k] = (uint8_t)("<rdf:Description about=''/>\n"[k % 28] + (k / 4096 % 3));
        zcap[i] = compressBound((uLong)x[i].n);
        z[i] = malloc(zcap[i]);
        ck_assert_ptr_nonnull(z[i]);
        ck_assert_int_eq(compress2(z[i], &zcap[i], text, (uLong)x[i].n, 9), Z_OK);
        free(text);
        cap += 12 + x[i].hn + zcap[i];
    }
    it_enc e = { malloc(cap), 0 };
    ck_assert_ptr_nonnull(e.data);
    memcpy(e.data, png->data, 33);
    e.size = 33;
    for (int i = 0; i < nx; i++) {
        uint8_t *c = e.data + e.size;
        size_t len = x[i].hn + zcap[i];
        put32(c, (uint32_t)len);
        memcpy(c + 4, x[i].type, 4);
        memcpy(c + 8, x[i].head, x[i].hn);
        memcpy(c + 8 + x[i].hn, z[i], zcap[i]);
        put32(c + 8 + len, (uint32_t)crc32(0, c + 4, (uInt)(len + 4)));
        e.size += 12 + len;
        free(z[i]);
    }
    memcpy(e.data + e.size, png->data + 33, png->size - 33);
    e.size += png->size - 33;
    return e;
}

/* pic as an 8-bit PNG of colour type color (PW_*), not interlaced. */
static it_enc plain_png(const uint8_t *pic, int w, int h, int color)
{
    it_enc e;
    char err[256];
    pw_png_opts o = { color, 8, 0 };
    ck_assert_msg(pw_png(pic, w, h, &o, &e.data, &e.size, err, sizeof err) == 0, "%s", err);
    return e;
}

/* The chunks of the plymouth images: a zTXt (keyword, method 0), an iTXt with its compression flag
 * set (keyword, flag 1, method 0, empty language and translated keyword) and an iCCP (name, method
 * 0), each inflating to many times the file's size. */
static const extra real_chunks[] = {
    { "zTXt", "Raw profile type exif\0\0", 23, 60000 },
    { "iTXt", "XML:com.adobe.xmp\0\1\0\0\0", 22, 40000 },
    { "iCCP", "ICC profile\0\0", 13, 30000 },
};

START_TEST(text_and_icc_larger_than_the_file)
{
    const int w = 96, h = 64;
    uint8_t *pic = jg_picture(w, h, g_seed);
    static const int colors[] = { PW_RGB, PW_PALETTE, PW_GA };
    sp_image_transform *t = it_transform("image_size", "48", NULL);
    size_t bytes = sp_image_transform_bytes(t);
    uint8_t *a = malloc(bytes), *b = malloc(bytes);
    ck_assert(a && b);
    for (size_t c = 0; c < sizeof colors / sizeof *colors; c++) {
        it_enc plain = plain_png(pic, w, h, colors[c]);
        /* Each chunk alone, then all three (an iCCP and a zTXt together, as in moonlight). */
        for (int k = 0; k <= 3; k++) {
            it_enc e = with_chunks(&plain, k < 3 ? &real_chunks[k] : real_chunks, k < 3 ? 1 : 3);
            ck_assert_uint_lt(e.size, 30000); /* every chunk inflates past the whole file */
            for (uint64_t s = 0; s < 4; s++) {
                ck_assert_int_eq(sp_image_transform_apply(t, plain.data, plain.size, 0, s, a, NULL), 0);
                int rc = sp_image_transform_apply(t, e.data, e.size, 0, s, b, NULL);
                ck_assert_msg(rc == 0, "colour %d, chunk %s: %s", colors[c], k < 3 ? real_chunks[k].type : "all",
                              sp_last_error());
                ck_assert_msg(!memcmp(a, b, bytes), "colour %d chunk %d: pixels differ", colors[c], k);
            }
            free(e.data);
        }
        free(plain.data);
    }
    free(a);
    free(b);
    sp_image_transform_destroy(t);
    free(pic);
}
END_TEST

/* A zTXt inflating to 3 MiB (about 10 KB in the file): a bad sample naming the chunk limit. */
START_TEST(text_bomb_refused)
{
    const int w = 40, h = 30;
    uint8_t *pic = jg_picture(w, h, g_seed ^ 1);
    it_enc plain = plain_png(pic, w, h, PW_RGB);
    extra bomb = { "zTXt", "Comment\0\0", 9, 3u << 20 };
    it_enc e = with_chunks(&plain, &bomb, 1);
    sp_image_transform *t = it_transform("image_size", "32", NULL);
    uint8_t out[32 * 32 * 3];
    ck_assert_int_eq(sp_image_transform_apply(t, e.data, e.size, 0, 0, out, NULL), SP_EBADINPUT);
    ck_assert_msg(strstr(sp_last_error(), "limit"), "%s", sp_last_error());
    sp_image_transform_destroy(t);
    free(e.data);
    free(plain.data);
    free(pic);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(20261206);
    it_set_seed(g_seed);
    Suite *s = suite_create("png_chunks");
    TCase *tc = tu_tcase(s, "chunks", 60);
    tcase_add_test(tc, text_and_icc_larger_than_the_file);
    tcase_add_test(tc, text_bomb_refused);
    return tu_run(s, g_seed);
}
