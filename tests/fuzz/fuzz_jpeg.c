/* fuzz_jpeg.c - libFuzzer target: the image stage (JPEG decode of the crop, resize, conversion),
 * the probe and pack-time shrinking on arbitrary bytes, from a corpus of JPEGs (fuzz_image.c). */
#include "fuzz_image.h"
#include "fuzz_target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_image(data, size); }
