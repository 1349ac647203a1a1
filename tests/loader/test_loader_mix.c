/* test_loader_mix.c - weighted mixtures (sp_loader_open_mix): over an epoch each source delivers its share within 1% of the weights (the epoch ends when the first source runs out, or after mix_epoch_samples, sources short of their share repeated evenly), stats count samples per source, rows hold their source's values, the same seed gives the same batches and each epoch a new draw; resumed mid-epoch on another world size the epoch is the same samples once; different schemas, bad weights and another mixture's state are refused; one window holding a whole epoch with a cut block delivers every batch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_util.h"
#include "test_util.h"

#define NA 3000
#define NB 2000

static uint64_t g_seed;
static char g_seedstr[32];
static lt_ds g_a, g_b;
static const double g_w[2] = { 0.7, 0.3 };

static sp_loader *open_mix(const char *const *kv)
{
    const char *paths[2] = { g_a.dir, g_b.dir };
    sp_params *p = lt_params_v(kv);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(sp_params_set_str(p, "seed", g_seedstr), 0);
    ck_assert_int_eq(sp_params_set_str(p, "host_memory", "32M"), 0);
    ck_assert_int_eq(sp_params_set_str(p, "threads", "2"), 0);
    sp_loader *l;
    int rc = sp_loader_open_mix(paths, g_w, 2, p, &l);
    sp_params_destroy(p);
    ck_assert_msg(rc == 0, "open_mix: %s", sp_last_error());
    return l;
}

/* Takes batches until the epoch ends (or max), appending ids; checks each row's label against
 * its source's sample number. */
static void drain(sp_loader *l, uint64_t max, uint64_t *ids, size_t *n)
{
    for (uint64_t k = 0; k < max; k++) {
        sp_batch *b;
        int rc = sp_loader_next(l, &b, 30000);
        if (rc == SP_EEPOCH)
            return;
        ck_assert_msg(rc == 0, "next: %s", sp_loader_errmsg(l));
        int f = sp_batch_find(b, "label");
        ck_assert_int_ge(f, 0);
        const int64_t *label = sp_batch_tensor(b, (size_t)f)->data;
        for (uint32_t i = 0; i < sp_batch_size(b); i++) {
            uint64_t id = sp_batch_sample_id(b, i);
            ck_assert_uint_lt(id, NA + NB);
            ck_assert_msg((uint64_t)label[i] == (id < NA ? id : id - NA), "sample %llu holds label %lld",
                          (unsigned long long)id, (long long)label[i]);
            ids[(*n)++] = id;
        }
        ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
}

START_TEST(shares_and_determinism)
{
    static const char *const kv[] = { "batch_size", "32", "epochs", "2", NULL };
    sp_loader *l = open_mix(kv), *again = open_mix(kv);
    uint64_t *ids = malloc((NA + NB) * sizeof *ids), *ids2 = malloc((NA + NB) * sizeof *ids2);
    size_t n = 0, n2 = 0;
    drain(l, UINT64_MAX, ids, &n);
    drain(again, UINT64_MAX, ids2, &n2);
    ck_assert_uint_eq(n, n2);
    ck_assert_msg(memcmp(ids, ids2, n * sizeof *ids) == 0, "the same seed gave another order");
    /* M = min(3000 / 0.7, 2000 / 0.3): all of A, floor(0.3 M) = 1285 of B */
    ck_assert_uint_eq(n, NA + 1285);
    ck_assert_uint_eq(n, sp_loader_samples_per_epoch(l));
    size_t from_a = 0;
    uint8_t *seen = calloc(NA + NB, 1);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(!seen[ids[i]], "sample %llu twice in an epoch", (unsigned long long)ids[i]);
        seen[ids[i]] = 1;
        from_a += ids[i] < NA;
    }
    double share = (double)from_a / (double)n;
    ck_assert_msg(fabs(share - g_w[0]) < 0.01, "source 0 gave %.4f of the epoch", share);
    /* the first and the last quarter of the epoch are mixed too, not one source after the other */
    size_t head = 0;
    for (size_t i = 0; i < n / 4; i++)
        head += ids[i] < NA;
    ck_assert_msg(fabs((double)head / (double)(n / 4) - g_w[0]) < 0.05, "the first quarter holds %.3f of source 0",
                  (double)head / (double)(n / 4));
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_int_eq(st.sources, 2);
    ck_assert_uint_eq(st.source_samples[0], from_a);
    ck_assert_uint_eq(st.source_samples[1], n - from_a);
    /* epoch 1 draws other samples of B */
    size_t m = 0;
    drain(l, UINT64_MAX, ids2, &m);
    ck_assert_uint_eq(m, n);
    size_t same = 0;
    for (size_t i = 0; i < m; i++)
        same += ids2[i] >= NA && seen[ids2[i]];
    ck_assert_msg(same < 1285, "epoch 1 drew exactly epoch 0's samples of source 1");
    free(seen);
    free(ids);
    free(ids2);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_int_eq(sp_loader_close(again), 0);
}
END_TEST

