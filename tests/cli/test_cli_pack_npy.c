/* test_cli_pack_npy.c - pack .npy arrays as tensor fields (rows in a seeded permutation by default, every file's row k together); refuse big-endian, Fortran, mismatches, bools other than 0 and 1. */
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

/* Writes a version-1.0 .npy with the given header dict and data. */
static char *write_npy(const char *name, const char *dict, const void *data, size_t len, int v2)
{
    size_t pre = v2 ? 12 : 10;
    size_t hlen = strlen(dict) + 1;
    size_t total = (pre + hlen + 63) / 64 * 64;
    hlen = total - pre;
    unsigned char *buf = calloc(1, total + len);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = v2 ? 2 : 1;
    buf[7] = 0;
    buf[8] = (unsigned char)(hlen & 0xFF);
    buf[9] = (unsigned char)(hlen >> 8);
    memset(buf + pre, ' ', hlen);
    memcpy(buf + pre, dict, strlen(dict));
    buf[total - 1] = '\n';
    memcpy(buf + total, data, len);
    char *path = clit_path("%s/%s", tmp, name);
    clit_write(path, buf, total + len);
    free(buf);
    return path;
}

START_TEST(test_npy)
{
    float x[4][2][3];
    for (int i = 0; i < 24; i++)
        (&x[0][0][0])[i] = (float)i * 0.5f;
    int64_t labels[4] = {5, -2, 9, 0};
    uint16_t h[4] = {1, 2, 3, 65535};
    char *xp = write_npy("feat ures.npy", "{'descr': '<f4', 'fortran_order': False, "
                                          "'shape': (4, 2, 3), }", x, sizeof x, 0);
    char *lp = write_npy("labels.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }",
                         labels, sizeof labels, 1);
    char *hp = write_npy("h.npy", "{\"descr\": \"<u2\", \"fortran_order\": True, \"shape\": (4L,)}",
                         h, sizeof h, 0);
    char *out = clit_path("%s/out", tmp);
    clit_result r = clit_run("pack", xp, lp, hp, "-o", out, "--json", "--order", "source", NULL);
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    ck_assert_uint_eq(clit_json_u64(r.out, "samples"), 4);
    clit_result_free(&r);

    r = clit_run("inspect", out, "--json", NULL);
    ck_assert(clit_json_valid(r.out));
    ck_assert_msg(strstr(r.out, "\"name\":\"feat_ures\",\"kind\":\"tensor\",\"dtype\":\"float32\","
                                "\"shape\":[2,3]"),
                  "%s", r.out);
    ck_assert(strstr(r.out, "\"name\":\"labels\",\"kind\":\"tensor\",\"dtype\":\"int64\","
                            "\"shape\":[]"));
    clit_result_free(&r);

    r = clit_run("cat", out, "--index", "2", "--field", "feat_ures", "--text", NULL);
    ck_assert_int_eq(r.status, 0);
    char *p = r.out;
    for (int k = 0; k < 6; k++) {
        char *end;
        double v = strtod(p, &end);
        ck_assert(end != p);
        ck_assert(v == (double)(12 + k) * 0.5);
        p = end;
    }
    clit_result_free(&r);
    r = clit_run("cat", out, "--index", "1", "--field", "labels", "--text", NULL);
    ck_assert_int_eq(atol(r.out), -2);
    clit_result_free(&r);
    r = clit_run("cat", out, "--index", "3", "--field", "2", "--text", NULL);
    ck_assert_int_eq(atol(r.out), 65535);
    clit_result_free(&r);
    free(xp);
    free(lp);
    free(hp);
    free(out);
}
END_TEST

/* The default order: the rows of all the files permuted together (sample k holds row perm[k] of
 * every file), seeded: the same seed gives the same files, another seed another order. */
