/* test_interrupt.c - a writer killed at any moment or destroyed before finish leaves no final-named file that opens, only temporaries a later writer removes; overwrite rules. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

static uint64_t g_seed;

/* ------------------------------------------------------------------------------------ kill hooks
 * The test links the library statically with -Wl,--wrap for the calls that change files on disk,
 * so a child can die right after the k-th of them: every step of publication becomes a kill
 * point, deterministically. */

static atomic_long *g_events; /* shared with the children, so the parent learns their count */
static long g_kill_at;        /* 0: count only */

static void event(void)
{
    if (!g_events)
        return;
    long n = atomic_fetch_add(g_events, 1) + 1;
    if (g_kill_at && n == g_kill_at)
        raise(SIGKILL);
}

#define WRAP(ret, name, params, args)                                                              \
    ret __real_##name params;                                                                      \
    ret __wrap_##name params;                                                                      \
    ret __wrap_##name params                                                                       \
    {                                                                                              \
        ret r = __real_##name args;                                                                \
        event();                                                                                   \
        return r;                                                                                  \
    }

WRAP(ssize_t, write, (int fd, const void *p, size_t n), (fd, p, n))
WRAP(ssize_t, pwrite, (int fd, const void *p, size_t n, off_t o), (fd, p, n, o))
WRAP(int, fsync, (int fd), (fd))
WRAP(int, fdatasync, (int fd), (fd))
WRAP(int, rename, (const char *a, const char *b), (a, b))
WRAP(int, renameat, (int fa, const char *a, int fb, const char *b), (fa, a, fb, b))
WRAP(int, renameat2, (int fa, const char *a, int fb, const char *b, unsigned f), (fa, a, fb, b, f))
WRAP(int, unlink, (const char *a), (a))
WRAP(int, unlinkat, (int fd, const char *a, int f), (fd, a, f))
WRAP(int, rmdir, (const char *a), (a))
WRAP(int, mkdir, (const char *a, mode_t m), (a, m))
WRAP(int, mkdirat, (int fd, const char *a, mode_t m), (fd, a, m))

/* ------------------------------------------------------------------------------------ helpers */

static tu_data make_data(uint64_t n, uint64_t seed) { return tu_image_data(n, seed, 1000); }

static sp_params *small_shards(bool overwrite)
{
    return tu_params("validate_images", "0", "shard_size", "64K", "block_size", "8K", "threads", "2", "overwrite", overwrite ? "1" : "0",
                     NULL);
}

static bool is_final_name(const char *name)
{
    size_t n = strlen(name);
    return strcmp(name, "manifest.spm") == 0 ||
           (strncmp(name, "shard-", 6) == 0 && n > 10 && !strcmp(name + n - 4, ".sps"));
}

/* After a writer of d died: either the dataset was committed and is complete, or no file under a
 * final name opens; everything else is a hidden temporary. Returns whether it was committed. */
static bool check_after_kill(const char *parent, const char *dir, const tu_data *d, const char *when)
{
    ck_assert_msg(tu_count_others(parent, "ds") == tu_count_hidden(parent), "%s: non-temporary file beside the dataset",
                  when);
    if (!tu_exists(dir))
        return false;
    sp_dataset *ds = NULL;
    char *man = tu_join(dir, "manifest.spm");
    bool committed = tu_exists(man) && sp_dataset_open(dir, NULL, &ds) == 0;
    if (committed) {
        ck_assert_msg(sp_dataset_num_samples(ds) == d->nsamples, "%s: manifest opens with %llu of %llu samples",
                      when, (unsigned long long)sp_dataset_num_samples(ds), (unsigned long long)d->nsamples);
        sp_dataset_close(ds);
        ck_assert_msg(sp_verify(dir, NULL, NULL, NULL, NULL) == 0, "%s: committed dataset fails verify: %s", when,
                      sp_last_error());
    }
    DIR *dh = opendir(dir);
    ck_assert_ptr_nonnull(dh);
    struct dirent *de;
    while ((de = readdir(dh))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        ck_assert_msg(de->d_name[0] == '.' || is_final_name(de->d_name), "%s: unexpected file %s", when, de->d_name);
        if (committed || de->d_name[0] == '.')
            continue;
        char *p = tu_join(dir, de->d_name);
        ck_assert_msg(sp_dataset_open(p, NULL, &ds) != 0, "%s: %s opens although no dataset was committed", when,
                      de->d_name);
        free(p);
    }
    closedir(dh);
    free(man);
    return committed;
}

