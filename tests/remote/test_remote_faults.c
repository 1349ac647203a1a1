/* test_remote_faults.c - the loader over HTTP through the fault proxy (tests/remote/faultproxy.py) in front of a real nginx: resets, stalls, 503 and 429 bursts and a body cut short once are retried and the run delivers the same batches as local disk; a body always cut short or announced with a wrong Content-Length ends, after the bounded tries, in an error naming the URL, the block and the answer; an object changed mid-run ends in SP_ECHANGED at once; on_error=skip skips what cannot be fetched; close returns at once while transfers stall; many GETs outstanding, across an epoch's end too; never a wrong batch, never a hang. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt_util.h"
#include "test_util.h"

static lt_ds g_ds;
static char g_state[4096], g_url[4200];
static lt_rec g_local;

/* The runs' remote_timeout: 1 s, so that stalls are cut short. */
static const char *g_timeout = "1";

/* A run through the proxy with quick retries; returns its end code, the message in msg. */
static int run(lt_rec *r, char *msg, size_t len, const char *retries, const char *on_error)
{
    return rt_run(&g_ds, g_url, r, msg, len, "shuffle", "false", "remote_retries", retries, "remote_timeout", g_timeout,
                  "remote_retry_time", "20", "on_error", on_error, NULL);
}

/* The faults a retry gets past: the run is the local one, batch for batch. */
static void expect_recovered(const char *json)
{
    rt_rules(json);
    lt_rec r = { 0 };
    char msg[SP_ERRMSG_MAX], why[128];
    double t0 = lt_now();
    int rc = run(&r, msg, sizeof msg, "8", "fail");
    ck_assert_msg(rc == SP_EDONE, "%s: %d %s", json, rc, msg);
    ck_assert_msg(r.bad == 0, "%s: %s", json, r.why);
    ck_assert_msg(rt_same(&g_local, &r, why, sizeof why), "%s: %s", json, why);
    ck_assert_msg(lt_now() - t0 < 60, "%s: %.1f s", json, lt_now() - t0);
    lt_rec_free(&r);
}

/* The faults that do not go away: code, with a message naming a shard's URL, the bytes and what. */
static void expect_error(const char *json, int code, const char *what)
{
    rt_rules(json);
    lt_rec r = { 0 };
    char msg[SP_ERRMSG_MAX];
    double t0 = lt_now();
    int rc = run(&r, msg, sizeof msg, "2", "fail");
    ck_assert_msg(rc == code, "%s: %d (%s) %s", json, rc, sp_error_name(rc), msg);
    /* a block read, or (when the retry of a shard's tail is what the rule hits first) the open */
    ck_assert_msg(strstr(msg, "/data/shard-") && strstr(msg, "bytes ") && strstr(msg, what), "%s: %s", json, msg);
    ck_assert_msg(r.bad == 0, "%s: a wrong batch: %s", json, r.why);
    ck_assert_msg(lt_now() - t0 < 60, "%s: %.1f s", json, lt_now() - t0);
    lt_rec_free(&r);
}

START_TEST(resets_retried)
{
    expect_recovered("[{\"fault\": \"reset\", \"match\": \".sps\", \"after_bytes\": 100, \"count\": 4}]");
    expect_recovered("[{\"fault\": \"reset\", \"match\": \".sps\", \"after_bytes\": 0, \"skip\": 3, \"count\": 2}]");
}
END_TEST

START_TEST(stalls_retried)
{
    /* longer than remote_timeout (1 s), before the answer and inside its body */
    expect_recovered("[{\"fault\": \"delay\", \"match\": \".sps\", \"seconds\": 4, \"skip\": 2, \"count\": 1}]");
    expect_recovered("[{\"fault\": \"delay\", \"match\": \".sps\", \"seconds\": 4, \"after_bytes\": 1000, "
                     "\"skip\": 5, \"count\": 1}]");
}
END_TEST

START_TEST(bursts_retried)
{
    expect_recovered("[{\"fault\": \"status\", \"code\": 503, \"count\": 5}]");
    expect_recovered("[{\"fault\": \"status\", \"code\": 429, \"retry_after\": 1, \"match\": \".sps\", \"skip\": 4, "
                     "\"count\": 3}]");
    expect_recovered("[{\"fault\": \"truncate\", \"match\": \".sps\", \"skip\": 2, \"count\": 1}]");
}
END_TEST

