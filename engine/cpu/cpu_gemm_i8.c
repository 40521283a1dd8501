/* cpu_gemm_i8.c: the INT8 GEMM behind `--precision int8` on the CPU: C (M,N) = A (M,K) . W^T
 * for the encoder's Linear layers (qkv, proj, fc1, fc2), W (N,K) row-major as PyTorch stores it.
 *
 * Scheme (W8A8, as ONNX Runtime's / PyTorch's dynamic quantization):
 * - Weights: symmetric per output channel, quantized ONCE when packed: s_w[n] = max_k |W[n][k]| /
 *   127, Wq[n][k] = round(W[n][k] / s_w[n]) in [-127, 127].
 * - Activations: symmetric per token (per row of A), quantized at run time right before the GEMM
 *   (vit_quantize_rows_u8): s_a[m] = max_k |A[m][k]| / 127, q = round(A / s_a[m]) in [-127, 127],
 *   stored as the unsigned byte q + 128 because vpdpbusd multiplies u8 x s8.  Rounding is to
 *   nearest even in both the scalar and the AVX-512 quantizer (bit-identical).  All-zero (and
 *   near-zero, max < 1e-30) rows get scale 0; rows holding inf/nan get scale NaN and q = 0, so
 *   their outputs are NaN as in FP32, and no float -> int conversion ever sees a value out of
 *   range (that would be UB).
 * - int32 accumulation of sum_k (q + 128) Wq[n][k], then the +128 shift is removed with
 *   comp[n] = 128 * sum_k Wq[n][k], precomputed at pack time.  Exact while 255 * 127 * K < 2^31
 *   (K <= 65536, VIT_GEMM_I8_KMAX).
 * - Epilogue, in FP32, in this order: v = (float)(acc - comp[n]) * (s_a[m] * s_w[n]);
 *   v = v + bias[n] (optional); v = C[m][n] + v (beta1, the residual stream as in FP32).
 *
 * Packed layout of one (N, K) matrix (vit_gemm_i8_pack), N padded to Np (a multiple of 32), K to
 * Kp (a multiple of 4, zero weights in the padding): [s_w: Np floats][comp: Np int32][Wq panels],
 * each panel 32 output columns as Wq[kq][j][t] = Wq[32 p + j][4 kq + t] (Kp/4 x 32 x 4 bytes),
 * so one 64-byte load holds 4 consecutive k of 16 columns, the operand layout of vpdpbusd.
 *
 * Kernels: the VNNI micro-tile is 12 rows x 32 columns in 24 zmm int32 accumulators; per 4 k it
 * broadcasts 4 activation bytes of each row and issues 2 vpdpbusd per row (64 MACs each).  Its
 * epilogue loops are unrolled to the full 12 rows with an early break: with a plain `i < mr`
 * loop GCC 12 keeps the accumulators in memory (bench/results/cpu_gemm_notes.md).  The
 * blocking is cpu_gemm.c's without K blocks (K is at most 65536 here, one int32 pass): as many
 * rows of A as fit ~512 KB, against one Kp x 32 panel.  The scalar loop computes the same int32
 * sums (exact) and the same epilogue in the same order (no FMA contraction: -std=c11 sets
 * -ffp-contract=off), so the paths agree bit for bit; it runs on CPUs without AVX2 and is the
 * unit test's second implementation.  CPUs with AVX2 but without AVX512-VNNI (AMD Zen 1-3,
 * Intel before Ice Lake / Cascade Lake) get a 4 x 8 AVX2 tile instead: vpmaddwd on bytes widened
 * to 16 bits, exact like the others (micro_avx2).  Measured speeds of each kernel:
 * bench/results/cpu_gemm_notes.md. */
#include "cpu/cpu_gemm_i8.h"
#include "knobs.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define I8_MR 12
#define I8_NR VIT_GEMM_I8_PANEL
#define I8_MC 192
#define I8_ABLOCK 524288 /* bytes of A per block */
#define I8_TINY 1e-30f   /* rows whose max |x| is below this quantize to zero */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define I8_X86 1
#endif

