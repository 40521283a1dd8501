/* attention.cuh: fused multi-head self-attention, one block per (query tile, head, image).
 *
 *   qkv   (B*T, 3D) FP16, row = b*T + t: [q | k | v], head h at columns h*dh .. h*dh+dh-1
 *   out   (B*T, D)  FP16, head h written at columns h*dh..
 *   attn_avg (B, T, T) FP32 or NULL: += softmax probabilities / H   (caller zeroes it first)
 *   attn_cls (B, T)    FP32 or NULL: += row 0 (CLS) of the same     (caller zeroes it first)
 *
 * attention_wmma_kernel (the fast path, tensor cores through WMMA 16x16x16, FP16 in, FP32 acc):
 *   T is padded to Tp = round_up(T, 16) (197 -> 208).  The block stages all of K and V of its
 *   (image, head) in shared memory (zero rows past T, so padded keys give exactly 0 * 0), and its
 *   16*WARPS query rows.  Each warp owns 16 query rows:
 *     S = Q K^T          16 x Tp FP32 in shared memory (WMMA, K^T read as a col-major fragment)
 *     P = softmax(S * scale) per row in FP32 (exp2 with log2(e) folded into the scale), keys past
 *         T masked; P stored FP16 for the second product; optional head-averaged probabilities
 *         added to attn_avg / attn_cls with atomicAdd (heads land on the same cells)
 *     O = P V            16 x dh FP32, converted to FP16 and written out
 *   Needs dh % 16 == 0; shared memory = 2*Tp*dh*2 (K,V) + 16W*dh*2 (Q) + 16W*Tp*(4+2) (S,P)
 *   [+ 16W*dh*4 when dh > Tp]: 141,312 B (138 KB) for ViT-B/16 at 224 with W = 4, under the 163 KB opt-in
 *   limit of sm_80 and the 227 KB of sm_90.
 * attention_naive_kernel (fallback for any dh / T, and the reference in kernels/dev): one block
 *   per (query row, head, image), scores in shared memory, CUDA cores only.
 * attention() picks the WMMA path when it fits (dh % 16 == 0 and shared memory within the
 * device's opt-in limit, passed in), else the naive one.  attention_prepare() raises the kernels'
 * dynamic shared-memory limit once (call it before capturing a graph).
 *
 * What attention maps are supported: attn_cls is the CLS row of the head-averaged probabilities
 * (the last layer's is the API's attn_cls); attn_avg is the full head-averaged (T, T) matrix of a
 * layer, which the engine asks for at every layer when rollout is requested (kernels/rollout.cuh
 * folds it into the running product right away, so only one layer's matrix is held). */
#pragma once
#include <mma.h>
#include "common.cuh"

#define VK_LOG2E 1.4426950408889634f

/* The naive kernel's score row, padded to a multiple of 32 floats: ptxas merges the guarded tail
 * of the P.V loop's shared loads into one wider load that can reach up to 2 floats past T
 * (harmless on the hardware, but compute-sanitizer memcheck reports it as out of bounds; seen on
 * an H100 with nvcc 13.0 at T = 17). */
static inline size_t attention_naive_smem(int T) { return (size_t)vk_round_up(T, 32) * sizeof(float); }

static inline size_t attention_wmma_smem(int T, int dh, int warps) {
    size_t Tp = (size_t)vk_round_up(T, 16), q = 16 * (size_t)warps;
    size_t s = 2 * Tp * dh * 2 + q * dh * 2 + q * Tp * 4 + q * Tp * 2;
    if ((size_t)dh > Tp) s += q * dh * 4;
    return s;
}

