/* test_stage_mount.c - a destination that is a mount point (tmpfs or bind mount) is refused when the writer opens, before any sample, and when it appears while writing; a new directory inside it is written as usual. Needs root (a private mount namespace); skipped otherwise. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"

static uint64_t g_seed;

static tu_data small_data(void)
{
    tu_data d = { 0 };
    d.schema = sp_schema_create();
    ck_assert(sp_schema_add(d.schema, "b", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL) == 0);
    ck_assert(sp_schema_add(d.schema, "l", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) == 0);
    d.seed = g_seed;
    d.nsamples = 300;
    d.var_max = 200;
    return d;
}

static void mount_tmpfs(const char *at)
{
    ck_assert_msg(mount("tmpfs", at, "tmpfs", 0, "size=4m") == 0, "mount tmpfs at %s: %s", at, strerror(errno));
}

static void unmount(const char *at) { ck_assert_msg(umount2(at, MNT_DETACH) == 0, "umount %s: %s", at, strerror(errno)); }

/* Opening a writer on the mount point mp fails at once with SP_EEXIST and a message that names
 * mp and the way out, and leaves nothing in mp or beside it (parent holds only mp). */
static void expect_refused_at_open(const char *parent, const char *mp, const char *what, int overwrite)
{
    tu_data d = small_data();
    sp_params *p = tu_params("overwrite", overwrite ? "1" : "0", NULL);
    size_t before = tu_count_files(mp, NULL);
    sp_writer *w = (sp_writer *)&w;
    int rc = sp_writer_open(mp, d.schema, p, &w);
    ck_assert_msg(rc == SP_EEXIST, "%s: open returned %s (%s)", what, sp_error_name(rc), sp_last_error());
    ck_assert_ptr_null(w);
    const char *msg = sp_last_error();
    ck_assert_msg(strstr(msg, mp) && strstr(msg, "is a mount point") && strstr(msg, "/NAME)"), "%s: %s", what, msg);
    ck_assert_msg(tu_count_others(parent, "mp") == 0, "%s: the writer left something beside the mount point", what);
    ck_assert_uint_eq(tu_count_files(mp, NULL), before);
    ck_assert_uint_eq(tu_count_hidden(mp), 0);
    sp_params_destroy(p);
    sp_schema_destroy(d.schema);
}

START_TEST(tmpfs_refused_at_open)
{
    char *parent = tu_tmpdir("stagemount");
    char *mp = tu_join(parent, "mp");
    ck_assert(mkdir(mp, 0755) == 0);
    mount_tmpfs(mp);
    expect_refused_at_open(parent, mp, "tmpfs", 0);
    expect_refused_at_open(parent, mp, "tmpfs, overwrite", 1);
    char *slash = malloc(strlen(mp) + 2);
    sprintf(slash, "%s/", mp); /* a trailing slash names the same directory */
    tu_data d = small_data();
    sp_writer *w;
    ck_assert_int_eq(sp_writer_open(slash, d.schema, NULL, &w), SP_EEXIST);
    /* The advice works: a new directory inside the mount point is written and opens. */
    char *inside = tu_join(mp, "NAME");
    ck_assert_msg(tu_write_dataset(inside, &d, NULL, NULL) == 0, "%s", sp_last_error());
    sp_dataset *ds;
    ck_assert_msg(sp_dataset_open(inside, NULL, &ds) == 0, "%s", sp_last_error());
    tu_check_dataset(ds, &d, 0);
    sp_dataset_close(ds);
    unmount(mp);
    tu_rmtree(parent);
    free(inside);
    free(slash);
    free(mp);
    free(parent);
    sp_schema_destroy(d.schema);
}
END_TEST

/* A bind mount within one file system has the device of its parent: the kernel's mount-root
 * attribute tells. A dataset there is not overwritten either, and stays as it was. */
