/* test_loader_bench.c - limit mode (sp_loader_bench_block, what `shardpack bench` times): every block's samples are counted, concurrent workers share nothing, bad arguments and a loader already delivering are refused, a damaged block fails naming its shard (on_error=fail) or counts 0 (skip), and the batches delivered afterwards are exactly a fresh loader's. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_util.h"
#include "test_util.h"

static uint64_t g_seed;
static char g_seedstr[32];
static lt_ds g_ds;

#define N_SAMPLES 3000

static sp_loader *open_on(const lt_ds *d, const char *on_error)
{
    sp_loader *l;
    int rc = lt_open(d->dir, &l, "seed", g_seedstr, "threads", "2", "token_dtype", "int32", "on_error", on_error,
                     "epochs", "1", NULL);
    ck_assert_msg(rc == 0, "open: %s", sp_last_error());
    return l;
}

/* Samples of every block of d, from the dataset's own index. */
static uint64_t *block_samples(const lt_ds *d, uint64_t *nblocks)
{
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(d->dir, NULL, &ds), 0);
    *nblocks = sp_dataset_num_blocks(ds);
    uint64_t *n = calloc(*nblocks, sizeof *n);
    ck_assert_ptr_nonnull(n);
    for (uint64_t b = 0; b < *nblocks; b++) {
        sp_block_info bi = { .struct_size = sizeof bi };
        ck_assert_int_eq(sp_dataset_block_info(ds, b, &bi), 0);
        n[b] = bi.samples;
    }
    sp_dataset_close(ds);
    return n;
}

START_TEST(counts_every_block)
{
    uint64_t nblocks, *want = block_samples(&g_ds, &nblocks), cursor = 0, total = 0;
    sp_loader *l = open_on(&g_ds, "fail");
    for (uint64_t b = 0; b < nblocks; b++) {
        int64_t n = sp_loader_bench_block(l, 0, 1, b, &cursor);
        ck_assert_msg(n >= 0, "block %llu: %s", (unsigned long long)b, sp_last_error());
        ck_assert_uint_eq((uint64_t)n, want[b]);
        total += (uint64_t)n;
    }
    ck_assert_uint_eq(total, N_SAMPLES);
    ck_assert_uint_eq(cursor, N_SAMPLES); /* one row per sample */
    ck_assert_int_eq(sp_loader_close(l), 0);
    free(want);
}
END_TEST

typedef struct pass_arg {
    sp_loader *l;
    int worker;
    uint64_t nblocks, samples;
    int64_t rc;
} pass_arg;

static void *pass_main(void *p)
{
    pass_arg *a = p;
    uint64_t cursor = 0;
    for (int pass = 0; pass < 3; pass++)
        for (uint64_t b = 0; b < a->nblocks && a->rc >= 0; b++)
            if ((a->rc = sp_loader_bench_block(a->l, a->worker, 2, b, &cursor)) >= 0)
                a->samples += (uint64_t)a->rc;
    return NULL;
}

/* Two workers at once, each with its own buffers and share of the ring (TSan checks the sharing). */
START_TEST(workers_at_once)
{
    uint64_t nblocks, *want = block_samples(&g_ds, &nblocks);
    sp_loader *l = open_on(&g_ds, "fail");
    pass_arg a[2] = { { l, 0, nblocks, 0, 0 }, { l, 1, nblocks, 0, 0 } };
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, pass_main, &a[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        ck_assert_msg(a[i].rc >= 0, "worker %d: %s", i, sp_error_name((int)a[i].rc));
        ck_assert_uint_eq(a[i].samples, 3 * N_SAMPLES);
    }
    ck_assert_int_eq(sp_loader_close(l), 0);
    free(want);
}
END_TEST

