/* test_loader_memory.c - the host_memory budget: too small is refused naming the true minimum, the minimum itself streams, pools are reported and stay inside the budget, peak RSS stays near the budget however large the dataset, and read-ahead follows the read path (a window and two blocks through the page cache, two windows with O_DIRECT). */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lt_util.h"
#include "test_util.h"

#if defined(__SANITIZE_THREAD__)
#define LT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LT_TSAN 1
#endif
#endif

static uint64_t g_seed;
static lt_ds g_ds;

#define N_SAMPLES 3000

static int open_budget(const lt_ds *d, uint64_t budget, const char *threads, sp_loader **l)
{
    char b[32];
    snprintf(b, sizeof b, "%llu", (unsigned long long)budget);
    return lt_open(d->dir, l, "host_memory", b, "threads", threads, NULL);
}

/* "need at least 1.2 MiB" -> bytes; 0 when the message has no such phrase. */
static double parse_need(const char *msg)
{
    const char *p = strstr(msg, "need at least ");
    if (!p)
        return 0;
    double v;
    char unit[8];
    if (sscanf(p + 14, "%lf %7s", &v, unit) != 2)
        return 0;
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    for (int u = 0; u < 5; u++) {
        if (!strncmp(unit, units[u], strlen(units[u])) && (unit[strlen(units[u])] == '\0' || unit[strlen(units[u])] == ' '))
            return v * (double)(1ull << (10 * u));
    }
    return 0;
}

static void check_stats(sp_loader *l, uint64_t budget)
{
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_eq(st.host_memory_bytes, budget);
    ck_assert_msg(st.host_allocated_bytes <= st.host_memory_bytes, "allocated %llu > budget %llu",
                  (unsigned long long)st.host_allocated_bytes, (unsigned long long)st.host_memory_bytes);
    ck_assert_uint_gt(st.read_ring_bytes, 0);
    ck_assert_uint_gt(st.batch_ring_bytes, 0);
    ck_assert_uint_ge(st.batch_ring_slots, 2);
    ck_assert_uint_gt(st.scratch_bytes, 0); /* the blocks are zstd: workers need buffers */
    ck_assert_msg(st.read_ring_bytes + st.batch_ring_bytes + st.scratch_bytes <= st.host_allocated_bytes,
                  "pools %llu + %llu + %llu exceed the %llu bytes reported allocated",
                  (unsigned long long)st.read_ring_bytes, (unsigned long long)st.batch_ring_bytes,
                  (unsigned long long)st.scratch_bytes, (unsigned long long)st.host_allocated_bytes);
    ck_assert_uint_le(st.read_ring_peak, st.read_ring_bytes);
    ck_assert_uint_le(st.batch_ring_peak_slots, st.batch_ring_slots);
    ck_assert_uint_le(st.batches_ready, st.batch_ring_slots);
}

/* One epoch, checked, then the pools' peaks are checked against their sizes. */
static void stream_checked(sp_loader *l, uint64_t budget)
{
    check_stats(l, budget);
    lt_rec r = { 0 };
    int rc = lt_epoch(l, &g_ds, &r);
    ck_assert_msg(rc == SP_EEPOCH, "budget %llu: %s: %s", (unsigned long long)budget, sp_error_name(rc),
                  sp_last_error());
    ck_assert_msg(r.bad == 0, "%s", r.why);
    ck_assert_uint_eq(r.ni, N_SAMPLES);
    check_stats(l, budget);
    sp_loader_stats st = { .struct_size = sizeof st };
    sp_loader_stats_get(l, &st);
    ck_assert_uint_gt(st.read_ring_peak, 0);
    ck_assert_uint_gt(st.batch_ring_peak_slots, 0);
    ck_assert_uint_gt(st.bytes_read, 0);
    /* Every block decoded once: at least the samples' bytes (with O_DIRECT, bytes_read counts
     * whole pages, so it is not compared with them). */
    ck_assert_uint_ge(st.bytes_decompressed, (uint64_t)N_SAMPLES * (64 * 2 + 8 + 12));
    ck_assert_uint_eq(st.blocks_read, g_ds.blocks);
    lt_rec_free(&r);
}

