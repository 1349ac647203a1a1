/* test_loader_lease.c - batch leases and flow control: close refuses leased batches, release checks ownership, hoarding gives SP_EBUSY (not a hang), timeout 0 polls, SP_EEPOCH/SP_EDONE, set_epoch, batches leased across an epoch end stay intact, and batches leased across set_epoch or load_state do not hold up the new position; save_state with batches leased saves the position after the last batch handed out. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lt_util.h"
#include "test_util.h"

static uint64_t g_seed;
static char g_seedstr[32];
static lt_ds g_ds;
static lt_rec g_ref[2]; /* epochs 0 and 1 */

#define N_SAMPLES 3000
#define NB ((N_SAMPLES + 31) / 32)

static sp_loader *open_ep(const char *epochs, const char *extra_k, const char *extra_v)
{
    sp_loader *l;
    int rc = lt_open(g_ds.dir, &l, "seed", g_seedstr, "epochs", epochs, extra_k, extra_v, NULL);
    ck_assert_msg(rc == 0, "open: %s", sp_last_error());
    return l;
}

static void reference(void)
{
    sp_loader *l = open_ep("0", NULL, NULL);
    for (int e = 0; e < 2; e++) {
        ck_assert_int_eq(lt_epoch(l, &g_ds, &g_ref[e]), SP_EEPOCH);
        ck_assert_uint_eq(g_ref[e].bad, 0);
        ck_assert_uint_eq(g_ref[e].nb, NB);
    }
    ck_assert_int_eq(sp_loader_close(l), 0);
}

static void free_reference(void)
{
    lt_rec_free(&g_ref[0]);
    lt_rec_free(&g_ref[1]);
}

static sp_batch *next_ok(sp_loader *l)
{
    sp_batch *b;
    int rc = sp_loader_next(l, &b, 20000);
    ck_assert_msg(rc == 0, "next: %s: %s", sp_error_name(rc), sp_last_error());
    return b;
}

static void expect_ref(const sp_batch *b)
{
    uint64_t e = sp_batch_epoch(b), k = sp_batch_index(b);
    ck_assert(e < 2 && k < NB);
    ck_assert_msg(lt_batch_hash(b) == g_ref[e].hash[k], "epoch %llu batch %llu differs from the reference",
                  (unsigned long long)e, (unsigned long long)k);
}

/* save_state while batches are leased: the position after the last batch next() handed out, held
 * or not; a loader resumed from it goes on with the batch after that one. */
