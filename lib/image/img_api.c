/* img_api.c - the public face of the image stage (sp_image_transform_*). */
#include "img.h"

struct sp_image_transform {
    sp_errbuf eb;
    img_cfg cfg;
    img_ctx *ctx;
};

int sp_image_transform_create(const sp_params *params, sp_image_transform **out)
{
    sp_clear_error();
    if (!out)
        return sp_fail(NULL, SP_EINVAL, "sp_image_transform_create: NULL argument");
    *out = NULL;
    sp_image_transform *t = sp_calloc(1, sizeof *t);
    if (!t)
        return sp_fail(NULL, SP_ENOMEM, "out of memory for an image transform");
    int rc = img_cfg_from_params(&t->cfg, params);
    if (rc == SP_OK)
        rc = img_ctx_create(&t->cfg, &t->ctx);
    if (rc) {
        sp_free(t);
        return rc; /* the message is the thread's last error */
    }
    *out = t;
    return SP_OK;
}

void sp_image_transform_destroy(sp_image_transform *t)
{
    if (!t)
        return;
    img_ctx_destroy(t->ctx);
    sp_free(t);
}

const char *sp_image_transform_errmsg(const sp_image_transform *t) { return t ? t->eb.msg : ""; }

size_t sp_image_transform_bytes(const sp_image_transform *t) { return t ? (size_t)img_out_bytes(&t->cfg) : 0; }

static void fill_crop(sp_image_crop *c, const img_box *b, int scale, int w, int h)
{
    sp_image_crop full = { sizeof full, b->x0, b->y0, b->x1, b->y1, b->flip, scale, w, h };
    sp_out_put(c, &full, sizeof full);
}

int sp_image_transform_apply(sp_image_transform *t, const void *jpeg, size_t size, uint64_t epoch, uint64_t sample,
                             void *out, sp_image_crop *crop)
{
    sp_clear_error();
    if (!t || (!jpeg && size) || !out)
        return sp_fail(t ? &t->eb : NULL, SP_EINVAL, "sp_image_transform_apply: NULL argument");
    int rc = crop ? sp_out_check("sp_image_transform_apply", "sp_image_crop", crop) : SP_OK;
    if (rc)
        return sp_fail_keep(&t->eb, rc);
    char why[SP_ERRMSG_MAX - 64];
    img_result r;
    rc = img_process(t->ctx, jpeg, size, epoch, sample, out, &r, why, sizeof why);
    if (crop)
        fill_crop(crop, &r.box, r.scale, (int)r.width, (int)r.height);
    if (rc)
        return sp_fail(&t->eb, rc, "image of sample %llu: %s", (unsigned long long)sample, why);
    return SP_OK;
}

int sp_image_transform_crop(const sp_image_transform *t, int width, int height, uint64_t epoch, uint64_t sample,
                            sp_image_crop *crop)
{
    sp_clear_error();
    if (!t || width < 1 || height < 1)
        return sp_fail(NULL, SP_EINVAL, "sp_image_transform_crop: %s", t ? "width and height must be at least 1"
                                                                           : "NULL transform");
    int rc = sp_out_check("sp_image_transform_crop", "sp_image_crop", crop);
    if (rc)
        return rc;
    img_box b;
    img_crop(&t->cfg, (uint32_t)width, (uint32_t)height, epoch, sample, &b);
    fill_crop(crop, &b, img_pick_scale(&b, t->cfg.size), width, height);
    return SP_OK;
}
