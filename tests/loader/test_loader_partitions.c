/* test_loader_partitions.c - the epoch order over canonical partitions: for 1-8 ranks on several block layouts every rank gets the same batch count, at most world_size - 1 samples go per epoch (shuffled or not), and the ranks together read each block once plus at most one shared block per rank boundary; with partitions fixed, each global batch holds the same samples in the same order whatever the world size; partitions that do not fit the world size or the global batch are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_util.h"
#include "test_util.h"

static uint64_t g_seed;
static char g_seedstr[32];

/* What the ranks of one world delivered in one epoch. */
typedef struct world_run {
    uint64_t *ids[16];
    uint32_t *rows[16];
    size_t nb[16], ni[16];
    uint64_t dropped, blocks_read;
} world_run;

static void world_free(world_run *w, int world)
{
    for (int r = 0; r < world; r++) {
        free(w->ids[r]);
        free(w->rows[r]);
    }
}

/* Streams one epoch on each rank of world (in this process, one after another) and checks that the
 * ranks deliver the same batch count, never the same sample twice, and rows that hold their ids. */
static void run_world(const lt_ds *d, int world, const char *batch, const char *parts, const char *shuffle,
                      world_run *out)
{
    memset(out, 0, sizeof *out);
    uint8_t *seen = calloc(d->n, 1);
    ck_assert_ptr_nonnull(seen);
    for (int r = 0; r < world; r++) {
        char rs[12], ws[12];
        snprintf(rs, sizeof rs, "%d", r);
        snprintf(ws, sizeof ws, "%d", world);
        sp_loader *l;
        int rc = lt_open(d->dir, &l, "seed", g_seedstr, "batch_size", batch, "rank", rs, "world_size", ws,
                         "partitions", parts, "shuffle", shuffle, "epochs", "1", NULL);
        ck_assert_msg(rc == 0, "world %d rank %d: %s", world, r, sp_last_error());
        lt_rec rec = { 0 };
        ck_assert_msg(lt_epoch(l, d, &rec) == SP_EEPOCH, "world %d rank %d: %s", world, r, sp_loader_errmsg(l));
        ck_assert_msg(rec.bad == 0, "world %d rank %d: %s", world, r, rec.why);
        ck_assert_uint_eq(rec.nb, sp_loader_batches_per_epoch(l));
        ck_assert_uint_eq(rec.ni, sp_loader_samples_per_epoch(l));
        if (r > 0)
            ck_assert_msg(rec.nb == out->nb[0], "world %d: rank %d has %zu batches, rank 0 %zu", world, r, rec.nb,
                          out->nb[0]);
        sp_loader_stats st = { .struct_size = sizeof st };
        ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
        ck_assert_uint_le(st.samples_dropped_per_epoch, 1);
        out->dropped += st.samples_dropped_per_epoch;
        out->blocks_read += st.blocks_read;
        for (size_t i = 0; i < rec.ni; i++) {
            ck_assert_msg(!seen[rec.ids[i]], "world %d: sample %llu twice", world, (unsigned long long)rec.ids[i]);
            seen[rec.ids[i]] = 1;
        }
        ck_assert_int_eq(sp_loader_close(l), 0);
        out->ids[r] = rec.ids;
        out->rows[r] = rec.rows;
        out->ni[r] = rec.ni;
        out->nb[r] = rec.nb;
        rec.ids = NULL;
        rec.rows = NULL;
        lt_rec_free(&rec);
    }
    uint64_t total = 0;
    for (int r = 0; r < world; r++)
        total += out->ni[r];
    ck_assert_uint_eq(total + out->dropped, d->n);
    free(seen);
}

