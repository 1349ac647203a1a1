/* test_struct_size.c - structs the library fills honour struct_size: a longer caller struct keeps its tail, a shorter (first-layout) one is written no further, a smaller one is refused untouched. */
#include <stdio.h>
#include <stdlib.h>

#include "test_util.h"

typedef struct ctx {
    sp_dataset *ds;
    sp_writer *w;
    sp_loader *l;
    const char *dir;
} ctx;

typedef int (*fill_fn)(const ctx *c, void *out);

static int fill_param(const ctx *c, void *out) { return (void)c, sp_param_describe(SP_PARAM_BLOCK_SIZE, out); }
static int fill_field(const ctx *c, void *out) { return sp_schema_field(sp_dataset_schema(c->ds), 1, out); }
static int fill_write(const ctx *c, void *out) { return sp_writer_stats(c->w, out); }
static int fill_shard(const ctx *c, void *out) { return sp_dataset_shard_info(c->ds, 0, out); }
static int fill_block(const ctx *c, void *out) { return sp_dataset_block_info(c->ds, 1, out); }
static int fill_verify(const ctx *c, void *out) { return sp_verify(c->dir, NULL, NULL, NULL, out); }
static int fill_stats(const ctx *c, void *out) { return sp_loader_stats_get(c->l, out); }

static void layout_of(const char *type, size_t *size, size_t *min, size_t *n)
{
    ck_assert_msg(sp_struct_layout(type, size, min, n) == 0, "%s", sp_last_error());
}

/* Member by member (padding aside), a and b hold the same values; skip names a member that may move
 * between two calls. */
static void same_members(const char *type, const uint8_t *a, const uint8_t *b, size_t upto, const char *skip)
{
    size_t size, min, n;
    layout_of(type, &size, &min, &n);
    for (size_t i = 1; i < n; i++) { /* from 1: struct_size is each caller's own */
        const char *name;
        size_t off, len;
        ck_assert_int_eq(sp_struct_field(type, i, &name, &off, &len), 0);
        if (off + len > upto || (skip && strcmp(name, skip) == 0))
            continue;
        ck_assert_msg(memcmp(a + off, b + off, len) == 0, "%s.%s differs", type, name);
    }
}

static bool all_bytes(const uint8_t *p, size_t from, size_t to, uint8_t v)
{
    for (size_t i = from; i < to; i++)
        if (p[i] != v)
            return false;
    return true;
}

#define PAD 64

static void check_fill(const ctx *c, const char *type, fill_fn fill, const char *skip)
{
    size_t size, min, n;
    layout_of(type, &size, &min, &n);
    ck_assert(min > sizeof(size_t) && min <= size);
    uint8_t *ref = calloc(1, size), *buf = malloc(size + PAD);
    memcpy(ref, &size, sizeof size);
    ck_assert_msg(fill(c, ref) == 0, "%s: %s", type, sp_last_error());

    /* A newer caller's longer struct: the library writes its own size, no further. */
    size_t have = size + PAD;
    memset(buf, 0xEE, have);
    memcpy(buf, &have, sizeof have);
    ck_assert_msg(fill(c, buf) == 0, "%s: %s", type, sp_last_error());
    size_t kept;
    memcpy(&kept, buf, sizeof kept);
    ck_assert_uint_eq(kept, have);
    ck_assert_msg(all_bytes(buf, size, have, 0xEE), "%s: the caller's tail was written", type);
    same_members(type, ref, buf, size, skip);

    /* The first layout exactly: filled up to it, nothing past it. */
    memset(buf, 0xEE, size + PAD);
    memcpy(buf, &min, sizeof min);
    ck_assert_msg(fill(c, buf) == 0, "%s at its first layout's %zu bytes: %s", type, min, sp_last_error());
    ck_assert_msg(all_bytes(buf, min, size + PAD, 0xEE), "%s: written past struct_size %zu", type, min);
    same_members(type, ref, buf, min, skip);

    /* Smaller than any layout: refused, nothing written. */
    size_t small = min - 1;
    memset(buf, 0xEE, size + PAD);
    memcpy(buf, &small, sizeof small);
    ck_assert_int_eq(fill(c, buf), SP_EINVAL);
    ck_assert_msg(strstr(sp_last_error(), type), "%s: message '%s'", type, sp_last_error());
    ck_assert(all_bytes(buf, sizeof small, size + PAD, 0xEE));
    free(ref);
    free(buf);
}

