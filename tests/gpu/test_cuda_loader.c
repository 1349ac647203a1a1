/* test_cuda_loader.c - device batches (device=cuda:N): token and image fields bit-identical to host batches in every device_dtype and device_layout, float32 against its formula, slot reuse ordered by the consumer's stream under a slow kernel, close while the GPU still reads a slot, resume and set_epoch, an absent device refused; skips (exit 77) without a CUDA device. */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lt_util.h"
#include "test_util.h"
#include "tg_images.h"
#include "tg_kernels.h"

#define TIMEOUT_MS 30000 /* every next() is bounded: a hang fails the test instead of the runner */
#define MAX_FIELDS 8
#define MAX_NDIM (SP_MAX_DIMS + 1)

static uint64_t g_seed;
static char g_seedstr[32];

#define CU_OK(call)                                                                                \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        TU_CHECK(e_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(e_));                      \
    } while (0)

static const char *const ON_GPU[] = { "device", "cuda:0", NULL };
static const char *const ON_CPU[] = { "device", "cpu", NULL };

/* ------------------------------------------------------------------------------- loaders */

static char g_openmsg[1024]; /* sp_last_error() of the latest open, before any other call */

static void append_kv(const char **kv, size_t *n, size_t cap, const char *const *pairs)
{
    for (size_t i = 0; pairs && pairs[i]; i += 2) {
        ck_assert_uint_lt(*n + 2, cap);
        kv[(*n)++] = pairs[i];
        kv[(*n)++] = pairs[i + 1];
    }
}

/* Opens a loader on dir with the test defaults, then the NULL-terminated name/value pairs of base
 * and of more (either may be NULL), later ones winning. Returns the open code. */
static int open_rc(const char *dir, const char *const *base, const char *const *more, sp_loader **out)
{
    const char *kv[80] = { "host_memory", "64M", "threads", "2" };
    size_t n = 4;
    append_kv(kv, &n, 80, base);
    append_kv(kv, &n, 80, more);
    kv[n] = NULL;
    sp_params *p = lt_params_v(kv);
    ck_assert_msg(p != NULL, "bad test parameters");
    *out = NULL;
    int rc = sp_loader_open(dir, p, out);
    snprintf(g_openmsg, sizeof g_openmsg, "%s", sp_last_error());
    sp_params_destroy(p);
    return rc;
}

static sp_loader *open_kv(const char *dir, const char *const *base, const char *const *more)
{
    sp_loader *l;
    int rc = open_rc(dir, base, more, &l);
    ck_assert_msg(rc == 0, "sp_loader_open %s: %s: %s", dir, sp_error_name(rc), g_openmsg);
    return l;
}

static void close_ok(sp_loader *l)
{
    int rc = sp_loader_close(l);
    ck_assert_msg(rc == 0, "sp_loader_close: %s: %s", sp_error_name(rc), sp_last_error());
}

/* ------------------------------------------------------------------------------- snapshots */

/* A batch copied to host memory with everything that describes it, so that host and device
 * batches compare as plain bytes after both were released. */
typedef struct snap {
    int rc; /* what sp_loader_next returned; the rest is set only when 0 */
    int device;
    uint64_t epoch, index;
    uint32_t rows;
    uint64_t *ids;
    size_t nf;
    char name[MAX_FIELDS][SP_MAX_NAME + 1];
    DLDevice dev[MAX_FIELDS];
    DLDataType dtype[MAX_FIELDS];
    int ndim[MAX_FIELDS];
    int64_t shape[MAX_FIELDS][MAX_NDIM];
    uint8_t *data[MAX_FIELDS];
    size_t bytes[MAX_FIELDS];
} snap;

static void snap_free(snap *s)
{
    free(s->ids);
    for (size_t i = 0; i < s->nf; i++)
        free(s->data[i]);
    memset(s, 0, sizeof *s);
}

static size_t tensor_bytes(const DLTensor *t)
{
    size_t n = (size_t)t->dtype.bits / 8 * t->dtype.lanes;
    for (int d = 0; d < t->ndim; d++)
        n *= (size_t)t->shape[d];
    return n;
}

/* DLPack allows explicit strides; the loader promises compact row-major either way. */
static bool compact(const DLTensor *t)
{
    if (t->byte_offset != 0)
        return false;
    if (!t->strides)
        return true;
    int64_t want = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] > 1 && t->strides[d] != want)
            return false;
        want *= t->shape[d];
    }
    return true;
}

/* Copies field i of b into s; a device tensor is read on stream after sp_batch_wait made the
 * stream wait for the batch's copy, which is the path a trainer takes. */
static void snap_field(const sp_batch *b, size_t i, cudaStream_t stream, snap *s)
{
    const DLTensor *t = sp_batch_tensor(b, i);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_le(t->ndim, MAX_NDIM);
    ck_assert_msg(compact(t), "field %s is not compact row-major", sp_batch_field_name(b, i));
    snprintf(s->name[i], sizeof s->name[i], "%s", sp_batch_field_name(b, i));
    s->dev[i] = t->device;
    s->dtype[i] = t->dtype;
    s->ndim[i] = t->ndim;
    memcpy(s->shape[i], t->shape, (size_t)t->ndim * sizeof *t->shape);
    s->bytes[i] = tensor_bytes(t);
    s->data[i] = malloc(s->bytes[i] ? s->bytes[i] : 1);
    ck_assert_ptr_nonnull(s->data[i]);
    if (t->device.device_type == kDLCPU)
        memcpy(s->data[i], t->data, s->bytes[i]);
    else
        CU_OK(cudaMemcpyAsync(s->data[i], t->data, s->bytes[i], cudaMemcpyDeviceToHost, stream));
}

