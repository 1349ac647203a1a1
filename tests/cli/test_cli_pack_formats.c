/* test_cli_pack_formats.c - an ImageFolder of JPEG, PNG and WebP files named oddly (a PNG named
 * .jpg, a WebP named .png, a JPEG named .webp, a CMYK JPEG named .JPEG) packs every one of them,
 * the format found from the bytes; a PNG bomb (65535 x 65535 declared in 60 bytes) and a GIF are
 * skipped with messages naming them; inspect counts the images by format; bench decodes them all
 * with no bad image; preview draws them. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "clit_util.h"
#include "jpeg_gen.h"
#include "pw_gen.h"

static char *tmp;

static void setup(void)
{
    tmp = clit_tmpdir();
    char *in = clit_path("%s/in", tmp);
    clit_mkdir(in);
    free(in);
}
static void teardown(void)
{
    clit_rmrf(tmp);
    free(tmp);
}

static void put(const char *cls, const char *name, const void *data, size_t size)
{
    char *dir = clit_path("%s/in/%s", tmp, cls);
    clit_mkdir(dir);
    char *path = clit_path("%s/%s", dir, name);
    clit_write(path, data, size);
    free(dir);
    free(path);
}

static void put_png(const char *cls, const char *name, int w, int h, int color, int depth, int interlace)
{
    uint8_t *pic = jg_picture(w, h, (uint64_t)w * 31 + (uint64_t)h), *png;
    size_t n;
    char err[256];
    pw_png_opts o = { color, depth, interlace };
    ck_assert_msg(pw_png(pic, w, h, &o, &png, &n, err, sizeof err) == 0, "%s", err);
    put(cls, name, png, n);
    free(png);
    free(pic);
}

static void put_webp(const char *cls, const char *name, int w, int h, int lossless, int alpha)
{
    uint8_t *pic = jg_picture(w, h, (uint64_t)w * 17 + (uint64_t)h), *webp;
    size_t n;
    char err[256];
    ck_assert_msg(pw_webp(pic, w, h, 85, lossless, alpha, &webp, &n, err, sizeof err) == 0, "%s", err);
    put(cls, name, webp, n);
    free(webp);
    free(pic);
}

static void put_jpeg(const char *cls, const char *name, int w, int h, int color)
{
    uint8_t *pic = jg_picture(w, h, (uint64_t)w * 7 + (uint64_t)h), *jpeg;
    size_t n;
    char err[256];
    jg_opts o = { 90, JG_420, color, 0, 0, 0, 0 };
    ck_assert_msg(jg_encode(pic, w, h, &o, &jpeg, &n, err, sizeof err) == 0, "%s", err);
    put(cls, name, jpeg, n);
    free(jpeg);
    free(pic);
}

START_TEST(test_mixed_folder)
{
    put_jpeg("a", "photo.jpg", 120, 90, JG_YCC);
    put_png("a", "really_a_png.jpg", 100, 80, PW_RGB, 8, 0);
    put_webp("a", "really_a_webp.png", 90, 70, 0, 0);
    put_jpeg("a", "really_a_jpeg.webp", 80, 60, JG_YCC);
    put_jpeg("a", "cmyk.JPEG", 64, 64, JG_CMYK);
    put_png("b", "gray16_adam7.png", 70, 50, PW_GA, 16, 1);
    put_png("b", "palette.PNG", 60, 60, PW_PALETTE, 8, 0);
    put_webp("b", "alpha.webp", 66, 44, 1, 1);
    size_t n;
    uint8_t *bomb = pw_png_bomb(65535, 65535, &n);
    put("b", "bomb.png", bomb, n);
    free(bomb);
    put("b", "anim.bmp", "GIF89a\x01\x00\x01\x00\x00\x00\x00;", 14);
    put("b", "notes.txt", "not an image", 12); /* no image extension: not listed at all */

    char *in = clit_path("%s/in", tmp), *out = clit_path("%s/out", tmp);
    clit_result r = clit_run("pack", in, "-o", out, NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_msg(strstr(r.err, "8 samples") && strstr(r.err, "2 skipped"), "%s", r.err);
    ck_assert_msg(strstr(r.err, "bomb.png: not a decodable image: PNG is 65535x65535, above the 33554432-pixel cap"),
                  "%s", r.err);
    ck_assert_msg(strstr(r.err, "anim.bmp: not a decodable image"), "%s", r.err);
    ck_assert_msg(!strstr(r.err, "notes.txt"), "%s", r.err);
    clit_result_free(&r);

    r = clit_run("inspect", out, "--full", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_msg(strstr(r.out, "images of 'image' by format: JPEG 3, PNG 3, WebP 2, undecodable 0"), "%s", r.out);
    clit_result_free(&r);
    r = clit_run("inspect", out, "--full", "--json", NULL);
    ck_assert_msg(r.status == 0 && clit_json_valid(r.out), "%s%s", r.out, r.err);
    ck_assert_msg(strstr(r.out, "\"formats\":{\"JPEG\":3,\"PNG\":3,\"WebP\":2,\"undecodable\":0}"), "%s", r.out);
    clit_result_free(&r);

    /* Every image decoded by the loader: on_error=fail (the default) would end the run at a bad one. */
    r = clit_run("bench", out, "--epochs", "2", "--json", "--threads", "2", "--batch-size", "4", "--image-size",
                 "32", NULL);
    ck_assert_msg(r.status == 0, "bench: %s", r.err);
    ck_assert_uint_eq(clit_json_u64(r.out, "samples"), 16);
    ck_assert_uint_eq(clit_json_u64(r.out, "samples_skipped"), 0);
    clit_result_free(&r);

    char *sheet = clit_path("%s/sheet.jpg", tmp);
    r = clit_run("preview", out, "-o", sheet, "--count", "8", "--image-size", "32", NULL);
    ck_assert_msg(r.status == 0, "preview: %s", r.err);
    ck_assert(clit_exists(sheet));
    clit_result_free(&r);
    free(sheet);
    free(in);
    free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-pack-formats");
    TCase *tc = tcase_create("formats");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_mixed_folder);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
