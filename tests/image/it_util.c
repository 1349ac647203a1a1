/* it_util.c - see it_util.h. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "it_util.h"

static char seedstr[32] = "0";

void it_set_seed(uint64_t seed)
{
    snprintf(seedstr, sizeof seedstr, "%llu", (unsigned long long)(seed & INT64_MAX));
}

sp_image_transform *it_transform(const char *name, ...)
{
    sp_params *p = sp_params_create();
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(sp_params_set_str(p, "seed", seedstr), 0);
    va_list ap;
    va_start(ap, name);
    for (const char *k = name; k; k = va_arg(ap, const char *)) {
        const char *v = va_arg(ap, const char *);
        ck_assert_msg(sp_params_set_str(p, k, v) == 0, "%s=%s: %s", k, v, sp_last_error());
    }
    va_end(ap);
    sp_image_transform *t = NULL;
    int rc = sp_image_transform_create(p, &t);
    ck_assert_msg(rc == 0, "sp_image_transform_create: %s", sp_last_error());
    ck_assert_ptr_nonnull(t);
    sp_params_destroy(p);
    return t;
}

void it_resize_rgb(const uint8_t *rgb, int w, int h, const img_box *b, int size, uint8_t *out)
{
    uint8_t *x = malloc((size_t)w * h * 4);
    void *tmp = malloc(img_resize_tmp_bytes((uint32_t)size, (uint32_t)(w > h ? w : h)));
    ck_assert(x && tmp);
    for (size_t i = 0; i < (size_t)w * h; i++) {
        memcpy(x + 4 * i, rgb + 3 * i, 3);
        x[4 * i + 3] = 255;
    }
    img_resize(x, (uint32_t)w, (uint32_t)h, (size_t)w * 4, b, (uint32_t)size, out, tmp);
    free(tmp);
    free(x);
}
