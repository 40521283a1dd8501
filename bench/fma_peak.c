/* fma_peak.c: the FP32 FMA peak this machine really reaches, for bench/cpu_vs_torch.sh's
 * "fraction of peak" column: 2 threads, each running independent chains of FMAs in registers
 * (12 accumulators, enough to cover FMA latency x throughput), with 256-bit (AVX2) and 512-bit
 * (AVX-512) vectors.  Prints "avx2 <GFLOP/s>" and, where the CPU has it, "avx512 <GFLOP/s>".
 *   cc -O2 -pthread bench/fma_peak.c -o fma_peak && ./fma_peak [threads] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ITERS 50000000L
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

typedef float v8 __attribute__((vector_size(32)));
typedef float v16 __attribute__((vector_size(64)));
static volatile float sink;

#define BODY(V, N)                                                                             \
    V m, c;                                                                                    \
    for (int i = 0; i < N; i++) { m[i] = 0.999999f; c[i] = 1e-7f; }                           \
    V a0 = c * 1, a1 = c * 2, a2 = c * 3, a3 = c * 4, a4 = c * 5, a5 = c * 6, a6 = c * 7,      \
      a7 = c * 8, a8 = c * 9, a9 = c * 10, a10 = c * 11, a11 = c * 12;                         \
    for (long i = 0; i < ITERS; i++) {                                                         \
        a0 = a0 * m + c; a1 = a1 * m + c; a2 = a2 * m + c; a3 = a3 * m + c;                   \
        a4 = a4 * m + c; a5 = a5 * m + c; a6 = a6 * m + c; a7 = a7 * m + c;                   \
        a8 = a8 * m + c; a9 = a9 * m + c; a10 = a10 * m + c; a11 = a11 * m + c;               \
        __asm__ volatile("" : "+v"(m));                                                      \
    }                                                                                          \
    V s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;                       \
    sink = s[0];

__attribute__((target("avx2,fma"))) static void *run8(void *arg) { (void)arg; BODY(v8, 8) return NULL; }
__attribute__((target("avx512f"))) static void *run16(void *arg) { (void)arg; BODY(v16, 16) return NULL; }

static double measure(void *(*fn)(void *), int threads, int lanes) {
    pthread_t t[64];
    double t0 = now();
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, fn, NULL);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    double dt = now() - t0;
    return 2.0 * 12 * lanes * ITERS * threads / dt / 1e9;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    if (threads < 1 || threads > 64) threads = 2;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        printf("avx2 %.1f\n", measure(run8, threads, 8));
    if (__builtin_cpu_supports("avx512f")) printf("avx512 %.1f\n", measure(run16, threads, 16));
    return 0;
}
