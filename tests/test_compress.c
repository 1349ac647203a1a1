/* test_compress.c - compress=auto stores incompressible blocks raw and compressible ones as zstd; zstd and none do what they say; stored bytes hash to the index's checksums. */
#include <stdio.h>
#include <stdlib.h>

#include "test_util.h"

static uint64_t g_seed;

typedef struct codec_count {
    uint64_t stored, zstd;
} codec_count;

/* Counts the codecs of dir's blocks and checks each block's bytes on disk against its checksum. */
static codec_count count_codecs(const char *dir, const tu_data *d)
{
    sp_dataset *ds;
    ck_assert_msg(sp_dataset_open(dir, NULL, &ds) == 0, "%s", sp_last_error());
    codec_count c = { 0, 0 };
    for (uint64_t b = 0; b < sp_dataset_num_blocks(ds); b++) {
        sp_block_info bi = { .struct_size = sizeof bi };
        ck_assert(sp_dataset_block_info(ds, b, &bi) == 0);
        sp_shard_info si = { .struct_size = sizeof si };
        ck_assert(sp_dataset_shard_info(ds, bi.shard, &si) == 0);
        size_t n;
        uint8_t *file = tu_read_file(si.path, &n);
        ck_assert(bi.offset + bi.stored_bytes <= n);
        ck_assert_uint_eq(sp_checksum64(file + bi.offset, bi.stored_bytes), bi.checksum);
        free(file);
        if (bi.codec == SP_CODEC_STORED) {
            ck_assert_uint_eq(bi.stored_bytes, bi.raw_bytes);
            ck_assert_uint_eq(bi.checksum, bi.raw_checksum);
            c.stored++;
        } else {
            ck_assert_int_eq(bi.codec, SP_CODEC_ZSTD);
            ck_assert_uint_lt(bi.stored_bytes, bi.raw_bytes);
            c.zstd++;
        }
    }
    tu_check_dataset(ds, d, 0);
    sp_dataset_close(ds);
    return c;
}

static codec_count write_and_count(tu_data *d, const char *compress, sp_write_stats *st)
{
    sp_params *p = tu_params("validate_images", "0", "block_size", "16K", "compress", compress, NULL);
    char *dir = tu_tmpdir("compress");
    ck_assert_msg(tu_write_dataset(dir, d, p, st) == 0, "%s", sp_last_error());
    codec_count c = count_codecs(dir, d);
    ck_assert_uint_eq(c.stored + c.zstd, st->blocks);
    ck_assert_uint_eq(c.stored, st->blocks_stored_raw);
    tu_rmtree(dir);
    free(dir);
    sp_params_destroy(p);
    return c;
}

static tu_data make_data(bool compressible, uint64_t seed)
{
    tu_data d = { 0 };
    d.schema = sp_schema_create();
    ck_assert(sp_schema_add(d.schema, "jpeg", SP_FIELD_IMAGE, SP_DTYPE_U8, 0, NULL) == 0);
    d.seed = seed;
    d.nsamples = 200;
    d.var_max = 1500;
    d.var_large = 0;
    d.compressible = compressible;
    return d;
}

START_TEST(auto_stores_random_raw)
{
    tu_data d = make_data(false, g_seed);
    sp_write_stats st = { .struct_size = sizeof st };
    codec_count c = write_and_count(&d, "auto", &st);
    ck_assert_uint_gt(c.stored, 3);
    ck_assert_uint_eq(c.zstd, 0);
    ck_assert_uint_eq(st.stored_bytes, st.raw_bytes);
    /* zstd never keeps an expansion either */
    c = write_and_count(&d, "zstd", &st);
    ck_assert_uint_eq(c.zstd, 0);
    sp_schema_destroy(d.schema);
}
END_TEST

START_TEST(auto_compresses_text)
{
    tu_data d = make_data(true, g_seed + 1);
    sp_write_stats st = { .struct_size = sizeof st };
    codec_count c = write_and_count(&d, "auto", &st);
    ck_assert_uint_gt(c.zstd, 3);
    ck_assert_uint_eq(c.stored, 0);
    ck_assert_uint_lt(st.stored_bytes * 4, st.raw_bytes);
    c = write_and_count(&d, "zstd", &st);
    ck_assert_uint_eq(c.stored, 0);
    c = write_and_count(&d, "none", &st);
    ck_assert_uint_eq(c.zstd, 0);
    ck_assert_uint_eq(st.stored_bytes, st.raw_bytes);
    sp_schema_destroy(d.schema);
}
END_TEST

/* Blocks that zstd shrinks by about 1%: auto stores them raw (saving under 3%), zstd keeps zstd. */
START_TEST(auto_threshold)
{
    sp_schema *s = sp_schema_create();
    ck_assert(sp_schema_add(s, "b", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL) == 0);
    const char *modes[2] = { "auto", "zstd" };
    for (int m = 0; m < 2; m++) {
        sp_params *p = tu_params("validate_images", "0", "block_size", "64K", "compress", modes[m], NULL);
        char *dir = tu_tmpdir("compress");
        sp_writer *w;
        ck_assert(sp_writer_open(dir, s, p, &w) == 0);
        static uint8_t buf[60000];
        tu_rng r = { g_seed + 7 };
        tu_fill_random(&r, buf, sizeof buf);
        memset(buf + 1000, 0, 1500); /* zstd saves about 2.4%: enough for zstd, under the 3% auto asks */
        sp_value v = { buf, sizeof buf };
        ck_assert(sp_writer_add(w, &v, 1) == 0);
        ck_assert(sp_writer_finish(w) == 0);
        sp_write_stats st = { .struct_size = sizeof st };
        ck_assert(sp_writer_stats(w, &st) == 0);
        sp_writer_destroy(w);
        ck_assert_uint_eq(st.blocks, 1);
        ck_assert_msg(st.blocks_stored_raw == (m == 0 ? 1u : 0u), "compress=%s: %llu raw blocks", modes[m],
                      (unsigned long long)st.blocks_stored_raw);
        sp_dataset *ds;
        ck_assert(sp_dataset_open(dir, NULL, &ds) == 0);
        sp_block *b;
        ck_assert(sp_dataset_read_block(ds, 0, &b) == 0);
        const void *data;
        size_t size;
        ck_assert(sp_block_get(b, 0, 0, &data, &size) == 0);
        ck_assert(size == sizeof buf && memcmp(data, buf, size) == 0);
        sp_block_free(b);
        sp_dataset_close(ds);
        tu_rmtree(dir);
        free(dir);
        sp_params_destroy(p);
    }
    sp_schema_destroy(s);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x5eed0003);
    Suite *s = suite_create("compress");
    TCase *tc = tu_tcase(s, "codec", 60);
    tcase_add_test(tc, auto_stores_random_raw);
    tcase_add_test(tc, auto_compresses_text);
    tcase_add_test(tc, auto_threshold);
    return tu_run(s, g_seed);
}
