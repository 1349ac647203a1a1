/* test_loader_image.c - image fields in loader batches, JPEG, PNG and WebP mixed in one field: the
 * same bytes for any thread count, every row equal to sp_image_transform_apply of its sample and
 * epoch; corrupt images (truncated, random
 * bytes, above max_pixels) failing their batch with a message naming shard and sample, or skipped
 * with the row filled from the same batch; DLPack dtype codes and shapes for every image dtype and
 * layout; eval's resize below image_size refused at open. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jpeg_gen.h"
#include "pw_gen.h"
#include "test_util.h"

static uint64_t g_seed;
static char g_seedstr[32];

#define TIMEOUT_MS 20000 /* every next() is bounded: a hang fails the test instead of the runner */
#define BATCH 8
#define S 32 /* image_size */

/* ------------------------------------------------------------------------------- datasets */

enum { GOOD = 0, BAD_TRUNC, BAD_TRUNC_PROG, BAD_NOISE, BAD_NOISE_SOI, BAD_BIG };

typedef struct ids {
    char *parent, *dir;
    uint64_t n;
    uint8_t **img; /* the stored JPEG of each sample */
    size_t *size;
    int *kind;
} ids;

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Offset just past the first start-of-scan header. */
static size_t sos_end(const uint8_t *j, size_t n)
{
    for (size_t i = 2; i + 4 <= n;) {
        size_t len = ((size_t)j[i + 2] << 8) | j[i + 3];
        if (j[i + 1] == 0xDA)
            return i + 2 + len;
        i += 2 + len;
    }
    ck_abort_msg("no SOS marker");
    return 0;
}

/* Sample i's image: sides 40..199 (under 40000 pixels); a JPEG in a variant that cycles through
 * subsamplings, progressive, gray, CMYK/YCCK and restart markers, or for one sample in four a PNG
 * (any colour type, 8 or 16 bits, interlaced or not) and one in four a WebP (lossy or lossless,
 * with alpha or not). Bad kinds damage a JPEG; BAD_BIG may be any format. */
static void make_image(uint64_t salt, uint64_t i, int kind, uint8_t **out, size_t *size)
{
    uint64_t h = mix(salt * 1000003u + i);
    int w = 40 + (int)(h % 160), ht = 40 + (int)((h >> 8) % 150);
    jg_opts o = { 70 + (int)((h >> 16) % 26), (int)((h >> 24) % 4), JG_YCC, (int)((h >> 26) & 1), 0 };
    switch ((h >> 28) % 8) {
    case 0:
        o.color = JG_GRAY;
        break;
    case 1:
        o.color = (h >> 31) & 1 ? JG_CMYK : JG_YCCK;
        break;
    case 2:
        o.restart_interval = 1 + (int)((h >> 32) % 5);
        break;
    default:
        break;
    }
    if (kind == BAD_BIG)
        w = 300, ht = 200; /* 60000 pixels, above max_pixels 40000 */
    if (kind == BAD_TRUNC_PROG)
        o.progressive = 1;
    uint8_t *pic = jg_picture(w, ht, h);
    ck_assert_ptr_nonnull(pic);
    char err[256];
    int format = (int)((h >> 40) % 4);
    bool jpeg_only = kind != GOOD && kind != BAD_BIG;
    if (format == 0 && !jpeg_only) {
        pw_png_opts po = { (int)((h >> 42) % 5), (h >> 45) & 1 ? 16 : 8, (int)((h >> 46) & 1) };
        if (po.color == PW_PALETTE)
            po.depth = 8;
        ck_assert_msg(pw_png(pic, w, ht, &po, out, size, err, sizeof err) == 0, "%s", err);
    } else if (format == 1 && !jpeg_only) {
        ck_assert_msg(pw_webp(pic, w, ht, 80, (int)((h >> 47) & 1), (int)((h >> 48) & 1), out, size, err, sizeof err) == 0,
                      "%s", err);
    } else {
        ck_assert_msg(jg_encode(pic, w, ht, &o, out, size, err, sizeof err) == 0, "%s", err);
    }
    free(pic);
    if (kind == BAD_TRUNC) /* cut 16 bytes into the scan: no crop's rows are all there */
        *size = sos_end(*out, *size) + 16;
    else if (kind == BAD_TRUNC_PROG) /* a progressive file needs every scan, whatever the crop */
        *size = *size / 2;
    else if (kind == BAD_NOISE || kind == BAD_NOISE_SOI) {
        tu_rng r = { h };
        tu_fill_random(&r, *out, *size);
        if (kind == BAD_NOISE_SOI)
            (*out)[0] = 0xFF, (*out)[1] = 0xD8;
        else
            (*out)[0] = 0x00;
    }
}

