/* test_remote_mix.c - weighted mixtures whose sources are local directories, HTTP and S3 datasets (real nginx and Swift): the same batches, bit for bit, as the same mixture of local copies (shuffled, 3 epochs, 2 ranks; two HTTP sources on one server; resumed mid-epoch on another world size); a missing remote source fails the open naming its URL; a damaged block of a remote source fails naming the URL and the block (on_error=fail) or is skipped as locally (skip); the cache serves a mixture's remote sources; a user:password@ in a source's URL (or a shard list's) is never shown; a remote source of many shards costs no request per shard before the first batch; a damaged index of a lazy local source beside a remote one fails (or is skipped) at its shard's first use; `shardpack bench URL:W DIR:W`. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt_util.h"
#include "test_util.h"

static lt_ds g_a, g_b, g_c, g_d, g_bad; /* a: local; b, d, bad: on nginx; c: in Swift */
static lt_ds g_e, g_f;                  /* e on nginx, f local: one-sample shards, for the index reads */
#define NSHARDS_E 600u
static char g_nginx[4096], g_swift[4096], g_seedstr[32];
static char g_url_b[4096], g_url_d[4096], g_url_bad[4096], g_url_e[4096];
static const char *g_url_c = "s3://spbucket/c";

/* A mixture of paths (weights w) with the test defaults and the extra NULL-terminated pairs. */
static int open_mix(const char *const *paths, const double *w, size_t n, sp_loader **l, const char *const *kv)
{
    sp_params *p = lt_params_v(kv);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(sp_params_set_str(p, "seed", g_seedstr), 0);
    ck_assert_int_eq(sp_params_set_str(p, "host_memory", "64M"), 0);
    ck_assert_int_eq(sp_params_set_str(p, "threads", "2"), 0);
    int rc = sp_loader_open_mix(paths, w, n, p, l);
    sp_params_destroy(p);
    return rc;
}

/* Every batch of a mixture's run to its end (SP_EDONE) or first failure, recorded; the ending code,
 * the loader's message in msg, its stats in *st (when st). */
static int mix_run(const char *const *paths, const double *w, size_t n, const char *const *kv, lt_rec *r, char *msg,
                   size_t msglen, sp_loader_stats *st)
{
    sp_loader *l = NULL;
    int rc = open_mix(paths, w, n, &l, kv);
    if (rc == 0) {
        do
            rc = lt_drain(l, NULL, r, UINT64_MAX, 60000);
        while (rc == SP_EEPOCH);
        if (st)
            sp_loader_stats_get(l, st);
    }
    snprintf(msg, msglen, "%s", l ? sp_loader_errmsg(l) : sp_last_error());
    sp_loader_close(l);
    return rc;
}

/* Both mixtures run with kv to their end, and deliver the same batches bit for bit; the remote one
 * made requests. */
static void expect_same_mix(const char *const *local, const char *const *remote, const double *w, size_t n,
                            const char *const *kv)
{
    lt_rec a = { 0 }, b = { 0 };
    char msg[SP_ERRMSG_MAX], why[128];
    sp_loader_stats st = { .struct_size = sizeof st };
    int rc = mix_run(local, w, n, kv, &a, msg, sizeof msg, NULL);
    ck_assert_msg(rc == SP_EDONE, "local mixture: %d %s", rc, msg);
    rc = mix_run(remote, w, n, kv, &b, msg, sizeof msg, &st);
    ck_assert_msg(rc == SP_EDONE, "remote mixture: %d %s", rc, msg);
    ck_assert_msg(a.nb > 10, "%zu batches", a.nb);
    ck_assert_msg(rt_same(&a, &b, why, sizeof why), "%s", why);
    fprintf(stderr, "%zu batches, %llu GETs, at most %llu outstanding\n", b.nb, (unsigned long long)st.remote_requests,
            (unsigned long long)st.remote_pending_peak);
    ck_assert_msg(st.remote_requests > 0 && st.remote_bytes > 0, "%llu requests, %llu bytes",
                  (unsigned long long)st.remote_requests, (unsigned long long)st.remote_bytes);
    lt_rec_free(&a);
    lt_rec_free(&b);
}

/* A local directory, an HTTP dataset and an S3 dataset in one mixture: each of 2 ranks, shuffled,
 * 3 epochs, delivers what the mixture of local copies delivers; with one transfer and small
 * windows too. */
