/* fuzz_image.h - the body the image targets (fuzz_jpeg, fuzz_png, fuzz_webp) share. */
#ifndef SP_FUZZ_IMAGE_H
#define SP_FUZZ_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* The image stage on data: data[0] picks the transform, output size, dtype and layout, data[1]
 * the seed and sample; the rest is the file, in whatever format its bytes say. Decoded twice with
 * one context (as a worker reuses it), probed, and shrunk as pack --max-side would. Aborts on
 * anything but a clean SP_OK or SP_EBADINPUT / SP_ELIMIT, or a crop outside the image. */
int fuzz_image(const uint8_t *data, size_t size);

#endif
