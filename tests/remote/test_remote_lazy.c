/* test_remote_lazy.c - a remote dataset of many shards opens without a request per shard: shard indexes are fetched when the reader needs them (nginx's access log counts the requests); old manifests, damaged indexes found late and manifests whose recorded block sizes lie; shards whose index is larger than the 64 KiB tail fetched whole by one GET each (the log's Range of each request). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt_util.h"
#include "test_util.h"

#define NSHARDS 600u /* one sample, one block, one shard each */
/* one sample a 4 KiB block, some 1,500 blocks a 6 MiB shard: each index about 72 KiB */
#define BIG_SAMPLES 4000u
/* the same in 256 KiB shards: some 60 blocks, an index of 3 KiB at the end of each */
#define SMALL_SAMPLES 300u

static lt_ds g_ds, g_big, g_small;
static char g_state[4096], g_url[4096];

/* A clone of src served from under nginx's root as rel (its URL); the copy in *copy. */
static const char *served_clone_of(const lt_ds *src, const char *rel, lt_ds *copy)
{
    ck_assert_int_eq(lt_clone(src, copy, rel), 0);
    char *link = tu_join(g_ds.root, rel);
    ck_assert_int_eq(symlink(copy->dir, link), 0);
    free(link);
    return rt_url(rt_env("SP_TEST_HTTP_URL"), rel);
}

/* A clone of g_ds so served. */
static const char *served_clone(const char *rel, lt_ds *copy) { return served_clone_of(&g_ds, rel, copy); }

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

/* Limit mode over a URL: a block's first sp_loader_bench_block fetches it (and its shard's index),
 * the calls after it send no request (the block is kept in the idle read ring), so the limit is the
 * workers' work, not the server's latency; the loader then delivers its batches as always. */
START_TEST(bench_block_fetched_once)
{
    sp_loader *l;
    int rc = lt_open(g_url, &l, "batch_size", "4", "threads", "1", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    uint64_t cursor = 0, nb = 4;
    size_t before = rt_requests(g_state);
    for (uint64_t b = 0; b < nb; b++)
        ck_assert_msg(sp_loader_bench_block(l, 0, 1, b, &cursor) > 0, "block %llu: %s", (unsigned long long)b,
                      sp_last_error());
    size_t first = rt_requests(g_state) - before;
    ck_assert_msg(first >= nb && first <= 2 * nb, "%zu requests for %llu blocks", first, (unsigned long long)nb);
    before = rt_requests(g_state);
    for (int again = 0; again < 3; again++)
        for (uint64_t b = 0; b < nb; b++)
            ck_assert_int_gt(sp_loader_bench_block(l, 0, 1, b, &cursor), 0);
    ck_assert_uint_eq(rt_requests(g_state) - before, 0);
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_epoch(l, &g_ds, &r), SP_EEPOCH);
    ck_assert_uint_eq(r.ni, NSHARDS);
    ck_assert_uint_eq(r.bad, 0);
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

/* ---------------------------------------------------------------- indexes larger than the tail */

/* Where shard `name` of dir keeps its index (its trailer's index_offset) and its size. */
static void index_at(const char *dir, const char *name, uint64_t *index_offset, uint64_t *size)
{
    char *path = tu_join(dir, name);
    size_t n;
    uint8_t *p = tu_read_file(path, &n);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_ge(n, 64);
    uint64_t off = 0;
    for (int k = 7; k >= 0; k--)
        off = off << 8 | p[n - 64 + k];
    *index_offset = off;
    *size = n;
    free(p);
    free(path);
}

/* The GETs of dataset `rel`'s shards nginx logged from line `from` on whose range reaches into the
 * shard's index (a block's never does): checks that each shard of dir had exactly `want` of them
 * (want 1: one GET of its last `first` bytes, or when first is 0 of its index and trailer or
 * its last 64 KiB, whichever is more), and returns how many shards had any. */
static size_t index_gets(size_t from, const char *rel, const char *dir, unsigned want, uint64_t first)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/logs/nginx-access.log", g_state);
    size_t n;
    char *t = (char *)tu_read_file(path, &n);
    ck_assert_ptr_nonnull(t);
    size_t nshards;
    char **shards = tu_list_shards(dir, &nshards);
    unsigned *gets = calloc(nshards, sizeof *gets);
    char prefix[256];
    snprintf(prefix, sizeof prefix, "\"GET /%s/shard-", rel);
    size_t line_no = 0, touched = 0;
    for (char *line = t, *end; line < t + n; line = end + 1, line_no++) {
        end = memchr(line, '\n', (size_t)(t + n - line));
        if (!end)
            break;
        *end = '\0';
        char *g = strstr(line, prefix), *r = strstr(line, "\"bytes=");
        unsigned long long no, a, b;
        if (line_no < from || !g || sscanf(g + strlen(prefix), "%6llu.sps", &no) != 1)
            continue;
        ck_assert_msg(r != NULL && no < nshards, "a GET without a range, or of another shard: %s", line);
        uint64_t ix, size;
        index_at(dir, strrchr(shards[no], '/') + 1, &ix, &size);
        if (sscanf(r, "\"bytes=-%llu", &b) == 1) { /* the last b bytes */
            a = size - b;
            b = size - 1;
        } else {
            ck_assert_msg(sscanf(r, "\"bytes=%llu-%llu", &a, &b) == 2, "%s", line);
        }
        if (b < ix)
            continue; /* blocks */
        touched += gets[no]++ == 0;
        uint64_t tail = first ? first : size - ix > 65536 ? size - ix : 65536; /* an index within it: the 64 KiB */
        if (want == 1)
            ck_assert_msg(b == size - 1 && a == size - tail, "%s: the GET of %llu-%llu, not of its last %llu bytes",
                          shards[no], a, b, (unsigned long long)tail);
    }
    for (size_t i = 0; i < nshards; i++)
        ck_assert_msg(gets[i] == 0 || gets[i] == want, "%s: %u GETs of its index, not %u", shards[i], gets[i], want);
    free(gets);
    tu_free_list(shards, nshards);
    free(t);
    return touched;
}

