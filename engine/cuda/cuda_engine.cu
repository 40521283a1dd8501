/* cuda_engine.cu: the CUDA backend's forward pass: mixed-precision (FP16 storage and tensor-core
 * math, FP32 accumulation, FP16 residual stream with FP32 adds and FP32 LayerNorm statistics, as
 * PyTorch's FP16 eager) ViT inference on cuBLASLt and the kernels in kernels/.
 *
 * Per session (one per engine worker): one stream (plus one for sub-batch input copies), one
 * cuBLASLt handle and a 32 MB workspace,
 * every activation allocated once for max_batch, pinned host buffers for input and outputs, the
 * model's weights converted to FP16 on the device at init (LayerNorm parameters, tokens,
 * position embeddings, pre-logits and heads stay FP32).
 *
 * Forward, with Bk the batch-size bucket (1, 2, 4, ..., max_batch) that holds B:
 *   in (Bk,C,H,W) -H2D-> im2col+FP16 -> GEMM(+bias) -> tokens + pos      res (Bk*T, D) FP16
 *   LN1 -> h;  per layer:  qkv = h Wqkv^T + b                          (Bk*T, 3D) FP16
 *                          att = attention(qkv) [+ head-averaged maps]  (Bk*T, D)  FP16
 *                          res += att Wproj^T + b;  h = LN2(res)
 *                          m = GELU(h W1^T + b1)                         (Bk*T, M)  FP16
 *                          res += m W2^T + b2;  h = LN1'(res)  (next layer)
 *   (the adds are the GEMMs' epilogue: C = D = res, beta = 1, FP32 sum rounded once; with
 *   VIT_CUDA_RESFUSE=0 the GEMMs write y and residual_layernorm adds it)
 *   the last layer, when only the prefix tokens are pooled: attention for the first query tile
 *   only (all keys; every query row when the rollout is asked for), then the prefix rows
 *   alone (compacted to (Bk*npf, D); proj, LN2 and the MLP are 9 of a layer's 12 D^2 GEMM
 *   FLOPs, so ~6% of ViT-B's; VIT_CUDA_CLS_ONLY=0 runs every row)
 *   pooling: final LN on the prefix rows only (CLS [+ dist]), or mean over patches [+ fc_norm],
 *            or [CLS; mean over patches] (DINOv2's head, 2D wide; the last layer on every row)
 *            (for the means, the final LN's FP32 rows (Bk*T, D) go to qkv's buffer, dead by then);
 *   [pre_logits: tanh(W x + b)] -> features (Bk, F) FP32
 * This part is a CUDA graph per (bucket, attention-output mode, input type), captured after the first eager
 * run of that pair (the eager run also picks and caches the GEMM algorithms, outside capture).
 * The head (logits = features Wh^T + bh, FP32 GEMM) runs outside the graph because heads are
 * swapped at run time: each head is uploaded once and cached by (address, fingerprint) in a
 * 4-entry LRU.  Rows Bk-B of a bucket compute on stale inputs and are never copied out.
 *
 * GEMMs: Y (M x N, row-major) = X (M x K) W^T (W is PyTorch's (N, K)) is, for column-major
 * cuBLASLt, D (N x M) = op_T(W as K x N) * X (K x M); bias has N entries.  Epilogues: BIAS, and
 * GELU_BIAS for fc1 (see kernels/gelu.cuh on its GELU; VIT_CUDA_GELU=erf switches to BIAS plus
 * our exact-erf kernel).  Attention: attention_mma.cuh's flash-style mma.sync kernel for head
 * dim 64 (its measured speed-up: kernels/dev/NOTES.md, bench/results/gpu_20261123.md), else
 * attention.cuh's WMMA kernel (VIT_CUDA_ATTN=wmma forces it).  Algorithms: cuBLASLt's heuristic top
 * VIT_CUDA_GEMM_ALGOS (engine/knobs.c) per (M, N, K, epilogue, flags), timed once with events (VIT_CUDA_GEMM_TUNE=0: take the
 * heuristic's first), cached per session.
 * Input: FP32, or FP16 from vit_forward_f16 (half the bytes to copy; im2col then only gathers,
 * and the results are bit-identical to FP32 input of the same values, which im2col would round
 * to nearest-even); session init warms up and captures both.  Copied outside the graphs, B images straight from the caller's memory; a bucket above
 * VIT_CUDA_SUBBATCH images runs as parts of that many, one graph each, the copy
 * of part j+1 (stream cs) overlapping part j's compute (the parts share the scratch buffers).
 * Attention maps: attn_cls = last layer's CLS row, head-averaged; attn_rollout = every layer's
 * head-averaged (T, T) matrix folded into a running product (kernels/rollout.cuh).
 * Precision INT8 / FP8 (session precision int8 / fp8, the model's calibration.json required): the
 * encoder's four Linears only, each as quantize (calibrated per-tensor scale) -> cuBLASLt INT8
 * (IMMA, int32 sums) or E4M3 (FP32 sums) GEMM on per-output-channel quantized weights ->
 * kernels/quant.cuh's epilogue: dequantize + bias (qkv), + the residual stream (proj, fc2: the
 * add is always fused here), or + exact-erf GELU and requantization into fc2's input (fc1, whose
 * FP16 output is never materialized).  The quantization of qkv's and fc1's inputs is fused into
 * the LayerNorms that produce them (residual_layernorm_quant: FP32 statistics, the FP32 LN value
 * quantized, no FP16 copy), and proj's into the attention (attention_mma's qo; a quantize pass
 * after the fallback attention kernels and in the compacted last layer).  Patch
 * embedding, LayerNorm, attention, softmax, pooling and the head stay as above.  The INT8 weights and scales are the CPU reference's
 * (vit_gemm_i8_pack), so the CPU's calibrated int8 session computes the same arithmetic on
 * FP32 activations. */
#include <cublasLt.h>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cuda/cuda_engine.h"
#include "knobs.h"
#include "util.h"
#include "common.cuh"
#include "patch_embed.cuh"
#include "layernorm.cuh"
#include "attention.cuh"
#include "attention_mma.cuh"
#include "gelu.cuh"
#include "rollout.cuh"
#include "quant.cuh"
#include "cpu/cpu_gemm_i8.h"

namespace {

const size_t kWorkspace = 32u << 20;
const int kMaxBuckets = 16, kModes = 8, kMaxAlgos = 96, kHeads = 4, kMaxParts = 16;
const int kMaxCand = 16;   /* VIT_CUDA_GEMM_ALGOS' upper bound (engine/knobs.c): candidates timed per shape */
/* mode bits (graph key, enqueue_backbone): 1 CLS attention row, 2 rollout, 4 FP16 input (the
 * im2col kernel reads halves instead of floats) */
const int kModeF16 = 4;

struct dlayer {
    float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    __half *qkv_w, *qkv_b, *proj_w, *proj_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
};

/* a layer's four Linears in INT8 / FP8 (j: 0 qkv, 1 proj, 2 fc1, 3 fc2): the weights (N, K)
 * quantized per output channel, their scales sw (N), and the input's calibrated scale sa and its
 * inverse (the quantizer's multiplier) */
struct qlayer {
    uint8_t *w[4];
    float *sw[4];
    float sa[4], inv[4];
};

struct algo_entry {
    int M, N, K, epi, flags;
    cublasLtMatmulAlgo_t algo;
};

struct head_entry {
    const void *key;
    uint64_t fp;
    int C, dim;
    float *w, *b;                 /* device (C, dim), (C) */
    unsigned long long used;
};

struct state {
    int dev;
    cudaStream_t st;
    cublasLtHandle_t lt;
    void *ws;
    vcu_model_desc m;             /* layers pointer cleared after init */
    int maxB, dh, K_patch, img;   /* img = C*H*W floats per image */
    size_t smem_optin;
    int gelu_erf, tune, tune_n, attn_mma, attn_kc, attn_qt, fuse_res, cls_only;
    char gpu_name[320];
    size_t dev_bytes;

    std::vector<void *> dev_allocs;
    std::vector<size_t> dev_sizes;
    std::vector<dlayer> layers;
    int prec;                     /* VCU_FP16, VCU_INT8, VCU_FP8 (the encoder Linears) */
    std::vector<qlayer> ql;       /* INT8 / FP8: L */
    uint8_t *xq;                  /* (B*T, max(D, M)) a Linear's quantized input */
    void *acc;                    /* (B*T, max(3D, M)) its raw sums: int32 (INT8) or FP32 (FP8) */
    __half *patch_w, *patch_b;
    float *tok, *pos, *norm_w, *norm_b, *fc_norm_w, *fc_norm_b, *pre_w, *pre_b;

