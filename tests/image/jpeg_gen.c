/* jpeg_gen.c - synthetic pictures, a libjpeg encoder for every variant the image stage must read,
 * and a plain whole-image reference decoder (see jpeg_gen.h). */
#include "jpeg_gen.h"

#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "shardpack.h"

/* ------------------------------------------------------------------------------- pictures */

static uint64_t jg_mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint8_t clamp_u8(double v)
{
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : floor(v + 0.5));
}

static uint8_t *picture(int w, int h, uint64_t seed, int nrect)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    if (!p)
        return NULL;
    uint64_t s = jg_mix(seed ^ 0x6a70656731ull);
    double phase = (double)(s & 0xffff) / 65536.0 * 6.283185307179586;
    double fx = 0.6 + (double)((s >> 16) & 0xff) / 256.0, fy = 0.4 + (double)((s >> 24) & 0xff) / 256.0;
    /* Three rectangles, each between 1/8 and 1/4 of a side, with an offset per channel. */
    struct {
        double x0, y0, x1, y1;
        int d[3];
    } rect[3];
    for (int k = 0; k < 3; k++) {
        uint64_t r = jg_mix(s + (uint64_t)k * 7919);
        double rw = 0.125 + (double)(r & 0xff) / 256.0 * 0.125, rh = 0.125 + (double)((r >> 8) & 0xff) / 256.0 * 0.125;
        double x0 = (double)((r >> 16) & 0xffff) / 65536.0 * (1 - rw), y0 = (double)((r >> 32) & 0xffff) / 65536.0 * (1 - rh);
        rect[k].x0 = x0 * w, rect[k].x1 = (x0 + rw) * w, rect[k].y0 = y0 * h, rect[k].y1 = (y0 + rh) * h;
        for (int c = 0; c < 3; c++)
            rect[k].d[c] = (int)((r >> (48 + 5 * c)) & 31) * 4 - 62; /* -62 .. +62 */
    }
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            double u = w > 1 ? (double)x / (w - 1) : 0.5, v = h > 1 ? (double)y / (h - 1) : 0.5;
            double c[3] = { 40 + 170 * u, 40 + 170 * v,
                            nrect ? 128 + 70 * sin(6.283185307179586 * (fx * u + fy * v) + phase) : 210 - 85 * (u + v) };
            for (int k = 0; k < nrect; k++)
                if (x + 0.5 >= rect[k].x0 && x + 0.5 < rect[k].x1 && y + 0.5 >= rect[k].y0 && y + 0.5 < rect[k].y1)
                    for (int ch = 0; ch < 3; ch++)
                        c[ch] += rect[k].d[ch];
            uint8_t *o = p + ((size_t)y * w + x) * 3;
            for (int ch = 0; ch < 3; ch++)
                o[ch] = clamp_u8(c[ch]);
        }
    }
    return p;
}

uint8_t *jg_picture(int w, int h, uint64_t seed) { return picture(w, h, seed, 3); }

uint8_t *jg_smooth(int w, int h, uint64_t seed) { return picture(w, h, seed, 0); }

uint8_t *jg_flat(int w, int h, uint8_t r, uint8_t g, uint8_t b)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    if (!p)
        return NULL;
    for (size_t i = 0; i < (size_t)w * h; i++)
        p[3 * i] = r, p[3 * i + 1] = g, p[3 * i + 2] = b;
    return p;
}

uint8_t jg_luma(const uint8_t *rgb) { return clamp_u8(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]); }

uint8_t *jg_gray_rgb(const uint8_t *rgb, int w, int h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    if (!p)
        return NULL;
    for (size_t i = 0; i < (size_t)w * h; i++)
        p[3 * i] = p[3 * i + 1] = p[3 * i + 2] = jg_luma(rgb + 3 * i);
    return p;
}

/* ------------------------------------------------------------------------------- libjpeg errors */

typedef struct jg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int warnings;
    char msg[JMSG_LENGTH_MAX];
} jg_err;

