/* image_internal.h: pieces of the image pipeline shared between image.c, preprocess.c and the
 * tests, not part of the public API. */
#ifndef VIT_IMAGE_INTERNAL_H
#define VIT_IMAGE_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include "vit.h"

/* vit_image_decode, but a JPEG may be downscaled in the DCT domain (by n/8) as long as both sides
 * stay >= min_w x min_h.  min_w = min_h = 0: full size (exactly vit_image_decode). */
vit_status vit_image_decode_scaled(const void *data, size_t len, uint64_t max_pixels, int min_w, int min_h,
                                   vit_image *out, char *err, size_t errlen);

/* EXIF orientation 1..8 from a TIFF-structured block ("II*\0..." / "MM\0*..."); 1 if none. */
int vit_exif_orientation(const uint8_t *tiff, size_t len);

/* The size the image is resized to before cropping (torchvision / HF rules), for an input w x h. */
void vit_preprocess_resized_size(const vit_preprocess *pp, int w, int h, int *rw, int *rh);

/* Largest single allocation the calling thread's decoder made since the reset (our pixel buffers
 * and every libpng allocation); for tests of the header-first pixel cap. */
void vit_image_alloc_hwm_reset(void);
size_t vit_image_alloc_hwm(void);

#endif