    /* activations, (rows, cols) for max_batch */
    float *in;                    /* (B, C, H, W) FP32, or FP16 in its first half (kModeF16) */
    __half *res;                  /* (B*T, D) the residual stream */
    __half *h, *qkv, *att, *y;    /* (B*T, D), (B*T, 3D), (B*T, D), (B*T, D) */
    size_t y_elems;
    /* the last layer's prefix rows (CLS [+ dist]) alone, (B*npf, D) and (B*npf, M); NULL when
     * every row goes on (mean and [cls; mean] pooling, VIT_CUDA_CLS_ONLY=0) */
    __half *res_c, *att_c, *h_c, *y_c, *mlp_c;
    __half *mlp;                  /* (B*T, M); also holds the im2col patches (B*Np, C*P*P) */
    float *pooled, *pool_tmp, *feat; /* (B, pool_rows*D), (B, D), (B, F) */
    float *cls_d;                 /* (B, T) CLS attention row */
    float *A, *R0, *R1, *roll_d;  /* rollout, lazily: (B, T, T) x3, (B, Np) */
    float *logits_d;              /* (B, logits_cap) */
    int logits_cap;

    /* pinned host */
    float *h_in, *h_logits, *h_feat, *h_cls, *h_roll;

    int buckets[kMaxBuckets], nb;
    /* a bucket larger than `sub` images runs as parts of `sub` (the last may be smaller), one
     * graph each, so the input copy of part j+1 (on stream cs) overlaps part j's compute */
    int sub;
    cudaStream_t cs;
    cudaEvent_t ev_fork, ev_part[kMaxParts];
    cudaGraphExec_t graph[kMaxBuckets][kModes][kMaxParts];
    int graphs_off;               /* capture failed once: eager from then on */

    algo_entry algos[kMaxAlgos];
    int nalgo;
    head_entry heads[kHeads];
    unsigned long long tick;
};


#define CU(call)                                                                              \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess)                                                                \
            return vit_errf(VIT_E_BACKEND, err, errlen, "cuda: %s: %s (%s:%d)", #call,           \
                        cudaGetErrorString(e_), __FILE__, __LINE__);                          \
    } while (0)
#define LAUNCHED()                                                                            \
    do {                                                                                      \
        cudaError_t e_ = cudaGetLastError();                                                  \
        if (e_ != cudaSuccess)                                                                \
            return vit_errf(VIT_E_BACKEND, err, errlen, "cuda: kernel launch: %s (%s:%d)",       \
                        cudaGetErrorString(e_), __FILE__, __LINE__);                          \
    } while (0)
#define OK(call)                                                                              \
    do {                                                                                      \
        vit_status s_ = (call);                                                               \
        if (s_ != VIT_OK) return s_;                                                          \
    } while (0)

vit_status dalloc(state *s, void **p, size_t bytes, char *err, size_t errlen) {
    *p = nullptr;
    if (bytes == 0) return VIT_OK;
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        *p = nullptr;
        return vit_errf(e == cudaErrorMemoryAllocation ? VIT_E_NOMEM : VIT_E_BACKEND, err, errlen,
                    "cuda: cudaMalloc(%zu bytes, %zu already held by this session): %s", bytes,
                    s->dev_bytes, cudaGetErrorString(e));
    }
    s->dev_allocs.push_back(*p);
    s->dev_sizes.push_back(bytes);
    s->dev_bytes += bytes;
    return VIT_OK;
}

template <typename T>
vit_status dalloc_t(state *s, T **p, size_t count, char *err, size_t errlen) {
    void *v;
    vit_status r = dalloc(s, &v, count * sizeof(T), err, errlen);
    *p = (T *)v;
    return r;
}

void dfree(state *s, void *p) {
    if (!p) return;
    for (size_t i = 0; i < s->dev_allocs.size(); i++)
        if (s->dev_allocs[i] == p) {
            s->dev_bytes -= s->dev_sizes[i];
            s->dev_allocs.erase(s->dev_allocs.begin() + i);
            s->dev_sizes.erase(s->dev_sizes.begin() + i);
            break;
        }
    cudaFree(p);
}

/* upload n FP32 values, as FP32 or converted to FP16; NULL src gives NULL */
vit_status up_f32(state *s, float **dst, const float *src, size_t n, char *err, size_t errlen) {
    *dst = nullptr;
    if (!src) return VIT_OK;
    OK(dalloc_t(s, dst, n, err, errlen));
    CU(cudaMemcpy(*dst, src, n * sizeof(float), cudaMemcpyHostToDevice));
    return VIT_OK;
}

vit_status up_f16(state *s, __half **dst, const float *src, size_t n, std::vector<__half> &tmp,
                  char *err, size_t errlen) {
    *dst = nullptr;
    if (!src) return vit_errf(VIT_E_INTERNAL, err, errlen, "cuda: missing weight tensor");
    tmp.resize(n);
    for (size_t i = 0; i < n; i++) tmp[i] = __float2half(src[i]);
    OK(dalloc_t(s, dst, n, err, errlen));
    CU(cudaMemcpy(*dst, tmp.data(), n * sizeof(__half), cudaMemcpyHostToDevice));
    return VIT_OK;
}

/* ---- GEMM through cuBLASLt -------------------------------------------------------------- */

#define LT(call)                                                                              \
    do {                                                                                      \
        cublasStatus_t c_ = (call);                                                           \
        if (c_ != CUBLAS_STATUS_SUCCESS) {                                                    \
            rc = vit_errf(VIT_E_BACKEND, err, errlen, "cublasLt: %s: status %d (M=%d N=%d K=%d)", \
                      #call, (int)c_, M, N, K);                                               \
            goto done;                                                                        \
        }                                                                                     \
    } while (0)

enum { G_F32 = 1, G_ACC = 2 };   /* gemm flags: FP32 operands; Y += (accumulate into Y) */

/* The algorithm of a GEMM shape (M, N, K, epilogue, flags: gemm's G_*, or gemm_q's precision),
 * from the session's cache, or picked now and cached: the heuristic's VIT_CUDA_GEMM_ALGOS
 * candidates, each timed on the real operands (one untimed run then two timed, writing Dt) when
 * tuning is on, the stream is not capturing and the caller says writing Dt is harmless
 * (timeable); else the heuristic's first.  what names the types in the error. */
vit_status pick_algo(state *s, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t la,
                     cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc, const void *alpha,
                     const void *beta, const void *W, const void *X, const void *Y, void *Dt,
                     int M, int N, int K, int epi, int flags, bool timeable, const char *what,
                     algo_entry **out, char *err, size_t errlen) {
    for (int i = 0; i < s->nalgo; i++) {
        algo_entry *a = &s->algos[i];
        if (a->M == M && a->N == N && a->K == K && a->epi == epi && a->flags == flags) {
            *out = a;
            return VIT_OK;
        }
    }
    vit_status rc = VIT_OK;
    cublasLtMatmulPreference_t pref = nullptr;
    cublasLtMatmulHeuristicResult_t res[kMaxCand];
    int nret = 0, best = 0;
    size_t wsz = kWorkspace;
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    LT(cublasLtMatmulPreferenceCreate(&pref));
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz, sizeof wsz));
    LT(cublasLtMatmulAlgoGetHeuristic(s->lt, op, la, lb, lc, lc, pref, s->tune_n, res, &nret));
    if (nret < 1) {
        rc = vit_errf(VIT_E_BACKEND, err, errlen, "cublasLt: no %s algorithm for M=%d N=%d K=%d", what, M, N, K);
        goto done;
    }
    cudaStreamIsCapturing(s->st, &cap);
    if (s->tune && nret > 1 && cap == cudaStreamCaptureStatusNone && timeable) {
        cudaEvent_t e0 = nullptr, e1 = nullptr;
        float bestms = 1e30f;
        bool ev0 = cudaEventCreate(&e0) == cudaSuccess;
        bool ev1 = ev0 && cudaEventCreate(&e1) == cudaSuccess;
        if (ev0 && !ev1) cudaEventDestroy(e0); /* the first one alone: no timing */
        if (ev1) {
            for (int i = 0; i < nret; i++) {
                float ms = 0.f;
                cublasStatus_t c = CUBLAS_STATUS_SUCCESS;
                for (int r = 0; r < 3 && c == CUBLAS_STATUS_SUCCESS; r++) {
                    if (r == 1) cudaEventRecord(e0, s->st);
                    c = cublasLtMatmul(s->lt, op, alpha, W, la, X, lb, beta, Y, lc, Dt, lc,
                                       &res[i].algo, s->ws, kWorkspace, s->st);
                }
                cudaEventRecord(e1, s->st);
                if (c == CUBLAS_STATUS_SUCCESS && cudaEventSynchronize(e1) == cudaSuccess &&
                    cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess && ms < bestms) {
                    bestms = ms;
                    best = i;
                }
            }
            cudaEventDestroy(e0);
            cudaEventDestroy(e1);
        }
        cudaGetLastError();
    }
    {
        algo_entry *ae = &s->algos[s->nalgo < kMaxAlgos ? s->nalgo++ : (int)(s->tick++ % kMaxAlgos)];
        ae->M = M; ae->N = N; ae->K = K; ae->epi = epi; ae->flags = flags;
        ae->algo = res[best].algo;
        *out = ae;
    }
