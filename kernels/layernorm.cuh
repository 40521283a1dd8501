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
 * One warp per row.  When D % 8 == 0 (every ViT), the row is held in registers
 * (residual_layernorm_rows_kernel: 16-byte loads, all issued before any arithmetic, one memory
 * round trip per row); otherwise three passes over the row (sum, centred sum of squares,
 * normalize; the second and third hit L1/L2), V = 2 moving __half2 pairs (D even), V = 1 single
 * halves (odd D).  Both use the two-pass variance of the CPU reference; kernels/dev/layernorm.cu
 * times alternatives (the three-pass kernel waits on memory once per element a lane: its
 * measured cost is in kernels/dev/NOTES.md).
 *
 * residual_layernorm_quant: the same, with the LayerNorm output quantized for an INT8 / FP8 GEMM
 * instead of stored as FP16 (kernels/quant.cuh's vk_quant1 on the FP32 value, the rounding the
 * CPU reference applies to its FP32 LayerNorm output): qo.q (N, D) bytes, 1 per element instead
 * of the FP16 out's 2, and no separate quantize pass re-reading it.
 *
 * final_layernorm: the last residual add and the final LayerNorm on the rows that are pooled
 * only (the CLS token, or CLS + distillation token), FP32 out (features are FP32):
 *   row r of out (rows = B*per) comes from residual row (r / per) * T + (r % per).
 *   res is the FP16 stream, or FP32 rows (fc_norm after mean pooling); nothing is stored back,
 *   so the FP32 sum res + branch is normalized unrounded.
 *   w == NULL: no normalization (copy res + branch), used before mean pooling.
 *
 * mean_pool: out[b] = mean over t in [npf, T) of x[b, t]; x (B, T, D) FP32, out (B, D) FP32.
 *   with_cls ([class token; mean] pooling, DINOv2's linear head): out (B, 2D), row b =
 *   [x[b, 0]; that mean], the CPU reference's layout (engine/cpu/cpu_forward.c). */
#pragma once
#include "common.cuh"
#include "quant.cuh"

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
                                                 float eps, vk_qout qo) {
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
    const long long o = (long long)row * D;
    for (int i = lane * V; i < D; i += 32 * V) {
        float v[V];
        vk_load_half<V>(v, r + i);
#pragma unroll
        for (int k = 0; k < V; k++) v[k] = (v[k] - mean) * rstd * w[i + k] + b[i + k];
        if (qo.q)
#pragma unroll
            for (int k = 0; k < V; k++) qo.q[o + i + k] = vk_quant1(v[k], qo.inv, qo.type);
        else
            vk_store_half<V>(out + o + i, v);
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

/* ---- register-resident rows (D % 8 == 0, D <= 32 * 8 * VK_LN_MAX_CH) ------------------------
 * One warp per row, the row in registers: lane l holds the 8-element chunks l, l + 32, ... (CH
 * of them), loaded with 16-byte loads that are all issued before any arithmetic, so a row costs
 * one memory round trip (the generic kernels above wait on memory once per element a lane;
 * kernels/dev/NOTES.md has what that costs).  Same numerics as the generic kernels. */
#define VK_LN_MAX_CH 8

VK_INLINE void vk_load8(float *f, const __half *p) {
    const uint4 u = *reinterpret_cast<const uint4 *>(p);
    const __half2 *h = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const float2 t = __half22float2(h[k]);
        f[2 * k] = t.x;
        f[2 * k + 1] = t.y;
    }
}
VK_INLINE void vk_load8(float *f, const float *p) {
    const float4 a = *reinterpret_cast<const float4 *>(p), c = *reinterpret_cast<const float4 *>(p + 4);
    f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w; f[4] = c.x; f[5] = c.y; f[6] = c.z; f[7] = c.w;
}
VK_INLINE void vk_store8(__half *p, const float *f) {
    uint4 u;
    __half2 *h = reinterpret_cast<__half2 *>(&u);
#pragma unroll
    for (int k = 0; k < 4; k++) h[k] = __floats2half2_rn(f[2 * k], f[2 * k + 1]);
    *reinterpret_cast<uint4 *>(p) = u;
}
VK_INLINE void vk_store8(float *p, const float *f) {
    *reinterpret_cast<float4 *>(p) = make_float4(f[0], f[1], f[2], f[3]);
    *reinterpret_cast<float4 *>(p + 4) = make_float4(f[4], f[5], f[6], f[7]);
}

/* LN of the row held as v[CH][8] (chunks lane + 32c, nch of them): mean, centred variance,
 * then v = (v - mean) * rstd * w + b in place */
template <int CH>
VK_INLINE void vk_ln_regs(float (*v)[8], int lane, int nch, int D, const float *w, const float *b,
                          float eps) {
    float sum = 0.f;
#pragma unroll
    for (int c = 0; c < CH; c++)
        if (lane + 32 * c < nch)
#pragma unroll
            for (int k = 0; k < 8; k++) sum += v[c][k];
    const float mean = vk_warp_sum(sum) / D;
    float sq = 0.f;
#pragma unroll
    for (int c = 0; c < CH; c++)
        if (lane + 32 * c < nch)
#pragma unroll
            for (int k = 0; k < 8; k++) { const float d = v[c][k] - mean; sq += d * d; }
    const float rstd = rsqrtf(vk_warp_sum(sq) / D + eps);
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int ch = lane + 32 * c;
        if (ch >= nch) continue;
        float wv[8], bv[8];
        vk_load8(wv, w + ch * 8);
        vk_load8(bv, b + ch * 8);
#pragma unroll
        for (int k = 0; k < 8; k++) v[c][k] = (v[c][k] - mean) * rstd * wv[k] + bv[k];
    }
}

