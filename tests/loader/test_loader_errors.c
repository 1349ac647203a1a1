/* test_loader_errors.c - damaged data while streaming: a corrupt block fails at exactly its first batch naming shard and block (on_error=fail), or is skipped with its rows filled deterministically (on_error=skip); shards truncated or removed after open end in a clean error, never a hang. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lt_util.h"
#include "test_util.h"

static uint64_t g_seed;
static char g_seedstr[32];
static lt_ds g_ds;

#define N_SAMPLES 4000
#define BATCH 32

typedef struct bad_block {
    sp_block_info bi;
    char *shard; /* path of its shard (malloc'd) */
} bad_block;

static void block_of(const lt_ds *d, uint64_t block, bad_block *out)
{
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(d->dir, NULL, &ds), 0);
    ck_assert_int_eq(sp_dataset_block_info(ds, block, &out->bi), 0);
    sp_shard_info si;
    ck_assert_int_eq(sp_dataset_shard_info(ds, out->bi.shard, &si), 0);
    out->shard = strdup(si.path);
    sp_dataset_close(ds);
}

/* A clone of the dataset with one byte flipped in the middle of a block's stored bytes. */
static void corrupt_clone(lt_ds *c, uint64_t block, bad_block *bb)
{
    ck_assert_int_eq(lt_clone(&g_ds, c, "errors"), 0);
    block_of(c, block, bb);
    ck_assert_uint_gt(bb->bi.stored_bytes, 16);
    tu_xor_byte(bb->shard, bb->bi.offset + bb->bi.stored_bytes / 2, 0x40);
}

static sp_loader *open_on(const lt_ds *d, const char *threads, const char *on_error, const char *shuffle)
{
    sp_loader *l;
    int rc = lt_open(d->dir, &l, "threads", threads, "on_error", on_error, "shuffle", shuffle, "seed", g_seedstr,
                     "batch_size", "32", NULL);
    ck_assert_msg(rc == 0, "open: %s", sp_last_error());
    return l;
}