/* mix_epoch_samples M: the epoch is M samples, source d's share round(w[d] M) of them (the shares
 * add up to M): a source holding fewer is repeated, each sample at most once more than the others
 * of its source; one holding more gives a part; the same seed, the same batches; stats count the
 * repeats. */
static void check_epoch_samples(uint64_t m, uint64_t take_a)
{
    char ms[24];
    snprintf(ms, sizeof ms, "%llu", (unsigned long long)m);
    const char *kv[] = { "batch_size", "32", "epochs", "2", "mix_epoch_samples", ms, NULL };
    sp_loader *l = open_mix(kv), *again = open_mix(kv);
    uint64_t *ids = malloc(m * sizeof *ids), *ids2 = malloc(m * sizeof *ids2);
    size_t n = 0, n2 = 0;
    drain(l, UINT64_MAX, ids, &n);
    drain(again, UINT64_MAX, ids2, &n2);
    ck_assert_uint_eq(n, m);
    ck_assert_uint_eq(sp_loader_samples_per_epoch(l), m);
    ck_assert_uint_eq(n2, n);
    ck_assert_msg(memcmp(ids, ids2, n * sizeof *ids) == 0, "M %llu: the same seed gave another order",
                  (unsigned long long)m);
    uint32_t *times = calloc(NA + NB, sizeof *times);
    size_t from_a = 0;
    for (size_t i = 0; i < n; i++) {
        times[ids[i]]++;
        from_a += ids[i] < NA;
    }
    ck_assert_msg(from_a == take_a, "M %llu: %zu from source 0, expected %llu", (unsigned long long)m, from_a,
                  (unsigned long long)take_a);
    ck_assert_msg(fabs((double)from_a / (double)n - g_w[0]) < 0.01, "source 0 gave %.4f", (double)from_a / (double)n);
    /* within a source, repeats are even: every sample floor(take/N) or one more times (whole
     * passes, then part of one) */
    const uint64_t have[2] = { NA, NB }, take[2] = { take_a, m - take_a };
    for (int d = 0; d < 2; d++) {
        uint64_t lo = take[d] / have[d], first = d ? NA : 0;
        for (uint64_t i = 0; i < have[d]; i++)
            ck_assert_msg(times[first + i] == lo || times[first + i] == lo + 1, "M %llu: sample %llu came %u times",
                          (unsigned long long)m, (unsigned long long)(first + i), times[first + i]);
    }
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_eq(st.source_samples[0], from_a);
    ck_assert_uint_eq(st.source_samples[1], n - from_a);
    /* epoch 1: M again, another draw */
    size_t n3 = 0;
    drain(l, UINT64_MAX, ids2, &n3);
    ck_assert_uint_eq(n3, m);
    ck_assert_msg(memcmp(ids, ids2, n * sizeof *ids) != 0, "epoch 1 repeats epoch 0");
    free(times);
    free(ids);
    free(ids2);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_int_eq(sp_loader_close(again), 0);
}