/* this lane's chunks (lane + 32c, nch in the row) of a row, and of the branch row when there
 * is one, into registers; every load issued before any use */
template <int CH, typename TR>
VK_INLINE void vk_load_row(float (*v)[8], float (*y)[8], const TR *r, const __half *br, int lane,
                           int nch) {
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int ch = lane + 32 * c;
        if (ch >= nch) continue;
        vk_load8(v[c], r + ch * 8);
        if (br) vk_load8(y[c], br + ch * 8);
    }
}
template <int CH, typename TO>
VK_INLINE void vk_store_row(TO *o, float (*v)[8], int lane, int nch) {
#pragma unroll
    for (int c = 0; c < CH; c++)
        if (lane + 32 * c < nch) vk_store8(o + (lane + 32 * c) * 8, v[c]);
}

/* this lane's chunks of a row quantized (vk_quant1) into q: 8 bytes a chunk, one 8-byte store */
template <int CH>
VK_INLINE void vk_store_row_quant(uint8_t *q, float (*v)[8], int lane, int nch, float inv, int type) {
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const int ch = lane + 32 * c;
        if (ch >= nch) continue;
        uint32_t lo = 0, hi = 0;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            lo |= (uint32_t)vk_quant1(v[c][k], inv, type) << (8 * k);
            hi |= (uint32_t)vk_quant1(v[c][k + 4], inv, type) << (8 * k);
        }
        *reinterpret_cast<uint2 *>(q + ch * 8) = make_uint2(lo, hi);
    }
}

template <int CH>
static __global__ void residual_layernorm_rows_kernel(__half *out, __half *res, const __half *branch,
                                                      const float *w, const float *b, int N, int D,
                                                      float eps, vk_qout qo) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const int nch = D / 8;
    __half *r = res + (long long)row * D;
    const __half *br = branch ? branch + (long long)row * D : nullptr;
    float v[CH][8], y[CH][8];
    vk_load_row<CH>(v, y, r, br, lane, nch);
    if (br) {
#pragma unroll
        for (int c = 0; c < CH; c++) {
            const int ch = lane + 32 * c;
            if (ch >= nch) continue;
#pragma unroll
            for (int k = 0; k < 8; k++) v[c][k] = __half2float(__float2half(v[c][k] + y[c][k]));
            vk_store8(r + ch * 8, v[c]);   /* exact: v holds FP16 values */
        }
    }
    vk_ln_regs<CH>(v, lane, nch, D, w, b, eps);
    if (qo.q) vk_store_row_quant<CH>(qo.q + (long long)row * D, v, lane, nch, qo.inv, qo.type);
    else vk_store_row<CH>(out + (long long)row * D, v, lane, nch);
}

