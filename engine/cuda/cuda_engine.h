/* cuda_engine.h: the C interface between the engine's C side (cuda_backend.c, which sees
 * struct vit_model and struct vit_head) and the CUDA implementation (cuda_engine.cu, C++ compiled
 * by nvcc, which cannot include model.h because of its C11 atomics).  Plain structs of pointers
 * to the model's FP32 host parameters; the CUDA side converts them at init.  Used only when the
 * build defines VIT_HAVE_CUDA. */
#ifndef VIT_CUDA_ENGINE_H
#define VIT_CUDA_ENGINE_H
#include <stddef.h>
#include <stdint.h>
#include "vit.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vcu_layer {            /* shapes as in model.h */
    const float *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
    const float *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} vcu_layer;

typedef struct vcu_model_desc {
    int image_h, image_w, patch_size, channels; /* input (B, channels, image_h, image_w) */
    int D, L, H, M;                          /* hidden, layers, heads, MLP size */
    int grid_h, grid_w, Np, npf, T;          /* patches (grid_h may differ from grid_w), prefix
                                                tokens, tokens */
    int pooling, feature_dim;                /* vit_pooling: CLS, MEAN or CLS_MEAN ([cls; mean]) */
    float eps;
    const float *patch_w, *patch_b;          /* (D, C*P*P), (D) */
    const float *cls_token, *dist_token;     /* (D) or NULL */
    const float *reg_tokens;                 /* (nreg, D) register tokens after them, or NULL */
    int nreg;
    const float *pos_embed;                  /* (T, D) */
    const float *norm_w, *norm_b;            /* (D) or NULL */
    const float *fc_norm_w, *fc_norm_b;      /* (D) or NULL */
    const float *pre_logits_w, *pre_logits_b;/* (D, D), (D) or NULL */
    const vcu_layer *layers;                 /* L, read during init only */
    int precision;                           /* VCU_FP16, VCU_INT8 or VCU_FP8 */
    const float *act_amax;                   /* (L, 4) activation ranges of the inputs of qkv,
                                                proj, fc1, fc2 (calibration); INT8/FP8 only */
} vcu_model_desc;

/* what the encoder's four Linears compute in (everything else is FP16/FP32 in every mode) */
enum { VCU_FP16 = 0, VCU_INT8 = 1, VCU_FP8 = 2 };

typedef struct vcu_head_desc {
    const void *key;                         /* identity of the head object */
    uint64_t fingerprint;                    /* of its contents, guards against address reuse */
    int C, dim;
    const float *w, *b;                      /* (C, dim), (C) host FP32 */
} vcu_head_desc;

typedef struct vcu_outputs {                 /* any may be NULL */
    float *logits;                           /* (B, C) */
    float *features;                         /* (B, feature_dim) */
    float *attn_cls;                         /* (B, Np) */
    float *attn_rollout;                     /* (B, Np) */
} vcu_outputs;

int vcu_device_count(void);
vit_status vcu_init(void **state, const vcu_model_desc *m, int max_batch, int gpu_id, char *err,
                    size_t errlen);
/* input (B, C, H, W) on the host: FP32 (type VIT_INPUT_F32) or binary16 bits (VIT_INPUT_F16) */
vit_status vcu_forward(void *state, const void *input, vit_input_type type, int B,
                       const vcu_head_desc *head, const vcu_outputs *out, char *err, size_t errlen);
/* pinned (max_batch, C, H, W) host buffer owned by the session */
float *vcu_input_buffer(void *state);
/* pinned host memory (vit_input_alloc); NULL when it cannot be had.  vcu_host_free also frees
 * plain malloc'd memory (vit_input_alloc's fallback when pinning fails). */
void *vcu_host_alloc(size_t bytes);
void vcu_host_free(void *p);
void vcu_free(void *state);
/* name and memory of a device; 0 on success */
int vcu_device_info(int gpu_id, char *name, size_t namelen, size_t *total, size_t *free_b);

#ifdef __cplusplus
}
#endif
#endif
