/* quant.cuh: the narrow-type halves of the INT8 / FP8 encoder Linears: activations quantized
 * before the GEMM (by the kernel that produces them where it can: layernorm.cuh's
 * residual_layernorm_quant for qkv and fc1, attention_mma's qo for proj, fc1's epilogue below for
 * fc2; quantize_act otherwise), and the GEMM's raw sums dequantized with bias (+ GELU, + residual add, or +
 * requantization for the next GEMM) in one pass after it.  cuBLASLt computes the products:
 * INT8 x INT8 -> INT32 (IMMA), or E4M3 x E4M3 -> FP32 with unit scales; the per-output-channel
 * weight scales are applied here, because cuBLASLt's INT8 GEMM has no bias/GELU epilogue and its
 * FP8 scale pointers are per tensor.
 *
 * Arithmetic (the CPU reference is engine/cpu/cpu_gemm_i8.h's static scheme and
 * tests/gpu/cpu_ref.h's ref_q8 / ref_e4m3; kept in the same order, no FMA contraction):
 *   INT8  q = rint_even(min(max(x * inv, -127), 127)), inv = 127 / amax     (NaN -> -127)
 *   FP8   q = e4m3_satfinite(x * inv), inv = 448 / amax, round to nearest even
 *   dequant  v = float(acc) * (sa * sw[n]) + float(bias[n])   (__fmul_rn / __fadd_rn)
 *   then  out = half(v) | half(float(res) + v) | q(gelu_erf(v)) into the next GEMM's input
 *
 *   x (rows, K) FP16 row-major -> q (rows, K) int8 / e4m3 bytes, same layout (cuBLASLt's TN
 *   operand: K contiguous; K a multiple of 16 for FP8, 4 for INT8)
 *   acc (rows, N) int32 or float; sw (N) FP32; bias (N) FP16; out / res (rows, N) FP16 */
#pragma once
#include "common.cuh"
#include "gelu.cuh"

enum { VK_Q_INT8 = 0, VK_Q_E4M3 = 1 };

/* FP32 -> E4M3 (1 sign, 4 exponent bits with bias 7, 3 mantissa bits; no infinities, 0x7f NaN),
 * round to nearest even, saturating to +-448 (cuda_fp8.h's __NV_SATFINITE); NaN -> 0x7f */
__host__ __device__ inline uint8_t vk_e4m3(float x) {
    if (x != x) return 0x7f;
    const uint8_t sign = signbit(x) ? 0x80 : 0;
    float a = fabsf(x);
    if (a >= 448.f) return sign | 0x7e;
    if (a < 0.015625f) {                          /* below 2^-6: subnormal steps of 2^-9 */
        int m = (int)rintf(a * 512.f);            /* 0..8; 8 is the smallest normal, 0x08 */
        return sign | (uint8_t)m;
    }
    int e;
    float f = frexpf(a, &e);                      /* a = f 2^e, f in [0.5, 1) */
    int E = e - 1;                                /* a = (2f) 2^E, 2f in [1, 2), E in -6..8 */
    int m = (int)rintf((2.f * f - 1.f) * 8.f);    /* exact product, one rounding */
    if (m == 8) { m = 0; E++; }
    return sign | (uint8_t)(((E + 7) << 3) | m);  /* E + 7 <= 15; 15 with m 7 is past 448 */
}

/* E4M3 bits -> FP32 (exact) */
__host__ __device__ inline float vk_e4m3_to_f32(uint8_t q) {
    const int E = (q >> 3) & 15, m = q & 7;
    float v = E ? ldexpf(1.f + m / 8.f, E - 7) : ldexpf((float)m, -9);
    if ((q & 0x7f) == 0x7f) v = NAN;
    return q & 0x80 ? -v : v;
}

VK_INLINE uint8_t vk_quant1(float x, float inv, int type) {
    float v = __fmul_rn(x, inv);
    if (type == VK_Q_E4M3) return vk_e4m3(v);
    v = v > -127.f ? v : -127.f;
    v = v < 127.f ? v : 127.f;
    return (uint8_t)(int8_t)__float2int_rn(v);
}

/* a kernel's output quantized for the next INT8 / FP8 GEMM instead of stored as FP16 (the
 * LayerNorm: residual_layernorm_quant; the attention: attention_mma's qo); q == nullptr: FP16 as usual */
struct vk_qout {
    uint8_t *q;
    float inv;
    int type;
};

/* q (n) = quantized x (n); four elements a thread (n any; x and q 4-byte aligned) */
static __global__ void quantize_kernel(uint8_t *q, const __half *x, long long n, float inv, int type) {
    long long i = (blockIdx.x * (long long)blockDim.x + threadIdx.x) * 4;
    if (i + 3 < n) {
        const float2 a = __half22float2(*(const __half2 *)(x + i));
        const float2 b = __half22float2(*(const __half2 *)(x + i + 2));
        const uint32_t r = (uint32_t)vk_quant1(a.x, inv, type) | (uint32_t)vk_quant1(a.y, inv, type) << 8 |
                           (uint32_t)vk_quant1(b.x, inv, type) << 16 | (uint32_t)vk_quant1(b.y, inv, type) << 24;
        *(uint32_t *)(q + i) = r;
    } else {
        for (; i < n; i++) q[i] = vk_quant1(__half2float(x[i]), inv, type);
    }
}

/* what follows the dequantization */
enum { VK_DQ_BIAS = 0, VK_DQ_RESIDUAL = 1, VK_DQ_GELU_QUANT = 2 };

/* one element (m, n): v = float(acc) * (sa * sw[n]) + bias[n], then per mode */
template <typename TA>
static __global__ void dequant_kernel(__half *out, uint8_t *qout, const TA *acc, const float *sw,
                                      float sa, const __half *bias, int rows, int N, int mode,
                                      float qinv, int qtype) {
    const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= (long long)rows * N) return;
    const int n = (int)(i % N);
    float v = __fmul_rn((float)acc[i], __fmul_rn(sa, sw[n]));
    v = __fadd_rn(v, __half2float(bias[n]));
    if (mode == VK_DQ_GELU_QUANT) qout[i] = vk_quant1(vk_gelu_erf(v), qinv, qtype);
    else if (mode == VK_DQ_RESIDUAL) out[i] = __float2half(__fadd_rn(__half2float(out[i]), v));
    else out[i] = __float2half(v);
}

/* launchers (the caller checks cudaGetLastError) */
static inline void quantize_act(uint8_t *q, const __half *x, long long n, float inv, int type,
                                cudaStream_t st) {
    quantize_kernel<<<vk_cdiv((n + 3) / 4, 256), 256, 0, st>>>(q, x, n, inv, type);
}

/* mode BIAS: out = v; RESIDUAL: out (the residual stream) += v; GELU_QUANT: qout =
 * quantized gelu(v) with qinv / qtype (out unused) */
template <typename TA>
static inline void dequant_epilogue(__half *out, uint8_t *qout, const TA *acc, const float *sw,
                                    float sa, const __half *bias, int rows, int N, int mode,
                                    float qinv, int qtype, cudaStream_t st) {
    dequant_kernel<TA><<<vk_cdiv((long long)rows * N, 256), 256, 0, st>>>(out, qout, acc, sw, sa, bias,
                                                                          rows, N, mode, qinv, qtype);
}
