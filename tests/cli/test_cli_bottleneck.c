/* test_cli_bottleneck.c - `shardpack bench` names what bounded the run, and each verdict is reachable: a slow training step (--step-ms) is consumer-bound, a slow decode (sim_sample_us) decode-bound, a slow disk (sim_read_us) read-bound, 64 workers on a budget with room for a few blocks memory-bound; the threads note is printed. Costs are sleeps, so the verdicts do not depend on the machine's speed. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clit_util.h"
#include "shardpack.h"

#define T 32
#define NTOK (T * 600 + 1) /* 600 samples of T+1 tokens, about 60 to a 4 KiB block */

static char *tmp, *ds;

static uint32_t hashed(uint32_t k, uint32_t unused)
{
    (void)unused;
    return (k * 2654435761u) >> 17;
}

static void setup(void)
{
    tmp = clit_tmpdir();
    ds = clit_pack_llmc(tmp, 2, NTOK, hashed, "32");
}

static void teardown(void)
{
    clit_rmrf(tmp);
    free(tmp);
    free(ds);
}

/* Runs bench with the extra arguments (NULL-terminated, at most 8) and checks its verdict. */
static void expect(const char *kind, const char *a1, const char *a2, const char *a3, const char *a4, const char *a5,
                   const char *a6)
{
    clit_result r = clit_run("bench", ds, "--json", "--quiet", "--batch-size", "8", a1, a2, a3, a4, a5, a6, NULL);
    ck_assert_msg(r.status == 0, "bench: %s", r.err);
    ck_assert_msg(clit_json_valid(r.out), "invalid JSON: %s", r.out);
    char want[64];
    snprintf(want, sizeof want, "\"bottleneck\":\"%s\"", kind);
    ck_assert_msg(strstr(r.out, want), "expected %s-bound: %s", kind, r.out);
    snprintf(want, sizeof want, "\"bottleneck_note\":\"%s-bound: ", kind);
    ck_assert_msg(strstr(r.out, want), "the note names it first: %s", r.out);
    ck_assert_msg(clit_json_has_key(r.out, "threads_note"), "%s", r.out);
    clit_result_free(&r);
}

/* The training step is the limit: 20 ms a batch, tokens cost nothing to decode. */
START_TEST(test_consumer)
{
    expect("consumer", "--threads", "2", "--epochs", "1", "--step-ms", "20");
}
END_TEST

/* Every sample takes 2 ms of a worker's time. */
START_TEST(test_decode)
{
    expect("decode", "--threads", "2", "--epochs", "1", "--sim-sample-us", "2000");
}
END_TEST

/* Every block read takes 20 ms of the reader's. */
START_TEST(test_read)
{
    expect("read", "--threads", "2", "--epochs", "2", "--sim-read-us", "20000");
}
END_TEST

/* The smallest budget that opens, with one block a window: two blocks (about 120 samples) are read
 * ahead at most, and 256 slow workers wait for more (splitting a block among workers cannot help). */
START_TEST(test_memory)
{
    clit_result r = clit_run("bench", ds, "--threads", "256", "--batch-size", "8", "--shuffle-window", "1",
                             "--host-memory", "4K", NULL);
    ck_assert_int_ne(r.status, 0);
    const char *at = strstr(r.err, "need at least ");
    ck_assert_msg(at, "%s", r.err);
    double v;
    char unit[8];
    ck_assert_msg(sscanf(at, "need at least %lf %7s", &v, unit) == 2, "%s", r.err);
    double scale = strcmp(unit, "MiB") == 0 ? 1024.0 * 1024 : strcmp(unit, "KiB") == 0 ? 1024.0 : 1.0;
    char budget[32];
    snprintf(budget, sizeof budget, "%.0fK", (v + 0.1) * scale / 1024 + 1); /* the message rounds to 0.1 */
    clit_result_free(&r);
    r = clit_run("bench", ds, "--json", "--quiet", "--batch-size", "8", "--threads", "256", "--shuffle-window", "1",
                 "--host-memory", budget, "--sim-sample-us", "2000", NULL);
    ck_assert_msg(r.status == 0, "bench: %s", r.err);
    ck_assert_msg(strstr(r.out, "\"bottleneck\":\"memory\""), "expected memory-bound: %s", r.out);
    ck_assert_msg(strstr(r.out, "\"bottleneck_note\":\"memory-bound: "), "%s", r.out);
    clit_result_free(&r);
}
END_TEST

/* The summary prints the verdict and, for threads=0, how the worker count was derived. */
START_TEST(test_summary_line)
{
    clit_result r = clit_run("bench", ds, "--quiet", "--epochs", "1", "--batch-size", "8", "--threads", "0",
                             "--sim-sample-us", "500", NULL);
    ck_assert_msg(r.status == 0, "bench: %s", r.err);
    ck_assert_msg(strstr(r.out, "  bottleneck ") && strstr(r.out, "-bound: "), "%s", r.out);
    ck_assert_msg(strstr(r.out, "  threads    "), "threads=0 prints its note: %s", r.out);
    clit_result_free(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bottleneck");
    TCase *tc = tcase_create("bottleneck");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_consumer);
    tcase_add_test(tc, test_decode);
    tcase_add_test(tc, test_read);
    tcase_add_test(tc, test_memory);
    tcase_add_test(tc, test_summary_line);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
