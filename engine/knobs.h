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

/* one per row of the table in knobs.c (which says what each allows: one copy only) */
typedef enum {
    VIT_KNOB_CPU_PARALLEL,
    VIT_KNOB_GEMM,
    VIT_KNOB_GEMM_I8,
    VIT_KNOB_NO_F16C,
    VIT_KNOB_CUDA_GELU,
    VIT_KNOB_CUDA_ATTN,
    VIT_KNOB_CUDA_ATTN_KC,
    VIT_KNOB_CUDA_ATTN_QT,
    VIT_KNOB_CUDA_GEMM_TUNE,
    VIT_KNOB_CUDA_GEMM_ALGOS,
    VIT_KNOB_CUDA_CLS_ONLY,
    VIT_KNOB_CUDA_RESFUSE,
    VIT_KNOB_CUDA_SUBBATCH,
    VIT_KNOB_CUDA_WARMUP,
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
