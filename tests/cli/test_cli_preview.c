/* test_cli_preview.c - `shardpack preview`: the contact sheet's size, determinism, tiles equal to
 * what sp_image_transform_apply gives, samples spread over the dataset, bad tiles, refused
 * datasets and outputs, usage errors. */
#include <check.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

#include "clit_util.h"
#include "shardpack.h"

/* 40 samples in three classes, in the order pack gives them: "Cat" 0..13, "ant" 14..27,
 * "bee_hive" 28..39 (byte order of the class names). Sample s is clit_jpeg(seed s). */
#define NSAMPLES 40
static const char *const classes[] = {"Cat", "ant", "bee_hive"};
static const int class_first[] = {0, 14, 28, NSAMPLES};

/* The layout the command draws at --image-size 64 with a label field: cells 64 wide (the tile
 * fills it), a caption of 2 + 2 * 9 pixels, 4 pixels between and around cells. */
#define S 64
#define GAP 4
#define CAPTION_H 20

static char *tmp, *ds;
static unsigned char *jpegs[NSAMPLES];
static size_t jpeg_sizes[NSAMPLES];

static void setup(void)
{
    tmp = clit_tmpdir();
    char *in = clit_path("%s/in", tmp);
    clit_mkdir(in);
    for (int c = 0; c < 3; c++) {
        char *dir = clit_path("%s/%s", in, classes[c]);
        clit_mkdir(dir);
        for (int s = class_first[c]; s < class_first[c + 1]; s++) {
            /* Sizes and aspect ratios vary, so crops differ in shape. */
            jpegs[s] = clit_jpeg(48 + (s % 5) * 16, 40 + (s % 3) * 12, (unsigned)s, &jpeg_sizes[s]);
            char *file = clit_path("%s/img%02d.jpg", dir, s);
            clit_write(file, jpegs[s], jpeg_sizes[s]);
            free(file);
        }
        free(dir);
    }
    ds = clit_path("%s/ds", tmp);
    /* Small blocks, so samples are spread over several of them. */
    clit_result r = clit_run("pack", in, "-o", ds, "-q", "--block-size", "4K", "--order", "source", NULL);
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    clit_result_free(&r);
    free(in);
}

static void teardown(void)
{
    for (int s = 0; s < NSAMPLES; s++)
        free(jpegs[s]);
    clit_rmrf(tmp);
    free(tmp);
    free(ds);
}

/* The decoded RGB pixels of the JPEG at path, with its size. */
static unsigned char *decode(const char *path, int *w, int *h)
{
    size_t len;
    unsigned char *data = clit_read(path, &len);
    ck_assert_msg(data != NULL, "cannot read %s", path);
    tjhandle tj = tjInitDecompress();
    int sub, cs;
    ck_assert_msg(tjDecompressHeader3(tj, data, len, w, h, &sub, &cs) == 0, "%s: %s", path,
                  tjGetErrorStr2(tj));
    unsigned char *rgb = malloc((size_t)*w * (size_t)*h * 3);
    ck_assert(rgb != NULL);
    ck_assert_msg(tjDecompress2(tj, data, len, rgb, *w, 0, *h, TJPF_RGB, 0) == 0, "%s: %s", path,
                  tjGetErrorStr2(tj));
    tjDestroy(tj);
    free(data);
    return rgb;
}

/* Mean colour of each of the 4 x 4 squares of an S x S tile at (x, y) of an image w wide. */
static void square_means(const unsigned char *img, int w, int x, int y, double means[16][3])
{
    enum { Q = S / 4 };
    for (int k = 0; k < 16; k++) {
        double sum[3] = {0, 0, 0};
        for (int dy = 0; dy < Q; dy++)
            for (int dx = 0; dx < Q; dx++) {
                const unsigned char *p =
                    img + ((size_t)(y + k / 4 * Q + dy) * (size_t)w + (size_t)(x + k % 4 * Q + dx)) * 3;
                for (int c = 0; c < 3; c++)
                    sum[c] += p[c];
            }
        for (int c = 0; c < 3; c++)
            means[k][c] = sum[c] / (Q * Q);
    }
}

/* Largest difference between two sets of square means. */
static double means_distance(double a[16][3], double b[16][3])
{
    double worst = 0;
    for (int k = 0; k < 16; k++)
        for (int c = 0; c < 3; c++) {
            double d = a[k][c] > b[k][c] ? a[k][c] - b[k][c] : b[k][c] - a[k][c];
            if (d > worst)
                worst = d;
        }
    return worst;
}

