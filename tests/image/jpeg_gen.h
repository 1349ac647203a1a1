/* jpeg_gen.h - test JPEGs made in memory with libjpeg's compress API (not TurboJPEG handles), from
 * a synthetic picture that is a pure function of (width, height, seed), and a plain whole-image
 * decoder used as the reference the image stage is compared against. Nothing here calls Check, so
 * it may be used anywhere; failures return NULL / nonzero with a message in err. */
#ifndef SP_JPEG_GEN_H
#define SP_JPEG_GEN_H

#include <stddef.h>
#include <stdint.h>

/* Chroma subsampling of a colour JPEG: luma sampling factors (h x v) against 1x1 chroma. */
enum { JG_444 = 0, JG_422 = 1, JG_420 = 2, JG_440 = 3, JG_410 = 4 /* 4x2 */, JG_24 = 5 /* 2x4 */, JG_14 = 6 /* 1x4 */ };

/* How the pixels are stored. */
enum {
    JG_YCC = 0,     /* 3-component YCbCr (the usual JPEG) */
    JG_GRAY = 1,    /* 1 component: the picture's luma (jg_luma) */
    JG_CMYK = 2,    /* 4 components stored as CMYK, Adobe marker, inverted inks (Adobe convention) */
    JG_YCCK = 3,    /* 4 components stored as YCCK (transformed inverted CMYK), Adobe marker */
    JG_CMYK_RAW = 4 /* 4 components stored as CMYK without an Adobe marker, ink values as they are */
};

typedef struct jg_opts {
    int quality;          /* 1..100; 0 means 95 */
    int samp;             /* JG_444 .. JG_14 (colour only; JG_YCCK uses libjpeg's defaults) */
    int color;            /* JG_YCC .. JG_CMYK_RAW */
    int progressive;      /* jpeg_simple_progression */
    int restart_interval; /* MCUs between restart markers; 0: none */
    int arithmetic;       /* arithmetic entropy coding instead of Huffman (SOF9/SOF10) */
    int many_scans;       /* 1..10: progressive with a scan per coefficient, component and bit,
                           * the first at this point transform: 64 x (many_scans + 1) scans per
                           * component, all valid; 0: no */
} jg_opts;

/* The synthetic picture, w*h*3 RGB bytes (malloc'd): a horizontal ramp in red, a vertical ramp
 * in green, a slow diagonal wave in blue, and a few flat rectangles (hard edges) whose places and
 * colours come from seed. Every channel differs from the others, so a swap, a mirror or a shift
 * shows. */
uint8_t *jg_picture(int w, int h, uint64_t seed);
/* Ramps only: red and green as in jg_picture, blue falling along the diagonal; no wave, no
 * rectangles (for pictures of a few pixels, where JPEG would smear anything sharper). */
uint8_t *jg_smooth(int w, int h, uint64_t seed);
/* A picture of one colour (malloc'd). */
uint8_t *jg_flat(int w, int h, uint8_t r, uint8_t g, uint8_t b);
/* The luma the gray encoder stores for an RGB pixel (BT.601, rounded). */
uint8_t jg_luma(const uint8_t *rgb);
/* An RGB picture whose three channels are each the luma of rgb (what a gray JPEG should become). */
uint8_t *jg_gray_rgb(const uint8_t *rgb, int w, int h);

/* Encodes rgb (w x h, 3 bytes per pixel) as opts says into *out (malloc'd, free()), *size bytes.
 * Returns 0, or -1 with err filled. */
int jg_encode(const uint8_t *rgb, int w, int h, const jg_opts *opts, uint8_t **out, size_t *size, char *err,
              size_t errlen);

/* A copy of jpeg (a progressive file ending in EOI) whose last scan, its SOS marker and data,
 * comes `copies` more times before the EOI (malloc'd, *out_size bytes); NULL when jpeg has no
 * scan or does not end in EOI. Each copy repeats a refinement libjpeg has already applied. */
uint8_t *jg_repeat_last_scan(const uint8_t *jpeg, size_t size, unsigned copies, size_t *out_size);

/* Decodes the whole image with libjpeg at scale m/8 (m in 1..8), the accurate integer IDCT and the
 * default (fancy) upsampling, into RGB (malloc'd). A gray image becomes three equal channels; CMYK
 * and YCCK become RGB, inverted inks assumed when the file has an Adobe marker and plain inks when
 * not. A libjpeg warning counts as a failure. Returns NULL with err filled on failure. */
uint8_t *jg_decode(const uint8_t *jpeg, size_t size, int m, int *w, int *h, char *err, size_t errlen);

/* Width and height from the JPEG's frame header; 0 when absent. */
int jg_dims(const uint8_t *jpeg, size_t size, int *w, int *h);

/* Writes a dataset of n samples (an image field "image" and a label "label" = i) to dir with the
 * writer's block_size (and validate_images off): sample i's bytes come from make(i, arg, &bytes,
 * &size) (malloc'd; freed here). 0, or the library's code with its message in err. */
int jg_write_dataset(const char *dir, const char *block_size, int64_t n,
                     int (*make)(int64_t i, void *arg, uint8_t **bytes, size_t *size), void *arg, char *err,
                     size_t errlen);

/* The same with one metadata entry of the caller's (meta_key NULL: none) set before the first sample. */
int jg_write_dataset_meta(const char *dir, const char *block_size, int64_t n,
                          int (*make)(int64_t i, void *arg, uint8_t **bytes, size_t *size), void *arg,
                          const char *meta_key, const char *meta_value, char *err, size_t errlen);

typedef struct sp_loader sp_loader;
/* The rest of loader l's epoch: the "image" field of every batch (side x side x 3 bytes a row),
 * concatenated into *out (malloc'd, *len bytes; each batch released). Returns the code that ended
 * it: SP_EEPOCH, or a failure (-1 when out of memory). */
int jg_epoch_images(sp_loader *l, int side, uint8_t **out, size_t *len);

#endif