START_TEST(bind_mount_refused_at_open)
{
    char *src = tu_tmpdir("stagemount-src");
    char *ds_dir = tu_join(src, "ds");
    tu_data d = small_data();
    ck_assert_msg(tu_write_dataset(ds_dir, &d, NULL, NULL) == 0, "%s", sp_last_error());
    char *parent = tu_tmpdir("stagemount");
    char *mp = tu_join(parent, "mp");
    ck_assert(mkdir(mp, 0755) == 0);
    ck_assert_msg(mount(ds_dir, mp, NULL, MS_BIND, NULL) == 0, "bind mount: %s", strerror(errno));
    struct stat a, b;
    ck_assert(stat(mp, &a) == 0 && stat(parent, &b) == 0);
    ck_assert_msg(a.st_dev == b.st_dev, "the bind mount is on another device: this case tests nothing new");
    size_t n;
    char **shards = tu_list_shards(mp, &n);
    size_t size0;
    uint8_t *shard0 = tu_read_file(shards[0], &size0);
    expect_refused_at_open(parent, mp, "bind mount holding a dataset", 0);
    expect_refused_at_open(parent, mp, "bind mount holding a dataset, overwrite", 1);
    size_t size1;
    uint8_t *again = tu_read_file(shards[0], &size1);
    ck_assert(size0 == size1 && memcmp(shard0, again, size0) == 0);
    sp_dataset *ds;
    ck_assert_msg(sp_dataset_open(mp, NULL, &ds) == 0, "%s", sp_last_error());
    tu_check_dataset(ds, &d, 0);
    sp_dataset_close(ds);
    unmount(mp);
    free(again);
    free(shard0);
    tu_free_list(shards, n);
    tu_rmtree(parent);
    tu_rmtree(src);
    free(mp);
    free(parent);
    free(ds_dir);
    free(src);
    sp_schema_destroy(d.schema);
}
END_TEST

/* A mount point that appears at the destination while the dataset is written: finish refuses it
 * the same way (not "cannot publish: Device or resource busy"), and destroy removes the staging
 * directory. */
START_TEST(mounted_while_writing)
{
    char *parent = tu_tmpdir("stagemount");
    char *mp = tu_join(parent, "mp");
    tu_data d = small_data();
    sp_writer *w;
    ck_assert_msg(sp_writer_open(mp, d.schema, NULL, &w) == 0, "%s", sp_last_error());
    ck_assert(tu_add_samples(w, &d, 0, d.nsamples) == 0);
    ck_assert(mkdir(mp, 0755) == 0);
    mount_tmpfs(mp);
    int rc = sp_writer_finish(w);
    ck_assert_msg(rc == SP_EEXIST, "finish returned %s (%s)", sp_error_name(rc), sp_last_error());
    ck_assert_msg(strstr(sp_writer_errmsg(w), "is a mount point"), "%s", sp_writer_errmsg(w));
    sp_writer_destroy(w);
    ck_assert_uint_eq(tu_count_others(parent, "mp"), 0);
    ck_assert_uint_eq(tu_count_files(mp, NULL), 0);
    unmount(mp);
    tu_rmtree(parent);
    free(mp);
    free(parent);
    sp_schema_destroy(d.schema);
}
END_TEST

/* A mount namespace of this process's own, so that no mount outlives it, even when a test fails
 * before unmounting; and a trial tmpfs mount. NULL, or why the tests cannot run. */
static const char *cannot_mount(void)
{
    static char why[256];
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        snprintf(why, sizeof why, "no private mount namespace (needs root or CAP_SYS_ADMIN): %s", strerror(errno));
        return why;
    }
    char *dir = tu_tmpdir("stagemount-probe");
    int r = mount("tmpfs", dir, "tmpfs", 0, "size=1m");
    int e = errno;
    if (r == 0)
        umount2(dir, MNT_DETACH);
    tu_rmtree(dir);
    free(dir);
    if (r != 0) {
        snprintf(why, sizeof why, "cannot mount a tmpfs: %s", strerror(e));
        return why;
    }
    return NULL;
}

int main(void)
{
    g_seed = tu_seed(0x5747);
    const char *why = cannot_mount();
    if (why) {
        fprintf(stderr, "skipped: %s\n", why);
        return 77;
    }
    Suite *s = suite_create("stage_mount");
    TCase *tc = tu_tcase(s, "stage_mount", 30);
    tcase_add_test(tc, tmpfs_refused_at_open);
    tcase_add_test(tc, bind_mount_refused_at_open);
    tcase_add_test(tc, mounted_while_writing);
    return tu_run(s, g_seed);
}
