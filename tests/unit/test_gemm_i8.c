/* test_gemm_i8.c: the INT8 GEMM (engine/cpu/cpu_gemm_i8.c) on random shapes (M = 1, K not a
 * multiple of 4 or 64, N not a multiple of the panel, column sub-ranges): the scalar, AVX2 and
 * VNNI paths (those the CPU has) against an exact integer reference computed here from the
 * quantized bytes (int32 sums equal exactly, dequantized outputs equal bit for bit between the
 * paths and within float rounding of the reference), the quantizers' rounding bounds, all-zero / inf / nan rows, and
 * the end-to-end error against the FP32 product within the bound the quantization steps give. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_gemm_i8.h"
#include "harness.h"

static unsigned long long rng = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
}

static void *xalloc(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) abort();
    return p;
}

/* weights: per-row bound |W - s q| <= s/2 (1 + 1e-5), max |q| == 127, comp-free checks */
static int check_weights(const void *Wp, const float *W, int N, int K) {
    const float *sw = vit_gemm_i8_scales(Wp);
    for (int n = 0; n < N; n++) {
        int maxq = 0;
        for (int k = 0; k < K; k++) {
            int q = vit_gemm_i8_weight(Wp, N, K, n, k);
            if (q < -127 || q > 127) return 0;
            if (abs(q) > maxq) maxq = abs(q);
            if (fabsf(W[(size_t)n * K + k] - sw[n] * (float)q) > 0.5f * sw[n] * (1.f + 1e-5f) + 1e-30f)
                return 0;
        }
        if (sw[n] > 0.f && maxq != 127) return 0;
    }
    return 1;
}

static int have(int path) {
    return path == VIT_I8_SCALAR || (path == VIT_I8_VNNI && vit_gemm_i8_vnni_available()) ||
           (path == VIT_I8_AVX2 && vit_gemm_i8_avx2_available());
}
static const char *path_name(int path) {
    return path == VIT_I8_VNNI ? "vnni" : path == VIT_I8_AVX2 ? "avx2" : "scalar";
}
static const int paths[] = {VIT_I8_SCALAR, VIT_I8_AVX2, VIT_I8_VNNI};

