/* attention_mma.cuh: the engine's attention for head dim 64 (lab version v5; VIT_CUDA_ATTN=wmma
 * falls back to attention.cuh's WMMA kernel).  kernels/dev/attention.cu validates and times it
 * against v1-v4 (measured: kernels/dev/NOTES.md, bench/results/gpu_20261123*.md); tests/gpu and
 * the CPU emulator check it.
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
 * (each stages K/V again).  attention_mma_plan() picks the split and the warps (4..8).  Staging
 * K/V once per (image, head) and storing V row-major (ldmatrix.trans) is what the lab found to
 * matter most (kernels/dev/NOTES.md).
 * Per warp and query tile, per chunk of KC keys (64 by default; 16 or 32: attention_mma's kc,
 * vk_attn_chunk; the lab's timings per KC are in kernels/dev/NOTES.md):
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
 * QT = 2 (attention_mma's qt; VIT_CUDA_ATTN_QT=2, measured in kernels/dev/NOTES.md and not the
 * default): each warp takes two query tiles at once, so
 * every K and V fragment loaded by ldmatrix feeds two mma (vk_attn_rows<.., 2>).
 * Attention maps need the final m and l of each row, so they take a second pass over the keys
 * (recomputing S) only when asked. */
#pragma once
#include "common.cuh"
#include "quant.cuh"

#define VK_MMA_PAD 8
#define VK_MMA_MAX_WARPS 8
#define VK_MMA_QT2_WARPS 4         /* at most 4 warps of 32 query rows (QT = 2): 2-3 blocks per SM */
#define VK_MMA_TARGET_BLOCKS 264   /* two blocks per SM on a 132-SM H100 */
#define VK_MMA_KC_DEFAULT 64       /* keys per online-softmax step (attention_mma's kc; the
                                    * engine's default is VIT_CUDA_ATTN_KC's in engine/knobs.c;
                                    * why 64: kernels/dev/NOTES.md) */
#define VK_MMA_QT_DEFAULT 1        /* 16-row query tiles per warp (attention_mma's qt) */

