/* test_loader_batch.c - what a batch looks like: DLPack tensors (dtype codes, shapes, CPU device, compact, aligned), field names and lookup, token_dtype=int32, short or dropped last batches, datasets without fixed-size fields, and glob paths. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lt_util.h"
#include "test_util.h"

static uint64_t g_seed;
static char g_seedstr[32];
static lt_ds g_ds;

#define N_SAMPLES 1000 /* 31 batches of 32 and one of 8 */
#define SEQ 65

static void check_tensor(const DLTensor *t, uint8_t code, uint8_t bits, int ndim, uint32_t rows, int64_t dim1)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->device.device_type, kDLCPU);
    ck_assert_int_eq(t->device.device_id, 0);
    ck_assert_uint_eq(t->dtype.code, code);
    ck_assert_uint_eq(t->dtype.bits, bits);
    ck_assert_uint_eq(t->dtype.lanes, 1);
    ck_assert_int_eq(t->ndim, ndim);
    ck_assert_ptr_nonnull(t->shape);
    ck_assert_int_eq(t->shape[0], rows);
    if (ndim > 1)
        ck_assert_int_eq(t->shape[1], dim1);
    ck_assert_ptr_null(t->strides); /* compact row-major */
    ck_assert_uint_eq(t->byte_offset, 0);
    ck_assert_ptr_nonnull(t->data);
    ck_assert_msg((uintptr_t)t->data % 64 == 0, "tensor data %p is not 64-byte aligned", t->data);
}

