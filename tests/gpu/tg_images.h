/* tg_images.h - the JPEG dataset the GPU tests share (public API, jpeg_gen and Check). */
#ifndef SP_TG_IMAGES_H
#define SP_TG_IMAGES_H

#include <stdint.h>

typedef struct tg_images {
    char *parent, *dir;
} tg_images;

/* n JPEGs of 40..159 pixels a side cycling through 4:2:0, 4:2:2, 4:4:4, gray and progressive,
 * each with label = sample id, in a new private directory; sizes follow seed. */
void tg_make_images(tg_images *d, uint64_t n, uint64_t seed);
void tg_free_images(tg_images *d);

#endif
