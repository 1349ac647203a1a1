/* test_cli_glob.c - every command that reads a dataset (inspect, verify, cat, bench, preview) takes a glob of shard files as the loader does, with the same samples as the dataset directory; a glob matching nothing says so (and that brackets in a directory name are pattern characters); a URL of a scheme the library does not read is refused naming it, never showing its password. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clit_util.h"

static char *tmp, *ds, *glob_all, *glob_two;

/* 30 images packed into 16 KiB shards: several shards. */
static void setup(void)
{
    tmp = clit_tmpdir();
    char *in = clit_path("%s/in", tmp);
    clit_write_images(in, 30, 48, 40);
    ds = clit_path("%s/ds", tmp);
    clit_result r = clit_run("pack", in, "-o", ds, "-q", "--block-size", "4K", "--shard-size", "16K", NULL);
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    clit_result_free(&r);
    glob_all = clit_path("%s/shard-*.sps", ds);
    glob_two = clit_path("%s/shard-00000[01].sps", ds);
    free(in);
}

static void teardown(void)
{
    clit_rmrf(tmp);
    free(tmp);
    free(ds);
    free(glob_all);
    free(glob_two);
}

static uint64_t json_count(const char *cmd, const char *path, const char *key)
{
    clit_result r = clit_run(cmd, path, "--json", NULL);
    ck_assert_msg(r.status == 0, "%s %s: exit %d: %s", cmd, path, r.status, r.err);
    uint64_t v = clit_json_u64(r.out, key);
    clit_result_free(&r);
    return v;
}

START_TEST(test_inspect_verify_cat)
{
    uint64_t shards = json_count("inspect", ds, "shards");
    ck_assert_uint_gt(shards, 2);
    ck_assert_uint_eq(json_count("inspect", glob_all, "samples"), 30);
    ck_assert_uint_eq(json_count("inspect", glob_all, "shards"), shards);
    ck_assert_uint_eq(json_count("inspect", glob_two, "shards"), 2);
    ck_assert_uint_eq(json_count("verify", glob_all, "shards"), shards);

    /* The same bytes as from the directory. */
    clit_result a = clit_run("cat", ds, "--index", "29", NULL);
    clit_result b = clit_run("cat", glob_all, "--index", "29", NULL);
    ck_assert_msg(a.status == 0 && b.status == 0, "%s %s", a.err, b.err);
    ck_assert(a.outlen == b.outlen && a.outlen > 0 && memcmp(a.out, b.out, a.outlen) == 0);
    clit_result_free(&a);
    clit_result_free(&b);
}
END_TEST

START_TEST(test_bench_preview)
{
    clit_result r = clit_run("bench", glob_all, "--epochs", "1", "--json", "--threads", "1", NULL);
    ck_assert_msg(r.status == 0, "bench: exit %d: %s", r.status, r.err);
    ck_assert_msg(clit_json_valid(r.out), "%s", r.out);
    clit_result_free(&r);
    char *out = clit_path("%s/grid.jpg", tmp);
    r = clit_run("preview", glob_two, "-o", out, "--image-size", "16", NULL);
    ck_assert_msg(r.status == 0, "preview: exit %d: %s", r.status, r.err);
    clit_result_free(&r);
    ck_assert(clit_exists(out));
    free(out);
}
END_TEST

START_TEST(test_no_match)
{
    char *none = clit_path("%s/nothing-*.sps", ds);
    const char *cmds[] = {"inspect", "verify", "bench"};
    for (size_t i = 0; i < 3; i++) {
        clit_result r = clit_run(cmds[i], none, NULL);
        ck_assert_msg(r.status == 1, "%s: exit %d: %s", cmds[i], r.status, r.err);
        ck_assert_msg(strstr(r.err, none) && strstr(r.err, "no file matches"), "%s: %s", cmds[i], r.err);
        clit_result_free(&r);
    }
    free(none);
    /* A directory named with brackets: the brackets are pattern characters, and the message says
     * so; escaped, the glob matches. */
    char *bdir = clit_path("%s/ds[1]", tmp);
    ck_assert(rename(ds, bdir) == 0);
    char *bglob = clit_path("%s/ds[1]/shard-*.sps", tmp), *escaped = clit_path("%s/ds\\[1\\]/shard-*.sps", tmp);
    clit_result r = clit_run("inspect", bglob, NULL);
    ck_assert_msg(r.status == 1 && strstr(r.err, "no file matches") && strstr(r.err, "pattern characters") &&
                      strstr(r.err, "\\["),
                  "exit %d: %s", r.status, r.err);
    clit_result_free(&r);
    r = clit_run("inspect", escaped, NULL);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    clit_result_free(&r);
    ck_assert(rename(bdir, ds) == 0);
    free(bdir);
    free(bglob);
    free(escaped);
}
END_TEST

START_TEST(test_other_scheme)
{
    const char *cmds[] = {"inspect", "verify", "bench", "cat"};
    for (size_t i = 0; i < 4; i++) {
        clit_result r = clit_run(cmds[i], "ftp://user:secret@example.org/ds", "--index", "0", NULL);
        if (i < 3) { /* cat needs its --index; the others take none */
            clit_result_free(&r);
            r = clit_run(cmds[i], "ftp://user:secret@example.org/ds", NULL);
        }
        ck_assert_msg(r.status == 1 && strstr(r.err, "ftp://example.org/ds: ftp:// URLs are not supported") &&
                          !strstr(r.err, "secret") && !strstr(r.err, "No such file"),
                      "%s: exit %d: %s", cmds[i], r.status, r.err);
        clit_result_free(&r);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-glob");
    TCase *tc = tcase_create("glob");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_inspect_verify_cat);
    tcase_add_test(tc, test_bench_preview);
    tcase_add_test(tc, test_no_match);
    tcase_add_test(tc, test_other_scheme);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
