/* naming.h: the tensor names of the three checkpoint naming schemes (Hugging Face, timm,
 * torchvision), one table each, used by the loader (model.c) and the head writer
 * (model_dir_write.c).  A pattern's "%d" is the layer index.  Hugging Face body tensors carry the
 * model prefix ("vit.", "deit." or none); its head tensors do not.  NULL: the scheme has no such
 * tensor.  Engine-internal. */
#ifndef VIT_NAMING_H
#define VIT_NAMING_H
#include <stddef.h>

#include "io/safetensors.h"

/* NAMING_HF_DINOV2: transformers' Dinov2 / Dinov2WithRegisters (dims from config.json as HF ViT) */
typedef enum { NAMING_HF = 0, NAMING_TIMM, NAMING_TV, NAMING_HF_DINOV2, NAMING_COUNT } naming_id;

#define NAMING_PREFIX_MAX 32   /* "dinov2_with_registers." */

typedef struct naming_scheme {
    naming_id id;
    const char *name;                     /* "hf", "timm", "torchvision" */
    const char *patch_w, *patch_b;        /* conv (D, C, P, P), (D) */
    const char *cls_token, *dist_token;   /* (1, 1, D) */
    const char *reg_token;                /* (1, R, D) register tokens */
    const char *mask_token;               /* unused by classification (ignored when present) */
    const char *pos_embed;                /* (1, T, D) */
    /* per layer */
    const char *ln1_w, *ln1_b;
    const char *qkv_w, *qkv_b;            /* fused (3D, D), (3D); NULL when q/k/v are separate */
    const char *q_k_v_w[3], *q_k_v_b[3];  /* separate query, key, value (D, D), (D) */
    const char *proj_w, *proj_b;
    const char *ln2_w, *ln2_b;
    const char *fc1_w, *fc1_b, *fc2_w, *fc2_b;
    const char *fc1_w_legacy, *fc1_b_legacy, *fc2_w_legacy, *fc2_b_legacy; /* older torchvision */
    const char *ls1, *ls2;                /* LayerScale (D) on the attention and MLP branches */
    /* after the blocks */
    const char *norm_w, *norm_b;          /* final LayerNorm over all tokens */
    const char *fc_norm_w, *fc_norm_b;    /* LayerNorm after mean pooling */
    const char *pre_w, *pre_b;            /* representation layer (D, D) + tanh */
    /* heads (no model prefix) */
    const char *head_w, *head_b;          /* one head (K, feature_dim), (K) */
    const char *head_cls_w, *head_cls_b;  /* DeiT's two heads: on the class token ... */
    const char *head_dist_w, *head_dist_b; /* ... and on the distillation token */
} naming_scheme;

const naming_scheme *naming_get(naming_id id);

/* The scheme of a checkpoint, from its patch embedding; prefix gets the Hugging Face model
 * prefix ("vit.", "deit." or "", "dinov2." or "dinov2_with_registers."; "" for the others).  NULL when
 * none matches. */
const naming_scheme *naming_detect(const st_file *f, char prefix[NAMING_PREFIX_MAX]);

/* name of pattern pat with layer index i; body tensors get prefix (head tensors never do) */
const char *naming_name(const naming_scheme *s, const char *prefix, const char *pat, int i, char *buf,
                        size_t n);

/* 1 when name is a head tensor of any scheme (the ones the head writer replaces) */
int naming_is_head_tensor(const char *name);

#endif
