/* attention_mma.cuh: the engine's attention for head dim 64 (lab version v5; VIT_CUDA_ATTN=wmma
 * falls back to attention.cuh's WMMA kernel).  On an H100 at B = 256 it is 4.7x the WMMA kernel in
 * the lab (bench/results/gpu_20261123.md); kernels/dev/attention.cu validates and times it
 * against v1-v4, tests/gpu and the CPU emulator check it.
 *
 * Flash-attention style (online softmax, Dao 2023) with raw mma.sync.m16n8k16 (FP16 in, FP32
 * accumulate), same interface and layouts as attention_wmma_kernel:
 *   qkv (B*T, 3D) FP16 -> out (B*T, D) FP16; attn_avg (B,T,T) / attn_cls (B,T) += p / H.
 * Why: v2 keeps a 16 x Tp FP32 score tile per warp in shared memory (154 KB per block at
 * T = 197, one block of 4 warps per SM).  Here scores live in registers, so shared memory holds
 * only K (row-major, rows padded by 8 halves) and V transposed (Vt[d][t], rows padded by 8):
 * 2 * 208 * 72 * 2 = 60 KB at dh = 64, 3 blocks (12 warps) per SM.
 * Per warp, 16 query rows; per chunk of 16 keys:
 *   S (16x16) = Q K^T as two m16n8 tiles over dh/16 k-steps (Q fragments kept in registers)
 *   online softmax per row (the 4 threads of a quad share a row): m, l, O rescaled by
 *   exp2(m_old - m_new)
 *   O (16 x dh) += P V: the S accumulators, rounded to FP16, are the A fragment directly
 * Fragment layouts (PTX ISA, mma.m16n8k16, g = lane / 4, t = lane % 4):
 *   A (16x16 row): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
 *   B (16x8 col):  b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g)
 *   C (16x8):      c0,c1 (g, 2t..2t+1), c2,c3 (g+8, 2t..2t+1)
 * Attention maps need the final m and l of each row, so they take a second pass over the keys
 * (recomputing S) only when asked. */
#pragma once
#include "common.cuh"

#define VK_MMA_PAD 8

VK_INLINE void vk_mma16816(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
#ifdef VITD_EMU /* the CPU emulator (tests/emu): the same op as a warp collective, layouts from the PTX ISA */
    emu_mma_m16n8k16_f32_f16(d, a, b0, b1);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

VK_INLINE uint32_t vk_pack_half2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}

static inline size_t attention_mma_smem(int T, int dh) {
    size_t Tp = (size_t)vk_round_up(T, 16);
    return Tp * (dh + VK_MMA_PAD) * 2 + (size_t)dh * (Tp + VK_MMA_PAD) * 2;
}

