/* test_loader_order.c - one epoch delivers every sample exactly once, bit-identical for any thread count, read path and run; the shuffle mixes well and changes per epoch; no shuffle keeps disk order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_util.h"
#include "test_util.h"

static uint64_t g_seed;
static char g_seedstr[32];
static lt_ds g_ds;
static bool g_uring; /* io=uring opens here */

#define N_SAMPLES 6000

static sp_loader *open_or_fail(const char *io, const char *threads, const char *shuffle, const char *seed)
{
    sp_loader *l;
    int rc = lt_open(g_ds.dir, &l, "io", io, "threads", threads, "shuffle", shuffle, "seed", seed, "batch_size", "32",
                     "epochs", "0", NULL);
    ck_assert_msg(rc == 0, "open io=%s threads=%s: %s", io, threads, sp_last_error());
    return l;
}

/* One epoch's record; fails the test unless it ends in SP_EEPOCH with every row intact. */
static void one_epoch(sp_loader *l, lt_rec *r)
{
    int rc = lt_epoch(l, &g_ds, r);
    ck_assert_msg(rc == SP_EEPOCH, "epoch ended with %s: %s", sp_error_name(rc), sp_last_error());
    ck_assert_msg(r->bad == 0, "%llu bad rows; first: %s", (unsigned long long)r->bad, r->why);
    ck_assert_uint_eq(r->filled, 0);
}

START_TEST(every_sample_once)
{
    sp_loader *l = open_or_fail("auto", "2", "true", g_seedstr);
    ck_assert_uint_eq(sp_loader_samples_per_epoch(l), N_SAMPLES);
    ck_assert_uint_eq(sp_loader_batches_per_epoch(l), (N_SAMPLES + 31) / 32);
    lt_rec r = { 0 };
    one_epoch(l, &r);
    ck_assert_uint_eq(r.nb, sp_loader_batches_per_epoch(l));
    ck_assert_uint_eq(r.ni, N_SAMPLES);
    uint8_t *seen = calloc(N_SAMPLES, 1);
    ck_assert_ptr_nonnull(seen);
    for (size_t i = 0; i < r.ni; i++) {
        ck_assert_msg(r.ids[i] < N_SAMPLES, "row %zu: id %llu", i, (unsigned long long)r.ids[i]);
        ck_assert_msg(!seen[r.ids[i]], "sample %llu delivered twice", (unsigned long long)r.ids[i]);
        seen[r.ids[i]] = 1;
    }
    for (size_t b = 0; b + 1 < r.nb; b++)
        ck_assert_uint_eq(r.rows[b], 32);
    ck_assert_uint_eq(r.rows[r.nb - 1], N_SAMPLES % 32);
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_eq(st.batches, r.nb);
    ck_assert_uint_eq(st.samples, N_SAMPLES);
    /* Every block once; the reader may have run on into the next epoch (epochs=0). */
    ck_assert_uint_ge(st.blocks_read, g_ds.blocks);
    ck_assert_uint_le(st.blocks_read, 2 * g_ds.blocks);
    ck_assert_uint_eq(st.blocks_skipped, 0);
    ck_assert_uint_eq(st.samples_dropped_per_epoch, 0);
    free(seen);
    lt_rec_free(&r);
    ck_assert_int_eq(sp_loader_close(l), 0);
}
END_TEST

static void check_same(const lt_rec *ref, const lt_rec *r, const char *what)
{
    ck_assert_msg(r->nb == ref->nb, "%s: %zu batches, reference %zu", what, r->nb, ref->nb);
    for (size_t b = 0; b < r->nb; b++)
        ck_assert_msg(r->hash[b] == ref->hash[b], "%s: batch %zu differs from the reference", what, b);
}

