/* test_cli_pack_wds.c - pack WebDataset tars: GNU long names, pax paths, incomplete samples. */
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

START_TEST(test_wds)
{
    char *tar = clit_path("%s/train-000.tar", tmp), *out = clit_path("%s/out", tmp);
    FILE *f = fopen(tar, "wb");
    ck_assert_ptr_nonnull(f);
    unsigned char *j[3];
    size_t n[3];
    for (int i = 0; i < 3; i++)
        j[i] = clit_jpeg(10, 10, (unsigned)i + 1, &n[i]);

    char longdir[200];
    memset(longdir, 'd', 120);
    longdir[120] = 0;
    char *long_jpg = clit_path("%s/sample_long_name.JPG", longdir);
    char *long_cls = clit_path("%s/sample_long_name.cls", longdir);
    char *pax_jpg = clit_path("%s/pax000.jpeg", longdir);
    char *pax_cls = clit_path("%s/pax000.cls", longdir);

    clit_tar_add(f, "s/000.jpg", j[0], n[0], 0);
    clit_tar_add(f, "s/000.cls", "3\n", 2, 0);
    clit_tar_add(f, "s/000.json", "{}", 2, 0);         /* ignored modality */
    clit_tar_add(f, long_jpg, j[1], n[1], 0);          /* GNU 'L' long name */
    clit_tar_add(f, long_cls, " 42 ", 4, 0);
    clit_tar_add(f, "s/001.jpg", j[2], n[2], 0);       /* no label: skipped */
    clit_tar_add(f, pax_jpg, j[2], n[2], 1);           /* pax path record */
    clit_tar_add(f, pax_cls, "-1", 2, 1);
    clit_tar_add(f, "s/002.cls", "5", 1, 0);           /* no image: skipped */
    clit_tar_end(f);
    fclose(f);

    clit_result r = clit_run("pack", tar, "-o", out, "--json", NULL);
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    ck_assert(clit_json_valid(r.out));
    ck_assert_uint_eq(clit_json_u64(r.out, "samples"), 3);
    ck_assert_uint_eq(clit_json_u64(r.out, "skipped"), 2);
    ck_assert_msg(strstr(r.out, "s/001") && strstr(r.out, "s/002"), "%s", r.out);
    clit_result_free(&r);

    const unsigned char *want[3] = {j[0], j[1], j[2]};
    const size_t wantn[3] = {n[0], n[1], n[2]};
    const long labels[3] = {3, 42, -1};
    for (int i = 0; i < 3; i++) {
        char idx[8];
        snprintf(idx, sizeof idx, "%d", i);
        r = clit_run("cat", out, "--index", idx, NULL);
        ck_assert_int_eq(r.status, 0);
        ck_assert_msg(r.outlen == wantn[i] && memcmp(r.out, want[i], wantn[i]) == 0,
                      "sample %d differs", i);
        clit_result_free(&r);
        r = clit_run("cat", out, "--index", idx, "--field", "label", "--text", NULL);
        ck_assert_int_eq(atol(r.out), labels[i]);
        clit_result_free(&r);
    }

    r = clit_run("pack", tar, "-o", out, "--overwrite", "--strict", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "s/001") && strstr(r.err, ".cls"), "%s", r.err);
    clit_result_free(&r);

    for (int i = 0; i < 3; i++)
        free(j[i]);
    free(long_jpg);
    free(long_cls);
    free(pax_jpg);
    free(pax_cls);
    free(tar);
    free(out);
}
END_TEST

START_TEST(test_corrupt_tar)
{
    char *tar = clit_path("%s/bad.tar", tmp), *out = clit_path("%s/out", tmp);
    FILE *f = fopen(tar, "wb");
    size_t n;
    unsigned char *j = clit_jpeg(10, 10, 1, &n);
    clit_tar_add(f, "a.jpg", j, n, 0);
    clit_tar_add(f, "a.cls", "1", 1, 0);
    clit_tar_end(f);
    fclose(f);
    free(j);

    /* A damaged header checksum is a data error naming the file and the byte. */
    size_t len;
    unsigned char *bytes = clit_read(tar, &len);
    bytes[0] ^= 0x20;
    clit_write(tar, bytes, len);
    clit_result r = clit_run("pack", tar, "-o", out, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "bad.tar") && strstr(r.err, "checksum"), "%s", r.err);
    clit_result_free(&r);

    /* A member whose data runs past the end of the file. */
    bytes[0] ^= 0x20;
    clit_write(tar, bytes, 700);
    r = clit_run("pack", tar, "-o", out, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "truncated"), "%s", r.err);
    clit_result_free(&r);
    free(bytes);
    free(tar);
    free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-pack-wds");
    TCase *tc = tcase_create("wds");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_wds);
    tcase_add_test(tc, test_corrupt_tar);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