/* The square means of what sp_image_transform_apply gives for sample s, uint8 NHWC at S. */
static void expected_means(const char *transform, const char *seed, uint64_t epoch, uint64_t s,
                           double means[16][3])
{
    sp_params *p = sp_params_create();
    ck_assert(p != NULL);
    ck_assert_int_eq(sp_params_set_str(p, "transform", transform), 0);
    ck_assert_int_eq(sp_params_set_str(p, "seed", seed), 0);
    ck_assert_int_eq(sp_params_set(p, SP_PARAM_IMAGE_SIZE, S), 0);
    sp_image_transform *t;
    ck_assert_int_eq(sp_image_transform_create(p, &t), 0);
    ck_assert_uint_eq(sp_image_transform_bytes(t), (size_t)S * S * 3);
    unsigned char *out = malloc((size_t)S * S * 3);
    ck_assert(out != NULL);
    ck_assert_msg(sp_image_transform_apply(t, jpegs[s], jpeg_sizes[s], epoch, s, out, NULL) == 0,
                  "%s", sp_image_transform_errmsg(t));
    square_means(out, S, 0, 0, means);
    free(out);
    sp_image_transform_destroy(t);
    sp_params_destroy(p);
}

/* Top-left corner of the tile of cell i in a grid of cols columns (S = 64, with labels). */
static void tile_origin(int i, int cols, int *x, int *y)
{
    *x = GAP + i % cols * (S + GAP);
    *y = GAP + i / cols * (S + CAPTION_H + GAP);
}

