/* tg_images.c - the JPEG dataset the GPU tests share (see tg_images.h). */
#include "tg_images.h"

#include <check.h>
#include <stdlib.h>

#include "jpeg_gen.h"
#include "test_util.h"

void tg_make_images(tg_images *d, uint64_t n, uint64_t seed)
{
    d->dir = tu_dataset_dir("gpuimg", &d->parent);
    sp_schema *s = sp_schema_create();
    ck_assert_int_eq(sp_schema_add(s, "image", SP_FIELD_IMAGE, SP_DTYPE_U8, 0, NULL), 0);
    ck_assert_int_eq(sp_schema_add(s, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL), 0);
    sp_params *p = tu_params("block_size", "16K", "shard_size", "64K", NULL);
    sp_writer *w;
    ck_assert_msg(sp_writer_open(d->dir, s, p, &w) == 0, "%s", sp_last_error());
    static const jg_opts kinds[5] = {
        { 85, JG_420, JG_YCC, 0, 0 }, { 90, JG_422, JG_YCC, 0, 0 }, { 80, JG_444, JG_YCC, 0, 0 },
        { 85, JG_420, JG_GRAY, 0, 0 }, { 75, JG_420, JG_YCC, 1, 0 },
    };
    for (uint64_t i = 0; i < n; i++) {
        uint64_t h = tu_mix(seed ^ (i * 0x9E37u));
        int wd = 40 + (int)(h % 120), ht = 40 + (int)((h >> 8) % 120);
        uint8_t *pic = jg_picture(wd, ht, h), *jpg;
        size_t size;
        char err[256];
        ck_assert_ptr_nonnull(pic);
        ck_assert_msg(jg_encode(pic, wd, ht, &kinds[i % 5], &jpg, &size, err, sizeof err) == 0, "%s", err);
        int64_t label = (int64_t)i;
        sp_value v[2] = { { jpg, size }, { &label, sizeof label } };
        ck_assert_msg(sp_writer_add(w, v, 2) == 0, "add %llu: %s", (unsigned long long)i, sp_last_error());
        free(jpg);
        free(pic);
    }
    ck_assert_msg(sp_writer_finish(w) == 0, "%s", sp_last_error());
    sp_writer_destroy(w);
    sp_params_destroy(p);
    sp_schema_destroy(s);
}

void tg_free_images(tg_images *d)
{
    tu_rmtree(d->parent);
    free(d->parent);
    free(d->dir);
}