START_TEST(save_with_leases)
{
    reference();
    sp_loader *l = open_ep("0", NULL, NULL);
    sp_batch *b0 = next_ok(l), *b1 = next_ok(l), *b2 = next_ok(l);
    ck_assert_int_eq(sp_loader_release(l, b0), 0);
    uint8_t st[SP_LOADER_STATE_BYTES];
    ck_assert_msg(sp_loader_save_state(l, st, sizeof st) == 0, "%s", sp_last_error());
    expect_ref(b1); /* the leases are untouched */
    expect_ref(b2);
    ck_assert_int_eq(sp_loader_release(l, b2), 0);
    ck_assert_int_eq(sp_loader_release(l, b1), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    l = open_ep("0", NULL, NULL);
    ck_assert_msg(sp_loader_load_state(l, st, sizeof st) == 0, "%s", sp_last_error());
    sp_batch *b = next_ok(l);
    ck_assert_uint_eq(sp_batch_epoch(b), 0);
    ck_assert_uint_eq(sp_batch_index(b), 3);
    expect_ref(b);
    ck_assert_int_eq(sp_loader_release(l, b), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    free_reference();
}
END_TEST

START_TEST(close_refused_while_leased)
{
    reference();
    sp_loader *l = open_ep("1", NULL, NULL);
    sp_batch *b = next_ok(l);
    ck_assert_int_eq(sp_loader_close(l), SP_EBUSY);
    ck_assert_msg(strstr(sp_last_error(), "leased"), "message: %s", sp_last_error());
    /* Still usable: the next batch comes, and the leased one is still valid. */
    sp_batch *b2 = next_ok(l);
    ck_assert_uint_eq(sp_batch_index(b2), 1);
    expect_ref(b);
    expect_ref(b2);
    ck_assert_int_eq(sp_loader_release(l, b), 0);
    ck_assert_int_eq(sp_loader_close(l), SP_EBUSY);
    ck_assert_int_eq(sp_loader_release(l, b2), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_int_eq(sp_loader_close(NULL), 0);
    free_reference();
}
END_TEST

START_TEST(release_checks)
{
    sp_loader *l = open_ep("1", NULL, NULL), *m = open_ep("1", NULL, NULL);
    sp_batch *b = next_ok(l), *c = next_ok(m);
    /* A batch of another loader. */
    ck_assert_int_eq(sp_loader_release(m, b), SP_EINVAL);
    ck_assert_int_eq(sp_loader_release(l, c), SP_EINVAL);
    ck_assert_int_eq(sp_loader_release(l, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_loader_release(NULL, b), SP_EINVAL);
    /* Both are still leased to their own loader. */
    ck_assert_int_eq(sp_loader_close(l), SP_EBUSY);
    ck_assert_int_eq(sp_loader_close(m), SP_EBUSY);
    ck_assert_int_eq(sp_loader_release(l, b), 0);
    /* Twice. */
    ck_assert_int_eq(sp_loader_release(l, b), SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "not leased"), "message: %s", sp_last_error());
    ck_assert_int_eq(sp_loader_release(m, c), 0);
    ck_assert_int_eq(sp_loader_release(m, c), SP_EINVAL);
    /* The loader goes on after the refusals. */
    sp_batch *d = next_ok(l);
    ck_assert_uint_eq(sp_batch_index(d), 1);
    ck_assert_int_eq(sp_loader_release(l, d), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_int_eq(sp_loader_close(m), 0);
}
END_TEST

START_TEST(hoarding_gives_ebusy)
{
    reference();
    /* A small ring: a tight budget and no prefetch beyond a window (each of the 2 workers' zstd
     * contexts, about 96 KiB, counts in it too). */
    sp_loader *l;
    ck_assert_int_eq(lt_open(g_ds.dir, &l, "seed", g_seedstr, "epochs", "0", "host_memory", "360K", NULL), 0);
    sp_loader_stats st = { .struct_size = sizeof st };
    sp_loader_stats_get(l, &st);
    uint64_t slots = st.batch_ring_slots;
    ck_assert_uint_lt(slots, NB / 2);
    sp_batch **held = calloc(NB, sizeof *held);
    size_t n = 0;
    int rc;
    double t0 = lt_now();
    while ((rc = sp_loader_next(l, &held[n], 10000)) == 0)
        n++;
    double waited = lt_now() - t0;
    ck_assert_msg(rc == SP_EBUSY, "holding %zu batches: %s: %s", n, sp_error_name(rc), sp_last_error());
    ck_assert_msg(waited < 8, "SP_EBUSY took %.1f s", waited);
    ck_assert_msg(strstr(sp_last_error(), "release"), "message: %s", sp_last_error());
    ck_assert_msg(n >= 1 && n <= slots, "%zu batches held in a ring of %llu", n, (unsigned long long)slots);
    fprintf(stderr, "lease: SP_EBUSY after holding %zu batches, ring of %llu slots\n", n, (unsigned long long)slots);
    /* Still SP_EBUSY while they are held, also with timeout 0. */
    sp_batch *x;
    ck_assert_int_eq(sp_loader_next(l, &x, 0), SP_EBUSY);
    /* The held batches are intact; releasing them lets the epoch go on, unchanged. */
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(sp_batch_index(held[i]), i);
        expect_ref(held[i]);
        ck_assert_int_eq(sp_loader_release(l, held[i]), 0);
    }
    lt_rec rest = { 0 };
    ck_assert_int_eq(lt_epoch(l, &g_ds, &rest), SP_EEPOCH);
    ck_assert_uint_eq(rest.nb, NB - n);
    for (size_t k = 0; k < rest.nb; k++)
        ck_assert_msg(rest.hash[k] == g_ref[0].hash[n + k], "batch %zu differs after SP_EBUSY", n + k);
    ck_assert_int_eq(sp_loader_close(l), 0);
    lt_rec_free(&rest);
    free(held);
    free_reference();
}
END_TEST

/* The same, many times over, with every ring and thread count timing offers: the consumer must
 * learn that the ring is stuck from the reader blocking on a leased slot, whichever of the two
 * gets there first, without waiting out its timeout (with timeout -1 it would hang). */
START_TEST(hoarding_ebusy_is_prompt)
{
    static const char *const threads[] = { "1", "2", "3", "8" };
    double worst = 0;
    for (int i = 0; i < 40; i++) {
        sp_loader *l;
        char budget[32]; /* two ring sizes, plus each worker's zstd context (about 96 KiB) */
        snprintf(budget, sizeof budget, "%dK", (i % 2 ? 160 : 200) + 100 * atoi(threads[i % 4]));
        ck_assert_int_eq(lt_open(g_ds.dir, &l, "seed", g_seedstr, "host_memory", budget, "threads", threads[i % 4], NULL),
                         0);
        sp_batch *held[NB];
        size_t n = 0;
        int rc;
        double t0 = 0;
        for (;;) {
            t0 = lt_now();
            if ((rc = sp_loader_next(l, &held[n], 5000)) != 0)
                break;
            n++;
        }
        double dt = lt_now() - t0;
        worst = dt > worst ? dt : worst;
        ck_assert_msg(rc == SP_EBUSY, "round %d, %zu held: %s after %.1f s: %s", i, n, sp_error_name(rc), dt,
                      sp_last_error());
        for (size_t k = 0; k < n; k++)
            ck_assert_int_eq(sp_loader_release(l, held[k]), 0);
        ck_assert_int_eq(sp_loader_close(l), 0);
    }
    fprintf(stderr, "lease: slowest SP_EBUSY %.1f ms\n", worst * 1e3);
}
END_TEST

START_TEST(poll_with_timeout_zero)
{
    reference();
    sp_loader *l = open_ep("1", "threads", "1");
    size_t got = 0, timeouts = 0;
    double worst = 0;
    for (;;) {
        sp_batch *b;
        double t0 = lt_now();
        int rc = sp_loader_next(l, &b, 0);
        double dt = lt_now() - t0;
        worst = dt > worst ? dt : worst;
        if (rc == SP_ETIMEDOUT) {
            ck_assert_ptr_null(b);
            timeouts++;
            ck_assert_msg(timeouts < 10000000, "never ready");
            continue;
        }
        if (rc == SP_EEPOCH)
            break;
        ck_assert_msg(rc == 0, "poll: %s: %s", sp_error_name(rc), sp_last_error());
        ck_assert_uint_eq(sp_batch_index(b), got);
        expect_ref(b);
        got++;
        ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
    ck_assert_uint_eq(got, NB);
    sp_batch *b;
    ck_assert_int_eq(sp_loader_next(l, &b, 0), SP_EDONE);
    fprintf(stderr, "lease: polling took %zu timeouts, slowest call %.1f ms\n", timeouts, worst * 1e3);
    ck_assert_msg(worst < 0.5, "a timeout_ms=0 call took %.3f s", worst);
    ck_assert_int_eq(sp_loader_close(l), 0);
    free_reference();
}
END_TEST

START_TEST(epoch_codes)
{
    reference();
    sp_batch *b;
    /* epochs=1: batches, SP_EEPOCH, then SP_EDONE for good. */
    sp_loader *l = open_ep("1", NULL, NULL);
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_epoch(l, &g_ds, &r), SP_EEPOCH);
    ck_assert_uint_eq(r.nb, NB);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(sp_loader_next(l, &b, 1000), SP_EDONE);
        ck_assert_ptr_null(b);
    }
    ck_assert_int_eq(sp_loader_close(l), 0);
    lt_rec_free(&r);
    /* epochs=2: two epochs, each ended by SP_EEPOCH, batches numbered from 0 in each. */
    l = open_ep("2", NULL, NULL);
    for (uint64_t e = 0; e < 2; e++) {
        for (uint64_t k = 0; k < NB; k++) {
            b = next_ok(l);
            ck_assert_uint_eq(sp_batch_epoch(b), e);
            ck_assert_uint_eq(sp_batch_index(b), k);
            expect_ref(b);
            ck_assert_int_eq(sp_loader_release(l, b), 0);
        }
        sp_loader_stats st = { .struct_size = sizeof st };
        sp_loader_stats_get(l, &st);
        ck_assert_uint_eq(st.epoch, e);
        ck_assert_int_eq(sp_loader_next(l, &b, 1000), SP_EEPOCH);
    }
    ck_assert_int_eq(sp_loader_next(l, &b, 1000), SP_EDONE);
    sp_loader_stats st = { .struct_size = sizeof st };
    sp_loader_stats_get(l, &st);
    ck_assert_uint_eq(st.batches, 2 * NB);
    ck_assert_uint_eq(st.samples, 2 * N_SAMPLES);
    ck_assert_int_eq(sp_loader_close(l), 0);
    free_reference();
}
END_TEST

START_TEST(set_epoch_restarts)
{
    reference();
    /* Straight to epoch 1. */
    sp_loader *l = open_ep("2", NULL, NULL);
    ck_assert_int_eq(sp_loader_set_epoch(l, 1), 0);
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_epoch(l, &g_ds, &r), SP_EEPOCH);
    ck_assert_uint_eq(r.nb, NB);
    for (size_t k = 0; k < NB; k++)
        ck_assert_msg(r.hash[k] == g_ref[1].hash[k], "set_epoch(1): batch %zu differs from natural epoch 1", k);
    sp_batch *b;
    ck_assert_int_eq(sp_loader_next(l, &b, 1000), SP_EDONE);
    /* Back to epoch 0 after the end; then, mid-epoch, on to epoch 1. */
    ck_assert_int_eq(sp_loader_set_epoch(l, 0), 0);
    for (size_t k = 0; k < 10; k++) {
        b = next_ok(l);
        ck_assert_uint_eq(sp_batch_index(b), k);
        expect_ref(b);
        ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
    ck_assert_int_eq(sp_loader_set_epoch(l, 1), 0);
    for (size_t k = 0; k < NB; k++) {
        b = next_ok(l);
        ck_assert_uint_eq(sp_batch_epoch(b), 1);
        ck_assert_uint_eq(sp_batch_index(b), k);
        expect_ref(b);
        ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
    ck_assert_int_eq(sp_loader_next(l, &b, 1000), SP_EEPOCH);
    ck_assert_int_eq(sp_loader_next(l, &b, 1000), SP_EDONE);
    /* Past the last epoch: done at once. */
    ck_assert_int_eq(sp_loader_set_epoch(l, 7), 0);
    ck_assert_int_eq(sp_loader_next(l, &b, 1000), SP_EDONE);
    ck_assert_int_eq(sp_loader_close(l), 0);
    lt_rec_free(&r);
    free_reference();
}
END_TEST

/* A private copy of a batch, to compare with later. */
typedef struct snap {
    uint8_t *bytes;
    size_t n;
    uint64_t epoch, index;
} snap;

static snap take(const sp_batch *b)
{
    snap s = { NULL, 0, sp_batch_epoch(b), sp_batch_index(b) };
    for (size_t f = 0; f < sp_batch_num_fields(b); f++)
        s.n += lt_field_bytes(b, f);
    s.n += sp_batch_size(b) * 8;
    s.bytes = malloc(s.n);
    size_t off = 0;
    for (size_t f = 0; f < sp_batch_num_fields(b); f++) {
        memcpy(s.bytes + off, sp_batch_tensor(b, f)->data, lt_field_bytes(b, f));
        off += lt_field_bytes(b, f);
    }
    for (uint32_t r = 0; r < sp_batch_size(b); r++, off += 8) {
        uint64_t id = sp_batch_sample_id(b, r);
        memcpy(s.bytes + off, &id, 8);
    }
    return s;
}

static void same_as(const snap *s, const sp_batch *b, const char *when)
{
    snap now = take(b);
    ck_assert_msg(now.n == s->n && !memcmp(now.bytes, s->bytes, s->n) && now.epoch == s->epoch &&
                      now.index == s->index,
                  "a leased batch (epoch %llu batch %llu) changed %s", (unsigned long long)s->epoch,
                  (unsigned long long)s->index, when);
    free(now.bytes);
}

/* Goes through epoch 1 (releasing each batch) while `held` stays leased, checking it after every
 * batch. The ring maps batch k to slot k % slots, so epoch 1 may need the held batch's slot: then
 * next() says SP_EBUSY, the held batch is released, and the epoch goes on. */
static void epoch1_around(sp_loader *l, sp_batch *held, const snap *s)
{
    size_t k = 0;
    while (k < NB) {
        sp_batch *b;
        int rc = sp_loader_next(l, &b, 20000);
        if (rc == SP_EBUSY && held) {
            same_as(s, held, "before its slot was needed");
            ck_assert_int_eq(sp_loader_release(l, held), 0);
            held = NULL;
            continue;
        }
        ck_assert_msg(rc == 0, "epoch 1 batch %zu: %s: %s", k, sp_error_name(rc), sp_last_error());
        ck_assert_uint_eq(sp_batch_epoch(b), 1);
        ck_assert_uint_eq(sp_batch_index(b), k);
        expect_ref(b);
        ck_assert_int_eq(sp_loader_release(l, b), 0);
        if (held)
            same_as(s, held, "while the next epoch streamed");
        k++;
    }
    if (held) {
        same_as(s, held, "at the end of the next epoch");
        ck_assert_int_eq(sp_loader_release(l, held), 0);
    }
}

START_TEST(lease_across_epoch_end)
{
    reference();
    sp_loader *l = open_ep("0", NULL, NULL);
    sp_batch *b = NULL;
    for (size_t k = 0; k < NB; k++) {
        b = next_ok(l);
        if (k + 1 < NB)
            ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
    /* b is the last (short) batch of epoch 0: keep it through the epoch end. */
    ck_assert_uint_eq(sp_batch_size(b), N_SAMPLES % 32);
    snap s = take(b);
    sp_batch *x;
    ck_assert_int_eq(sp_loader_next(l, &x, 1000), SP_EEPOCH);
    same_as(&s, b, "at SP_EEPOCH");
    expect_ref(b);
    epoch1_around(l, b, &s);
    free(s.bytes);
    ck_assert_int_eq(sp_loader_close(l), 0);

    /* The same across set_epoch, holding a mid-epoch batch. */
    l = open_ep("0", NULL, NULL);
    for (size_t k = 0; k < 20; k++) {
        b = next_ok(l);
        if (k + 1 < 20)
            ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
    s = take(b);
    ck_assert_int_eq(sp_loader_set_epoch(l, 1), 0);
    same_as(&s, b, "at set_epoch");
    epoch1_around(l, b, &s);
    free(s.bytes);
    ck_assert_int_eq(sp_loader_close(l), 0);
    free_reference();
}
END_TEST

/* ---------------------------------------------------------------- seeks with batches leased */

/* One block per shuffle window and batches larger than a block: a window touches at most two
 * batches, so a consumer may hold all but two of the ring's slots. */
#define SEEK_NB ((N_SAMPLES + 63) / 64)

static sp_loader *open_seek(void)
{
    sp_loader *l;
    int rc = lt_open(g_ds.dir, &l, "seed", g_seedstr, "epochs", "0", "batch_size", "64", "shuffle_window", "1", NULL);
    ck_assert_msg(rc == 0, "open: %s", sp_last_error());
    return l;
}

static uint64_t ring_slots(sp_loader *l)
{
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    return st.batch_ring_slots;
}

/* Epochs 0 and 1 of a fresh loader with open_seek's configuration. */
static void seek_reference(lt_rec ref[2])
{
    sp_loader *l = open_seek();
    for (int e = 0; e < 2; e++) {
        ck_assert_int_eq(lt_epoch(l, &g_ds, &ref[e]), SP_EEPOCH);
        ck_assert_uint_eq(ref[e].bad, 0);
        ck_assert_uint_eq(ref[e].nb, SEEK_NB);
    }
    ck_assert_int_eq(sp_loader_close(l), 0);
}

/* Batches still leased from before a seek, with copies of their contents and when each goes back:
 * rel[j] is the batch of the new position after which held[j] is released (-1: before the first). */
typedef struct held_set {
    sp_batch *b[64];
    snap s[64];
    long rel[64];
    size_t n;
} held_set;

/* Takes batches 0..last of epoch 0, keeping those at the indices in keep[] leased. */
static void take_keeping(sp_loader *l, size_t last, const size_t *keep, size_t nkeep, held_set *h)
{
    h->n = 0;
    for (size_t k = 0, i = 0; k <= last; k++) {
        sp_batch *b = next_ok(l);
        ck_assert_uint_eq(sp_batch_index(b), k);
        if (i < nkeep && keep[i] == k) {
            h->b[h->n] = b;
            h->s[h->n++] = take(b);
            i++;
        } else {
            ck_assert_int_eq(sp_loader_release(l, b), 0);
        }
    }
}

static void release_due(sp_loader *l, held_set *h, long after)
{
    for (size_t j = 0; j < h->n; j++) {
        if (h->b[j] && h->rel[j] == after) {
            same_as(&h->s[j], h->b[j], "after a seek");
            ck_assert_int_eq(sp_loader_release(l, h->b[j]), 0);
            h->b[j] = NULL;
        }
    }
}

/* After a seek to (e, from): every batch of the rest of epoch e comes at once (no SP_EBUSY), the
 * same as ref's, while the held batches go back on h's schedule, unchanged until then. */
static void run_after_seek(sp_loader *l, const lt_rec *ref, uint64_t e, size_t from, held_set *h, const char *what)
{
    release_due(l, h, -1);
    for (size_t k = from; k < SEEK_NB; k++) {
        sp_batch *b;
        int rc = sp_loader_next(l, &b, 20000);
        ck_assert_msg(rc == 0, "%s: epoch %llu batch %zu with %zu held: %s: %s", what, (unsigned long long)e, k, h->n,
                      sp_error_name(rc), sp_last_error());
        ck_assert_uint_eq(sp_batch_epoch(b), e);
        ck_assert_uint_eq(sp_batch_index(b), k);
        ck_assert_msg(lt_batch_hash(b) == ref->hash[k], "%s: epoch %llu batch %zu differs from a fresh loader's", what,
                      (unsigned long long)e, k);
        ck_assert_int_eq(sp_loader_release(l, b), 0);
        release_due(l, h, (long)(k - from));
    }
    sp_batch *b;
    ck_assert_int_eq(sp_loader_next(l, &b, 20000), SP_EEPOCH);
    release_due(l, h, LONG_MAX);
    for (size_t j = 0; j < h->n; j++) {
        ck_assert_ptr_null(h->b[j]);
        free(h->s[j].bytes);
    }
}

enum { REL_AT_ONCE, REL_JUST_IN_TIME, REL_RANDOM, REL_AFTER_EPOCH, REL_SCHEDULES };

/* When each of n held batches goes back: at the latest when the old modulo ring needed its slot
 * (the new run reached the held slots last, oldest first, and a window claims at most two batches:
 * held[j]'s slot was needed for new batch free + j - 1, free being the slots nothing holds). Any
 * free slot now serves any batch, so these schedules are looser than the ring needs. */
static void schedule(held_set *h, int how, uint64_t slots, tu_rng *r)
{
    for (size_t j = 0; j < h->n; j++) {
        long due = (long)(slots - h->n + j) - 2; /* released after this new batch at the latest */
        h->rel[j] = how == REL_AT_ONCE        ? -1
                    : how == REL_JUST_IN_TIME ? due
                    : how == REL_RANDOM       ? (long)tu_below(r, (uint64_t)(due + 2)) - 1
                                              : LONG_MAX;
    }
}

START_TEST(set_epoch_with_held_batches)
{
    lt_rec ref[2] = { { 0 } };
    seek_reference(ref);
    tu_rng r = { tu_mix(g_seed ^ 0x5e7e) };
    sp_loader *probe = open_seek();
    uint64_t slots = ring_slots(probe);
    ck_assert_int_eq(sp_loader_close(probe), 0);
    fprintf(stderr, "lease: seeks with batches held, ring of %llu slots\n", (unsigned long long)slots);
    ck_assert_msg(slots >= 4 && slots + 20 < SEEK_NB && slots - 2 <= 64, "a ring of %llu slots", (unsigned long long)slots);
    /* The last h batches taken, for h = 1, 2 and every slot but two, held across set_epoch. */
    const size_t hs[] = { 1, 2, slots - 2 };
    for (size_t hi = 0; hi < 3; hi++) {
        for (int how = 0; how < REL_SCHEDULES; how++) {
            size_t h = hs[hi], last = 19 + hi; /* ends at several slots of the ring */
            if (how == REL_AFTER_EPOCH && h > 1)
                continue; /* one batch held for the whole epoch: the ring must go round it */
            size_t keep[64];
            for (size_t j = 0; j < h; j++)
                keep[j] = last + 1 - h + j;
            sp_loader *l = open_seek();
            held_set hb;
            take_keeping(l, last, keep, h, &hb);
            schedule(&hb, how, slots, &r);
            ck_assert_int_eq(sp_loader_set_epoch(l, 1), 0);
            if (how == REL_AFTER_EPOCH) {
                /* Any free slot serves any batch: the whole new epoch goes round the one held,
                 * which keeps its bytes, however many times the ring turns. */
                size_t k = 0;
                sp_batch *b;
                int rc;
                while ((rc = sp_loader_next(l, &b, 20000)) == 0) {
                    ck_assert_uint_eq(sp_batch_index(b), k++);
                    ck_assert_int_eq(sp_loader_release(l, b), 0);
                }
                ck_assert_msg(rc == SP_EEPOCH, "%s: %s", sp_error_name(rc), sp_last_error());
                ck_assert_uint_eq(k, sp_loader_batches_per_epoch(l));
                ck_assert_uint_gt(k, 2 * slots);
                same_as(&hb.s[0], hb.b[0], "after an epoch held");
                ck_assert_int_eq(sp_loader_release(l, hb.b[0]), 0);
                free(hb.s[0].bytes);
                ck_assert_int_eq(sp_loader_set_epoch(l, 1), 0);
                hb.n = 0;
            }
            char what[64];
            snprintf(what, sizeof what, "set_epoch holding %zu, schedule %d", h, how);
            run_after_seek(l, &ref[1], 1, 0, &hb, what);
            ck_assert_int_eq(sp_loader_close(l), 0);
        }
    }
    /* The oldest batch the ring allows held, the rest released: the new run uses every other slot
     * before it needs that one. */
    sp_loader *l = open_seek();
    held_set hb;
    const size_t first[] = { 0 };
    take_keeping(l, slots - 2, first, 1, &hb);
    hb.rel[0] = (long)slots - 3;
    ck_assert_int_eq(sp_loader_set_epoch(l, 1), 0);
    run_after_seek(l, &ref[1], 1, 0, &hb, "set_epoch holding the oldest");
    ck_assert_int_eq(sp_loader_close(l), 0);
    lt_rec_free(&ref[0]);
    lt_rec_free(&ref[1]);
}
END_TEST

START_TEST(load_state_with_held_batches)
{
    lt_rec ref[2] = { { 0 } };
    seek_reference(ref);
    tu_rng r = { tu_mix(g_seed ^ 0x10ad) };
    for (int how = 0; how < REL_AFTER_EPOCH; how++) {
        sp_loader *l = open_seek();
        uint64_t slots = ring_slots(l);
        ck_assert(slots >= 4 && slots - 2 <= 20);
        /* A state saved at batch 10 of epoch 0, loaded back while holding every slot but two. */
        held_set hb;
        take_keeping(l, 9, NULL, 0, &hb);
        uint8_t state[SP_LOADER_STATE_BYTES];
        ck_assert_int_eq(sp_loader_save_state(l, state, sizeof state), 0);
        size_t keep[64] = { 0 };
        for (size_t j = 0; j < slots - 2; j++)
            keep[j] = 30 - (slots - 2) + 1 + j;
        sp_batch *b;
        for (size_t k = 10; k < keep[0]; k++) {
            ck_assert_int_eq(sp_loader_next(l, &b, 20000), 0);
            ck_assert_int_eq(sp_loader_release(l, b), 0);
        }
        for (size_t j = 0; j < slots - 2; j++) {
            hb.b[j] = next_ok(l);
            ck_assert_uint_eq(sp_batch_index(hb.b[j]), keep[j]);
            hb.s[j] = take(hb.b[j]);
        }
        hb.n = slots - 2;
        schedule(&hb, how, slots, &r);
        ck_assert_int_eq(sp_loader_load_state(l, state, sizeof state), 0);
        char what[64];
        snprintf(what, sizeof what, "load_state holding %zu, schedule %d", hb.n, how);
        run_after_seek(l, &ref[0], 0, 10, &hb, what);
        ck_assert_int_eq(sp_loader_close(l), 0);
    }
    lt_rec_free(&ref[0]);
    lt_rec_free(&ref[1]);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x1ea5e);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    if (lt_make(&g_ds, "lease", N_SAMPLES, 64, g_seed, "4K", "64K")) {
        fprintf(stderr, "cannot write the test dataset\n");
        return 99;
    }
    Suite *s = suite_create("loader_lease");
    TCase *tc = tu_tcase(s, "lease", 60);
    tcase_add_test(tc, close_refused_while_leased);
    tcase_add_test(tc, save_with_leases);
    tcase_add_test(tc, release_checks);
    tcase_add_test(tc, hoarding_gives_ebusy);
    tcase_add_test(tc, hoarding_ebusy_is_prompt);
    tcase_add_test(tc, poll_with_timeout_zero);
    tcase_add_test(tc, epoch_codes);
    tcase_add_test(tc, set_epoch_restarts);
    tcase_add_test(tc, lease_across_epoch_end);
    tcase_add_test(tc, set_epoch_with_held_batches);
    tcase_add_test(tc, load_state_with_held_batches);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_ds);
    return rc;
}
