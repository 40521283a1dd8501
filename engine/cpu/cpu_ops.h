/* cpu_ops.h: the CPU forward pass's operators, one plain function each (llm.c style:
 * outputs first, then inputs, weights, dims; shapes in comments).  Every op works on a range
 * of rows so the backend can split it across threads; none allocates.  The naive reference
 * for each lives in tests/unit/test_cpu_ops.c.  The big GEMMs are not here: they go straight
 * to cblas_sgemm (OpenBLAS) in cpu_forward.c. */
#ifndef VIT_CPU_OPS_H
#define VIT_CPU_OPS_H

#include <stddef.h>

/* exp(x) for float, vectorizable (Cephes-style range reduction + degree-6 polynomial);
 * relative error ~2 ulp on [-87, 88], 0 below, +inf-free (clamped) above. */
float vit_fast_expf(float x);
/* erf(x), vectorizable (Abramowitz & Stegun 7.1.26 with vit_fast_expf): absolute error
 * < 6e-7 in float, so GELU stays within ~2 ulp of the erf form. */
float vit_fast_erff(float x);

/* LayerNorm over the last dim: out (N,C) = (inp - mean) / sqrt(var + eps) * w + b,
 * biased variance, two passes for accuracy.  out may equal inp. */
void vit_layernorm(float *out, const float *inp, const float *w, const float *b,
                   int N, int C, float eps);

/* Residual bias + LayerNorm, fused: x (N,C) += bias (C) (bias may be NULL), then
 * out (N,C) = LayerNorm(x) with w, b (C).  The GEMM before it already accumulated the
 * residual into x (beta = 1), so this is the one pass over x between two GEMMs. */
void vit_residual_layernorm(float *out, float *x, const float *bias, const float *w,
                            const float *b, int N, int C, float eps);

/* Bias + GELU (exact erf form, as torch.nn.GELU()), in place: h (N,C) = gelu(h + bias). */
void vit_bias_gelu(float *h, const float *bias, int N, int C);

/* im2col for a stride-P, kernel-P convolution (patch embedding), images [b0, b1):
 * inp (B, Cin, H, W) -> cols (B * gh * gw, Cin*P*P), rows ordered (b, gy, gx), columns
 * (c, ky, kx) like the conv weight (D, Cin, P, P).  gh = H / P, gw = W / P. */
void vit_im2col_patches(float *cols, const float *inp, int b0, int b1, int Cin, int H, int W,
                        int P);

/* Token assembly for images [b0, b1): x (B, T, D) with
 *   x[b, t] = prefix[t] + pos[t]                                for t < nprefix
 *   x[b, t] = patches[b, t - nprefix] + patch_b + pos[t]        otherwise
 * prefix (nprefix, D) holds the class (and distillation) token rows; patches (B, NP, D). */
void vit_embed_tokens(float *x, const float *patches, const float *patch_b,
                      const float *const *prefix, int nprefix, const float *pos, int b0, int b1,
                      int T, int D);

/* K transposed per head, with its bias added, for one (image, head):
 * kT (hd, ldk) [d][j] = k[j][d] + bk[d] for j < T, 0 for T <= j < ldk.
 * k points at this head's first key, rows ldkin floats apart (the qkv row stride). */
void vit_attn_transpose_k(float *kT, int ldk, const float *k, int ldkin, const float *bk,
                          int T, int hd);

/* Attention rows [r0, r1) of one (image, head), softmax fused:
 *   p[i, :] = softmax(scale * (q[i] + bq) . kT)            (T)
 *   out[i]  = sum_j p[i, j] * v[j] + bv                     (hd)   (softmax rows sum to 1)
 * q, v: this head's rows, ldqv floats apart (qkv stride); kT (hd, ldk) from
 * vit_attn_transpose_k; out rows ldo floats apart.  If probs_acc is non-NULL,
 * probs_acc[(i - r0) * ldp + j] += p[i, j] * probs_w (head averaging for attention maps).
 * scratch: at least 4 * ldk + 4 * hd floats. */
void vit_attention_rows(float *out, int ldo, float *probs_acc, int ldp, float probs_w,
                        const float *q, const float *v, int ldqv, const float *bq,
                        const float *bv, const float *kT, int ldk, int r0, int r1, int T, int hd,
                        float scale, float *scratch);

/* Rollout step matrix, in place on a head-averaged attention matrix a (T,T):
 * a = 0.5 * a + 0.5 * I, then each row divided by its sum. */
void vit_rollout_prepare(float *a, int T);

/* Mean over token rows [t0, t1) of x (T, D) -> out (D). */
void vit_mean_tokens(float *out, const float *x, int t0, int t1, int D);

/* Bias + tanh in place: x (N,C) = tanh(x + bias) (timm pre_logits). */
void vit_bias_tanh(float *x, const float *bias, int N, int C);

/* Bias add in place: x (N,C) += bias (C). */
void vit_bias_add(float *x, const float *bias, int N, int C);

#endif
