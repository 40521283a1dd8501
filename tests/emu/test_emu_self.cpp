/* test_emu_self.cpp: the CPU SIMT emulator's own tests (tests/emu/README.md): it computes what
 * the hardware computes, and it fails when it should.  Written as CUDA (<<<>>> launches,
 * __shared__), turned into host C++ by gen_host.py like the kernel headers.
 *   exact results:  mma.sync.m16n8k16 (through attention_mma.cuh's vk_mma16816) and WMMA on
 *                   integer matrices; shuffle/ballot semantics incl. width; launch limits
 *   wrong results:  a missing __syncthreads, a missing __syncwarp after a WMMA store, a read of
 *                   shared memory nobody wrote: the output differs from the expected one
 *   loud failures:  (child processes that must die with the right message) shuffle or mma after
 *                   lanes exited, lanes disagreeing on a collective or a WMMA pointer, divergent
 *                   __syncthreads, deadlock, misaligned WMMA pointer, out-of-bounds shared and
 *                   global writes (ASan) */
#include <signal.h>
#include <stdarg.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <string>
#include <vector>

#include <mma.h>
#include "gpu_harness.h"
#include "attention_mma.cuh"
#include "emu_child.h"

/* Runs fn in a child process whose stdout+stderr are captured; the child must die (non-zero
 * exit or a signal) and its output must contain one of the '|'-separated needles. */
static void expect_death(const char *name, void (*fn)(void), const char *needles) {
    std::string out;
    const int st = emu_run_child(fn, out);
    if (st == -1) { gh_result(false, "%s: pipe", name); return; }
    const bool died = !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    size_t at = std::string::npos;
    std::string all = needles;
    for (size_t p = 0; at == std::string::npos && p <= all.size();) {
        size_t q = all.find('|', p);
        if (q == std::string::npos) q = all.size();
        at = out.find(all.substr(p, q - p));
        p = q + 1;
    }
    std::string line = "(not in its output)";
    if (at != std::string::npos) {
        size_t b = out.rfind('\n', at), e = out.find('\n', at);
        b = b == std::string::npos ? 0 : b + 1;
        line = out.substr(b, (e == std::string::npos ? out.size() : e) - b);
        if (line.size() > 220) line = line.substr(0, 220) + "...";
    }
    char how[32];
    if (WIFSIGNALED(st)) snprintf(how, sizeof how, "signal %d", WTERMSIG(st));
    else snprintf(how, sizeof how, "exit %d", WEXITSTATUS(st));
    gh_result(died && at != std::string::npos, "%s: child %s (%s): %s", name, died ? "died" : "survived", how,
              line.c_str());
    if (at == std::string::npos) printf("# child output:\n%s\n", out.substr(0, 2000).c_str());
}

/* ---- exact results ------------------------------------------------------------------------ */

/* A (16x16 row-major), B (16x8, B[k][n] at B[k*8+n]), C, D (16x8 row-major) as __half/float;
 * fragments built per the PTX ISA tables (9.7.14.5.8), the op through attention_mma.cuh */
