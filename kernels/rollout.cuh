/* rollout.cuh: attention rollout (Abnar & Zuidema 2020) on the device.
 *
 * Per layer l, with A_l the head-averaged attention (B, T, T) that attention() accumulated:
 *   A'_l = rownorm(0.5 A_l + 0.5 I)                 rollout_prep, in place
 *   R_1  = A'_1;  R_l = A'_l R_{l-1}                rollout_matmul (batched, FP32)
 * and the output is the CLS row over the patch tokens: out[b, p] = R_L[b, 0, npf + p]
 * (rollout_extract).  The engine folds each layer in right after its attention, so memory is
 * three (B, T, T) FP32 buffers whatever the depth (40 MB each at B = 256, T = 197).
 *
 *   A, R, Rn (B, T, T) FP32;  out (B, Np) FP32 */
#pragma once
#include "common.cuh"

/* one warp per row */
static __global__ void rollout_prep_kernel(float *A, int B, int T) {
    long long row = blockIdx.x * (long long)(blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= (long long)B * T) return;
    int i = (int)(row % T);
    float *a = A + row * T;
    float s = 0.f;
    for (int j = lane; j < T; j += 32) {
        float v = 0.5f * a[j] + (j == i ? 0.5f : 0.f);
        a[j] = v;
        s += v;
    }
    float inv = 1.f / vk_warp_sum(s);
    for (int j = lane; j < T; j += 32) a[j] *= inv;
}

/* Rn[b] = A[b] @ R[b], 16x16 tiles through shared memory */
static __global__ void rollout_matmul_kernel(float *Rn, const float *A, const float *R, int T) {
    __shared__ float As[16][17], Rs[16][17];
    const int b = blockIdx.z, tx = threadIdx.x, ty = threadIdx.y;
    const int i = blockIdx.y * 16 + ty, j = blockIdx.x * 16 + tx;
    const float *Ab = A + (size_t)b * T * T, *Rb = R + (size_t)b * T * T;
    float acc = 0.f;
    for (int k0 = 0; k0 < T; k0 += 16) {
        As[ty][tx] = (i < T && k0 + tx < T) ? Ab[(size_t)i * T + k0 + tx] : 0.f;
        Rs[ty][tx] = (k0 + ty < T && j < T) ? Rb[(size_t)(k0 + ty) * T + j] : 0.f;
        __syncthreads();
        for (int k = 0; k < 16; k++) acc += As[ty][k] * Rs[k][tx];
        __syncthreads();
    }
    if (i < T && j < T) Rn[(size_t)b * T * T + (size_t)i * T + j] = acc;
}

static __global__ void rollout_extract_kernel(float *out, const float *R, int B, int T, int npf) {
    int Np = T - npf;
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= (long long)B * Np) return;
    long long b = i / Np;
    int p = (int)(i % Np);
    out[i] = R[b * T * T + npf + p];
}

static inline void rollout_prep(float *A, int B, int T, cudaStream_t st) {
    rollout_prep_kernel<<<vk_cdiv((long long)B * T, 8), 256, 0, st>>>(A, B, T);
}
static inline void rollout_matmul(float *Rn, const float *A, const float *R, int B, int T,
                                  cudaStream_t st) {
    dim3 grid(vk_cdiv(T, 16), vk_cdiv(T, 16), B), block(16, 16);
    rollout_matmul_kernel<<<grid, block, 0, st>>>(Rn, A, R, T);
}
static inline void rollout_extract(float *out, const float *R, int B, int T, int npf,
                                   cudaStream_t st) {
    rollout_extract_kernel<<<vk_cdiv((long long)B * (T - npf), 256), 256, 0, st>>>(out, R, B, T,
                                                                                   npf);
}
