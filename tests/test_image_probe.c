/* test_image_probe.c - sp_image_probe on JPEGs made in-process (4:2:0, 4:4:4, gray, progressive, samplings TurboJPEG has no name for), on non-JPEG bytes, truncated or damaged headers and a pixel cap. */
#include <stdio.h>
#include <stdlib.h>
#include <turbojpeg.h>

#include "image/jpeg_gen.h"
#include "test_util.h"

typedef struct jpeg {
    unsigned char *data;
    unsigned long size;
} jpeg;

static jpeg make_jpeg(int w, int h, int samp, int flags)
{
    int gray = samp == TJSAMP_GRAY;
    int pf = gray ? TJPF_GRAY : TJPF_RGB;
    size_t n = (size_t)w * (size_t)h * (gray ? 1 : 3);
    unsigned char *px = malloc(n);
    ck_assert_ptr_nonnull(px);
    for (size_t i = 0; i < n; i++)
        px[i] = (unsigned char)(i * 7 + i / 97);
    tjhandle tj = tjInitCompress();
    ck_assert_ptr_nonnull(tj);
    jpeg j = { NULL, 0 };
    int rc = tjCompress2(tj, px, w, 0, h, pf, &j.data, &j.size, samp, 85, flags);
    ck_assert_msg(rc == 0, "tjCompress2: %s", tjGetErrorStr2(tj));
    tjDestroy(tj);
    free(px);
    return j;
}

/* Offset just past the SOS segment: the whole header a probe may need. */
static size_t header_end(const jpeg *j)
{
    for (size_t i = 2; i + 4 <= j->size;) {
        ck_assert(j->data[i] == 0xFF);
        unsigned m = j->data[i + 1];
        size_t len = ((size_t)j->data[i + 2] << 8) | j->data[i + 3];
        if (m == 0xDA)
            return i + 2 + len;
        i += 2 + len;
    }
    ck_abort_msg("no SOS marker");
    return 0;
}

