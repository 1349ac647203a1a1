/*
 * sp-gen-imagefolder: writes a synthetic, ImageNet-like ImageFolder tree (DIR/class_XX/img_NNNNNN.jpg).
 *
 * Each image is a pure function of (seed, index, classes): it draws from its own PRNG stream, so the
 * bytes written do not depend on --threads or on thread timing. The pictures are built to cost what
 * photos cost -- smooth gradients, multi-octave value noise, textured shapes with anti-aliased edges,
 * and grain -- so JPEG sizes and decode times land near real ImageNet files, not near flat colour.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "gen_args.h"
#include "gen_rng.h"

#define PROG "sp-gen-imagefolder"

enum { EXIT_OK = 0, EXIT_ERR = 1, EXIT_USAGE = 2 };

#define MAX_COUNT 100000000u /* keeps names readable and runs bounded */
#define MAX_CLASSES 100000u
#define MAX_THREADS 256u
#define MAX_OCTAVES 8
#define MAX_SHAPES 64 /* clutter (at most 58) plus big shapes (at most 6) */

/* Stream ids above this are class streams, below are image streams, so the two never collide. */
#define CLASS_STREAM_BASE (UINT64_C(1) << 62)

typedef struct {
    const char *out;
    uint64_t seed;
    uint32_t count;
    uint32_t classes;
    uint32_t threads;
} gen_opts;

typedef struct {
    float r, g, b;
} rgbf;

/* Everything about one image that is decided before a pixel is drawn. */
typedef struct {
    int width, height;
    int quality;
    int subsamp; /* TJSAMP_* */
    int progressive;
    uint32_t klass;
} img_spec;

/* Per-class tendencies: what makes class_03 look unlike class_07 to a model. */
typedef struct {
    float hue;       /* dominant hue, 0..1 */
    float hue2;      /* offset of the second palette hue */
    float sat;       /* typical saturation */
    float detail;    /* fBm persistence: how much fine texture survives */
    float tex_freq;  /* stripe/checker frequency of shapes, cycles per pixel */
    int rect_bias;   /* out of 100: how often shapes are rectangles rather than ellipses */
    float ridge;     /* 0..1: how much of the detail noise is folded into creases (sharp ridges) */
    int clutter;     /* typical number of small hard-edged objects */
    float tex_amp;   /* strength of fine surface texture */
    float rough;     /* pixel-scale roughness of busy regions, 8-bit levels */
    float tex_period; /* coarsest texture octave, pixels */
    float tex_gain;  /* texture fBm persistence: near 1 keeps energy in the finest octaves */
} class_style;

/* One octave of value noise: a random lattice, smoothly interpolated. */
typedef struct {
    float *grid;
    int *xi;     /* per column: lattice cell left of the pixel */
    float *xf;   /* per column: smoothed fraction inside the cell */
    int gw, gh;
    float inv_period;
    float offy;
    float amp;
} noise_layer;

/* A sum of octaves (fractional Brownian motion); values stay roughly within [-1, 1]. */
typedef struct {
    noise_layer layer[MAX_OCTAVES];
    int n;
    int max_gw;
} noise_field;

enum { SHAPE_ELLIPSE, SHAPE_RECT };
enum { TEX_NOISE, TEX_STRIPES, TEX_CHECK };

typedef struct {
    int kind, tex;
    float cx, cy;           /* centre */
    float ca, sa;           /* rotation */
    float inv_a, inv_b;     /* reciprocals of the semi-axes */
    float edge_gain;        /* min semi-axis / edge softness in pixels: sharpness of the rim */
    float tex_amp, tex_freq;
    int x0, x1, y0, y1;     /* bounding box clipped to the image, half-open */
    rgbf col;
} shape;

typedef struct {
    rgbf a, b;              /* palette end points mixed by gradient and low-frequency noise */
    float grad_dx, grad_dy, grad_c;
    float mix_gain;
    float lum_amp;
    float tex_amp;          /* strength of fine texture where the scene is busy */
    float busy_c, busy_k;   /* busy = clamp(busy_c + busy_k * low-frequency noise) */
    rgbf tex_rgb;           /* per-channel texture gain */
    float vignette;
    float grain;            /* sensor-like noise everywhere, in 8-bit levels */
    float rough;            /* extra pixel-scale noise in busy regions, in 8-bit levels */
    int nshapes;
    shape shapes[MAX_SHAPES];
} scene;

/* Per-thread state; results are collected by main after join, which keeps all printing single-threaded. */
typedef struct {
    const gen_opts *opts;
    atomic_uint_fast32_t *next;
    atomic_int *failed;
    int width_class, width_index;
    uint64_t bytes;
    uint32_t images;
    int err_errno;             /* errno of the failing call, 0 if msg alone describes it */
    char err_path[PATH_MAX];
    char err_msg[256];
} worker;

