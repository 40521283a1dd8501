/* train_cuda.cu: the CUDA backend of head training (see train_cuda.h; the host side that picks
 * batches, computes optimizer coefficients, polls cancellation and fills results is train.c's,
 * shared with the CPU backend).  FP32 throughout, cuBLAS SGEMM in its default math mode (no
 * TF32), the kernels of kernels/linear_ce.cuh.
 *
 * Device memory, allocated once per run:
 *   x (N, D), y (N)        the features and labels, copied once
 *   idx (N)                the current index array (set_index: once per epoch)
 *   p = [w (C, D); b (C)]  the parameters, g the same shape (gradient), mv = [m; v] (state)
 *   xb (cap, D), yb (cap), logits (cap, C), row_loss (cap), loss_acc (1 double), hits (1 int)
 * One step on rows idx[off..off+B), all queued on one stream without a host sync:
 *   gather -> logits = xb w^T (SGEMM) -> softmax_ce (+b, row loss, dlogits in place)
 *   -> loss_acc += row losses -> dw = dlogits^T xb (SGEMM), db = column sums -> optimizer.
 * The host waits only for the epoch's loss, accuracies and the final weights.
 * Row-major Y (M, N) = A (M, K) B^T is, for column-major cuBLAS, Y^T = op_T(B) op_N(A^T). */
#include <cublas_v2.h>
#include <cstdarg>
#include <cstdio>
#include <new>

#include "cuda/train_cuda.h"
#include "util.h"
#include "linear_ce.cuh"

