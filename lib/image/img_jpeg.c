/* img_jpeg.c - decodes only the rows and columns a crop needs, at the smallest useful DCT scale
 * (libjpeg's scale_num/scale_denom, jpeg_crop_scanline and jpeg_skip_scanlines), then resizes and
 * writes one batch row in the configured dtype and layout. img_process sends a PNG or a WebP to
 * img_png.c or img_webp.c, which end in the same img_finish. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>

#include <jpeglib.h>
#include <jerror.h>

#include "img.h"

/* libjpeg's own row buffers, tables and state for one image, beyond its whole-image arrays: a
 * few iMCU rows of the widest image (its longest side, where the dataset says, else 65535 pixels;
 * x 4 components x 2 x 16 rows) and 4 MiB of headroom. */
static uint64_t libjpeg_rows(const img_cfg *cfg)
{
    uint64_t longest = cfg->data_side && cfg->data_side < IMG_MAX_SIDE ? cfg->data_side : IMG_MAX_SIDE;
    return longest * 4 * 2 * 16 + (4ull << 20);
}

struct img_share {
    pthread_mutex_t mu;
    pthread_cond_t freed;
    uint64_t total, left;
};

/* ---------------------------------------------------------------- libjpeg error handling */

static void on_error_exit(j_common_ptr cinfo)
{
    img_err *e = (img_err *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jb, 1);
}

/* Warnings (level -1) mean corrupt data that libjpeg papered over. The image is refused for the
 * first one, so the decode stops there rather than go on through the rest of a hostile file. */
static void on_emit_message(j_common_ptr cinfo, int level)
{
    img_err *e = (img_err *)cinfo->err;
    if (level >= 0)
        return;
    e->warnings++;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jb, 1);
}

/* Called as libjpeg takes in each row of a scan (while jpeg_start_decompress reads every scan of
 * a progressive or multi-scan file): past IMG_MAX_SCANS the decode stops. */
static void on_progress(j_common_ptr cinfo)
{
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    img_err *e = (img_err *)cinfo->err;
    if (d->input_scan_number > IMG_MAX_SCANS) {
        e->too_many_scans = true;
        longjmp(e->jb, 1);
    }
}

static void on_output_message(j_common_ptr cinfo) { (void)cinfo; }

/* ---------------------------------------------------------------- conversions */

/* IEEE binary16 bits of f, rounded to nearest even. */
static uint16_t to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, mag = x & 0x7fffffffu;
    if (mag >= 0x7f800000u)
        return (uint16_t)(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u : 0));
    if (mag >= 0x477ff000u) /* rounds to beyond 65504 */
        return (uint16_t)(sign | 0x7c00u);
    if (mag < 0x38800000u) { /* subnormal half */
        float a;
        memcpy(&a, &mag, 4);
        return (uint16_t)(sign | (uint32_t)lrintf(a * 16777216.0f)); /* a / 2^-24 */
    }
    uint32_t r = mag - 0x38000000u; /* rebias 127 -> 15, still with 23 mantissa bits */
    r = (r + 0xfffu + ((r >> 13) & 1u)) >> 13;
    return (uint16_t)(sign | r);
}

/* bfloat16 bits of f, rounded to nearest even. */
static uint16_t to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

void img_lut(const img_cfg *cfg, int dtype, void *out)
{
    float *f32 = out;
    uint16_t *b16 = out;
    for (int ch = 0; ch < 3; ch++)
        for (int v = 0; v < 256; v++) {
            float f = ((float)v / 255.0f - cfg->mean[ch]) / cfg->std[ch];
            if (dtype == SP_IMAGE_FLOAT32)
                f32[ch * 256 + v] = f;
            else
                b16[ch * 256 + v] = dtype == SP_IMAGE_BFLOAT16 ? to_bf16(f) : to_f16(f);
        }
}

static void build_luts(img_ctx *c)
{
    img_lut(&c->cfg, SP_IMAGE_FLOAT32, c->lut32);
    if (c->cfg.dtype == SP_IMAGE_FLOAT16 || c->cfg.dtype == SP_IMAGE_BFLOAT16)
        img_lut(&c->cfg, c->cfg.dtype, c->lut16);
}