static __global__ void k_mma16816(float *D, const __half *A, const __half *B, const float *C) {
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    uint32_t a[4];
    for (int r = 0; r < 4; r++) {
        __half2 h;
        const int row = (r == 0 || r == 2) ? g : g + 8, col = 2 * t + (r >= 2 ? 8 : 0);
        h.x = A[row * 16 + col];
        h.y = A[row * 16 + col + 1];
        memcpy(&a[r], &h, 4);
    }
    uint32_t b[2];
    for (int r = 0; r < 2; r++) {
        __half2 h;
        const int k = 2 * t + (r ? 8 : 0);
        h.x = B[k * 8 + g];
        h.y = B[(k + 1) * 8 + g];
        memcpy(&b[r], &h, 4);
    }
    float d[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
    vk_mma16816(d, a, b[0], b[1]);
    D[g * 8 + 2 * t] = d[0];
    D[g * 8 + 2 * t + 1] = d[1];
    D[(g + 8) * 8 + 2 * t] = d[2];
    D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

static int irand(int n) { return rand() % (2 * n + 1) - n; }

static void test_mma16816(void) {
    std::vector<float> A(256), B(128), C(128);
    for (auto &x : A) x = (float)irand(4);
    for (auto &x : B) x = (float)irand(4);
    for (auto &x : C) x = (float)irand(50);
    __half *dA = gh_dev<__half>(256), *dB = gh_dev<__half>(128);
    float *dC = gh_dev<float>(128), *dD = gh_dev<float>(128);
    std::vector<__half> hA(256), hB(128);
    for (int i = 0; i < 256; i++) hA[i] = __float2half(A[i]);
    for (int i = 0; i < 128; i++) hB[i] = __float2half(B[i]);
    cudaMemcpy(dA, hA.data(), 512, cudaMemcpyHostToDevice);
    cudaMemcpy(dB, hB.data(), 256, cudaMemcpyHostToDevice);
    cudaMemcpy(dC, C.data(), 512, cudaMemcpyHostToDevice);
    k_mma16816<<<1, 32>>>(dD, dA, dB, dC);
    std::vector<float> D(128);
    cudaMemcpy(D.data(), dD, 512, cudaMemcpyDeviceToHost);
    int bad = 0;
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 8; n++) {
            float want = C[m * 8 + n];
            for (int k = 0; k < 16; k++) want += A[m * 16 + k] * B[k * 8 + n];
            bad += D[m * 8 + n] != want;
        }
    gh_result(bad == 0, "mma.sync.m16n8k16 (vk_mma16816) = A B + C exactly on integer matrices (%d wrong of 128)", bad);
    cudaFree(dA); cudaFree(dB); cudaFree(dC); cudaFree(dD);
}

/* D = A B + C with A row-major, B col-major or row-major, C loaded row-major, D stored col-major */
static __global__ void k_wmma(float *D, const __half *A, const __half *B, const float *C, int bcol) {
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
    wmma::load_matrix_sync(a, A, 16);
    wmma::load_matrix_sync(c, C, 16, wmma::mem_row_major);
    if (bcol) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b;
        wmma::load_matrix_sync(b, B, 16);
        wmma::mma_sync(c, a, b, c);
    } else {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
        wmma::load_matrix_sync(b, B, 16);
        wmma::mma_sync(c, a, b, c);
    }
    wmma::store_matrix_sync(D, c, 16, wmma::mem_col_major);
}

static void test_wmma(int bcol) {
    std::vector<float> A(256), B(256), C(256);
    for (auto &x : A) x = (float)irand(4);
    for (auto &x : B) x = (float)irand(4);
    for (auto &x : C) x = (float)irand(50);
    std::vector<__half> hA(256), hB(256);
    for (int i = 0; i < 256; i++) { hA[i] = __float2half(A[i]); hB[i] = __float2half(B[i]); }
    __half *dA = gh_dev<__half>(256), *dB = gh_dev<__half>(256);
    float *dC = gh_dev<float>(256), *dD = gh_dev<float>(256);
    cudaMemcpy(dA, hA.data(), 512, cudaMemcpyHostToDevice);
    cudaMemcpy(dB, hB.data(), 512, cudaMemcpyHostToDevice);
    cudaMemcpy(dC, C.data(), 1024, cudaMemcpyHostToDevice);
    k_wmma<<<1, 32>>>(dD, dA, dB, dC, bcol);
    std::vector<float> D(256);
    cudaMemcpy(D.data(), dD, 1024, cudaMemcpyDeviceToHost);
    int bad = 0;
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) {
            float want = C[m * 16 + n];
            for (int k = 0; k < 16; k++) want += A[m * 16 + k] * (bcol ? B[n * 16 + k] : B[k * 16 + n]);
            bad += D[n * 16 + m] != want;  /* D stored col-major */
        }
    gh_result(bad == 0, "wmma 16x16x16: A row-major, B %s, C row-major in, D col-major out, exact (%d wrong of 256)",
           bcol ? "col-major" : "row-major", bad);
    cudaFree(dA); cudaFree(dB); cudaFree(dC); cudaFree(dD);
}

