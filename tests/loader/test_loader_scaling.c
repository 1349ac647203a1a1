/* test_loader_scaling.c - many workers on a small machine: with a decode cost that sleeps (sim_sample_us, no CPU), 64 and 128 workers on 2 cores deliver at least 0.85 x workers x one worker's rate, because a block's rows are split among the workers (one block per job keeps at most two windows' blocks busy); the most jobs in flight is reported; the batches are the same bytes as a plain loader's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_util.h"
#include "test_util.h"

#define SIM_US "20000" /* each sample sleeps 20 ms in its worker */
#define SIM_S 0.020
#define SEQ 16
#define N_SAMPLES 24000
#define TRIES 3 /* a shared machine may stall a measurement: the best of a few counts */

static lt_ds g_ds;

/* Samples per second with `threads` workers, over the batches after the first (start-up excluded),
 * at least `seconds` of them; *peak gets the most jobs in flight. */
static double rate(const char *threads, double seconds, uint64_t *peak)
{
    sp_loader *l;
    /* in order: the first batch needs 8 samples, not most of a shuffled window's */
    int rc = lt_open(g_ds.dir, &l, "threads", threads, "sim_sample_us", SIM_US, "batch_size", "8", "epochs", "0",
                     "host_memory", "256M", "shuffle", "false", NULL);
    ck_assert_msg(rc == 0, "open: %s", sp_last_error());
    sp_batch *b;
    ck_assert_msg(sp_loader_next(l, &b, 60000) == 0, "%s", sp_last_error());
    ck_assert_int_eq(sp_loader_release(l, b), 0);
    /* rows of the batches after the first over the time from the first to the last of them */
    double t0 = lt_now(), t = 0;
    uint64_t rows = 0;
    while (t < seconds) {
        rc = sp_loader_next(l, &b, 60000);
        if (rc == SP_EEPOCH)
            continue;
        ck_assert_msg(rc == 0, "next: %s", sp_last_error());
        t = lt_now() - t0;
        rows += sp_batch_size(b);
        ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    *peak = st.jobs_in_flight_peak;
    ck_assert_int_eq(sp_loader_close(l), 0);
    return (double)rows / t;
}

START_TEST(many_workers_scale)
{
    uint64_t peak;
    double one = 0;
    for (int i = 0; i < 2; i++) { /* the better of two: a stall only lowers a rate */
        double r = rate("1", 1.5, &peak);
        one = r > one ? r : one;
    }
    ck_assert_msg(one > 0.8 / SIM_S && one < 1.05 / SIM_S, "one worker: %.1f samples/s, sleeping %.0f ms a sample", one,
                  SIM_S * 1000);
    printf("1 worker: %.1f samples/s\n", one);
    const int workers[] = { 64, 128 };
    for (size_t w = 0; w < 2; w++) {
        char n[8];
        snprintf(n, sizeof n, "%d", workers[w]);
        double best = 0;
        uint64_t best_peak = 0;
        for (int i = 0; i < TRIES && best < 0.85 * workers[w] * one; i++) {
            double r = rate(n, 1.5, &peak);
            if (r > best)
                best = r, best_peak = peak;
        }
        printf("%d workers: %.0f samples/s = %.2f x workers x one worker's rate; %llu jobs in flight at most\n",
               workers[w], best, best / (workers[w] * one), (unsigned long long)best_peak);
        ck_assert_msg(best >= 0.85 * workers[w] * one,
                      "%d workers: %.0f samples/s, below 0.85 x %d x %.1f (most jobs in flight: %llu)", workers[w], best,
                      workers[w], one, (unsigned long long)best_peak);
        ck_assert_uint_ge(best_peak, (uint64_t)(0.85 * workers[w]));
    }
}
END_TEST

/* Splitting changes nothing delivered: an epoch with 64 workers and the sleep is the bytes of an
 * epoch with one worker and none (every row checked against its sample, every batch hashed). */
START_TEST(split_blocks_same_bytes)
{
    lt_rec a = { 0 }, b = { 0 };
    sp_loader *l;
    ck_assert_int_eq(lt_open(g_ds.dir, &l, "threads", "1", "batch_size", "16", "epochs", "1", NULL), 0);
    ck_assert_int_eq(lt_epoch(l, &g_ds, &a), SP_EEPOCH);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_int_eq(lt_open(g_ds.dir, &l, "threads", "64", "batch_size", "16", "epochs", "1", "sim_sample_us", "50",
                             "host_memory", "256M", NULL),
                     0);
    ck_assert_int_eq(lt_epoch(l, &g_ds, &b), SP_EEPOCH);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_msg(a.bad == 0 && b.bad == 0, "%s%s", a.why, b.why);
    ck_assert_uint_eq(a.nb, b.nb);
    for (size_t i = 0; i < a.nb; i++)
        ck_assert_msg(a.hash[i] == b.hash[i], "batch %zu differs", i);
    lt_rec_free(&a);
    lt_rec_free(&b);
}
END_TEST

int main(void)
{
    if (lt_make(&g_ds, "scaling", N_SAMPLES, SEQ, 7, "4K", "1M") != 0)
        return 1;
    Suite *s = suite_create("loader_scaling");
    TCase *tc = tu_tcase(s, "scaling", 120);
    tcase_add_test(tc, many_workers_scale);
    tcase_add_test(tc, split_blocks_same_bytes);
    int rc = tu_run(s, tu_seed(1));
    lt_ds_free(&g_ds);
    return rc;
}
