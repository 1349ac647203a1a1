/* test_alloc_fail.c - every allocation of the writer, reader and verifier paths made to fail in turn: each failure returns SP_ENOMEM, frees everything and leaves no files behind. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "test_util.h"
#include "tu_alloc.h"

/* The library's fault-injection hook (lib/common/sp_alloc.c): when positive, the n-th following
 * allocation fails. */
extern atomic_long sp_alloc_fail_countdown;

static uint64_t g_seed;

typedef struct ctx {
    char *parent, *dir; /* where the writer writes */
    char *src;          /* an existing dataset to read */
    sp_params *wp;      /* the writer's parameters */
    tu_data d;
} ctx;

typedef int (*op_fn)(ctx *c);

/* Runs op with the n-th allocation failing, for n = 1, 2, ... until op succeeds without the fault
 * being hit. Every failing run must return SP_ENOMEM and leave no allocation behind. */
static void sweep(const char *what, op_fn op, ctx *c, long max_n, bool needs_message)
{
    long n;
    int failures = 0;
    for (n = 1; n <= max_n; n++) {
        long live = tu_alloc_live();
        atomic_store(&sp_alloc_fail_countdown, n);
        int rc = op(c);
        long left = atomic_exchange(&sp_alloc_fail_countdown, 0);
        ck_assert_msg(tu_alloc_live() == live, "%s, allocation %ld failing: %ld allocation(s) leaked (rc %s)", what,
                      n, tu_alloc_live() - live, sp_error_name(rc));
        if (rc == 0 && left > 0)
            break; /* it ran to the end with fewer than n allocations */
        if (rc != 0) {
            failures++;
            ck_assert_msg(rc == SP_ENOMEM, "%s, allocation %ld failing: returned %s, not SP_ENOMEM (%s)", what, n,
                          sp_error_name(rc), sp_last_error());
            ck_assert_msg(!needs_message || sp_last_error()[0] != '\0', "%s, allocation %ld failing: no message",
                          what, n);
        }
    }
    ck_assert_msg(n <= max_n, "%s: still failing after %ld allocations", what, max_n);
    printf("%s: %ld allocation points, %d failed cleanly\n", what, n - 1, failures);
    ck_assert_msg(failures > 0, "%s: no allocation failure was ever reported", what);
}

static int op_write(ctx *c)
{
    sp_writer *w = NULL;
    int rc = sp_writer_open(c->dir, c->d.schema, c->wp, &w);
    if (rc == 0)
        rc = sp_writer_set_meta(w, "source", "alloc_fail", 10);
    if (rc == 0) {
        /* tu_add_samples allocates its scratch with plain malloc, which the countdown ignores */
        rc = tu_add_samples(w, &c->d, 0, c->d.nsamples);
    }
    if (rc == 0)
        rc = sp_writer_finish(w);
    sp_writer_destroy(w);
    int inject = (int)atomic_exchange(&sp_alloc_fail_countdown, 0);
    /* Whatever happened, the directory holds a complete dataset or nothing that opens. */
    ck_assert_uint_eq(tu_count_others(c->parent, "ds"), 0);
    if (rc == 0) {
        sp_dataset *ds;
        ck_assert_msg(sp_dataset_open(c->dir, NULL, &ds) == 0, "%s", sp_last_error());
        ck_assert_uint_eq(sp_dataset_num_samples(ds), c->d.nsamples);
        sp_dataset_close(ds);
    } else if (tu_exists(c->dir)) {
        ck_assert_msg(tu_count_files(c->dir, NULL) == 0, "failed writer left %zu files",
                      tu_count_files(c->dir, NULL));
    }
    tu_rmtree(c->dir);
    atomic_store(&sp_alloc_fail_countdown, inject);
    return rc;
}

static int read_all(ctx *c, sp_dataset *ds)
{
    (void)c;
    for (uint64_t b = 0; b < sp_dataset_num_blocks(ds); b++) {
        sp_block_info bi = { .struct_size = sizeof bi };
        int rc = sp_dataset_block_info(ds, b, &bi);
        if (rc)
            return rc;
        sp_block *blk;
        if ((rc = sp_dataset_read_block(ds, b, &blk)))
            return rc;
        const void *data;
        size_t size;
        rc = sp_block_get(blk, 0, 0, &data, &size);
        sp_block_free(blk);
        if (rc)
            return rc;
    }
    return 0;
}

