/* model.h: internal layout of a loaded model (engine-private; the public API is vit.h).
 * Written by the loader (model.c, io/), then read-only: every backend (cpu/, cuda/) only reads it;
 * what a backend derives from it per process (the CPU's packed weights) lives in the backend.
 * All parameters are FP32 in one allocation (params), whatever the checkpoint's dtype; the
 * pointers below point into it.  Layouts are PyTorch's: Linear weights are (out, in), row-major.
 * The naming scheme (HF, timm, torchvision) is resolved at load time: HF's separate q/k/v are
 * concatenated into qkv_w, torchvision's in_proj is already so. */
#ifndef VIT_MODEL_H
#define VIT_MODEL_H
#include <stdatomic.h>
#include "vit.h"
#include "io/calib_io.h"

typedef struct vit_layer_weights {
    const float *ln1_w, *ln1_b;   /* (D) */
    const float *qkv_w;           /* (3D, D): rows [q; k; v], heads contiguous inside each */
    const float *qkv_b;           /* (3D): zeros when the checkpoint has no qkv bias */
    const float *proj_w, *proj_b; /* (D, D), (D) */
    const float *ln2_w, *ln2_b;   /* (D) */
    const float *fc1_w, *fc1_b;   /* (M, D), (M) */
    const float *fc2_w, *fc2_b;   /* (D, M), (D) */
} vit_layer_weights;

struct vit_head {
    atomic_int refs;
    int num_classes, dim;
    float *w;                     /* (num_classes, dim) */
    float *b;                     /* (num_classes) */
    char **labels;                /* num_classes strings */
};

struct vit_model {
    vit_config cfg;
    float *params;                /* every FP32 parameter, one allocation */
    size_t params_count;
    const float *patch_w;         /* (D, C, P, P) conv weight == (D, C*P*P) */
    const float *patch_b;         /* (D) */
    const float *cls_token;       /* (D) or NULL when num_prefix_tokens == 0 */
    const float *dist_token;      /* (D) DeiT distillation token, or NULL */
    const float *pos_embed;       /* (num_tokens, D) at cfg.image_size (interpolated at load) */
    vit_layer_weights *layers;    /* num_layers */
    const float *norm_w, *norm_b; /* final LayerNorm over all tokens (D), or NULL (timm fc_norm models) */
    const float *fc_norm_w, *fc_norm_b;       /* LayerNorm after mean pooling (D), or NULL */
    const float *pre_logits_w, *pre_logits_b; /* (D, D) + tanh, or NULL */
    vit_calib calib;              /* calibration.json beside the weights (amax NULL: none) */
    vit_head *head;               /* the checkpoint's head, (num_classes, feature_dim); for DeiT
                                     distilled models [W_cls/2, W_dist/2] with (b_cls+b_dist)/2 */
};

#endif