static void snap_batch(const sp_batch *b, cudaStream_t stream, snap *s)
{
    s->device = sp_batch_device(b);
    s->epoch = sp_batch_epoch(b);
    s->index = sp_batch_index(b);
    s->rows = sp_batch_size(b);
    s->nf = sp_batch_num_fields(b);
    ck_assert_uint_le(s->nf, MAX_FIELDS);
    s->ids = malloc((s->rows + 1) * sizeof *s->ids);
    ck_assert_ptr_nonnull(s->ids);
    for (uint32_t r = 0; r < s->rows; r++)
        s->ids[r] = sp_batch_sample_id(b, r);
    /* Called for host batches too: for them it must return 0 at once. */
    int rc = sp_batch_wait(b, (void *)stream);
    ck_assert_msg(rc == 0, "sp_batch_wait: %s: %s", sp_error_name(rc), sp_last_error());
    bool on_device = false;
    for (size_t i = 0; i < s->nf; i++) {
        snap_field(b, i, stream, s);
        on_device |= s->dev[i].device_type != kDLCPU;
    }
    if (on_device)
        CU_OK(cudaStreamSynchronize(stream));
}

/* The next batch of l into s (s->rc the code of next()); the batch is released on stream. */
static void take(sp_loader *l, cudaStream_t stream, snap *s)
{
    memset(s, 0, sizeof *s);
    sp_batch *b = NULL;
    s->rc = sp_loader_next(l, &b, TIMEOUT_MS);
    if (s->rc != 0) {
        ck_assert_ptr_null(b);
        return;
    }
    snap_batch(b, stream, s);
    int rc = sp_loader_release_on(l, b, (void *)stream);
    ck_assert_msg(rc == 0, "sp_loader_release_on: %s: %s", sp_error_name(rc), sp_last_error());
}

/* Every tensor of s lives where its loader said: on cuda:dev, or on the host for dev -1. */
static void check_place(const snap *s, int dev, const char *what)
{
    ck_assert_msg(s->device == dev, "%s: sp_batch_device %d, want %d", what, s->device, dev);
    for (size_t i = 0; i < s->nf; i++) {
        if (dev < 0)
            ck_assert_msg(s->dev[i].device_type == kDLCPU, "%s: field %s not on the host", what, s->name[i]);
        else
            ck_assert_msg(s->dev[i].device_type == kDLCUDA && s->dev[i].device_id == dev,
                          "%s: field %s has device {%d, %d}, want {kDLCUDA, %d}", what, s->name[i],
                          (int)s->dev[i].device_type, s->dev[i].device_id, dev);
    }
}

/* Host batch h and device batch d are the same batch, byte for byte. */
static void snap_equal(const snap *h, const snap *d, const char *what)
{
    TU_CHECK(h->epoch == d->epoch && h->index == d->index && h->rows == d->rows,
             "%s: host batch (epoch %llu, index %llu, %u rows), device batch (%llu, %llu, %u)", what,
             (unsigned long long)h->epoch, (unsigned long long)h->index, h->rows, (unsigned long long)d->epoch,
             (unsigned long long)d->index, d->rows);
    for (uint32_t r = 0; r < h->rows; r++)
        TU_CHECK(h->ids[r] == d->ids[r], "%s: batch %llu row %u: sample %llu on the host, %llu on the device", what,
                 (unsigned long long)h->index, r, (unsigned long long)h->ids[r], (unsigned long long)d->ids[r]);
    TU_CHECK(h->nf == d->nf, "%s: %zu fields on the host, %zu on the device", what, h->nf, d->nf);
    for (size_t i = 0; i < h->nf; i++) {
        const char *f = h->name[i];
        TU_CHECK(strcmp(f, d->name[i]) == 0, "%s: field %zu is %s on the host, %s on the device", what, i, f,
                 d->name[i]);
        TU_CHECK(h->dtype[i].code == d->dtype[i].code && h->dtype[i].bits == d->dtype[i].bits &&
                     h->dtype[i].lanes == d->dtype[i].lanes,
                 "%s: field %s: dtype (%u, %u) on the host, (%u, %u) on the device", what, f, h->dtype[i].code,
                 h->dtype[i].bits, d->dtype[i].code, d->dtype[i].bits);
        TU_CHECK(h->ndim[i] == d->ndim[i] && memcmp(h->shape[i], d->shape[i], (size_t)h->ndim[i] * 8) == 0,
                 "%s: field %s: shapes differ", what, f);
        TU_CHECK(h->bytes[i] == d->bytes[i], "%s: field %s: %zu bytes vs %zu", what, f, h->bytes[i], d->bytes[i]);
        if (memcmp(h->data[i], d->data[i], h->bytes[i]) == 0)
            continue;
        size_t at = 0;
        while (h->data[i][at] == d->data[i][at])
            at++;
        ck_abort_msg("%s: epoch %llu batch %llu field %s: first difference at byte %zu of %zu (row %zu): host 0x%02x, "
                     "device 0x%02x",
                     what, (unsigned long long)h->epoch, (unsigned long long)h->index, f, at, h->bytes[i],
                     at / (h->bytes[i] / (h->rows ? h->rows : 1)), h->data[i][at], d->data[i][at]);
    }
}

/* A recorded run of batches. */
typedef struct run {
    snap *b;
    size_t nb, cap;
    uint64_t eepochs;
    uint64_t bytes; /* tensor bytes of every batch */
} run;