VK_INLINE void vk_mma16816(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
#ifdef VITD_EMU /* the CPU emulator (tests/emu): the same op as a warp collective, layouts from the PTX ISA */
    emu_mma_m16n8k16_f32_f16(d, a, b0, b1);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    /* m16n8k16 FP16 mma needs sm_80; on older GPUs the engine takes the WMMA attention instead
     * (cuda_engine.cu), so this is never reached there */
    (void)d; (void)a; (void)b0; (void)b1;
    __trap();
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

/* S (16 query rows x 16 keys kc..kc+15, unscaled) = Q K^T for each of the NQ query tiles (s[q][nt0],
 * s[q][nt0 + 1]).  K fragments by ldmatrix.x4 per k-step kk: matrices (keys kc..+7, dims
 * 16kk..+7), (kc..+7, 16kk+8..), (kc+8.., 16kk), (kc+8.., 16kk+8..) = b0, b1 of key tile 0, then
 * b0, b1 of key tile 1; each feeds the mma of all NQ tiles (NQ = 2: half the ldmatrix per mma). */
template <int DH, int NQ, int NT>
VK_INLINE void vk_attn_scores(float (&s)[NQ][NT][4], int nt0, const uint32_t (&qf)[NQ][DH / 16][4],
                              const __half *Ks, int KS, int kc, int lane) {
#pragma unroll
    for (int q = 0; q < NQ; q++)
#pragma unroll
        for (int nt = nt0; nt < nt0 + 2; nt++) s[q][nt][0] = s[q][nt][1] = s[q][nt][2] = s[q][nt][3] = 0.f;
    const __half *krow = Ks + ((kc + (lane & 7) + 8 * (lane >> 4)) * KS + 8 * ((lane >> 3) & 1));
#pragma unroll
    for (int kk = 0; kk < DH / 16; kk++) {
        uint32_t kb[4];
        vk_ldmatrix_x4<false>(kb, krow + kk * 16);
#pragma unroll
        for (int q = 0; q < NQ; q++) {
            vk_mma16816(s[q][nt0], qf[q][kk], kb[0], kb[1]);
            vk_mma16816(s[q][nt0 + 1], qf[q][kk], kb[2], kb[3]);
        }
    }
}

/* One online-softmax step over the KC keys kc..kc+KC-1 for one warp's NQ 16-row query tiles: S for
 * KC/16 groups of 16 keys (vk_attn_scores each), chunk max per row, rescale of l and O, P = exp2 of
 * the scaled scores (packed to FP16 at once), O += P V over KC/16 k-steps.  Larger KC pays the
 * per-chunk bookkeeping (8 max shuffles, 2 rescale exps, 32 O multiplies per tile) once per KC keys.
 * NQ = 2 (attention_mma_kernel's QT): every K and V fragment loaded by ldmatrix feeds the mma of
 * both tiles.  Per tile the arithmetic and its order are those of NQ = 1.
 * Row statistics per tile q: m[q][0] / l[q][0] for row g, [1] for row g + 8.
 * TAIL: the last chunk, keys past T masked to -inf, and its 16-key groups that start at or past
 * T skipped altogether (neither S nor P V): K/V stay staged to round_up(T, 16) rows, so larger
 * KC costs no shared memory and no mma on padding.  Full chunks need no mask.  O is not
 * rescaled on the first chunk (it is zero; the factor is 0, so the result is the same).
 * FAST off: the original v5 arithmetic (scores scaled, then exp2f(s - m); row sums over the quad
 * every chunk).  FAST on: the max taken on the raw scores and scaled once, P = ex2.approx.ftz of
 * fmaf(s, scale, -m) (vk_exp2_ftz), and per-thread partial sums of l reduced over the quad once
 * after the last chunk (FlashAttention-2's way: 4 shuffles a chunk fewer). */
template <int DH, int KC, bool FAST, bool TAIL, int NQ>
VK_INLINE void vk_attn_chunk(float (&o)[NQ][DH / 8][4], float (&m)[NQ][2], float (&l)[NQ][2],
                             const uint32_t (&qf)[NQ][DH / 16][4], const __half *Ks, const __half *vrow,
                             int KS, int kc, int T, float sl2, int lane) {
    const int t = lane % 4;
    float s[NQ][KC / 8][4];
#pragma unroll
    for (int j = 0; j < KC / 16; j++) {
        if (!TAIL || kc + 16 * j < T) {
            vk_attn_scores<DH, NQ, KC / 8>(s, 2 * j, qf, Ks, KS, kc + 16 * j, lane);
        } else {
#pragma unroll
            for (int q = 0; q < NQ; q++)
#pragma unroll
                for (int nt = 2 * j; nt < 2 * j + 2; nt++) s[q][nt][0] = s[q][nt][1] = s[q][nt][2] = s[q][nt][3] = 0.f;
        }
    }
    uint32_t pf[NQ][KC / 16][4];
#pragma unroll
    for (int q = 0; q < NQ; q++) {
        /* scale (!FAST), mask keys past T (tail only), chunk max per row.  __fmul_rn: the scaled
         * score stays rounded on its own (as the old kernel's select kept it), never fused with
         * the "- m" below into an FFMA by ptxas */
        float cmA = -INFINITY, cmB = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < KC / 8; nt++)
#pragma unroll
            for (int c = 0; c < 2; c++) {
                const bool valid = !TAIL || kc + nt * 8 + 2 * t + c < T;
                s[q][nt][c] = valid ? (FAST ? s[q][nt][c] : __fmul_rn(s[q][nt][c], sl2)) : -INFINITY;
                s[q][nt][c + 2] = valid ? (FAST ? s[q][nt][c + 2] : __fmul_rn(s[q][nt][c + 2], sl2)) : -INFINITY;
                cmA = fmaxf(cmA, s[q][nt][c]);
                cmB = fmaxf(cmB, s[q][nt][c + 2]);
            }
        cmA = fmaxf(cmA, __shfl_xor_sync(0xffffffffu, cmA, 1));
        cmA = fmaxf(cmA, __shfl_xor_sync(0xffffffffu, cmA, 2));
        cmB = fmaxf(cmB, __shfl_xor_sync(0xffffffffu, cmB, 1));
        cmB = fmaxf(cmB, __shfl_xor_sync(0xffffffffu, cmB, 2));
        if (FAST) {   /* the max of the raw scores, scaled: the same as the max of the scaled ones */
            cmA *= sl2;
            cmB *= sl2;
        }
        const float mA = m[q][0], mB = m[q][1];
        const float nA = fmaxf(mA, cmA), nB = fmaxf(mB, cmB);   /* finite: key kc < T */
        /* 0 on the first chunk */
        const float aA = FAST ? vk_exp2_ftz(mA - nA) : exp2f(mA - nA), aB = FAST ? vk_exp2_ftz(mB - nB) : exp2f(mB - nB);
        /* P, packed to FP16 as soon as computed (the A fragments of P V: C tiles 2j / 2j+1 are
         * key columns 0-7 / 8-15 of group j) */
        float sA = 0.f, sB = 0.f;
#pragma unroll
        for (int nt = 0; nt < KC / 8; nt++) {
#pragma unroll
            for (int c = 0; c < 2; c++) {
                if (FAST) {   /* one FFMA + one MUFU.EX2 per score */
                    s[q][nt][c] = vk_exp2_ftz(fmaf(s[q][nt][c], sl2, -nA));
                    s[q][nt][c + 2] = vk_exp2_ftz(fmaf(s[q][nt][c + 2], sl2, -nB));
                } else {
                    s[q][nt][c] = exp2f(s[q][nt][c] - nA);
                    s[q][nt][c + 2] = exp2f(s[q][nt][c + 2] - nB);
                }
                sA += s[q][nt][c];
                sB += s[q][nt][c + 2];
            }
            pf[q][nt / 2][2 * (nt % 2)] = vk_pack_half2(s[q][nt][0], s[q][nt][1]);
            pf[q][nt / 2][2 * (nt % 2) + 1] = vk_pack_half2(s[q][nt][2], s[q][nt][3]);
        }
        if (!FAST) {   /* quad sums now; FAST: once at the end (vk_attn_rows) */
            sA += __shfl_xor_sync(0xffffffffu, sA, 1);
            sA += __shfl_xor_sync(0xffffffffu, sA, 2);
            sB += __shfl_xor_sync(0xffffffffu, sB, 1);
            sB += __shfl_xor_sync(0xffffffffu, sB, 2);
        }
        l[q][0] = l[q][0] * aA + sA;
        l[q][1] = l[q][1] * aB + sB;
        m[q][0] = nA;
        m[q][1] = nB;
        if (kc > 0) {   /* warp-uniform */
#pragma unroll
            for (int n = 0; n < DH / 8; n++) {
                o[q][n][0] *= aA; o[q][n][1] *= aA; o[q][n][2] *= aB; o[q][n][3] *= aB;
            }
        }
    }
    /* O += P V per 16-key group j */
#pragma unroll
    for (int j = 0; j < KC / 16; j++) {
        if (TAIL && kc + 16 * j >= T) continue;
#pragma unroll
        for (int n = 0; n < DH / 8; n += 2) {
            uint32_t vb[4];
            vk_ldmatrix_x4<true>(vb, vrow + ((kc + 16 * j) * KS + n * 8));
#pragma unroll
            for (int q = 0; q < NQ; q++) {
                vk_mma16816(o[q][n], pf[q][j], vb[0], vb[1]);
                vk_mma16816(o[q][n + 1], pf[q][j], vb[2], vb[3]);
            }
        }
    }
}

