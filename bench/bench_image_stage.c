/* bench_image_stage.c - measurements behind two choices of the image stage (docs/performance.md):
 *
 *  1. DCT scaling: time to decode whole JPEGs at each libjpeg scale m/8, m = 1..8. The loader
 *     only uses the scales that are faster than every larger one (lib/image/img_geom.c).
 *  2. Resizing: our resampler (lib/image/img_resize.c) against libswscale and libyuv from
 *     Debian, on the random-resized crops the train transform takes, to 224x224. Speed in
 *     crops/s and quality as PSNR against two double-precision references computed here: the
 *     antialiased triangle filter (what torchvision's resize with antialias computes) and the
 *     exact area average.
 *
 * usage: bench_image_stage DIR [COUNT]   (DIR: JPEG files, searched one level of folders deep)
 */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jpeglib.h>

#include "img.h"

#ifdef HAVE_SWSCALE
#include <libswscale/swscale.h>
#endif
#ifdef HAVE_LIBYUV
#include <libyuv/scale.h>
#include <libyuv/scale_rgb.h>
#endif

#define OUT 224

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct file {
    unsigned char *data;
    size_t size;
} file;

static int load_dir(const char *dir, file *files, int cap, int n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && n < cap && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".jpg") == 0) {
            FILE *f = fopen(path, "rb");
            if (!f)
                continue;
            fseek(f, 0, SEEK_END);
            long sz = ftell(f);
            fseek(f, 0, SEEK_SET);
            files[n].data = malloc((size_t)sz);
            files[n].size = fread(files[n].data, 1, (size_t)sz, f);
            fclose(f);
            n++;
        } else if (e->d_type == DT_DIR) {
            n = load_dir(path, files, cap, n);
        }
    }
    if (d)
        closedir(d);
    return n;
}

typedef struct jerr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
} jerr;

static void on_exit_err(j_common_ptr c) { longjmp(((jerr *)c->err)->jb, 1); }

/* Whole-image decode at m/8 to RGB (or RGBX when rgbx); returns the pixels (caller frees) or NULL. */
static unsigned char *decode(const file *f, int m, int rgbx, int *w, int *h)
{
    struct jpeg_decompress_struct d;
    jerr e;
    d.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = on_exit_err;
    unsigned char *volatile px = NULL;
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&d);
        free(px);
        return NULL;
    }
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, f->data, (unsigned long)f->size);
    jpeg_read_header(&d, TRUE);
    d.scale_num = (unsigned)m;
    d.scale_denom = 8;
    d.out_color_space = rgbx ? JCS_EXT_RGBX : JCS_EXT_RGB;
    jpeg_start_decompress(&d);
    *w = (int)d.output_width;
    *h = (int)d.output_height;
    size_t bpp = rgbx ? 4 : 3;
    px = malloc((size_t)*w * *h * bpp);
    while (d.output_scanline < d.output_height) {
        JSAMPROW row = px + (size_t)d.output_scanline * *w * bpp;
        jpeg_read_scanlines(&d, &row, 1);
    }
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    return px;
}

static void bench_scales(const file *files, int n)
{
    printf("DCT scaling: whole-image decode of %d JPEGs at scale m/8 (one thread)\n", n);
    printf("  %-5s %12s %12s %10s\n", "m/8", "ms/image", "Mpix out/s", "vs 8/8");
    double base = 0;
    for (int m = 8; m >= 1; m--) {
        double t0 = now();
        double px = 0;
        int reps = 0;
        do {
            for (int i = 0; i < n; i++) {
                int w, h;
                unsigned char *p = decode(&files[i], m, 1, &w, &h);
                px += (double)w * h;
                free(p);
            }
            reps++;
        } while (now() - t0 < 1.0);
        double dt = now() - t0, per = dt / (reps * (double)n) * 1e3;
        if (m == 8)
            base = per;
        printf("  %d/8   %12.3f %12.1f %9.2fx\n", m, per, px / dt / 1e6, base / per);
    }
}

/* Decode at m/8 and resize the whole image to OUT x OUT with our resampler: what a scale costs
 * end to end, for images whose shorter side still covers OUT at m = 4 (so every m is eligible). */
static void bench_scales_resized(const file *files, int n)
{
    void *tmp = malloc(img_resize_tmp_bytes(OUT, 70000));
    unsigned char *dst = malloc(OUT * OUT * 3);
    printf("\nDCT scaling then resize to %dx%d (whole image, images whose shorter side >= %d)\n", OUT, OUT, 2 * OUT);
    printf("  %-5s %12s %10s\n", "m/8", "ms/image", "vs 8/8");
    int *eligible = malloc(sizeof(int) * (size_t)n), ne = 0;
    for (int i = 0; i < n; i++) {
        int w, h;
        unsigned char *p = decode(&files[i], 8, 1, &w, &h);
        free(p);
        if (p && (w < h ? w : h) >= 2 * OUT)
            eligible[ne++] = i;
    }
    if (ne == 0)
        printf("  (no image has a shorter side of %d or more)\n", 2 * OUT);
    double base = 0;
    for (int m = 8; m >= 4 && ne > 0; m--) {
        double t0 = now();
        long k = 0;
        do {
            for (int e = 0; e < ne; e++, k++) {
                int w, h;
                unsigned char *p = decode(&files[eligible[e]], m, 1, &w, &h);
                img_box b = { 0, 0, w, h, false };
                img_resize(p, (uint32_t)w, (uint32_t)h, (size_t)w * 4, &b, OUT, dst, tmp);
                free(p);
            }
        } while (now() - t0 < 1.0);
        double dt = now() - t0, per = dt / k * 1e3;
        if (m == 8)
            base = per;
        printf("  %d/8   %12.3f %9.2fx\n", m, per, base / per);
    }
    printf("  (%d images)\n", ne);
    free(eligible);
    free(tmp);
    free(dst);
}

