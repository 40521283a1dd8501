/* common.cuh: small helpers shared by the kernel headers: warp reductions, ceil-div, and the
 * FP16 type.  Every kernel header is self-contained apart from this one.  Launchers never check
 * errors themselves: the caller (engine/cuda/cuda_engine.cu, tests/gpu, kernels/dev) checks
 * cudaGetLastError() after them, so launches can also be captured into a CUDA graph. */
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <stdint.h>

#ifndef VK_INLINE
#define VK_INLINE __device__ __forceinline__
#endif

static inline int vk_cdiv(long long a, long long b) { return (int)((a + b - 1) / b); }
static inline int vk_round_up(int a, int m) { return (a + m - 1) / m * m; }

VK_INLINE float vk_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
VK_INLINE float vk_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