int vit_gemm_i8_vnni_available(void) {
#ifdef I8_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

int vit_gemm_i8_avx2_available(void) {
#ifdef I8_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

vit_i8_impl vit_gemm_i8_impl_best(void) {
    if (vit_knob_is(VIT_KNOB_GEMM_I8, "scalar")) return VIT_I8_SCALAR;
    if (vit_gemm_i8_vnni_available() && !vit_knob_is(VIT_KNOB_GEMM_I8, "avx2")) return VIT_I8_VNNI;
    return vit_gemm_i8_avx2_available() ? VIT_I8_AVX2 : VIT_I8_SCALAR;
}

static int padn(int N) { return (N + I8_NR - 1) / I8_NR * I8_NR; }

size_t vit_gemm_i8_packed_bytes(int N, int K) {
    return (size_t)padn(N) * (8 + (size_t)vit_gemm_i8_kpad(K));
}

const float *vit_gemm_i8_scales(const void *Wp) { return Wp; }
static const int32_t *comp_of(const void *Wp, int N) {
    return (const int32_t *)((const char *)Wp + (size_t)padn(N) * 4);
}
static const int8_t *panels_of(const void *Wp, int N) {
    return (const int8_t *)Wp + (size_t)padn(N) * 8;
}

int8_t vit_gemm_i8_weight(const void *Wp, int N, int K, int n, int k) {
    size_t Kp = (size_t)vit_gemm_i8_kpad(K);
    const int8_t *p = panels_of(Wp, N) + (size_t)(n / I8_NR) * I8_NR * Kp;
    return p[(size_t)(k / 4) * I8_NR * 4 + (size_t)(n % I8_NR) * 4 + k % 4];
}

void vit_gemm_i8_pack(void *Wp, const float *W, int N, int K) {
    int Np = padn(N), Kp = vit_gemm_i8_kpad(K);
    float *sw = Wp;
    int32_t *comp = (int32_t *)((char *)Wp + (size_t)Np * 4);
    int8_t *wq = (int8_t *)Wp + (size_t)Np * 8;
    memset(wq, 0, (size_t)Np * Kp);
    for (int n = 0; n < Np; n++) {
        sw[n] = 0.f;
        comp[n] = 0;
        if (n >= N) continue;
        const float *w = W + (size_t)n * K;
        float amax = 0.f;
        int bad = 0;
        for (int k = 0; k < K; k++) {
            float a = fabsf(w[k]);
            if (!(a <= FLT_MAX)) bad = 1;
            else if (a > amax) amax = a;
        }
        if (bad) sw[n] = NAN;
        if (bad || amax < I8_TINY) continue;
        sw[n] = amax / 127.f;
        float inv = 127.f / amax;
        int8_t *dst = wq + (size_t)(n / I8_NR) * I8_NR * Kp + (size_t)(n % I8_NR) * 4;
        int32_t sum = 0;
        for (int k = 0; k < K; k++) {
            /* round to nearest even: adding and subtracting 1.5 * 2^23 (|v| <= 127 + ulp) */
            float r = (w[k] * inv + 12582912.f) - 12582912.f;
            int q = r > 127.f ? 127 : r < -127.f ? -127 : (int)r;
            dst[(size_t)(k / 4) * I8_NR * 4 + k % 4] = (int8_t)q;
            sum += q;
        }
        comp[n] = 128 * sum;
    }
}

/* ---- activation quantization -------------------------------------------------------- */

static void quantize_row_scalar(uint8_t *q, float *scale, const float *x, int K, int Kp) {
    float amax = 0.f;
    int bad = 0;
    for (int k = 0; k < K; k++) {
        float a = fabsf(x[k]);
        if (!(a <= FLT_MAX)) bad = 1;
        else if (a > amax) amax = a;
    }
    if (bad || amax < I8_TINY) {
        *scale = bad ? NAN : 0.f;
        memset(q, 128, (size_t)Kp);
        return;
    }
    *scale = amax / 127.f;
    float inv = 127.f / amax;
    for (int k = 0; k < K; k++) {
        float r = (x[k] * inv + 12582912.f) - 12582912.f; /* round to nearest even */
        int v = r > 127.f ? 127 : r < -127.f ? -127 : (int)r;
        q[k] = (uint8_t)(v + 128);
    }
    memset(q + K, 128, (size_t)(Kp - K));
}

#ifdef I8_X86
__attribute__((target("avx512f"))) static void quantize_row_avx512(uint8_t *q, float *scale,
                                                                   const float *x, int K, int Kp) {
    /* pass 1: max |x| in two chains, and x * 0 summed, which is NaN iff some x is inf or NaN
     * (no per-element compare and mask chain) */
    const __m512 zero = _mm512_setzero_ps();
    __m512 m0 = zero, m1 = zero, nf = zero;
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        __m512 a = _mm512_loadu_ps(x + k), b = _mm512_loadu_ps(x + k + 16);
        m0 = _mm512_max_ps(m0, _mm512_abs_ps(a));
        m1 = _mm512_max_ps(m1, _mm512_abs_ps(b));
        nf = _mm512_add_ps(nf, _mm512_add_ps(_mm512_mul_ps(a, zero), _mm512_mul_ps(b, zero)));
    }
    for (; k < K; k += 16) {
        __mmask16 mk = K - k >= 16 ? 0xFFFF : (__mmask16)((1u << (K - k)) - 1);
        __m512 a = _mm512_maskz_loadu_ps(mk, x + k);
        m0 = _mm512_max_ps(m0, _mm512_abs_ps(a));
        nf = _mm512_add_ps(nf, _mm512_mul_ps(a, zero));
    }
    float amax = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
    int bad = _mm512_cmp_ps_mask(nf, nf, _CMP_UNORD_Q) != 0;
    if (bad || amax < I8_TINY) {
        *scale = bad ? NAN : 0.f;
        memset(q, 128, (size_t)Kp);
        return;
    }
    *scale = amax / 127.f;
    const __m512 inv = _mm512_set1_ps(127.f / amax);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    const __m512i off = _mm512_set1_epi32(128);
    for (k = 0; k < K; k += 16) {
        __mmask16 mk = K - k >= 16 ? 0xFFFF : (__mmask16)((1u << (K - k)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + k), inv);
        __m512i i = _mm512_cvtps_epi32(v); /* round to nearest even (MXCSR default) */
        i = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(i, lo), hi), off);
        if (mk == 0xFFFF)
            _mm_storeu_si128((__m128i *)(q + k), _mm512_cvtepi32_epi8(i));
        else
            _mm512_mask_cvtepi32_storeu_epi8(q + k, mk, i);
    }
    memset(q + K, 128, (size_t)(Kp - K));
}
#endif

