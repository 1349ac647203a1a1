/* test_loader_image_sizes.c - decode memory from pack-time sizes: a writer records each image field's largest image in the manifest ("image_sizes"), the loader sizes its decoders' buffers and libjpeg's shared whole-image memory by it (WebP keeps max_image_memory), a dataset without it (opened by its shards, as an older one) keeps the old bounds, batches are the same bytes either way, and sizes that lie make the larger image a bad one, not an overrun; max_image_memory left at its default grows to the dataset's largest image, one that was set stays a bound. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jpeg_gen.h"
#include "pw_gen.h"
#include "test_util.h"

#define N 24

static char *g_parent;

/* What sample i of a dataset kind is. */
enum { DS_JPEG_PNG, DS_WEBP, DS_NOT_IMAGE };

/* Sample i: a 64 x 48 baseline JPEG, but a 320 x 200 progressive one at 5 and an interlaced
 * 100 x 90 PNG at 7 (DS_WEBP: a lossy 90 x 60 WebP at 7; DS_NOT_IMAGE: text at 7). */
static int make_sample(int64_t i, void *arg, uint8_t **bytes, size_t *size)
{
    int kind = *(const int *)arg;
    char err[256];
    if (i == 7 && kind == DS_NOT_IMAGE) {
        *bytes = (uint8_t *)strdup("not an image");
        *size = strlen("not an image");
        return 0;
    }
    if (i == 7) {
        int w = kind == DS_WEBP ? 90 : 100, h = kind == DS_WEBP ? 60 : 90;
        uint8_t *pic = jg_picture(w, h, (uint64_t)i);
        pw_png_opts po = { PW_RGB, 8, 1 };
        int rc = kind == DS_WEBP ? pw_webp(pic, w, h, 80, 0, 0, bytes, size, err, sizeof err)
                                 : pw_png(pic, w, h, &po, bytes, size, err, sizeof err);
        free(pic);
        return rc;
    }
    int w = i == 5 ? 320 : 64, h = i == 5 ? 200 : 48;
    uint8_t *pic = jg_picture(w, h, (uint64_t)i);
    jg_opts o = { 90, JG_420, JG_YCC, i == 5, 0, 0, 0 };
    int rc = jg_encode(pic, w, h, &o, bytes, size, err, sizeof err);
    free(pic);
    return rc;
}

static char *make_ds(int kind)
{
    static const char *const tags[] = { "sizes_jpeg", "sizes_webp", "sizes_text" };
    char *dir = tu_dataset_dir(tags[kind], &g_parent);
    char err[512];
    ck_assert_msg(jg_write_dataset(dir, "16K", N, make_sample, &kind, err, sizeof err) == 0, "%s", err);
    return dir;
}

static void free_ds(char *dir)
{
    tu_rmtree(g_parent);
    free(g_parent);
    free(dir);
}

/* The dataset's "image_sizes" as a string ("" when it has none). */
static void sizes_meta(const char *path, char *out, size_t len)
{
    sp_dataset *d;
    ck_assert_msg(sp_dataset_open(path, NULL, &d) == 0, "%s", sp_last_error());
    const void *v;
    size_t n;
    out[0] = '\0';
    if (sp_dataset_meta_get(d, "image_sizes", &v, &n) == 0)
        snprintf(out, len, "%.*s", (int)n, (const char *)v);
    sp_dataset_close(d);
}

static sp_loader *open_loader(const char *path, const char *threads)
{
    sp_params *p = tu_params("threads", threads, "image_size", "32", "batch_size", "8", "shuffle", "false",
                             "host_memory", "512M", NULL);
    sp_loader *l = NULL;
    int rc = sp_loader_open(path, p, &l);
    sp_params_destroy(p);
    ck_assert_msg(rc == 0, "open %s: %s", path, sp_last_error());
    return l;
}

static sp_loader_stats stats_of(sp_loader *l)
{
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    return st;
}