static void jg_error_exit(j_common_ptr c)
{
    jg_err *e = (jg_err *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

static void jg_emit(j_common_ptr c, int level)
{
    jg_err *e = (jg_err *)c->err;
    if (level < 0 && e->warnings++ == 0)
        (*c->err->format_message)(c, e->msg);
}

static void jg_err_init(jg_err *e)
{
    memset(e, 0, sizeof *e);
    jpeg_std_error(&e->pub);
    e->pub.error_exit = jg_error_exit;
    e->pub.emit_message = jg_emit;
}

/* ------------------------------------------------------------------------------- encoder */

/* Inverted (Adobe) CMYK of an RGB pixel: K holds the brightest channel, and C, M, Y the channels
 * relative to it, so that R = C * K / 255 (and likewise G, B) up to rounding. */
static void rgb_to_inverted_cmyk(const uint8_t *rgb, uint8_t *cmyk)
{
    unsigned mx = rgb[0] > rgb[1] ? rgb[0] : rgb[1];
    mx = mx > rgb[2] ? mx : rgb[2];
    for (int c = 0; c < 3; c++)
        cmyk[c] = mx ? clamp_u8(255.0 * rgb[c] / mx) : 0;
    cmyk[3] = (uint8_t)mx;
}

/* A long scan script libjpeg accepts without a warning: each coefficient of each component in
 * scans of its own, its first at point transform al (at most 10 for 8-bit data), then one
 * refinement per bit. Returns the number of scans written to s: comps * 64 * (al + 1). */
static int many_scans(jpeg_scan_info *s, int comps, int al)
{
    const int AL = al;
    int n = 0;
    for (int ci = 0; ci < comps; ci++)
        for (int k = 0; k < 64; k++)
            for (int ah = 0; ah <= AL; ah++) {
                s[n] = (jpeg_scan_info){ .comps_in_scan = 1, .component_index = { ci }, .Ss = k, .Se = k,
                                         .Ah = ah == 0 ? 0 : AL - ah + 1, .Al = AL - ah };
                n++;
            }
    return n;
}

int jg_encode(const uint8_t *rgb, int w, int h, const jg_opts *o, uint8_t **out, size_t *size, char *err,
              size_t errlen)
{
    static jpeg_scan_info scans[4 * 64 * 11]; /* read by libjpeg until finish_compress */
    static const int samp[7][2] = { { 1, 1 }, { 2, 1 }, { 2, 2 }, { 1, 2 }, { 4, 2 }, { 2, 4 }, { 1, 4 } };
    struct jpeg_compress_struct c;
    jg_err e;
    jg_err_init(&e);
    memset(&c, 0, sizeof c);
    c.err = &e.pub;
    unsigned char *buf = NULL;
    unsigned long len = 0;
    uint8_t *volatile row = NULL;
    *out = NULL;
    *size = 0;
    if (setjmp(e.jb)) {
        snprintf(err, errlen, "libjpeg compress: %s", e.msg);
        jpeg_destroy_compress(&c);
        free(buf);
        free(row);
        return -1;
    }
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &buf, &len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    int comps = o->color == JG_GRAY ? 1 : o->color >= JG_CMYK ? 4 : 3;
    c.input_components = comps;
    c.in_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 4 ? JCS_CMYK : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, o->quality ? o->quality : 95, TRUE);
    if (o->color == JG_YCCK) {
        jpeg_set_colorspace(&c, JCS_YCCK);
    } else if (o->color == JG_CMYK || o->color == JG_CMYK_RAW) {
        jpeg_set_colorspace(&c, JCS_CMYK);
        if (o->color == JG_CMYK_RAW)
            c.write_Adobe_marker = FALSE;
    } else if (o->color == JG_YCC) {
        c.comp_info[0].h_samp_factor = samp[o->samp][0];
        c.comp_info[0].v_samp_factor = samp[o->samp][1];
        c.comp_info[1].h_samp_factor = c.comp_info[1].v_samp_factor = 1;
        c.comp_info[2].h_samp_factor = c.comp_info[2].v_samp_factor = 1;
    }
    if (o->progressive)
        jpeg_simple_progression(&c);
    if (o->many_scans) {
        c.num_scans = many_scans(scans, comps, o->many_scans);
        c.scan_info = scans;
    }
    c.restart_interval = (unsigned)o->restart_interval;
    c.arith_code = o->arithmetic ? TRUE : FALSE;
    row = malloc((size_t)w * 4);
    if (!row) {
        snprintf(err, errlen, "out of memory");
        jpeg_destroy_compress(&c);
        return -1;
    }
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        const uint8_t *s = rgb + (size_t)c.next_scanline * w * 3;
        for (int x = 0; x < w; x++) {
            if (comps == 1) {
                row[x] = jg_luma(s + 3 * x);
            } else if (comps == 3) {
                memcpy(row + 3 * x, s + 3 * x, 3);
            } else {
                rgb_to_inverted_cmyk(s + 3 * x, row + 4 * x);
                if (o->color == JG_CMYK_RAW)
                    for (int k = 0; k < 4; k++)
                        row[4 * x + k] = (uint8_t)(255 - row[4 * x + k]);
            }
        }
        JSAMPROW rp = row;
        jpeg_write_scanlines(&c, &rp, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    *out = buf;
    *size = len;
    return 0;
}

uint8_t *jg_repeat_last_scan(const uint8_t *jpeg, size_t size, unsigned copies, size_t *out_size)
{
    /* The last SOS: entropy-coded data stuffs every 0xFF, so from the end the first FF DA found
     * is a marker. */
    size_t sos = 0;
    for (size_t i = size - 2; i > 2 && !sos; i--)
        if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xDA)
            sos = i;
    if (!sos || size < 4 || jpeg[size - 2] != 0xFF || jpeg[size - 1] != 0xD9)
        return NULL;
    size_t scan = size - 2 - sos, n = size + (size_t)copies * scan;
    uint8_t *o = malloc(n);
    if (!o)
        return NULL;
    memcpy(o, jpeg, size - 2);
    for (unsigned k = 0; k < copies; k++)
        memcpy(o + size - 2 + (size_t)k * scan, jpeg + sos, scan);
    o[n - 2] = 0xFF;
    o[n - 1] = 0xD9;
    *out_size = n;
    return o;
}

/* ------------------------------------------------------------------------------- decoder */

uint8_t *jg_decode(const uint8_t *jpeg, size_t size, int m, int *w, int *h, char *err, size_t errlen)
{
    struct jpeg_decompress_struct d;
    jg_err e;
    jg_err_init(&e);
    memset(&d, 0, sizeof d);
    d.err = &e.pub;
    uint8_t *volatile pix = NULL, *volatile row = NULL;
    if (setjmp(e.jb)) {
        snprintf(err, errlen, "libjpeg decompress: %s", e.msg);
        jpeg_destroy_decompress(&d);
        free(pix);
        free(row);
        return NULL;
    }
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, jpeg, (unsigned long)size);
    jpeg_read_header(&d, TRUE);
    int cmyk = d.jpeg_color_space == JCS_CMYK || d.jpeg_color_space == JCS_YCCK;
    int gray = d.jpeg_color_space == JCS_GRAYSCALE;
    d.out_color_space = cmyk ? JCS_CMYK : gray ? JCS_GRAYSCALE : JCS_RGB;
    d.scale_num = (unsigned)m;
    d.scale_denom = 8;
    d.dct_method = JDCT_ISLOW;
    jpeg_start_decompress(&d);
    int ow = (int)d.output_width, oh = (int)d.output_height, nc = d.output_components;
    pix = malloc((size_t)ow * oh * 3);
    row = malloc((size_t)ow * nc);
    if (!pix || !row) {
        snprintf(err, errlen, "out of memory");
        jpeg_destroy_decompress(&d);
        free(pix);
        free(row);
        return NULL;
    }
    while (d.output_scanline < d.output_height) {
        int y = (int)d.output_scanline;
        JSAMPROW rp = row;
        jpeg_read_scanlines(&d, &rp, 1);
        uint8_t *o = pix + (size_t)y * ow * 3;
        for (int x = 0; x < ow; x++) {
            if (nc == 1) {
                o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = row[x];
            } else if (nc == 3) {
                memcpy(o + 3 * x, row + 3 * x, 3);
            } else {
                unsigned v[4];
                for (int k = 0; k < 4; k++)
                    v[k] = d.saw_Adobe_marker ? row[4 * x + k] : 255u - row[4 * x + k];
                for (int k = 0; k < 3; k++)
                    o[3 * x + k] = clamp_u8(v[k] * (double)v[3] / 255.0);
            }
        }
    }
    jpeg_finish_decompress(&d);
    int warned = e.warnings;
    jpeg_destroy_decompress(&d);
    free(row);
    if (warned) {
        snprintf(err, errlen, "libjpeg warning: %s", e.msg);
        free(pix);
        return NULL;
    }
    *w = ow;
    *h = oh;
    return pix;
}

