/* test_loader_consumer.c - the consumer contract: while one thread is inside next(), every consumer call from another thread (next, set_epoch, the state and count functions, close) gets SP_EBUSY at once and changes nothing; threads hammering next() share one epoch with every batch delivered exactly once; close racing an in-flight next() or a release on another thread frees nothing early and leaves no thread behind. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lt_util.h"
#include "test_util.h"
#include "tu_thread.h"

static uint64_t g_seed;
static char g_seedstr[32];
static lt_ds g_ds;
static lt_rec g_ref; /* epoch 0, taken by one thread */

#define N_SAMPLES 3000
#define NB ((N_SAMPLES + 31) / 32)
#define WAIT_MS 30000
#define HAMMERS 4

/* ------------------------------------------------------------------------------------ read gate
 * The pread path goes through -Wl,--wrap=pread,pread64: while the gate is shut, every read waits
 * at it, so a next() that needs a block is certainly in flight until the gate opens. Shut only
 * after open (which reads the shards' indexes) and with io=pread. */

static pthread_mutex_t g_gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_gate_cv = PTHREAD_COND_INITIALIZER;
static bool g_gate_shut;
static int g_gate_waiting;

typedef ssize_t (*pread_fn)(int, void *, size_t, off_t);

static ssize_t gated_pread(pread_fn real, int fd, void *buf, size_t n, off_t off)
{
    pthread_mutex_lock(&g_gate_mu);
    while (g_gate_shut) {
        g_gate_waiting++;
        pthread_cond_broadcast(&g_gate_cv);
        pthread_cond_wait(&g_gate_cv, &g_gate_mu);
        g_gate_waiting--;
    }
    pthread_mutex_unlock(&g_gate_mu);
    return real(fd, buf, n, off);
}

ssize_t __real_pread(int fd, void *buf, size_t n, off_t off);
ssize_t __wrap_pread(int fd, void *buf, size_t n, off_t off);
ssize_t __real_pread64(int fd, void *buf, size_t n, off_t off);
ssize_t __wrap_pread64(int fd, void *buf, size_t n, off_t off);

ssize_t __wrap_pread(int fd, void *buf, size_t n, off_t off) { return gated_pread(__real_pread, fd, buf, n, off); }
ssize_t __wrap_pread64(int fd, void *buf, size_t n, off_t off) { return gated_pread(__real_pread64, fd, buf, n, off); }

static void gate_shut(void)
{
    pthread_mutex_lock(&g_gate_mu);
    g_gate_shut = true;
    pthread_mutex_unlock(&g_gate_mu);
}

/* Waits until the reader thread is held at the gate. */
static void gate_wait_for_reader(void)
{
    pthread_mutex_lock(&g_gate_mu);
    while (g_gate_waiting == 0)
        pthread_cond_wait(&g_gate_cv, &g_gate_mu);
    pthread_mutex_unlock(&g_gate_mu);
}

static void gate_open(void)
{
    pthread_mutex_lock(&g_gate_mu);
    g_gate_shut = false;
    pthread_cond_broadcast(&g_gate_cv);
    pthread_mutex_unlock(&g_gate_mu);
}

/* ------------------------------------------------------------------------------------ helpers */

static sp_loader *open_loader(void)
{
    sp_loader *l;
    int rc = lt_open(g_ds.dir, &l, "seed", g_seedstr, "epochs", "1", "io", "pread", NULL);
    ck_assert_msg(rc == 0, "open: %s", sp_last_error());
    return l;
}

static void expect_ref(const sp_batch *b, const char *who)
{
    uint64_t k = sp_batch_index(b);
    ck_assert_msg(sp_batch_epoch(b) == 0 && k < NB, "%s: batch %llu of epoch %llu", who, (unsigned long long)k,
                  (unsigned long long)sp_batch_epoch(b));
    ck_assert_msg(lt_batch_hash(b) == g_ref.hash[k], "%s: batch %llu differs from the reference", who,
                  (unsigned long long)k);
}

/* Every thread the library started has returned (tu_thread.c counts them; the test's own are joined). */
static void expect_no_threads_left(void)
{
    ck_assert_int_eq(atomic_load(&tu_thr_started), atomic_load(&tu_thr_exited));
}

static bool busy_message(void) { return strstr(sp_last_error(), "another thread is inside") != NULL; }

/* One next() on its own thread, with no time limit. */
typedef struct one_next {
    sp_loader *l;
    sp_batch *b;
    int rc;
    pthread_t t;
} one_next;

static void *one_next_main(void *arg)
{
    one_next *o = arg;
    o->rc = sp_loader_next(o->l, &o->b, -1);
    return NULL;
}

/* Starts a next() that cannot finish until the gate opens, and returns once it is in flight. */
static void start_held_next(one_next *o, sp_loader *l)
{
    *o = (one_next){ .l = l };
    gate_shut();
    ck_assert_int_eq(pthread_create(&o->t, NULL, one_next_main, o), 0);
    gate_wait_for_reader();
}

