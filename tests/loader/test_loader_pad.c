/* test_loader_pad.c - rank_pad: for 1-8 ranks on several block layouts, shuffled or not, no sample is dropped from an epoch's rank split: the ranks' rows that are not padding hold every sample exactly once, the short shares are filled by repeats that sp_batch_is_padding marks (and no other row), batch counts stay equal, and an elastic resume (8 partitions, 4 ranks -> 2) keeps all of that; without rank_pad nothing is marked, and a state saved with it is refused by a loader without it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_util.h"
#include "test_util.h"

static uint64_t g_seed;
static char g_seedstr[32];

/* Counts, over some ranks' batches, how often each sample came as a real row and as padding. */
typedef struct tally {
    uint32_t *real, *pad;
    uint64_t npad, rows;
} tally;

static void tally_init(tally *t, uint64_t n)
{
    t->real = calloc(n, sizeof *t->real);
    t->pad = calloc(n, sizeof *t->pad);
    ck_assert(t->real && t->pad);
    t->npad = t->rows = 0;
}

static void tally_free(tally *t)
{
    free(t->real);
    free(t->pad);
}

/* Checks one batch's rows against the dataset and counts them; returns its padding rows. */
static uint32_t tally_batch(tally *t, const lt_ds *d, const sp_batch *b, const char *where)
{
    uint32_t pads = 0;
    for (uint32_t i = 0; i < sp_batch_size(b); i++) {
        char why[256];
        uint64_t id = sp_batch_sample_id(b, i);
        ck_assert_msg(id < d->n, "%s: row %u has sample id %llu", where, i, (unsigned long long)id);
        ck_assert_msg(lt_row_ok(d, b, i, why, sizeof why), "%s: %s", where, why);
        int p = sp_batch_is_padding(b, i);
        ck_assert_msg(p == 0 || p == 1, "%s: sp_batch_is_padding %d", where, p);
        if (p) {
            t->pad[id]++;
            pads++;
        } else {
            t->real[id]++;
        }
        t->rows++;
    }
    t->npad += pads;
    return pads;
}

/* Every sample once as a real row; padding only repeats samples, at most max_pad of them. */
static void tally_check(const tally *t, uint64_t n, uint64_t max_pad, const char *where)
{
    for (uint64_t i = 0; i < n; i++)
        ck_assert_msg(t->real[i] == 1, "%s: sample %llu came %u times (not as padding)", where,
                      (unsigned long long)i, t->real[i]);
    ck_assert_msg(t->npad <= max_pad, "%s: %llu padding rows, at most %llu expected", where,
                  (unsigned long long)t->npad, (unsigned long long)max_pad);
    ck_assert_uint_eq(t->rows, n + t->npad);
}

static sp_loader *open_pad(const lt_ds *d, int rank, int world, const char *batch, const char *parts,
                           const char *shuffle, const char *pad)
{
    char rs[12], ws[12];
    snprintf(rs, sizeof rs, "%d", rank);
    snprintf(ws, sizeof ws, "%d", world);
    sp_loader *l;
    int rc = lt_open(d->dir, &l, "seed", g_seedstr, "batch_size", batch, "rank", rs, "world_size", ws,
                     "partitions", parts, "shuffle", shuffle, "rank_pad", pad, "epochs", "1", "host_memory", "16M",
                     NULL);
    ck_assert_msg(rc == 0, "world %d rank %d: %s", world, rank, sp_last_error());
    return l;
}

