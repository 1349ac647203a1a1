/* test_loader_errors.c - damaged data while streaming: a corrupt block fails at exactly its first batch naming shard and block (on_error=fail), or is skipped with its rows filled deterministically (on_error=skip); shards truncated or removed after open end in a clean error, never a hang; uint32 tokens past int32 under token_dtype=int32 are bad samples; a batch with no good row names its first bad one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dlpack/dlpack.h>

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
    out->bi.struct_size = sizeof out->bi;
    ck_assert_int_eq(sp_dataset_block_info(ds, block, &out->bi), 0);
    sp_shard_info si = { .struct_size = sizeof si };
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
    sp_loader_stats st = { .struct_size = sizeof st };
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

/* Cuts a shard of a clone short, inside one of its blocks: after the loader has read its index
 * (opened), or before (the loader reads each index when the shard is first needed, and the cut
 * takes the index at the shard's end with it: every block of the shard is lost). */
static void truncate_case(const char *on_error, const char *io, bool opened)
{
    lt_ds c;
    ck_assert_int_eq(lt_clone(&g_ds, &c, "errors-trunc"), 0);
    bad_block bb;
    block_of(&c, g_ds.blocks / 2, &bb);
    sp_loader *l;
    ck_assert_int_eq(lt_open(c.dir, &l, "on_error", on_error, "io", io, "seed", g_seedstr, NULL), 0);
    if (opened) { /* the shard's index read now, through its first block */
        uint64_t cursor = 0;
        ck_assert_int_gt(sp_loader_bench_block(l, 0, 1, g_ds.blocks / 2 - bb.bi.index, &cursor), 0);
    }
    ck_assert_int_eq(truncate(bb.shard, (off_t)(bb.bi.offset + bb.bi.stored_bytes / 2)), 0);
    /* Blocks from bb on, in its shard, are gone (all of them when the index was not read). */
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(g_ds.dir, NULL, &ds), 0);
    uint64_t lost = 0, lost_samples = 0;
    for (uint64_t b = 0; b < sp_dataset_num_blocks(ds); b++) {
        sp_block_info bi = { .struct_size = sizeof bi };
        ck_assert_int_eq(sp_dataset_block_info(ds, b, &bi), 0);
        if (bi.shard == bb.bi.shard && (bi.index >= bb.bi.index || !opened)) {
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
    sp_loader_stats st = { .struct_size = sizeof st };
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
    truncate_case("fail", "pread", true);
    truncate_case("fail", "auto", true);
    truncate_case("skip", "pread", true);
    truncate_case("skip", "auto", true);
    truncate_case("fail", "pread", false);
    truncate_case("skip", "auto", false);
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

/* ---------------------------------------------------------------- tokens beyond int32 */

/* A dataset of uint32 tokens (what llm.c's uint32 files pack into), some of them 2^31 or more:
 * sample id holds tok32(id, i); a bad id holds a big token at position id % T32_SEQ. */
#define T32_N 240
#define T32_SEQ 11
static const uint64_t t32_bad[] = { 17, 48, 49, 50, 51, 77, 87, 100, 239 };
#define T32_NBAD (sizeof t32_bad / sizeof t32_bad[0])
static char *g_t32_root, *g_t32;

static bool t32_is_bad(uint64_t id)
{
    for (size_t i = 0; i < T32_NBAD; i++)
        if (t32_bad[i] == id)
            return true;
    return false;
}

static uint32_t tok32(uint64_t id, uint32_t i)
{
    if (t32_is_bad(id) && i == id % T32_SEQ)
        return id % 2 ? 0x80000000u : 0xFFFFFFFFu;
    return (uint32_t)((id * 131 + i * 7) % 50000);
}

static void make_t32(void)
{
    g_t32_root = tu_tmpdir("t32");
    g_t32 = tu_join(g_t32_root, "data");
    sp_schema *s = sp_schema_create();
    uint64_t shape[1] = { T32_SEQ };
    ck_assert_int_eq(sp_schema_add(s, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL), 0);
    ck_assert_int_eq(sp_schema_add(s, "tokens", SP_FIELD_TOKENS, SP_DTYPE_U32, 1, shape), 0);
    sp_params *p = tu_params("block_size", "4K", NULL);
    sp_writer *w;
    ck_assert_int_eq(sp_writer_open(g_t32, s, p, &w), 0);
    for (uint64_t id = 0; id < T32_N; id++) {
        int64_t label = (int64_t)id;
        uint32_t tok[T32_SEQ];
        for (uint32_t i = 0; i < T32_SEQ; i++)
            tok[i] = tok32(id, i);
        sp_value v[2] = { { &label, sizeof label }, { tok, sizeof tok } };
        ck_assert_int_eq(sp_writer_add(w, v, 2), 0);
    }
    ck_assert_int_eq(sp_writer_finish(w), 0);
    sp_writer_destroy(w);
    sp_params_destroy(p);
    sp_schema_destroy(s);
}

static void free_t32(void)
{
    tu_rmtree(g_t32_root);
    free(g_t32_root);
    free(g_t32);
}

static sp_loader *open_t32(const char *dtype, const char *on_error, const char *shuffle, const char *batch,
                           const char *threads, const char *epochs)
{
    sp_loader *l;
    int rc = lt_open(g_t32, &l, "token_dtype", dtype, "on_error", on_error, "shuffle", shuffle, "batch_size", batch,
                     "threads", threads, "seed", g_seedstr, "epochs", epochs, NULL);
    ck_assert_msg(rc == 0, "open: %s", sp_last_error());
    return l;
}

/* Checks a batch's good rows against tok32 (as int32 or as stored); returns its filled rows. */
static uint32_t t32_check(const sp_batch *b, bool int32)
{
    const DLTensor *t = sp_batch_tensor(b, (size_t)sp_batch_find(b, "tokens"));
    ck_assert_int_eq(t->dtype.bits, 32);
    ck_assert_int_eq(t->dtype.code, int32 ? kDLInt : kDLUInt);
    uint32_t filled = 0;
    for (uint32_t r = 0; r < sp_batch_size(b); r++) {
        uint64_t id = sp_batch_sample_id(b, r);
        if (id == UINT64_MAX) {
            filled++;
            continue;
        }
        ck_assert_msg(!int32 || !t32_is_bad(id), "sample %llu, holding a token past int32, delivered",
                      (unsigned long long)id);
        const uint32_t *row = (const uint32_t *)t->data + (size_t)r * T32_SEQ;
        for (uint32_t i = 0; i < T32_SEQ; i++)
            ck_assert_msg(row[i] == tok32(id, i), "sample %llu token %u: %u", (unsigned long long)id, i, row[i]);
    }
    return filled;
}

START_TEST(tokens_beyond_int32_fail)
{
    make_t32();
    uint64_t block;
    char *shard = tu_shard_of(g_t32, 17, &block);
    static const char *const threads[] = { "1", "3" };
    for (int t = 0; t < 2; t++) {
        /* In order, batches of 4: samples 0..15 come, then batch 4 (sample 17) fails. */
        sp_loader *l = open_t32("int32", "fail", "false", "4", threads[t], "1");
        sp_batch *b;
        for (uint64_t k = 0; k < 4; k++) {
            ck_assert_int_eq(sp_loader_next(l, &b, 20000), 0);
            ck_assert_uint_eq(t32_check(b, true), 0);
            ck_assert_int_eq(sp_loader_release(l, b), 0);
        }
        int rc = sp_loader_next(l, &b, 20000);
        ck_assert_msg(rc == SP_ERANGE, "%s: %s", sp_error_name(rc), sp_last_error());
        char want[128];
        snprintf(want, sizeof want, "block %llu, sample 17 (", (unsigned long long)block);
        const char *msg = sp_last_error();
        ck_assert_msg(strstr(msg, shard) && strstr(msg, want) &&
                          strstr(msg, "tokens: token 2147483648 (position 6) does not fit int32"),
                      "message: %s", msg);
        ck_assert_int_eq(sp_loader_next(l, &b, 20000), SP_ERANGE);
        ck_assert_int_eq(sp_loader_close(l), 0);
    }
    /* Stored as they are, the same tokens are delivered unchanged. */
    sp_loader *l = open_t32("stored", "fail", "true", "8", "2", "1");
    sp_batch *b;
    uint64_t n = 0;
    int rc;
    while ((rc = sp_loader_next(l, &b, 20000)) == 0) {
        ck_assert_uint_eq(t32_check(b, false), 0);
        n += sp_batch_size(b);
        ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
    ck_assert_msg(rc == SP_EEPOCH, "%s: %s", sp_error_name(rc), sp_last_error());
    ck_assert_uint_eq(n, T32_N);
    ck_assert_int_eq(sp_loader_close(l), 0);
    free(shard);
    free_t32();
}
END_TEST

START_TEST(tokens_beyond_int32_skipped)
{
    make_t32();
    static const char *const threads[] = { "1", "3" };
    for (int t = 0; t < 2; t++) {
        sp_loader *l = open_t32("int32", "skip", "true", "8", threads[t], "1");
        sp_batch *b;
        uint64_t rows = 0, filled = 0;
        int rc;
        while ((rc = sp_loader_next(l, &b, 20000)) == 0) {
            filled += t32_check(b, true);
            rows += sp_batch_size(b);
            ck_assert_int_eq(sp_loader_release(l, b), 0);
        }
        ck_assert_msg(rc == SP_EEPOCH, "%s: %s", sp_error_name(rc), sp_last_error());
        ck_assert_uint_eq(rows, T32_N);
        ck_assert_uint_eq(filled, T32_NBAD);
        sp_loader_stats st = { .struct_size = sizeof st };
        ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
        ck_assert_uint_eq(st.samples_skipped, T32_NBAD);
        ck_assert_uint_eq(st.images_bad, 0);
        ck_assert_msg(strstr(st.bad_note, "does not fit int32"), "bad_note: %s", st.bad_note);
        ck_assert_int_eq(sp_loader_close(l), 0);
    }
    free_t32();
}
END_TEST

/* on_error=skip and a batch whose every sample is bad (samples 48..51, in order, batches of 4):
 * it fails, naming the dataset, the epoch and batch, and the first bad row's sample and reason. */
START_TEST(all_bad_batch_named)
{
    make_t32();
    uint64_t block;
    char *shard = tu_shard_of(g_t32, 48, &block);
    sp_loader *l = open_t32("int32", "skip", "false", "4", "2", "0");
    ck_assert_int_eq(sp_loader_set_epoch(l, 3), 0);
    sp_batch *b;
    for (uint64_t k = 0; k < 12; k++) {
        ck_assert_int_eq(sp_loader_next(l, &b, 20000), 0);
        ck_assert_uint_eq(t32_check(b, true), k == 4 ? 1 : 0);
        ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
    int rc = sp_loader_next(l, &b, 20000);
    ck_assert_msg(rc == SP_ECORRUPT, "%s: %s", sp_error_name(rc), sp_last_error());
    char want[512];
    snprintf(want, sizeof want, "%s: epoch 3, batch 12: every sample in it is bad", g_t32);
    const char *msg = sp_last_error();
    ck_assert_msg(strstr(msg, want), "message: %s", msg);
    snprintf(want, sizeof want, "(row 0): %s: block %llu, sample 48 (", shard, (unsigned long long)block);
    ck_assert_msg(strstr(msg, want), "message: %s", msg);
    ck_assert_msg(strstr(msg, "token 4294967295 (position 4) does not fit int32"), "message: %s", msg);
    ck_assert_int_eq(sp_loader_close(l), 0);
    free(shard);
    free_t32();
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
    tcase_add_test(tc, tokens_beyond_int32_fail);
    tcase_add_test(tc, tokens_beyond_int32_skipped);
    tcase_add_test(tc, all_bad_batch_named);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_ds);
    return rc;
}
