/* test_cli_pack_tsv.c - pack a PATH<TAB>LABEL list: relative/absolute paths, comments, bad lines. */
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

START_TEST(test_tsv)
{
    char *imgs = clit_path("%s/lists/imgs", tmp), *lists = clit_path("%s/lists", tmp);
    char *out = clit_path("%s/out", tmp), *tsv = clit_path("%s/lists/train.tsv", tmp);
    clit_mkdir(lists);
    clit_mkdir(imgs);
    unsigned char *j[3];
    size_t n[3];
    char *paths[3];
    for (int i = 0; i < 3; i++) {
        j[i] = clit_jpeg(8, 8, (unsigned)i + 5, &n[i]);
        paths[i] = clit_path("%s/img%d.jpg", imgs, i);
        clit_write(paths[i], j[i], n[i]);
    }
    /* Relative paths resolve from the TSV's directory, not the working directory. */
    char *text = clit_path("# path\tlabel\n"
                           "imgs/img0.jpg\t7\n"
                           "\n"
                           "%s\t-3\r\n"
                           "imgs/img2.jpg\t 12 \n"
                           "imgs/img0.jpg\tnot-a-number\n"
                           "no tab here\n",
                           paths[1]);
    clit_write(tsv, text, strlen(text));

    clit_result r = clit_run("pack", tsv, "-o", out, "--json", NULL);
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    ck_assert(clit_json_valid(r.out));
    ck_assert_uint_eq(clit_json_u64(r.out, "samples"), 3);
    ck_assert_uint_eq(clit_json_u64(r.out, "skipped"), 2);
    ck_assert_msg(strstr(r.out, "train.tsv:6") != NULL, "%s", r.out);
    clit_result_free(&r);

    const long labels[3] = {7, -3, 12};
    for (int i = 0; i < 3; i++) {
        char idx[8];
        snprintf(idx, sizeof idx, "%d", i);
        r = clit_run("cat", out, "--index", idx, "--field", "label", "--text", NULL);
        ck_assert_int_eq(r.status, 0);
        ck_assert_int_eq(atol(r.out), labels[i]);
        clit_result_free(&r);
        r = clit_run("cat", out, "-i", idx, NULL);
        ck_assert_int_eq(r.status, 0);
        ck_assert(r.outlen == n[i] && memcmp(r.out, j[i], n[i]) == 0);
        clit_result_free(&r);
        free(j[i]);
        free(paths[i]);
    }

    /* --strict turns the first bad line into a failure that names it. */
    char *out2 = clit_path("%s/out2", tmp);
    r = clit_run("pack", tsv, "-o", out2, "--strict", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "train.tsv:6") != NULL, "%s", r.err);
    clit_result_free(&r);
    char *m2 = clit_path("%s/manifest.spm", out2);
    ck_assert(!clit_exists(m2));

    /* A list with no lines: a data error naming the list, and nothing published. */
    char *empty = clit_path("%s/empty.tsv", tmp), *out3 = clit_path("%s/out3", tmp);
    clit_write(empty, "", 0);
    r = clit_run("pack", empty, "-o", out3, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "empty.tsv") && strstr(r.err, "no samples"), "%s", r.err);
    ck_assert(!clit_exists(out3));
    clit_result_free(&r);
    free(empty);
    free(out3);

    free(m2);
    free(out2);
    free(text);
    free(imgs);
    free(lists);
    free(out);
    free(tsv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-pack-tsv");
    TCase *tc = tcase_create("tsv");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_tsv);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