/* shuffles: every variant against CUDA's documented semantics */
static __global__ void k_shuffles(int *out) {
    const int lane = threadIdx.x % 32;
    int *o = out + lane * 8;
    o[0] = __shfl_sync(0xffffffffu, lane * 10, (lane + 5) % 32);
    o[1] = __shfl_sync(0xffffffffu, lane * 10, 3, 8);        /* width 8: lane 3 of each group */
    o[2] = __shfl_up_sync(0xffffffffu, lane * 10, 2, 16);
    o[3] = __shfl_down_sync(0xffffffffu, lane * 10, 3);
    o[4] = __shfl_xor_sync(0xffffffffu, lane * 10, 9);
    o[5] = __shfl_xor_sync(0xffffffffu, lane * 10, 4, 4);     /* width 4: earlier group ok, later own */
    o[6] = (int)__ballot_sync(0xffffffffu, lane % 3 == 0);
    o[7] = __any_sync(0xffffffffu, lane == 31) * 2 + __all_sync(0xffffffffu, lane < 31);
}

static void test_shuffles(void) {
    int *d = gh_dev<int>(256);
    k_shuffles<<<1, 32>>>(d);
    std::vector<int> h(256);
    cudaMemcpy(h.data(), d, 1024, cudaMemcpyDeviceToHost);
    unsigned ball = 0;
    for (int l = 0; l < 32; l += 3) ball |= 1u << l;
    int bad = 0;
    for (int l = 0; l < 32; l++) {
        const int *o = &h[l * 8];
        const int want[8] = {((l + 5) % 32) * 10, (l / 8 * 8 + 3) * 10, (l % 16 >= 2 ? l - 2 : l) * 10,
                             (l + 3 < 32 ? l + 3 : l) * 10, (l ^ 9) * 10, ((l & 4) ? l ^ 4 : l) * 10, (int)ball, 2};
        for (int i = 0; i < 8; i++) bad += o[i] != want[i];
    }
    gh_result(bad == 0, "shfl idx/up/down/xor (incl. width), ballot, any, all as CUDA documents them (%d wrong)", bad);
    cudaFree(d);
}

/* __syncwarp with exited lanes named in the mask is allowed (they count as arrived) */
static __global__ void k_syncwarp_exited(int *out) {
    const int lane = threadIdx.x % 32;
    if (lane >= 16) return;
    out[lane] = lane;
    __syncwarp();
    out[16 + lane] = out[lane] + out[(lane + 1) % 16];
}

static void test_syncwarp_exited(void) {
    int *d = gh_dev<int>(32);
    k_syncwarp_exited<<<1, 32>>>(d);
    std::vector<int> h(32);
    cudaMemcpy(h.data(), d, 128, cudaMemcpyDeviceToHost);
    int bad = 0;
    for (int l = 0; l < 16; l++) bad += h[16 + l] != l + (l + 1) % 16;
    gh_result(bad == 0, "__syncwarp(full mask) after half the lanes exited completes, data exchanged (%d wrong)", bad);
    cudaFree(d);
}

/* launch limits: > 48 KB dynamic smem needs the opt-in attribute; blocks over 1024 threads fail */
static __global__ void k_big_smem(int *out, int n) {
    extern __shared__ int big[];
    for (int i = threadIdx.x; i < n; i += blockDim.x) big[i] = i;
    __syncthreads();
    if (threadIdx.x == 0) {
        long long s = 0;
        for (int i = 0; i < n; i++) s += big[i];
        *out = (int)(s % 1000003);
    }
}

static void test_launch_limits(void) {
    int *d = gh_dev<int>(1);
    const int n = 16384; /* 64 KB */
    cudaGetLastError();
    k_big_smem<<<1, 128, n * sizeof(int)>>>(d, n);
    cudaError_t e1 = cudaGetLastError();
    int h = 0;
    cudaMemcpy(&h, d, 4, cudaMemcpyDeviceToHost);
    gh_result(e1 == cudaErrorInvalidValue && h == -1,
           "64 KB dynamic smem without cudaFuncSetAttribute: launch fails (%s), kernel did not run", cudaGetErrorString(e1));
    cudaFuncSetAttribute(k_big_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, 100000);
    k_big_smem<<<1, 128, n * sizeof(int)>>>(d, n);
    cudaError_t e2 = cudaGetLastError();
    cudaMemcpy(&h, d, 4, cudaMemcpyDeviceToHost);
    const long long want = (long long)n * (n - 1) / 2 % 1000003;
    gh_result(e2 == cudaSuccess && h == want, "after raising the limit it runs (%s, sum %d, want %lld)",
           cudaGetErrorString(e2), h, want);
    k_big_smem<<<1, 2048, 0>>>(d, 0);
    cudaError_t e3 = cudaGetLastError();
    gh_result(e3 == cudaErrorInvalidConfiguration, "2048 threads per block: %s", cudaGetErrorString(e3));
    cudaFree(d);
}

