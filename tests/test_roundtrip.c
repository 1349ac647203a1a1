/* test_roundtrip.c - seeded random schemas, sizes, block sizes and codecs written and read back byte-identical through every way of opening a dataset. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "test_util.h"

static uint64_t g_seed;

static const char *const compress_names[] = { "auto", "zstd", "none" };

/* Reads d back through every open path: directory, manifest file, each shard alone, the shard list,
 * and the directory once its manifest is gone. */
static void check_all_opens(const char *dir, const tu_data *d, const char *meta_val)
{
    unsigned long long seed = (unsigned long long)d->seed;
    sp_dataset *ds = NULL;
    int rc = sp_dataset_open(dir, NULL, &ds);
    ck_assert_msg(rc == 0, "seed %llu: open dir: %s", seed, sp_last_error());
    ck_assert_uint_eq(sp_dataset_num_samples(ds), d->nsamples);
    tu_check_dataset(ds, d, 0);
    const void *mv;
    size_t ml;
    ck_assert(sp_dataset_meta_get(ds, "source", &mv, &ml) == 0);
    ck_assert(ml == strlen(meta_val) && memcmp(mv, meta_val, ml) == 0);
    uint64_t nshards = sp_dataset_num_shards(ds), nblocks = sp_dataset_num_blocks(ds);
    sp_shard_info *si = calloc(nshards, sizeof *si);
    ck_assert_ptr_nonnull(si);
    for (uint64_t s = 0; s < nshards; s++) {
        si[s].struct_size = sizeof si[s];
        ck_assert(sp_dataset_shard_info(ds, s, &si[s]) == 0);
    }
    sp_dataset_close(ds);

    char *mpath = tu_join(dir, "manifest.spm");
    ck_assert_msg(sp_dataset_open(mpath, NULL, &ds) == 0, "seed %llu: open manifest: %s", seed, sp_last_error());
    ck_assert_uint_eq(sp_dataset_num_shards(ds), nshards);
    tu_check_dataset(ds, d, 0);
    sp_dataset_close(ds);

    size_t n;
    char **paths = tu_list_shards(dir, &n);
    ck_assert_uint_eq(n, nshards);
    uint64_t first = 0;
    for (size_t s = 0; s < n; s++) {
        ck_assert_msg(sp_dataset_open(paths[s], NULL, &ds) == 0, "seed %llu: open %s: %s", seed, paths[s],
                      sp_last_error());
        ck_assert_uint_eq(sp_dataset_num_shards(ds), 1);
        ck_assert_uint_eq(sp_dataset_num_samples(ds), si[s].samples);
        ck_assert_uint_eq(si[s].first_sample, first);
        ck_assert(sp_dataset_meta_get(ds, "source", &mv, &ml) == 0 && ml == strlen(meta_val));
        tu_check_dataset(ds, d, first);
        first += si[s].samples;
        sp_dataset_close(ds);
    }
    ck_assert_uint_eq(first, d->nsamples);

    ck_assert(sp_dataset_open_shards((const char *const *)paths, n, NULL, &ds) == 0);
    ck_assert_uint_eq(sp_dataset_num_blocks(ds), nblocks);
    tu_check_dataset(ds, d, 0);
    sp_dataset_close(ds);

    ck_assert(unlink(mpath) == 0);
    ck_assert_msg(sp_dataset_open(dir, NULL, &ds) == 0, "seed %llu: open dir without manifest: %s", seed,
                  sp_last_error());
    ck_assert_uint_eq(sp_dataset_num_shards(ds), nshards);
    tu_check_dataset(ds, d, 0);
    sp_dataset_close(ds);

    tu_free_list(paths, n);
    free(mpath);
    free(si);
}

