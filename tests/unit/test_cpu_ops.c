/* test_cpu_ops.c: every CPU operator (engine/cpu/cpu_ops.c) and the thread pool against a naive
 * double-precision reference on random inputs; prints the max difference of each. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_gemm.h"
#include "cpu/cpu_ops.h"
#include "cpu/cpu_pool.h"
#include "harness.h"

static unsigned long long rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
}
static float *rand_vec(size_t n, float scale) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = frand() * scale;
    return v;
}
static float maxabs(const float *v, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fabsf(v[i]) > m ? fabsf(v[i]) : m;
    return m;
}

static void ref_layernorm(float *out, const float *x, const float *w, const float *b, int N, int C,
                          float eps) {
    for (int n = 0; n < N; n++) {
        const float *r = x + (size_t)n * C;
        double mean = 0, var = 0;
        for (int c = 0; c < C; c++) mean += r[c];
        mean /= C;
        for (int c = 0; c < C; c++) var += (r[c] - mean) * (r[c] - mean);
        var /= C;
        for (int c = 0; c < C; c++)
            out[(size_t)n * C + c] = (float)((r[c] - mean) / sqrt(var + eps) * w[c] + b[c]);
    }
}

static void test_elementary(void) {
    float dexp = 0, derf = 0;
    for (float x = -87.f; x <= 88.f; x += 0.0137f) {
        double e = exp((double)x);
        float rel = (float)(fabs(vit_fast_expf(x) - e) / e);
        if (rel > dexp) dexp = rel;
    }
    CHECK(dexp < 5e-7f, "fast_expf relative maxdiff=%.3g tol=5e-07", (double)dexp);
    CHECK(vit_fast_expf(-1000.f) < 1e-30f && isfinite(vit_fast_expf(1000.f)), "fast_expf clamps");
    for (float x = -6.f; x <= 6.f; x += 0.00071f) {
        float d = fabsf(vit_fast_erff(x) - (float)erf((double)x));
        if (d > derf) derf = d;
    }
    CHECK(derf < 6e-7f, "fast_erff maxdiff=%.3g tol=6e-07", (double)derf);
}

static void test_layernorm(void) {
    int N = 7, C = 771; /* not a multiple of 16: exercises the tails */
    float *x = rand_vec((size_t)N * C, 3.f), *w = rand_vec(C, 1.f), *b = rand_vec(C, 1.f);
    for (size_t i = 0; i < (size_t)N * C; i++) x[i] += 5.f; /* non-zero mean */
    float *out = malloc(sizeof(float) * N * C), *ref = malloc(sizeof(float) * N * C);
    ref_layernorm(ref, x, w, b, N, C, 1e-6f);
    vit_layernorm(out, x, w, b, N, C, 1e-6f);
    CHECK_CLOSE(out, ref, (size_t)N * C, 2e-5f, "layernorm");
    /* fused residual bias + LN: x += bias; out = LN(x) */
    float *bias = rand_vec(C, 1.f), *x2 = malloc(sizeof(float) * N * C);
    memcpy(x2, x, sizeof(float) * N * C);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) x[(size_t)n * C + c] += bias[c];
    ref_layernorm(ref, x, w, b, N, C, 1e-12f);
    vit_residual_layernorm(out, x2, bias, w, b, N, C, 1e-12f);
    CHECK_CLOSE(x2, x, (size_t)N * C, 0.f, "residual_layernorm residual");
    CHECK_CLOSE(out, ref, (size_t)N * C, 2e-5f, "residual_layernorm output");
    free(x); free(w); free(b); free(out); free(ref); free(bias); free(x2);
}

static void test_gelu(void) {
    int N = 5, C = 333;
    float *h = rand_vec((size_t)N * C, 6.f), *bias = rand_vec(C, 1.f);
    float *ref = malloc(sizeof(float) * N * C);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            double x = (double)h[(size_t)n * C + c] + bias[c];
            ref[(size_t)n * C + c] = (float)(0.5 * x * (1.0 + erf(x / sqrt(2.0))));
        }
    vit_bias_gelu(h, bias, N, C);
    CHECK_CLOSE(h, ref, (size_t)N * C, 1e-6f, "bias_gelu (exact erf form)");
    float *t = rand_vec(3 * 10, 3.f), *tb = rand_vec(10, 1.f), tr[30];
    for (int i = 0; i < 30; i++) tr[i] = (float)tanh((double)t[i] + tb[i % 10]);
    vit_bias_tanh(t, tb, 3, 10);
    CHECK_CLOSE(t, tr, 30, 1e-6f, "bias_tanh");
    free(h); free(bias); free(ref); free(t); free(tb);
}