START_TEST(test_npy_shuffled)
{
    enum { ROWS = 200 };
    int32_t x[ROWS][3], y[ROWS];
    for (int i = 0; i < ROWS; i++) {
        for (int k = 0; k < 3; k++)
            x[i][k] = 1000 * i + k;
        y[i] = -i;
    }
    char *xp = write_npy("x.npy", "{'descr': '<i4', 'fortran_order': False, 'shape': (200, 3), }", x, sizeof x, 0);
    char *yp = write_npy("y.npy", "{'descr': '<i4', 'fortran_order': False, 'shape': (200,), }", y, sizeof y, 0);
    int seen[ROWS] = {0}, moved = 0;
    char *out = clit_path("%s/out", tmp), *shard = clit_path("%s/out/shard-000000.sps", tmp);
    unsigned char *bytes[3];
    size_t len[3];
    for (int k = 0; k < 3; k++) { /* seeds 0, 0 and 1 into the same place: the same command line */
        clit_result r = clit_run("pack", xp, yp, "-o", out, "-q", "--dataset-id", "9", "--overwrite", "--order-seed",
                                 k == 2 ? "1" : "0", NULL);
        ck_assert_msg(r.status == 0, "pack: %s", r.err);
        clit_result_free(&r);
        bytes[k] = clit_read(shard, &len[k]);
        for (int i = 0; k == 0 && i < ROWS; i++) {
            char idx[16];
            snprintf(idx, sizeof idx, "%d", i);
            r = clit_run("cat", out, "--index", idx, "--field", "x", "--text", NULL);
            ck_assert_int_eq(r.status, 0);
            long a, b, c;
            ck_assert_int_eq(sscanf(r.out, "%ld %ld %ld", &a, &b, &c), 3);
            clit_result_free(&r);
            long row = a / 1000;
            ck_assert_msg(row >= 0 && row < ROWS && b == a + 1 && c == a + 2 && a % 1000 == 0, "sample %d: %ld %ld %ld",
                          i, a, b, c);
            r = clit_run("cat", out, "--index", idx, "--field", "y", "--text", NULL);
            ck_assert_msg(atol(r.out) == -row, "sample %d: x is row %ld, y is row %ld", i, row, -atol(r.out));
            clit_result_free(&r);
            seen[row]++;
            moved += row != i;
        }
    }
    for (int i = 0; i < ROWS; i++)
        ck_assert_msg(seen[i] == 1, "row %d packed %d times", i, seen[i]);
    ck_assert_msg(moved > ROWS / 2, "only %d of %d rows moved", moved, ROWS);
    ck_assert_msg(len[0] == len[1] && memcmp(bytes[0], bytes[1], len[0]) == 0, "the same seed gave other files");
    ck_assert_msg(len[0] != len[2] || memcmp(bytes[0], bytes[2], len[0]) != 0, "another seed gave the same files");
    for (int k = 0; k < 3; k++)
        free(bytes[k]);
    free(shard);
    free(xp);
    free(yp);
    free(out);
}
END_TEST

START_TEST(test_npy_refused)
{
    float x[6] = {0};
    char *out = clit_path("%s/out", tmp);
    char *be = write_npy("be.npy", "{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }",
                         x, sizeof x, 0);
    clit_result r = clit_run("pack", be, "-o", out, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "be.npy") && strstr(r.err, "big-endian"), "%s", r.err);
    clit_result_free(&r);

    char *fo = write_npy("fo.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
                         x, sizeof x, 0);
    r = clit_run("pack", fo, "-o", out, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "fortran"), "%s", r.err);
    clit_result_free(&r);

    char *sz = write_npy("sz.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (7,), }",
                         x, sizeof x, 0);
    r = clit_run("pack", sz, "-o", out, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "sz.npy") && strstr(r.err, "size"), "%s", r.err);
    clit_result_free(&r);

    char *a = write_npy("a.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }",
                        x, sizeof x, 0);
    char *b = write_npy("b.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }",
                        x, sizeof x, 0);
    r = clit_run("pack", a, b, "-o", out, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "first axis"), "%s", r.err);
    clit_result_free(&r);

    char *m = clit_path("%s/manifest.spm", out);
    ck_assert(!clit_exists(m));
    free(m);
    free(a);
    free(b);
    free(sz);
    free(fo);
    free(be);
    free(out);
}
END_TEST

/* |b1 arrays: 0 and 1 are packed as they are; any other byte refuses the pack, naming the file and
 * the element's index in the whole array. */
START_TEST(test_npy_bool)
{
    uint8_t flags[3][4] = {{0, 1, 1, 0}, {1, 1, 1, 1}, {0, 0, 0, 1}};
    char *ok = write_npy("flags.npy", "{'descr': '|b1', 'fortran_order': False, 'shape': (3, 4), }", flags,
                         sizeof flags, 0);
    char *out = clit_path("%s/out", tmp);
    clit_result r = clit_run("pack", ok, "-o", out, "--order", "source", NULL);
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    clit_result_free(&r);
    r = clit_run("cat", out, "--index", "2", "--field", "flags", "--text", NULL);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "0\n0\n0\n1\n");
    clit_result_free(&r);
    r = clit_run("verify", out, NULL);
    ck_assert_msg(r.status == 0, "verify: %s", r.err);
    clit_result_free(&r);

    static const struct {
        uint8_t value;
        int row, col;
        const char *want;
    } bad[] = { { 2, 1, 2, "element 6 (row 1) is 2" }, { 255, 2, 3, "element 11 (row 2) is 255" } };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        uint8_t evil[3][4];
        memcpy(evil, flags, sizeof evil);
        evil[bad[k].row][bad[k].col] = bad[k].value;
        char *path = write_npy("evil.npy", "{'descr': '|b1', 'fortran_order': False, 'shape': (3, 4), }", evil,
                               sizeof evil, 0);
        char *out2 = clit_path("%s/out%zu", tmp, k + 2);
        r = clit_run("pack", path, "-o", out2, NULL);
        ck_assert_msg(r.status == 1, "value %u packed: %s", bad[k].value, r.err);
        ck_assert_msg(strstr(r.err, "evil.npy") && strstr(r.err, bad[k].want), "%s", r.err);
        clit_result_free(&r);
        char *m = clit_path("%s/manifest.spm", out2);
        ck_assert(!clit_exists(m));
        free(m);
        free(out2);
        free(path);
    }
    free(ok);
    free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-pack-npy");
    TCase *tc = tcase_create("npy");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_npy);
    tcase_add_test(tc, test_npy_shuffled);
    tcase_add_test(tc, test_npy_refused);
    tcase_add_test(tc, test_npy_bool);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
