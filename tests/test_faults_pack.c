/* test_faults_pack.c - a writer meeting faults one at a time: the disk full (ENOSPC) at every single write into the staging directory, fsync failing (EIO) at every one, short writes, and pthread_create refused for each compression thread. Each failure is a clear SP_EIO/SP_ESYS naming the file, removes the staging directory, leaves the destination as it was (a previous dataset there still opens and verifies) and a later writer succeeds. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "test_util.h"
#include "tu_alloc.h"
#include "tu_thread.h"

static uint64_t g_seed;

/* ------------------------------------------------------------------------------------ wrapped calls
 * The test links the library statically with -Wl,--wrap=write,pwrite,fsync,fdatasync,pthread_create.
 * Only calls on descriptors inside a staging directory (PARENT/.NAME.shardpack-tmp, the directory
 * itself included) are counted and faulted; the test's own files and Check's pipes are left alone. */

enum { W_OFF, W_COUNT, W_ENOSPC, W_SHORT, W_FSYNC };
static atomic_int g_mode;
static atomic_long g_writes, g_syncs, g_fail_at, g_injected;

static bool staged(int fd)
{
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0)
        return false;
    path[n] = '\0';
    return strstr(path, ".shardpack-tmp") != NULL;
}

ssize_t __real_write(int fd, const void *p, size_t n);
ssize_t __wrap_write(int fd, const void *p, size_t n);
ssize_t __real_pwrite(int fd, const void *p, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *p, size_t n, off_t off);
int __real_fsync(int fd);
int __wrap_fsync(int fd);
int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);

/* What the n-th staged write does: -1 to go ahead in full, else the bytes it may write (0: none,
 * failing with ENOSPC). From the failing write on the disk stays full; every other failing point
 * first takes half of its write, as a disk that fills up in the middle of one does. */
static ssize_t write_budget(int fd, size_t n)
{
    int mode = atomic_load(&g_mode);
    if (mode == W_OFF || mode == W_FSYNC || !staged(fd))
        return -1;
    long k = atomic_fetch_add(&g_writes, 1) + 1;
    if (mode == W_SHORT && n > 1) {
        atomic_fetch_add(&g_injected, 1);
        return (ssize_t)(1 + tu_mix((uint64_t)k) % (n - 1));
    }
    long at = atomic_load(&g_fail_at);
    if (mode != W_ENOSPC || k < at)
        return -1;
    atomic_fetch_add(&g_injected, 1);
    return k == at && at % 2 == 1 && n > 1 ? (ssize_t)(n / 2) : 0;
}

ssize_t __wrap_write(int fd, const void *p, size_t n)
{
    ssize_t m = write_budget(fd, n);
    if (m == 0) {
        errno = ENOSPC;
        return -1;
    }
    return __real_write(fd, p, m < 0 ? n : (size_t)m);
}

ssize_t __wrap_pwrite(int fd, const void *p, size_t n, off_t off)
{
    ssize_t m = write_budget(fd, n);
    if (m == 0) {
        errno = ENOSPC;
        return -1;
    }
    return __real_pwrite(fd, p, m < 0 ? n : (size_t)m, off);
}

static bool sync_fails(int fd)
{
    int mode = atomic_load(&g_mode);
    if ((mode != W_COUNT && mode != W_FSYNC) || !staged(fd))
        return false;
    long k = atomic_fetch_add(&g_syncs, 1) + 1;
    if (mode != W_FSYNC || k != atomic_load(&g_fail_at))
        return false;
    atomic_fetch_add(&g_injected, 1);
    errno = EIO;
    return true;
}

int __wrap_fsync(int fd) { return sync_fails(fd) ? -1 : __real_fsync(fd); }
int __wrap_fdatasync(int fd) { return sync_fails(fd) ? -1 : __real_fdatasync(fd); }

/* pthread_create faults: tu_thread.c (--wrap=pthread_create). */

/* ------------------------------------------------------------------------------------ helpers */

static tu_data make_data(uint64_t n, uint64_t seed) { return tu_image_data(n, seed, 1200); }

static sp_params *writer_params(bool overwrite, const char *threads)
{
    return tu_params("validate_images", "0", "shard_size", "48K", "block_size", "8K", "threads", threads, "overwrite", overwrite ? "1" : "0",
                     NULL);
}

