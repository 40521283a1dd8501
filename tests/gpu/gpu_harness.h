/* gpu_harness.h: helpers for the GPU tests (tests/gpu), the kernel lab (kernels/dev) and the
 * same tests on the CPU emulator (tests/emu, where VITD_EMU is defined):
 * fresh random inputs (seeded from the clock unless VITD_SEED is set, printed so a failure can
 * be replayed), device buffers poisoned with NaN before each kernel so unwritten outputs fail,
 * comparison against a float64 reference as |got - ref| <= atol + rtol*|ref| (NaN fails), and
 * PASS/FAIL lines ending with "N passed, M failed" like tests/unit/harness.h.
 * CUDA errors in tests abort the test binary with a message (tests, not engine code). */
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vector>

static int gh_passed, gh_failed, gh_skipped;

#define GH_CUDA(call)                                                                          \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            printf("FAIL cuda error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__,     \
                   __LINE__, #call);                                                           \
            printf("%d passed, %d failed\n", gh_passed, gh_failed + 1);                        \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)
#define GH_SYNC() do { GH_CUDA(cudaGetLastError()); GH_CUDA(cudaDeviceSynchronize()); } while (0)

static uint64_t gh_rng;
static inline void gh_seed(void) {
    const char *s = getenv("VITD_SEED");
    gh_rng = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) * 2654435761u + (uint64_t)clock();
    if (!gh_rng) gh_rng = 88172645463325252ull;
    printf("# seed %llu (replay with VITD_SEED)\n", (unsigned long long)gh_rng);
}
static inline float gh_frand(void) { /* uniform [-1, 1) */
    gh_rng ^= gh_rng << 13; gh_rng ^= gh_rng >> 7; gh_rng ^= gh_rng << 17;
    return (float)((gh_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
}
static inline void gh_fill(std::vector<float> &v, float scale, float offset = 0.f) {
    for (auto &x : v) x = offset + scale * gh_frand();
}
/* round through FP16 so references see exactly what the device sees */
static inline void gh_round_half(std::vector<float> &v) {
    for (auto &x : v) x = __half2float(__float2half(x));
}

/* n elements, NaN-poisoned (0xff: NaN for float and half).  On a GPU 16 bytes of slack follow;
 * on the CPU emulator (tests/emu, VITD_EMU) the buffer is exactly n elements, so ASan reports
 * any access past the end. */
#ifdef VITD_EMU
#define GH_SLACK 0
#else
#define GH_SLACK 16
#endif
template <typename T> static T *gh_dev(size_t n) {
    T *p;
    GH_CUDA(cudaMalloc(&p, n * sizeof(T) + GH_SLACK));
    GH_CUDA(cudaMemset(p, 0xff, n * sizeof(T) + GH_SLACK));
    return p;
}
static inline float *gh_up(const std::vector<float> &v) {
    float *p = gh_dev<float>(v.size());
    GH_CUDA(cudaMemcpy(p, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice));
    return p;
}
static inline __half *gh_up_half(const std::vector<float> &v) {
    std::vector<__half> h(v.size());
    for (size_t i = 0; i < v.size(); i++) h[i] = __float2half(v[i]);
    __half *p = gh_dev<__half>(v.size());
    GH_CUDA(cudaMemcpy(p, h.data(), h.size() * sizeof(__half), cudaMemcpyHostToDevice));
    return p;
}
static inline std::vector<float> gh_down(const float *d, size_t n) {
    std::vector<float> v(n);
    GH_CUDA(cudaMemcpy(v.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost));
    return v;
}
static inline std::vector<float> gh_down_half(const __half *d, size_t n) {
    std::vector<__half> h(n);
    GH_CUDA(cudaMemcpy(h.data(), d, n * sizeof(__half), cudaMemcpyDeviceToHost));
    std::vector<float> v(n);
    for (size_t i = 0; i < n; i++) v[i] = __half2float(h[i]);
    return v;
}

/* |got - ref| <= atol + rtol*|ref| everywhere; prints the worst element */
static inline int gh_check(const char *name, const std::vector<float> &got, const std::vector<double> &ref,
                    double atol, double rtol) {
    double worst = 0, maxdiff = 0;
    size_t wi = 0, bad = 0;
    if (got.size() != ref.size()) {
        printf("FAIL %s: size %zu vs %zu\n", name, got.size(), ref.size());
        gh_failed++;
        return 0;
    }
    for (size_t i = 0; i < got.size(); i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d == d) || isinf(d)) d = INFINITY;
        double r = d / (atol + rtol * fabs(ref[i]));
        if (d > maxdiff) maxdiff = d;
        if (r > 1) bad++;
        if (r > worst || d == INFINITY) { worst = r; wi = i; }
    }
    int ok = bad == 0;
    printf("%s %s maxdiff=%.3g tol=%.3g+%.3g*|ref| worst@%zu got=%.6g ref=%.6g (%zu bad of %zu)\n",
           ok ? "PASS" : "FAIL", name, maxdiff, atol, rtol, wi, got.empty() ? 0. : (double)got[wi],
           ref.empty() ? 0. : ref[wi], bad, got.size());
    if (ok) gh_passed++; else gh_failed++;
    return ok;
}

static inline void gh_result(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void gh_result(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "PASS" : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout); /* in order with what a crash writes to stderr */
    if (ok) gh_passed++; else gh_failed++;
}

static inline int gh_summary(void) {
    if (gh_skipped) printf("%d passed, %d failed, %d skipped\n", gh_passed, gh_failed, gh_skipped);
    else printf("%d passed, %d failed\n", gh_passed, gh_failed);
    return gh_failed ? 1 : 0;
}

/* median of event-timed runs of fn(), in ms */
template <typename F> static float gh_time_ms(F fn, int warmup, int iters) {
    for (int i = 0; i < warmup; i++) fn();
    GH_SYNC();
    cudaEvent_t a, b;
    GH_CUDA(cudaEventCreate(&a));
    GH_CUDA(cudaEventCreate(&b));
    std::vector<float> t(iters);
    for (int i = 0; i < iters; i++) {
        GH_CUDA(cudaEventRecord(a));
        fn();
        GH_CUDA(cudaEventRecord(b));
        GH_CUDA(cudaEventSynchronize(b));
        GH_CUDA(cudaEventElapsedTime(&t[i], a, b));
    }
    GH_CUDA(cudaGetLastError());
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    for (int i = 1; i < iters; i++) /* insertion sort, iters is small */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) { float x = t[j]; t[j] = t[j - 1]; t[j - 1] = x; }
    return t[iters / 2];
}