/* Shards whose index is larger than the 64 KiB tail: the loader's one GET of each shard's tail
 * fetches its whole index (the manifest gives its length), where it took a second GET, synchronous
 * on the reader thread, of the index; the batches are the local ones and the memory stays within
 * host_memory. */
START_TEST(big_index_one_get)
{
    size_t nshards;
    char **shards = tu_list_shards(g_big.dir, &nshards);
    for (size_t i = 0; i < nshards; i++) {
        uint64_t ix, size;
        index_at(g_big.dir, strrchr(shards[i], '/') + 1, &ix, &size);
        if (i + 1 < nshards) /* the last may be short */
            ck_assert_msg(size - ix > 65536 + 4096, "%s: an index of %llu bytes", shards[i],
                          (unsigned long long)(size - ix));
    }
    const char *url = rt_url(rt_env("SP_TEST_HTTP_URL"), "big");
    size_t before = rt_requests(g_state);
    sp_loader *l;
    ck_assert_int_eq(lt_open(url, &l, "batch_size", "16", "shuffle_window", "64", "remote_inflight", "4", NULL), 0);
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_epoch(l, &g_big, &r), SP_EEPOCH);
    ck_assert_uint_eq(r.ni, BIG_SAMPLES);
    ck_assert_uint_eq(r.bad, 0);
    sp_loader_stats st = { sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_eq(st.shard_indexes_read, nshards);
    ck_assert_msg(st.host_allocated_bytes <= st.host_memory_bytes, "%llu bytes allocated, host_memory %llu",
                  (unsigned long long)st.host_allocated_bytes, (unsigned long long)st.host_memory_bytes);
    sp_loader_close(l);
    lt_rec_free(&r);
    ck_assert_uint_eq(index_gets(before, "big", g_big.dir, 1, 0), nshards);
    /* every GET the loader sent, and the manifest's: no other */
    ck_assert_uint_eq(rt_requests(g_state) - before, st.remote_gets + 1);
    rt_check_same(&g_big, url, "shuffle_window", "40", "remote_inflight", "1", NULL);
    tu_free_list(shards, nshards);
}
END_TEST

/* Indexes within the tail: each shard's one GET of its last 64 KiB, as before. */
START_TEST(small_index_one_tail)
{
    size_t nshards;
    char **shards = tu_list_shards(g_small.dir, &nshards);
    ck_assert_uint_ge(nshards, 3);
    for (size_t i = 0; i < nshards; i++)
        ck_assert_uint_gt(tu_file_size(shards[i]), 65536);
    const char *url = rt_url(rt_env("SP_TEST_HTTP_URL"), "small");
    size_t before = rt_requests(g_state);
    sp_loader *l;
    ck_assert_int_eq(lt_open(url, &l, "batch_size", "8", NULL), 0);
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_epoch(l, &g_small, &r), SP_EEPOCH);
    ck_assert_uint_eq(r.ni, SMALL_SAMPLES);
    ck_assert_uint_eq(r.bad, 0);
    sp_loader_stats st = { sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_eq(st.shard_indexes_read, nshards);
    ck_assert(st.host_allocated_bytes <= st.host_memory_bytes);
    sp_loader_close(l);
    lt_rec_free(&r);
    ck_assert_uint_eq(index_gets(before, "small", g_small.dir, 1, 65536), nshards);
    tu_free_list(shards, nshards);
}
END_TEST

/* The dataset's own paths over large indexes: a block read through sp_dataset (its shard opened on
 * first use), a manifest of 1.0 (every shard opened at the loader's open, many tails at once), and
 * a shard whose index is damaged, refused naming its URL as before. */
