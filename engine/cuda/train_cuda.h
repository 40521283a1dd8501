/* train_cuda.h: the seam between head training's host side (train.c: argument checks, the
 * validation split, per-epoch batch orders, optimizer step counting and coefficients,
 * cancellation, progress, results) and the backends that do the arithmetic on their own copy of
 * the parameters: the CPU one in train.c and the CUDA one in train_cuda.cu (C++ compiled by nvcc,
 * built only when VIT_HAVE_CUDA is defined).  Both see the same index arrays and the same
 * per-step coefficients, so CPU and CUDA runs train on identical batches.
 *
 * Shapes: w (C, D), b (C), x (N, D), y (N); the parameters live as one vector [w; b] of
 * C*D + C floats, and so do their gradient and the optimizer state [m; v]. */
#ifndef VIT_TRAIN_CUDA_H
#define VIT_TRAIN_CUDA_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "vit.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Scalars of one optimizer step, computed once on the host (train.c) from torch.optim's rules
 * and applied element by element, in this order, by every backend:
 *   AdamW: p *= decay; m = m*b1 + g*c1; v = v*b2 + g*g*c2;
 *          p += -step_size * (m / (sqrt(v) / bc2_sqrt + eps))
 *   SGD:   d = g (+ wd*p if wd != 0); with momentum: m = first ? d : m*mom + d, d = m;
 *          p += -lr * d */
typedef struct train_coeffs {
    int adamw;                     /* 1: AdamW, 0: SGD */
    int first;                     /* SGD: step 1 (the momentum buffer starts as d) */
    float decay, b1, b2, c1, c2, step_size, bc2_sqrt, eps;   /* AdamW */
    float lr, wd, mom;                                        /* SGD */
} train_coeffs;

/* The CPU backend's optimizer step (train.c), in a header so that the kernel tests
 * (tests/gpu/test_kernels.cu) compare linear_ce.cuh's vk_optim_update bit for bit against this
 * very code: p (n) updated from g (n); m, v point at this tensor's slice of the state. */
static inline void train_optim_update(const train_coeffs *k, float *p, const float *g, float *m,
                                      float *v, size_t n) {
    if (k->adamw) {
        for (size_t i = 0; i < n; i++) {
            p[i] *= k->decay;
            m[i] = m[i] * k->b1 + g[i] * k->c1;
            v[i] = v[i] * k->b2 + g[i] * g[i] * k->c2;
            float denom = sqrtf(v[i]) / k->bc2_sqrt + k->eps;
            p[i] += -k->step_size * (m[i] / denom);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float d = g[i];
            if (k->wd != 0.f) d += k->wd * p[i];
            if (k->mom != 0.f) {
                m[i] = k->first ? d : m[i] * k->mom + d;
                d = m[i];
            }
            p[i] += -k->lr * d;
        }
    }
}

/* One backend's arithmetic on one training run.  Every call may fail with a status and a
 * message in err.  The index array set by set_index (indices into x) stays valid on the host
 * only during the call: a backend copies what it needs. */
typedef struct train_backend {
    const char *name;              /* "cpu", "cuda" */
    /* the rows of x that later step/correct calls address by offset: idx[0..n) */
    vit_status (*set_index)(void *ctx, const int32_t *idx, int n, char *err, size_t errlen);
    /* forward + backward on rows idx[off..off+B) and one optimizer step; the batch's loss
     * SUM is added to the epoch's accumulator */
    vit_status (*step)(void *ctx, int off, int B, const train_coeffs *k, char *err, size_t errlen);
    /* the accumulated loss sum (then reset to 0) */
    vit_status (*take_loss)(void *ctx, double *loss_sum, char *err, size_t errlen);
    /* argmax hits of the current weights on rows idx[off..off+n) */
    vit_status (*correct)(void *ctx, int off, int n, int *hits, char *err, size_t errlen);
    /* the current weights into host w (C, D), b (C) (nothing to do when trained in place) */
    vit_status (*read_params)(void *ctx, float *w, float *b, char *err, size_t errlen);
    /* the optimizer state [m; v] (2 (C*D + C) floats) to / from the host: a checkpoint's */
    vit_status (*read_state)(void *ctx, float *mv, char *err, size_t errlen);
    vit_status (*write_state)(void *ctx, const float *mv, char *err, size_t errlen);
    void (*free)(void *ctx);
} train_backend;

/* The CUDA backend (train_cuda.cu, linked only in builds defining VIT_HAVE_CUDA): FP32 throughout; x and y are copied to device gpu_id once,
 * the parameters from w and b; cap is the largest batch a step or an accuracy chunk uses.
 * VIT_E_DEVICE without a usable device, VIT_E_NOMEM, VIT_E_BACKEND on a CUDA/cuBLAS error. */
vit_status vtc_open(void **ctx, const float *w, const float *b, int C, int D, const float *x,
                    const int32_t *y, int N, int cap, int gpu_id, char *err, size_t errlen);
extern const train_backend vtc_backend;

#ifdef __cplusplus
}
#endif
#endif
