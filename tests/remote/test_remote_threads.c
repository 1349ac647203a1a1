/* test_remote_threads.c - sp_dataset_read_block from several threads at once on one dataset over HTTP (a real nginx, through the fault proxy): every block read is right, and the shared object's size and ETag, pinned by whichever answer comes first (here a block read, when the shard's tail came without an ETag), are written and read without a data race (run under --setup=tsan). */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt_util.h"
#include "test_util.h"

#define NTHREADS 4

static lt_ds g_ds;
static char g_state[4096], g_url[4200];

typedef struct reader {
    sp_dataset *d;
    uint64_t nblocks;
    pthread_barrier_t *go;
    int rc;
    char why[SP_ERRMSG_MAX];
} reader;

/* Reads blocks 0..nblocks-1 (the same ones as every other thread), checking each one's rows. */
static void *read_blocks(void *arg)
{
    reader *r = arg;
    pthread_barrier_wait(r->go);
    for (uint64_t b = 0; b < r->nblocks && r->rc == SP_OK; b++) {
        sp_block *blk;
        sp_block_info bi = { sizeof bi };
        if ((r->rc = sp_dataset_block_info(r->d, b, &bi)) || (r->rc = sp_dataset_read_block(r->d, b, &blk))) {
            snprintf(r->why, sizeof r->why, "block %llu: %s", (unsigned long long)b, sp_last_error());
            break;
        }
        if (sp_block_num_samples(blk) != bi.samples) {
            r->rc = SP_ECORRUPT;
            snprintf(r->why, sizeof r->why, "block %llu: %u samples, not %llu", (unsigned long long)b,
                     sp_block_num_samples(blk), (unsigned long long)bi.samples);
        }
        sp_block_free(blk);
    }
    return NULL;
}

/* NTHREADS threads read the first shard's blocks at once; the proxy takes the ETag off its first
 * answer for that shard (the tail read when the shard opens), so the block reads are the first to
 * bring one and pin it. */
static void threads_read(const char *rules_json)
{
    rt_rules(rules_json);
    sp_dataset *d;
    ck_assert_msg(sp_dataset_open(g_url, NULL, &d) == SP_OK, "%s", sp_last_error());
    sp_shard_info si = { sizeof si };
    ck_assert_int_eq(sp_dataset_shard_info(d, 0, &si), SP_OK);
    ck_assert_uint_ge(si.blocks, 2);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, NTHREADS);
    pthread_t th[NTHREADS];
    reader r[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        r[i] = (reader){ .d = d, .nblocks = si.blocks, .go = &go };
        ck_assert_int_eq(pthread_create(&th[i], NULL, read_blocks, &r[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(r[i].rc == SP_OK, "thread %d: %s", i, r[i].why);
    }
    pthread_barrier_destroy(&go);
    sp_dataset_close(d);
}

START_TEST(threads_pin_etag)
{
    threads_read("[{\"fault\": \"no_etag\", \"match\": \"shard-000000\", \"count\": 1}]");
}
END_TEST

START_TEST(threads_plain)
{
    threads_read("[]");
}
END_TEST

int main(void)
{
    uint64_t seed = tu_seed(16);
    if (lt_make(&g_ds, "remote-threads", 600, 17, seed, "4K", "64K"))
        return 1;
    int rc = rt_nginx_proxied(g_ds.root, g_state, sizeof g_state);
    if (rc) {
        lt_ds_free(&g_ds);
        return rc == 77 ? 77 : 1;
    }
    snprintf(g_url, sizeof g_url, "%s/data", getenv("SP_TEST_PROXY_URL"));
    Suite *s = suite_create("remote_threads");
    TCase *tc = tcase_create("threads");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, threads_plain);
    tcase_add_test(tc, threads_pin_etag);
    suite_add_tcase(s, tc);
    rc = tu_run(s, seed);
    rt_stop(g_state);
    lt_ds_free(&g_ds);
    return rc;
}
