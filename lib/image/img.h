/* img.h - the image stage: JPEG decode of only the pixels a crop needs, a resampling resize, and
 * the conversion into a batch row. One img_ctx per decode worker; nothing in it is shared. */
#ifndef SP_IMG_H
#define SP_IMG_H

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
    uint64_t seed;
} img_cfg;

/* Reads the image parameters of p into *cfg; SP_EINVAL (message set) when they do not fit. */
int img_cfg_from_params(img_cfg *cfg, const sp_params *p);

/* The crop of a width x height image for (epoch, sample): random-resized crop and flip for
 * train (every draw from a generator keyed by seed, epoch and sample alone), resize-and-centre
 * crop for eval. */
void img_crop(const img_cfg *cfg, uint32_t width, uint32_t height, uint64_t epoch, uint64_t sample, img_box *out);

/* The libjpeg scale numerator m (scale m/8) to decode box at: the smallest measured-fast m whose
 * scaled box still covers size x size pixels, else 8. */
int img_pick_scale(const img_box *box, uint32_t size);

/* ---- resampling (img_resize.c) ---- */

/* Resamples the box (coordinates relative to src, which holds w x h RGBX pixels, 4 bytes each,
 * with stride bytes per row) to size x size RGB into dst (3*size bytes per row): a triangle
 * filter widened by the shrink factor (antialiased area-like shrinking, bilinear growing),
 * flipped when box->flip. tmp holds img_resize_tmp_bytes(size, max(w, h)) bytes. */
void img_resize(const uint8_t *src, uint32_t w, uint32_t h, size_t stride, const img_box *box, uint32_t size,
                uint8_t *dst, void *tmp);
size_t img_resize_tmp_bytes(uint32_t size, uint32_t max_side);

/* ---- decode and transform (img_jpeg.c) ---- */

/* Most scans a JPEG may have. Each scan of a progressive file is a pass over the whole image, and
 * a file may hold as many as it likes (a scan repeated 50,000 times in 850 KB costs a minute of
 * CPU to decode). Encoders write about ten; libjpeg-turbo advises a limit of 500 (its
 * TJPARAM_SCANLIMIT). The decoder stops past it, and sp_image_probe refuses such a file. */
#define IMG_MAX_SCANS 500

typedef struct img_ctx img_ctx;

/* Bytes one context allocates for cfg, whatever the image, plus what libjpeg may allocate for it:
 * max_image_memory and its row buffers (the loader reserves all of it in its budget). */
uint64_t img_ctx_bytes(const img_cfg *cfg);
int img_ctx_create(const img_cfg *cfg, img_ctx **out);
void img_ctx_destroy(img_ctx *c);
/* Bytes of one output image. */
uint64_t img_out_bytes(const img_cfg *cfg);

typedef struct img_result {
    uint32_t width, height; /* of the source image */
    int scale;              /* m of the m/8 DCT scale used */
    img_box box;            /* the crop, in source pixels */
} img_result;

/* Decodes a JPEG and writes its transformed image to out (img_out_bytes). SP_EBADINPUT when the
 * data is not a JPEG libjpeg decodes without a warning (the decode stops at the first one),
 * SP_ELIMIT beyond max_pixels, max_image_memory or IMG_MAX_SCANS scans; why then says what is
 * wrong. res may be NULL. */
int img_process(img_ctx *c, const uint8_t *data, size_t size, uint64_t epoch, uint64_t sample, void *out,
                img_result *res, char *why, size_t whylen);

/* The conversion table of dtype (SP_IMAGE_FLOAT16/BFLOAT16: 2-byte bits, FLOAT32: floats) for cfg's
 * mean and std: out[c * 256 + v] is pixel value v of channel c, normalized. The device stage's
 * kernels use the same table, so host and device give the same bits. */
void img_lut(const img_cfg *cfg, int dtype, void *out);

/* Converts one row of size RGB pixels to the configured dtype and layout, as row y of out. */
void img_emit_row(const img_ctx *c, const uint8_t *rgb, uint32_t y, void *out);

#endif
