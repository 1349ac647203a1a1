/* fuzz_webp.c - libFuzzer target: the image stage on WebP-like bytes (libwebp's cropped and
 * scaled decode, the memory estimate from the header), the probe and pack-time shrinking, from a
 * corpus of lossy, lossless, alpha and extended-format WebPs. */
#include "fuzz_image.h"
#include "fuzz_target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_image(data, size); }