/* The clean epoch, for comparison. */
static void clean_epoch(const char *shuffle, lt_rec *r)
{
    sp_loader *l = open_on(&g_ds, "2", "fail", shuffle);
    ck_assert_int_eq(lt_epoch(l, &g_ds, r), SP_EEPOCH);
    ck_assert_uint_eq(r->bad, 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
}

/* The first batch holding a sample of bb, in the clean epoch r. */
static size_t first_batch_with(const lt_rec *r, const bad_block *bb)
{
    size_t i = 0;
    for (size_t b = 0; b < r->nb; i += r->rows[b], b++)
        for (uint32_t k = 0; k < r->rows[b]; k++)
            if (r->ids[i + k] >= bb->bi.first_sample && r->ids[i + k] < bb->bi.first_sample + bb->bi.samples)
                return b;
    ck_abort_msg("no batch holds block samples %llu..", (unsigned long long)bb->bi.first_sample);
    return 0;
}

static void fail_case(const char *shuffle, const char *threads, uint64_t block)
{
    lt_rec clean = { 0 }, r = { 0 };
    clean_epoch(shuffle, &clean);
    lt_ds c;
    bad_block bb;
    corrupt_clone(&c, block, &bb);
    size_t want = first_batch_with(&clean, &bb);
    sp_loader *l = open_on(&c, threads, "fail", shuffle);
    int rc = lt_drain(l, &c, &r, UINT64_MAX, 20000);
    ck_assert_msg(rc == SP_ECHECKSUM || rc == SP_ECORRUPT, "shuffle=%s threads=%s: ended with %s: %s", shuffle,
                  threads, sp_error_name(rc), sp_last_error());
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", sp_last_error());
    ck_assert_msg(strstr(msg, bb.shard) && strstr(msg, "block"), "message does not name shard and block: %s", msg);
    ck_assert_str_eq(sp_loader_errmsg(l), msg);
    char blk[64];
    snprintf(blk, sizeof blk, "block %llu", (unsigned long long)bb.bi.index);
    ck_assert_msg(strstr(msg, blk), "message does not name '%s': %s", blk, msg);
    /* It fails exactly at the first batch that needs the block; everything before is intact. */
    ck_assert_msg(r.nb == want, "failed after %zu batches; the block's first batch is %zu", r.nb, want);
    ck_assert_msg(r.bad == 0, "a batch before the failure is damaged: %s", r.why);
    for (size_t k = 0; k < r.nb; k++)
        ck_assert_msg(r.hash[k] == clean.hash[k], "batch %zu differs from the clean run", k);
    /* The failure stays: next() keeps returning it, promptly. */
    for (int i = 0; i < 3; i++) {
        sp_batch *b;
        double t0 = lt_now();
        ck_assert_int_eq(sp_loader_next(l, &b, 20000), rc);
        ck_assert(lt_now() - t0 < 5);
        ck_assert_ptr_null(b);
    }
    ck_assert_int_eq(sp_loader_close(l), 0);
    lt_rec_free(&clean);
    lt_rec_free(&r);
    free(bb.shard);
    lt_ds_free(&c);
}

START_TEST(corrupt_block_fails)
{
    fail_case("true", "4", g_ds.blocks / 2);
    fail_case("false", "1", g_ds.blocks / 3);
    fail_case("true", "2", 0);
    fail_case("false", "3", g_ds.blocks - 1);
}
END_TEST

static bool rows_equal(const sp_batch *b, uint32_t i, uint32_t j)
{
    for (size_t f = 0; f < sp_batch_num_fields(b); f++) {
        size_t row = lt_field_bytes(b, f) / sp_batch_size(b);
        const uint8_t *p = sp_batch_tensor(b, f)->data;
        if (memcmp(p + i * row, p + j * row, row))
            return false;
    }
    return true;
}

/* One epoch with on_error=skip; returns the batch hashes in *out. */
static void skip_epoch(const lt_ds *c, const bad_block *bb, const char *threads, const lt_rec *clean, lt_rec *out)
{
    sp_loader *l = open_on(c, threads, "skip", "true");
    uint64_t filled = 0, good = 0;
    uint8_t *seen = calloc(N_SAMPLES, 1);
    for (;;) {
        sp_batch *b;
        int rc = sp_loader_next(l, &b, 20000);
        if (rc == SP_EEPOCH)
            break;
        ck_assert_msg(rc == 0, "threads %s: %s: %s", threads, sp_error_name(rc), sp_last_error());
        bool has_bad = false;
        for (uint32_t i = 0; i < sp_batch_size(b); i++) {
            uint64_t id = sp_batch_sample_id(b, i);
            if (id == UINT64_MAX) {
                has_bad = true;
                filled++;
                bool twin = false;
                for (uint32_t j = 0; j < sp_batch_size(b) && !twin; j++)
                    twin = j != i && sp_batch_sample_id(b, j) != UINT64_MAX && rows_equal(b, i, j);
                ck_assert_msg(twin, "batch %llu row %u: filled row equals no good row of its batch",
                              (unsigned long long)sp_batch_index(b), i);
                continue;
            }
            char why[256];
            ck_assert_msg(lt_row_ok(&g_ds, b, i, why, sizeof why), "%s", why);
            ck_assert_msg(id < bb->bi.first_sample || id >= bb->bi.first_sample + bb->bi.samples,
                          "sample %llu of the corrupt block delivered", (unsigned long long)id);
            ck_assert(!seen[id]);
            seen[id] = 1;
            good++;
        }
        size_t k = out->nb;
        lt_rec_add(out, NULL, b);
        if (!has_bad) /* batches the block does not touch are the clean ones */
            ck_assert_msg(out->hash[k] == clean->hash[k], "threads %s: batch %zu differs from the clean run", threads,
                          k);
        ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
    ck_assert_uint_eq(out->nb, clean->nb);
    ck_assert_uint_eq(filled, bb->bi.samples);
    ck_assert_uint_eq(good + filled, N_SAMPLES);
    sp_loader_stats st;
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_eq(st.blocks_skipped, 1);
    ck_assert_uint_eq(st.samples_skipped, bb->bi.samples);
    ck_assert_uint_eq(st.samples, N_SAMPLES);
    ck_assert_int_eq(sp_loader_close(l), 0);
    free(seen);
}

START_TEST(corrupt_block_skipped)
{
    lt_rec clean = { 0 };
    clean_epoch("true", &clean);
    lt_ds c;
    bad_block bb;
    corrupt_clone(&c, g_ds.blocks / 2 + 1, &bb);
    lt_rec t1 = { 0 }, t4 = { 0 };
    skip_epoch(&c, &bb, "1", &clean, &t1);
    skip_epoch(&c, &bb, "4", &clean, &t4);
    for (size_t k = 0; k < t1.nb; k++)
        ck_assert_msg(t1.hash[k] == t4.hash[k], "batch %zu differs between 1 and 4 threads", k);
    lt_rec_free(&clean);
    lt_rec_free(&t1);
    lt_rec_free(&t4);
    free(bb.shard);
    lt_ds_free(&c);
}
END_TEST

/* Cuts a shard of a clone short, after the loader has opened it, inside one of its blocks. */
static void truncate_case(const char *on_error, const char *io)
{
    lt_ds c;
    ck_assert_int_eq(lt_clone(&g_ds, &c, "errors-trunc"), 0);
    bad_block bb;
    block_of(&c, g_ds.blocks / 2, &bb);
    sp_loader *l;
    ck_assert_int_eq(lt_open(c.dir, &l, "on_error", on_error, "io", io, "seed", g_seedstr, NULL), 0);
    ck_assert_int_eq(truncate(bb.shard, (off_t)(bb.bi.offset + bb.bi.stored_bytes / 2)), 0);
    /* Blocks from bb on, in its shard, are gone. */
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(g_ds.dir, NULL, &ds), 0);
    uint64_t lost = 0, lost_samples = 0;
    for (uint64_t b = 0; b < sp_dataset_num_blocks(ds); b++) {
        sp_block_info bi;
        ck_assert_int_eq(sp_dataset_block_info(ds, b, &bi), 0);
        if (bi.shard == bb.bi.shard && bi.index >= bb.bi.index) {
            lost++;
            lost_samples += bi.samples;
        }
    }
    sp_dataset_close(ds);
    lt_rec r = { 0 };
    double t0 = lt_now();
    int rc = lt_drain(l, &c, &r, UINT64_MAX, 20000);
    ck_assert_msg(lt_now() - t0 < 15, "took %.1f s", lt_now() - t0);
    ck_assert_msg(r.bad == 0, "%s", r.why);
    sp_loader_stats st;
    sp_loader_stats_get(l, &st);
    if (!strcmp(on_error, "fail")) {
        ck_assert_msg(rc == SP_ETRUNC || rc == SP_EIO, "io=%s: truncated shard: %s: %s", io, sp_error_name(rc),
                      sp_last_error());
        ck_assert_msg(strstr(sp_last_error(), bb.shard), "message: %s", sp_last_error());
    } else {
        ck_assert_msg(rc == SP_EEPOCH, "io=%s: truncated shard, skip: %s: %s", io, sp_error_name(rc), sp_last_error());
        ck_assert_uint_eq(st.blocks_skipped, lost);
        ck_assert_uint_eq(st.samples_skipped, lost_samples);
        ck_assert_uint_eq(r.ni, N_SAMPLES);
        ck_assert_uint_eq(r.filled, lost_samples);
    }
    ck_assert_int_eq(sp_loader_close(l), 0);
    lt_rec_free(&r);
    free(bb.shard);
    lt_ds_free(&c);
}

START_TEST(shard_truncated_after_open)
{
    truncate_case("fail", "pread");
    truncate_case("fail", "auto");
    truncate_case("skip", "pread");
    truncate_case("skip", "auto");
}
END_TEST

START_TEST(shard_removed_after_open)
{
    lt_ds c;
    ck_assert_int_eq(lt_clone(&g_ds, &c, "errors-rm"), 0);
    bad_block bb;
    block_of(&c, 1, &bb);
    sp_loader *l;
    ck_assert_int_eq(lt_open(c.dir, &l, "seed", g_seedstr, NULL), 0);
    ck_assert_int_eq(unlink(bb.shard), 0);
    lt_rec r = { 0 };
    double t0 = lt_now();
    int rc = lt_drain(l, &c, &r, UINT64_MAX, 20000);
    ck_assert_msg(lt_now() - t0 < 15, "took %.1f s", lt_now() - t0);
    ck_assert_msg(rc == SP_EIO || rc == SP_ENOENT, "removed shard: %s: %s", sp_error_name(rc), sp_last_error());
    ck_assert_msg(strstr(sp_last_error(), bb.shard), "message: %s", sp_last_error());
    ck_assert_uint_eq(r.bad, 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    lt_rec_free(&r);
    free(bb.shard);
    lt_ds_free(&c);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0xe2202);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    if (lt_make(&g_ds, "errors", N_SAMPLES, 64, g_seed, "4K", "64K")) {
        fprintf(stderr, "cannot write the test dataset\n");
        return 99;
    }
    Suite *s = suite_create("loader_errors");
    TCase *tc = tu_tcase(s, "errors", 60);
    tcase_add_test(tc, corrupt_block_fails);
    tcase_add_test(tc, corrupt_block_skipped);
    tcase_add_test(tc, shard_truncated_after_open);
    tcase_add_test(tc, shard_removed_after_open);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_ds);
    return rc;
}
