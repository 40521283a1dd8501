/* cuda_fp16.h (emulator shim, tests/emu): __half / __half2 on GCC's _Float16, with CUDA's
 * conversion semantics: float -> half rounds to nearest even (libgcc's __truncsfhf2, the same
 * as __float2half_rn on the device), half -> float is exact.  Storage is 2 bytes, alignment 2;
 * __half2 is 4 bytes, alignment 4, x in the low half (as the device's f16x2 registers). */
#pragma once
#include "emu_core.h"

struct __half {
    _Float16 v;
    __half() = default;
    constexpr __half(_Float16 h) : v(h) {}
    __half(float f) : v((_Float16)f) {}
    __half(double d) : v((_Float16)d) {}   /* one rounding, as __double2half */
    __half(int i) : v((_Float16)(float)i) {}
    operator float() const { return (float)v; }
};
struct __attribute__((aligned(4))) __half2 {
    __half x, y;
};
typedef __half half;
typedef __half2 half2;
static_assert(sizeof(__half) == 2 && alignof(__half) == 2, "__half layout");
static_assert(sizeof(__half2) == 4 && alignof(__half2) == 4, "__half2 layout");

static inline __half __float2half(float f) { return __half((_Float16)f); }
static inline __half __float2half_rn(float f) { return __half((_Float16)f); }
static inline float __half2float(__half h) { return (float)h.v; }
static inline __half2 __floats2half2_rn(float lo, float hi) { return __half2{__float2half_rn(lo), __float2half_rn(hi)}; }
static inline __half2 __float2half2_rn(float f) { return __floats2half2_rn(f, f); }
static inline __half2 __halves2half2(__half lo, __half hi) { return __half2{lo, hi}; }
static inline float2 __half22float2(__half2 h) { return float2{__half2float(h.x), __half2float(h.y)}; }
static inline float __low2float(__half2 h) { return __half2float(h.x); }
static inline float __high2float(__half2 h) { return __half2float(h.y); }
static inline unsigned short __half_as_ushort(__half h) { unsigned short u; memcpy(&u, &h, 2); return u; }
static inline __half __ushort_as_half(unsigned short u) { __half h; memcpy(&h, &u, 2); return h; }