/* One warp's NQ query tiles at rows r0.. r0 + 16 NQ - 1 (rows past T: Q zero, nothing written):
 * Q fragments, the online softmax over all keys, O / l to out, and the maps' second pass when
 * asked (attention_mma_kernel). */
template <int DH, int KC, bool FAST, int NQ>
VK_INLINE void vk_attn_rows(__half *out, float *attn_avg, float *attn_cls, const __half *base, const __half *Ks,
                            const __half *vrow, int KS, int r0, int T, int ld, int D, int b, int h, float sl2,
                            float inv_heads, int lane, const vk_qout &qo) {
    const int g = lane / 4, t = lane % 4;
    /* Q fragments for all DH/16 k-steps, from global (rows past T are zero) */
    uint32_t qf[NQ][DH / 16][4];
#pragma unroll
    for (int q = 0; q < NQ; q++) {
        const int rowA = r0 + 16 * q + g, rowB = rowA + 8;
#pragma unroll
        for (int kk = 0; kk < DH / 16; kk++) {
            const int c = kk * 16 + 2 * t;
            qf[q][kk][0] = rowA < T ? *(const uint32_t *)(base + (size_t)rowA * ld + c) : 0u;
            qf[q][kk][1] = rowB < T ? *(const uint32_t *)(base + (size_t)rowB * ld + c) : 0u;
            qf[q][kk][2] = rowA < T ? *(const uint32_t *)(base + (size_t)rowA * ld + c + 8) : 0u;
            qf[q][kk][3] = rowB < T ? *(const uint32_t *)(base + (size_t)rowB * ld + c + 8) : 0u;
        }
    }

    float o[NQ][DH / 8][4], m[NQ][2], l[NQ][2];
#pragma unroll
    for (int q = 0; q < NQ; q++) {
#pragma unroll
        for (int n = 0; n < DH / 8; n++) o[q][n][0] = o[q][n][1] = o[q][n][2] = o[q][n][3] = 0.f;
        m[q][0] = m[q][1] = -INFINITY;
        l[q][0] = l[q][1] = 0.f;
    }

    int kc = 0;
    for (; kc + KC <= T; kc += KC)
        vk_attn_chunk<DH, KC, FAST, false, NQ>(o, m, l, qf, Ks, vrow, KS, kc, T, sl2, lane);
    if (kc < T) vk_attn_chunk<DH, KC, FAST, true, NQ>(o, m, l, qf, Ks, vrow, KS, kc, T, sl2, lane);

    float il[NQ][2];
#pragma unroll
    for (int q = 0; q < NQ; q++) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            if (FAST) {   /* l: per-thread partial sums until now */
                l[q][r] += __shfl_xor_sync(0xffffffffu, l[q][r], 1);
                l[q][r] += __shfl_xor_sync(0xffffffffu, l[q][r], 2);
            }
            il[q][r] = 1.f / l[q][r];
        }
        const int rowA = r0 + 16 * q + g, rowB = rowA + 8;