done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    return rc;
}

/* Y (M, N) = X (M, K) W^T (W is (N, K)) [+ bias (N)] [GELU], or with G_ACC Y += that (beta = 1,
 * C = D = Y in place: one rounding of Y + XW^T + b to Y's type); FP16, or FP32 with G_F32 */
vit_status gemm(state *s, void *Y, const void *X, const void *W, const void *bias, int M, int N,
                int K, cublasLtEpilogue_t epi, int flags, char *err, size_t errlen) {
    vit_status rc = VIT_OK;
    const int f32 = flags & G_F32, acc = flags & G_ACC;
    cudaDataType_t ty = f32 ? CUDA_R_32F : CUDA_R_16F;
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
    cublasOperation_t tA = CUBLAS_OP_T, tB = CUBLAS_OP_N;
    const float alpha = 1.f, beta = acc ? 1.f : 0.f;
    algo_entry *ae = nullptr;
    /* the timed candidates write Y, which must not accumulate twice: with G_ACC they read C = Y
     * and write s->y instead (dead whenever an accumulating GEMM runs, see enqueue_backbone) */
    void *Dt = acc ? (void *)s->y : Y;
    const bool timeable = !acc || (!f32 && Y != s->y && (size_t)M * N <= s->y_elems);

    LT(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tA, sizeof tA));
    LT(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tB, sizeof tB));
    LT(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (bias) LT(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    LT(cublasLtMatrixLayoutCreate(&la, ty, K, N, K));
    LT(cublasLtMatrixLayoutCreate(&lb, ty, K, M, K));
    LT(cublasLtMatrixLayoutCreate(&lc, ty, N, M, N));
    if ((rc = pick_algo(s, op, la, lb, lc, &alpha, &beta, W, X, Y, Dt, M, N, K, (int)epi, flags, timeable,
                        f32 ? "fp32" : "fp16", &ae, err, errlen)) != VIT_OK)
        goto done;
    LT(cublasLtMatmul(s->lt, op, &alpha, W, la, X, lb, &beta, Y, lc, Y, lc, &ae->algo, s->ws,
                      kWorkspace, s->st));
done:
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    return rc;
}

/* Y (M, N) = X (M, K) Wq^T, the raw sums of a quantized Linear: INT8 x INT8 -> INT32 (IMMA,
 * compute 32I, alpha 1 beta 0 as int32) or E4M3 x E4M3 -> FP32 (scales left at 1), TN as both
 * need on sm_80 / sm_90 (K contiguous in both operands, ORDER_COL, no COL32), K a multiple of 4
 * (INT8) / 16 (FP8), checked at init.  The algorithm is picked per shape as gemm()'s (timed
 * candidates under VIT_CUDA_GEMM_TUNE: Y is the session's scratch acc, beta 0, so the timing
 * runs write it harmlessly). */
vit_status gemm_q(state *s, void *Y, const uint8_t *X, const uint8_t *W, int M, int N, int K,
                  char *err, size_t errlen) {
    vit_status rc = VIT_OK;
    const bool i8 = s->prec == VCU_INT8;
    const cudaDataType_t tab = i8 ? CUDA_R_8I : CUDA_R_8F_E4M3, tcd = i8 ? CUDA_R_32I : CUDA_R_32F;
    const int flags = 16 * s->prec;   /* apart from gemm()'s G_* flags in the algorithm cache */
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
    cublasOperation_t tA = CUBLAS_OP_T, tB = CUBLAS_OP_N;
    const int32_t ia = 1, ib = 0;
    const float fa = 1.f, fb = 0.f;
    const void *alpha = i8 ? (const void *)&ia : (const void *)&fa;
    const void *beta = i8 ? (const void *)&ib : (const void *)&fb;
    algo_entry *ae = nullptr;

    LT(cublasLtMatmulDescCreate(&op, i8 ? CUBLAS_COMPUTE_32I : CUBLAS_COMPUTE_32F, i8 ? CUDA_R_32I : CUDA_R_32F));
    LT(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tA, sizeof tA));
    LT(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tB, sizeof tB));
    LT(cublasLtMatrixLayoutCreate(&la, tab, K, N, K));
    LT(cublasLtMatrixLayoutCreate(&lb, tab, K, M, K));
    LT(cublasLtMatrixLayoutCreate(&lc, tcd, N, M, N));
    if ((rc = pick_algo(s, op, la, lb, lc, alpha, beta, W, X, Y, Y, M, N, K, 0, flags, true,
                        i8 ? "int8 (IMMA)" : "fp8 (e4m3)", &ae, err, errlen)) != VIT_OK)
        goto done;
    LT(cublasLtMatmul(s->lt, op, alpha, W, la, X, lb, beta, Y, lc, Y, lc, &ae->algo, s->ws,
                      kWorkspace, s->st));
done:
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    return rc;
}

static int qtype(const state *s) { return s->prec == VCU_FP8 ? VK_Q_E4M3 : VK_Q_INT8; }

/* the LayerNorm in front of Linear j (0 qkv: LN1, 2 fc1: LN2) of layer l: FP16 into h, or in
 * INT8 / FP8 straight into the Linear's quantized input xq with its calibrated scale (the
 * quantization fused into the LayerNorm: h is never written) */
void ln_into_linear(state *s, int l, int j, __half *h, __half *res, const __half *branch,
                    const float *w, const float *b, int rows) {
    if (s->prec)
        residual_layernorm_quant(vk_qout{s->xq, s->ql[l].inv[j], qtype(s)}, res, branch, w, b, rows, s->m.D,
                                 s->m.eps, s->st);
    else
        residual_layernorm(h, res, branch, w, b, rows, s->m.D, s->m.eps, s->st);
}

/* Linear j (0 qkv, 1 proj, 2 fc1, 3 fc2) of layer l in INT8 / FP8, on `rows` rows: quantize
 * `in` when given (proj after the fallback attention; otherwise the producer left the input
 * quantized in xq: the LayerNorm for qkv and fc1, attention_mma for proj, fc1's epilogue for fc2), GEMM into acc, then dequantize + bias
 * into out (qkv), + the residual stream out (proj, fc2), or + GELU and requantize with fc2's
 * scale into xq (fc1) */
vit_status linear_q(state *s, int l, int j, __half *out, const __half *in, const __half *bias,
                    int rows, int N, int K, char *err, size_t errlen) {
    const qlayer &q = s->ql[l];
    const int qt = qtype(s);
    if (in) quantize_act(s->xq, in, (long long)rows * K, q.inv[j], qt, s->st);
    LAUNCHED();
    OK(gemm_q(s, s->acc, s->xq, q.w[j], rows, N, K, err, errlen));
    const int mode = j == 0 ? VK_DQ_BIAS : j == 2 ? VK_DQ_GELU_QUANT : VK_DQ_RESIDUAL;
    const float qinv = j == 2 ? q.inv[3] : 0.f;
    if (s->prec == VCU_INT8)
        dequant_epilogue(out, s->xq, static_cast<const int32_t *>(s->acc), q.sw[j], q.sa[j], bias,
                         rows, N, mode, qinv, qt, s->st);
    else
        dequant_epilogue(out, s->xq, static_cast<const float *>(s->acc), q.sw[j], q.sa[j], bias,
                         rows, N, mode, qinv, qt, s->st);
    LAUNCHED();
    return VIT_OK;
}

/* ---- the backbone --------------------------------------------------------------------- */

vit_status ensure_rollout(state *s, char *err, size_t errlen) {
    if (s->h_roll) return VIT_OK;   /* set last: a failed attempt is retried */
    const vcu_model_desc &m = s->m;
    size_t tt = (size_t)s->maxB * m.T * m.T;
    OK(dalloc_t(s, &s->A, tt, err, errlen));
    OK(dalloc_t(s, &s->R0, tt, err, errlen));
    OK(dalloc_t(s, &s->R1, tt, err, errlen));
    OK(dalloc_t(s, &s->roll_d, (size_t)s->maxB * m.Np, err, errlen));
    CU(cudaMallocHost((void **)&s->h_roll, sizeof(float) * s->maxB * m.Np));
    return VIT_OK;
}

/* The per-image buffers of images [i0, ...): the input and what the backbone leaves for
 * forward_impl.  Everything else is scratch that the parts of a bucket share (they run one after
 * another on s->st). */
struct part_io {
    const void *in;               /* float, or __half with kModeF16 */
    float *pooled, *pool_tmp, *feat, *cls_d, *roll_d;
};