static size_t dtype_bytes(int dtype)
{
    return dtype == SP_IMAGE_UINT8 ? 1 : dtype == SP_IMAGE_FLOAT32 ? 4 : 2;
}

uint64_t img_out_bytes(const img_cfg *cfg) { return (uint64_t)cfg->size * cfg->size * 3 * dtype_bytes(cfg->dtype); }

void img_emit_row(const img_ctx *c, const uint8_t *rgb, uint32_t y, void *out)
{
    const uint32_t s = c->cfg.size;
    const size_t plane = (size_t)s * s;
    if (c->cfg.dtype == SP_IMAGE_UINT8) {
        uint8_t *o = out;
        if (c->cfg.layout == SP_LAYOUT_NHWC) {
            memcpy(o + (size_t)y * s * 3, rgb, (size_t)s * 3);
            return;
        }
        for (int ch = 0; ch < 3; ch++)
            for (uint32_t x = 0; x < s; x++)
                o[ch * plane + (size_t)y * s + x] = rgb[3 * x + ch];
    } else if (c->cfg.dtype == SP_IMAGE_FLOAT32) {
        float *o = out;
        if (c->cfg.layout == SP_LAYOUT_NHWC) {
            o += (size_t)y * s * 3;
            for (uint32_t x = 0; x < s; x++)
                for (int ch = 0; ch < 3; ch++)
                    o[3 * x + ch] = c->lut32[ch][rgb[3 * x + ch]];
            return;
        }
        for (int ch = 0; ch < 3; ch++)
            for (uint32_t x = 0; x < s; x++)
                o[ch * plane + (size_t)y * s + x] = c->lut32[ch][rgb[3 * x + ch]];
    } else {
        uint16_t *o = out;
        if (c->cfg.layout == SP_LAYOUT_NHWC) {
            o += (size_t)y * s * 3;
            for (uint32_t x = 0; x < s; x++)
                for (int ch = 0; ch < 3; ch++)
                    o[3 * x + ch] = c->lut16[ch][rgb[3 * x + ch]];
            return;
        }
        for (int ch = 0; ch < 3; ch++)
            for (uint32_t x = 0; x < s; x++)
                o[ch * plane + (size_t)y * s + x] = c->lut16[ch][rgb[3 * x + ch]];
    }
}

/* CMYK (or YCCK, which libjpeg turns into CMYK) pixels to RGBX, in place. Adobe's files store
 * the inks inverted, which is what almost every CMYK JPEG is. */
void img_cmyk_to_rgbx(uint8_t *p, size_t pixels, bool inverted)
{
    for (size_t i = 0; i < pixels; i++) {
        unsigned cy = p[4 * i], m = p[4 * i + 1], ye = p[4 * i + 2], k = p[4 * i + 3];
        if (!inverted)
            cy = 255 - cy, m = 255 - m, ye = 255 - ye, k = 255 - k;
        p[4 * i] = (uint8_t)((cy * k + 127) / 255);
        p[4 * i + 1] = (uint8_t)((m * k + 127) / 255);
        p[4 * i + 2] = (uint8_t)((ye * k + 127) / 255);
        p[4 * i + 3] = 255;
    }
}

/* ---------------------------------------------------------------- context */

/* The largest decoded region (pixels) a crop can need; see img_pick_scale. A box keeps its aspect
 * within [3/4, 4/3]. When scale m > 1 was needed, the box at m/2 missed `size` on its shorter
 * side, so at m it is under 2*size by 8/3*size; with m = 1 it is the whole image at 1/8. Margins
 * and the alignment of crop_scanline (up to one iMCU, 32 pixels) come on top. */