#pragma unroll
        for (int n = 0; n < DH / 8; n++) {
            const int c = n * 8 + 2 * t;
            const size_t iA = ((size_t)b * T + rowA) * D + (size_t)h * DH + c, iB = iA + (size_t)8 * D;
            if (qo.q) {   /* the FP32 values quantized for proj's GEMM (warp-uniform) */
                if (rowA < T)
                    *(uint16_t *)(qo.q + iA) = (uint16_t)(vk_quant1(o[q][n][0] * il[q][0], qo.inv, qo.type) |
                                                          vk_quant1(o[q][n][1] * il[q][0], qo.inv, qo.type) << 8);
                if (rowB < T)
                    *(uint16_t *)(qo.q + iB) = (uint16_t)(vk_quant1(o[q][n][2] * il[q][1], qo.inv, qo.type) |
                                                          vk_quant1(o[q][n][3] * il[q][1], qo.inv, qo.type) << 8);
                continue;
            }
            if (rowA < T) *(__half2 *)(out + iA) = __floats2half2_rn(o[q][n][0] * il[q][0], o[q][n][1] * il[q][0]);
            if (rowB < T) *(__half2 *)(out + iB) = __floats2half2_rn(o[q][n][2] * il[q][1], o[q][n][3] * il[q][1]);
        }
    }

    if (!attn_avg && !attn_cls) return;
    /* second pass for the maps: exact probabilities from the final m and l */
    const int Tp = (T + 15) & ~15;
    for (int kc = 0; kc < Tp; kc += 16) {
        float s[NQ][2][4];
        vk_attn_scores<DH, NQ, 2>(s, 0, qf, Ks, KS, kc, lane);
#pragma unroll
        for (int q = 0; q < NQ; q++) {
            const int rowA = r0 + 16 * q + g, rowB = rowA + 8;
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int c = 0; c < 2; c++) {
                    const int key = kc + nt * 8 + 2 * t + c;
                    if (key >= T) continue;
                    const float pA = exp2f(s[q][nt][c] * sl2 - m[q][0]) * il[q][0];
                    const float pB = exp2f(s[q][nt][c + 2] * sl2 - m[q][1]) * il[q][1];
                    if (attn_avg) {
                        if (rowA < T) atomicAdd(attn_avg + ((size_t)b * T + rowA) * T + key, pA * inv_heads);
                        if (rowB < T) atomicAdd(attn_avg + ((size_t)b * T + rowB) * T + key, pB * inv_heads);
                    }
                    if (attn_cls && rowA == 0) atomicAdd(attn_cls + (size_t)b * T + key, pA * inv_heads);
                }
        }
    }
}