START_TEST(minimum_is_named_and_works)
{
    sp_loader *l;
    int rc = open_budget(&g_ds, 64 * 1024, "2", &l);
    ck_assert_msg(rc == SP_ELIMIT, "64 KiB: %s", sp_error_name(rc));
    ck_assert_ptr_null(l);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", sp_last_error());
    ck_assert_msg(strstr(msg, "need at least"), "message: %s", msg);
    double named = parse_need(msg);
    ck_assert_msg(named > 64 * 1024, "cannot read the minimum from: %s", msg);

    /* The smallest budget that opens, by bisection, is the minimum the message names (it prints
     * one decimal: within 5%). */
    uint64_t lo = 64 * 1024, hi = 64ull << 20; /* lo refused, hi accepted */
    ck_assert_int_eq(open_budget(&g_ds, hi, "2", &l), 0);
    sp_loader_close(l);
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        rc = open_budget(&g_ds, mid, "2", &l);
        ck_assert_msg(rc == 0 || rc == SP_ELIMIT, "budget %llu: %s", (unsigned long long)mid, sp_error_name(rc));
        if (rc == 0) {
            hi = mid;
            sp_loader_close(l);
        } else {
            lo = mid;
            ck_assert_msg(strstr(sp_last_error(), "need at least"), "message: %s", sp_last_error());
        }
    }
    fprintf(stderr, "memory: minimum host_memory %llu bytes; message: %s\n", (unsigned long long)hi, msg);
    ck_assert_msg((double)hi >= named * 0.95 && (double)hi <= named * 1.05,
                  "the message names %.0f bytes, the true minimum is %llu", named, (unsigned long long)hi);

    /* The minimum streams a whole epoch, correctly, within itself. */
    ck_assert_int_eq(open_budget(&g_ds, hi, "2", &l), 0);
    stream_checked(l, hi);
    ck_assert_int_eq(sp_loader_close(l), 0);

    /* More threads need more: the same budget is now refused. */
    rc = open_budget(&g_ds, hi, "4", &l);
    ck_assert_msg(rc == SP_ELIMIT, "4 threads on the 2-thread minimum: %s", sp_error_name(rc));
}
END_TEST

START_TEST(pools_inside_budget)
{
    static const uint64_t budgets[] = { 1ull << 20, 3ull << 20, 16ull << 20, 256ull << 20 };
    for (size_t i = 0; i < sizeof budgets / sizeof budgets[0]; i++) {
        sp_loader *l;
        int rc = open_budget(&g_ds, budgets[i], "2", &l);
        ck_assert_msg(rc == 0, "budget %llu: %s", (unsigned long long)budgets[i], sp_last_error());
        stream_checked(l, budgets[i]);
        ck_assert_int_eq(sp_loader_close(l), 0);
    }
    /* The default budget follows the machine, capped at 2 GiB. */
    sp_loader *l;
    ck_assert_int_eq(lt_open(g_ds.dir, &l, "host_memory", "0", NULL), 0);
    sp_loader_stats st = { .struct_size = sizeof st };
    sp_loader_stats_get(l, &st);
    ck_assert_uint_gt(st.host_memory_bytes, 0);
    ck_assert_uint_le(st.host_memory_bytes, 2ull << 30);
    ck_assert_uint_le(st.host_allocated_bytes, st.host_memory_bytes);
    ck_assert_int_eq(sp_loader_close(l), 0);
    /* An explicit prefetch that does not fit is refused, naming it. */
    int rc = lt_open(g_ds.dir, &l, "host_memory", "1M", "prefetch", "4096", NULL);
    ck_assert_msg(rc == SP_ELIMIT, "prefetch 4096 in 1 MiB: %s", sp_error_name(rc));
    ck_assert_msg(strstr(sp_last_error(), "prefetch"), "message: %s", sp_last_error());
    /* One that fits gives that many extra slots. */
    ck_assert_int_eq(lt_open(g_ds.dir, &l, "host_memory", "64M", "prefetch", "3", NULL), 0);
    sp_loader_stats a = { .struct_size = sizeof a };
    sp_loader_stats_get(l, &a);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_int_eq(lt_open(g_ds.dir, &l, "host_memory", "64M", "prefetch", "7", NULL), 0);
    sp_loader_stats_get(l, &st);
    ck_assert_uint_eq(st.batch_ring_slots, a.batch_ring_slots + 4);
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_epoch(l, &g_ds, &r), SP_EEPOCH);
    ck_assert_uint_eq(r.bad, 0);
    lt_rec_free(&r);
    ck_assert_int_eq(sp_loader_close(l), 0);
}
END_TEST