/* feature rows of D per image before fc_norm / pre_logits: 1 (mean pooling), 2 ([cls; mean]),
 * else the pooled prefix tokens, CLS [+ dist]; register tokens (the last nreg prefix rows) are
 * never pooled */
static int pool_rows(const vcu_model_desc &m) {
    return m.pooling == VIT_POOL_MEAN ? 1 : m.pooling == VIT_POOL_CLS_MEAN ? 2 : m.npf - m.nreg;
}

part_io part_at(const state *s, int i0, int mode) {
    const vcu_model_desc &m = s->m;
    const size_t i = (size_t)i0, D = (size_t)m.D;
    part_io p;
    if (mode & kModeF16) p.in = reinterpret_cast<const __half *>(s->in) + i * s->img;
    else p.in = s->in + i * s->img;
    p.pooled = s->pooled + i * (size_t)pool_rows(m) * D;
    p.pool_tmp = s->pool_tmp + i * D;
    p.feat = s->feat + i * (size_t)m.feature_dim;
    p.cls_d = s->cls_d + i * (size_t)m.T;
    p.roll_d = s->roll_d ? s->roll_d + i * (size_t)m.Np : nullptr;
    return p;
}

/* patch embedding: im2col (FP16) -> GEMM + bias -> tokens + position embeddings into the
 * residual stream, and the first layer's LN1 */
vit_status enqueue_embed(state *s, const part_io &p, int Bk, int mode, char *err, size_t errlen) {
    const vcu_model_desc &m = s->m;
    cudaStream_t st = s->st;
    const int D = m.D, T = m.T, NT = Bk * T;
    const cublasLtEpilogue_t BIAS = CUBLASLT_EPILOGUE_BIAS;
    if (mode & kModeF16)
        im2col_f16(s->mlp, static_cast<const __half *>(p.in), Bk, m.channels, m.image_h, m.image_w, m.patch_size,
                   m.grid_h, m.grid_w, st);
    else
        im2col_f16(s->mlp, static_cast<const float *>(p.in), Bk, m.channels, m.image_h, m.image_w, m.patch_size,
                   m.grid_h, m.grid_w, st);
    LAUNCHED();
    OK(gemm(s, s->y, s->mlp, s->patch_w, s->patch_b, Bk * m.Np, D, s->K_patch, BIAS, 0, err, errlen));
    embed_assemble(s->res, s->y, s->tok, s->pos, Bk, T, m.npf, D, st);
    if (m.L > 0) ln_into_linear(s, 0, 0, s->h, s->res, nullptr, s->layers[0].ln1_w, s->layers[0].ln1_b, NT);
    LAUNCHED();
    return VIT_OK;
}

/* after the last layer: final LN, pooling, fc_norm, pre_logits, the rollout's CLS row; last =
 * the last fc2 output when not yet added to the residual stream (VIT_CUDA_RESFUSE=0) */
vit_status enqueue_pool(state *s, const part_io &p, int Bk, int mode, const __half *last,
                        const float *Rcur, char *err, size_t errlen) {
    const vcu_model_desc &m = s->m;
    cudaStream_t st = s->st;
    const int D = m.D, T = m.T, NT = Bk * T;
    const cublasLtEpilogue_t BIAS = CUBLASLT_EPILOGUE_BIAS;
    /* as the CPU reference: final norm (if any), pooling, then fc_norm (if any) */
    float *pool_out = s->fc_norm_w ? p.pool_tmp : p.pooled;
    if (m.pooling == VIT_POOL_CLS) {
        /* last residual add + final LN on the pooled prefix rows only: (Bk, pool_rows*D), from
         * the compacted rows (stride npf) when the last layer ran on them alone */
        const bool compact = m.L > 0 && s->res_c;
        final_layernorm(pool_out, compact ? s->res_c : s->res, last, s->norm_w, s->norm_b,
                        Bk * pool_rows(m), pool_rows(m), compact ? m.npf : T, D, m.eps, st);
    } else {
        /* every row, FP32 (Bk*T, D), into qkv's buffer: NT*3D halves hold NT*D floats, and qkv
         * is dead after the last attention; [cls; mean]: the CLS row of these, then the mean
         * (pool_out (Bk, 2D)) */
        float *rows = reinterpret_cast<float *>(s->qkv);
        final_layernorm(rows, s->res, last, s->norm_w, s->norm_b, NT, T, T, D, m.eps, st);
        mean_pool(pool_out, rows, Bk, T, m.npf, D, m.pooling == VIT_POOL_CLS_MEAN, st);
    }
    if (s->fc_norm_w) /* feature rows are D wide here (mean pooling or a single CLS token) */
        final_layernorm(p.pooled, p.pool_tmp, nullptr, s->fc_norm_w, s->fc_norm_b, Bk, 1, 1, D,
                        m.eps, st);
    LAUNCHED();
    if (s->pre_w) {
        OK(gemm(s, p.feat, p.pooled, s->pre_w, s->pre_b, Bk, D, D, BIAS, G_F32, err, errlen));
        tanh_inplace(p.feat, (long long)Bk * D, st);
        LAUNCHED();
    }
    if (mode & 2) {
        rollout_extract(p.roll_d, Rcur, Bk, T, m.npf, st);
        LAUNCHED();
    }
    return VIT_OK;
}

/* everything from the device input (p.in) to the features, for Bk images; capturable.  The
 * host-to-device copy is not in it: forward_impl copies the caller's B images straight from
 * wherever they are (a pinned buffer from vit_input_alloc or the session's: one DMA). */
vit_status enqueue_backbone(state *s, const part_io &p, int Bk, int mode, char *err, size_t errlen) {
    const vcu_model_desc &m = s->m;
    cudaStream_t st = s->st;
    const int D = m.D, T = m.T, NT = Bk * T;
    const cublasLtEpilogue_t BIAS = CUBLASLT_EPILOGUE_BIAS;

    OK(enqueue_embed(s, p, Bk, mode, err, errlen));

    /* proj and fc2 add into the residual stream in their epilogue (C = res, beta = 1), so
     * LayerNorm only reads it; VIT_CUDA_RESFUSE=0: they write y and LayerNorm adds it */
    const int yflags = s->fuse_res ? G_ACC : 0;
    __half *ydst = s->fuse_res ? s->res : s->y;
    const __half *ybr = s->fuse_res ? nullptr : s->y;
    float *Rcur = s->R0, *Rnext = s->R1;
    for (int l = 0; l < m.L; l++) {
        const dlayer &w = s->layers[l];
        if (s->prec) OK(linear_q(s, l, 0, s->qkv, nullptr, w.qkv_b, NT, 3 * D, D, err, errlen));
        else OK(gemm(s, s->qkv, s->h, w.qkv_w, w.qkv_b, NT, 3 * D, D, BIAS, 0, err, errlen));
        float *avg = (mode & 2) ? s->A : nullptr;
        float *cls = ((mode & 1) && l == m.L - 1) ? p.cls_d : nullptr;
        if (avg) CU(cudaMemsetAsync(avg, 0, sizeof(float) * Bk * T * T, st));
        if (cls) CU(cudaMemsetAsync(cls, 0, sizeof(float) * Bk * T, st));
        /* the last layer of a CLS-pooled model needs the prefix query rows alone (unless the
         * rollout wants every row's probabilities) */
        const bool compact = l == m.L - 1 && s->res_c;
        const int q_rows = compact && !avg ? m.npf : 0;
        /* INT8 / FP8: attention_mma quantizes its output for proj straight into xq (not in the
         * compacted last layer, whose rows are moved first; nor in the fallback kernels) */
        const vk_qout qo = s->prec && !compact ? vk_qout{s->xq, s->ql[l].inv[1], qtype(s)} : vk_qout{};
        const bool mma = s->attn_mma && attention_mma(s->att, avg, cls, s->qkv, Bk, T, m.H, s->dh, s->smem_optin, st,
                                                      VK_MMA_TARGET_BLOCKS, s->attn_kc, s->attn_qt, q_rows, qo);
        if (!mma) attention(s->att, avg, cls, s->qkv, Bk, T, m.H, s->dh, s->smem_optin, st);
        const bool att_quantized = mma && qo.q;
        LAUNCHED();
        if (avg) {
            rollout_prep(s->A, Bk, T, st);
            if (l == 0) {
                CU(cudaMemcpyAsync(Rcur, s->A, sizeof(float) * Bk * T * T, cudaMemcpyDeviceToDevice, st));
            } else {
                rollout_matmul(Rnext, s->A, Rcur, Bk, T, st);
                float *t = Rcur; Rcur = Rnext; Rnext = t;
            }
            LAUNCHED();
        }
        /* the last layer of a model that pools only its prefix tokens (CLS [+ dist]): past the
         * attention, which every token's K and V feed, only those rows matter, so they go on
         * alone, compacted to (Bk*npf, D) (VIT_CUDA_CLS_ONLY=0: every row) */
        __half *att = s->att, *res = s->res, *h = s->h, *mlp = s->mlp;
        int rows = NT;
        if (compact) {
            prefix_rows(s->att_c, s->att, Bk, T, m.npf, D, st);
            prefix_rows(s->res_c, s->res, Bk, T, m.npf, D, st);
            LAUNCHED();
            att = s->att_c; res = s->res_c; h = s->h_c; mlp = s->mlp_c;
            rows = Bk * m.npf;
            ydst = s->fuse_res ? res : s->y_c;
            ybr = s->fuse_res ? nullptr : s->y_c;
        }
        if (s->prec) { /* residual adds in the epilogues (fuse_res is forced on) */
            OK(linear_q(s, l, 1, res, att_quantized ? nullptr : att, w.proj_b, rows, D, D, err, errlen));
            ln_into_linear(s, l, 2, h, res, nullptr, w.ln2_w, w.ln2_b, rows);
            LAUNCHED();
            OK(linear_q(s, l, 2, nullptr, nullptr, w.fc1_b, rows, m.M, D, err, errlen));
            OK(linear_q(s, l, 3, res, nullptr, w.fc2_b, rows, D, m.M, err, errlen));
        } else {
            OK(gemm(s, ydst, att, w.proj_w, w.proj_b, rows, D, D, BIAS, yflags, err, errlen));
            residual_layernorm(h, res, ybr, w.ln2_w, w.ln2_b, rows, D, m.eps, st);
            LAUNCHED();
            OK(gemm(s, mlp, h, w.fc1_w, w.fc1_b, rows, m.M, D,
                    s->gelu_erf ? BIAS : CUBLASLT_EPILOGUE_GELU_BIAS, 0, err, errlen));
            if (s->gelu_erf) { gelu_erf_inplace(mlp, (long long)rows * m.M, st); LAUNCHED(); }
            OK(gemm(s, ydst, mlp, w.fc2_w, w.fc2_b, rows, D, m.M, BIAS, yflags, err, errlen));
        }
        if (l + 1 < m.L) {
            ln_into_linear(s, l + 1, 0, s->h, s->res, ybr, s->layers[l + 1].ln1_w, s->layers[l + 1].ln1_b, NT);
            LAUNCHED();
        }
    }

    return enqueue_pool(s, p, Bk, mode, m.L > 0 ? ybr : nullptr, Rcur, err, errlen);
}