START_TEST(dlpack_tensors)
{
    sp_loader *l;
    ck_assert_int_eq(lt_open(g_ds.dir, &l, "seed", g_seedstr, NULL), 0);
    sp_batch *b;
    ck_assert_int_eq(sp_loader_next(l, &b, 20000), 0);
    ck_assert_uint_eq(sp_batch_size(b), 32);
    ck_assert_uint_eq(sp_batch_num_fields(b), 3);
    ck_assert_str_eq(sp_batch_field_name(b, 0), "label");
    ck_assert_str_eq(sp_batch_field_name(b, 1), "tokens");
    ck_assert_str_eq(sp_batch_field_name(b, 2), "x");
    ck_assert_ptr_null(sp_batch_field_name(b, 3));
    ck_assert_int_eq(sp_batch_find(b, "label"), 0);
    ck_assert_int_eq(sp_batch_find(b, "tokens"), 1);
    ck_assert_int_eq(sp_batch_find(b, "x"), 2);
    ck_assert_int_eq(sp_batch_find(b, "nope"), SP_ENOENT);
    ck_assert_int_eq(sp_batch_find(b, NULL), SP_ENOENT);
    ck_assert_ptr_null(sp_batch_tensor(b, 3));
    ck_assert_uint_eq(sp_batch_sample_id(b, 32), UINT64_MAX); /* past the rows */
    check_tensor(sp_batch_tensor(b, 0), kDLInt, 64, 1, 32, 0);
    check_tensor(sp_batch_tensor(b, 1), kDLUInt, 16, 2, 32, SEQ);
    check_tensor(sp_batch_tensor(b, 2), kDLFloat, 32, 2, 32, 3);
    ck_assert_int_eq(sp_batch_tensor(b, 2)->shape[1], 3);
    /* Each tensor is its own block of memory: no overlap between fields. */
    for (size_t i = 0; i < 3; i++)
        for (size_t j = i + 1; j < 3; j++) {
            const uint8_t *a = sp_batch_tensor(b, i)->data, *c = sp_batch_tensor(b, j)->data;
            ck_assert(a + lt_field_bytes(b, i) <= c || c + lt_field_bytes(b, j) <= a);
        }
    char why[256];
    for (uint32_t r = 0; r < 32; r++)
        ck_assert_msg(lt_row_ok(&g_ds, b, r, why, sizeof why), "%s", why);
    ck_assert_int_eq(sp_loader_release(l, b), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
}
END_TEST

START_TEST(tokens_as_int32)
{
    sp_loader *l;
    ck_assert_int_eq(lt_open(g_ds.dir, &l, "seed", g_seedstr, "token_dtype", "int32", NULL), 0);
    uint32_t big = 0;
    uint64_t rows = 0;
    for (;;) {
        sp_batch *b;
        int rc = sp_loader_next(l, &b, 20000);
        if (rc == SP_EEPOCH)
            break;
        ck_assert_int_eq(rc, 0);
        const DLTensor *t = sp_batch_tensor(b, 1);
        check_tensor(t, kDLInt, 32, 2, sp_batch_size(b), SEQ);
        check_tensor(sp_batch_tensor(b, 0), kDLInt, 64, 1, sp_batch_size(b), 0);
        const int32_t *v = t->data;
        for (uint32_t r = 0; r < sp_batch_size(b); r++) {
            uint64_t id = sp_batch_sample_id(b, r);
            for (uint32_t i = 0; i < SEQ; i++) {
                int32_t want = lt_token(g_ds.salt, id, i);
                ck_assert_msg(v[r * SEQ + i] == want, "id %llu token %u: %d, want %d", (unsigned long long)id, i,
                              v[r * SEQ + i], want);
                big += want > 32767;
            }
            char why[256];
            ck_assert_msg(lt_row_ok(&g_ds, b, r, why, sizeof why), "%s", why);
        }
        rows += sp_batch_size(b);
        ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
    ck_assert_uint_eq(rows, N_SAMPLES);
    ck_assert_msg(big > 100, "too few tokens above INT16_MAX (%u) to test the conversion", big);
    ck_assert_int_eq(sp_loader_close(l), 0);
}
END_TEST

START_TEST(last_batch)
{
    for (int drop = 0; drop < 2; drop++) {
        sp_loader *l;
        ck_assert_int_eq(lt_open(g_ds.dir, &l, "seed", g_seedstr, "drop_last", drop ? "true" : "false", NULL), 0);
        uint64_t want_b = drop ? N_SAMPLES / 32 : (N_SAMPLES + 31) / 32;
        ck_assert_uint_eq(sp_loader_batches_per_epoch(l), want_b);
        ck_assert_uint_eq(sp_loader_samples_per_epoch(l), drop ? N_SAMPLES / 32 * 32 : N_SAMPLES);
        uint64_t nb = 0, rows = 0;
        for (;;) {
            sp_batch *b;
            int rc = sp_loader_next(l, &b, 20000);
            if (rc == SP_EEPOCH)
                break;
            ck_assert_int_eq(rc, 0);
            uint32_t n = sp_batch_size(b);
            bool last = nb + 1 == want_b;
            ck_assert_uint_eq(n, last && !drop ? N_SAMPLES % 32 : 32);
            for (size_t f = 0; f < sp_batch_num_fields(b); f++)
                ck_assert_int_eq(sp_batch_tensor(b, f)->shape[0], n);
            char why[256];
            for (uint32_t r = 0; r < n; r++)
                ck_assert_msg(lt_row_ok(&g_ds, b, r, why, sizeof why), "%s", why);
            ck_assert_uint_eq(sp_batch_sample_id(b, n), UINT64_MAX);
            nb++;
            rows += n;
            ck_assert_int_eq(sp_loader_release(l, b), 0);
        }
        ck_assert_uint_eq(nb, want_b);
        ck_assert_uint_eq(rows, sp_loader_samples_per_epoch(l));
        sp_loader_stats st = { .struct_size = sizeof st };
        sp_loader_stats_get(l, &st);
        ck_assert_uint_eq(st.samples_dropped_per_epoch, drop ? N_SAMPLES % 32 : 0);
        /* The next epoch's first batch is full again: shape[0] follows the rows of each batch. */
        sp_batch *b;
        ck_assert_int_eq(sp_loader_set_epoch(l, 0), 0);
        ck_assert_int_eq(sp_loader_next(l, &b, 20000), 0);
        ck_assert_int_eq(sp_batch_tensor(b, 1)->shape[0], 32);
        ck_assert_int_eq(sp_loader_release(l, b), 0);
        ck_assert_int_eq(sp_loader_close(l), 0);
    }
}
END_TEST

/* A dataset with the given fields and one sample per index (values irrelevant). */
static char *write_odd(const char *tag, bool with_label, char **root)
{
    *root = tu_tmpdir(tag);
    char *dir = tu_join(*root, "data");
    sp_schema *s = sp_schema_create();
    ck_assert_int_eq(sp_schema_add(s, "blob", SP_FIELD_BYTES, SP_DTYPE_U8, 0, NULL), 0);
    if (with_label)
        ck_assert_int_eq(sp_schema_add(s, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL), 0);
    sp_params *p = tu_params("block_size", "4K", NULL);
    sp_writer *w;
    ck_assert_int_eq(sp_writer_open(dir, s, p, &w), 0);
    for (int64_t i = 0; i < 300; i++) {
        char blob[64];
        int n = snprintf(blob, sizeof blob, "sample %lld", (long long)i);
        sp_value v[2] = { { blob, (size_t)n }, { &i, 8 } };
        ck_assert_int_eq(sp_writer_add(w, v, with_label ? 2 : 1), 0);
    }
    ck_assert_int_eq(sp_writer_finish(w), 0);
    sp_writer_destroy(w);
    sp_params_destroy(p);
    sp_schema_destroy(s);
    return dir;
}

START_TEST(variable_fields)
{
    char *root, *root2;
    char *dir = write_odd("batch-var", false, &root);
    sp_loader *l;
    int rc = lt_open(dir, &l, NULL);
    ck_assert_msg(rc == SP_ENOTSUP, "only variable-length fields: %s", sp_error_name(rc));
    ck_assert_ptr_null(l);
    ck_assert_msg(strstr(sp_last_error(), "no field the loader batches"), "message: %s", sp_last_error());
    /* Beside a fixed-size field, a variable one is left out of batches. */
    char *dir2 = write_odd("batch-var2", true, &root2);
    ck_assert_int_eq(lt_open(dir2, &l, "shuffle", "false", NULL), 0);
    sp_batch *b;
    ck_assert_int_eq(sp_loader_next(l, &b, 20000), 0);
    ck_assert_uint_eq(sp_batch_num_fields(b), 1);
    ck_assert_str_eq(sp_batch_field_name(b, 0), "label");
    ck_assert_int_eq(sp_batch_find(b, "blob"), SP_ENOENT);
    const int64_t *lab = sp_batch_tensor(b, 0)->data;
    for (uint32_t r = 0; r < sp_batch_size(b); r++)
        ck_assert_int_eq(lab[r], (int64_t)r);
    ck_assert_int_eq(sp_loader_release(l, b), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    tu_rmtree(root);
    tu_rmtree(root2);
    free(root);
    free(root2);
    free(dir);
    free(dir2);
}
END_TEST

static uint64_t epoch_ids(sp_loader *l, uint8_t *seen, uint64_t n)
{
    lt_rec r = { 0 };
    ck_assert_int_eq(lt_epoch(l, &g_ds, &r), SP_EEPOCH);
    ck_assert_uint_eq(r.bad, 0);
    for (size_t i = 0; i < r.ni; i++) {
        ck_assert(r.ids[i] < n && !seen[r.ids[i]]);
        seen[r.ids[i]] = 1;
    }
    uint64_t got = r.ni;
    lt_rec_free(&r);
    return got;
}

START_TEST(glob_paths)
{
    ck_assert_uint_gt(g_ds.shards, 2);
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(g_ds.dir, NULL, &ds), 0);
    sp_shard_info s0 = { .struct_size = sizeof s0 };
    ck_assert_int_eq(sp_dataset_shard_info(ds, 0, &s0), 0);
    sp_dataset_close(ds);

    /* Every shard. */
    char pat[4096];
    snprintf(pat, sizeof pat, "%s/shard-0*.sps", g_ds.dir);
    sp_loader *l;
    int rc = lt_open(pat, &l, NULL);
    ck_assert_msg(rc == 0, "open %s: %s", pat, sp_last_error());
    uint8_t *seen = calloc(N_SAMPLES, 1);
    ck_assert_uint_eq(epoch_ids(l, seen, N_SAMPLES), N_SAMPLES);
    ck_assert_int_eq(sp_loader_close(l), 0);

    /* sp_dataset_open and sp_verify take the same glob, through the same rule. */
    ck_assert_msg(sp_dataset_open(pat, NULL, &ds) == 0, "%s", sp_last_error());
    ck_assert_uint_eq(sp_dataset_num_samples(ds), N_SAMPLES);
    ck_assert_uint_eq(sp_dataset_num_shards(ds), g_ds.shards);
    sp_dataset_close(ds);
    sp_verify_report rep = { .struct_size = sizeof rep };
    ck_assert_msg(sp_verify(pat, NULL, NULL, NULL, &rep) == 0, "%s", sp_last_error());
    ck_assert_uint_eq(rep.shards, g_ds.shards);
    ck_assert_uint_eq(rep.samples, N_SAMPLES);

    /* Only the first shard: exactly its samples. */
    snprintf(pat, sizeof pat, "%s/shard-00000[0].sps", g_ds.dir);
    ck_assert_int_eq(lt_open(pat, &l, NULL), 0);
    memset(seen, 0, N_SAMPLES);
    ck_assert_uint_eq(sp_loader_samples_per_epoch(l), s0.samples);
    ck_assert_uint_eq(epoch_ids(l, seen, N_SAMPLES), s0.samples);
    for (uint64_t i = 0; i < s0.samples; i++)
        ck_assert(seen[i]);
    ck_assert_int_eq(sp_loader_close(l), 0);

    /* No match. */
    snprintf(pat, sizeof pat, "%s/nothing-*.sps", g_ds.dir);
    rc = lt_open(pat, &l, NULL);
    ck_assert_msg(rc == SP_ENOENT, "no match: %s", sp_error_name(rc));
    ck_assert_ptr_null(l);
    ck_assert_msg(strstr(sp_last_error(), "nothing-"), "message: %s", sp_last_error());

    /* A path that names nothing: the message says which. */
    snprintf(pat, sizeof pat, "%s/no-such-dir", g_ds.root);
    rc = lt_open(pat, &l, NULL);
    ck_assert_msg(rc == SP_ENOENT, "missing path: %s", sp_error_name(rc));
    ck_assert_msg(strstr(sp_last_error(), "no-such-dir"), "message: '%s'", sp_last_error());

    /* The explicit list, as open_shards. */
    size_t n;
    char **paths = tu_list_shards(g_ds.dir, &n);
    const char *const two[] = { paths[1], paths[0] };
    sp_params *p = tu_params("host_memory", "64M", "shuffle", "false", NULL);
    ck_assert_int_eq(sp_loader_open_shards(two, 2, p, &l), 0);
    sp_batch *b;
    ck_assert_int_eq(sp_loader_next(l, &b, 20000), 0);
    /* Sample ids count in the order the shards are given: id 0 is the first sample of shard 1. */
    ck_assert_uint_eq(sp_batch_sample_id(b, 0), 0);
    ck_assert_int_eq(((const int64_t *)sp_batch_tensor(b, 0)->data)[0], (int64_t)s0.samples);
    ck_assert_int_eq(sp_loader_release(l, b), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    sp_params_destroy(p);
    tu_free_list(paths, n);
    free(seen);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(0xba7c4);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)g_seed);
    if (lt_make(&g_ds, "batch", N_SAMPLES, SEQ, g_seed, "4K", "32K")) {
        fprintf(stderr, "cannot write the test dataset\n");
        return 99;
    }
    Suite *s = suite_create("loader_batch");
    TCase *tc = tu_tcase(s, "batch", 30);
    tcase_add_test(tc, dlpack_tensors);
    tcase_add_test(tc, tokens_as_int32);
    tcase_add_test(tc, last_batch);
    tcase_add_test(tc, variable_fields);
    tcase_add_test(tc, glob_paths);
    int rc = tu_run(s, g_seed);
    lt_ds_free(&g_ds);
    return rc;
}
