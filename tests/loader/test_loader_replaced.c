/* test_loader_replaced.c - files changed under a running loader: the dataset repacked over (pack --overwrite), a shard renamed over by another dataset's, or a shard turned into a FIFO end in SP_ECHANGED "replaced" or a "not a regular file (a FIFO)" error naming the shard, never a checksum mismatch or a hang, and close returns at once. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lt_util.h"
#include "test_util.h"

static uint64_t g_seed;
static char g_seedstr[32];
static lt_ds g_ds, g_other; /* the same geometry, different contents */

#define N_SAMPLES 4000
#define WAIT_MS 20000

/* A loader that reads little ahead, in order, so most shards are first opened after the change. */
static sp_loader *open_slow(const lt_ds *d)
{
    sp_loader *l;
    int rc = lt_open(d->dir, &l, "shuffle", "false", "shuffle_window", "1", "prefetch", "1", "batch_size", "16",
                     "seed", g_seedstr, NULL);
    ck_assert_msg(rc == 0, "open: %s", sp_last_error());
    return l;
}

/* Takes two good batches, so the reader is running; then the caller changes files. */
static void start(sp_loader *l, const lt_ds *d, lt_rec *r)
{
    ck_assert_int_eq(lt_drain(l, d, r, 2, WAIT_MS), 0);
    ck_assert_uint_eq(r->bad, 0);
}

/* Drains to the end and expects code with a message naming a shard of d and containing what;
 * closes the loader and returns a copy of the message (static). */
static const char *expect_end(sp_loader *l, const lt_ds *d, lt_rec *r, int code, const char *what)
{
    double t0 = lt_now();
    int rc = lt_drain(l, d, r, UINT64_MAX, WAIT_MS);
    const char *msg = sp_loader_errmsg(l);
    ck_assert_msg(rc == code, "ended with %s (want %s): %s", sp_error_name(rc), sp_error_name(code), msg);
    ck_assert_msg(strstr(msg, d->dir) && strstr(msg, ".sps"), "message names no shard: %s", msg);
    ck_assert_msg(strstr(msg, what), "message lacks \"%s\": %s", what, msg);
    ck_assert_msg(!strstr(msg, "checksum"), "reported as damage: %s", msg);
    /* Every batch delivered before the error holds the data the loader opened. */
    ck_assert_msg(r->bad == 0, "%s", r->why);
    static char copy[1024];
    snprintf(copy, sizeof copy, "%s", msg);
    t0 = lt_now();
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_msg(lt_now() - t0 < 5, "close took %.1f s", lt_now() - t0);
    return copy;
}

/* pack --overwrite publishes the new dataset by exchanging it with the old directory. */
START_TEST(repacked_over)
{
    lt_ds c, o;
    ck_assert_int_eq(lt_clone(&g_ds, &c, "replaced-a"), 0);
    ck_assert_int_eq(lt_clone(&g_other, &o, "replaced-b"), 0);
    sp_loader *l = open_slow(&c);
    lt_rec r = { 0 };
    start(l, &c, &r);
    ck_assert_int_eq(renameat2(AT_FDCWD, o.dir, AT_FDCWD, c.dir, RENAME_EXCHANGE), 0);
    /* a shard whose index was read before the exchange: "replaced since it was opened"; one first
     * read after it (shards' indexes are read at first use): "the dataset was replaced" */
    expect_end(l, &c, &r, SP_ECHANGED, "replaced");
    lt_rec_free(&r);
    lt_ds_free(&o);
    lt_ds_free(&c);
}
END_TEST

