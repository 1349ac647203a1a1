/* fuzz_image.c - the image targets' shared body (fuzz_image.h). The pixel cap is small so a lying
 * header cannot make one input take seconds; sanitizers catch what the codes do not. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_image.h"
#include "img.h"

static void check_rc(int rc)
{
    if (rc != SP_OK && rc != SP_EBADINPUT && rc != SP_ELIMIT)
        abort();
}

int fuzz_image(const uint8_t *data, size_t size)
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
        check_rc(rc);
        if (rc == SP_OK && (r.box.x0 < 0 || r.box.y0 < 0 || r.box.x1 > r.width + 1e-6 || r.box.y1 > r.height + 1e-6))
            abort(); /* a crop outside the image */
        /* The context is reused for the next image, as a worker's is. */
        check_rc(img_process(c, data, size, 0, 0, out, NULL, why, sizeof why));
    }
    free(out);
    img_ctx_destroy(c);
    /* Pack time: the header, then the whole-image decode, resize and JPEG encode of --max-side. */
    sp_image_info info = { .struct_size = sizeof info };
    check_rc(sp_image_probe(data, size, 1u << 20, &info));
    img_shrink_cfg sc = { (mode & 32) ? 16 : 48, 75, (mode & 64) != 0, 1u << 20 };
    img_shrink_out so;
    check_rc(img_shrink(data, size, &sc, &so, why, sizeof why));
    sp_free(so.data);
    return 0;
}