/* ---------------------------------------------------------------- references */

static double tri(double x)
{
    x = fabs(x);
    return x < 1 ? 1 - x : 0;
}

/* Separable double-precision resample of src box (integer) to OUT x OUT: kind 0 triangle with
 * support widened by the shrink factor, kind 1 exact area average (box filter). */
static void reference(const unsigned char *src, int stride, int bw, int bh, int kind, double *out)
{
    double *tmp = malloc(sizeof(double) * (size_t)bh * OUT * 3);
    for (int pass = 0; pass < 2; pass++) {
        int in = pass ? bh : bw;
        double scale = (double)in / OUT, fs = scale > 1 ? scale : 1;
        for (int o = 0; o < OUT; o++) {
            double c = (o + 0.5) * scale, lo = o * scale, hi = (o + 1) * scale;
            int j0 = (int)floor(c - fs - 1), j1 = (int)ceil(c + fs + 1);
            j0 = j0 < 0 ? 0 : j0;
            j1 = j1 > in ? in : j1;
            double wsum = 0, wts[4096];
            int nw = 0;
            for (int j = j0; j < j1 && nw < 4096; j++, nw++) {
                double w;
                if (kind == 0) {
                    w = tri((j + 0.5 - c) / fs);
                } else { /* overlap of [j, j+1) with [lo, hi), or bilinear when growing */
                    if (scale < 1)
                        w = tri(j + 0.5 - c);
                    else {
                        double a = j > lo ? j : lo, b = j + 1 < hi ? j + 1 : hi;
                        w = b > a ? b - a : 0;
                    }
                }
                wts[nw] = w;
                wsum += w;
            }
            if (pass == 0) {
                for (int y = 0; y < bh; y++)
                    for (int ch = 0; ch < 3; ch++) {
                        double acc = 0;
                        for (int k = 0; k < nw; k++)
                            acc += wts[k] * src[(size_t)y * stride + 3 * (j0 + k) + ch];
                        tmp[((size_t)y * OUT + o) * 3 + ch] = acc / wsum;
                    }
            } else {
                for (int x = 0; x < OUT; x++)
                    for (int ch = 0; ch < 3; ch++) {
                        double acc = 0;
                        for (int k = 0; k < nw; k++)
                            acc += wts[k] * tmp[((size_t)(j0 + k) * OUT + x) * 3 + ch];
                        out[((size_t)o * OUT + x) * 3 + ch] = acc / wsum;
                    }
            }
        }
    }
    free(tmp);
}

static double psnr(const unsigned char *a, const double *ref)
{
    double se = 0;
    for (size_t i = 0; i < (size_t)OUT * OUT * 3; i++) {
        double d = a[i] - ref[i];
        se += d * d;
    }
    double mse = se / ((double)OUT * OUT * 3);
    return mse > 0 ? 10 * log10(255.0 * 255.0 / mse) : 99;
}

/* ---------------------------------------------------------------- resizers */

typedef struct crop {
    unsigned char *px;  /* the decoded image, RGB */
    unsigned char *px4; /* the same, RGBX (our resampler's input, as the loader decodes) */
    int w, h, x, y, cw, ch;
} crop;

enum { R_OURS, R_SWS, R_YUV, R_COUNT };
static const char *const names[R_COUNT] = { "shardpack (own)", "libswscale area", "libyuv box" };

static void *g_tmp;
#ifdef HAVE_SWSCALE
static struct SwsContext *g_sws;
#endif

/* Returns 0, or -1 when the method is not built in. */
static int run(int method, const crop *c, unsigned char *dst)
{
    /* The crop's first pixel in the RGB image, for the peers. */
    const unsigned char *src = c->px + ((size_t)c->y * c->w + c->x) * 3;
    int stride = c->w * 3;
    (void)src, (void)stride; /* unused when neither peer is built in */
    switch (method) {
    case R_OURS: {
        img_box b = { 0, 0, c->cw, c->ch, false };
        img_resize(c->px4 + ((size_t)c->y * c->w + c->x) * 4, (uint32_t)c->cw, (uint32_t)c->ch, (size_t)c->w * 4, &b,
                   OUT, dst, g_tmp);
        return 0;
    }
    case R_SWS:
#ifdef HAVE_SWSCALE
        g_sws = sws_getCachedContext(g_sws, c->cw, c->ch, AV_PIX_FMT_RGB24, OUT, OUT, AV_PIX_FMT_RGB24,
                                     c->cw >= OUT ? SWS_AREA : SWS_BILINEAR, NULL, NULL, NULL);
        {
            const uint8_t *const s[1] = { src };
            uint8_t *const d[1] = { dst };
            const int ss[1] = { stride }, ds[1] = { OUT * 3 };
            sws_scale(g_sws, s, ss, 0, c->ch, d, ds);
        }
        return 0;
#else
        return -1;
#endif
    case R_YUV:
#ifdef HAVE_LIBYUV
        RGBScale(src, stride, c->cw, c->ch, dst, OUT * 3, OUT, OUT, kFilterBox);
        return 0;
#else
        return -1;
#endif
    }
    return -1;
}

