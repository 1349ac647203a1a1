/* test_manifest.c - the manifest: lazy shard opening, agreement with its shards, replaced or missing shards, a whole dataset replaced while being read or verified (SP_ECHANGED, not corruption), fingerprints, limits, shard lists (a shard given twice is refused). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "test_util.h"

static uint64_t g_seed;

static tu_data make_data(uint64_t seed, uint64_t n)
{
    tu_data d = { 0 };
    d.schema = sp_schema_create();
    uint64_t shape[2] = { 4, 4 };
    ck_assert(sp_schema_add(d.schema, "x", SP_FIELD_TENSOR, SP_DTYPE_F32, 2, shape) == 0);
    ck_assert(sp_schema_add(d.schema, "b", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL) == 0);
    d.seed = seed;
    d.nsamples = n;
    d.var_max = 500;
    return d;
}

static char *write_data(const tu_data *d, const char *tag)
{
    char *dir = tu_tmpdir(tag);
    sp_params *p = tu_params("shard_size", "64K", "block_size", "4K", NULL);
    ck_assert_msg(tu_write_dataset(dir, d, p, NULL) == 0, "%s", sp_last_error());
    sp_params_destroy(p);
    return dir;
}

/* Opening through the manifest reads only the manifest: the shards may even be gone. */
START_TEST(opens_lazily)
{
    tu_data d = make_data(g_seed, 800);
    char *dir = write_data(&d, "manifest");
    sp_dataset *ds;
    ck_assert(sp_dataset_open(dir, NULL, &ds) == 0);
    uint64_t nshards = sp_dataset_num_shards(ds), nblocks = sp_dataset_num_blocks(ds);
    ck_assert_uint_gt(nshards, 3);
    sp_dataset_close(ds);
    size_t n;
    char **paths = tu_list_shards(dir, &n);
    ck_assert_uint_eq(n, nshards);
    for (size_t i = 0; i < n; i++)
        ck_assert(unlink(paths[i]) == 0);
    ck_assert_msg(sp_dataset_open(dir, NULL, &ds) == 0, "%s", sp_last_error());
    ck_assert_uint_eq(sp_dataset_num_samples(ds), d.nsamples);
    ck_assert_uint_eq(sp_dataset_num_blocks(ds), nblocks);
    ck_assert_uint_eq(sp_dataset_num_shards(ds), nshards);
    ck_assert(sp_schema_equal(sp_dataset_schema(ds), d.schema));
    uint64_t blk;
    uint32_t row;
    ck_assert(sp_dataset_locate(ds, d.nsamples - 1, &blk, &row) == 0);
    ck_assert_uint_eq(blk, nblocks - 1);
    sp_shard_info si = { .struct_size = sizeof si };
    ck_assert(sp_dataset_shard_info(ds, nshards - 1, &si) == 0);
    ck_assert_uint_eq(si.first_sample + si.samples, d.nsamples);
    ck_assert_int_eq(sp_dataset_shard_info(ds, nshards, &si), SP_ERANGE);
    /* the first read of a missing shard names it */
    sp_block *b = NULL;
    ck_assert_int_eq(sp_dataset_read_block(ds, 0, &b), SP_ENOENT);
    ck_assert_msg(strstr(sp_last_error(), paths[0]), "%s", sp_last_error());
    sp_block_info bi = { .struct_size = sizeof bi };
    ck_assert_int_eq(sp_dataset_block_info(ds, nblocks - 1, &bi), SP_ENOENT);
    sp_dataset_close(ds);
    /* verify names each missing shard */
    sp_verify_report rep = { .struct_size = sizeof rep };
    ck_assert_int_eq(sp_verify(dir, NULL, NULL, NULL, &rep), SP_ECORRUPT);
    ck_assert_uint_eq(rep.faults, nshards);
    tu_free_list(paths, n);
    tu_rmtree(dir);
    free(dir);
    sp_schema_destroy(d.schema);
}
END_TEST