int jg_dims(const uint8_t *jpeg, size_t size, int *w, int *h)
{
    struct jpeg_decompress_struct d;
    jg_err e;
    jg_err_init(&e);
    memset(&d, 0, sizeof d);
    d.err = &e.pub;
    *w = *h = 0;
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&d);
        return -1;
    }
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, jpeg, (unsigned long)size);
    jpeg_read_header(&d, TRUE);
    *w = (int)d.image_width;
    *h = (int)d.image_height;
    jpeg_destroy_decompress(&d);
    return 0;
}

int jg_write_dataset(const char *dir, const char *block_size, int64_t n,
                     int (*make)(int64_t i, void *arg, uint8_t **bytes, size_t *size), void *arg, char *err,
                     size_t errlen)
{
    return jg_write_dataset_meta(dir, block_size, n, make, arg, NULL, NULL, err, errlen);
}

int jg_write_dataset_meta(const char *dir, const char *block_size, int64_t n,
                          int (*make)(int64_t i, void *arg, uint8_t **bytes, size_t *size), void *arg,
                          const char *meta_key, const char *meta_value, char *err, size_t errlen)
{
    sp_schema *s = sp_schema_create();
    sp_params *p = sp_params_create();
    sp_writer *w = NULL;
    int rc = s && p ? 0 : SP_ENOMEM;
    if (!rc)
        rc = sp_schema_add(s, "image", SP_FIELD_IMAGE, SP_DTYPE_U8, 0, NULL);
    if (!rc)
        rc = sp_schema_add(s, "label", SP_FIELD_LABEL, SP_DTYPE_I64, 0, NULL);
    if (!rc)
        rc = sp_params_set_str(p, "block_size", block_size);
    if (!rc)
        rc = sp_params_set_str(p, "validate_images", "0");
    if (!rc)
        rc = sp_writer_open(dir, s, p, &w);
    if (!rc && meta_key)
        rc = sp_writer_set_meta(w, meta_key, meta_value, strlen(meta_value));
    snprintf(err, errlen, "%s", "");
    for (int64_t i = 0; !rc && i < n; i++) {
        uint8_t *bytes = NULL;
        size_t size = 0;
        if ((rc = make(i, arg, &bytes, &size)) != 0) {
            snprintf(err, errlen, "sample %lld could not be made", (long long)i);
            break;
        }
        sp_value v[2] = { { bytes, size }, { &i, sizeof i } };
        rc = sp_writer_add(w, v, 2);
        free(bytes);
    }
    if (!rc)
        rc = sp_writer_finish(w);
    if (rc && !err[0])
        snprintf(err, errlen, "%s", sp_last_error());
    sp_writer_destroy(w);
    sp_params_destroy(p);
    sp_schema_destroy(s);
    return rc;
}

int jg_epoch_images(sp_loader *l, int side, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    for (;;) {
        sp_batch *b;
        int rc = sp_loader_next(l, &b, 60000);
        if (rc)
            return rc;
        const DLTensor *t = sp_batch_tensor(b, (size_t)sp_batch_find(b, "image"));
        size_t n = (size_t)sp_batch_size(b) * (size_t)side * (size_t)side * 3;
        uint8_t *grown = realloc(*out, *len + n);
        if (!grown) {
            sp_loader_release(l, b);
            return -1;
        }
        *out = grown;
        memcpy(*out + *len, t->data, n);
        *len += n;
        if ((rc = sp_loader_release(l, b)))
            return rc;
    }
}
