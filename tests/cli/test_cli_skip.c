/* test_cli_skip.c - bad items (non-JPEG .jpg, empty file) are skipped, or fatal with --strict;
 * an input without samples fails and publishes nothing; a failure of the writer itself (max_shards
 * reached) is never a skipped item. */
#include <check.h>
#include <dirent.h>
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

static char *manifest_of(const char *out) { return clit_path("%s/manifest.spm", out); }

START_TEST(test_skip_and_strict)
{
    char *in = clit_path("%s/in", tmp), *cls = clit_path("%s/in/c", tmp);
    clit_mkdir(in);
    clit_mkdir(cls);
    size_t n;
    unsigned char *j = clit_jpeg(8, 8, 1, &n);
    char *good = clit_path("%s/a.jpg", cls), *bad = clit_path("%s/b.jpg", cls);
    char *empty = clit_path("%s/c.jpg", cls);
    clit_write(good, j, n);
    clit_write(bad, "hello, I am text\n", 17);
    clit_write(empty, "", 0);

    char *out = clit_path("%s/out", tmp);
    clit_result r = clit_run("pack", in, "-o", out, NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    /* The summary counts and lists the skipped files with their reasons. */
    ck_assert_msg(strstr(r.err, "2 skipped") != NULL, "%s", r.err);
    ck_assert_msg(strstr(r.err, "b.jpg: not a decodable image") != NULL, "%s", r.err);
    ck_assert_msg(strstr(r.err, "c.jpg: empty file") != NULL, "%s", r.err);
    clit_result_free(&r);

    r = clit_run("inspect", out, "--json", NULL);
    ck_assert_uint_eq(clit_json_u64(r.out, "samples"), 1);
    clit_result_free(&r);

    char *out2 = clit_path("%s/out2", tmp);
    r = clit_run("pack", in, "-o", out2, "--strict", "--order", "source", NULL); /* b.jpg comes first */
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strncmp(r.err, "shardpack: ", 11) == 0 && strstr(r.err, "b.jpg"), "%s", r.err);
    clit_result_free(&r);
    char *m2 = manifest_of(out2);
    ck_assert(!clit_exists(m2));

    free(m2);
    free(out2);
    free(j);
    free(good);
    free(bad);
    free(empty);
    free(in);
    free(cls);
    free(out);
}
END_TEST

START_TEST(test_empty_inputs)
{
    char *out = clit_path("%s/out", tmp);
    char *m = manifest_of(out);

    /* A class directory without images. */
    char *in = clit_path("%s/in", tmp), *cls = clit_path("%s/in/c", tmp);
    clit_mkdir(in);
    clit_mkdir(cls);
    clit_result r = clit_run("pack", in, "-o", out, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert(!clit_exists(m));
    clit_result_free(&r);

    /* Only bad images: every item skipped, so no samples. */
    char *bad = clit_path("%s/x.jpg", cls);
    clit_write(bad, "nope", 4);
    r = clit_run("pack", in, "-o", out, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "no samples") != NULL, "%s", r.err);
    ck_assert(!clit_exists(m));
    clit_result_free(&r);

    /* An empty TSV and an empty tar. */
    char *tsv = clit_path("%s/empty.tsv", tmp), *tar = clit_path("%s/empty.tar", tmp);
    clit_write(tsv, "# nothing\n", 10);
    FILE *f = fopen(tar, "wb");
    clit_tar_end(f);
    fclose(f);
    r = clit_run("pack", tsv, "-o", out, NULL);
    ck_assert_int_eq(r.status, 1);
    clit_result_free(&r);
    r = clit_run("pack", tar, "-o", out, "--json", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_uint_eq(r.outlen, 0);
    clit_result_free(&r);
    ck_assert(!clit_exists(m));

    free(tsv);
    free(tar);
    free(bad);
    free(in);
    free(cls);
    free(m);
    free(out);
}
END_TEST

/* Entries of dir other than "in". */
static int others_than_input(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "in");
    closedir(d);
    return n;
}

START_TEST(test_writer_failure_is_not_a_skip)
{
    char *in = clit_path("%s/in", tmp);
    clit_write_images(in, 40, 64, 48);
    char *out = clit_path("%s/x.sp", tmp);
    for (int strict = 0; strict < 2; strict++) {
        clit_result r = clit_run("pack", in, "-o", out, "--max-shards", "3", "--shard-size", "8K",
                                 "--block-size", "4K", strict ? "--strict" : NULL, NULL);
        ck_assert_msg(r.status == 1, "exit %d: %s", r.status, r.err);
        /* The writer's own message, naming OUTDIR, and nothing blamed on an input item. */
        ck_assert_msg(strstr(r.err, "shardpack: ") == r.err && strstr(r.err, out) &&
                          strstr(r.err, "max_shards (3)"),
                      "%s", r.err);
        ck_assert_msg(!strstr(r.err, "writer has failed") && !strstr(r.err, "skipped") &&
                          !strstr(r.err, ".jpg") && !strstr(r.err, "--strict"),
                      "%s", r.err);
        ck_assert_msg(strchr(r.err, '\n') == r.err + strlen(r.err) - 1, "more than one message: %s",
                      r.err);
        clit_result_free(&r);
        ck_assert(!clit_exists(out));
        ck_assert_int_eq(others_than_input(tmp), 0);
    }
    free(out);
    free(in);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-skip");
    TCase *tc = tcase_create("skip");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_skip_and_strict);
    tcase_add_test(tc, test_empty_inputs);
    tcase_add_test(tc, test_writer_failure_is_not_a_skip);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