START_TEST(random_roundtrip)
{
    tu_rng r = { g_seed ^ tu_mix((uint64_t)_i) };
    tu_data d = { 0 };
    d.seed = tu_next(&r);
    d.schema = tu_random_schema(&r, 6);
    static const char *const block_sizes[] = { "4K", "8K", "64K" };
    static const char *const shard_sizes[] = { "64K", "256K", "16M" };
    const char *bs = block_sizes[tu_below(&r, 3)];
    size_t block_bytes = (size_t)atoi(bs) * 1024;
    d.nsamples = tu_below(&r, 4) == 0 ? 1 + tu_below(&r, 3) : 1 + tu_below(&r, 300);
    static const size_t var_max[] = { 0, 16, 300, 3000 };
    d.var_max = var_max[tu_below(&r, 4)];
    d.var_large = tu_below(&r, 3) == 0 ? block_bytes * 2 + tu_below(&r, 100) : 0;
    d.empty_pct = (int)tu_below(&r, 30);
    d.compressible = tu_below(&r, 2);
    int compress = _i % 3;
    char threads[16], level[16];
    snprintf(threads, sizeof threads, "%d", 1 + (int)tu_below(&r, 3));
    snprintf(level, sizeof level, "%d", (int)tu_below(&r, 7) - 2);
    sp_params *p = tu_params("validate_images", "0", "block_size", bs, "shard_size", shard_sizes[tu_below(&r, 3)], "compress",
                             compress_names[compress], "threads", threads, "level", level, NULL);

    char *dir = tu_tmpdir("roundtrip");
    sp_writer *w = NULL;
    ck_assert_msg(sp_writer_open(dir, d.schema, p, &w) == 0, "seed %llu: %s", (unsigned long long)d.seed,
                  sp_last_error());
    char meta[64];
    snprintf(meta, sizeof meta, "roundtrip %d", _i);
    ck_assert(sp_writer_set_meta(w, "source", meta, strlen(meta)) == 0);
    int rc = tu_add_samples(w, &d, 0, d.nsamples);
    ck_assert_msg(rc == 0, "seed %llu: add: %s", (unsigned long long)d.seed, sp_last_error());
    ck_assert_msg(sp_writer_finish(w) == 0, "seed %llu: finish: %s", (unsigned long long)d.seed, sp_last_error());
    sp_write_stats st = { .struct_size = sizeof st };
    ck_assert(sp_writer_stats(w, &st) == 0);
    ck_assert_uint_eq(st.samples, d.nsamples);
    if (compress == SP_COMPRESS_NONE)
        ck_assert_uint_eq(st.blocks_stored_raw, st.blocks);
    sp_writer_destroy(w);

    check_all_opens(dir, &d, meta);
    tu_rmtree(dir);
    free(dir);
    sp_params_destroy(p);
    sp_schema_destroy(d.schema);
}
END_TEST

/* Every dtype as a tensor, every kind, and variable values that are empty, exactly a block, or
 * several blocks long. */
START_TEST(every_kind_and_dtype)
{
    tu_data d = { 0 };
    d.schema = sp_schema_create();
    uint64_t shape[3] = { 2, 3, 1 };
    for (int dt = 1; dt <= 13; dt++) {
        char name[32];
        snprintf(name, sizeof name, "t_%s", sp_dtype_name(dt));
        ck_assert(sp_schema_add(d.schema, name, SP_FIELD_TENSOR, dt, (uint32_t)(dt % 4), shape) == 0);
    }
    uint64_t len = 7;
    ck_assert(sp_schema_add(d.schema, "img", SP_FIELD_IMAGE, SP_DTYPE_U8, 0, NULL) == 0);
    ck_assert(sp_schema_add(d.schema, "lbl", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) == 0);
    ck_assert(sp_schema_add(d.schema, "tok16", SP_FIELD_TOKENS, SP_DTYPE_U16, 1, &len) == 0);
    ck_assert(sp_schema_add(d.schema, "tok32", SP_FIELD_TOKENS, SP_DTYPE_U32, 1, &len) == 0);
    ck_assert(sp_schema_add(d.schema, "raw", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL) == 0);
    for (int c = 0; c < 3; c++) {
        d.seed = g_seed + 1000 + (uint64_t)c;
        d.nsamples = 150;
        d.var_max = 200;
        d.var_large = 3 * 4096 + 5;
        d.empty_pct = 25;
        d.compressible = c == 1;
        sp_params *p = tu_params("validate_images", "0", "block_size", "4K", "shard_size", "64K", "compress", compress_names[c], NULL);
        char *dir = tu_tmpdir("kinds");
        ck_assert_msg(tu_write_dataset(dir, &d, p, NULL) == 0, "%s", sp_last_error());
        sp_dataset *ds;
        ck_assert(sp_dataset_open(dir, NULL, &ds) == 0);
        tu_check_dataset(ds, &d, 0);
        sp_dataset_close(ds);
        tu_rmtree(dir);
        free(dir);
        sp_params_destroy(p);
    }
    sp_schema_destroy(d.schema);
}
END_TEST

