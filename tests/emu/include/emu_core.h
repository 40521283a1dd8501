/* emu_core.h: the CPU SIMT emulator's device-side API (tests/emu, see tests/emu/README.md).
 * Included through the shim headers cuda_runtime.h / cuda_fp16.h / mma.h, so that the kernel
 * headers in kernels/ (*.cuh), after tests/emu/gen_host.py rewrote their launches and __shared__
 * declarations, compile as host C++ with g++ and run here:
 *   - CUDA keywords (__global__, __device__, __forceinline__, __launch_bounds__, __align__)
 *   - dim3 / uint3 / uint4 / float2 and friends, threadIdx / blockIdx / blockDim / gridDim (the
 *     running fiber's values; the scheduler sets them on every switch)
 *   - __syncthreads, __syncwarp, __shfl_*_sync, __ballot/any/all_sync: sync points of the fiber
 *     scheduler (emu.cpp); every one carries __FILE__/__LINE__ for its diagnostics
 *   - atomicAdd, the _rn intrinsics (no contraction: build with -ffp-contract=off), rsqrtf
 *   - the runtime API subset the kernels and tests use (cudaMalloc is malloc, exact size, so
 *     ASan sees out-of-bounds global accesses), emu::launch (what <<<>>> becomes)
 *   - emu_mma_m16n8k16_f32_f16 (mma.sync.m16n8k16.row.col.f32.f16.f16.f32 as a warp collective)
 *   - emu_ldmatrix_x4 (ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16, likewise)
 * Everything runs in one OS thread; a block's threads are fibers scheduled in a seeded random
 * order between sync points. */
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <tuple>
#include <type_traits>
#include <utility>

#define VITD_EMU 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __CUDACC_EMU__ 1

/* ---- vector types ---------------------------------------------------------------------- */
struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct __attribute__((aligned(16))) uint4 { unsigned x, y, z, w; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(8))) uint2 { unsigned x, y; };
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline float2 make_float2(float x, float y) { return float2{x, y}; }

/* ---- runtime types ------------------------------------------------------------------------ */
typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNotSupported = 801,
};
typedef cudaError_t cudaError;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost,
                      cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
                         cudaFuncAttributePreferredSharedMemoryCarveout = 9 };
struct cudaDeviceProp {
    char name[256];
    int major, minor, multiProcessorCount;
    size_t sharedMemPerBlock, sharedMemPerBlockOptin, totalGlobalMem;
    int warpSize, maxThreadsPerBlock;
};