static vit_i8_impl resolve(vit_i8_impl impl) {
    if (impl == VIT_I8_AUTO) impl = vit_gemm_i8_impl_best();
#ifdef I8_X86
    if (impl == VIT_I8_VNNI && vit_gemm_i8_vnni_available()) return VIT_I8_VNNI;
    if (impl == VIT_I8_AVX2 && vit_gemm_i8_avx2_available()) return VIT_I8_AVX2;
#endif
    return VIT_I8_SCALAR;
}

void vit_quantize_rows_u8(uint8_t *Q, int ldq, float *scale, const float *X, int ldx, int M,
                          int K, vit_i8_impl impl) {
    int Kp = vit_gemm_i8_kpad(K);
    vit_i8_impl r = resolve(impl);
#ifdef I8_X86
    if (r == VIT_I8_VNNI) {
        for (int m = 0; m < M; m++)
            quantize_row_avx512(Q + (size_t)m * ldq, scale + m, X + (size_t)m * ldx, K, Kp);
        return;
    }
#endif
    (void)r;
    for (int m = 0; m < M; m++)
        quantize_row_scalar(Q + (size_t)m * ldq, scale + m, X + (size_t)m * ldx, K, Kp);
}

void vit_quantize_rows_u8_static(uint8_t *Q, int ldq, const float *X, int ldx, int M, int K,
                                 float inv) {
    const int Kp = vit_gemm_i8_kpad(K);
    for (int m = 0; m < M; m++) {
        uint8_t *q = Q + (size_t)m * ldq;
        const float *x = X + (size_t)m * ldx;
        for (int k = 0; k < K; k++) q[k] = (uint8_t)(vit_i8_quant1(x[k], inv) + 128);
        memset(q + K, 128, (size_t)(Kp - K));
    }
}

/* ---- the GEMM ----------------------------------------------------------------------- */

/* one output element's epilogue, the order the vector code uses */
static inline float epi(int32_t acc, float sa, float sw, const float *bias, int n, int beta1,
                        float c) {
    float s = sa * sw;
    float v = (float)acc * s;
    if (bias) v = v + bias[n];
    if (beta1) v = c + v;
    return v;
}

