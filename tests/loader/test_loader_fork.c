/* test_loader_fork.c - a loader inherited through fork(): every call in the child fails at once with SP_ESTATE naming both processes (before the first batch, after it, with a batch held, while the parent's consumer is inside next), close in the child frees nothing, and the parent's epoch goes on bit-identical to a reference, with pread and io_uring. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lt_util.h"
#include "test_util.h"

static uint64_t g_seed;
static char g_seedstr[32];
static lt_ds g_ds;
static bool g_uring; /* io_uring works on this machine */
static lt_rec g_ref; /* epoch 0, io=pread, no fork */

#define N_SAMPLES 3000
#define CHILD_ALARM_S 10 /* a child that hangs is killed by SIGALRM, and the test fails */

static sp_loader *open_io(const char *io)
{
    sp_loader *l;
    int rc = lt_open(g_ds.dir, &l, "io", io, "seed", g_seedstr, "batch_size", "32", "epochs", "0", NULL);
    ck_assert_msg(rc == 0, "open io=%s: %s", io, sp_last_error());
    return l;
}

/* The child's whole life with the inherited loader (no Check calls): every call is refused at
 * once with SP_ESTATE and the message naming both processes, close too, and the loader stays
 * refused after that close (nothing was freed). Returns the exit status: 0, or the failing step. */
static int child_calls(sp_loader *l, sp_batch *held, pid_t parent)
{
    tu_child_deadline(CHILD_ALARM_S);
    char want[160];
    snprintf(want, sizeof want, "loader opened in process %d, used in child %d; open it after fork", (int)parent,
             (int)getpid());
    double t0 = lt_now();
    sp_batch *b = NULL;
    if (sp_loader_next(l, &b, 3000) != SP_ESTATE || b != NULL || !strstr(sp_last_error(), want))
        return 1;
    if (lt_now() - t0 > 1.0)
        return 2;
    if (sp_loader_set_epoch(l, 1) != SP_ESTATE || !strstr(sp_last_error(), "sp_loader_set_epoch: loader opened"))
        return 3;
    uint8_t state[SP_LOADER_STATE_BYTES];
    if (sp_loader_save_state(l, state, sizeof state) != SP_ESTATE)
        return 4;
    if (sp_loader_batches_per_epoch(l) != 0 || !strstr(sp_last_error(), want))
        return 5;
    sp_loader_stats st = { .struct_size = sizeof st };
    if (sp_loader_stats_get(l, &st) != SP_ESTATE)
        return 6;
    if (held && (sp_loader_release(l, held) != SP_ESTATE || sp_batch_sync(held) != SP_ESTATE))
        return 7;
    if (sp_loader_close(l) != SP_ESTATE || !strstr(sp_last_error(), "sp_loader_close: loader opened"))
        return 8;
    if (sp_loader_next(l, &b, 0) != SP_ESTATE) /* close freed nothing: still a refused loader */
        return 9;
    if (lt_now() - t0 > 2.0)
        return 10;
    return 0;
}

/* The parent's batches of epoch 0 against the reference, bit for bit. */
static void same_as_reference(const lt_rec *r, const char *what)
{
    ck_assert_msg(r->bad == 0 && r->filled == 0, "%s: %s", what, r->why);
    ck_assert_msg(r->nb == g_ref.nb, "%s: %zu batches, reference %zu", what, r->nb, g_ref.nb);
    for (size_t b = 0; b < r->nb; b++)
        ck_assert_msg(r->hash[b] == g_ref.hash[b], "%s: batch %zu differs from the reference", what, b);
}

/* The ios to run: pread always, uring where the machine allows it. */
static size_t ios(const char **out)
{
    size_t n = 0;
    out[n++] = "pread";
    if (g_uring)
        out[n++] = "uring";
    else
        fprintf(stderr, "fork: io_uring refused on this machine: io=uring not covered\n");
    return n;
}

START_TEST(fork_before_first_batch)
{
    const char *io[2];
    for (size_t i = 0, n = ios(io); i < n; i++) {
        sp_loader *l = open_io(io[i]);
        pid_t parent = getpid(), pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
            _exit(child_calls(l, NULL, parent));
        lt_rec r = { 0 };
        int rc = lt_epoch(l, &g_ds, &r);
        ck_assert_msg(rc == SP_EEPOCH, "io=%s: %s: %s", io[i], sp_error_name(rc), sp_last_error());
        tu_child_ok(pid, io[i]);
        same_as_reference(&r, io[i]);
        lt_rec_free(&r);
        ck_assert_int_eq(sp_loader_close(l), 0);
    }
}
END_TEST