static void run_push(run *r, snap *s)
{
    if (r->nb == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        r->b = realloc(r->b, r->cap * sizeof *r->b);
        ck_assert_ptr_nonnull(r->b);
    }
    for (size_t i = 0; i < s->nf; i++)
        r->bytes += s->bytes[i];
    r->b[r->nb++] = *s;
    memset(s, 0, sizeof *s);
}

static void run_free(run *r)
{
    for (size_t i = 0; i < r->nb; i++)
        snap_free(&r->b[i]);
    free(r->b);
    memset(r, 0, sizeof *r);
}

/* Host loader h and device loader g in lockstep until SP_EDONE: the same codes in the same order
 * (SP_EEPOCH included) and the same batches. The device batches are kept in r. */
static void lockstep(sp_loader *h, sp_loader *g, cudaStream_t stream, const char *what, run *r)
{
    for (;;) {
        snap a, b;
        take(h, NULL, &a);
        take(g, stream, &b);
        ck_assert_msg(a.rc == b.rc, "%s: after %zu batches the host loader gave %s (%s), the device loader %s (%s)",
                      what, r->nb, sp_error_name(a.rc), sp_loader_errmsg(h), sp_error_name(b.rc),
                      sp_loader_errmsg(g));
        int rc = a.rc;
        if (rc == 0) {
            check_place(&a, -1, what);
            check_place(&b, 0, what);
            snap_equal(&a, &b, what);
            run_push(r, &b);
        }
        snap_free(&a);
        snap_free(&b);
        if (rc == SP_EDONE)
            return;
        ck_assert_msg(rc == 0 || rc == SP_EEPOCH, "%s: %s: %s", what, sp_error_name(rc), sp_loader_errmsg(g));
        r->eepochs += rc == SP_EEPOCH;
    }
}

/* Every batch of l until SP_EDONE, into r. */
static void drain(sp_loader *l, cudaStream_t stream, run *r)
{
    for (;;) {
        snap s;
        take(l, stream, &s);
        if (s.rc == SP_EDONE)
            return;
        ck_assert_msg(s.rc == 0 || s.rc == SP_EEPOCH, "%s: %s", sp_error_name(s.rc), sp_loader_errmsg(l));
        r->eepochs += s.rc == SP_EEPOCH;
        if (s.rc == 0)
            run_push(r, &s);
    }
}

/* The host loader's batch `index` of `epoch` for the parameters in base. */
static void host_at(const char *dir, const char *const *base, uint64_t epoch, uint64_t index, snap *out)
{
    sp_loader *l = open_kv(dir, base, ON_CPU);
    ck_assert_int_eq(sp_loader_set_epoch(l, epoch), 0);
    for (uint64_t k = 0; k <= index; k++) {
        take(l, NULL, out);
        ck_assert_msg(out->rc == 0, "host batch %llu of epoch %llu: %s", (unsigned long long)k,
                      (unsigned long long)epoch, sp_error_name(out->rc));
        if (k < index)
            snap_free(out);
    }
    close_ok(l);
}

static void gpu_setup(void)
{
    ck_assert_msg(sp_cuda_device_count() > 0, "no CUDA device: %s", sp_last_error());
    CU_OK(cudaSetDevice(0));
}

/* ------------------------------------------------------------------------------- a. tokens */

/* Token dataset over two epochs (and with token_dtype=int32): every device batch, copied back,
 * equals the host loader's; codes, sample ids and stats as documented. */
START_TEST(tokens_match_host)
{
    lt_ds d;
    ck_assert_int_eq(lt_make(&d, "gputok", 1000, 65, g_seed, "16K", "128K"), 0);
    const char *const cases[2][9] = {
        { "batch_size", "32", "epochs", "2", "seed", g_seedstr, "token_dtype", "stored", NULL },
        { "batch_size", "48", "epochs", "1", "seed", g_seedstr, "token_dtype", "int32", NULL },
    };
    for (int c = 0; c < 2; c++) {
        sp_loader *h = open_kv(d.dir, cases[c], ON_CPU), *g = open_kv(d.dir, cases[c], ON_GPU);
        uint64_t per_epoch = sp_loader_batches_per_epoch(h), epochs = c == 0 ? 2 : 1;
        ck_assert_uint_eq(sp_loader_batches_per_epoch(g), per_epoch);
        char what[64];
        snprintf(what, sizeof what, "token_dtype=%s batch_size=%s", cases[c][7], cases[c][1]);
        run r = { 0 };
        lockstep(h, g, NULL, what, &r);
        ck_assert_uint_eq(r.nb, epochs * per_epoch);
        ck_assert_uint_eq(r.eepochs, epochs);
        /* The last batch of an epoch is short (1000 is no multiple of 32 or 48). */
        ck_assert_uint_lt(r.b[per_epoch - 1].rows, c == 0 ? 32 : 48);
        sp_batch *b = (sp_batch *)(uintptr_t)1;
        ck_assert_int_eq(sp_loader_next(g, &b, TIMEOUT_MS), SP_EDONE);
        ck_assert_ptr_null(b);
        sp_loader_stats st = { .struct_size = sizeof st };
        ck_assert_int_eq(sp_loader_stats_get(g, &st), 0);
        ck_assert_int_eq(st.device, 0);
        ck_assert_msg(st.host_pinned == 1, "the batch ring is not page-locked");
        ck_assert_str_eq(st.device_note, "");
        ck_assert_uint_eq(st.batches, r.nb);
        ck_assert_uint_eq(st.device_batches, r.nb);
        ck_assert_msg(st.bytes_copied >= r.bytes, "bytes_copied %llu, but %llu bytes were delivered",
                      (unsigned long long)st.bytes_copied, (unsigned long long)r.bytes);
        ck_assert_uint_gt(st.device_ring_slots, 0);
        ck_assert_msg(st.device_ring_bytes > 0 && st.device_ring_bytes <= st.device_memory_bytes,
                      "device ring %llu bytes, budget %llu", (unsigned long long)st.device_ring_bytes,
                      (unsigned long long)st.device_memory_bytes);
        ck_assert_msg(st.device_bytes_peak > 0 && st.device_bytes_peak <= st.device_ring_bytes,
                      "device_bytes_peak %llu, ring %llu", (unsigned long long)st.device_bytes_peak,
                      (unsigned long long)st.device_ring_bytes);
        ck_assert_msg(st.copy_s > 0, "copy_s %g", st.copy_s);
        ck_assert_msg(st.device_empty_s >= 0, "device_empty_s %g", st.device_empty_s);
        /* The host loader reports no device stage. */
        ck_assert_int_eq(sp_loader_stats_get(h, &st), 0);
        ck_assert_int_eq(st.device, -1);
        ck_assert_uint_eq(st.device_batches, 0);
        ck_assert_uint_eq(st.bytes_copied, 0);
        run_free(&r);
        close_ok(h);
        close_ok(g);
    }
    lt_ds_free(&d);
}
END_TEST