/* the head's device copy, uploaded on first use (LRU of kHeads) */
vit_status get_head(state *s, const vcu_head_desc *hd, head_entry **out, char *err, size_t errlen) {
    s->tick++;
    for (int i = 0; i < kHeads; i++) {
        head_entry *e = &s->heads[i];
        if (e->w && e->key == hd->key && e->fp == hd->fingerprint && e->C == hd->C && e->dim == hd->dim) {
            e->used = s->tick;
            *out = e;
            return VIT_OK;
        }
    }
    head_entry *lru = &s->heads[0];   /* an empty slot, else the least recently used */
    for (int i = 0; i < kHeads; i++) {
        head_entry *e = &s->heads[i];
        if (!e->w) { lru = e; break; }
        if (e->used < lru->used) lru = e;
    }
    dfree(s, lru->w);
    dfree(s, lru->b);
    lru->w = lru->b = nullptr;
    lru->key = nullptr;
    OK(up_f32(s, &lru->w, hd->w, (size_t)hd->C * hd->dim, err, errlen));
    OK(up_f32(s, &lru->b, hd->b, (size_t)hd->C, err, errlen));
    lru->key = hd->key;
    lru->fp = hd->fingerprint;
    lru->C = hd->C;
    lru->dim = hd->dim;
    lru->used = s->tick;
    if (hd->C > s->logits_cap) {
        dfree(s, s->logits_d);
        s->logits_d = nullptr;
        if (s->h_logits) cudaFreeHost(s->h_logits);
        s->h_logits = nullptr;
        s->logits_cap = 0;
        OK(dalloc_t(s, &s->logits_d, (size_t)s->maxB * hd->C, err, errlen));
        CU(cudaMallocHost((void **)&s->h_logits, sizeof(float) * s->maxB * hd->C));
        s->logits_cap = hd->C;
    }
    *out = lru;
    return VIT_OK;
}

/* the part layout of bucket bi: parts of *size images (the last one smaller) */
int parts_of(const state *s, int bi, int *size) {
    const int Bk = s->buckets[bi];
    int S = s->sub > 0 && Bk > s->sub ? s->sub : Bk;
    if ((Bk + S - 1) / S > kMaxParts) S = (Bk + kMaxParts - 1) / kMaxParts;
    *size = S;
    return (Bk + S - 1) / S;
}

/* part j of bucket bi from its device input: the graph when there is one, else an eager run
 * (which also picks the GEMM algorithms), then the capture for next time */
vit_status run_part(state *s, int bi, int mode, int j, char *err, size_t errlen) {
    int S;
    parts_of(s, bi, &S);
    const int i0 = j * S, n = s->buckets[bi] - i0 < S ? s->buckets[bi] - i0 : S;
    cudaGraphExec_t &ge = s->graph[bi][mode][j];
    if (ge) {
        CU(cudaGraphLaunch(ge, s->st));
        return VIT_OK;
    }
    const part_io p = part_at(s, i0, mode);
    OK(enqueue_backbone(s, p, n, mode, err, errlen));
    if (s->graphs_off) return VIT_OK;
    CU(cudaStreamSynchronize(s->st));   /* the eager run is done (and checked) before capture */
    cudaGraph_t g = nullptr;
    char cerr[256] = "";
    if (cudaStreamBeginCapture(s->st, cudaStreamCaptureModeThreadLocal) == cudaSuccess) {
        vit_status cs = enqueue_backbone(s, p, n, mode, cerr, sizeof cerr);
        cudaError_t ec = cudaStreamEndCapture(s->st, &g);
        if (cs != VIT_OK || ec != cudaSuccess || !g || cudaGraphInstantiate(&ge, g, 0) != cudaSuccess) {
            ge = nullptr;
            s->graphs_off = 1;          /* eager from now on */
        }
        if (g) cudaGraphDestroy(g);
    } else {
        s->graphs_off = 1;
    }
    cudaGetLastError();
    return VIT_OK;
}

/* B images at input (host; FP32, or FP16 with kModeF16 in mode) through bucket bi: each part's
 * images are copied on s->cs, and part j starts on s->st once its copy is in, while the next
 * part's copy runs */
vit_status run_backbone(state *s, const void *input, int B, int bi, int mode, char *err,
                        size_t errlen) {
    int S;
    const int np = parts_of(s, bi, &S);
    const size_t img_bytes = (mode & kModeF16 ? sizeof(__half) : sizeof(float)) * (size_t)s->img;
    const char *src = static_cast<const char *>(input);
    char *dst = reinterpret_cast<char *>(s->in);
    if (np == 1) {
        CU(cudaMemcpyAsync(dst, src, img_bytes * B, cudaMemcpyHostToDevice, s->st));
        return run_part(s, bi, mode, 0, err, errlen);
    }
    CU(cudaEventRecord(s->ev_fork, s->st));   /* the previous forward's reads of s->in are done */
    CU(cudaStreamWaitEvent(s->cs, s->ev_fork, 0));
    for (int j = 0; j < np; j++) {
        const int i0 = j * S, n = B - i0 < S ? B - i0 : S;
        if (n > 0)
            CU(cudaMemcpyAsync(dst + (size_t)i0 * img_bytes, src + (size_t)i0 * img_bytes,
                               img_bytes * n, cudaMemcpyHostToDevice, s->cs));
        CU(cudaEventRecord(s->ev_part[j], s->cs));
    }
    for (int j = 0; j < np; j++) {
        CU(cudaStreamWaitEvent(s->st, s->ev_part[j], 0));
        OK(run_part(s, bi, mode, j, err, errlen));
    }
    return VIT_OK;
}

