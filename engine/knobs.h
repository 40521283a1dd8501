/* knobs.h: the engine's environment knobs, one table (engine/knobs.c), read and validated in one
 * place.  Internal: the engine's own code reads a knob's value in effect through these getters;
 * the public side (vit.h: vit_knobs_load, vit_knob_count, vit_knob_info_get, vit_knobs_summary)
 * lists them with their values for `vit knobs`, `vit info`, /v1/models and vitd's start-up log.
 * No other engine file calls getenv. */
#ifndef VIT_KNOBS_H
#define VIT_KNOBS_H

#include "vit.h"

#ifdef __cplusplus /* engine/cuda/cuda_engine.cu (C++) reads the VIT_CUDA_* knobs */
extern "C" {
#endif

/* one per row of the table in knobs.c, in the same order */
typedef enum {
    VIT_KNOB_CPU_PARALLEL,    /* enum auto|ops|images */
    VIT_KNOB_GEMM,            /* enum auto|openblas|avx512 */
    VIT_KNOB_GEMM_I8,         /* enum auto|avx2|scalar */
    VIT_KNOB_NO_F16C,         /* bool */
    VIT_KNOB_CUDA_GELU,       /* enum epilogue|erf */
    VIT_KNOB_CUDA_ATTN,       /* enum mma|wmma */
    VIT_KNOB_CUDA_ATTN_KC,    /* int 16|32|64 */
    VIT_KNOB_CUDA_ATTN_QT,    /* int 1|2 */
    VIT_KNOB_CUDA_GEMM_TUNE,  /* bool */
    VIT_KNOB_CUDA_GEMM_ALGOS, /* int 1..16 */
    VIT_KNOB_CUDA_CLS_ONLY,   /* bool */
    VIT_KNOB_CUDA_RESFUSE,    /* bool */
    VIT_KNOB_CUDA_SUBBATCH,   /* int 0..65536 */
    VIT_KNOB_CUDA_WARMUP,     /* bool */
    VIT_KNOB_COUNT
} vit_knob_id;

/* The value in effect (the last successful vit_knobs_load; the defaults before the first, which
 * the first getter call runs if nobody has).  int and bool knobs: the number; enum knobs: the
 * index of the choice in the table's list. */
int vit_knob_int(vit_knob_id id);
/* enum knobs: whether the choice in effect is `choice` (0 for any other knob) */
int vit_knob_is(vit_knob_id id, const char *choice);

/* Pure parsing, for the loader and the unit tests: the knob's value from its text (NULL: unset,
 * the default).  VIT_E_ARG with "NAME=text: ..." naming what is allowed when the text is not. */
vit_status vit_knob_parse(vit_knob_id id, const char *text, int *value, char *err, size_t errlen);
/* Every knob from lookup(name, ctx) (NULL: unset) into values[VIT_KNOB_COUNT] and, per knob, a
 * bit in *set_mask when the lookup had it.  Stops at the first bad value (VIT_E_ARG). */
vit_status vit_knobs_parse_all(const char *(*lookup)(const char *name, void *ctx), void *ctx,
                               int *values, unsigned *set_mask, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
