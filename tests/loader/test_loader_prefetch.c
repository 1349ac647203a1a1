/* test_loader_prefetch.c - prefetch that follows need: the batch ring starts with one window of batches and two more, uses (touches) no more slots than that while the consumer keeps up, grows a slot at a time only while the consumer waits for a batch the limit holds back, says so in stats, and delivers the same bytes whatever the limit did. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_util.h"
#include "test_util.h"

static uint64_t g_seed;
static char g_seedstr[32];
static lt_ds g_ds;

#define N_SAMPLES 3000
#define HELD_MAX 16

static sp_loader_stats stats_of(sp_loader *l)
{
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    return st;
}

static sp_loader *open_pf(const char *threads, const char *prefetch)
{
    sp_loader *l;
    int rc = lt_open(g_ds.dir, &l, "seed", g_seedstr, "epochs", "2", "batch_size", "32", "shuffle_window", "4",
                     "threads", threads, "prefetch", prefetch, NULL);
    ck_assert_msg(rc == 0, "open: %s", sp_last_error());
    return l;
}

/* The distinct batch memories (slots) a run handed out. */
typedef struct seen_slots {
    const void *p[512];
    size_t n;
} seen_slots;

static void see(seen_slots *s, const sp_batch *b)
{
    const void *p = sp_batch_tensor(b, 0)->data;
    for (size_t i = 0; i < s->n; i++)
        if (s->p[i] == p)
            return;
    ck_assert_uint_lt(s->n, 512);
    s->p[s->n++] = p;
}

/* Two epochs, the consumer keeping the latest `hold` batches leased (releasing the oldest once it
 * holds more), each batch recorded and its memory noted. */
static void run_holding(sp_loader *l, size_t hold, lt_rec *rec, seen_slots *seen)
{
    sp_batch *held[HELD_MAX + 1];
    size_t n = 0;
    int ends = 0, rc;
    while (ends < 2) {
        sp_batch *b;
        rc = sp_loader_next(l, &b, 60000);
        if (rc == SP_EEPOCH) {
            ends++;
            continue;
        }
        ck_assert_msg(rc == 0, "next: %s: %s", sp_error_name(rc), sp_last_error());
        lt_rec_add(rec, &g_ds, b);
        see(seen, b);
        held[n++] = b;
        if (n > hold) {
            ck_assert_int_eq(sp_loader_release(l, held[0]), 0);
            memmove(held, held + 1, --n * sizeof *held);
        }
        sp_loader_stats st = stats_of(l);
        ck_assert_uint_le(st.batch_ring_in_use, st.batch_ring_limit);
        ck_assert_uint_le(st.batch_ring_limit, st.batch_ring_slots);
    }
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(sp_loader_release(l, held[i]), 0);
    ck_assert_uint_eq(rec->bad, 0);
}

static void same_records(const lt_rec *a, const lt_rec *b)
{
    ck_assert_uint_eq(a->nb, b->nb);
    for (size_t i = 0; i < a->nb; i++)
        ck_assert_msg(a->hash[i] == b->hash[i], "batch %zu differs", i);
}

/* All slots at once with prefetch given: the reference, and the old behaviour. */
static void reference(const char *threads, lt_rec *ref, sp_loader_stats *st)
{
    sp_loader *l = open_pf(threads, "3");
    *st = stats_of(l);
    ck_assert_uint_eq(st->batch_ring_limit, st->batch_ring_slots);
    seen_slots seen = { .n = 0 };
    run_holding(l, 0, ref, &seen);
    sp_loader_stats end = stats_of(l);
    ck_assert_uint_eq(end.batch_ring_grown, 0);
    ck_assert_uint_eq(end.batch_ring_limit, end.batch_ring_slots);
    ck_assert_int_eq(sp_loader_close(l), 0);
}

/* A consumer that releases each batch at once, or keeps only the one before, never waits for a batch
 * the limit holds back: a window's batches and the one or two it holds fit the starting limit, so
 * whatever the timing the ring stays at it and touches no other slot. */
START_TEST(stays_small_while_consumer_keeps_up)
{
    lt_rec ref = { 0 };
    sp_loader_stats full;
    reference("2", &ref, &full);
    for (size_t hold = 0; hold <= 1; hold++) {
        sp_loader *l = open_pf("2", "0");
        sp_loader_stats st = stats_of(l);
        ck_assert_msg(st.batch_ring_limit < st.batch_ring_slots, "limit %llu of %llu slots",
                      (unsigned long long)st.batch_ring_limit, (unsigned long long)st.batch_ring_slots);
        uint64_t start = st.batch_ring_limit;
        lt_rec rec = { 0 };
        seen_slots seen = { .n = 0 };
        run_holding(l, hold, &rec, &seen);
        same_records(&rec, &ref);
        st = stats_of(l);
        fprintf(stderr, "prefetch: holding %zu: limit %llu of %llu slots, peak %llu, %zu slots touched, grown %llu\n",
                hold, (unsigned long long)st.batch_ring_limit, (unsigned long long)st.batch_ring_slots,
                (unsigned long long)st.batch_ring_peak_slots, seen.n, (unsigned long long)st.batch_ring_grown);
        ck_assert_uint_eq(st.batch_ring_grown, 0);
        ck_assert_uint_eq(st.batch_ring_limit, start);
        ck_assert_uint_le(st.batch_ring_peak_slots, start);
        ck_assert_uint_le(seen.n, start);
        ck_assert_uint_eq(st.batch_ring_in_use, 0);
        ck_assert_int_eq(sp_loader_close(l), 0);
        lt_rec_free(&rec);
    }
    lt_rec_free(&ref);
}
END_TEST