static void finish_held_next(one_next *o)
{
    gate_open();
    ck_assert_int_eq(pthread_join(o->t, NULL), 0);
    ck_assert_msg(o->rc == 0, "the held next: %s", sp_error_name(o->rc));
    expect_ref(o->b, "the held next");
    ck_assert_uint_eq(sp_batch_index(o->b), 0);
}

static void reference(void)
{
    sp_loader *l = open_loader();
    ck_assert_int_eq(lt_epoch(l, &g_ds, &g_ref), SP_EEPOCH);
    ck_assert_uint_eq(g_ref.bad, 0);
    ck_assert_uint_eq(g_ref.nb, NB);
    ck_assert_int_eq(sp_loader_close(l), 0);
}

/* ------------------------------------------------------------------------------------ tests */

START_TEST(second_caller_gets_ebusy)
{
    reference();
    sp_loader *l = open_loader();
    uint8_t saved[SP_LOADER_STATE_BYTES];
    ck_assert_int_eq(sp_loader_save_state(l, saved, sizeof saved), 0);
    one_next held;
    start_held_next(&held, l);

    /* Each call returns at once, even one that would wait without limit, and writes nothing. */
    double t0 = lt_now();
    sp_batch *sentinel = (sp_batch *)&held, *b = sentinel;
    ck_assert_int_eq(sp_loader_next(l, &b, -1), SP_EBUSY);
    ck_assert_msg(busy_message(), "next: %s", sp_last_error());
    ck_assert_ptr_eq(b, sentinel);
    ck_assert_int_eq(sp_loader_next(l, &b, 0), SP_EBUSY);
    ck_assert_ptr_eq(b, sentinel);
    ck_assert_int_eq(sp_loader_set_epoch(l, 3), SP_EBUSY);
    ck_assert(busy_message());
    uint8_t state[SP_LOADER_STATE_BYTES];
    memset(state, 0x5a, sizeof state);
    ck_assert_int_eq(sp_loader_save_state(l, state, sizeof state), SP_EBUSY);
    ck_assert_uint_eq(state[0], 0x5a);
    ck_assert_int_eq(sp_loader_load_state(l, saved, sizeof saved), SP_EBUSY);
    ck_assert_uint_eq(sp_loader_batches_per_epoch(l), 0);
    ck_assert(busy_message());
    ck_assert_uint_eq(sp_loader_samples_per_epoch(l), 0);
    ck_assert(busy_message());
    uint64_t ids[4] = { 7, 7, 7, 7 };
    ck_assert_int_eq(sp_loader_epoch_order(l, 0, ids, 4), SP_EBUSY);
    ck_assert(busy_message() && ids[0] == 7);
    ck_assert_int_eq(sp_loader_close(l), SP_EBUSY);
    ck_assert(busy_message());
    double dt = lt_now() - t0;
    ck_assert_msg(dt < 5.0, "the refused calls took %.2f s", dt);

    /* The call in flight was not disturbed, and the loader goes on from where it was. */
    finish_held_next(&held);
    ck_assert_int_eq(sp_loader_release(l, held.b), 0);
    ck_assert_uint_eq(sp_loader_batches_per_epoch(l), NB);
    for (uint64_t k = 1; k < NB; k++) {
        ck_assert_int_eq(sp_loader_next(l, &b, WAIT_MS), 0);
        expect_ref(b, "after the refused calls");
        ck_assert_uint_eq(sp_batch_index(b), k);
        ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
    ck_assert_int_eq(sp_loader_next(l, &b, WAIT_MS), SP_EEPOCH);
    ck_assert_int_eq(sp_loader_next(l, &b, WAIT_MS), SP_EDONE);
    ck_assert_int_eq(sp_loader_close(l), 0);
    expect_no_threads_left();
    lt_rec_free(&g_ref);
}
END_TEST

/* A thread that takes and releases batches as fast as it can until the epoch ends. */
typedef struct hammer {
    sp_loader *l;
    pthread_t t;
    uint64_t got[NB + 1], ngot, hash[NB + 1];
    uint64_t busy;     /* refused: another thread was inside */
    int end;           /* the code that ended it: SP_EEPOCH or SP_EDONE */
    int bad;           /* any other code, 0 if none */
    char why[256];
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    for (;;) {
        sp_batch *b = NULL;
        int rc = sp_loader_next(h->l, &b, WAIT_MS);
        if (rc == SP_OK) {
            if (h->ngot <= NB) {
                h->got[h->ngot] = sp_batch_index(b);
                h->hash[h->ngot++] = lt_batch_hash(b);
            }
            rc = sp_loader_release(h->l, b);
            if (rc) {
                h->bad = rc;
                snprintf(h->why, sizeof h->why, "release: %s", sp_last_error());
                return NULL;
            }
        } else if (rc == SP_EBUSY && busy_message()) {
            h->busy++;
        } else if (rc == SP_EBUSY) {
            /* The ring waits for a batch another thread holds between its next and its release. */
            sched_yield();
        } else if (rc == SP_EEPOCH || rc == SP_EDONE) {
            h->end = rc;
            return NULL;
        } else {
            h->bad = rc;
            snprintf(h->why, sizeof h->why, "next: %s", sp_last_error());
            return NULL;
        }
    }
}

START_TEST(hammering_threads_share_one_epoch)
{
    reference();
    for (int round = 0; round < 3; round++) {
        sp_loader *l = open_loader();
        static hammer hs[HAMMERS];
        for (int i = 0; i < HAMMERS; i++) {
            memset(&hs[i], 0, sizeof hs[i]);
            hs[i].l = l;
            ck_assert_int_eq(pthread_create(&hs[i].t, NULL, hammer_main, &hs[i]), 0);
        }
        for (int i = 0; i < HAMMERS; i++)
            ck_assert_int_eq(pthread_join(hs[i].t, NULL), 0);
        uint8_t seen[NB] = { 0 };
        int epoch_ends = 0;
        uint64_t total = 0, busy = 0;
        for (int i = 0; i < HAMMERS; i++) {
            ck_assert_msg(hs[i].bad == 0, "thread %d: %s: %s", i, sp_error_name(hs[i].bad), hs[i].why);
            epoch_ends += hs[i].end == SP_EEPOCH;
            busy += hs[i].busy;
            for (uint64_t j = 0; j < hs[i].ngot; j++) {
                uint64_t k = hs[i].got[j];
                ck_assert_msg(k < NB, "thread %d got batch %llu", i, (unsigned long long)k);
                ck_assert_msg(!seen[k], "batch %llu was delivered twice", (unsigned long long)k);
                seen[k] = 1;
                ck_assert_msg(hs[i].hash[j] == g_ref.hash[k], "batch %llu differs from the reference",
                              (unsigned long long)k);
            }
            total += hs[i].ngot;
        }
        ck_assert_uint_eq(total, NB);
        ck_assert_int_eq(epoch_ends, 1);
        ck_assert_int_eq(sp_loader_close(l), 0);
        expect_no_threads_left();
        fprintf(stderr, "round %d: %llu calls refused while another thread was inside\n", round,
                (unsigned long long)busy);
    }
    lt_rec_free(&g_ref);
}
END_TEST

START_TEST(close_refused_while_next_in_flight)
{
    reference();
    sp_loader *l = open_loader();
    one_next held;
    start_held_next(&held, l);
    ck_assert_int_eq(sp_loader_close(l), SP_EBUSY);
    ck_assert_msg(busy_message(), "close: %s", sp_last_error());
    /* Nothing was stopped: the reader still waits at the gate and the call completes. */
    ck_assert_int_gt(atomic_load(&tu_thr_started) - atomic_load(&tu_thr_exited), 0);
    finish_held_next(&held);
    /* Now the batch is leased: refused for that reason, with the loader's own message. */
    ck_assert_int_eq(sp_loader_close(l), SP_EBUSY);
    ck_assert_msg(strstr(sp_loader_errmsg(l), "still leased"), "close: %s", sp_loader_errmsg(l));
    ck_assert_int_eq(sp_loader_release(l, held.b), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    expect_no_threads_left();
    lt_rec_free(&g_ref);
}
END_TEST

/* Releases a batch after a short pause, on its own thread. */
typedef struct late_release {
    sp_loader *l;
    sp_batch *b;
    int rc;
} late_release;

static void *late_release_main(void *arg)
{
    late_release *r = arg;
    usleep(20000);
    r->rc = sp_loader_release(r->l, r->b);
    return NULL;
}

START_TEST(close_after_release_on_another_thread)
{
    for (int round = 0; round < 5; round++) {
        sp_loader *l = open_loader();
        late_release r = { .l = l };
        ck_assert_int_eq(sp_loader_next(l, &r.b, WAIT_MS), 0);
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, late_release_main, &r), 0);
        /* Refused while the batch is out; freed only once the release has let go of the loader. */
        int rc;
        while ((rc = sp_loader_close(l)) == SP_EBUSY)
            ;
        ck_assert_int_eq(rc, 0);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        ck_assert_int_eq(r.rc, 0);
        expect_no_threads_left();
    }
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0xc0de);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    if (lt_make(&g_ds, "consumer", N_SAMPLES, 64, g_seed, "4K", "64K")) {
        fprintf(stderr, "cannot write the test dataset\n");
        return 99;
    }
    Suite *s = suite_create("loader_consumer");
    TCase *tc = tu_tcase(s, "consumer", 60);
    tcase_add_test(tc, second_caller_gets_ebusy);
    tcase_add_test(tc, hammering_threads_share_one_epoch);
    tcase_add_test(tc, close_refused_while_next_in_flight);
    tcase_add_test(tc, close_after_release_on_another_thread);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_ds);
    return rc;
}
