/* test_loader_resume.c - save_state, close, open, load_state continues with exactly the batches an uninterrupted run gives (mid-epoch, at 0, at an epoch's end), and a state from another configuration or dataset, garbage, or a position the loader cannot be at is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_util.h"
#include "sp_internal.h" /* sp_st64, sp_checksum64: states forged as a tool could write them */
#include "test_util.h"

static uint64_t g_seed;
static char g_seedstr[32];
static lt_ds g_ds, g_other; /* g_other: same shape, other content */

#define N_SAMPLES 4003
#define EV_EPOCH 0xEEEEEEEEEEEEEEEEull /* an SP_EEPOCH in an event list */
#define EV_DONE 0xDDDDDDDDDDDDDDDDull  /* an SP_EDONE */

typedef struct events {
    uint64_t *v;
    size_t n, cap;
    uint64_t bad;
} events;

static void ev_push(events *e, uint64_t x)
{
    if (e->n == e->cap) {
        e->cap = e->cap ? 2 * e->cap : 256;
        e->v = realloc(e->v, e->cap * sizeof *e->v);
        ck_assert_ptr_nonnull(e->v);
    }
    e->v[e->n++] = x;
}

/* Takes up to max results of next(): batch hashes and end markers. Stops after SP_EDONE. */
static void run(sp_loader *l, events *e, size_t max)
{
    for (size_t i = 0; i < max; i++) {
        sp_batch *b;
        int rc = sp_loader_next(l, &b, 30000);
        if (rc == SP_EEPOCH) {
            ev_push(e, EV_EPOCH);
            continue;
        }
        if (rc == SP_EDONE) {
            ev_push(e, EV_DONE);
            return;
        }
        ck_assert_msg(rc == 0, "next: %s: %s", sp_error_name(rc), sp_last_error());
        char why[256];
        for (uint32_t r = 0; r < sp_batch_size(b); r++)
            ck_assert_msg(lt_row_ok(&g_ds, b, r, why, sizeof why), "%s", why);
        ev_push(e, lt_batch_hash(b));
        ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
}

static sp_loader *open_cfg(const lt_ds *d, const char *threads, const char *batch, const char *seed, const char *world,
                           const char *rank, const char *window)
{
    sp_loader *l;
    int rc = lt_open(d->dir, &l, "threads", threads, "batch_size", batch, "seed", seed, "world_size", world, "rank",
                     rank, "shuffle_window", window, "epochs", "2", NULL);
    ck_assert_msg(rc == 0, "open: %s", sp_last_error());
    return l;
}

static sp_loader *open_default(const char *threads)
{
    return open_cfg(&g_ds, threads, "32", g_seedstr, "1", "0", "8");
}

static events g_ref;

static void reference(void)
{
    sp_loader *l = open_default("2");
    run(l, &g_ref, SIZE_MAX);
    ck_assert_int_eq(sp_loader_close(l), 0);
    uint64_t nb = (N_SAMPLES + 31) / 32;
    ck_assert_uint_eq(g_ref.n, 2 * nb + 3);
    ck_assert(g_ref.v[nb] == EV_EPOCH && g_ref.v[2 * nb + 1] == EV_EPOCH && g_ref.v[2 * nb + 2] == EV_DONE);
}

/* Takes k results, saves, closes; a new loader (other thread count) loads and runs to the end. */
static void interrupted_at(size_t k, const char *threads)
{
    events e = { 0 };
    sp_loader *l = open_default("3");
    run(l, &e, k);
    ck_assert_uint_eq(e.n, k);
    uint8_t state[SP_LOADER_STATE_BYTES];
    ck_assert_int_eq(sp_loader_save_state(l, state, sizeof state), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    l = open_default(threads);
    int rc = sp_loader_load_state(l, state, sizeof state);
    ck_assert_msg(rc == 0, "load_state after %zu: %s", k, sp_last_error());
    run(l, &e, SIZE_MAX);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_msg(e.n == g_ref.n, "resumed at %zu: %zu results, uninterrupted %zu", k, e.n, g_ref.n);
    for (size_t i = 0; i < e.n; i++)
        ck_assert_msg(e.v[i] == g_ref.v[i], "resumed at %zu: result %zu differs", k, i);
    free(e.v);
}

START_TEST(resume_anywhere)
{
    reference();
    size_t nb = (N_SAMPLES + 31) / 32;
    const size_t ks[] = {
        0,                /* before anything */
        1,                /* after the first batch */
        nb / 2,           /* mid epoch 0 */
        nb - 1,           /* before the last (short) batch */
        nb,               /* after epoch 0's last batch, before its SP_EEPOCH */
        nb + 1,           /* after SP_EEPOCH: epoch 1, batch 0 */
        nb + 1 + nb / 3,  /* mid epoch 1 */
        2 * nb + 1,       /* after epoch 1's last batch */
        2 * nb + 2,       /* after the last SP_EEPOCH: only SP_EDONE is left */
    };
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
        interrupted_at(ks[i], i % 2 ? "1" : "4");
    free(g_ref.v);
}
END_TEST

START_TEST(resume_same_loader)
{
    /* load_state on a loader that has already run past the point (with a batch still leased)
     * goes back to it. */
    reference();
    size_t nb = (N_SAMPLES + 31) / 32;
    sp_loader *l = open_default("2");
    events e = { 0 };
    run(l, &e, nb / 3);
    uint8_t state[SP_LOADER_STATE_BYTES];
    ck_assert_int_eq(sp_loader_save_state(l, state, sizeof state), 0);
    events skip = { 0 };
    run(l, &skip, 17);
    sp_batch *held;
    ck_assert_int_eq(sp_loader_next(l, &held, 30000), 0);
    uint64_t held_hash = lt_batch_hash(held);
    ck_assert_int_eq(sp_loader_load_state(l, state, sizeof state), 0);
    /* The ring maps batch k to slot k % slots, so the held batch's slot comes round again 17
     * batches after the saved point: stay short of it while holding. */
    run(l, &e, 10);
    ck_assert_uint_eq(lt_batch_hash(held), held_hash);
    ck_assert_int_eq(sp_loader_release(l, held), 0);
    run(l, &e, SIZE_MAX);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_uint_eq(e.n, g_ref.n);
    for (size_t i = 0; i < e.n; i++)
        ck_assert_msg(e.v[i] == g_ref.v[i], "result %zu differs", i);
    free(e.v);
    free(skip.v);
    free(g_ref.v);
}
END_TEST

static void expect_refused(sp_loader *l, const uint8_t *state, size_t len, const char *which)
{
    int rc = sp_loader_load_state(l, state, len);
    ck_assert_msg(rc == SP_EINVAL, "state with another %s: %s", which, sp_error_name(rc));
    ck_assert_msg(strstr(sp_last_error(), which), "message for another %s: '%s'", which, sp_last_error());
    ck_assert_msg(strstr(sp_loader_errmsg(l), which), "errmsg for another %s: '%s'", which, sp_loader_errmsg(l));
}

START_TEST(refuse_foreign_states)
{
    uint8_t state[SP_LOADER_STATE_BYTES];
    ck_assert_int_eq(sp_loader_state_size(), SP_LOADER_STATE_BYTES);
    char other_seed[32];
    snprintf(other_seed, sizeof other_seed, "%llu", (unsigned long long)g_seed + 1);

    /* The state comes from the default configuration, after a few batches. */
    sp_loader *src = open_default("2");
    events e = { 0 };
    run(src, &e, 5);
    ck_assert_int_eq(sp_loader_save_state(src, state, sizeof state - 1), SP_EINVAL);
    ck_assert_int_eq(sp_loader_save_state(src, state, sizeof state), 0);
    ck_assert_int_eq(sp_loader_close(src), 0);

    struct {
        sp_loader *l;
        const char *which;
    } cases[] = {
        { open_cfg(&g_ds, "2", "16", g_seedstr, "1", "0", "8"), "batch size" },
        { open_cfg(&g_ds, "2", "32", other_seed, "1", "0", "8"), "seed" },
        { open_cfg(&g_ds, "2", "32", g_seedstr, "2", "0", "8"), "world size" },
        { open_cfg(&g_other, "2", "32", g_seedstr, "1", "0", "8"), "dataset" },
        { open_cfg(&g_ds, "2", "32", g_seedstr, "1", "0", "4"), "shuffle window" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_refused(cases[i].l, state, sizeof state, cases[i].which);
        ck_assert_int_eq(sp_loader_close(cases[i].l), 0);
    }
    /* Rank: the position is global, so ranks save the same bytes and take each other's. */
    sp_loader *r0 = open_cfg(&g_ds, "2", "32", g_seedstr, "2", "0", "8");
    ck_assert_int_eq(sp_loader_save_state(r0, state, sizeof state), 0);
    ck_assert_int_eq(sp_loader_close(r0), 0);
    sp_loader *r1 = open_cfg(&g_ds, "2", "32", g_seedstr, "2", "1", "8");
    uint8_t state1[SP_LOADER_STATE_BYTES];
    ck_assert_int_eq(sp_loader_save_state(r1, state1, sizeof state1), 0);
    ck_assert_mem_eq(state, state1, sizeof state);
    ck_assert_msg(sp_loader_load_state(r1, state, sizeof state) == 0, "%s", sp_last_error());
    ck_assert_int_eq(sp_loader_close(r1), 0);
    free(e.v);
}
END_TEST

START_TEST(refuse_garbage)
{
    sp_loader *l = open_default("2");
    uint8_t state[SP_LOADER_STATE_BYTES], bad[SP_LOADER_STATE_BYTES];
    events e = { 0 };
    run(l, &e, 3);
    ck_assert_int_eq(sp_loader_save_state(l, state, sizeof state), 0);
    tu_rng r = { g_seed };
    for (int i = 0; i < 50; i++) {
        tu_fill_random(&r, bad, sizeof bad);
        ck_assert_int_eq(sp_loader_load_state(l, bad, sizeof bad), SP_EINVAL);
        ck_assert_msg(*sp_last_error(), "no message for a garbage state");
    }
    ck_assert_int_eq(sp_loader_load_state(l, state, sizeof state - 1), SP_EINVAL);
    ck_assert_int_eq(sp_loader_load_state(l, NULL, sizeof state), SP_EINVAL);
    /* Any one bit flipped, anywhere, is caught (magic, fields or checksum). */
    for (size_t i = 0; i < sizeof state; i++) {
        memcpy(bad, state, sizeof bad);
        bad[i] ^= (uint8_t)(1u << (i % 8));
        int rc = sp_loader_load_state(l, bad, sizeof bad);
        ck_assert_msg(rc == SP_EINVAL || rc == SP_EVERSION, "state with byte %zu flipped: %s", i, sp_error_name(rc));
    }
    /* None of the refusals moved the loader: it goes on where it was. */
    run(l, &e, 4);
    ck_assert_int_eq(sp_loader_close(l), 0);
    reference();
    for (size_t i = 0; i < e.n; i++)
        ck_assert_msg(e.v[i] == g_ref.v[i], "result %zu differs after refused states", i);
    free(e.v);
    free(g_ref.v);
}
END_TEST

/* The state with another position, its checksum made right again: what a tool could write. */
static void forge(const uint8_t *state, uint8_t *out, uint64_t epoch, uint64_t k)
{
    memcpy(out, state, SP_LOADER_STATE_BYTES);
    sp_st64(out + 16, epoch);
    sp_st64(out + 24, k);
    sp_st32(out + 60, (uint32_t)sp_checksum64(out, 60));
}

static void expect_range(sp_loader *l, const uint8_t *state, const char *want)
{
    int rc = sp_loader_load_state(l, state, SP_LOADER_STATE_BYTES);
    ck_assert_msg(rc == SP_ERANGE, "%s: %s: %s", want, sp_error_name(rc), sp_last_error());
    ck_assert_msg(strstr(sp_last_error(), want), "message: '%s', wanted '%s'", sp_last_error(), want);
}

/* A state at a position the loader can never be at is refused at load, with a message, and the
 * loader stays where it was; the positions it can be at (an epoch's end, past the last epoch) load. */
START_TEST(refuse_unreachable_positions)
{
    const uint64_t nb = (N_SAMPLES + 31) / 32;
    sp_loader *l = open_default("2");
    uint8_t state[SP_LOADER_STATE_BYTES], f[SP_LOADER_STATE_BYTES];
    events e = { 0 };
    run(l, &e, 3);
    ck_assert_int_eq(sp_loader_save_state(l, state, sizeof state), 0);
    char want[160];
    forge(state, f, 0, nb + 1);
    snprintf(want, sizeof want, "position, batch %llu of epoch 0, is past the epoch's %llu batches",
             (unsigned long long)nb + 1, (unsigned long long)nb);
    expect_range(l, f, want);
    forge(state, f, 1, UINT64_MAX - 1);
    expect_range(l, f, "is past the epoch's");
    forge(state, f, 2, 1); /* epochs=2: epoch 2 is where a finished loader is, at batch 0 only */
    expect_range(l, f, "batch 1 of epoch 2, is past the last epoch (epochs=2)");
    forge(state, f, UINT64_MAX, 0);
    expect_range(l, f, "epoch 18446744073709551615 is past the largest epoch");
    ck_assert_int_eq(sp_loader_set_epoch(l, UINT64_MAX), SP_ERANGE);
    ck_assert_int_eq(sp_loader_set_epoch(l, (uint64_t)INT64_MAX + 1), SP_ERANGE);
    /* None of them moved the loader. */
    run(l, &e, SIZE_MAX);
    reference();
    ck_assert_uint_eq(e.n, g_ref.n);
    for (size_t i = 0; i < e.n; i++)
        ck_assert_msg(e.v[i] == g_ref.v[i], "result %zu differs after refused states", i);
    /* Reachable: the end of an epoch, and past the last epoch at its start. */
    sp_batch *b;
    forge(state, f, 1, nb);
    ck_assert_int_eq(sp_loader_load_state(l, f, sizeof f), 0);
    ck_assert_int_eq(sp_loader_next(l, &b, 30000), SP_EEPOCH);
    ck_assert_int_eq(sp_loader_next(l, &b, 30000), SP_EDONE);
    forge(state, f, 7, 0);
    ck_assert_int_eq(sp_loader_load_state(l, f, sizeof f), 0);
    ck_assert_int_eq(sp_loader_next(l, &b, 30000), SP_EDONE);
    ck_assert_int_eq(sp_loader_close(l), 0);
    /* Endless: any epoch up to 2^63 - 1. */
    sp_loader *m;
    ck_assert_int_eq(lt_open(g_ds.dir, &m, "seed", g_seedstr, "epochs", "0", NULL), 0);
    ck_assert_int_eq(sp_loader_save_state(m, state, sizeof state), 0);
    forge(state, f, UINT64_MAX, 0);
    expect_range(m, f, "past the largest epoch, 2^63 - 1");
    forge(state, f, (uint64_t)INT64_MAX, 2);
    ck_assert_int_eq(sp_loader_load_state(m, f, sizeof f), 0);
    ck_assert_int_eq(sp_loader_next(m, &b, 30000), 0);
    ck_assert_uint_eq(sp_batch_epoch(b), (uint64_t)INT64_MAX);
    ck_assert_uint_eq(sp_batch_index(b), 2);
    ck_assert_int_eq(sp_loader_release(m, b), 0);
    ck_assert_int_eq(sp_loader_close(m), 0);
    free(e.v);
    free(g_ref.v);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x7e5u);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    if (lt_make(&g_ds, "resume", N_SAMPLES, 64, g_seed, "4K", "64K") ||
        lt_make(&g_other, "resume-other", N_SAMPLES, 64, g_seed + 1, "4K", "64K")) {
        fprintf(stderr, "cannot write the test datasets\n");
        return 99;
    }
    Suite *s = suite_create("loader_resume");
    TCase *tc = tu_tcase(s, "resume", 60);
    tcase_add_test(tc, resume_anywhere);
    tcase_add_test(tc, resume_same_loader);
    tcase_add_test(tc, refuse_foreign_states);
    tcase_add_test(tc, refuse_garbage);
    tcase_add_test(tc, refuse_unreachable_positions);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_ds);
    lt_ds_free(&g_other);
    return rc;
}
