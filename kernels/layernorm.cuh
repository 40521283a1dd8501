/* layernorm.cuh: LayerNorm kernels, FP32 statistics.
 *
 * residual_layernorm: the residual add fused with the next LayerNorm.  The residual stream is
 * FP16 (res, as in PyTorch's FP16 eager), the branch outputs (attention projection, MLP fc2)
 * come from FP16 GEMMs; the add and the statistics are FP32:
 *     res[r] = fp16(res[r] + branch[r])   (FP32 add, one rounding; when branch != NULL)
 *     out[r] = LN(res[r]) * w + b         (FP16, the next GEMM's input)
 *   res (N, D) FP16 in/out, branch (N, D) FP16, out (N, D) FP16, w/b (D) FP32.
 * What is normalized is the FP16 value stored in res, not the unrounded FP32 sum: the stream
 * and the LayerNorm input are the same numbers (PyTorch's FP16 eager does the same: x = x + y
 * in FP16, then LN(x)), and branch == NULL (LN only) is the same computation.
 * Bytes per element: res read + written (2 + 2), branch read (2), out written (2) = 8 (12 with
 * the FP32 residual this replaced, kernels/dev/layernorm.cu v4).
 * One warp per row; three passes over the row (sum, centred sum of squares, normalize), the
 * second and third hit L1/L2 (a ViT-B row is 1.5 KB).  V = 2 moves __half2 pairs (D even, so
 * every row starts 4-byte aligned), V = 1 single halves (odd D).  The two-pass variance matches
 * the CPU reference's numerics; kernels/dev/layernorm.cu times alternatives.
 *
 * final_layernorm: the last residual add and the final LayerNorm on the rows that are pooled
 * only (the CLS token, or CLS + distillation token), FP32 out (features are FP32):
 *   row r of out (rows = B*per) comes from residual row (r / per) * T + (r % per).
 *   res is the FP16 stream, or FP32 rows (fc_norm after mean pooling); nothing is stored back,
 *   so the FP32 sum res + branch is normalized unrounded.
 *   w == NULL: no normalization (copy res + branch), used before mean pooling.
 *
 * mean_pool: out[b] = mean over t in [npf, T) of x[b, t]; x (B, T, D) FP32, out (B, D) FP32. */
#pragma once
#include "common.cuh"

VK_INLINE float vk_to_float(float x) { return x; }
VK_INLINE float vk_to_float(__half x) { return __half2float(x); }

/* V consecutive halves at p (4-byte aligned when V = 2) to/from FP32 */
template <int V> VK_INLINE void vk_load_half(float *f, const __half *p) {
    if constexpr (V == 2) {
        float2 t = __half22float2(*reinterpret_cast<const __half2 *>(p));
        f[0] = t.x;
        f[1] = t.y;
    } else {
        f[0] = __half2float(p[0]);
    }
}
template <int V> VK_INLINE void vk_store_half(__half *p, const float *f) {
    if constexpr (V == 2) *reinterpret_cast<__half2 *>(p) = __floats2half2_rn(f[0], f[1]);
    else p[0] = __float2half(f[0]);
}

template <int V>
static __global__ void residual_layernorm_kernel(__half *out, __half *res, const __half *branch,
                                                 const float *w, const float *b, int N, int D,
                                                 float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    __half *r = res + (long long)row * D;
    const __half *br = branch ? branch + (long long)row * D : nullptr;
    float sum = 0.f;
    for (int i = lane * V; i < D; i += 32 * V) {
        float v[V];
        vk_load_half<V>(v, r + i);
        if (br) {
            float y[V];
            vk_load_half<V>(y, br + i);
#pragma unroll
            for (int k = 0; k < V; k++) v[k] = __half2float(__float2half(v[k] + y[k]));
            vk_store_half<V>(r + i, v);   /* exact: v holds FP16 values */
        }
#pragma unroll
        for (int k = 0; k < V; k++) sum += v[k];
    }
    float mean = vk_warp_sum(sum) / D;
    float sq = 0.f;
    for (int i = lane * V; i < D; i += 32 * V) {
        float v[V];
        vk_load_half<V>(v, r + i);   /* this lane's own stores, from L1 */
#pragma unroll
        for (int k = 0; k < V; k++) { float d = v[k] - mean; sq += d * d; }
    }
    float rstd = rsqrtf(vk_warp_sum(sq) / D + eps);
    __half *o = out + (long long)row * D;
    for (int i = lane * V; i < D; i += 32 * V) {
        float v[V];
        vk_load_half<V>(v, r + i);
#pragma unroll
        for (int k = 0; k < V; k++) v[k] = (v[k] - mean) * rstd * w[i + k] + b[i + k];
        vk_store_half<V>(o + i, v);
    }
}

template <typename TR>
static __global__ void final_layernorm_kernel(float *out, const TR *res, const __half *branch,
                                              const float *w, const float *b, int rows, int per,
                                              int T, int D, float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    long long src = (long long)(row / per) * T + (row % per);
    const TR *r = res + src * D;
    const __half *br = branch ? branch + src * D : nullptr;
    float *o = out + (long long)row * D;
    float sum = 0.f;
    for (int i = lane; i < D; i += 32) {
        float v = vk_to_float(r[i]) + (br ? __half2float(br[i]) : 0.f);
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

static inline void residual_layernorm(__half *out, __half *res, const __half *branch,
                                      const float *w, const float *b, int N, int D, float eps,
                                      cudaStream_t st) {
    const int warps = 8;
    if (D % 2 == 0)
        residual_layernorm_kernel<2><<<vk_cdiv(N, warps), warps * 32, 0, st>>>(out, res, branch, w,
                                                                                b, N, D, eps);
    else
        residual_layernorm_kernel<1><<<vk_cdiv(N, warps), warps * 32, 0, st>>>(out, res, branch, w,
                                                                                b, N, D, eps);
}

template <typename TR>
static inline void final_layernorm(float *out, const TR *res, const __half *branch,
                                   const float *w, const float *b, int rows, int per, int T,
                                   int D, float eps, cudaStream_t st) {
    const int warps = 8;
    final_layernorm_kernel<TR><<<vk_cdiv(rows, warps), warps * 32, 0, st>>>(out, res, branch, w,
                                                                              b, rows, per, T, D,
                                                                              eps);
}

static inline void mean_pool(float *out, const float *x, int B, int T, int npf, int D,
                             cudaStream_t st) {
    mean_pool_kernel<<<vk_cdiv((long long)B * D, 256), 256, 0, st>>>(out, x, B, T, npf, D);
}