static void test_patches(void) {
    int B = 2, Cin = 3, H = 12, W = 8, P = 4, gh = H / P, gw = W / P, K = Cin * P * P;
    float *inp = rand_vec((size_t)B * Cin * H * W, 1.f);
    float *cols = malloc(sizeof(float) * B * gh * gw * K), *ref = malloc(sizeof(float) * B * gh * gw * K);
    for (int b = 0; b < B; b++)
        for (int gy = 0; gy < gh; gy++)
            for (int gx = 0; gx < gw; gx++)
                for (int c = 0; c < Cin; c++)
                    for (int ky = 0; ky < P; ky++)
                        for (int kx = 0; kx < P; kx++)
                            ref[((size_t)(b * gh + gy) * gw + gx) * K + (c * P + ky) * P + kx] =
                                inp[(((size_t)b * Cin + c) * H + gy * P + ky) * W + gx * P + kx];
    vit_im2col_patches(cols, inp, 0, 1, Cin, H, W, P);
    vit_im2col_patches(cols, inp, 1, 2, Cin, H, W, P);
    CHECK_CLOSE(cols, ref, (size_t)B * gh * gw * K, 0.f, "im2col_patches");

    int T = 5, D = 20, np = 2, NP = T - np;
    float *patches = rand_vec((size_t)B * NP * D, 1.f), *pb = rand_vec(D, 1.f),
          *pos = rand_vec((size_t)T * D, 1.f), *cls = rand_vec(D, 1.f), *dist = rand_vec(D, 1.f);
    const float *prefix[2] = {cls, dist};
    float *x = malloc(sizeof(float) * B * T * D), *xr = malloc(sizeof(float) * B * T * D);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++)
                xr[((size_t)b * T + t) * D + d] =
                    (t < np ? prefix[t][d] : patches[((size_t)b * NP + t - np) * D + d] + pb[d]) +
                    pos[t * D + d];
    vit_embed_tokens(x, patches, pb, prefix, np, pos, 0, B, T, D);
    CHECK_CLOSE(x, xr, (size_t)B * T * D, 1e-6f, "embed_tokens");
    free(inp); free(cols); free(ref); free(patches); free(pb); free(pos); free(cls); free(dist);
    free(x); free(xr);
}

/* naive attention of one head: q, k, v (T, hd) with biases; out (T, hd), probs (T, T) */
static void ref_attention(float *out, float *probs, const float *qkv, int ld, const float *bq,
                          const float *bk, const float *bv, int T, int hd) {
    double *s = malloc(sizeof(double) * T);
    for (int i = 0; i < T; i++) {
        double mx = -1e300, sum = 0;
        for (int j = 0; j < T; j++) {
            double a = 0;
            for (int d = 0; d < hd; d++)
                a += ((double)qkv[(size_t)i * ld + d] + bq[d]) *
                     ((double)qkv[(size_t)j * ld + hd + d] + bk[d]);
            s[j] = a / sqrt((double)hd);
            if (s[j] > mx) mx = s[j];
        }
        for (int j = 0; j < T; j++) { s[j] = exp(s[j] - mx); sum += s[j]; }
        for (int j = 0; j < T; j++) probs[(size_t)i * T + j] = (float)(s[j] / sum);
        for (int d = 0; d < hd; d++) {
            double o = 0;
            for (int j = 0; j < T; j++)
                o += s[j] / sum * ((double)qkv[(size_t)j * ld + 2 * hd + d] + bv[d]);
            out[(size_t)i * hd + d] = (float)o;
        }
    }
    free(s);
}

static void test_attention(int T, int hd) {
    int ld = 3 * hd, ldk = (T + 15) & ~15;
    float *qkv = rand_vec((size_t)T * ld, 2.f), *bq = rand_vec(hd, .5f), *bk = rand_vec(hd, .5f),
          *bv = rand_vec(hd, .5f);
    float *out = malloc(sizeof(float) * T * hd), *ref = malloc(sizeof(float) * T * hd);
    float *probs = calloc((size_t)T * T, sizeof(float)), *pref = malloc(sizeof(float) * T * T);
    float *kT = malloc(sizeof(float) * hd * ldk), *scratch = malloc(sizeof(float) * (4 * ldk + 8 * hd));
    ref_attention(ref, pref, qkv, ld, bq, bk, bv, T, hd);
    vit_attn_transpose_k(kT, ldk, qkv + hd, ld, bk, T, hd);
    float scale = 1.0f / sqrtf((float)hd);
    /* two uneven row ranges, accumulating probabilities with weight 0.5 twice */
    int split = T / 3;
    for (int rep = 0; rep < 2; rep++) {
        vit_attention_rows(out, hd, probs, T, 0.5f, qkv, qkv + 2 * hd, ld, bq, bv, kT, ldk, 0,
                           split, T, hd, scale, scratch);
        vit_attention_rows(out, hd, probs + (size_t)split * T, T, 0.5f, qkv, qkv + 2 * hd, ld, bq,
                           bv, kT, ldk, split, T, T, hd, scale, scratch);
    }
    char name[96];
    snprintf(name, sizeof name, "attention T=%d hd=%d output", T, hd);
    CHECK_CLOSE(out, ref, (size_t)T * hd, 2e-6f * (1 + maxabs(ref, (size_t)T * hd)), name);
    snprintf(name, sizeof name, "attention T=%d hd=%d probabilities", T, hd);
    CHECK_CLOSE(probs, pref, (size_t)T * T, 1e-6f, name);
    free(qkv); free(bq); free(bk); free(bv); free(out); free(ref); free(probs); free(pref);
    free(kT); free(scratch);
}

