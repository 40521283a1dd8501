/* safetensors.h: a strict reader for the safetensors format (8-byte little-endian header
 * length, a JSON header {name: {dtype, shape, data_offsets}}, then the raw data).
 * Everything that comes from the file is checked before use: the header length against the
 * file size and a cap, every tensor's dtype, shape and byte range (inside the data section,
 * non-overlapping, exactly dtype size * number of elements).  Tensors are read with pread
 * into the caller's FP32 buffer, converting F16 and BF16 exactly; nothing is mmapped, so a
 * file truncated after open gives an error, never a signal.  The same reader opens a file already
 * in memory (st_open_buffer: head files, a model directory being rewritten), with the same checks.
 * Engine-internal. */
#ifndef VIT_SAFETENSORS_H
#define VIT_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>
#include "vit.h"

#define ST_MAX_HEADER   (100u << 20)   /* 100 MiB, as the reference implementation */
#define ST_MAX_TENSORS  100000
#define ST_MAX_DIMS     8

typedef enum {
    ST_F32 = 0, ST_F16, ST_BF16,       /* convertible to FP32 */
    ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_U16, ST_U32, ST_U64, ST_BOOL,
    ST_F8_E4M3, ST_F8_E5M2,
    ST_DTYPE_COUNT
} st_dtype;

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;               /* byte range inside the data section */
    int used;                          /* set by st_find: lets the loader spot extra tensors */
} st_tensor;

struct cJSON;

typedef struct st_file {
    int fd;                            /* -1 for a buffer */
    const uint8_t *mem;                /* st_open_buffer's bytes (borrowed), or NULL */
    char *path;                        /* the file, or the name given for a buffer (messages) */
    struct cJSON *meta;                /* the header's __metadata__ object, or NULL */
    uint64_t file_size;
    uint64_t data_start;               /* 8 + header length */
    int n;
    st_tensor *tensors;                /* sorted by name */
} st_file;

/* Open and validate path.  Errors: VIT_E_IO (open/read), VIT_E_CHECKPOINT (format),
 * VIT_E_NOMEM.  err names the file and the problem. */
vit_status st_open(const char *path, st_file **out, char *err, size_t errlen);
/* The same over len bytes at buf (borrowed: they must outlive the st_file); name is for messages. */
vit_status st_open_buffer(const char *name, const uint8_t *buf, size_t len, st_file **out, char *err,
                          size_t errlen);
void st_close(st_file *f);                             /* NULL harmless */
/* the raw little-endian bytes of t (t->end - t->begin of them) of a buffer-opened file; NULL for
 * a file opened by path */
const uint8_t *st_bytes(const st_file *f, const st_tensor *t);
/* tensor by name (marks it used), or NULL */
st_tensor *st_find(st_file *f, const char *name);
/* tensor by name without marking it, or NULL */
st_tensor *st_lookup(const st_file *f, const char *name);
const char *st_dtype_name(st_dtype d);
size_t st_dtype_size(st_dtype d);
/* "[768, 3, 16, 16]" into buf */
const char *st_shape_str(const int64_t *shape, int ndim, char *buf, size_t n);
/* Read t converted to FP32 into dst (t->numel floats).  F32, F16, BF16 only. */
vit_status st_read_f32(const st_file *f, const st_tensor *t, float *dst, char *err, size_t errlen);

/* exact conversion (exposed for tests); F16 is vit_f16_to_f32 (vit.h, util.c) */
float st_bf16_to_f32(uint16_t h);

#endif
