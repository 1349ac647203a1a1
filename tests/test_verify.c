/* test_verify.c - sp_verify on sound datasets (report totals for directory, manifest, shard, shard directory) and on paths it cannot examine. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "test_util.h"

static uint64_t g_seed;

static int g_calls;
static void count_fault(const sp_fault *f, void *user)
{
    (void)f;
    (void)user;
    g_calls++;
}

START_TEST(report_totals)
{
    tu_data d = { 0 };
    d.schema = sp_schema_create();
    ck_assert(sp_schema_add(d.schema, "img", SP_FIELD_IMAGE, SP_DTYPE_U8, 0, NULL) == 0);
    uint64_t len = 16;
    ck_assert(sp_schema_add(d.schema, "tok", SP_FIELD_TOKENS, SP_DTYPE_U32, 1, &len) == 0);
    d.seed = g_seed;
    d.nsamples = 700;
    d.var_max = 900;
    d.compressible = true;
    char *dir = tu_tmpdir("verify");
    sp_params *p = tu_params("validate_images", "0", "shard_size", "64K", "block_size", "4K", NULL);
    sp_write_stats st = { .struct_size = sizeof st };
    ck_assert(tu_write_dataset(dir, &d, p, &st) == 0);
    ck_assert_uint_gt(st.shards, 1);

    sp_verify_report rep = { .struct_size = sizeof rep };
    g_calls = 0;
    ck_assert_int_eq(sp_verify(dir, NULL, count_fault, NULL, &rep), 0);
    ck_assert_int_eq(g_calls, 0);
    ck_assert_uint_eq(rep.faults, 0);
    ck_assert_uint_eq(rep.shards, st.shards);
    ck_assert_uint_eq(rep.blocks, st.blocks);
    ck_assert_uint_eq(rep.samples, st.samples);
    ck_assert_uint_eq(rep.bytes, st.stored_bytes);

    char *man = tu_join(dir, "manifest.spm");
    ck_assert_int_eq(sp_verify(man, p, NULL, NULL, &rep), 0);
    ck_assert_uint_eq(rep.samples, st.samples);
    ck_assert_int_eq(sp_verify(dir, NULL, NULL, NULL, NULL), 0); /* report is optional */

    size_t n;
    char **paths = tu_list_shards(dir, &n);
    uint64_t samples = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(sp_verify(paths[i], NULL, NULL, NULL, &rep), 0);
        ck_assert_uint_eq(rep.shards, 1);
        samples += rep.samples;
    }
    ck_assert_uint_eq(samples, st.samples);

    /* a directory without a manifest: every shard in it */
    ck_assert(unlink(man) == 0);
    ck_assert_int_eq(sp_verify(dir, NULL, NULL, NULL, &rep), 0);
    ck_assert_uint_eq(rep.shards, st.shards);
    ck_assert_uint_eq(rep.samples, st.samples);
    /* plus a file that only looks like a shard */
    char *junk = tu_join(dir, "junk.sps");
    tu_write_file(junk, "not a shard at all", 18);
    g_calls = 0;
    ck_assert_int_eq(sp_verify(dir, NULL, count_fault, NULL, &rep), SP_ECORRUPT);
    ck_assert_int_eq(g_calls, 1);
    ck_assert_uint_eq(rep.faults, 1);
    ck_assert_uint_eq(rep.samples, st.samples);
    ck_assert_int_eq(sp_verify(junk, NULL, count_fault, NULL, &rep), SP_ECORRUPT);

    free(junk);
    tu_free_list(paths, n);
    free(man);
    sp_params_destroy(p);
    tu_rmtree(dir);
    free(dir);
    sp_schema_destroy(d.schema);
}
END_TEST

START_TEST(unexaminable_paths)
{
    sp_verify_report rep = { .struct_size = sizeof rep };
    g_calls = 0;
    ck_assert_int_eq(sp_verify("/nonexistent/shardpack", NULL, count_fault, NULL, &rep), SP_ENOENT);
    ck_assert_msg(strstr(sp_last_error(), "/nonexistent/shardpack"), "%s", sp_last_error());
    ck_assert_int_eq(sp_verify(NULL, NULL, NULL, NULL, &rep), SP_EINVAL);
    char *dir = tu_tmpdir("verify");
    ck_assert_int_eq(sp_verify(dir, NULL, count_fault, NULL, &rep), SP_ENOENT);
    ck_assert_int_eq(g_calls, 0);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x5eed0009);
    Suite *s = suite_create("verify");
    TCase *tc = tu_tcase(s, "verify", 60);
    tcase_add_test(tc, report_totals);
    tcase_add_test(tc, unexaminable_paths);
    return tu_run(s, g_seed);
}