/* A shard swapped for another dataset's shard of the same name and schema is caught. */
START_TEST(replaced_shard)
{
    tu_data a = make_data(g_seed + 1, 400), b = make_data(g_seed + 2, 400);
    char *da = write_data(&a, "manifest"), *db = write_data(&b, "manifest");
    char *sa = tu_join(da, "shard-000001.sps"), *sb = tu_join(db, "shard-000001.sps");
    tu_copy_file(sb, sa);
    sp_dataset *ds;
    ck_assert(sp_dataset_open(da, NULL, &ds) == 0);
    sp_shard_info si = { .struct_size = sizeof si };
    ck_assert(sp_dataset_shard_info(ds, 1, &si) == 0);
    sp_block *blk = NULL;
    int rc = sp_dataset_read_block(ds, si.first_block, &blk);
    ck_assert_msg(rc == SP_ECORRUPT, "%s", sp_error_name(rc));
    ck_assert_msg(strstr(sp_last_error(), sa), "%s", sp_last_error());
    ck_assert(sp_dataset_read_block(ds, 0, &blk) == 0); /* shard 0 is fine */
    sp_block_free(blk);
    sp_dataset_close(ds);
    sp_verify_report rep = { .struct_size = sizeof rep };
    ck_assert_int_eq(sp_verify(da, NULL, NULL, NULL, &rep), SP_ECORRUPT);
    ck_assert_uint_eq(rep.faults, 1);
    /* Without the manifest the swapped shard is just a shard: the directory opens. */
    char *man = tu_join(da, "manifest.spm");
    unlink(man);
    ck_assert(sp_dataset_open(da, NULL, &ds) == 0);
    sp_dataset_close(ds);
    free(man);
    free(sa);
    free(sb);
    tu_rmtree(da);
    tu_rmtree(db);
    free(da);
    free(db);
    sp_schema_destroy(a.schema);
    sp_schema_destroy(b.schema);
}
END_TEST

static void exchange(const char *a, const char *b)
{
    ck_assert_msg(renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0, "RENAME_EXCHANGE: %s", strerror(errno));
}

static void expect_replaced(int rc, const char *msg, const char *advice)
{
    ck_assert_msg(rc == SP_ECHANGED, "%s: %s", sp_error_name(rc), msg);
    ck_assert_msg(strstr(msg, "the dataset was replaced") && strstr(msg, advice), "%s", msg);
}

/* A dataset handle opened (manifest read, shards not yet) before another dataset is published at
 * its path, as pack --overwrite does with RENAME_EXCHANGE: the shards its path now names are the
 * new dataset's, or missing. Reads say the dataset was replaced (SP_ECHANGED), not that it is
 * damaged; reopening reads the new one. */
START_TEST(dataset_replaced_after_open)
{
    tu_data a = make_data(g_seed + 5, 800), b = make_data(g_seed + 6, 300);
    char *da = write_data(&a, "manifest"), *db = write_data(&b, "manifest");
    sp_dataset *ds;
    ck_assert(sp_dataset_open(da, NULL, &ds) == 0);
    uint64_t nshards = sp_dataset_num_shards(ds), nblocks = sp_dataset_num_blocks(ds);
    size_t nb;
    char **bshards = tu_list_shards(db, &nb);
    ck_assert_uint_gt(nb, 1);
    ck_assert_uint_gt(nshards, nb);
    exchange(db, da);
    sp_shard_info si = { .struct_size = sizeof si };
    ck_assert(sp_dataset_shard_info(ds, 1, &si) == 0);
    sp_block *blk = NULL;
    /* shard 1 exists in both: it is the new dataset's */
    expect_replaced(sp_dataset_read_block(ds, si.first_block, &blk), sp_dataset_errmsg(ds), "reopen the dataset");
    ck_assert_str_eq(sp_last_error(), sp_dataset_errmsg(ds));
    ck_assert_msg(strstr(sp_last_error(), si.path), "%s", sp_last_error());
    /* the last shard exists only in the old one, gone with it */
    sp_block_info bi = { .struct_size = sizeof bi };
    expect_replaced(sp_dataset_block_info(ds, nblocks - 1, &bi), sp_last_error(), "reopen the dataset");
    expect_replaced(sp_dataset_read_block(ds, nblocks - 1, &blk), sp_last_error(), "reopen the dataset");
    sp_dataset_close(ds);
    /* reopened, the path is the new dataset, whole */
    ck_assert(sp_dataset_open(da, NULL, &ds) == 0);
    tu_check_dataset(ds, &b, 0);
    sp_dataset_close(ds);
    tu_free_list(bshards, nb);
    tu_rmtree(da);
    tu_rmtree(db);
    free(da);
    free(db);
    sp_schema_destroy(a.schema);
    sp_schema_destroy(b.schema);
}
END_TEST

