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

/* monotonic clock in seconds */
double vit_now(void);

#ifdef __cplusplus
}
#endif
#endif