/* the model's shape as the kernels need it; nothing is touched on failure */
vit_status check_model(const vcu_model_desc &m, int max_batch, int gpu_id, char *err, size_t errlen) {
    int n = vcu_device_count();
    if (n <= 0) return vit_errf(VIT_E_DEVICE, err, errlen, "cuda: no CUDA device (driver missing or no GPU)");
    if (gpu_id < 0 || gpu_id >= n)
        return vit_errf(VIT_E_DEVICE, err, errlen, "cuda: gpu id %d out of range (%d device%s)", gpu_id, n, n == 1 ? "" : "s");
    if (max_batch < 1) return vit_errf(VIT_E_ARG, err, errlen, "cuda: max_batch %d < 1", max_batch);
    if (m.H < 1 || m.D % m.H)
        return vit_errf(VIT_E_CONFIG, err, errlen, "cuda: hidden size %d not divisible by %d heads", m.D, m.H);
    if (m.pooling != VIT_POOL_CLS && m.pooling != VIT_POOL_MEAN && m.pooling != VIT_POOL_CLS_MEAN)
        return vit_errf(VIT_E_CONFIG, err, errlen, "cuda: unknown pooling %d", m.pooling);
    if (m.pooling != VIT_POOL_MEAN && m.npf - m.nreg < 1)
        return vit_errf(VIT_E_CONFIG, err, errlen, "cuda: CLS pooling without a class token");
    /* [cls; mean]: one class token (row 0), nothing after the pooling (as the CPU backend) */
    if (m.pooling == VIT_POOL_CLS_MEAN && (m.npf - m.nreg != 1 || m.fc_norm_w || m.pre_logits_w))
        return vit_errf(VIT_E_CONFIG, err, errlen,
                        "cuda: [class token; mean] pooling needs one class token and no fc_norm or pre_logits");
    if (m.nreg < 0 || m.nreg > m.npf)
        return vit_errf(VIT_E_CONFIG, err, errlen, "cuda: %d register tokens among %d prefix tokens", m.nreg, m.npf);
    if (m.fc_norm_w && m.pooling != VIT_POOL_MEAN && pool_rows(m) > 1)
        return vit_errf(VIT_E_CONFIG, err, errlen, "cuda: fc_norm with two pooled tokens is not supported");
    if (m.T != m.npf + m.Np || m.grid_h < 1 || m.grid_w < 1 || m.Np != m.grid_h * m.grid_w ||
        m.grid_h * m.patch_size > m.image_h || m.grid_w * m.patch_size > m.image_w)
        return vit_errf(VIT_E_CONFIG, err, errlen, "cuda: inconsistent token counts");
    int F = m.pre_logits_w ? m.D : pool_rows(m) * m.D;
    if (F != m.feature_dim)
        return vit_errf(VIT_E_CONFIG, err, errlen, "cuda: feature_dim %d, expected %d", m.feature_dim, F);
    if (m.precision != VCU_FP16 && !m.act_amax && m.L > 0)
        return vit_errf(VIT_E_ARG, err, errlen, "cuda: int8/fp8 without activation ranges (calibration)");
    /* cuBLASLt's IMMA / FP8 kernels: K (D for qkv, proj, fc1; M for fc2) a multiple of 4 / 16 */
    const int kal = m.precision == VCU_FP8 ? 16 : 4;
    if (m.precision != VCU_FP16 && (m.D % kal || m.M % kal))
        return vit_errf(VIT_E_CONFIG, err, errlen, "cuda: %s needs hidden size %d and MLP size %d to be multiples of %d",
                        m.precision == VCU_FP8 ? "fp8" : "int8", m.D, m.M, kal);
    return VIT_OK;
}

/* the device, its properties, the session's dimensions and the VIT_CUDA_* knobs */
vit_status init_device(state *s, const vcu_model_desc &m, int max_batch, int gpu_id, char *err,
                       size_t errlen) {
    s->dev = gpu_id;
    CU(cudaSetDevice(gpu_id));
    cudaDeviceProp prop;
    CU(cudaGetDeviceProperties(&prop, gpu_id));
    snprintf(s->gpu_name, sizeof s->gpu_name, "%s (sm_%d%d)", prop.name, prop.major, prop.minor);
    if (prop.major < 7 || (prop.major == 7 && prop.minor < 5))
        return vit_errf(VIT_E_DEVICE, err, errlen, "cuda: %s has compute capability %d.%d; this build needs 7.5 or newer",
                    prop.name, prop.major, prop.minor);
    if (m.precision == VCU_FP8 && prop.major * 10 + prop.minor < 89)
        return vit_errf(VIT_E_DEVICE, err, errlen, "cuda: fp8 (e4m3) GEMMs need sm_89 or newer (Ada, Hopper); %s is sm_%d%d",
                        prop.name, prop.major, prop.minor);
    s->smem_optin = prop.sharedMemPerBlockOptin;
    s->m = m;
    s->m.layers = nullptr;
    s->maxB = max_batch;
    s->dh = m.D / m.H;
    s->K_patch = m.channels * m.patch_size * m.patch_size;
    s->img = m.channels * m.image_h * m.image_w;
    /* the VIT_CUDA_* knobs (engine/knobs.c validated them when the session started) */
    s->gelu_erf = vit_knob_is(VIT_KNOB_CUDA_GELU, "erf");
    s->attn_mma = !vit_knob_is(VIT_KNOB_CUDA_ATTN, "wmma") && prop.major >= 8;   /* mma.m16n8k16: sm_80+ */
    const int kc = vit_knob_int(VIT_KNOB_CUDA_ATTN_KC);   /* keys per softmax step */
    s->attn_kc = attention_mma_kc_valid(kc) ? kc : VK_MMA_KC_DEFAULT;
    const int qt = vit_knob_int(VIT_KNOB_CUDA_ATTN_QT);   /* query tiles per warp */
    s->attn_qt = attention_mma_qt_valid(s->attn_kc, qt) ? qt : VK_MMA_QT_DEFAULT;
    s->tune = vit_knob_int(VIT_KNOB_CUDA_GEMM_TUNE);
    s->tune_n = vit_knob_int(VIT_KNOB_CUDA_GEMM_ALGOS);
    if (s->tune_n < 1) s->tune_n = 1;
    if (s->tune_n > kMaxCand) s->tune_n = kMaxCand;
    s->cls_only = vit_knob_int(VIT_KNOB_CUDA_CLS_ONLY);
    s->prec = m.precision;
    s->fuse_res = s->prec != VCU_FP16 || vit_knob_int(VIT_KNOB_CUDA_RESFUSE);   /* int8/fp8: always */
    s->sub = vit_knob_int(VIT_KNOB_CUDA_SUBBATCH);
    return VIT_OK;
}

/* streams, events, the cuBLASLt handle and workspace, the attention kernels' shared memory */
vit_status init_runtime(state *s, char *err, size_t errlen) {
    CU(cudaStreamCreateWithFlags(&s->st, cudaStreamNonBlocking));
    CU(cudaStreamCreateWithFlags(&s->cs, cudaStreamNonBlocking));
    CU(cudaEventCreateWithFlags(&s->ev_fork, cudaEventDisableTiming));
    for (int j = 0; j < kMaxParts; j++) CU(cudaEventCreateWithFlags(&s->ev_part[j], cudaEventDisableTiming));
    if (cublasLtCreate(&s->lt) != CUBLAS_STATUS_SUCCESS) {
        s->lt = nullptr;
        return vit_errf(VIT_E_BACKEND, err, errlen, "cublasLt: cublasLtCreate failed");
    }
    OK(dalloc(s, &s->ws, kWorkspace, err, errlen));
    if (attention_uses_wmma(s->m.T, s->dh, s->smem_optin))
        CU(attention_prepare(s->smem_optin));  /* the device maximum: sessions may differ in T */
    if (s->attn_mma) CU(attention_mma_prepare(s->smem_optin));
    return VIT_OK;
}

/* W (N, K) FP32 quantized per output channel into q (N, K) bytes and scales sw (N):
 * INT8 exactly as the CPU reference packs it (vit_gemm_i8_pack: sw = max|W| / 127), FP8
 * sw = max|W| / 448, q = e4m3(W / sw) */
void quantize_weight(int prec, const float *W, int N, int K, std::vector<uint8_t> &q,
                     std::vector<float> &sw, std::vector<unsigned char> &pack) {
    q.resize((size_t)N * K);
    sw.resize(N);
    if (prec == VCU_INT8) {
        pack.resize(vit_gemm_i8_packed_bytes(N, K) + 64);
        void *Wp = (void *)(((uintptr_t)pack.data() + 63) & ~(uintptr_t)63);
        vit_gemm_i8_pack(Wp, W, N, K);
        for (int n = 0; n < N; n++) {
            sw[n] = vit_gemm_i8_scales(Wp)[n];
            for (int k = 0; k < K; k++) q[(size_t)n * K + k] = (uint8_t)vit_gemm_i8_weight(Wp, N, K, n, k);
        }
        return;
    }
    for (int n = 0; n < N; n++) {
        const float *w = W + (size_t)n * K;
        float amax = 0.f;
        for (int k = 0; k < K; k++) amax = fabsf(w[k]) > amax ? fabsf(w[k]) : amax;
        sw[n] = amax > 0.f ? amax / 448.f : 0.f;
        const float inv = amax > 0.f ? 448.f / amax : 0.f;
        for (int k = 0; k < K; k++) q[(size_t)n * K + k] = vk_e4m3(w[k] * inv);
    }
}

/* the encoder Linears' weights quantized, and the activation scales from the calibration
 * (INT8: amax / 127 as the CPU reference, vit_i8_static_scales; FP8: amax / 448) */