START_TEST(identical_across_threads_and_io)
{
    lt_rec ref = { 0 };
    sp_loader *l = open_or_fail("pread", "1", "true", g_seedstr);
    one_epoch(l, &ref);
    ck_assert_int_eq(sp_loader_close(l), 0);
    static const char *const ios[] = { "pread", "uring" };
    for (int io = 0; io < 2; io++) {
        if (io == 1 && !g_uring) {
            fprintf(stderr, "order: io_uring refused on this machine: io=uring cases skipped\n");
            continue;
        }
        for (int t = 1; t <= 8; t++) {
            char ts[8], what[64];
            snprintf(ts, sizeof ts, "%d", t);
            snprintf(what, sizeof what, "io=%s threads=%d", ios[io], t);
            lt_rec r = { 0 };
            l = open_or_fail(ios[io], ts, "true", g_seedstr);
            sp_loader_stats st = { .struct_size = sizeof st };
            ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
            ck_assert_int_eq(st.io, io == 0 ? SP_IO_PREAD : SP_IO_URING);
            ck_assert_int_eq(st.threads, t);
            one_epoch(l, &r);
            check_same(&ref, &r, what);
            lt_rec_free(&r);
            ck_assert_int_eq(sp_loader_close(l), 0);
        }
    }
    /* A second run of the same configuration, and a second epoch of the same loader, differ only
     * where the epoch does. */
    lt_rec a = { 0 }, b = { 0 };
    l = open_or_fail("auto", "3", "true", g_seedstr);
    one_epoch(l, &a);
    one_epoch(l, &b);
    ck_assert_int_eq(sp_loader_close(l), 0);
    check_same(&ref, &a, "second run");
    lt_rec b2 = { 0 };
    l = open_or_fail("auto", "5", "true", g_seedstr);
    one_epoch(l, &b2);
    one_epoch(l, &b2);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_uint_eq(b2.nb, 2 * ref.nb);
    for (size_t k = 0; k < b.nb; k++)
        ck_assert_msg(b2.hash[ref.nb + k] == b.hash[k], "epoch 1 batch %zu differs between runs", k);
    lt_rec_free(&ref);
    lt_rec_free(&a);
    lt_rec_free(&b);
    lt_rec_free(&b2);
}
END_TEST

/* Fraction of adjacent rows, within a batch, whose ids follow each other on disk. */
static double adjacent_fraction(const lt_rec *r)
{
    size_t pairs = 0, consecutive = 0, i = 0;
    for (size_t b = 0; b < r->nb; i += r->rows[b], b++)
        for (uint32_t k = 0; k + 1 < r->rows[b]; k++) {
            pairs++;
            consecutive += r->ids[i + k + 1] == r->ids[i + k] + 1;
        }
    return pairs ? (double)consecutive / (double)pairs : 0;
}

