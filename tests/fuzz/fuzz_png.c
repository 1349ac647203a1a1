/* fuzz_png.c - libFuzzer target: the image stage on PNG-like bytes (libspng's row decode, the k x
 * k reduction, Adam7's kept rows, the counting allocator, the header limits), the probe and
 * pack-time shrinking, from a corpus of PNGs of every colour type, depth and interlace. */
#include "fuzz_image.h"
#include "fuzz_target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_image(data, size); }
