/* img_shrink.c - pack-time resizing (max_side) and transcoding (transcode=jpeg): the whole image
 * decoded (a JPEG at the smallest DCT scale still above the target, so a 12 MP photo bound for
 * 512 pixels is decoded at 1/4), resized with the loader's own antialiasing resampler, and written
 * as a JPEG by TurboJPEG. An image that needs neither is left alone, byte for byte. */
#include <setjmp.h>
#include <stdio.h>

#include <jpeglib.h>
#include <spng.h>
#include <turbojpeg.h>
#include <webp/decode.h>

#include "img.h"

/* The whole JPEG at scale m/8 into *px (RGBX, sp_malloc), *w x *h. */
static int jpeg_whole(const uint8_t *data, size_t size, int m, uint8_t **px, uint32_t *w, uint32_t *h, char *why,
                      size_t whylen)
{
    struct jpeg_decompress_struct d;
    img_quiet_err e; /* a warning is corrupt data, as in the loader: the image is refused */
    uint8_t *volatile buf = NULL;
    d.err = img_quiet_err_init(&e);
    if (setjmp(e.jb)) {
        snprintf(why, whylen, "corrupt JPEG: %s", e.msg);
        jpeg_destroy_decompress(&d);
        sp_free(buf);
        return SP_EBADINPUT;
    }
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, data, (unsigned long)size);
    jpeg_read_header(&d, TRUE);
    bool cmyk = d.jpeg_color_space == JCS_CMYK || d.jpeg_color_space == JCS_YCCK;
    d.out_color_space = cmyk ? JCS_CMYK : JCS_EXT_RGBX;
    d.scale_num = (unsigned)m;
    d.scale_denom = 8;
    d.dct_method = JDCT_ISLOW;
    jpeg_start_decompress(&d);
    size_t stride = (size_t)d.output_width * 4;
    buf = sp_malloc(stride * d.output_height);
    if (!buf) {
        jpeg_destroy_decompress(&d);
        return snprintf(why, whylen, "out of memory for a %ux%u image", d.output_width, d.output_height), SP_ENOMEM;
    }
    while (d.output_scanline < d.output_height) {
        JSAMPROW row = buf + stride * d.output_scanline;
        if (jpeg_read_scanlines(&d, &row, 1) != 1)
            longjmp(e.jb, 1);
    }
    if (cmyk)
        img_cmyk_to_rgbx(buf, (size_t)d.output_width * d.output_height, d.saw_Adobe_marker);
    *w = d.output_width;
    *h = d.output_height;
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    *px = buf;
    return SP_OK;
}

static int png_whole(const uint8_t *data, size_t size, uint8_t **px, uint32_t *w, uint32_t *h, char *why,
                     size_t whylen)
{
    spng_ctx *s = spng_ctx_new(0);
    if (!s)
        return snprintf(why, whylen, "cannot create a PNG decoder"), SP_ENOMEM;
    struct spng_ihdr ih;
    size_t n = 0;
    int e = spng_set_png_buffer(s, data, size);
    if (!e)
        spng_set_crc_action(s, SPNG_CRC_ERROR, SPNG_CRC_ERROR);
    if (!e)
        e = spng_get_ihdr(s, &ih);
    if (!e)
        e = spng_decoded_image_size(s, SPNG_FMT_RGBA8, &n);
    uint8_t *buf = e ? NULL : sp_malloc(n);
    if (!e && !buf) {
        spng_ctx_free(s);
        return snprintf(why, whylen, "out of memory for a %zu-byte image", n), SP_ENOMEM;
    }
    if (!e)
        e = spng_decode_image(s, buf, n, SPNG_FMT_RGBA8, 0);
    spng_ctx_free(s);
    if (e) {
        sp_free(buf);
        return snprintf(why, whylen, "corrupt PNG: %s", spng_strerror(e)), SP_EBADINPUT;
    }
    *w = ih.width, *h = ih.height, *px = buf;
    return SP_OK;
}

