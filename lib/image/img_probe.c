/* img_probe.c - image formats from their magic numbers, and header parsing without pixel
 * decoding (JPEG, PNG, WebP), for validation at pack time. */
#include <setjmp.h>
#include <stdio.h>

#include <jpeglib.h>
#include <spng.h>
#include <turbojpeg.h>
#include <webp/decode.h>

#include "img.h"

int img_format(const uint8_t *p, size_t n)
{
    static const uint8_t png[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n' };
    if (n >= 4 && p[0] == 0xFF && p[1] == 0xD8)
        return SP_IMAGE_FORMAT_JPEG;
    if (n >= 8 && !memcmp(p, png, 8))
        return SP_IMAGE_FORMAT_PNG;
    if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4))
        return SP_IMAGE_FORMAT_WEBP;
    return 0;
}

const char *img_format_name(int format)
{
    return format == SP_IMAGE_FORMAT_JPEG   ? "JPEG"
           : format == SP_IMAGE_FORMAT_PNG  ? "PNG"
           : format == SP_IMAGE_FORMAT_WEBP ? "WebP"
                                            : "unknown";
}

/* libwebp 1.2's buffers, read from its source: a lossless image decodes into a whole ARGB plane
 * plus 16 rows of cache top and bottom (4 bytes a pixel), its transforms' sub-images and Huffman
 * tables coming on top (at most a pixel's worth more, and a few MiB); an alpha plane is a byte a
 * pixel, decoded through the same lossless path (4 more). A lossy image keeps a few macroblock
 * rows (under 200 bytes a column of the image); the decoder's own state is 256 KiB at most. Peaks
 * of WebPDecode's heap measured with libwebp 1.2.4 (noise images): lossy 16x16 6 KiB, 4096x4096
 * 510 KiB; lossless 16x16 16 KiB, 1024x1024 4.1 MiB; lossy+alpha 256x256 184 KiB: each under
 * this estimate, which lets every small image decode at the least max_image_memory (1 MiB). Not
 * counted, because the header does not show it: libwebp 1.2 allocates a lossless image's Huffman
 * tables for as many groups as its bitstream names (up to one per 4x4 pixels), under its own cap. */
uint64_t img_webp_memory(uint32_t w, uint32_t h, bool lossless, bool alpha)
{
    uint64_t px = (uint64_t)w * h, n = 200 * (uint64_t)w + (256u << 10);
    if (lossless)
        n += 8 * px + 32 * 4 * (uint64_t)w;
    else if (alpha)
        n += 6 * px + 32 * 4 * (uint64_t)w;
    return n;
}

/* The markers of a JPEG, walked without decoding: whether the first frame marker (SOFn) says
 * progressive (SOF2, 6, 10, 14; TurboJPEG 2.x's header query does not), and how many scans (SOS)
 * there are, counted up to IMG_MAX_SCANS + 1. Entropy-coded data is skipped to the next marker
 * (0xFF followed by neither a stuffed 0x00 nor a restart marker). The walk stops at EOI and at
 * anything malformed, which the decode judges. */
static void walk_markers(const uint8_t *p, size_t n, int *progressive, uint32_t *scans)
{
    *progressive = -1;
    *scans = 0;
    size_t i = 2;
    while (i + 4 <= n) {
        if (p[i] != 0xFF)
            return;
        uint8_t m = p[i + 1];
        if (m == 0xFF) {
            i++;
            continue;
        }
        if (m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01) {
            i += 2;
            continue;
        }
        if (m == 0xD9)
            return;
        size_t len = ((size_t)p[i + 2] << 8) | p[i + 3];
        if (len < 2)
            return;
        if (*progressive < 0 && m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC)
            *progressive = m == 0xC2 || m == 0xC6 || m == 0xCA || m == 0xCE;
        i += 2 + len;
        if (m != 0xDA)
            continue;
        if (++*scans > IMG_MAX_SCANS)
            return;
        for (;;) {
            const uint8_t *ff = i < n ? memchr(p + i, 0xFF, n - i) : NULL;
            if (!ff || (size_t)(ff - p) + 1 >= n)
                return;
            i = (size_t)(ff - p);
            uint8_t next = p[i + 1];
            if (next != 0x00 && !(next >= 0xD0 && next <= 0xD7))
                break;
            i += 2;
        }
    }
}

