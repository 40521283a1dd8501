/* cpu_gemm_i8.h: the CPU backend's INT8 GEMM for the encoder's Linear layers (W8A8, dynamic
 * per-token activation scales, per-output-channel weight scales); the scheme and the packed
 * layout are described at the top of cpu_gemm_i8.c. */
#ifndef VIT_CPU_GEMM_I8_H
#define VIT_CPU_GEMM_I8_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus /* cuda_engine.cu quantizes the CUDA path's weights with vit_gemm_i8_pack */
extern "C" {
#endif

/* which kernel runs: AUTO = VNNI when the CPU has AVX512-VNNI, else AVX2 (vpmaddwd on bytes
 * widened to 16 bits) when it has AVX2, else the portable scalar loop.  All give bit-identical
 * int32 sums and bit-identical dequantized outputs. */
typedef enum { VIT_I8_AUTO = 0, VIT_I8_SCALAR = 1, VIT_I8_VNNI = 2, VIT_I8_AVX2 = 3 } vit_i8_impl;

/* the CPU has AVX512-VNNI (+F, BW) and this is an x86-64 GCC build */
int vit_gemm_i8_vnni_available(void);
/* the CPU has AVX2 (and this is an x86-64 GCC build) */
int vit_gemm_i8_avx2_available(void);
/* AUTO resolved: VNNI, AVX2 or SCALAR, the best the CPU has (VIT_GEMM_I8=scalar|avx2 in the
 * environment caps it) */
vit_i8_impl vit_gemm_i8_impl_best(void);

/* panel width of the packed layout: column ranges start at a multiple of it */
#define VIT_GEMM_I8_PANEL 32
/* longest K the int32 sums are exact for (255 * 127 * K < 2^31) */
#define VIT_GEMM_I8_KMAX 65536
/* K rounded up to 4: the row stride (bytes) of quantized activations at least this */
static inline int vit_gemm_i8_kpad(int K) { return (K + 3) & ~3; }

/* bytes of the packed INT8 copy of a (N, K) weight matrix (a multiple of 64) */
size_t vit_gemm_i8_packed_bytes(int N, int K);
/* Wp (vit_gemm_i8_packed_bytes(N, K) bytes, 64-byte aligned) = W (N, K) row-major FP32,
 * quantized per output row n: scale_n = max_k |W[n][k]| / 127, q = round(W / scale_n).  A row
 * with a non-finite value gets scale NaN (its outputs are NaN), an all-zero row scale 0.
 * K <= VIT_GEMM_I8_KMAX. */
void vit_gemm_i8_pack(void *Wp, const float *W, int N, int K);

/* Per-row dynamic quantization of activations for rows [0, M): scale[m] = max_k |X[m][k]| / 127,
 * Q[m][k] = round(X[m][k] / scale[m]) + 128 as uint8 (so in [1, 255]); the padding bytes
 * Q[m][K .. kpad(K)) are set to 128 (= 0).  All-zero rows: scale 0, Q 128.  Rows with inf/nan:
 * scale NaN, Q 128 (so their outputs are NaN, as in FP32).  X rows ldx floats apart, Q rows ldq
 * bytes apart (ldq >= kpad(K)).  impl VNNI: the AVX-512 quantizer, else the scalar one (the
 * two give identical bytes and scales). */
void vit_quantize_rows_u8(uint8_t *Q, int ldq, float *scale, const float *X, int ldx, int M,
                          int K, vit_i8_impl impl);

/* The calibrated (static) scheme: one activation scale per tensor from its clipping range amax
 * (calibration.json).  The exact arithmetic, shared by this CPU reference and the CUDA INT8 path
 * (kernels/quant.cuh, tests/gpu/cpu_ref.h): scale = amax / 127 and inv = 127 / amax in float;
 * q = round_half_even(min(max(x * inv, -127), 127)) (fmaxf: NaN gives -127; no other value
 * leaves [-127, 127], so no float -> int conversion is out of range); the GEMM's int32 sum is
 * dequantized as (float)acc * (scale * s_w[n]), the weight scale per output channel. */
static inline void vit_i8_static_scales(float amax, float *scale, float *inv) {
    *scale = amax / 127.f;
    *inv = 127.f / amax;
}
static inline int vit_i8_quant1(float x, float inv) {
    float v = x * inv;
    v = v > -127.f ? v : -127.f;   /* NaN compares false: -127, as fmaxf */
    v = v < 127.f ? v : 127.f;
    return (int)((v + 12582912.f) - 12582912.f);   /* round half to even (|v| < 2^22) */
}
/* rows [0, M) of X quantized with one inverse scale: Q[m][k] = vit_i8_quant1(X[m][k], inv) + 128,
 * padding bytes [K, kpad(K)) 128 */
void vit_quantize_rows_u8_static(uint8_t *Q, int ldq, const float *X, int ldx, int M, int K,
                                 float inv);

/* C[m][n] = ascale[m] * wscale[n] * sum_k (Q[m][k] - 128) Wq[n][k]  (+ bias[n] when bias)
 *           (+ C[m][n] when beta1)
 * for m < M, n0 <= n < n1; Wp = vit_gemm_i8_pack(W, N, K), n0 a multiple of
 * VIT_GEMM_I8_PANEL, n1 <= N; Q rows lda bytes apart (as vit_quantize_rows_u8 wrote them), C
 * rows ldc floats apart.  Single-threaded, allocates nothing. */
void vit_gemm_i8(float *C, int ldc, const uint8_t *Q, int lda, const float *ascale,
                 const void *Wp, int N, int K, int M, int n0, int n1, const float *bias,
                 int beta1, vit_i8_impl impl);
/* the same sums, exact, without the epilogue: Ci[m][n] = sum_k (Q[m][k] - 128) Wq[n][k]
 * (for tests and checks) */
void vit_gemm_i8_s32(int32_t *Ci, int ldc, const uint8_t *Q, int lda, const void *Wp, int N,
                     int K, int M, int n0, int n1, vit_i8_impl impl);
/* views into a packed matrix: the int8 weights as quantized (Wq[n][k], for n < N, k < K),
 * and the per-row weight scales (N floats) */
int8_t vit_gemm_i8_weight(const void *Wp, int N, int K, int n, int k);
const float *vit_gemm_i8_scales(const void *Wp);

#ifdef __cplusplus
}
#endif
#endif
