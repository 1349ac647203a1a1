/* test_corrupt.c - damaged headers, blocks, indexes, trailers and manifests are reported by verify (file, block, offset) and by reads; no single flipped byte goes unnoticed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

static uint64_t g_seed;

/* Trailer layout (docs/format.md): the last 64 bytes; index offset and size are its first fields. */
#define TRAILER_BYTES 64
#define HEADER_BYTES 64

static uint64_t ld64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

typedef struct fixture {
    char *dir, *shard, *manifest;
    uint64_t size, index_offset, index_size, nblocks;
    sp_block_info blocks[16];
    tu_data d;
} fixture;

/* One shard of a few blocks, and its manifest. */
static void fixture_make(fixture *fx, uint64_t nsamples)
{
    memset(fx, 0, sizeof *fx);
    fx->d.schema = sp_schema_create();
    ck_assert(sp_schema_add(fx->d.schema, "bytes", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL) == 0);
    ck_assert(sp_schema_add(fx->d.schema, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) == 0);
    fx->d.seed = g_seed;
    fx->d.nsamples = nsamples;
    fx->d.var_max = 400;
    fx->d.compressible = true;
    sp_params *p = tu_params("validate_images", "0", "block_size", "4K", NULL);
    fx->dir = tu_tmpdir("corrupt");
    ck_assert_msg(tu_write_dataset(fx->dir, &fx->d, p, NULL) == 0, "%s", sp_last_error());
    sp_params_destroy(p);
    fx->shard = tu_join(fx->dir, "shard-000000.sps");
    fx->manifest = tu_join(fx->dir, "manifest.spm");
    fx->size = tu_file_size(fx->shard);
    size_t n;
    uint8_t *buf = tu_read_file(fx->shard, &n);
    fx->index_offset = ld64(buf + n - TRAILER_BYTES);
    fx->index_size = ld64(buf + n - TRAILER_BYTES + 8);
    ck_assert_uint_eq(fx->index_offset + fx->index_size + TRAILER_BYTES, n);
    free(buf);
    sp_dataset *ds;
    ck_assert(sp_dataset_open(fx->dir, NULL, &ds) == 0);
    ck_assert_uint_eq(sp_dataset_num_shards(ds), 1);
    fx->nblocks = sp_dataset_num_blocks(ds);
    ck_assert(fx->nblocks >= 2 && fx->nblocks <= 16);
    for (uint64_t b = 0; b < fx->nblocks; b++) {
        fx->blocks[b].struct_size = sizeof fx->blocks[b];
        ck_assert(sp_dataset_block_info(ds, b, &fx->blocks[b]) == 0);
    }
    sp_dataset_close(ds);
}

static void fixture_free(fixture *fx)
{
    tu_rmtree(fx->dir);
    free(fx->dir);
    free(fx->shard);
    free(fx->manifest);
    sp_schema_destroy(fx->d.schema);
}

typedef struct faults {
    int n;
    struct {
        char file[512];
        int64_t block;
        uint64_t offset;
        int code;
        char message[512];
    } f[16];
} faults;

static void on_fault(const sp_fault *f, void *user)
{
    faults *fs = user;
    ck_assert_ptr_nonnull(f->file);
    ck_assert_ptr_nonnull(f->message);
    ck_assert_int_lt(f->code, 0);
    if (fs->n < 16) {
        snprintf(fs->f[fs->n].file, sizeof fs->f[0].file, "%s", f->file);
        snprintf(fs->f[fs->n].message, sizeof fs->f[0].message, "%s", f->message);
        fs->f[fs->n].block = f->block;
        fs->f[fs->n].offset = f->offset;
        fs->f[fs->n].code = f->code;
    }
    fs->n++;
}

/* Runs verify on path and asserts that one reported fault names file, block and an offset in
 * [lo, hi). */