/* rows [0, M) x columns [n0, n1) on the portable path; Ci (exact sums) or C (epilogue) */
static void gemm_scalar(float *C, int32_t *Ci, int ldc, const uint8_t *Q, int lda,
                        const float *ascale, const void *Wp, int N, int K, int M, int n0, int n1,
                        const float *bias, int beta1) {
    int Kp = vit_gemm_i8_kpad(K);
    const float *sw = vit_gemm_i8_scales(Wp);
    const int32_t *comp = comp_of(Wp, N);
    for (int p = n0; p < n1; p += I8_NR) {
        const int8_t *w = panels_of(Wp, N) + (size_t)(p / I8_NR) * I8_NR * Kp;
        int nr = n1 - p < I8_NR ? n1 - p : I8_NR;
        for (int m = 0; m < M; m++) {
            const uint8_t *a = Q + (size_t)m * lda;
            int32_t acc[I8_NR] = {0};
            for (int kq = 0; kq < Kp / 4; kq++) {
                const int8_t *wk = w + (size_t)kq * I8_NR * 4;
                int a0 = a[4 * kq], a1 = a[4 * kq + 1], a2 = a[4 * kq + 2], a3 = a[4 * kq + 3];
                for (int j = 0; j < I8_NR; j++)
                    acc[j] += a0 * wk[4 * j] + a1 * wk[4 * j + 1] + a2 * wk[4 * j + 2] +
                              a3 * wk[4 * j + 3];
            }
            for (int j = 0; j < nr; j++) {
                int n = p + j;
                int32_t s = acc[j] - comp[n];
                if (Ci) {
                    Ci[(size_t)m * ldc + n] = s;
                } else {
                    float *c = C + (size_t)m * ldc + n;
                    *c = epi(s, ascale[m], sw[n], bias, n, beta1, beta1 ? *c : 0.f);
                }
            }
        }
    }
}

#ifdef I8_X86
/* C or Ci rows [0, mr) x panel columns [0, nr): A rows lda bytes apart, Wp one panel at k = 0
 * (Kp/4 groups of 128 bytes), comp/sw/bias at the panel's first column (bias may be NULL) */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void micro_vnni(
    float *C, int32_t *Ci, int ldc, const uint8_t *A, int lda, int mr, const int8_t *Wp, int kq,
    const int32_t *comp, const float *sw, const float *sa, const float *bias, int nr, int beta1) {
    const uint8_t *a[I8_MR];
    for (int i = 0; i < I8_MR; i++) a[i] = A + (size_t)(i < mr ? i : 0) * lda;
    __m512i c[I8_MR][2];
    _Pragma("GCC unroll 12") for (int i = 0; i < I8_MR; i++) {
        c[i][0] = _mm512_setzero_si512();
        c[i][1] = _mm512_setzero_si512();
    }
    for (int q = 0; q < kq; q++) {
        __m512i b0 = _mm512_loadu_si512(Wp + (size_t)q * 128);
        __m512i b1 = _mm512_loadu_si512(Wp + (size_t)q * 128 + 64);
        _Pragma("GCC unroll 12") for (int i = 0; i < I8_MR; i++) {
            int32_t v;
            memcpy(&v, a[i] + 4 * q, 4);
            __m512i x = _mm512_set1_epi32(v);
            c[i][0] = _mm512_dpbusd_epi32(c[i][0], x, b0);
            c[i][1] = _mm512_dpbusd_epi32(c[i][1], x, b1);
        }
    }
    __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
    __m512i k0 = _mm512_loadu_si512(comp), k1 = _mm512_loadu_si512(comp + 16);
    if (Ci) {
        _Pragma("GCC unroll 12") for (int i = 0; i < I8_MR; i++) {
            if (i >= mr) break;
            int32_t *o = Ci + (size_t)i * ldc;
            _mm512_mask_storeu_epi32(o, m0, _mm512_sub_epi32(c[i][0], k0));
            _mm512_mask_storeu_epi32(o + 16, m1, _mm512_sub_epi32(c[i][1], k1));
        }
        return;
    }
    __m512 w0 = _mm512_loadu_ps(sw), w1 = _mm512_loadu_ps(sw + 16);
    __m512 bb0 = _mm512_setzero_ps(), bb1 = _mm512_setzero_ps();
    if (bias) {
        bb0 = _mm512_maskz_loadu_ps(m0, bias);
        bb1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    }
    _Pragma("GCC unroll 12") for (int i = 0; i < I8_MR; i++) {
        if (i >= mr) break;
        float *o = C + (size_t)i * ldc;
        __m512 s = _mm512_set1_ps(sa[i]);
        __m512 v0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(c[i][0], k0)),
                                  _mm512_mul_ps(s, w0));
        __m512 v1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(c[i][1], k1)),
                                  _mm512_mul_ps(s, w1));
        if (bias) {
            v0 = _mm512_add_ps(v0, bb0);
            v1 = _mm512_add_ps(v1, bb1);
        }
        if (beta1) {
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, o), v0);
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, o + 16), v1);
        }
        _mm512_mask_storeu_ps(o, m0, v0);
        _mm512_mask_storeu_ps(o + 16, m1, v1);
    }
}