static uint64_t region_pixels(const img_cfg *cfg, uint32_t *max_side)
{
    /* The filter's reach (up to 8/3 pixels a side), floor/ceil, the margins and up to 31 pixels of
     * iMCU alignment. */
    uint64_t s = cfg->size, edge = 2 * IMG_MARGIN + 2 * 3 + 2 + 31 + 8;
    /* the dataset's largest image where it is known (img_cfg.data_*), else any image allowed */
    uint64_t px = cfg->data_pixels && cfg->data_pixels < cfg->max_pixels ? cfg->data_pixels : cfg->max_pixels;
    uint64_t longest = cfg->data_side && cfg->data_side < IMG_MAX_SIDE ? cfg->data_side : IMG_MAX_SIDE;
    uint64_t small = (2 * s + edge) * ((8 * s + 2) / 3 + edge);
    uint64_t whole = px / 64 + 2 * (longest / 8 + 2) + 1;
    uint64_t side = (8 * s + 2) / 3 + edge;
    *max_side = (uint32_t)(side > longest / 8 + 2 ? side : longest / 8 + 2);
    return small > whole ? small : whole;
}

uint64_t img_ctx_bytes_shared(const img_cfg *cfg)
{
    uint32_t rows;
    uint64_t px = region_pixels(cfg, &rows);
    return sizeof(img_ctx) + 4 * px + (uint64_t)rows * sizeof(JSAMPROW) + img_resize_tmp_bytes(cfg->size, rows) +
           (uint64_t)cfg->size * cfg->size * 3 + libjpeg_rows(cfg);
}

int img_share_create(uint64_t bytes, img_share **out)
{
    *out = sp_calloc(1, sizeof **out);
    if (!*out)
        return sp_fail(NULL, SP_ENOMEM, "out of memory for the image decoders' shared memory");
    pthread_mutex_init(&(*out)->mu, NULL);
    pthread_cond_init(&(*out)->freed, NULL);
    (*out)->total = (*out)->left = bytes;
    return SP_OK;
}

void img_share_destroy(img_share *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->freed);
    sp_free(s);
}

void img_ctx_share(img_ctx *c, img_share *s)
{
    c->share = s;
    c->dec.mem->max_memory_to_use = (long)s->total;
}

/* Takes n bytes of the shared memory, waiting while other decodes hold them (n <= total). */
static void share_take(img_share *s, uint64_t n)
{
    pthread_mutex_lock(&s->mu);
    while (s->left < n)
        pthread_cond_wait(&s->freed, &s->mu);
    s->left -= n;
    pthread_mutex_unlock(&s->mu);
}

static void share_give(img_share *s, uint64_t n);

void img_mem_take(img_ctx *c, uint64_t n)
{
    if (c->share && n) {
        share_take(c->share, n);
        c->held += n;
    }
}

void img_mem_give(img_ctx *c)
{
    if (c->held) {
        share_give(c->share, c->held);
        c->held = 0;
    }
}

static void share_give(img_share *s, uint64_t n)
{
    pthread_mutex_lock(&s->mu);
    s->left += n;
    pthread_cond_broadcast(&s->freed);
    pthread_mutex_unlock(&s->mu);
}

uint64_t img_ctx_bytes(const img_cfg *cfg)
{
    uint32_t rows;
    uint64_t px = region_pixels(cfg, &rows);
    return sizeof(img_ctx) + 4 * px + (uint64_t)rows * sizeof(JSAMPROW) + img_resize_tmp_bytes(cfg->size, rows) +
           (uint64_t)cfg->size * cfg->size * 3 + cfg->max_image_memory + libjpeg_rows(cfg) + IMG_ROW_BYTES;
}