typedef struct swap_ctx {
    const char *a, *b;
    int faults, swaps;
    int code;
    char file[512];
} swap_ctx;

/* Records each fault; the first one publishes the other dataset at the verified path. */
static void swap_on_fault(const sp_fault *f, void *user)
{
    swap_ctx *c = user;
    if (c->faults++ == 0) {
        c->code = f->code;
        snprintf(c->file, sizeof c->file, "%s", f->file);
        exchange(c->a, c->b);
        c->swaps++;
    }
}

/* sp_verify while another dataset is published at its path (between two shards, deterministically:
 * from the fault callback of a real fault in the first shard). The real fault stands; the shards
 * of the new dataset are not faults; verify returns SP_ECHANGED ("verify it again"), and verifying
 * again checks the new dataset. Damage without a replacement is still SP_ECORRUPT. */
START_TEST(verify_replaced_midway)
{
    tu_data a = make_data(g_seed + 7, 800), b = make_data(g_seed + 8, 300);
    char *da = write_data(&a, "manifest"), *db = write_data(&b, "manifest");
    sp_dataset *ds;
    ck_assert(sp_dataset_open(da, NULL, &ds) == 0);
    sp_block_info bi = { .struct_size = sizeof bi };
    ck_assert(sp_dataset_block_info(ds, 0, &bi) == 0);
    sp_shard_info si = { .struct_size = sizeof si };
    ck_assert(sp_dataset_shard_info(ds, 0, &si) == 0);
    ck_assert_uint_gt(sp_dataset_num_shards(ds), 3);
    char *shard0 = strdup(si.path);
    sp_dataset_close(ds);
    tu_xor_byte(shard0, bi.offset + 3, 0x40); /* real damage in block 0 of shard 0 */

    swap_ctx c = { .a = db, .b = da };
    sp_verify_report rep = { .struct_size = sizeof rep };
    int rc = sp_verify(da, NULL, swap_on_fault, &c, &rep);
    ck_assert_int_eq(c.swaps, 1);
    expect_replaced(rc, sp_last_error(), "verify it again");
    ck_assert_msg(strstr(sp_last_error(), da), "%s", sp_last_error());
    ck_assert_int_eq(c.faults, 1); /* the damage only */
    ck_assert_uint_eq(rep.faults, 1);
    ck_assert_str_eq(c.file, shard0);
    ck_assert_int_eq(c.code, SP_ECHECKSUM);
    /* again: the new dataset, sound */
    ck_assert_msg(sp_verify(da, NULL, NULL, NULL, NULL) == 0, "%s", sp_last_error());
    /* the damaged dataset, now at db, with nothing replaced: a fault, SP_ECORRUPT */
    swap_ctx none = { 0 };
    rep = (sp_verify_report){ .struct_size = sizeof rep };
    ck_assert_int_eq(sp_verify(db, NULL, NULL, &none, &rep), SP_ECORRUPT);
    ck_assert_uint_eq(rep.faults, 1);
    free(shard0);
    tu_rmtree(da);
    tu_rmtree(db);
    free(da);
    free(db);
    sp_schema_destroy(a.schema);
    sp_schema_destroy(b.schema);
}
END_TEST

