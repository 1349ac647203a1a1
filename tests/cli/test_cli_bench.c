/* test_cli_bench.c - `shardpack bench`: JSON keys and values on a packed llm.c dataset, loader
 * parameters as options, usage and data errors; the bottleneck it names, each verdict reached: a
 * slow training step (--step-ms) is consumer-bound, a slow decode (sim_sample_us) decode-bound, a
 * slow disk (sim_read_us) read-bound, 256 workers on the smallest budget with one block a window
 * memory-bound (costs are sleeps, so verdicts do not depend on the machine's speed); memory-bound
 * advice that names only what can add read-ahead. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clit_util.h"
#include "shardpack.h"

#define T 32
#define NTOK (T * 600 + 1) /* 600 samples of T+1 tokens */

static char *tmp, *ds;

/* Not constant, so blocks compress unevenly. */
static uint32_t hashed(uint32_t k, uint32_t unused)
{
    (void)unused;
    return (k * 2654435761u) >> 17;
}

/* An llm.c uint16 token file of NTOK tokens, packed with --seq-len T into small blocks. */
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

/* The number after "key": parsed as a double; NaN when absent. */
static double json_double(const char *s, const char *key)
{
    char *pat = clit_path("\"%s\":", key);
    const char *at = strstr(s, pat);
    size_t plen = strlen(pat);
    free(pat);
    if (!at)
        return NAN;
    char *end;
    double v = strtod(at + plen, &end);
    return end == at + plen ? NAN : v;
}

