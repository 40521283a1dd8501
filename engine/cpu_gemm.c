/* cpu_gemm.c: an AVX-512 SGEMM for the CPU backend's Linear layers, C (M,N) = A (M,K) . W^T,
 * W (N,K) row-major as PyTorch stores Linear weights; used instead of OpenBLAS when the CPU has
 * AVX-512 but OpenBLAS runs its AVX2 kernels (Debian 12's 0.3.21 picks "Haswell" on AMD Zen 4/5,
 * or whatever OPENBLAS_CORETYPE says).
 *
 * Design (BLIS-like loops, roles swapped so the weights are never packed): the micro-tile is
 * 12 rows of W (= 12 output columns n) x 32 rows of A (= 32 output rows m, two zmm registers).
 * A is packed, per (64 rows x 512 k) block, transposed: Ap[k][m], so each k step of the
 * micro-kernel loads two vectors of Ap and broadcasts 12 scalars W[n][k] straight from the
 * weights (12 sequential streams), 24 FMAs into 24 zmm accumulators.  The tile is stored
 * transposed back into C (a few hundred scalar stores per 12x32xK tile, ~1%).  Packing the
 * activations costs M*K per call; packing the weights, as OpenBLAS does, would cost N*K per call,
 * which at batch 1 is as large as the activations times the width.
 * Measured on the 2-core Zen 5 VM (single thread, CPU time, ViT-B/16 shapes): 150-190 GFLOP/s
 * vs 95-105 for OpenBLAS's Haswell kernels and ~200 for its SkylakeX kernels. */
#include "cpu_gemm.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cblas.h>

#define GM_MR 12  /* W rows per micro-tile */
#define GM_NR 32  /* A rows per micro-tile */
#define GM_KC 512 /* k block */
#define GM_MC 64  /* A rows per packed block (a multiple of GM_NR) */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define GM_X86 1
#endif

int vit_gemm_avx512_available(void) {
#ifdef GM_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

int vit_gemm_avx512_preferred(void) {
    const char *force = getenv("VIT_GEMM");
    if (force && !strcmp(force, "openblas")) return 0;
    if (!vit_gemm_avx512_available()) return 0;
    if (force && !strcmp(force, "avx512")) return 1;
    const char *core = openblas_get_corename();
    static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    for (size_t i = 0; core && i < sizeof avx512_cores / sizeof avx512_cores[0]; i++)
        if (!strcasecmp(core, avx512_cores[i])) return 0;
    return 1;
}

#ifdef GM_X86
/* In-register 16x16 transpose: on return r[j] holds column j of the block whose row i was r[i]. */
__attribute__((target("avx512f"), always_inline)) static inline void tr16(__m512 *r) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4)
        for (int j = 0; j < 2; j++) {
            __m512d a = _mm512_castps_pd(t[i + j]), b = _mm512_castps_pd(t[i + j + 2]);
            r[i + j] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
            r[i + j + 2] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        }
    /* each 128-bit lane of r[4q + c] now holds rows 4q..4q+3 of one column; gather the lanes:
       first pairs of 4-row groups, then pairs of those */
    for (int i = 0; i < 8; i++) {
        int a = i < 4 ? i : i + 4; /* groups (0,1) -> i = 0..3, groups (2,3) -> i = 8..11 */
        t[a] = _mm512_shuffle_f32x4(r[a], r[a + 4], 0x88);
        t[a + 4] = _mm512_shuffle_f32x4(r[a], r[a + 4], 0xdd);
    }
    /* t[j'] is now column col[j'] (rows in order; checked by test_cpu_ops) */
    static const int col[16] = {0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15};
    for (int i = 0; i < 8; i++) {
        r[col[i]] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[col[i + 8]] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}

/* dst (16 rows ldd apart) = transpose of src (16 rows lds apart), whole cache lines */
__attribute__((target("avx512f"))) static void transpose16(float *dst, int ldd, const float *src,
                                                            int lds) {
    __m512 r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + (size_t)i * lds);
    tr16(r);
    for (int j = 0; j < 16; j++) _mm512_storeu_ps(dst + (size_t)j * ldd, r[j]);
}

