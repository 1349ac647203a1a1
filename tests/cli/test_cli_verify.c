/* test_cli_verify.c - verify: exit 0 on a sound dataset, 1 naming shard and block after damage. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "clit_util.h"
#include "shardpack.h"

static char *tmp;

static void setup(void) { tmp = clit_tmpdir(); }
static void teardown(void)
{
    clit_rmrf(tmp);
    free(tmp);
}

/* Packs 40 images into out with small blocks, so there are several. */
static char *make_dataset(void)
{
    char *in = clit_path("%s/in", tmp);
    clit_write_images(in, 40, 32, 32);
    char *out = clit_path("%s/out", tmp);
    clit_result r = clit_run("pack", in, "-o", out, "-q", "--block-size", "4K", NULL);
    ck_assert_msg(r.status == 0, "pack: %s", r.err);
    clit_result_free(&r);
    free(in);
    return out;
}

START_TEST(test_sound)
{
    char *out = make_dataset();
    clit_result r = clit_run("verify", out, NULL);
    ck_assert_msg(r.status == 0, "verify: %s%s", r.out, r.err);
    ck_assert(strstr(r.out, "OK") != NULL);
    clit_result_free(&r);
    r = clit_run("verify", out, "--json", NULL);
    ck_assert_int_eq(r.status, 0);
    ck_assert(clit_json_valid(r.out));
    ck_assert(strstr(r.out, "\"ok\":true") != NULL);
    const char *keys[] = {"ok", "shards", "blocks", "samples", "bytes", "faults"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        ck_assert_msg(clit_json_has_key(r.out, keys[i]), "no key %s", keys[i]);
    ck_assert_uint_eq(clit_json_u64(r.out, "samples"), 40);
    clit_result_free(&r);
    free(out);
}
END_TEST

START_TEST(test_flipped_byte)
{
    char *out = make_dataset();
    /* Find block 1 of the first shard through the library, and damage a byte inside it. */
    sp_dataset *d = NULL;
    ck_assert_int_eq(sp_dataset_open(out, NULL, &d), 0);
    ck_assert(sp_dataset_num_blocks(d) >= 2);
    sp_block_info bi = { .struct_size = sizeof bi };
    ck_assert_int_eq(sp_dataset_block_info(d, 1, &bi), 0);
    sp_shard_info si = { .struct_size = sizeof si };
    ck_assert_int_eq(sp_dataset_shard_info(d, bi.shard, &si), 0);
    char *shard = strdup(si.path);
    uint64_t at = bi.offset + bi.stored_bytes / 2, index = bi.index, sample = bi.first_sample;
    sp_dataset_close(d);

    size_t len;
    unsigned char *bytes = clit_read(shard, &len);
    ck_assert_ptr_nonnull(bytes);
    ck_assert(at < len);
    bytes[at] ^= 0x01;
    clit_write(shard, bytes, len);
    free(bytes);

    clit_result r = clit_run("verify", out, NULL);
    ck_assert_int_eq(r.status, 1);
    const char *base = strrchr(shard, '/') ? strrchr(shard, '/') + 1 : shard;
    char *want = clit_path("block %llu at byte", (unsigned long long)index);
    ck_assert_msg(strstr(r.out, base) && strstr(r.out, want), "verify said: %s", r.out);
    free(want);
    clit_result_free(&r);

    r = clit_run("verify", out, "--json", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert(clit_json_valid(r.out));
    ck_assert(strstr(r.out, "\"ok\":false") != NULL);
    ck_assert(clit_json_has_key(r.out, "code") && clit_json_has_key(r.out, "offset"));
    clit_result_free(&r);

    /* Reading a sample of the damaged block fails too, with a data error naming the shard. */
    char idx[32];
    snprintf(idx, sizeof idx, "%llu", (unsigned long long)sample);
    r = clit_run("cat", out, "--index", idx, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, base) != NULL, "%s", r.err);
    clit_result_free(&r);

    /* Given as "out/", the shard is still named out/shard-..., never out//shard-... */
    char *slash = clit_path("%s/", out), *named = clit_path("%s/%s", out, base);
    r = clit_run("verify", slash, NULL);
    ck_assert_msg(r.status == 1 && strstr(r.out, named) && !strstr(r.out, "//"), "verify said: %s", r.out);
    clit_result_free(&r);
    r = clit_run("cat", slash, "--index", idx, NULL);
    ck_assert_msg(r.status == 1 && strstr(r.err, named) && !strstr(r.err, "//"), "cat said: %s", r.err);
    clit_result_free(&r);
    free(slash);
    free(named);
    free(shard);
    free(out);
}
END_TEST

START_TEST(test_missing)
{
    char *p = clit_path("%s/nothing-here", tmp);
    clit_result r = clit_run("verify", p, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "shardpack: ") == r.err && strstr(r.err, "nothing-here"), "%s",
                  r.err);
    clit_result_free(&r);
    free(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-verify");
    TCase *tc = tcase_create("verify");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_sound);
    tcase_add_test(tc, test_flipped_byte);
    tcase_add_test(tc, test_missing);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