START_TEST(drops_and_reads)
{
    /* block sizes (and so samples per block) from tiny to large; shards end in short blocks */
    static const char *const layouts[][2] = { { "4K", "24K" }, { "16K", "64K" }, { "64K", "1M" } };
    for (size_t li = 0; li < 3; li++) {
        lt_ds d;
        ck_assert_int_eq(lt_make(&d, "parts", 3001, 64, g_seed + li, layouts[li][0], layouts[li][1]), 0);
        for (int world = 1; world <= 8; world++) {
            for (int sh = 0; sh < 2; sh++) {
                world_run w;
                run_world(&d, world, "16", "0", sh ? "true" : "false", &w);
                ck_assert_msg(w.dropped <= (uint64_t)world - 1, "layout %zu world %d drops %llu", li, world,
                              (unsigned long long)w.dropped);
                /* Each rank reads the blocks of its range; neighbours share the one they meet in. */
                ck_assert_msg(w.blocks_read <= d.blocks + (uint64_t)world - 1,
                              "layout %zu world %d: %llu blocks read of %llu", li, world,
                              (unsigned long long)w.blocks_read, (unsigned long long)d.blocks);
                world_free(&w, world);
            }
        }
        lt_ds_free(&d);
    }
}
END_TEST

/* partitions=8 and a global batch of 64: one rank of batch 64, 2 of 32, 4 of 16, 8 of 8. Global
 * batch g, the ranks' batches g one after another, is the same sequence of samples every time. */
START_TEST(order_independent_of_world)
{
    lt_ds d;
    ck_assert_int_eq(lt_make(&d, "parts-order", 2000, 16, g_seed, "4K", "32K"), 0);
    world_run ref;
    run_world(&d, 1, "64", "8", "true", &ref);
    static const int worlds[] = { 2, 4, 8 };
    for (size_t wi = 0; wi < 3; wi++) {
        int world = worlds[wi];
        char batch[8];
        snprintf(batch, sizeof batch, "%d", 64 / world);
        world_run w;
        run_world(&d, world, batch, "8", "true", &w);
        ck_assert_uint_eq(w.nb[0], ref.nb[0]);
        size_t at = 0;
        for (size_t g = 0; g < ref.nb[0]; g++) {
            for (int r = 0; r < world; r++) {
                size_t rows = w.rows[r][g], first = 0;
                for (size_t k = 0; k < g; k++)
                    first += w.rows[r][k];
                for (size_t i = 0; i < rows; i++, at++)
                    ck_assert_msg(w.ids[r][first + i] == ref.ids[0][at],
                                  "world %d rank %d batch %zu row %zu: sample %llu, one rank had %llu", world, r,
                                  g, i, (unsigned long long)w.ids[r][first + i],
                                  (unsigned long long)ref.ids[0][at]);
            }
        }
        ck_assert_uint_eq(at, ref.ni[0]);
        ck_assert_uint_eq(w.dropped, ref.dropped);
        world_free(&w, world);
    }
    world_free(&ref, 1);
    lt_ds_free(&d);
}
END_TEST

START_TEST(partitions_refused)
{
    lt_ds d;
    ck_assert_int_eq(lt_make(&d, "parts-bad", 300, 16, g_seed, "4K", "32K"), 0);
    sp_loader *l;
    int rc = lt_open(d.dir, &l, "rank", "0", "world_size", "4", "partitions", "6", "batch_size", "12", NULL);
    ck_assert_int_eq(rc, SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "partitions=6 is not a multiple of the world size 4"), "%s",
                  sp_last_error());
    rc = lt_open(d.dir, &l, "rank", "0", "world_size", "2", "partitions", "8", "batch_size", "6", NULL);
    ck_assert_int_eq(rc, SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "partitions=8 does not divide the global batch (batch_size 6 x world size "
                                          "2 = 12)"),
                  "%s", sp_last_error());
    rc = lt_open(d.dir, &l, "rank", "0", "world_size", "2", "partitions", "8", "batch_size", "4", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_int_eq(st.partitions, 8);
    ck_assert_int_eq(sp_loader_close(l), 0);
    lt_ds_free(&d);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x9a47);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    Suite *s = suite_create("loader_partitions");
    TCase *tc = tu_tcase(s, "partitions", 120);
    tcase_add_test(tc, drops_and_reads);
    tcase_add_test(tc, order_independent_of_world);
    tcase_add_test(tc, partitions_refused);
    return tu_run(s, g_seed);
}