START_TEST(fingerprint)
{
    tu_data a = make_data(g_seed + 3, 300), b = make_data(g_seed + 4, 300);
    char *da = write_data(&a, "manifest"), *db = write_data(&b, "manifest");
    sp_dataset *ds;
    ck_assert(sp_dataset_open(da, NULL, &ds) == 0);
    uint64_t fa = sp_dataset_fingerprint(ds);
    sp_dataset_close(ds);
    ck_assert(sp_dataset_open(da, NULL, &ds) == 0);
    ck_assert_uint_eq(sp_dataset_fingerprint(ds), fa);
    sp_dataset_close(ds);
    char *man = tu_join(da, "manifest.spm");
    ck_assert(sp_dataset_open(man, NULL, &ds) == 0);
    ck_assert_uint_eq(sp_dataset_fingerprint(ds), fa);
    sp_dataset_close(ds);
    size_t n;
    char **paths = tu_list_shards(da, &n);
    ck_assert(sp_dataset_open_shards((const char *const *)paths, n, NULL, &ds) == 0);
    ck_assert_uint_eq(sp_dataset_fingerprint(ds), fa);
    sp_dataset_close(ds);
    tu_free_list(paths, n);
    ck_assert(sp_dataset_open(db, NULL, &ds) == 0);
    ck_assert_uint_ne(sp_dataset_fingerprint(ds), fa);
    sp_dataset_close(ds);
    ck_assert_uint_eq(sp_dataset_fingerprint(NULL), 0);
    free(man);
    tu_rmtree(da);
    tu_rmtree(db);
    free(da);
    free(db);
    sp_schema_destroy(a.schema);
    sp_schema_destroy(b.schema);
}
END_TEST

START_TEST(shard_limit)
{
    tu_data d = make_data(g_seed + 5, 600);
    char *dir = write_data(&d, "manifest");
    sp_dataset *ds = NULL;
    ck_assert(sp_dataset_open(dir, NULL, &ds) == 0);
    uint64_t nshards = sp_dataset_num_shards(ds);
    sp_dataset_close(ds);
    char lim[32];
    snprintf(lim, sizeof lim, "%llu", (unsigned long long)nshards);
    sp_params *p = tu_params("max_shards", lim, NULL);
    ck_assert(sp_dataset_open(dir, p, &ds) == 0);
    sp_dataset_close(ds);
    snprintf(lim, sizeof lim, "%llu", (unsigned long long)nshards - 1);
    ck_assert(sp_params_set_str(p, "max_shards", lim) == 0);
    ck_assert_int_eq(sp_dataset_open(dir, p, &ds), SP_ELIMIT);
    ck_assert_ptr_null(ds);
    size_t n;
    char **paths = tu_list_shards(dir, &n);
    ck_assert_int_eq(sp_dataset_open_shards((const char *const *)paths, n, p, &ds), SP_ELIMIT);
    char *man = tu_join(dir, "manifest.spm");
    unlink(man);
    ck_assert_int_eq(sp_dataset_open(dir, p, &ds), SP_ELIMIT);
    tu_free_list(paths, n);
    free(man);
    sp_params_destroy(p);
    tu_rmtree(dir);
    free(dir);
    sp_schema_destroy(d.schema);
}
END_TEST

