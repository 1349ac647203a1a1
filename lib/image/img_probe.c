/* img_probe.c - JPEG header parsing without pixel decoding, for validation at pack time. */
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
    int w = 0, h = 0, samp = -1, cs = -1;
    int r = tjDecompressHeader3(tj, p, (unsigned long)size, &w, &h, &samp, &cs);
    if (r != 0)
        rc = sp_fail(NULL, SP_EBADINPUT, "damaged JPEG header: %s", tjGetErrorStr2(tj));
    else if (w <= 0 || h <= 0)
        rc = sp_fail(NULL, SP_EBADINPUT, "JPEG has no pixels (%dx%d)", w, h);
    else if (max_pixels && (uint64_t)w * (uint64_t)h > max_pixels)
        rc = sp_fail(NULL, SP_ELIMIT, "JPEG is %dx%d, above the %llu-pixel cap", w, h,
                     (unsigned long long)max_pixels);
    tjDestroy(tj);
    if (rc)
        return rc;
    int progressive;
    uint32_t scans;
    walk_markers(p, size, &progressive, &scans);
    if (scans > IMG_MAX_SCANS)
        return sp_fail(NULL, SP_ELIMIT, "JPEG has more than %d scans (a progressive file needs a few dozen at most)",
                       IMG_MAX_SCANS);
    sp_image_info info = { .struct_size = sizeof info, .width = w, .height = h,
                           .components = cs == TJCS_GRAY ? 1 : (cs == TJCS_CMYK || cs == TJCS_YCCK) ? 4 : 3,
                           .subsampling = samp, .progressive = progressive == 1 };
    sp_out_put(out, &info, sizeof info);
    return SP_OK;
}
