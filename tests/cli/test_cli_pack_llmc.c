/* test_cli_pack_llmc.c - pack llm.c token files (uint16 and uint32) into T+1-token samples (by default the windows of all files in a seeded permutation, each whole and once); a file too short for one sample is listed as skipped. */
#include <check.h>
#include <stdint.h>
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

static uint32_t base_plus_k(uint32_t k, uint32_t base) { return base + k; }

/* Writes an llm.c file of count tokens (token k = base + k) of the given width. */
static char *write_tokens(const char *name, unsigned width, uint32_t count, uint32_t base,
                          long size_delta)
{
    char *path = clit_path("%s/%s", tmp, name);
    clit_write_llmc(path, width, count, base_plus_k, base, size_delta);
    return path;
}

static void check_sample(const char *ds, int index, uint32_t first, int n)
{
    char idx[16];
    snprintf(idx, sizeof idx, "%d", index);
    clit_result r = clit_run("cat", ds, "--index", idx, "--text", NULL);
    ck_assert_msg(r.status == 0, "cat: %s", r.err);
    char *p = r.out;
    for (int k = 0; k < n; k++) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        ck_assert_msg(end != p, "sample %d: only %d tokens", index, k);
        ck_assert_uint_eq(v, first + (uint32_t)k);
        p = end;
    }
    while (*p == '\n')
        p++;
    ck_assert_msg(*p == 0, "sample %d has more than %d tokens", index, n);
    clit_result_free(&r);
}

START_TEST(test_uint16)
{
    /* 23 tokens, T = 4: samples while i*4+4 < 23, i.e. i = 0..4 (5 samples); the second file
     * adds (9-1)/4 = 2. */
    char *a = write_tokens("a.bin", 2, 23, 100, 0);
    char *b = write_tokens("b.bin", 2, 9, 60000, 0);
    char *out = clit_path("%s/out", tmp);
    clit_result r = clit_run("pack", a, b, "-o", out, "--seq-len", "4", "--json", "--order", "source", NULL);
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    ck_assert_uint_eq(clit_json_u64(r.out, "samples"), 7);
    clit_result_free(&r);
    check_sample(out, 0, 100, 5);
    check_sample(out, 4, 116, 5);
    check_sample(out, 5, 60000, 5);
    check_sample(out, 6, 60004, 5);
    r = clit_run("inspect", out, "--json", NULL);
    ck_assert(strstr(r.out, "\"dtype\":\"uint16\"") != NULL);
    ck_assert(strstr(r.out, "\"shape\":[5]") != NULL);
    clit_result_free(&r);
    free(a);
    free(b);
    free(out);
}
END_TEST

START_TEST(test_uint32)
{
    char *a = write_tokens("big.bin", 4, 3000, 70000, 0);
    char *out = clit_path("%s/out", tmp);
    clit_result r = clit_run("pack", a, "-o", out, "--seq-len=64", "-q", "--order", "source", NULL);
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    clit_result_free(&r);
    r = clit_run("inspect", out, "--json", NULL);
    ck_assert_uint_eq(clit_json_u64(r.out, "samples"), (3000 - 1) / 64);
    ck_assert(strstr(r.out, "\"dtype\":\"uint32\"") != NULL);
    clit_result_free(&r);
    check_sample(out, 0, 70000, 65);
    check_sample(out, 45, 70000 + 45 * 64, 65);
    free(a);
    free(out);
}
END_TEST

/* The default order: the windows of both files permuted together, each whole, every one once;
 * the same seed gives the same files. */
START_TEST(test_shuffled)
{
    enum { NA = 124, NB = 2 }; /* (497 - 1) / 4 and (9 - 1) / 4 windows */
    char *a = write_tokens("a.bin", 2, 497, 0, 0);
    char *b = write_tokens("b.bin", 2, 9, 60000, 0);
    char *out = clit_path("%s/out", tmp), *shard = clit_path("%s/out/shard-000000.sps", tmp);
    int seen[NA + NB] = {0}, moved = 0;
    unsigned char *bytes[2];
    size_t len[2];
    for (int k = 0; k < 2; k++) {
        clit_result r = clit_run("pack", a, b, "-o", out, "--seq-len", "4", "-q", "--dataset-id", "3", "--overwrite",
                                 NULL);
        ck_assert_msg(r.status == 0, "pack: %s", r.err);
        clit_result_free(&r);
        bytes[k] = clit_read(shard, &len[k]);
    }
    ck_assert_msg(len[0] == len[1] && memcmp(bytes[0], bytes[1], len[0]) == 0, "the same seed gave other files");
    for (int i = 0; i < NA + NB; i++) {
        char idx[16];
        snprintf(idx, sizeof idx, "%d", i);
        clit_result r = clit_run("cat", out, "--index", idx, "--text", NULL);
        ck_assert_msg(r.status == 0, "cat: %s", r.err);
        unsigned long t0 = strtoul(r.out, NULL, 10);
        int w = t0 >= 60000 ? NA + (int)(t0 - 60000) / 4 : (int)t0 / 4;
        ck_assert_msg(t0 % 4 == 0 && w < NA + NB, "sample %d starts with token %lu", i, t0);
        clit_result_free(&r);
        check_sample(out, i, (uint32_t)t0, 5); /* the whole window, tokens t0 .. t0 + 4 */
        seen[w]++;
        moved += w != i;
    }
    for (int w = 0; w < NA + NB; w++)
        ck_assert_msg(seen[w] == 1, "window %d packed %d times", w, seen[w]);
    ck_assert_msg(moved > (NA + NB) / 2, "only %d windows moved", moved);
    free(bytes[0]);
    free(bytes[1]);
    free(shard);
    free(out);
    free(a);
    free(b);
}
END_TEST

