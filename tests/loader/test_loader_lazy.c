/* test_loader_lazy.c - a local dataset of 2,000 one-block shards whose manifest records their largest blocks reads each shard's index when its shard is first needed (stats.shard_indexes_read: a handful to the first batch, each exactly once an epoch), holds no more than host_memory counts, delivers the batches of the same dataset read with every index at open (its manifest rewritten as 1.0) bit for bit over epochs, ranks and a resume, and finds a damaged index of a shard not yet read at its first use, naming the shard; a mixture's local sources are lazy alike. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_util.h"
#include "test_util.h"

#define NSHARDS 2000u /* one sample, one block, one shard each */

static uint64_t g_seed;
static char g_seedstr[32];
static lt_ds g_ds;  /* its manifest 1.1: indexes read at first use */
static lt_ds g_old; /* the same files, the manifest rewritten as 1.0: every index read at open */

static sp_loader_stats stats_of(sp_loader *l)
{
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    return st;
}

/* Open and the first batch read a handful of the 2,000 indexes; the epoch reads every one once. */
START_TEST(first_batch_reads_few)
{
    sp_loader *l;
    ck_assert_msg(lt_open(g_ds.dir, &l, "batch_size", "4", "shuffle_window", "4", "threads", "1", "prefetch", "1",
                          "epochs", "2", "seed", g_seedstr, NULL) == 0,
                  "%s", sp_last_error());
    ck_assert_uint_eq(stats_of(l).shard_indexes_read, 0);
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_drain(l, &g_ds, &r, 1, 30000), 0);
    uint64_t first = stats_of(l).shard_indexes_read;
    fprintf(stderr, "first_batch_reads_few: %llu of %u indexes read to the first batch\n", (unsigned long long)first,
            NSHARDS);
    ck_assert_msg(first >= 4 && first <= 64, "%llu indexes read to the first batch", (unsigned long long)first);
    ck_assert_int_eq(lt_epoch(l, &g_ds, &r), SP_EEPOCH);
    ck_assert_uint_eq(r.ni, NSHARDS);
    ck_assert_uint_eq(r.bad, 0);
    ck_assert_uint_eq(stats_of(l).shard_indexes_read, NSHARDS);
    /* the second epoch reads none again */
    ck_assert_int_eq(lt_epoch(l, &g_ds, &r), SP_EEPOCH);
    ck_assert_uint_eq(stats_of(l).shard_indexes_read, NSHARDS);
    ck_assert_int_eq(sp_loader_close(l), 0);
    lt_rec_free(&r);
}
END_TEST

/* Bytes malloc has handed out now (heap and mmap'd chunks). */
static uint64_t heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
}

/* What the heap grew by since `before` (the loader l's, after an epoch) is within what l counts,
 * plus a slack for what libc, libzstd and the trace keep beside the loader's own counts. */
static sp_loader_stats held_within_counted(uint64_t before, sp_loader *l, const char *what)
{
    sp_loader_stats st = stats_of(l);
    uint64_t held = heap_bytes() - before;
    fprintf(stderr, "%s: %llu indexes read, %.2f MiB held after an epoch, %.2f MiB counted (host_memory %.0f MiB)\n",
            what, (unsigned long long)st.shard_indexes_read, held / 1048576.0, st.host_allocated_bytes / 1048576.0,
            st.host_memory_bytes / 1048576.0);
    ck_assert_uint_le(st.host_allocated_bytes, st.host_memory_bytes);
    ck_assert_msg(held <= st.host_allocated_bytes + (2u << 20), "%s: %llu bytes held, %llu counted", what,
                  (unsigned long long)held, (unsigned long long)st.host_allocated_bytes);
    return st;
}

/* What the loader holds after an epoch has read every index is within what host_memory counts
 * (the pools are allocated whole at open; the tables are what grows with the shard count): with
 * every index held at open, 2,000 shard indexes lie beside the budget. */
START_TEST(memory_counted)
{
    uint64_t before = heap_bytes();
    sp_loader *l;
    ck_assert_msg(lt_open(g_ds.dir, &l, "seed", g_seedstr, "batch_size", "32", NULL) == 0, "%s", sp_last_error());
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_epoch(l, &g_ds, &r), SP_EEPOCH);
    held_within_counted(before, l, "memory_counted");
    ck_assert_int_eq(sp_loader_close(l), 0);
    lt_rec_free(&r);
}
END_TEST