static float clampf(float v, float lo, float hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* floorf without the libm call it becomes in strict C11 on baseline x86-64; |v| stays far below 2^31 here. */
static float floor_fast(float v)
{
    const float t = (float)(int)v;
    return t > v ? t - 1.0f : t;
}

static float smoothstepf(float t)
{
    return t * t * (3.0f - 2.0f * t);
}

static float rngf(gen_rng *r, float lo, float hi)
{
    return (float)gen_range(r, lo, hi);
}

static rgbf hsv_to_rgb(float h, float s, float v)
{
    h = (h - floorf(h)) * 6.0f;
    const int sector = (int)h % 6;
    const float f = h - floorf(h);
    const float p = v * (1.0f - s), q = v * (1.0f - s * f), t = v * (1.0f - s * (1.0f - f));
    switch (sector) {
    case 0: return (rgbf){ v, t, p };
    case 1: return (rgbf){ q, v, p };
    case 2: return (rgbf){ p, v, t };
    case 3: return (rgbf){ p, q, v };
    case 4: return (rgbf){ t, p, v };
    default: return (rgbf){ v, p, q };
    }
}

/* ---------------------------------------------------------------- image parameters */

/* Sizes follow ImageNet's shape: most near 500x375, some portrait or square, a few thumbnails and large. */
static void pick_size(gen_rng *r, int *w, int *h)
{
    static const float aspects[] = { 4.0f / 3, 4.0f / 3, 4.0f / 3, 4.0f / 3, 3.0f / 2, 3.0f / 2, 16.0f / 9,
                                     5.0f / 4, 1.0f, 1.0f };
    const double u = gen_uniform(r);
    if (u < 0.03) {
        static const int small[] = { 64, 80, 96, 120, 128, 160 };
        *w = small[gen_below(r, 6)];
        *h = *w * 3 / 4;
    } else if (u < 0.07) {
        *w = 900 + (int)gen_below(r, 301);
        *h = (int)((float)*w * rngf(r, 0.66f, 0.85f));
    } else {
        const float aspect = aspects[gen_below(r, sizeof aspects / sizeof aspects[0])];
        const float longer = clampf(500.0f * expf(0.2f * (float)gen_normal(r)), 280.0f, 800.0f);
        *w = (int)longer;
        *h = (int)clampf(longer / aspect, 200.0f, 600.0f);
    }
    if (gen_uniform(r) < 0.18) { /* portrait: same shapes, turned */
        const int t = *w;
        *w = *h;
        *h = t;
    }
}

static void pick_spec(gen_rng *r, uint64_t index, uint32_t classes, img_spec *s)
{
    s->klass = (uint32_t)(index % classes);
    pick_size(r, &s->width, &s->height);
    s->quality = (int)lrint(clampf(90.0f + 2.2f * (float)gen_normal(r), 85.0f, 95.0f));
    const double u = gen_uniform(r);
    s->subsamp = u < 0.70 ? TJSAMP_420 : u < 0.82 ? TJSAMP_444 : u < 0.92 ? TJSAMP_422 : TJSAMP_GRAY;
    s->progressive = gen_uniform(r) < 0.12;
}

static void pick_class_style(uint64_t seed, uint32_t klass, class_style *cs)
{
    gen_rng r;
    gen_rng_seed(&r, seed, CLASS_STREAM_BASE + klass);
    cs->hue = (float)gen_uniform(&r);
    cs->hue2 = gen_uniform(&r) < 0.6 ? rngf(&r, 0.05f, 0.18f) : rngf(&r, 0.4f, 0.6f);
    cs->sat = rngf(&r, 0.25f, 0.75f);
    cs->detail = rngf(&r, 0.68f, 0.8f);
    cs->ridge = rngf(&r, 0.0f, 1.0f);
    cs->clutter = (int)gen_below(&r, 40);
    cs->tex_amp = rngf(&r, 0.4f, 0.8f);
    cs->rough = rngf(&r, 6.0f, 20.0f);
    cs->tex_period = rngf(&r, 3.0f, 12.0f);
    cs->tex_gain = rngf(&r, 0.8f, 0.95f);
    cs->tex_freq = rngf(&r, 0.03f, 0.25f);
    cs->rect_bias = (int)gen_below(&r, 101);
}

/* ---------------------------------------------------------------- value noise */

static void field_free(noise_field *f)
{
    for (int i = 0; i < f->n; i++) {
        free(f->layer[i].grid);
        free(f->layer[i].xi);
        free(f->layer[i].xf);
    }
    f->n = 0;
}

static int layer_init(noise_layer *l, gen_rng *r, int w, int h, float period, float amp)
{
    /* A random phase per octave keeps the lattice lines of different octaves from lining up. */
    const float offx = rngf(r, 0.0f, 8.0f);
    l->offy = rngf(r, 0.0f, 8.0f);
    l->inv_period = 1.0f / period;
    l->amp = amp;
    l->gw = (int)((float)w * l->inv_period + offx) + 2;
    l->gh = (int)((float)h * l->inv_period + l->offy) + 2;
    l->grid = malloc(sizeof(float) * (size_t)l->gw * (size_t)l->gh);
    l->xi = malloc(sizeof(int) * (size_t)w);
    l->xf = malloc(sizeof(float) * (size_t)w);
    if (!l->grid || !l->xi || !l->xf)
        return -1;
    for (size_t i = 0; i < (size_t)l->gw * (size_t)l->gh; i++)
        l->grid[i] = (float)(gen_next(r) >> 40) * 0x1.0p-23f - 1.0f;
    for (int x = 0; x < w; x++) {
        const float fx = (float)x * l->inv_period + offx;
        l->xi[x] = (int)fx;
        l->xf[x] = smoothstepf(fx - (float)l->xi[x]);
    }
    return 0;
}

/* Octaves from base_period down to ~1.5 px, amplitude shrinking by gain each time (1/f-like spectrum). */
static int field_init(noise_field *f, gen_rng *r, int w, int h, float base_period, float gain, int max_oct)
{
    float amp = 1.0f, total = 0.0f, period = base_period;
    f->n = 0;
    f->max_gw = 0;
    while (f->n < max_oct && (f->n == 0 || period >= 1.5f)) {
        noise_layer *l = &f->layer[f->n++];
        memset(l, 0, sizeof *l);
        if (layer_init(l, r, w, h, period, amp) != 0)
            return -1;
        if (l->gw > f->max_gw)
            f->max_gw = l->gw;
        total += amp;
        amp *= gain;
        period *= 0.5f;
    }
    for (int i = 0; i < f->n; i++)
        f->layer[i].amp /= total;
    return 0;
}

/* One row of the field; tmp holds max_gw floats (the lattice row interpolated to this y). */
static void field_row(const noise_field *f, int y, int w, float *out, float *tmp)
{
    memset(out, 0, sizeof(float) * (size_t)w);
    for (int i = 0; i < f->n; i++) {
        const noise_layer *l = &f->layer[i];
        const float fy = (float)y * l->inv_period + l->offy;
        const int iy = (int)fy;
        const float ty = smoothstepf(fy - (float)iy);
        const float *g0 = l->grid + (size_t)iy * (size_t)l->gw;
        const float *g1 = g0 + l->gw;
        for (int k = 0; k < l->gw; k++)
            tmp[k] = l->amp * (g0[k] + (g1[k] - g0[k]) * ty);
        for (int x = 0; x < w; x++) {
            const float *c = tmp + l->xi[x];
            out[x] += c[0] + (c[1] - c[0]) * l->xf[x];
        }
    }
}

/* ---------------------------------------------------------------- scene */

static rgbf palette_colour(gen_rng *r, const class_style *cs, float hue_shift)
{
    const float h = cs->hue + hue_shift + rngf(r, -0.05f, 0.05f);
    const float s = clampf(cs->sat + rngf(r, -0.2f, 0.2f), 0.05f, 0.95f);
    const float v = rngf(r, 0.3f, 0.9f);
    return hsv_to_rgb(h, s, v);
}

/* size_lo/size_hi: semi-axis range as a fraction of the shorter image side. */
static void pick_shape(gen_rng *r, const class_style *cs, int w, int h, float size_lo, float size_hi, shape *sh)
{
    const float scale = (float)(w < h ? w : h);
    const float a = clampf(scale * rngf(r, size_lo, size_hi), 1.5f, scale);
    const float b = a * rngf(r, 0.3f, 1.0f);
    const float angle = rngf(r, 0.0f, 3.14159265f);
    const float soft = gen_uniform(r) < 0.6 ? rngf(r, 0.6f, 1.5f) : rngf(r, 2.0f, 12.0f);
    sh->kind = (int)gen_below(r, 100) < cs->rect_bias ? SHAPE_RECT : SHAPE_ELLIPSE;
    sh->tex = (int)gen_below(r, 3);
    sh->cx = rngf(r, -0.1f, 1.1f) * (float)w;
    sh->cy = rngf(r, -0.1f, 1.1f) * (float)h;
    sh->ca = cosf(angle);
    sh->sa = sinf(angle);
    sh->inv_a = 1.0f / a;
    sh->inv_b = 1.0f / b;
    sh->edge_gain = b / soft;
    sh->tex_amp = rngf(r, 0.1f, 0.45f);
    sh->tex_freq = cs->tex_freq * rngf(r, 0.6f, 1.6f);
    sh->col = palette_colour(r, cs, gen_uniform(r) < 0.5 ? 0.0f : cs->hue2 + 0.5f * (float)gen_uniform(r));
    /* a bounds the shape in every direction (b <= a; a rectangle's corner reaches a*sqrt(2)) */
    const float reach = a * 1.42f + soft;
    sh->x0 = (int)clampf(sh->cx - reach, 0.0f, (float)w);
    sh->x1 = (int)clampf(sh->cx + reach + 1.0f, 0.0f, (float)w);
    sh->y0 = (int)clampf(sh->cy - reach, 0.0f, (float)h);
    sh->y1 = (int)clampf(sh->cy + reach + 1.0f, 0.0f, (float)h);
}

static void pick_scene(gen_rng *r, const class_style *cs, int w, int h, scene *sc)
{
    sc->a = palette_colour(r, cs, 0.0f);
    sc->b = palette_colour(r, cs, cs->hue2);
    const float angle = rngf(r, 0.0f, 6.2831853f);
    const float span = (float)(w > h ? w : h);
    const float strength = rngf(r, 0.2f, 1.0f);
    sc->grad_dx = cosf(angle) * strength / span;
    sc->grad_dy = sinf(angle) * strength / span;
    sc->grad_c = -0.5f * (sc->grad_dx * (float)w + sc->grad_dy * (float)h);
    sc->mix_gain = rngf(r, 1.0f, 2.5f);
    sc->lum_amp = rngf(r, 0.35f, 0.7f);
    sc->tex_amp = cs->tex_amp * rngf(r, 0.7f, 1.3f);
    sc->busy_c = rngf(r, 0.8f, 1.4f);
    sc->busy_k = (gen_uniform(r) < 0.5 ? -1.0f : 1.0f) * rngf(r, 1.0f, 3.0f);
    sc->tex_rgb = (rgbf){ rngf(r, 0.6f, 1.4f), rngf(r, 0.6f, 1.4f), rngf(r, 0.6f, 1.4f) };
    sc->vignette = rngf(r, 0.0f, 0.5f);
    sc->grain = rngf(r, 3.0f, 8.0f);
    sc->rough = cs->rough * rngf(r, 0.7f, 1.3f);
    /* Small clutter first (it sits behind), then a few large foreground objects. */
    const int clutter = cs->clutter / 2 + (int)gen_below(r, (uint32_t)cs->clutter + 1);
    const int big = 2 + (int)gen_below(r, 5);
    sc->nshapes = 0;
    for (int i = 0; i < clutter && sc->nshapes < MAX_SHAPES; i++)
        pick_shape(r, cs, w, h, 0.01f, 0.08f, &sc->shapes[sc->nshapes++]);
    for (int i = 0; i < big && sc->nshapes < MAX_SHAPES; i++)
        pick_shape(r, cs, w, h, 0.05f, 0.4f, &sc->shapes[sc->nshapes++]);
}

/* ---------------------------------------------------------------- rendering */

/* Coverage of one pixel by a shape, 0..1, with an anti-aliased rim whose width the shape chose. */
static float shape_alpha(const shape *sh, float dx, float dy, float *u_out, float *v_out)
{
    const float u = (dx * sh->ca + dy * sh->sa) * sh->inv_a;
    const float v = (-dx * sh->sa + dy * sh->ca) * sh->inv_b;
    float d;
    if (sh->kind == SHAPE_ELLIPSE)
        d = sqrtf(u * u + v * v);
    else
        d = fabsf(u) > fabsf(v) ? fabsf(u) : fabsf(v); /* not fmaxf: in strict C11 that is a libm call */
    *u_out = u;
    *v_out = v;
    return clampf(0.5f + (1.0f - d) * sh->edge_gain, 0.0f, 1.0f);
}

static float shape_texture(const shape *sh, float dx, float dy, float lum)
{
    const float pu = (dx * sh->ca + dy * sh->sa) * sh->tex_freq;
    const float pv = (-dx * sh->sa + dy * sh->ca) * sh->tex_freq;
    switch (sh->tex) {
    case TEX_STRIPES: /* triangle wave: stripes without a sinf per pixel */
        return 2.0f * fabsf(pu - floor_fast(pu) - 0.5f) - 0.5f;
    case TEX_CHECK:
        return (((int)floor_fast(pu) + (int)floor_fast(pv)) & 1) ? 0.5f : -0.5f;
    default:
        return lum;
    }
}

/* The rows of every field and colour channel for the image row being drawn. */
typedef struct {
    float *mix;  /* low-frequency noise: palette mix and where texture is busy */
    float *lum;  /* mid-frequency noise: illumination */
    float *tex;  /* high-frequency noise: surface texture */
    float *busy; /* 0..1: how textured this pixel's region is */
    float *rr, *gg, *bb;
} row_set;

static void draw_shape_row(const shape *sh, float tex_amp, int y, const row_set *rs)
{
    const float dy = (float)y - sh->cy;
    for (int x = sh->x0; x < sh->x1; x++) {
        const float dx = (float)x - sh->cx;
        float u, v;
        const float alpha = shape_alpha(sh, dx, dy, &u, &v);
        if (alpha <= 0.0f)
            continue;
        const float shade = (1.0f + sh->tex_amp * shape_texture(sh, dx, dy, rs->tex[x])) *
                            (1.0f + 0.5f * rs->lum[x]) * (1.0f + tex_amp * rs->tex[x]);
        rs->rr[x] += (sh->col.r * shade - rs->rr[x]) * alpha;
        rs->gg[x] += (sh->col.g * shade - rs->gg[x]) * alpha;
        rs->bb[x] += (sh->col.b * shade - rs->bb[x]) * alpha;
    }
}

/* Folds part of the noise into creases (0.5 - 2|n|): sharp ridges read as edges and texture, as in photos. */
static void fold_row(float ridge, int w, float *lum)
{
    for (int x = 0; x < w; x++)
        lum[x] += ridge * ((0.5f - 2.0f * fabsf(lum[x])) - lum[x]);
}

/*
 * Background: palette mixed by a linear gradient and low-frequency noise, lit by the mid-frequency noise,
 * with fine texture whose strength follows the low-frequency noise -- busy regions next to smooth ones,
 * like foliage next to sky, which is what gives photos their spread of JPEG block costs.
 */
static void background_row(const scene *sc, int y, int w, const row_set *rs)
{
    const float base = sc->grad_dy * (float)y + sc->grad_c;
    const float vy = (float)y / (float)w - 0.5f;
    for (int x = 0; x < w; x++) {
        const float m = clampf(0.5f + base + sc->grad_dx * (float)x + sc->mix_gain * rs->mix[x], 0.0f, 1.0f);
        const float busy = clampf(sc->busy_c + sc->busy_k * rs->mix[x], 0.0f, 1.0f);
        const float t = sc->tex_amp * busy * rs->tex[x];
        rs->busy[x] = busy;
        const float vx = (float)x / (float)w - 0.5f;
        const float light = (1.0f + sc->lum_amp * rs->lum[x]) * (1.0f - sc->vignette * (vx * vx + vy * vy));
        /*
         * Texture is added, not multiplied, so dark and saturated regions get as much detail as bright ones;
         * unequal channel gains give it some colour, as real surfaces have.
         */
        rs->rr[x] = (sc->a.r + (sc->b.r - sc->a.r) * m) * light + t * sc->tex_rgb.r;
        rs->gg[x] = (sc->a.g + (sc->b.g - sc->a.g) * m) * light + t * sc->tex_rgb.g;
        rs->bb[x] = (sc->a.b + (sc->b.b - sc->a.b) * m) * light + t * sc->tex_rgb.b;
    }
}

static uint8_t to_byte(float v)
{
    return (uint8_t)clampf(v + 0.5f, 0.0f, 255.0f);
}

/*
 * Grain: mostly luminance (as sensor noise is) with a little chroma, plus pixel-scale roughness where the
 * region is busy (sand, foliage); one 64-bit draw per pixel.
 */
static void quantize_row(gen_rng *r, const scene *sc, int w, const row_set *rs, uint8_t *dst)
{
    for (int x = 0; x < w; x++) {
        const uint64_t n = gen_next(r);
        const float l = ((float)(n & 0xFFFF) + (float)((n >> 16) & 0xFFFF)) * (1.0f / 65536.0f) - 1.0f;
        const float c = (float)((n >> 32) & 0xFFFF) * (1.0f / 65536.0f) - 0.5f;
        const float amp = sc->grain + sc->rough * rs->busy[x];
        const float gl = amp * l, gc = 0.5f * sc->grain * c;
        dst[3 * x + 0] = to_byte(255.0f * rs->rr[x] + gl + gc);
        dst[3 * x + 1] = to_byte(255.0f * rs->gg[x] + gl);
        dst[3 * x + 2] = to_byte(255.0f * rs->bb[x] + gl - gc);
    }
}

enum { FIELD_MIX, FIELD_LUM, FIELD_TEX, NFIELDS };

static int fields_init(noise_field *f, gen_rng *r, const class_style *cs, int w, int h)
{
    const float span = (float)(w > h ? w : h);
    if (field_init(&f[FIELD_MIX], r, w, h, span / rngf(r, 1.0f, 2.0f), 0.5f, 3) != 0)
        return -1;
    /* Five octaves reach ~10 px; finer detail is the texture field's job, and octaves cost time. */
    if (field_init(&f[FIELD_LUM], r, w, h, span / rngf(r, 2.0f, 4.0f), cs->detail + rngf(r, -0.04f, 0.04f),
                   5) != 0)
        return -1;
    /* Texture starts at a few pixels and keeps most of its energy in the finest octaves. */
    return field_init(&f[FIELD_TEX], r, w, h, cs->tex_period * rngf(r, 0.7f, 1.4f),
                      cs->tex_gain + rngf(r, -0.05f, 0.05f), MAX_OCTAVES);
}

/* Renders the image into rgb (width*height*3 bytes). Returns 0, or -1 when out of memory. */
static int render_image(gen_rng *r, const class_style *cs, int w, int h, uint8_t *rgb)
{
    noise_field f[NFIELDS] = { { .n = 0 } };
    float *rows = NULL;
    int rc = -1;
    scene sc;
    const float ridge = clampf(cs->ridge + rngf(r, -0.2f, 0.2f), 0.0f, 1.0f);

    pick_scene(r, cs, w, h, &sc);
    if (fields_init(f, r, cs, w, h) != 0)
        goto out;
    int tmp_len = 0;
    for (int i = 0; i < NFIELDS; i++)
        tmp_len = f[i].max_gw > tmp_len ? f[i].max_gw : tmp_len;
    rows = malloc(sizeof(float) * (7 * (size_t)w + (size_t)tmp_len));
    if (!rows)
        goto out;
    const row_set rs = { .mix = rows, .lum = rows + w, .tex = rows + 2 * w, .busy = rows + 3 * w,
                         .rr = rows + 4 * w, .gg = rows + 5 * w, .bb = rows + 6 * w };
    float *tmp = rows + 7 * w;
    for (int y = 0; y < h; y++) {
        field_row(&f[FIELD_MIX], y, w, rs.mix, tmp);
        field_row(&f[FIELD_LUM], y, w, rs.lum, tmp);
        field_row(&f[FIELD_TEX], y, w, rs.tex, tmp);
        fold_row(ridge, w, rs.lum);
        background_row(&sc, y, w, &rs);
        for (int i = 0; i < sc.nshapes; i++)
            if (y >= sc.shapes[i].y0 && y < sc.shapes[i].y1)
                draw_shape_row(&sc.shapes[i], 0.5f * sc.tex_amp, y, &rs);
        quantize_row(r, &sc, w, &rs, rgb + (size_t)y * (size_t)w * 3);
    }
    rc = 0;
out:
    free(rows);
    for (int i = 0; i < NFIELDS; i++)
        field_free(&f[i]);
    return rc;
}

/* ---------------------------------------------------------------- output */

static void set_error(worker *wk, const char *path, int err, const char *msg)
{
    snprintf(wk->err_path, sizeof wk->err_path, "%s", path);
    snprintf(wk->err_msg, sizeof wk->err_msg, "%s", msg);
    wk->err_errno = err;
}

/* Write to a temporary name in the same directory, then rename, so a reader never sees half a file. */
static int write_atomic(worker *wk, const char *path, const unsigned char *buf, size_t len)
{
    char tmp[PATH_MAX];
    const char *slash = strrchr(path, '/');
    const int dir_len = slash ? (int)(slash - path) + 1 : 0;
    if (snprintf(tmp, sizeof tmp, "%.*s.%s.%ld.tmp", dir_len, path, path + dir_len, (long)getpid()) >=
        (int)sizeof tmp) {
        set_error(wk, path, ENAMETOOLONG, "cannot make temporary name");
        return -1;
    }
    const int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        set_error(wk, tmp, errno, "cannot create");
        return -1;
    }
    size_t done = 0;
    while (done < len) {
        const ssize_t n = write(fd, buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            set_error(wk, tmp, n < 0 ? errno : EIO, "cannot write");
            close(fd);
            unlink(tmp);
            return -1;
        }
        done += (size_t)n;
    }
    if (close(fd) != 0) {
        set_error(wk, tmp, errno, "cannot close");
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        set_error(wk, path, errno, "cannot rename temporary file to");
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int image_path(const worker *wk, uint32_t klass, uint64_t index, char *buf, size_t len)
{
    const int n = snprintf(buf, len, "%s/class_%0*" PRIu32 "/img_%0*" PRIu64 ".jpg", wk->opts->out,
                           wk->width_class, klass, wk->width_index, index);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Per-thread buffers, grown to the largest image seen so far. */
typedef struct {
    /*
     * One compressor per mode: with libjpeg-turbo 2.1.5, a handle that has written a progressive JPEG
     * keeps part of that state and writes corrupt baseline files afterwards ("bad Huffman code" in djpeg).
     */
    tjhandle tj_base, tj_prog;
    uint8_t *rgb;
    size_t rgb_cap;
    unsigned char *jpeg;
    unsigned long jpeg_cap;
} work_bufs;

static int ensure_bufs(work_bufs *b, const img_spec *s)
{
    const size_t rgb_need = (size_t)s->width * (size_t)s->height * 3;
    if (rgb_need > b->rgb_cap) {
        free(b->rgb);
        b->rgb = malloc(rgb_need);
        b->rgb_cap = b->rgb ? rgb_need : 0;
        if (!b->rgb)
            return -1;
    }
    /* Sized for the worst case so TurboJPEG never reallocates (TJFLAG_NOREALLOC). */
    const unsigned long jpeg_need = tjBufSize(s->width, s->height, TJSAMP_444);
    if (jpeg_need > b->jpeg_cap) {
        tjFree(b->jpeg);
        b->jpeg = tjAlloc((int)jpeg_need);
        b->jpeg_cap = b->jpeg ? jpeg_need : 0;
        if (!b->jpeg)
            return -1;
    }
    return 0;
}

static int make_one(worker *wk, work_bufs *b, uint64_t index)
{
    char path[PATH_MAX];
    gen_rng r;
    img_spec s;
    class_style cs;

    gen_rng_seed(&r, wk->opts->seed, index);
    pick_spec(&r, index, wk->opts->classes, &s);
    pick_class_style(wk->opts->seed, s.klass, &cs);
    if (image_path(wk, s.klass, index, path, sizeof path) != 0) {
        set_error(wk, wk->opts->out, ENAMETOOLONG, "output path too long under");
        return -1;
    }
    if (ensure_bufs(b, &s) != 0 || render_image(&r, &cs, s.width, s.height, b->rgb) != 0) {
        set_error(wk, path, ENOMEM, "cannot render");
        return -1;
    }
    unsigned long size = b->jpeg_cap;
    const int flags = TJFLAG_NOREALLOC | (s.progressive ? TJFLAG_PROGRESSIVE : 0);
    const tjhandle tj = s.progressive ? b->tj_prog : b->tj_base;
    if (tjCompress2(tj, b->rgb, s.width, 0, s.height, TJPF_RGB, &b->jpeg, &size, s.subsamp, s.quality, flags) != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "cannot compress (%s)", tjGetErrorStr2(tj));
        set_error(wk, path, 0, msg);
        return -1;
    }
    if (write_atomic(wk, path, b->jpeg, size) != 0)
        return -1;
    wk->bytes += size;
    wk->images++;
    return 0;
}

static void destroy_handle(tjhandle h)
{
    if (h)
        tjDestroy(h);
}

static void *worker_main(void *arg)
{
    worker *wk = arg;
    work_bufs b = { .tj_base = tjInitCompress(), .tj_prog = tjInitCompress() };
    if (!b.tj_base || !b.tj_prog) {
        set_error(wk, wk->opts->out, 0, "cannot create TurboJPEG compressor for");
        atomic_store(wk->failed, 1);
        goto done;
    }
    /* Indices are handed out dynamically for load balance; the output does not depend on who takes which. */
    while (!atomic_load(wk->failed)) {
        const uint_fast32_t index = atomic_fetch_add(wk->next, 1);
        if (index >= wk->opts->count)
            break;
        if (make_one(wk, &b, index) != 0) {
            atomic_store(wk->failed, 1);
            break;
        }
    }
done:
    free(b.rgb);
    tjFree(b.jpeg);
    destroy_handle(b.tj_base);
    destroy_handle(b.tj_prog);
    return NULL;
}

/* ---------------------------------------------------------------- directories */

static int make_dir(const char *path)
{
    struct stat st;
    if (mkdir(path, 0755) == 0)
        return 0;
    if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    if (errno == EEXIST)
        errno = ENOTDIR;
    return -1;
}

/* mkdir -p: the output directory may be several levels deep and not exist yet. */
static int make_dirs(const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (make_dir(buf) != 0)
            return -1;
        *p = '/';
    }
    return make_dir(buf);
}

static int decimal_width(uint64_t max_value, int min_width)
{
    int n = 1;
    while (max_value >= 10) {
        max_value /= 10;
        n++;
    }
    return n > min_width ? n : min_width;
}

static int make_class_dirs(const gen_opts *o, int width_class)
{
    char path[PATH_MAX];
    if (make_dirs(o->out) != 0) {
        fprintf(stderr, PROG ": cannot create directory %s: %s\n", o->out, strerror(errno));
        return -1;
    }
    for (uint32_t c = 0; c < o->classes; c++) {
        if (snprintf(path, sizeof path, "%s/class_%0*" PRIu32, o->out, width_class, c) >= (int)sizeof path) {
            fprintf(stderr, PROG ": output path too long: %s\n", o->out);
            return -1;
        }
        if (make_dir(path) != 0) {
            fprintf(stderr, PROG ": cannot create directory %s: %s\n", path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- command line */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " --out DIR --count N [--classes C] [--seed S] [--threads T]\n"
            "\n"
            "Writes a synthetic ImageNet-like ImageFolder: DIR/class_XX/img_NNNNNN.jpg.\n"
            "Output is byte-identical for the same seed, count and classes, whatever --threads.\n"
            "\n"
            "  --out DIR       output directory (created if missing)\n"
            "  --count N       number of images, 1..%u\n"
            "  --classes C     number of classes, 1..%u (default 10); image i goes to class i %% C\n"
            "  --seed S        64-bit seed, decimal or 0x-hex (default 0)\n"
            "  --threads T     worker threads, 1..%u (default: online CPUs)\n"
            "  -h, --help      show this help\n"
            "\n"
            "Exit status: 0 ok, 1 error, 2 usage error.\n",
            MAX_COUNT, MAX_CLASSES, MAX_THREADS);
}

static int parse_args(int argc, char **argv, gen_opts *o)
{
    static const struct option longopts[] = {
        { "out", required_argument, NULL, 'o' },     { "count", required_argument, NULL, 'n' },
        { "classes", required_argument, NULL, 'c' }, { "seed", required_argument, NULL, 's' },
        { "threads", required_argument, NULL, 't' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t v, count = 0;
    int have_count = 0, ch, li = 0;
    *o = (gen_opts){ .classes = 10, .threads = cpus > 0 ? (uint32_t)(cpus < MAX_THREADS ? cpus : MAX_THREADS) : 1 };

    while ((ch = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
        switch (ch) {
        case 'o': o->out = optarg; break;
        case 'n':
            if (gen_parse_u64(optarg, 1, MAX_COUNT, &count) != 0)
                goto bad_value;
            have_count = 1;
            break;
        case 'c':
            if (gen_parse_u64(optarg, 1, MAX_CLASSES, &v) != 0)
                goto bad_value;
            o->classes = (uint32_t)v;
            break;
        case 's':
            if (gen_parse_u64(optarg, 0, UINT64_MAX, &o->seed) != 0)
                goto bad_value;
            break;
        case 't':
            if (gen_parse_u64(optarg, 1, MAX_THREADS, &v) != 0)
                goto bad_value;
            o->threads = (uint32_t)v;
            break;
        case 'h': usage(stdout); exit(EXIT_OK);
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!o->out || !*o->out || !have_count) {
        fprintf(stderr, PROG ": --out and --count are required (see --help)\n");
        return -1;
    }
    o->count = (uint32_t)count;
    return 0;
bad_value:
    fprintf(stderr, PROG ": invalid value '%s' for --%s (see --help)\n", optarg, longopts[li].name);
    return -1;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Starts the workers, waits for them, and reports the first error. Returns the exit status. */
static int run_workers(const gen_opts *o, worker *wks, uint32_t *started)
{
    pthread_t *tids = calloc(o->threads, sizeof *tids);
    int status = EXIT_OK;
    if (!tids) {
        fprintf(stderr, PROG ": out of memory\n");
        return EXIT_ERR;
    }
    for (*started = 0; *started < o->threads; (*started)++) {
        const int err = pthread_create(&tids[*started], NULL, worker_main, &wks[*started]);
        if (err != 0) {
            fprintf(stderr, PROG ": cannot start thread: %s\n", strerror(err));
            atomic_store(wks[0].failed, 1);
            status = EXIT_ERR;
            break;
        }
    }
    for (uint32_t i = 0; i < *started; i++)
        pthread_join(tids[i], NULL);
    free(tids);
    for (uint32_t i = 0; i < *started; i++) {
        if (wks[i].err_path[0] == '\0')
            continue;
        if (wks[i].err_errno != 0)
            fprintf(stderr, PROG ": %s %s: %s\n", wks[i].err_msg, wks[i].err_path, strerror(wks[i].err_errno));
        else
            fprintf(stderr, PROG ": %s %s\n", wks[i].err_msg, wks[i].err_path);
        status = EXIT_ERR;
    }
    return status;
}

int main(int argc, char **argv)
{
    gen_opts o;
    if (parse_args(argc, argv, &o) != 0)
        return EXIT_USAGE;
    const int width_class = decimal_width(o.classes - 1, 2);
    const int width_index = decimal_width(o.count - 1, 6);
    if (make_class_dirs(&o, width_class) != 0)
        return EXIT_ERR;

    atomic_uint_fast32_t next = 0;
    atomic_int failed = 0;
    worker *wks = calloc(o.threads, sizeof *wks);
    if (!wks) {
        fprintf(stderr, PROG ": out of memory\n");
        return EXIT_ERR;
    }
    for (uint32_t i = 0; i < o.threads; i++)
        wks[i] = (worker){ .opts = &o, .next = &next, .failed = &failed, .width_class = width_class,
                           .width_index = width_index };

    const double t0 = now_seconds();
    uint32_t started = 0;
    const int status = run_workers(&o, wks, &started);
    const double secs = now_seconds() - t0;
    uint64_t bytes = 0, images = 0;
    for (uint32_t i = 0; i < started; i++) {
        bytes += wks[i].bytes;
        images += wks[i].images;
    }
    free(wks);
    if (status == EXIT_OK)
        printf(PROG ": wrote %" PRIu64 " images, %.1f MB (avg %.1f KB) to %s in %.2f s with %" PRIu32
                    " threads\n",
               images, (double)bytes / 1e6, images ? (double)bytes / 1e3 / (double)images : 0.0, o.out, secs,
               o.threads);
    return status;
}