int img_ctx_create(const img_cfg *cfg, img_ctx **out)
{
    *out = NULL;
    img_ctx *c = sp_calloc(1, sizeof *c);
    if (!c)
        return sp_fail(NULL, SP_ENOMEM, "out of memory for an image decoder");
    c->cfg = *cfg;
    uint32_t rows;
    c->region_cap = 4 * region_pixels(cfg, &rows);
    c->rows_cap = rows;
    c->tmp_cols = rows;
    c->region = sp_malloc(c->region_cap);
    c->rowp = sp_malloc(rows * sizeof *c->rowp);
    c->tmp = sp_malloc(img_resize_tmp_bytes(cfg->size, rows));
    c->rgb = sp_malloc((size_t)cfg->size * cfg->size * 3);
    c->row = sp_malloc((size_t)IMG_MAX_SIDE * 4);
    c->acc = sp_malloc((size_t)IMG_MAX_SIDE * 4 * sizeof *c->acc);
    if (!c->region || !c->rowp || !c->tmp || !c->rgb || !c->row || !c->acc) {
        img_ctx_destroy(c);
        return sp_fail(NULL, SP_ENOMEM, "out of memory for an image decoder's %llu bytes",
                       (unsigned long long)img_ctx_bytes(cfg));
    }
    c->dec.err = jpeg_std_error(&c->err.pub);
    c->err.pub.error_exit = on_error_exit;
    c->err.pub.emit_message = on_emit_message;
    c->err.pub.output_message = on_output_message;
    c->progress.progress_monitor = on_progress;
    /* Touched now, so the decoder's memory is resident from the start: RSS then shows the budget,
     * not a high-water mark that creeps up as larger crops come along. */
    memset(c->region, 0, c->region_cap);
    memset(c->tmp, 0, img_resize_tmp_bytes(cfg->size, rows));
    memset(c->rgb, 0, (size_t)cfg->size * cfg->size * 3);
    c->dec_ready = true; /* destroying a zeroed, half-created decompressor is safe */
    if (setjmp(c->err.jb)) {
        img_ctx_destroy(c);
        return sp_fail(NULL, SP_ENOMEM, "cannot create a JPEG decoder");
    }
    jpeg_create_decompress(&c->dec);
    c->dec.progress = &c->progress;
    /* Progressive images keep every coefficient in memory (2 bytes per sample): libjpeg's
     * whole-image arrays are capped, and an image needing more fails (JERR_NO_BACKING_STORE). */
    c->dec.mem->max_memory_to_use = (long)cfg->max_image_memory;
    build_luts(c);
    *out = c;
    return SP_OK;
}

void img_ctx_destroy(img_ctx *c)
{
    if (!c)
        return;
    if (c->dec_ready)
        jpeg_destroy_decompress(&c->dec);
    sp_free(c->region);
    sp_free(c->rowp);
    sp_free(c->tmp);
    sp_free(c->rgb);
    sp_free(c->row);
    sp_free(c->acc);
    sp_free(c);
}

/* ---------------------------------------------------------------- decode */

/* libjpeg-turbo 2.1's jpeg_crop_scanline miscomputes the width of a component that it decodes at
 * a larger DCT size than the smallest and still upsamples (4:1:0 and 2x4 samplings at a reduced
 * scale): part of each of its rows comes out unconverted. Such images are decoded at full width. */
#if JPEG_LIB_VERSION >= 70
#define DCT_SIZE_OF(ci) ((ci)->DCT_h_scaled_size)
#define MIN_DCT_SIZE(d) ((d)->min_DCT_h_scaled_size)
#else
#define DCT_SIZE_OF(ci) ((ci)->DCT_scaled_size)
#define MIN_DCT_SIZE(d) ((d)->min_DCT_scaled_size)
#endif
static bool crop_safe(const struct jpeg_decompress_struct *d)
{
    for (int i = 0; i < d->num_components; i++) {
        const jpeg_component_info *ci = &d->comp_info[i];
        int size = DCT_SIZE_OF(ci), min = MIN_DCT_SIZE(d);
        bool upsampled = ci->h_samp_factor * size != d->max_h_samp_factor * min ||
                         ci->v_samp_factor * size != d->max_v_samp_factor * min;
        if (size != min && upsampled)
            return false;
    }
    return true;
}

static uint64_t coef_bytes(const struct jpeg_decompress_struct *d);

/* The decode itself; libjpeg errors longjmp back to img_process. Returns SP_OK or an error code
 * with why filled; the caller aborts the decompressor either way. */