START_TEST(shard_lists)
{
    tu_data a = make_data(g_seed + 6, 300);
    char *da = write_data(&a, "manifest");
    size_t n;
    char **paths = tu_list_shards(da, &n);
    ck_assert_uint_gt(n, 1);
    sp_dataset *ds = NULL;
    /* any order is the caller's business */
    const char *rev[2] = { paths[1], paths[0] };
    ck_assert(sp_dataset_open_shards(rev, 2, NULL, &ds) == 0);
    ck_assert_uint_eq(sp_dataset_num_shards(ds), 2);
    sp_dataset_close(ds);
    /* a shard given twice (the same path, a hard link to it, a copy of it) would double its
     * samples: refused naming both, by the dataset and the loader */
    char *dupdir = tu_tmpdir("manifest");
    char *hard = tu_join(dupdir, "hard.sps"), *copy = tu_join(dupdir, "copy.sps");
    ck_assert(link(paths[1], hard) == 0);
    tu_copy_file(paths[1], copy);
    const char *dups[3][3] = { { paths[0], paths[1], paths[1] }, { hard, paths[0], paths[1] }, { paths[1], paths[0], copy } };
    for (int k = 0; k < 3; k++) {
        ds = NULL;
        ck_assert_int_eq(sp_dataset_open_shards(dups[k], 3, NULL, &ds), SP_EINVAL);
        ck_assert_ptr_null(ds);
        const char *first = k == 1 ? hard : paths[1], *second = k == 2 ? copy : paths[1];
        ck_assert_msg(strstr(sp_last_error(), first) && strstr(sp_last_error(), second) && strstr(sp_last_error(), "same shard") &&
                          strstr(sp_last_error(), k == 2 ? "a copy" : "one file"),
                      "%s", sp_last_error());
        sp_loader *l = NULL;
        ck_assert_int_eq(sp_loader_open_shards(dups[k], 3, NULL, &l), SP_EINVAL);
        ck_assert_ptr_null(l);
        ck_assert_msg(strstr(sp_last_error(), "same shard"), "%s", sp_last_error());
    }
    tu_rmtree(dupdir);
    free(dupdir);
    free(hard);
    free(copy);
    ck_assert_int_eq(sp_dataset_open_shards((const char *const *)paths, 0, NULL, &ds), SP_EINVAL);
    ck_assert_int_eq(sp_dataset_open_shards(NULL, 1, NULL, &ds), SP_EINVAL);
    const char *withnull[2] = { paths[0], NULL };
    ck_assert_int_eq(sp_dataset_open_shards(withnull, 2, NULL, &ds), SP_EINVAL);
    ck_assert_int_eq(sp_dataset_open_shards((const char *const *)paths, n, NULL, NULL), SP_EINVAL);
    /* a shard of another schema */
    tu_data other = { 0 };
    other.schema = sp_schema_create();
    ck_assert(sp_schema_add(other.schema, "only", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) == 0);
    other.seed = 1;
    other.nsamples = 10;
    char *dother = tu_tmpdir("manifest");
    ck_assert(tu_write_dataset(dother, &other, NULL, NULL) == 0);
    char *so = tu_join(dother, "shard-000000.sps");
    const char *mixed[2] = { paths[0], so };
    ck_assert_int_eq(sp_dataset_open_shards(mixed, 2, NULL, &ds), SP_ESCHEMA);
    ck_assert_msg(strstr(sp_last_error(), so), "%s", sp_last_error());
    const char *missing[2] = { paths[0], "/nonexistent/shard-000009.sps" };
    ck_assert_int_eq(sp_dataset_open_shards(missing, 2, NULL, &ds), SP_ENOENT);
    ck_assert_int_eq(sp_dataset_open("/nonexistent/x", NULL, &ds), SP_ENOENT);
    ck_assert_int_eq(sp_dataset_open(NULL, NULL, &ds), SP_EINVAL);
    /* a directory with neither manifest nor shards */
    char *empty = tu_tmpdir("manifest");
    ck_assert_int_eq(sp_dataset_open(empty, NULL, &ds), SP_ENOENT);
    ck_assert_msg(strstr(sp_last_error(), empty), "%s", sp_last_error());
    sp_dataset_close(NULL);
    ck_assert_str_eq(sp_dataset_errmsg(NULL), "");
    ck_assert_uint_eq(sp_dataset_num_samples(NULL), 0);
    tu_rmtree(empty);
    free(empty);
    free(so);
    tu_rmtree(dother);
    free(dother);
    sp_schema_destroy(other.schema);
    tu_free_list(paths, n);
    tu_rmtree(da);
    free(da);
    sp_schema_destroy(a.schema);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x5eed0008);
    Suite *s = suite_create("manifest");
    TCase *tc = tu_tcase(s, "manifest", 60);
    tcase_add_test(tc, opens_lazily);
    tcase_add_test(tc, replaced_shard);
    tcase_add_test(tc, dataset_replaced_after_open);
    tcase_add_test(tc, verify_replaced_midway);
    tcase_add_test(tc, fingerprint);
    tcase_add_test(tc, shard_limit);
    tcase_add_test(tc, shard_lists);
    return tu_run(s, g_seed);
}