START_TEST(arguments_refused)
{
    sp_loader *l = open_on(&g_ds, "fail");
    uint64_t cursor = 0;
    ck_assert_int_eq(sp_loader_bench_block(NULL, 0, 1, 0, &cursor), SP_EINVAL);
    ck_assert_int_eq(sp_loader_bench_block(l, 0, 1, 0, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_loader_bench_block(l, 2, 2, 0, &cursor), SP_EINVAL); /* worker past workers */
    ck_assert_int_eq(sp_loader_bench_block(l, 0, 3, 0, &cursor), SP_EINVAL); /* more than threads=2 */
    ck_assert_int_eq(sp_loader_bench_block(l, -1, 1, 0, &cursor), SP_EINVAL);
    ck_assert_ptr_nonnull(strstr(sp_last_error(), "decode workers"));
    ck_assert_int_eq(sp_loader_bench_block(l, 0, 1, g_ds.blocks, &cursor), SP_ERANGE);
    ck_assert_ptr_nonnull(strstr(sp_last_error(), "out of range"));
    ck_assert_uint_eq(cursor, 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    /* more workers than batch slots: each needs a share of the ring (a division by zero once) */
    ck_assert_int_eq(lt_open(g_ds.dir, &l, "threads", "64", "batch_size", "3000", NULL), 0);
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_lt(st.batch_ring_slots, 64);
    int n = (int)st.batch_ring_slots;
    ck_assert_int_eq(sp_loader_bench_block(l, n, n + 1, 0, &cursor), SP_EINVAL);
    ck_assert_ptr_nonnull(strstr(sp_last_error(), "batch slots"));
    ck_assert_int_ge(sp_loader_bench_block(l, n - 1, n, 0, &cursor), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
}
END_TEST

/* While a batch is leased the ring is in use: the measurement is refused, not raced. */
START_TEST(busy_while_delivering)
{
    sp_loader *l = open_on(&g_ds, "fail");
    sp_batch *b;
    ck_assert_int_eq(sp_loader_next(l, &b, 20000), 0);
    uint64_t cursor = 0;
    ck_assert_int_eq(sp_loader_bench_block(l, 0, 1, 0, &cursor), SP_EBUSY);
    ck_assert_ptr_nonnull(strstr(sp_last_error(), "delivering"));
    ck_assert_int_eq(sp_loader_release(l, b), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
}
END_TEST

/* Measuring first changes nothing of what the loader delivers. */
START_TEST(batches_unchanged)
{
    lt_rec ref = { 0 }, after = { 0 };
    sp_loader *l = open_on(&g_ds, "fail");
    ck_assert_int_eq(lt_epoch(l, &g_ds, &ref), SP_EEPOCH);
    ck_assert_int_eq(sp_loader_close(l), 0);

    l = open_on(&g_ds, "fail");
    uint64_t cursor = 0;
    for (uint64_t b = 0; b < g_ds.blocks; b++)
        ck_assert_int_ge(sp_loader_bench_block(l, (int)(b % 2), 2, b, &cursor), 0);
    ck_assert_int_eq(lt_epoch(l, &g_ds, &after), SP_EEPOCH);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_uint_eq(after.bad, 0);
    ck_assert_uint_eq(after.nb, ref.nb);
    for (size_t i = 0; i < ref.nb; i++)
        ck_assert_msg(after.hash[i] == ref.hash[i], "batch %zu differs after the measurement", i);
    lt_rec_free(&ref);
    lt_rec_free(&after);
}
END_TEST

START_TEST(damaged_block)
{
    lt_ds c;
    ck_assert_int_eq(lt_clone(&g_ds, &c, "bench"), 0);
    uint64_t block = g_ds.blocks / 2;
    sp_dataset *ds;
    sp_block_info bi = { .struct_size = sizeof bi };
    sp_shard_info si = { .struct_size = sizeof si };
    ck_assert_int_eq(sp_dataset_open(c.dir, NULL, &ds), 0);
    ck_assert_int_eq(sp_dataset_block_info(ds, block, &bi), 0);
    ck_assert_int_eq(sp_dataset_shard_info(ds, bi.shard, &si), 0);
    char *shard = strdup(si.path);
    sp_dataset_close(ds);
    tu_xor_byte(shard, bi.offset + bi.stored_bytes / 2, 0x40);

    uint64_t cursor = 0;
    sp_loader *l = open_on(&c, "fail");
    int64_t rc = sp_loader_bench_block(l, 0, 1, block, &cursor);
    ck_assert_msg(rc == SP_ECHECKSUM || rc == SP_ECORRUPT, "got %lld", (long long)rc);
    ck_assert_msg(strstr(sp_last_error(), shard) != NULL, "message does not name %s: %s", shard, sp_last_error());
    ck_assert_int_ge(sp_loader_bench_block(l, 0, 1, block - 1, &cursor), 1); /* its neighbour is fine */
    ck_assert_int_eq(sp_loader_close(l), 0);

    l = open_on(&c, "skip");
    ck_assert_int_eq(sp_loader_bench_block(l, 0, 1, block, &cursor), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    free(shard);
    lt_ds_free(&c);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0xbe4c);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    if (lt_make(&g_ds, "bench", N_SAMPLES, 64, g_seed, "4K", "64K")) {
        fprintf(stderr, "cannot write the test dataset\n");
        return 99;
    }
    Suite *s = suite_create("loader_bench");
    TCase *tc = tu_tcase(s, "bench", 60);
    tcase_add_test(tc, counts_every_block);
    tcase_add_test(tc, workers_at_once);
    tcase_add_test(tc, arguments_refused);
    tcase_add_test(tc, busy_while_delivering);
    tcase_add_test(tc, batches_unchanged);
    tcase_add_test(tc, damaged_block);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_ds);
    return rc;
}