static char g_msg[1024]; /* the message of write_with's failing call */

/* Writes d into dir, as a program would: open, metadata, samples, finish; stops at the first error
 * and says which call failed (its message in g_msg). After a failure the writer must refuse to
 * publish. */
static int write_with(const char *dir, const tu_data *d, const sp_params *p, const char **call)
{
    sp_writer *w = NULL;
    *call = "sp_writer_open";
    int rc = sp_writer_open(dir, d->schema, p, &w);
    if (rc == 0)
        *call = "sp_writer_set_meta", rc = sp_writer_set_meta(w, "source", "faults", 6);
    if (rc == 0)
        *call = "sp_writer_add", rc = tu_add_samples(w, d, 0, d->nsamples);
    if (rc == 0)
        *call = "sp_writer_finish", rc = sp_writer_finish(w);
    snprintf(g_msg, sizeof g_msg, "%s", rc ? sp_last_error() : "");
    if (rc && w) {
        ck_assert_str_eq(sp_writer_errmsg(w), g_msg);
        ck_assert_int_eq(sp_writer_finish(w), SP_ESTATE); /* a failed writer never publishes */
    }
    sp_writer_destroy(w);
    return rc;
}

/* The destination after a failed writer: as it was (absent, or holding `old` intact) and no
 * temporaries anywhere. */
static void check_untouched(const char *parent, const char *dir, const tu_data *old, uint64_t old_fp,
                            const char *when)
{
    ck_assert_msg(tu_count_others(parent, "ds") == 0, "%s: the staging directory is left beside the dataset", when);
    if (!old) {
        ck_assert_msg(!tu_exists(dir) || tu_count_files(dir, NULL) == 0, "%s: files appeared at the destination",
                      when);
        return;
    }
    ck_assert_msg(tu_count_hidden(dir) == 0, "%s: temporaries in the destination", when);
    sp_dataset *ds;
    ck_assert_msg(sp_dataset_open(dir, NULL, &ds) == 0, "%s: the previous dataset no longer opens: %s", when,
                  sp_last_error());
    ck_assert_msg(sp_dataset_fingerprint(ds) == old_fp, "%s: the previous dataset was replaced", when);
    tu_check_dataset(ds, old, 0);
    sp_dataset_close(ds);
    ck_assert_msg(sp_verify(dir, NULL, NULL, NULL, NULL) == 0, "%s: the previous dataset fails verify: %s", when,
                  sp_last_error());
}

static uint64_t fingerprint(const char *dir)
{
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(dir, NULL, &ds), 0);
    uint64_t fp = sp_dataset_fingerprint(ds);
    sp_dataset_close(ds);
    return fp;
}

/* A writer given the same job afterwards, without a fault, succeeds. */
static void check_retry(const char *parent, const char *dir, const tu_data *d, bool overwrite, const char *when)
{
    sp_params *p = writer_params(overwrite, "2");
    int rc = tu_write_dataset(dir, d, p, NULL);
    ck_assert_msg(rc == 0, "%s: a later writer failed: %s", when, sp_last_error());
    ck_assert_uint_eq(tu_count_others(parent, "ds"), 0);
    ck_assert_uint_eq(tu_count_hidden(dir), 0);
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(dir, NULL, &ds), 0);
    tu_check_dataset(ds, d, 0);
    sp_dataset_close(ds);
    sp_params_destroy(p);
}

/* Staged writes and fsyncs of a whole run, counted. */
static void count_events(const tu_data *d, long *writes, long *syncs)
{
    char *parent;
    char *dir = tu_dataset_dir("faults-count", &parent);
    sp_params *p = writer_params(false, "2");
    atomic_store(&g_writes, 0);
    atomic_store(&g_syncs, 0);
    atomic_store(&g_mode, W_COUNT);
    const char *call;
    int rc = write_with(dir, d, p, &call);
    atomic_store(&g_mode, W_OFF);
    ck_assert_msg(rc == 0, "%s: %s", call, g_msg);
    *writes = atomic_load(&g_writes);
    *syncs = atomic_load(&g_syncs);
    tu_rmtree(parent);
    free(parent);
    free(dir);
    sp_params_destroy(p);
}