namespace {

struct tstate {
    int dev, C, D, N, cap;
    cudaStream_t st;
    cublasHandle_t blas;
    float *x, *p, *g, *mv, *xb, *logits, *row_loss;
    int32_t *y, *idx, *yb;
    double *loss_acc;
    int *hits;
};


/* a CUDA runtime result as a status; `what` names the operation in the message */
vit_status cuda_ok(cudaError_t e, const char *what, char *err, size_t errlen) {
    if (e == cudaSuccess) return VIT_OK;
    cudaGetLastError();   /* clear a non-sticky error so later calls see their own */
    return vit_errf(e == cudaErrorMemoryAllocation ? VIT_E_NOMEM : VIT_E_BACKEND, err, errlen,
                "train (cuda): %s: %s", what, cudaGetErrorString(e));
}

vit_status blas_ok(cublasStatus_t e, const char *what, char *err, size_t errlen) {
    if (e == CUBLAS_STATUS_SUCCESS) return VIT_OK;
    return vit_errf(e == CUBLAS_STATUS_ALLOC_FAILED ? VIT_E_NOMEM : VIT_E_BACKEND, err, errlen,
                "train (cuda): cuBLAS %s: %s", what, cublasGetStatusString(e));
}

#define TRY(expr)                                                                             \
    do {                                                                                      \
        vit_status t_ = (expr);                                                               \
        if (t_ != VIT_OK) return t_;                                                          \
    } while (0)

template <typename T> vit_status dev_alloc(T **p, size_t n, char *err, size_t errlen) {
    return cuda_ok(cudaMalloc((void **)p, (n ? n : 1) * sizeof(T)), "cudaMalloc", err, errlen);
}

size_t nparams(const tstate *s) { return (size_t)s->C * s->D + (size_t)s->C; }

void destroy(tstate *s) {
    if (!s) return;
    if (s->st) cudaStreamSynchronize(s->st);
    void *bufs[] = {s->x, s->p, s->g, s->mv, s->xb, s->logits, s->row_loss, s->y, s->idx,
                    s->yb, s->loss_acc, s->hits};
    for (void *b : bufs)
        if (b) cudaFree(b);
    if (s->blas) cublasDestroy(s->blas);
    if (s->st) cudaStreamDestroy(s->st);
    cudaGetLastError();
    delete s;
}

vit_status open_impl(tstate *s, const float *w, const float *b, const float *x, const int32_t *y,
                     char *err, size_t errlen) {
    const size_t np = nparams(s), nw = (size_t)s->C * s->D;
    TRY(cuda_ok(cudaSetDevice(s->dev), "cudaSetDevice", err, errlen));
    TRY(cuda_ok(cudaStreamCreateWithFlags(&s->st, cudaStreamNonBlocking), "cudaStreamCreate", err,
                errlen));
    TRY(blas_ok(cublasCreate(&s->blas), "cublasCreate", err, errlen));
    TRY(blas_ok(cublasSetStream(s->blas, s->st), "cublasSetStream", err, errlen));
    TRY(blas_ok(cublasSetMathMode(s->blas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode", err, errlen));
    TRY(dev_alloc(&s->x, (size_t)s->N * s->D, err, errlen));
    TRY(dev_alloc(&s->y, (size_t)s->N, err, errlen));
    TRY(dev_alloc(&s->idx, (size_t)s->N, err, errlen));
    TRY(dev_alloc(&s->p, np, err, errlen));
    TRY(dev_alloc(&s->g, np, err, errlen));
    TRY(dev_alloc(&s->mv, 2 * np, err, errlen));
    TRY(dev_alloc(&s->xb, (size_t)s->cap * s->D, err, errlen));
    TRY(dev_alloc(&s->yb, (size_t)s->cap, err, errlen));
    TRY(dev_alloc(&s->logits, (size_t)s->cap * s->C, err, errlen));
    TRY(dev_alloc(&s->row_loss, (size_t)s->cap, err, errlen));
    TRY(dev_alloc(&s->loss_acc, 1, err, errlen));
    TRY(dev_alloc(&s->hits, 1, err, errlen));
    /* synchronous copies: the host buffers are the caller's, pageable */
    TRY(cuda_ok(cudaMemcpy(s->x, x, sizeof(float) * (size_t)s->N * s->D, cudaMemcpyHostToDevice),
                "copy features", err, errlen));
    TRY(cuda_ok(cudaMemcpy(s->y, y, sizeof(int32_t) * (size_t)s->N, cudaMemcpyHostToDevice),
                "copy labels", err, errlen));
    TRY(cuda_ok(cudaMemcpy(s->p, w, sizeof(float) * nw, cudaMemcpyHostToDevice), "copy weights",
                err, errlen));
    TRY(cuda_ok(cudaMemcpy(s->p + nw, b, sizeof(float) * (size_t)s->C, cudaMemcpyHostToDevice),
                "copy bias", err, errlen));
    TRY(cuda_ok(cudaMemset(s->mv, 0, sizeof(float) * 2 * np), "cudaMemset", err, errlen));
    TRY(cuda_ok(cudaMemset(s->loss_acc, 0, sizeof(double)), "cudaMemset", err, errlen));
    return VIT_OK;
}

/* logits (B, C) = xb (B, D) w^T for the B rows idx[off..off+B), gathered into xb/yb */
vit_status forward_rows(tstate *s, int off, int B, char *err, size_t errlen) {
    const float one = 1.f, zero = 0.f;
    vk_launch_gather_rows(s->xb, s->yb, s->x, s->y, s->idx + off, B, s->D, s->st);
    TRY(cuda_ok(cudaGetLastError(), "gather_rows launch", err, errlen));
    /* logits^T (C x B) = op_T(w as D x C) * xb^T (D x B) */
    return blas_ok(cublasSgemm(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, s->C, B, s->D, &one, s->p, s->D,
                               s->xb, s->D, &zero, s->logits, s->C),
                   "sgemm logits", err, errlen);
}

vit_status sync(tstate *s, char *err, size_t errlen) {
    return cuda_ok(cudaStreamSynchronize(s->st), "cudaStreamSynchronize", err, errlen);
}

/* ---- the backend table's functions ------------------------------------------------------- */

vit_status t_set_index(void *ctx, const int32_t *idx, int n, char *err, size_t errlen) {
    tstate *s = (tstate *)ctx;
    if (n < 0 || n > s->N) return vit_errf(VIT_E_INTERNAL, err, errlen, "train (cuda): index of %d", n);
    TRY(cuda_ok(cudaSetDevice(s->dev), "cudaSetDevice", err, errlen));
    /* the previous epoch's steps may still read idx: the copy is queued behind them, and the
     * host array may change once this returns, hence the sync */
    TRY(cuda_ok(cudaMemcpyAsync(s->idx, idx, sizeof(int32_t) * (size_t)n, cudaMemcpyHostToDevice,
                                s->st),
                "copy index", err, errlen));
    return sync(s, err, errlen);
}

vit_status t_step(void *ctx, int off, int B, const train_coeffs *k, char *err, size_t errlen) {
    tstate *s = (tstate *)ctx;
    if (off < 0 || B < 1 || B > s->cap || off + B > s->N)
        return vit_errf(VIT_E_INTERNAL, err, errlen, "train (cuda): step rows [%d, %d)", off, off + B);
    const size_t nw = (size_t)s->C * s->D;
    const float one = 1.f, zero = 0.f;
    TRY(cuda_ok(cudaSetDevice(s->dev), "cudaSetDevice", err, errlen));
    TRY(forward_rows(s, off, B, err, errlen));
    vk_launch_softmax_ce(s->logits, s->p + nw, s->yb, B, s->C, s->row_loss, nullptr, 1, s->st);
    vk_launch_loss_accumulate(s->loss_acc, s->row_loss, B, s->st);
    TRY(cuda_ok(cudaGetLastError(), "softmax_ce launch", err, errlen));
    /* dw^T (D x C) = xb^T (D x B) * op_T(dlogits as C x B) */
    TRY(blas_ok(cublasSgemm(s->blas, CUBLAS_OP_N, CUBLAS_OP_T, s->D, s->C, B, &one, s->xb, s->D,
                            s->logits, s->C, &zero, s->g, s->D),
                "sgemm dw", err, errlen));
    vk_launch_col_sums(s->g + nw, s->logits, B, s->C, s->st);
    const long long np = (long long)nparams(s);
    vk_launch_optim_update(s->p, s->g, s->mv, s->mv + np, np, *k, s->st);
    return cuda_ok(cudaGetLastError(), "optimizer launch", err, errlen);
}

vit_status t_take_loss(void *ctx, double *loss_sum, char *err, size_t errlen) {
    tstate *s = (tstate *)ctx;
    TRY(cuda_ok(cudaSetDevice(s->dev), "cudaSetDevice", err, errlen));
    TRY(cuda_ok(cudaMemcpyAsync(loss_sum, s->loss_acc, sizeof(double), cudaMemcpyDeviceToHost,
                                s->st),
                "copy loss", err, errlen));
    TRY(cuda_ok(cudaMemsetAsync(s->loss_acc, 0, sizeof(double), s->st), "cudaMemset", err, errlen));
    return sync(s, err, errlen);
}

vit_status t_correct(void *ctx, int off, int n, int *hits, char *err, size_t errlen) {
    tstate *s = (tstate *)ctx;
    *hits = 0;
    if (off < 0 || n < 0 || off + n > s->N)
        return vit_errf(VIT_E_INTERNAL, err, errlen, "train (cuda): accuracy rows [%d, %d)", off, off + n);
    TRY(cuda_ok(cudaSetDevice(s->dev), "cudaSetDevice", err, errlen));
    TRY(cuda_ok(cudaMemsetAsync(s->hits, 0, sizeof(int), s->st), "cudaMemset", err, errlen));
    const size_t nw = (size_t)s->C * s->D;
    for (int i = 0; i < n; i += s->cap) {
        const int B = n - i < s->cap ? n - i : s->cap;
        TRY(forward_rows(s, off + i, B, err, errlen));
        vk_launch_softmax_ce(s->logits, s->p + nw, s->yb, B, s->C, nullptr, s->hits, 0, s->st);
        TRY(cuda_ok(cudaGetLastError(), "softmax_ce launch", err, errlen));
    }
    TRY(cuda_ok(cudaMemcpyAsync(hits, s->hits, sizeof(int), cudaMemcpyDeviceToHost, s->st),
                "copy hits", err, errlen));
    return sync(s, err, errlen);
}

vit_status t_read_params(void *ctx, float *w, float *b, char *err, size_t errlen) {
    tstate *s = (tstate *)ctx;
    const size_t nw = (size_t)s->C * s->D;
    TRY(cuda_ok(cudaSetDevice(s->dev), "cudaSetDevice", err, errlen));
    TRY(sync(s, err, errlen));
    TRY(cuda_ok(cudaMemcpy(w, s->p, sizeof(float) * nw, cudaMemcpyDeviceToHost), "copy weights",
                err, errlen));
    return cuda_ok(cudaMemcpy(b, s->p + nw, sizeof(float) * (size_t)s->C, cudaMemcpyDeviceToHost),
                   "copy bias", err, errlen);
}

vit_status t_read_state(void *ctx, float *mv, char *err, size_t errlen) {
    tstate *s = (tstate *)ctx;
    TRY(cuda_ok(cudaSetDevice(s->dev), "cudaSetDevice", err, errlen));
    TRY(sync(s, err, errlen));
    return cuda_ok(cudaMemcpy(mv, s->mv, sizeof(float) * 2 * nparams(s), cudaMemcpyDeviceToHost),
                   "copy optimizer state", err, errlen);
}

vit_status t_write_state(void *ctx, const float *mv, char *err, size_t errlen) {
    tstate *s = (tstate *)ctx;
    TRY(cuda_ok(cudaSetDevice(s->dev), "cudaSetDevice", err, errlen));
    TRY(sync(s, err, errlen));
    return cuda_ok(cudaMemcpy(s->mv, mv, sizeof(float) * 2 * nparams(s), cudaMemcpyHostToDevice),
                   "copy optimizer state", err, errlen);
}

void t_free(void *ctx) { destroy((tstate *)ctx); }

} // namespace

extern "C" {

const train_backend vtc_backend = {"cuda", t_set_index, t_step, t_take_loss, t_correct,
                                   t_read_params, t_read_state, t_write_state, t_free};

vit_status vtc_open(void **ctx, const float *w, const float *b, int C, int D, const float *x,
                    const int32_t *y, int N, int cap, int gpu_id, char *err, size_t errlen) {
    *ctx = nullptr;
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess) {
        cudaGetLastError();
        ndev = 0;
    }
    if (gpu_id < 0 || gpu_id >= ndev)
        return vit_errf(VIT_E_DEVICE, err, errlen, "train (cuda): no CUDA device %d (%d present)",
                    gpu_id, ndev);
    if (C < 1 || D < 1 || N < 1 || cap < 1 || cap > N)
        return vit_errf(VIT_E_ARG, err, errlen, "train (cuda): bad sizes C=%d D=%d N=%d batch %d", C,
                    D, N, cap);
    tstate *s = new (std::nothrow) tstate();
    if (!s) return vit_errf(VIT_E_NOMEM, err, errlen, "train (cuda): out of host memory");
    s->dev = gpu_id;
    s->C = C;
    s->D = D;
    s->N = N;
    s->cap = cap;
    vit_status st = open_impl(s, w, b, x, y, err, errlen);
    if (st != VIT_OK) {
        destroy(s);
        return st;
    }
    *ctx = s;
    return VIT_OK;
}

} // extern "C"
