/* test_loader_interplay.c - the day's features together: split image blocks (JPEG, PNG, WebP, progressive and interlaced) under rank partitions, shuffle, a seek, mixtures resumed elastically, a corrupt image skipped and a small shared max_image_memory give the same batches as one worker and every sample once; a progressive JPEG at the least shared allowance decodes; the trace of split blocks is valid. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jpeg_gen.h"
#include "pw_gen.h"
#include "test_util.h"

#define N 97
#define SIZE 16

static char *g_parent;
static int g_bad = -1;             /* a sample whose bytes are cut short */
static const char *g_epochs = "1"; /* the loaders' epochs */

/* Sample i: a JPEG (every other one progressive), a PNG (every other one interlaced) or a WebP. */
static int make_img(int64_t i, void *arg, uint8_t **bytes, size_t *size)
{
    (void)arg;
    int w = 40 + (int)(i * 7 % 41), h = 40 + (int)(i * 13 % 37);
    uint8_t *pic = jg_smooth(w, h, (uint64_t)i);
    char err[256];
    int rc;
    if (i % 3 == 0) {
        jg_opts o = { 80, JG_420, JG_YCC, (int)(i / 3 % 2), 0, 0, 0 };
        rc = jg_encode(pic, w, h, &o, bytes, size, err, sizeof err);
    } else if (i % 3 == 1) {
        pw_png_opts o = { PW_RGB, 8, (int)(i / 3 % 2) };
        rc = pw_png(pic, w, h, &o, bytes, size, err, sizeof err);
    } else {
        rc = pw_webp(pic, w, h, 80, (int)(i / 3 % 2), 0, bytes, size, err, sizeof err);
    }
    free(pic);
    if (rc == 0 && i == g_bad)
        *size /= 2;
    return rc;
}

static char *make_ds(const char *tag, char **parent)
{
    char *dir = tu_dataset_dir(tag, parent);
    char err[512];
    ck_assert_msg(jg_write_dataset(dir, "16K", N, make_img, NULL, err, sizeof err) == 0, "%s", err);
    return dir;
}

/* Removes make_ds's dataset (dir, in g_parent). */
static void drop_ds(char *dir)
{
    tu_rmtree(g_parent);
    free(g_parent);
    free(dir);
}

typedef struct run {
    uint8_t *img;  /* every batch's image bytes, in order */
    uint64_t *ids; /* every row's sample id */
    size_t n;      /* rows */
} run;

static void run_free(run *r)
{
    free(r->img);
    free(r->ids);
    memset(r, 0, sizeof *r);
}

static sp_loader *open_one(const char *const *paths, size_t npaths, const char *threads, int rank, int world,
                           const char *parts, const char *shuffle, const char *on_error, const char *maxmem)
{
    char rs[12], ws[12];
    snprintf(rs, sizeof rs, "%d", rank);
    snprintf(ws, sizeof ws, "%d", world);
    sp_params *p = tu_params("threads", threads, "image_size", "16", "batch_size", "4", "shuffle", shuffle, "seed",
                             "7", "rank", rs, "world_size", ws, "partitions", parts, "on_error", on_error,
                             "max_image_memory", maxmem, "host_memory", "1G", "epochs", g_epochs, NULL);
    sp_loader *l = NULL;
    double weights[2] = { 1, 2 };
    int rc = npaths == 1 ? sp_loader_open(paths[0], p, &l) : sp_loader_open_mix(paths, weights, npaths, p, &l);
    sp_params_destroy(p);
    ck_assert_msg(rc == 0, "open (threads %s rank %d/%d): %s", threads, rank, world, sp_last_error());
    return l;
}