START_TEST(shuffle_quality)
{
    /* Samples are permuted uniformly inside a window of shuffle_window (8) blocks of ~27 samples,
     * W ~ 216 samples. A uniform permutation of W items has on average (W-1)/W ~ 1 position i with
     * p(i+1) = p(i)+1, so about 1/W ~ 0.5% of adjacent pairs are consecutive on disk; block order
     * across windows adds nothing (consecutive blocks rarely meet). Without shuffle it is ~100%. A
     * 5% bound is ten times the expectation and far below what an unshuffled or block-only
     * shuffle gives (a block-only shuffle would leave ~96%). */
    lt_rec e0 = { 0 }, e1 = { 0 }, plain = { 0 };
    sp_loader *l = open_or_fail("auto", "2", "true", g_seedstr);
    one_epoch(l, &e0);
    one_epoch(l, &e1);
    ck_assert_int_eq(sp_loader_close(l), 0);
    l = open_or_fail("auto", "2", "false", g_seedstr);
    one_epoch(l, &plain);
    ck_assert_int_eq(sp_loader_close(l), 0);
    double f0 = adjacent_fraction(&e0), f1 = adjacent_fraction(&e1), fp = adjacent_fraction(&plain);
    fprintf(stderr, "order: consecutive adjacent pairs: epoch 0 %.3f%%, epoch 1 %.3f%%, unshuffled %.1f%%\n",
            100 * f0, 100 * f1, 100 * fp);
    ck_assert_msg(f0 < 0.05 && f1 < 0.05, "shuffled epochs keep %.2f%% / %.2f%% of disk neighbours", 100 * f0,
                  100 * f1);
    ck_assert_msg(fp > 0.95, "the metric does not see disk order (%.2f%% unshuffled)", 100 * fp);

    /* Epochs differ: few positions hold the same sample. */
    ck_assert_uint_eq(e0.ni, e1.ni);
    size_t same = 0;
    for (size_t i = 0; i < e0.ni; i++)
        same += e0.ids[i] == e1.ids[i];
    ck_assert_msg(same < e0.ni / 50, "epochs 0 and 1 agree on %zu of %zu positions", same, e0.ni);

    /* Blocks are permuted over the whole dataset, not only inside a window: the first window's
     * ~216 samples come from 8 random blocks, which span well over a quarter of the ids. */
    uint64_t lo = UINT64_MAX, hi = 0;
    for (size_t i = 0; i < 200; i++) {
        lo = e0.ids[i] < lo ? e0.ids[i] : lo;
        hi = e0.ids[i] > hi ? e0.ids[i] : hi;
    }
    ck_assert_msg(hi - lo > N_SAMPLES / 4, "the first window spans only ids %llu..%llu", (unsigned long long)lo,
                  (unsigned long long)hi);

    /* Another seed, another order. */
    char other[32];
    snprintf(other, sizeof other, "%llu", (unsigned long long)(g_seed + 1));
    lt_rec o = { 0 };
    l = open_or_fail("auto", "2", "true", other);
    one_epoch(l, &o);
    ck_assert_int_eq(sp_loader_close(l), 0);
    same = 0;
    for (size_t i = 0; i < e0.ni; i++)
        same += e0.ids[i] == o.ids[i];
    ck_assert_msg(same < e0.ni / 50, "seeds %llu and %s agree on %zu positions", (unsigned long long)g_seed, other,
                  same);
    lt_rec_free(&e0);
    lt_rec_free(&e1);
    lt_rec_free(&plain);
    lt_rec_free(&o);
}
END_TEST

START_TEST(disk_order_without_shuffle)
{
    for (int t = 1; t <= 4; t += 3) {
        char ts[8];
        snprintf(ts, sizeof ts, "%d", t);
        sp_loader *l = open_or_fail("auto", ts, "false", g_seedstr);
        for (int e = 0; e < 2; e++) {
            lt_rec r = { 0 };
            one_epoch(l, &r);
            ck_assert_uint_eq(r.ni, N_SAMPLES);
            for (size_t i = 0; i < r.ni; i++)
                ck_assert_msg(r.ids[i] == i, "threads %d epoch %d: position %zu holds sample %llu", t, e, i,
                              (unsigned long long)r.ids[i]);
            lt_rec_free(&r);
        }
        ck_assert_int_eq(sp_loader_close(l), 0);
    }
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x10ade701);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    if (lt_make(&g_ds, "order", N_SAMPLES, 64, g_seed, "4K", "64K")) {
        fprintf(stderr, "cannot write the test dataset\n");
        return 99;
    }
    fprintf(stderr, "order: %llu samples in %llu blocks, %llu shards\n", (unsigned long long)g_ds.n,
            (unsigned long long)g_ds.blocks, (unsigned long long)g_ds.shards);
    sp_loader *l;
    g_uring = lt_open(g_ds.dir, &l, "io", "uring", NULL) == 0;
    sp_loader_close(l);

    Suite *s = suite_create("loader_order");
    TCase *tc = tu_tcase(s, "order", 60);
    tcase_add_test(tc, every_sample_once);
    tcase_add_test(tc, identical_across_threads_and_io);
    tcase_add_test(tc, shuffle_quality);
    tcase_add_test(tc, disk_order_without_shuffle);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_ds);
    return rc;
}
