/* cpu_ops.c: the CPU forward pass's non-GEMM operators (LayerNorm, bias+GELU, fused attention,
 * patch im2col, token assembly, pooling helpers).  Plain C; the hot loops are written over
 * 16-float GCC vector types and compiled three times (AVX-512, AVX2+FMA, baseline x86-64) with
 * target_clones, so one binary runs everywhere and uses the widest units it finds. */
#include "cpu/cpu_ops.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(VIT_NO_CLONES)
#define VIT_SIMD __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VIT_SIMD
#endif

#define VIT_INLINE static inline __attribute__((always_inline))

/* -std=c11 implies -ffp-contract=off, which turns every `a += x * y` of the vector loops into a
 * multiply and a separate add.  Contracting them into FMAs (one rounding instead of two: at least
 * as accurate) halves the arithmetic of the attention and LayerNorm loops. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
#endif

/* The vector helpers below are static: their ABI for 64-byte vectors never crosses a boundary. */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float v16 __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));

VIT_INLINE v16 ld16(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
#define st16(p, v) do { v16 st_v_ = (v); memcpy((p), &st_v_, sizeof st_v_); } while (0)
VIT_INLINE v16 splat16(float x) { return (v16){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }
VIT_INLINE float hsum16(const v16 *v) {
    float s = 0.f;
    for (int i = 0; i < 16; i++) s += (*v)[i];
    return s;
}
VIT_INLINE v16 max16(const v16 *a, const v16 *b) {
    v16i m = *a > *b;
    return (v16)((m & (v16i)*a) | (~m & (v16i)*b));
}
VIT_INLINE float hmax16(const v16 *v) {
    float m = (*v)[0];
    for (int i = 1; i < 16; i++) m = (*v)[i] > m ? (*v)[i] : m;
    return m;
}

/* ---- elementary functions ---------------------------------------------------------- */

/* Cephes expf on 16 lanes: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-6 polynomial, times
 * 2^n built in the exponent bits.  n = round(x log2 e) by the 1.5 * 2^23 trick (no floor call,
 * so the loop stays vectorized).  Inputs clamped to [-87, 88]. */
VIT_INLINE v16 vexp16(const v16 *xp) {
    v16 x = *xp, hi = splat16(88.0f), lo = splat16(-87.0f);
    v16i m = x > hi;
    x = (v16)((m & (v16i)hi) | (~m & (v16i)x));
    m = x < lo;
    x = (v16)((m & (v16i)lo) | (~m & (v16i)x));
    v16 magic = splat16(12582912.0f); /* 1.5 * 2^23 */
    v16 fx = (x * 1.44269504088896341f + magic) - magic;
    v16 r = x - fx * 0.693359375f + fx * 2.12194440e-4f;
    v16 z = r * r;
    v16 y = splat16(1.9875691500e-4f);
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * z + r + 1.0f;
    v16i n = __builtin_convertvector(fx, v16i);
    return y * (v16)((n + 127) << 23);
}

/* Abramowitz & Stegun 7.1.26 on 16 lanes: erf(x) = 1 - t(a1 + t(a2 + ...)) e^{-x^2},
 * t = 1/(1 + p|x|), sign restored at the end. */
VIT_INLINE v16 verf16(const v16 *xp) {
    v16i sign = (v16i)*xp & (int)0x80000000u;
    v16 ax = (v16)((v16i)*xp & 0x7fffffff);
    v16 t = 1.0f / (1.0f + 0.3275911f * ax);
    v16 y = splat16(1.061405429f);
    y = y * t - 1.453152027f;
    y = y * t + 1.421413741f;
    y = y * t - 0.284496736f;
    y = y * t + 0.254829592f;
    v16 e = -ax * ax;
    y = 1.0f - y * t * vexp16(&e);
    return (v16)((v16i)y | sign);
}

VIT_INLINE float expf_inl(float x) {
    v16 v = splat16(x);
    return vexp16(&v)[0];
}
VIT_INLINE float erff_inl(float x) {
    v16 v = splat16(x);
    return verf16(&v)[0];
}

float vit_fast_expf(float x) { return expf_inl(x); }
float vit_fast_erff(float x) { return erff_inl(x); }

/* ---- LayerNorm --------------------------------------------------------------------- */

VIT_INLINE void ln_row(float *o, const float *x, const float *w, const float *b, int C,
                          float eps) {
    int c = 0;
    v16 acc = splat16(0.f);
    for (; c + 16 <= C; c += 16) acc += ld16(x + c);
    float s = hsum16(&acc);
    for (; c < C; c++) s += x[c];
    float mean = s / (float)C;
    v16 vm = splat16(mean);
    acc = splat16(0.f);
    for (c = 0; c + 16 <= C; c += 16) { v16 d = ld16(x + c) - vm; acc += d * d; }
    float v = hsum16(&acc);
    for (; c < C; c++) { float d = x[c] - mean; v += d * d; }
    float rstd = 1.0f / sqrtf(v / (float)C + eps);
    v16 vr = splat16(rstd);
    for (c = 0; c + 16 <= C; c += 16)
        st16(o + c, (ld16(x + c) - vm) * vr * ld16(w + c) + ld16(b + c));
    for (; c < C; c++) o[c] = (x[c] - mean) * rstd * w[c] + b[c];
}

VIT_SIMD
void vit_layernorm(float *out, const float *inp, const float *w, const float *b, int N, int C,
                   float eps) {
    for (int n = 0; n < N; n++) ln_row(out + (size_t)n * C, inp + (size_t)n * C, w, b, C, eps);
}

VIT_SIMD
void vit_residual_layernorm(float *out, float *x, const float *bias, const float *w,
                            const float *b, int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        float *xr = x + (size_t)n * C;
        if (bias) {
            int c = 0;
            for (; c + 16 <= C; c += 16) st16(xr + c, ld16(xr + c) + ld16(bias + c));
            for (; c < C; c++) xr[c] += bias[c];
        }
        ln_row(out + (size_t)n * C, xr, w, b, C, eps);
    }
}

/* ---- elementwise ------------------------------------------------------------------- */

VIT_SIMD
void vit_bias_gelu(float *h, const float *bias, int N, int C) {
    for (int n = 0; n < N; n++) {
        float *r = h + (size_t)n * C;
        int c = 0;
        for (; c + 16 <= C; c += 16) {
            v16 x = ld16(r + c) + ld16(bias + c);
            v16 u = x * 0.70710678118654752f;
            st16(r + c, 0.5f * x * (1.0f + verf16(&u)));
        }
        for (; c < C; c++) {
            float x = r[c] + bias[c];
            r[c] = 0.5f * x * (1.0f + erff_inl(x * 0.70710678118654752f));
        }
    }
}

void vit_bias_tanh(float *x, const float *bias, int N, int C) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) x[(size_t)n * C + c] = tanhf(x[(size_t)n * C + c] + bias[c]);
}

