/* softmax_topk.cuh: softmax and top-k over each row of the logits, on the device, so a server
 * can copy back k (index, score) pairs instead of the whole (B, C) matrix (21843 classes for
 * in21k heads).  One block per row.
 *
 *   logits (B, C) FP32;  probs (B, C) FP32 (may be NULL);  idx (B, k) int32, val (B, k) FP32
 *   (probabilities, descending; ties go to the lower index, as vit_topk does).  k <= 64.
 * Top-k is k rounds of a block-wide argmax that skips the indices already taken: O(k C / threads
 * + k^2) per row, cheap for the k <= 10 a classifier returns. */
#pragma once
#include "common.cuh"

#define VK_TOPK_MAX 64

static __global__ void softmax_topk_kernel(float *probs, int *idx, float *val, const float *logits,
                                    int C, int k) {
    __shared__ float red_v[32];
    __shared__ int red_i[32];
    __shared__ int taken[VK_TOPK_MAX];
    __shared__ float stat[2];
    const float *x = logits + (size_t)blockIdx.x * C;
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, nw = blockDim.x / 32;

    float m = -INFINITY;
    for (int j = tid; j < C; j += blockDim.x) m = fmaxf(m, x[j]);
    m = vk_warp_max(m);
    if (lane == 0) red_v[warp] = m;
    __syncthreads();
    if (tid == 0) {
        float mm = -INFINITY;
        for (int w = 0; w < nw; w++) mm = fmaxf(mm, red_v[w]);
        stat[0] = mm;
    }
    __syncthreads();
    m = stat[0];
    float s = 0.f;
    for (int j = tid; j < C; j += blockDim.x) s += expf(x[j] - m);
    s = vk_warp_sum(s);
    __syncthreads();
    if (lane == 0) red_v[warp] = s;
    __syncthreads();
    if (tid == 0) {
        float ss = 0.f;
        for (int w = 0; w < nw; w++) ss += red_v[w];
        stat[1] = 1.f / ss;
    }
    __syncthreads();
    const float inv = stat[1];
    if (probs)
        for (int j = tid; j < C; j += blockDim.x) probs[(size_t)blockIdx.x * C + j] = expf(x[j] - m) * inv;

    if (k > C) k = C;
    for (int r = 0; r < k; r++) {
        float bv = -INFINITY;
        int bi = 0x7fffffff;
        for (int j = tid; j < C; j += blockDim.x) {
            bool skip = false;
            for (int q = 0; q < r; q++) skip |= (taken[q] == j);
            float v = x[j];
            if (!skip && (v > bv || (v == bv && j < bi))) { bv = v; bi = j; }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ov > bv || (ov == bv && oi < bi)) { bv = ov; bi = oi; }
        }
        if (lane == 0) { red_v[warp] = bv; red_i[warp] = bi; }
        __syncthreads();
        if (tid == 0) {
            float v = red_v[0];
            int i = red_i[0];
            for (int w = 1; w < nw; w++)
                if (red_v[w] > v || (red_v[w] == v && red_i[w] < i)) { v = red_v[w]; i = red_i[w]; }
            taken[r] = i;
            idx[(size_t)blockIdx.x * k + r] = i;
            val[(size_t)blockIdx.x * k + r] = expf(v - m) * inv;
        }
        __syncthreads();
    }
}

/* k in [1, VK_TOPK_MAX] and k <= C (the caller checks) */
static inline void softmax_topk(float *probs, int *idx, float *val, const float *logits, int B,
                                int C, int k, cudaStream_t st) {
    softmax_topk_kernel<<<B, 256, 0, st>>>(probs, idx, val, logits, C, k);
}
