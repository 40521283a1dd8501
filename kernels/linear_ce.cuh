/* linear_ce.cuh: the kernels of head training on the GPU (engine/cuda/train_cuda.cu), FP32
 * throughout, each the device twin of a loop in engine/train/train.c (the CPU reference):
 *   gather_rows     xb (B, D), yb (B) = x[idx], y[idx]                 (train.c gather)
 *   softmax_ce      logits (B, C) + b -> per-row loss, argmax hits, and dlogits in place:
 *                   (softmax - onehot) / B                             (train.c batch_ce)
 *   loss_accumulate acc (double) += row losses, in row order           (batch_ce's loss sum)
 *   col_sums        db (C) = column sums of dlogits, in row order      (batch_ce's db)
 *   optim_update    AdamW / SGD on a parameter vector                  (train_optim_update, engine/cuda/train_cuda.h)
 * The GEMMs (logits = xb w^T, dw = dlogits^T xb) are cuBLAS SGEMMs in train_cuda.cu.
 * Exactness against the CPU matters more than speed here (the head is tiny): the optimizer uses
 * explicitly rounded operations (__fmul_rn, __fadd_rn, ...) so nvcc cannot fuse them into FMAs
 * and every element follows the CPU's sequence of IEEE roundings; the softmax reductions differ
 * from the CPU's only in summation order.  Launchers take a stream and check nothing (see
 * common.cuh). */
#pragma once
#include "common.cuh"
#include "cuda/train_cuda.h"

#define VK_CE_THREADS 256

/* one block per row i: xb[i, :] = x[idx[i], :], yb[i] = y[idx[i]] */
__global__ void vk_gather_rows(float *__restrict__ xb, int32_t *__restrict__ yb,
                               const float *__restrict__ x, const int32_t *__restrict__ y,
                               const int32_t *__restrict__ idx, int D) {
    const int i = blockIdx.x;
    const long long src = (long long)idx[i] * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) xb[(long long)i * D + d] = x[src + d];
    if (threadIdx.x == 0) yb[i] = y[idx[i]];
}

/* block-wide (max, argmax) with the lowest index winning ties, as the CPU's first strict max */
__device__ void vk_block_argmax(float &v, int &arg) {
    __shared__ float sv[32];
    __shared__ int sa[32];
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, o);
        int oa = __shfl_xor_sync(0xffffffffu, arg, o);
        if (ov > v || (ov == v && oa < arg)) { v = ov; arg = oa; }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) { sv[warp] = v; sa[warp] = arg; }
    __syncthreads();
    if (warp == 0) {
        v = lane < nw ? sv[lane] : -INFINITY;
        arg = lane < nw ? sa[lane] : 0x7fffffff;
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, v, o);
            int oa = __shfl_xor_sync(0xffffffffu, arg, o);
            if (ov > v || (ov == v && oa < arg)) { v = ov; arg = oa; }
        }
        if (lane == 0) { sv[0] = v; sa[0] = arg; }
    }
    __syncthreads();
    v = sv[0];
    arg = sa[0];
}

__device__ float vk_block_sum(float v) {
    __shared__ float s[32];
    v = vk_warp_sum(v);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) s[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = vk_warp_sum(lane < nw ? s[lane] : 0.f);
        if (lane == 0) s[0] = v;
    }
    __syncthreads();
    return s[0];
}

/* One block per row i of logits (B, C), which holds xb w^T on entry.  Adds the bias, counts an
 * argmax hit into *hits (may be NULL), writes row_loss[i] = -log_softmax[y] (row_loss may be
 * NULL), and with grad != 0 leaves dlogits = (softmax - onehot) * inv_b in the row. */
