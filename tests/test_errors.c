/* test_errors.c - every public function's failure paths set sp_last_error() to a fresh message naming the function or the object, calls returning 0 clear it, the list covers every SP_API function of shardpack.h, and messages are cut at SP_ERRMSG_MAX. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "test_util.h"

#ifndef SP_PUBLIC_HEADER
#error "meson passes the path of include/shardpack.h as SP_PUBLIC_HEADER"
#endif

/* A message no call under test would produce: each case starts with it as the thread's last error,
 * so a failing call that leaves the message alone is caught. */
#define STALE "stale-marker-from-an-earlier-call"

#define MAX_NAMES 256
static const char *g_covered[MAX_NAMES];
static size_t g_ncovered;

static void covered(const char *fn)
{
    for (size_t i = 0; i < g_ncovered; i++)
        if (strcmp(g_covered[i], fn) == 0)
            return;
    ck_assert(g_ncovered < MAX_NAMES);
    g_covered[g_ncovered++] = fn;
}

static void stale(void)
{
    ck_assert_int_eq(sp_param_lookup(STALE), SP_ENOENT);
    ck_assert_ptr_nonnull(strstr(sp_last_error(), STALE));
}

static void check_message(const char *fn, bool failed, const char *expect, int line)
{
    const char *m = sp_last_error();
    ck_assert_msg(failed, "line %d: %s did not fail", line, fn);
    ck_assert_msg(m[0] != '\0', "line %d: %s failed without a message", line, fn);
    ck_assert_msg(!strstr(m, STALE), "line %d: %s failed leaving the earlier message '%s'", line, fn, m);
    ck_assert_msg(strstr(m, expect), "line %d: %s: message '%s' does not name '%s'", line, fn, m, expect);
    covered(fn);
}

