/* test_cli_llmc_example.c - llmc-example: inputs/targets content, interrupted+resumed run equals an
 * uninterrupted one (across an epoch's end), two ranks see disjoint samples. */
#include <check.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clit_util.h"
#include "shardpack.h"

#define T 16
#define NSAMPLES 500
#define NTOK (T * NSAMPLES + 1)

static char *tmp, *ds;

static uint32_t identity(uint32_t k, uint32_t unused)
{
    (void)unused;
    return k;
}

/* Token k of the stream is k (uint32 llm.c file), so sample s holds s*T .. s*T+T. */
static void setup(void)
{
    tmp = clit_tmpdir();
    ds = clit_pack_llmc(tmp, 4, NTOK, identity, "16");
}

static void teardown(void)
{
    clit_rmrf(tmp);
    free(tmp);
    free(ds);
}

/* Runs llmc-example with the NULL-terminated arguments (after the dataset) and env entries. */
static clit_result run_example(const char *const *env, const char *arg, ...)
{
    const char *bin = getenv("LLMC_EXAMPLE");
    ck_assert_msg(bin && *bin, "LLMC_EXAMPLE is not set");
    const char *argv[64];
    int argc = 0;
    argv[argc++] = bin;
    argv[argc++] = ds;
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a && argc < 63; a = va_arg(ap, const char *))
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    return clit_run_prog(bin, env, argv);
}

/* The step lines without their "step N " prefix (which counts from 0 in each run). */
static char *strip_steps(const char *out)
{
    char *res = calloc(1, strlen(out) + 1), *w = res;
    for (const char *p = out; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p + 1) : strlen(p);
        const char *e = strstr(p, " epoch ");
        ck_assert_msg(strncmp(p, "step ", 5) == 0 && e && e < p + len, "bad line: %.*s",
                      (int)len, p);
        memcpy(w, e + 1, len - (size_t)(e + 1 - p));
        w += len - (size_t)(e + 1 - p);
        p += len;
    }
    return res;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