template <int WARPS>
static __global__ void __launch_bounds__(WARPS * 32)
attention_wmma_kernel(__half *out, float *attn_avg, float *attn_cls, const __half *qkv, int T,
                      int H, int dh, float scale, float inv_heads) {
    using namespace nvcuda;
    extern __shared__ __align__(128) unsigned char smem[];
    const int Tp = (T + 15) & ~15;
    const int QT = 16 * WARPS;
    const int D = H * dh, ld = 3 * D;
    const int h = blockIdx.y, b = blockIdx.z, q0 = blockIdx.x * QT;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    __half *Ks = (__half *)smem;                      /* (Tp, dh) */
    __half *Vs = Ks + (size_t)Tp * dh;                /* (Tp, dh) */
    __half *Qs = Vs + (size_t)Tp * dh;                /* (QT, dh) */
    float *Ss = (float *)(Qs + (size_t)QT * dh);      /* (QT, Tp) */
    __half *Ps = (__half *)(Ss + (size_t)QT * Tp);    /* (QT, Tp) */
    float *Os = dh > Tp ? (float *)(Ps + (size_t)QT * Tp) : Ss; /* (QT, dh), aliases S */

    /* stage K, V (all keys) and this tile's Q, 8 halves (16 bytes) per load */
    const __half *base = qkv + (size_t)b * T * ld + (size_t)h * dh;
    const int vec = dh / 8;
    for (int i = threadIdx.x; i < Tp * vec; i += blockDim.x) {
        int t = i / vec, c = (i % vec) * 8;
        uint4 kz = make_uint4(0, 0, 0, 0), vz = kz;
        if (t < T) {
            kz = *(const uint4 *)(base + (size_t)t * ld + D + c);
            vz = *(const uint4 *)(base + (size_t)t * ld + 2 * D + c);
        }
        *(uint4 *)(Ks + (size_t)t * dh + c) = kz;
        *(uint4 *)(Vs + (size_t)t * dh + c) = vz;
    }
    for (int i = threadIdx.x; i < QT * vec; i += blockDim.x) {
        int r = i / vec, c = (i % vec) * 8, t = q0 + r;
        uint4 qz = make_uint4(0, 0, 0, 0);
        if (t < T) qz = *(const uint4 *)(base + (size_t)t * ld + c);
        *(uint4 *)(Qs + (size_t)r * dh + c) = qz;
    }
    __syncthreads();

    const int r0 = q0 + 16 * warp;                    /* first query row of this warp */
    if (r0 >= T) return;                              /* no block-wide barrier below */
    float *S = Ss + (size_t)16 * warp * Tp;
    __half *P = Ps + (size_t)16 * warp * Tp;
    float *O = Os + (size_t)16 * warp * (dh > Tp ? dh : Tp);
    const __half *Q = Qs + (size_t)16 * warp * dh;

    /* S = Q K^T */
    for (int nt = 0; nt < Tp / 16; nt++) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.f);
        for (int kt = 0; kt < dh / 16; kt++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> bk;
            wmma::load_matrix_sync(a, Q + kt * 16, dh);
            wmma::load_matrix_sync(bk, Ks + (size_t)nt * 16 * dh + kt * 16, dh);
            wmma::mma_sync(acc, a, bk, acc);
        }
        wmma::store_matrix_sync(S + nt * 16, acc, Tp, wmma::mem_row_major);
    }
    __syncwarp();

    /* P = softmax(S * scale), FP32 */
    const float sl2 = scale * VK_LOG2E;
    for (int r = 0; r < 16; r++) {
        const int row = r0 + r;
        const float *srow = S + (size_t)r * Tp;
        float m = -INFINITY;
        for (int j = lane; j < T; j += 32) m = fmaxf(m, srow[j] * sl2);
        m = vk_warp_max(m);
        float sum = 0.f;
        for (int j = lane; j < T; j += 32) sum += exp2f(srow[j] * sl2 - m);
        float inv = 1.f / vk_warp_sum(sum);
        __half *prow = P + (size_t)r * Tp;
        const bool keep = row < T;
        float *avg = (keep && attn_avg) ? attn_avg + ((size_t)b * T + row) * T : nullptr;
        float *cls = (row == 0 && attn_cls) ? attn_cls + (size_t)b * T : nullptr;
        for (int j = lane; j < Tp; j += 32) {
            float p = j < T ? exp2f(srow[j] * sl2 - m) * inv : 0.f;
            prow[j] = __float2half(p);
            if (j < T) {
                if (avg) atomicAdd(avg + j, p * inv_heads);
                if (cls) atomicAdd(cls + j, p * inv_heads);
            }
        }
    }
    __syncwarp();

    /* O = P V */
    for (int nt = 0; nt < dh / 16; nt++) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.f);
        for (int kt = 0; kt < Tp / 16; kt++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> bv;
            wmma::load_matrix_sync(a, P + kt * 16, Tp);
            wmma::load_matrix_sync(bv, Vs + (size_t)kt * 16 * dh + nt * 16, dh);
            wmma::mma_sync(acc, a, bv, acc);
        }
        wmma::store_matrix_sync(O + nt * 16, acc, dh, wmma::mem_row_major);
    }
    __syncwarp();

    for (int r = 0; r < 16; r++) {
        const int row = r0 + r;
        if (row >= T) break;
        __half *o = out + ((size_t)b * T + row) * D + (size_t)h * dh;
        for (int c = lane * 2; c < dh; c += 64)
            *(__half2 *)(o + c) = __floats2half2_rn(O[(size_t)r * dh + c], O[(size_t)r * dh + c + 1]);
    }
}

