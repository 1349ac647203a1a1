/* img_geom.c - where the transform crops, and at which DCT scale the crop is decoded. */
#include <math.h>
#include <stdio.h>

#include "img.h"
#include "sp_rng.h"

int img_cfg_from_params(img_cfg *cfg, const sp_params *p)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->transform = (int)sp_params_get(p, SP_PARAM_TRANSFORM);
    cfg->size = (uint32_t)sp_params_get(p, SP_PARAM_IMAGE_SIZE);
    cfg->resize = (uint32_t)sp_params_get(p, SP_PARAM_RESIZE);
    if (cfg->resize == 0)
        cfg->resize = (uint32_t)floor(cfg->size / 0.875 + 0.5);
    cfg->dtype = (int)sp_params_get(p, SP_PARAM_IMAGE_DTYPE);
    cfg->layout = (int)sp_params_get(p, SP_PARAM_IMAGE_LAYOUT);
    cfg->max_pixels = (uint64_t)sp_params_get(p, SP_PARAM_MAX_PIXELS);
    cfg->max_image_memory = (uint64_t)sp_params_get(p, SP_PARAM_MAX_IMAGE_MEMORY);
    cfg->max_image_memory_default = !sp_params_was_set(p, SP_PARAM_MAX_IMAGE_MEMORY);
    cfg->seed = (uint64_t)sp_params_get(p, SP_PARAM_SEED);
    double mean[3], std[3];
    sp_params_get_float3(p, SP_PARAM_MEAN, mean);
    sp_params_get_float3(p, SP_PARAM_STD, std);
    for (int c = 0; c < 3; c++) {
        cfg->mean[c] = (float)mean[c];
        cfg->std[c] = (float)std[c];
    }
    if (cfg->transform == SP_TRANSFORM_EVAL && cfg->resize < cfg->size)
        return sp_fail(NULL, SP_EINVAL, "resize %u is smaller than image_size %u: the centre crop would not fit",
                       cfg->resize, cfg->size);
    return SP_OK;
}

/* A uniform double in [0, 1) with 53 random bits. */
static double uniform(sp_rng *r) { return (double)(sp_rng_next(r) >> 11) * 0x1.0p-53; }

/* torchvision's RandomResizedCrop draw: ten tries at an area fraction in [0.08, 1] and a
 * log-uniform aspect ratio in [3/4, 4/3], then the centre crop with the ratio clamped. */
static void random_resized_crop(sp_rng *r, uint32_t w, uint32_t h, img_box *b)
{
    const double area = (double)w * h, lo = log(3.0 / 4.0), hi = log(4.0 / 3.0);
    for (int t = 0; t < 10; t++) {
        double target = area * (0.08 + uniform(r) * (1.0 - 0.08));
        double ratio = exp(lo + uniform(r) * (hi - lo));
        double cw = floor(sqrt(target * ratio) + 0.5), ch = floor(sqrt(target / ratio) + 0.5);
        if (cw >= 1 && ch >= 1 && cw <= w && ch <= h) {
            double y = (double)sp_rng_below(r, (uint64_t)(h - ch) + 1);
            double x = (double)sp_rng_below(r, (uint64_t)(w - cw) + 1);
            *b = (img_box){ x, y, x + cw, y + ch, false };
            return;
        }
    }
    double in_ratio = (double)w / h, cw = w, ch = h;
    if (in_ratio < 3.0 / 4.0)
        ch = floor(cw / (3.0 / 4.0) + 0.5);
    else if (in_ratio > 4.0 / 3.0)
        cw = floor(ch * (4.0 / 3.0) + 0.5);
    if (ch > h)
        ch = h;
    if (cw > w)
        cw = w;
    double x = floor((w - cw) / 2), y = floor((h - ch) / 2);
    *b = (img_box){ x, y, x + cw, y + ch, false };
}