/* The last shard renamed over by the same shard of another dataset of the same geometry. */
START_TEST(shard_renamed_over)
{
    lt_ds c, o;
    ck_assert_int_eq(lt_clone(&g_ds, &c, "replaced-c"), 0);
    ck_assert_int_eq(lt_clone(&g_other, &o, "replaced-d"), 0);
    char **mine, **theirs;
    size_t n, m;
    mine = tu_list_shards(c.dir, &n);
    theirs = tu_list_shards(o.dir, &m);
    ck_assert_uint_eq(n, m);
    ck_assert_uint_eq(tu_file_size(mine[n - 1]), tu_file_size(theirs[n - 1]));
    sp_loader *l = open_slow(&c);
    lt_rec r = { 0 };
    start(l, &c, &r);
    ck_assert_int_eq(rename(theirs[n - 1], mine[n - 1]), 0);
    ck_assert_msg(strstr(expect_end(l, &c, &r, SP_ECHANGED, "replaced since it was opened"), mine[n - 1]),
                  "the message names another shard");
    tu_free_list(mine, n);
    tu_free_list(theirs, m);
    lt_rec_free(&r);
    lt_ds_free(&o);
    lt_ds_free(&c);
}
END_TEST

/* A FIFO in place of a shard: a blocking open() would wait for a writer forever, and close with it. */
START_TEST(shard_becomes_fifo)
{
    lt_ds c;
    ck_assert_int_eq(lt_clone(&g_ds, &c, "replaced-fifo"), 0);
    size_t n;
    char **shards = tu_list_shards(c.dir, &n);
    sp_loader *l = open_slow(&c);
    lt_rec r = { 0 };
    start(l, &c, &r);
    ck_assert_int_eq(unlink(shards[n - 1]), 0);
    ck_assert_int_eq(mkfifo(shards[n - 1], 0644), 0);
    ck_assert_msg(strstr(expect_end(l, &c, &r, SP_EIO, "not a regular file (a FIFO)"), shards[n - 1]),
                  "the message names another shard");
    tu_free_list(shards, n);
    lt_rec_free(&r);
    lt_ds_free(&c);
}
END_TEST

/* Reads through a dataset handle see the same: a shard whose index was read before the change and
 * whose blocks are read after it is replaced, not damaged (a shard already read keeps reading the
 * file it opened; one not opened at all is checked against the manifest). */
START_TEST(dataset_read_after_replace)
{
    lt_ds c, o;
    ck_assert_int_eq(lt_clone(&g_ds, &c, "replaced-e"), 0);
    ck_assert_int_eq(lt_clone(&g_other, &o, "replaced-f"), 0);
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(c.dir, NULL, &ds), 0);
    sp_block *b;
    ck_assert_int_eq(sp_dataset_read_block(ds, 0, &b), 0); /* the first shard is read now */
    sp_block_free(b);
    uint64_t last = sp_dataset_num_blocks(ds) - 1;
    sp_block_info bi = { .struct_size = sizeof bi };
    ck_assert_int_eq(sp_dataset_block_info(ds, last, &bi), 0); /* its shard's index is read */
    ck_assert_uint_ne(bi.shard, 0);
    ck_assert_int_eq(renameat2(AT_FDCWD, o.dir, AT_FDCWD, c.dir, RENAME_EXCHANGE), 0);
    ck_assert_int_eq(sp_dataset_read_block(ds, 0, &b), 0);
    sp_block_free(b);
    int rc = sp_dataset_read_block(ds, last, &b);
    ck_assert_msg(rc == SP_ECHANGED, "%s: %s", sp_error_name(rc), sp_dataset_errmsg(ds));
    ck_assert_msg(strstr(sp_dataset_errmsg(ds), "replaced since it was opened"), "%s", sp_dataset_errmsg(ds));
    sp_dataset_close(ds);
    lt_ds_free(&o);
    lt_ds_free(&c);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x9e91ace);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    if (lt_make(&g_ds, "replaced", N_SAMPLES, 64, g_seed, "4K", "16K") ||
        lt_make(&g_other, "replaced-other", N_SAMPLES, 64, g_seed + 1, "4K", "16K")) {
        fprintf(stderr, "cannot write the test datasets\n");
        return 99;
    }
    Suite *s = suite_create("loader_replaced");
    TCase *tc = tu_tcase(s, "replaced", 60);
    tcase_add_test(tc, repacked_over);
    tcase_add_test(tc, shard_renamed_over);
    tcase_add_test(tc, shard_becomes_fifo);
    tcase_add_test(tc, dataset_read_after_replace);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_ds);
    lt_ds_free(&g_other);
    return rc;
}
