/* gelu.cuh: pointwise activations on the device.  Exact GELU, x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), as PyTorch's nn.GELU() and
 * Hugging Face's "gelu" compute it, applied in place on the MLP's hidden activations.
 *
 *   x (N, M) FP16, in place; math in FP32; two elements (a half2) per thread.
 *
 * Why it exists: cuBLASLt's CUBLASLT_EPILOGUE_GELU_BIAS fuses bias + GELU into the fc1 GEMM,
 * but NVIDIA's documentation gives no formula for it, and XLA fuses it only for its approximate
 * GELU, the tanh form 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
 * The two differ by at most 4.73e-4 (at x = -2.70), below FP16's rounding step for |x| >= 0.5.
 * tests/gpu/test_kernels reports which form the epilogue computes; tests/gpu/test_cuda_forward
 * reports the logit difference of both modes against the CPU (H100: the epilogue matches erf
 * within FP16 rounding, 6-7e-4 from the CPU logits either way).  The engine uses the epilogue by default (fast) and
 * this kernel after a BIAS-only epilogue when exact GELU is asked (VIT_CUDA_GELU=erf). */
#pragma once
#include "common.cuh"

VK_INLINE float vk_gelu_erf(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }
VK_INLINE float vk_gelu_tanh(float x) {
    return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

static __global__ void gelu_erf_kernel(__half *x, long long n) {
    long long i = (blockIdx.x * (long long)blockDim.x + threadIdx.x) * 2;
    if (i + 1 < n) {
        float2 v = __half22float2(*(__half2 *)(x + i));
        *(__half2 *)(x + i) = __floats2half2_rn(vk_gelu_erf(v.x), vk_gelu_erf(v.y));
    } else if (i < n) {
        x[i] = __float2half(vk_gelu_erf(__half2float(x[i])));
    }
}

/* x must be 4-byte aligned (cudaMalloc'd buffers are) */
/* tanh in place on FP32 (timm's pre_logits representation layer); x (n) */
static __global__ void tanh_kernel(float *x, long long n) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) x[i] = tanhf(x[i]);
}

static inline void tanh_inplace(float *x, long long n, cudaStream_t st) {
    tanh_kernel<<<vk_cdiv(n, 256), 256, 0, st>>>(x, n);
}

static inline void gelu_erf_inplace(__half *x, long long n, cudaStream_t st) {
    gelu_erf_kernel<<<vk_cdiv((n + 1) / 2, 256), 256, 0, st>>>(x, n);
}