/* KC: keys per online-softmax step (16, 32 or 64); FAST: vk_attn_chunk's FAST (the default
 * for KC > 16; KC = 16 without it is the original v5 kernel, bit for bit); QT: 16-row query tiles
 * per warp work unit (1, or 2: K/V fragments shared by two tiles; a unit whose second tile starts
 * at or past T runs as one tile, vk_attn_rows<.., 1>).  units_per_block: work units (QT tiles
 * each) per block (attention_mma_plan). */
template <int DH, int KC, bool FAST = (KC > 16), int QT = 1>
static __global__ void __launch_bounds__(QT == 1 ? VK_MMA_MAX_WARPS * 32 : VK_MMA_QT2_WARPS * 32,
                                         QT == 1 ? 0 : KC == 16 ? 3 : 2)
attention_mma_kernel(__half *out, float *attn_avg, float *attn_cls, const __half *qkv, int T, int H,
                     int units_per_block, float scale, float inv_heads, vk_qout qo) {
    static_assert(DH % 16 == 0, "head dim must be a multiple of 16");
    static_assert(KC == 16 || KC == 32 || KC == 64, "KC: 16, 32 or 64 keys per softmax step");
    static_assert(QT == 1 || QT == 2, "QT: 1 or 2 query tiles per warp");
    extern __shared__ __align__(128) unsigned char smem[];
    const int Tp = (T + 15) & ~15;
    const int KS = DH + VK_MMA_PAD;                   /* row stride of K and V (halves) */
    const int D = H * DH, ld = 3 * D;
    const int h = blockIdx.y, b = blockIdx.z;
    const int W = blockDim.x / 32;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
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

    const int units = (Tp / 16 + QT - 1) / QT;
    const int unit_end = (int)(blockIdx.x + 1) * units_per_block < units
                             ? (int)(blockIdx.x + 1) * units_per_block : units;
    /* V fragments by ldmatrix.x4.trans per pair of 8-dim tiles n, n+1: matrices (keys kc..+7,
     * dims 8n..), (kc+8.., 8n..), (kc..+7, 8n+8..), (kc+8.., 8n+8..) = b0, b1 of n, then n+1 */
    const __half *vrow = Vs + (size_t)((lane & 7) + 8 * ((lane >> 3) & 1)) * KS + 8 * (lane >> 4);
    const float sl2 = scale * 1.4426950408889634f;
    for (int u = blockIdx.x * units_per_block + warp; u < unit_end; u += W) {
        const int r0 = u * 16 * QT;
        if (QT == 1 || r0 + 16 >= T)   /* warp-uniform: the unit's last tile(s) past T skipped */
            vk_attn_rows<DH, KC, FAST, 1>(out, attn_avg, attn_cls, base, Ks, vrow, KS, r0, T, ld, D, b, h,
                                          sl2, inv_heads, lane, qo);
        else
            vk_attn_rows<DH, KC, FAST, QT>(out, attn_avg, attn_cls, base, Ks, vrow, KS, r0, T, ld, D, b, h,
                                           sl2, inv_heads, lane, qo);
    }
}