template <int CH, typename TR>
static __global__ void final_layernorm_rows_kernel(float *out, const TR *res, const __half *branch,
                                                   const float *w, const float *b, int rows, int per,
                                                   int T, int D, float eps) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const int nch = D / 8;
    const long long src = (long long)(row / per) * T + (row % per);
    const TR *r = res + src * D;
    const __half *br = branch ? branch + src * D : nullptr;
    float v[CH][8], y[CH][8];
    vk_load_row<CH>(v, y, r, br, lane, nch);
    if (br)
#pragma unroll
        for (int c = 0; c < CH; c++)
#pragma unroll
            for (int k = 0; k < 8; k++) v[c][k] += y[c][k];
    if (w) vk_ln_regs<CH>(v, lane, nch, D, w, b, eps);
    vk_store_row<CH>(out + (long long)row * D, v, lane, nch);
}

/* chunks of 8 a lane for the register-resident kernels, 0 when they do not apply (D % 8, D too
 * wide, or a pointer not 16-byte aligned) */
static inline int vk_ln_rows_chunks(int D, const void *p0, const void *p1, const void *p2,
                                    const void *p3, const void *p4) {
    const uintptr_t a = (uintptr_t)p0 | (uintptr_t)p1 | (uintptr_t)p2 | (uintptr_t)p3 | (uintptr_t)p4;
    if (D % 8 || a % 16 || D > 32 * 8 * VK_LN_MAX_CH) return 0;
    const int ch = vk_cdiv(D / 8, 32);
    return ch <= 4 ? ch : ch <= 6 ? 6 : 8;   /* the instantiated widths */
}
#define VK_LN_ROWS_WARPS 4

static __global__ void mean_pool_kernel(float *out, const float *x, int B, int T, int npf, int D,
                                        int with_cls) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= (long long)B * D) return;
    int d = (int)(i % D);
    long long bb = i / D;
    float s = 0.f;
    for (int t = npf; t < T; t++) s += x[(bb * T + t) * D + d];
    float *o = out + bb * (with_cls ? 2 : 1) * D;
    if (with_cls) {
        o[d] = x[bb * T * D + d];   /* the class token's row */
        o += D;
    }
    o[d] = s / (float)(T - npf);
}

/* out = LN(res [+= branch]) as FP16, or (qo.q != NULL) quantized into qo.q instead */
static inline void residual_layernorm_any(__half *out, __half *res, const __half *branch,
                                          const float *w, const float *b, int N, int D, float eps,
                                          vk_qout qo, cudaStream_t st) {
    const int rw = VK_LN_ROWS_WARPS, rg = vk_cdiv(N, rw);
    const void *dst = qo.q ? (const void *)qo.q : (const void *)out;
    switch (vk_ln_rows_chunks(D, dst, res, branch, w, b)) {
    case 1: residual_layernorm_rows_kernel<1><<<rg, rw * 32, 0, st>>>(out, res, branch, w, b, N, D, eps, qo); return;
    case 2: residual_layernorm_rows_kernel<2><<<rg, rw * 32, 0, st>>>(out, res, branch, w, b, N, D, eps, qo); return;
    case 3: residual_layernorm_rows_kernel<3><<<rg, rw * 32, 0, st>>>(out, res, branch, w, b, N, D, eps, qo); return;
    case 4: residual_layernorm_rows_kernel<4><<<rg, rw * 32, 0, st>>>(out, res, branch, w, b, N, D, eps, qo); return;
    case 6: residual_layernorm_rows_kernel<6><<<rg, rw * 32, 0, st>>>(out, res, branch, w, b, N, D, eps, qo); return;
    case 8: residual_layernorm_rows_kernel<8><<<rg, rw * 32, 0, st>>>(out, res, branch, w, b, N, D, eps, qo); return;
    }
    const int warps = 8;
    if (D % 2 == 0)
        residual_layernorm_kernel<2><<<vk_cdiv(N, warps), warps * 32, 0, st>>>(out, res, branch, w,
                                                                                b, N, D, eps, qo);
    else
        residual_layernorm_kernel<1><<<vk_cdiv(N, warps), warps * 32, 0, st>>>(out, res, branch, w,
                                                                                b, N, D, eps, qo);
}