/* The call fails (cond on its result r_), with a fresh message containing expect. */
#define FAILS(fn, call, cond, expect)                                                              \
    do {                                                                                           \
        stale();                                                                                   \
        __typeof__(call) r_ = (call);                                                              \
        check_message(#fn, (cond), (expect), __LINE__);                                            \
    } while (0)
#define FAILS_RC(fn, args, expect) FAILS(fn, fn args, r_ < 0, expect)
#define FAILS_NULL(fn, args, expect) FAILS(fn, fn args, r_ == NULL, expect)
#define FAILS_ZERO(fn, args, expect) FAILS(fn, fn args, r_ == 0, expect)

/* A query succeeds leaving the earlier message as it was (shardpack.h: a caller may read stats
 * after a failure and still report it). */
#define KEEPS(call)                                                                                \
    do {                                                                                           \
        stale();                                                                                   \
        int rc_ = (call);                                                                          \
        ck_assert_msg(rc_ == 0, "%s: %s (%s)", #call, sp_error_name(rc_), sp_last_error());       \
        ck_assert_msg(strstr(sp_last_error(), STALE), "%s changed the message to '%s'", #call, sp_last_error()); \
    } while (0)

/* Any other call returning 0 (SP_OK) clears the earlier message. */
#define CLEARS(call)                                                                               \
    do {                                                                                           \
        stale();                                                                                   \
        int rc_ = (call);                                                                          \
        ck_assert_msg(rc_ == 0, "%s: %s (%s)", #call, sp_error_name(rc_), sp_last_error());       \
        ck_assert_msg(sp_last_error()[0] == '\0', "%s returned 0 leaving '%s'", #call, sp_last_error()); \
    } while (0)

/* Functions that cannot fail (they have no failure value), or fail only when out of memory (their
 * messages are checked by test_alloc_fail's path through the internal library). */
static const char *const cannot_fail[] = {
    "sp_version", "sp_abi_version", "sp_strerror", "sp_error_name", "sp_last_error", "sp_param_count",
    "sp_params_destroy", "sp_schema_destroy", "sp_schema_num_fields", "sp_schema_equal",
    "sp_writer_destroy", "sp_writer_errmsg", "sp_writer_abort", "sp_writer_failed", "sp_dataset_close", "sp_dataset_errmsg", "sp_dataset_schema",
    "sp_dataset_num_samples", "sp_dataset_num_blocks", "sp_dataset_num_shards", "sp_dataset_fingerprint",
    "sp_dataset_meta_count", "sp_block_free", "sp_block_num_samples", "sp_loader_errmsg", "sp_batch_epoch",
    "sp_batch_index", "sp_batch_size", "sp_batch_num_fields", "sp_batch_device", "sp_loader_state_size",
    "sp_image_transform_destroy", "sp_image_transform_errmsg", "sp_image_transform_bytes", "sp_checksum64",
    "sp_import_kind_count", "sp_import_destroy", "sp_import_errmsg", "sp_import_abort",
};
static const char *const oom_only[] = { "sp_params_create", "sp_schema_create" };

static bool listed(const char *fn, const char *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], fn) == 0)
            return true;
    return false;
}

/* Every function shardpack.h declares with SP_API, into names (strdup'd); returns the count. */
static size_t header_functions(char **names, size_t max)
{
    size_t len;
    uint8_t *raw = tu_read_file(SP_PUBLIC_HEADER, &len);
    char *text = malloc(len + 1); /* tu_read_file gives bytes, not a string */
    memcpy(text, raw, len);
    text[len] = '\0';
    free(raw);
    size_t n = 0;
    for (char *p = text; (p = strstr(p, "SP_API ")) != NULL; p += 7) {
        char *paren = strchr(p, '(');
        char *semi = strchr(p, ';');
        if (!paren || !semi || semi < paren)
            continue; /* the macro's own definition */
        char *end = paren;
        while (end > p && end[-1] == ' ')
            end--;
        char *start = end;
        while (start > p && (start[-1] == '_' || (start[-1] >= 'a' && start[-1] <= 'z') ||
                             (start[-1] >= '0' && start[-1] <= '9')))
            start--;
        if (end - start < 4 || strncmp(start, "sp_", 3) != 0)
            continue;
        ck_assert(n < max);
        names[n++] = strndup(start, (size_t)(end - start));
    }
    free(text);
    return n;
}

typedef struct fixture {
    char *parent, *dir;
    sp_dataset *ds;
    sp_block *blk;
    sp_loader *l;
    sp_batch *b;
} fixture;

/* A small dataset of tokens and labels, opened, with a block read and a loader holding a batch. */
static fixture fixture_make(void)
{
    fixture fx = { 0 };
    fx.dir = tu_dataset_dir("errors", &fx.parent);
    tu_data d = { .schema = sp_schema_create(), .seed = 5, .nsamples = 64 };
    uint64_t len = 8;
    ck_assert(sp_schema_add(d.schema, "tok", SP_FIELD_TOKENS, SP_DTYPE_U16, 1, &len) == 0);
    ck_assert(sp_schema_add(d.schema, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL) == 0);
    ck_assert_msg(tu_write_dataset(fx.dir, &d, NULL, NULL) == 0, "%s", sp_last_error());
    sp_schema_destroy(d.schema);
    ck_assert_int_eq(sp_dataset_open(fx.dir, NULL, &fx.ds), 0);
    ck_assert_int_eq(sp_dataset_read_block(fx.ds, 0, &fx.blk), 0);
    sp_params *p = tu_params("batch_size", "8", "threads", "1", NULL);
    ck_assert_int_eq(sp_loader_open(fx.dir, p, &fx.l), 0);
    sp_params_destroy(p);
    ck_assert_int_eq(sp_loader_next(fx.l, &fx.b, 10000), 0);
    return fx;
}

static void fixture_free(fixture *fx)
{
    if (fx->b)
        ck_assert_int_eq(sp_loader_release(fx->l, fx->b), 0);
    ck_assert_int_eq(sp_loader_close(fx->l), 0);
    sp_block_free(fx->blk);
    sp_dataset_close(fx->ds);
    tu_rmtree(fx->parent);
    free(fx->parent);
    free(fx->dir);
}

static void tables_and_params(void)
{
    FAILS_NULL(sp_dtype_name, (99), "sp_dtype_name");
    FAILS_ZERO(sp_dtype_size, (99), "sp_dtype_size");
    FAILS_RC(sp_dtype_from_name, ("f4"), "'f4'");
    FAILS_RC(sp_dtype_from_name, (NULL), "sp_dtype_from_name");
    FAILS_NULL(sp_field_kind_name, (0), "sp_field_kind_name");
    FAILS_RC(sp_field_kind_from_name, ("picture"), "'picture'");
    FAILS_RC(sp_field_kind_from_name, (NULL), "sp_field_kind_from_name");

    sp_param_info pi = { .struct_size = sizeof pi }, small = { 0 };
    FAILS_RC(sp_param_describe, (-1, &pi), "sp_param_describe");
    FAILS_RC(sp_param_describe, (SP_PARAM_COUNT_, &pi), "sp_param_describe");
    FAILS_RC(sp_param_describe, (0, NULL), "sp_param_describe");
    FAILS_RC(sp_param_describe, (0, &small), "sp_param_info.struct_size");
    FAILS_RC(sp_param_lookup, ("no_such_param"), "no_such_param");
    FAILS_RC(sp_param_lookup, (NULL), "sp_param_lookup");
    KEEPS(sp_param_describe(0, &pi));

    sp_params *p = sp_params_create();
    ck_assert_ptr_nonnull(p);
    FAILS_RC(sp_params_set, (NULL, SP_PARAM_SEED, 1), "sp_params_set");
    FAILS_RC(sp_params_set, (p, -3, 1), "sp_params_set");
    FAILS_RC(sp_params_set, (p, SP_PARAM_BLOCK_SIZE, 1), "block_size");
    FAILS_RC(sp_params_set, (p, SP_PARAM_MEAN, 1), "mean");
    FAILS_RC(sp_params_set_str, (p, "no_such_param", "1"), "no_such_param");
    FAILS_RC(sp_params_set_str, (p, "level", "high"), "level");
    FAILS_RC(sp_params_set_str, (NULL, "level", "3"), "sp_params_set_str");
    FAILS_ZERO(sp_params_get, (p, 9999), "sp_params_get");
    double f3[3] = { NAN, 0, 0 };
    FAILS_RC(sp_params_get_float3, (p, SP_PARAM_SEED, f3), "sp_params_get_float3");
    FAILS_NULL(sp_params_get_str, (p, SP_PARAM_SEED), "sp_params_get_str");
    FAILS_RC(sp_params_set_float3, (p, SP_PARAM_MEAN, f3), "mean");
    FAILS_RC(sp_params_set_float3, (p, SP_PARAM_SEED, f3), "sp_params_set_float3");
    CLEARS(sp_params_set(p, SP_PARAM_SEED, 7));
    CLEARS(sp_params_set_str(p, "level", "5"));
    sp_params_destroy(p);
}

static void schema_and_writer(const fixture *fx)
{
    sp_schema *s = sp_schema_create();
    ck_assert_ptr_nonnull(s);
    FAILS_RC(sp_schema_add, (s, "bad name!", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL), "bad name!");
    FAILS_RC(sp_schema_add, (NULL, "x", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL), "sp_schema_add");
    ck_assert_int_eq(sp_schema_add(s, "x", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL), 0);
    sp_field_info fi = { .struct_size = sizeof fi }, small = { .struct_size = 8 };
    FAILS_RC(sp_schema_field, (s, 1, &fi), "sp_schema_field");
    FAILS_RC(sp_schema_field, (NULL, 0, &fi), "sp_schema_field");
    FAILS_RC(sp_schema_field, (s, 0, &small), "sp_field_info.struct_size");
    FAILS_RC(sp_schema_find, (s, "y"), "'y'");
    FAILS_RC(sp_schema_find, (s, NULL), "sp_schema_find");
    KEEPS(sp_schema_field(s, 0, &fi));

    sp_writer *w = NULL;
    char *wdir = tu_join(fx->parent, "w");
    FAILS_RC(sp_writer_open, (wdir, s, NULL, NULL), "sp_writer_open");
    FAILS_RC(sp_writer_open, (wdir, NULL, NULL, &w), "sp_writer_open");
    FAILS_RC(sp_writer_open, (fx->dir, s, NULL, &w), fx->dir); /* a dataset, overwrite off */
    ck_assert_int_eq(sp_writer_open(wdir, s, NULL, &w), 0);
    FAILS_RC(sp_writer_set_meta, (w, "", "v", 1), wdir);
    FAILS_RC(sp_writer_set_meta, (NULL, "k", "v", 1), "sp_writer_set_meta");
    sp_value v = { "12345678", 8 };
    FAILS_RC(sp_writer_add, (w, &v, 2), wdir);
    FAILS_RC(sp_writer_add, (NULL, &v, 1), "sp_writer_add");
    sp_write_stats st = { .struct_size = sizeof st }, st0 = { 0 };
    FAILS_RC(sp_writer_stats, (NULL, &st), "sp_writer_stats");
    FAILS_RC(sp_writer_stats, (w, &st0), "sp_write_stats.struct_size");
    FAILS_RC(sp_writer_stats, (w, NULL), "sp_writer_stats");
    KEEPS(sp_writer_stats(w, &st));
    FAILS_RC(sp_writer_finish, (w), wdir); /* nothing added */
    FAILS_RC(sp_writer_finish, (NULL), "sp_writer_finish");
    sp_writer_destroy(w);
    free(wdir);
    sp_schema_destroy(s);
}

static void dataset(const fixture *fx)
{
    sp_dataset *ds = NULL;
    char *missing = tu_join(fx->parent, "missing");
    FAILS_RC(sp_dataset_open, (missing, NULL, &ds), missing);
    FAILS_RC(sp_dataset_open, (NULL, NULL, &ds), "sp_dataset_open");
    const char *paths[] = { missing };
    FAILS_RC(sp_dataset_open_shards, (paths, 1, NULL, &ds), missing);
    FAILS_RC(sp_dataset_open_shards, (NULL, 1, NULL, &ds), "sp_dataset_open_shards");

    const char *key;
    const void *val;
    size_t len;
    FAILS_RC(sp_dataset_meta_at, (fx->ds, 1000, &key, &val, &len), "sp_dataset_meta_at");
    FAILS_RC(sp_dataset_meta_at, (NULL, 0, &key, &val, &len), "sp_dataset_meta_at");
    FAILS_RC(sp_dataset_meta_get, (fx->ds, "no_such_key", &val, &len), "no_such_key");
    FAILS_RC(sp_dataset_meta_get, (NULL, "k", &val, &len), "sp_dataset_meta_get");

    sp_shard_info si = { .struct_size = sizeof si }, si0 = { 0 };
    FAILS_RC(sp_dataset_shard_info, (fx->ds, 99, &si), "sp_dataset_shard_info");
    FAILS_RC(sp_dataset_shard_info, (NULL, 0, &si), "sp_dataset_shard_info");
    FAILS_RC(sp_dataset_shard_info, (fx->ds, 0, &si0), "sp_shard_info.struct_size");
    KEEPS(sp_dataset_shard_info(fx->ds, 0, &si));
    sp_block_info bi = { .struct_size = sizeof bi }, bi0 = { .struct_size = 1 };
    FAILS_RC(sp_dataset_block_info, (fx->ds, 1u << 30, &bi), "sp_dataset_block_info");
    FAILS_RC(sp_dataset_block_info, (NULL, 0, &bi), "sp_dataset_block_info");
    FAILS_RC(sp_dataset_block_info, (fx->ds, 0, &bi0), "sp_block_info.struct_size");
    KEEPS(sp_dataset_block_info(fx->ds, 0, &bi));
    uint64_t blk;
    uint32_t row;
    FAILS_RC(sp_dataset_locate, (fx->ds, 1u << 30, &blk, &row), "sp_dataset_locate");
    FAILS_RC(sp_dataset_locate, (NULL, 0, &blk, &row), "sp_dataset_locate");
    sp_block *b = NULL;
    FAILS_RC(sp_dataset_read_block, (fx->ds, 1u << 30, &b), "sp_dataset_read_block");
    FAILS_RC(sp_dataset_read_block, (NULL, 0, &b), "sp_dataset_read_block");

    const void *data;
    size_t size;
    FAILS_RC(sp_block_get, (fx->blk, 1u << 30, 0, &data, &size), "sp_block_get");
    FAILS_RC(sp_block_get, (fx->blk, 0, 99, &data, &size), "sp_block_get");
    FAILS_RC(sp_block_get, (NULL, 0, 0, &data, &size), "sp_block_get");
    KEEPS(sp_block_get(fx->blk, 0, 0, &data, &size));

    sp_verify_report rep = { .struct_size = sizeof rep }, rep0 = { 0 };
    FAILS_RC(sp_verify, (missing, NULL, NULL, NULL, &rep), missing);
    FAILS_RC(sp_verify, (NULL, NULL, NULL, NULL, &rep), "sp_verify");
    FAILS_RC(sp_verify, (fx->dir, NULL, NULL, NULL, &rep0), "sp_verify_report.struct_size");
    CLEARS(sp_verify(fx->dir, NULL, NULL, NULL, &rep));
    free(missing);
}

static void loader(fixture *fx)
{
    sp_loader *l = NULL;
    char *missing = tu_join(fx->parent, "missing");
    FAILS_RC(sp_loader_open, (missing, NULL, &l), missing);
    FAILS_RC(sp_loader_open, (fx->dir, NULL, NULL), "sp_loader_open");
    const char *paths[] = { missing };
    FAILS_RC(sp_loader_open_shards, (paths, 1, NULL, &l), missing);
    FAILS_RC(sp_loader_open_shards, (NULL, 1, NULL, &l), "sp_loader_open_shards");
    const double one = 1;
    FAILS_RC(sp_loader_open_mix, (paths, &one, 1, NULL, &l), missing);
    FAILS_RC(sp_loader_open_mix, (NULL, &one, 1, NULL, &l), "sp_loader_open_mix");
    FAILS_RC(sp_loader_close, (fx->l), "sp_loader_close"); /* a batch is leased */
    sp_batch *b;
    FAILS_RC(sp_loader_next, (NULL, &b, 0), "sp_loader_next");
    FAILS_RC(sp_loader_release, (fx->l, NULL), "sp_loader_release");
    FAILS_RC(sp_loader_release_on, (fx->l, NULL, NULL), "sp_loader_release_on");
    FAILS_RC(sp_loader_set_epoch, (NULL, 0), "sp_loader_set_epoch");
    FAILS_RC(sp_loader_set_epoch, (fx->l, UINT64_MAX), "sp_loader_set_epoch");
    FAILS_ZERO(sp_loader_batches_per_epoch, (NULL), "sp_loader_batches_per_epoch");
    FAILS_ZERO(sp_loader_samples_per_epoch, (NULL), "sp_loader_samples_per_epoch");
    FAILS_RC(sp_loader_epoch_order, (NULL, 0, NULL, 0), "sp_loader_epoch_order");
    FAILS_RC(sp_loader_epoch_order, (fx->l, 0, NULL, 4), "sp_loader_epoch_order");
    FAILS_RC(sp_loader_epoch_order, (fx->l, UINT64_MAX, NULL, 0), "sp_loader_epoch_order");
    uint64_t cursor = 0;
    FAILS_RC(sp_loader_bench_block, (NULL, 0, 1, 0, &cursor), "sp_loader_bench_block");
    FAILS_RC(sp_loader_bench_block, (fx->l, 0, 1, 0, &cursor), "sp_loader_bench_block"); /* delivering */

    FAILS_NULL(sp_batch_field_name, (fx->b, 99), "sp_batch_field_name");
    FAILS_NULL(sp_batch_tensor, (fx->b, 99), "sp_batch_tensor");
    FAILS_NULL(sp_batch_tensor, (NULL, 0), "sp_batch_tensor");
    FAILS_RC(sp_batch_find, (fx->b, "no_such_field"), "no_such_field");
    FAILS(sp_batch_sample_id, sp_batch_sample_id(fx->b, 1u << 20), r_ == UINT64_MAX, "sp_batch_sample_id");
    FAILS_RC(sp_batch_is_padding, (fx->b, 1u << 20), "sp_batch_is_padding");
    FAILS_RC(sp_batch_is_padding, (NULL, 0), "sp_batch_is_padding");
    FAILS_RC(sp_batch_wait, (NULL, NULL), "sp_batch_wait");
    FAILS_RC(sp_batch_sync, (NULL), "sp_batch_sync");

    sp_loader_stats st = { .struct_size = sizeof st }, st0 = { .struct_size = offsetof(sp_loader_stats, copy_s) };
    FAILS_RC(sp_loader_stats_get, (NULL, &st), "sp_loader_stats_get");
    FAILS_RC(sp_loader_stats_get, (fx->l, NULL), "sp_loader_stats_get");
    FAILS_RC(sp_loader_stats_get, (fx->l, &st0), "sp_loader_stats.struct_size");
    KEEPS(sp_loader_stats_get(fx->l, &st));

    uint8_t state[SP_LOADER_STATE_BYTES] = { 0 };
    FAILS_RC(sp_loader_save_state, (fx->l, state, 3), "sp_loader_save_state");
    FAILS_RC(sp_loader_load_state, (fx->l, state, sizeof state), "state");
    FAILS_RC(sp_loader_load_state, (NULL, state, sizeof state), "sp_loader_load_state");
    CLEARS(sp_loader_save_state(fx->l, state, sizeof state));
    CLEARS(sp_loader_release(fx->l, fx->b));
    fx->b = NULL;

    /* 0 devices is a failure with its reason; a machine with a usable GPU has nothing to check. */
    stale();
    if (sp_cuda_device_count() == 0) {
        check_message("sp_cuda_device_count", true, "", __LINE__);
        ck_assert_msg(!strstr(sp_last_error(), STALE), "sp_cuda_device_count: 0 without saying why");
    }
    covered("sp_cuda_device_count");
    free(missing);
}

/* The import: request errors, a source that is not one, a run over input without samples. */
static void import(const fixture *fx)
{
    FAILS_NULL(sp_import_kind_name, (99), "sp_import_kind_name");
    FAILS_RC(sp_import_kind_lookup, ("png"), "'png'");
    char *odd = tu_join(fx->parent, "list.xyz"), *out = tu_join(fx->parent, "imp-out");
    tu_write_file(odd, "x", 1);
    FAILS_RC(sp_import_detect, (odd), odd);
    FAILS_RC(sp_import_detect, (NULL), "sp_import_detect");
    sp_import *imp = NULL;
    const char *srcs[] = { odd };
    FAILS_RC(sp_import_open, (NULL, srcs, 1, out, NULL, &imp), odd);
    FAILS_RC(sp_import_open, ("tsv", srcs, 1, out, NULL, NULL), "sp_import_open");
    FAILS_RC(sp_import_open, ("tsv", srcs, 0, out, NULL, &imp), "sp_import_open");
    FAILS_RC(sp_pack, ("tsv", srcs, 0, out, NULL, NULL, NULL), "sp_import_open");
    FAILS_NULL(sp_import_kind, (NULL), "sp_import_kind");
    FAILS_NULL(sp_import_schema, (NULL), "sp_import_schema");
    FAILS_NULL(sp_import_writer, (NULL), "sp_import_writer");
    FAILS_RC(sp_import_set_callbacks, (NULL, NULL, NULL, NULL), "sp_import_set_callbacks");
    FAILS_RC(sp_import_set_meta, (NULL, "k", "v", 1), "sp_import_set_meta");
    FAILS_RC(sp_import_run, (NULL), "sp_import_run");
    sp_import_progress pr = { .struct_size = sizeof pr }, pr0 = { 0 };
    FAILS_RC(sp_import_progress_get, (NULL, &pr), "sp_import_progress_get");

    /* A list whose one line is not an entry: opened, then nothing to pack. */
    ck_assert_int_eq(sp_import_open("tsv", srcs, 1, out, NULL, &imp), 0);
    FAILS_RC(sp_import_set_meta, (imp, "", "v", 1), out);
    FAILS_RC(sp_import_progress_get, (imp, &pr0), "sp_import_progress.struct_size");
    KEEPS(sp_import_progress_get(imp, &pr));
    CLEARS(sp_import_set_meta(imp, "created_by", "test_errors", 11));
    FAILS_RC(sp_import_run, (imp), odd);
    ck_assert_int_eq(pr.skipped, 0);
    sp_import_destroy(imp);
    free(odd);
    free(out);
}

static void images_and_layouts(void)
{
    static const uint8_t junk[] = "certainly not a JPEG";
    sp_image_info info = { .struct_size = sizeof info }, info0 = { 0 };
    FAILS_RC(sp_image_probe, (junk, sizeof junk, 0, &info), "JPEG");
    FAILS_RC(sp_image_probe, (NULL, 0, 0, &info), "sp_image_probe");
    FAILS_RC(sp_image_probe, (junk, sizeof junk, 0, &info0), "sp_image_info.struct_size");

    sp_image_transform *t = NULL;
    FAILS_RC(sp_image_transform_create, (NULL, NULL), "sp_image_transform_create");
    sp_params *p = tu_params("image_size", "16", NULL);
    ck_assert_int_eq(sp_image_transform_create(p, &t), 0);
    sp_params_destroy(p);
    uint8_t *out = malloc(sp_image_transform_bytes(t));
    sp_image_crop crop = { .struct_size = sizeof crop }, crop0 = { 0 };
    FAILS_RC(sp_image_transform_apply, (t, junk, sizeof junk, 0, 4242, out, &crop), "sample 4242");
    FAILS_RC(sp_image_transform_apply, (t, junk, sizeof junk, 0, 1, out, &crop0), "sp_image_crop.struct_size");
    FAILS_RC(sp_image_transform_apply, (NULL, junk, sizeof junk, 0, 1, out, NULL), "sp_image_transform_apply");
    FAILS_RC(sp_image_transform_crop, (t, 0, 10, 0, 0, &crop), "sp_image_transform_crop");
    FAILS_RC(sp_image_transform_crop, (t, 10, 10, 0, 0, &crop0), "sp_image_crop.struct_size");
    CLEARS(sp_image_transform_crop(t, 10, 10, 0, 0, &crop));
    free(out);
    sp_image_transform_destroy(t);

    FAILS_NULL(sp_struct_name, (1000), "sp_struct_name");
    FAILS_RC(sp_struct_layout, ("sp_nothing", NULL, NULL, NULL), "sp_nothing");
    FAILS_RC(sp_struct_field, ("sp_nothing", 0, NULL, NULL, NULL), "sp_nothing");
    FAILS_RC(sp_struct_field, ("sp_value", 2, NULL, NULL, NULL), "sp_value");
    KEEPS(sp_struct_layout("sp_value", NULL, NULL, NULL));
}

START_TEST(every_function_fails_with_a_fresh_message)
{
    fixture fx = fixture_make();
    tables_and_params();
    schema_and_writer(&fx);
    dataset(&fx);
    loader(&fx);
    import(&fx);
    images_and_layouts();
    fixture_free(&fx);

    /* Every SP_API function of the header is above, or listed as unable to fail. */
    char *names[MAX_NAMES];
    size_t n = header_functions(names, MAX_NAMES);
    ck_assert_msg(n > 80, "only %zu SP_API functions found in %s", n, SP_PUBLIC_HEADER);
    size_t ncf = sizeof cannot_fail / sizeof cannot_fail[0], noom = sizeof oom_only / sizeof oom_only[0];
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(listed(names[i], g_covered, g_ncovered) || listed(names[i], cannot_fail, ncf) ||
                          listed(names[i], oom_only, noom),
                      "%s (shardpack.h) has no failure case here and is not listed as unable to fail", names[i]);
        free(names[i]);
    }
    /* The lists name nothing the header lacks. */
    ck_assert_uint_eq(g_ncovered + ncf + noom, n);
}
END_TEST

START_TEST(messages_are_cut_at_one_size)
{
    char name[3 * SP_ERRMSG_MAX];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    ck_assert_int_eq(sp_param_lookup(name), SP_ENOENT);
    ck_assert_uint_eq(strlen(sp_last_error()), SP_ERRMSG_MAX - 1);
    sp_dataset *ds;
    ck_assert_int_lt(sp_dataset_open(name, NULL, &ds), 0);
    ck_assert_uint_eq(strlen(sp_last_error()), SP_ERRMSG_MAX - 1);
    sp_loader *l;
    ck_assert_int_lt(sp_loader_open(name, NULL, &l), 0);
    ck_assert_uint_eq(strlen(sp_last_error()), SP_ERRMSG_MAX - 1);
    sp_loader_stats st;
    ck_assert_uint_eq(sizeof st.io_note, SP_ERRMSG_MAX);
    ck_assert_uint_eq(sizeof st.bad_note, SP_ERRMSG_MAX);
    ck_assert_uint_eq(sizeof st.device_note, SP_ERRMSG_MAX);
    ck_assert_uint_eq(sizeof st.threads_note, SP_ERRMSG_MAX);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("errors");
    TCase *tc = tu_tcase(s, "errors", 60);
    tcase_add_test(tc, every_function_fails_with_a_fresh_message);
    tcase_add_test(tc, messages_are_cut_at_one_size);
    return tu_run(s, tu_seed(0));
}