/* Every batch of `epochs` epochs of a loader with the pairs kv, on dir, into r. */
static void run_epochs(const char *dir, const lt_ds *d, const char *const *kv, int epochs, lt_rec *r)
{
    sp_loader *l;
    ck_assert_msg(lt_open_kv(dir, &l, kv) == 0, "%s", sp_last_error());
    for (int e = 0; e < epochs; e++)
        ck_assert_int_eq(lt_epoch(l, d, r), SP_EEPOCH);
    ck_assert_uint_eq(r->bad, 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
}

static void same_records(const lt_rec *a, const lt_rec *b, const char *what)
{
    ck_assert_msg(a->nb == b->nb && a->nb > 0, "%s: %zu and %zu batches", what, a->nb, b->nb);
    for (size_t k = 0; k < a->nb; k++)
        ck_assert_msg(a->hash[k] == b->hash[k], "%s: batch %zu differs", what, k);
}

/* Bit for bit the batches of the eager open: shuffled epochs, each rank of two, and a run resumed
 * from a state saved mid-epoch. */
START_TEST(same_batches)
{
    const char *const shuffled[] = { "seed", g_seedstr, "batch_size", "7", "shuffle_window", "16", "epochs", "3",
                                     NULL };
    lt_rec a = { 0 }, b = { 0 };
    run_epochs(g_ds.dir, &g_ds, shuffled, 3, &a);
    run_epochs(g_old.dir, &g_old, shuffled, 3, &b);
    same_records(&a, &b, "3 shuffled epochs");
    lt_rec_free(&a);
    lt_rec_free(&b);
    for (int rank = 0; rank < 2; rank++) {
        char rs[8];
        snprintf(rs, sizeof rs, "%d", rank);
        const char *const ranked[] = { "seed", g_seedstr, "batch_size", "16", "rank", rs, "world_size", "2", NULL };
        lt_rec x = { 0 }, y = { 0 };
        run_epochs(g_ds.dir, &g_ds, ranked, 1, &x);
        run_epochs(g_old.dir, &g_old, ranked, 1, &y);
        same_records(&x, &y, "rank of 2");
        lt_rec_free(&x);
        lt_rec_free(&y);
    }
    /* resumed: 20 batches, the state saved, a new loader continues */
    const char *const kv[] = { "seed", g_seedstr, "batch_size", "8", "epochs", "2", NULL };
    lt_rec whole = { 0 }, parts = { 0 };
    run_epochs(g_old.dir, &g_old, kv, 1, &whole);
    sp_loader *l;
    ck_assert_int_eq(lt_open_kv(g_ds.dir, &l, kv), 0);
    ck_assert_int_eq(lt_drain(l, &g_ds, &parts, 20, 30000), 0);
    uint8_t state[SP_LOADER_STATE_BYTES];
    ck_assert_int_eq(sp_loader_save_state(l, state, sizeof state), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_int_eq(lt_open_kv(g_ds.dir, &l, kv), 0);
    ck_assert_int_eq(sp_loader_load_state(l, state, sizeof state), 0);
    ck_assert_int_eq(lt_epoch(l, &g_ds, &parts), SP_EEPOCH);
    ck_assert_int_eq(sp_loader_close(l), 0);
    same_records(&whole, &parts, "resumed after 20 batches");
    lt_rec_free(&whole);
    lt_rec_free(&parts);
}
END_TEST

/* A mixture of the two sources a and b (weights 0.5 each) with the pairs kv. */
static sp_loader *open_mix(const char *a, const char *b, const char *const *kv)
{
    const char *paths[2] = { a, b };
    static const double w[2] = { 0.5, 0.5 };
    sp_params *p = lt_params_v(kv);
    ck_assert_ptr_nonnull(p);
    sp_loader *l;
    int rc = sp_loader_open_mix(paths, w, 2, p, &l);
    sp_params_destroy(p);
    ck_assert_msg(rc == 0, "open_mix: %s", sp_last_error());
    return l;
}

/* A mixture's local sources whose manifests record their largest blocks are lazy too, beside a
 * source read at open (its manifest 1.0): no index read at open, a handful to the first batch,
 * each at most once over two epochs; what the loader holds is counted; the batches are those of
 * the same mixture with every index read at open. */
START_TEST(mixture_sources_lazy)
{
    const char *const kv[] = { "seed", g_seedstr, "batch_size", "8", "shuffle_window", "8", "threads", "1",
                               "prefetch", "1", "epochs", "2", "host_memory", "64M", NULL };
    sp_loader *l = open_mix(g_ds.dir, g_old.dir, kv);
    ck_assert_uint_eq(stats_of(l).shard_indexes_read, 0);
    lt_rec a = { 0 }, b = { 0 };
    ck_assert_int_eq(lt_drain(l, NULL, &a, 1, 30000), 0);
    uint64_t first = stats_of(l).shard_indexes_read;
    fprintf(stderr, "mixture_sources_lazy: %llu indexes read to the first batch\n", (unsigned long long)first);
    ck_assert_msg(first >= 1 && first <= 64, "%llu indexes read to the first batch", (unsigned long long)first);
    ck_assert_int_eq(lt_epoch(l, NULL, &a), SP_EEPOCH);
    ck_assert_int_eq(lt_epoch(l, NULL, &a), SP_EEPOCH);
    uint64_t all = stats_of(l).shard_indexes_read;
    ck_assert_msg(all > first && all <= NSHARDS, "%llu indexes read in two epochs", (unsigned long long)all);
    ck_assert_int_eq(sp_loader_close(l), 0);
    l = open_mix(g_old.dir, g_old.dir, kv);
    ck_assert_int_eq(lt_epoch(l, NULL, &b), SP_EEPOCH);
    ck_assert_int_eq(lt_epoch(l, NULL, &b), SP_EEPOCH);
    ck_assert_uint_eq(stats_of(l).shard_indexes_read, 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    same_records(&a, &b, "mixture, 2 epochs");
    lt_rec_free(&a);
    lt_rec_free(&b);
    /* both sources lazy: what an epoch leaves held is counted */
    const char *const one[] = { "seed", g_seedstr, "batch_size", "32", "host_memory", "64M", NULL };
    uint64_t before = heap_bytes();
    l = open_mix(g_ds.dir, g_ds.dir, one);
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_epoch(l, NULL, &r), SP_EEPOCH);
    ck_assert_uint_gt(held_within_counted(before, l, "mixture_sources_lazy").shard_indexes_read, NSHARDS);
    ck_assert_int_eq(sp_loader_close(l), 0);
    lt_rec_free(&r);
}
END_TEST

/* The index of a shard read late in the epoch damaged: the open and the batches before it are
 * good; the batch that needs it fails naming the shard and the damage (on_error=fail), or its
 * sample is skipped and the epoch completes (on_error=skip). */
START_TEST(damaged_index_at_first_use)
{
    lt_ds c;
    ck_assert_int_eq(lt_clone(&g_ds, &c, "lazy-dmg"), 0);
    size_t n;
    char **shards = tu_list_shards(c.dir, &n);
    ck_assert_uint_eq(n, NSHARDS);
    const char *victim = shards[NSHARDS - 10];
    tu_xor_byte(victim, tu_file_size(victim) - 64 - 20, 0x20); /* inside the index, before the trailer */
    sp_loader *l;
    ck_assert_msg(lt_open(c.dir, &l, "shuffle", "false", "batch_size", "10", "on_error", "fail", NULL) == 0,
                  "the open read the damaged index: %s", sp_last_error());
    lt_rec r = { 0 };
    int rc = lt_drain(l, &c, &r, UINT64_MAX, 30000);
    ck_assert_msg(rc == SP_ECHECKSUM, "%s: %s", sp_error_name(rc), sp_loader_errmsg(l));
    ck_assert_msg(strstr(sp_loader_errmsg(l), victim) && strstr(sp_loader_errmsg(l), "index"), "%s",
                  sp_loader_errmsg(l));
    ck_assert_uint_eq(r.nb, NSHARDS / 10 - 1); /* every batch before the victim's */
    ck_assert_uint_eq(r.bad, 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    lt_rec_free(&r);
    ck_assert_int_eq(lt_open(c.dir, &l, "seed", g_seedstr, "batch_size", "10", "on_error", "skip", NULL), 0);
    lt_rec s = { 0 };
    ck_assert_int_eq(lt_epoch(l, &c, &s), SP_EEPOCH);
    ck_assert_uint_eq(s.ni, NSHARDS);
    ck_assert_uint_eq(s.filled, 1);
    ck_assert_uint_eq(s.bad, 0);
    sp_loader_stats st = stats_of(l);
    ck_assert_uint_eq(st.blocks_skipped, 1);
    ck_assert_msg(strstr(st.bad_note, victim), "%s", st.bad_note);
    ck_assert_int_eq(sp_loader_close(l), 0);
    lt_rec_free(&s);
    tu_free_list(shards, n);
    lt_ds_free(&c);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x1a2c);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    if (lt_make_one_per_shard(&g_ds, "lazy", NSHARDS, g_seed) || lt_clone(&g_ds, &g_old, "lazy-old")) {
        fprintf(stderr, "cannot write the test dataset\n");
        return 99;
    }
    tu_rewrite_manifest(g_old.dir, 0, tu_manifest_unrecorded);
    Suite *s = suite_create("loader_lazy");
    TCase *tc = tu_tcase(s, "lazy", 120);
    tcase_add_test(tc, first_batch_reads_few);
    tcase_add_test(tc, memory_counted);
    tcase_add_test(tc, same_batches);
    tcase_add_test(tc, damaged_index_at_first_use);
    tcase_add_test(tc, mixture_sources_lazy);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_ds);
    lt_ds_free(&g_old);
    return rc;
}