START_TEST(subsamplings)
{
    struct {
        int samp, flags, comps, progressive;
    } cases[] = {
        { TJSAMP_420, 0, 3, 0 },
        { TJSAMP_444, 0, 3, 0 },
        { TJSAMP_422, 0, 3, 0 },
        { TJSAMP_GRAY, 0, 1, 0 },
        { TJSAMP_420, TJFLAG_PROGRESSIVE, 3, 1 },
        { TJSAMP_GRAY, TJFLAG_PROGRESSIVE, 1, 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        jpeg j = make_jpeg(37, 23, cases[i].samp, cases[i].flags);
        sp_image_info info = { .struct_size = sizeof info };
        memset(&info, 0xAA, sizeof info);
        info.struct_size = sizeof info;
        int rc = sp_image_probe(j.data, j.size, 0, &info);
        ck_assert_msg(rc == 0, "case %zu: %s", i, sp_last_error());
        ck_assert_int_eq(info.width, 37);
        ck_assert_int_eq(info.height, 23);
        ck_assert_int_eq(info.components, cases[i].comps);
        ck_assert_int_eq(info.subsampling, cases[i].samp);
        ck_assert_int_eq(info.progressive, cases[i].progressive);
        tjFree(j.data);
    }
}
END_TEST

/* Luma sampled 4x2, 2x4 or 1x4 against 1x1 chroma: TurboJPEG's header query cannot name these
 * and fails, but libjpeg (and so the loader) decodes them. The probe accepts them with subsampling
 * -1 ("unknown"), the transform decodes them, and the same files with a damaged or cut header are
 * still refused. */
START_TEST(unnamed_samplings)
{
    const int samps[] = { JG_410, JG_24, JG_14 };
    uint8_t *rgb = jg_picture(61, 45, 3);
    ck_assert_ptr_nonnull(rgb);
    sp_params *p = tu_params("image_size", "16", NULL);
    sp_image_transform *t;
    ck_assert_msg(sp_image_transform_create(p, &t) == 0, "%s", sp_last_error());
    void *out = malloc(sp_image_transform_bytes(t));
    for (size_t k = 0; k < sizeof samps / sizeof samps[0]; k++) {
        for (int prog = 0; prog < 2; prog++) {
            jpeg j;
            size_t size;
            char err[256];
            jg_opts o = { .quality = 90, .samp = samps[k], .color = JG_YCC, .progressive = prog };
            ck_assert_msg(jg_encode(rgb, 61, 45, &o, &j.data, &size, err, sizeof err) == 0, "%s", err);
            j.size = size;
            sp_image_info info = { .struct_size = sizeof info };
            int rc = sp_image_probe(j.data, size, 0, &info);
            ck_assert_msg(rc == 0, "sampling %d, progressive %d: %s: %s", samps[k], prog, sp_error_name(rc),
                          sp_last_error());
            ck_assert_int_eq(info.width, 61);
            ck_assert_int_eq(info.height, 45);
            ck_assert_int_eq(info.components, 3);
            ck_assert_int_eq(info.subsampling, -1);
            ck_assert_int_eq(info.progressive, prog);
            ck_assert_int_eq(sp_image_probe(j.data, size, 61 * 45 - 1, &info), SP_ELIMIT);
            for (uint64_t sample = 0; sample < 4; sample++)
                ck_assert_msg(sp_image_transform_apply(t, j.data, size, 0, sample, out, NULL) == 0, "%s",
                              sp_last_error());
            /* Cut inside the header: refused. */
            size_t end = header_end(&j);
            for (size_t len = 4; len < end; len++) {
                rc = sp_image_probe(j.data, len, 0, &info);
                ck_assert_msg(rc == SP_EBADINPUT, "cut to %zu of %zu: %s", len, end, sp_error_name(rc));
            }
            /* A sampling factor of 0 in the frame header: damaged, whoever parses it. */
            size_t i = 2;
            while (!(j.data[i + 1] >= 0xC0 && j.data[i + 1] <= 0xC2))
                i += 2 + (((size_t)j.data[i + 2] << 8) | j.data[i + 3]);
            j.data[i + 11] = 0x00; /* SOF: marker, length, precision, height, width, count, then id, factors */
            rc = sp_image_probe(j.data, size, 0, &info);
            ck_assert_msg(rc == SP_EBADINPUT, "zero sampling factor: %s", sp_error_name(rc));
            ck_assert_msg(strstr(sp_last_error(), "damaged JPEG header"), "%s", sp_last_error());
            free(j.data);
        }
    }
    free(out);
    sp_image_transform_destroy(t);
    sp_params_destroy(p);
    free(rgb);
}
END_TEST

START_TEST(pixel_cap)
{
    jpeg j = make_jpeg(64, 48, TJSAMP_420, 0);
    sp_image_info info = { .struct_size = sizeof info };
    ck_assert_int_eq(sp_image_probe(j.data, j.size, 64 * 48, &info), 0);
    ck_assert_int_eq(sp_image_probe(j.data, j.size, 0, &info), 0);
    ck_assert_int_eq(sp_image_probe(j.data, j.size, UINT64_MAX, &info), 0);
    ck_assert_int_eq(sp_image_probe(j.data, j.size, 64 * 48 - 1, &info), SP_ELIMIT);
    ck_assert_msg(strstr(sp_last_error(), "64x48"), "%s", sp_last_error());
    ck_assert_int_eq(sp_image_probe(j.data, j.size, 1, &info), SP_ELIMIT);
    tjFree(j.data);
}
END_TEST

START_TEST(not_jpeg)
{
    sp_image_info info = { .struct_size = sizeof info };
    static const unsigned char png[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13 };
    ck_assert_int_eq(sp_image_probe(png, sizeof png, 0, &info), SP_EBADINPUT);
    ck_assert_int_eq(sp_image_probe("", 0, 0, &info), SP_EBADINPUT);
    static const unsigned char soi_only[] = { 0xFF, 0xD8 };
    ck_assert_int_eq(sp_image_probe(soi_only, 2, 0, &info), SP_EBADINPUT);
    static const unsigned char soi_eoi[] = { 0xFF, 0xD8, 0xFF, 0xD9 };
    ck_assert_int_eq(sp_image_probe(soi_eoi, 4, 0, &info), SP_EBADINPUT);
    static const unsigned char soi_junk[] = { 0xFF, 0xD8, 0x00, 0x00, 0x12, 0x34, 0x56, 0x78 };
    ck_assert_int_eq(sp_image_probe(soi_junk, sizeof soi_junk, 0, &info), SP_EBADINPUT);
    /* a start and an APP0 marker whose length runs past the end: why, not "no pixels (0x0)" */
    static const unsigned char app0_junk[] = "\xFF\xD8\xFF\xE0garbagegarbage";
    ck_assert_int_eq(sp_image_probe(app0_junk, sizeof app0_junk - 1, 0, &info), SP_EBADINPUT);
    ck_assert_msg(strstr(sp_last_error(), "damaged JPEG header: ") && !strstr(sp_last_error(), "no pixels"), "%s",
                  sp_last_error());
    tu_rng r = { 42 };
    unsigned char noise[512];
    for (int k = 0; k < 200; k++) {
        tu_fill_random(&r, noise, sizeof noise);
        noise[0] = 0xFF;
        noise[1] = 0xD8; /* a JPEG start, then noise */
        int rc = sp_image_probe(noise, sizeof noise, 0, &info);
        ck_assert_msg(rc == SP_EBADINPUT || rc == 0, "noise %d: %s", k, sp_error_name(rc));
    }
    ck_assert_int_eq(sp_image_probe(NULL, 10, 0, &info), SP_EINVAL);
    ck_assert_int_eq(sp_image_probe(png, sizeof png, 0, NULL), SP_EINVAL);
}
END_TEST

/* Every cut shorter than the header fails; from the end of the header on, the probe succeeds. */
START_TEST(truncated_headers)
{
    const int samps[] = { TJSAMP_420, TJSAMP_GRAY };
    for (int s = 0; s < 2; s++) {
        for (int prog = 0; prog < 2; prog++) {
            jpeg j = make_jpeg(40, 30, samps[s], prog ? TJFLAG_PROGRESSIVE : 0);
            size_t end = header_end(&j);
            sp_image_info info = { .struct_size = sizeof info };
            for (size_t len = 0; len < end; len++) {
                unsigned char *copy = malloc(len ? len : 1); /* exact size, so ASan sees any overread */
                memcpy(copy, j.data, len);
                int rc = sp_image_probe(copy, len, 0, &info);
                ck_assert_msg(rc == SP_EBADINPUT, "cut to %zu of %zu header bytes: %s", len, end, sp_error_name(rc));
                ck_assert_msg(!strstr(sp_last_error(), "no pixels"), "cut to %zu: %s", len, sp_last_error());
                free(copy);
            }
            for (size_t len = end; len <= j.size; len += (len < end + 16 ? 1 : 97)) {
                unsigned char *copy = malloc(len);
                memcpy(copy, j.data, len);
                int rc = sp_image_probe(copy, len, 0, &info);
                ck_assert_msg(rc == 0, "cut to %zu (header %zu): %s", len, end, sp_last_error());
                ck_assert_int_eq(info.progressive, prog);
                free(copy);
            }
            tjFree(j.data);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("image_probe");
    TCase *tc = tu_tcase(s, "probe", 30);
    tcase_add_test(tc, subsamplings);
    tcase_add_test(tc, unnamed_samplings);
    tcase_add_test(tc, pixel_cap);
    tcase_add_test(tc, not_jpeg);
    tcase_add_test(tc, truncated_headers);
    return tu_run(s, 0);
}