/* The launch shape for B images of T tokens and H heads: grid (split, H, B), W warps, each
 * block taking `units` work units of qt 16-row query tiles (attention_mma_kernel's QT).  One
 * block per (image, head) when that makes enough blocks, with as few warps as keep the rounds of
 * units per warp minimal (13 tiles at qt 1: 7 warps, 2 rounds, so 3 blocks fit an SM's registers
 * at KC = 16's 80 registers a thread; 2 at KC = 32 / 64's 107 / 128, ptxas sm_90; at qt 2: 7
 * units, 7 warps, 1 round); split heads take VK_MMA_MAX_WARPS warps (all stage K/V; some have no
 * unit). */
struct vk_mma_plan { int split, units, warps; };
static inline vk_mma_plan attention_mma_plan(int B, int T, int H, int target_blocks, int qt = 1) {
    const int nunits = vk_cdiv(vk_cdiv(T, 16), qt), heads = B * H;
    int split = heads >= target_blocks ? 1 : vk_cdiv(target_blocks, heads);
    if (split > nunits) split = nunits;
    const int units = vk_cdiv(nunits, split);
    const int max_warps = qt == 1 ? VK_MMA_MAX_WARPS : VK_MMA_QT2_WARPS;
    const int rounds = vk_cdiv(units, max_warps);
    /* split heads are about latency (small batches): every warp helps stage K/V */
    const int warps = split > 1 ? max_warps : vk_cdiv(units, rounds);
    return vk_mma_plan{vk_cdiv(nunits, units), units, warps};
}

static inline bool attention_mma_kc_valid(int kc) { return kc == 16 || kc == 32 || kc == 64; }
/* the (kc, qt) pairs attention_mma launches (every KC with QT 1 or 2: no spills, NOTES.md) */
static inline bool attention_mma_qt_valid(int kc, int qt) { return attention_mma_kc_valid(kc) && (qt == 1 || qt == 2); }

/* one launch of attention_mma_kernel<64, KC, FAST, QT> with plan p (made for qt = QT; attention_mma;
 * the lab also launches <64, 16, true>, whose dynamic shared-memory limit it raises itself) */
template <int KC, bool FAST = (KC > 16), int QT = 1>
static inline void vk_attention_mma_launch(const vk_mma_plan &p, __half *out, float *attn_avg, float *attn_cls,
                                           const __half *qkv, int B, int T, int H, int dh, cudaStream_t st,
                                           vk_qout qo = vk_qout{}) {
    dim3 grid(p.split, H, B);
    attention_mma_kernel<64, KC, FAST, QT><<<grid, 32 * p.warps, attention_mma_smem(T, dh), st>>>(
        out, attn_avg, attn_cls, qkv, T, H, p.units, 1.f / sqrtf((float)dh), 1.f / (float)H, qo);
}

/* the kernel for a run-time (kc, qt) that attention_mma_qt_valid accepts (QT 2 always with the
 * FAST softmax), with plan p made for that qt: attention_mma, and the tests and the lab when they
 * force a plan */
