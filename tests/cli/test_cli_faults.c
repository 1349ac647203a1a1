/* test_cli_faults.c - `shardpack pack` meeting a full disk (ENOSPC at every n-th write into its staging directory, through an LD_PRELOAD shim), killed with SIGKILL at random moments, and interrupted (SIGINT) at each fsync of its final flush: a clear error naming the file, no temporaries left, the destination as it was (a previous dataset there still opens and verifies) or complete, and a rerun succeeds. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clit_util.h"
#include "shardpack.h"

static char *tmp;
static uint64_t g_seed;

static void setup(void) { tmp = clit_tmpdir(); }
static void teardown(void)
{
    clit_rmrf(tmp);
    free(tmp);
}

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* An ImageFolder of n small JPEGs in two classes under DIR (returned, allocated). */
static char *make_images(const char *name, int n, unsigned salt)
{
    char *root = clit_path("%s/%s", tmp, name);
    clit_mkdir(root);
    for (int c = 0; c < 2; c++) {
        char *cls = clit_path("%s/class%d", root, c);
        clit_mkdir(cls);
        free(cls);
    }
    for (int i = 0; i < n; i++) {
        size_t size;
        unsigned char *j = clit_jpeg(24 + i % 9, 16 + i % 5, (unsigned)i * 7 + salt, &size);
        char *p = clit_path("%s/class%d/img%04d.jpg", root, i % 2, i);
        clit_write(p, j, size);
        free(p);
        free(j);
    }
    return root;
}

/* Entries of dir other than the names given (NULL-terminated). */
static int others_in(const char *dir, const char *const *keep)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        int kept = 0;
        for (size_t i = 0; keep && keep[i]; i++)
            kept |= !strcmp(de->d_name, keep[i]);
        n += !kept;
    }
    closedir(d);
    return n;
}

/* Opens dir as a dataset; checks it is complete (samples) and verifies. Returns its fingerprint. */
static uint64_t check_complete(const char *dir, uint64_t samples, const char *when)
{
    sp_dataset *ds;
    int rc = sp_dataset_open(dir, NULL, &ds);
    ck_assert_msg(rc == 0, "%s: %s does not open: %s", when, dir, sp_last_error());
    ck_assert_msg(sp_dataset_num_samples(ds) == samples, "%s: %llu samples, want %llu", when,
                  (unsigned long long)sp_dataset_num_samples(ds), (unsigned long long)samples);
    uint64_t fp = sp_dataset_fingerprint(ds);
    sp_dataset_close(ds);
    sp_verify_report rep = { .struct_size = sizeof rep };
    rc = sp_verify(dir, NULL, NULL, NULL, &rep);
    ck_assert_msg(rc == 0, "%s: %s fails verify: %s", when, dir, sp_last_error());
    return fp;
}

/* ------------------------------------------------------------------------------------ full disk */

static const char *preload(void)
{
    const char *p = getenv("SP_FAULT_PRELOAD");
    ck_assert_msg(p && *p, "SP_FAULT_PRELOAD is not set");
    return p;
}

/* Runs `shardpack pack SRC -o OUT --shard-size SHARD_SIZE [--overwrite]` with the shim preloaded
 * and the given fault variables ("NAME=VALUE", NULL-terminated). Under ASan the shim comes before the runtime in the
 * library list, which ASan would refuse by default. */
static clit_result pack_shimmed(const char *src, const char *out, int overwrite, const char *shard_size,
                                const char *const *vars)
{
    const char *bin = getenv("SHARDPACK_CLI");
    ck_assert_ptr_nonnull(bin);
    char *ld = clit_path("LD_PRELOAD=%s", preload());
    const char *asan = getenv("ASAN_OPTIONS");
    char *asan_opts = clit_path("ASAN_OPTIONS=%s%sverify_asan_link_order=0", asan ? asan : "",
                                asan && *asan ? ":" : "");
    const char *env[8];
    size_t ne = 0;
    env[ne++] = ld;
    env[ne++] = asan_opts;
    for (size_t i = 0; vars && vars[i] && ne < 7; i++)
        env[ne++] = vars[i];
    env[ne] = NULL;
    const char *argv[] = { bin, "pack", src, "-o", out, "--block-size", "4K", "--shard-size", shard_size, "--threads", "2",
                           "--quiet", overwrite ? "--overwrite" : NULL, NULL };
    clit_result r = clit_run_prog(bin, env, argv);
    free(ld);
    free(asan_opts);
    return r;
}