/* Writes n samples (image, label = sample id); kinds (may be NULL) gives each sample's kind. */
static void make_ds(ids *d, const char *tag, uint64_t n, uint64_t salt, const int *kinds)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    d->dir = tu_dataset_dir(tag, &d->parent);
    d->img = calloc(n, sizeof *d->img);
    d->size = calloc(n, sizeof *d->size);
    d->kind = calloc(n, sizeof *d->kind);
    ck_assert(d->img && d->size && d->kind);
    sp_schema *s = sp_schema_create();
    ck_assert_int_eq(sp_schema_add(s, "image", SP_FIELD_IMAGE, SP_DTYPE_U8, 0, NULL), 0);
    ck_assert_int_eq(sp_schema_add(s, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL), 0);
    /* The bad kinds are what the loader must survive, so the writer stores them unchecked. */
    sp_params *p = tu_params("block_size", "8K", "shard_size", "48K", "validate_images", "0", NULL);
    sp_writer *w;
    ck_assert_msg(sp_writer_open(d->dir, s, p, &w) == 0, "%s", sp_last_error());
    for (uint64_t i = 0; i < n; i++) {
        d->kind[i] = kinds ? kinds[i] : GOOD;
        make_image(salt, i, d->kind[i], &d->img[i], &d->size[i]);
        int64_t label = (int64_t)i;
        sp_value v[2] = { { d->img[i], d->size[i] }, { &label, sizeof label } };
        ck_assert_msg(sp_writer_add(w, v, 2) == 0, "add %llu: %s", (unsigned long long)i, sp_last_error());
    }
    ck_assert_msg(sp_writer_finish(w) == 0, "%s", sp_last_error());
    sp_writer_destroy(w);
    sp_params_destroy(p);
    sp_schema_destroy(s);
    sp_dataset *ds;
    ck_assert_int_eq(sp_dataset_open(d->dir, NULL, &ds), 0);
    ck_assert_uint_eq(sp_dataset_num_samples(ds), n);
    ck_assert_msg(n < 40 || (sp_dataset_num_blocks(ds) >= 6 && sp_dataset_num_shards(ds) >= 2),
                  "want several blocks and shards: %llu blocks, %llu shards",
                  (unsigned long long)sp_dataset_num_blocks(ds), (unsigned long long)sp_dataset_num_shards(ds));
    sp_dataset_close(ds);
}

static void free_ds(ids *d)
{
    tu_rmtree(d->parent);
    free(d->parent);
    free(d->dir);
    for (uint64_t i = 0; i < d->n; i++)
        free(d->img[i]);
    free(d->img);
    free(d->size);
    free(d->kind);
}

/* Whether msg names "sample N" with N exactly id. */
static bool names_sample(const char *msg, uint64_t id)
{
    char want[40];
    int n = snprintf(want, sizeof want, "sample %llu", (unsigned long long)id);
    for (const char *p = strstr(msg, want); p; p = strstr(p + 1, want))
        if (p[n] < '0' || p[n] > '9')
            return true;
    return false;
}

/* ------------------------------------------------------------------------------- loaders */

/* Parameters from the test defaults and NULL-terminated overrides. */
static sp_params *params_v(va_list ap)
{
    sp_params *p = sp_params_create();
    const char *def[] = { "host_memory", "64M", "max_image_memory", "4M", "threads", "2", "batch_size", "8", "image_size", "32", "seed", g_seedstr,
                          "max_pixels", "40000", NULL };
    for (size_t i = 0; def[i]; i += 2)
        ck_assert_int_eq(sp_params_set_str(p, def[i], def[i + 1]), 0);
    for (const char *k; (k = va_arg(ap, const char *));) {
        const char *v = va_arg(ap, const char *);
        ck_assert_msg(sp_params_set_str(p, k, v) == 0, "%s=%s: %s", k, v, sp_last_error());
    }
    return p;
}

static sp_params *params(int dummy, ...)
{
    va_list ap;
    va_start(ap, dummy);
    sp_params *p = params_v(ap);
    va_end(ap);
    return p;
}