/* Runs the writer with the fault of `mode` at event n; checks the error, the files and a retry. */
static void fault_run(int mode, long n, long total, const tu_data *d, const tu_data *old)
{
    char when[128];
    snprintf(when, sizeof when, "%s at %s %ld of %ld%s", mode == W_ENOSPC ? "ENOSPC" : "EIO",
             mode == W_ENOSPC ? "write" : "fsync", n, total, old ? ", over a dataset" : "");
    char *parent;
    char *dir = tu_dataset_dir("faults", &parent);
    uint64_t old_fp = 0;
    if (old) {
        sp_params *po = writer_params(false, "1");
        ck_assert_int_eq(tu_write_dataset(dir, old, po, NULL), 0);
        sp_params_destroy(po);
        old_fp = fingerprint(dir);
    }
    long live = tu_alloc_live();
    sp_params *p = writer_params(old != NULL, "2");
    atomic_store(&g_writes, 0);
    atomic_store(&g_syncs, 0);
    atomic_store(&g_injected, 0);
    atomic_store(&g_fail_at, n);
    atomic_store(&g_mode, mode);
    const char *call;
    int rc = write_with(dir, d, p, &call);
    atomic_store(&g_mode, W_OFF);
    sp_params_destroy(p);
    ck_assert_msg(atomic_load(&g_injected) > 0, "%s: the fault point was never reached", when);
    ck_assert_msg(rc == SP_EIO, "%s: %s returned %s (%s)", when, call, sp_error_name(rc), g_msg);
    const char *msg = g_msg;
    ck_assert_msg(strstr(msg, strerror(mode == W_ENOSPC ? ENOSPC : EIO)), "%s: the message lacks the cause: %s",
                  when, msg);
    ck_assert_msg(strstr(msg, ".ds.shardpack-tmp"), "%s: the message names no file: %s", when, msg);
    if (mode == W_ENOSPC)
        ck_assert_msg(strstr(msg, ".ds.shardpack-tmp/shard-") || strstr(msg, ".ds.shardpack-tmp/manifest.spm"),
                      "%s: the message names no shard or manifest: %s", when, msg);
    if (n == 1 || n == total)
        printf("%s: %s: %s\n", when, call, msg);
    ck_assert_msg(tu_alloc_live() == live, "%s: %ld allocation(s) leaked", when, tu_alloc_live() - live);
    check_untouched(parent, dir, old, old_fp, when);
    check_retry(parent, dir, d, old != NULL, when);
    tu_rmtree(parent);
    free(parent);
    free(dir);
}

/* ------------------------------------------------------------------------------------ tests */

START_TEST(disk_full_at_every_write)
{
    tu_data d = make_data(400, g_seed);
    long writes, syncs;
    count_events(&d, &writes, &syncs);
    printf("a full run: %ld staged writes, %ld staged fsyncs\n", writes, syncs);
    ck_assert_msg(writes > 20 && writes < 1000, "%ld staged writes", writes);
    for (long n = 1; n <= writes; n++)
        fault_run(W_ENOSPC, n, writes, &d, NULL);
    sp_schema_destroy(d.schema);
}
END_TEST

START_TEST(disk_full_over_a_dataset)
{
    tu_data d = make_data(400, g_seed + 1), old = make_data(150, g_seed + 2);
    long writes, syncs;
    count_events(&d, &writes, &syncs);
    for (long n = 1; n <= writes; n++)
        fault_run(W_ENOSPC, n, writes, &d, &old);
    sp_schema_destroy(d.schema);
    sp_schema_destroy(old.schema);
}
END_TEST

START_TEST(fsync_fails_at_every_sync)
{
    tu_data d = make_data(400, g_seed + 3), old = make_data(120, g_seed + 4);
    long writes, syncs;
    count_events(&d, &writes, &syncs);
    ck_assert_msg(syncs > 2, "%ld staged fsyncs", syncs); /* each shard, the manifest, the directory */
    for (long n = 1; n <= syncs; n++) {
        fault_run(W_FSYNC, n, syncs, &d, NULL);
        fault_run(W_FSYNC, n, syncs, &d, &old);
    }
    sp_schema_destroy(d.schema);
    sp_schema_destroy(old.schema);
}
END_TEST