START_TEST(fork_after_first_batch)
{
    const char *io[2];
    for (size_t i = 0, n = ios(io); i < n; i++) {
        sp_loader *l = open_io(io[i]);
        lt_rec r = { 0 };
        ck_assert_int_eq(lt_drain(l, &g_ds, &r, 1, 10000), 0);
        sp_batch *held; /* batch 1 stays leased across the fork */
        ck_assert_int_eq(sp_loader_next(l, &held, 10000), 0);
        lt_rec_add(&r, &g_ds, held);
        pid_t parent = getpid(), pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
            _exit(child_calls(l, held, parent));
        tu_child_ok(pid, io[i]); /* first, so that the parent's ring is full and idle meanwhile */
        ck_assert_int_eq(sp_loader_release(l, held), 0);
        int rc = lt_epoch(l, &g_ds, &r);
        ck_assert_msg(rc == SP_EEPOCH, "io=%s: %s: %s", io[i], sp_error_name(rc), sp_last_error());
        same_as_reference(&r, io[i]);
        lt_rec_free(&r);
        /* The next epoch and a saved state work as ever. */
        uint8_t state[SP_LOADER_STATE_BYTES];
        ck_assert_int_eq(sp_loader_save_state(l, state, sizeof state), 0);
        ck_assert_int_eq(lt_drain(l, &g_ds, &r, 3, 10000), 0);
        ck_assert_uint_eq(r.bad, 0);
        lt_rec_free(&r);
        ck_assert_int_eq(sp_loader_close(l), 0);
    }
}
END_TEST

/* The parent's consumer, on a thread of its own: epoch after epoch (recording epoch 0) until told
 * to stop, so that forks land inside its calls, its waits on the workers included. */
typedef struct drainer {
    sp_loader *l;
    lt_rec r;
    int rc;
    uint64_t epochs;
    atomic_bool stop;
} drainer;

static void *drain_until_stopped(void *arg)
{
    drainer *d = arg;
    sp_batch *b;
    for (;;) {
        d->rc = sp_loader_next(d->l, &b, 10000);
        if (d->rc == SP_EEPOCH && (++d->epochs, !atomic_load(&d->stop)))
            continue;
        if (d->rc)
            break;
        if (d->epochs == 0)
            lt_rec_add(&d->r, &g_ds, b);
        sp_loader_release(d->l, b);
    }
    return NULL;
}

START_TEST(fork_during_next)
{
    const char *io[2];
    for (size_t i = 0, n = ios(io); i < n; i++) {
        drainer d = { .l = open_io(io[i]) };
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, drain_until_stopped, &d), 0);
        for (int f = 0; f < 20; f++) {
            usleep(500);
            pid_t parent = getpid(), pid = fork();
            ck_assert_int_ge(pid, 0);
            if (pid == 0)
                _exit(child_calls(d.l, NULL, parent));
            tu_child_ok(pid, io[i]);
        }
        atomic_store(&d.stop, true);
        pthread_join(t, NULL);
        ck_assert_msg(d.rc == SP_EEPOCH, "io=%s: %s: %s", io[i], sp_error_name(d.rc), sp_last_error());
        same_as_reference(&d.r, io[i]);
        lt_rec_free(&d.r);
        ck_assert_int_eq(sp_loader_close(d.l), 0);
    }
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0xf04c);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    if (lt_make(&g_ds, "fork", N_SAMPLES, 64, g_seed, "4K", "64K")) {
        fprintf(stderr, "cannot write the test dataset\n");
        return 99;
    }
    bool direct;
    lt_probe_io(&g_ds, &g_uring, &direct);
    sp_loader *l;
    if (lt_open(g_ds.dir, &l, "io", "pread", "seed", g_seedstr, "batch_size", "32", "epochs", "0", NULL) ||
        lt_epoch(l, &g_ds, &g_ref) != SP_EEPOCH || g_ref.bad || g_ref.ni != N_SAMPLES || sp_loader_close(l)) {
        fprintf(stderr, "reference epoch: %s\n", sp_last_error());
        return 99;
    }

    Suite *s = suite_create("loader_fork");
    TCase *tc = tu_tcase(s, "fork", 100);
    tcase_add_test(tc, fork_before_first_batch);
    tcase_add_test(tc, fork_after_first_batch);
    tcase_add_test(tc, fork_during_next);
    int rc = tu_run(s, g_seed);
    lt_rec_free(&g_ref);
    lt_ds_free(&g_ds);
    return rc;
}