/* sp_loader_stats_get may be called from any thread: a monitor polls while the consumer streams
 * three epochs (ThreadSanitizer checks the rest). */
typedef struct monitor {
    sp_loader *l;
    atomic_int stop;
    uint64_t polls, last_batches;
    int bad;
} monitor;

static void *monitor_main(void *arg)
{
    monitor *m = arg;
    while (!atomic_load(&m->stop)) {
        sp_loader_stats st = { .struct_size = sizeof st };
        if (sp_loader_stats_get(m->l, &st) || st.batches < m->last_batches ||
            st.host_allocated_bytes > st.host_memory_bytes || st.batches_ready > st.batch_ring_slots)
            m->bad++;
        m->last_batches = st.batches;
        m->polls++;
    }
    return NULL;
}

START_TEST(stats_from_another_thread)
{
    sp_loader *l;
    ck_assert_int_eq(lt_open(g_ds.dir, &l, "epochs", "3", "threads", "3", NULL), 0);
    monitor m = { .l = l };
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, monitor_main, &m), 0);
    uint64_t batches = 0;
    for (int e = 0; e < 3; e++) {
        lt_rec r = { 0 };
        ck_assert_int_eq(lt_epoch(l, &g_ds, &r), SP_EEPOCH);
        ck_assert_uint_eq(r.bad, 0);
        batches += r.nb;
        lt_rec_free(&r);
    }
    sp_batch *b;
    ck_assert_int_eq(sp_loader_next(l, &b, 1000), SP_EDONE);
    atomic_store(&m.stop, 1);
    pthread_join(t, NULL);
    ck_assert_msg(m.bad == 0, "%d inconsistent snapshots of %llu", m.bad, (unsigned long long)m.polls);
    sp_loader_stats st = { .struct_size = sizeof st };
    sp_loader_stats_get(l, &st);
    ck_assert_uint_eq(st.batches, batches);
    ck_assert_uint_eq(st.samples, 3 * N_SAMPLES);
    ck_assert_uint_eq(st.blocks_read, 3 * g_ds.blocks);
    ck_assert(st.elapsed_s > 0 && st.stall_s >= 0 && st.decode_busy_s > 0 && st.read_busy_s >= 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
}
END_TEST

/* ------------------------------------------------------------------------------ peak RSS */

/* Bytes the process has from malloc now (glibc: in use in the arenas, plus mmapped blocks). */
static uint64_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
}

/* Whether row r of b holds its sample's values: a label equal to the sample id, or (the "xy"
 * float32[2] dataset) the id and its negation. */
static bool row_values_ok(const sp_batch *b, uint32_t r)
{
    int f = sp_batch_find(b, "label");
    if (f >= 0)
        return (uint64_t)((const int64_t *)sp_batch_tensor(b, (size_t)f)->data)[r] == sp_batch_sample_id(b, r);
    const float *xy = sp_batch_tensor(b, (size_t)sp_batch_find(b, "xy"))->data;
    float id = (float)sp_batch_sample_id(b, r);
    return xy[2 * r] == id && xy[2 * r + 1] == -id;
}

