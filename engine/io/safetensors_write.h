/* safetensors_write.h: writing safetensors files (the counterpart of safetensors.h's reader),
 * and crash-safe file replacement: write a temporary file in the same directory, fsync it,
 * rename it over the target, fsync the directory.  A crash at any point leaves either the old
 * file or the complete new one.  Engine-internal (the server's state files use it too). */
#ifndef VIT_SAFETENSORS_WRITE_H
#define VIT_SAFETENSORS_WRITE_H
#include <stddef.h>
#include <stdint.h>
#include "vit.h"

/* One tensor to write: data holds nbytes raw little-endian bytes of dtype ("F32", "F16",
 * "BF16", ...); nbytes must match the shape and dtype size (checked for F32/F16/BF16). */
typedef struct stw_tensor {
    const char *name;
    const char *dtype;
    int ndim;                 /* 0..8 */
    int64_t shape[8];
    const void *data;
    size_t nbytes;
} stw_tensor;

/* A chunk source for vit_write_file_atomic: called until it returns 0 bytes (or < 0 on error). */
typedef struct stw_chunk { const void *data; size_t len; } stw_chunk;

/* Write the concatenation of chunks[0..n) to path atomically (tmp + fsync + rename + fsync dir).
 * mode: permission bits of the new file (e.g. 0644). */
vit_status vit_write_file_atomic(const char *path, const stw_chunk *chunks, int n, unsigned mode,
                                 char *err, size_t errlen);

/* Write a safetensors file atomically: tensors in the given order, 8-byte aligned header,
 * optional __metadata__ from meta_kv[0..2*n_meta) (key, value, key, value, ... strings). */
vit_status vit_safetensors_write(const char *path, const stw_tensor *t, int n,
                                 const char *const *meta_kv, int n_meta, char *err, size_t errlen);

#endif
