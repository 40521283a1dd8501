/* attention_mma.cuh: the engine's attention for head dim 64 (lab version v5; VIT_CUDA_ATTN=wmma
 * falls back to attention.cuh's WMMA kernel).  On an H100 at B = 256 it is 4.7x the WMMA kernel in
 * the lab (bench/results/gpu_20261123.md); kernels/dev/attention.cu validates and times it
 * against v1-v4, tests/gpu and the CPU emulator check it.
 *
 * Flash-attention style (online softmax, Dao 2023) with raw mma.sync.m16n8k16 (FP16 in, FP32
 * accumulate), same interface and layouts as attention_wmma_kernel:
 *   qkv (B*T, 3D) FP16 -> out (B*T, D) FP16; attn_avg (B,T,T) / attn_cls (B,T) += p / H.
 * Scores live in registers, so shared memory holds only K and V, both row-major with rows
 * padded by 8 halves (2 * 208 * 72 * 2 = 60 KB at T = 197, dh = 64; the 144-byte row stride
 * makes every 8-row ldmatrix phase conflict-free).
 * Work split: one block per (image, head) stages K and V once and its warps take the 16-row
 * query tiles in turn (warp w: tiles w, w + W, ...).  Small batches would leave SMs idle, so
 * when B * H is under VK_MMA_TARGET_BLOCKS the tiles are split over several blocks per head
 * (each stages K/V again).  attention_mma_plan() picks the split and the warps (4..8).  The
 * first version (one block per 64 query rows, V transposed into shared memory with scalar
 * stores) ran 0.49 ms per layer at B = 256 on an H100: K/V staging 4x over and conflicting
 * stores dominated.
 * Per warp and query tile, per chunk of KC keys (64 by default; 16 or 32: attention_mma's kc,
 * vk_attn_chunk; H100 lab at B = 256: 0.217 ms a layer at KC 64, 0.244 at KC 16):
 *   S (16 x KC) = Q K^T as KC/8 m16n8 tiles over dh/16 k-steps (Q fragments in registers, K
 *   fragments by one ldmatrix.x4 per k-step and 16 keys: b0/b1 of both 8-key halves,
 *   vk_attn_scores)
 *   online softmax per row (the 4 threads of a quad share a row): m, l, O rescaled by
 *   exp2(m_old - m_new)
 *   O (16 x dh) += P V: the S accumulators, rounded to FP16, are the A fragment directly; V's
 *   B fragments come from row-major V by ldmatrix.x4.trans
 * Fragment layouts (PTX ISA, mma.m16n8k16, g = lane / 4, t = lane % 4):
 *   A (16x16 row): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
 *   B (16x8 col):  b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g)
 *   C (16x8):      c0,c1 (g, 2t..2t+1), c2,c3 (g+8, 2t..2t+1)
 * ldmatrix.x4: lanes 8i..8i+7 address the 8 rows of matrix i; lane l gets matrix i's (row l/4,
 * cols 2(l%4), +1) in register i, or with .trans its (rows 2(l%4), +1; col l/4).
 * Attention maps need the final m and l of each row, so they take a second pass over the keys
 * (recomputing S) only when asked. */
#pragma once
#include "common.cuh"

#define VK_MMA_PAD 8
#define VK_MMA_MAX_WARPS 8
#define VK_MMA_TARGET_BLOCKS 264   /* two blocks per SM on a 132-SM H100 */
#define VK_MMA_KC_DEFAULT 64       /* keys per online-softmax step (attention_mma's kc): fastest
                                    * at B = 1, 64 and 256 on the H100 (gpu_20261123_s5.md) */

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

/* four 8x8 FP16 matrices from shared memory; row = this lane's row address (16-byte aligned) */
template <bool TRANS> VK_INLINE void vk_ldmatrix_x4(uint32_t *r, const __half *row) {
#ifdef VITD_EMU
    emu_ldmatrix_x4(r, row, TRANS);
#else
    const unsigned a = (unsigned)__cvta_generic_to_shared(row);
    if (TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
#endif
}

/* 2^x by one MUFU.EX2 (ex2.approx.ftz: results below 2^-126 flush to 0, which P's FP16
 * rounding does anyway).  exp2f without -use_fast_math is ex2.approx.f32 without ftz, which
 * ptxas wraps in a range test and two predicated multiplies for denormal results. */
VK_INLINE float vk_exp2_ftz(float x) {
#ifdef VITD_EMU /* the CPU emulator: glibc's exp2f */
    return exp2f(x);
#else
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
#endif
}

VK_INLINE uint32_t vk_pack_half2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}