static sp_loader *open_loader(const ids *d, ...)
{
    va_list ap;
    va_start(ap, d);
    sp_params *p = params_v(ap);
    va_end(ap);
    sp_loader *l = NULL;
    int rc = sp_loader_open(d->dir, p, &l);
    ck_assert_msg(rc == 0, "sp_loader_open: %s", sp_last_error());
    sp_params_destroy(p);
    return l;
}

/* A recorded run: per batch its rows' ids and the image tensor's bytes. */
typedef struct run {
    size_t nb;
    uint64_t epoch[64], index[64];
    uint32_t rows[64];
    uint64_t ids[64][BATCH];
    uint8_t *img[64];
    size_t img_bytes[64];
} run;

static void run_free(run *r)
{
    for (size_t i = 0; i < r->nb; i++)
        free(r->img[i]);
    memset(r, 0, sizeof *r);
}

static void run_add(run *r, const sp_batch *b)
{
    ck_assert_uint_lt(r->nb, 64);
    size_t k = r->nb++;
    int fi = sp_batch_find(b, "image");
    ck_assert_int_ge(fi, 0);
    const DLTensor *t = sp_batch_tensor(b, (size_t)fi);
    size_t bytes = (size_t)t->dtype.bits / 8;
    for (int i = 0; i < t->ndim; i++)
        bytes *= (size_t)t->shape[i];
    r->epoch[k] = sp_batch_epoch(b);
    r->index[k] = sp_batch_index(b);
    r->rows[k] = sp_batch_size(b);
    for (uint32_t i = 0; i < r->rows[k]; i++)
        r->ids[k][i] = sp_batch_sample_id(b, i);
    r->img[k] = malloc(bytes);
    memcpy(r->img[k], t->data, bytes);
    r->img_bytes[k] = bytes;
}

/* Every row of b (except filled ones) equals apply() of its sample and epoch, and its label is its
 * sample id. t must have the loader's image parameters. */
static void check_rows(const ids *d, const sp_batch *b, sp_image_transform *t)
{
    int fi = sp_batch_find(b, "image"), fl = sp_batch_find(b, "label");
    ck_assert(fi >= 0 && fl >= 0);
    const uint8_t *img = sp_batch_tensor(b, (size_t)fi)->data;
    const int64_t *lab = sp_batch_tensor(b, (size_t)fl)->data;
    size_t rb = sp_image_transform_bytes(t);
    uint8_t *want = malloc(rb);
    for (uint32_t r = 0; r < sp_batch_size(b); r++) {
        uint64_t id = sp_batch_sample_id(b, r);
        if (id == UINT64_MAX)
            continue;
        ck_assert_uint_lt(id, d->n);
        ck_assert_int_eq(lab[r], (int64_t)id);
        int rc = sp_image_transform_apply(t, d->img[id], d->size[id], sp_batch_epoch(b), id, want, NULL);
        ck_assert_msg(rc == 0, "sample %llu: %s", (unsigned long long)id, sp_image_transform_errmsg(t));
        ck_assert_msg(memcmp(img + r * rb, want, rb) == 0,
                      "epoch %llu batch %llu row %u (sample %llu): differs from sp_image_transform_apply",
                      (unsigned long long)sp_batch_epoch(b), (unsigned long long)sp_batch_index(b), r,
                      (unsigned long long)id);
    }
    free(want);
}

/* ------------------------------------------------------------------------------- test 4 */

/* Two epochs with threads=1 and threads=3 (shuffle on, train): the same batches bit for bit,
 * every row equal to apply() of its sample in its epoch, and the crops changing between epochs. */