VIT_SIMD
void vit_bias_add(float *x, const float *bias, int N, int C) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) x[(size_t)n * C + c] += bias[c];
}

/* ---- patch embedding and tokens ---------------------------------------------------- */

void vit_im2col_patches(float *cols, const float *inp, int b0, int b1, int Cin, int H, int W,
                        int P) {
    int gh = H / P, gw = W / P;
    size_t K = (size_t)Cin * P * P;
    for (int b = b0; b < b1; b++)
        for (int gy = 0; gy < gh; gy++)
            for (int gx = 0; gx < gw; gx++) {
                float *row = cols + ((size_t)b * gh * gw + (size_t)gy * gw + gx) * K;
                for (int c = 0; c < Cin; c++)
                    for (int ky = 0; ky < P; ky++) {
                        const float *src = inp + (((size_t)b * Cin + c) * H + (size_t)gy * P + ky) * W
                                           + (size_t)gx * P;
                        memcpy(row + ((size_t)c * P + ky) * P, src, sizeof(float) * P);
                    }
            }
}

VIT_SIMD
void vit_embed_tokens(float *x, const float *patches, const float *patch_b,
                      const float *const *prefix, int nprefix, const float *pos, int b0, int b1,
                      int T, int D) {
    int NP = T - nprefix;
    for (int b = b0; b < b1; b++)
        for (int t = 0; t < T; t++) {
            float *o = x + ((size_t)b * T + t) * D;
            const float *p = pos + (size_t)t * D;
            if (t < nprefix) {
                for (int d = 0; d < D; d++) o[d] = prefix[t][d] + p[d];
            } else {
                const float *src = patches + ((size_t)b * NP + (t - nprefix)) * D;
                for (int d = 0; d < D; d++) o[d] = src[d] + patch_b[d] + p[d];
            }
        }
}