START_TEST(test_json)
{
    clit_result r = clit_run("bench", ds, "--epochs", "1", "--json", "--threads", "2",
                             "--batch-size", "8", "--io", "pread", "--no-direct-io", NULL);
    ck_assert_msg(r.status == 0, "bench: %s", r.err);
    ck_assert_msg(clit_json_valid(r.out), "invalid JSON: %s", r.out);
    ck_assert_uint_eq(r.err[0], 0); /* --json: nothing on stderr */
    const char *keys[] = {"samples_per_s", "bytes_per_s", "limit_ratio",
                          "single_thread_samples_per_s", "peak_rss_bytes", "host_memory_bytes",
                          "host_allocated_bytes", "stall_s", "io", "direct_io", "threads",
                          "batches", "samples", "epochs", "seconds", "io_note", "batch_size", "cpu_s"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        ck_assert_msg(clit_json_has_key(r.out, keys[i]), "no key '%s' in %s", keys[i], r.out);

    ck_assert_uint_eq(clit_json_u64(r.out, "samples"), 600);
    ck_assert_uint_eq(clit_json_u64(r.out, "batches"), 75);
    ck_assert_uint_eq(clit_json_u64(r.out, "epochs"), 1);
    ck_assert_uint_eq(clit_json_u64(r.out, "threads"), 2);
    ck_assert_uint_eq(clit_json_u64(r.out, "batch_size"), 8);
    ck_assert_msg(strstr(r.out, "\"io\":\"pread\"") != NULL, "%s", r.out);
    ck_assert_msg(strstr(r.out, "\"direct_io\":false") != NULL, "%s", r.out);
    ck_assert_msg(json_double(r.out, "limit_ratio") > 0, "%s", r.out);
    ck_assert_msg(json_double(r.out, "samples_per_s") > 0, "%s", r.out);
    ck_assert_msg(json_double(r.out, "single_thread_samples_per_s") > 0, "%s", r.out);
    ck_assert_msg(json_double(r.out, "seconds") > 0, "%s", r.out);
    ck_assert_msg(json_double(r.out, "stall_s") >= 0, "%s", r.out);
    /* the process's CPU from the loader's open: some, and no more than its threads could use */
    double cpu = json_double(r.out, "cpu_s");
    ck_assert_msg(cpu > 0 && cpu < (json_double(r.out, "seconds") + 10) * 4, "%s", r.out);
    /* Batch bytes: 600 rows of T+1 uint16 tokens. */
    double bps = json_double(r.out, "bytes_per_s"), sec = json_double(r.out, "seconds");
    ck_assert_msg(bps * sec > 600 * (T + 1) * 2 * 0.99 && bps * sec < 600 * (T + 1) * 2 * 1.01,
                  "%s", r.out);
    uint64_t rss = clit_json_u64(r.out, "peak_rss_bytes");
    ck_assert_msg(rss > 0 && rss != UINT64_MAX, "%s", r.out);
    uint64_t budget = clit_json_u64(r.out, "host_memory_bytes");
    uint64_t alloc = clit_json_u64(r.out, "host_allocated_bytes");
    ck_assert_msg(alloc > 0 && alloc <= budget, "%s", r.out);
    clit_result_free(&r);

    /* Two ranks: equal sample counts; with what each drops to stay equal, they cover the data. */
    uint64_t total = 0, first = 0;
    for (int rank = 0; rank < 2; rank++) {
        const char *rk = rank ? "1" : "0";
        r = clit_run("bench", ds, "--epochs=2", "--json", "--token-dtype", "int32",
                     "--world-size", "2", "--rank", rk, "--batch-size", "10", "--host-memory",
                     "8M", NULL);
        ck_assert_msg(r.status == 0, "bench: %s", r.err);
        ck_assert_uint_eq(clit_json_u64(r.out, "epochs"), 2);
        ck_assert_uint_eq(clit_json_u64(r.out, "host_memory_bytes"), 8u << 20);
        uint64_t n = clit_json_u64(r.out, "samples");
        if (rank == 0)
            first = n;
        ck_assert_uint_eq(n, first);
        total += n + 2 * clit_json_u64(r.out, "samples_dropped_per_epoch");
        /* int32 tokens: 4 bytes a token in the batches. */
        double bytes = json_double(r.out, "bytes_per_s") * json_double(r.out, "seconds");
        ck_assert_msg(bytes > (double)n * (T + 1) * 4 * 0.99 &&
                          bytes < (double)n * (T + 1) * 4 * 1.01,
                      "%s", r.out);
        clit_result_free(&r);
    }
    ck_assert_uint_eq(total, 2 * 600);

    /* rank_pad: 600 samples in 7 partitions of 86, the 2 short ones repeating a sample each. */
    r = clit_run("bench", ds, "--epochs=1", "--json", "--partitions", "7", "--batch-size", "7", "--rank-pad",
                 "true", "--host-memory", "8M", NULL);
    ck_assert_msg(r.status == 0, "bench: %s", r.err);
    ck_assert_uint_eq(clit_json_u64(r.out, "samples"), 7 * 86);
    ck_assert_uint_eq(clit_json_u64(r.out, "samples_dropped_per_epoch"), 0);
    ck_assert_uint_eq(clit_json_u64(r.out, "samples_padded_per_epoch"), 2);
    ck_assert_uint_eq(clit_json_u64(r.out, "samples_padded"), 2);
    clit_result_free(&r);
    r = clit_run("bench", ds, "--epochs=1", "--partitions", "7", "--batch-size", "7", "--rank-pad", "true",
                 "--host-memory", "8M", NULL);
    ck_assert_msg(r.status == 0 && strstr(r.out, "2 rows per epoch repeat a sample (rank_pad), 2 delivered"),
                  "%s", r.out);
    clit_result_free(&r);
}
END_TEST

START_TEST(test_summary)
{
    /* No --epochs: whole epochs until 2 s have passed. */
    clit_result r = clit_run("bench", ds, "--threads", "1", NULL);
    ck_assert_msg(r.status == 0, "bench: %s", r.err);
    const char *words[] = {"samples/s", "of the limit", "peak RSS", "host_memory", "stall",
                           "batch tensors", "1 thread"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        ck_assert_msg(strstr(r.out, words[i]) != NULL, "no '%s' in %s", words[i], r.out);
    ck_assert_msg(strstr(r.out, "io_uring") || strstr(r.out, "pread"), "%s", r.out);
    clit_result_free(&r);
    /* Under MPICH's mpiexec: the ranks line names the variables, and the threads line their share. */
    const char *env[] = { "PMI_RANK=1", "PMI_SIZE=2", "MPI_LOCALRANKID=1", "MPI_LOCALNRANKS=2", NULL };
    const char *argv[] = { "shardpack", "bench", ds, "--epochs", "1", NULL };
    r = clit_run_prog(getenv("SHARDPACK_CLI"), env, argv);
    ck_assert_msg(r.status == 0, "bench under PMI: %s", r.err);
    ck_assert_msg(strstr(r.out, "ranks      rank 1 from PMI_RANK, world size 2 from PMI_SIZE; local rank 1 from "
                                "MPI_LOCALRANKID, local world size 2 from MPI_LOCALNRANKS"),
                  "%s", r.out);
    ck_assert_msg(strstr(r.out, "threads    ") && strstr(r.out, "shared by the local world size 2"), "%s", r.out);
    ck_assert_msg(strstr(r.out, "budget     host_memory an eighth of"), "%s", r.out);
    clit_result_free(&r);
}
END_TEST

/* bench A:0.7 B:0.3: one loader over both, the samples from each reported. */
START_TEST(test_mixture)
{
    char *dir = clit_path("%s/other", tmp);
    clit_mkdir(dir);
    char *other = clit_pack_llmc(dir, 2, T * 900 + 1, hashed, "32"); /* 900 samples */
    char *a = clit_path("%s:0.7", ds), *b = clit_path("%s:0.3", other);
    clit_result r = clit_run("bench", a, b, "--epochs", "1", "--json", "--batch-size", "10", NULL);
    ck_assert_msg(r.status == 0, "bench: %s", r.err);
    /* 600 samples of A at 0.7 run out first: M = 857.1, 0.3 M = 257 of B */
    const char *k = strstr(r.out, "\"source_samples\":[");
    ck_assert_msg(k != NULL, "%s", r.out);
    unsigned long s0, s1;
    ck_assert_int_eq(sscanf(k + strlen("\"source_samples\":["), "%lu,%lu", &s0, &s1), 2);
    ck_assert_uint_eq(s0, 600);
    ck_assert_uint_eq(s1, 257);
    clit_result_free(&r);
    /* an epoch of 2,000 samples: 1,400 of A (its 600 more than twice), 600 of B */
    r = clit_run("bench", a, b, "--epochs", "1", "--json", "--batch-size", "10", "--mix-epoch-samples", "2000", NULL);
    ck_assert_msg(r.status == 0, "bench: %s", r.err);
    k = strstr(r.out, "\"source_samples\":[");
    ck_assert_msg(k != NULL, "%s", r.out);
    ck_assert_int_eq(sscanf(k + strlen("\"source_samples\":["), "%lu,%lu", &s0, &s1), 2);
    ck_assert_uint_eq(s0, 1400);
    ck_assert_uint_eq(s1, 600);
    clit_result_free(&r);
    r = clit_run("bench", a, other, NULL);
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "PATH:WEIGHT"), "%s", r.err);
    clit_result_free(&r);
    /* a weight that is not a positive number is named as that, not as "one PATH only" */
    char *zero = clit_path("%s:0", ds);
    r = clit_run("bench", zero, b, NULL);
    ck_assert_msg(r.status == 2 && strstr(r.err, zero) && strstr(r.err, "the weight '0' is not a positive number"),
                  "%d %s", r.status, r.err);
    clit_result_free(&r);
    /* a missing second source: the message names the mixture, and the source that failed, not the
     * first source alone as if it were at fault */
    char *missing = clit_path("%s/nope:0.3", tmp);
    r = clit_run("bench", a, missing, "--epochs", "1", NULL);
    ck_assert_int_eq(r.status, 1);
    char *named = clit_path("%s + %s", a, missing);
    ck_assert_msg(strstr(r.err, named) && strstr(r.err, "/nope"), "%s", r.err);
    free(named);
    clit_result_free(&r);
    free(missing);
    free(zero);
    free(a);
    free(b);
    free(other);
    free(dir);
}
END_TEST