START_TEST(threads_bit_identical)
{
    ids d;
    make_ds(&d, "imgdet", 48, g_seed, NULL);
    sp_params *tp = params(0, "transform", "train", NULL);
    sp_image_transform *t;
    ck_assert_int_eq(sp_image_transform_create(tp, &t), 0);
    sp_params_destroy(tp);
    run runs[2] = { { 0 } };
    const char *threads[] = { "1", "3" };
    for (int k = 0; k < 2; k++) {
        sp_loader *l = open_loader(&d, "threads", threads[k], "transform", "train", "shuffle", "true", "epochs", "2",
                                   NULL);
        ck_assert_uint_eq(sp_loader_batches_per_epoch(l), 6);
        int eepoch = 0;
        for (;;) {
            sp_batch *b;
            int rc = sp_loader_next(l, &b, TIMEOUT_MS);
            if (rc == SP_EEPOCH) {
                eepoch++;
                continue;
            }
            if (rc == SP_EDONE)
                break;
            ck_assert_msg(rc == 0, "threads %s: %s: %s", threads[k], sp_error_name(rc), sp_loader_errmsg(l));
            run_add(&runs[k], b);
            check_rows(&d, b, t);
            ck_assert_int_eq(sp_loader_release(l, b), 0);
        }
        ck_assert_int_eq(eepoch, 2);
        sp_loader_stats st = { .struct_size = sizeof st };
        ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
        ck_assert_uint_eq(st.images_decoded, 2 * 48);
        ck_assert_uint_eq(st.images_bad, 0);
        ck_assert_str_eq(st.bad_note, "");
        ck_assert_uint_gt(st.image_scratch_bytes, 0);
        ck_assert_int_eq(sp_loader_close(l), 0);
    }
    ck_assert_uint_eq(runs[0].nb, 12);
    ck_assert_uint_eq(runs[1].nb, 12);
    for (size_t i = 0; i < runs[0].nb; i++) {
        ck_assert_uint_eq(runs[0].epoch[i], runs[1].epoch[i]);
        ck_assert_uint_eq(runs[0].index[i], runs[1].index[i]);
        ck_assert_uint_eq(runs[0].rows[i], runs[1].rows[i]);
        ck_assert(memcmp(runs[0].ids[i], runs[1].ids[i], sizeof runs[0].ids[i]) == 0);
        ck_assert_uint_eq(runs[0].img_bytes[i], (size_t)BATCH * S * S * 3);
        ck_assert_msg(memcmp(runs[0].img[i], runs[1].img[i], runs[0].img_bytes[i]) == 0,
                      "batch %zu: image tensor differs between 1 and 3 threads", i);
    }
    /* Every sample once per epoch, and the train crop of a sample differs between epochs. */
    uint8_t *row0 = calloc(48, (size_t)S * S * 3);
    uint8_t seen[2][48] = { { 0 } };
    int changed = 0;
    for (size_t i = 0; i < runs[0].nb; i++) {
        int e = (int)runs[0].epoch[i];
        for (uint32_t r = 0; r < runs[0].rows[i]; r++) {
            uint64_t id = runs[0].ids[i][r];
            ck_assert_uint_lt(id, 48);
            ck_assert(!seen[e][id]);
            seen[e][id] = 1;
            uint8_t *px = runs[0].img[i] + (size_t)r * S * S * 3;
            if (e == 0) {
                memcpy(row0 + id * S * S * 3, px, (size_t)S * S * 3);
                continue;
            }
            /* The epoch enters only through the crop: the row changes exactly when the crop does
             * (a picture of ramps and edges never looks the same through two crops). */
            sp_image_info info = { .struct_size = sizeof info };
            ck_assert_int_eq(sp_image_probe(d.img[id], d.size[id], 0, &info), 0);
            int w = info.width, h = info.height;
            sp_image_crop c0 = { .struct_size = sizeof c0 }, c1 = { .struct_size = sizeof c1 };
            ck_assert_int_eq(sp_image_transform_crop(t, w, h, 0, id, &c0), 0);
            ck_assert_int_eq(sp_image_transform_crop(t, w, h, 1, id, &c1), 0);
            bool same_crop = c0.x0 == c1.x0 && c0.y0 == c1.y0 && c0.x1 == c1.x1 && c0.y1 == c1.y1 && c0.flip == c1.flip;
            bool same_row = memcmp(row0 + id * S * S * 3, px, (size_t)S * S * 3) == 0;
            ck_assert_msg(same_row == same_crop, "sample %llu: crop %s between epochs but the row %s",
                          (unsigned long long)id, same_crop ? "the same" : "changed", same_row ? "did not" : "did");
            changed += !same_row;
        }
    }
    ck_assert_msg(changed >= 24, "only %d of 48 samples changed between epochs", changed);
    free(row0);
    run_free(&runs[0]);
    run_free(&runs[1]);
    sp_image_transform_destroy(t);
    free_ds(&d);
}
END_TEST

/* ------------------------------------------------------------------------------- test 5 */