START_TEST(mix_local_http_s3)
{
    const char *local[3] = { g_a.dir, g_b.dir, g_c.dir }, *remote[3] = { g_a.dir, g_url_b, g_url_c };
    const double w[3] = { 0.5, 0.3, 0.2 };
    for (int r = 0; r < 2; r++) {
        const char *rank = r ? "1" : "0";
        const char *kv[] = { "epochs", "3", "batch_size", "7", "rank", rank, "world_size", "2", NULL };
        expect_same_mix(local, remote, w, 3, kv);
    }
    const char *small[] = { "epochs", "2", "batch_size", "5", "remote_inflight", "1", "shuffle_window", "2", NULL };
    expect_same_mix(local, remote, w, 3, small);
    /* remote first (the loader's own dataset is then a remote one), mix_epoch_samples */
    const char *rfirst[3] = { g_url_c, g_a.dir, g_url_b }, *lfirst[3] = { g_c.dir, g_a.dir, g_b.dir };
    const char *kv[] = { "epochs", "2", "batch_size", "7", "mix_epoch_samples", "900", NULL };
    expect_same_mix(lfirst, rfirst, w, 3, kv);
}
END_TEST

/* Two HTTP datasets on the same nginx, nothing local. */
START_TEST(mix_two_http)
{
    const char *local[2] = { g_b.dir, g_d.dir }, *remote[2] = { g_url_b, g_url_d };
    const double w[2] = { 1, 1 };
    const char *kv[] = { "epochs", "2", "batch_size", "9", NULL };
    expect_same_mix(local, remote, w, 2, kv);
}
END_TEST

/* A remote source that is not there fails the open, naming its URL. */
START_TEST(mix_missing_source)
{
    const double w[2] = { 1, 1 };
    const char *kv[] = { NULL };
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/missing", rt_env("SP_TEST_HTTP_URL"));
    const char *a[2] = { g_a.dir, missing }, *b[2] = { g_url_b, "s3://spbucket/nothere" };
    sp_loader *l = NULL;
    ck_assert_int_eq(open_mix(a, w, 2, &l, kv), SP_ENOENT);
    ck_assert_ptr_null(l);
    ck_assert_msg(strstr(sp_last_error(), missing), "%s", sp_last_error());
    ck_assert_int_eq(open_mix(b, w, 2, &l, kv), SP_ENOENT);
    ck_assert_msg(strstr(sp_last_error(), "s3://spbucket/nothere"), "%s", sp_last_error());
}
END_TEST

/* A mixture whose first source's URL holds user:password@ (nginx's basic auth): it reads, and the
 * loader's messages name the URL without them. */
START_TEST(mix_credentials_hidden)
{
    const char *base = rt_env("SP_TEST_HTTP_URL"), *pw = rt_env("SP_TEST_HTTP_PASSWORD");
    char inurl[4400];
    snprintf(inurl, sizeof inurl, "http://%s:%s@%s/basic/data", rt_env("SP_TEST_HTTP_USER"), pw, base + 7);
    const char *paths[2] = { inurl, g_a.dir };
    const double w[2] = { 1, 1 };
    const char *kv[] = { NULL };
    sp_loader *l = NULL;
    ck_assert_msg(open_mix(paths, w, 2, &l, kv) == 0, "%s", sp_last_error());
    uint64_t cursor = 0;
    ck_assert_int_eq(sp_loader_bench_block(l, 0, 1, 1u << 30, &cursor), SP_ERANGE); /* names the loader */
    ck_assert_msg(strstr(sp_last_error(), "/basic/data") && !strstr(sp_last_error(), pw), "%s", sp_last_error());
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_drain(l, NULL, &r, 3, 60000), 0);
    lt_rec_free(&r);
    sp_loader_close(l);
    /* a source of another schema (e: 2000 tokens a sample) is refused naming both without them */
    snprintf(inurl, sizeof inurl, "http://%s:%s@%s/basic/e", rt_env("SP_TEST_HTTP_USER"), pw, base + 7);
    ck_assert_int_eq(open_mix(paths, w, 2, &l, kv), SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "different schemas") && strstr(sp_last_error(), "/basic/e") &&
                  !strstr(sp_last_error(), pw), "%s", sp_last_error());
    const double zero[2] = { 0, 1 }; /* a bad weight: refused naming the source, without them */
    ck_assert_int_eq(open_mix(paths, zero, 2, &l, kv), SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), "has weight 0") && strstr(sp_last_error(), "/basic/e") &&
                  !strstr(sp_last_error(), pw), "%s", sp_last_error());
    /* a loader over a list of shard URLs is named without them too */
    snprintf(inurl, sizeof inurl, "http://%s:%s@%s/basic/data/shard-000000.sps", rt_env("SP_TEST_HTTP_USER"), pw,
             base + 7);
    const char *shards[1] = { inurl };
    sp_params *p = lt_params_v((const char *const[]){ "threads", "2", "host_memory", "64M", NULL });
    ck_assert_msg(sp_loader_open_shards(shards, 1, p, &l) == 0, "%s", sp_last_error());
    sp_params_destroy(p);
    cursor = 0;
    ck_assert_int_eq(sp_loader_bench_block(l, 0, 1, 1u << 30, &cursor), SP_ERANGE); /* names the loader */
    ck_assert_msg(strstr(sp_last_error(), "/basic/data/shard-000000.sps") && !strstr(sp_last_error(), pw), "%s",
                  sp_last_error());
    sp_loader_close(l);
}
END_TEST

