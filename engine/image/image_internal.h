/* image_internal.h: pieces of the image pipeline shared between image.c, preprocess.c and the
 * tests, not part of the public API. */
#ifndef VIT_IMAGE_INTERNAL_H
#define VIT_IMAGE_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include "vit.h"

/* Decoding options for vit_image_load's fast paths. */
typedef struct vit_decode_opts {
    int min_w, min_h;  /* > 0: a JPEG at least twice this size may be downscaled in the DCT domain
                          (by 1/2, 1/4, 1/8) as long as both sides stay >= min_w x min_h */
    /* Called once the shown size w x h (after DCT scaling and EXIF orientation) is known.  Return 1
     * and the region [x0, x1) x [y0, y1) the caller needs to have only (about) that decoded; 0 for
     * everything.  JPEG only; the decoder may return a larger region. */
    int (*region)(void *ctx, int w, int h, int *x0, int *y0, int *x1, int *y1);
    void *ctx;
    const vit_decode_limits *lim;  /* NULL: the defaults (max_pixels from the argument, no cost cap) */
} vit_decode_opts;

typedef struct vit_region_image {
    vit_image img;         /* the decoded region: img.width x img.height RGB8 (free with vit_image_free) */
    int x0, y0;            /* its top-left corner in the shown image */
    int full_w, full_h;    /* the shown image's size */
} vit_region_image;

/* vit_image_decode with options (o may be NULL: the whole image at full size). */
vit_status vit_image_decode_region(const void *data, size_t len, uint64_t max_pixels, const vit_decode_opts *o,
                                   vit_region_image *out, char *err, size_t errlen);

/* A resize/crop/normalize plan for one input size (taps for both passes, the input region read). */
typedef struct vit_pp_plan vit_pp_plan;
vit_status vit_pp_plan_make(const vit_preprocess *pp, int w, int h, vit_pp_plan **out, char *err, size_t errlen);
void vit_pp_plan_free(vit_pp_plan *pl);
/* the input pixels [x0, x1) x [y0, y1) the plan reads */
void vit_pp_plan_region(const vit_pp_plan *pl, int *x0, int *y0, int *x1, int *y1);
/* 0: resize without the AVX-512 horizontal pass (bit-identical either way; for tests), 1: use
 * it where the CPU has AVX-512 (the default).  Applies to plans made afterwards. */
void vit_pp_set_simd(int on);
/* run it on src, the region [rx0, rx0 + rw) x [ry0, ry0 + rh) of the image as RGB8 rows of `stride`
 * bytes (it must cover the plan's region); out is (3, out_h, out_w) */
vit_status vit_pp_plan_run(const vit_pp_plan *pl, const uint8_t *src, size_t stride, int rx0, int ry0, int rw,
                           int rh, float *out, char *err, size_t errlen);

/* VIT_OK, or VIT_E_IMAGE_CORRUPT (zero size) / VIT_E_IMAGE_TOO_LARGE (w x h over max_pixels; 0:
 * VIT_DEFAULT_MAX_PIXELS) with a message naming what ("JPEG", "PNG"). */
vit_status vit_image_check_pixels(uint64_t w, uint64_t h, uint64_t max_pixels, const char *what, char *err,
                                  size_t errlen);
/* vit_image_cost, also giving the number of JPEG scans counted (0 for PNG) */
vit_status vit_image_cost_scans(const void *data, size_t len, const vit_decode_limits *lim, uint64_t *cost,
                                int *scans, char *err, size_t errlen);

/* EXIF orientation 1..8 from a TIFF-structured block ("II*\0..." / "MM\0*..."); 1 if none. */
int vit_exif_orientation(const uint8_t *tiff, size_t len);

/* The size the image is resized to before cropping (torchvision / HF rules), for an input w x h. */
void vit_preprocess_resized_size(const vit_preprocess *pp, int w, int h, int *rw, int *rh);

/* Largest single allocation the calling thread's decoder made since the reset (our pixel buffers
 * and every libpng allocation); for tests of the header-first pixel cap. */
void vit_image_alloc_hwm_reset(void);
size_t vit_image_alloc_hwm(void);

#endif