/* ---- attention --------------------------------------------------------------------- */

void vit_attn_transpose_k(float *kT, int ldk, const float *k, int ldkin, const float *bk,
                          int T, int hd) {
    /* blocks of 8 keys keep both the reads and the writes within a few cache lines */
    for (int j0 = 0; j0 < T; j0 += 8) {
        int j1 = j0 + 8 < T ? j0 + 8 : T;
        for (int d = 0; d < hd; d++) {
            float *o = kT + (size_t)d * ldk;
            for (int j = j0; j < j1; j++) o[j] = k[(size_t)j * ldkin + d] + bk[d];
        }
    }
    for (int d = 0; d < hd; d++)
        for (int j = T; j < ldk; j++) kT[(size_t)d * ldk + j] = 0.f;
}

/* softmax of rows s[r][0..T) (rows ldk apart, ldk % 16 == 0) in place; padding set to 0 */
VIT_INLINE void softmax_rows(float *s, int nr, int T, int ldk) {
    for (int r = 0; r < nr; r++) {
        float *row = s + (size_t)r * ldk;
        for (int j = T; j < ldk; j++) row[j] = -INFINITY;
        v16 m = splat16(-INFINITY);
        for (int j = 0; j < ldk; j += 16) { v16 x = ld16(row + j); m = max16(&m, &x); }
        float mx = hmax16(&m);
        v16 vmx = splat16(mx);
        for (int j = 0; j < ldk; j += 16) {
            v16 e = ld16(row + j) - vmx;
            st16(row + j, vexp16(&e));
        }
        for (int j = T; j < ldk; j++) row[j] = 0.f;
        v16 acc = splat16(0.f);
        for (int j = 0; j < ldk; j += 16) acc += ld16(row + j);
        v16 inv = splat16(1.0f / hsum16(&acc));
        for (int j = 0; j < ldk; j += 16) st16(row + j, ld16(row + j) * inv);
    }
}

/* s[r][j..j + 16nb) = qs[r] . kT[:, j..j + 16nb) for the 4 query rows, nb = 1 or 2 blocks */
VIT_INLINE void score_cols(float *s, const float *qs, const float *kT, int ldk, int hd, int j,
                           const int nb) {
    v16 a[4][2];
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) a[r][0] = a[r][1] = splat16(0.f);
    for (int d = 0; d < hd; d++) {
        const float *kr = kT + (size_t)d * ldk + j;
        v16 k0 = ld16(kr), k1 = nb == 2 ? ld16(kr + 16) : k0;
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
            float q = qs[r * hd + d];
            a[r][0] += q * k0;
            if (nb == 2) a[r][1] += q * k1;
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
        st16(s + (size_t)r * ldk + j, a[r][0]);
        if (nb == 2) st16(s + (size_t)r * ldk + j + 16, a[r][1]);
    }
}

/* out[r][d0..d0 + 16nb) = sum_j p[r][j] v[j][d0..] + bv for the first nr of the 4 rows */
VIT_INLINE void pv_cols(float *out, int ldo, int nr, const float *p, int ldk, const float *v,
                        int ldqv, const float *bv, int T, int d0, const int nb) {
    v16 a[4][2];
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) a[r][0] = a[r][1] = splat16(0.f);
    for (int j = 0; j < T; j++) {
        const float *vr = v + (size_t)j * ldqv + d0;
        v16 v0 = ld16(vr), v1 = nb == 2 ? ld16(vr + 16) : v0;
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {
            float pr = p[(size_t)r * ldk + j];
            a[r][0] += pr * v0;
            if (nb == 2) a[r][1] += pr * v1;
        }
    }
    for (int r = 0; r < nr; r++) {
        st16(out + (size_t)r * ldo + d0, a[r][0] + ld16(bv + d0));
        if (nb == 2) st16(out + (size_t)r * ldo + d0 + 16, a[r][1] + ld16(bv + d0 + 16));
    }
}

