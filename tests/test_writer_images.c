/* test_writer_images.c - sp_writer_add refuses image-field bytes the loader could not decode (a PNG, an empty value, a JPEG with a damaged header) with SP_EBADINPUT naming sample and field, the writer going on; validate_images=0 stores them unchecked. */
#include <stdio.h>
#include <stdlib.h>
#include <turbojpeg.h>

#include "test_util.h"

static const unsigned char png[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                     0, 0, 0, 8, 0, 0, 0, 8, 8, 2, 0, 0, 0 };

/* An 8x8 grey JPEG (tjFree). */
static unsigned char *small_jpeg(unsigned long *size)
{
    unsigned char px[64];
    for (int i = 0; i < 64; i++)
        px[i] = (unsigned char)(i * 4);
    tjhandle tj = tjInitCompress();
    unsigned char *out = NULL;
    ck_assert(tj && tjCompress2(tj, px, 8, 0, 8, TJPF_GRAY, &out, size, TJSAMP_GRAY, 90, 0) == 0);
    tjDestroy(tj);
    return out;
}

static sp_schema *image_label(void)
{
    sp_schema *s = sp_schema_create();
    ck_assert(sp_schema_add(s, "image", SP_FIELD_IMAGE, SP_DTYPE_U8, 0, NULL) == 0);
    ck_assert(sp_schema_add(s, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) == 0);
    return s;
}

static int add(sp_writer *w, const void *img, size_t size)
{
    int64_t label = 3;
    sp_value v[2] = { { img, size }, { &label, sizeof label } };
    return sp_writer_add(w, v, 2);
}

static uint64_t samples_in(const char *dir)
{
    sp_dataset *ds;
    ck_assert_msg(sp_dataset_open(dir, NULL, &ds) == 0, "%s", sp_last_error());
    uint64_t n = sp_dataset_num_samples(ds);
    sp_dataset_close(ds);
    return n;
}

START_TEST(refused_by_default)
{
    sp_schema *s = image_label();
    char *parent, *dir = tu_dataset_dir("wimg", &parent);
    sp_writer *w;
    ck_assert_msg(sp_writer_open(dir, s, NULL, &w) == 0, "%s", sp_last_error());
    unsigned long jsize;
    unsigned char *jpeg = small_jpeg(&jsize);
    ck_assert_int_eq(add(w, jpeg, jsize), 0);

    ck_assert_int_eq(add(w, png, sizeof png), SP_EBADINPUT);
    ck_assert_msg(strstr(sp_writer_errmsg(w), dir) && strstr(sp_writer_errmsg(w), "sample 1 field 'image'") &&
                      strstr(sp_writer_errmsg(w), "not a decodable image"),
                  "%s", sp_writer_errmsg(w));
    ck_assert_str_eq(sp_last_error(), sp_writer_errmsg(w));
    ck_assert_int_eq(sp_writer_failed(w), 0);

    ck_assert_int_eq(add(w, "", 0), SP_EBADINPUT);
    ck_assert_msg(strstr(sp_writer_errmsg(w), "empty"), "%s", sp_writer_errmsg(w));
    unsigned char damaged[64];
    memcpy(damaged, jpeg, sizeof damaged); /* SOI and the first segments, cut inside the header */
    damaged[3] = 0x01;                    /* and a segment length that runs wild */
    ck_assert_int_eq(add(w, damaged, 8), SP_EBADINPUT);

    ck_assert_int_eq(add(w, jpeg, jsize), 0); /* the writer went on */
    ck_assert_int_eq(sp_writer_finish(w), 0);
    sp_writer_destroy(w);
    ck_assert_uint_eq(samples_in(dir), 2);
    tjFree(jpeg);
    sp_schema_destroy(s);
    tu_rmtree(parent);
    free(dir);
    free(parent);
}
END_TEST

START_TEST(unchecked_when_off)
{
    sp_schema *s = image_label();
    char *parent, *dir = tu_dataset_dir("wimg-off", &parent);
    sp_params *p = tu_params("validate_images", "0", NULL);
    sp_writer *w;
    ck_assert_msg(sp_writer_open(dir, s, p, &w) == 0, "%s", sp_last_error());
    ck_assert_int_eq(add(w, png, sizeof png), 0);
    ck_assert_int_eq(sp_writer_finish(w), 0);
    sp_writer_destroy(w);
    ck_assert_uint_eq(samples_in(dir), 1);
    sp_params_destroy(p);
    sp_schema_destroy(s);
    tu_rmtree(parent);
    free(dir);
    free(parent);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("writer_images");
    TCase *tc = tu_tcase(s, "validate", 60);
    tcase_add_test(tc, refused_by_default);
    tcase_add_test(tc, unchecked_when_off);
    return tu_run(s, 0);
}