START_TEST(short_body_fails)
{
    expect_error("[{\"fault\": \"truncate\", \"match\": \"shard-000002\", \"skip\": 1, \"count\": -1}]", SP_EREMOTE,
                 "after 3 tries");
    expect_error("[{\"fault\": \"wrong_length\", \"delta\": -100, \"match\": \"shard-000002\", \"skip\": 1, "
                 "\"count\": -1}]", SP_EREMOTE, "after 3 tries");
    expect_error("[{\"fault\": \"wrong_length\", \"delta\": 100, \"match\": \"shard-000002\", \"skip\": 1, "
                 "\"count\": -1}]", SP_EREMOTE, "after 3 tries");
}
END_TEST

START_TEST(changed_object_fails)
{
    /* no stall here: a loaded machine must not cut shard 2's first GET (its index, now read when
     * the reader reaches the shard) short, or its retry would be the first answer seen, already
     * the changed object (a clear SP_EFORMAT then, but not the change this test is about) */
    g_timeout = "30";
    expect_error("[{\"fault\": \"changed\", \"match\": \"shard-000002\", \"skip\": 1, \"count\": -1}]", SP_ECHANGED,
                 "changed since it was opened");
    g_timeout = "1";
}
END_TEST

START_TEST(server_error_fails)
{
    expect_error("[{\"fault\": \"status\", \"code\": 500, \"match\": \"shard-000001\", \"skip\": 1, \"count\": -1}]",
                 SP_EREMOTE, "HTTP 500");
}
END_TEST

/* A server that never answers: the first try gives up after remote_timeout (4 s), the retries
 * within remote_retry_time (5 s) of that, each waiting no longer than the retries have left; the
 * run ends in SP_EREMOTE naming the URL about 9.3 s in (before, the last retry waited its whole
 * remote_timeout: about 12.3 s). */
START_TEST(retry_time_bounds_the_end)
{
    rt_rules("[{\"fault\": \"delay\", \"match\": \".sps\", \"seconds\": 100, \"count\": -1}]");
    lt_rec r = { 0 };
    char msg[SP_ERRMSG_MAX];
    double t0 = lt_now();
    int rc = rt_run(&g_ds, g_url, &r, msg, sizeof msg, "shuffle", "false", "remote_retries", "100", "remote_timeout",
                    "4", "remote_retry_time", "5", NULL);
    double took = lt_now() - t0;
    rt_rules("[]");
    ck_assert_msg(rc == SP_EREMOTE && strstr(msg, "/data/shard-") && strstr(msg, "tries in"), "%d (%s) %s", rc,
                  sp_error_name(rc), msg);
    ck_assert_msg(took < 4 + 5 + 1.8, "the run ended %.1f s in: past remote_timeout + remote_retry_time", took);
    ck_assert_uint_eq(r.bad, 0);
    lt_rec_free(&r);
}
END_TEST

START_TEST(on_error_skip)
{
    rt_rules("[{\"fault\": \"status\", \"code\": 503, \"match\": \"shard-000002\", \"skip\": 1, \"count\": -1}]");
    lt_rec r = { 0 };
    char msg[SP_ERRMSG_MAX];
    /* shuffled over wide windows, so that every batch has rows from other shards to fill with */
    int rc = rt_run(&g_ds, g_url, &r, msg, sizeof msg, "shuffle", "true", "shuffle_window", "64", "remote_retries",
                    "1", "remote_timeout", "1", "on_error", "skip", NULL);
    ck_assert_msg(rc == SP_EDONE, "%d %s", rc, msg);
    ck_assert_msg(r.bad == 0, "%s", r.why);
    ck_assert_uint_gt(r.filled, 0); /* the rows of shard 2's blocks, filled from their batches */
    ck_assert_uint_eq(r.ni, g_local.ni);
    lt_rec_free(&r);
}
END_TEST

/* A server that stops answering mid-run (every block read stalls for 60 s, longer than the test
 * lets anything take): next() times out as asked, and close returns at once, not after the
 * transfers' timeouts and retries. */
