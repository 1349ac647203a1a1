/* fuzz_jpeg.c - libFuzzer target: the image stage (JPEG decode of the crop, resize, conversion) on
 * arbitrary bytes. The mode byte picks the transform, output size, dtype and layout; the pixel cap
 * is small so a lying header cannot make one input take seconds. Whatever happens must be a clean
 * SP_OK or error code: sanitizers catch the rest. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "img.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned mode = data[0], pick = data[1];
    data += 2;
    size -= 2;
    img_cfg cfg = {
        .transform = (mode & 1) ? SP_TRANSFORM_EVAL : SP_TRANSFORM_TRAIN,
        .size = (mode & 2) ? 64 : 24,
        .dtype = (int)((mode >> 2) & 3),
        .layout = (int)((mode >> 4) & 1),
        .mean = { 0.485f, 0.456f, 0.406f },
        .std = { 0.229f, 0.224f, 0.225f },
        .max_pixels = 1u << 22,
        .max_image_memory = 16u << 20,
        .seed = pick,
    };
    cfg.resize = cfg.size + cfg.size / 7;
    img_ctx *c;
    if (img_ctx_create(&cfg, &c) != SP_OK)
        return 0;
    uint8_t *out = malloc(img_out_bytes(&cfg));
    char why[256];
    img_result r;
    if (out) {
        int rc = img_process(c, data, size, pick >> 4, pick & 15, out, &r, why, sizeof why);
        if (rc != SP_OK && rc != SP_EBADINPUT && rc != SP_ELIMIT)
            abort();
        if (rc == SP_OK && (r.box.x0 < 0 || r.box.y0 < 0 || r.box.x1 > r.width + 1e-6 || r.box.y1 > r.height + 1e-6))
            abort(); /* a crop outside the image */
        /* The context is reused for the next image, as a worker's is. */
        rc = img_process(c, data, size, 0, 0, out, NULL, why, sizeof why);
        if (rc != SP_OK && rc != SP_EBADINPUT && rc != SP_ELIMIT)
            abort();
    }
    free(out);
    img_ctx_destroy(c);
    return 0;
}
