/* img.h - the image stage: JPEG, PNG and WebP decode of only the pixels a crop needs, a resampling
 * resize, and the conversion into a batch row. One img_ctx per decode worker; nothing in it is
 * shared. */
#ifndef SP_IMG_H
#define SP_IMG_H

#include <setjmp.h>
#include <stdio.h>

#include <jpeglib.h>

#include "sp_internal.h"

/* ---- geometry (img_geom.c): pure functions, tested on their own ---- */

/* A source rectangle in the image's pixel coordinates (edges, not centres), and a flip. */
typedef struct img_box {
    double x0, y0, x1, y1;
    bool flip;
} img_box;

/* What the transform does, fixed when a loader or transform is created. */
typedef struct img_cfg {
    int transform;   /* SP_TRANSFORM_* */
    uint32_t size;   /* output side */
    uint32_t resize; /* eval: shorter side before the centre crop */
    int dtype;       /* SP_IMAGE_* */
    int layout;      /* SP_LAYOUT_* */
    float mean[3], std[3];
    uint64_t max_pixels;
    uint64_t max_image_memory; /* libjpeg's whole-image arrays (progressive coefficients) */
    bool max_image_memory_default; /* left at the parameter table's default (the loader may then
                                    * raise it to what the dataset's image_sizes says it needs) */
    uint64_t seed;
    /* The largest image the decoders will see, where the dataset says (its "image_sizes"): the
     * longest side and the most pixels; 0: unknown, any image up to IMG_MAX_SIDE and max_pixels.
     * Only the buffers' sizes follow them: a larger image finds them too small and is a bad
     * sample, as one beyond max_pixels is. */
    uint64_t data_side, data_pixels;
} img_cfg;

/* What a refusal adds when the decoders were sized by the dataset's image_sizes: the image is larger
 * than the dataset said when it was packed. */
static inline const char *img_sizes_note(const img_cfg *cfg)
{
    return cfg->data_side ? " (sized by the dataset's image_sizes, written when it was packed, which say its images are "
                            "smaller than this one: pack it again)"
                          : "";
}

/* Reads the image parameters of p into *cfg; SP_EINVAL (message set) when they do not fit. */
int img_cfg_from_params(img_cfg *cfg, const sp_params *p);

/* The crop of a width x height image for (epoch, sample): random-resized crop and flip for
 * train (every draw from a generator keyed by seed, epoch and sample alone), resize-and-centre
 * crop for eval. */
void img_crop(const img_cfg *cfg, uint32_t width, uint32_t height, uint64_t epoch, uint64_t sample, img_box *out);

/* The libjpeg scale numerator m (scale m/8) to decode box at: the smallest measured-fast m whose
 * scaled box still covers size x size pixels, else 8. */
int img_pick_scale(const img_box *box, uint32_t size);

/* Pixels of margin decoded around the scaled box, beyond the filter's reach. */
#define IMG_MARGIN 4

/* The rows and columns of an ow x oh image (the source at the decode's scale) that resampling box
 * b (in the same scale) to size x size reads: [r[0], r[2]) x [r[1], r[3]), the filter's reach and
 * IMG_MARGIN around the box, clamped to the image. */
void img_need(const img_box *b, uint32_t size, int ow, int oh, int r[4]);

/* ---- formats (img_probe.c) ---- */

/* Widest and tallest image any decoder takes (JPEG's own limit; a PNG may declare more). */
#define IMG_MAX_SIDE 65535u

/* The format of an image from its first bytes (magic numbers), never a name: SP_IMAGE_FORMAT_JPEG,
 * _PNG, _WEBP, or 0 for none of them. */
int img_format(const uint8_t *p, size_t n);
/* "JPEG", "PNG", "WebP" or "unknown". */
const char *img_format_name(int format);

/* What decoding a WebP of this header needs beyond the output (libwebp's own buffers): for a
 * lossless or alpha image, whole-image ARGB or alpha planes. Bytes, from WebPGetFeatures' view. */
uint64_t img_webp_memory(uint32_t w, uint32_t h, bool lossless, bool alpha);

/* ---- resampling (img_resize.c) ---- */

/* Resamples the box (coordinates relative to src, which holds w x h RGBX pixels, 4 bytes each,
 * with stride bytes per row) to size x size RGB into dst (3*size bytes per row): a triangle
 * filter widened by the shrink factor (antialiased area-like shrinking, bilinear growing),
 * flipped when box->flip. tmp holds img_resize_tmp_bytes(size, max(w, h)) bytes. */
void img_resize(const uint8_t *src, uint32_t w, uint32_t h, size_t stride, const img_box *box, uint32_t size,
                uint8_t *dst, void *tmp);
size_t img_resize_tmp_bytes(uint32_t size, uint32_t max_side);
/* The same to ow x oh RGB (3*ow bytes per row); tmp holds img_resize_wh_tmp_bytes(ow, oh, w, h). */
void img_resize_wh(const uint8_t *src, uint32_t w, uint32_t h, size_t stride, const img_box *box, uint32_t ow,
                   uint32_t oh, uint8_t *dst, void *tmp);