static inline void residual_layernorm(__half *out, __half *res, const __half *branch,
                                      const float *w, const float *b, int N, int D, float eps,
                                      cudaStream_t st) {
    residual_layernorm_any(out, res, branch, w, b, N, D, eps, vk_qout{}, st);
}

/* qo.q (N, D) = the INT8 / FP8 (qo.type) quantization, multiplier qo.inv, of LN(res [+= branch]) */
static inline void residual_layernorm_quant(vk_qout qo, __half *res, const __half *branch,
                                            const float *w, const float *b, int N, int D,
                                            float eps, cudaStream_t st) {
    residual_layernorm_any(nullptr, res, branch, w, b, N, D, eps, qo, st);
}

template <typename TR>
static inline void final_layernorm(float *out, const TR *res, const __half *branch,
                                   const float *w, const float *b, int rows, int per, int T,
                                   int D, float eps, cudaStream_t st) {
    const int rw = VK_LN_ROWS_WARPS, rg = vk_cdiv(rows, rw);
    switch (vk_ln_rows_chunks(D, out, res, branch, w, b)) {
    case 1: final_layernorm_rows_kernel<1, TR><<<rg, rw * 32, 0, st>>>(out, res, branch, w, b, rows, per, T, D, eps); return;
    case 2: final_layernorm_rows_kernel<2, TR><<<rg, rw * 32, 0, st>>>(out, res, branch, w, b, rows, per, T, D, eps); return;
    case 3: final_layernorm_rows_kernel<3, TR><<<rg, rw * 32, 0, st>>>(out, res, branch, w, b, rows, per, T, D, eps); return;
    case 4: final_layernorm_rows_kernel<4, TR><<<rg, rw * 32, 0, st>>>(out, res, branch, w, b, rows, per, T, D, eps); return;
    case 6: final_layernorm_rows_kernel<6, TR><<<rg, rw * 32, 0, st>>>(out, res, branch, w, b, rows, per, T, D, eps); return;
    case 8: final_layernorm_rows_kernel<8, TR><<<rg, rw * 32, 0, st>>>(out, res, branch, w, b, rows, per, T, D, eps); return;
    }
    const int warps = 8;
    final_layernorm_kernel<TR><<<vk_cdiv(rows, warps), warps * 32, 0, st>>>(out, res, branch, w,
                                                                              b, rows, per, T, D,
                                                                              eps);
}

/* out (B*npf, D) = the prefix rows (t < npf) of x (B*T, D): the rows the last layer still needs
 * when only the class (and distillation) token is pooled.  One 16-byte chunk a thread when D % 8
 * == 0 and both are 16-byte aligned, else one half. */
static __global__ void prefix_rows_kernel(__half *out, const __half *x, int B, int T, int npf,
                                          int D, int vec) {
    const int per = vec ? D / 8 : D;                 /* units a row */
    const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= (long long)B * npf * per) return;
    const long long row = i / per, u = i % per;
    const long long src = (row / npf) * T + row % npf;
    if (vec) reinterpret_cast<uint4 *>(out + row * D)[u] = reinterpret_cast<const uint4 *>(x + src * D)[u];
    else out[row * D + u] = x[src * D + u];
}

static inline void prefix_rows(__half *out, const __half *x, int B, int T, int npf, int D,
                               cudaStream_t st) {
    const int vec = D % 8 == 0 && ((uintptr_t)out | (uintptr_t)x) % 16 == 0;
    const long long n = (long long)B * npf * (vec ? D / 8 : D);
    prefix_rows_kernel<<<vk_cdiv(n, 256), 256, 0, st>>>(out, x, B, T, npf, D, vec);
}

static inline void mean_pool(float *out, const float *x, int B, int T, int npf, int D, int with_cls,
                             cudaStream_t st) {
    mean_pool_kernel<<<vk_cdiv((long long)B * D, 256), 256, 0, st>>>(out, x, B, T, npf, D, with_cls);
}
