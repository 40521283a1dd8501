/* cpu_ref.h: float64 CPU references of the kernels in kernels/, for tests/gpu/test_kernels and
 * the kernel lab (kernels/dev).  Same shapes and layouts as the kernels' design comments. */
#pragma once
#include <math.h>
#include <vector>

/* in (B,C,H,W) -> patches (B*gh*gw, C*P*P); gh*P <= H, gw*P <= W */
static inline std::vector<double> ref_im2col(const std::vector<float> &in, int B, int C, int H, int W,
                                             int P, int gh, int gw) {
    int K = C * P * P;
    std::vector<double> o((size_t)B * gh * gw * K);
    for (int b = 0; b < B; b++)
        for (int gy = 0; gy < gh; gy++)
            for (int gx = 0; gx < gw; gx++)
                for (int c = 0; c < C; c++)
                    for (int ky = 0; ky < P; ky++)
                        for (int kx = 0; kx < P; kx++)
                            o[(((size_t)b * gh + gy) * gw + gx) * K + (c * P + ky) * P + kx] =
                                in[(((size_t)b * C + c) * H + gy * P + ky) * W + gx * P + kx];
    return o;
}

/* pooling of x (B,T,D): the mean over tokens [npf, T) -> (B, D), or with with_cls
 * ([class token; mean], DINOv2's head) [x[b,0]; that mean] -> (B, 2D) */
static inline std::vector<double> ref_mean_pool(const std::vector<float> &x, int B, int T, int npf, int D,
                                                bool with_cls) {
    const int F = with_cls ? 2 * D : D;
    std::vector<double> o((size_t)B * F, 0);
    for (int b = 0; b < B; b++) {
        double *ob = &o[(size_t)b * F];
        if (with_cls)
            for (int d = 0; d < D; d++) ob[d] = x[(size_t)b * T * D + d];
        double *om = ob + (with_cls ? D : 0);
        for (int t = npf; t < T; t++)
            for (int d = 0; d < D; d++) om[d] += x[((size_t)b * T + t) * D + d];
        for (int d = 0; d < D; d++) om[d] /= (double)(T - npf);
    }
    return o;
}

/* LayerNorm of one row x (D) -> out */
static inline void ref_ln_row(double *out, const double *x, const float *w, const float *b, int D,
                       double eps) {
    double m = 0, v = 0;
    for (int i = 0; i < D; i++) m += x[i];
    m /= D;
    for (int i = 0; i < D; i++) v += (x[i] - m) * (x[i] - m);
    v /= D;
    double r = 1.0 / sqrt(v + eps);
    for (int i = 0; i < D; i++) out[i] = (x[i] - m) * r * (w ? w[i] : 1.0) + (b ? b[i] : 0.0);
}

/* attention: qkv (B*T, 3D) -> out (B*T, D), avg (B,T,T) head-averaged probabilities */
static inline void ref_attention(std::vector<double> &out, std::vector<double> &avg,
                          const std::vector<float> &qkv, int B, int T, int H, int dh) {
    int D = H * dh, ld = 3 * D;
    out.assign((size_t)B * T * D, 0);
    avg.assign((size_t)B * T * T, 0);
    std::vector<double> p(T);
    double scale = 1.0 / sqrt((double)dh);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                const float *q = &qkv[((size_t)b * T + i) * ld + h * dh];
                double m = -1e300, s = 0;
                for (int j = 0; j < T; j++) {
                    const float *k = &qkv[((size_t)b * T + j) * ld + D + h * dh];
                    double d = 0;
                    for (int c = 0; c < dh; c++) d += (double)q[c] * k[c];
                    p[j] = d * scale;
                    if (p[j] > m) m = p[j];
                }
                for (int j = 0; j < T; j++) { p[j] = exp(p[j] - m); s += p[j]; }
                for (int j = 0; j < T; j++) {
                    p[j] /= s;
                    avg[((size_t)b * T + i) * T + j] += p[j] / H;
                }
                for (int c = 0; c < dh; c++) {
                    double acc = 0;
                    for (int j = 0; j < T; j++)
                        acc += p[j] * qkv[((size_t)b * T + j) * ld + 2 * D + h * dh + c];
                    out[((size_t)b * T + i) * D + h * dh + c] = acc;
                }
            }
}

static inline double ref_gelu_erf(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static inline double ref_gelu_tanh(double x) {
    return 0.5 * x * (1 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

/* E4M3 by brute force: the nearest of the 253 finite codes' values (ties: the even code, whose
 * last mantissa bit is 0), |x| past 448 saturating to +-448, NaN -> 0x7f; independent of
 * kernels/quant.cuh's bit manipulation */
static inline uint8_t ref_e4m3(float x) {
    if (x != x) return 0x7f;
    const double a = fabs((double)x);
    int best = 0;
    double bd = INFINITY;
    for (int c = 0; c < 0x7f; c++) {   /* 0x00 .. 0x7e: +0 .. 448 */
        const int E = c >> 3, m = c & 7;
        const double v = E ? ldexp(1.0 + m / 8.0, E - 7) : ldexp((double)m, -9);
        const double d = fabs(a - v);
        if (d < bd || (d == bd && !(c & 1))) { bd = d; best = c; }
    }
    if (a >= 448.0) best = 0x7e;
    return (uint8_t)(best | (signbit(x) ? 0x80 : 0));
}

/* rollout over L layers of head-averaged attention A_l (B,T,T): CLS row over patches (B, T-npf) */
static inline std::vector<double> ref_rollout(const std::vector<std::vector<double>> &A, int B, int T,
                                       int npf) {
    std::vector<double> R, Rn((size_t)T * T), out((size_t)B * (T - npf));
    for (int b = 0; b < B; b++) {
        R.assign((size_t)T * T, 0);
        for (size_t l = 0; l < A.size(); l++) {
            std::vector<double> a(A[l].begin() + (size_t)b * T * T, A[l].begin() + (size_t)(b + 1) * T * T);
            for (int i = 0; i < T; i++) {
                double s = 0;
                for (int j = 0; j < T; j++) { a[(size_t)i * T + j] = 0.5 * a[(size_t)i * T + j] + (i == j ? 0.5 : 0); s += a[(size_t)i * T + j]; }
                for (int j = 0; j < T; j++) a[(size_t)i * T + j] /= s;
            }
            if (l == 0) { R = a; continue; }
            for (int i = 0; i < T; i++)
                for (int j = 0; j < T; j++) {
                    double acc = 0;
                    for (int k = 0; k < T; k++) acc += a[(size_t)i * T + k] * R[(size_t)k * T + j];
                    Rn[(size_t)i * T + j] = acc;
                }
            R = Rn;
        }
        for (int p = 0; p < T - npf; p++) out[(size_t)b * (T - npf) + p] = R[npf + p];
    }
    return out;
}