START_TEST(disk_full)
{
    char *src = make_images("src", 48, 1), *old_src = make_images("oldsrc", 14, 99);
    char *parent = clit_path("%s/o", tmp), *out = clit_path("%s/ds", parent), *fresh = clit_path("%s/new", parent);
    char *count = clit_path("%s/count", tmp), *count_var = clit_path("SP_FAULT_COUNT=%s", count);
    clit_mkdir(parent);

    /* A full run through the shim, counting the writes into the staging directory. */
    const char *vars_count[] = { count_var, NULL };
    clit_result r = pack_shimmed(src, fresh, 0, "16K", vars_count);
    ck_assert_msg(r.status == 0, "pack through the shim: %s", r.err);
    clit_result_free(&r);
    size_t len;
    char *text = (char *)clit_read(count, &len);
    ck_assert_ptr_nonnull(text);
    long writes = atol(text);
    free(text);
    ck_assert_msg(writes > 10 && writes < 2000, "%ld staged writes: is the shim in effect?", writes);
    check_complete(fresh, 48, "unfaulted pack");
    clit_rmrf(fresh);

    /* The dataset a failed pack must leave as it was. */
    r = clit_run("pack", old_src, "-o", out, "--quiet", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    clit_result_free(&r);
    uint64_t old_fp = check_complete(out, 14, "previous dataset");

    const char *const only_ds[] = { "ds", NULL };
    /* Every write when there are few, else 30 spread from the first to the last. */
    long points = writes < 30 ? writes : 30;
    for (long i = 0; i < points; i++) {
        long n = 1 + i * (writes - 1) / (points - 1);
        char at[48], when[96];
        snprintf(at, sizeof at, "SP_FAULT_ENOSPC_AT=%ld", n);
        const char *vars[] = { at, NULL };
        for (int over = 0; over < 2; over++) {
            snprintf(when, sizeof when, "ENOSPC from write %ld of %ld, %s", n, writes,
                     over ? "overwriting a dataset" : "into a new directory");
            r = pack_shimmed(src, over ? out : fresh, over, "16K", vars);
            ck_assert_msg(r.status == 1, "%s: exit status %d, stderr: %s", when, r.status, r.err);
            ck_assert_msg(strncmp(r.err, "shardpack: ", 11) == 0, "%s: %s", when, r.err);
            ck_assert_msg(strstr(r.err, "No space left on device"), "%s: the cause is not said: %s", when, r.err);
            ck_assert_msg(strstr(r.err, "shardpack-tmp/shard-") || strstr(r.err, "shardpack-tmp/manifest.spm"),
                          "%s: no file is named: %s", when, r.err);
            if (n == 1 && over)
                fprintf(stderr, "%s: %s", when, r.err);
            clit_result_free(&r);
            ck_assert_msg(others_in(parent, only_ds) == 0, "%s: temporaries left beside the dataset", when);
            ck_assert_msg(!clit_exists(fresh) || others_in(fresh, NULL) == 0, "%s: files in the new directory", when);
            ck_assert_msg(others_in(out, (const char *const[]){ "manifest.spm", "shard-000000.sps", NULL }) == 0,
                          "%s: the previous dataset's directory changed", when);
            ck_assert_msg(check_complete(out, 14, when) == old_fp, "%s: the previous dataset was replaced", when);
            clit_rmrf(fresh);
        }
    }

    /* Space again: the same pack succeeds, over the old dataset. */
    r = clit_run("pack", src, "-o", out, "--overwrite", "--quiet", NULL);
    ck_assert_msg(r.status == 0, "rerun: %s", r.err);
    clit_result_free(&r);
    ck_assert(check_complete(out, 48, "rerun") != old_fp);
    ck_assert_int_eq(others_in(parent, only_ds), 0);

    free(src);
    free(old_src);
    free(parent);
    free(out);
    free(fresh);
    free(count);
    free(count_var);
}
END_TEST

/* ------------------------------------------------------------------------------------ SIGINT */

/* One shard, so the first fsync is the shard's, in sp_writer_finish after the last sample was
 * added; then the manifest's, the staging directory's, and the parent's after the rename. A SIGINT
 * at any of the first three keeps the dataset from appearing; at the fourth it is already there. */
START_TEST(interrupted_in_final_flush)
{
    char *src = make_images("src", 24, 5);
    char *parent = clit_path("%s/o", tmp), *out = clit_path("%s/ds", parent);
    clit_mkdir(parent);
    for (int k = 1; k <= 5; k++) {
        char at[48];
        snprintf(at, sizeof at, "SP_FAULT_SIGINT_AT_FSYNC=%d", k);
        const char *vars[] = { at, NULL };
        clit_result r = pack_shimmed(src, out, 0, "64M", vars);
        if (k <= 3) {
            ck_assert_msg(r.status == 1, "SIGINT at fsync %d: exit %d, stderr: %s", k, r.status, r.err);
            ck_assert_msg(strstr(r.err, "shardpack: interrupted; nothing was published"), "fsync %d: %s", k, r.err);
            ck_assert_msg(!clit_exists(out), "SIGINT at fsync %d: the dataset was published", k);
            ck_assert_msg(others_in(parent, NULL) == 0, "SIGINT at fsync %d: temporaries left", k);
        } else {
            ck_assert_msg(r.status == 0, "SIGINT at fsync %d: exit %d, stderr: %s", k, r.status, r.err);
            int late = strstr(r.err, "interrupted after the dataset was published") != NULL;
            ck_assert_msg(late == (k == 4), "SIGINT at fsync %d: %s", k, r.err);
            check_complete(out, 24, "published before the SIGINT");
            clit_rmrf(out);
        }
        clit_result_free(&r);
    }
    free(src);
    free(parent);
    free(out);
}
END_TEST

/* ------------------------------------------------------------------------------------ SIGKILL */

static pid_t spawn_pack(const char *src, const char *out)
{
    const char *bin = getenv("SHARDPACK_CLI");
    ck_assert_ptr_nonnull(bin);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_RDWR);
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(bin, bin, "pack", src, "-o", out, "--block-size", "4K", "--shard-size", "32K", "--threads", "2",
              "--quiet", (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int wait_status(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        ck_assert_int_eq(errno, EINTR);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int is_dataset_name(const char *name)
{
    size_t n = strlen(name);
    return !strcmp(name, "manifest.spm") || (!strncmp(name, "shard-", 6) && n > 10 && !strcmp(name + n - 4, ".sps"));
}

/* After a kill: the destination is absent, or holds nothing that opens, or the complete dataset.
 * Returns 1 when the dataset was published. */
static int check_after_kill(const char *parent, const char *out, const char *when)
{
    DIR *d = opendir(parent);
    ck_assert_ptr_nonnull(d);
    struct dirent *de;
    while ((de = readdir(d)))
        ck_assert_msg(de->d_name[0] == '.' || !strcmp(de->d_name, "ds"), "%s: %s beside the dataset", when,
                      de->d_name);
    closedir(d);
    if (!clit_exists(out))
        return 0;
    sp_dataset *ds;
    if (sp_dataset_open(out, NULL, &ds) == 0) {
        sp_dataset_close(ds);
        check_complete(out, 300, when);
        return 1;
    }
    d = opendir(out);
    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        ck_assert_msg(is_dataset_name(de->d_name), "%s: unexpected %s in the destination", when, de->d_name);
        char *p = clit_path("%s/%s", out, de->d_name);
        ck_assert_msg(sp_dataset_open(p, NULL, &ds) != 0, "%s: %s opens although nothing was published", when, p);
        free(p);
    }
    closedir(d);
    return 0;
}

START_TEST(killed_at_random_moments)
{
    char *src = make_images("src", 300, 5);
    char *parent = clit_path("%s/o", tmp), *out = clit_path("%s/ds", parent);
    clit_mkdir(parent);
    double t0 = now();
    int st = wait_status(spawn_pack(src, out));
    double full = now() - t0;
    ck_assert_int_eq(st, 0);
    check_complete(out, 300, "uninterrupted pack");
    clit_rmrf(out);
    int killed = 0, published = 0;
    uint64_t s = g_seed;
    for (int k = 0; k < 20; k++) {
        double delay = full * (double)(mix(s++) % 1100) / 1000.0;
        char when[96];
        snprintf(when, sizeof when, "run %d, killed after %.1f of %.1f ms (seed %llu)", k, delay * 1e3, full * 1e3,
                 (unsigned long long)g_seed);
        pid_t pid = spawn_pack(src, out);
        struct timespec ts = { (time_t)delay, (long)((delay - (double)(time_t)delay) * 1e9) };
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        st = wait_status(pid);
        ck_assert_msg(st == 0 || st == 128 + SIGKILL, "%s: exit status %d", when, st);
        killed += st != 0;
        int committed = check_after_kill(parent, out, when);
        published += committed;
        /* A rerun succeeds (replacing a published dataset needs --overwrite) and clears the
         * killed run's temporaries. */
        clit_result r = committed ? clit_run("pack", src, "-o", out, "--block-size", "4K", "--shard-size", "32K",
                                             "--overwrite", "--quiet", NULL)
                                  : clit_run("pack", src, "-o", out, "--block-size", "4K", "--shard-size", "32K",
                                             "--quiet", NULL);
        ck_assert_msg(r.status == 0, "%s: rerun failed: %s", when, r.err);
        clit_result_free(&r);
        check_complete(out, 300, when);
        const char *const only_ds[] = { "ds", NULL };
        ck_assert_msg(others_in(parent, only_ds) == 0, "%s: temporaries left after the rerun", when);
        clit_rmrf(out);
    }
    fprintf(stderr, "pack killed at random moments: %d of 20 runs killed, %d had published (a full pack: %.0f ms)\n",
            killed, published, full * 1e3);
    ck_assert_msg(killed >= 5, "only %d of 20 runs were killed before the end", killed);
    free(src);
    free(parent);
    free(out);
}
END_TEST

int main(void)
{
    const char *s = getenv("SP_TEST_SEED");
    g_seed = s && *s ? strtoull(s, NULL, 10) : 0xc11f;
    Suite *suite = suite_create("cli_faults");
    TCase *tc = tcase_create("faults");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, disk_full);
    tcase_add_test(tc, killed_at_random_moments);
    tcase_add_test(tc, interrupted_in_final_flush);
    suite_add_tcase(suite, tc);
    SRunner *sr = srunner_create(suite);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed)
        fprintf(stderr, "rerun with SP_TEST_SEED=%llu to reproduce\n", (unsigned long long)g_seed);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