/* A damaged block in a remote source: on_error=fail names the shard's URL and the block, at the
 * batch the local copies fail at; skip delivers what the local copies deliver. */
START_TEST(mix_damaged_block)
{
    const char *local[2] = { g_a.dir, g_bad.dir }, *remote[2] = { g_a.dir, g_url_bad };
    const double w[2] = { 0.6, 0.4 };
    lt_rec a = { 0 }, b = { 0 };
    char la[SP_ERRMSG_MAX], lb[SP_ERRMSG_MAX], why[128], shard[4200];
    const char *fail[] = { "epochs", "1", "batch_size", "7", "on_error", "fail", NULL };
    int ra = mix_run(local, w, 2, fail, &a, la, sizeof la, NULL);
    int rb = mix_run(remote, w, 2, fail, &b, lb, sizeof lb, NULL);
    ck_assert_msg(ra == SP_ECHECKSUM && rb == SP_ECHECKSUM, "local %d %s; remote %d %s", ra, la, rb, lb);
    snprintf(shard, sizeof shard, "%s/shard-000001.sps: block 0 ", g_url_bad);
    ck_assert_msg(strstr(lb, shard), "%s", lb);
    ck_assert_msg(rt_same(&a, &b, why, sizeof why), "before the failure: %s", why);
    lt_rec_free(&a);
    lt_rec_free(&b);
    const char *skip[] = { "epochs", "2", "batch_size", "7", "on_error", "skip", NULL };
    ra = mix_run(local, w, 2, skip, &a, la, sizeof la, NULL);
    rb = mix_run(remote, w, 2, skip, &b, lb, sizeof lb, NULL);
    ck_assert_msg(ra == SP_EDONE && rb == SP_EDONE, "local %d %s; remote %d %s", ra, la, rb, lb);
    ck_assert_msg(b.filled > 0, "no row was skipped");
    ck_assert_msg(rt_same(&a, &b, why, sizeof why), "%s", why);
    lt_rec_free(&a);
    lt_rec_free(&b);
}
END_TEST

/* 2 ranks take 4 batches each and save their state; 1 rank (the same global batch) loads it and
 * goes on to the end of the next epoch. Every batch recorded, in order. */
static void elastic(const char *const *paths, const double *w, size_t n, lt_rec *r)
{
    uint8_t st[SP_LOADER_STATE_BYTES];
    sp_loader *l[2] = { NULL, NULL };
    for (int k = 0; k < 2; k++) {
        const char *kv[] = { "batch_size", "6", "partitions", "2", "rank", k ? "1" : "0", "world_size", "2",
                             "epochs", "2", NULL };
        ck_assert_msg(open_mix(paths, w, n, &l[k], kv) == 0, "%s", sp_last_error());
    }
    for (int g = 0; g < 4; g++)
        for (int k = 0; k < 2; k++)
            ck_assert_int_eq(lt_drain(l[k], NULL, r, 1, 60000), 0);
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(sp_loader_save_state(l[k], st, sizeof st), 0);
        ck_assert_int_eq(sp_loader_close(l[k]), 0);
    }
    const char *kv[] = { "batch_size", "12", "partitions", "2", "epochs", "2", NULL };
    sp_loader *one = NULL;
    ck_assert_msg(open_mix(paths, w, n, &one, kv) == 0, "%s", sp_last_error());
    ck_assert_msg(sp_loader_load_state(one, st, sizeof st) == 0, "%s", sp_last_error());
    int rc;
    do
        rc = lt_drain(one, NULL, r, UINT64_MAX, 60000);
    while (rc == SP_EEPOCH);
    ck_assert_msg(rc == SP_EDONE, "%d %s", rc, sp_loader_errmsg(one));
    ck_assert_int_eq(sp_loader_close(one), 0);
}