START_TEST(test_errors)
{
    clit_result r = clit_run("bench", NULL);
    ck_assert_int_eq(r.status, 2);
    clit_result_free(&r);
    r = clit_run("bench", ds, "--epochs", "0", NULL);
    ck_assert_int_eq(r.status, 2);
    clit_result_free(&r);
    r = clit_run("bench", ds, "--batch-size", "0", NULL);
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "batch"), "%s", r.err);
    clit_result_free(&r);
    r = clit_run("bench", ds, "--level", "3", NULL); /* a writer parameter */
    ck_assert_int_eq(r.status, 2);
    clit_result_free(&r);
    r = clit_run("bench", ds, ds, NULL);
    ck_assert_int_eq(r.status, 2);
    clit_result_free(&r);

    char *missing = clit_path("%s/nope", tmp);
    r = clit_run("bench", missing, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strncmp(r.err, "shardpack: ", 11) == 0 && strstr(r.err, "nope"), "%s", r.err);
    clit_result_free(&r);
    free(missing);

    /* A budget below one window and two batches: refused with the minimum named. */
    r = clit_run("bench", ds, "--host-memory", "4K", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "shardpack: "), "%s", r.err);
    clit_result_free(&r);

    /* A damaged block: a data error naming the shard. */
    sp_dataset *d;
    ck_assert_int_eq(sp_dataset_open(ds, NULL, &d), 0);
    sp_block_info bi = { .struct_size = sizeof bi };
    ck_assert_int_eq(sp_dataset_block_info(d, 3, &bi), 0);
    sp_shard_info si = { .struct_size = sizeof si };
    ck_assert_int_eq(sp_dataset_shard_info(d, bi.shard, &si), 0);
    char *shard = clit_path("%s", si.path);
    sp_dataset_close(d);
    size_t len;
    unsigned char *bytes = clit_read(shard, &len);
    ck_assert(bytes && bi.offset + 8 < len);
    bytes[bi.offset + 8] ^= 0x5a;
    clit_write(shard, bytes, len);
    free(bytes);
    r = clit_run("bench", ds, "--epochs", "1", "--json", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "shard-") && strstr(r.err, "block"), "%s", r.err);
    ck_assert_uint_eq(r.out[0], 0);
    clit_result_free(&r);
    free(shard);
}
END_TEST

