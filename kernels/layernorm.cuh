/* layernorm.cuh: LayerNorm kernels, FP32 statistics.
 *
 * residual_layernorm: the residual add fused with the next LayerNorm.  The residual stream is
 * kept in FP32 (res), the branch outputs (attention projection, MLP fc2) come from FP16 GEMMs:
 *     res[r] += branch[r]            (when branch != NULL)
 *     out[r]  = LN(res[r]) * w + b   (FP16, the next GEMM's input)
 *   res (N, D) FP32 in/out, branch (N, D) FP16, out (N, D) FP16, w/b (D) FP32.
 * One warp per row; three passes over the row (sum, centred sum of squares, normalize), the
 * second and third hit L1/L2 (a ViT-B row is 3 KB).  The two-pass variance matches the CPU
 * reference's numerics; kernels/dev/layernorm.cu times alternatives.
 *
 * final_layernorm: the last residual add and the final LayerNorm on the rows that are pooled
 * only (the CLS token, or CLS + distillation token), FP32 out (features are FP32):
 *   row r of out (rows = B*per) comes from residual row (r / per) * T + (r % per).
 *   w == NULL: no normalization (copy res + branch), used before mean pooling.
 *
 * mean_pool: out[b] = mean over t in [npf, T) of x[b, t]; x (B, T, D) FP32, out (B, D) FP32. */
#pragma once
#include "common.cuh"

static __global__ void residual_layernorm_kernel(__half *out, float *res, const __half *branch,
                                          const float *w, const float *b, int N, int D,
                                          float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    float *r = res + (long long)row * D;
    const __half *br = branch ? branch + (long long)row * D : nullptr;
    float sum = 0.f;
    for (int i = lane; i < D; i += 32) {
        float v = r[i];
        if (br) { v += __half2float(br[i]); r[i] = v; }
        sum += v;
    }
    float mean = vk_warp_sum(sum) / D;
    float sq = 0.f;
    for (int i = lane; i < D; i += 32) { float d = r[i] - mean; sq += d * d; }
    float rstd = rsqrtf(vk_warp_sum(sq) / D + eps);
    __half *o = out + (long long)row * D;
    for (int i = lane; i < D; i += 32) o[i] = __float2half((r[i] - mean) * rstd * w[i] + b[i]);
}

static __global__ void final_layernorm_kernel(float *out, const float *res, const __half *branch,
                                       const float *w, const float *b, int rows, int per, int T,
                                       int D, float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    long long src = (long long)(row / per) * T + (row % per);
    const float *r = res + src * D;
    const __half *br = branch ? branch + src * D : nullptr;
    float *o = out + (long long)row * D;
    float sum = 0.f;
    for (int i = lane; i < D; i += 32) {
        float v = r[i] + (br ? __half2float(br[i]) : 0.f);
        o[i] = v;
        sum += v;
    }
    if (!w) return;
    __syncwarp();
    float mean = vk_warp_sum(sum) / D;
    float sq = 0.f;
    for (int i = lane; i < D; i += 32) { float d = o[i] - mean; sq += d * d; }
    float rstd = rsqrtf(vk_warp_sum(sq) / D + eps);
    for (int i = lane; i < D; i += 32) o[i] = (o[i] - mean) * rstd * w[i] + b[i];
}

static __global__ void mean_pool_kernel(float *out, const float *x, int B, int T, int npf, int D) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= (long long)B * D) return;
    int d = (int)(i % D);
    long long bb = i / D;
    float s = 0.f;
    for (int t = npf; t < T; t++) s += x[(bb * T + t) * D + d];
    out[i] = s / (float)(T - npf);
}

static inline void residual_layernorm(__half *out, float *res, const __half *branch,
                                      const float *w, const float *b, int N, int D, float eps,
                                      cudaStream_t st) {
    const int warps = 8;
    residual_layernorm_kernel<<<vk_cdiv(N, warps), warps * 32, 0, st>>>(out, res, branch, w, b,
                                                                          N, D, eps);
}

static inline void final_layernorm(float *out, const float *res, const __half *branch,
                                   const float *w, const float *b, int rows, int per, int T,
                                   int D, float eps, cudaStream_t st) {
    const int warps = 8;
    final_layernorm_kernel<<<vk_cdiv(rows, warps), warps * 32, 0, st>>>(out, res, branch, w, b,
                                                                          rows, per, T, D, eps);
}

static inline void mean_pool(float *out, const float *x, int B, int T, int npf, int D,
                             cudaStream_t st) {
    mean_pool_kernel<<<vk_cdiv((long long)B * D, 256), 256, 0, st>>>(out, x, B, T, npf, D);
}