vit_status upload_quantized(state *s, const vcu_model_desc &m, char *err, size_t errlen) {
    std::vector<uint8_t> q;
    std::vector<float> sw;
    std::vector<unsigned char> pack;
    s->ql.resize(m.L);
    for (int l = 0; l < m.L; l++) {
        const vcu_layer &w = m.layers[l];
        const float *W[4] = {w.qkv_w, w.proj_w, w.fc1_w, w.fc2_w};
        const int N[4] = {3 * m.D, m.D, m.M, m.D}, K[4] = {m.D, m.D, m.D, m.M};
        qlayer &ql = s->ql[l];
        for (int j = 0; j < 4; j++) {
            if (!W[j]) return vit_errf(VIT_E_INTERNAL, err, errlen, "cuda: missing weight tensor");
            quantize_weight(s->prec, W[j], N[j], K[j], q, sw, pack);
            OK(dalloc_t(s, &ql.w[j], q.size(), err, errlen));
            CU(cudaMemcpy(ql.w[j], q.data(), q.size(), cudaMemcpyHostToDevice));
            OK(up_f32(s, &ql.sw[j], sw.data(), sw.size(), err, errlen));
            const float amax = m.act_amax[4 * l + j];
            if (s->prec == VCU_INT8) {
                vit_i8_static_scales(amax, &ql.sa[j], &ql.inv[j]);
            } else {
                ql.sa[j] = amax / 448.f;
                ql.inv[j] = 448.f / amax;
            }
        }
    }
    return VIT_OK;
}

/* the weights: GEMM weights and biases FP16 (INT8 / FP8: the encoder Linears' weights
 * quantized instead), the rest FP32 */
vit_status upload_weights(state *s, const vcu_model_desc &m, char *err, size_t errlen) {
    std::vector<__half> tmp;
    const int D = m.D, T = m.T, M = m.M;
    OK(up_f16(s, &s->patch_w, m.patch_w, (size_t)D * s->K_patch, tmp, err, errlen));
    OK(up_f16(s, &s->patch_b, m.patch_b, D, tmp, err, errlen));
    {
        std::vector<float> tok((size_t)(m.npf > 0 ? m.npf : 1) * D, 0.f);
        if (m.npf >= 1 && m.cls_token) memcpy(tok.data(), m.cls_token, sizeof(float) * D);
        if (m.npf >= 2 && m.dist_token) memcpy(tok.data() + D, m.dist_token, sizeof(float) * D);
        if (m.nreg > 0 && m.reg_tokens && m.nreg <= m.npf)  /* registers: the last nreg prefix rows */
            memcpy(tok.data() + (size_t)(m.npf - m.nreg) * D, m.reg_tokens, sizeof(float) * m.nreg * D);
        OK(up_f32(s, &s->tok, tok.data(), tok.size(), err, errlen));
    }
    OK(up_f32(s, &s->pos, m.pos_embed, (size_t)T * D, err, errlen));
    OK(up_f32(s, &s->norm_w, m.norm_w, D, err, errlen));
    OK(up_f32(s, &s->norm_b, m.norm_b, D, err, errlen));
    OK(up_f32(s, &s->fc_norm_w, m.fc_norm_w, D, err, errlen));
    OK(up_f32(s, &s->fc_norm_b, m.fc_norm_b, D, err, errlen));
    OK(up_f32(s, &s->pre_w, m.pre_logits_w, (size_t)D * D, err, errlen));
    OK(up_f32(s, &s->pre_b, m.pre_logits_b, D, err, errlen));
    if (!s->pos) return vit_errf(VIT_E_INTERNAL, err, errlen, "cuda: missing position embeddings");
    s->layers.resize(m.L);
    for (int l = 0; l < m.L; l++) {
        const vcu_layer &w = m.layers[l];
        dlayer &d = s->layers[l];
        OK(up_f32(s, &d.ln1_w, w.ln1_w, D, err, errlen));
        OK(up_f32(s, &d.ln1_b, w.ln1_b, D, err, errlen));
        OK(up_f32(s, &d.ln2_w, w.ln2_w, D, err, errlen));
        OK(up_f32(s, &d.ln2_b, w.ln2_b, D, err, errlen));
        if (!d.ln1_w || !d.ln1_b || !d.ln2_w || !d.ln2_b)
            return vit_errf(VIT_E_INTERNAL, err, errlen, "cuda: layer %d: missing LayerNorm", l);
        if (s->prec == VCU_FP16) {
            OK(up_f16(s, &d.qkv_w, w.qkv_w, (size_t)3 * D * D, tmp, err, errlen));
            OK(up_f16(s, &d.proj_w, w.proj_w, (size_t)D * D, tmp, err, errlen));
            OK(up_f16(s, &d.fc1_w, w.fc1_w, (size_t)M * D, tmp, err, errlen));
            OK(up_f16(s, &d.fc2_w, w.fc2_w, (size_t)D * M, tmp, err, errlen));
        }
        OK(up_f16(s, &d.qkv_b, w.qkv_b, (size_t)3 * D, tmp, err, errlen));
        OK(up_f16(s, &d.proj_b, w.proj_b, D, tmp, err, errlen));
        OK(up_f16(s, &d.fc1_b, w.fc1_b, M, tmp, err, errlen));
        OK(up_f16(s, &d.fc2_b, w.fc2_b, D, tmp, err, errlen));
    }
    if (s->prec != VCU_FP16) OK(upload_quantized(s, m, err, errlen));
    return VIT_OK;
}

/* activations and pinned host buffers for max_batch, and the batch-size buckets */
vit_status alloc_activations(state *s, char *err, size_t errlen) {
    const vcu_model_desc &m = s->m;
    const int D = m.D, T = m.T, M = m.M;
    const size_t B = (size_t)s->maxB, NT = B * T;
    size_t mlp_elems = NT * M, patch_elems = B * m.Np * s->K_patch;
    OK(dalloc_t(s, &s->in, B * s->img, err, errlen));
    OK(dalloc_t(s, &s->res, NT * D, err, errlen));
    OK(dalloc_t(s, &s->h, NT * D, err, errlen));
    OK(dalloc_t(s, &s->qkv, NT * 3 * D, err, errlen));
    OK(dalloc_t(s, &s->att, NT * D, err, errlen));
    OK(dalloc_t(s, &s->y, NT * D, err, errlen));
    s->y_elems = NT * D;
    OK(dalloc_t(s, &s->mlp, mlp_elems > patch_elems ? mlp_elems : patch_elems, err, errlen));
    if (s->prec != VCU_FP16) {
        OK(dalloc_t(s, &s->xq, NT * (size_t)(D > M ? D : M), err, errlen));
        OK(dalloc(s, &s->acc, NT * (size_t)(3 * D > M ? 3 * D : M) * 4, err, errlen));
    }
    if (s->cls_only && m.pooling == VIT_POOL_CLS && m.npf >= 1 && m.L >= 1) {
        const size_t P = B * m.npf;
        OK(dalloc_t(s, &s->res_c, P * D, err, errlen));
        OK(dalloc_t(s, &s->att_c, P * D, err, errlen));
        OK(dalloc_t(s, &s->h_c, P * D, err, errlen));
        OK(dalloc_t(s, &s->y_c, P * D, err, errlen));
        OK(dalloc_t(s, &s->mlp_c, P * M, err, errlen));
    }
    OK(dalloc_t(s, &s->pooled, B * pool_rows(m) * D, err, errlen));
    OK(dalloc_t(s, &s->pool_tmp, B * D, err, errlen));
    if (s->pre_w) OK(dalloc_t(s, &s->feat, B * D, err, errlen));
    else s->feat = s->pooled;
    OK(dalloc_t(s, &s->cls_d, B * T, err, errlen));
    /* no garbage in rows a bucket computes but never returns */
    CU(cudaMemset(s->in, 0, sizeof(float) * B * s->img));

    CU(cudaMallocHost((void **)&s->h_in, sizeof(float) * B * s->img));
    memset(s->h_in, 0, sizeof(float) * B * s->img);
    CU(cudaMallocHost((void **)&s->h_feat, sizeof(float) * B * m.feature_dim));
    CU(cudaMallocHost((void **)&s->h_cls, sizeof(float) * B * m.Np));

    s->nb = 0;
    for (int b = 1; b < s->maxB && s->nb < kMaxBuckets - 1; b *= 2) s->buckets[s->nb++] = b;
    s->buckets[s->nb++] = s->maxB;
    return VIT_OK;
}

/* warm-up: pick the GEMM algorithms and capture every bucket's graph now, on random inputs, so
 * the first requests do not pay for it (VIT_CUDA_WARMUP=0 skips).  FP32 input, then FP16 (what
 * vit_session_input_type asks for): the same values, as halves in the same pinned buffer. */