/* Entries of dir whose name starts with prefix. */
static int count_prefixed(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    ck_assert(d != NULL);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

START_TEST(test_grid_size)
{
    char *out = clit_path("%s/grid.jpg", tmp);
    clit_result r = clit_run("preview", ds, "-o", out, "--image-size", "64", "--count", "6",
                             "--columns", "4", NULL);
    ck_assert_msg(r.status == 0, "preview: %s", r.err);
    ck_assert_uint_eq(r.err[0], 0);
    /* 4 columns x 2 rows: 4*64 + 5*4 = 276 wide, 2*(64+20) + 3*4 = 180 high. */
    char *want = clit_path("%s: 6 samples, 276x180 pixels\n", out);
    ck_assert_str_eq(r.out, want);
    free(want);
    clit_result_free(&r);
    int w, h;
    free(decode(out, &w, &h));
    ck_assert_int_eq(w, 276);
    ck_assert_int_eq(h, 180);

    /* Defaults: 16 samples at 224 pixels, 4 x 4; the font doubles, so captions are 4 + 2*18. */
    r = clit_run("preview", ds, "-o", out, NULL);
    ck_assert_msg(r.status == 0, "preview: %s", r.err);
    want = clit_path("%s: 16 samples, 916x1076 pixels\n", out);
    ck_assert_str_eq(r.out, want);
    free(want);
    clit_result_free(&r);
    free(decode(out, &w, &h));
    ck_assert_int_eq(w, 916);
    ck_assert_int_eq(h, 4 * (224 + 40) + 5 * 4);

    /* More than the dataset holds: every sample, once. */
    r = clit_run("preview", ds, "-o", out, "--count", "1024", "--image-size", "8", NULL);
    ck_assert_msg(r.status == 0, "preview: %s", r.err);
    ck_assert_msg(strstr(r.out, ": 40 samples, ") != NULL, "%s", r.out);
    clit_result_free(&r);
    /* No temporary file is left beside the output. */
    ck_assert_int_eq(count_prefixed(tmp, ".shardpack-preview"), 0);
    free(out);
}
END_TEST

START_TEST(test_deterministic)
{
    char *a = clit_path("%s/a.jpg", tmp), *b = clit_path("%s/b.jpg", tmp);
    char *c = clit_path("%s/c.jpg", tmp), *e = clit_path("%s/e.jpg", tmp);
    const char *common[] = {"--image-size", "64", "--count", "5"};
    clit_result r = clit_run("preview", ds, "-o", a, common[0], common[1], common[2], common[3],
                             "--seed", "7", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    clit_result_free(&r);
    r = clit_run("preview", ds, "-o", b, common[0], common[1], common[2], common[3], "--seed",
                 "7", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    clit_result_free(&r);
    r = clit_run("preview", ds, "-o", c, common[0], common[1], common[2], common[3], "--seed",
                 "8", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    clit_result_free(&r);
    r = clit_run("preview", ds, "-o", e, common[0], common[1], common[2], common[3], "--seed",
                 "7", "--epoch", "1", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    clit_result_free(&r);

    size_t la, lb, lc, le;
    unsigned char *da = clit_read(a, &la), *db = clit_read(b, &lb), *dc = clit_read(c, &lc);
    unsigned char *de = clit_read(e, &le);
    ck_assert(da && db && dc && de);
    ck_assert_msg(la == lb && memcmp(da, db, la) == 0, "same seed, different output");
    ck_assert_msg(la != lc || memcmp(da, dc, la) != 0, "different seed, same output");
    ck_assert_msg(la != le || memcmp(da, de, la) != 0, "different epoch, same train crops");
    free(da);
    free(db);
    free(dc);
    free(de);

    /* Eval crops do not depend on the epoch. */
    r = clit_run("preview", ds, "-o", a, "--transform", "eval", "--image-size", "64", "--epoch",
                 "0", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    clit_result_free(&r);
    r = clit_run("preview", ds, "-o", b, "--transform", "eval", "--image-size", "64", "--epoch",
                 "3", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    clit_result_free(&r);
    da = clit_read(a, &la);
    db = clit_read(b, &lb);
    ck_assert_msg(la == lb && memcmp(da, db, la) == 0, "eval output depends on the epoch");
    free(da);
    free(db);
    free(a);
    free(b);
    free(c);
    free(e);
}
END_TEST

/* Every sample (count = the dataset): cell i shows sample i, as the library transforms it. */
static void check_tiles(const char *transform, const char *seed, const char *epoch)
{
    char *out = clit_path("%s/%s.jpg", tmp, transform);
    clit_result r = clit_run("preview", ds, "-o", out, "--transform", transform, "--seed", seed,
                             "--epoch", epoch, "--image-size", "64", "--count", "40",
                             "--columns", "8", NULL);
    ck_assert_msg(r.status == 0, "preview: %s", r.err);
    clit_result_free(&r);
    int w, h;
    unsigned char *img = decode(out, &w, &h);
    ck_assert_int_eq(w, 8 * S + 9 * GAP);
    ck_assert_int_eq(h, 5 * (S + CAPTION_H) + 6 * GAP);
    for (int s = 0; s < NSAMPLES; s++) {
        double got[16][3], want[16][3];
        int x, y;
        tile_origin(s, 8, &x, &y);
        square_means(img, w, x, y, got);
        expected_means(transform, seed, strtoull(epoch, NULL, 10), (uint64_t)s, want);
        double d = means_distance(got, want);
        ck_assert_msg(d < 8, "%s: tile of sample %d differs from the transform by %.1f", transform,
                      s, d);
    }

    /* The caption strip under a tile is dark with light text in it. */
    int x, y;
    tile_origin(0, 8, &x, &y);
    int light = 0, dark = 0;
    for (int dy = 0; dy < CAPTION_H; dy++)
        for (int dx = 0; dx < S; dx++) {
            const unsigned char *p = img + ((size_t)(y + S + dy) * (size_t)w + (size_t)(x + dx)) * 3;
            light += p[0] > 200 && p[1] > 200 && p[2] > 200;
            dark += p[0] < 40 && p[1] < 40 && p[2] < 40;
        }
    ck_assert_msg(light > 20 && dark > S * CAPTION_H / 2, "caption: %d light, %d dark", light,
                  dark);
    free(img);
    free(out);
}

START_TEST(test_tiles_match_transform_train) { check_tiles("train", "5", "3"); }
END_TEST

START_TEST(test_tiles_match_transform_eval) { check_tiles("eval", "0", "0"); }
END_TEST

/* Four samples out of 40: one from each quarter of the dataset, found by matching each tile
 * against every sample's transform. */
START_TEST(test_spread)
{
    char *out = clit_path("%s/spread.jpg", tmp);
    const char *seeds[] = {"0", "1", "2"};
    int differs = 0, first[4] = {-1, -1, -1, -1};
    for (int k = 0; k < 3; k++) {
        clit_result r = clit_run("preview", ds, "-o", out, "--seed", seeds[k], "--image-size",
                                 "64", "--count", "4", "--columns", "4", NULL);
        ck_assert_msg(r.status == 0, "preview: %s", r.err);
        clit_result_free(&r);
        int w, h;
        unsigned char *img = decode(out, &w, &h);
        for (int i = 0; i < 4; i++) {
            double got[16][3];
            int x, y;
            tile_origin(i, 4, &x, &y);
            square_means(img, w, x, y, got);
            int best = -1;
            double best_d = 1e9;
            for (int s = 0; s < NSAMPLES; s++) {
                double want[16][3];
                expected_means("train", seeds[k], 0, (uint64_t)s, want);
                double d = means_distance(got, want);
                if (d < best_d) {
                    best_d = d;
                    best = s;
                }
            }
            ck_assert_msg(best_d < 8, "seed %s cell %d matches no sample (%.1f)", seeds[k], i,
                          best_d);
            ck_assert_msg(best >= i * 10 && best < i * 10 + 10,
                          "seed %s: cell %d shows sample %d, outside its quarter", seeds[k], i,
                          best);
            if (k == 0)
                first[i] = best;
            else
                differs += best != first[i];
        }
        free(img);
    }
    ck_assert_msg(differs > 0, "three seeds picked the same samples");
    free(out);
}
END_TEST

START_TEST(test_bad_tile)
{
    /* Sample 1 is cut short after its headers: it packs (headers parse) but does not decode. */
    char *in = clit_path("%s/badin", tmp), *cls = clit_path("%s/badin/x", tmp);
    clit_mkdir(in);
    clit_mkdir(cls);
    for (int s = 0; s < 3; s++) {
        char *file = clit_path("%s/%d.jpg", cls, s);
        clit_write(file, jpegs[s], s == 1 ? jpeg_sizes[s] * 2 / 3 : jpeg_sizes[s]);
        free(file);
    }
    char *bad = clit_path("%s/badds", tmp), *out = clit_path("%s/bad.jpg", tmp);
    clit_result r = clit_run("pack", in, "-o", bad, "-q", "--order", "source", NULL);
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    clit_result_free(&r);

    r = clit_run("preview", bad, "-o", out, "--image-size", "64", "--columns", "3", NULL);
    ck_assert_msg(r.status == 1, "exit %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "1 of 3 samples") != NULL, "%s", r.err);
    ck_assert_msg(strstr(r.err, "sample 1") != NULL, "%s", r.err);
    ck_assert_msg(strstr(r.out, ": 3 samples, ") != NULL, "%s", r.out);
    clit_result_free(&r);

    int w, h;
    unsigned char *img = decode(out, &w, &h);
    double got[16][3];
    int x, y;
    tile_origin(1, 3, &x, &y);
    square_means(img, w, x, y, got);
    for (int k = 0; k < 16; k++)
        for (int c = 0; c < 3; c++)
            ck_assert_msg(got[k][c] > 120 && got[k][c] < 136, "bad tile is not grey: %.1f",
                          got[k][c]);
    /* Its neighbours are drawn. */
    double want[16][3];
    tile_origin(2, 3, &x, &y);
    square_means(img, w, x, y, got);
    expected_means("train", "0", 0, 2, want);
    ck_assert(means_distance(got, want) < 8);
    free(img);
    free(in);
    free(cls);
    free(bad);
    free(out);
}
END_TEST

static uint32_t token_of(uint32_t k, uint32_t unused)
{
    (void)unused;
    return k % 50000;
}

START_TEST(test_no_image_field)
{
    char *dir = clit_path("%s/tok", tmp), *out = clit_path("%s/tok.jpg", tmp);
    clit_mkdir(dir);
    char *tokens = clit_pack_llmc(dir, 2, 8 * 20 + 1, token_of, "8");
    clit_result r = clit_run("preview", tokens, "-o", out, NULL);
    ck_assert_msg(r.status == 1, "exit %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.err, tokens) && strstr(r.err, "no image field") &&
                      strstr(r.err, "tokens"),
                  "%s", r.err);
    clit_result_free(&r);
    ck_assert(!clit_exists(out));

    /* --field naming a field that is not an image: a usage error. */
    r = clit_run("preview", ds, "-o", out, "--field", "label", NULL);
    ck_assert_msg(r.status == 2, "exit %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "label") && strstr(r.err, "not image"), "%s", r.err);
    clit_result_free(&r);
    r = clit_run("preview", ds, "-o", out, "--field", "nope", NULL);
    ck_assert_int_eq(r.status, 2);
    clit_result_free(&r);
    r = clit_run("preview", ds, "-o", out, "--field", "image", "--image-size", "8", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    clit_result_free(&r);
    free(tokens);
    free(dir);
    free(out);
}
END_TEST

START_TEST(test_bad_output)
{
    /* A missing directory, a file used as a directory, and a directory as the output. */
    char *missing = clit_path("%s/nodir/x.jpg", tmp);
    char *file = clit_path("%s/plain", tmp), *under_file = clit_path("%s/plain/x.jpg", tmp);
    char *dir = clit_path("%s/outdir", tmp);
    clit_write(file, "x", 1);
    clit_mkdir(dir);
    const char *outs[] = {missing, under_file, dir};
    for (int i = 0; i < 3; i++) {
        clit_result r = clit_run("preview", ds, "-o", outs[i], "--image-size", "8", NULL);
        ck_assert_msg(r.status == 1, "-o %s: exit %d: %s", outs[i], r.status, r.err);
        ck_assert_msg(strncmp(r.err, "shardpack: ", 11) == 0 && strstr(r.err, outs[i]), "%s",
                      r.err);
        ck_assert_uint_eq(r.outlen, 0);
        clit_result_free(&r);
    }
    struct stat st;
    ck_assert(stat(dir, &st) == 0 && S_ISDIR(st.st_mode));
    ck_assert(!clit_exists(missing));
    ck_assert_int_eq(count_prefixed(tmp, ".shardpack"), 0);
    ck_assert_int_eq(count_prefixed(dir, ".shardpack"), 0);

    /* An existing output is replaced whole. */
    char *out = clit_path("%s/old.jpg", tmp);
    clit_write(out, "old", 3);
    clit_result r = clit_run("preview", ds, "-o", out, "--image-size", "8", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    clit_result_free(&r);
    int w, h;
    free(decode(out, &w, &h));
    ck_assert_int_eq(count_prefixed(tmp, ".shardpack"), 0);
    free(out);
    free(missing);
    free(file);
    free(under_file);
    free(dir);
}
END_TEST

#define EXPECT_USAGE(...)                                                                         \
    do {                                                                                          \
        clit_result r_ = clit_run("preview", __VA_ARGS__, NULL);                                  \
        ck_assert_msg(r_.status == 2, "exit %d, want 2: %s", r_.status, r_.err);                 \
        ck_assert_msg(strstr(r_.err, "preview --help") != NULL, "%s", r_.err);                   \
        clit_result_free(&r_);                                                                    \
    } while (0)

START_TEST(test_usage)
{
    char *out = clit_path("%s/u.jpg", tmp);
    EXPECT_USAGE(ds, "-o", out, "--count", "0");
    EXPECT_USAGE(ds, "-o", out, "--count", "1025");
    EXPECT_USAGE(ds, "-o", out, "--count", "ten");
    EXPECT_USAGE(ds, "-o", out, "--columns", "0");
    EXPECT_USAGE(ds, "-o", out, "--epoch", "-1");
    EXPECT_USAGE(ds, "-o", out, "--transform", "crop");
    EXPECT_USAGE(ds, "-o", out, "--image-size", "2");
    EXPECT_USAGE(ds, "-o", out, "--level", "3"); /* a writer parameter */
    EXPECT_USAGE(ds, "-o");
    EXPECT_USAGE(ds);
    EXPECT_USAGE("-o", out);
    EXPECT_USAGE(ds, ds, "-o", out);
    /* Too large for one JPEG. */
    EXPECT_USAGE(ds, "-o", out, "--image-size", "4096", "--count", "40", "--columns", "40");
    ck_assert(!clit_exists(out));

    clit_result r = clit_run("preview", "--help", NULL);
    ck_assert_int_eq(r.status, 0);
    const char *want[] = {"--count", "--seed", "--epoch", "--columns", "--transform",
                          "--image-size", "--resize", "--max-pixels", "--field", "--output"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(strstr(r.out, want[i]) != NULL, "preview --help lacks %s", want[i]);
    clit_result_free(&r);
    r = clit_run("help", NULL);
    ck_assert(strstr(r.out, "preview") != NULL);
    clit_result_free(&r);
    free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-preview");
    TCase *tc = tcase_create("preview");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_grid_size);
    tcase_add_test(tc, test_deterministic);
    tcase_add_test(tc, test_tiles_match_transform_train);
    tcase_add_test(tc, test_tiles_match_transform_eval);
    tcase_add_test(tc, test_spread);
    tcase_add_test(tc, test_bad_tile);
    tcase_add_test(tc, test_no_image_field);
    tcase_add_test(tc, test_bad_output);
    tcase_add_test(tc, test_usage);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