static void gemm_vnni(float *C, int32_t *Ci, int ldc, const uint8_t *Q, int lda,
                      const float *ascale, const void *Wp, int N, int K, int M, int n0, int n1,
                      const float *bias, int beta1) {
    int Kp = vit_gemm_i8_kpad(K);
    int MCB = I8_ABLOCK / Kp / I8_MR * I8_MR;
    MCB = MCB < I8_MR ? I8_MR : MCB > I8_MC ? I8_MC : MCB;
    const float *sw = vit_gemm_i8_scales(Wp);
    const int32_t *comp = comp_of(Wp, N);
    for (int mb = 0; mb < M; mb += MCB) {
        int mc = M - mb < MCB ? M - mb : MCB;
        for (int n = n0; n < n1; n += I8_NR) {
            const int8_t *wp = panels_of(Wp, N) + (size_t)(n / I8_NR) * I8_NR * Kp;
            int nr = n1 - n < I8_NR ? n1 - n : I8_NR;
            for (int m = mb; m < mb + mc; m += I8_MR) {
                int mr = mb + mc - m < I8_MR ? mb + mc - m : I8_MR;
                micro_vnni(C ? C + (size_t)m * ldc + n : NULL, Ci ? Ci + (size_t)m * ldc + n : NULL,
                           ldc, Q + (size_t)m * lda, lda, mr, wp, Kp / 4, comp + n, sw + n,
                           ascale ? ascale + m : NULL, bias ? bias + n : NULL, nr, beta1);
            }
        }
    }
}

/* AVX2 (CPUs without AVX512-VNNI): 4 rows x 8 columns.  Per 4 k, the 8 columns' 32 weight bytes
 * are sign-extended to 16 bits (two ymm, 4 columns x 4 k each), each row's 4 activation bytes
 * zero-extended and repeated, and vpmaddwd gives exact int32 pair sums (at most 2 x 255 x 127;
 * vpmaddubsw would saturate), accumulated per (column, pair) and folded at the end. */
#define I8_MR2 4
__attribute__((target("avx2"))) static void micro_avx2(
    float *C, int32_t *Ci, int ldc, const uint8_t *A, int lda, int mr, const int8_t *Wp, int kq,
    const int32_t *comp, const float *sw, const float *sa, const float *bias, int nr, int beta1) {
    const uint8_t *a[I8_MR2];
    for (int i = 0; i < I8_MR2; i++) a[i] = A + (size_t)(i < mr ? i : 0) * lda;
    __m256i c[I8_MR2][2];
    _Pragma("GCC unroll 4") for (int i = 0; i < I8_MR2; i++) {
        c[i][0] = _mm256_setzero_si256();
        c[i][1] = _mm256_setzero_si256();
    }
    for (int q = 0; q < kq; q++) {
        const int8_t *wk = Wp + (size_t)q * I8_NR * 4;
        __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wk));
        __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wk + 16)));
        _Pragma("GCC unroll 4") for (int i = 0; i < I8_MR2; i++) {
            int32_t v;
            memcpy(&v, a[i] + 4 * q, 4);
            __m256i x = _mm256_cvtepu8_epi16(_mm_set1_epi32(v));
            c[i][0] = _mm256_add_epi32(c[i][0], _mm256_madd_epi16(w0, x));
            c[i][1] = _mm256_add_epi32(c[i][1], _mm256_madd_epi16(w1, x));
        }
    }
    __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256i k0 = _mm256_maskload_epi32(comp, mask);
    __m256 w = _mm256_castsi256_ps(_mm256_maskload_epi32((const int *)sw, mask));
    __m256 bb = bias ? _mm256_maskload_ps(bias, mask) : _mm256_setzero_ps();
    _Pragma("GCC unroll 4") for (int i = 0; i < I8_MR2; i++) {
        if (i >= mr) break;
        /* (column, pair) sums -> column sums: hadd gives [c0 c1 c4 c5 | c2 c3 c6 c7] */
        __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(c[i][0], c[i][1]), 0xD8);
        s = _mm256_sub_epi32(s, k0);
        if (Ci) {
            _mm256_maskstore_epi32((int *)(Ci + (size_t)i * ldc), mask, s);
            continue;
        }
        float *o = C + (size_t)i * ldc;
        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(_mm256_set1_ps(sa[i]), w));
        if (bias) v = _mm256_add_ps(v, bb);
        if (beta1) v = _mm256_add_ps(_mm256_maskload_ps(o, mask), v);
        _mm256_maskstore_ps(o, mask, v);
    }
}

