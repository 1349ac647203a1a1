/* test_cli_pack_formats.c - an ImageFolder of JPEG, PNG and WebP files named oddly (a PNG named
 * .jpg, a WebP named .png, a JPEG named .webp, a CMYK JPEG named .JPEG) packs every one of them,
 * the format found from the bytes; a PNG bomb (65535 x 65535 declared in 60 bytes) and a GIF are
 * skipped with messages naming them; inspect counts the images by format; bench decodes them all
 * with no bad image; preview draws them. --max-side re-encodes the images above it as JPEG at that
 * side and keeps smaller ones byte-identical, --transcode jpeg turns PNG and WebP into JPEG, and
 * the metadata says what was done. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clit_util.h"
#include "shardpack.h"
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

/* Sample i of out (cat --index) into *size bytes (free). */
static unsigned char *cat_sample(const char *out, int i, size_t *size)
{
    char idx[16];
    snprintf(idx, sizeof idx, "%d", i);
    clit_result r = clit_run("cat", out, "--index", idx, NULL);
    ck_assert_msg(r.status == 0, "cat %d: %s", i, r.err);
    unsigned char *p = malloc(r.outlen ? r.outlen : 1);
    memcpy(p, r.out, r.outlen);
    *size = r.outlen;
    clit_result_free(&r);
    return p;
}

static sp_image_info probe(const unsigned char *p, size_t n)
{
    sp_image_info info = { .struct_size = sizeof info };
    ck_assert_msg(sp_image_probe(p, n, 0, &info) == 0, "%s", sp_last_error());
    return info;
}

START_TEST(test_max_side_and_transcode)
{
    /* Sorted (--order source): a/big.jpg, a/big.png, a/small.jpg, a/small.png, a/tall.webp */
    put_jpeg("a", "big.jpg", 1200, 900, JG_YCC);
    put_png("a", "big.png", 700, 700, PW_RGB, 8, 0);
    put_jpeg("a", "small.jpg", 300, 200, JG_YCC);
    put_png("a", "small.png", 200, 100, PW_RGB, 8, 0);
    put_webp("a", "tall.webp", 300, 1000, 0, 0);
    char *in = clit_path("%s/in", tmp), *out = clit_path("%s/out", tmp), *out2 = clit_path("%s/out2", tmp);
    clit_result r = clit_run("pack", in, "-o", out, "--order", "source", "--max-side", "512", "--quality", "85", NULL);
    ck_assert_msg(r.status == 0 && strstr(r.err, "5 samples"), "%s", r.err);
    clit_result_free(&r);
    static const struct {
        int format, w, h;
    } want[5] = { { SP_IMAGE_FORMAT_JPEG, 512, 384 }, { SP_IMAGE_FORMAT_JPEG, 512, 512 }, { SP_IMAGE_FORMAT_JPEG, 300, 200 },
                  { SP_IMAGE_FORMAT_PNG, 200, 100 }, { SP_IMAGE_FORMAT_JPEG, 154, 512 } };
    for (int i = 0; i < 5; i++) {
        size_t n;
        unsigned char *p = cat_sample(out, i, &n);
        sp_image_info info = probe(p, n);
        ck_assert_msg(info.format == want[i].format && info.width == want[i].w && info.height == want[i].h,
                      "sample %d: format %d %dx%d", i, info.format, info.width, info.height);
        if (i == 2 || i == 3) { /* not above 512: the file's own bytes */
            size_t fn;
            char *path = clit_path("%s/a/%s", in, i == 2 ? "small.jpg" : "small.png");
            unsigned char *f = clit_read(path, &fn);
            ck_assert_msg(fn == n && !memcmp(f, p, n), "sample %d is not byte-identical to %s", i, path);
            free(f);
            free(path);
        }
        free(p);
    }
    r = clit_run("inspect", out, NULL);
    ck_assert_msg(strstr(r.out, "image_resize: max_side=512 quality=85 transcode=none: images whose longer side was "
                                "above 512 pixels were resized to 512 and stored as JPEG"), "%s", r.out);
    clit_result_free(&r);
    r = clit_run("bench", out, "--epochs", "1", "--json", "--threads", "1", "--batch-size", "5", "--image-size", "64",
                 NULL);
    ck_assert_msg(r.status == 0 && clit_json_u64(r.out, "samples_skipped") == 0, "bench: %s%s", r.out, r.err);
    clit_result_free(&r);

    r = clit_run("pack", in, "-o", out2, "--transcode", "jpeg", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    clit_result_free(&r);
    for (int i = 0; i < 5; i++) {
        size_t n;
        unsigned char *p = cat_sample(out2, i, &n);
        sp_image_info info = probe(p, n);
        ck_assert_msg(info.format == SP_IMAGE_FORMAT_JPEG, "sample %d: format %d", i, info.format);
        free(p);
    }
    r = clit_run("inspect", out2, NULL);
    ck_assert_msg(strstr(r.out, "JPEG 5, PNG 0, WebP 0") && strstr(r.out, "PNG and WebP images were stored as JPEG"),
                  "%s", r.out);
    clit_result_free(&r);
    free(in);
    free(out);
    free(out2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-pack-formats");
    TCase *tc = tcase_create("formats");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_mixed_folder);
    tcase_add_test(tc, test_max_side_and_transcode);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