VIT_SIMD
void vit_attention_rows(float *out, int ldo, float *probs_acc, int ldp, float probs_w,
                        const float *q, const float *v, int ldqv, const float *bq,
                        const float *bv, const float *kT, int ldk, int r0, int r1, int T, int hd,
                        float scale, float *scratch) {
    float *s = scratch;                      /* (4, ldk) scores, then probabilities */
    float *qs = scratch + (size_t)4 * ldk;   /* (4, hd) scaled queries */
    float *os = qs + (size_t)4 * hd;         /* (4, hd) outputs (generic path) */
    for (int i0 = r0; i0 < r1; i0 += 4) {
        int nr = r1 - i0 < 4 ? r1 - i0 : 4;
        for (int r = 0; r < 4; r++) {
            float *dst = qs + (size_t)r * hd;
            if (r >= nr) {
                memset(dst, 0, sizeof(float) * (size_t)hd);
                continue;
            }
            const float *src = q + (size_t)(i0 + r) * ldqv;
            int d = 0;
            for (; d + 16 <= hd; d += 16) st16(dst + d, (ld16(src + d) + ld16(bq + d)) * scale);
            for (; d < hd; d++) dst[d] = (src[d] + bq[d]) * scale;
        }
        /* scores: s[r][j] = qs[r] . kT[:, j], two blocks of 16 keys at a time (8 FMA chains
         * hide the FMA latency), then a last block of 16 */
        int j = 0;
        for (; j + 32 <= ldk; j += 32) score_cols(s, qs, kT, ldk, hd, j, 2);
        for (; j < ldk; j += 16) score_cols(s, qs, kT, ldk, hd, j, 1);
        softmax_rows(s, nr, T, ldk);
        if (probs_acc)
            for (int r = 0; r < nr; r++) {
                float *pa = probs_acc + (size_t)(i0 - r0 + r) * ldp;
                const float *pr = s + (size_t)r * ldk;
                for (int j = 0; j < T; j++) pa[j] += probs_w * pr[j];
            }
        /* out[r] = sum_j p[r][j] v[j] + bv */
        if (hd % 16 == 0) { /* two blocks of 16 dims at a time, then a last block of 16 */
            float *o = out + (size_t)i0 * ldo;
            int d0 = 0;
            for (; d0 + 32 <= hd; d0 += 32) pv_cols(o, ldo, nr, s, ldk, v, ldqv, bv, T, d0, 2);
            for (; d0 < hd; d0 += 16) pv_cols(o, ldo, nr, s, ldk, v, ldqv, bv, T, d0, 1);
        } else {
            for (int r = 0; r < 4 * hd; r++) os[r] = 0.f;
            for (int j = 0; j < T; j++) {
                const float *vr = v + (size_t)j * ldqv;
                for (int r = 0; r < nr; r++) {
                    float p = s[(size_t)r * ldk + j];
                    for (int d = 0; d < hd; d++) os[r * hd + d] += p * vr[d];
                }
            }
            for (int r = 0; r < nr; r++)
                for (int d = 0; d < hd; d++)
                    out[(size_t)(i0 + r) * ldo + d] = os[r * hd + d] + bv[d];
        }
    }
}

void vit_rollout_prepare(float *a, int T) {
    for (int i = 0; i < T; i++) {
        float *row = a + (size_t)i * T;
        double sum = 0;
        for (int j = 0; j < T; j++) {
            row[j] = 0.5f * row[j] + (i == j ? 0.5f : 0.f);
            sum += row[j];
        }
        float inv = sum > 0 ? (float)(1.0 / sum) : 0.f;
        for (int j = 0; j < T; j++) row[j] *= inv;
    }
}

void vit_mean_tokens(float *out, const float *x, int t0, int t1, int D) {
    for (int d = 0; d < D; d++) out[d] = 0.f;
    for (int t = t0; t < t1; t++)
        for (int d = 0; d < D; d++) out[d] += x[(size_t)t * D + d];
    float inv = t1 > t0 ? 1.0f / (float)(t1 - t0) : 0.f;
    for (int d = 0; d < D; d++) out[d] *= inv;
}