static void expect_fault(const char *path, const char *file, int64_t block, uint64_t lo, uint64_t hi)
{
    faults fs = { 0 };
    sp_verify_report rep = { .struct_size = sizeof rep };
    int rc = sp_verify(path, NULL, on_fault, &fs, &rep);
    ck_assert_msg(rc == SP_ECORRUPT, "verify returned %s for damage in [%llu, %llu)", sp_error_name(rc),
                  (unsigned long long)lo, (unsigned long long)hi);
    ck_assert_uint_eq(rep.faults, (uint64_t)fs.n);
    bool found = false;
    for (int i = 0; i < fs.n && i < 16; i++)
        found |= strcmp(fs.f[i].file, file) == 0 && fs.f[i].block == block && fs.f[i].offset >= lo &&
                 fs.f[i].offset < hi;
    ck_assert_msg(found, "no fault names %s block %lld in [%llu, %llu); first: %s block %lld at %llu: %s", file,
                  (long long)block, (unsigned long long)lo, (unsigned long long)hi, fs.n ? fs.f[0].file : "-",
                  fs.n ? (long long)fs.f[0].block : 0LL, fs.n ? (unsigned long long)fs.f[0].offset : 0ULL,
                  fs.n ? fs.f[0].message : "-");
}

START_TEST(sound_dataset_has_no_faults)
{
    fixture fx;
    fixture_make(&fx, 60);
    faults fs = { 0 };
    ck_assert(sp_verify(fx.dir, NULL, on_fault, &fs, NULL) == 0);
    ck_assert(sp_verify(fx.shard, NULL, on_fault, &fs, NULL) == 0);
    ck_assert(sp_verify(fx.manifest, NULL, on_fault, &fs, NULL) == 0);
    ck_assert_int_eq(fs.n, 0);
    fixture_free(&fx);
}
END_TEST

START_TEST(damaged_header)
{
    fixture fx;
    fixture_make(&fx, 60);
    static const uint64_t at[] = { 0, 7, 9, 11, 13, 17, 21, 25, 33, 40, 55, 56, 63 };
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        tu_xor_byte(fx.shard, at[i], 0x20);
        expect_fault(fx.dir, fx.shard, -1, 0, HEADER_BYTES);
        expect_fault(fx.shard, fx.shard, -1, 0, HEADER_BYTES);
        tu_xor_byte(fx.shard, at[i], 0x20);
    }
    ck_assert(sp_verify(fx.dir, NULL, NULL, NULL, NULL) == 0);
    fixture_free(&fx);
}
END_TEST

START_TEST(damaged_block)
{
    fixture fx;
    fixture_make(&fx, 60);
    for (uint64_t b = 0; b < fx.nblocks; b++) {
        const sp_block_info *bi = &fx.blocks[b];
        uint64_t spots[3] = { bi->offset, bi->offset + bi->stored_bytes / 2, bi->offset + bi->stored_bytes - 1 };
        for (int k = 0; k < 3; k++) {
            tu_xor_byte(fx.shard, spots[k], 0x01);
            expect_fault(fx.dir, fx.shard, (int64_t)b, bi->offset, bi->offset + bi->stored_bytes);
            sp_dataset *ds;
            ck_assert(sp_dataset_open(fx.dir, NULL, &ds) == 0);
            for (uint64_t o = 0; o < fx.nblocks; o++) {
                sp_block *blk = NULL;
                int rc = sp_dataset_read_block(ds, o, &blk);
                if (o != b) {
                    ck_assert_msg(rc == 0, "undamaged block %llu: %s", (unsigned long long)o, sp_last_error());
                    sp_block_free(blk);
                    continue;
                }
                ck_assert_msg(rc == SP_ECHECKSUM || rc == SP_ECORRUPT, "damaged block read: %s", sp_error_name(rc));
                ck_assert_ptr_null(blk);
                char want[64];
                snprintf(want, sizeof want, "block %llu", (unsigned long long)b);
                const char *msg = sp_last_error();
                ck_assert_msg(strstr(msg, fx.shard) && strstr(msg, want), "message '%s' lacks file or block", msg);
                ck_assert_str_eq(sp_dataset_errmsg(ds), msg);
            }
            sp_dataset_close(ds);
            tu_xor_byte(fx.shard, spots[k], 0x01);
        }
    }
    ck_assert(sp_verify(fx.dir, NULL, NULL, NULL, NULL) == 0);
    fixture_free(&fx);
}
END_TEST

