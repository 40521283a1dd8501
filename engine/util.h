/* util.h: internal helpers shared by the engine, the CLI and the server:
 * error-message formatting, bounded whole-file reads, and .npy float32 I/O. */
#ifndef VIT_UTIL_H
#define VIT_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include "vit.h"

#ifdef __cplusplus /* the CUDA sources (.cu, C++) use these too */
extern "C" {
#endif

/* snprintf into err (if non-NULL) and return st: `return vit_errf(VIT_E_IO, err, n, "open %s", p);` */
vit_status vit_errf(vit_status st, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Read a whole file, refusing files larger than max_bytes.  *out is malloc'd and NUL-terminated
 * (len excludes the NUL).  Errors: VIT_E_IO (open/read), VIT_E_ARG (too large), VIT_E_NOMEM. */
vit_status vit_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *len,
                         char *err, size_t errlen);

/* .npy (format 1.0/2.0/3.0, little-endian float32 '<f4', C order).
 * Read: shape into shape[0..*ndim), at most 8 dims; data malloc'd. */
vit_status vit_npy_read(const char *path, float **data, int64_t *shape, int *ndim,
                        char *err, size_t errlen);
vit_status vit_npy_write(const char *path, const float *data, const int64_t *shape, int ndim,
                         char *err, size_t errlen);

/* vit_f32_to_f16 / vit_f16_to_f32 (vit.h) without the F16C fast path: the reference the tests
 * hold it to.  vit_f16c_available: whether the public ones use F16C (x86-64 with AVX+F16C, and
 * VIT_NO_F16C=1 not set when first asked). */
void vit_f32_to_f16_portable(const float *x, uint16_t *y, size_t n);
void vit_f16_to_f32_portable(const uint16_t *x, float *y, size_t n);
int vit_f16c_available(void);

/* monotonic clock in seconds */
double vit_now(void);

#ifdef __cplusplus
}
#endif
#endif