size_t img_resize_wh_tmp_bytes(uint32_t ow, uint32_t oh, uint32_t w, uint32_t h);

/* ---- decode and transform (img_jpeg.c) ---- */

/* Most scans a JPEG may have. Each scan of a progressive file is a pass over the whole image, and
 * a file may hold as many as it likes (a scan repeated 50,000 times in 850 KB costs a minute of
 * CPU to decode). Encoders write about ten; libjpeg-turbo advises a limit of 500 (its
 * TJPARAM_SCANLIMIT). The decoder stops past it, and sp_image_probe refuses such a file. */
#define IMG_MAX_SCANS 500

typedef struct img_ctx img_ctx;
typedef struct img_share img_share;

/* libjpeg's error manager with the stage's state (img_jpeg.c). */
typedef struct img_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int warnings;
    bool too_many_scans; /* the progress monitor stopped the decode */
    char msg[JMSG_LENGTH_MAX];
} img_err;

struct img_ctx {
    img_cfg cfg;
    struct jpeg_decompress_struct dec;
    img_err err;
    struct jpeg_progress_mgr progress;
    bool dec_ready;
    uint8_t *region; /* decoded crop rows, RGBX (or CMYK) */
    uint64_t region_cap;
    JSAMPROW *rowp;
    uint32_t rows_cap;
    void *tmp;       /* the resampler's */
    uint32_t tmp_cols; /* widest region the resampler's buffer takes */
    uint8_t *rgb;    /* one resized image, RGB */
    uint8_t *row;    /* PNG: one decoded row at full width, RGBA (IMG_MAX_SIDE pixels) */
    uint32_t *acc;   /* PNG: sums of the row being reduced, 4 per region pixel (IMG_MAX_SIDE) */
    float lut32[3][256];
    uint16_t lut16[3][256]; /* float16 or bfloat16 bits */
    img_share *share; /* whole-image memory shared with other contexts, or NULL: max_image_memory its own */
    uint64_t held;    /* bytes of it this decode holds */
};

/* Bytes one context allocates for cfg, whatever the image, plus what libjpeg may allocate for it:
 * max_image_memory and its row buffers (the loader reserves all of it in its budget). */
uint64_t img_ctx_bytes(const img_cfg *cfg);
int img_ctx_create(const img_cfg *cfg, img_ctx **out);
void img_ctx_destroy(img_ctx *c);

/* libjpeg's whole-image memory (the coefficients of a progressive image) shared by several contexts:
 * cfg's max_image_memory for all of them together instead of each. A context given one takes what
 * an image needs before decoding it (waiting while others hold the rest) and gives it back after;
 * an image needing more than the whole is a bad sample, as before. */
int img_share_create(uint64_t bytes, img_share **out);
void img_share_destroy(img_share *s);
/* Makes c draw from s (which must outlive it). */
void img_ctx_share(img_ctx *c, img_share *s);
/* A decode's whole-image memory (max_image_memory's kind: a progressive JPEG's coefficients, an
 * interlaced PNG's rows, libwebp's planes and full-size crop): taken from the context's share before
 * it is allocated, waiting while other decodes hold it (n at most the share's total, once per
 * decode), and given back by img_process after the decode. No-ops for a context without a share,
 * whose own max_image_memory bounds it. */
void img_mem_take(img_ctx *c, uint64_t n);
void img_mem_give(img_ctx *c);
/* img_ctx_bytes without max_image_memory: a context's part when the whole-image memory is shared. */
uint64_t img_ctx_bytes_shared(const img_cfg *cfg);
/* Bytes of one output image. */
uint64_t img_out_bytes(const img_cfg *cfg);

typedef struct img_result {
    uint32_t width, height; /* of the source image */
    int scale;              /* m of the m/8 DCT scale used */
    img_box box;            /* the crop, in source pixels */
} img_result;

/* For the PNG and WebP decodes (img_geom.c): SP_ELIMIT with why when a w x h image (from its
 * header) has a side above IMG_MAX_SIDE or more than max_pixels pixels, else SP_OK. */
int img_size_check(const img_cfg *cfg, uint64_t w, uint64_t h, char *why, size_t whylen);
/* The crop of a w x h image for (epoch, sample) into res (box, width, height, scale m), for a decode
 * at 1/k (k = 8/m) by block averaging: b receives the box in reduced pixels, need[] the region of
 * the reduced image the resampler reads ([need[0], need[2]) x [need[1], need[3])) and full[] the
 * same in the image's pixels, clamped to it. Returns k. */
int img_plan_reduced(const img_cfg *cfg, uint32_t w, uint32_t h, uint64_t epoch, uint64_t sample, img_result *res,
                     img_box *b, int need[4], int full[4]);

/* The buffers img_ctx_create allocates for the PNG row decode (row and acc). */
#define IMG_ROW_BYTES ((uint64_t)IMG_MAX_SIDE * 4 * (1 + sizeof(uint32_t)))