START_TEST(damaged_index)
{
    fixture fx;
    fixture_make(&fx, 60);
    uint64_t spots[] = { 0, 5, 9, 30, fx.index_size / 2, fx.index_size - 9, fx.index_size - 1 };
    for (size_t k = 0; k < sizeof spots / sizeof spots[0]; k++) {
        uint64_t at = fx.index_offset + spots[k];
        tu_xor_byte(fx.shard, at, 0x80);
        expect_fault(fx.dir, fx.shard, -1, fx.index_offset, fx.index_offset + fx.index_size);
        sp_dataset *ds = NULL;
        int rc = sp_dataset_open(fx.shard, NULL, &ds);
        ck_assert_msg(rc == SP_ECHECKSUM, "open: %s", sp_error_name(rc));
        ck_assert_ptr_null(ds);
        ck_assert_msg(strstr(sp_last_error(), fx.shard), "%s", sp_last_error());
        /* Through the manifest the shard opens lazily, at the first read. */
        ck_assert(sp_dataset_open(fx.dir, NULL, &ds) == 0);
        sp_block *blk = NULL;
        rc = sp_dataset_read_block(ds, 0, &blk);
        ck_assert_msg(rc == SP_ECHECKSUM, "read: %s", sp_error_name(rc));
        ck_assert_msg(strstr(sp_last_error(), fx.shard), "%s", sp_last_error());
        sp_dataset_close(ds);
        tu_xor_byte(fx.shard, at, 0x80);
    }
    fixture_free(&fx);
}
END_TEST

START_TEST(damaged_trailer)
{
    fixture fx;
    fixture_make(&fx, 60);
    for (uint64_t k = 0; k < TRAILER_BYTES; k++) {
        uint64_t at = fx.size - TRAILER_BYTES + k;
        tu_xor_byte(fx.shard, at, 0x04);
        expect_fault(fx.shard, fx.shard, -1, fx.size - TRAILER_BYTES, fx.size);
        sp_dataset *ds = NULL;
        int rc = sp_dataset_open(fx.shard, NULL, &ds);
        ck_assert_msg(rc < 0 && ds == NULL, "trailer byte %llu: open %s", (unsigned long long)k, sp_error_name(rc));
        ck_assert_msg(strstr(sp_last_error(), fx.shard), "%s", sp_last_error());
        tu_xor_byte(fx.shard, at, 0x04);
    }
    fixture_free(&fx);
}
END_TEST

START_TEST(damaged_manifest)
{
    fixture fx;
    fixture_make(&fx, 60);
    uint64_t n = tu_file_size(fx.manifest);
    uint64_t spots[] = { 0, 8, 20, 30, 50, 64, n / 2, n - 9, n - 8, n - 1 };
    for (size_t k = 0; k < sizeof spots / sizeof spots[0]; k++) {
        tu_xor_byte(fx.manifest, spots[k], 0x10);
        expect_fault(fx.dir, fx.manifest, -1, 0, n);
        sp_dataset *ds = NULL;
        int rc = sp_dataset_open(fx.dir, NULL, &ds);
        ck_assert_msg(rc < 0 && ds == NULL, "manifest byte %llu: open %s", (unsigned long long)spots[k],
                      sp_error_name(rc));
        ck_assert_msg(strstr(sp_last_error(), fx.manifest), "%s", sp_last_error());
        tu_xor_byte(fx.manifest, spots[k], 0x10);
    }
    fixture_free(&fx);
}
END_TEST

/* Several faults are all reported; verification goes on after the first. */
START_TEST(reports_every_fault)
{
    fixture fx;
    fixture_make(&fx, 60);
    tu_xor_byte(fx.shard, 10, 1);
    for (uint64_t b = 0; b < fx.nblocks; b++)
        tu_xor_byte(fx.shard, fx.blocks[b].offset + 3, 1);
    faults fs = { 0 };
    sp_verify_report rep = { .struct_size = sizeof rep };
    ck_assert(sp_verify(fx.dir, NULL, on_fault, &fs, &rep) == SP_ECORRUPT);
    ck_assert_uint_eq(rep.faults, fx.nblocks + 1);
    ck_assert_uint_eq(rep.blocks, fx.nblocks);
    for (uint64_t b = 0; b < fx.nblocks; b++) {
        bool seen = false;
        for (int i = 0; i < fs.n && i < 16; i++)
            seen |= fs.f[i].block == (int64_t)b;
        ck_assert_msg(seen, "block %llu not reported", (unsigned long long)b);
    }
    fixture_free(&fx);
}
END_TEST

/* Is a damaged copy of the file noticed by opening it or by verifying it? */
static bool detected(const char *open_path, const char *verify_path)
{
    sp_dataset *ds = NULL;
    if (sp_dataset_open(open_path, NULL, &ds) != 0)
        return true;
    sp_dataset_close(ds);
    return sp_verify(verify_path, NULL, NULL, NULL, NULL) != 0;
}