static inline void vk_attention_mma_dispatch(const vk_mma_plan &p, int kc, int qt, __half *out,
                                             float *attn_avg, float *attn_cls, const __half *qkv,
                                             int B, int T, int H, int dh, cudaStream_t st,
                                             vk_qout qo = vk_qout{}) {
    if (qt == 2) {
        if (kc == 64) vk_attention_mma_launch<64, true, 2>(p, out, attn_avg, attn_cls, qkv, B, T, H, dh, st, qo);
        else if (kc == 32) vk_attention_mma_launch<32, true, 2>(p, out, attn_avg, attn_cls, qkv, B, T, H, dh, st, qo);
        else vk_attention_mma_launch<16, true, 2>(p, out, attn_avg, attn_cls, qkv, B, T, H, dh, st, qo);
    } else if (kc == 64) {
        vk_attention_mma_launch<64>(p, out, attn_avg, attn_cls, qkv, B, T, H, dh, st, qo);
    } else if (kc == 32) {
        vk_attention_mma_launch<32>(p, out, attn_avg, attn_cls, qkv, B, T, H, dh, st, qo);
    } else {
        vk_attention_mma_launch<16>(p, out, attn_avg, attn_cls, qkv, B, T, H, dh, st, qo);
    }
}

/* Launch for dh == 64 when the shared memory fits; returns false (nothing launched) otherwise,
 * or for a (kc, qt) that attention_mma_qt_valid refuses, so the caller falls back to attention().
 * target_blocks: see attention_mma_plan (the tests pass 1 to force one block per head at any
 * batch); kc: keys per online-softmax step (the kernel's KC); qt: 16-row query tiles per warp
 * (the kernel's QT), taken only where the plan at qt has one block per head (B * H >=
 * target_blocks): split heads (small batches) are about latency and occupancy, not the
 * shared-memory traffic qt 2 saves, so they keep qt 1.
 * q_rows > 0: only query rows < q_rows are needed (the engine's last layer, whose CLS rows alone
 * go on): one block per (image, head) stages all of K and V, and only the 16-row tiles holding
 * those rows are computed; out's other rows are left as they were.  attn_avg needs every row:
 * the caller passes q_rows 0 with it.
 * qo.q != nullptr: the output goes to qo.q (B*T, D) quantized (kernels/quant.cuh's vk_quant1 of
 * the FP32 value, multiplier qo.inv, type qo.type: proj's INT8 / FP8 input) instead of to out. */
static inline bool attention_mma(__half *out, float *attn_avg, float *attn_cls, const __half *qkv,
                                 int B, int T, int H, int dh, size_t max_smem_optin,
                                 cudaStream_t st, int target_blocks = VK_MMA_TARGET_BLOCKS,
                                 int kc = VK_MMA_KC_DEFAULT, int qt = VK_MMA_QT_DEFAULT,
                                 int q_rows = 0, vk_qout qo = vk_qout{}) {
    if (dh != 64 || attention_mma_smem(T, dh) > max_smem_optin || !attention_mma_qt_valid(kc, qt)) return false;
    if (B * H < target_blocks) qt = 1;
    vk_mma_plan p = attention_mma_plan(B, T, H, target_blocks, qt);
    if (q_rows > 0 && q_rows < T) {   /* the first tiles only, every warp staging K/V */
        qt = 1;
        p = vk_mma_plan{1, vk_cdiv(q_rows, 16), 4};
    }
    vk_attention_mma_dispatch(p, kc, qt, out, attn_avg, attn_cls, qkv, B, T, H, dh, st, qo);
    return true;
}

/* raise the kernels' dynamic shared-memory limit (once, before graph capture; every KC and QT
 * attention_mma launches) */
static inline cudaError_t attention_mma_prepare(size_t max_smem_optin) {
    const void *k[] = {(const void *)attention_mma_kernel<64, 16>, (const void *)attention_mma_kernel<64, 32>,
                       (const void *)attention_mma_kernel<64, 64>, (const void *)attention_mma_kernel<64, 16, true, 2>,
                       (const void *)attention_mma_kernel<64, 32, true, 2>,
                       (const void *)attention_mma_kernel<64, 64, true, 2>};
    cudaError_t e = cudaSuccess;
    for (const void *f : k)
        if (e == cudaSuccess) e = cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)max_smem_optin);
    return e;
}
