/* test_stage_noexchange.c - publication where renameat2(RENAME_EXCHANGE) is refused (NFS, some FUSE/overlay): only EINVAL/ENOSYS/ENOTSUP take the two-rename fallback, a writer killed between the two renames leaves the old dataset aside, a reader's message names it and the next writer moves it back, an aside dataset is never deleted before a new one is published. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

static uint64_t g_seed;

/* ------------------------------------------------------------------------------------ hooks
 * Linked with -Wl,--wrap=renameat2,--wrap=renameat against the internal library: renameat2 fails
 * with g_exchange_errno (0: the real call), and a child can die right after the rename that moves
 * the old dataset aside. */

static int g_exchange_errno;
static bool g_kill_after_aside;

int __real_renameat2(int fa, const char *a, int fb, const char *b, unsigned f);
int __wrap_renameat2(int fa, const char *a, int fb, const char *b, unsigned f);
int __wrap_renameat2(int fa, const char *a, int fb, const char *b, unsigned f)
{
    if (g_exchange_errno) {
        errno = g_exchange_errno;
        return -1;
    }
    return __real_renameat2(fa, a, fb, b, f);
}

int __real_renameat(int fa, const char *a, int fb, const char *b);
int __wrap_renameat(int fa, const char *a, int fb, const char *b);
int __wrap_renameat(int fa, const char *a, int fb, const char *b)
{
    int r = __real_renameat(fa, a, fb, b);
    size_t n = strlen(b);
    if (r == 0 && g_kill_after_aside && n > 4 && strcmp(b + n - 4, ".old") == 0)
        raise(SIGKILL);
    return r;
}

/* ------------------------------------------------------------------------------------ helpers */

static sp_params *params(bool overwrite)
{
    return tu_params("validate_images", "0", "shard_size", "64K", "block_size", "8K", "threads", "2", "overwrite",
                     overwrite ? "1" : "0", NULL);
}

static void write_ok(const char *dir, const tu_data *d, bool overwrite)
{
    sp_params *p = params(overwrite);
    int rc = tu_write_dataset(dir, d, p, NULL);
    ck_assert_msg(rc == 0, "writing %s: %s (%s)", dir, sp_error_name(rc), sp_last_error());
    sp_params_destroy(p);
}

/* dir holds exactly d, and verifies. */
static void check_holds(const char *dir, const tu_data *d)
{
    sp_dataset *ds;
    ck_assert_msg(sp_dataset_open(dir, NULL, &ds) == 0, "%s", sp_last_error());
    ck_assert_uint_eq(sp_dataset_num_samples(ds), d->nsamples);
    tu_check_dataset(ds, d, 0);
    sp_dataset_close(ds);
    ck_assert_msg(sp_verify(dir, NULL, NULL, NULL, NULL) == 0, "%s", sp_last_error());
}

/* PARENT/.ds.shardpack-tmp.old, malloc'd. */
static char *aside_of(const char *parent) { return tu_join(parent, ".ds.shardpack-tmp.old"); }

/* A child overwrites dir with d, renameat2 failing with EINVAL, and is killed right after the old
 * dataset stepped aside. */
static void killed_between_renames(const char *dir, const tu_data *d)
{
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        g_exchange_errno = EINVAL;
        g_kill_after_aside = true;
        sp_params *p = params(true);
        tu_write_dataset(dir, d, p, NULL);
        _exit(0);
    }
    int status;
    ck_assert(waitpid(pid, &status, 0) == pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the writer was not killed between the renames");
}

/* ------------------------------------------------------------------------------------ tests */

START_TEST(fallback_only_without_exchange)
{
    tu_data a = tu_image_data(400, g_seed, 1000), b = tu_image_data(150, g_seed + 1, 1000);
    char *parent;
    char *dir = tu_dataset_dir("noexch", &parent);
    char *aside = aside_of(parent);
    write_ok(dir, &a, false);
    /* The errors that mean "no RENAME_EXCHANGE here": published by two renames, nothing left. */
    const int unsupported[] = { EINVAL, ENOSYS, ENOTSUP };
    for (size_t i = 0; i < 3; i++) {
        g_exchange_errno = unsupported[i];
        const tu_data *d = i % 2 ? &a : &b;
        write_ok(dir, d, true);
        check_holds(dir, d);
        ck_assert_uint_eq(tu_count_others(parent, "ds"), 0);
    }
    /* Any other error is an error: nothing published, the old dataset untouched and in place. */
    const int others[] = { EACCES, EIO, EBUSY, EXDEV };
    for (size_t i = 0; i < 4; i++) {
        g_exchange_errno = others[i];
        sp_params *p = params(true);
        int rc = tu_write_dataset(dir, &a, p, NULL);
        sp_params_destroy(p);
        ck_assert_msg(rc == SP_EIO, "renameat2 failing with %s: %s (%s)", strerror(others[i]), sp_error_name(rc),
                      sp_last_error());
        ck_assert_msg(strstr(sp_last_error(), strerror(others[i])), "%s", sp_last_error());
        check_holds(dir, &b);
        ck_assert_uint_eq(tu_count_others(parent, "ds"), 0);
    }
    g_exchange_errno = 0;
    tu_rmtree(parent);
    free(parent);
    free(dir);
    free(aside);
    sp_schema_destroy(a.schema);
    sp_schema_destroy(b.schema);
}
END_TEST