/* Every variable value empty, a single sample, and one sample exactly filling a block. */
START_TEST(edge_sizes)
{
    tu_data d = { 0 };
    d.schema = sp_schema_create();
    ck_assert(sp_schema_add(d.schema, "a", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL) == 0);
    ck_assert(sp_schema_add(d.schema, "b", SP_FIELD_IMAGE, SP_DTYPE_U8, 0, NULL) == 0);
    d.seed = g_seed + 77;
    const uint64_t counts[] = { 1, 2, 1000 };
    for (size_t c = 0; c < 3; c++) {
        d.nsamples = counts[c];
        d.var_max = 0;
        char *dir = tu_tmpdir("edge");
        ck_assert_msg(tu_write_dataset(dir, &d, tu_synthetic_images(), NULL) == 0, "%s", sp_last_error());
        sp_dataset *ds;
        ck_assert(sp_dataset_open(dir, NULL, &ds) == 0);
        ck_assert_uint_eq(sp_dataset_num_blocks(ds), 1);
        tu_check_dataset(ds, &d, 0);
        sp_dataset_close(ds);
        tu_rmtree(dir);
        free(dir);
    }
    /* A sample whose raw block is exactly block_size: 8 (offsets) + 4088 bytes in one field. */
    sp_schema *one = sp_schema_create();
    ck_assert(sp_schema_add(one, "x", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL) == 0);
    sp_params *p = tu_params("validate_images", "0", "block_size", "4K", NULL);
    char *dir = tu_tmpdir("edge");
    sp_writer *w;
    ck_assert(sp_writer_open(dir, one, p, &w) == 0);
    static uint8_t big[4088];
    for (int i = 0; i < 3; i++) {
        memset(big, 'a' + i, sizeof big);
        sp_value v = { big, sizeof big };
        ck_assert(sp_writer_add(w, &v, 1) == 0);
    }
    ck_assert(sp_writer_finish(w) == 0);
    sp_writer_destroy(w);
    sp_dataset *ds;
    ck_assert(sp_dataset_open(dir, NULL, &ds) == 0);
    ck_assert_uint_eq(sp_dataset_num_blocks(ds), 3);
    for (uint64_t b = 0; b < 3; b++) {
        sp_block_info bi = { .struct_size = sizeof bi };
        ck_assert(sp_dataset_block_info(ds, b, &bi) == 0);
        ck_assert_uint_eq(bi.raw_bytes, 4096);
        sp_block *blk;
        ck_assert(sp_dataset_read_block(ds, b, &blk) == 0);
        const void *data;
        size_t size;
        ck_assert(sp_block_get(blk, 0, 0, &data, &size) == 0);
        ck_assert_uint_eq(size, sizeof big);
        ck_assert(((const uint8_t *)data)[0] == 'a' + b && ((const uint8_t *)data)[size - 1] == 'a' + b);
        sp_block_free(blk);
    }
    sp_dataset_close(ds);
    tu_rmtree(dir);
    free(dir);
    sp_params_destroy(p);
    sp_schema_destroy(one);
    sp_schema_destroy(d.schema);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x5eed0001);
    Suite *s = suite_create("roundtrip");
    TCase *tc = tu_tcase(s, "random", 120);
    tcase_add_loop_test(tc, random_roundtrip, 0, 200);
    tc = tu_tcase(s, "fixed", 120);
    tcase_add_test(tc, every_kind_and_dtype);
    tcase_add_test(tc, edge_sizes);
    return tu_run(s, g_seed);
}