void img_crop(const img_cfg *cfg, uint32_t w, uint32_t h, uint64_t epoch, uint64_t sample, img_box *out)
{
    if (cfg->transform == SP_TRANSFORM_TRAIN) {
        sp_rng r;
        sp_rng_seed(&r, cfg->seed, epoch, sample, 0x696d616765ull /* "image" */);
        random_resized_crop(&r, w, h, out);
        out->flip = uniform(&r) < 0.5;
        return;
    }
    /* Resize the shorter side to `resize` (the longer one truncated, as torchvision does), then take
     * the centre size x size of that, mapped back to source pixels. */
    double nw, nh;
    if (w <= h) {
        nw = cfg->resize;
        nh = floor((double)cfg->resize * h / w);
    } else {
        nh = cfg->resize;
        nw = floor((double)cfg->resize * w / h);
    }
    /* Offsets rounded half to even, as torchvision's center_crop (Python's round) does. */
    double left = rint((nw - cfg->size) / 2), top = rint((nh - cfg->size) / 2);
    double sx = w / nw, sy = h / nh;
    *out = (img_box){ left * sx, top * sy, (left + cfg->size) * sx, (top + cfg->size) * sy, false };
}

/* DCT scales worth decoding at (m of m/8): libjpeg-turbo has SIMD inverse DCTs for 1/8, 1/4, 1/2
 * and 1 only. Of the scalar ones in between, 7/8 and 6/8 measured slower than 8/8, 5/8 gained 6%
 * end to end in the narrow band where it would apply, and 3/8 was within run-to-run noise of 4/8
 * (docs/performance.md, "DCT scaling"), so only the SIMD scales are used. */
static const int fast_scales[] = { 1, 2, 4, 8 };

int img_pick_scale(const img_box *b, uint32_t size)
{
    double bw = b->x1 - b->x0, bh = b->y1 - b->y0;
    for (size_t i = 0; i < sizeof fast_scales / sizeof *fast_scales; i++) {
        int m = fast_scales[i];
        if (bw * m / 8 >= size && bh * m / 8 >= size)
            return m;
    }
    return 8;
}

static int clampi(double v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : (int)v; }

void img_need(const img_box *b, uint32_t size, int ow, int oh, int r[4])
{
    double reach_x = (b->x1 - b->x0) / size, reach_y = (b->y1 - b->y0) / size;
    reach_x = reach_x > 1 ? reach_x : 1;
    reach_y = reach_y > 1 ? reach_y : 1;
    r[0] = clampi(floor(b->x0 - reach_x) - IMG_MARGIN, 0, ow - 1);
    r[2] = clampi(ceil(b->x1 + reach_x) + IMG_MARGIN, 1, ow);
    r[1] = clampi(floor(b->y0 - reach_y) - IMG_MARGIN, 0, oh - 1);
    r[3] = clampi(ceil(b->y1 + reach_y) + IMG_MARGIN, 1, oh);
}

int img_size_check(const img_cfg *cfg, uint64_t w, uint64_t h, char *why, size_t whylen)
{
    if (w > IMG_MAX_SIDE || h > IMG_MAX_SIDE)
        return snprintf(why, whylen, "%llux%llu pixels: a side above %u", (unsigned long long)w, (unsigned long long)h,
                        IMG_MAX_SIDE),
               SP_ELIMIT;
    if (w * h > cfg->max_pixels)
        return snprintf(why, whylen, "%llux%llu pixels is more than max_pixels %llu", (unsigned long long)w,
                        (unsigned long long)h, (unsigned long long)cfg->max_pixels),
               SP_ELIMIT;
    return SP_OK;
}

int img_plan_reduced(const img_cfg *cfg, uint32_t w, uint32_t h, uint64_t epoch, uint64_t sample, img_result *res,
                     img_box *b, int need[4], int full[4])
{
    res->width = w;
    res->height = h;
    img_crop(cfg, w, h, epoch, sample, &res->box);
    int m = img_pick_scale(&res->box, cfg->size), k = 8 / m;
    res->scale = m;
    double f = 1.0 / k;
    *b = (img_box){ res->box.x0 * f, res->box.y0 * f, res->box.x1 * f, res->box.y1 * f, res->box.flip };
    img_need(b, cfg->size, (int)((w + (uint32_t)k - 1) / (uint32_t)k), (int)((h + (uint32_t)k - 1) / (uint32_t)k),
             need);
    full[0] = need[0] * k;
    full[1] = need[1] * k;
    full[2] = need[2] * k < (int)w ? need[2] * k : (int)w;
    full[3] = need[3] * k < (int)h ? need[3] * k : (int)h;
    return k;
}