__global__ void vk_softmax_ce(float *__restrict__ logits, const float *__restrict__ b,
                              const int32_t *__restrict__ yb, int C, float inv_b,
                              float *__restrict__ row_loss, int *__restrict__ hits, int grad) {
    float *l = logits + (long long)blockIdx.x * C;
    const int yi = yb[blockIdx.x];
    float mx = -INFINITY;
    int arg = 0x7fffffff;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float z = __fadd_rn(l[c], b[c]);
        l[c] = z;
        if (z > mx || arg == 0x7fffffff) { mx = z; arg = c; }
    }
    vk_block_argmax(mx, arg);
    const float zy = __fsub_rn(l[yi], mx);      /* every thread: l[yi] written before the sync */
    __syncthreads();                             /* ... and read by all before it becomes exp */
    float part = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float e = expf(__fsub_rn(l[c], mx));
        if (grad) l[c] = e;
        part = __fadd_rn(part, e);
    }
    const float sum = vk_block_sum(part);
    if (threadIdx.x == 0) {
        if (hits && arg == yi) atomicAdd(hits, 1);
        if (row_loss) row_loss[blockIdx.x] = __fsub_rn(logf(sum), zy);
    }
    if (!grad) return;
    const float inv = __fdiv_rn(1.f, sum);
    for (int c = threadIdx.x; c < C; c += blockDim.x) l[c] = __fmul_rn(__fmul_rn(l[c], inv), inv_b);
    __syncthreads();
    if (threadIdx.x == 0) l[yi] = __fsub_rn(l[yi], inv_b);
}

/* one thread: *acc += row_loss[0..B) in order, in double (the CPU's loss sum) */
__global__ void vk_loss_accumulate(double *acc, const float *__restrict__ row_loss, int B) {
    double s = *acc;
    for (int i = 0; i < B; i++) s += (double)row_loss[i];
    *acc = s;
}

/* db[c] = sum over rows i (in order) of dl[i, c]; dl (B, C) */
__global__ void vk_col_sums(float *__restrict__ db, const float *__restrict__ dl, int B, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.f;
    for (int i = 0; i < B; i++) s = __fadd_rn(s, dl[(long long)i * C + c]);
    db[c] = s;
}

/* p (n) updated from g (n) with state m, v (n each): train_optim_update (engine/cuda/train_cuda.h, what train.c runs), same operations in
 * the same order, each rounded on its own */
__global__ void vk_optim_update(float *__restrict__ p, const float *__restrict__ g,
                                float *__restrict__ m, float *__restrict__ v, long long n,
                                train_coeffs k) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float pi = p[i];
    const float gi = g[i];
    if (k.adamw) {
        pi = __fmul_rn(pi, k.decay);
        const float mi = __fadd_rn(__fmul_rn(m[i], k.b1), __fmul_rn(gi, k.c1));
        const float vi = __fadd_rn(__fmul_rn(v[i], k.b2), __fmul_rn(__fmul_rn(gi, gi), k.c2));
        m[i] = mi;
        v[i] = vi;
        const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), k.bc2_sqrt), k.eps);
        pi = __fadd_rn(pi, __fmul_rn(-k.step_size, __fdiv_rn(mi, denom)));
    } else {
        float d = gi;
        if (k.wd != 0.f) d = __fadd_rn(d, __fmul_rn(k.wd, pi));
        if (k.mom != 0.f) {
            const float mi = k.first ? d : __fadd_rn(__fmul_rn(m[i], k.mom), d);
            m[i] = mi;
            d = mi;
        }
        pi = __fadd_rn(pi, __fmul_rn(-k.lr, d));
    }
    p[i] = pi;
}

/* ---- launchers -------------------------------------------------------------------------- */

static inline void vk_launch_gather_rows(float *xb, int32_t *yb, const float *x, const int32_t *y,
                                         const int32_t *idx, int B, int D, cudaStream_t st) {
    vk_gather_rows<<<B, 128, 0, st>>>(xb, yb, x, y, idx, D);
}
static inline void vk_launch_softmax_ce(float *logits, const float *b, const int32_t *yb, int B,
                                        int C, float *row_loss, int *hits, int grad,
                                        cudaStream_t st) {
    vk_softmax_ce<<<B, VK_CE_THREADS, 0, st>>>(logits, b, yb, C, 1.f / (float)B, row_loss, hits,
                                               grad);
}
static inline void vk_launch_loss_accumulate(double *acc, const float *row_loss, int B,
                                             cudaStream_t st) {
    vk_loss_accumulate<<<1, 1, 0, st>>>(acc, row_loss, B);
}
static inline void vk_launch_col_sums(float *db, const float *dl, int B, int C, cudaStream_t st) {
    vk_col_sums<<<vk_cdiv(C, 128), 128, 0, st>>>(db, dl, B, C);
}
static inline void vk_launch_optim_update(float *p, const float *g, float *m, float *v,
                                          long long n, const train_coeffs &k, cudaStream_t st) {
    vk_optim_update<<<vk_cdiv(n, 256), 256, 0, st>>>(p, g, m, v, n, k);
}