START_TEST(filled_structs_honour_struct_size)
{
    char *parent, *dir = tu_dataset_dir("struct_size", &parent);
    tu_data d = tu_image_data(200, 9, 200);
    sp_params *wp = tu_params("validate_images", "0", "block_size", "4K", NULL), *lp = tu_params("batch_size", "4", NULL);
    ck_assert_msg(tu_write_dataset(dir, &d, wp, NULL) == 0, "%s", sp_last_error());
    ctx c = { .dir = dir };
    ck_assert_int_eq(sp_dataset_open(dir, NULL, &c.ds), 0);
    ck_assert_uint_ge(sp_dataset_num_blocks(c.ds), 2);
    char *wdir = tu_join(parent, "w");
    ck_assert_int_eq(sp_writer_open(wdir, d.schema, tu_synthetic_images(), &c.w), 0);
    ck_assert_int_eq(tu_add_samples(c.w, &d, 0, 5), 0);
    ck_assert_int_eq(sp_loader_open(dir, lp, &c.l), 0);

    check_fill(&c, "sp_param_info", fill_param, NULL);
    check_fill(&c, "sp_field_info", fill_field, NULL);
    check_fill(&c, "sp_write_stats", fill_write, NULL);
    check_fill(&c, "sp_shard_info", fill_shard, NULL);
    check_fill(&c, "sp_block_info", fill_block, NULL);
    check_fill(&c, "sp_verify_report", fill_verify, NULL);
    check_fill(&c, "sp_loader_stats", fill_stats, "elapsed_s");

    ck_assert_int_eq(sp_loader_close(c.l), 0);
    sp_writer_destroy(c.w);
    sp_dataset_close(c.ds);
    sp_schema_destroy(d.schema);
    sp_params_destroy(wp);
    sp_params_destroy(lp);
    tu_rmtree(parent);
    free(wdir);
    free(dir);
    free(parent);
}
END_TEST

/* The crop of sp_image_transform_crop, and a verify callback's sp_fault, which the library allocates. */
static void on_fault(const sp_fault *f, void *user)
{
    *(size_t *)user = f->struct_size;
}

START_TEST(crops_and_faults)
{
    sp_params *p = tu_params("image_size", "16", NULL);
    sp_image_transform *t;
    ck_assert_int_eq(sp_image_transform_create(p, &t), 0);
    size_t size, min, n;
    layout_of("sp_image_crop", &size, &min, &n);
    uint8_t buf[sizeof(sp_image_crop) + PAD];
    memset(buf, 0xEE, sizeof buf);
    size_t have = sizeof buf;
    memcpy(buf, &have, sizeof have);
    ck_assert_int_eq(sp_image_transform_crop(t, 100, 80, 0, 3, (sp_image_crop *)buf), 0);
    ck_assert(all_bytes(buf, size, sizeof buf, 0xEE));
    sp_image_crop crop = { .struct_size = sizeof crop };
    ck_assert_int_eq(sp_image_transform_crop(t, 100, 80, 0, 3, &crop), 0);
    ck_assert(memcmp(buf + sizeof(size_t), (uint8_t *)&crop + sizeof(size_t), size - sizeof(size_t)) == 0);
    sp_image_transform_destroy(t);
    sp_params_destroy(p);

    char *parent, *dir = tu_dataset_dir("struct_size", &parent);
    tu_data d = tu_image_data(10, 3, 50);
    ck_assert_int_eq(tu_write_dataset(dir, &d, tu_synthetic_images(), NULL), 0);
    char *shard = tu_shard_of(dir, 0, NULL);
    tu_xor_byte(shard, 100, 0x10);
    size_t seen = 0;
    ck_assert_int_eq(sp_verify(dir, NULL, on_fault, &seen, NULL), SP_ECORRUPT);
    ck_assert_uint_eq(seen, sizeof(sp_fault));
    sp_schema_destroy(d.schema);
    tu_rmtree(parent);
    free(shard);
    free(dir);
    free(parent);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("struct_size");
    TCase *tc = tu_tcase(s, "struct_size", 60);
    tcase_add_test(tc, filled_structs_honour_struct_size);
    tcase_add_test(tc, crops_and_faults);
    return tu_run(s, tu_seed(0));
}