static int decode(img_ctx *c, const uint8_t *data, size_t size, uint64_t epoch, uint64_t sample, void *out,
                  img_result *res, char *why, size_t whylen)
{
    struct jpeg_decompress_struct *d = &c->dec;
    jpeg_mem_src(d, data, (unsigned long)size);
    jpeg_read_header(d, TRUE);
    uint64_t w = d->image_width, h = d->image_height;
    res->width = (uint32_t)w;
    res->height = (uint32_t)h;
    if (w * h > c->cfg.max_pixels)
        return snprintf(why, whylen, "%llux%llu pixels is more than max_pixels %llu", (unsigned long long)w,
                        (unsigned long long)h, (unsigned long long)c->cfg.max_pixels),
               SP_ELIMIT;
    if (d->data_precision != 8)
        return snprintf(why, whylen, "%d-bit samples are not supported", d->data_precision), SP_EBADINPUT;

    img_crop(&c->cfg, (uint32_t)w, (uint32_t)h, epoch, sample, &res->box);
    int m = img_pick_scale(&res->box, c->cfg.size);
    res->scale = m;
    bool cmyk = d->jpeg_color_space == JCS_CMYK || d->jpeg_color_space == JCS_YCCK;
    d->out_color_space = cmyk ? JCS_CMYK : JCS_EXT_RGBX;
    d->scale_num = (unsigned)m;
    d->scale_denom = 8;
    d->dct_method = JDCT_ISLOW;
    if (c->share && jpeg_has_multiple_scans(d)) {
        /* the coefficients of every scan stay in memory: taken from the shared whole, given back
         * by img_process whatever happens next. Refused only where libjpeg, capped at the whole,
         * would refuse it; the headroom for the decoder's other arrays is taken where it fits
         * (at a total of 1 MiB, the least, a small image still decodes, as with its own cap). */
        uint64_t need = coef_bytes(d) + (1u << 20);
        if (coef_bytes(d) > c->share->total)
            return snprintf(why, whylen,
                            "decoding it needs more than max_image_memory (%llu MiB, shared by the workers): a "
                            "progressive JPEG keeps every coefficient of the image in memory (%.1f MiB for this "
                            "one); set max_image_memory >= %lluM%s",
                            (unsigned long long)(c->share->total >> 20), (double)coef_bytes(d) / (1 << 20),
                            (unsigned long long)(coef_bytes(d) >> 20) + 2, img_sizes_note(&c->cfg)),
                   SP_ELIMIT;
        img_mem_take(c, need < c->share->total ? need : c->share->total);
    }
    jpeg_start_decompress(d);

    /* The box at this scale, and the rows and columns around it the filter reads. */
    double f = m / 8.0;
    img_box b = { res->box.x0 * f, res->box.y0 * f, res->box.x1 * f, res->box.y1 * f, res->box.flip };
    int need[4];
    img_need(&b, c->cfg.size, (int)d->output_width, (int)d->output_height, need);
    int x0 = need[0], y0 = need[1], x1 = need[2], y1 = need[3];
    JDIMENSION cx = (JDIMENSION)x0, cw = (JDIMENSION)(x1 - x0);
    if (cw < d->output_width && crop_safe(d))
        jpeg_crop_scanline(d, &cx, &cw); /* widens to whole iMCUs */
    else
        cx = 0, cw = d->output_width;
    uint32_t rows = (uint32_t)(y1 - y0);
    if ((uint64_t)cw * rows * 4 > c->region_cap || rows > c->rows_cap || cw > c->tmp_cols)
        return snprintf(why, whylen, "a %ux%u crop region is beyond the decoder's buffers%s", (unsigned)cw, rows,
                        img_sizes_note(&c->cfg)),
               SP_ELIMIT;
    size_t stride = (size_t)cw * 4;
    for (uint32_t r = 0; r < rows; r++)
        c->rowp[r] = c->region + r * stride;
    if (y0 > 0 && jpeg_skip_scanlines(d, (JDIMENSION)y0) != (JDIMENSION)y0)
        return snprintf(why, whylen, "the image data ends early"), SP_EBADINPUT;
    for (uint32_t r = 0; r < rows;) {
        JDIMENSION got = jpeg_read_scanlines(d, c->rowp + r, rows - r);
        if (got == 0)
            return snprintf(why, whylen, "the image data ends early"), SP_EBADINPUT;
        r += got;
    }
    if (cmyk)
        img_cmyk_to_rgbx(c->region, (size_t)cw * rows, d->saw_Adobe_marker);
    b.x0 -= cx, b.x1 -= cx, b.y0 -= y0, b.y1 -= y0;
    img_finish(c, c->region, cw, rows, stride, &b, out);
    return SP_OK;
}