static void test_shape(int M, int N, int K, int vnni) {
    int Kp = vit_gemm_i8_kpad(K), lda = Kp + 4 * (M % 3), ldc = N + 5;
    float *W = malloc(sizeof(float) * (size_t)N * K), *A = malloc(sizeof(float) * (size_t)M * K);
    float *bias = malloc(sizeof(float) * N);
    for (size_t i = 0; i < (size_t)N * K; i++) W[i] = frand() * (1.f + (float)(i % 7));
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = frand() * 3.f;
    for (int n = 0; n < N; n++) bias[n] = frand();
    if (N > 2) for (int k = 0; k < K; k++) W[(size_t)2 * K + k] = 0.f; /* an all-zero channel */
    void *Wp = xalloc(vit_gemm_i8_packed_bytes(N, K));
    vit_gemm_i8_pack(Wp, W, N, K);
    char name[160];
    snprintf(name, sizeof name, "pack M=%d N=%d K=%d: |W - s q| <= s/2, max |q| = 127", M, N, K);
    CHECK(check_weights(Wp, W, N, K), "%s", name);

    /* activations: both quantizers give identical bytes and scales, within half a step */
    uint8_t *Q = xalloc((size_t)M * lda), *Q2 = xalloc((size_t)M * lda);
    float *sa = malloc(sizeof(float) * M), *sa2 = malloc(sizeof(float) * M);
    memset(Q, 7, (size_t)M * lda);
    memset(Q2, 7, (size_t)M * lda);
    vit_quantize_rows_u8(Q, lda, sa, A, K, M, K, VIT_I8_SCALAR);
    int qok = 1;
    for (int m = 0; m < M; m++)
        for (int k = 0; k < Kp; k++) {
            float x = k < K ? A[(size_t)m * K + k] : 0.f;
            int q = (int)Q[(size_t)m * lda + k] - 128;
            if (q < -127 || q > 127 || fabsf(x - sa[m] * (float)q) > 0.5f * sa[m] * (1.f + 1e-5f))
                qok = 0;
        }
    snprintf(name, sizeof name, "quantize M=%d K=%d: within half a step, padding = 128", M, K);
    CHECK(qok, "%s", name);
    if (vnni) {
        vit_quantize_rows_u8(Q2, lda, sa2, A, K, M, K, VIT_I8_VNNI);
        int same = 1;
        for (int m = 0; m < M; m++)
            same &= !memcmp(Q + (size_t)m * lda, Q2 + (size_t)m * lda, (size_t)Kp) && sa[m] == sa2[m];
        snprintf(name, sizeof name, "quantize M=%d K=%d: avx512 == scalar (bytes and scales)", M, K);
        CHECK(same, "%s", name);
    }

    /* exact integer reference from the quantized bytes */
    int64_t *ref = malloc(sizeof(int64_t) * (size_t)M * N);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            int64_t s = 0;
            for (int k = 0; k < K; k++)
                s += (int64_t)((int)Q[(size_t)m * lda + k] - 128) * vit_gemm_i8_weight(Wp, N, K, n, k);
            ref[(size_t)m * N + n] = s;
        }
    int32_t *Ci = malloc(sizeof(int32_t) * (size_t)M * ldc);
    float *C = malloc(sizeof(float) * (size_t)M * ldc), *C0 = malloc(sizeof(float) * (size_t)M * ldc);
    float *Cs = malloc(sizeof(float) * (size_t)M * ldc);
    for (size_t i = 0; i < (size_t)M * ldc; i++) C0[i] = frand();
    int mid = N > VIT_GEMM_I8_PANEL ? VIT_GEMM_I8_PANEL * ((N / VIT_GEMM_I8_PANEL + 1) / 2) : N;
    for (size_t pi = 0; pi < sizeof paths / sizeof paths[0]; pi++) {
        int path = paths[pi];
        if (!have(path)) continue;
        const char *pn = path_name(path);
        /* int32 sums: exact, in two column ranges, the padding columns untouched */
        for (size_t i = 0; i < (size_t)M * ldc; i++) Ci[i] = -12345;
        vit_gemm_i8_s32(Ci, ldc, Q, lda, Wp, N, K, M, 0, mid, path);
        if (mid < N) vit_gemm_i8_s32(Ci, ldc, Q, lda, Wp, N, K, M, mid, N, path);
        int exact = 1;
        for (int m = 0; m < M; m++) {
            for (int n = 0; n < N; n++) exact &= Ci[(size_t)m * ldc + n] == ref[(size_t)m * N + n];
            for (int n = N; n < ldc; n++) exact &= Ci[(size_t)m * ldc + n] == -12345;
        }
        snprintf(name, sizeof name, "gemm_i8 %s M=%d N=%d K=%d: int32 sums == exact reference", pn, M, N, K);
        CHECK(exact, "%s", name);

        /* dequantized, with bias and beta: within float rounding of the reference */
        for (int beta = 0; beta <= 1; beta++) {
            memcpy(C, C0, sizeof(float) * (size_t)M * ldc);
            const float *b = beta ? bias : NULL;
            vit_gemm_i8(C, ldc, Q, lda, sa, Wp, N, K, M, 0, mid, b, beta, path);
            if (mid < N) vit_gemm_i8(C, ldc, Q, lda, sa, Wp, N, K, M, mid, N, b, beta, path);
            double worst = 0;
            int pad_ok = 1;
            const float *sw = vit_gemm_i8_scales(Wp);
            for (int m = 0; m < M; m++) {
                for (int n = 0; n < N; n++) {
                    double t = (double)sa[m] * sw[n] * (double)ref[(size_t)m * N + n];
                    double e = t + (b ? b[n] : 0.) + (beta ? C0[(size_t)m * ldc + n] : 0.);
                    double mag = fabs(t) + (b ? fabs(b[n]) : 0.) + (beta ? fabs(C0[(size_t)m * ldc + n]) : 0.);
                    double d = fabs(C[(size_t)m * ldc + n] - e) / (mag * 4.8e-7 + 1e-30);
                    if (!(d <= worst)) worst = d; /* NaN -> worst NaN -> fails */
                }
                for (int n = N; n < ldc; n++) pad_ok &= C[(size_t)m * ldc + n] == C0[(size_t)m * ldc + n];
            }
            snprintf(name, sizeof name, "gemm_i8 %s M=%d N=%d K=%d bias+beta=%d: err/(4 ulp) = %.3g <= 1, padding untouched",
                     pn, M, N, K, beta, worst);
            CHECK(worst <= 1.0 && pad_ok, "%s", name);
            if (path == VIT_I8_SCALAR && beta == 1) memcpy(Cs, C, sizeof(float) * (size_t)M * ldc);
            if (path != VIT_I8_SCALAR && beta == 1) {
                snprintf(name, sizeof name, "gemm_i8 M=%d N=%d K=%d: %s output == scalar output bit for bit", M, N, K, pn);
                CHECK(!memcmp(C, Cs, sizeof(float) * (size_t)M * ldc), "%s", name);
            }
        }
    }

    /* end to end vs the FP32 product: |err| <= sum_k |a| dw + |w| da + da dw (+ rounding) */
    vit_gemm_i8(C, ldc, Q, lda, sa, Wp, N, K, M, 0, N, NULL, 0, VIT_I8_AUTO);
    const float *sw = vit_gemm_i8_scales(Wp);
    double worst = 0;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double exact = 0, bound = 0, da = 0.5 * sa[m], dw = 0.5 * sw[n];
            for (int k = 0; k < K; k++) {
                double a = A[(size_t)m * K + k], w = W[(size_t)n * K + k];
                exact += a * w;
                bound += fabs(a) * dw + fabs(w) * da + da * dw;
            }
            double r = fabs(C[(size_t)m * ldc + n] - exact) / (bound * 1.0001 + 1e-6);
            if (!(r <= worst)) worst = r;
        }
    snprintf(name, sizeof name, "gemm_i8 M=%d N=%d K=%d vs fp32 product: err/bound = %.3g <= 1", M, N, K, worst);
    CHECK(worst <= 1.0, "%s", name);
    free(W); free(A); free(bias); free(Wp); free(Q); free(Q2); free(sa); free(sa2); free(ref);
    free(Ci); free(C); free(C0); free(Cs);
}