START_TEST(big_index_dataset_paths)
{
    const char *url = rt_url(rt_env("SP_TEST_HTTP_URL"), "big");
    size_t before = rt_requests(g_state);
    sp_dataset *d;
    ck_assert_int_eq(sp_dataset_open(url, NULL, &d), 0);
    sp_block *b;
    ck_assert_msg(sp_dataset_read_block(d, 1, &b) == 0, "%s", sp_dataset_errmsg(d));
    sp_block_free(b);
    sp_dataset_close(d);
    ck_assert_uint_eq(index_gets(before, "big", g_big.dir, 1, 0), 1);

    lt_ds copy;
    char curl[4096];
    snprintf(curl, sizeof curl, "%s", served_clone_of(&g_big, "bigold", &copy));
    tu_rewrite_manifest(copy.dir, 0, tu_manifest_unrecorded);
    before = rt_requests(g_state);
    sp_loader *l;
    ck_assert_int_eq(lt_open(curl, &l, NULL), 0);
    ck_assert_uint_eq(index_gets(before, "bigold", copy.dir, 1, 0), g_big.shards);
    sp_loader_close(l);

    char *damaged = tu_join(copy.dir, "shard-000001.sps"), *first = tu_join(copy.dir, "shard-000000.sps");
    tu_xor_byte(damaged, tu_file_size(damaged) - 64 - 20, 0x5a); /* the last block entry */
    ck_assert_int_eq(lt_open(curl, &l, NULL), SP_ECHECKSUM);
    ck_assert_msg(strstr(sp_last_error(), "bigold/shard-000001.sps"), "%s", sp_last_error());
    /* a shard put in another's place (the same size): its index whole from the one GET, and refused */
    ck_assert_uint_eq(tu_file_size(first), tu_file_size(damaged));
    tu_copy_file(first, damaged);
    ck_assert_int_eq(lt_open(curl, &l, NULL), SP_ECORRUPT);
    ck_assert_msg(strstr(sp_last_error(), "bigold/shard-000001.sps: index checksum differs from the manifest"), "%s",
                  sp_last_error());
    free(damaged);
    free(first);
    lt_ds_free(&copy);

    /* a shard by its own URL (no manifest to tell its index's length): the 64 KiB tail, then the rest
     * of the index by a second GET, as before */
    before = rt_requests(g_state);
    ck_assert_int_eq(sp_dataset_open(rt_url(rt_env("SP_TEST_HTTP_URL"), "big/shard-000000.sps"), NULL, &d), 0);
    ck_assert_msg(sp_dataset_read_block(d, 1, &b) == 0, "%s", sp_dataset_errmsg(d));
    sp_block_free(b);
    sp_dataset_close(d);
    ck_assert_uint_eq(index_gets(before, "big", g_big.dir, 2, 0), 1);
}
END_TEST

/* A shard replaced by another of the same size in a lazily opened dataset: its one GET brings the
 * other's index, which the reader refuses naming the URL, as it does a 64 KiB tail's. */
START_TEST(big_index_replaced)
{
    lt_ds copy;
    char url[4096];
    snprintf(url, sizeof url, "%s", served_clone_of(&g_big, "bigswap", &copy));
    char *second = tu_join(copy.dir, "shard-000001.sps"), *first = tu_join(copy.dir, "shard-000000.sps");
    tu_copy_file(first, second);
    sp_loader *l;
    ck_assert_int_eq(lt_open(url, &l, "shuffle", "false", "batch_size", "1", NULL), 0);
    lt_rec r = { 0 };
    int rc = lt_epoch(l, &copy, &r);
    const char *m = sp_loader_errmsg(l);
    ck_assert_msg(rc == SP_ECORRUPT && strstr(m, "bigswap/shard-000001.sps: index checksum differs from the manifest"),
                  "%d %s", rc, m);
    ck_assert_uint_gt(r.ni, 1000); /* shard 0's samples, all of them right */
    ck_assert_uint_lt(r.ni, BIG_SAMPLES / 2);
    ck_assert_uint_eq(r.bad, 0);
    sp_loader_close(l);
    lt_rec_free(&r);
    free(first);
    free(second);
    lt_ds_free(&copy);
}
END_TEST

int main(void)
{
    uint64_t seed = tu_seed(16);
    if (lt_make_one_per_shard(&g_ds, "remote-lazy", NSHARDS, seed) ||
        lt_make(&g_big, "remote-lazy-big", BIG_SAMPLES, 2000, seed + 1, "4K", "6M") ||
        lt_make(&g_small, "remote-lazy-small", SMALL_SAMPLES, 2000, seed + 2, "4K", "256K"))
        return 1;
    char *big = tu_join(g_ds.root, "big"), *small = tu_join(g_ds.root, "small");
    if (symlink(g_big.dir, big) || symlink(g_small.dir, small))
        return 1;
    free(big);
    free(small);
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
    tcase_add_test(tc, bench_block_fetched_once);
    tcase_add_test(tc, old_manifest);
    tcase_add_test(tc, lazy_bad_index);
    tcase_add_test(tc, recorded_sizes_checked);
    tcase_add_test(tc, big_index_one_get);
    tcase_add_test(tc, small_index_one_tail);
    tcase_add_test(tc, big_index_dataset_paths);
    tcase_add_test(tc, big_index_replaced);
    suite_add_tcase(s, tc);
    rc = tu_run(s, seed);
    rt_stop(g_state);
    lt_ds_free(&g_ds);
    lt_ds_free(&g_big);
    lt_ds_free(&g_small);
    return rc;
}
