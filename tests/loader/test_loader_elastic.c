/* test_loader_elastic.c - elastic resume: a state saved on W ranks resumes on W' ranks (W' dividing the partitions, the global batch kept): runs that shrink 8 -> 4 -> 2 and grow 2 -> 8 -> 4 mid-epoch deliver every sample the epoch keeps exactly once, the same global batches as an uninterrupted run; a world size not dividing the partitions, another global batch or another partition count is refused naming what works. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_util.h"
#include "test_util.h"

#define PARTS "8"
#define GLOBAL 64

static uint64_t g_seed;
static char g_seedstr[32];
static lt_ds g_ds;

static sp_loader *open_rank(int rank, int world, const char *parts)
{
    char rs[12], ws[12], bs[12];
    snprintf(rs, sizeof rs, "%d", rank);
    snprintf(ws, sizeof ws, "%d", world);
    snprintf(bs, sizeof bs, "%d", GLOBAL / world);
    sp_loader *l;
    int rc = lt_open(g_ds.dir, &l, "seed", g_seedstr, "batch_size", bs, "rank", rs, "world_size", ws,
                     "partitions", parts, "host_memory", "16M", NULL);
    ck_assert_msg(rc == 0, "rank %d of %d: %s", rank, world, sp_last_error());
    return l;
}

/* Global batches [from, to) of epoch 0 on `world` ranks resumed from state (NULL: the start), each
 * global batch's ids appended to ids (rank 0's batch first); the state after them (the same on
 * every rank) goes to out. to = UINT64_MAX: to the end of the epoch. */
static void run_phase(int world, const uint8_t *state, uint64_t from, uint64_t to, uint64_t *ids, size_t *n,
                      uint8_t *out)
{
    sp_loader *l[8] = { 0 };
    for (int r = 0; r < world; r++) {
        l[r] = open_rank(r, world, PARTS);
        if (state)
            ck_assert_msg(sp_loader_load_state(l[r], state, SP_LOADER_STATE_BYTES) == 0, "world %d rank %d: %s",
                          world, r, sp_last_error());
    }
    uint64_t nb = sp_loader_batches_per_epoch(l[0]);
    for (uint64_t g = from; g < to && g < nb; g++) {
        for (int r = 0; r < world; r++) {
            sp_batch *b;
            int rc = sp_loader_next(l[r], &b, 30000);
            ck_assert_msg(rc == 0, "world %d rank %d batch %llu: %s", world, r, (unsigned long long)g,
                          sp_loader_errmsg(l[r]));
            char why[256];
            for (uint32_t i = 0; i < sp_batch_size(b); i++) {
                ck_assert_msg(lt_row_ok(&g_ds, b, i, why, sizeof why), "%s", why);
                ids[(*n)++] = sp_batch_sample_id(b, i);
            }
            ck_assert_int_eq(sp_loader_release(l[r], b), 0);
        }
    }
    uint8_t first[SP_LOADER_STATE_BYTES];
    for (int r = 0; r < world; r++) {
        uint8_t st[SP_LOADER_STATE_BYTES];
        ck_assert_int_eq(sp_loader_save_state(l[r], st, sizeof st), 0);
        if (r == 0)
            memcpy(first, st, sizeof st);
        ck_assert_msg(memcmp(first, st, sizeof st) == 0, "world %d: rank %d saved another state", world, r);
        ck_assert_int_eq(sp_loader_close(l[r]), 0);
    }
    if (out)
        memcpy(out, first, SP_LOADER_STATE_BYTES);
}

/* An epoch in phases over the given world sizes, each running `len` global batches (the last to
 * the end): the ids equal those of one uninterrupted rank, so every sample kept goes once. */
static void elastic_run(const int *worlds, size_t nphases, uint64_t len, const uint64_t *ref, size_t nref)
{
    uint64_t *ids = malloc(g_ds.n * sizeof *ids);
    size_t n = 0;
    uint8_t state[SP_LOADER_STATE_BYTES];
    for (size_t i = 0; i < nphases; i++)
        run_phase(worlds[i], i ? state : NULL, i * len, i + 1 < nphases ? (i + 1) * len : UINT64_MAX, ids, &n,
                  state);
    ck_assert_uint_eq(n, nref);
    uint8_t *seen = calloc(g_ds.n, 1);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(ids[i] == ref[i], "position %zu: sample %llu, the uninterrupted run has %llu", i,
                      (unsigned long long)ids[i], (unsigned long long)ref[i]);
        ck_assert_msg(!seen[ids[i]], "sample %llu delivered twice", (unsigned long long)ids[i]);
        seen[ids[i]] = 1;
    }
    free(seen);
    free(ids);
}

START_TEST(shrink_and_grow)
{
    uint64_t *ref = malloc(g_ds.n * sizeof *ref);
    size_t nref = 0;
    run_phase(1, NULL, 0, UINT64_MAX, ref, &nref, NULL);
    /* 8 partitions keep floor(N / 8) samples each: the epoch drops N mod 8 */
    ck_assert_uint_eq(nref, g_ds.n - g_ds.n % 8);
    static const int shrink[] = { 8, 4, 2 }, grow[] = { 2, 8, 4 }, mixed[] = { 1, 8, 2, 4 };
    elastic_run(shrink, 3, 9, ref, nref);
    elastic_run(grow, 3, 7, ref, nref);
    elastic_run(mixed, 4, 5, ref, nref);
    free(ref);
}
END_TEST

START_TEST(refused_worlds)
{
    uint8_t state[SP_LOADER_STATE_BYTES];
    uint64_t ids[GLOBAL * 4];
    size_t n = 0;
    run_phase(4, NULL, 0, 2, ids, &n, state);
    /* 3 ranks do not divide 8 partitions: open refuses partitions=8 there */
    sp_loader *l;
    int rc = lt_open(g_ds.dir, &l, "seed", g_seedstr, "batch_size", "21", "rank", "0", "world_size", "3",
                     "partitions", PARTS, NULL);
    ck_assert_int_eq(rc, SP_EINVAL);
    /* the default partitions (the world size) are not the state's: the message names what works */
    rc = lt_open(g_ds.dir, &l, "seed", g_seedstr, "batch_size", "32", "rank", "0", "world_size", "2", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    ck_assert_int_eq(sp_loader_load_state(l, state, sizeof state), SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "partitions=8 (world size 4), this loader has 2: open it with "
                                          "partitions=8, on a world size dividing it (1, 2, 4, 8) with batch_size x "
                                          "world size = 64"),
                  "%s", sp_last_error());
    ck_assert_int_eq(sp_loader_close(l), 0);
    /* another global batch */
    rc = lt_open(g_ds.dir, &l, "seed", g_seedstr, "batch_size", "16", "rank", "1", "world_size", "2",
                 "partitions", PARTS, NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    ck_assert_int_eq(sp_loader_load_state(l, state, sizeof state), SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "different global batch size (batch_size 16 x world size 4 = 64; here 16 x 2 "
                                          "= 32): on 2 ranks use batch_size 32"),
                  "%s", sp_last_error());
    ck_assert_int_eq(sp_loader_close(l), 0);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0xe1a5);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    if (lt_make(&g_ds, "elastic", 3003, 16, g_seed, "4K", "24K")) {
        fprintf(stderr, "cannot write the test dataset\n");
        return 99;
    }
    Suite *s = suite_create("loader_elastic");
    TCase *tc = tu_tcase(s, "elastic", 120);
    tcase_add_test(tc, shrink_and_grow);
    tcase_add_test(tc, refused_worlds);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_ds);
    return rc;
}