/* Writes that take only part of their bytes are continued: the dataset comes out whole. */
START_TEST(short_writes_continued)
{
    tu_data d = make_data(400, g_seed + 5);
    char *parent;
    char *dir = tu_dataset_dir("faults-short", &parent);
    sp_params *p = writer_params(false, "3");
    atomic_store(&g_injected, 0);
    atomic_store(&g_mode, W_SHORT);
    const char *call;
    int rc = write_with(dir, &d, p, &call);
    atomic_store(&g_mode, W_OFF);
    ck_assert_msg(rc == 0, "%s: %s", call, g_msg);
    ck_assert_int_gt(atomic_load(&g_injected), 20);
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(dir, NULL, &ds), 0);
    tu_check_dataset(ds, &d, 0);
    sp_dataset_close(ds);
    ck_assert_int_eq(sp_verify(dir, NULL, NULL, NULL, NULL), 0);
    ck_assert_uint_eq(tu_count_others(parent, "ds"), 0);
    tu_rmtree(parent);
    free(parent);
    free(dir);
    sp_params_destroy(p);
    sp_schema_destroy(d.schema);
}
END_TEST

/* Each compression thread of sp_writer_open refused in turn. */
START_TEST(compression_thread_refused)
{
    tu_data d = make_data(200, g_seed + 6), old = make_data(80, g_seed + 7);
    for (int over = 0; over < 2; over++)
        for (long n = 1; n <= 3; n++) {
            char when[96];
            snprintf(when, sizeof when, "pthread_create %ld of 3 refused%s", n, over ? ", over a dataset" : "");
            char *parent;
            char *dir = tu_dataset_dir("faults-thr", &parent);
            uint64_t old_fp = 0;
            if (over) {
                ck_assert_int_eq(tu_write_dataset(dir, &old, tu_synthetic_images(), NULL), 0);
                old_fp = fingerprint(dir);
            }
            long live = tu_alloc_live();
            sp_params *p = writer_params(over, "3");
            sp_writer *w = (sp_writer *)1;
            atomic_store(&tu_thr_calls, 0);
            atomic_store(&tu_thr_fail_at, n);
            int rc = sp_writer_open(dir, d.schema, p, &w);
            long calls = atomic_load(&tu_thr_calls);
            atomic_store(&tu_thr_fail_at, 0);
            sp_params_destroy(p);
            ck_assert_msg(rc == SP_ESYS, "%s: %s (%s)", when, sp_error_name(rc), sp_last_error());
            ck_assert_ptr_null(w);
            ck_assert_int_eq(calls, n);
            ck_assert_msg(strstr(sp_last_error(), dir) && strstr(sp_last_error(), "compression thread") &&
                              strstr(sp_last_error(), strerror(EAGAIN)),
                          "%s: message '%s'", when, sp_last_error());
            if (n == 2)
                printf("%s: %s\n", when, sp_last_error());
            ck_assert_msg(atomic_load(&tu_thr_started) == atomic_load(&tu_thr_exited), "%s: %ld thread(s) not joined",
                          when, atomic_load(&tu_thr_started) - atomic_load(&tu_thr_exited));
            ck_assert_msg(tu_alloc_live() == live, "%s: %ld allocation(s) leaked", when, tu_alloc_live() - live);
            check_untouched(parent, dir, over ? &old : NULL, old_fp, when);
            check_retry(parent, dir, &d, over, when);
            tu_rmtree(parent);
            free(parent);
            free(dir);
        }
    sp_schema_destroy(d.schema);
    sp_schema_destroy(old.schema);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x5eed00f5);
    Suite *s = suite_create("faults_pack");
    TCase *tc = tu_tcase(s, "disk", 60);
    tcase_add_test(tc, disk_full_at_every_write);
    tcase_add_test(tc, disk_full_over_a_dataset);
    tcase_add_test(tc, fsync_fails_at_every_sync);
    tcase_add_test(tc, short_writes_continued);
    tc = tu_tcase(s, "threads", 60);
    tcase_add_test(tc, compression_thread_refused);
    return tu_run(s, g_seed);
}
