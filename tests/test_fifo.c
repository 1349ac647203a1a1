/* test_fifo.c - a FIFO where a data file is expected (the path opened, manifest.spm, a shard named by the manifest, a shard of a directory without one, a shard in a list) makes open, read_block and verify fail at once naming the file and "not a regular file (a FIFO)", instead of waiting in open() for a writer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"

static uint64_t g_seed;

#define FIFO_WHY "not a regular file (a FIFO)"

/* A small dataset of several shards in a new directory (malloc'd path). */
static char *make_dataset(void)
{
    tu_data d = tu_image_data(300, g_seed, 200);
    char *dir = tu_tmpdir("fifo");
    sp_params *p = tu_params("validate_images", "0", "shard_size", "16K", "block_size", "4K", NULL);
    sp_write_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(tu_write_dataset(dir, &d, p, &st), 0);
    ck_assert_uint_gt(st.shards, 2);
    sp_params_destroy(p);
    sp_schema_destroy(d.schema);
    return dir;
}

/* Replaces dir/name with a FIFO no one writes to; returns its path (malloc'd). */
static char *fifo_in_place(const char *dir, const char *name)
{
    char *path = tu_join(dir, name);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(mkfifo(path, 0644), 0);
    return path;
}

static void expect_fifo_msg(const char *msg, const char *path)
{
    ck_assert_msg(strstr(msg, path), "message does not name %s: %s", path, msg);
    ck_assert_msg(strstr(msg, FIFO_WHY), "message: %s", msg);
}

static char g_fault[1024];
static void keep_fault(const sp_fault *f, void *user)
{
    (void)user;
    if (!g_fault[0])
        snprintf(g_fault, sizeof g_fault, "%s: %s", f->file, f->message);
}

START_TEST(path_is_fifo)
{
    char *dir = tu_tmpdir("fifo-path");
    char *path = tu_join(dir, "data.sps");
    ck_assert_int_eq(mkfifo(path, 0644), 0);
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(path, NULL, &ds), SP_EIO);
    expect_fifo_msg(sp_last_error(), path);
    const char *paths[] = { path };
    ck_assert_int_eq(sp_dataset_open_shards(paths, 1, NULL, &ds), SP_EIO);
    expect_fifo_msg(sp_last_error(), path);
    sp_verify_report rep = { .struct_size = sizeof rep };
    g_fault[0] = 0;
    int rc = sp_verify(path, NULL, keep_fault, NULL, &rep);
    ck_assert_msg(rc != 0, "verify passed a FIFO");
    expect_fifo_msg(g_fault[0] ? g_fault : sp_last_error(), path);
    free(path);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(manifest_is_fifo)
{
    char *dir = make_dataset();
    char *man = fifo_in_place(dir, "manifest.spm");
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(dir, NULL, &ds), SP_EIO);
    expect_fifo_msg(sp_last_error(), man);
    ck_assert_int_eq(sp_dataset_open(man, NULL, &ds), SP_EIO);
    expect_fifo_msg(sp_last_error(), man);
    sp_verify_report rep = { .struct_size = sizeof rep };
    g_fault[0] = 0;
    ck_assert_int_ne(sp_verify(dir, NULL, keep_fault, NULL, &rep), 0);
    expect_fifo_msg(g_fault[0] ? g_fault : sp_last_error(), man);
    free(man);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* Shards named by a manifest open lazily: the FIFO is found by the first read of its block. */
START_TEST(shard_is_fifo)
{
    char *dir = make_dataset();
    char *shard = fifo_in_place(dir, "shard-000001.sps");
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(dir, NULL, &ds), 0);
    sp_block *b;
    ck_assert_int_eq(sp_dataset_read_block(ds, 0, &b), 0);
    sp_block_free(b);
    int rc = SP_OK;
    for (uint64_t k = 1; rc == SP_OK && k < sp_dataset_num_blocks(ds); k++)
        if ((rc = sp_dataset_read_block(ds, k, &b)) == SP_OK)
            sp_block_free(b);
    ck_assert_int_eq(rc, SP_EIO);
    expect_fifo_msg(sp_dataset_errmsg(ds), shard);
    sp_dataset_close(ds);
    sp_verify_report rep = { .struct_size = sizeof rep };
    g_fault[0] = 0;
    ck_assert_int_eq(sp_verify(dir, NULL, keep_fault, NULL, &rep), SP_ECORRUPT);
    expect_fifo_msg(g_fault, shard);
    /* Without the manifest, every shard is opened when the directory is. */
    char *man = tu_join(dir, "manifest.spm");
    ck_assert_int_eq(unlink(man), 0);
    ck_assert_int_eq(sp_dataset_open(dir, NULL, &ds), SP_EIO);
    expect_fifo_msg(sp_last_error(), shard);
    free(man);
    free(shard);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0xf1f0);
    char *probe = tu_tmpdir("fifo-probe");
    char *p = tu_join(probe, "f");
    bool can = mkfifo(p, 0644) == 0;
    free(p);
    tu_rmtree(probe);
    free(probe);
    if (!can) {
        fprintf(stderr, "skipped: cannot make a FIFO in the scratch directory\n");
        return 77;
    }
    Suite *s = suite_create("fifo");
    TCase *tc = tu_tcase(s, "fifo", 20);
    tcase_add_test(tc, path_is_fifo);
    tcase_add_test(tc, manifest_is_fifo);
    tcase_add_test(tc, shard_is_fifo);
    return tu_run(s, g_seed);
}