/* Flips every stride-th byte of path in turn (from first); fails listing the byte ranges whose
 * damage went unnoticed. */
static void sweep_stride(const char *path, const char *open_path, const char *verify_path, uint8_t mask,
                         uint64_t first, uint64_t stride)
{
    uint64_t n = tu_file_size(path);
    char report[2048] = "";
    size_t len = 0, missed = 0;
    uint64_t run_start = UINT64_MAX;
    for (uint64_t at = first; at <= n; at = at + stride > n && at < n ? n : at + stride) {
        bool miss = false;
        if (at < n) {
            tu_xor_byte(path, at, mask);
            miss = !detected(open_path, verify_path);
            tu_xor_byte(path, at, mask);
        }
        if (miss) {
            missed++;
            if (run_start == UINT64_MAX)
                run_start = at;
        } else if (run_start != UINT64_MAX) {
            if (len < sizeof report - 64)
                len += (size_t)snprintf(report + len, sizeof report - len, " [%llu, %llu)",
                                        (unsigned long long)run_start, (unsigned long long)at);
            run_start = UINT64_MAX;
        }
    }
    ck_assert_msg(missed == 0, "%s: %zu of %llu single-byte flips (xor 0x%02x) went undetected:%s", path, missed,
                  (unsigned long long)n, mask, report);
}

static void sweep(const char *path, const char *open_path, const char *verify_path, uint8_t mask)
{
    sweep_stride(path, open_path, verify_path, mask, 0, 1);
}

START_TEST(every_byte_of_a_shard)
{
    fixture fx;
    fixture_make(&fx, 40);
    ck_assert_uint_le(fx.size, 64 * 1024);
    sweep(fx.shard, fx.shard, fx.shard, 0xFF);
    fixture_free(&fx);
}
END_TEST

/* A shard larger than the first tail read, its blocks stored raw: a flip every 61 bytes, and every
 * byte of its tail (trailer and the end of the index). */
START_TEST(strided_large_shard)
{
    fixture fx;
    memset(&fx, 0, sizeof fx);
    fx.d.schema = sp_schema_create();
    ck_assert(sp_schema_add(fx.d.schema, "img", SP_FIELD_IMAGE, SP_DTYPE_U8, 0, NULL) == 0);
    fx.d.seed = g_seed + 9;
    fx.d.nsamples = 400;
    fx.d.var_max = 1000;
    sp_params *p = tu_params("validate_images", "0", "block_size", "16K", "compress", "none", NULL);
    fx.dir = tu_tmpdir("corrupt");
    ck_assert(tu_write_dataset(fx.dir, &fx.d, p, NULL) == 0);
    sp_params_destroy(p);
    fx.shard = tu_join(fx.dir, "shard-000000.sps");
    fx.manifest = tu_join(fx.dir, "manifest.spm");
    uint64_t n = tu_file_size(fx.shard);
    ck_assert_uint_gt(n, 128 * 1024);
    sweep_stride(fx.shard, fx.shard, fx.shard, 0x01, 0, 61);
    sweep_stride(fx.shard, fx.shard, fx.shard, 0x01, n - 600, 1);
    fixture_free(&fx);
}
END_TEST

START_TEST(every_byte_of_a_manifest)
{
    fixture fx;
    fixture_make(&fx, 40);
    sweep(fx.manifest, fx.dir, fx.dir, 0xFF);
    sweep(fx.manifest, fx.dir, fx.dir, 0x01);
    fixture_free(&fx);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x5eed0004);
    Suite *s = suite_create("corrupt");
    TCase *tc = tu_tcase(s, "regions", 60);
    tcase_add_test(tc, sound_dataset_has_no_faults);
    tcase_add_test(tc, damaged_header);
    tcase_add_test(tc, damaged_block);
    tcase_add_test(tc, damaged_index);
    tcase_add_test(tc, damaged_trailer);
    tcase_add_test(tc, damaged_manifest);
    tcase_add_test(tc, reports_every_fault);
    tc = tu_tcase(s, "every_byte", 240);
    tcase_add_test(tc, every_byte_of_a_shard);
    tcase_add_test(tc, every_byte_of_a_manifest);
    tcase_add_test(tc, strided_large_shard);
    return tu_run(s, g_seed);
}