/* A later writer on the same directory succeeds and leaves no temporaries behind. */
static void check_recovery(const char *parent, const char *dir, const tu_data *d, bool committed, const char *when)
{
    sp_params *p = small_shards(committed);
    int rc = tu_write_dataset(dir, d, p, NULL);
    ck_assert_msg(rc == 0, "%s: a later writer failed: %s (%s)", when, sp_error_name(rc), sp_last_error());
    ck_assert_msg(tu_count_others(parent, "ds") == 0, "%s: temporaries left beside the dataset", when);
    ck_assert_msg(tu_count_hidden(dir) == 0, "%s: temporaries left in the dataset", when);
    sp_dataset *ds;
    ck_assert(sp_dataset_open(dir, NULL, &ds) == 0);
    tu_check_dataset(ds, d, 0);
    sp_dataset_close(ds);
    sp_params_destroy(p);
}

/* Forks a child that writes d into dir; kill_at > 0 makes it die after that many file events.
 * Returns the child's pid; *g_events counts the child's events. */
static pid_t spawn_writer(const char *dir, const tu_data *d, long kill_at)
{
    if (!g_events) {
        g_events = mmap(NULL, sizeof *g_events, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ck_assert(g_events != MAP_FAILED);
    }
    atomic_store(g_events, 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        g_kill_at = kill_at;
        sp_params *p = small_shards(false);
        sp_writer *w;
        int rc = sp_writer_open(dir, d->schema, p, &w);
        if (rc == 0)
            rc = tu_add_samples(w, d, 0, d->nsamples);
        if (rc == 0)
            rc = sp_writer_finish(w);
        if (rc == 0)
            sp_writer_destroy(w);
        _exit(rc ? 1 : 0);
    }
    return pid;
}

/* ------------------------------------------------------------------------------------ tests */

START_TEST(kill_at_every_file_event)
{
    tu_data d = make_data(300, g_seed);
    char *parent;
    char *dir = tu_dataset_dir("kill", &parent);
    /* Count the events of a full run. */
    int status;
    pid_t pid = spawn_writer(dir, &d, 0);
    ck_assert(waitpid(pid, &status, 0) == pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer child failed");
    long events = atomic_load(g_events);
    ck_assert_msg(events > 10 && events < 2000, "%ld file events", events);
    printf("kill points: %ld file events in a full run\n", events);
    tu_rmtree(parent);
    free(parent);
    free(dir);
    for (long k = 1; k <= events; k++) {
        dir = tu_dataset_dir("kill", &parent);
        pid = spawn_writer(dir, &d, k);
        ck_assert(waitpid(pid, &status, 0) == pid);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child survived kill point %ld", k);
        char when[64];
        snprintf(when, sizeof when, "killed after file event %ld of %ld", k, events);
        bool committed = check_after_kill(parent, dir, &d, when);
        check_recovery(parent, dir, &d, committed, when);
        tu_rmtree(parent);
        free(parent);
        free(dir);
    }
    sp_schema_destroy(d.schema);
}
END_TEST

START_TEST(kill_at_random_moments)
{
    tu_data d = make_data(2500, g_seed + 1);
    tu_rng r = { g_seed };
    char *parent;
    char *dir = tu_dataset_dir("kill", &parent);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int status;
    pid_t pid = spawn_writer(dir, &d, 0);
    ck_assert(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double full = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    tu_rmtree(parent);
    free(parent);
    free(dir);
    for (int k = 0; k < 12; k++) {
        dir = tu_dataset_dir("kill", &parent);
        double delay = full * (double)tu_below(&r, 1100) / 1000.0;
        pid = spawn_writer(dir, &d, 0);
        struct timespec ts = { (time_t)delay, (long)((delay - (double)(time_t)delay) * 1e9) };
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        ck_assert(waitpid(pid, &status, 0) == pid);
        char when[64];
        snprintf(when, sizeof when, "killed after %.1f of %.1f ms", delay * 1e3, full * 1e3);
        bool committed = check_after_kill(parent, dir, &d, when);
        check_recovery(parent, dir, &d, committed, when);
        tu_rmtree(parent);
        free(parent);
        free(dir);
    }
    sp_schema_destroy(d.schema);
}
END_TEST

START_TEST(destroy_without_finish)
{
    tu_data d = make_data(600, g_seed + 2);
    char *parent;
    char *dir = tu_dataset_dir("destroy", &parent);
    sp_params *p = small_shards(false);
    sp_writer *w;
    ck_assert(sp_writer_open(dir, d.schema, p, &w) == 0);
    ck_assert(tu_add_samples(w, &d, 0, d.nsamples) == 0);
    sp_write_stats st = { .struct_size = sizeof st };
    ck_assert(sp_writer_stats(w, &st) == 0);
    ck_assert_uint_gt(st.blocks, 4); /* blocks, probably shards, are on disk by now */
    sp_writer_destroy(w);
    ck_assert_uint_eq(tu_count_others(parent, "ds"), 0);
    if (tu_exists(dir))
        ck_assert_uint_eq(tu_count_files(dir, NULL), 0);
    /* The directory takes a dataset afterwards, without overwrite. */
    ck_assert_msg(tu_write_dataset(dir, &d, p, NULL) == 0, "%s", sp_last_error());
    /* Destroying an overwriting writer leaves the old dataset as it was. */
    tu_data d2 = make_data(200, g_seed + 3);
    sp_params *po = small_shards(true);
    ck_assert(sp_writer_open(dir, d2.schema, po, &w) == 0);
    ck_assert(tu_add_samples(w, &d2, 0, d2.nsamples) == 0);
    sp_writer_destroy(w);
    ck_assert_uint_eq(tu_count_others(parent, "ds"), 0);
    ck_assert_uint_eq(tu_count_hidden(dir), 0);
    sp_dataset *ds;
    ck_assert(sp_dataset_open(dir, NULL, &ds) == 0);
    tu_check_dataset(ds, &d, 0);
    sp_dataset_close(ds);
    ck_assert(sp_verify(dir, NULL, NULL, NULL, NULL) == 0);
    tu_rmtree(parent);
    free(parent);
    free(dir);
    sp_params_destroy(p);
    sp_params_destroy(po);
    sp_schema_destroy(d.schema);
    sp_schema_destroy(d2.schema);
}
END_TEST

START_TEST(overwrite_rules)
{
    tu_data big = make_data(1500, g_seed + 4), small = make_data(100, g_seed + 5);
    char *parent;
    char *dir = tu_dataset_dir("overwrite", &parent);
    sp_params *keep = small_shards(false), *over = small_shards(true);
    sp_write_stats st_big = { .struct_size = sizeof st_big }, st_small = { .struct_size = sizeof st_small };
    ck_assert(tu_write_dataset(dir, &big, keep, &st_big) == 0);
    ck_assert_uint_gt(st_big.shards, 3);
    /* overwrite off: refused at open, the dataset untouched */
    sp_writer *w = NULL;
    ck_assert_int_eq(sp_writer_open(dir, small.schema, keep, &w), SP_EEXIST);
    ck_assert_ptr_null(w);
    ck_assert_msg(strstr(sp_last_error(), dir), "%s", sp_last_error());
    ck_assert_int_eq(sp_writer_open(dir, small.schema, NULL, &w), SP_EEXIST);
    sp_dataset *ds;
    ck_assert(sp_dataset_open(dir, NULL, &ds) == 0);
    tu_check_dataset(ds, &big, 0);
    sp_dataset_close(ds);
    /* A directory holding only shards (no manifest) is a dataset too. */
    char *man = tu_join(dir, "manifest.spm");
    char *saved = tu_join(parent, "manifest.saved");
    tu_copy_file(man, saved);
    ck_assert(unlink(man) == 0);
    ck_assert_int_eq(sp_writer_open(dir, small.schema, keep, &w), SP_EEXIST);
    tu_copy_file(saved, man);
    unlink(saved);
    /* overwrite on: replaced, and the old dataset's extra shards are gone */
    ck_assert(tu_write_dataset(dir, &small, over, &st_small) == 0);
    ck_assert_uint_lt(st_small.shards, st_big.shards);
    size_t n;
    char **shards = tu_list_shards(dir, &n);
    ck_assert_uint_eq(n, st_small.shards);
    tu_free_list(shards, n);
    ck_assert_uint_eq(tu_count_files(dir, NULL), st_small.shards + 1);
    ck_assert_uint_eq(tu_count_others(parent, "ds"), 0);
    ck_assert(sp_dataset_open(dir, NULL, &ds) == 0);
    tu_check_dataset(ds, &small, 0);
    sp_dataset_close(ds);
    ck_assert(sp_verify(dir, NULL, NULL, NULL, NULL) == 0);
    tu_rmtree(parent);
    free(parent);
    free(dir);
    free(man);
    free(saved);
    sp_params_destroy(keep);
    sp_params_destroy(over);
    sp_schema_destroy(big.schema);
    sp_schema_destroy(small.schema);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x5eed0007);
    Suite *s = suite_create("interrupt");
    TCase *tc = tu_tcase(s, "lifecycle", 60);
    tcase_add_test(tc, destroy_without_finish);
    tcase_add_test(tc, overwrite_rules);
    tc = tu_tcase(s, "kill", 240);
    tcase_add_test(tc, kill_at_random_moments);
    tcase_add_test(tc, kill_at_every_file_event);
    return tu_run(s, g_seed);
}
