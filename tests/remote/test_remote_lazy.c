/* test_remote_lazy.c - a remote dataset of many shards opens without a request per shard: shard indexes are fetched when the reader needs them (nginx's access log counts the requests); old manifests, damaged indexes found late and manifests whose recorded block sizes lie. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt_util.h"
#include "test_util.h"

#define NSHARDS 600u /* one sample, one block, one shard each */

static lt_ds g_ds;
static char g_state[4096], g_url[4096];

/* A clone of g_ds served from under nginx's root as rel; its directory in *dir. */
static const char *served_clone(const char *rel, lt_ds *copy)
{
    ck_assert_int_eq(lt_clone(&g_ds, copy, rel), 0);
    char *link = tu_join(g_ds.root, rel);
    ck_assert_int_eq(symlink(copy->dir, link), 0);
    free(link);
    return rt_url(rt_env("SP_TEST_HTTP_URL"), rel);
}

static void lie_shard_5(uint64_t shard, uint8_t *e)
{
    uint32_t one = 1;
    if (shard == 5)
        memcpy(e, &one, 4);
}

static void raw_without_stored(uint64_t shard, uint8_t *e)
{
    uint32_t v = 4096;
    if (shard == 0) {
        memset(e, 0, 4);
        memcpy(e + 4, &v, 4);
    }
}

/* The loader's open and first batch over 600 shards: a handful of requests (the manifest, the
 * indexes and blocks of the first windows and what is fetched ahead within the memory for it),
 * never one per shard. Before the indexes were lazy this was 601 requests or more. */