/* __float2half rounds to nearest even (IEEE binary16), as the device's cvt.rn.f16.f32 */
static void test_half_conversions(void) {
    struct { float in; unsigned short bits; } cases[] = {
        {1.f, 0x3c00},
        {1.f + 1.f / 2048, 0x3c00},          /* tie between 1 and 1+2^-10: even (1) */
        {1.f + 3.f / 2048, 0x3c02},          /* tie between 1+2^-10 and 1+2^-9: even (1+2^-9) */
        {1.f + 1.f / 2048 + 1.f / 65536, 0x3c01},  /* just above the tie: up */
        {65504.f, 0x7bff},                   /* largest finite */
        {65519.f, 0x7bff},                   /* below the midpoint to 65536: stays finite */
        {65520.f, 0x7c00},                   /* the midpoint: rounds to even = inf */
        {-1e9f, 0xfc00},
        {5.9604645e-08f, 0x0001},            /* 2^-24, smallest subnormal */
        {2.9802322e-08f, 0x0000},            /* 2^-25: tie between 0 and 2^-24: even (0) */
        {8.940697e-08f, 0x0002},             /* 1.5 * 2^-24: tie between 1 and 2 ulps: even (2) */
        {-0.f, 0x8000},
    };
    int bad = 0;
    for (auto &c : cases) {
        unsigned short got = __half_as_ushort(__float2half_rn(c.in));
        if (got != c.bits) {
            printf("# __float2half_rn(%.9g) = 0x%04x, want 0x%04x\n", c.in, got, c.bits);
            bad++;
        }
    }
    const __half2 h2 = __floats2half2_rn(1.5f, -2.25f);
    unsigned u;
    memcpy(&u, &h2, 4);
    const float2 back = __half22float2(h2);
    const bool ok2 = u == 0xc0803e00u && back.x == 1.5f && back.y == -2.25f && std::isnan(__half2float(__ushort_as_half(0x7e00)));
    gh_result(bad == 0 && ok2, "__half: round-to-nearest-even incl. ties, overflow to inf, subnormals; __half2 low half = x (%d wrong)", bad);
}

/* ---- wrong results: ordering bugs change the output --------------------------------------- */

static __global__ void k_neighbour(int *out, int barrier) {
    __shared__ int sm[128];
    const int t = threadIdx.x;
    sm[t] = t + 1;
    if (barrier) __syncthreads();
    out[t] = sm[(t + 1) % blockDim.x];
}

static __global__ void k_neighbour_dyn(int *out) { /* reads shared memory nobody wrote */
    extern __shared__ int dsm[];
    out[threadIdx.x] = dsm[threadIdx.x];
}

/* WMMA tile stored to shared memory, then read by other lanes; with or without __syncwarp */
static __global__ void k_wmma_store_read(float *out, const __half *A, int sync) {
    using namespace nvcuda;
    __shared__ __align__(32) float tile[256];
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
    wmma::load_matrix_sync(a, A, 16);
    wmma::load_matrix_sync(b, A, 16);
    wmma::fill_fragment(c, 1.f);
    wmma::mma_sync(c, a, b, c);
    wmma::store_matrix_sync(tile, c, 16, wmma::mem_row_major);
    if (sync) __syncwarp();
    const int lane = threadIdx.x;
    for (int r = 0; r < 16; r++)
        for (int col = lane; col < 16; col += 32) out[r * 16 + col] = tile[r * 16 + col];
}

