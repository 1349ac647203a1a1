/* img_probe.c - JPEG header parsing without pixel decoding, for validation at pack time. */
#include <setjmp.h>
#include <stdio.h>

#include <jpeglib.h>
#include <turbojpeg.h>

#include "img.h"

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

/* libjpeg's error manager for a header parse: an error or a warning (corrupt data libjpeg would
 * paper over) ends the parse with its message; nothing is printed. */
typedef struct hdr_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} hdr_err;

static void hdr_fail(j_common_ptr c)
{
    hdr_err *e = (hdr_err *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

static void hdr_message(j_common_ptr c, int level)
{
    if (level < 0)
        hdr_fail(c);
}

static void hdr_quiet(j_common_ptr c) { (void)c; }

/* The header as libjpeg reads it before a decode (jpeg_read_header, what the image stage calls),
 * for a file TurboJPEG's header query refused. That query also refuses a sound file whose chroma
 * sampling is none of the few it has names for (luma 4x2 or 1x4 against 1x1 chroma, say), which
 * libjpeg, and so the loader, decodes. Width, height and components; or SP_EBADINPUT with why. */
static int libjpeg_header(const uint8_t *p, size_t size, int *w, int *h, int *components, char *why, size_t whylen)
{
    struct jpeg_decompress_struct d;
    hdr_err e;
    d.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = hdr_fail;
    e.pub.emit_message = hdr_message;
    e.pub.output_message = hdr_quiet;
    e.msg[0] = '\0';
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

int sp_image_probe(const void *data, size_t size, uint64_t max_pixels, sp_image_info *out)
{
    sp_clear_error();
    int rc = sp_out_check("sp_image_probe", "sp_image_info", out);
    if (rc)
        return rc;
    if (!data)
        return sp_fail(NULL, SP_EINVAL, "sp_image_probe: NULL data");
    const uint8_t *p = data;
    if (size < 4 || p[0] != 0xFF || p[1] != 0xD8)
        return sp_fail(NULL, SP_EBADINPUT, "not a JPEG (no SOI marker)");
    if (size > 0xFFFFFFFFul)
        return sp_fail(NULL, SP_ELIMIT, "JPEG of %zu bytes is too large", size);
    tjhandle tj = tjInitDecompress();
    if (!tj)
        return sp_fail(NULL, SP_ENOMEM, "cannot create a TurboJPEG decompressor");
    int w = 0, h = 0, samp = -1, cs = -1, components = 0;
    int r = tjDecompressHeader3(tj, p, (unsigned long)size, &w, &h, &samp, &cs);
    tjDestroy(tj);
    if (r == 0) {
        components = cs == TJCS_GRAY ? 1 : (cs == TJCS_CMYK || cs == TJCS_YCCK) ? 4 : 3;
    } else {
        char why[JMSG_LENGTH_MAX];
        samp = -1; /* a sampling TurboJPEG has no name for, when libjpeg reads the header */
        if (libjpeg_header(p, size, &w, &h, &components, why, sizeof why) != SP_OK)
            return sp_fail(NULL, SP_EBADINPUT, "damaged JPEG header: %s", why);
    }
    if (w <= 0 || h <= 0)
        return sp_fail(NULL, SP_EBADINPUT, "JPEG has no pixels (%dx%d)", w, h);
    if (max_pixels && (uint64_t)w * (uint64_t)h > max_pixels)
        return sp_fail(NULL, SP_ELIMIT, "JPEG is %dx%d, above the %llu-pixel cap", w, h,
                       (unsigned long long)max_pixels);
    int progressive;
    uint32_t scans;
    walk_markers(p, size, &progressive, &scans);
    if (scans > IMG_MAX_SCANS)
        return sp_fail(NULL, SP_ELIMIT, "JPEG has more than %d scans (a progressive file needs a few dozen at most)",
                       IMG_MAX_SCANS);
    sp_image_info info = { .struct_size = sizeof info, .width = w, .height = h,
                           .components = components,
                           .subsampling = samp, .progressive = progressive == 1 };
    sp_out_put(out, &info, sizeof info);
    return SP_OK;
}