/* The streaming child: a fresh process (exec'd), so its peak RSS is its own. Exit 0 when it
 * streamed every sample of every epoch with correct values, and the loader's open allocated no
 * more than it reports (1 MiB allowed for what the dataset itself holds). */
static int stream_child(const char *dir, const char *budget, const char *epochs, uint64_t n, const char *batch)
{
    const char *kv[] = { "host_memory", budget, "threads", "2", "epochs", epochs, "batch_size", batch, NULL };
    sp_params *p = lt_params_v(kv);
    sp_loader *l;
    uint64_t heap0 = heap_in_use();
    if (!p || sp_loader_open(dir, p, &l)) {
        fprintf(stderr, "rss child: open: %s\n", sp_last_error());
        return 2;
    }
    sp_params_destroy(p);
    uint64_t heap = heap_in_use() - heap0;
    sp_loader_stats st = { .struct_size = sizeof st };
    sp_loader_stats_get(l, &st);
    if (heap > st.host_allocated_bytes + (1u << 20)) {
        fprintf(stderr, "rss child: open allocated %llu bytes, stats count %llu\n", (unsigned long long)heap,
                (unsigned long long)st.host_allocated_bytes);
        return 6;
    }
    uint64_t got = 0, want = n * (uint64_t)atoi(epochs);
    for (;;) {
        sp_batch *b;
        int rc = sp_loader_next(l, &b, 60000);
        if (rc == SP_EEPOCH)
            continue;
        if (rc == SP_EDONE)
            break;
        if (rc) {
            fprintf(stderr, "rss child: next: %s\n", sp_last_error());
            return 3;
        }
        for (uint32_t r = 0; r < sp_batch_size(b); r++)
            if (!row_values_ok(b, r))
                return 4;
        got += sp_batch_size(b);
        sp_loader_release(l, b);
    }
    sp_loader_close(l);
    return got == want ? 0 : 5;
}

/* Runs the child on dir; returns its peak RSS in bytes. */
static uint64_t child_rss_batch(const char *dir, const char *budget, const char *epochs, uint64_t n, const char *batch)
{
    char ns[32];
    snprintf(ns, sizeof ns, "%llu", (unsigned long long)n);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_loader_memory", "--stream", dir, budget, epochs, ns, batch, (char *)NULL);
        _exit(127);
    }
    int status;
    struct rusage ru;
    ck_assert(wait4(pid, &status, 0, &ru) == pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "streaming child failed: status %d", status);
    return (uint64_t)ru.ru_maxrss * 1024;
}

/* Whether peak RSS means anything here; says why not when it does not. */
static bool rss_measurable(void)
{
    if (tu_asan()) {
        fprintf(stderr, "memory: peak RSS not measured under AddressSanitizer (shadow memory and quarantine)\n");
        return false;
    }
#ifdef LT_TSAN
    fprintf(stderr, "memory: peak RSS not measured under ThreadSanitizer (shadow memory)\n");
    return false;
#endif
    return true;
}

static uint64_t child_rss(const char *dir, const char *budget, const char *epochs, uint64_t n)
{
    return child_rss_batch(dir, budget, epochs, n, "64");
}

START_TEST(peak_rss_bounded)
{
    if (!rss_measurable())
        return;
    /* ~50 MB of raw samples (2 KiB each, 64 KiB blocks), streamed with a 4 MiB budget. */
    lt_ds big;
    const uint64_t n = 24000;
    ck_assert_int_eq(lt_make(&big, "memory-big", n, 1023, g_seed, "64K", "4M"), 0);
    const uint64_t budget = 4ull << 20, raw = n * (1023 * 2 + 8 + 12);
    ck_assert_uint_ge(raw, 10 * budget);
    uint64_t one = child_rss(big.dir, "4M", "1", n);
    uint64_t three = child_rss(big.dir, "4M", "3", n);
    fprintf(stderr, "memory: %.1f MiB of samples, budget 4 MiB: peak RSS %.1f MiB (1 epoch), %.1f MiB (3 epochs)\n",
            (double)raw / (1 << 20), (double)one / (1 << 20), (double)three / (1 << 20));
    ck_assert_msg(one < budget + (24ull << 20), "peak RSS %llu bytes with a 4 MiB budget", (unsigned long long)one);
    ck_assert_msg(three < budget + (24ull << 20), "peak RSS %llu bytes with a 4 MiB budget, 3 epochs",
                  (unsigned long long)three);
    /* Epochs do not add memory (2 MiB of allocator noise allowed). */
    ck_assert_msg(three < one + (2ull << 20), "RSS grows with epochs: %llu then %llu", (unsigned long long)one,
                  (unsigned long long)three);
    lt_ds_free(&big);
}
END_TEST

