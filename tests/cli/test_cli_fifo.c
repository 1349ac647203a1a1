/* test_cli_fifo.c - a FIFO where a file is expected: bench, verify and inspect of a dataset whose shard or manifest.spm is a FIFO, pack of an ImageFolder holding a FIFO .jpg or of a TSV naming one (or being one) end at once, naming the file as "not a regular file (a FIFO)"; runs are killed after a deadline, so a hang fails the test. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clit_util.h"

#define FIFO_WHY "not a regular file (a FIFO)"
#define DEADLINE_S 15

static char *tmp;

static void setup(void)
{
    tmp = clit_tmpdir();
    clit_set_timeout(DEADLINE_S);
}

static void teardown(void)
{
    clit_rmrf(tmp);
    free(tmp);
}

static uint32_t tok(uint32_t k, uint32_t arg) { return (k * 7 + arg) % 50000; }

static void fifo_at(const char *path)
{
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(mkfifo(path, 0644), 0);
}

/* A run that fails promptly with a message naming path and saying it is a FIFO. */
static void expect_fifo_error(const char *cmd, const char *arg, const char *path)
{
    clit_result r = clit_run(cmd, arg, NULL);
    ck_assert_msg(r.status == 1, "%s %s: status %d (137: killed at the deadline): %s", cmd, arg, r.status, r.err);
    /* verify lists its faults on stdout; the other commands report on stderr. */
    const char *said = strstr(r.err, FIFO_WHY) ? r.err : r.out;
    ck_assert_msg(strstr(said, path) && strstr(said, FIFO_WHY), "%s %s: %s%s", cmd, arg, r.out, r.err);
    clit_result_free(&r);
}

/* bench, verify and inspect of a packed dataset whose file `name` is a FIFO. */
static void dataset_file_is_fifo(const char *name, uint32_t tokens, int inspect_file)
{
    char *ds = clit_pack_llmc(tmp, 2, tokens, tok, "64");
    char *path = clit_path("%s/%s", ds, name);
    fifo_at(path);
    expect_fifo_error("bench", ds, path);
    expect_fifo_error("verify", ds, path);
    expect_fifo_error("inspect", ds, path);
    if (inspect_file)
        expect_fifo_error("inspect", path, path);
    free(path);
    free(ds);
}

START_TEST(shard_is_fifo) { dataset_file_is_fifo("shard-000000.sps", 40000, 0); }
END_TEST

START_TEST(manifest_is_fifo) { dataset_file_is_fifo("manifest.spm", 4000, 1); }
END_TEST

/* A class directory with one good JPEG and one FIFO named like a JPEG. */
static char *imagefolder_with_fifo(char **fifo)
{
    char *in = clit_path("%s/in", tmp), *cls = clit_path("%s/in/c", tmp);
    clit_mkdir(in);
    clit_mkdir(cls);
    size_t n;
    unsigned char *j = clit_jpeg(8, 8, 1, &n);
    char *good = clit_path("%s/a.jpg", cls);
    clit_write(good, j, n);
    *fifo = clit_path("%s/b.jpg", cls);
    ck_assert_int_eq(mkfifo(*fifo, 0644), 0);
    free(good);
    free(j);
    free(cls);
    return in;
}

/* Skipped with the reason by default; fatal under --strict. */
static void expect_skip_then_strict(const char *in, const char *fifo)
{
    char *out = clit_path("%s/out", tmp), *out2 = clit_path("%s/out2", tmp);
    clit_result r = clit_run("pack", in, "-o", out, NULL);
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.err, "1 skipped") && strstr(r.err, fifo) && strstr(r.err, FIFO_WHY), "%s", r.err);
    clit_result_free(&r);
    r = clit_run("pack", in, "-o", out2, "--strict", NULL);
    ck_assert_msg(r.status == 1, "status %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.err, fifo) && strstr(r.err, FIFO_WHY), "%s", r.err);
    clit_result_free(&r);
    free(out);
    free(out2);
}

START_TEST(imagefolder_fifo_jpg)
{
    char *fifo;
    char *in = imagefolder_with_fifo(&fifo);
    expect_skip_then_strict(in, fifo);
    free(fifo);
    free(in);
}
END_TEST

START_TEST(tsv_names_fifo)
{
    char *fifo;
    char *in = imagefolder_with_fifo(&fifo);
    char *tsv = clit_path("%s/list.tsv", tmp);
    const char *lines = "in/c/a.jpg\t0\nin/c/b.jpg\t1\n";
    clit_write(tsv, lines, strlen(lines));
    expect_skip_then_strict(tsv, fifo);
    /* The list itself a FIFO. */
    fifo_at(tsv);
    char *out = clit_path("%s/out3", tmp);
    clit_result r = clit_run("pack", tsv, "--from", "tsv", "-o", out, NULL);
    ck_assert_msg(r.status == 1, "status %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.err, tsv) && strstr(r.err, FIFO_WHY), "%s", r.err);
    clit_result_free(&r);
    free(out);
    free(tsv);
    free(fifo);
    free(in);
}
END_TEST

int main(void)
{
    char *probe = clit_tmpdir(), *p = clit_path("%s/f", probe);
    int can = mkfifo(p, 0644) == 0;
    clit_rmrf(probe);
    free(p);
    free(probe);
    if (!can) {
        fprintf(stderr, "skipped: cannot make a FIFO in the scratch directory\n");
        return 77;
    }
    Suite *s = suite_create("cli_fifo");
    TCase *tc = tcase_create("fifo");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, shard_is_fifo);
    tcase_add_test(tc, manifest_is_fifo);
    tcase_add_test(tc, imagefolder_fifo_jpg);
    tcase_add_test(tc, tsv_names_fifo);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
