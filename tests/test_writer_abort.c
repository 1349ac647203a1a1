/* test_writer_abort.c - sp_writer_abort (before finish, from another thread and from a signal handler while finish compresses) publishes nothing, and sp_writer_failed tells a refused sample from a writer that cannot go on. */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

/* About 4 MiB of random bytes at zstd level 19 on one thread, 1 MiB blocks: the blocks still queued
 * when finish starts take about 2 s to compress here, a hundred times the 20 ms the aborting
 * thread waits. */
#define BIG_SAMPLES 1000
#define BIG_VAR_MAX 8192

static sp_params *slow_params(void)
{
    return tu_params("validate_images", "0", "level", "19", "threads", "1", "block_size", "1M", NULL);
}

static void check_nothing_published(const char *dir, const char *parent)
{
    char *man = tu_join(dir, "manifest.spm");
    ck_assert_msg(!tu_exists(man), "%s was published", dir);
    free(man);
    ck_assert_uint_eq(tu_count_others(parent, "ds"), 0);
}

/* Destroys w, checks that nothing was published, and frees what one case held. */
static void end_unpublished(sp_writer *w, sp_params *p, char *dir, char *parent, tu_data *d)
{
    sp_writer_destroy(w);
    check_nothing_published(dir, parent);
    sp_params_destroy(p);
    tu_rmtree(parent);
    free(parent);
    free(dir);
    sp_schema_destroy(d->schema);
}

START_TEST(abort_before_finish)
{
    tu_data d = tu_image_data(50, 7, 300);
    char *parent, *dir = tu_dataset_dir("abort", &parent);
    sp_writer *w = NULL;
    ck_assert_msg(sp_writer_open(dir, d.schema, tu_synthetic_images(), &w) == 0, "%s", sp_last_error());
    ck_assert_int_eq(tu_add_samples(w, &d, 0, 50), 0);
    ck_assert_int_eq(sp_writer_failed(w), 0);
    sp_writer_abort(w);
    ck_assert_int_eq(sp_writer_failed(w), 1);
    ck_assert_int_eq(tu_add_samples(w, &d, 50, 51), SP_ECANCELED);
    ck_assert_int_eq(sp_writer_finish(w), SP_ESTATE); /* failed since the add above */
    sp_writer_destroy(w);
    check_nothing_published(dir, parent);

    /* Straight to finish after the abort. */
    ck_assert(sp_writer_open(dir, d.schema, tu_synthetic_images(), &w) == 0);
    ck_assert_int_eq(tu_add_samples(w, &d, 0, 50), 0);
    sp_writer_abort(w);
    ck_assert_int_eq(sp_writer_finish(w), SP_ECANCELED);
    ck_assert_msg(strstr(sp_writer_errmsg(w), dir) && strstr(sp_writer_errmsg(w), "nothing was published"), "%s",
                  sp_writer_errmsg(w));
    ck_assert_int_eq(sp_writer_failed(w), 1);
    sp_writer_destroy(w);
    check_nothing_published(dir, parent);

    /* NULL is accepted; an abort after a successful finish changes nothing. */
    sp_writer_abort(NULL);
    ck_assert_int_eq(sp_writer_failed(NULL), 0);
    ck_assert(sp_writer_open(dir, d.schema, tu_synthetic_images(), &w) == 0);
    ck_assert_int_eq(tu_add_samples(w, &d, 0, 50), 0);
    ck_assert_int_eq(sp_writer_finish(w), 0);
    sp_writer_abort(w);
    sp_writer_destroy(w);
    sp_dataset *ds = NULL;
    ck_assert_msg(sp_dataset_open(dir, NULL, &ds) == 0, "%s", sp_last_error());
    tu_check_dataset(ds, &d, 0);
    sp_dataset_close(ds);
    tu_rmtree(parent);
    free(parent);
    free(dir);
    sp_schema_destroy(d.schema);
}
END_TEST

/* ---- an abort while finish is compressing -------------------------------------------------- */

static sp_writer *volatile g_writer;
static atomic_int g_finishing;
static pthread_t g_main;
static atomic_int g_handler_calls, g_handler_off_main;