START_TEST(lazy_open_requests)
{
    size_t before = rt_requests(g_state);
    sp_loader *l;
    int rc = lt_open(g_url, &l, "batch_size", "4", "shuffle_window", "4", "threads", "1", "remote_inflight", "2",
                     "remote_part_size", "64K", "prefetch", "1", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_drain(l, &g_ds, &r, 1, 30000), 0);
    size_t used = rt_requests(g_state) - before;
    fprintf(stderr, "lazy_open_requests: %zu requests to the first batch of %u shards\n", used, NSHARDS);
    ck_assert_uint_eq(r.bad, 0);
    ck_assert_msg(used >= 2 && used <= 150, "%zu requests to the first batch of a %u-shard dataset", used, NSHARDS);
    /* the rest of the epoch opens the other shards as it reaches them */
    ck_assert_int_eq(lt_epoch(l, &g_ds, &r), SP_EEPOCH);
    ck_assert_uint_eq(r.ni, NSHARDS);
    ck_assert_uint_eq(r.bad, 0);
    /* each shard's index fetched once, each block once */
    sp_loader_stats st = { sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_eq(st.remote_requests, 2 * NSHARDS);
    sp_loader_close(l);
    lt_rec_free(&r);
}
END_TEST

/* Bit for bit the local batches, shuffled over every shard, with few tail buffers (one transfer:
 * the reader often waits for an index) and with many. */
START_TEST(lazy_same_batches)
{
    rt_check_same(&g_ds, g_url, "shuffle_window", "8", "remote_inflight", "1", NULL);
    rt_check_same(&g_ds, g_url, "shuffle_window", "3", "batch_size", "7", "remote_inflight", "32", NULL);
}
END_TEST

/* A manifest written before 1.1 (no largest blocks recorded): every shard's index is read at open,
 * as before, and the batches are the same. */
START_TEST(old_manifest)
{
    lt_ds copy;
    const char *url = served_clone("old", &copy);
    tu_rewrite_manifest(copy.dir, 0, tu_manifest_unrecorded);
    size_t before = rt_requests(g_state);
    sp_loader *l;
    ck_assert_int_eq(lt_open(url, &l, NULL), 0);
    ck_assert_uint_ge(rt_requests(g_state) - before, NSHARDS + 1);
    sp_loader_close(l);
    rt_check_same(&copy, url, "shuffle_window", "5", NULL);
    lt_ds_free(&copy);
}
END_TEST

/* A shard whose index is damaged, and one cut short, found when the reader first needs them: the
 * batch fails naming the shard's URL and what is wrong; under on_error=skip their samples are
 * skipped as a damaged block's are. */
START_TEST(lazy_bad_index)
{
    lt_ds copy;
    char url[4096];
    snprintf(url, sizeof url, "%s", served_clone("badindex", &copy));
    char *damaged = tu_join(copy.dir, "shard-000007.sps");
    tu_xor_byte(damaged, tu_file_size(damaged) - 64 - 20, 0x5a); /* the last block entry */
    char *cut = tu_join(copy.dir, "shard-000011.sps");
    ck_assert_int_eq(truncate(cut, (off_t)(tu_file_size(cut) - 100)), 0);
    sp_loader *l;
    ck_assert_int_eq(lt_open(url, &l, "shuffle", "false", "batch_size", "1", NULL), 0);
    lt_rec r = { 0 };
    int rc = lt_epoch(l, &copy, &r);
    const char *m = sp_loader_errmsg(l);
    ck_assert_msg(rc == SP_ECHECKSUM && strstr(m, "badindex/shard-000007.sps") && strstr(m, "block 0"), "%d %s", rc,
                  m);
    ck_assert_uint_eq(r.ni, 7);
    ck_assert_uint_eq(r.bad, 0);
    sp_loader_close(l);
    lt_rec_free(&r);
    /* skipped: both shards' samples, as damaged blocks' are */
    ck_assert_int_eq(lt_open(url, &l, "shuffle", "false", "batch_size", "4", "on_error", "skip", NULL), 0);
    memset(&r, 0, sizeof r);
    rc = lt_epoch(l, &copy, &r);
    ck_assert_msg(rc == SP_EEPOCH, "%d %s", rc, sp_loader_errmsg(l));
    ck_assert_uint_eq(r.bad, 0);
    ck_assert_uint_eq(r.ni, NSHARDS);
    ck_assert_uint_eq(r.filled, 2);
    sp_loader_close(l);
    lt_rec_free(&r);
    /* the cut shard, once the damaged one is whole again */
    tu_xor_byte(damaged, tu_file_size(damaged) - 64 - 20, 0x5a);
    ck_assert_int_eq(lt_open(url, &l, "shuffle", "false", "batch_size", "1", NULL), 0);
    memset(&r, 0, sizeof r);
    rc = lt_epoch(l, &copy, &r);
    m = sp_loader_errmsg(l);
    ck_assert_msg(rc < 0 && rc != SP_EEPOCH && strstr(m, "badindex/shard-000011.sps"), "%d %s", rc, m);
    ck_assert_uint_eq(r.ni, 11);
    sp_loader_close(l);
    lt_rec_free(&r);
    free(damaged);
    free(cut);
    lt_ds_free(&copy);
}
END_TEST

/* A manifest whose recorded largest block is smaller than a shard's real one: that shard is refused
 * when it is opened (the loader's buffers were sized from the manifest), locally and over HTTP;
 * a raw size recorded without a stored one is a damaged manifest. */
START_TEST(recorded_sizes_checked)
{
    lt_ds copy;
    const char *url = served_clone("lie", &copy);
    tu_rewrite_manifest(copy.dir, 1, lie_shard_5);
    sp_dataset *d;
    ck_assert_int_eq(sp_dataset_open(copy.dir, NULL, &d), 0);
    sp_block *b;
    ck_assert_int_eq(sp_dataset_read_block(d, 5, &b), SP_ECORRUPT);
    ck_assert_msg(strstr(sp_dataset_errmsg(d), "shard-000005.sps") &&
                  strstr(sp_dataset_errmsg(d), "largest block size differs from the manifest"), "%s",
                  sp_dataset_errmsg(d));
    sp_dataset_close(d);
    sp_loader *l;
    ck_assert_int_eq(lt_open(url, &l, "shuffle", "false", "batch_size", "1", NULL), 0);
    lt_rec r = { 0 };
    int rc = lt_epoch(l, &copy, &r);
    ck_assert_msg(rc == SP_ECORRUPT && strstr(sp_loader_errmsg(l), "lie/shard-000005.sps"), "%d %s", rc,
                  sp_loader_errmsg(l));
    ck_assert_uint_eq(r.ni, 5);
    sp_loader_close(l);
    lt_rec_free(&r);
    tu_rewrite_manifest(copy.dir, 1, raw_without_stored);
    ck_assert_int_eq(sp_dataset_open(copy.dir, NULL, &d), SP_ECORRUPT);
    ck_assert_msg(strstr(sp_last_error(), "largest raw block"), "%s", sp_last_error());
    lt_ds_free(&copy);
}
END_TEST

int main(void)
{
    uint64_t seed = tu_seed(16);
    if (lt_make_one_per_shard(&g_ds, "remote-lazy", NSHARDS, seed))
        return 1;
    snprintf(g_state, sizeof g_state, "%s/servers", g_ds.root);
    int rc = rt_servers("nginx", "start", "--root", g_ds.root, "--state", g_state, "--access-log", NULL);
    if (rc) {
        lt_ds_free(&g_ds);
        return rc == 77 ? 77 : 1;
    }
    snprintf(g_url, sizeof g_url, "%s/data", getenv("SP_TEST_HTTP_URL"));
    Suite *s = suite_create("remote_lazy");
    TCase *tc = tcase_create("lazy");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, lazy_open_requests);
    tcase_add_test(tc, lazy_same_batches);
    tcase_add_test(tc, old_manifest);
    tcase_add_test(tc, lazy_bad_index);
    tcase_add_test(tc, recorded_sizes_checked);
    suite_add_tcase(s, tc);
    rc = tu_run(s, seed);
    rt_stop(g_state);
    lt_ds_free(&g_ds);
    return rc;
}