static inline size_t attention_mma_smem(int T, int dh) {
    size_t Tp = (size_t)vk_round_up(T, 16);
    return 2 * Tp * (dh + VK_MMA_PAD) * 2;
}

/* S (16 query rows x 16 keys kc..kc+15, unscaled) = Q K^T.  K fragments by ldmatrix.x4 per
 * k-step kk: matrices (keys kc..+7, dims 16kk..+7), (kc..+7, 16kk+8..), (kc+8.., 16kk),
 * (kc+8.., 16kk+8..) = b0, b1 of key tile 0, then b0, b1 of key tile 1. */
template <int DH>
VK_INLINE void vk_attn_scores(float (*s)[4], const uint32_t (*qf)[4], const __half *Ks, int KS,
                              int kc, int lane) {
#pragma unroll
    for (int nt = 0; nt < 2; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
    const __half *krow = Ks + ((kc + (lane & 7) + 8 * (lane >> 4)) * KS + 8 * ((lane >> 3) & 1));
#pragma unroll
    for (int kk = 0; kk < DH / 16; kk++) {
        uint32_t kb[4];
        vk_ldmatrix_x4<false>(kb, krow + kk * 16);
        vk_mma16816(s[0], qf[kk], kb[0], kb[1]);
        vk_mma16816(s[1], qf[kk], kb[2], kb[3]);
    }
}

/* One online-softmax step over the KC keys kc..kc+KC-1 for one warp's 16 query rows: S for KC/16
 * groups of 16 keys (vk_attn_scores each), chunk max per row, rescale of l and O, P = exp2 of
 * the scaled scores (packed to FP16 at once), O += P V over KC/16 k-steps.  Larger KC pays the
 * per-chunk bookkeeping (8 max shuffles, 2 rescale exps, 32 O multiplies) once per KC keys.
 * TAIL: the last chunk, keys past T masked to -inf, and its 16-key groups that start at or past
 * T skipped altogether (neither S nor P V): K/V stay staged to round_up(T, 16) rows, so larger
 * KC costs no shared memory and no mma on padding.  Full chunks need no mask.  O is not
 * rescaled on the first chunk (it is zero; the factor is 0, so the result is the same).
 * FAST off: the original v5 arithmetic (scores scaled, then exp2f(s - m); row sums over the quad
 * every chunk).  FAST on: the max taken on the raw scores and scaled once, P = ex2.approx.ftz of
 * fmaf(s, scale, -m) (vk_exp2_ftz), and per-thread partial sums of l reduced over the quad once
 * after the last chunk (FlashAttention-2's way: 4 shuffles a chunk fewer). */
template <int DH, int KC, bool FAST, bool TAIL>
VK_INLINE void vk_attn_chunk(float (*o)[4], float &mA, float &mB, float &lA, float &lB,
                             const uint32_t (*qf)[4], const __half *Ks, const __half *vrow, int KS,
                             int kc, int T, float sl2, int lane) {
    const int t = lane % 4;
    float s[KC / 8][4];
#pragma unroll
    for (int j = 0; j < KC / 16; j++) {
        if (!TAIL || kc + 16 * j < T) {
            vk_attn_scores<DH>(s + 2 * j, qf, Ks, KS, kc + 16 * j, lane);
        } else {
#pragma unroll
            for (int nt = 2 * j; nt < 2 * j + 2; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
        }
    }
    /* scale (!FAST), mask keys past T (tail only), chunk max per row.  __fmul_rn: the scaled
     * score stays rounded on its own (as the old kernel's select kept it), never fused with the
     * "- m" below into an FFMA by ptxas */
    float cmA = -INFINITY, cmB = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < KC / 8; nt++)
#pragma unroll
        for (int c = 0; c < 2; c++) {
            const bool valid = !TAIL || kc + nt * 8 + 2 * t + c < T;
            s[nt][c] = valid ? (FAST ? s[nt][c] : __fmul_rn(s[nt][c], sl2)) : -INFINITY;
            s[nt][c + 2] = valid ? (FAST ? s[nt][c + 2] : __fmul_rn(s[nt][c + 2], sl2)) : -INFINITY;
            cmA = fmaxf(cmA, s[nt][c]);
            cmB = fmaxf(cmB, s[nt][c + 2]);
        }
    cmA = fmaxf(cmA, __shfl_xor_sync(0xffffffffu, cmA, 1));
    cmA = fmaxf(cmA, __shfl_xor_sync(0xffffffffu, cmA, 2));
    cmB = fmaxf(cmB, __shfl_xor_sync(0xffffffffu, cmB, 1));
    cmB = fmaxf(cmB, __shfl_xor_sync(0xffffffffu, cmB, 2));
    if (FAST) {   /* the max of the raw scores, scaled: the same as the max of the scaled ones */
        cmA *= sl2;
        cmB *= sl2;
    }
    const float nA = fmaxf(mA, cmA), nB = fmaxf(mB, cmB);   /* finite: key kc < T */
    /* 0 on the first chunk */
    const float aA = FAST ? vk_exp2_ftz(mA - nA) : exp2f(mA - nA), aB = FAST ? vk_exp2_ftz(mB - nB) : exp2f(mB - nB);
    /* P, packed to FP16 as soon as computed (the A fragments of P V: C tiles 2j / 2j+1 are key
     * columns 0-7 / 8-15 of group j) */
    float sA = 0.f, sB = 0.f;
    uint32_t pf[KC / 16][4];
#pragma unroll
    for (int nt = 0; nt < KC / 8; nt++) {
#pragma unroll
        for (int c = 0; c < 2; c++) {
            if (FAST) {   /* one FFMA + one MUFU.EX2 per score */
                s[nt][c] = vk_exp2_ftz(fmaf(s[nt][c], sl2, -nA));
                s[nt][c + 2] = vk_exp2_ftz(fmaf(s[nt][c + 2], sl2, -nB));
            } else {
                s[nt][c] = exp2f(s[nt][c] - nA);
                s[nt][c + 2] = exp2f(s[nt][c + 2] - nB);
            }
            sA += s[nt][c];
            sB += s[nt][c + 2];
        }
        pf[nt / 2][2 * (nt % 2)] = vk_pack_half2(s[nt][0], s[nt][1]);
        pf[nt / 2][2 * (nt % 2) + 1] = vk_pack_half2(s[nt][2], s[nt][3]);
    }
    if (!FAST) {   /* quad sums now; FAST: once at the end (attention_mma_kernel) */
        sA += __shfl_xor_sync(0xffffffffu, sA, 1);
        sA += __shfl_xor_sync(0xffffffffu, sA, 2);
        sB += __shfl_xor_sync(0xffffffffu, sB, 1);
        sB += __shfl_xor_sync(0xffffffffu, sB, 2);
    }
    lA = lA * aA + sA;
    lB = lB * aB + sB;
    mA = nA;
    mB = nB;
    if (kc > 0) {   /* warp-uniform */
#pragma unroll
        for (int n = 0; n < DH / 8; n++) { o[n][0] *= aA; o[n][1] *= aA; o[n][2] *= aB; o[n][3] *= aB; }
    }
    /* O += P V per 16-key group j */
#pragma unroll
    for (int j = 0; j < KC / 16; j++) {
        if (TAIL && kc + 16 * j >= T) continue;
#pragma unroll
        for (int n = 0; n < DH / 8; n += 2) {
            uint32_t vb[4];
            vk_ldmatrix_x4<true>(vb, vrow + ((kc + 16 * j) * KS + n * 8));
            vk_mma16816(o[n], pf[j], vb[0], vb[1]);
            vk_mma16816(o[n + 1], pf[j], vb[2], vb[3]);
        }
    }
}

/* KC: keys per online-softmax step (16, 32 or 64); FAST: vk_attn_chunk's FAST (the default
 * for KC > 16; KC = 16 without it is the original v5 kernel, bit for bit) */
template <int DH, int KC, bool FAST = (KC > 16)>
static __global__ void __launch_bounds__(VK_MMA_MAX_WARPS * 32)
attention_mma_kernel(__half *out, float *attn_avg, float *attn_cls, const __half *qkv, int T, int H,
                     int tiles_per_block, float scale, float inv_heads) {
    static_assert(DH % 16 == 0, "head dim must be a multiple of 16");
    static_assert(KC == 16 || KC == 32 || KC == 64, "KC: 16, 32 or 64 keys per softmax step");
    extern __shared__ __align__(128) unsigned char smem[];
    const int Tp = (T + 15) & ~15;
    const int KS = DH + VK_MMA_PAD;                   /* row stride of K and V (halves) */
    const int D = H * DH, ld = 3 * D;
    const int h = blockIdx.y, b = blockIdx.z;
    const int W = blockDim.x / 32;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    __half *Ks = (__half *)smem;                      /* (Tp, DH+pad) */
    __half *Vs = Ks + (size_t)Tp * KS;                /* (Tp, DH+pad) */
    const __half *base = qkv + (size_t)b * T * ld + (size_t)h * DH;

    /* stage K and V (16-byte loads, zero rows past T) */
#pragma unroll 4
    for (int i = threadIdx.x; i < Tp * (DH / 8); i += blockDim.x) {
        int r = i / (DH / 8), c = (i % (DH / 8)) * 8;
        uint4 k = make_uint4(0, 0, 0, 0), v = k;
        if (r < T) {
            k = *(const uint4 *)(base + (size_t)r * ld + D + c);
            v = *(const uint4 *)(base + (size_t)r * ld + 2 * D + c);
        }
        *(uint4 *)(Ks + (size_t)r * KS + c) = k;
        *(uint4 *)(Vs + (size_t)r * KS + c) = v;
    }
    __syncthreads();

    const int tile_end = (int)(blockIdx.x + 1) * tiles_per_block < Tp / 16
                             ? (int)(blockIdx.x + 1) * tiles_per_block : Tp / 16;
    /* V fragments by ldmatrix.x4.trans per pair of 8-dim tiles n, n+1: matrices (keys kc..+7,
     * dims 8n..), (kc+8.., 8n..), (kc..+7, 8n+8..), (kc+8.., 8n+8..) = b0, b1 of n, then n+1 */
    const __half *vrow = Vs + (size_t)((lane & 7) + 8 * ((lane >> 3) & 1)) * KS + 8 * (lane >> 4);
    const float sl2 = scale * 1.4426950408889634f;
    for (int qt = blockIdx.x * tiles_per_block + warp; qt < tile_end; qt += W) {
        const int r0 = qt * 16, rowA = r0 + g, rowB = r0 + g + 8;

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

        float o[DH / 8][4];
#pragma unroll
        for (int n = 0; n < DH / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
        float mA = -INFINITY, mB = -INFINITY, lA = 0.f, lB = 0.f;

        int kc = 0;
        for (; kc + KC <= T; kc += KC)
            vk_attn_chunk<DH, KC, FAST, false>(o, mA, mB, lA, lB, qf, Ks, vrow, KS, kc, T, sl2, lane);
        if (kc < T) vk_attn_chunk<DH, KC, FAST, true>(o, mA, mB, lA, lB, qf, Ks, vrow, KS, kc, T, sl2, lane);
        if (FAST) {   /* l: per-thread partial sums until now */
            lA += __shfl_xor_sync(0xffffffffu, lA, 1);
            lA += __shfl_xor_sync(0xffffffffu, lA, 2);
            lB += __shfl_xor_sync(0xffffffffu, lB, 1);
            lB += __shfl_xor_sync(0xffffffffu, lB, 2);
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

        if (!attn_avg && !attn_cls) continue;
        /* second pass for the maps: exact probabilities from the final m and l */
        for (int kc = 0; kc < Tp; kc += 16) {
            float s[2][4];
            vk_attn_scores<DH>(s, qf, Ks, KS, kc, lane);
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
}

/* The launch shape for B images of T tokens and H heads: grid (split, H, B), W warps, each
 * block taking `tiles` 16-row query tiles.  One block per (image, head) when that makes enough
 * blocks, with as few warps as keep the rounds of tiles per warp minimal (13 tiles: 7 warps, 2
 * rounds, so 3 blocks fit an SM's registers at KC = 16's 80 registers a thread; 2 at KC = 32 /
 * 64's 107 / 128, ptxas sm_90); split heads take VK_MMA_MAX_WARPS warps (all stage K/V; some
 * have no tile). */
struct vk_mma_plan { int split, tiles, warps; };
static inline vk_mma_plan attention_mma_plan(int B, int T, int H, int target_blocks) {
    const int ntiles = vk_cdiv(T, 16), heads = B * H;
    int split = heads >= target_blocks ? 1 : vk_cdiv(target_blocks, heads);
    if (split > ntiles) split = ntiles;
    const int tiles = vk_cdiv(ntiles, split);
    const int rounds = vk_cdiv(tiles, VK_MMA_MAX_WARPS);
    /* split heads are about latency (small batches): every warp helps stage K/V */
    const int warps = split > 1 ? VK_MMA_MAX_WARPS : vk_cdiv(tiles, rounds);
    return vk_mma_plan{vk_cdiv(ntiles, tiles), tiles, warps};
}

static inline bool attention_mma_kc_valid(int kc) { return kc == 16 || kc == 32 || kc == 64; }

/* one launch of attention_mma_kernel<64, KC, FAST> with plan p (attention_mma; the lab also
 * launches <64, 16, true>, whose dynamic shared-memory limit it raises itself) */
template <int KC, bool FAST = (KC > 16)>
static inline void vk_attention_mma_launch(const vk_mma_plan &p, __half *out, float *attn_avg, float *attn_cls,
                                           const __half *qkv, int B, int T, int H, int dh, cudaStream_t st) {
    dim3 grid(p.split, H, B);
    attention_mma_kernel<64, KC, FAST><<<grid, 32 * p.warps, attention_mma_smem(T, dh), st>>>(
        out, attn_avg, attn_cls, qkv, T, H, p.tiles, 1.f / sqrtf((float)dh), 1.f / (float)H);
}

/* Launch for dh == 64 when the shared memory fits; returns false (nothing launched) otherwise,
 * or for a kc that attention_mma_kc_valid refuses, so the caller falls back to attention().
 * target_blocks: see attention_mma_plan (the tests pass 1 to force one block per head at any
 * batch); kc: keys per online-softmax step (the kernel's KC). */
static inline bool attention_mma(__half *out, float *attn_avg, float *attn_cls, const __half *qkv,
                                 int B, int T, int H, int dh, size_t max_smem_optin,
                                 cudaStream_t st, int target_blocks = VK_MMA_TARGET_BLOCKS,
                                 int kc = VK_MMA_KC_DEFAULT) {
    if (dh != 64 || attention_mma_smem(T, dh) > max_smem_optin || !attention_mma_kc_valid(kc)) return false;
    const vk_mma_plan p = attention_mma_plan(B, T, H, target_blocks);
    if (kc == 64) vk_attention_mma_launch<64>(p, out, attn_avg, attn_cls, qkv, B, T, H, dh, st);
    else if (kc == 32) vk_attention_mma_launch<32>(p, out, attn_avg, attn_cls, qkv, B, T, H, dh, st);
    else vk_attention_mma_launch<16>(p, out, attn_avg, attn_cls, qkv, B, T, H, dh, st);
    return true;
}

/* raise the kernels' dynamic shared-memory limit (once, before graph capture; every KC) */
static inline cudaError_t attention_mma_prepare(size_t max_smem_optin) {
    cudaError_t e = cudaFuncSetAttribute(attention_mma_kernel<64, 16>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, (int)max_smem_optin);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(attention_mma_kernel<64, 32>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)max_smem_optin);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(attention_mma_kernel<64, 64>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)max_smem_optin);
    return e;
}