START_TEST(test_content)
{
    /* Each row's inputs are T tokens of its sample and the targets the same shifted by one: the
     * checksums printed are those of the contiguous B x T int32 buffers built from the ids. */
    clit_result r = run_example(NULL, "-B", "4", "--steps", "6", "--ids", "-q", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_uint_eq(count_lines(r.out), 6);
    const char *p = r.out;
    for (int step = 0; step < 6; step++) {
        uint64_t epoch, batch, in_ck, tg_ck, ids[4];
        int used = 0;
        ck_assert_int_eq(sscanf(p, "step %*u epoch %" SCNu64 " batch %" SCNu64 " inputs %" SCNx64
                                   " targets %" SCNx64 " ids %" SCNu64 ",%" SCNu64 ",%" SCNu64
                                   ",%" SCNu64 "%n",
                                &epoch, &batch, &in_ck, &tg_ck, &ids[0], &ids[1], &ids[2],
                                &ids[3], &used),
                         8);
        ck_assert_uint_eq(batch, (uint64_t)step);
        int32_t in[4 * T], tg[4 * T];
        for (int row = 0; row < 4; row++) {
            ck_assert_uint_lt(ids[row], NSAMPLES);
            for (int t = 0; t < T; t++) {
                in[row * T + t] = (int32_t)(ids[row] * T + (uint64_t)t);
                tg[row * T + t] = (int32_t)(ids[row] * T + (uint64_t)t + 1);
            }
        }
        ck_assert_uint_eq(in_ck, sp_checksum64(in, sizeof in));
        ck_assert_uint_eq(tg_ck, sp_checksum64(tg, sizeof tg));
        p = strchr(p, '\n') + 1;
    }
    clit_result_free(&r);
}
END_TEST

START_TEST(test_resume)
{
    /* 500 samples, B = 8, full batches only: 62 per epoch. 70 steps cross into epoch 1; the
     * interrupted run stops at 60 and the resumed one crosses the epoch's end itself. */
    char *state = clit_path("%s/state.bin", tmp);
    clit_result full = run_example(NULL, "-B", "8", "--steps", "70", "--seed", "7", "-q", NULL);
    ck_assert_msg(full.status == 0, "%s", full.err);
    ck_assert_uint_eq(count_lines(full.out), 70);
    ck_assert_msg(strstr(full.out, "epoch 1 batch 7 "), "%s", full.out);

    clit_result a = run_example(NULL, "-B", "8", "--steps", "60", "--seed", "7",
                                "--save-state", state, "-q", NULL);
    ck_assert_msg(a.status == 0, "%s", a.err);
    ck_assert(clit_exists(state));
    clit_result b = run_example(NULL, "-B", "8", "--steps", "10", "--seed", "7", "--resume",
                                state, "-q", NULL);
    ck_assert_msg(b.status == 0, "%s", b.err);

    char *want = strip_steps(full.out), *got_a = strip_steps(a.out), *got_b = strip_steps(b.out);
    char *got = clit_path("%s%s", got_a, got_b);
    ck_assert_str_eq(got, want);
    free(want);
    free(got_a);
    free(got_b);
    free(got);
    clit_result_free(&a);
    clit_result_free(&b);

    /* A state saved at an epoch's end resumes into the next epoch. */
    a = run_example(NULL, "-B", "8", "--steps", "62", "--seed", "7", "--save-state", state, "-q",
                    NULL);
    ck_assert_int_eq(a.status, 0);
    b = run_example(NULL, "-B", "8", "--steps", "1", "--seed", "7", "--resume", state, "-q", NULL);
    ck_assert_int_eq(b.status, 0);
    const char *line62 = full.out;
    for (int i = 0; i < 62; i++)
        line62 = strchr(line62, '\n') + 1;
    ck_assert_msg(strncmp(strstr(b.out, " epoch "), strstr(line62, " epoch "),
                          strcspn(line62, "\n") - (size_t)(strstr(line62, " epoch ") - line62)) ==
                      0,
                  "%s vs %s", b.out, line62);
    clit_result_free(&a);
    clit_result_free(&b);
    clit_result_free(&full);

    /* A state of another configuration is refused, naming the difference. */
    b = run_example(NULL, "-B", "4", "--steps", "1", "--seed", "7", "--resume", state, NULL);
    ck_assert_int_eq(b.status, 1);
    ck_assert_msg(strstr(b.err, "batch size"), "%s", b.err);
    clit_result_free(&b);
    clit_write(state, "garbage", 7);
    b = run_example(NULL, "-B", "8", "--steps", "1", "--seed", "7", "--resume", state, NULL);
    ck_assert_int_eq(b.status, 1);
    clit_result_free(&b);
    free(state);
}
END_TEST

/* The ids of every row printed, appended to set (a bitmap over the samples); returns the count. */
static size_t collect_ids(const char *out, unsigned char *set, unsigned char *other)
{
    size_t n = 0;
    for (const char *p = strstr(out, " ids "); p; p = strstr(p, " ids ")) {
        p += 5;
        for (;;) {
            char *end;
            unsigned long v = strtoul(p, &end, 10);
            ck_assert_msg(end != p && v < NSAMPLES, "bad id at %.20s", p);
            ck_assert_msg(!set[v], "sample %lu delivered twice", v);
            ck_assert_msg(!other || !other[v], "sample %lu delivered to both ranks", v);
            set[v] = 1;
            n++;
            p = end;
            if (*p != ',')
                break;
            p++;
        }
    }
    return n;
}

START_TEST(test_two_ranks)
{
    const char *env0[] = {"RANK=0", "WORLD_SIZE=2", NULL};
    const char *env1[] = {"RANK=1", "WORLD_SIZE=2", NULL};
    clit_result r0 = run_example(env0, "-B", "8", "--epochs", "1", "--ids", "-q", NULL);
    clit_result r1 = run_example(env1, "-B", "8", "--epochs", "1", "--ids", "-q", NULL);
    ck_assert_msg(r0.status == 0, "%s", r0.err);
    ck_assert_msg(r1.status == 0, "%s", r1.err);
    unsigned char s0[NSAMPLES] = {0}, s1[NSAMPLES] = {0};
    size_t n0 = collect_ids(r0.out, s0, NULL), n1 = collect_ids(r1.out, s1, s0);
    /* Equal batch counts, whole batches, and at most one batch per rank (plus the rows that do
     * not fill a batch) left out. */
    ck_assert_uint_eq(count_lines(r0.out), count_lines(r1.out));
    ck_assert_uint_eq(n0, n1);
    ck_assert_uint_eq(n0 % 8, 0);
    ck_assert_msg(n0 + n1 > NSAMPLES - 2 * 8 - 16, "ranks cover only %zu of %d samples",
                  n0 + n1, NSAMPLES);
    /* The same through flags instead of the environment. */
    clit_result f1 = run_example(NULL, "-B", "8", "--epochs", "1", "--ids", "-q", "--rank", "1",
                                 "--world-size", "2", NULL);
    ck_assert_msg(f1.status == 0, "%s", f1.err);
    ck_assert_str_eq(f1.out, r1.out);
    clit_result_free(&f1);
    clit_result_free(&r0);
    clit_result_free(&r1);
}
END_TEST

START_TEST(test_errors)
{
    clit_result r = run_example(NULL, NULL); /* endless epochs without --steps */
    ck_assert_int_eq(r.status, 2);
    clit_result_free(&r);
    r = run_example(NULL, "--steps", "1", "-T", "8", NULL); /* the dataset has T = 16 */
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "16"), "%s", r.err);
    clit_result_free(&r);
    r = run_example(NULL, "--steps", "1", "-p", "shuffle_window=0", NULL);
    ck_assert_int_eq(r.status, 2);
    clit_result_free(&r);
    r = run_example(NULL, "--steps", "1", "--rank", "2", "--world-size", "2", NULL);
    ck_assert_int_eq(r.status, 1);
    clit_result_free(&r);
    r = run_example(NULL, "--bogus", NULL);
    ck_assert_int_eq(r.status, 2);
    clit_result_free(&r);
    r = run_example(NULL, "--help", NULL);
    ck_assert_int_eq(r.status, 0);
    clit_result_free(&r);
    /* Epochs that run out before the steps: stop cleanly after them. */
    r = run_example(NULL, "-B", "100", "--epochs", "2", "--steps", "50", "-q", NULL);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(count_lines(r.out), 10);
    clit_result_free(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli-llmc-example");
    TCase *tc = tcase_create("llmc-example");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_content);
    tcase_add_test(tc, test_resume);
    tcase_add_test(tc, test_two_ranks);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
