/* test_loader_epoch_order.c - sp_loader_epoch_order gives, without reading, exactly the sample ids the batches of that epoch deliver (1, 3 and 4 ranks, several partitions, shuffled or not, with rank_pad and in a mixture, epochs 0 and 1), marks rank_pad's repeats, leaves the loader's position alone, and takes cap and a size query. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_util.h"
#include "test_util.h"

static uint64_t g_seed;
static char g_seedstr[32];

#define PAD_BIT (UINT64_C(1) << 63)

/* The ids of epoch e from sp_loader_epoch_order, checked against the next epoch the loader delivers. */
static void check_epoch(sp_loader *l, const lt_ds *d, uint64_t e, const char *where)
{
    int64_t n = sp_loader_epoch_order(l, e, NULL, 0);
    ck_assert_msg(n == (int64_t)sp_loader_samples_per_epoch(l), "%s: %lld samples, the loader says %llu", where,
                  (long long)n, (unsigned long long)sp_loader_samples_per_epoch(l));
    uint64_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    ck_assert_ptr_nonnull(ids);
    ck_assert_int_eq(sp_loader_epoch_order(l, e, ids, (uint64_t)n + 1), n);
    uint64_t pads = 0;
    for (int64_t i = 0; i < n; i++)
        pads += (ids[i] & PAD_BIT) != 0;
    lt_rec r = { 0 };
    ck_assert_msg(lt_epoch(l, d, &r) == SP_EEPOCH, "%s: %s", where, sp_loader_errmsg(l));
    ck_assert_msg(r.bad == 0, "%s: %s", where, r.why);
    ck_assert_uint_eq(r.ni, (uint64_t)n);
    for (size_t i = 0; i < r.ni; i++)
        ck_assert_msg((ids[i] & ~PAD_BIT) == r.ids[i], "%s: position %zu: the order says %llu, the batch has %llu", where,
                      i, (unsigned long long)(ids[i] & ~PAD_BIT), (unsigned long long)r.ids[i]);
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_eq(pads, st.samples_padded_per_epoch);
    /* a cap shorter than the epoch: its first ids */
    if (n > 3) {
        uint64_t head[3];
        ck_assert_int_eq(sp_loader_epoch_order(l, e, head, 3), 3);
        ck_assert(memcmp(head, ids, sizeof head) == 0);
    }
    lt_rec_free(&r);
    free(ids);
}

START_TEST(matches_delivery)
{
    static const char *const layouts[][2] = { { "4K", "32K" }, { "16K", "64K" } };
    static const int worlds[] = { 1, 3, 4 };
    for (size_t li = 0; li < sizeof layouts / sizeof *layouts; li++) {
        lt_ds d;
        ck_assert_int_eq(lt_make(&d, "order-ids", 1003, 16, g_seed, layouts[li][0], layouts[li][1]), 0);
        for (size_t wi = 0; wi < sizeof worlds / sizeof *worlds; wi++) {
            for (int v = 0; v < 4; v++) { /* shuffle, rank_pad */
                int w = worlds[wi], rank = w - 1;
                char rs[12], ws[12], ps[12], where[160];
                snprintf(rs, sizeof rs, "%d", rank);
                snprintf(ws, sizeof ws, "%d", w);
                snprintf(ps, sizeof ps, "%d", w == 4 ? 8 : w); /* two partitions a rank on 4 */
                snprintf(where, sizeof where, "layout %zu rank %d of %d shuffle %d rank_pad %d", li, rank, w, v & 1,
                         v >> 1);
                sp_loader *l;
                int rc = lt_open(d.dir, &l, "seed", g_seedstr, "batch_size", "24", "rank", rs, "world_size", ws,
                                 "partitions", ps, "shuffle", v & 1 ? "true" : "false", "rank_pad",
                                 v >> 1 ? "true" : "false", "shuffle_window", "3", "epochs", "2", NULL);
                ck_assert_msg(rc == 0, "%s: %s", where, sp_last_error());
                check_epoch(l, &d, 0, where);
                check_epoch(l, &d, 1, where);
                ck_assert_int_eq(sp_loader_close(l), 0);
            }
        }
        lt_ds_free(&d);
    }
}
END_TEST

/* A mixture's ids (offset per source, as the batches give them). */
START_TEST(mixture)
{
    lt_ds a, b;
    ck_assert_int_eq(lt_make(&a, "order-mix-a", 700, 16, g_seed, "4K", "32K"), 0);
    ck_assert_int_eq(lt_make(&b, "order-mix-b", 500, 16, g_seed, "4K", "32K"), 0);
    const char *kv[] = { "seed", g_seedstr, "batch_size", "16", "epochs", "1", "host_memory", "64M", NULL };
    sp_params *p = lt_params_v(kv);
    ck_assert_ptr_nonnull(p);
    const char *paths[] = { a.dir, b.dir };
    double w[] = { 0.6, 0.4 };
    sp_loader *l;
    ck_assert_msg(sp_loader_open_mix(paths, w, 2, p, &l) == 0, "%s", sp_last_error());
    check_epoch(l, NULL, 0, "mixture");
    ck_assert_int_eq(sp_loader_close(l), 0);
    sp_params_destroy(p);
    lt_ds_free(&a);
    lt_ds_free(&b);
}
END_TEST

/* Asking for the order mid-epoch does not move the loader. */
START_TEST(position_kept)
{
    lt_ds d;
    ck_assert_int_eq(lt_make(&d, "order-pos", 500, 16, g_seed, "4K", "32K"), 0);
    sp_loader *l;
    ck_assert_int_eq(lt_open(d.dir, &l, "seed", g_seedstr, "batch_size", "10", "epochs", "1", NULL), 0);
    uint64_t ids[500];
    ck_assert_int_eq(sp_loader_epoch_order(l, 0, ids, 500), 500);
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_drain(l, &d, &r, 7, 30000), 0);
    uint64_t other[500];
    ck_assert_int_eq(sp_loader_epoch_order(l, 5, other, 500), 500); /* another epoch, planned aside */
    ck_assert(memcmp(ids, other, sizeof ids) != 0);
    ck_assert_int_eq(lt_epoch(l, &d, &r), SP_EEPOCH);
    ck_assert_uint_eq(r.ni, 500);
    ck_assert(memcmp(r.ids, ids, sizeof ids) == 0);
    lt_rec_free(&r);
    ck_assert_int_eq(sp_loader_close(l), 0);
    lt_ds_free(&d);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x0d3);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    Suite *s = suite_create("loader_epoch_order");
    TCase *tc = tu_tcase(s, "epoch_order", 180);
    tcase_add_test(tc, matches_delivery);
    tcase_add_test(tc, mixture);
    tcase_add_test(tc, position_kept);
    return tu_run(s, g_seed);
}