START_TEST(test_help_and_man)
{
    /* Every loader parameter of the library's table is an option of bench and is in the man page. */
    clit_result r = clit_run("bench", "--help", NULL);
    ck_assert_int_eq(r.status, 0);
    clit_result h = clit_run("help", NULL);
    ck_assert_msg(strstr(h.out, "bench"), "%s", h.out);
    clit_result_free(&h);
    const char *man_path = getenv("SHARDPACK_MAN");
    size_t len = 0;
    char *man = man_path && *man_path ? (char *)clit_read(man_path, &len) : NULL;
    if (man)
        ck_assert_msg(strstr(man, ".SS bench"), "shardpack.1 has no bench section");
    for (int k = 0; k < sp_param_count(); k++) {
        sp_param_info info = { .struct_size = sizeof info };
        ck_assert_int_eq(sp_param_describe(k, &info), 0);
        if (!(info.scope & SP_SCOPE_LOAD))
            continue;
        char opt[96], roff[128] = "\\-\\-";
        size_t i = 0, n = 4;
        for (; info.name[i]; i++) {
            opt[i] = info.name[i] == '_' ? '-' : info.name[i];
            if (info.name[i] == '_') {
                roff[n++] = '\\';
                roff[n++] = '-';
            } else {
                roff[n++] = info.name[i];
            }
        }
        opt[i] = 0;
        roff[n] = 0;
        char *want = clit_path("--%s", opt);
        ck_assert_msg(strstr(r.out, want) != NULL, "bench --help lacks %s", want);
        free(want);
        if (man)
            ck_assert_msg(strstr(man, roff) != NULL, "shardpack.1 does not document %s", roff);
    }
    free(man);
    clit_result_free(&r);
}
END_TEST

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

/* Memory-bound advice names only what can add read-ahead: on a budget far from used, never
 * host_memory; with a window spanning every block, never shuffle_window. The verdict itself
 * depends on timing: up to 5 runs, of which one at least must be memory-bound (this tiny dataset
 * of about 10 blocks always was, on 2 loaded cores). */
static void expect_advice(const char *window, const char *want, const char *never)
{
    int memory = 0;
    for (int i = 0; i < 5 && !memory; i++) {
        clit_result r = clit_run("bench", ds, "--json", "--quiet", "--batch-size", "8", "--threads", "2",
                                 "--shuffle-window", window, "--host-memory", "1G", NULL);
        ck_assert_msg(r.status == 0, "bench: %s", r.err);
        const char *note = strstr(r.out, "\"bottleneck_note\":\"");
        ck_assert_msg(note, "%s", r.out);
        if (strstr(r.out, "\"bottleneck\":\"memory\"")) {
            memory = 1;
            ck_assert_msg(strstr(note, want) && !strstr(note, never), "window %s: %s", window, note);
        }
        clit_result_free(&r);
    }
    ck_assert_msg(memory, "window %s: no run was memory-bound", window);
}

START_TEST(test_memory_advice)
{
    expect_advice("1", "raise shuffle_window (1 of the dataset's ", "raise host_memory");
    expect_advice("65536", "neither host_memory (", "raise");
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
    Suite *s = suite_create("cli-bench");
    TCase *tc = tcase_create("bench");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_json);
    tcase_add_test(tc, test_summary);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_mixture);
    tcase_add_test(tc, test_help_and_man);
    suite_add_tcase(s, tc);
    tc = tcase_create("bottleneck");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_consumer);
    tcase_add_test(tc, test_decode);
    tcase_add_test(tc, test_read);
    tcase_add_test(tc, test_memory);
    tcase_add_test(tc, test_memory_advice);
    tcase_add_test(tc, test_summary_line);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
