/* test_loader_jpeg_memory.c - libjpeg's whole-image memory (max_image_memory) is one allowance shared by the decode workers, not one each: 8 workers with a 256 MiB allowance fit a 512 MiB budget; progressive images that each fit the allowance, but not two at once, all decode (the workers take turns) to the same bytes as one worker's; one needing more than the whole allowance is a bad sample whose message says so. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jpeg_gen.h"
#include "test_util.h"

#define N 24
#define SIDE 800 /* progressive 4:2:0: about 1.9 MiB of coefficients, 2.9 MiB with the decoder's rest */

static char *g_parent, *g_dir;

/* Sample i: a progressive JPEG of SIDE x SIDE, or 2000 x 2000 (12 MiB of coefficients) for *big. */
static int make_jpeg(int64_t i, void *arg, uint8_t **jpeg, size_t *size)
{
    int side = i == *(const int *)arg ? 2000 : SIDE;
    uint8_t *pic = jg_smooth(side, side, (uint64_t)i);
    char err[256];
    jg_opts o = { 50, JG_420, JG_YCC, 1, 0, 0, 0 };
    int rc = jg_encode(pic, side, side, &o, jpeg, size, err, sizeof err);
    free(pic);
    return rc;
}

/* N progressive JPEGs of SIDE x SIDE (sample `big`, if below N, is 2000 x 2000). */
static void make_ds(const char *tag, int big)
{
    g_dir = tu_dataset_dir(tag, &g_parent);
    char err[512];
    ck_assert_msg(jg_write_dataset(g_dir, "64K", N, make_jpeg, &big, err, sizeof err) == 0, "%s", err);
}

static void free_ds(void)
{
    tu_rmtree(g_parent);
    free(g_parent);
    free(g_dir);
}

static sp_loader *open_loader(const char *threads, const char *max_image_memory, const char *host_memory,
                              const char *on_error)
{
    sp_params *p = tu_params("threads", threads, "max_image_memory", max_image_memory, "host_memory", host_memory,
                             "image_size", "32", "batch_size", "8", "shuffle", "false", "on_error", on_error, NULL);
    sp_loader *l = NULL;
    /* Opened by its shards, as a dataset written before "image_sizes" would be: the allowance is
     * max_image_memory as given (test_loader_image_sizes covers the sizes recorded at pack time). */
    char shards[4200];
    snprintf(shards, sizeof shards, "%s/shard-*.sps", g_dir);
    int rc = sp_loader_open(shards, p, &l);
    sp_params_destroy(p);
    ck_assert_msg(rc == 0, "open (threads %s, max_image_memory %s, host_memory %s): %s", threads, max_image_memory,
                  host_memory, sp_last_error());
    return l;
}

/* Every batch's image bytes, concatenated. */
static uint8_t *epoch_bytes(sp_loader *l, size_t *len)
{
    uint8_t *all;
    int rc = jg_epoch_images(l, 32, &all, len);
    ck_assert_msg(rc == SP_EEPOCH, "%s: %s", sp_error_name(rc), sp_last_error());
    return all;
}

START_TEST(shared_by_workers)
{
    make_ds("jpegmem", -1);
    /* 8 workers, a 256 MiB allowance: 2 GiB if each reserved its own */
    sp_loader *l = open_loader("8", "256M", "512M", "fail");
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_lt(st.image_scratch_bytes, 512ull << 20);
    ck_assert_uint_ge(st.image_scratch_bytes, 256ull << 20);
    ck_assert_int_eq(sp_loader_close(l), 0);

    /* 4 MiB: each image fits, two at once do not; every image decodes, as one worker decodes it */
    size_t n1, n4;
    l = open_loader("1", "4M", "256M", "fail");
    uint8_t *one = epoch_bytes(l, &n1);
    ck_assert_int_eq(sp_loader_close(l), 0);
    l = open_loader("4", "4M", "256M", "fail");
    uint8_t *four = epoch_bytes(l, &n4);
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_eq(st.images_decoded, N);
    ck_assert_uint_eq(st.images_bad, 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_uint_eq(n1, (size_t)N * 32 * 32 * 3);
    ck_assert_uint_eq(n1, n4);
    ck_assert(memcmp(one, four, n1) == 0);
    free(one);
    free(four);
    free_ds();
}
END_TEST

START_TEST(more_than_the_whole_is_a_bad_sample)
{
    make_ds("jpegbig", 5);
    sp_loader *l = open_loader("4", "4M", "256M", "skip");
    size_t n;
    free(epoch_bytes(l, &n));
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_eq(st.images_bad, 1);
    ck_assert_msg(strstr(st.bad_note, "max_image_memory") && strstr(st.bad_note, "shared by the workers"), "%s",
                  st.bad_note);
    ck_assert_int_eq(sp_loader_close(l), 0);
    free_ds();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loader_jpeg_memory");
    TCase *tc = tu_tcase(s, "jpeg_memory", 120);
    tcase_add_test(tc, shared_by_workers);
    tcase_add_test(tc, more_than_the_whole_is_a_bad_sample);
    return tu_run(s, tu_seed(1));
}