static int op_read_dir(ctx *c)
{
    sp_dataset *ds;
    int rc = sp_dataset_open(c->src, NULL, &ds);
    if (rc)
        return rc;
    rc = read_all(c, ds);
    sp_dataset_close(ds);
    return rc;
}

static int op_read_manifest_less(ctx *c)
{
    size_t n;
    char **paths = tu_list_shards(c->src, &n); /* plain malloc: not counted down */
    sp_dataset *ds;
    int rc = sp_dataset_open_shards((const char *const *)paths, n, NULL, &ds);
    if (rc == 0) {
        rc = read_all(c, ds);
        sp_dataset_close(ds);
    }
    tu_free_list(paths, n);
    return rc;
}

static int op_read_shard(ctx *c)
{
    char *path = tu_join(c->src, "shard-000001.sps");
    sp_dataset *ds;
    int rc = sp_dataset_open(path, NULL, &ds);
    if (rc == 0) {
        rc = read_all(c, ds);
        sp_dataset_close(ds);
    }
    free(path);
    return rc;
}

static int op_verify(ctx *c)
{
    sp_verify_report rep = { .struct_size = sizeof rep };
    int rc = sp_verify(c->src, NULL, NULL, NULL, &rep);
    return rc == SP_ECORRUPT ? SP_ENOMEM : rc; /* see sweep: a fault counted for a failed allocation */
}

static int op_small_objects(ctx *c)
{
    (void)c;
    sp_params *p = sp_params_create();
    if (!p)
        return SP_ENOMEM;
    sp_schema *s = sp_schema_create();
    if (!s) {
        sp_params_destroy(p);
        return SP_ENOMEM;
    }
    sp_schema_destroy(s);
    sp_params_destroy(p);
    return 0;
}

static void ctx_init(ctx *c)
{
    memset(c, 0, sizeof *c);
    c->d.schema = sp_schema_create();
    ck_assert(sp_schema_add(c->d.schema, "b", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL) == 0);
    ck_assert(sp_schema_add(c->d.schema, "l", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) == 0);
    c->d.seed = g_seed;
    c->d.nsamples = 250;
    c->d.var_max = 600;
    c->d.compressible = true;
    c->dir = tu_dataset_dir("allocfail", &c->parent);
    c->src = tu_tmpdir("allocfail-src");
    c->wp = tu_params("shard_size", "64K", "block_size", "4K", "threads", "1", NULL);
    ck_assert(tu_write_dataset(c->src, &c->d, c->wp, NULL) == 0);
    sp_dataset *ds;
    ck_assert(sp_dataset_open(c->src, NULL, &ds) == 0);
    ck_assert_uint_ge(sp_dataset_num_shards(ds), 2);
    sp_dataset_close(ds);
}

static void ctx_free(ctx *c)
{
    tu_rmtree(c->parent);
    tu_rmtree(c->src);
    free(c->parent);
    free(c->dir);
    free(c->src);
    sp_params_destroy(c->wp);
    sp_schema_destroy(c->d.schema);
}

START_TEST(writer_paths)
{
    ctx c;
    ctx_init(&c);
    sweep("write a dataset", op_write, &c, 20000, true);
    ctx_free(&c);
}
END_TEST

START_TEST(reader_paths)
{
    ctx c;
    ctx_init(&c);
    sweep("open a directory and read every block", op_read_dir, &c, 20000, true);
    sweep("open a shard list and read every block", op_read_manifest_less, &c, 20000, true);
    sweep("open one shard and read every block", op_read_shard, &c, 20000, true);
    sweep("small objects", op_small_objects, &c, 100, false); /* NULL says it all */
    ctx_free(&c);
}
END_TEST

/* Verification reports an allocation that fails inside a shard as a fault and goes on; the run
 * must still return an error, never crash, and free everything. */
START_TEST(verify_paths)
{
    ctx c;
    ctx_init(&c);
    sweep("verify a directory", op_verify, &c, 20000, true);
    ctx_free(&c);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0x5eed000a);
    Suite *s = suite_create("alloc_fail");
    TCase *tc = tu_tcase(s, "alloc_fail", 240);
    tcase_add_test(tc, writer_paths);
    tcase_add_test(tc, reader_paths);
    tcase_add_test(tc, verify_paths);
    return tu_run(s, g_seed);
}