START_TEST(drops_none)
{
    static const char *const layouts[][2] = { { "4K", "24K" }, { "16K", "64K" }, { "64K", "1M" } };
    for (size_t li = 0; li < 3; li++) {
        lt_ds d;
        ck_assert_int_eq(lt_make(&d, "pad", 3001, 64, g_seed + li, layouts[li][0], layouts[li][1]), 0);
        for (int world = 1; world <= 8; world++) {
            for (int sh = 0; sh < 2; sh++) {
                char where[96];
                snprintf(where, sizeof where, "layout %zu world %d shuffle %d", li, world, sh);
                tally t;
                tally_init(&t, d.n);
                uint64_t nb0 = 0, keep = (d.n + (uint64_t)world - 1) / (uint64_t)world;
                for (int r = 0; r < world; r++) {
                    sp_loader *l = open_pad(&d, r, world, "16", "0", sh ? "true" : "false", "true");
                    uint64_t nb = sp_loader_batches_per_epoch(l);
                    ck_assert_uint_eq(sp_loader_samples_per_epoch(l), keep);
                    if (r == 0)
                        nb0 = nb;
                    ck_assert_msg(nb == nb0, "%s: rank %d has %llu batches, rank 0 %llu", where, r,
                                  (unsigned long long)nb, (unsigned long long)nb0);
                    sp_batch *b;
                    uint64_t k = 0, rank_pads = 0;
                    int rc;
                    while ((rc = sp_loader_next(l, &b, 30000)) == 0) {
                        uint32_t pads = tally_batch(&t, &d, b, where);
                        rank_pads += pads;
                        /* one partition a rank here: its repeat closes the epoch */
                        ck_assert_msg(pads == 0 || k + 1 == nb, "%s: padding in batch %llu of %llu", where,
                                      (unsigned long long)k, (unsigned long long)nb);
                        ck_assert_int_eq(sp_loader_release(l, b), 0);
                        k++;
                    }
                    ck_assert_msg(rc == SP_EEPOCH, "%s: %s", where, sp_loader_errmsg(l));
                    ck_assert_uint_eq(k, nb);
                    sp_loader_stats st = { .struct_size = sizeof st };
                    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
                    ck_assert_uint_eq(st.samples_dropped_per_epoch, 0);
                    /* stats count the padding rows: planned and handed out */
                    ck_assert_uint_eq(st.samples_padded, rank_pads);
                    ck_assert_uint_eq(st.samples_padded_per_epoch, rank_pads);
                    ck_assert_int_eq(sp_loader_close(l), 0);
                }
                tally_check(&t, d.n, (uint64_t)world - 1, where);
                ck_assert_uint_eq(t.npad, keep * (uint64_t)world - d.n);
                tally_free(&t);
            }
        }
        lt_ds_free(&d);
    }
}
END_TEST

/* Several partitions a rank (8 on 2 ranks): each short one repeats a sample of its own. */
START_TEST(partitions_per_rank)
{
    lt_ds d;
    ck_assert_int_eq(lt_make(&d, "pad-parts", 2005, 16, g_seed, "4K", "32K"), 0);
    for (int sh = 0; sh < 2; sh++) {
        tally t;
        tally_init(&t, d.n);
        for (int r = 0; r < 2; r++) {
            sp_loader *l = open_pad(&d, r, 2, "32", "8", sh ? "true" : "false", "true");
            sp_batch *b;
            int rc;
            while ((rc = sp_loader_next(l, &b, 30000)) == 0) {
                tally_batch(&t, &d, b, "8 partitions on 2 ranks");
                ck_assert_int_eq(sp_loader_release(l, b), 0);
            }
            ck_assert_msg(rc == SP_EEPOCH, "%s", sp_loader_errmsg(l));
            ck_assert_int_eq(sp_loader_close(l), 0);
        }
        /* 2005 = 8 x 250 + 5: three partitions repeat one sample each */
        tally_check(&t, d.n, 3, "8 partitions on 2 ranks");
        ck_assert_uint_eq(t.npad, 3);
        tally_free(&t);
    }
    lt_ds_free(&d);
}
END_TEST

/* Global batches [from, to) of the epoch on `world` ranks (global batch 64, 8 partitions), resumed
 * from state when not NULL; the state after them goes to out. */