START_TEST(mix_resume_elastic)
{
    const char *local[3] = { g_a.dir, g_b.dir, g_c.dir }, *remote[3] = { g_a.dir, g_url_b, g_url_c };
    const double w[3] = { 0.2, 0.5, 0.3 };
    lt_rec a = { 0 }, b = { 0 };
    char why[128];
    elastic(local, w, 3, &a);
    elastic(remote, w, 3, &b);
    ck_assert_msg(a.nb > 12, "%zu batches", a.nb);
    ck_assert_msg(rt_same(&a, &b, why, sizeof why), "%s", why);
    lt_rec_free(&a);
    lt_rec_free(&b);
}
END_TEST

/* The cache serves a mixture's remote sources: a second run fetches no block bytes. */
START_TEST(mix_cache)
{
    const char *local[3] = { g_a.dir, g_b.dir, g_c.dir }, *remote[3] = { g_a.dir, g_url_b, g_url_c };
    const double w[3] = { 0.5, 0.3, 0.2 };
    char *dir = tu_join(g_a.root, "cache");
    const char *kv[] = { "epochs", "2", "batch_size", "7", "cache_dir", dir, "cache_size", "64M", NULL };
    expect_same_mix(local, remote, w, 3, kv);
    lt_rec r = { 0 }, ref = { 0 };
    char msg[SP_ERRMSG_MAX], why[128];
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(mix_run(local, w, 3, kv, &ref, msg, sizeof msg, NULL), SP_EDONE);
    int rc = mix_run(remote, w, 3, kv, &r, msg, sizeof msg, &st);
    ck_assert_msg(rc == SP_EDONE, "%d %s", rc, msg);
    ck_assert_msg(rt_same(&ref, &r, why, sizeof why), "%s", why);
    ck_assert_msg(st.remote_bytes == 0 && st.cache_hits > 0, "warm cache: %llu bytes fetched, %llu hits",
                  (unsigned long long)st.remote_bytes, (unsigned long long)st.cache_hits);
    lt_rec_free(&r);
    lt_rec_free(&ref);
    free(dir);
}
END_TEST

/* A local and a remote source whose epoch holds many more blocks than the read ring (2.4 MB a source,
 * a ring sized for 16 transfers of 64 KiB): regions are taken in the plan's order for local blocks
 * too, so the blocks fetched ahead never leave a local block waiting for space they hold (before:
 * the reader waited for ring space for good, the workers idle). */
START_TEST(mix_ring_smaller_than_epoch)
{
    const char *local[2] = { g_e.dir, g_e.dir }, *remote[2] = { g_e.dir, g_url_e }, *swapped[2] = { g_url_e, g_e.dir };
    const double w[2] = { 1, 1 };
    const char *kv[] = { "epochs", "2", "batch_size", "16", "remote_part_size", "64K", NULL };
    expect_same_mix(local, remote, w, 2, kv);
    expect_same_mix(local, swapped, w, 2, kv);
}
END_TEST

/* A remote source of many shards in a mixture: the open and the first batch make no request per
 * shard (each shard's index is fetched when the reader first needs it), and the mixture delivers
 * what its local copies do. */