START_TEST(killed_between_renames_restored)
{
    tu_data a = tu_image_data(400, g_seed + 2, 1000), b = tu_image_data(150, g_seed + 3, 1000),
            c = tu_image_data(90, g_seed + 4, 1000);
    for (int overwrite = 0; overwrite < 2; overwrite++) {
        char *parent;
        char *dir = tu_dataset_dir("noexch", &parent);
        char *aside = aside_of(parent);
        write_ok(dir, &a, false);
        killed_between_renames(dir, &b);
        /* the state the kill leaves: no destination, the old dataset aside */
        ck_assert(!tu_exists(dir));
        ck_assert(tu_exists(aside));
        /* a reader says where the dataset is */
        sp_dataset *ds = NULL;
        ck_assert_int_eq(sp_dataset_open(dir, NULL, &ds), SP_ENOENT);
        ck_assert_msg(strstr(sp_last_error(), aside) && strstr(sp_last_error(), "moves it back"), "%s",
                      sp_last_error());
        /* The next writer moves it back before anything else: without overwrite it then refuses
         * the directory, naming what happened; with overwrite it replaces it. */
        g_exchange_errno = EINVAL;
        sp_params *p = params(overwrite);
        sp_writer *w = NULL;
        int rc = sp_writer_open(dir, c.schema, p, &w);
        if (!overwrite) {
            ck_assert_msg(rc == SP_EEXIST, "%s (%s)", sp_error_name(rc), sp_last_error());
            ck_assert_ptr_null(w);
            ck_assert_msg(strstr(sp_last_error(), ".ds.shardpack-tmp.old"), "%s", sp_last_error());
            ck_assert(!tu_exists(aside));
            check_holds(dir, &a);
            ck_assert_uint_eq(tu_count_others(parent, "ds"), 0);
        } else {
            ck_assert_msg(rc == 0, "%s", sp_last_error());
            ck_assert(!tu_exists(aside));
            check_holds(dir, &a); /* back in place while the new one is written */
            ck_assert(tu_add_samples(w, &c, 0, c.nsamples) == 0);
            ck_assert_msg(sp_writer_finish(w) == 0, "%s", sp_last_error());
            sp_writer_destroy(w);
            check_holds(dir, &c);
            ck_assert_uint_eq(tu_count_others(parent, "ds"), 0);
        }
        g_exchange_errno = 0;
        sp_params_destroy(p);
        tu_rmtree(parent);
        free(parent);
        free(dir);
        free(aside);
    }
    sp_schema_destroy(a.schema);
    sp_schema_destroy(b.schema);
    sp_schema_destroy(c.schema);
}
END_TEST

/* An aside dataset found at publication (the destination holding another one) is only deleted
 * when it is not whole (the remains of a replaced dataset being deleted). */
START_TEST(aside_kept_unless_debris)
{
    tu_data a = tu_image_data(400, g_seed + 5, 1000), b = tu_image_data(150, g_seed + 6, 1000);
    char *parent;
    char *dir = tu_dataset_dir("noexch", &parent);
    char *aside = aside_of(parent);
    write_ok(dir, &b, false);
    write_ok(aside, &a, false); /* a whole dataset under the aside name */
    g_exchange_errno = EINVAL;
    sp_params *p = params(true);
    int rc = tu_write_dataset(dir, &a, p, NULL);
    ck_assert_msg(rc == SP_EEXIST, "%s (%s)", sp_error_name(rc), sp_last_error());
    ck_assert_msg(strstr(sp_last_error(), ".ds.shardpack-tmp.old"), "%s", sp_last_error());
    check_holds(dir, &b);
    check_holds(aside, &a);
    /* a shard missing: debris, removed, and the publication goes on */
    size_t n;
    char **shards = tu_list_shards(aside, &n);
    ck_assert_uint_gt(n, 1);
    ck_assert(unlink(shards[0]) == 0);
    tu_free_list(shards, n);
    ck_assert_msg(tu_write_dataset(dir, &a, p, NULL) == 0, "%s", sp_last_error());
    check_holds(dir, &a);
    ck_assert(!tu_exists(aside));
    ck_assert_uint_eq(tu_count_others(parent, "ds"), 0);
    /* A destination missing with the remains of an aside dataset: the writer goes on, leaving them. */
    write_ok(aside, &b, false);
    shards = tu_list_shards(aside, &n);
    ck_assert(unlink(shards[n - 1]) == 0);
    tu_free_list(shards, n);
    tu_rmtree(dir);
    ck_assert_msg(tu_write_dataset(dir, &b, p, NULL) == 0, "%s", sp_last_error());
    check_holds(dir, &b);
    ck_assert(tu_exists(aside));
    g_exchange_errno = 0;
    sp_params_destroy(p);
    tu_rmtree(parent);
    free(parent);
    free(dir);
    free(aside);
    sp_schema_destroy(a.schema);
    sp_schema_destroy(b.schema);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x5eed0027);
    Suite *s = suite_create("stage_noexchange");
    TCase *tc = tu_tcase(s, "noexchange", 60);
    tcase_add_test(tc, fallback_only_without_exchange);
    tcase_add_test(tc, killed_between_renames_restored);
    tcase_add_test(tc, aside_kept_unless_debris);
    return tu_run(s, g_seed);
}
