/* cpu_gemm.c: an AVX-512 SGEMM for the CPU backend's Linear layers, C (M,N) = A (M,K) . W^T,
 * W (N,K) row-major as PyTorch stores Linear weights; used instead of OpenBLAS when the CPU has
 * AVX-512 but OpenBLAS runs its AVX2 kernels (Debian 12's 0.3.21 picks "Haswell" on AMD Zen 4/5,
 * or whatever OPENBLAS_CORETYPE says).
 *
 * Design (BLIS-like, the weights packed ONCE): W never changes, so the backend packs it when the
 * session starts (vit_gemm_pack) into panels of 32 output columns laid out k-major,
 * Wp[panel][k][0..31]; at run time nothing is packed.  The micro-tile is 12 rows of A x 32
 * columns: each k step loads two vectors of the W panel and broadcasts 12 scalars A[m][k]
 * straight from the activations (12 sequential streams), 24 FMAs into 24 zmm accumulators, and
 * the tile is stored as 24 row vectors (masked at the right edge).  Blocks: all of K at once (up
 * to 4096), as many rows of A as fit in ~512 KB of L2 (at most 192), against one K x 32 W panel.
 * K is not blocked: that would make every C tile be re-read and re-accumulated K/256 times.  A is
 * never packed or transposed: W is broadcast from its panel, A's rows are read in place.  What
 * each choice measured: bench/results/cpu_gemm_notes.md. */
#include "cpu/cpu_gemm.h"
#include "knobs.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cblas.h>

#define GM_MR 12  /* A rows per micro-tile */
#define GM_NR 32  /* output columns per micro-tile = per packed panel */
#define GM_KMAX 4096     /* longest k block */
#define GM_MC 192        /* most A rows per block (a multiple of GM_MR) */
#define GM_ABLOCK 131072 /* floats of A per block (512 KB) */

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
    if (vit_knob_is(VIT_KNOB_GEMM, "openblas")) return 0;
    if (!vit_gemm_avx512_available()) return 0;
    if (vit_knob_is(VIT_KNOB_GEMM, "avx512")) return 1;
    const char *core = openblas_get_corename();
    static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    for (size_t i = 0; core && i < sizeof avx512_cores / sizeof avx512_cores[0]; i++)
        if (!strcasecmp(core, avx512_cores[i])) return 0;
    return 1;
}

size_t vit_gemm_packed_floats(int N, int K) {
    return (size_t)((N + GM_NR - 1) / GM_NR) * GM_NR * (size_t)K;
}

void vit_gemm_pack(float *Wp, const float *W, int N, int K) {
    for (int p = 0; p < (N + GM_NR - 1) / GM_NR; p++) {
        float *dst = Wp + (size_t)p * GM_NR * K;
        for (int k = 0; k < K; k++)
            for (int j = 0; j < GM_NR; j++) {
                int n = p * GM_NR + j;
                dst[(size_t)k * GM_NR + j] = n < N ? W[(size_t)n * K + k] : 0.f;
            }
    }
}

#ifdef GM_X86
/* C[m][j] (+)= sum_k A[m][k] Wp[k][j] for m < mr <= 12, j < nr <= 32; A rows lda apart, C rows
 * ldc apart, Wp a panel slice (32 floats per k) */
__attribute__((target("avx512f"))) static void micro(float *C, int ldc, const float *A, int lda,
                                                      int mr, const float *Wp, int nr, int kc,
                                                      int accum) {
    const float *a[GM_MR];
    for (int i = 0; i < GM_MR; i++) a[i] = A + (size_t)(i < mr ? i : 0) * lda;
    __m512 c[GM_MR][2];
    _Pragma("GCC unroll 12") for (int i = 0; i < GM_MR; i++) {
        c[i][0] = _mm512_setzero_ps();
        c[i][1] = _mm512_setzero_ps();
    }
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(Wp + (size_t)k * GM_NR);
        __m512 b1 = _mm512_loadu_ps(Wp + (size_t)k * GM_NR + 16);
        _Pragma("GCC unroll 12") for (int i = 0; i < GM_MR; i++) {
            __m512 x = _mm512_set1_ps(a[i][k]);
            c[i][0] = _mm512_fmadd_ps(x, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(x, b1, c[i][1]);
        }
    }
    __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
    for (int i = 0; i < mr; i++) {
        float *o = C + (size_t)i * ldc;
        __m512 v0 = c[i][0], v1 = c[i][1];
        if (accum) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, o));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, o + 16));
        }
        _mm512_mask_storeu_ps(o, m0, v0);
        _mm512_mask_storeu_ps(o + 16, m1, v1);
    }
}
#endif

void vit_gemm_packed(float *C, int ldc, const float *A, int lda, const float *Wp, int K, int M,
                     int n0, int n1, int beta1) {
#ifdef GM_X86
    /* the whole of K in one block when it fits (up to 4096), so every C element is written
     * once, never re-read and re-accumulated; then as many A rows as keep the A block near
     * 512 KB of L2 (next to one W panel, K x 32 floats) */
    int nkb = (K + GM_KMAX - 1) / GM_KMAX, KC = (K + nkb - 1) / nkb;
    int MCB = GM_ABLOCK / KC / GM_MR * GM_MR;
    MCB = MCB < GM_MR ? GM_MR : MCB > GM_MC ? GM_MC : MCB;
    for (int mb = 0; mb < M; mb += MCB) {
        int mc = M - mb < MCB ? M - mb : MCB;
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kc = K - k0 < KC ? K - k0 : KC;
            int accum = beta1 || k0 > 0;
            for (int n = n0; n < n1; n += GM_NR) {
                const float *wp = Wp + (size_t)(n / GM_NR) * GM_NR * K + (size_t)k0 * GM_NR;
                int nr = n1 - n < GM_NR ? n1 - n : GM_NR;
                for (int m = mb; m < mb + mc; m += GM_MR) {
                    int mr = mb + mc - m < GM_MR ? mb + mc - m : GM_MR;
                    micro(C + (size_t)m * ldc + n, ldc, A + (size_t)m * lda + k0, lda, mr, wp, nr,
                          kc, accum);
                }
            }
        }
    }
#else /* portable reference (never the fast path: vit_gemm_avx512_preferred() is 0 here) */
    for (int m = 0; m < M; m++)
        for (int n = n0; n < n1; n++) {
            const float *wp = Wp + (size_t)(n / GM_NR) * GM_NR * K + n % GM_NR;
            float acc = beta1 ? C[(size_t)m * ldc + n] : 0.f;
            for (int k = 0; k < K; k++) acc += A[(size_t)m * lda + k] * wp[(size_t)k * GM_NR];
            C[(size_t)m * ldc + n] = acc;
        }
#endif
}