START_TEST(mix_lazy_indexes)
{
    const char *local[2] = { g_f.dir, g_e.dir }, *remote[2] = { g_f.dir, g_url_e };
    const double w[2] = { 1, 2 };
    /* little read-ahead, so that what the first batch needs is what is counted */
    const char *few[] = { "batch_size", "4", "shuffle_window", "4", "remote_inflight", "2", "remote_part_size", "64K",
                          "prefetch", "1", NULL };
    const char *kv[] = { "epochs", "2", "batch_size", "4", NULL };
    size_t before = rt_requests(g_nginx);
    sp_loader *l = NULL;
    ck_assert_msg(open_mix(remote, w, 2, &l, few) == 0, "%s", sp_last_error());
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_drain(l, NULL, &r, 1, 60000), 0);
    size_t n = rt_requests(g_nginx) - before;
    fprintf(stderr, "mix_lazy_indexes: %zu requests to the first batch\n", n);
    ck_assert_msg(n >= 2 && n <= NSHARDS_E / 2, "%zu requests to the first batch over %u remote shards", n, NSHARDS_E);
    sp_loader_close(l);
    lt_rec_free(&r);
    expect_same_mix(local, remote, w, 2, kv);
    /* every remote shard in the epoch: hundreds of single-block GETs queued beside local reads */
    const char *all[] = { "epochs", "2", "batch_size", "4", "mix_epoch_samples", "900", NULL };
    expect_same_mix(local, remote, w, 2, all);
}
END_TEST

/* A local source's shard index damaged, beside a remote source, both lazy (1.1 manifests): the
 * open succeeds; the index is read when its shard is first needed, on the reader thread between
 * GETs, and fails the batch naming the shard and "index" after the batches of the same mixture of
 * local copies (on_error=fail), or its sample is skipped as there (skip). */
START_TEST(mix_local_index_damaged)
{
    lt_ds c;
    ck_assert_int_eq(lt_clone(&g_f, &c, "mix-f-dmg"), 0);
    char *victim = tu_join(c.dir, "shard-000050.sps");
    tu_xor_byte(victim, tu_file_size(victim) - 64 - 20, 0x20); /* inside the index, before the trailer */
    const char *local[2] = { c.dir, g_e.dir }, *remote[2] = { c.dir, g_url_e };
    const double w[2] = { 1, 2 };
    lt_rec a = { 0 }, b = { 0 };
    char la[SP_ERRMSG_MAX], lb[SP_ERRMSG_MAX], why[128];
    const char *fail[] = { "epochs", "1", "batch_size", "4", "on_error", "fail", NULL };
    int ra = mix_run(local, w, 2, fail, &a, la, sizeof la, NULL);
    int rb = mix_run(remote, w, 2, fail, &b, lb, sizeof lb, NULL);
    ck_assert_msg(ra == SP_ECHECKSUM && rb == SP_ECHECKSUM, "local %d %s; remote %d %s", ra, la, rb, lb);
    ck_assert_msg(strstr(lb, victim) && strstr(lb, "index"), "%s", lb);
    ck_assert_msg(rt_same(&a, &b, why, sizeof why), "before the failure: %s", why);
    lt_rec_free(&a);
    lt_rec_free(&b);
    const char *skip[] = { "epochs", "2", "batch_size", "4", "on_error", "skip", NULL };
    sp_loader_stats st = { .struct_size = sizeof st };
    ra = mix_run(local, w, 2, skip, &a, la, sizeof la, NULL);
    rb = mix_run(remote, w, 2, skip, &b, lb, sizeof lb, &st);
    ck_assert_msg(ra == SP_EDONE && rb == SP_EDONE, "local %d %s; remote %d %s", ra, la, rb, lb);
    ck_assert_uint_eq(b.filled, 2); /* its one sample, each epoch */
    ck_assert_msg(strstr(st.bad_note, victim), "%s", st.bad_note);
    ck_assert_msg(rt_same(&a, &b, why, sizeof why), "%s", why);
    lt_rec_free(&a);
    lt_rec_free(&b);
    free(victim);
    lt_ds_free(&c);
}
END_TEST

/* `shardpack bench URL:0.5 DIR:0.5`, and with the URL second: the report says the reads were
 * remote either way (it looked at the first source only). */
START_TEST(mix_cli)
{
    for (int second = 0; second < 2; second++) {
        char cmd[16384];
        snprintf(cmd, sizeof cmd, "'%s' bench '%s:0.5' '%s:0.5' --epochs 1 --batch-size 8 --json > '%s/bench.json'",
                 rt_env("SHARDPACK_CLI"), second ? g_a.dir : g_url_b, second ? g_url_b : g_a.dir, g_a.root);
        ck_assert_msg(system(cmd) == 0, "%s", cmd);
        char *path = tu_join(g_a.root, "bench.json");
        size_t n;
        uint8_t *out = tu_read_file(path, &n); /* not NUL-terminated */
        ck_assert_ptr_nonnull(out);
        ck_assert_msg(memmem(out, n, "\"source_samples\"", 16), "%.*s", (int)n, (const char *)out);
        const char *io = "\"io\":\"remote\",\"remote_scheme\":\"http\"";
        ck_assert_msg(memmem(out, n, io, strlen(io)), "URL %s: %.*s", second ? "second" : "first", (int)n,
                      (const char *)out);
        free(out);
        free(path);
    }
}
END_TEST