static void test_ordering(void) {
    int *d = gh_dev<int>(128);
    std::vector<int> h(128);
    int wrong_runs = 0, right_runs = 0;
    for (int run = 0; run < 4; run++) {
        k_neighbour<<<1, 128>>>(d, 0);
        cudaMemcpy(h.data(), d, 512, cudaMemcpyDeviceToHost);
        int bad = 0;
        for (int t = 0; t < 128; t++) bad += h[t] != (t + 1) % 128 + 1;
        wrong_runs += bad > 0;
        k_neighbour<<<1, 128>>>(d, 1);
        cudaMemcpy(h.data(), d, 512, cudaMemcpyDeviceToHost);
        bad = 0;
        for (int t = 0; t < 128; t++) bad += h[t] != (t + 1) % 128 + 1;
        right_runs += bad == 0;
    }
    gh_result(wrong_runs == 4, "missing __syncthreads (write smem, read the neighbour's): wrong result in %d of 4 runs", wrong_runs);
    gh_result(right_runs == 4, "with the __syncthreads: right result in %d of 4 runs", right_runs);

    k_neighbour_dyn<<<1, 64, 64 * sizeof(int)>>>(d);
    cudaMemcpy(h.data(), d, 256, cudaMemcpyDeviceToHost);
    int poisoned = 0;
    for (int t = 0; t < 64; t++)
        poisoned += h[t] == -1 || h[t] == 0x7f7f7f7f || h[t] == (int)0xfefefefe;
    gh_result(poisoned == 64 && (h[0] == h[63]),
           "shared memory nobody wrote reads as the block's poison (0x%08x): %d of 64", (unsigned)h[0], poisoned);

    std::vector<__half> hA(256);
    for (int i = 0; i < 256; i++) hA[i] = __float2half((float)(i % 7 - 3));
    __half *dA = gh_dev<__half>(256);
    float *dO = gh_dev<float>(256);
    cudaMemcpy(dA, hA.data(), 512, cudaMemcpyHostToDevice);
    std::vector<float> ref(256), got(256);
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) {
            float s = 1.f;
            for (int k = 0; k < 16; k++) s += __half2float(hA[m * 16 + k]) * __half2float(hA[k * 16 + n]);
            ref[m * 16 + n] = s;
        }
    int wrong = 0, right = 0;
    for (int run = 0; run < 4; run++) {
        k_wmma_store_read<<<1, 32>>>(dO, dA, 0);
        cudaMemcpy(got.data(), dO, 1024, cudaMemcpyDeviceToHost);
        wrong += memcmp(got.data(), ref.data(), 1024) != 0;
        k_wmma_store_read<<<1, 32>>>(dO, dA, 1);
        cudaMemcpy(got.data(), dO, 1024, cudaMemcpyDeviceToHost);
        right += memcmp(got.data(), ref.data(), 1024) == 0;
    }
    gh_result(wrong == 4, "missing __syncwarp between store_matrix_sync and other lanes' reads: wrong in %d of 4 runs", wrong);
    gh_result(right == 4, "with the __syncwarp: right in %d of 4 runs", right);
    cudaFree(d); cudaFree(dA); cudaFree(dO);
}

/* ---- loud failures (child processes) ------------------------------------------------------ */

static __global__ void k_shfl_after_exit(float *out) {
    const int lane = threadIdx.x % 32;
    if (lane >= 24) return;
    out[lane] = __shfl_xor_sync(0xffffffffu, (float)lane, 1);
}
static void die_shfl_after_exit(void) { float *d = gh_dev<float>(32); k_shfl_after_exit<<<1, 32>>>(d); }

static __global__ void k_mma_after_exit(float *out) {
    const int lane = threadIdx.x % 32;
    if (lane == 7) return;
    uint32_t a[4] = {0, 0, 0, 0};
    float d[4] = {0, 0, 0, 0};
    vk_mma16816(d, a, 0u, 0u);
    out[lane] = d[0];
}
static void die_mma_after_exit(void) { float *d = gh_dev<float>(32); k_mma_after_exit<<<1, 32>>>(d); }

static __global__ void k_disagree(int *out) {
    const int lane = threadIdx.x % 32;
    out[lane] = lane < 16 ? __shfl_xor_sync(0xffffffffu, lane, 1) : __shfl_down_sync(0xffffffffu, lane, 1);
}
static void die_disagree(void) { int *d = gh_dev<int>(32); k_disagree<<<1, 32>>>(d); }

static __global__ void k_mask_mismatch(int *out) {
    const int lane = threadIdx.x % 32;
    out[lane] = __shfl_xor_sync(lane < 16 ? 0xffffffffu : 0xffff0000u, lane, 1);
}
static void die_mask_mismatch(void) { int *d = gh_dev<int>(32); k_mask_mismatch<<<1, 32>>>(d); }