static bool rows_equal(const sp_batch *b, uint32_t i, uint32_t j)
{
    for (size_t f = 0; f < sp_batch_num_fields(b); f++) {
        const DLTensor *t = sp_batch_tensor(b, f);
        size_t row = (size_t)t->dtype.bits / 8;
        for (int k = 1; k < t->ndim; k++)
            row *= (size_t)t->shape[k];
        const uint8_t *p = t->data;
        if (memcmp(p + i * row, p + j * row, row))
            return false;
    }
    return true;
}

/* One epoch with on_error=skip over d: batches all delivered, bad samples never, each filled row a
 * copy of a good row of its batch, good rows equal to apply(). Returns the index of the first batch
 * with a filled row and records the run. */
static size_t skip_epoch(const ids *d, const char *threads, sp_image_transform *t, run *rec, uint64_t nbad)
{
    sp_loader *l = open_loader(d, "threads", threads, "on_error", "skip", "transform", "train", NULL);
    uint8_t *seen = calloc(d->n, 1);
    uint64_t filled = 0;
    size_t first = SIZE_MAX;
    for (;;) {
        sp_batch *b;
        int rc = sp_loader_next(l, &b, TIMEOUT_MS);
        if (rc == SP_EEPOCH)
            break;
        ck_assert_msg(rc == 0, "skip, threads %s: %s: %s", threads, sp_error_name(rc), sp_loader_errmsg(l));
        for (uint32_t i = 0; i < sp_batch_size(b); i++) {
            uint64_t id = sp_batch_sample_id(b, i);
            if (id == UINT64_MAX) {
                filled++;
                first = first == SIZE_MAX ? rec->nb : first;
                bool twin = false;
                for (uint32_t j = 0; j < sp_batch_size(b) && !twin; j++)
                    twin = j != i && sp_batch_sample_id(b, j) != UINT64_MAX && rows_equal(b, i, j);
                ck_assert_msg(twin, "batch %llu row %u: the filled row equals no good row of its batch",
                              (unsigned long long)sp_batch_index(b), i);
                continue;
            }
            ck_assert_uint_lt(id, d->n);
            ck_assert_msg(d->kind[id] == GOOD, "bad sample %llu delivered", (unsigned long long)id);
            ck_assert(!seen[id]);
            seen[id] = 1;
        }
        check_rows(d, b, t);
        run_add(rec, b);
        ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
    ck_assert_uint_eq(filled, nbad);
    for (uint64_t i = 0; i < d->n; i++)
        ck_assert_msg(seen[i] == (d->kind[i] == GOOD), "sample %llu delivered %u times", (unsigned long long)i, seen[i]);
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_eq(st.images_bad, nbad);
    ck_assert_uint_eq(st.samples_skipped, nbad);
    ck_assert_uint_eq(st.images_decoded, d->n - nbad);
    /* bad_note names the latest refused image: one of the bad samples, with its shard. */
    bool named = false;
    for (uint64_t i = 0; i < d->n && !named; i++) {
        if (d->kind[i] == GOOD || !names_sample(st.bad_note, i))
            continue;
        char *shard = tu_shard_of(d->dir, i, NULL);
        named = strstr(st.bad_note, shard) != NULL;
        free(shard);
    }
    ck_assert_msg(named, "bad_note names no bad sample with its shard: %s", st.bad_note);
    ck_assert_int_eq(sp_loader_close(l), 0);
    free(seen);
    ck_assert_uint_ne(first, SIZE_MAX);
    return first;
}

/* Waits (at most 10 s) until the workers have refused an image, and a little more for them to
 * finish the batches they were on: the consumer then arrives after the failed batch was decoded,
 * the case where it must still fail (a consumer that waits for the batch is the easy case). */
static void wait_refused(sp_loader *l)
{
    sp_loader_stats st = { .struct_size = sizeof st };
    for (int i = 0; i < 1000; i++) {
        ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
        if (st.images_bad > 0)
            break;
        usleep(10000);
    }
    usleep(100000);
}

/* on_error=fail: the batches before the first one holding a bad sample come through as in the skip
 * run, then next() fails with code (naming the shard and a bad sample of that batch), and keeps
 * failing. */
static void fail_epoch(const ids *d, const char *threads, const run *skip, size_t first, int code)
{
    sp_loader *l = open_loader(d, "threads", threads, "on_error", "fail", "transform", "train", NULL);
    size_t got = 0;
    int rc;
    for (;;) {
        sp_batch *b;
        rc = sp_loader_next(l, &b, TIMEOUT_MS);
        if (got == 0)
            wait_refused(l); /* the pipeline starts at the first next() */
        if (rc)
            break;
        ck_assert_msg(got < first, "threads %s: batch %zu was delivered, but it holds a bad sample and "
                      "on_error=fail must fail it", threads, got);
        for (uint32_t i = 0; i < sp_batch_size(b); i++)
            ck_assert_uint_eq(sp_batch_sample_id(b, i), skip->ids[got][i]);
        got++;
        ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", sp_loader_errmsg(l));
    ck_assert_msg(rc == code, "threads %s: ended with %s (want %s) after %zu batches: %s", threads, sp_error_name(rc),
                  sp_error_name(code), got, msg);
    ck_assert_msg(got == first, "failed after %zu batches; the first batch with a bad sample is %zu", got, first);
    ck_assert_str_eq(sp_last_error(), msg);
    /* The sample named is a bad one of that batch (its good rows are known from the skip run). */
    uint64_t named = UINT64_MAX;
    for (uint64_t i = 0; i < d->n; i++)
        if (d->kind[i] != GOOD && names_sample(msg, i))
            named = i;
    ck_assert_msg(named != UINT64_MAX, "message names no bad sample: %s", msg);
    for (size_t k = 0; k < skip->nb; k++)
        for (uint32_t i = 0; i < skip->rows[k]; i++)
            ck_assert(skip->ids[k][i] != named);
    char *shard = tu_shard_of(d->dir, named, NULL);
    ck_assert_msg(strstr(msg, shard), "message does not name shard %s: %s", shard, msg);
    free(shard);
    /* The failure stays: asking again does not deliver the failed batch. */
    for (int i = 0; i < 3; i++) {
        sp_batch *b = (sp_batch *)(uintptr_t)1;
        int again = sp_loader_next(l, &b, TIMEOUT_MS);
        ck_assert_msg(again == rc, "threads %s: next() after the failure returned %s%s", threads, sp_error_name(again),
                      again == 0 ? " and delivered the failed batch" : "");
        ck_assert_ptr_null(b);
    }
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_uint_ge(st.images_bad, 1);
    ck_assert_int_eq(sp_loader_close(l), 0);
}

static void corrupt_case(const char *tag, int kind, uint64_t at, int code)
{
    int kinds[40] = { 0 };
    kinds[at] = kind;
    ids d;
    make_ds(&d, tag, 40, g_seed ^ (uint64_t)kind, kinds);
    sp_params *tp = params(0, "transform", "train", NULL);
    sp_image_transform *t;
    ck_assert_int_eq(sp_image_transform_create(tp, &t), 0);
    sp_params_destroy(tp);
    /* The bad image is refused by the transform on its own too, with the same code. */
    uint8_t out[S * S * 3];
    ck_assert_int_eq(sp_image_transform_apply(t, d.img[at], d.size[at], 0, at, out, NULL), code);
    run r1 = { 0 }, r3 = { 0 };
    size_t first = skip_epoch(&d, "1", t, &r1, 1);
    ck_assert_uint_eq(skip_epoch(&d, "3", t, &r3, 1), first);
    ck_assert_uint_eq(r1.nb, r3.nb);
    for (size_t k = 0; k < r1.nb; k++)
        ck_assert_msg(memcmp(r1.img[k], r3.img[k], r1.img_bytes[k]) == 0 &&
                          memcmp(r1.ids[k], r3.ids[k], sizeof r1.ids[k]) == 0,
                      "%s: batch %zu differs between 1 and 3 threads", tag, k);
    fail_epoch(&d, "1", &r1, first, code);
    fail_epoch(&d, "3", &r1, first, code);
    run_free(&r1);
    run_free(&r3);
    sp_image_transform_destroy(t);
    free_ds(&d);
}

START_TEST(truncated_jpeg) { corrupt_case("trunc", BAD_TRUNC, 17, SP_EBADINPUT); }
END_TEST
START_TEST(truncated_progressive) { corrupt_case("truncp", BAD_TRUNC_PROG, 5, SP_EBADINPUT); }
END_TEST
START_TEST(random_bytes) { corrupt_case("noise", BAD_NOISE, 30, SP_EBADINPUT); }
END_TEST
START_TEST(random_bytes_soi) { corrupt_case("noisesoi", BAD_NOISE_SOI, 0, SP_EBADINPUT); }
END_TEST
START_TEST(above_max_pixels) { corrupt_case("big", BAD_BIG, 39, SP_ELIMIT); }
END_TEST

/* Every kind at once, at spread-out places. */
START_TEST(several_bad)
{
    int kinds[64] = { 0 };
    kinds[3] = BAD_TRUNC, kinds[11] = BAD_NOISE, kinds[12] = BAD_BIG, kinds[40] = BAD_NOISE_SOI;
    kinds[63] = BAD_TRUNC_PROG;
    ids d;
    make_ds(&d, "several", 64, g_seed ^ 0x5e7, kinds);
    sp_params *tp = params(0, "transform", "train", NULL);
    sp_image_transform *t;
    ck_assert_int_eq(sp_image_transform_create(tp, &t), 0);
    sp_params_destroy(tp);
    run r1 = { 0 }, r3 = { 0 };
    size_t first = skip_epoch(&d, "1", t, &r1, 5);
    ck_assert_uint_eq(skip_epoch(&d, "3", t, &r3, 5), first);
    for (size_t k = 0; k < r1.nb; k++)
        ck_assert_msg(memcmp(r1.img[k], r3.img[k], r1.img_bytes[k]) == 0, "batch %zu differs between 1 and 3 threads",
                      k);
    /* The first failing batch may hold a bad sample of either code; which one is named then
     * depends on which worker got there first, so only the batch is checked here. */
    sp_loader *l = open_loader(&d, "threads", "3", "on_error", "fail", "transform", "train", NULL);
    size_t got = 0;
    int rc;
    sp_batch *b;
    while ((rc = sp_loader_next(l, &b, TIMEOUT_MS)) == 0) {
        if (got == 0)
            wait_refused(l);
        got++;
        ck_assert_int_eq(sp_loader_release(l, b), 0);
    }
    ck_assert_msg(rc == SP_EBADINPUT || rc == SP_ELIMIT, "after %zu batches (the first with a bad sample is %zu): %s: %s",
                  got, first, sp_error_name(rc), sp_loader_errmsg(l));
    ck_assert_uint_eq(got, first);
    ck_assert_int_eq(sp_loader_close(l), 0);
    run_free(&r1);
    run_free(&r3);
    sp_image_transform_destroy(t);
    free_ds(&d);
}
END_TEST

/* ------------------------------------------------------------------------------- test 6 */

START_TEST(dlpack_dtypes_layouts)
{
    ids d;
    make_ds(&d, "imgdl", 24, g_seed ^ 0xd1, NULL);
    static const char *dtypes[] = { "uint8", "float16", "bfloat16", "float32" };
    static const uint8_t codes[] = { kDLUInt, kDLFloat, kDLBfloat, kDLFloat };
    static const uint8_t bits[] = { 8, 16, 16, 32 };
    static const char *layouts[] = { "nhwc", "nchw" };
    for (int dt = 0; dt < 4; dt++) {
        for (int L = 0; L < 2; L++) {
            for (int tr = 0; tr < 2; tr++) {
                const char *tf = tr ? "eval" : "train";
                sp_loader *l = open_loader(&d, "image_dtype", dtypes[dt], "image_layout", layouts[L], "transform", tf,
                                           "mean", "0.5,0.5,0.5", "std", "0.25,0.5,1", NULL);
                sp_params *tp = params(0, "image_dtype", dtypes[dt], "image_layout", layouts[L], "transform", tf, "mean",
                                       "0.5,0.5,0.5", "std", "0.25,0.5,1", NULL);
                sp_image_transform *t;
                ck_assert_int_eq(sp_image_transform_create(tp, &t), 0);
                sp_params_destroy(tp);
                ck_assert_uint_eq(sp_image_transform_bytes(t), (size_t)S * S * 3 * bits[dt] / 8);
                for (int k = 0; k < 3; k++) {
                    sp_batch *b;
                    int rc = sp_loader_next(l, &b, TIMEOUT_MS);
                    ck_assert_msg(rc == 0, "%s %s: %s", dtypes[dt], layouts[L], sp_loader_errmsg(l));
                    ck_assert_uint_eq(sp_batch_num_fields(b), 2);
                    ck_assert_str_eq(sp_batch_field_name(b, 0), "image");
                    ck_assert_str_eq(sp_batch_field_name(b, 1), "label");
                    const DLTensor *ti = sp_batch_tensor(b, 0);
                    ck_assert_ptr_nonnull(ti);
                    ck_assert_int_eq(ti->device.device_type, kDLCPU);
                    ck_assert_uint_eq(ti->dtype.code, codes[dt]);
                    ck_assert_uint_eq(ti->dtype.bits, bits[dt]);
                    ck_assert_uint_eq(ti->dtype.lanes, 1);
                    ck_assert_int_eq(ti->ndim, 4);
                    ck_assert_int_eq(ti->shape[0], sp_batch_size(b));
                    ck_assert_int_eq(ti->shape[0], BATCH);
                    const int64_t want[2][3] = { { S, S, 3 }, { 3, S, S } };
                    for (int i = 0; i < 3; i++)
                        ck_assert_int_eq(ti->shape[1 + i], want[L][i]);
                    ck_assert_ptr_null(ti->strides);
                    ck_assert_uint_eq(ti->byte_offset, 0);
                    const DLTensor *tl = sp_batch_tensor(b, 1);
                    ck_assert_uint_eq(tl->dtype.code, kDLInt);
                    ck_assert_uint_eq(tl->dtype.bits, 64);
                    ck_assert_int_eq(tl->ndim, 1);
                    check_rows(&d, b, t);
                    ck_assert_int_eq(sp_loader_release(l, b), 0);
                }
                sp_image_transform_destroy(t);
                ck_assert_int_eq(sp_loader_close(l), 0);
            }
        }
    }
    free_ds(&d);
}
END_TEST

/* ------------------------------------------------------------------------------- test 7 */

START_TEST(eval_resize_refused_at_open)
{
    ids d;
    make_ds(&d, "imgparam", 16, g_seed ^ 0x77, NULL);
    sp_params *p = params(0, "transform", "eval", "image_size", "64", "resize", "60", NULL);
    sp_loader *l = (sp_loader *)(uintptr_t)1;
    ck_assert_int_eq(sp_loader_open(d.dir, p, &l), SP_EINVAL);
    ck_assert_ptr_null(l);
    ck_assert_msg(strstr(sp_last_error(), "resize"), "message does not name resize: %s", sp_last_error());
    sp_image_transform *t = (sp_image_transform *)(uintptr_t)1;
    ck_assert_int_eq(sp_image_transform_create(p, &t), SP_EINVAL);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(sp_last_error(), "resize"), "%s", sp_last_error());
    /* resize = image_size is the smallest accepted; train ignores resize. */
    ck_assert_int_eq(sp_params_set_str(p, "resize", "64"), 0);
    ck_assert_int_eq(sp_loader_open(d.dir, p, &l), 0);
    sp_batch *b;
    ck_assert_int_eq(sp_loader_next(l, &b, TIMEOUT_MS), 0);
    ck_assert_int_eq(sp_loader_release(l, b), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    ck_assert_int_eq(sp_params_set_str(p, "resize", "10"), 0);
    ck_assert_int_eq(sp_params_set_str(p, "transform", "train"), 0);
    ck_assert_int_eq(sp_loader_open(d.dir, p, &l), 0);
    ck_assert_int_eq(sp_loader_close(l), 0);
    sp_params_destroy(p);
    free_ds(&d);
}
END_TEST

int main(void)
{
    g_seed = tu_seed(20240612);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)(g_seed & INT64_MAX));
    Suite *s = suite_create("loader_image");
    TCase *td = tu_tcase(s, "determinism", 60);
    tcase_add_test(td, threads_bit_identical);
    TCase *tc = tu_tcase(s, "corrupt", 60);
    tcase_add_test(tc, truncated_jpeg);
    tcase_add_test(tc, truncated_progressive);
    tcase_add_test(tc, random_bytes);
    tcase_add_test(tc, random_bytes_soi);
    tcase_add_test(tc, above_max_pixels);
    tcase_add_test(tc, several_bad);
    TCase *tb = tu_tcase(s, "batches", 60);
    tcase_add_test(tb, dlpack_dtypes_layouts);
    tcase_add_test(tb, eval_resize_refused_at_open);
    return tu_run(s, g_seed);
}