static void gemm_avx2(float *C, int32_t *Ci, int ldc, const uint8_t *Q, int lda,
                      const float *ascale, const void *Wp, int N, int K, int M, int n0, int n1,
                      const float *bias, int beta1) {
    int Kp = vit_gemm_i8_kpad(K);
    int MCB = I8_ABLOCK / Kp / I8_MR2 * I8_MR2;
    MCB = MCB < I8_MR2 ? I8_MR2 : MCB > I8_MC ? I8_MC : MCB;
    const float *sw = vit_gemm_i8_scales(Wp);
    const int32_t *comp = comp_of(Wp, N);
    for (int mb = 0; mb < M; mb += MCB) {
        int mc = M - mb < MCB ? M - mb : MCB;
        for (int n = n0; n < n1; n += 8) {
            const int8_t *wp = panels_of(Wp, N) + (size_t)(n / I8_NR) * I8_NR * Kp + (size_t)(n % I8_NR) * 4;
            int nr = n1 - n < 8 ? n1 - n : 8;
            for (int m = mb; m < mb + mc; m += I8_MR2) {
                int mr = mb + mc - m < I8_MR2 ? mb + mc - m : I8_MR2;
                micro_avx2(C ? C + (size_t)m * ldc + n : NULL, Ci ? Ci + (size_t)m * ldc + n : NULL,
                           ldc, Q + (size_t)m * lda, lda, mr, wp, Kp / 4, comp + n, sw + n,
                           ascale ? ascale + m : NULL, bias ? bias + n : NULL, nr, beta1);
            }
        }
    }
}
#endif

void vit_gemm_i8(float *C, int ldc, const uint8_t *Q, int lda, const float *ascale,
                 const void *Wp, int N, int K, int M, int n0, int n1, const float *bias,
                 int beta1, vit_i8_impl impl) {
    vit_i8_impl r = resolve(impl);
#ifdef I8_X86
    if (r == VIT_I8_VNNI) {
        gemm_vnni(C, NULL, ldc, Q, lda, ascale, Wp, N, K, M, n0, n1, bias, beta1);
        return;
    }
    if (r == VIT_I8_AVX2) {
        gemm_avx2(C, NULL, ldc, Q, lda, ascale, Wp, N, K, M, n0, n1, bias, beta1);
        return;
    }
#endif
    (void)r;
    gemm_scalar(C, NULL, ldc, Q, lda, ascale, Wp, N, K, M, n0, n1, bias, beta1);
}

void vit_gemm_i8_s32(int32_t *Ci, int ldc, const uint8_t *Q, int lda, const void *Wp, int N,
                     int K, int M, int n0, int n1, vit_i8_impl impl) {
    vit_i8_impl r = resolve(impl);
#ifdef I8_X86
    if (r == VIT_I8_VNNI) {
        gemm_vnni(NULL, Ci, ldc, Q, lda, NULL, Wp, N, K, M, n0, n1, NULL, 0);
        return;
    }
    if (r == VIT_I8_AVX2) {
        gemm_avx2(NULL, Ci, ldc, Q, lda, NULL, Wp, N, K, M, n0, n1, NULL, 0);
        return;
    }
#endif
    (void)r;
    gemm_scalar(NULL, Ci, ldc, Q, lda, NULL, Wp, N, K, M, n0, n1, NULL, 0);
}