static __global__ void k_wmma_ptr_disagree(float *out, const __half *A) {
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
    wmma::load_matrix_sync(a, A + (threadIdx.x < 16 ? 0 : 256), 16);
    out[threadIdx.x] = __half2float(a.x[0]);
}
static void die_wmma_ptr(void) {
    __half *A = gh_dev<__half>(512);
    float *d = gh_dev<float>(32);
    k_wmma_ptr_disagree<<<1, 32>>>(d, A);
}

static __global__ void k_wmma_misaligned(float *out, const __half *A) {
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
    wmma::load_matrix_sync(a, A + 8, 16);   /* 16 bytes off a 256-bit boundary */
    out[threadIdx.x] = __half2float(a.x[0]);
}
static void die_wmma_misaligned(void) {
    __half *A = gh_dev<__half>(512);
    float *d = gh_dev<float>(32);
    k_wmma_misaligned<<<1, 32>>>(d, A);
}

static __global__ void k_divergent_barrier(int *out) {
    if (threadIdx.x < 32) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}
static void die_divergent_barrier(void) { int *d = gh_dev<int>(64); k_divergent_barrier<<<1, 64>>>(d); }

static __global__ void k_deadlock(int *out) {
    const int lane = threadIdx.x % 32;
    int v = lane;
    if (lane == 0) __syncthreads();
    else v = __shfl_xor_sync(0xffffffffu, v, 1);
    out[lane] = v;
}
static void die_deadlock(void) { int *d = gh_dev<int>(32); k_deadlock<<<1, 32>>>(d); }

static __global__ void k_smem_oob(int *out) {
    extern __shared__ float sm[];
    sm[threadIdx.x + 1] = 1.f;   /* one past the end for the last thread */
    __syncthreads();
    out[threadIdx.x] = (int)sm[threadIdx.x];
}
static void die_smem_oob(void) { int *d = gh_dev<int>(64); k_smem_oob<<<1, 64, 64 * sizeof(float)>>>(d); }

static __global__ void k_static_smem_oob(int *out, int n) {
    __shared__ int red[32];
    int *p = red;                /* through a pointer: UBSan's bounds check cannot see it, ASan does */
    p[threadIdx.x % 32 + n] = 1;
    __syncthreads();
    out[threadIdx.x] = red[threadIdx.x % 32];
}
static void die_static_smem_oob(void) { int *d = gh_dev<int>(64); k_static_smem_oob<<<1, 64>>>(d, 1); }

static __global__ void k_global_oob(float *out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) out[i] = 1.f;   /* <= : one element too many */
}
static void die_global_oob(void) {
    float *d;
    cudaMalloc(&d, 100 * sizeof(float));
    k_global_oob<<<1, 128>>>(d, 100);
}

int main(void) {
    const char *s = getenv("VITD_SEED");
    const unsigned long long seed = s ? strtoull(s, nullptr, 10) : (unsigned long long)time(nullptr);
    printf("# seed %llu (replay with VITD_SEED)\n", seed);
    srand((unsigned)seed);
    emu::set_seed(seed);

    test_half_conversions();
    test_mma16816();
    test_wmma(1);
    test_wmma(0);
    test_shuffles();
    test_syncwarp_exited();
    test_launch_limits();
    test_ordering();

    expect_death("shuffle after lanes exited", die_shfl_after_exit, "exited");
    expect_death("mma.sync.m16n8k16 with an exited lane", die_mma_after_exit, "exited");
    expect_death("lanes in different shuffles", die_disagree, "lanes disagree");
    expect_death("lanes with different masks", die_mask_mismatch, "lanes disagree");
    expect_death("wmma load with different pointers per lane", die_wmma_ptr, "lanes disagree on the warp's wmma op");
    expect_death("wmma load from a misaligned pointer", die_wmma_misaligned, "not 256-bit aligned");
    expect_death("divergent __syncthreads", die_divergent_barrier, "divergent __syncthreads");
    expect_death("deadlock (lane 0 in __syncthreads, the warp in a shuffle), waiters listed", die_deadlock, "wait in __syncthreads at");
    expect_death("dynamic shared memory written one past the end", die_smem_oob, "AddressSanitizer: heap-buffer-overflow");
    expect_death("static __shared__ array written one past the end", die_static_smem_oob, "AddressSanitizer: heap-buffer-overflow");
    expect_death("global buffer written one past the end", die_global_oob, "AddressSanitizer: heap-buffer-overflow");

    return gh_summary();
}