static void on_usr1(int sig)
{
    (void)sig;
    if (!pthread_equal(pthread_self(), g_main))
        atomic_store(&g_handler_off_main, 1);
    atomic_fetch_add(&g_handler_calls, 1);
    sp_writer_abort(g_writer);
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Waits until the main thread is inside finish, then aborts: directly, or by a process-directed
 * SIGUSR1 that this thread blocks, so the kernel picks a thread that does not block it. */
static void *aborter(void *arg)
{
    int by_signal = *(int *)arg;
    while (!atomic_load(&g_finishing))
        sleep_ms(1);
    sleep_ms(20);
    if (by_signal)
        kill(getpid(), SIGUSR1);
    else
        sp_writer_abort(g_writer);
    return NULL;
}

static void abort_during_finish(int by_signal)
{
    tu_data d = tu_image_data(BIG_SAMPLES, 11, BIG_VAR_MAX);
    char *parent, *dir = tu_dataset_dir("abort", &parent);
    sp_params *p = slow_params();
    sp_writer *w = NULL;
    ck_assert_msg(sp_writer_open(dir, d.schema, p, &w) == 0, "%s", sp_last_error());
    ck_assert_int_eq(tu_add_samples(w, &d, 0, BIG_SAMPLES), 0);
    sp_write_stats before = { .struct_size = sizeof before };
    sp_writer_stats(w, &before);

    g_writer = w;
    g_main = pthread_self();
    atomic_store(&g_finishing, 0);
    struct sigaction sa = { 0 }, old;
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, &old);
    sigset_t usr1, prev;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, &prev); /* the aborter inherits the block */
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, aborter, &by_signal), 0);
    pthread_sigmask(SIG_SETMASK, &prev, NULL);

    atomic_store(&g_finishing, 1);
    int rc = sp_writer_finish(w);
    pthread_join(t, NULL);
    sigaction(SIGUSR1, &old, NULL);
    g_writer = NULL;

    ck_assert_msg(rc == SP_ECANCELED, "finish returned %s (%s)", sp_error_name(rc), sp_writer_errmsg(w));
    ck_assert_int_eq(sp_writer_failed(w), 1);
    if (by_signal) {
        ck_assert_int_eq(atomic_load(&g_handler_calls), 1);
        ck_assert_msg(!atomic_load(&g_handler_off_main), "the handler ran on one of the writer's threads");
    }
    /* It stopped at a block, not after compressing everything queued. */
    sp_write_stats after = { .struct_size = sizeof after };
    sp_writer_stats(w, &after);
    uint64_t total_blocks = (after.raw_bytes + (1u << 20) - 1) >> 20;
    ck_assert_msg(after.blocks < total_blocks, "finish wrote all %llu blocks before stopping",
                  (unsigned long long)after.blocks);
    end_unpublished(w, p, dir, parent, &d);
}

START_TEST(abort_from_thread_during_finish)
{
    abort_during_finish(0);
}
END_TEST

START_TEST(abort_from_signal_during_finish)
{
    abort_during_finish(1);
}
END_TEST

/* The writer's compression threads block the signals a process handles. */
START_TEST(workers_block_signals)
{
    tu_data d = tu_image_data(10, 3, 100);
    char *parent, *dir = tu_dataset_dir("abort", &parent);
    sp_params *p = tu_params("validate_images", "0", "threads", "4", NULL);
    sp_writer *w = NULL;
    ck_assert(sp_writer_open(dir, d.schema, p, &w) == 0);
    /* glibc starts a thread with every signal blocked and sets the inherited mask from inside it:
     * give the workers time to get there before reading their masks. */
    sleep_ms(200);
    DIR *tasks = opendir("/proc/self/task");
    if (!tasks) {
        fprintf(stderr, "no /proc/self/task; the thread masks go unchecked\n");
    } else {
        int checked = 0;
        struct dirent *e;
        while ((e = readdir(tasks))) {
            if (e->d_name[0] == '.' || atoi(e->d_name) == getpid())
                continue;
            char path[300], line[256];
            snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
            FILE *f = fopen(path, "r");
            if (!f)
                continue;
            unsigned long long blk = 0;
            while (fgets(line, sizeof line, f))
                if (sscanf(line, "SigBlk: %llx", &blk) == 1)
                    break;
            fclose(f);
            const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGALRM };
            for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
                ck_assert_msg(blk >> (sigs[i] - 1) & 1, "thread %s does not block signal %d (SigBlk %llx)", e->d_name,
                              sigs[i], blk);
            checked++;
        }
        closedir(tasks);
        ck_assert_int_ge(checked, 4);
    }
    sp_writer_destroy(w);
    sp_params_destroy(p);
    tu_rmtree(parent);
    free(parent);
    free(dir);
    sp_schema_destroy(d.schema);
}
END_TEST

/* A refused sample leaves the writer going; max_shards reached (an SP_ELIMIT too) does not. */
START_TEST(failed_tells_refusal_from_writer_failure)
{
    tu_data d = tu_image_data(400, 5, 2000);
    char *parent, *dir = tu_dataset_dir("abort", &parent);
    sp_params *p = tu_params("validate_images", "0", "max_shards", "2", "shard_size", "8K", "block_size", "4K", "max_sample_bytes", "1M",
                             NULL);
    sp_writer *w = NULL;
    ck_assert(sp_writer_open(dir, d.schema, p, &w) == 0);
    static unsigned char big[(1 << 20) + 1];
    int64_t label = 0;
    sp_value v[2] = { { big, sizeof big }, { &label, 8 } };
    ck_assert_int_eq(sp_writer_add(w, v, 2), SP_ELIMIT);
    ck_assert_int_eq(sp_writer_failed(w), 0);
    v[1].size = 4;
    v[0].size = 10;
    ck_assert_int_eq(sp_writer_add(w, v, 2), SP_ESCHEMA);
    ck_assert_int_eq(sp_writer_failed(w), 0);
    int rc = tu_add_samples(w, &d, 0, d.nsamples);
    ck_assert_msg(rc == SP_ELIMIT, "adding past max_shards: %s", sp_error_name(rc));
    ck_assert_msg(strstr(sp_writer_errmsg(w), "max_shards"), "%s", sp_writer_errmsg(w));
    ck_assert_int_eq(sp_writer_failed(w), 1);
    end_unpublished(w, p, dir, parent, &d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("writer_abort");
    TCase *tc = tu_tcase(s, "abort", 120);
    tcase_add_test(tc, abort_before_finish);
    tcase_add_test(tc, abort_from_thread_during_finish);
    tcase_add_test(tc, abort_from_signal_during_finish);
    tcase_add_test(tc, workers_block_signals);
    tcase_add_test(tc, failed_tells_refusal_from_writer_failure);
    return tu_run(s, 0);
}
