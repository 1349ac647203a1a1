/* test_rotation.c - a small shard_size rotates shards: each stays within it unless one block is larger, counts add up, and every shard stands alone. */
#include <stdio.h>
#include <stdlib.h>

#include "test_util.h"

static uint64_t g_seed;

/* Checks every shard of dir against shard_size and the dataset's totals. */
static void check_shards(const char *dir, const tu_data *d, uint64_t shard_size, const sp_write_stats *st,
                         uint64_t min_shards)
{
    sp_dataset *ds;
    ck_assert_msg(sp_dataset_open(dir, NULL, &ds) == 0, "%s", sp_last_error());
    uint64_t nshards = sp_dataset_num_shards(ds);
    ck_assert_msg(nshards >= min_shards, "only %llu shards", (unsigned long long)nshards);
    ck_assert_uint_eq(nshards, st->shards);
    ck_assert_uint_eq(sp_dataset_num_blocks(ds), st->blocks);
    ck_assert_uint_eq(sp_dataset_num_samples(ds), d->nsamples);
    uint64_t blocks = 0, samples = 0, bytes = 0;
    for (uint64_t s = 0; s < nshards; s++) {
        sp_shard_info si = { .struct_size = sizeof si };
        ck_assert(sp_dataset_shard_info(ds, s, &si) == 0);
        ck_assert_uint_eq(si.first_block, blocks);
        ck_assert_uint_eq(si.first_sample, samples);
        ck_assert_uint_eq(si.file_bytes, tu_file_size(si.path));
        if (si.file_bytes > shard_size) {
            /* Allowed only for a shard holding a single block too large to fit with the rest. */
            ck_assert_msg(si.blocks == 1, "shard %llu: %llu bytes > shard_size %llu with %llu blocks (seed %llu)",
                          (unsigned long long)s, (unsigned long long)si.file_bytes,
                          (unsigned long long)shard_size, (unsigned long long)si.blocks,
                          (unsigned long long)d->seed);
        }
        /* Each shard is a valid dataset on its own. */
        sp_verify_report rep = { .struct_size = sizeof rep };
        ck_assert_msg(sp_verify(si.path, NULL, NULL, NULL, &rep) == 0, "%s", sp_last_error());
        ck_assert_uint_eq(rep.samples, si.samples);
        ck_assert_uint_eq(rep.blocks, si.blocks);
        sp_dataset *one;
        ck_assert(sp_dataset_open(si.path, NULL, &one) == 0);
        ck_assert_uint_eq(sp_dataset_num_samples(one), si.samples);
        ck_assert_uint_eq(sp_dataset_num_blocks(one), si.blocks);
        sp_dataset_close(one);
        blocks += si.blocks;
        samples += si.samples;
        bytes += si.file_bytes;
    }
    ck_assert_uint_eq(blocks, sp_dataset_num_blocks(ds));
    ck_assert_uint_eq(samples, d->nsamples);
    ck_assert_uint_eq(bytes, st->file_bytes);
    tu_check_dataset(ds, d, 0);
    sp_dataset_close(ds);
}

START_TEST(many_small_shards)
{
    tu_data d = { 0 };
    d.schema = sp_schema_create();
    uint64_t len = 32;
    ck_assert(sp_schema_add(d.schema, "tok", SP_FIELD_TOKENS, SP_DTYPE_U16, 1, &len) == 0);
    ck_assert(sp_schema_add(d.schema, "blob", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL) == 0);
    d.seed = g_seed;
    d.nsamples = 3000;
    d.var_max = 700;
    sp_params *p = tu_params("validate_images", "0", "shard_size", "64K", "block_size", "4K", "compress", "auto", NULL);
    char *dir = tu_tmpdir("rotation");
    sp_write_stats st = { .struct_size = sizeof st };
    ck_assert_msg(tu_write_dataset(dir, &d, p, &st) == 0, "%s", sp_last_error());
    check_shards(dir, &d, 64 * 1024, &st, 10);
    ck_assert_uint_eq(tu_count_files(dir, NULL), st.shards + 1);
    tu_rmtree(dir);
    free(dir);
    sp_params_destroy(p);
    sp_schema_destroy(d.schema);
}
END_TEST

/* Samples larger than a shard get a shard of their own; the rest still respect the bound. */
START_TEST(blocks_larger_than_shards)
{
    tu_data d = { 0 };
    d.schema = sp_schema_create();
    ck_assert(sp_schema_add(d.schema, "img", SP_FIELD_IMAGE, SP_DTYPE_U8, 0, NULL) == 0);
    d.seed = g_seed + 1;
    d.nsamples = 400;
    d.var_max = 2000;
    d.var_large = 100 * 1024;
    sp_params *p = tu_params("validate_images", "0", "shard_size", "64K", "block_size", "8K", "compress", "none", NULL);
    char *dir = tu_tmpdir("rotation");
    sp_write_stats st = { .struct_size = sizeof st };
    ck_assert_msg(tu_write_dataset(dir, &d, p, &st) == 0, "%s", sp_last_error());
    check_shards(dir, &d, 64 * 1024, &st, 5);
    tu_rmtree(dir);
    free(dir);
    sp_params_destroy(p);
    sp_schema_destroy(d.schema);
}
END_TEST

/* The largest schema the format allows (64 fields, 63-byte names, 8 dimensions) and sizeable
 * metadata: the index grows, and the shard must still fit shard_size. */
START_TEST(large_index_stays_within_bound)
{
    tu_data d = { 0 };
    d.schema = sp_schema_create();
    uint64_t shape[SP_MAX_DIMS] = { 1, 1, 1, 1, 1, 1, 1, 1 };
    for (int f = 0; f < SP_MAX_FIELDS; f++) {
        char name[SP_MAX_NAME + 1];
        memset(name, 'a' + f % 26, SP_MAX_NAME);
        snprintf(name, 4, "%03d", f);
        name[3] = '_';
        name[SP_MAX_NAME] = '\0';
        ck_assert_msg(sp_schema_add(d.schema, name, SP_FIELD_TENSOR, SP_DTYPE_U8, SP_MAX_DIMS, shape) == 0, "%s",
                      sp_last_error());
    }
    d.seed = g_seed + 2;
    d.nsamples = 6000;
    sp_params *p = tu_params("validate_images", "0", "shard_size", "64K", "block_size", "4K", "compress", "none", NULL);
    char *dir = tu_tmpdir("rotation");
    sp_writer *w;
    ck_assert(sp_writer_open(dir, d.schema, p, &w) == 0);
    static char meta[9000];
    memset(meta, 'm', sizeof meta);
    ck_assert(sp_writer_set_meta(w, "class_names", meta, sizeof meta) == 0);
    ck_assert(tu_add_samples(w, &d, 0, d.nsamples) == 0);
    ck_assert(sp_writer_finish(w) == 0);
    sp_write_stats st = { .struct_size = sizeof st };
    ck_assert(sp_writer_stats(w, &st) == 0);
    sp_writer_destroy(w);
    check_shards(dir, &d, 64 * 1024, &st, 4);
    tu_rmtree(dir);
    free(dir);
    sp_params_destroy(p);
    sp_schema_destroy(d.schema);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x5eed0002);
    Suite *s = suite_create("rotation");
    TCase *tc = tu_tcase(s, "rotation", 120);
    tcase_add_test(tc, many_small_shards);
    tcase_add_test(tc, blocks_larger_than_shards);
    tcase_add_test(tc, large_index_stays_within_bound);
    return tu_run(s, g_seed);
}