START_TEST(epoch_samples)
{
    check_epoch_samples(8000, 5600); /* 5600 of A's 3000 (1 or 2 times each), 2400 of B's 2000 */
    check_epoch_samples(1001, 701);  /* 700.7 and 300.3: the larger remainder gets the sample */
    check_epoch_samples(20000, 14000);
}
END_TEST

/* partitions 4, global batch 64: 4 ranks for 10 batches, then 2 ranks to the end of the epoch, give
 * the samples of one rank's epoch, once each (under either epoch rule). */
static void elastic_run(const char *rule)
{
    const char *one[] = { "batch_size", "64", "partitions", "4", "mix_epoch_samples", rule, NULL };
    sp_loader *ref = open_mix(one);
    uint64_t *want = malloc(3 * (NA + NB) * sizeof *want), *got = malloc(3 * (NA + NB) * sizeof *got);
    size_t nw = 0, ng = 0;
    drain(ref, UINT64_MAX, want, &nw);
    ck_assert_int_eq(sp_loader_close(ref), 0);
    uint8_t st[SP_LOADER_STATE_BYTES];
    static const int worlds[2] = { 4, 2 };
    for (int phase = 0; phase < 2; phase++) {
        int world = worlds[phase];
        sp_loader *l[4] = { 0 };
        for (int r = 0; r < world; r++) {
            char rs[12], ws[12], bs[12];
            snprintf(rs, sizeof rs, "%d", r);
            snprintf(ws, sizeof ws, "%d", world);
            snprintf(bs, sizeof bs, "%d", 64 / world);
            const char *kv[] = { "batch_size", bs, "partitions", "4", "rank", rs, "world_size", ws,
                                 "mix_epoch_samples", rule, NULL };
            l[r] = open_mix(kv);
            if (phase)
                ck_assert_msg(sp_loader_load_state(l[r], st, sizeof st) == 0, "%s", sp_last_error());
        }
        uint64_t nb = sp_loader_batches_per_epoch(l[0]);
        for (uint64_t g = phase ? 10 : 0; g < (phase ? nb : 10); g++)
            for (int r = 0; r < world; r++)
                drain(l[r], 1, got, &ng);
        for (int r = 0; r < world; r++) {
            ck_assert_int_eq(sp_loader_save_state(l[r], st, sizeof st), 0);
            ck_assert_int_eq(sp_loader_close(l[r]), 0);
        }
    }
    ck_assert_uint_eq(ng, nw);
    ck_assert_msg(memcmp(got, want, nw * sizeof *got) == 0, "mix_epoch_samples %s: the resumed epoch differs from "
                  "one rank's", rule);
    free(want);
    free(got);
}

START_TEST(elastic_mixture)
{
    elastic_run("0");
    elastic_run("9000");
}
END_TEST