template <int DH, int WARPS>
static __global__ void __launch_bounds__(WARPS * 32)
attention_mma_kernel(__half *out, float *attn_avg, float *attn_cls, const __half *qkv, int T, int H,
                     float scale, float inv_heads) {
    static_assert(DH % 16 == 0, "head dim must be a multiple of 16");
    extern __shared__ __align__(128) unsigned char smem[];
    const int Tp = (T + 15) & ~15;
    const int KS = DH + VK_MMA_PAD, VS = Tp + VK_MMA_PAD;   /* row strides (halves) */
    const int D = H * DH, ld = 3 * D;
    const int h = blockIdx.y, b = blockIdx.z;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    __half *Ks = (__half *)smem;                 /* (Tp, DH+pad) */
    __half *Vt = Ks + (size_t)Tp * KS;           /* (DH, Tp+pad) */
    const __half *base = qkv + (size_t)b * T * ld + (size_t)h * DH;

    /* stage K (16-byte loads, zero rows past T) and V transposed */
    for (int i = threadIdx.x; i < Tp * (DH / 8); i += blockDim.x) {
        int r = i / (DH / 8), c = (i % (DH / 8)) * 8;
        uint4 k = make_uint4(0, 0, 0, 0), v = k;
        if (r < T) {
            k = *(const uint4 *)(base + (size_t)r * ld + D + c);
            v = *(const uint4 *)(base + (size_t)r * ld + 2 * D + c);
        }
        *(uint4 *)(Ks + (size_t)r * KS + c) = k;
        const __half *vh = (const __half *)&v;
#pragma unroll
        for (int j = 0; j < 8; j++) Vt[(size_t)(c + j) * VS + r] = vh[j];
    }
    __syncthreads();

    const int r0 = blockIdx.x * 16 * WARPS + 16 * warp;   /* first query row of this warp */
    if (r0 >= T) return;                                  /* no block-wide barrier below */
    const int rowA = r0 + g, rowB = r0 + g + 8;

    /* Q fragments for all DH/16 k-steps, from global (rows past T are zero) */
    uint32_t qf[DH / 16][4];
#pragma unroll
    for (int kk = 0; kk < DH / 16; kk++) {
        const int c = kk * 16 + 2 * t;
        qf[kk][0] = rowA < T ? *(const uint32_t *)(base + (size_t)rowA * ld + c) : 0u;
        qf[kk][1] = rowB < T ? *(const uint32_t *)(base + (size_t)rowB * ld + c) : 0u;
        qf[kk][2] = rowA < T ? *(const uint32_t *)(base + (size_t)rowA * ld + c + 8) : 0u;
        qf[kk][3] = rowB < T ? *(const uint32_t *)(base + (size_t)rowB * ld + c + 8) : 0u;
    }

    const float sl2 = scale * 1.4426950408889634f;
    float o[DH / 8][4];
#pragma unroll
    for (int n = 0; n < DH / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
    float mA = -INFINITY, mB = -INFINITY, lA = 0.f, lB = 0.f;

    for (int kc = 0; kc < Tp; kc += 16) {
        float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
        for (int kk = 0; kk < DH / 16; kk++)
#pragma unroll
            for (int nt = 0; nt < 2; nt++) {
                const __half *kp = Ks + (size_t)(kc + nt * 8 + g) * KS + kk * 16 + 2 * t;
                vk_mma16816(s[nt], qf[kk], *(const uint32_t *)kp, *(const uint32_t *)(kp + 8));
            }
        /* scale, mask keys past T, chunk max per row */
        float cmA = -INFINITY, cmB = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < 2; nt++)
#pragma unroll
            for (int c = 0; c < 2; c++) {
                const bool valid = kc + nt * 8 + 2 * t + c < T;
                s[nt][c] = valid ? s[nt][c] * sl2 : -INFINITY;
                s[nt][c + 2] = valid ? s[nt][c + 2] * sl2 : -INFINITY;
                cmA = fmaxf(cmA, s[nt][c]);
                cmB = fmaxf(cmB, s[nt][c + 2]);
            }
        cmA = fmaxf(cmA, __shfl_xor_sync(0xffffffffu, cmA, 1));
        cmA = fmaxf(cmA, __shfl_xor_sync(0xffffffffu, cmA, 2));
        cmB = fmaxf(cmB, __shfl_xor_sync(0xffffffffu, cmB, 1));
        cmB = fmaxf(cmB, __shfl_xor_sync(0xffffffffu, cmB, 2));
        const float nA = fmaxf(mA, cmA), nB = fmaxf(mB, cmB);   /* finite: key kc < T */
        const float aA = exp2f(mA - nA), aB = exp2f(mB - nB);   /* 0 on the first chunk */
        float sA = 0.f, sB = 0.f;
#pragma unroll
        for (int nt = 0; nt < 2; nt++)
#pragma unroll
            for (int c = 0; c < 2; c++) {
                s[nt][c] = exp2f(s[nt][c] - nA);
                s[nt][c + 2] = exp2f(s[nt][c + 2] - nB);
                sA += s[nt][c];
                sB += s[nt][c + 2];
            }
        sA += __shfl_xor_sync(0xffffffffu, sA, 1);
        sA += __shfl_xor_sync(0xffffffffu, sA, 2);
        sB += __shfl_xor_sync(0xffffffffu, sB, 1);
        sB += __shfl_xor_sync(0xffffffffu, sB, 2);
        lA = lA * aA + sA;
        lB = lB * aB + sB;
        mA = nA;
        mB = nB;
#pragma unroll
        for (int n = 0; n < DH / 8; n++) { o[n][0] *= aA; o[n][1] *= aA; o[n][2] *= aB; o[n][3] *= aB; }
        /* P (16 x 16 keys) as the A fragment: C tiles 0 / 1 are key columns 0-7 / 8-15 */
        const uint32_t pf[4] = {vk_pack_half2(s[0][0], s[0][1]), vk_pack_half2(s[0][2], s[0][3]),
                                vk_pack_half2(s[1][0], s[1][1]), vk_pack_half2(s[1][2], s[1][3])};
#pragma unroll
        for (int n = 0; n < DH / 8; n++) {
            const __half *vp = Vt + (size_t)(n * 8 + g) * VS + kc + 2 * t;
            vk_mma16816(o[n], pf, *(const uint32_t *)vp, *(const uint32_t *)(vp + 8));
        }
    }

    const float iA = 1.f / lA, iB = 1.f / lB;
#pragma unroll
    for (int n = 0; n < DH / 8; n++) {
        const int c = n * 8 + 2 * t;
        if (rowA < T)
            *(__half2 *)(out + ((size_t)b * T + rowA) * D + (size_t)h * DH + c) =
                __floats2half2_rn(o[n][0] * iA, o[n][1] * iA);
        if (rowB < T)
            *(__half2 *)(out + ((size_t)b * T + rowB) * D + (size_t)h * DH + c) =
                __floats2half2_rn(o[n][2] * iB, o[n][3] * iB);
    }

    if (!attn_avg && !attn_cls) return;
    /* second pass for the maps: exact probabilities from the final m and l */
    for (int kc = 0; kc < Tp; kc += 16) {
        float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
        for (int kk = 0; kk < DH / 16; kk++)
#pragma unroll
            for (int nt = 0; nt < 2; nt++) {
                const __half *kp = Ks + (size_t)(kc + nt * 8 + g) * KS + kk * 16 + 2 * t;
                vk_mma16816(s[nt], qf[kk], *(const uint32_t *)kp, *(const uint32_t *)(kp + 8));
            }
#pragma unroll
        for (int nt = 0; nt < 2; nt++)
#pragma unroll
            for (int c = 0; c < 2; c++) {
                const int key = kc + nt * 8 + 2 * t + c;
                if (key >= T) continue;
                const float pA = exp2f(s[nt][c] * sl2 - mA) * iA, pB = exp2f(s[nt][c + 2] * sl2 - mB) * iB;
                if (attn_avg) {
                    if (rowA < T) atomicAdd(attn_avg + ((size_t)b * T + rowA) * T + key, pA * inv_heads);
                    if (rowB < T) atomicAdd(attn_avg + ((size_t)b * T + rowB) * T + key, pB * inv_heads);
                }
                if (attn_cls && rowA == 0) atomicAdd(attn_cls + (size_t)b * T + key, pA * inv_heads);
            }
    }
}

/* Launch for dh == 64 when the shared memory fits; returns false (nothing launched) otherwise,
 * so the caller falls back to attention(). */
static inline bool attention_mma(__half *out, float *attn_avg, float *attn_cls, const __half *qkv,
                                 int B, int T, int H, int dh, size_t max_smem_optin,
                                 cudaStream_t st) {
    if (dh != 64 || attention_mma_smem(T, dh) > max_smem_optin) return false;
    dim3 grid(vk_cdiv(T, 64), H, B);
    attention_mma_kernel<64, 4><<<grid, 128, attention_mma_smem(T, dh), st>>>(
        out, attn_avg, attn_cls, qkv, T, H, 1.f / sqrtf((float)dh), 1.f / (float)H);
    return true;
}

/* raise the kernel's dynamic shared-memory limit (once, before graph capture) */
static inline cudaError_t attention_mma_prepare(size_t max_smem_optin) {
    return cudaFuncSetAttribute(attention_mma_kernel<64, 4>,
                                cudaFuncAttributeMaxDynamicSharedMemorySize, (int)max_smem_optin);
}
