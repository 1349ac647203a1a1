/* test_cli_escape.c - names from input files (a tar member with a newline, terminal escape sequences and bytes that are not UTF-8) reach the terminal escaped, in the summary, the skip list and errors, and JSON escapes them; out of memory under a ulimit -v names what was being allocated, for which file, its size and what to lower. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clit_util.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

static char *tmp;

static void setup(void) { tmp = clit_tmpdir(); }
static void teardown(void)
{
    clit_rmrf(tmp);
    free(tmp);
}

#define FORGED "a\n[forged] line\x1b]0;title\x07"
#define FORGED_ESCAPED "a\\n[forged] line\\x1b]0;title\\x07"
#define NOT_UTF8 "c\xff\xfe"

/* The first byte of s (n bytes) that a terminal acts on (a C0 control other than the newline
 * ending a line, or DEL), or -1. */
static long first_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\n') || c == 0x7F)
            return (long)i;
    }
    return -1;
}

/* A tar with one good sample and two whose names are hostile: a non-JPEG image (skipped as not a
 * JPEG) and a JPEG without a label. */
static char *hostile_tar(void)
{
    char *tar = clit_path("%s/in.tar", tmp);
    FILE *f = fopen(tar, "wb");
    ck_assert_ptr_nonnull(f);
    size_t n;
    unsigned char *j = clit_jpeg(8, 8, 3, &n);
    clit_tar_add(f, "good.jpg", j, n, 0);
    clit_tar_add(f, "good.cls", "1", 1, 0);
    clit_tar_add(f, FORGED ".jpg", "not a jpeg", 10, 0);
    clit_tar_add(f, FORGED ".cls", "2", 1, 0);
    clit_tar_add(f, NOT_UTF8 ".jpg", j, n, 0);
    clit_tar_end(f);
    fclose(f);
    free(j);
    return tar;
}

START_TEST(names_escaped_on_the_terminal)
{
    char *tar = hostile_tar(), *out = clit_path("%s/out", tmp);
    clit_result r = clit_run("pack", tar, "-o", out, NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    long at = first_control(r.err, strlen(r.err));
    ck_assert_msg(at < 0, "raw control byte 0x%02x at %ld of: %s", at < 0 ? 0 : (unsigned char)r.err[at], at, r.err);
    ck_assert_msg(!strstr(r.err, "\n[forged]"), "a forged line: %s", r.err);
    ck_assert_msg(strstr(r.err, ":" FORGED_ESCAPED ": not a decodable image"), "%s", r.err);
    ck_assert_msg(strstr(r.err, "c\\xff\\xfe"), "%s", r.err);
    clit_result_free(&r);

    /* The same names in an error (--strict stops at the first bad item: the forged one, in source
     * order). */
    char *out2 = clit_path("%s/out2", tmp);
    r = clit_run("pack", tar, "-o", out2, "--strict", "--order", "source", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(first_control(r.err, strlen(r.err)) < 0 && strstr(r.err, FORGED_ESCAPED), "%s", r.err);
    ck_assert_msg(r.err[strlen(r.err) - 1] == '\n' && !strchr(r.err, '\n')[1], "more than one line: %s", r.err);
    clit_result_free(&r);

    /* A path given on the command line is escaped in messages too. */
    char *odd = clit_path("%s/x\x1b[2Jy.tar", tmp);
    r = clit_run("pack", odd, "-o", out2, NULL);
    ck_assert_int_ne(r.status, 0);
    ck_assert_msg(first_control(r.err, strlen(r.err)) < 0 && strstr(r.err, "x\\x1b[2Jy.tar"), "%s", r.err);
    clit_result_free(&r);
    free(odd);
    free(out2);
    free(out);
    free(tar);
}
END_TEST

START_TEST(names_escaped_in_json)
{
    char *tar = hostile_tar(), *out = clit_path("%s/out", tmp);
    clit_result r = clit_run("pack", tar, "-o", out, "--json", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_msg(clit_json_valid(r.out), "%s", r.out);
    ck_assert_msg(first_control(r.out, r.outlen) < 0, "raw control byte in: %s", r.out);
    ck_assert_msg(strstr(r.out, ":a\\n[forged] line\\u001b]0;title\\u0007\""), "%s", r.out);
    ck_assert_msg(strstr(r.out, ":c\xEF\xBF\xBD\xEF\xBF\xBD\""), "%s", r.out); /* U+FFFD for each */
    ck_assert_uint_eq(clit_json_u64(r.out, "skipped"), 2);
    clit_result_free(&r);
    free(out);
    free(tar);
}
END_TEST

static uint32_t token(uint32_t k, uint32_t arg) { return (k + arg) % 50000; }

/* Runs the tool under `ulimit -v kib` with the arguments. */
static clit_result run_limited(unsigned long kib, const char *args)
{
    char *cmd = clit_path("ulimit -v %lu && exec \"$SHARDPACK_CLI\" %s", kib, args);
    const char *argv[] = { "sh", "-c", cmd, NULL };
    clit_result r = clit_run_prog("/bin/sh", NULL, argv);
    free(cmd);
    return r;
}

START_TEST(out_of_memory_says_what_and_why)
{
#ifdef SANITIZED
    fprintf(stderr, "cli-escape: the out-of-memory messages are not checked under a sanitizer: its shadow memory "
                    "needs more address space than any ulimit -v leaves\n");
    return;
#endif
    /* The import's allocation (in the library): a 200 MB (sparse) image file read whole under a
     * 128 MiB limit. */
    char *in = clit_path("%s/in", tmp), *cls = clit_path("%s/in/c", tmp), *big = clit_path("%s/in/c/big.jpg", tmp);
    clit_mkdir(in);
    clit_mkdir(cls);
    clit_write(big, "", 0);
    ck_assert_int_eq(truncate(big, 200 << 20), 0);
    char *args = clit_path("pack '%s' -o '%s/out'", in, tmp);
    clit_result r = run_limited(128 << 10, args);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "packing ") && strstr(r.err, "big.jpg") && strstr(r.err, "allocating 209715201 bytes") &&
                      strstr(r.err, "ulimit -v") && strstr(r.err, "lower"),
                  "%s", r.err);
    clit_result_free(&r);
    free(args);

    /* The library's: a loader whose batch ring (4104 slots of a batch of all 4032 260-byte
     * samples: a batch holds no more than the epoch) is more than a 1 GiB limit holds, though
     * host_memory promises 8 GiB. */
    char *ds = clit_path("%s/ds", tmp), *bin = clit_path("%s/t.bin", tmp);
    clit_write_llmc(bin, 2, 65 * 4032 + 1, token, 0, 0);
    args = clit_path("pack '%s' --seq-len 64 -o '%s' -q", bin, ds);
    r = run_limited(1 << 20, args);
    ck_assert_msg(r.status == 0, "%s", r.err);
    clit_result_free(&r);
    free(args);
    args = clit_path("bench '%s' --host-memory 8G --batch-size 1048576 --prefetch 4096 --threads 1", ds);
    r = run_limited(1 << 20, args);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "shard-000000.sps: out of memory allocating the loader's batch ring") &&
                      strstr(r.err, "bytes") && strstr(r.err, "lower host_memory"),
                  "%s", r.err);
    clit_result_free(&r);
    free(args);
    free(ds);
    free(bin);
    free(big);
    free(cls);
    free(in);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli_escape");
    TCase *tc = tcase_create("escape");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, names_escaped_on_the_terminal);
    tcase_add_test(tc, names_escaped_in_json);
    tcase_add_test(tc, out_of_memory_says_what_and_why);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