static int webp_whole(const uint8_t *data, size_t size, uint8_t **px, uint32_t *w, uint32_t *h, char *why,
                      size_t whylen)
{
    int iw, ih;
    if (!WebPGetInfo(data, size, &iw, &ih))
        return snprintf(why, whylen, "damaged WebP header"), SP_EBADINPUT;
    size_t n = (size_t)iw * (size_t)ih * 4;
    uint8_t *buf = sp_malloc(n);
    if (!buf)
        return snprintf(why, whylen, "out of memory for a %dx%d image", iw, ih), SP_ENOMEM;
    if (!WebPDecodeRGBAInto(data, size, buf, n, iw * 4)) {
        sp_free(buf);
        return snprintf(why, whylen, "corrupt WebP"), SP_EBADINPUT;
    }
    *w = (uint32_t)iw, *h = (uint32_t)ih, *px = buf;
    return SP_OK;
}

int img_shrink(const uint8_t *data, size_t size, const img_shrink_cfg *cfg, img_shrink_out *out, char *why,
               size_t whylen)
{
    memset(out, 0, sizeof *out);
    sp_image_info info = { .struct_size = sizeof info };
    int rc = sp_image_probe(data, size, cfg->max_pixels, &info);
    if (rc)
        return snprintf(why, whylen, "%s", sp_last_error()), rc;
    out->format = info.format;
    uint32_t w = (uint32_t)info.width, h = (uint32_t)info.height, longer = w > h ? w : h;
    bool resize = cfg->max_side && longer > cfg->max_side;
    if (!resize && !(cfg->to_jpeg && info.format != SP_IMAGE_FORMAT_JPEG))
        return SP_OK;
    /* The size written: the longer side max_side, the other in proportion (at least a pixel). */
    uint32_t ow = w, oh = h;
    if (resize) {
        double f = (double)cfg->max_side / longer;
        ow = w >= h ? cfg->max_side : (uint32_t)(w * f + 0.5);
        oh = w >= h ? (uint32_t)(h * f + 0.5) : cfg->max_side;
        ow = ow ? ow : 1, oh = oh ? oh : 1;
    }
    uint8_t *px = NULL;
    uint32_t dw, dh;
    if (info.format == SP_IMAGE_FORMAT_JPEG) {
        int m = 8; /* the smallest DCT scale whose image still covers the target */
        while (m > 1 && ((uint64_t)w * (m / 2) + 7) / 8 >= ow && ((uint64_t)h * (m / 2) + 7) / 8 >= oh)
            m /= 2;
        rc = jpeg_whole(data, size, m, &px, &dw, &dh, why, whylen);
    } else if (info.format == SP_IMAGE_FORMAT_PNG) {
        rc = png_whole(data, size, &px, &dw, &dh, why, whylen);
    } else {
        rc = webp_whole(data, size, &px, &dw, &dh, why, whylen);
    }
    if (rc)
        return rc;
    uint8_t *rgb = sp_malloc((size_t)ow * oh * 3);
    void *tmp = resize ? sp_malloc(img_resize_wh_tmp_bytes(ow, oh, dw, dh)) : NULL;
    if (!rgb || (resize && !tmp)) {
        sp_free(px), sp_free(rgb), sp_free(tmp);
        return snprintf(why, whylen, "out of memory resizing a %ux%u image", dw, dh), SP_ENOMEM;
    }
    if (resize) {
        img_box b = { 0, 0, dw, dh, false };
        img_resize_wh(px, dw, dh, (size_t)dw * 4, &b, ow, oh, rgb, tmp);
    } else {
        for (size_t i = 0; i < (size_t)ow * oh; i++)
            memcpy(rgb + 3 * i, px + 4 * i, 3);
    }
    sp_free(px);
    sp_free(tmp);
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long jsize = 0;
    int bad = !tj || tjCompress2(tj, rgb, (int)ow, 0, (int)oh, TJPF_RGB, &jpeg, &jsize, TJSAMP_420, cfg->quality,
                                 0) != 0;
    sp_free(rgb);
    if (bad) {
        snprintf(why, whylen, "encoding a %ux%u JPEG failed: %s", ow, oh, tjGetErrorStr2(tj));
        if (tj)
            tjDestroy(tj);
        tjFree(jpeg);
        return SP_ENOMEM;
    }
    tjDestroy(tj);
    out->data = sp_malloc(jsize);
    if (out->data)
        memcpy(out->data, jpeg, jsize);
    tjFree(jpeg);
    if (!out->data)
        return snprintf(why, whylen, "out of memory for a %lu-byte JPEG", jsize), SP_ENOMEM;
    out->size = jsize;
    out->resized = resize;
    out->width = ow;
    out->height = oh;
    return SP_OK;
}