static void test_rollout_mean(void) {
    int T = 6;
    float *a = rand_vec((size_t)T * T, 1.f), ref[36];
    for (int i = 0; i < T * T; i++) a[i] = fabsf(a[i]);
    for (int i = 0; i < T; i++) {
        double s = 0;
        for (int j = 0; j < T; j++) s += 0.5 * a[i * T + j] + (i == j ? 0.5 : 0);
        for (int j = 0; j < T; j++) ref[i * T + j] = (float)((0.5 * a[i * T + j] + (i == j ? 0.5 : 0)) / s);
    }
    vit_rollout_prepare(a, T);
    CHECK_CLOSE(a, ref, 36, 1e-6f, "rollout_prepare");
    float x[4 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, m[3], mr[3] = {7.f, 8.f, 9.f};
    vit_mean_tokens(m, x, 1, 4, 3);
    CHECK_CLOSE(m, mr, 3, 1e-6f, "mean_tokens");
    free(a);
}

/* the packed AVX-512 GEMM on odd shapes (edge tiles in every direction, k not a multiple of
 * 16, K split in two blocks, more rows than one block), as a slice of a wider C (ldc > N),
 * overwrite and accumulate, whole and by column ranges as the pool splits it */
static void test_gemm(void) {
    if (!vit_gemm_avx512_available()) {
        SKIP("gemm_packed: no AVX-512 on this CPU");
        return;
    }
    int shapes[][3] = {{1, 1, 1}, {37, 29, 100}, {64, 12, 512}, {65, 25, 1100}, {197, 40, 768},
                       {250, 70, 300},
                       {13, 33, 4500} /* K > 4096: two k blocks, the second accumulating */};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], ldc = N + 7;
        float *A = rand_vec((size_t)M * K, 1.f), *W = rand_vec((size_t)N * K, 1.f);
        float *C = rand_vec((size_t)M * ldc, 1.f), *R = malloc(sizeof(float) * M * ldc);
        float *Wp = malloc(sizeof(float) * vit_gemm_packed_floats(N, K));
        vit_gemm_pack(Wp, W, N, K);
        memcpy(R, C, sizeof(float) * M * ldc);
        for (int beta = 0; beta <= 1; beta++) {
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    double a = beta ? R[(size_t)m * ldc + n] : 0;
                    for (int k = 0; k < K; k++) a += (double)A[(size_t)m * K + k] * W[(size_t)n * K + k];
                    R[(size_t)m * ldc + n] = (float)a;
                }
            if (beta) { /* in two column ranges, split at the first panel boundary */
                int mid = N > VIT_GEMM_PANEL ? VIT_GEMM_PANEL : N;
                vit_gemm_packed(C, ldc, A, K, Wp, K, M, 0, mid, 1);
                vit_gemm_packed(C, ldc, A, K, Wp, K, M, mid, N, 1);
            } else {
                vit_gemm_packed(C, ldc, A, K, Wp, K, M, 0, N, 0);
            }
            char name[96];
            snprintf(name, sizeof name, "gemm_packed M=%d N=%d K=%d beta=%d (padding untouched)", M, N, K, beta);
            CHECK_CLOSE(C, R, (size_t)M * ldc, 2e-6f * K, name);
        }
        free(A); free(W); free(C); free(R); free(Wp);
    }
}

static atomic_int pool_hits[1000];
static void pool_task(void *ctx, int t, int w) {
    (void)ctx;
    (void)w;
    atomic_fetch_add(&pool_hits[t], 1);
}

static void test_pool(void) {
    for (int n = 1; n <= 3; n++) {
        cpu_pool *p = cpu_pool_new(n);
        int ok = p && cpu_pool_size(p) == n;
        for (int rep = 0; rep < 50 && ok; rep++) {
            int ntasks = (rep * 37) % 1000;
            for (int i = 0; i < 1000; i++) atomic_store(&pool_hits[i], 0);
            cpu_pool_run(p, ntasks, pool_task, NULL);
            for (int i = 0; i < 1000; i++) ok &= atomic_load(&pool_hits[i]) == (i < ntasks);
        }
        CHECK(ok, "pool with %d threads runs every task exactly once", n);
        cpu_pool_free(p);
    }
    cpu_pool_free(NULL);
}

int main(void) {
    test_elementary();
    test_layernorm();
    test_gelu();
    test_patches();
    test_attention(197, 64);
    test_attention(50, 16);
    test_attention(17, 8); /* head dim not a multiple of 16: generic path */
    test_attention(3, 32);
    test_rollout_mean();
    test_gemm();
    test_pool();
    return TEST_SUMMARY();
}