/* The run of close_while_stalled, with the transfers' parameters given (remote_threads and
 * remote_inflight). */
static void stalled_close(const char *threads, const char *inflight)
{
    /* after 3 requests (a shard index and the first blocks; the reader fetches ahead one 64 KiB
     * part at a time, so the rest of the dataset is still to come) */
    rt_rules("[{\"fault\": \"delay\", \"match\": \".sps\", \"seconds\": 60, \"skip\": 3, \"count\": -1}]");
    sp_loader *l;
    int rc = lt_open(g_url, &l, "shuffle", "false", "remote_timeout", "30", "prefetch", "1", "batch_size", "7",
                     "remote_inflight", inflight, "remote_threads", threads, "remote_part_size", "64K", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    lt_rec r = { 0 };
    rc = lt_drain(l, &g_ds, &r, UINT64_MAX, 2000);
    ck_assert_msg(rc == SP_ETIMEDOUT, "%d %s", rc, sp_loader_errmsg(l));
    ck_assert_uint_eq(r.bad, 0);
    double t0 = lt_now();
    sp_loader_close(l);
    ck_assert_msg(lt_now() - t0 < 3, "close took %.1f s", lt_now() - t0);
    lt_rec_free(&r);
}

START_TEST(close_while_stalled)
{
    stalled_close("0", "1");
}
END_TEST

/* The faults with the transfers split among three receive threads (16 transfers): resets and a 503
 * burst are retried by whichever thread drives the transfer and the batches are the local ones; an
 * error that stays ends the run naming the shard; a close while every answer stalls returns at
 * once (each thread ends its own transfers). */
START_TEST(faults_on_receive_threads)
{
    const char *rules[] = {
        "[{\"fault\": \"reset\", \"match\": \".sps\", \"after_bytes\": 100, \"count\": 4}]",
        "[{\"fault\": \"status\", \"code\": 503, \"match\": \".sps\", \"skip\": 2, \"count\": 5}]",
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        rt_rules(rules[i]);
        lt_rec r = { 0 };
        char msg[SP_ERRMSG_MAX], why[128];
        int rc = rt_run(&g_ds, g_url, &r, msg, sizeof msg, "shuffle", "false", "remote_retries", "8", "remote_timeout",
                        g_timeout, "remote_retry_time", "20", "remote_threads", "3", "remote_inflight", "16",
                        "remote_part_size", "64K", NULL);
        ck_assert_msg(rc == SP_EDONE, "%s: %d %s", rules[i], rc, msg);
        ck_assert_msg(r.bad == 0, "%s: %s", rules[i], r.why);
        ck_assert_msg(rt_same(&g_local, &r, why, sizeof why), "%s: %s", rules[i], why);
        lt_rec_free(&r);
    }
    rt_rules("[{\"fault\": \"status\", \"code\": 500, \"match\": \".sps\", \"skip\": 2, \"count\": -1}]");
    lt_rec r = { 0 };
    char msg[SP_ERRMSG_MAX];
    int rc = rt_run(&g_ds, g_url, &r, msg, sizeof msg, "shuffle", "false", "remote_retries", "2", "remote_timeout",
                    g_timeout, "remote_retry_time", "20", "remote_threads", "3", "remote_inflight", "16",
                    "remote_part_size", "64K", NULL);
    ck_assert_msg(rc == SP_EREMOTE && strstr(msg, "/data/shard-") && strstr(msg, "HTTP 500"), "%d %s", rc, msg);
    ck_assert_msg(r.bad == 0, "a wrong batch: %s", r.why);
    lt_rec_free(&r);

    stalled_close("3", "16");
}
END_TEST

/* Many ranged GETs outstanding at once: with every answer held up 0.3 s and two transfers, the
 * reader queues the blocks of the windows ahead (its read ring aims at 16 parts, or remote_inflight
 * x remote_part_size when that is more), not only those of the two windows being decoded (at most
 * 2 blocks and 4 shard indexes here before it fetched ahead); the batches stay the same. */
START_TEST(many_in_flight)
{
    rt_rules("[{\"fault\": \"delay\", \"match\": \".sps\", \"seconds\": 0.3, \"count\": -1}]");
    sp_loader *l;
    int rc = lt_open(g_url, &l, "shuffle_window", "1", "remote_inflight", "2", "batch_size", "7", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    lt_rec r = { 0 };
    rc = lt_epoch(l, &g_ds, &r);
    ck_assert_msg(rc == SP_EEPOCH, "%d %s", rc, sp_loader_errmsg(l));
    ck_assert_msg(r.bad == 0, "%s", r.why);
    sp_loader_stats st = { sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_msg(st.remote_pending_peak >= 12 && st.remote_requests >= st.remote_pending_peak,
                  "%llu requests, at most %llu outstanding", (unsigned long long)st.remote_requests,
                  (unsigned long long)st.remote_pending_peak);
    sp_loader_close(l);
    lt_rec_free(&r);
}
END_TEST

/* Fetching ahead goes on across an epoch's end: once every block of this epoch is queued and the
 * next epoch's plan slot is free, the next epoch is planned early and its blocks are queued too, so
 * that the link does not stand idle while the consumer finishes the epoch. With every answer held
 * up 0.2 s, more blocks are outstanding at once than one epoch has (before: at most one epoch's
 * blocks and its shard indexes); both epochs deliver every row right. */
START_TEST(ahead_across_epochs)
{
    rt_rules("[{\"fault\": \"delay\", \"match\": \".sps\", \"seconds\": 0.2, \"count\": -1}]");
    sp_loader *l;
    int rc = lt_open(g_url, &l, "shuffle_window", "1", "remote_inflight", "16", "batch_size", "7", "epochs", "2", NULL);
    ck_assert_msg(rc == 0, "%s", sp_last_error());
    for (int e = 0; e < 2; e++) {
        lt_rec r = { 0 };
        rc = lt_epoch(l, &g_ds, &r);
        ck_assert_msg(rc == SP_EEPOCH, "epoch %d: %d %s", e, rc, sp_loader_errmsg(l));
        ck_assert_msg(r.bad == 0, "epoch %d: %s", e, r.why);
        lt_rec_free(&r);
    }
    sp_loader_stats st = { sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_msg(st.remote_pending_peak > g_ds.blocks + g_ds.shards,
                  "at most %llu outstanding for %llu blocks an epoch in %llu shards (%llu requests)",
                  (unsigned long long)st.remote_pending_peak, (unsigned long long)g_ds.blocks,
                  (unsigned long long)g_ds.shards, (unsigned long long)st.remote_requests);
    sp_loader_close(l);
}
END_TEST

int main(void)
{
    uint64_t seed = tu_seed(16);
    if (lt_make(&g_ds, "remote-faults", 1500, 17, seed, "4K", "32K"))
        return 1;
    int rc = rt_nginx_proxied(g_ds.root, g_state, sizeof g_state);
    if (rc) {
        lt_ds_free(&g_ds);
        return rc == 77 ? 77 : 1;
    }
    snprintf(g_url, sizeof g_url, "%s/data", getenv("SP_TEST_PROXY_URL"));
    char msg[SP_ERRMSG_MAX];
    rc = rt_run(&g_ds, g_ds.dir, &g_local, msg, sizeof msg, "shuffle", "false", NULL);
    if (rc != SP_EDONE) {
        fprintf(stderr, "local run: %s\n", msg);
        rt_stop(g_state);
        return 1;
    }
    Suite *s = suite_create("remote_faults");
    TCase *tc = tcase_create("faults");
    tcase_set_timeout(tc, 200);
    tcase_add_test(tc, resets_retried);
    tcase_add_test(tc, stalls_retried);
    tcase_add_test(tc, bursts_retried);
    tcase_add_test(tc, short_body_fails);
    tcase_add_test(tc, changed_object_fails);
    tcase_add_test(tc, server_error_fails);
    tcase_add_test(tc, on_error_skip);
    tcase_add_test(tc, retry_time_bounds_the_end);
    tcase_add_test(tc, close_while_stalled);
    tcase_add_test(tc, faults_on_receive_threads);
    tcase_add_test(tc, many_in_flight);
    tcase_add_test(tc, ahead_across_epochs);
    suite_add_tcase(s, tc);
    rc = tu_run(s, seed);
    rt_stop(g_state);
    lt_rec_free(&g_local);
    lt_ds_free(&g_ds);
    return rc;
}
