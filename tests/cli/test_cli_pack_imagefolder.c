/* test_cli_pack_imagefolder.c - pack an ImageFolder tree; cat returns each JPEG byte-identical; OUTDIR inside the tree, an earlier pack's output inside it and staging directories are not classes; an empty class directory is refused as torchvision refuses it, named without a doubled '/' when the tree is given as DIR/. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "clit_util.h"

static char *tmp;

static void setup(void) { tmp = clit_tmpdir(); }
static void teardown(void)
{
    clit_rmrf(tmp);
    free(tmp);
}

/* Writes tmp/in/CLASS/NAME as a JPEG and returns its bytes. */
static unsigned char *put_jpeg(const char *cls, const char *name, unsigned seed, size_t *size)
{
    char *dir = clit_path("%s/in/%s", tmp, cls);
    clit_mkdir(dir);
    char *path = clit_path("%s/%s", dir, name);
    unsigned char *j = clit_jpeg(16 + (int)seed, 12, seed, size);
    clit_write(path, j, *size);
    free(dir);
    free(path);
    return j;
}

START_TEST(test_pack_and_cat_identity)
{
    char *in = clit_path("%s/in", tmp), *out = clit_path("%s/out", tmp);
    clit_mkdir(in);
    /* Classes in byte order: "Zebra" < "cat" < "dog"; files sorted within a class. */
    struct {
        const char *cls, *name;
        long label;
    } order[] = {
        {"Zebra", "z.jpeg", 0}, {"cat", "a.JPG", 1}, {"cat", "b.jpg", 1}, {"dog", "1.jpg", 2},
    };
    unsigned char *jpegs[4];
    size_t sizes[4];
    /* Create in another order than the expected one. */
    jpegs[3] = put_jpeg("dog", "1.jpg", 4, &sizes[3]);
    jpegs[2] = put_jpeg("cat", "b.jpg", 3, &sizes[2]);
    jpegs[0] = put_jpeg("Zebra", "z.jpeg", 1, &sizes[0]);
    jpegs[1] = put_jpeg("cat", "a.JPG", 2, &sizes[1]);
    char *notes = clit_path("%s/cat/notes.txt", in);
    clit_write(notes, "not an image", 12);

    clit_result r = clit_run("pack", in, "-o", out, "--quiet", "--order", "source", NULL); /* sample i = file i */
    ck_assert_msg(r.status == 0, "pack failed: %s", r.err);
    clit_result_free(&r);
    char *manifest = clit_path("%s/manifest.spm", out);
    ck_assert(clit_exists(manifest));

    for (int i = 0; i < 4; i++) {
        char idx[16];
        snprintf(idx, sizeof idx, "%d", i);
        r = clit_run("cat", out, "--index", idx, NULL);
        ck_assert_msg(r.status == 0, "cat %d failed: %s", i, r.err);
        ck_assert_msg(r.outlen == sizes[i] && memcmp(r.out, jpegs[i], sizes[i]) == 0,
                      "sample %d (%s/%s) is not byte-identical", i, order[i].cls, order[i].name);
        clit_result_free(&r);

        r = clit_run("cat", out, "--index", idx, "--field", "label", "--text", NULL);
        ck_assert_int_eq(r.status, 0);
        ck_assert_int_eq(atol(r.out), order[i].label);
        clit_result_free(&r);

        r = clit_run("cat", out, "--index", idx, "--field", "label", NULL);
        ck_assert_int_eq(r.status, 0);
        ck_assert_uint_eq(r.outlen, 8);
        ck_assert_int_eq((unsigned char)r.out[0], order[i].label);
        clit_result_free(&r);
        free(jpegs[i]);
    }

    r = clit_run("inspect", out, "--json", NULL);
    ck_assert_msg(r.status == 0, "inspect: %s", r.err);
    ck_assert(clit_json_valid(r.out));
    ck_assert_uint_eq(clit_json_u64(r.out, "samples"), 4);
    ck_assert_msg(strstr(r.out, "\"class_names\":\"Zebra\\ncat\\ndog\"") != NULL, "%s", r.out);
    ck_assert(strstr(r.out, "\"created_by\":") != NULL);
    clit_result_free(&r);

    r = clit_run("inspect", out, NULL);
    ck_assert_int_eq(r.status, 0);
    ck_assert(strstr(r.out, "class_names (3 classes): Zebra, cat, dog") != NULL);
    clit_result_free(&r);

    r = clit_run("cat", out, "--index", "4", NULL);
    ck_assert_int_eq(r.status, 2); /* out of range */
    clit_result_free(&r);
    r = clit_run("cat", out, "--index", "0", "--field", "nope", NULL);
    ck_assert_int_eq(r.status, 2);
    ck_assert(strstr(r.err, "image, label") != NULL);
    clit_result_free(&r);

    free(notes);
    free(manifest);
    free(in);
    free(out);
}
END_TEST