/* ------------------------------------------------------------------------------- b. images */

static float half_to_float(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 1024), e - 25);
    return h & 0x8000 ? -v : v;
}

static float bf16_to_float(uint16_t h)
{
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* Distance in units in the last place between two finite floats. */
static int64_t ulps(float a, float b)
{
    int32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    int64_t ox = x < 0 ? (int64_t)INT32_MIN - x : x, oy = y < 0 ? (int64_t)INT32_MIN - y : y;
    return ox > oy ? ox - oy : oy - ox;
}

static float element(const uint8_t *p, size_t idx, int dtype)
{
    if (dtype == SP_IMAGE_FLOAT32) {
        float f;
        memcpy(&f, p + 4 * idx, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * idx, 2);
    return dtype == SP_IMAGE_FLOAT16 ? half_to_float(h) : bf16_to_float(h);
}

/* Device image batch d (dtype, nchw or not) against the uint8 NHWC host batch u of the same
 * position, through the normalization written out here: ((float)v / 255 - mean[c]) / std[c] in
 * float with the default mean and std. float32 must be within one ulp of it; float16 and bfloat16
 * within their rounding of it. This checks the kernel and its tables against the formula itself,
 * not only against the host stage. */
static void check_formula(const snap *u, const snap *d, int dtype, bool nchw, const char *what)
{
    int fu = -1, fd = -1;
    for (size_t i = 0; i < u->nf; i++)
        fu = strcmp(u->name[i], "image") == 0 ? (int)i : fu;
    for (size_t i = 0; i < d->nf; i++)
        fd = strcmp(d->name[i], "image") == 0 ? (int)i : fd;
    ck_assert(fu >= 0 && fd >= 0);
    ck_assert_uint_eq(u->rows, d->rows);
    double md[3], sd[3];
    ck_assert_int_eq(sp_params_get_float3(NULL, SP_PARAM_MEAN, md), 0);
    ck_assert_int_eq(sp_params_get_float3(NULL, SP_PARAM_STD, sd), 0);
    const float mean[3] = { (float)md[0], (float)md[1], (float)md[2] }, sdev[3] = { (float)sd[0], (float)sd[1], (float)sd[2] };
    const size_t S = (size_t)u->shape[fu][1];
    const double rel = dtype == SP_IMAGE_FLOAT16 ? 0x1p-11 : 0x1p-8;
    const uint8_t *px = u->data[fu];
    for (size_t r = 0; r < u->rows; r++)
        for (size_t y = 0; y < S; y++)
            for (size_t x = 0; x < S; x++)
                for (size_t c = 0; c < 3; c++) {
                    uint8_t v = px[((r * S + y) * S + x) * 3 + c];
                    float want = ((float)v / 255.0f - mean[c]) / sdev[c];
                    size_t idx = nchw ? ((r * 3 + c) * S + y) * S + x : ((r * S + y) * S + x) * 3 + c;
                    float got = element(d->data[fd], idx, dtype);
                    bool ok = dtype == SP_IMAGE_FLOAT32
                                  ? ulps(got, want) <= 1
                                  : fabs((double)got - want) <= fabs(want) * (rel + 0x1p-23) + 0x1p-24;
                    TU_CHECK(ok, "%s: batch %llu row %zu (y %zu, x %zu, channel %zu): pixel %u gives %.9g, the formula %.9g",
                             what, (unsigned long long)d->index, r, y, x, c, v, got, want);
                }
}

/* One epoch of a JPEG dataset for every device_dtype and device_layout (and device_dtype=none):
 * each device batch equals the host batch opened with image_dtype/image_layout set to the same
 * dtype and layout, and the float ones follow the normalization formula. */
START_TEST(images_match_host)
{
    tg_images d;
    tg_make_images(&d, 40, g_seed);
    const char *const base[] = { "batch_size", "8", "image_size", "48", "seed", g_seedstr, "transform", "train",
                                 "host_memory", "128M", "max_image_memory", "8M", "epochs", "1", NULL };
    /* The uint8 NHWC pixels every float row is made from. */
    run ref = { 0 };
    const char *const u8[] = { "device", "cpu", "image_dtype", "uint8", "image_layout", "nhwc", NULL };
    sp_loader *l = open_kv(d.dir, base, u8);
    drain(l, NULL, &ref);
    close_ok(l);
    ck_assert_uint_eq(ref.nb, 5);
    static const struct {
        const char *ddtype, *dlayout; /* the device loader's device_dtype and device_layout */
        const char *hdtype, *hlayout; /* image_dtype and image_layout, of both loaders */
        int dtype;                    /* SP_IMAGE_* the device batch holds */
        uint8_t code, bits;
    } cfg[] = {
        { "float16", "nchw", "float16", "nchw", SP_IMAGE_FLOAT16, kDLFloat, 16 },
        { "float16", "nhwc", "float16", "nhwc", SP_IMAGE_FLOAT16, kDLFloat, 16 },
        { "bfloat16", "nchw", "bfloat16", "nchw", SP_IMAGE_BFLOAT16, kDLBfloat, 16 },
        { "bfloat16", "nhwc", "bfloat16", "nhwc", SP_IMAGE_BFLOAT16, kDLBfloat, 16 },
        { "float32", "nchw", "float32", "nchw", SP_IMAGE_FLOAT32, kDLFloat, 32 },
        { "float32", "nhwc", "float32", "nhwc", SP_IMAGE_FLOAT32, kDLFloat, 32 },
        /* none: the host's image_dtype and image_layout cross as they are */
        { "none", NULL, "uint8", "nhwc", SP_IMAGE_UINT8, kDLUInt, 8 },
        { "none", NULL, "float32", "nchw", SP_IMAGE_FLOAT32, kDLFloat, 32 },
    };
    for (size_t k = 0; k < sizeof cfg / sizeof cfg[0]; k++) {
        char what[96];
        snprintf(what, sizeof what, "device_dtype=%s device_layout=%s image_dtype=%s", cfg[k].ddtype,
                 cfg[k].dlayout ? cfg[k].dlayout : "-", cfg[k].hdtype);
        const char *const host[] = { "device", "cpu", "image_dtype", cfg[k].hdtype, "image_layout", cfg[k].hlayout,
                                     NULL };
        const char *const dev_none[] = { "device", "cuda:0", "device_dtype", "none", "image_dtype", cfg[k].hdtype,
                                         "image_layout", cfg[k].hlayout, NULL };
        const char *const dev_conv[] = { "device", "cuda:0", "device_dtype", cfg[k].ddtype, "device_layout",
                                         cfg[k].dlayout, NULL };
        sp_loader *h = open_kv(d.dir, base, host), *g = open_kv(d.dir, base, cfg[k].dlayout ? dev_conv : dev_none);
        run r = { 0 };
        lockstep(h, g, NULL, what, &r);
        ck_assert_uint_eq(r.nb, ref.nb);
        const bool nchw = strcmp(cfg[k].hlayout, "nchw") == 0;
        const int64_t S = 48, want[2][3] = { { S, S, 3 }, { 3, S, S } };
        for (size_t i = 0; i < r.nb; i++) {
            const snap *s = &r.b[i];
            ck_assert_str_eq(s->name[0], "image");
            ck_assert_msg(s->dtype[0].code == cfg[k].code && s->dtype[0].bits == cfg[k].bits && s->dtype[0].lanes == 1,
                          "%s: image dtype (%u, %u)", what, s->dtype[0].code, s->dtype[0].bits);
            ck_assert_int_eq(s->ndim[0], 4);
            ck_assert_int_eq(s->shape[0][0], s->rows);
            for (int j = 0; j < 3; j++)
                ck_assert_int_eq(s->shape[0][1 + j], want[nchw][j]);
            if (cfg[k].dtype != SP_IMAGE_UINT8)
                check_formula(&ref.b[i], s, cfg[k].dtype, nchw, what);
            else
                ck_assert(memcmp(s->data[0], ref.b[i].data[0], s->bytes[0]) == 0);
        }
        sp_loader_stats st = { .struct_size = sizeof st };
        ck_assert_int_eq(sp_loader_stats_get(g, &st), 0);
        ck_assert_int_eq(st.device, 0);
        ck_assert_uint_eq(st.device_batches, r.nb);
        ck_assert_uint_eq(st.images_decoded, 40);
        run_free(&r);
        close_ok(h);
        close_ok(g);
    }
    run_free(&ref);
    tg_free_images(&d);
}
END_TEST

/* ------------------------------------------------------------------------------- c. stream order */

/* Bytes of one device slot for these parameters, read from the ring a first batch allocated. */
static uint64_t slot_bytes(const char *dir, const char *const *base)
{
    sp_loader *l = open_kv(dir, base, ON_GPU);
    sp_batch *b;
    int rc = sp_loader_next(l, &b, TIMEOUT_MS);
    ck_assert_msg(rc == 0, "%s: %s", sp_error_name(rc), sp_loader_errmsg(l));
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_int_eq(sp_loader_release(l, b), 0);
    close_ok(l);
    ck_assert_uint_gt(st.device_ring_slots, 0);
    return st.device_ring_bytes / st.device_ring_slots;
}

#define SPIN_US 200

/* A ring of two device slots and a consumer whose kernel holds each batch for SPIN_US before it
 * copies the tokens out, released at once with release_on: the host runs far ahead of the GPU,
 * so only the release events keep the copy stream from overwriting a slot still being read. Every
 * copied-out tensor must then be its own batch's, as the host loader gives it. */
static void stress(const lt_ds *d, const char *const *base, cudaStream_t stream, int nbatches, const char *what)
{
    char mem[32];
    snprintf(mem, sizeof mem, "%llu", (unsigned long long)(2 * slot_bytes(d->dir, base)));
    const char *const dev[] = { "device", "cuda:0", "device_memory", mem, NULL };
    sp_loader *l = open_kv(d->dir, base, dev);
    const size_t tok = (size_t)16 * d->seq * 2; /* batch_size 16, uint16 tokens */
    uint8_t *out;
    CU_OK(cudaMalloc((void **)&out, (size_t)nbatches * tok));
    CU_OK(cudaMemset(out, 0xA5, (size_t)nbatches * tok));
    CU_OK(cudaDeviceSynchronize());
    uint64_t *pos = calloc((size_t)nbatches, sizeof *pos);
    ck_assert_ptr_nonnull(pos);
    double t0 = lt_now();
    for (int k = 0; k < nbatches;) {
        sp_batch *b;
        int rc = sp_loader_next(l, &b, TIMEOUT_MS);
        if (rc == SP_EEPOCH)
            continue;
        TU_CHECK(rc == 0, "%s: batch %d: %s: %s", what, k, sp_error_name(rc), sp_loader_errmsg(l));
        int ft = sp_batch_find(b, "tokens");
        TU_CHECK(ft >= 0 && lt_field_bytes(b, (size_t)ft) == tok, "%s: tokens field", what);
        TU_CHECK(sp_batch_wait(b, (void *)stream) == 0, "%s: sp_batch_wait: %s", what, sp_last_error());
        int e = tg_launch_spin_copy(sp_batch_tensor(b, (size_t)ft)->data, out + (size_t)k * tok, tok, SPIN_US,
                                    (void *)stream);
        TU_CHECK(e == 0, "%s: launch: %s", what, cudaGetErrorString((cudaError_t)e));
        pos[k++] = sp_batch_epoch(b) << 32 | sp_batch_index(b);
        TU_CHECK(sp_loader_release_on(l, b, (void *)stream) == 0, "%s: release_on: %s", what, sp_last_error());
    }
    double queued = lt_now() - t0;
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_msg(st.device_ring_slots == 2, "%s: device_memory=%s gave %llu slots, want 2", what, mem,
                  (unsigned long long)st.device_ring_slots);
    ck_assert_uint_le(st.device_bytes_peak, st.device_ring_bytes);
    CU_OK(cudaStreamSynchronize(stream));
    printf("%s: %d batches queued in %.1f ms, done after %.1f ms (the consumer's kernels alone: %d ms)\n", what,
           nbatches, queued * 1e3, (lt_now() - t0) * 1e3, nbatches * SPIN_US / 1000);
    close_ok(l);
    /* The host loader's batches at the same positions. */
    sp_loader *h = open_kv(d->dir, base, ON_CPU);
    uint8_t *got = malloc(tok);
    ck_assert_ptr_nonnull(got);
    for (int k = 0; k < nbatches;) {
        sp_batch *b;
        int rc = sp_loader_next(h, &b, TIMEOUT_MS);
        if (rc == SP_EEPOCH)
            continue;
        ck_assert_int_eq(rc, 0);
        TU_CHECK(pos[k] == (sp_batch_epoch(b) << 32 | sp_batch_index(b)), "%s: batch %d out of step", what, k);
        CU_OK(cudaMemcpy(got, out + (size_t)k * tok, tok, cudaMemcpyDeviceToHost));
        const void *want = sp_batch_tensor(b, (size_t)sp_batch_find(b, "tokens"))->data;
        TU_CHECK(memcmp(got, want, tok) == 0,
                 "%s: batch %d (epoch %llu, index %llu): the consumer's kernel read other bytes than the batch's: "
                 "its slot was written again before the kernel released it, or before the copy was waited for",
                 what, k, (unsigned long long)sp_batch_epoch(b), (unsigned long long)sp_batch_index(b));
        ck_assert_int_eq(sp_loader_release(h, b), 0);
        k++;
    }
    close_ok(h);
    free(got);
    free(pos);
    CU_OK(cudaFree(out));
}

START_TEST(reuse_ordered_by_stream)
{
    lt_ds d;
    ck_assert_int_eq(lt_make(&d, "gpustress", 1024, 513, g_seed ^ 0x57e55, "16K", "256K"), 0);
    const char *const base[] = { "batch_size", "16", "epochs", "4", "seed", g_seedstr, NULL };
    cudaStream_t s;
    CU_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    stress(&d, base, s, 200, "non-blocking stream");
    CU_OK(cudaStreamDestroy(s));
    /* The special handles DLPack's stream= passes: per-thread and legacy default streams. */
    stress(&d, base, cudaStreamPerThread, 60, "cudaStreamPerThread");
    stress(&d, base, cudaStreamLegacy, 60, "cudaStreamLegacy");
    lt_ds_free(&d);
}
END_TEST

/* ------------------------------------------------------------------------------- d. close */

/* Releases b on stream behind a kernel that holds it for spin_us, copying its tokens to out. */
static void release_behind_kernel(sp_loader *l, sp_batch *b, cudaStream_t stream, uint8_t *out, uint32_t spin_us)
{
    int ft = sp_batch_find(b, "tokens");
    ck_assert_int_ge(ft, 0);
    ck_assert_int_eq(sp_batch_wait(b, (void *)stream), 0);
    const DLTensor *t = sp_batch_tensor(b, (size_t)ft);
    int e = tg_launch_spin_copy(t->data, out, tensor_bytes(t), spin_us, (void *)stream);
    ck_assert_msg(e == 0, "launch: %s", cudaGetErrorString((cudaError_t)e));
    ck_assert_int_eq(sp_loader_release_on(l, b, (void *)stream), 0);
}

static void check_tokens(const uint8_t *dev, const snap *want, const char *what)
{
    size_t ft = 0;
    while (ft < want->nf && strcmp(want->name[ft], "tokens") != 0)
        ft++;
    ck_assert_uint_lt(ft, want->nf);
    uint8_t *got = malloc(want->bytes[ft]);
    ck_assert_ptr_nonnull(got);
    CU_OK(cudaMemcpy(got, dev, want->bytes[ft], cudaMemcpyDeviceToHost));
    ck_assert_msg(memcmp(got, want->data[ft], want->bytes[ft]) == 0, "%s: the tokens read differ from batch 0's",
                  what);
    free(got);
}

/* close waits for the GPU to finish with every slot; close with a device batch leased is refused
 * and frees nothing; close with copies in flight, or before any batch, succeeds. */
START_TEST(close_waits_for_gpu)
{
    lt_ds d;
    ck_assert_int_eq(lt_make(&d, "gpuclose", 256, 129, g_seed ^ 0xc105e, "8K", "64K"), 0);
    const char *const base[] = { "batch_size", "16", "seed", g_seedstr, NULL };
    snap first;
    host_at(d.dir, base, 0, 0, &first);
    cudaStream_t s;
    CU_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    uint8_t *out;
    CU_OK(cudaMalloc((void **)&out, 16 * 129 * 2));

    sp_loader *l = open_kv(d.dir, base, ON_GPU);
    sp_batch *b;
    ck_assert_int_eq(sp_loader_next(l, &b, TIMEOUT_MS), 0);
    release_behind_kernel(l, b, s, out, 150000);
    if (cudaStreamQuery(s) != cudaErrorNotReady) /* the host was descheduled for 150 ms */
        printf("close_waits_for_gpu: the kernel finished before close was called; the check proves little\n");
    double t0 = lt_now();
    close_ok(l);
    ck_assert_msg(cudaStreamQuery(s) == cudaSuccess,
                  "sp_loader_close returned after %.1f ms while the consumer's kernel still read a slot",
                  (lt_now() - t0) * 1e3);
    check_tokens(out, &first, "close behind a slow kernel");

    l = open_kv(d.dir, base, ON_GPU);
    ck_assert_int_eq(sp_loader_next(l, &b, TIMEOUT_MS), 0);
    ck_assert_int_eq(sp_loader_close(l), SP_EBUSY);
    /* Refused means nothing was freed: the leased batch still reads right. */
    release_behind_kernel(l, b, s, out, 0);
    CU_OK(cudaStreamSynchronize(s));
    check_tokens(out, &first, "a batch still leased at a refused close");
    close_ok(l);

    l = open_kv(d.dir, base, ON_GPU);
    ck_assert_int_eq(sp_loader_next(l, &b, TIMEOUT_MS), 0);
    ck_assert_int_eq(sp_loader_release(l, b), 0);
    close_ok(l); /* with the next copies most likely in flight */
    close_ok(open_kv(d.dir, base, ON_GPU)); /* no batch taken: no device ring yet */

    CU_OK(cudaFree(out));
    CU_OK(cudaStreamDestroy(s));
    snap_free(&first);
    lt_ds_free(&d);
}
END_TEST

/* ------------------------------------------------------------------------------- e. resume */

static void take_expect(sp_loader *g, const char *dir, const char *const *base, uint64_t epoch, uint64_t index,
                        const char *what)
{
    snap want, got;
    host_at(dir, base, epoch, index, &want);
    take(g, cudaStreamPerThread, &got);
    ck_assert_msg(got.rc == 0, "%s: %s: %s", what, sp_error_name(got.rc), sp_loader_errmsg(g));
    check_place(&got, 0, what);
    snap_equal(&want, &got, what);
    snap_free(&want);
    snap_free(&got);
}

/* save_state / load_state and set_epoch on a device loader: the next batch is the host loader's
 * at the same position; a batch leased across set_epoch stays valid. */
START_TEST(resume_and_set_epoch)
{
    lt_ds d;
    ck_assert_int_eq(lt_make(&d, "gpuresume", 600, 33, g_seed ^ 0x4e5, "8K", "64K"), 0);
    const char *const base[] = { "batch_size", "32", "epochs", "3", "seed", g_seedstr, NULL };
    sp_loader *g = open_kv(d.dir, base, ON_GPU);
    snap s;
    for (int k = 0; k < 5; k++) {
        take(g, cudaStreamPerThread, &s);
        ck_assert_int_eq(s.rc, 0);
        snap_free(&s);
    }
    uint8_t state[SP_LOADER_STATE_BYTES];
    ck_assert_int_eq(sp_loader_save_state(g, state, sizeof state), 0);
    for (int k = 0; k < 3; k++) {
        take(g, cudaStreamPerThread, &s);
        snap_free(&s);
    }
    ck_assert_int_eq(sp_loader_load_state(g, state, sizeof state), 0);
    take_expect(g, d.dir, base, 0, 5, "after load_state");
    /* The saved state resumes a fresh device loader too. */
    sp_loader *g2 = open_kv(d.dir, base, ON_GPU);
    ck_assert_int_eq(sp_loader_load_state(g2, state, sizeof state), 0);
    take_expect(g2, d.dir, base, 0, 5, "a new loader after load_state");
    close_ok(g2);

    ck_assert_int_eq(sp_loader_set_epoch(g, 2), 0);
    take_expect(g, d.dir, base, 2, 0, "after set_epoch(2)");
    /* A batch leased across set_epoch keeps its slot until it is released. */
    sp_batch *held;
    ck_assert_int_eq(sp_loader_next(g, &held, TIMEOUT_MS), 0);
    ck_assert_int_eq(sp_loader_set_epoch(g, 1), 0);
    take_expect(g, d.dir, base, 1, 0, "after set_epoch(1) with a batch held");
    take_expect(g, d.dir, base, 1, 1, "the batch after");
    snap want, got = { 0 };
    host_at(d.dir, base, 2, 1, &want);
    snap_batch(held, cudaStreamPerThread, &got);
    snap_equal(&want, &got, "the batch held across set_epoch");
    ck_assert_int_eq(sp_loader_release_on(g, held, cudaStreamPerThread), 0);
    snap_free(&want);
    snap_free(&got);
    close_ok(g);
    lt_ds_free(&d);
}
END_TEST

/* ------------------------------------------------------------------------------- f. devices */

/* device=cuda:N past the last device fails (at open or at the first next) with SP_EDEVICE and a
 * message naming it; device=auto takes the current device and says nothing in device_note. */
START_TEST(absent_device_refused)
{
    int n = sp_cuda_device_count(), mine = 0;
    CU_OK(cudaGetDeviceCount(&mine));
    ck_assert_msg(n == mine, "the library counts %d devices, the CUDA runtime %d", n, mine);
    lt_ds d;
    ck_assert_int_eq(lt_make(&d, "gpuabsent", 64, 9, g_seed ^ 0xab5, "4K", "64K"), 0);
    char name[32], alt[32], msg[1024];
    snprintf(name, sizeof name, "cuda:%d", n);
    snprintf(alt, sizeof alt, "device %d", n);
    const char *const kv[] = { "device", name, NULL };
    sp_loader *l;
    int rc = open_rc(d.dir, NULL, kv, &l);
    if (rc == 0) {
        sp_batch *b = (sp_batch *)(uintptr_t)1;
        rc = sp_loader_next(l, &b, TIMEOUT_MS);
        snprintf(msg, sizeof msg, "%s", sp_loader_errmsg(l));
        ck_assert_ptr_null(b);
    } else {
        snprintf(msg, sizeof msg, "%s", g_openmsg);
        ck_assert_ptr_null(l);
    }
    ck_assert_msg(rc == SP_EDEVICE, "device=%s: %s (want SP_EDEVICE): %s", name, sp_error_name(rc), msg);
    ck_assert_msg(strstr(msg, name) || strstr(msg, alt), "the message does not name %s: %s", name, msg);
    close_ok(l);

    const char *const autokv[] = { "device", "auto", NULL };
    l = open_kv(d.dir, NULL, autokv);
    snap s;
    take(l, NULL, &s);
    ck_assert_int_eq(s.rc, 0);
    check_place(&s, 0, "device=auto");
    sp_loader_stats st = { .struct_size = sizeof st };
    ck_assert_int_eq(sp_loader_stats_get(l, &st), 0);
    ck_assert_int_eq(st.device, 0);
    ck_assert_str_eq(st.device_note, "");
    snap_free(&s);
    close_ok(l);
    lt_ds_free(&d);
}
END_TEST

/* ------------------------------------------------------------------------------- main */

/* The device count, asked in a child process: CUDA does not survive fork, so a context made here
 * would leave every test Check forks without one. why gets the library's reason when it is 0. */
static int probe_devices(char *why, size_t len)
{
    int fd[2];
    if (pipe(fd))
        return snprintf(why, len, "pipe failed"), 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return snprintf(why, len, "fork failed"), 0;
    if (pid == 0) {
        close(fd[0]);
        char buf[600];
        int n = sp_cuda_device_count();
        int k = snprintf(buf, sizeof buf, "%d %s", n, n > 0 ? "" : sp_last_error());
        ssize_t w = write(fd[1], buf, (size_t)k < sizeof buf ? (size_t)k : sizeof buf - 1);
        _exit(w > 0 ? 0 : 1);
    }
    close(fd[1]);
    char buf[600] = { 0 };
    size_t got = 0;
    for (ssize_t k; got < sizeof buf - 1 && (k = read(fd[0], buf + got, sizeof buf - 1 - got)) > 0;)
        got += (size_t)k;
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    int n = 0, off = 0;
    if (!WIFEXITED(status) || sscanf(buf, "%d %n", &n, &off) < 1)
        return snprintf(why, len, "the probe process failed (status 0x%x)", status), 0;
    snprintf(why, len, "%s", *(buf + off) ? buf + off : "sp_cuda_device_count() returned 0");
    return n;
}

int main(void)
{
    char why[600];
    int n = probe_devices(why, sizeof why);
    if (n <= 0) {
        printf("SKIP: no CUDA device: %s\n", why);
        return 77;
    }
    g_seed = tu_seed(20250611);
    snprintf(g_seedstr, sizeof g_seedstr, "%llu", (unsigned long long)(g_seed & INT64_MAX));
    printf("%d CUDA device(s); tests use cuda:0\n", n);
    Suite *s = suite_create("cuda_loader");
    TCase *tt = tu_tcase(s, "tokens", 120);
    tcase_add_checked_fixture(tt, gpu_setup, NULL);
    tcase_add_test(tt, tokens_match_host);
    tcase_add_test(tt, resume_and_set_epoch);
    tcase_add_test(tt, absent_device_refused);
    TCase *ti = tu_tcase(s, "images", 180);
    tcase_add_checked_fixture(ti, gpu_setup, NULL);
    tcase_add_test(ti, images_match_host);
    TCase *ts = tu_tcase(s, "streams", 120);
    tcase_add_checked_fixture(ts, gpu_setup, NULL);
    tcase_add_test(ts, reuse_ordered_by_stream);
    tcase_add_test(ts, close_waits_for_gpu);
    return tu_run(s, g_seed);
}