vit_status warm_up(state *s, char *err, size_t errlen) {
    if (!vit_knob_int(VIT_KNOB_CUDA_WARMUP)) return VIT_OK;
    const size_t n = (size_t)s->maxB * s->img;
    __half *hh = reinterpret_cast<__half *>(s->h_in);
    for (int mode : {0, kModeF16}) {
        uint64_t r = 0x9E3779B97F4A7C15ull;
        for (size_t i = 0; i < n; i++) {
            r ^= r << 13; r ^= r >> 7; r ^= r << 17;
            const float v = (float)((r >> 40) * (1.0 / 16777216.0)) * 4.f - 2.f;
            if (mode) hh[i] = __float2half(v);
            else s->h_in[i] = v;
        }
        for (int bi = 0; bi < s->nb; bi++) OK(run_backbone(s, s->h_in, s->buckets[bi], bi, mode, err, errlen));
        CU(cudaStreamSynchronize(s->st));   /* the buffer is rewritten next */
    }
    return VIT_OK;
}

vit_status init_impl(state *s, const vcu_model_desc *md, int max_batch, int gpu_id, char *err,
                     size_t errlen) {
    const vcu_model_desc &m = *md;
    OK(check_model(m, max_batch, gpu_id, err, errlen));
    OK(init_device(s, m, max_batch, gpu_id, err, errlen));
    OK(init_runtime(s, err, errlen));
    OK(upload_weights(s, m, err, errlen));
    OK(alloc_activations(s, err, errlen));
    CU(cudaDeviceSynchronize());
    return warm_up(s, err, errlen);
}

void free_impl(state *s) {
    if (!s) return;
    cudaSetDevice(s->dev);
    if (s->st) cudaStreamSynchronize(s->st);
    for (int i = 0; i < kMaxBuckets; i++)
        for (int j = 0; j < kModes; j++)
            for (int k = 0; k < kMaxParts; k++)
                if (s->graph[i][j][k]) cudaGraphExecDestroy(s->graph[i][j][k]);
    for (void *p : s->dev_allocs) cudaFree(p);
    s->dev_allocs.clear();
    float *hosts[] = {s->h_in, s->h_logits, s->h_feat, s->h_cls, s->h_roll};
    for (float *h : hosts)
        if (h) cudaFreeHost(h);
    if (s->lt) cublasLtDestroy(s->lt);
    if (s->st) cudaStreamDestroy(s->st);
    if (s->cs) cudaStreamDestroy(s->cs);
    if (s->ev_fork) cudaEventDestroy(s->ev_fork);
    for (int j = 0; j < kMaxParts; j++)
        if (s->ev_part[j]) cudaEventDestroy(s->ev_part[j]);
    cudaGetLastError();
    delete s;
}

vit_status forward_impl(state *s, const void *input, vit_input_type type, int B,
                        const vcu_head_desc *hd, const vcu_outputs *out, char *err, size_t errlen) {
    const vcu_model_desc &m = s->m;
    if (B < 1 || B > s->maxB)
        return vit_errf(VIT_E_ARG, err, errlen, "cuda: batch %d outside [1, %d]", B, s->maxB);
    if (!input) return vit_errf(VIT_E_ARG, err, errlen, "cuda: input is NULL");
    if (type != VIT_INPUT_F32 && type != VIT_INPUT_F16)
        return vit_errf(VIT_E_ARG, err, errlen, "cuda: unknown input type %d", (int)type);
    if (out->logits && (!hd || !hd->w || !hd->b || hd->C < 1))
        return vit_errf(VIT_E_ARG, err, errlen, "cuda: logits asked without a head");
    if (out->logits && hd->dim != m.feature_dim)
        return vit_errf(VIT_E_ARG, err, errlen, "cuda: head dim %d != feature dim %d", hd->dim, m.feature_dim);
    CU(cudaSetDevice(s->dev));
    int bi = 0;
    while (s->buckets[bi] < B) bi++;
    const int Bk = s->buckets[bi];
    if ((out->attn_cls || out->attn_rollout) && m.npf < 1)
        return vit_errf(VIT_E_ARG, err, errlen, "attention maps need a class token; this model has none");
    /* no layers: no attention; the maps are zeros, as on the CPU */
    const int want_cls = out->attn_cls && m.L > 0, want_roll = out->attn_rollout && m.L > 0;
    if (out->attn_cls && !want_cls) memset(out->attn_cls, 0, sizeof(float) * B * m.Np);
    if (out->attn_rollout && !want_roll) memset(out->attn_rollout, 0, sizeof(float) * B * m.Np);
    const int mode = (want_cls ? 1 : 0) | (want_roll ? 2 : 0) | (type == VIT_INPUT_F16 ? kModeF16 : 0);
    if (mode & 2) OK(ensure_rollout(s, err, errlen));
    head_entry *he = nullptr;
    if (out->logits) OK(get_head(s, hd, &he, err, errlen));

    OK(run_backbone(s, input, B, bi, mode, err, errlen));

    if (out->logits) {
        OK(gemm(s, s->logits_d, s->feat, he->w, he->b, Bk, he->C, he->dim, CUBLASLT_EPILOGUE_BIAS, G_F32,
                err, errlen));
        CU(cudaMemcpyAsync(s->h_logits, s->logits_d, sizeof(float) * B * he->C, cudaMemcpyDeviceToHost, s->st));
    }
    if (out->features)
        CU(cudaMemcpyAsync(s->h_feat, s->feat, sizeof(float) * B * m.feature_dim, cudaMemcpyDeviceToHost, s->st));
    if (want_cls)
        CU(cudaMemcpy2DAsync(s->h_cls, sizeof(float) * m.Np, s->cls_d + m.npf, sizeof(float) * m.T,
                             sizeof(float) * m.Np, B, cudaMemcpyDeviceToHost, s->st));
    if (want_roll)
        CU(cudaMemcpyAsync(s->h_roll, s->roll_d, sizeof(float) * B * m.Np, cudaMemcpyDeviceToHost, s->st));
    CU(cudaStreamSynchronize(s->st));
    CU(cudaGetLastError());

    if (out->logits) memcpy(out->logits, s->h_logits, sizeof(float) * B * he->C);
    if (out->features) memcpy(out->features, s->h_feat, sizeof(float) * B * m.feature_dim);
    if (want_cls) memcpy(out->attn_cls, s->h_cls, sizeof(float) * B * m.Np);
    if (want_roll) memcpy(out->attn_rollout, s->h_roll, sizeof(float) * B * m.Np);
    return VIT_OK;
}

} // namespace

extern "C" {

int vcu_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

vit_status vcu_init(void **out, const vcu_model_desc *m, int max_batch, int gpu_id, char *err,
                    size_t errlen) {
    *out = nullptr;
    state *s = new (std::nothrow) state();
    if (!s) return vit_errf(VIT_E_NOMEM, err, errlen, "cuda: out of host memory");
    vit_status rc = init_impl(s, m, max_batch, gpu_id, err, errlen);
    if (rc != VIT_OK) {
        free_impl(s);
        return rc;
    }
    *out = s;
    return VIT_OK;
}

vit_status vcu_forward(void *st, const void *input, vit_input_type type, int B,
                       const vcu_head_desc *head, const vcu_outputs *out, char *err, size_t errlen) {
    return forward_impl((state *)st, input, type, B, head, out, err, errlen);
}

float *vcu_input_buffer(void *st) { return st ? ((state *)st)->h_in : nullptr; }

void *vcu_host_alloc(size_t bytes) {
    void *p = nullptr;
    if (cudaMallocHost(&p, bytes) != cudaSuccess) {
        cudaGetLastError();
        return nullptr;
    }
    return p;
}

void vcu_host_free(void *p) {
    if (!p) return;
    unsigned flags = 0;
    if (cudaHostGetFlags(&flags, p) == cudaSuccess) {
        cudaFreeHost(p);
    } else {          /* vit_input_alloc's pageable fallback */
        cudaGetLastError();
        free(p);
    }
}

void vcu_free(void *st) { free_impl((state *)st); }

int vcu_device_info(int gpu_id, char *name, size_t namelen, size_t *total, size_t *free_b) {
    int n = vcu_device_count();
    if (gpu_id < 0 || gpu_id >= n) return -1;
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, gpu_id) != cudaSuccess) { cudaGetLastError(); return -1; }
    if (name && namelen) snprintf(name, namelen, "%s", p.name);
    if (total || free_b) {
        int prev = 0;
        cudaGetDevice(&prev);
        size_t f = 0, t = p.totalGlobalMem;
        if (cudaSetDevice(gpu_id) == cudaSuccess && cudaMemGetInfo(&f, &t) != cudaSuccess) cudaGetLastError();
        cudaSetDevice(prev);
        if (total) *total = t;
        if (free_b) *free_b = f;
    }
    return 0;
}

} // extern "C"
