/* img_webp.c - WebP through libwebp: the header (WebPGetFeatures) checked against max_pixels and,
 * for what libwebp keeps of the whole image (a lossless or alpha image's planes), max_image_memory,
 * before any pixel; then one WebPDecode of only the crop's rows and columns (use_cropping: a lossy
 * image stops after the crop's last macroblock row). A small crop is decoded straight into the
 * region the resampler reads; a large one (reduced 1/k as a JPEG's DCT scale would be) at full
 * resolution into a buffer taken from max_image_memory, then averaged in k x k blocks as a PNG is,
 * or, when that buffer would not fit, scaled by libwebp itself (use_scaling, an area average whose
 * rounding differs from the blocks' by a level or so). Alpha is dropped: colour kept as stored,
 * unpremultiplied (what PIL's convert("RGB") gives). An animated WebP is refused. */
#include <stdio.h>

#include <webp/decode.h>

#include "img.h"

static const char *status_name(VP8StatusCode st)
{
    switch (st) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "the data ends early";
    default: return "error";
    }
}

int img_webp(img_ctx *c, const uint8_t *data, size_t size, uint64_t epoch, uint64_t sample, void *out,
             img_result *res, char *why, size_t whylen)
{
    WebPDecoderConfig dc;
    if (!WebPInitDecoderConfig(&dc))
        return snprintf(why, whylen, "libwebp's headers and library disagree"), SP_EBADINPUT;
    VP8StatusCode st = WebPGetFeatures(data, size, &dc.input);
    if (st != VP8_STATUS_OK)
        return snprintf(why, whylen, "damaged WebP header: %s", status_name(st)), SP_EBADINPUT;
    const WebPBitstreamFeatures *ft = &dc.input;
    uint64_t w = (uint64_t)ft->width, h = (uint64_t)ft->height;
    res->width = (uint32_t)w;
    res->height = (uint32_t)h;
    if (ft->has_animation)
        return snprintf(why, whylen, "animated WebP: only still images are decoded"), SP_EBADINPUT;
    if (w == 0 || h == 0)
        return snprintf(why, whylen, "WebP of %llux%llu pixels", (unsigned long long)w, (unsigned long long)h),
               SP_EBADINPUT;
    int rc = img_size_check(&c->cfg, w, h, why, whylen);
    if (rc)
        return rc;
    bool lossless = ft->format == 2;
    uint64_t mem = img_webp_memory((uint32_t)w, (uint32_t)h, lossless, ft->has_alpha);
    if (mem > c->cfg.max_image_memory)
        return snprintf(why, whylen, "decoding it needs more than max_image_memory (%llu MiB): a %s WebP keeps "
                        "whole-image planes (%.1f MiB for this one); set max_image_memory >= %lluM",
                        (unsigned long long)(c->cfg.max_image_memory >> 20),
                        lossless ? "lossless" : ft->has_alpha ? "lossy+alpha" : "lossy", (double)mem / (1 << 20),
                        (unsigned long long)(mem >> 20) + 1),
               SP_ELIMIT;

    img_box b;
    int need[4], fr[4];
    int k = img_plan_reduced(&c->cfg, (uint32_t)w, (uint32_t)h, epoch, sample, res, &b, need, fr);
    /* libwebp crops from even offsets (a multiple of k already when k > 1). */
    int fx0 = fr[0] & ~1, fy0 = fr[1] & ~1, fx1 = fr[2], fy1 = fr[3];
    int cropw = fx1 - fx0, croph = fy1 - fy0;
    uint32_t cw = (uint32_t)((cropw + k - 1) / k), rows = (uint32_t)((croph + k - 1) / k);
    if ((uint64_t)cw * rows * 4 > c->region_cap || rows > c->rows_cap || cw > c->tmp_cols)
        return snprintf(why, whylen, "a %ux%u crop region is beyond the decoder's buffers%s", cw, rows,
                        img_sizes_note(&c->cfg)), SP_ELIMIT;
    dc.options.use_cropping = 1;
    dc.options.crop_left = fx0;
    dc.options.crop_top = fy0;
    dc.options.crop_width = cropw;
    dc.options.crop_height = croph;
    uint64_t full = (uint64_t)cropw * croph * 4;
    uint8_t *buf = NULL; /* the crop at full resolution, to be reduced */
    bool whole = k > 1 && full + mem <= c->cfg.max_image_memory;
    img_mem_take(c, whole ? full + mem : mem); /* the workers' shared whole-image memory */
    if (whole) {
        buf = sp_malloc(full);
        if (!buf)
            return snprintf(why, whylen, "out of memory for a %dx%d WebP crop", cropw, croph), SP_ENOMEM;
    } else if (k > 1) {
        dc.options.use_scaling = 1;
        dc.options.scaled_width = (int)cw;
        dc.options.scaled_height = (int)rows;
    }
    dc.output.colorspace = MODE_RGBA;
    dc.output.is_external_memory = 1;
    dc.output.u.RGBA.rgba = buf ? buf : c->region;
    dc.output.u.RGBA.stride = buf ? cropw * 4 : (int)cw * 4;
    dc.output.u.RGBA.size = buf ? (size_t)full : (size_t)cw * 4 * rows;
    st = WebPDecode(data, size, &dc);
    WebPFreeDecBuffer(&dc.output);
    if (buf && st == VP8_STATUS_OK) {
        img_reducer r;
        img_reduce_init(&r, c, k, fx0, fx1, cw);
        for (int y = fy0; y < fy1; y++)
            img_reduce_row(&r, buf + (size_t)(y - fy0) * cropw * 4, y, fy0, fy1);
    }
    sp_free(buf);
    if (st == VP8_STATUS_OUT_OF_MEMORY)
        return snprintf(why, whylen, "out of memory decoding it"), SP_ENOMEM;
    if (st != VP8_STATUS_OK)
        return snprintf(why, whylen, "corrupt WebP: %s", status_name(st)), SP_EBADINPUT;
    /* The box in region pixels: libwebp's scale is exactly cw / cropw (1/k but at the image edge). */
    double sx = (double)cw / cropw, sy = (double)rows / croph;
    img_box rb = { (res->box.x0 - fx0) * sx, (res->box.y0 - fy0) * sy, (res->box.x1 - fx0) * sx,
                   (res->box.y1 - fy0) * sy, res->box.flip };
    img_finish(c, c->region, cw, rows, (size_t)cw * 4, &rb, out);
    return SP_OK;
}