/* Many tiny rows, as `shardpack pack` makes of an .npy array of float32 pairs: a window of 8
 * blocks holds 262,144 rows, so the ring needs 16,000 batch slots of 32, and each slot's
 * descriptor (its DLTensors and shapes) is as large as its rows. Everything must still fit the
 * budget: the peak RSS of a child streaming it stays within host_memory and a fixed slack. */
static void make_pairs(const char *dir, uint32_t n)
{
    sp_schema *sc = sp_schema_create();
    const uint64_t shape[] = { 2 };
    ck_assert_int_eq(sp_schema_add(sc, "xy", SP_FIELD_TENSOR, SP_DTYPE_F32, 1, shape), 0);
    const char *kv[] = { "block_size", "256K", "shard_size", "64M", NULL };
    sp_params *p = lt_params_v(kv);
    sp_writer *w;
    ck_assert_int_eq(sp_writer_open(dir, sc, p, &w), 0);
    int rc = 0; /* no ck_assert per row: each writes to Check's pipe */
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        float xy[2] = { (float)i, -(float)i };
        sp_value v = { xy, sizeof xy };
        rc = sp_writer_add(w, &v, 1);
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(sp_writer_finish(w), 0);
    sp_writer_destroy(w);
    sp_params_destroy(p);
    sp_schema_destroy(sc);
}

START_TEST(tiny_rows_descriptors_counted)
{
    if (!rss_measurable())
        return;
    const uint32_t n = 1u << 18;
    char *root = tu_tmpdir("memory-pairs");
    char *dir = tu_join(root, "data");
    make_pairs(dir, n);
    const uint64_t budget = 24ull << 20;
    uint64_t rss = child_rss_batch(dir, "24M", "1", n, "32");
    fprintf(stderr, "memory: %u float32[2] rows, batch 32, budget 24 MiB: peak RSS %.1f MiB\n", n,
            (double)rss / (1 << 20));
    ck_assert_msg(rss < budget + (24ull << 20), "peak RSS %llu bytes with a 24 MiB budget", (unsigned long long)rss);
    tu_rmtree(root);
    free(dir);
    free(root);
}
END_TEST