/* one block per (query row i, head h, image b); blockDim.x threads; smem T floats */
static __global__ void attention_naive_kernel(__half *out, float *attn_avg, float *attn_cls,
                                       const __half *qkv, int T, int H, int dh, float scale,
                                       float inv_heads) {
    extern __shared__ float sc[];                     /* (T) scores, then probabilities */
    __shared__ float red[32];
    const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int D = H * dh, ld = 3 * D;
    const __half *base = qkv + (size_t)b * T * ld + (size_t)h * dh;
    const __half *q = base + (size_t)i * ld;
    for (int j = threadIdx.x; j < T; j += blockDim.x) {
        const __half *k = base + (size_t)j * ld + D;
        float s = 0.f;
        for (int d = 0; d < dh; d++) s += __half2float(q[d]) * __half2float(k[d]);
        sc[j] = s * scale;
    }
    __syncthreads();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = (blockDim.x + 31) / 32;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < T; j += blockDim.x) m = fmaxf(m, sc[j]);
    m = vk_warp_max(m);
    if (lane == 0) red[warp] = m;
    __syncthreads();
    m = -INFINITY;
    for (int w = 0; w < nw; w++) m = fmaxf(m, red[w]);
    __syncthreads();
    float s = 0.f;
    for (int j = threadIdx.x; j < T; j += blockDim.x) { float e = expf(sc[j] - m); sc[j] = e; s += e; }
    s = vk_warp_sum(s);
    if (lane == 0) red[warp] = s;
    __syncthreads();
    s = 0.f;
    for (int w = 0; w < nw; w++) s += red[w];
    const float inv = 1.f / s;
    for (int j = threadIdx.x; j < T; j += blockDim.x) {
        float p = sc[j] * inv;
        sc[j] = p;
        if (attn_avg) atomicAdd(attn_avg + ((size_t)b * T + i) * T + j, p * inv_heads);
        if (attn_cls && i == 0) atomicAdd(attn_cls + (size_t)b * T + j, p * inv_heads);
    }
    __syncthreads();
    for (int d = threadIdx.x; d < dh; d += blockDim.x) {
        float acc = 0.f;
        for (int j = 0; j < T; j++) acc += sc[j] * __half2float(base[(size_t)j * ld + 2 * D + d]);
        out[((size_t)b * T + i) * D + (size_t)h * dh + d] = __float2half(acc);
    }
}

#define VK_ATTN_WARPS 4

/* Raise the WMMA kernel's dynamic shared-memory limit (once, before graph capture).  Returns the
 * error, or cudaSuccess. */
static inline cudaError_t attention_prepare(size_t max_smem_optin) {
    return cudaFuncSetAttribute(attention_wmma_kernel<VK_ATTN_WARPS>,
                                cudaFuncAttributeMaxDynamicSharedMemorySize, (int)max_smem_optin);
}

static inline bool attention_uses_wmma(int T, int dh, size_t max_smem_optin) {
    return dh % 16 == 0 && attention_wmma_smem(T, dh, VK_ATTN_WARPS) <= max_smem_optin;
}

static inline void attention(__half *out, float *attn_avg, float *attn_cls, const __half *qkv,
                             int B, int T, int H, int dh, size_t max_smem_optin, cudaStream_t st) {
    const float scale = 1.f / sqrtf((float)dh), inv_heads = 1.f / (float)H;
    if (attention_uses_wmma(T, dh, max_smem_optin)) {
        dim3 grid(vk_cdiv(T, 16 * VK_ATTN_WARPS), H, B);
        attention_wmma_kernel<VK_ATTN_WARPS><<<grid, 32 * VK_ATTN_WARPS,
                                               attention_wmma_smem(T, dh, VK_ATTN_WARPS), st>>>(
            out, attn_avg, attn_cls, qkv, T, H, dh, scale, inv_heads);
    } else {
        dim3 grid(T, H, B);
        attention_naive_kernel<<<grid, 128, attention_naive_smem(T), st>>>(
            out, attn_avg, attn_cls, qkv, T, H, dh, scale, inv_heads);
    }
}
