/* test_cli_pack_tsv.c - pack a PATH<TAB>LABEL list: relative/absolute paths, comments, bad lines (each saying what is wrong: label range, column count, the line naming a missing image), a UTF-8 BOM, NUL bytes. */
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

/* TMP/img.jpg (an 8x8 JPEG) and TMP/NAME holding the len bytes of text: a list naming it. Returns
 * the list's path (malloc'd). */
static char *write_list(const char *name, const char *text, size_t len)
{
    char *img = clit_path("%s/img.jpg", tmp), *tsv = clit_path("%s/%s", tmp, name);
    size_t n;
    unsigned char *jpg = clit_jpeg(8, 8, 3, &n);
    clit_write(img, jpg, n);
    free(jpg);
    free(img);
    clit_write(tsv, text, len);
    return tsv;
}

/* A list saved with a UTF-8 byte order mark keeps its first entry; a line holding a NUL byte is a
 * bad line, wherever the NUL is, never cut short or taken for blank. */
START_TEST(test_tsv_bom_nul)
{
    static const char text[] = "\xEF\xBB\xBFimg.jpg\t7\n"
                               "img.jpg\t5\0 and the rest\n"
                               "\0img.jpg\t6\n"
                               "img.jpg\t8\n";
    char *tsv = write_list("bom.tsv", text, sizeof text - 1);

    char *out = clit_path("%s/out", tmp);
    clit_result r = clit_run("pack", tsv, "-o", out, "--json", "--order", "source", NULL); /* samples in line order */
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    ck_assert_uint_eq(clit_json_u64(r.out, "samples"), 2);
    ck_assert_uint_eq(clit_json_u64(r.out, "skipped"), 2);
    ck_assert_msg(strstr(r.out, "bom.tsv:2") && strstr(r.out, "NUL byte at column 10\""), "%s", r.out);
    ck_assert_msg(strstr(r.out, "bom.tsv:3") && strstr(r.out, "NUL byte at column 1\""), "%s", r.out);
    clit_result_free(&r);
    static const char *const labels[] = { "7", "8" };
    for (int i = 0; i < 2; i++) {
        r = clit_run("cat", out, "--index", i ? "1" : "0", "--field", "label", "--text", NULL);
        ck_assert_int_eq(r.status, 0);
        ck_assert_int_eq(atol(r.out), atol(labels[i]));
        clit_result_free(&r);
    }

    char *out2 = clit_path("%s/out2", tmp);
    r = clit_run("pack", tsv, "-o", out2, "--strict", "--order", "source", NULL); /* line 2 is the first bad one */
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "bom.tsv:2") && strstr(r.err, "NUL byte"), "%s", r.err);
    ck_assert(!clit_exists(out2));
    clit_result_free(&r);
    free(out2);
    free(out);
    free(tsv);
}
END_TEST

/* Each bad line says what is wrong with it: a label out of int64 range is not "not an integer",
 * a third column is a column count, and a missing image names the list line that named it. */
START_TEST(test_tsv_messages)
{
    static const char text[] = "img.jpg\t9223372036854775807\n"
                               "img.jpg\t9223372036854775808\n"
                               "img.jpg\t-99999999999999999999\n"
                               "img.jpg\t1\tx\n"
                               "missing.jpg\t2\n"
                               "img.jpg\tseven\n";
    char *tsv = write_list("msg.tsv", text, sizeof text - 1);
    char *out = clit_path("%s/out", tmp);
    clit_result r = clit_run("pack", tsv, "-o", out, "--json", NULL);
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    ck_assert_uint_eq(clit_json_u64(r.out, "samples"), 1);
    ck_assert_uint_eq(clit_json_u64(r.out, "skipped"), 5);
    ck_assert_msg(strstr(r.out, "msg.tsv:2") && strstr(r.out, "label 9223372036854775808 is out of the int64 range"),
                  "%s", r.out);
    ck_assert_msg(strstr(r.out, "msg.tsv:3") && strstr(r.out, "label -99999999999999999999 is out of the int64 range"),
                  "%s", r.out);
    ck_assert_msg(strstr(r.out, "msg.tsv:4") && strstr(r.out, "3 columns, expected 2 (PATH<TAB>LABEL)"), "%s", r.out);
    ck_assert_msg(strstr(r.out, "missing.jpg") && strstr(r.out, "(named by ") && strstr(r.out, "msg.tsv:5)"), "%s",
                  r.out);
    ck_assert_msg(strstr(r.out, "msg.tsv:6") && strstr(r.out, "label is not an integer"), "%s", r.out);
    clit_result_free(&r);
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
    tcase_add_test(tc, test_tsv_bom_nul);
    tcase_add_test(tc, test_tsv_messages);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