/* One epoch's sample ids and the memory the loader took for it, with the given overrides. */
static uint64_t epoch_memory(lt_rec *r, const char *k1, const char *v1, const char *k2, const char *v2)
{
    sp_loader *l;
    int rc = lt_open(g_ds.dir, &l, "host_memory", "4G", "seed", "7", k1, v1, k2, v2, NULL);
    ck_assert_msg(rc == 0, "%s=%s %s=%s: %s", k1, v1, k2, v2, sp_last_error());
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_int_eq(lt_epoch(l, &g_ds, r), SP_EEPOCH);
    ck_assert_uint_eq(r->bad, 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    return st.host_allocated_bytes;
}

static void same_epoch(const lt_rec *a, const lt_rec *b)
{
    ck_assert_uint_eq(a->ni, b->ni);
    ck_assert_msg(!memcmp(a->ids, b->ids, a->ni * sizeof *a->ids), "the epoch's order changed");
}

/* A shuffle window beyond the rank's blocks, or a batch beyond its epoch, asks for no memory the
 * dataset cannot fill, and delivers the same epoch as the window of all blocks / the batch of all
 * samples. */
START_TEST(sized_by_dataset)
{
    char nb[32], ns[32];
    snprintf(nb, sizeof nb, "%llu", (unsigned long long)g_ds.blocks);
    snprintf(ns, sizeof ns, "%llu", (unsigned long long)g_ds.n);
    lt_rec huge = { 0 }, exact = { 0 };
    uint64_t m_huge = epoch_memory(&huge, "shuffle_window", "65536", "batch_size", "32");
    uint64_t m_exact = epoch_memory(&exact, "shuffle_window", nb, "batch_size", "32");
    same_epoch(&huge, &exact);
    ck_assert_msg(m_huge <= m_exact + 4096, "shuffle_window 65536 on %s blocks: %llu bytes, %llu for the window of all",
                  nb, (unsigned long long)m_huge, (unsigned long long)m_exact);
    lt_rec_free(&huge);
    lt_rec_free(&exact);
    m_huge = epoch_memory(&huge, "batch_size", "1048576", "shuffle_window", "4");
    m_exact = epoch_memory(&exact, "batch_size", ns, "shuffle_window", "4");
    same_epoch(&huge, &exact);
    ck_assert_uint_eq(huge.nb, 1);
    ck_assert_msg(m_huge <= m_exact + 4096, "batch_size 2^20 on %s samples: %llu bytes, %llu for the batch of all", ns,
                  (unsigned long long)m_huge, (unsigned long long)m_exact);
    lt_rec_free(&huge);
    lt_rec_free(&exact);
}
END_TEST

/* Read-ahead follows the read path: through the page cache a window of blocks and two more, with
 * O_DIRECT two windows (the parameter decides the size, whether or not the file system then takes
 * O_DIRECT); both epochs the same. */
START_TEST(read_ahead_follows_io)
{
    uint64_t ring[2];
    lt_rec rec[2] = { { 0 } };
    const char *direct[] = { "false", "true" };
    for (int d = 0; d < 2; d++) {
        sp_loader *l;
        ck_assert_int_eq(lt_open(g_ds.dir, &l, "shuffle_window", "8", "direct_io", direct[d], "host_memory", "256M",
                                 NULL), 0);
        sp_loader_stats st = { .struct_size = sizeof st };
        ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
        ring[d] = st.read_ring_bytes;
        ck_assert_int_eq(lt_epoch(l, &g_ds, &rec[d]), SP_EEPOCH);
        ck_assert_int_eq(sp_loader_close(l), 0);
    }
    /* (8 + 2) blocks against 2 x 8, each the largest stored block rounded to pages */
    ck_assert_msg(ring[0] * 16 == ring[1] * 10, "read ring %llu through the page cache, %llu with O_DIRECT",
                  (unsigned long long)ring[0], (unsigned long long)ring[1]);
    same_epoch(&rec[0], &rec[1]);
    lt_rec_free(&rec[0]);
    lt_rec_free(&rec[1]);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc == 7 && !strcmp(argv[1], "--stream"))
        return stream_child(argv[2], argv[3], argv[4], strtoull(argv[5], NULL, 10), argv[6]);
    g_seed = tu_seed(0x3e3);
    if (lt_make(&g_ds, "memory", N_SAMPLES, 64, g_seed, "4K", "64K")) {
        fprintf(stderr, "cannot write the test dataset\n");
        return 99;
    }
    Suite *s = suite_create("loader_memory");
    TCase *tc = tu_tcase(s, "memory", 60);
    tcase_add_test(tc, minimum_is_named_and_works);
    tcase_add_test(tc, pools_inside_budget);
    tcase_add_test(tc, stats_from_another_thread);
    tcase_add_test(tc, peak_rss_bounded);
    tcase_add_test(tc, tiny_rows_descriptors_counted);
    tcase_add_test(tc, sized_by_dataset);
    tcase_add_test(tc, read_ahead_follows_io);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_ds);
    return rc;
}