/* Token 3 is 2^32 - 1 and token 4 is 2^31: packed as they are, refused by token_dtype=int32. */
static uint32_t big_at_3(uint32_t k, uint32_t unused)
{
    (void)unused;
    return k == 3 ? 0xFFFFFFFFu : k == 4 ? 0x80000000u : k;
}

START_TEST(test_uint32_beyond_int32)
{
    char *a = clit_path("%s/big.bin", tmp);
    clit_write_llmc(a, 4, 8, big_at_3, 0, 0);
    char *out = clit_path("%s/out", tmp);
    clit_result r = clit_run("pack", a, "-o", out, "--seq-len", "3", "-q", "--order", "source", NULL);
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    clit_result_free(&r);
    r = clit_run("cat", out, "--index", "0", "--text", NULL);
    ck_assert_msg(r.status == 0 && strstr(r.out, "4294967295"), "cat: %s%s", r.out, r.err);
    clit_result_free(&r);
    /* Loading them as int32 would give ids -1 and -2147483648: the sample is bad instead. */
    r = clit_run("bench", out, "--token-dtype", "int32", "--batch-size", "1", "--epochs", "1", "-q", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "shard-000000.sps: block 0, sample 0 (") &&
                      strstr(r.err, "tokens: token 4294967295 (position 3) does not fit int32"),
                  "bench: %s", r.err);
    clit_result_free(&r);
    r = clit_run("bench", out, "--batch-size", "1", "--epochs", "1", "-q", NULL);
    ck_assert_msg(r.status == 0, "bench, tokens stored: %s", r.err);
    clit_result_free(&r);
    free(a);
    free(out);
}
END_TEST

START_TEST(test_errors)
{
    char *a = write_tokens("a.bin", 2, 100, 0, 0);
    char *out = clit_path("%s/out", tmp);
    clit_result r = clit_run("pack", a, "-o", out, NULL);
    ck_assert_int_eq(r.status, 2); /* --seq-len missing */
    ck_assert(strstr(r.err, "--seq-len") != NULL);
    clit_result_free(&r);

    char *t = write_tokens("trunc.bin", 2, 100, 0, -3);
    r = clit_run("pack", t, "-o", out, "--seq-len", "8", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "trunc.bin") && strstr(r.err, "does not match"), "%s", r.err);
    clit_result_free(&r);

    char *w = write_tokens("wide.bin", 4, 100, 0, 0);
    r = clit_run("pack", a, w, "-o", out, "--seq-len", "8", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "width"), "%s", r.err);
    clit_result_free(&r);

    char *s = write_tokens("short.bin", 2, 5, 0, 0);
    r = clit_run("pack", s, "-o", out, "--seq-len", "8", NULL);
    ck_assert_int_eq(r.status, 1); /* no samples */
    clit_result_free(&r);
    char *m = clit_path("%s/manifest.spm", out);
    ck_assert(!clit_exists(m));

    /* A file too short for one sample beside one that has samples: listed as skipped, with why. */
    r = clit_run("pack", a, s, "-o", out, "--seq-len", "8", "--json", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_uint_eq(clit_json_u64(r.out, "samples"), 12);
    ck_assert_uint_eq(clit_json_u64(r.out, "skipped"), 1);
    ck_assert_msg(strstr(r.out, "short.bin") && strstr(r.out, "5 tokens, fewer than seq_len + 1 = 9"), "%s", r.out);
    clit_result_free(&r);
    char *out2 = clit_path("%s/out2", tmp);
    r = clit_run("pack", a, s, "-o", out2, "--seq-len", "8", "--strict", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "short.bin"), "%s", r.err);
    clit_result_free(&r);
    free(out2);

    free(m);
    free(s);
    free(w);
    free(t);
    free(a);
    free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-pack-llmc");
    TCase *tc = tcase_create("llmc");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_uint16);
    tcase_add_test(tc, test_shuffled);
    tcase_add_test(tc, test_uint32);
    tcase_add_test(tc, test_uint32_beyond_int32);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
