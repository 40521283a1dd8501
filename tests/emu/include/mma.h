/* mma.h (emulator shim, tests/emu): nvcuda::wmma for the 16x16x16 FP16 -> FP32 shape.
 * A fragment holds 8 of the tile's 256 elements per lane.  The real distribution is
 * unspecified (opaque to CUDA code), so any fixed one is valid; this one scrambles: element
 * (r, c) of the logical tile (A: M x K, B: K x N, C: M x N), idx = 16 r + c, is element i of
 * lane l where 32 i + l = (37 idx + 19) mod 256.  So lane l never holds element (r, l mod 16)
 * or column l + 32 k of a row, the elements that lane-strided code reads back: code that reads
 * a stored tile before the other lanes stored their share (a missing __syncwarp) reads data
 * those lanes have not written yet.
 * load/store/fill touch only the lane's share and are no sync points (each is checked against
 * the other lanes' pointer / ldm / layout through emu::warp_op_log); mma_sync is a warp
 * collective (emu.cpp).  Checked as CUDA requires: 256-bit aligned pointers, ldm a multiple of
 * 16 bytes. */
#pragma once
#include "emu_core.h"
#include "cuda_fp16.h"

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "emulator: only the 16x16x16 shape");
    enum { num_elements = 8 };
    T x[8];
};

namespace detail {
template <class L> struct is_col : std::false_type {};
template <> struct is_col<col_major> : std::true_type {};
static inline void check_ptr(const void *p, unsigned ldm, size_t esz, const char *what,
                             const char *file, int line) {
    if ((uintptr_t)p % 32) ::emu::fail("%s at %s:%d: pointer %p not 256-bit aligned", what, file, line, p);
    if ((ldm * esz) % 16) ::emu::fail("%s at %s:%d: ldm %u not a multiple of 16 bytes", what, file, line, ldm);
}
/* element i of lane l: (row, col) of the logical tile */
static inline void rc_of(int l, int i, int &r, int &c) {
    int idx = ((l + 32 * i - 19 + 256) * 173) % 256;   /* 173 = 37^-1 mod 256 */
    r = idx / 16;
    c = idx % 16;
}
static inline void rc(int i, int &r, int &c) { rc_of(::emu::lane_id(), i, r, c); }
template <class Use, class T, class L>
static inline void load(fragment<Use, 16, 16, 16, T, L> &f, const T *p, unsigned ldm, bool col,
                        const char *file, int line) {
    check_ptr(p, ldm, sizeof(T), "wmma::load_matrix_sync", file, line);
    ::emu::warp_op_log("wmma::load_matrix_sync", p, ldm, col, file, line);
    for (int i = 0; i < 8; i++) {
        int r, c;
        rc(i, r, c);
        f.x[i] = col ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
    }
}
/* d = a b + c over the logical tiles (fragment layouts do not matter once loaded) */
void mma_sync_impl(float *d, const __half *a, const __half *b, const float *c, const char *file,
                   int line);
}  // namespace detail

template <class Use, class T, class L>
static inline void load_matrix_sync_at(fragment<Use, 16, 16, 16, T, L> &f, const T *p, unsigned ldm,
                                       const char *file, int line) {
    static_assert(!std::is_same<Use, accumulator>::value, "accumulator loads take a layout");
    detail::load(f, p, ldm, detail::is_col<L>::value, file, line);
}
template <class T>
static inline void load_matrix_sync_at(fragment<accumulator, 16, 16, 16, T> &f, const T *p, unsigned ldm,
                                       layout_t lay, const char *file, int line) {
    detail::load(f, p, ldm, lay == mem_col_major, file, line);
}
template <class T>
static inline void store_matrix_sync_at(T *p, const fragment<accumulator, 16, 16, 16, T> &f, unsigned ldm,
                                        layout_t lay, const char *file, int line) {
    detail::check_ptr(p, ldm, sizeof(T), "wmma::store_matrix_sync", file, line);
    ::emu::warp_op_log("wmma::store_matrix_sync", p, ldm, lay == mem_col_major, file, line);
    for (int i = 0; i < 8; i++) {
        int r, c;
        detail::rc(i, r, c);
        if (lay == mem_col_major) p[(size_t)c * ldm + r] = f.x[i];
        else p[(size_t)r * ldm + c] = f.x[i];
    }
}
template <class Use, class T, class L, class V>
static inline void fill_fragment_at(fragment<Use, 16, 16, 16, T, L> &f, V v, const char *file, int line) {
    ::emu::warp_op_log("wmma::fill_fragment", nullptr, 0, 0, file, line);
    for (int i = 0; i < 8; i++) f.x[i] = (T)v;
}
template <class LA, class LB>
static inline void mma_sync_at(fragment<accumulator, 16, 16, 16, float> &d,
                               const fragment<matrix_a, 16, 16, 16, __half, LA> &a,
                               const fragment<matrix_b, 16, 16, 16, __half, LB> &b,
                               const fragment<accumulator, 16, 16, 16, float> &c, const char *file,
                               int line) {
    detail::mma_sync_impl(d.x, a.x, b.x, c.x, file, line);
}
}  // namespace wmma
}  // namespace nvcuda

/* the call sites' file:line go into the warp-op log and the diagnostics */
#define load_matrix_sync(...) load_matrix_sync_at(__VA_ARGS__, __FILE__, __LINE__)
#define store_matrix_sync(...) store_matrix_sync_at(__VA_ARGS__, __FILE__, __LINE__)
#define fill_fragment(...) fill_fragment_at(__VA_ARGS__, __FILE__, __LINE__)
#define mma_sync(...) mma_sync_at(__VA_ARGS__, __FILE__, __LINE__)