START_TEST(refused)
{
    lt_ds other;
    ck_assert_int_eq(lt_make(&other, "mix-other", 100, 8, g_seed, "4K", "64K"), 0); /* tokens of another shape */
    const char *paths[2] = { g_a.dir, other.dir };
    sp_loader *l;
    int rc = sp_loader_open_mix(paths, g_w, 2, NULL, &l);
    ck_assert_int_eq(rc, SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "different schemas") && strstr(sp_last_error(), "tokens"), "%s",
                  sp_last_error());
    const double bad[2] = { 0.5, -1 };
    ck_assert_int_eq(sp_loader_open_mix(paths, bad, 2, NULL, &l), SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "weight -1"), "%s", sp_last_error());
    const double nan_w[2] = { NAN, 1 };
    ck_assert_int_eq(sp_loader_open_mix(paths, nan_w, 2, NULL, &l), SP_EINVAL);
    ck_assert_int_eq(sp_loader_open_mix(paths, g_w, 0, NULL, &l), SP_EINVAL);
    /* a mixture's state does not load on one of its datasets, nor on other weights */
    static const char *const kv[] = { "batch_size", "32", NULL };
    sp_loader *m = open_mix(kv);
    uint8_t st[SP_LOADER_STATE_BYTES];
    ck_assert_int_eq(sp_loader_save_state(m, st, sizeof st), 0);
    ck_assert_int_eq(sp_loader_close(m), 0);
    ck_assert_int_eq(lt_open(g_a.dir, &l, "seed", g_seedstr, "batch_size", "32", NULL), 0);
    ck_assert_int_eq(sp_loader_load_state(l, st, sizeof st), SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "dataset"), "%s", sp_last_error());
    ck_assert_int_eq(sp_loader_close(l), 0);
    const char *ab[2] = { g_a.dir, g_b.dir };
    const double w2[2] = { 0.5, 0.5 };
    sp_params *p = sp_params_create();
    ck_assert_int_eq(sp_params_set_str(p, "seed", g_seedstr), 0);
    ck_assert_int_eq(sp_params_set_str(p, "batch_size", "32"), 0);
    ck_assert_int_eq(sp_params_set_str(p, "host_memory", "32M"), 0);
    ck_assert_int_eq(sp_loader_open_mix(ab, w2, 2, p, &l), 0);
    sp_params_destroy(p);
    ck_assert_int_eq(sp_loader_load_state(l, st, sizeof st), SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "a different mixture (its sources, their weights"), "%s", sp_last_error());
    ck_assert_int_eq(sp_loader_close(l), 0);
    /* nor under another epoch rule */
    static const char *const kv2[] = { "batch_size", "32", "mix_epoch_samples", "6000", NULL };
    m = open_mix(kv2);
    ck_assert_int_eq(sp_loader_load_state(m, st, sizeof st), SP_EINVAL);
    ck_assert_int_eq(sp_loader_close(m), 0);
    /* one dataset has no epoch of a sample count */
    rc = lt_open(g_a.dir, &l, "mix_epoch_samples", "100", NULL);
    ck_assert_int_eq(rc, SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "mix_epoch_samples=100") && strstr(sp_last_error(), "mixture"), "%s",
                  sp_last_error());
    lt_ds_free(&other);
}
END_TEST

/* One shuffle window holding every block of the epoch, B's last block cut by its take: the
 * window decodes that block's rows past the take too, and every batch comes (it hung: the window
 * outgrew the rows sized for the epoch's samples, was never built, and next() waited forever). */
START_TEST(one_window)
{
    static const char *const kv[] = { "batch_size", "32", "epochs", "1", "shuffle_window", "65536", NULL };
    sp_loader *l = open_mix(kv);
    uint64_t *ids = malloc((NA + NB) * sizeof *ids);
    size_t n = 0;
    drain(l, UINT64_MAX, ids, &n);
    ck_assert_uint_eq(n, NA + 1285);
    free(ids);
    ck_assert_int_eq(sp_loader_close(l), 0);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x313);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    if (lt_make(&g_a, "mix-a", NA, 16, g_seed, "4K", "24K") || lt_make(&g_b, "mix-b", NB, 16, g_seed + 1, "4K", "24K")) {
        fprintf(stderr, "cannot write the test datasets\n");
        return 99;
    }
    Suite *s = suite_create("loader_mix");
    TCase *tc = tu_tcase(s, "mix", 120);
    tcase_add_test(tc, shares_and_determinism);
    tcase_add_test(tc, epoch_samples);
    tcase_add_test(tc, elastic_mixture);
    tcase_add_test(tc, refused);
    tcase_add_test(tc, one_window);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_a);
    lt_ds_free(&g_b);
    return rc;
}
