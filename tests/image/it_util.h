/* it_util.h - helpers of the image-stage tests that link the internal library (the reference path
 * uses img_resize). */
#ifndef SP_IT_UTIL_H
#define SP_IT_UTIL_H

#include <stdarg.h>
#include <stdint.h>

#include "img.h"

/* The seed of every it_transform (the test's, set once in main). */
void it_set_seed(uint64_t seed);
/* A transform with it_set_seed's seed and the NULL-terminated name/value pairs; fails the test
 * when refused. */
sp_image_transform *it_transform(const char *name, ...);

/* An encoded image the test made (free data). */
typedef struct it_enc {
    uint8_t *data;
    size_t size;
} it_enc;

/* img_resize over box of an RGB picture (w x h, 3 bytes per pixel; the resampler takes RGBX) to
 * size x size RGB in out. */
void it_resize_rgb(const uint8_t *rgb, int w, int h, const img_box *b, int size, uint8_t *out);

#endif