/* A consumer holding four batches waits at each window's last batch for slots the limit does not
 * give: the limit grows, by stats, until the window fits, and never past the ring; the bytes are
 * those of the full ring for 1 and 3 workers. */
START_TEST(grows_while_consumer_waits)
{
    const char *threads[] = { "1", "3" };
    for (int t = 0; t < 2; t++) {
        lt_rec ref = { 0 };
        sp_loader_stats full;
        reference(threads[t], &ref, &full);
        sp_loader *l = open_pf(threads[t], "0");
        uint64_t start = stats_of(l).batch_ring_limit;
        lt_rec rec = { 0 };
        seen_slots seen = { .n = 0 };
        run_holding(l, 4, &rec, &seen);
        same_records(&rec, &ref);
        sp_loader_stats st = stats_of(l);
        fprintf(stderr, "prefetch: holding 4, %s threads: limit %llu -> %llu of %llu slots, grown %llu, %zu touched\n",
                threads[t], (unsigned long long)start, (unsigned long long)st.batch_ring_limit,
                (unsigned long long)st.batch_ring_slots, (unsigned long long)st.batch_ring_grown, seen.n);
        ck_assert_uint_ge(st.batch_ring_grown, 1);
        ck_assert_uint_eq(st.batch_ring_limit, start + st.batch_ring_grown);
        ck_assert_uint_le(st.batch_ring_limit, st.batch_ring_slots);
        ck_assert_uint_le(st.batch_ring_peak_slots, st.batch_ring_limit);
        ck_assert_uint_le(seen.n, st.batch_ring_limit);
        ck_assert_int_eq(sp_loader_close(l), 0);
        lt_rec_free(&rec);
        lt_rec_free(&ref);
    }
}
END_TEST

/* The state saved while the ring has grown loads into a fresh loader, which starts small again and
 * delivers the same batches from there. */
START_TEST(state_across_growth)
{
    sp_loader *a = open_pf("2", "0");
    lt_rec first = { 0 };
    seen_slots seen = { .n = 0 }; /* (unchecked: only see()'s bound) */
    sp_batch *held[4];
    for (int k = 0; k < 40; k++) {
        if (k >= 4) /* the latest four kept */
            ck_assert_int_eq(sp_loader_release(a, held[k % 4]), 0);
        ck_assert_int_eq(sp_loader_next(a, &held[k % 4], 60000), 0);
        lt_rec_add(&first, &g_ds, held[k % 4]);
        see(&seen, held[k % 4]);
    }
    ck_assert_uint_ge(stats_of(a).batch_ring_grown, 1);
    uint8_t state[SP_LOADER_STATE_BYTES];
    ck_assert_int_eq(sp_loader_save_state(a, state, sizeof state), 0);
    lt_rec rest_a = { 0 }, rest_b = { 0 };
    ck_assert_int_eq(lt_drain(a, &g_ds, &rest_a, 30, 60000), 0);
    sp_loader *b = open_pf("3", "0");
    uint64_t start = stats_of(b).batch_ring_limit;
    ck_assert_int_eq(sp_loader_load_state(b, state, sizeof state), 0);
    ck_assert_int_eq(lt_drain(b, &g_ds, &rest_b, 30, 60000), 0);
    same_records(&rest_a, &rest_b);
    ck_assert_uint_eq(stats_of(b).batch_ring_grown, 0);
    ck_assert_uint_eq(stats_of(b).batch_ring_limit, start);
    for (int k = 36; k < 40; k++)
        ck_assert_int_eq(sp_loader_release(a, held[k % 4]), 0);
    ck_assert_int_eq(sp_loader_close(a), 0);
    ck_assert_int_eq(sp_loader_close(b), 0);
    lt_rec_free(&first);
    lt_rec_free(&rest_a);
    lt_rec_free(&rest_b);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x9f3);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)(g_seed & 0xffffffff));
    if (lt_make(&g_ds, "prefetch", N_SAMPLES, 16, g_seed, "4K", "64K")) {
        fprintf(stderr, "cannot write the test dataset\n");
        return 99;
    }
    Suite *s = suite_create("loader_prefetch");
    TCase *tc = tu_tcase(s, "prefetch", 60);
    tcase_add_test(tc, stays_small_while_consumer_keeps_up);
    tcase_add_test(tc, grows_while_consumer_waits);
    tcase_add_test(tc, state_across_growth);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_ds);
    return rc;
}