/* The servers stopped, the datasets removed. */
static void stop_all(void)
{
    rt_stop(g_nginx);
    rt_stop(g_swift);
    lt_ds_free(&g_a);
    lt_ds_free(&g_b);
    lt_ds_free(&g_c);
    lt_ds_free(&g_d);
    lt_ds_free(&g_bad);
    lt_ds_free(&g_e);
    lt_ds_free(&g_f);
}

int main(void)
{
    uint64_t seed = tu_seed(16);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)(seed % 1000003));
    if (lt_make(&g_a, "mix-a", 700, 17, seed, "4K", "32K") || lt_make(&g_b, "mix-b", 500, 17, seed + 1, "4K", "32K") ||
        lt_make(&g_c, "mix-c", 600, 17, seed + 2, "4K", "32K") || lt_make(&g_d, "mix-d", 400, 17, seed + 3, "4K", "32K") ||
        lt_clone(&g_b, &g_bad, "mix-bad") ||
        /* 2000 tokens of 2 bytes: one sample fills a 4 KiB block, and a block an 8 KiB shard */
        lt_make(&g_e, "mix-e", NSHARDS_E, 2000, seed + 4, "4K", "8K") || lt_make(&g_f, "mix-f", 60, 2000, seed + 5, "4K", "8K"))
        return 1;
    /* a block of the damaged copy: one bit in shard 1's first block */
    char *shard = tu_join(g_bad.dir, "shard-000001.sps");
    tu_xor_byte(shard, 4096 + 10, 0x01);
    free(shard);
    /* nginx serves b (data), d and the damaged copy; Swift holds c */
    char *ld = tu_join(g_b.root, "d2"), *lbad = tu_join(g_b.root, "bad"), *le = tu_join(g_b.root, "e");
    int rc = symlink(g_d.dir, ld) || symlink(g_bad.dir, lbad) || symlink(g_e.dir, le) ? -1 : 0;
    free(ld);
    free(lbad);
    free(le);
    snprintf(g_nginx, sizeof g_nginx, "%s/servers", g_b.root);
    snprintf(g_swift, sizeof g_swift, "%s/servers", g_c.root);
    if (rc == 0)
        rc = rt_servers("nginx", "start", "--root", g_b.root, "--state", g_nginx, "--access-log", NULL);
    if (rc == 0)
        rc = rt_servers("s3", "start", "--state", g_swift, NULL);
    if (rc == 0)
        rc = rt_servers("s3", "mb", "--state", g_swift, "spbucket", NULL);
    if (rc == 0)
        rc = rt_servers("s3", "put-dir", "--state", g_swift, "--prefix", "c/", "spbucket", g_c.dir, NULL);
    if (rc) {
        stop_all();
        return rc == 77 ? 77 : 1;
    }
    const char *http = getenv("SP_TEST_HTTP_URL");
    snprintf(g_url_b, sizeof g_url_b, "%s/data", http);
    snprintf(g_url_d, sizeof g_url_d, "%s/d2", http);
    snprintf(g_url_bad, sizeof g_url_bad, "%s/bad", http);
    snprintf(g_url_e, sizeof g_url_e, "%s/e", http);
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("LOCAL_RANK");
    unsetenv("LOCAL_WORLD_SIZE");
    Suite *s = suite_create("remote_mix");
    TCase *tc = tcase_create("mix");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, mix_local_http_s3);
    tcase_add_test(tc, mix_two_http);
    tcase_add_test(tc, mix_missing_source);
    tcase_add_test(tc, mix_damaged_block);
    tcase_add_test(tc, mix_credentials_hidden);
    tcase_add_test(tc, mix_resume_elastic);
    tcase_add_test(tc, mix_cache);
    tcase_add_test(tc, mix_lazy_indexes);
    tcase_add_test(tc, mix_local_index_damaged);
    tcase_add_test(tc, mix_ring_smaller_than_epoch);
    tcase_add_test(tc, mix_cli);
    suite_add_tcase(s, tc);
    rc = tu_run(s, seed);
    stop_all();
    return rc;
}
