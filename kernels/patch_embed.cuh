/* patch_embed.cuh: patch embedding, first half.  A ViT's patch embedding is a Conv2d with
 * kernel = stride = P, i.e. a GEMM over non-overlapping patches.  This kernel does the im2col and
 * the FP32 -> FP16 conversion in one pass; the GEMM (patches @ W^T + b, W (D, C*P*P) = the conv
 * weight flattened) runs on cuBLASLt with the BIAS epilogue.  embed_assemble_kernel then builds the
 * residual stream: prefix tokens (CLS, DeiT's distillation token) and patch embeddings, plus the
 * position embeddings, added in FP32 and stored once rounded to FP16 (the stream is FP16,
 * kernels/layernorm.cuh).
 *
 *   in       (B, C, H, W)       FP32 or FP16, already normalized (FP16: vit_forward_f16, the
 *                                host rounded it; then this is a plain gather, bit-identical to
 *                                the FP32 path on the same values, __float2half being
 *                                round-to-nearest-even); H >= gh*P, W >= gw*P (non-square inputs:
 *                                H != W, gh != gw)
 *   patches  (B*Np, C*P*P)      FP16, row = b*Np + gy*gw + gx, col = c*P*P + ky*P + kx
 *   pe       (B*Np, D)          FP16, the GEMM's output
 *   res      (B*T, D)           FP16, T = npf + Np
 *
 * One output element per thread (grid-stride loop): consecutive threads write consecutive patch
 * columns (coalesced FP16 writes) and read runs of P consecutive pixels of one image row.  This
 * pass moves 6 bytes per input pixel; it is ~1% of a ViT-B/16 forward, not worth more. */
#pragma once
#include "common.cuh"

VK_INLINE __half vk_to_half(float v) { return __float2half(v); }
VK_INLINE __half vk_to_half(__half v) { return v; }

template <typename TIN>
static __global__ void im2col_f16_kernel(__half *patches, const TIN *in, int B, int C, int H, int W,
                                         int P, int gh, int gw) {
    const int K = C * P * P;            /* patch length */
    const long long total = (long long)B * gh * gw * K;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        int col = (int)(i % K);
        long long row = i / K;
        int gx = (int)(row % gw);
        int gy = (int)((row / gw) % gh);
        int b = (int)(row / ((long long)gw * gh));
        int kx = col % P, ky = (col / P) % P, c = col / (P * P);
        int y = gy * P + ky, x = gx * P + kx;
        patches[i] = vk_to_half(in[(((long long)b * C + c) * H + y) * W + x]);
    }
}

/* res[b, t, :] = fp16((t < npf ? tok[t] : pe[b*Np + t - npf]) + pos[t]); tok is (npf, D) (CLS then
 * dist), tok/pos FP32 */
static __global__ void embed_assemble_kernel(__half *res, const __half *pe, const float *tok,
                                      const float *pos, int B, int T, int npf, int D) {
    const long long total = (long long)B * T * D;
    const int Np = T - npf;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        int d = (int)(i % D);
        long long bt = i / D;
        int t = (int)(bt % T);
        long long b = bt / T;
        float v = t < npf ? tok[t * D + d] : __half2float(pe[(b * Np + (t - npf)) * D + d]);
        res[i] = __float2half(v + pos[(long long)t * D + d]);
    }
}

static inline int vk_grid(long long total, int threads) {
    long long g = (total + threads - 1) / threads;
    return (int)(g < 65535LL * 8 ? (g < 1 ? 1 : g) : 65535LL * 8);
}

/* in: const float * or const __half *, (B, C, H, W) */
template <typename TIN>
static inline void im2col_f16(__half *patches, const TIN *in, int B, int C, int H, int W, int P,
                              int gh, int gw, cudaStream_t st) {
    long long total = (long long)B * gh * gw * C * P * P;
    im2col_f16_kernel<TIN><<<vk_grid(total, 256), 256, 0, st>>>(patches, in, B, C, H, W, P, gh, gw);
}

static inline void embed_assemble(__half *res, const __half *pe, const float *tok, const float *pos,
                                  int B, int T, int npf, int D, cudaStream_t st) {
    long long total = (long long)B * T * D;
    embed_assemble_kernel<<<vk_grid(total, 256), 256, 0, st>>>(res, pe, tok, pos, B, T, npf, D);
}