namespace emu {
/* the emulated device: sm_90-like limits */
constexpr size_t kSmemDefault = 48 * 1024;   /* dynamic smem without the opt-in attribute */
constexpr size_t kSmemOptin = 232448;        /* 227 KB, H100 */
constexpr size_t kSmemStaticMax = 48 * 1024;

extern uint3 g_threadIdx, g_blockIdx;
extern dim3 g_blockDim, g_gridDim;

[[noreturn]] void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void set_seed(uint64_t seed);
uint64_t seed(void);

/* sync points */
void syncthreads(const char *file, int line);
void syncwarp(unsigned mask, const char *file, int line);
enum OpKind { OP_SHFL_IDX = 1, OP_SHFL_UP, OP_SHFL_DOWN, OP_SHFL_XOR, OP_BALLOT, OP_ANY, OP_ALL,
              OP_SYNCWARP, OP_WMMA_MMA, OP_MMA16816, OP_LDMATRIX, OP_LDMATRIX_T };
uint64_t warp_exchange(int kind, unsigned mask, uint64_t val, int arg, int width, int size,
                       const char *file, int line);
/* warp collective carrying pointers (the matrix ops); fn completes it on the last arrival,
 * given the 32 lanes' pointer sets (NULL for lanes outside mask) */
typedef void (*collective_fn)(void *const (*lanes)[4]);
void warp_collective(int kind, const char *name, void *p0, void *p1, void *p2, void *p3,
                     collective_fn fn, const char *file, int line);
/* ldmatrix.sync.aligned.m8n8.x4[.trans].b16: row = the 8 halves this lane's address held */
void ldmatrix_x4(uint32_t *r, const uint32_t *row, bool trans, const char *file, int line);
/* per-lane record of a non-blocking warp-wide op (wmma load/store/fill): every lane of the warp
 * must issue the same sequence with the same pointer / ldm / layout */
void warp_op_log(const char *what, const void *ptr, unsigned ldm, int layout, const char *file,
                 int line);
int lane_id(void);

/* shared memory of the running block */
void *dynamic_smem(size_t align);
void *static_smem(const void *tag, size_t size, size_t align, const char *name);
template <class T> static inline T *dynamic_smem_as(size_t align) {
    return (T *)dynamic_smem(align ? align : alignof(T));
}
template <class A> static inline A &static_smem_as(const void *tag, const char *name, size_t align = 0) {
    return *(A *)static_smem(tag, sizeof(A), align > alignof(A) ? align : alignof(A), name);
}

/* launching */
typedef void (*body_fn)(void *ctx);
void run_grid(const char *name, const void *key, dim3 grid, dim3 block, size_t smem, body_fn body,
              void *ctx);
void set_func_attr(const void *key, int attr, int value);

template <class... P> struct Launcher {
    const char *name;
    void (*fn)(P...);
    dim3 grid, block;
    size_t smem;
    template <class... A> void operator()(A &&...a) const {
        static_assert(sizeof...(A) == sizeof...(P), "kernel argument count");
        struct State { void (*fn)(P...); std::tuple<typename std::decay<P>::type...> args; };
        State s{fn, std::tuple<typename std::decay<P>::type...>(std::forward<A>(a)...)};
        run_grid(name, (const void *)fn, grid, block, smem,
                 [](void *c) { State *st = (State *)c; std::apply(st->fn, st->args); }, &s);
    }
};
/* K<<<g, b, s, st>>>(args) is rewritten (gen_host.py) to emu::launch("K", K, g, b, s, st)(args) */
template <class... P>
static inline Launcher<P...> launch(const char *name, void (*fn)(P...), dim3 grid, dim3 block,
                                    size_t smem = 0, cudaStream_t st = nullptr) {
    (void)st;
    return Launcher<P...>{name, fn, grid, block, smem};
}

/* shuffles: values of up to 8 bytes */
template <class T> static inline T xchg(int kind, unsigned mask, T v, int arg, int width,
                                        const char *file, int line) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle type");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    uint64_t r = warp_exchange(kind, mask, bits, arg, width, (int)sizeof(T), file, line);
    T out;
    memcpy(&out, &r, sizeof out);
    return out;
}
template <class T> static inline T shfl_at(const char *f, int l, unsigned m, T v, int src, int w = 32) { return xchg(OP_SHFL_IDX, m, v, src, w, f, l); }
template <class T> static inline T shfl_up_at(const char *f, int l, unsigned m, T v, unsigned d, int w = 32) { return xchg(OP_SHFL_UP, m, v, (int)d, w, f, l); }
template <class T> static inline T shfl_down_at(const char *f, int l, unsigned m, T v, unsigned d, int w = 32) { return xchg(OP_SHFL_DOWN, m, v, (int)d, w, f, l); }
template <class T> static inline T shfl_xor_at(const char *f, int l, unsigned m, T v, int x, int w = 32) { return xchg(OP_SHFL_XOR, m, v, x, w, f, l); }
static inline unsigned ballot_at(const char *f, int l, unsigned m, int p) { return (unsigned)warp_exchange(OP_BALLOT, m, p != 0, 0, 32, 4, f, l); }
static inline int any_at(const char *f, int l, unsigned m, int p) { return (int)warp_exchange(OP_ANY, m, p != 0, 0, 32, 4, f, l); }
static inline int all_at(const char *f, int l, unsigned m, int p) { return (int)warp_exchange(OP_ALL, m, p != 0, 0, 32, 4, f, l); }
static inline void syncwarp_at(const char *f, int l, unsigned m = 0xffffffffu) { syncwarp(m, f, l); }

void mma_m16n8k16(float *d, const uint32_t *a, uint32_t b0, uint32_t b1, const char *file, int line);