START_TEST(test_overwrite)
{
    char *in = clit_path("%s/in", tmp), *out = clit_path("%s/out", tmp);
    clit_mkdir(in);
    size_t n;
    free(put_jpeg("a", "x.jpg", 1, &n));
    clit_result r = clit_run("pack", in, "-o", out, "-q", NULL);
    ck_assert_int_eq(r.status, 0);
    clit_result_free(&r);
    r = clit_run("pack", in, "-o", out, "-q", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert(strstr(r.err, "--overwrite") != NULL);
    clit_result_free(&r);
    r = clit_run("pack", in, "-o", out, "-q", "--overwrite", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    clit_result_free(&r);
    free(in);
    free(out);
}
END_TEST

/* The class line of `inspect PATH`, e.g. "class_names (2 classes): b, c". */
static void check_classes(const char *ds, const char *want)
{
    clit_result r = clit_run("inspect", ds, NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_msg(strstr(r.out, want) != NULL, "want '%s' in:\n%s", want, r.out);
    clit_result_free(&r);
}

START_TEST(test_output_inside_input)
{
    char *in = clit_path("%s/in", tmp), *out = clit_path("%s/in/a.sp", tmp);
    char *stale = clit_path("%s/in/.old.sp.shardpack-tmp", tmp), *stale_file = clit_path("%s/x.jpg", stale);
    clit_mkdir(in);
    size_t n;
    free(put_jpeg("b", "x.jpg", 1, &n));
    free(put_jpeg("c", "y.jpg", 2, &n));
    /* A killed writer's staging directory, holding a file with an image's name. */
    clit_mkdir(stale);
    clit_write(stale_file, "staged", 6);
    for (int again = 0; again < 2; again++) {
        clit_result r = clit_run("pack", in, "-o", out, "-q", again ? "--overwrite" : NULL, NULL);
        ck_assert_msg(r.status == 0, "pack %d: %s", again, r.err);
        clit_result_free(&r);
        /* "a.sp" sorts first: were it a class, every label would shift by one. */
        check_classes(out, "class_names (2 classes): b, c");
        r = clit_run("cat", out, "--index", "0", "--field", "label", "--text", NULL);
        ck_assert_msg(r.status == 0 && strcmp(r.out, "0\n") == 0, "label of sample 0: %s%s", r.out, r.err);
        clit_result_free(&r);
    }
    /* Packed again elsewhere: the dataset a.sp left inside the tree is still no class. */
    char *elsewhere = clit_path("%s/b.sp", tmp);
    clit_result r = clit_run("pack", in, "-o", elsewhere, "-q", NULL);
    ck_assert_msg(r.status == 0, "pack to %s: %s", elsewhere, r.err);
    clit_result_free(&r);
    check_classes(elsewhere, "class_names (2 classes): b, c");
    free(elsewhere);
    free(stale_file);
    free(stale);
    free(in);
    free(out);
}
END_TEST

START_TEST(test_empty_class_refused)
{
    char *in = clit_path("%s/in", tmp), *out = clit_path("%s/out", tmp), *empty = clit_path("%s/in/a", tmp);
    clit_mkdir(in);
    clit_mkdir(empty);
    size_t n;
    free(put_jpeg("b", "x.jpg", 1, &n));
    char *txt = clit_path("%s/readme.txt", empty);
    clit_write(txt, "no images here", 14);
    clit_result r = clit_run("pack", in, "-o", out, NULL);
    ck_assert_msg(r.status == 1, "exit %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.err, empty) && strstr(r.err, "no image file (.jpg, .jpeg, .png, .webp, ...)"), "%s", r.err);
    clit_result_free(&r);
    ck_assert(!clit_exists(out));
    /* "in/" names the same folder as "in": the message shows in/a, not in//a */
    char *slash = clit_path("%s/", in);
    r = clit_run("pack", slash, "-o", out, NULL);
    ck_assert_msg(r.status == 1 && strstr(r.err, empty) && !strstr(r.err, "//"), "exit %d: %s", r.status, r.err);
    clit_result_free(&r);
    free(slash);
    free(txt);
    free(empty);
    free(in);
    free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-pack-imagefolder");
    TCase *tc = tcase_create("imagefolder");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_pack_and_cat_identity);
    tcase_add_test(tc, test_overwrite);
    tcase_add_test(tc, test_output_inside_input);
    tcase_add_test(tc, test_empty_class_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