static void pad_phase(const lt_ds *d, int world, const uint8_t *state, uint64_t from, uint64_t to, tally *t,
                      uint8_t *out)
{
    char bs[12];
    snprintf(bs, sizeof bs, "%d", 64 / world);
    sp_loader *l[8];
    for (int r = 0; r < world; r++) {
        l[r] = open_pad(d, r, world, bs, "8", "true", "true");
        if (state)
            ck_assert_msg(sp_loader_load_state(l[r], state, SP_LOADER_STATE_BYTES) == 0, "%s", sp_last_error());
    }
    uint64_t nb = sp_loader_batches_per_epoch(l[0]);
    for (uint64_t g = from; g < to && g < nb; g++) {
        for (int r = 0; r < world; r++) {
            sp_batch *b;
            ck_assert_msg(sp_loader_next(l[r], &b, 30000) == 0, "%s", sp_loader_errmsg(l[r]));
            tally_batch(t, d, b, "elastic");
            ck_assert_int_eq(sp_loader_release(l[r], b), 0);
        }
    }
    for (int r = 0; r < world; r++) {
        if (out && r == 0)
            ck_assert_int_eq(sp_loader_save_state(l[r], out, SP_LOADER_STATE_BYTES), 0);
        ck_assert_int_eq(sp_loader_close(l[r]), 0);
    }
}

START_TEST(elastic_padded)
{
    lt_ds d;
    ck_assert_int_eq(lt_make(&d, "pad-elastic", 2005, 16, g_seed, "4K", "32K"), 0);
    tally t;
    tally_init(&t, d.n);
    uint8_t s1[SP_LOADER_STATE_BYTES], s2[SP_LOADER_STATE_BYTES];
    pad_phase(&d, 4, NULL, 0, 10, &t, s1);
    pad_phase(&d, 2, s1, 10, 20, &t, s2);
    pad_phase(&d, 8, s2, 20, UINT64_MAX, &t, NULL);
    tally_check(&t, d.n, 7, "elastic 4 -> 2 -> 8");
    ck_assert_uint_eq(t.npad, 3);
    /* a loader that drops is not the order the state names */
    sp_loader *l = open_pad(&d, 0, 2, "32", "8", "true", "false");
    ck_assert_int_eq(sp_loader_load_state(l, s1, sizeof s1), SP_EINVAL);
    ck_assert_msg(strstr(sp_loader_errmsg(l), "rank_pad"), "%s", sp_loader_errmsg(l));
    ck_assert_int_eq(sp_loader_close(l), 0);
    tally_free(&t);
    lt_ds_free(&d);
}
END_TEST

/* Without rank_pad no row is padding; the accessor checks its arguments. */
START_TEST(unmarked_by_default)
{
    lt_ds d;
    ck_assert_int_eq(lt_make(&d, "pad-off", 301, 16, g_seed, "4K", "32K"), 0);
    sp_loader *l = open_pad(&d, 1, 4, "8", "0", "true", "false");
    sp_batch *b;
    int rc;
    uint32_t last_rows = 0;
    while ((rc = sp_loader_next(l, &b, 30000)) == 0) {
        for (uint32_t i = 0; i < sp_batch_size(b); i++)
            ck_assert_int_eq(sp_batch_is_padding(b, i), 0);
        last_rows = sp_batch_size(b);
        ck_assert_int_eq(sp_batch_is_padding(b, sp_batch_size(b)), SP_ERANGE);
        ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
    ck_assert_int_eq(rc, SP_EEPOCH);
    ck_assert_uint_gt(last_rows, 0);
    ck_assert_int_eq(sp_batch_is_padding(NULL, 0), SP_EINVAL);
    ck_assert_int_eq(sp_loader_close(l), 0);
    lt_ds_free(&d);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x9ad);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    Suite *s = suite_create("loader_pad");
    TCase *tc = tu_tcase(s, "pad", 240);
    tcase_add_test(tc, drops_none);
    tcase_add_test(tc, partitions_per_rank);
    tcase_add_test(tc, elastic_padded);
    tcase_add_test(tc, unmarked_by_default);
    return tu_run(s, g_seed);
}