static void quiet_fail(j_common_ptr c)
{
    img_quiet_err *e = (img_quiet_err *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

static void quiet_message(j_common_ptr c, int level)
{
    if (level < 0)
        quiet_fail(c);
}

static void quiet_output(j_common_ptr c) { (void)c; }

struct jpeg_error_mgr *img_quiet_err_init(img_quiet_err *e)
{
    struct jpeg_error_mgr *m = jpeg_std_error(&e->pub);
    e->pub.error_exit = quiet_fail;
    e->pub.emit_message = quiet_message;
    e->pub.output_message = quiet_output;
    e->msg[0] = '\0';
    return m;
}

/* The header as libjpeg reads it before a decode (jpeg_read_header, what the image stage calls),
 * for a file TurboJPEG's header query refused. That query also refuses a sound file whose chroma
 * sampling is none of the few it has names for (luma 4x2 or 1x4 against 1x1 chroma, say), which
 * libjpeg, and so the loader, decodes. Width, height and components; or SP_EBADINPUT with why. */
static int libjpeg_header(const uint8_t *p, size_t size, int *w, int *h, int *components, char *why, size_t whylen)
{
    struct jpeg_decompress_struct d;
    img_quiet_err e;
    d.err = img_quiet_err_init(&e);
    if (setjmp(e.jb)) {
        snprintf(why, whylen, "%s", e.msg);
        jpeg_destroy_decompress(&d);
        return SP_EBADINPUT;
    }
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, p, (unsigned long)size);
    jpeg_read_header(&d, TRUE);
    *w = (int)d.image_width;
    *h = (int)d.image_height;
    *components = d.jpeg_color_space == JCS_GRAYSCALE                                  ? 1
                  : d.jpeg_color_space == JCS_CMYK || d.jpeg_color_space == JCS_YCCK ? 4
                                                                                       : 3;
    jpeg_destroy_decompress(&d);
    return SP_OK;
}

/* A JPEG's headers: TurboJPEG's query, libjpeg's when that refuses; the scan count. */
static int jpeg_probe(const uint8_t *p, size_t size, sp_image_info *info)
{
    tjhandle tj = tjInitDecompress();
    if (!tj)
        return sp_fail(NULL, SP_ENOMEM, "cannot create a TurboJPEG decompressor");
    int w = 0, h = 0, samp = -1, cs = -1, components = 0;
    int r = tjDecompressHeader3(tj, p, (unsigned long)size, &w, &h, &samp, &cs);
    tjDestroy(tj);
    /* TurboJPEG reports a file that ends before its frame header as a warning ("Premature end of
     * JPEG file") with a size of 0x0: libjpeg's reading below says so instead. */
    if (r == 0 && w > 0 && h > 0) {
        components = cs == TJCS_GRAY ? 1 : (cs == TJCS_CMYK || cs == TJCS_YCCK) ? 4 : 3;
    } else {
        char why[JMSG_LENGTH_MAX];
        samp = -1; /* a sampling TurboJPEG has no name for, when libjpeg reads the header */
        if (libjpeg_header(p, size, &w, &h, &components, why, sizeof why) != SP_OK)
            return sp_fail(NULL, SP_EBADINPUT, "damaged JPEG header: %s", why);
    }
    if (w > 0 && h > 0) { /* the sizes are checked by the caller */
        int progressive;
        uint32_t scans;
        walk_markers(p, size, &progressive, &scans);
        if (scans > IMG_MAX_SCANS)
            return sp_fail(NULL, SP_ELIMIT,
                           "JPEG has more than %d scans (a progressive file needs a few dozen at most)", IMG_MAX_SCANS);
        info->progressive = progressive == 1;
    }
    info->width = w;
    info->height = h;
    info->components = components;
    info->subsampling = samp;
    return SP_OK;
}

/* A PNG's header: IHDR and every chunk up to the image data (PLTE among them), read by libspng
 * (signature, CRC and field checks; a palette image needs its PLTE). */
static int png_probe(const uint8_t *p, size_t size, sp_image_info *info)
{
    spng_ctx *s = spng_ctx_new(0);
    if (!s)
        return sp_fail(NULL, SP_ENOMEM, "cannot create a PNG decoder");
    struct spng_ihdr ih;
    int r = spng_set_png_buffer(s, p, size);
    if (!r)
        r = spng_get_ihdr(s, &ih);
    if (!r)
        r = spng_decode_chunks(s);
    spng_ctx_free(s);
    if (r)
        return sp_fail(NULL, SP_EBADINPUT, "damaged PNG header: %s", spng_strerror(r));
    static const int comps[7] = { 1, 0, 3, 3, 2, 0, 4 }; /* by colour type */
    info->width = (int)(ih.width > INT32_MAX ? INT32_MAX : ih.width);
    info->height = (int)(ih.height > INT32_MAX ? INT32_MAX : ih.height);
    info->components = ih.color_type <= 6 ? comps[ih.color_type] : 0;
    info->progressive = ih.interlace_method != 0;
    info->bit_depth = ih.bit_depth;
    return SP_OK;
}

static int webp_probe(const uint8_t *p, size_t size, sp_image_info *info)
{
    WebPBitstreamFeatures f;
    VP8StatusCode st = WebPGetFeatures(p, size, &f);
    if (st != VP8_STATUS_OK)
        return sp_fail(NULL, SP_EBADINPUT, "damaged WebP header (libwebp status %d)", (int)st);
    if (f.has_animation)
        return sp_fail(NULL, SP_EBADINPUT, "animated WebP (%dx%d): only still images are decoded", f.width, f.height);
    info->width = f.width;
    info->height = f.height;
    info->components = f.has_alpha ? 4 : 3;
    info->bit_depth = 8;
    return SP_OK;
}

int sp_image_probe(const void *data, size_t size, uint64_t max_pixels, sp_image_info *out)
{
    sp_clear_error();
    int rc = sp_out_check("sp_image_probe", "sp_image_info", out);
    if (rc)
        return rc;
    if (!data)
        return sp_fail(NULL, SP_EINVAL, "sp_image_probe: NULL data");
    const uint8_t *p = data;
    int format = img_format(p, size);
    if (!format)
        return sp_fail(NULL, SP_EBADINPUT, "neither JPEG, PNG nor WebP (by its first bytes)");
    if (size > 0xFFFFFFFFul)
        return sp_fail(NULL, SP_ELIMIT, "%s of %zu bytes is too large", img_format_name(format), size);
    sp_image_info info = { .struct_size = sizeof info, .subsampling = -1, .format = format, .bit_depth = 8 };
    if (format == SP_IMAGE_FORMAT_PNG)
        rc = png_probe(p, size, &info);
    else if (format == SP_IMAGE_FORMAT_WEBP)
        rc = webp_probe(p, size, &info);
    else
        rc = jpeg_probe(p, size, &info);
    if (rc)
        return rc;
    const char *name = img_format_name(format);
    if (info.width <= 0 || info.height <= 0)
        return sp_fail(NULL, SP_EBADINPUT, "%s has no pixels (%dx%d)", name, info.width, info.height);
    if ((uint32_t)info.width > IMG_MAX_SIDE || (uint32_t)info.height > IMG_MAX_SIDE)
        return sp_fail(NULL, SP_ELIMIT, "%s is %dx%d, a side above %u", name, info.width, info.height, IMG_MAX_SIDE);
    if (max_pixels && (uint64_t)info.width * (uint64_t)info.height > max_pixels)
        return sp_fail(NULL, SP_ELIMIT, "%s is %dx%d, above the %llu-pixel cap", name, info.width, info.height,
                       (unsigned long long)max_pixels);
    sp_out_put(out, &info, sizeof info);
    return SP_OK;
}