static void bench_resize(const file *files, int n)
{
    crop *crops = calloc((size_t)n, sizeof *crops);
    int nc = 0;
    srand(1);
    /* Train-transform crops of each image, decoded at the scale the loader would pick. */
    sp_params *p = sp_params_create();
    sp_image_transform *t;
    if (sp_image_transform_create(p, &t) != 0)
        return;
    for (int i = 0; i < n; i++) {
        int w, h;
        unsigned char *full = decode(&files[i], 8, 0, &w, &h);
        if (!full)
            continue;
        sp_image_crop cr = { .struct_size = sizeof cr };
        sp_image_transform_crop(t, w, h, 0, (uint64_t)i, &cr);
        free(full);
        unsigned char *px = decode(&files[i], cr.scale, 0, &w, &h);
        double f = cr.scale / 8.0;
        crop *c = &crops[nc++];
        c->px = px;
        c->px4 = decode(&files[i], cr.scale, 1, &w, &h);
        c->w = w;
        c->h = h;
        c->x = (int)floor(cr.x0 * f);
        c->y = (int)floor(cr.y0 * f);
        c->cw = (int)floor((cr.x1 - cr.x0) * f);
        c->ch = (int)floor((cr.y1 - cr.y0) * f);
        c->cw = c->cw < 1 ? 1 : c->x + c->cw > w ? w - c->x : c->cw;
        c->ch = c->ch < 1 ? 1 : c->y + c->ch > h ? h - c->y : c->ch;
    }
    sp_image_transform_destroy(t);
    sp_params_destroy(p);
    g_tmp = malloc(img_resize_tmp_bytes(OUT, 70000));
    unsigned char *dst = malloc(OUT * OUT * 3);
    double *ref_t = malloc(sizeof(double) * OUT * OUT * 3), *ref_a = malloc(sizeof(double) * OUT * OUT * 3);
    double q_t[R_COUNT] = { 0 }, q_a[R_COUNT] = { 0 };
    int qn = nc < 200 ? nc : 200;
    for (int i = 0; i < qn; i++) {
        crop *c = &crops[i];
        const unsigned char *src = c->px + ((size_t)c->y * c->w + c->x) * 3;
        reference(src, c->w * 3, c->cw, c->ch, 0, ref_t);
        reference(src, c->w * 3, c->cw, c->ch, 1, ref_a);
        for (int m = 0; m < R_COUNT; m++)
            if (run(m, c, dst) == 0) {
                q_t[m] += psnr(dst, ref_t) / qn;
                q_a[m] += psnr(dst, ref_a) / qn;
            }
    }
    printf("\nResize of %d train crops (decoded at the loader's DCT scale) to %dx%d RGB, one thread\n", nc, OUT, OUT);
    printf("  %-18s %12s %12s %18s %16s\n", "method", "crops/s", "us/crop", "PSNR vs triangle", "PSNR vs area");
    for (int m = 0; m < R_COUNT; m++) {
        if (run(m, &crops[0], dst) != 0) {
            printf("  %-18s (not built: its library was not found)\n", names[m]);
            continue;
        }
        double t0 = now();
        long k = 0;
        do {
            for (int i = 0; i < nc; i++, k++)
                run(m, &crops[i], dst);
        } while (now() - t0 < 1.0);
        double dt = now() - t0;
        printf("  %-18s %12.0f %12.1f %15.2f dB %13.2f dB\n", names[m], k / dt, dt / k * 1e6, q_t[m], q_a[m]);
    }
    for (int i = 0; i < nc; i++)
        free(crops[i].px), free(crops[i].px4);
    free(crops);
    free(dst);
    free(ref_t);
    free(ref_a);
    free(g_tmp);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [COUNT]\n", argv[0]);
        return 2;
    }
    int cap = argc > 2 ? atoi(argv[2]) : 200;
    if (cap < 1)
        cap = 200;
    file *files = calloc((size_t)cap, sizeof *files);
    int n = load_dir(argv[1], files, cap, 0);
    if (n == 0) {
        fprintf(stderr, "%s: no .jpg files\n", argv[1]);
        return 1;
    }
    bench_scales(files, n);
    bench_scales_resized(files, n);
    bench_resize(files, n);
    for (int i = 0; i < n; i++)
        free(files[i].data);
    free(files);
    return 0;
}