/* One epoch's image bytes, concatenated; closes the loader. */
static uint8_t *epoch_bytes(sp_loader *l, size_t *len)
{
    uint8_t *all;
    int rc = jg_epoch_images(l, 32, &all, len);
    ck_assert_msg(rc == SP_EEPOCH, "%s: %s", sp_error_name(rc), sp_last_error());
    ck_assert_uint_eq(stats_of(l).images_bad, 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    return all;
}

/* The manifest says the largest image of the field: the widest, the tallest, the most pixels and
 * the most whole-image bytes (the progressive JPEG's coefficients bound above the interlaced PNG's
 * rows); a WebP is flagged; a value that is no image (validate_images off) leaves it unknown. */
START_TEST(recorded_at_pack)
{
    char got[256], want[256];
    char *dir = make_ds(DS_JPEG_PNG);
    sizes_meta(dir, got, sizeof got);
    snprintf(want, sizeof want, "image_sizes 1\n0 320 200 64000 %llu 0\n",
             (unsigned long long)(2ull * 3 * (320 + 31) * (200 + 31)));
    ck_assert_str_eq(got, want);
    /* the shards were complete before the sizes were known: only the manifest has them */
    char shards[4200];
    snprintf(shards, sizeof shards, "%s/shard-*.sps", dir);
    sizes_meta(shards, got, sizeof got);
    ck_assert_str_eq(got, "");
    free_ds(dir);
    dir = make_ds(DS_WEBP);
    sizes_meta(dir, got, sizeof got);
    snprintf(want, sizeof want, "image_sizes 1\n0 320 200 64000 %llu 1\n",
             (unsigned long long)(2ull * 3 * (320 + 31) * (200 + 31)));
    ck_assert_str_eq(got, want);
    free_ds(dir);
    dir = make_ds(DS_NOT_IMAGE);
    sizes_meta(dir, got, sizeof got);
    ck_assert_str_eq(got, "");
    free_ds(dir);
}
END_TEST

/* With the sizes, the decoders take a fraction of the memory an older dataset's do (buffers for any
 * image up to 65535 pixels a side, max_image_memory 48 MiB): here the crop buffers for a 320-pixel
 * image and 1 MiB beyond the JPEG's coefficients. Same bytes either way, for 1 and 3 workers. */
START_TEST(decoders_sized_by_dataset)
{
    char *dir = make_ds(DS_JPEG_PNG);
    char shards[4200];
    snprintf(shards, sizeof shards, "%s/shard-*.sps", dir);
    sp_loader *old = open_loader(shards, "1");
    sp_loader *now = open_loader(dir, "1");
    sp_loader_stats so = stats_of(old), sn = stats_of(now);
    fprintf(stderr, "image_sizes: decoder memory %llu bytes with the sizes, %llu without\n",
            (unsigned long long)sn.image_scratch_bytes, (unsigned long long)so.image_scratch_bytes);
    ck_assert_uint_ge(so.image_scratch_bytes, 48ull << 20);
    ck_assert_uint_le(sn.image_scratch_bytes, 8ull << 20);
    ck_assert_uint_lt(sn.host_allocated_bytes + (40ull << 20), so.host_allocated_bytes);
    size_t lo, ln, l3;
    uint8_t *bo = epoch_bytes(old, &lo), *bn = epoch_bytes(now, &ln);
    uint8_t *b3 = epoch_bytes(open_loader(dir, "3"), &l3);
    ck_assert_uint_eq(lo, (size_t)N * 32 * 32 * 3);
    ck_assert_uint_eq(ln, lo);
    ck_assert_uint_eq(l3, lo);
    ck_assert_msg(memcmp(bo, bn, lo) == 0, "batches differ with the sizes");
    ck_assert_msg(memcmp(b3, bn, lo) == 0, "batches differ with 3 workers");
    free(bo);
    free(bn);
    free(b3);
    free_ds(dir);
}
END_TEST

/* A WebP's planes and full-resolution crop come from max_image_memory: a field with one keeps it
 * whole, while its buffers still follow the sizes. */
START_TEST(webp_keeps_allowance)
{
    char *dir = make_ds(DS_WEBP);
    sp_loader *l = open_loader(dir, "1");
    sp_loader_stats st = stats_of(l);
    ck_assert_uint_ge(st.image_scratch_bytes, 48ull << 20);
    ck_assert_uint_le(st.image_scratch_bytes, 56ull << 20);
    size_t len;
    free(epoch_bytes(l, &len));
    ck_assert_uint_eq(len, (size_t)N * 32 * 32 * 3);
    free_ds(dir);
}
END_TEST

/* Sample i of the lying dataset: 64 x 48 baseline JPEGs, but at 5 an 800 x 600 progressive one
 * (its coefficients exceed the allowance the lie gives) and at 9 a 2400 x 1800 baseline one (its
 * rows at 1/8 exceed the buffers). */
/* Sample i as a w x h JPEG of jg_picture(seed i). */
static int jpeg_sample(int64_t i, int w, int h, const jg_opts *o, uint8_t **bytes, size_t *size)
{
    uint8_t *pic = jg_picture(w, h, (uint64_t)i);
    char err[256];
    int rc = jg_encode(pic, w, h, o, bytes, size, err, sizeof err);
    free(pic);
    return rc;
}

static int make_liar(int64_t i, void *arg, uint8_t **bytes, size_t *size)
{
    (void)arg;
    int w = i == 5 ? 800 : i == 9 ? 2400 : 64, h = i == 5 ? 600 : i == 9 ? 1800 : 48;
    return jpeg_sample(i, w, h, &(jg_opts){ 90, JG_444, JG_YCC, i == 5, 0, 0, 0 }, bytes, size);
}

/* Sizes that lie (a writer's own "image_sizes" in every shard, for 64 x 48 images, over an 800 x 600
 * progressive JPEG): the decoders, sized for what it says, find that image too large and it is a bad
 * image (on_error=skip: skipped, its row filled), never a write past their buffers; the others decode. */
START_TEST(lying_sizes_are_bad_images)
{
    char *dir = tu_dataset_dir("sizes_lie", &g_parent);
    const char *lie = "image_sizes 1\n0 64 48 3072 20000 0\n";
    char err[512];
    ck_assert_msg(jg_write_dataset_meta(dir, "16K", N, make_liar, NULL, "image_sizes", lie, err, sizeof err) == 0, "%s",
                  err);
    char shards[4200];
    snprintf(shards, sizeof shards, "%s/shard-*.sps", dir);
    sp_params *p = tu_params("threads", "2", "image_size", "32", "batch_size", "8", "shuffle", "false", "host_memory", "512M",
                  "on_error", "skip", NULL);
    sp_loader *l = NULL;
    ck_assert_msg(sp_loader_open(shards, p, &l) == 0, "%s", sp_last_error());
    sp_params_destroy(p);
    uint8_t *all;
    size_t len;
    int rc = jg_epoch_images(l, 32, &all, &len);
    ck_assert_msg(rc == SP_EEPOCH, "%s: %s", sp_error_name(rc), sp_last_error());
    ck_assert_uint_eq(len, (size_t)N * 32 * 32 * 3);
    sp_loader_stats st = stats_of(l);
    ck_assert_uint_eq(st.images_bad, 2);
    /* bad_note is the latest bad image, and with two workers either liar may be decoded last: sample 9
     * is larger than the decoders' buffers sized by the lie, sample 5's progressive coefficients more
     * than the allowance sized by it */
    bool nine = strstr(st.bad_note, "sample 9") && strstr(st.bad_note, "beyond the decoder's buffers") &&
                strstr(st.bad_note, "image_sizes");
    bool five = strstr(st.bad_note, "sample 5") && strstr(st.bad_note, "max_image_memory");
    ck_assert_msg(nine || five, "%s", st.bad_note);
    fprintf(stderr, "image_sizes: the lie: %s\n", st.bad_note);
    ck_assert_int_eq(sp_loader_close(l), 0);
    free(all);
    /* the manifest has the writer's true sizes, which replaced the caller's entry */
    char got[256];
    sizes_meta(dir, got, sizeof got);
    ck_assert_msg(strstr(got, "0 2400 1800 4320000 "), "%s", got);
    free_ds(dir);
}
END_TEST

/* Sample i of the wallpaper dataset: 64 x 48 baseline JPEGs, and at 1 a 5000 x 4000 progressive one at
 * 4:2:0 (as real 4K and 5K wallpapers are: its coefficients take 57 MiB, beyond max_image_memory's
 * 48 MiB default). */
static int make_wallpaper(int64_t i, void *arg, uint8_t **bytes, size_t *size)
{
    (void)arg;
    int w = i == 1 ? 5000 : 64, h = i == 1 ? 4000 : 48;
    return jpeg_sample(i, w, h, &(jg_opts){ 75, JG_420, JG_YCC, i == 1, 0, 0, 0 }, bytes, size);
}

/* max_image_memory left at its default grows to what the dataset's largest image needs (so every
 * image the pack kept decodes); one that was set, even to the default's value, is kept as a bound (the
 * wallpaper a bad image naming it). */
START_TEST(default_allowance_grows)
{
    char *dir = tu_dataset_dir("sizes_wallpaper", &g_parent);
    char err[512];
    ck_assert_msg(jg_write_dataset(dir, "64K", 4, make_wallpaper, NULL, err, sizeof err) == 0, "%s", err);
    sp_loader *l = open_loader(dir, "1");
    ck_assert_uint_ge(stats_of(l).image_scratch_bytes, 57ull << 20);
    size_t len;
    free(epoch_bytes(l, &len)); /* no bad image */
    ck_assert_uint_eq(len, (size_t)4 * 32 * 32 * 3);
    /* set, to less or to exactly the default's 48M: a bound either way */
    const char *bounds[] = { "40M", "48M" };
    for (int k = 0; k < 2; k++) {
        sp_params *p = tu_params("threads", "1", "image_size", "32", "batch_size", "4", "shuffle", "false",
                                 "host_memory", "512M", "max_image_memory", bounds[k], NULL);
        ck_assert_msg(sp_loader_open(dir, p, &l) == 0, "%s", sp_last_error());
        sp_params_destroy(p);
        uint8_t *all;
        int rc = jg_epoch_images(l, 32, &all, &len);
        ck_assert_msg(rc == SP_ELIMIT && strstr(sp_last_error(), "max_image_memory"), "%s: %s: %s", bounds[k],
                      sp_error_name(rc), sp_last_error());
        sp_loader_close(l);
    }
    free_ds(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loader_image_sizes");
    TCase *tc = tu_tcase(s, "image_sizes", 60);
    tcase_add_test(tc, recorded_at_pack);
    tcase_add_test(tc, decoders_sized_by_dataset);
    tcase_add_test(tc, webp_keeps_allowance);
    tcase_add_test(tc, lying_sizes_are_bad_images);
    tcase_add_test(tc, default_allowance_grows);
    return tu_run(s, tu_seed(0x51e));
}
