/* test_loader_fdlimit.c - a dataset of 300+ shards under RLIMIT_NOFILE 32: the loader (io_uring and pread, two shuffled epochs), sp_dataset_read_block over every block and sp_verify complete and give exactly what they give without the limit; a loader with no descriptor of its own to close waits out a table filled by someone else for a moment. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "lt_util.h"
#include "test_util.h"

static uint64_t g_seed;
static char g_seedstr[32];
static lt_ds g_ds;

#define N_SAMPLES 24000
#define MIN_SHARDS 300
#define FD_LIMIT 32

static void limit_fds(void)
{
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = FD_LIMIT;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

static void two_epochs(const char *io, lt_rec *r)
{
    sp_loader *l;
    int rc = lt_open(g_ds.dir, &l, "io", io, "seed", g_seedstr, "batch_size", "64", "epochs", "2", NULL);
    ck_assert_msg(rc == 0, "open: %s", sp_last_error());
    for (int e = 0; e < 2; e++) {
        rc = lt_epoch(l, &g_ds, r);
        ck_assert_msg(rc == SP_EEPOCH, "io=%s epoch %d: %s: %s", io, e, sp_error_name(rc), sp_loader_errmsg(l));
    }
    ck_assert_msg(r->bad == 0, "%s", r->why);
    ck_assert_int_eq(sp_loader_close(l), 0);
}

static void loader_case(const char *io)
{
    lt_rec free_run = { 0 }, limited = { 0 };
    two_epochs(io, &free_run);
    limit_fds();
    two_epochs(io, &limited);
    ck_assert_uint_eq(limited.nb, free_run.nb);
    for (size_t k = 0; k < free_run.nb; k++)
        TU_CHECK(limited.hash[k] == free_run.hash[k], "io=%s: batch %zu differs under the limit", io, k);
    lt_rec_free(&free_run);
    lt_rec_free(&limited);
}

START_TEST(loader_pread) { loader_case("pread"); }
END_TEST

START_TEST(loader_auto) { loader_case("auto"); }
END_TEST

/* Another part of the process holds every free descriptor for 200 ms. */
typedef struct hog {
    int fds[FD_LIMIT];
    int n;
} hog;

static void *release_later(void *arg)
{
    hog *h = arg;
    usleep(200 * 1000);
    for (int i = 0; i < h->n; i++)
        close(h->fds[i]);
    return NULL;
}

/* The loader's first read needs a descriptor while the table is full and it holds none of its own
 * to close: it waits until they come back, and the batch is good. */
START_TEST(transient_emfile)
{
    limit_fds();
    sp_loader *l;
    int rc = lt_open(g_ds.dir, &l, "io", "pread", "seed", g_seedstr, "batch_size", "64", NULL);
    ck_assert_msg(rc == 0, "open: %s", sp_last_error());
    hog h = { .n = 0 };
    int fd;
    while (h.n < FD_LIMIT && (fd = dup(0)) >= 0)
        h.fds[h.n++] = fd;
    ck_assert_int_lt(h.n, FD_LIMIT); /* the table is full */
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, release_later, &h), 0);
    double t0 = lt_now();
    lt_rec r = { 0 };
    rc = lt_drain(l, &g_ds, &r, 3, 30000);
    ck_assert_msg(rc == 0, "%s: %s", sp_error_name(rc), sp_loader_errmsg(l));
    fprintf(stderr, "fdlimit: first batches after %.0f ms with the descriptor table full for 200 ms\n",
            (lt_now() - t0) * 1000);
    ck_assert_uint_eq(r.bad, 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(sp_loader_close(l), 0);
    lt_rec_free(&r);
    /* held for good: the batch fails after the wait, saying so */
    ck_assert_int_eq(lt_open(g_ds.dir, &l, "io", "pread", "batch_size", "64", NULL), 0);
    for (h.n = 0; h.n < FD_LIMIT && (fd = dup(0)) >= 0;)
        h.fds[h.n++] = fd;
    t0 = lt_now();
    sp_batch *b;
    rc = sp_loader_next(l, &b, 30000);
    double waited = lt_now() - t0;
    ck_assert_int_eq(rc, SP_EIO);
    ck_assert_msg(strstr(sp_loader_errmsg(l), "no descriptor free for 1 s"), "%s", sp_loader_errmsg(l));
    ck_assert_msg(waited > 0.9 && waited < 10, "failed after %.2f s", waited);
    release_later(&h);
    ck_assert_int_eq(sp_loader_close(l), 0);
}
END_TEST

/* A hash of every block's every value, read through one dataset handle. */
static uint64_t read_all(void)
{
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(g_ds.dir, NULL, &ds), 0);
    uint64_t h = 0;
    for (uint64_t b = 0; b < sp_dataset_num_blocks(ds); b++) {
        sp_block *blk;
        int rc = sp_dataset_read_block(ds, b, &blk);
        TU_CHECK(rc == 0, "block %llu: %s", (unsigned long long)b, sp_dataset_errmsg(ds));
        for (uint32_t row = 0; row < sp_block_num_samples(blk); row++)
            for (size_t f = 0; f < sp_schema_num_fields(sp_dataset_schema(ds)); f++) {
                const void *p;
                size_t n;
                ck_assert_int_eq(sp_block_get(blk, row, f, &p, &n), 0);
                for (size_t i = 0; i < n; i++)
                    h = tu_mix(h ^ ((const uint8_t *)p)[i]);
            }
        sp_block_free(blk);
    }
    sp_dataset_close(ds);
    return h;
}

START_TEST(dataset_reads)
{
    uint64_t want = read_all();
    limit_fds();
    ck_assert_uint_eq(read_all(), want);
}
END_TEST

START_TEST(verify)
{
    limit_fds();
    sp_verify_report rep = { .struct_size = sizeof rep };
    int rc = sp_verify(g_ds.dir, NULL, NULL, NULL, &rep);
    ck_assert_msg(rc == 0 && rep.faults == 0, "%s: %llu faults: %s", sp_error_name(rc),
                  (unsigned long long)rep.faults, sp_last_error());
    ck_assert_uint_eq(rep.shards, g_ds.shards);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0xfd32);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    if (lt_make(&g_ds, "fdlimit", N_SAMPLES, 16, g_seed, "4K", "8K")) {
        fprintf(stderr, "cannot write the test dataset\n");
        return 99;
    }
    if (g_ds.shards < MIN_SHARDS) {
        fprintf(stderr, "the test dataset has %llu shards, fewer than %d\n", (unsigned long long)g_ds.shards,
                MIN_SHARDS);
        lt_ds_free(&g_ds);
        return 99;
    }
    Suite *s = suite_create("loader_fdlimit");
    TCase *tc = tu_tcase(s, "fdlimit", 60);
    tcase_add_test(tc, loader_pread);
    tcase_add_test(tc, loader_auto);
    tcase_add_test(tc, dataset_reads);
    tcase_add_test(tc, verify);
    tcase_add_test(tc, transient_emfile);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_ds);
    return rc;
}