/* the runtime API's device memory: plain heap (exact sizes for ASan) */
cudaError_t last_error(bool clear);
}  // namespace emu

#define threadIdx (static_cast<const uint3 &>(::emu::g_threadIdx))
#define blockIdx (static_cast<const uint3 &>(::emu::g_blockIdx))
#define blockDim (static_cast<const dim3 &>(::emu::g_blockDim))
#define gridDim (static_cast<const dim3 &>(::emu::g_gridDim))
static constexpr int warpSize = 32;

#define __syncthreads() ::emu::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) ::emu::syncwarp_at(__FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_sync(...) ::emu::shfl_at(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) ::emu::shfl_up_at(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) ::emu::shfl_down_at(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) ::emu::shfl_xor_at(__FILE__, __LINE__, __VA_ARGS__)
#define __ballot_sync(...) ::emu::ballot_at(__FILE__, __LINE__, __VA_ARGS__)
#define __any_sync(...) ::emu::any_at(__FILE__, __LINE__, __VA_ARGS__)
#define __all_sync(...) ::emu::all_at(__FILE__, __LINE__, __VA_ARGS__)
/* attention_mma.cuh's vk_mma16816 calls this under #ifdef VITD_EMU instead of its inline PTX */
#define emu_mma_m16n8k16_f32_f16(d, a, b0, b1) ::emu::mma_m16n8k16(d, a, b0, b1, __FILE__, __LINE__)
/* ... and vk_ldmatrix_x4 this: each lane reads its own 16-byte row here, in the kernel's
 * (instrumented) code, so the race check sees the reads; the collective hands out the fragments */
namespace emu {
static inline void ldmatrix_x4_at(uint32_t *r, const void *row, bool trans, const char *file, int line) {
    if ((uintptr_t)row % 16) fail("ldmatrix row address %p not 16-byte aligned at %s:%d", row, file, line);
    uint32_t v[4];
    const volatile uint32_t *src = (const volatile uint32_t *)row;
    for (int i = 0; i < 4; i++) v[i] = src[i];
    ldmatrix_x4(r, v, trans, file, line);
}
}  // namespace emu
#define emu_ldmatrix_x4(r, p, trans) ::emu::ldmatrix_x4_at(r, p, trans, __FILE__, __LINE__)

/* ---- atomics (one OS thread: plain read-modify-write, not a sync point) -------------------- */
template <class T> static inline T atomicAdd(T *p, T v) { T old = *p; *p = old + v; return old; }
static inline int atomicMax(int *p, int v) { int old = *p; if (v > old) *p = v; return old; }
static inline int atomicMin(int *p, int v) { int old = *p; if (v < old) *p = v; return old; }
static inline int atomicExch(int *p, int v) { int old = *p; *p = v; return old; }
static inline unsigned atomicExch(unsigned *p, unsigned v) { unsigned old = *p; *p = v; return old; }
static inline int atomicCAS(int *p, int cmp, int v) { int old = *p; if (old == cmp) *p = v; return old; }
static inline void __threadfence(void) {}
static inline void __threadfence_block(void) {}

/* ---- math: host libm; explicitly rounded ops need -ffp-contract=off (the Makefile sets it) --- */
static inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline float __frcp_rn(float a) { return 1.f / a; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
/* the device's round-to-nearest-even conversion (callers keep x in int range; NaN gives 0 as
 * on the device) */
static inline int __float2int_rn(float x) { return x == x ? (int)nearbyintf(x) : 0; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
static inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }

/* ---- runtime API subset ----------------------------------------------------------------------- */
cudaError_t cudaMalloc(void **p, size_t n);
template <class T> static inline cudaError_t cudaMalloc(T **p, size_t n) { return cudaMalloc((void **)p, n); }
cudaError_t cudaFree(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t st = nullptr);
cudaError_t cudaMemset(void *p, int v, size_t n);
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t st = nullptr);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaStreamSynchronize(cudaStream_t st);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t st = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
template <class F> static inline cudaError_t cudaFuncSetAttribute(F *fn, cudaFuncAttribute attr, int value) {
    ::emu::set_func_attr((const void *)fn, (int)attr, value);
    return cudaSuccess;
}