void img_finish(img_ctx *c, const uint8_t *region, uint32_t cw, uint32_t rows, size_t stride, const img_box *b,
                void *out)
{
    bool direct = c->cfg.dtype == SP_IMAGE_UINT8 && c->cfg.layout == SP_LAYOUT_NHWC;
    img_resize(region, cw, rows, stride, b, c->cfg.size, direct ? out : c->rgb, c->tmp);
    if (!direct)
        for (uint32_t y = 0; y < c->cfg.size; y++)
            img_emit_row(c, c->rgb + (size_t)y * c->cfg.size * 3, y, out);
}

/* What libjpeg keeps of a multi-scan image (a progressive one): every coefficient block of every
 * component, each component's blocks padded to whole MCUs (sampling factor multiples), 128 bytes a
 * block. From the header read into d. The decoder's other buffers come on top, under a MiB. */
static uint64_t coef_bytes(const struct jpeg_decompress_struct *d)
{
    uint64_t n = 0;
    for (int i = 0; d->comp_info && i < d->num_components; i++) {
        const jpeg_component_info *ci = &d->comp_info[i];
        uint64_t wb = ci->width_in_blocks, hb = ci->height_in_blocks;
        uint64_t hs = (uint64_t)ci->h_samp_factor, vs = (uint64_t)ci->v_samp_factor;
        n += (hs ? (wb + hs - 1) / hs * hs : wb) * (vs ? (hb + vs - 1) / vs * vs : hb) * sizeof(JBLOCK);
    }
    return n;
}

int img_process(img_ctx *c, const uint8_t *data, size_t size, uint64_t epoch, uint64_t sample, void *out,
                img_result *res, char *why, size_t whylen)
{
    img_result local;
    img_result *volatile r = res ? res : &local;
    memset(r, 0, sizeof *r);
    c->err.warnings = 0;
    c->err.too_many_scans = false;
    c->err.msg[0] = '\0';
    int format = data ? img_format(data, size) : 0;
    if (format == SP_IMAGE_FORMAT_PNG || format == SP_IMAGE_FORMAT_WEBP) {
        int rc = format == SP_IMAGE_FORMAT_PNG ? img_png(c, data, size, epoch, sample, out, r, why, whylen)
                                               : img_webp(c, data, size, epoch, sample, out, r, why, whylen);
        img_mem_give(c);
        return rc;
    }
    if (format != SP_IMAGE_FORMAT_JPEG) {
        snprintf(why, whylen, "not an image: %zu bytes that are neither JPEG, PNG nor WebP (by their first bytes)",
                 size);
        return SP_EBADINPUT;
    }
    int rc;
    if (setjmp(c->err.jb)) {
        int code = c->err.pub.msg_code;
        if (c->err.too_many_scans) {
            snprintf(why, whylen, "JPEG has more than %d scans (a progressive file needs a few dozen at most)",
                     IMG_MAX_SCANS);
            rc = SP_ELIMIT;
        } else if (c->err.warnings) {
            snprintf(why, whylen, "corrupt JPEG data: %s", c->err.msg);
            rc = SP_EBADINPUT;
        } else if (code == JERR_NO_BACKING_STORE) {
            snprintf(why, whylen, "decoding it needs more than max_image_memory (%llu MiB): a progressive JPEG "
                     "keeps every coefficient of the image in memory (%.1f MiB for this one); set max_image_memory "
                     ">= %lluM", (unsigned long long)(c->cfg.max_image_memory >> 20),
                     (double)coef_bytes(&c->dec) / (1 << 20), (unsigned long long)(coef_bytes(&c->dec) >> 20) + 2);
            rc = SP_ELIMIT;
        } else if (code == JERR_OUT_OF_MEMORY) {
            snprintf(why, whylen, "out of memory decoding it: %s", c->err.msg);
            rc = SP_ENOMEM;
        } else {
            snprintf(why, whylen, "corrupt JPEG: %s", c->err.msg);
            rc = SP_EBADINPUT;
        }
    } else {
        rc = decode(c, data, size, epoch, sample, out, r, why, whylen);
    }
    jpeg_abort_decompress(&c->dec); /* ready for the next image, whatever state this one left */
    img_mem_give(c);
    return rc;
}