/* Resamples the decoded region (cw x rows pixels, RGBX, stride bytes a row) over box b (in region
 * coordinates) and writes the batch row to out: the last step of every format's decode. */
void img_finish(img_ctx *c, const uint8_t *region, uint32_t cw, uint32_t rows, size_t stride, const img_box *b,
                void *out);

/* Averages full-resolution rows into region rows at 1/k (img_png.c): columns [fx0, fx1) of every
 * row, k rows (fewer at the end) and k columns (fewer at fx1) to a region pixel of cw, rounded;
 * the sums are kept in c->acc, the rows written to c->region from its first. */
typedef struct img_reducer {
    img_ctx *c;
    int k, fx0, fx1;
    uint32_t cw, nrows, out_row;
    size_t stride;
} img_reducer;
void img_reduce_init(img_reducer *r, img_ctx *c, int k, int fx0, int fx1, uint32_t cw);
/* Takes row y of the rows [fy0, fy1) the region covers: src is its pixel fx0, RGBA. */
void img_reduce_row(img_reducer *r, const uint8_t *src, int y, int fy0, int fy1);

/* The PNG and WebP decodes (img_png.c, img_webp.c), as img_process's for a JPEG: SP_EBADINPUT,
 * SP_ELIMIT (max_pixels, max_image_memory, or a side beyond IMG_MAX_SIDE, all from the header
 * before any pixel is decoded), SP_ENOMEM; why says what is wrong. */
int img_png(img_ctx *c, const uint8_t *data, size_t size, uint64_t epoch, uint64_t sample, void *out,
            img_result *res, char *why, size_t whylen);
int img_webp(img_ctx *c, const uint8_t *data, size_t size, uint64_t epoch, uint64_t sample, void *out,
             img_result *res, char *why, size_t whylen);

/* Decodes a JPEG, PNG or WebP (found from its bytes) and writes its transformed image to out
 * (img_out_bytes). SP_EBADINPUT when the data is none of them, or not one its library decodes
 * without a warning or error (the decode stops at the first one),
 * SP_ELIMIT beyond max_pixels, max_image_memory or IMG_MAX_SCANS scans; why then says what is
 * wrong. res may be NULL. */
int img_process(img_ctx *c, const uint8_t *data, size_t size, uint64_t epoch, uint64_t sample, void *out,
                img_result *res, char *why, size_t whylen);

/* The conversion table of dtype (SP_IMAGE_FLOAT16/BFLOAT16: 2-byte bits, FLOAT32: floats) for cfg's
 * mean and std: out[c * 256 + v] is pixel value v of channel c, normalized. The device stage's
 * kernels use the same table, so host and device give the same bits. */
void img_lut(const img_cfg *cfg, int dtype, void *out);

/* CMYK (or YCCK, which libjpeg turns into CMYK) pixels to RGBX, in place; inverted for Adobe's
 * files, which store the inks inverted (almost every CMYK JPEG). */
void img_cmyk_to_rgbx(uint8_t *p, size_t pixels, bool inverted);

/* libjpeg's error manager for a parse or decode outside the loader (img_probe.c): an error or a
 * warning (corrupt data libjpeg would paper over) longjmps to jb with its message in msg; nothing
 * is printed. Returns &e->pub for cinfo.err. */
typedef struct img_quiet_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} img_quiet_err;
struct jpeg_error_mgr *img_quiet_err_init(img_quiet_err *e);

/* ---- pack-time resizing and transcoding (img_shrink.c) ---- */

typedef struct img_shrink_cfg {
    uint32_t max_side; /* an image whose longer side is above this is resized to it (0: never) */
    int quality;       /* of the JPEG written */
    bool to_jpeg;      /* a PNG or WebP is written as JPEG even when not resized */
    uint64_t max_pixels; /* an image declaring more is refused (SP_ELIMIT) before any decode */
} img_shrink_cfg;

typedef struct img_shrink_out {
    uint8_t *data; /* the new JPEG (sp_free), or NULL: the image is kept as it is */
    size_t size;
    int format;    /* of the input, SP_IMAGE_FORMAT_* */
    bool resized;
    uint32_t width, height; /* of the image written */
} img_shrink_out;

/* Decodes the whole image (JPEG at the DCT scale nearest above the target, CMYK converted; PNG or
 * WebP, alpha dropped) when cfg asks for a change, resizes it with img_resize_wh's antialiasing
 * filter so its longer side is max_side, and encodes it as JPEG (TurboJPEG, 4:2:0, quality).
 * SP_EBADINPUT when the image does not decode cleanly, SP_ELIMIT above cfg->max_pixels (from the
 * header), SP_ENOMEM; why says what. */
int img_shrink(const uint8_t *data, size_t size, const img_shrink_cfg *cfg, img_shrink_out *out, char *why,
               size_t whylen);

/* Converts one row of size RGB pixels to the configured dtype and layout, as row y of out. */
void img_emit_row(const img_ctx *c, const uint8_t *rgb, uint32_t y, void *out);

#endif