/* Batches from l until the epoch ends (or max batches), appended to r. */
static void take(sp_loader *l, run *r, uint64_t max)
{
    for (uint64_t k = 0; k < max; k++) {
        sp_batch *b;
        int rc = sp_loader_next(l, &b, 60000);
        if (rc == SP_EEPOCH)
            break;
        ck_assert_msg(rc == 0, "%s", sp_loader_errmsg(l));
        const DLTensor *t = sp_batch_tensor(b, (size_t)sp_batch_find(b, "image"));
        size_t rows = sp_batch_size(b), n = rows * SIZE * SIZE * 3;
        r->img = realloc(r->img, (r->n + rows) * SIZE * SIZE * 3);
        r->ids = realloc(r->ids, (r->n + rows) * sizeof *r->ids);
        memcpy(r->img + r->n * SIZE * SIZE * 3, t->data, n);
        for (size_t i = 0; i < rows; i++)
            r->ids[r->n + i] = sp_batch_sample_id(b, (uint32_t)i);
        r->n += rows;
        ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
}

static void same(const run *a, const run *b, const char *what)
{
    ck_assert_msg(a->n == b->n, "%s: %zu rows, threads=1 has %zu", what, b->n, a->n);
    for (size_t i = 0; i < a->n; i++) {
        ck_assert_msg(a->ids[i] == b->ids[i], "%s: row %zu is sample %llu, threads=1 has %llu", what, i,
                      (unsigned long long)b->ids[i], (unsigned long long)a->ids[i]);
        ck_assert_msg(memcmp(a->img + i * SIZE * SIZE * 3, b->img + i * SIZE * SIZE * 3, SIZE * SIZE * 3) == 0,
                      "%s: row %zu (sample %llu) has other pixels", what, i, (unsigned long long)a->ids[i]);
    }
}

START_TEST(split_blocks_with_ranks)
{
    g_bad = -1;
    char *dir = make_ds("interplay", &g_parent);
    const char *paths[1] = { dir };
    static const char *const shuffles[] = { "false", "true" };
    for (int si = 0; si < 2; si++)
        for (int world = 1; world <= 3; world++) {
            char parts[12];
            snprintf(parts, sizeof parts, "%d", world);
            uint8_t *seen = calloc(N, 1);
            size_t total = 0;
            for (int rank = 0; rank < world; rank++) {
                run one = { 0 }, four = { 0 };
                sp_loader *l = open_one(paths, 1, "1", rank, world, parts, shuffles[si], "fail", "64M");
                take(l, &one, UINT64_MAX);
                ck_assert_int_eq(sp_loader_close(l), 0);
                l = open_one(paths, 1, "9", rank, world, parts, shuffles[si], "fail", "64M");
                take(l, &four, UINT64_MAX);
                ck_assert_int_eq(sp_loader_close(l), 0);
                char what[96];
                snprintf(what, sizeof what, "shuffle %s rank %d of %d", shuffles[si], rank, world);
                same(&one, &four, what);
                for (size_t i = 0; i < one.n; i++) {
                    ck_assert_msg(one.ids[i] < N && !seen[one.ids[i]], "%s: sample %llu twice", what,
                                  (unsigned long long)one.ids[i]);
                    seen[one.ids[i]] = 1;
                }
                total += one.n;
                run_free(&one);
                run_free(&four);
            }
            ck_assert_uint_ge(total, N - 4 * world);
            free(seen);
        }
    drop_ds(dir);
}
END_TEST

/* set_epoch while split blocks are being written (batches of epoch 0 taken, one still leased):
 * epoch 1 equals a fresh single worker's epoch 1. */
START_TEST(seek_during_split_blocks)
{
    g_bad = -1;
    char *dir = make_ds("interseek", &g_parent);
    const char *paths[1] = { dir };
    run one = { 0 }, many = { 0 }, skip = { 0 };
    g_epochs = "2";
    sp_loader *l = open_one(paths, 1, "1", 0, 1, "1", "true", "fail", "64M");
    ck_assert_int_eq(sp_loader_set_epoch(l, 1), 0);
    take(l, &one, UINT64_MAX);
    ck_assert_int_eq(sp_loader_close(l), 0);
    for (int rounds = 1; rounds <= 3; rounds++) {
        l = open_one(paths, 1, "9", 0, 1, "1", "true", "fail", "64M");
        take(l, &skip, (uint64_t)rounds);
        sp_batch *held;
        ck_assert_int_eq(sp_loader_next(l, &held, 60000), 0);
        ck_assert_int_eq(sp_loader_set_epoch(l, 1), 0);
        take(l, &many, UINT64_MAX);
        ck_assert_int_eq(sp_loader_release(l, held), 0);
        ck_assert_int_eq(sp_loader_close(l), 0);
        same(&one, &many, "epoch 1 after a seek");
        run_free(&many);
        run_free(&skip);
    }
    run_free(&one);
    g_epochs = "1";
    drop_ds(dir);
}
END_TEST

/* on_error=skip with a cut-short image inside a split block: the same rows filled as one worker's. */
START_TEST(corrupt_image_in_split_block)
{
    g_bad = 20;
    char *dir = make_ds("interbad", &g_parent);
    const char *paths[1] = { dir };
    for (int world = 1; world <= 2; world++) {
        char parts[12];
        snprintf(parts, sizeof parts, "%d", world);
        uint64_t bad = 0;
        for (int rank = 0; rank < world; rank++) {
            run one = { 0 }, four = { 0 };
            sp_loader *l = open_one(paths, 1, "1", rank, world, parts, "true", "skip", "64M");
            take(l, &one, UINT64_MAX);
            ck_assert_int_eq(sp_loader_close(l), 0);
            l = open_one(paths, 1, "4", rank, world, parts, "true", "skip", "64M");
            take(l, &four, UINT64_MAX);
            sp_loader_stats st = { .struct_size = sizeof st };
            ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
            ck_assert_int_eq(sp_loader_close(l), 0);
            bad += st.images_bad;
            same(&one, &four, "skip");
            run_free(&one);
            run_free(&four);
        }
        ck_assert_uint_eq(bad, 1);
    }
    g_bad = -1;
    drop_ds(dir);
}
END_TEST

/* A mixture of two image datasets on 2 ranks, 4 partitions, 4 workers, resumed mid-epoch on 4
 * ranks then 1: every sample once, the same global batches as an uninterrupted run. */
START_TEST(mixture_elastic)
{
    char *pa, *pb;
    char *da = make_ds("intermixa", &pa), *db = make_ds("intermixb", &pb);
    const char *paths[2] = { da, db };
    /* reference: one rank, 4 partitions, batch 4 x 4? global batch must be the same: 8 */
    run ref = { 0 };
    {
        sp_params *p = tu_params("threads", "1", "image_size", "16", "batch_size", "8", "shuffle", "true", "seed",
                                 "7", "partitions", "4", "host_memory", "256M", NULL);
        sp_loader *l;
        double weights[2] = { 1, 2 };
        ck_assert_msg(sp_loader_open_mix(paths, weights, 2, p, &l) == 0, "%s", sp_last_error());
        sp_params_destroy(p);
        take(l, &ref, UINT64_MAX);
        ck_assert_int_eq(sp_loader_close(l), 0);
    }
    static const int worlds[] = { 2, 4, 1 };
    uint8_t state[SP_LOADER_STATE_BYTES];
    run got = { 0 };
    uint64_t len = 5;
    for (int ph = 0; ph < 3; ph++) {
        int world = worlds[ph];
        sp_loader *l[4];
        char bs[12];
        snprintf(bs, sizeof bs, "%d", 8 / world);
        for (int r = 0; r < world; r++) {
            char rs[12], ws[12];
            snprintf(rs, sizeof rs, "%d", r);
            snprintf(ws, sizeof ws, "%d", world);
            sp_params *p = tu_params("threads", "4", "image_size", "16", "batch_size", bs, "shuffle", "true", "seed",
                                     "7", "rank", rs, "world_size", ws, "partitions", "4", "host_memory", "256M",
                                     NULL);
            double weights[2] = { 1, 2 };
            ck_assert_msg(sp_loader_open_mix(paths, weights, 2, p, &l[r]) == 0, "%s", sp_last_error());
            sp_params_destroy(p);
            if (ph)
                ck_assert_msg(sp_loader_load_state(l[r], state, sizeof state) == 0, "%s", sp_last_error());
        }
        uint64_t nb = sp_loader_batches_per_epoch(l[0]);
        for (uint64_t g = ph * len; g < nb && (ph == 2 || g < (ph + 1) * len); g++)
            for (int r = 0; r < world; r++)
                take(l[r], &got, 1);
        for (int r = 0; r < world; r++) {
            ck_assert_int_eq(sp_loader_save_state(l[r], state, sizeof state), 0);
            ck_assert_int_eq(sp_loader_close(l[r]), 0);
        }
    }
    /* the global batch g of the reference is rank 0's rows then rank 1's ... on every world size */
    ck_assert_uint_eq(got.n, ref.n);
    uint8_t *seen = calloc(2 * N, 1);
    for (size_t i = 0; i < got.n; i++) {
        ck_assert_msg(got.ids[i] < 2 * N && !seen[got.ids[i]], "sample %llu twice", (unsigned long long)got.ids[i]);
        seen[got.ids[i]] = 1;
        ck_assert_msg(got.ids[i] == ref.ids[i], "row %zu: %llu, uninterrupted %llu", i, (unsigned long long)got.ids[i],
                      (unsigned long long)ref.ids[i]);
        ck_assert_msg(memcmp(got.img + i * SIZE * SIZE * 3, ref.img + i * SIZE * SIZE * 3, SIZE * SIZE * 3) == 0,
                      "row %zu: other pixels", i);
    }
    free(seen);
    run_free(&ref);
    run_free(&got);
    tu_rmtree(pa);
    tu_rmtree(pb);
    free(pa);
    free(pb);
    free(da);
    free(db);
}
END_TEST

/* A tiny shared max_image_memory with many workers: progressive JPEGs, interlaced PNGs and lossless
 * WebPs take turns; the bytes are one worker's. */
START_TEST(tiny_shared_memory)
{
    char *dir = make_ds("intermem", &g_parent);
    const char *paths[1] = { dir };
    run one = { 0 }, many = { 0 };
    sp_loader *l = open_one(paths, 1, "1", 0, 1, "1", "true", "fail", "2M");
    take(l, &one, UINT64_MAX);
    ck_assert_int_eq(sp_loader_close(l), 0);
    l = open_one(paths, 1, "8", 0, 1, "1", "true", "fail", "2M");
    take(l, &many, UINT64_MAX);
    ck_assert_int_eq(sp_loader_close(l), 0);
    same(&one, &many, "2M shared");
    run_free(&one);
    run_free(&many);
    drop_ds(dir);
}
END_TEST

static int make_prog(int64_t i, void *arg, uint8_t **bytes, size_t *size)
{
    (void)arg;
    uint8_t *pic = jg_smooth(64, 64, (uint64_t)i);
    char err[256];
    jg_opts o = { 80, JG_420, JG_YCC, 1, 0, 0, 0 };
    int rc = jg_encode(pic, 64, 64, &o, bytes, size, err, sizeof err);
    free(pic);
    return rc;
}

/* At the smallest max_image_memory (1 MiB) a small progressive JPEG decodes in the loader, whose
 * workers share the allowance, as it does in a transform that has it to itself. */
START_TEST(small_progressive_at_least_memory)
{
    char *dir = tu_dataset_dir("interprog", &g_parent), err[512];
    ck_assert_msg(jg_write_dataset(dir, "16K", 8, make_prog, NULL, err, sizeof err) == 0, "%s", err);
    const char *paths[1] = { dir };
    /* the transform, with the least allowance its own, decodes it */
    uint8_t *jpeg, out[SIZE * SIZE * 3];
    size_t size;
    ck_assert_int_eq(make_prog(3, NULL, &jpeg, &size), 0);
    sp_params *p = tu_params("image_size", "16", "max_image_memory", "1M", NULL);
    sp_image_transform *t;
    ck_assert_int_eq(sp_image_transform_create(p, &t), 0);
    sp_params_destroy(p);
    ck_assert_msg(sp_image_transform_apply(t, jpeg, size, 0, 3, out, NULL) == 0, "%s", sp_image_transform_errmsg(t));
    sp_image_transform_destroy(t);
    free(jpeg);
    /* and so do the loader's workers sharing it: as under a large allowance */
    run want = { 0 };
    sp_loader *l = open_one(paths, 1, "1", 0, 1, "1", "false", "fail", "64M");
    take(l, &want, UINT64_MAX);
    ck_assert_int_eq(sp_loader_close(l), 0);
    for (int threads = 1; threads <= 4; threads += 3) {
        run r = { 0 };
        l = open_one(paths, 1, threads == 1 ? "1" : "4", 0, 1, "1", "false", "fail", "1M");
        take(l, &r, UINT64_MAX);
        ck_assert_int_eq(sp_loader_close(l), 0);
        same(&want, &r, "max_image_memory=1M");
        run_free(&r);
    }
    ck_assert_uint_eq(want.n, 8);
    run_free(&want);
    drop_ds(dir);
}
END_TEST

/* The trace of split image blocks on rank 1 of 2 with a corrupt image skipped: valid, nested spans
 * on every worker's track (check_trace.py). */
START_TEST(trace_of_split_blocks)
{
    g_bad = 31;
    char *dir = make_ds("intertrace", &g_parent);
    g_bad = -1;
    char *path = tu_join(g_parent, "trace.json");
    sp_params *p = tu_params("threads", "5", "image_size", "16", "batch_size", "4", "rank", "1", "world_size", "2",
                             "on_error", "skip", "trace", path, NULL);
    sp_loader *l;
    ck_assert_msg(sp_loader_open(dir, p, &l) == 0, "%s", sp_last_error());
    sp_params_destroy(p);
    run r = { 0 };
    take(l, &r, UINT64_MAX);
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    tu_check_trace(path, &st, "--need read --need 'image decode' --need block");
    run_free(&r);
    free(path);
    drop_ds(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loader_interplay");
    TCase *tc = tu_tcase(s, "interplay", 300);
    tcase_add_test(tc, split_blocks_with_ranks);
    tcase_add_test(tc, corrupt_image_in_split_block);
    tcase_add_test(tc, seek_during_split_blocks);
    tcase_add_test(tc, mixture_elastic);
    tcase_add_test(tc, tiny_shared_memory);
    tcase_add_test(tc, small_progressive_at_least_memory);
    tcase_add_test(tc, trace_of_split_blocks);
    return tu_run(s, tu_seed(1));
}
