/* test_truncate.c - a shard or manifest cut at any length fails to open with a clean format error, never crashes, never succeeds. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "test_util.h"

static uint64_t g_seed;

static bool clean_code(int rc)
{
    return rc == SP_ETRUNC || rc == SP_EFORMAT || rc == SP_ECORRUPT || rc == SP_ECHECKSUM;
}

static char *make_dataset(const char *tag, uint64_t nsamples, const char *block_size, sp_schema **schema)
{
    tu_data d = { 0 };
    d.schema = sp_schema_create();
    ck_assert(sp_schema_add(d.schema, "img", SP_FIELD_IMAGE, SP_DTYPE_U8, 0, NULL) == 0);
    ck_assert(sp_schema_add(d.schema, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) == 0);
    d.seed = g_seed;
    d.nsamples = nsamples;
    d.var_max = 600;
    sp_params *p = tu_params("validate_images", "0", "block_size", block_size, NULL);
    char *dir = tu_tmpdir(tag);
    ck_assert_msg(tu_write_dataset(dir, &d, p, NULL) == 0, "%s", sp_last_error());
    sp_params_destroy(p);
    *schema = d.schema;
    return dir;
}

/* Writes the first len bytes of full to path and checks that opening and verifying fail. */
static void expect_refused(const char *path, const uint8_t *full, uint64_t len, const char *open_path)
{
    tu_write_file(path, full, (size_t)len);
    sp_dataset *ds = NULL;
    int rc = sp_dataset_open(open_path, NULL, &ds);
    ck_assert_msg(rc != 0, "%s cut to %llu bytes opened", path, (unsigned long long)len);
    ck_assert_ptr_null(ds);
    ck_assert_msg(clean_code(rc), "%s cut to %llu bytes: %s (%s)", path, (unsigned long long)len, sp_error_name(rc),
                  sp_last_error());
    ck_assert_msg(sp_last_error()[0] != '\0', "no message for a %llu-byte cut", (unsigned long long)len);
    rc = sp_verify(open_path, NULL, NULL, NULL, NULL);
    ck_assert_msg(rc == SP_ECORRUPT, "verify of a %llu-byte cut: %s", (unsigned long long)len, sp_error_name(rc));
}

START_TEST(shard_every_length)
{
    sp_schema *s;
    char *dir = make_dataset("trunc", 50, "4K", &s);
    char *shard = tu_join(dir, "shard-000000.sps");
    size_t n;
    uint8_t *full = tu_read_file(shard, &n);
    ck_assert_uint_le(n, 64 * 1024);
    for (uint64_t len = 0; len < n; len++)
        expect_refused(shard, full, len, shard);
    /* Grown rather than cut: bytes appended after the trailer. */
    uint8_t *longer = calloc(1, n + 100);
    memcpy(longer, full, n);
    tu_write_file(shard, longer, n + 100);
    sp_dataset *ds = NULL;
    ck_assert(sp_dataset_open(shard, NULL, &ds) != 0);
    free(longer);
    free(full);
    free(shard);
    tu_rmtree(dir);
    free(dir);
    sp_schema_destroy(s);
}
END_TEST

/* A shard larger than the first tail read (64 KiB): cuts at a stride and around the tail edges. */
START_TEST(large_shard_stride)
{
    sp_schema *s;
    char *dir = make_dataset("trunc", 3000, "16K", &s);
    char *shard = tu_join(dir, "shard-000000.sps");
    size_t n;
    uint8_t *full = tu_read_file(shard, &n);
    ck_assert_uint_gt(n, 256 * 1024);
    for (uint64_t len = 0; len < n; len += 997)
        expect_refused(shard, full, len, shard);
    for (uint64_t k = 1; k <= 70; k++)
        expect_refused(shard, full, n - k, shard);
    for (uint64_t len = 65536 - 80; len < 65536 + 80; len++)
        expect_refused(shard, full, len, shard);
    /* Through the manifest: opens (lazily), but no read of a block of the cut shard succeeds. */
    tu_write_file(shard, full, n - 1);
    sp_dataset *ds;
    ck_assert(sp_dataset_open(dir, NULL, &ds) == 0);
    sp_block *b = NULL;
    int rc = sp_dataset_read_block(ds, 0, &b);
    ck_assert_msg(rc != 0 && b == NULL, "read from a cut shard: %s", sp_error_name(rc));
    ck_assert_msg(strstr(sp_last_error(), shard), "%s", sp_last_error());
    sp_dataset_close(ds);
    ck_assert(sp_verify(dir, NULL, NULL, NULL, NULL) == SP_ECORRUPT);
    free(full);
    free(shard);
    tu_rmtree(dir);
    free(dir);
    sp_schema_destroy(s);
}
END_TEST

START_TEST(manifest_every_length)
{
    sp_schema *s;
    char *dir = make_dataset("trunc", 50, "4K", &s);
    char *man = tu_join(dir, "manifest.spm");
    size_t n;
    uint8_t *full = tu_read_file(man, &n);
    for (uint64_t len = 0; len < n; len++) {
        expect_refused(man, full, len, dir);
        /* Opened by its own path as well; an empty or magic-less file is read as a shard then. */
        sp_dataset *ds = NULL;
        int rc = sp_dataset_open(man, NULL, &ds);
        ck_assert_msg(rc != 0 && ds == NULL, "manifest cut to %llu opened by path", (unsigned long long)len);
    }
    free(full);
    free(man);
    tu_rmtree(dir);
    free(dir);
    sp_schema_destroy(s);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x5eed0005);
    Suite *s = suite_create("truncate");
    TCase *tc = tu_tcase(s, "truncate", 180);
    tcase_add_test(tc, shard_every_length);
    tcase_add_test(tc, large_shard_stride);
    tcase_add_test(tc, manifest_every_length);
    return tu_run(s, g_seed);
}