/* all-zero, tiny, inf and nan rows: no UB, zero / NaN scales, every byte 128 */
static void test_special_rows(void) {
    enum { K = 37, M = 6 };
    float X[M][K];
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) X[m][k] = frand();
    memset(X[0], 0, sizeof X[0]);
    X[1][5] = INFINITY;
    X[2][36] = -INFINITY;
    X[3][0] = NAN;
    for (int k = 0; k < K; k++) X[4][k] = 1e-35f * frand();
    int Kp = vit_gemm_i8_kpad(K);
    for (size_t pi = 0; pi < sizeof paths / sizeof paths[0]; pi++) {
        int path = paths[pi];
        if (!have(path)) continue;
        uint8_t Q[M][40];
        float s[M];
        vit_quantize_rows_u8(&Q[0][0], 40, s, &X[0][0], K, M, K, path);
        int all128 = 1;
        for (int m = 0; m < 5; m++)
            for (int k = 0; k < Kp; k++) all128 &= Q[m][k] == 128;
        const char *pn = path_name(path);
        CHECK(s[0] == 0.f && s[4] == 0.f && isnan(s[1]) && isnan(s[2]) && isnan(s[3]) && all128 &&
                  s[5] > 0.f,
              "quantize %s: zero/tiny rows scale 0, inf/nan rows scale NaN, all bytes 128", pn);
        /* through the GEMM: zero rows give bias only, non-finite rows NaN */
        enum { N = 40 };
        float W[N * K], b[N], C[M * N];
        for (int i = 0; i < N * K; i++) W[i] = frand();
        for (int n = 0; n < N; n++) b[n] = frand();
        void *Wp = xalloc(vit_gemm_i8_packed_bytes(N, K));
        vit_gemm_i8_pack(Wp, W, N, K);
        vit_gemm_i8(C, N, &Q[0][0], 40, s, Wp, N, K, M, 0, N, b, 0, path);
        int ok = 1;
        for (int n = 0; n < N; n++)
            ok &= C[n] == b[n] && isnan(C[N + n]) && isnan(C[3 * N + n]) && C[4 * N + n] == b[n] &&
                  isfinite(C[5 * N + n]);
        CHECK(ok, "gemm_i8 %s: zero row -> bias, inf/nan row -> NaN, finite row finite", pn);
        free(Wp);
    }
    /* a weight channel with inf gets scale NaN and zero weights */
    float W[3 * 8];
    for (int i = 0; i < 24; i++) W[i] = frand();
    W[9] = INFINITY;
    void *Wp = xalloc(vit_gemm_i8_packed_bytes(3, 8));
    vit_gemm_i8_pack(Wp, W, 3, 8);
    int z = 1;
    for (int k = 0; k < 8; k++) z &= vit_gemm_i8_weight(Wp, 3, 8, 1, k) == 0;
    CHECK(isnan(vit_gemm_i8_scales(Wp)[1]) && z && vit_gemm_i8_scales(Wp)[0] > 0.f,
          "pack: a channel with inf gets scale NaN and zero weights");
    free(Wp);
}

int main(void) {
    int vnni = vit_gemm_i8_vnni_available();
    if (!vnni) SKIP("gemm_i8 vnni: this CPU has no AVX512-VNNI");
    if (!vit_gemm_i8_avx2_available()) SKIP("gemm_i8 avx2: this CPU has no AVX2");
    static const int shapes[][3] = {
        {1, 1, 1},    {1, 32, 64},   {1, 45, 67},   {3, 5, 3},      {12, 32, 4},
        {13, 45, 67}, {25, 96, 130}, {37, 70, 257}, {50, 100, 768}, {197, 64, 200},
        {2, 33, 3073},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        test_shape(shapes[i][0], shapes[i][1], shapes[i][2], vnni);
    test_special_rows();
    return TEST_SUMMARY();
}