/* Ap (kc, ldap): Ap[k * ldap + m] = A[m][k] for m < mc, 0 for mc <= m < ldap, in 16x16 blocks */
static void pack_at(float *Ap, int ldap, const float *A, int lda, int mc, int kc) {
    int m16 = mc & ~15, k16 = kc & ~15;
    for (int m = 0; m < m16; m += 16)
        for (int k = 0; k < k16; k += 16)
            transpose16(Ap + (size_t)k * ldap + m, ldap, A + (size_t)m * lda + k, lda);
    for (int m = 0; m < mc; m++) {
        const float *src = A + (size_t)m * lda;
        int k = m < m16 ? k16 : 0;
        for (; k < kc; k++) Ap[(size_t)k * ldap + m] = src[k];
    }
    for (int k = 0; k < kc; k++)
        for (int m = mc; m < ldap; m++) Ap[(size_t)k * ldap + m] = 0.f;
}

/* C[m][i] (+)= sum_k W[i][k] Ap[k][m] for i < nr, m < mr <= 16 * nv; C rows ldc apart.
 * nv = 2: the full 12 x 32 tile; nv = 1: 12 x 16, for the last rows of a block. */
__attribute__((target("avx512f"), always_inline)) static inline void
micro_nv(float *C, int ldc, const float *W, int ldw, int nr, const float *Ap, int ldap, int mr,
         int kc, int accum, const int nv) {
    const float *w[GM_MR];
    for (int i = 0; i < GM_MR; i++) w[i] = W + (size_t)(i < nr ? i : 0) * ldw;
    __m512 c[GM_MR][2];
    _Pragma("GCC unroll 12") for (int i = 0; i < GM_MR; i++) {
        c[i][0] = _mm512_setzero_ps();
        c[i][1] = _mm512_setzero_ps();
    }
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(Ap + (size_t)k * ldap);
        __m512 b1 = nv == 2 ? _mm512_loadu_ps(Ap + (size_t)k * ldap + 16) : b0;
        _Pragma("GCC unroll 12") for (int i = 0; i < GM_MR; i++) {
            __m512 a = _mm512_set1_ps(w[i][k]);
            c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
            if (nv == 2) c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
        }
    }
    float buf[GM_MR][GM_NR];
    _Pragma("GCC unroll 12") for (int i = 0; i < GM_MR; i++) {
        _mm512_storeu_ps(buf[i], c[i][0]);
        if (nv == 2) _mm512_storeu_ps(buf[i] + 16, c[i][1]);
    }
    for (int m = 0; m < mr; m++) {
        float *o = C + (size_t)m * ldc;
        if (accum)
            for (int i = 0; i < nr; i++) o[i] += buf[i][m];
        else
            for (int i = 0; i < nr; i++) o[i] = buf[i][m];
    }
}

__attribute__((target("avx512f"))) static void micro32(float *C, int ldc, const float *W, int ldw,
                                                        int nr, const float *Ap, int ldap, int mr,
                                                        int kc, int accum) {
    micro_nv(C, ldc, W, ldw, nr, Ap, ldap, mr, kc, accum, 2);
}

__attribute__((target("avx512f"))) static void micro16(float *C, int ldc, const float *W, int ldw,
                                                        int nr, const float *Ap, int ldap, int mr,
                                                        int kc, int accum) {
    micro_nv(C, ldc, W, ldw, nr, Ap, ldap, mr, kc, accum, 1);
}
#endif

size_t vit_gemm_scratch_floats(void) { return (size_t)GM_KC * GM_MC; }

void vit_gemm_nt_avx512(float *C, int ldc, const float *A, int lda, const float *W, int ldw,
                        int M, int N, int K, int beta1, float *scratch) {
#ifdef GM_X86
    for (int m0 = 0; m0 < M; m0 += GM_MC) {
        int mc = M - m0 < GM_MC ? M - m0 : GM_MC;
        int ldap = (mc + GM_NR - 1) / GM_NR * GM_NR;
        for (int k0 = 0; k0 < K; k0 += GM_KC) {
            int kc = K - k0 < GM_KC ? K - k0 : GM_KC;
            pack_at(scratch, ldap, A + (size_t)m0 * lda + k0, lda, mc, kc);
            int accum = beta1 || k0 > 0;
            for (int n0 = 0; n0 < N; n0 += GM_MR) {
                int nr = N - n0 < GM_MR ? N - n0 : GM_MR;
                for (int mm = 0; mm < mc; mm += GM_NR) {
                    int mr = mc - mm < GM_NR ? mc - mm : GM_NR;
                    (mr > 16 ? micro32 : micro16)(C + (size_t)(m0 + mm) * ldc + n0, ldc,
                                                  W + (size_t)n0 * ldw + k0, ldw, nr,
                                                  scratch + mm, ldap, mr, kc, accum);
                }
            }
        }
    }
#else
    (void)scratch;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, lda, W, ldw,
                beta1 ? 1.0f : 0.0f, C, ldc);
#endif
}
