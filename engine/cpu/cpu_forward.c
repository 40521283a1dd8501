/* cpu_forward.c: the CPU backend (vit_backend_cpu), the FP32 reference every other backend is
 * tested against.
 *
 * Design
 * - Every activation is allocated once in init for the session's max batch; forward allocates
 *   nothing.  The tokens of all images in a batch are stacked, so each Linear layer is ONE GEMM
 *   of (B*T, in) x (in, out), split over the session's pool (by rows or by columns, see pgemm).
 *   On AVX-512 CPUs (unless OpenBLAS has AVX-512 kernels) the GEMM is cpu_gemm.c's, on weights
 *   packed once per model and shared by every session; else single-threaded OpenBLAS slices.
 *   OpenBLAS's own threading is switched off (openblas_set_num_threads(1), process-wide): its
 *   idle threads spin in sched_yield for ~0.1 s after every call and, on 2 cores, steal the
 *   cycles of whatever runs next.
 * - The residual stream x is accumulated by the GEMMs themselves (beta = 1); the bias of the
 *   projection before it is added in the fused residual+LayerNorm pass that follows, so there is
 *   exactly one elementwise pass between two GEMMs: LN, attention, bias+GELU.
 * - q/k/v biases are never added in a separate pass: k's goes into the per-head transpose,
 *   q's into the scaled query, v's after the softmax-weighted sum (softmax rows sum to 1).
 * - Attention runs on the same pool (cpu_pool.c) over (image, block of query rows), all heads
 *   per task, so head-averaged attention maps need no atomics.  One set of threads
 *   (opts.threads, the caller included) does everything: no oversubscription.
 * - bias + GELU runs inside the fc1 GEMM task on the slice it just wrote, still in cache.
 * - Optional outputs cost nothing unless asked: CLS attention of the last layer, attention
 *   rollout (per layer 0.5 A + 0.5 I, rows normalised, R_l = A_l R_{l-1}, CLS row), features.
 * - Precision int8: the encoder's four Linears (qkv, proj, fc1, fc2) run cpu_gemm_i8.c's W8A8
 *   GEMM (its file-top comment has the scheme): the GEMM's input rows are quantized per token
 *   right before it (by each thread for its own rows when the GEMM is split by rows, else in a
 *   pass of its own), and everything around it is unchanged, biases, residual accumulation
 *   (beta = 1) and GELU included.  Patch embedding, attention, LayerNorms and the head stay FP32.
 *   With a calibration (model->calib, calibration.json) the activation scales are the
 *   calibrated per-tensor ones instead (amax / 127 for every row, vit_quantize_rows_u8_static):
 *   the arithmetic of the CUDA INT8 path, of which this is the reference.
 *   The int8 weights are packed once per model and shared like the FP32 ones (beside the model,
 *   see "packed weights" below; the int8 copy also holds the FP32-packed patch embedding); an
 *   int8 session does not make or hold the FP32 packed copy of the encoder.
 */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu/cpu_gemm.h"
#include "cpu/cpu_gemm_i8.h"
#include "cpu/cpu_ops.h"
#include "cpu/cpu_pool.h"
#include "knobs.h"
#include "util.h"

typedef struct cpu_state {
    cpu_pool *pool;
    int Bm;             /* max batch */
    int T, D, H, hd, M; /* tokens, width, heads, head dim, MLP width */
    int NP, CPP;        /* patches per image, C*P*P */
    int nprefix;
    int ldk;            /* T rounded up to 16: row stride of transposed keys and scores */
    size_t scratch_per; /* floats of attention scratch per thread */
    /* activations; N = Bm*T rows */
    float *x;           /* (N, D) residual stream */
    float *ln;          /* (N, D) LayerNorm output, GEMM input */
    float *qkv;         /* (N, 3D) */
    float *ao;          /* (N, D) attention output (and the patch GEMM output) */
    float *h;           /* (Bm, hsz) per image: MLP hidden (T, M) or im2col patches (NP, CPP) */
    size_t hsz;         /* max(T * M, NP * CPP) */
    float *kT;          /* (Bm, H, hd, ldk) keys transposed per head, bias added */
    float *scratch;     /* (threads, scratch_per) */
    float *attn;        /* (Bm, T, T) head-averaged attention of the current layer */
    float *roll, *roll2;/* (Bm, T, T) rollout product and its next value */
    float *pooled;      /* (Bm, max(F, D)) pooled representation */
    float *pooled2;     /* (Bm, max(F, D)) pre_logits output */
    int own_gemm;       /* 1: cpu_gemm.c's AVX-512 kernel on packed weights, 0: OpenBLAS */
    int split_min;      /* batches of at least this many images run image-parallel (see
                           cpu_forward); INT_MAX: never */
    const float *pk_patch;  /* packed weights (own_gemm): patch embedding, */
    const void **pk;        /* per layer qkv, proj, fc1, fc2 (num_layers * 4): FP32 (own_gemm)
                               or, in int8 sessions, INT8 packed (cpu_gemm_i8.c) */
    int int8;           /* precision int8: the encoder Linears run vit_gemm_i8 */
    const float *amax;  /* (L, 4) int8 with a calibration: per-tensor activation ranges, else NULL */
    const vit_session *sess; /* its observe hook (calib.c) */
    vit_i8_impl i8impl; /* its kernel (VNNI or the portable loop) */
    int ldq;            /* row stride (bytes) of the quantized activations */
    uint8_t *aq;        /* (N, ldq) int8 sessions: a GEMM's input rows quantized, u8 = q + 128 */
    float *ascale;      /* (N) their per-row scales */
    float *mem;         /* the one allocation */
} cpu_state;

/* C (M,N) = A (M,K) . W^T + beta C, W (N,K) row-major (PyTorch Linear layout); one thread */
static void gemm_nt(float *C, const float *A, const float *W, int M, int N, int K, float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, W, K, beta, C, N);
}

/* The same GEMM split over the pool, then the epilogue on the slice of C each thread just
 * wrote, still warm in cache.  Own AVX-512 GEMM (Wp = packed W): by rows of A when there are
 * plenty (each thread then streams only its own rows), else by 32-column panels.  OpenBLAS: by
 * output columns, each thread a single-threaded GEMM on its slice of W's rows.  (OpenBLAS's own
 * threads are off: they spin with sched_yield for ~0.1 s after every call and would fight the
 * pool on 2 cores.) */
typedef enum { EPI_NONE = 0, EPI_BIAS_GELU } gemm_epilogue;
typedef struct {
    float *C;
    const float *A, *W, *Wp, *bias;
    int M, N, K, nchunks;
    float beta;
    gemm_epilogue epi;
    int split_rows, col_unit;
} gemm_job;

#define ROW_UNIT 12 /* the micro-kernel's rows */

/* Task task of nchunks gets [*lo, *hi) of 0..total, cut at multiples of unit (the last one may
 * end at total).  Returns 0 when its share is empty. */
static int task_span(int total, int unit, int task, int nchunks, int *lo, int *hi) {
    int units = (total + unit - 1) / unit;
    *lo = (int)((int64_t)units * task / nchunks) * unit;
    *hi = (int)((int64_t)units * (task + 1) / nchunks) * unit;
    if (*hi > total) *hi = total;
    return *lo < *hi;
}

static void gemm_task(void *ctx, int task, int worker) {
    (void)worker;
    const gemm_job *g = ctx;
    if (g->split_rows) {
        int m0, m1;
        if (!task_span(g->M, ROW_UNIT, task, g->nchunks, &m0, &m1)) return;
        float *C = g->C + (size_t)m0 * g->N;
        vit_gemm_packed(C, g->N, g->A + (size_t)m0 * g->K, g->K, g->Wp, g->K, m1 - m0, 0, g->N,
                        g->beta != 0.0f);
        if (g->epi == EPI_BIAS_GELU) vit_bias_gelu(C, g->bias, m1 - m0, g->N);
        return;
    }
    int n0, n1;
    if (!task_span(g->N, g->col_unit, task, g->nchunks, &n0, &n1)) return;
    if (g->Wp)
        vit_gemm_packed(g->C, g->N, g->A, g->K, g->Wp, g->K, g->M, n0, n1, g->beta != 0.0f);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->M, n1 - n0, g->K, 1.0f, g->A,
                    g->K, g->W + (size_t)n0 * g->K, g->K, g->beta, g->C + n0, g->N);
    if (g->epi == EPI_BIAS_GELU)
        for (int m = 0; m < g->M; m++) vit_bias_gelu(g->C + (size_t)m * g->N + n0, g->bias + n0, 1, n1 - n0);
}

/* Where a piece of the forward pass runs: on the session's pool (every thread), or on the
 * calling thread alone as pool worker `worker` (image-parallel groups, see cpu_forward). */
typedef struct {
    cpu_pool *pool; /* NULL: serial */
    int worker;
} exec;

static int exec_threads(const exec *e) { return e->pool ? cpu_pool_size(e->pool) : 1; }

static void exec_run(const exec *e, int ntasks, cpu_pool_fn fn, void *ctx) {
    if (e->pool) {
        cpu_pool_run(e->pool, ntasks, fn, ctx);
        return;
    }
    for (int t = 0; t < ntasks; t++) fn(ctx, t, e->worker);
}

/* C (M,N) = A (M,K) . W^T + beta C; Wp: W packed (used when the own GEMM is on) */
static void pgemm(const cpu_state *st, const exec *e, float *C, const float *A, const float *W,
                  const float *Wp, int M, int N, int K, float beta, gemm_epilogue epi,
                  const float *bias) {
    int nthreads = exec_threads(e);
    if (!st->own_gemm) Wp = NULL;
    int split_rows = Wp && nthreads > 1 && M >= 8 * ROW_UNIT * nthreads;
    int col_unit = Wp ? VIT_GEMM_PANEL : 16;
    int units = split_rows ? (M + ROW_UNIT - 1) / ROW_UNIT : (N + col_unit - 1) / col_unit;
    int nchunks = nthreads < units ? nthreads : units;
    gemm_job g = {C, A, W, Wp, bias, M, N, K, nchunks, beta, epi, split_rows, col_unit};
    exec_run(e, nchunks, gemm_task, &g);
}

/* The int8 GEMM, split over the pool like pgemm: C (M,N) = dequant(quant(A) . Wq^T) + beta C,
 * Wp = INT8-packed W.  Split by rows, each thread quantizes its own rows of A into Q and
 * multiplies them at once (no barrier between); split by panels, every thread needs every row,
 * so a quantization pass over row chunks runs first. */
typedef struct {
    float *C;
    const float *A, *bias;
    uint8_t *Q;
    float *sa;
    const void *Wp;
    int M, N, K, ldq, nchunks, beta1, split_rows;
    gemm_epilogue epi;
    vit_i8_impl impl;
    float sq, sinv;     /* calibrated: the scale for every row and its inverse; sq 0: per row */
} gemm_i8_job;

/* rows [m0, m1) of A quantized into Q with their scales */
static void quant_rows(const gemm_i8_job *g, int m0, int m1) {
    uint8_t *Q = g->Q + (size_t)m0 * g->ldq;
    const float *A = g->A + (size_t)m0 * g->K;
    if (g->sq > 0.f) {
        vit_quantize_rows_u8_static(Q, g->ldq, A, g->K, m1 - m0, g->K, g->sinv);
        for (int m = m0; m < m1; m++) g->sa[m] = g->sq;
    } else {
        vit_quantize_rows_u8(Q, g->ldq, g->sa + m0, A, g->K, m1 - m0, g->K, g->impl);
    }
}

static void quant_i8_task(void *ctx, int task, int worker) {
    (void)worker;
    const gemm_i8_job *g = ctx;
    int m0, m1;
    if (!task_span(g->M, 1, task, g->nchunks, &m0, &m1)) return;
    quant_rows(g, m0, m1);
}

static void gemm_i8_task(void *ctx, int task, int worker) {
    (void)worker;
    const gemm_i8_job *g = ctx;
    if (g->split_rows) {
        int m0, m1;
        if (!task_span(g->M, ROW_UNIT, task, g->nchunks, &m0, &m1)) return;
        uint8_t *Q = g->Q + (size_t)m0 * g->ldq;
        quant_rows(g, m0, m1);
        float *C = g->C + (size_t)m0 * g->N;
        vit_gemm_i8(C, g->N, Q, g->ldq, g->sa + m0, g->Wp, g->N, g->K, m1 - m0, 0, g->N, NULL,
                    g->beta1, g->impl);
        if (g->epi == EPI_BIAS_GELU) vit_bias_gelu(C, g->bias, m1 - m0, g->N);
        return;
    }
    int n0, n1;
    if (!task_span(g->N, VIT_GEMM_I8_PANEL, task, g->nchunks, &n0, &n1)) return;
    vit_gemm_i8(g->C, g->N, g->Q, g->ldq, g->sa, g->Wp, g->N, g->K, g->M, n0, n1, NULL, g->beta1,
                g->impl);
    if (g->epi == EPI_BIAS_GELU)
        for (int m = 0; m < g->M; m++) vit_bias_gelu(g->C + (size_t)m * g->N + n0, g->bias + n0, 1, n1 - n0);
}

static void pgemm_i8(const cpu_state *st, const exec *e, uint8_t *Q, float *sa, float *C,
                     const float *A, const void *Wp, int M, int N, int K, float beta,
                     gemm_epilogue epi, const float *bias, float amax) {
    int nthreads = exec_threads(e);
    int split_rows = nthreads == 1 || M >= 8 * ROW_UNIT * nthreads;
    int units = split_rows ? (M + ROW_UNIT - 1) / ROW_UNIT : (N + VIT_GEMM_I8_PANEL - 1) / VIT_GEMM_I8_PANEL;
    int nchunks = nthreads < units ? nthreads : units;
    gemm_i8_job g = {C, A, bias, Q, sa, Wp, M, N, K, st->ldq, nchunks, beta != 0.0f, split_rows,
                     epi, st->i8impl, 0.f, 0.f};
    if (amax > 0.f) vit_i8_static_scales(amax, &g.sq, &g.sinv);
    if (!split_rows) {
        g.nchunks = nthreads < M ? nthreads : M;
        exec_run(e, g.nchunks, quant_i8_task, &g);
        g.nchunks = nchunks;
    }
    exec_run(e, nchunks, gemm_i8_task, &g);
}

/* ---- packed weights, shared by every CPU session of a model --------------------------
 * They live beside the model, not in it, so the model stays read-only after vit_model_load:
 * one entry per model that has CPU sessions using packed weights, cache[0] FP32 (cpu_gemm.c
 * layout), cache[1] INT8 (the patch embedding packed FP32, the encoder Linears quantized and
 * packed, cpu_gemm_i8.c); each made by the first session that needs it and freed with the last.
 * Sessions end before their model (vit.h), so an entry never outlives the model it names. */

typedef struct pack_entry {
    const vit_model *m;
    void *cache[2];
    int refs[2];
    struct pack_entry *next;
} pack_entry;

static pthread_mutex_t pack_mu = PTHREAD_MUTEX_INITIALIZER;
static pack_entry *pack_list; /* under pack_mu */

/* m's entry (under pack_mu), made when create is set; NULL when absent or out of memory */
static pack_entry *pack_find(const vit_model *m, int create) {
    for (pack_entry *e = pack_list; e; e = e->next)
        if (e->m == m) return e;
    pack_entry *e = create ? calloc(1, sizeof *e) : NULL;
    if (e) {
        e->m = m;
        e->next = pack_list;
        pack_list = e;
    }
    return e;
}

static void pack_unlink(pack_entry *e) {
    for (pack_entry **pp = &pack_list; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            free(e);
            return;
        }
}

int vit_cpu_packed_refs(const vit_model *m, int int8) {
    pthread_mutex_lock(&pack_mu);
    pack_entry *e = pack_find(m, 0);
    int r = e && e->cache[!!int8] ? e->refs[!!int8] : 0;
    pthread_mutex_unlock(&pack_mu);
    return r;
}

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

/* byte offsets of the packed matrices, each 64-byte aligned: the patch embedding (FP32 in both
 * caches), then per layer qkv, proj, fc1, fc2 (FP32, or INT8 for the int8 cache) */
static size_t packed_layout(const vit_config *c, int CPP, int int8, size_t *off) {
    int D = c->hidden_size, M = c->mlp_size, n = 0;
    const int NK[4][2] = {{3 * D, D}, {D, D}, {M, D}, {D, M}};
    size_t total = 0;
    off[n++] = total;
    total += round64(sizeof(float) * vit_gemm_packed_floats(D, CPP));
    for (int l = 0; l < c->num_layers; l++)
        for (int j = 0; j < 4; j++) {
            off[n++] = total;
            total += round64(int8 ? vit_gemm_i8_packed_bytes(NK[j][0], NK[j][1])
                                  : sizeof(float) * vit_gemm_packed_floats(NK[j][0], NK[j][1]));
        }
    return total;
}

/* m's weights packed at the offsets packed_layout gave: a new 64-byte aligned block, or NULL */
static void *packed_make(const vit_model *m, int CPP, int int8, const size_t *off, size_t total) {
    const vit_config *c = &m->cfg;
    int D = c->hidden_size, M = c->mlp_size;
    const int NK[4][2] = {{3 * D, D}, {D, D}, {M, D}, {D, M}};
    void *p = NULL;
    if (posix_memalign(&p, 64, total) != 0) return NULL;
    char *b = p;
    vit_gemm_pack((float *)(b + off[0]), m->patch_w, D, CPP);
    for (int l = 0; l < c->num_layers; l++) {
        const vit_layer_weights *w = &m->layers[l];
        const float *W[4] = {w->qkv_w, w->proj_w, w->fc1_w, w->fc2_w};
        for (int j = 0; j < 4; j++) {
            char *dst = b + off[1 + 4 * l + j];
            if (int8) vit_gemm_i8_pack(dst, W[j], NK[j][0], NK[j][1]);
            else vit_gemm_pack((float *)dst, W[j], NK[j][0], NK[j][1]);
        }
    }
    return p;
}

/* The model's FP32 or INT8 packed cache (made by the first session that needs it), and this
 * session's pointers into it. */
static int packed_acquire(cpu_state *st, const vit_model *m, int int8) {
    int L = m->cfg.num_layers;
    size_t *off = malloc(sizeof(size_t) * (1 + 4 * (size_t)L));
    st->pk = malloc(sizeof(*st->pk) * (4 * (size_t)L + 1));
    if (!off || !st->pk) { free(off); return -1; }
    size_t total = packed_layout(&m->cfg, st->CPP, int8, off);
    pthread_mutex_lock(&pack_mu);
    pack_entry *e = pack_find(m, 1);
    if (e && !e->cache[int8]) e->cache[int8] = packed_make(m, st->CPP, int8, off, total);
    if (!e || !e->cache[int8]) {
        if (e && !e->refs[0] && !e->refs[1]) pack_unlink(e);
        pthread_mutex_unlock(&pack_mu);
        free(off);
        return -1;
    }
    e->refs[int8]++;
    const char *b = e->cache[int8];
    st->pk_patch = (const float *)(b + off[0]);
    for (int i = 0; i < 4 * L; i++) st->pk[i] = b + off[1 + i];
    pthread_mutex_unlock(&pack_mu);
    free(off);
    return 0;
}

static void packed_release(const vit_model *m, int int8) {
    pthread_mutex_lock(&pack_mu);
    pack_entry *e = pack_find(m, 0);
    if (e && e->refs[int8] > 0 && --e->refs[int8] == 0) {
        free(e->cache[int8]);
        e->cache[int8] = NULL;
        if (!e->refs[!int8]) pack_unlink(e);
    }
    pthread_mutex_unlock(&pack_mu);
}

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

static void cpu_free(vit_session *s) {
    cpu_state *st = s->state;
    if (!st) return;
    cpu_pool_free(st->pool);
    if (st->pk_patch) packed_release(s->model, st->int8);
    free(st->pk);
    free(st->mem);
    free(st);
    s->state = NULL;
}

/* The model's dims and layout as the CPU forward supports them (int8: the INT8 GEMM's limits too). */
static vit_status cpu_check_model(const vit_model *m, int int8, char *err, size_t errlen) {
    const vit_config *c = &m->cfg;
    if (c->hidden_size < 1 || c->num_heads < 1 || c->hidden_size % c->num_heads != 0 ||
        c->num_layers < 0 || c->mlp_size < 1 || c->patch_size < 1 || c->num_channels < 1 ||
        c->num_patches != c->grid_h * c->grid_w || c->num_patches < 1 ||
        c->num_tokens != c->num_prefix_tokens + c->num_patches || c->num_prefix_tokens < 0 ||
        c->num_prefix_tokens > 2 + VIT_MAX_REGISTERS || c->num_register_tokens < 0 ||
        c->num_register_tokens > VIT_MAX_REGISTERS)
        return vit_errf(VIT_E_CONFIG, err, errlen, "inconsistent model dims");
    if (c->pooling == VIT_POOL_CLS && !m->cls_token)
        return vit_errf(VIT_E_CONFIG, err, errlen, "class-token pooling without a class token");
    if (!!m->cls_token + !!m->dist_token + c->num_register_tokens != c->num_prefix_tokens ||
        (c->num_register_tokens && !m->reg_tokens))
        return vit_errf(VIT_E_CONFIG, err, errlen, "prefix tokens do not add up to %d", c->num_prefix_tokens);
    if (c->distilled && (c->num_prefix_tokens != 2 || c->pooling != VIT_POOL_CLS ||
                         c->has_pre_logits))
        return vit_errf(VIT_E_CONFIG, err, errlen, "unsupported distilled-model layout");
    if (c->pooling == VIT_POOL_CLS_MEAN && (c->distilled || m->fc_norm_w || c->has_pre_logits))
        return vit_errf(VIT_E_CONFIG, err, errlen, "unsupported [cls; mean] pooling layout");
    int F = c->distilled || c->pooling == VIT_POOL_CLS_MEAN ? 2 * c->hidden_size : c->hidden_size;
    if (c->feature_dim != F)
        return vit_errf(VIT_E_CONFIG, err, errlen, "feature_dim %d, expected %d", c->feature_dim, F);
    if (c->has_pre_logits && (!m->pre_logits_w || !m->pre_logits_b))
        return vit_errf(VIT_E_CONFIG, err, errlen, "pre_logits weights missing");
    if (int8 && (c->hidden_size > VIT_GEMM_I8_KMAX || c->mlp_size > VIT_GEMM_I8_KMAX))
        return vit_errf(VIT_E_CONFIG, err, errlen,
                        "int8: hidden size %d / MLP size %d above %d (int32 sums could overflow)",
                        c->hidden_size, c->mlp_size, VIT_GEMM_I8_KMAX);
    return VIT_OK;
}

/* st's sizes from the session's model and options */
static void cpu_dims(cpu_state *st, vit_session *s, int int8) {
    const vit_config *c = &s->model->cfg;
    st->Bm = s->opts.max_batch;
    st->T = c->num_tokens;
    st->D = c->hidden_size;
    st->H = c->num_heads;
    st->hd = c->hidden_size / c->num_heads;
    st->M = c->mlp_size;
    st->NP = c->num_patches;
    st->CPP = c->num_channels * c->patch_size * c->patch_size;
    st->nprefix = c->num_prefix_tokens;
    st->ldk = (int)round16((size_t)st->T);
    st->scratch_per = round16((size_t)4 * st->ldk + (size_t)8 * st->hd);
    st->int8 = int8;
    st->amax = int8 ? s->model->calib.amax : NULL;
    st->sess = s;
    st->i8impl = vit_gemm_i8_impl_best();
    int kd = vit_gemm_i8_kpad(st->D), km = vit_gemm_i8_kpad(st->M);
    st->ldq = (int)round64((size_t)(kd > km ? kd : km));
}

/* Every activation buffer of a batch of st->Bm images, carved out of one 64-byte aligned block
 * (touched once here); F is the feature size. */
static vit_status cpu_activations(cpu_state *st, int F, int threads, char *err, size_t errlen) {
    int int8 = st->int8;
    size_t N = (size_t)st->Bm * st->T, T2 = (size_t)st->T * st->T;
    size_t hsz = (size_t)st->M * st->T > (size_t)st->CPP * st->NP ? (size_t)st->M * st->T
                                                                  : (size_t)st->CPP * st->NP;
    size_t FD = (size_t)(F > st->D ? F : st->D);
    float *aq = NULL;
    size_t sizes[] = {
        N * st->D, N * st->D, N * 3 * st->D, N * st->D, hsz * st->Bm,
        (size_t)st->Bm * st->H * st->hd * st->ldk, st->scratch_per * threads,
        st->Bm * T2, st->Bm * T2, st->Bm * T2, st->Bm * FD, st->Bm * FD,
        int8 ? N * (size_t)st->ldq / sizeof(float) : 0, int8 ? N : 0,
    };
    float **ptrs[] = {&st->x, &st->ln, &st->qkv, &st->ao, &st->h, &st->kT, &st->scratch,
                      &st->attn, &st->roll, &st->roll2, &st->pooled, &st->pooled2, &aq,
                      &st->ascale};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (sizes[i] > SIZE_MAX / 8 - total) return vit_errf(VIT_E_NOMEM, err, errlen, "activation size overflows");
        total += round16(sizes[i]);
    }
    if (posix_memalign((void **)&st->mem, 64, total * sizeof(float)) != 0) {
        st->mem = NULL;
        return vit_errf(VIT_E_NOMEM, err, errlen, "cannot allocate %zu MB of activations for batch %d",
                        total * sizeof(float) >> 20, st->Bm);
    }
    memset(st->mem, 0, total * sizeof(float)); /* touch the pages once, here */
    float *p = st->mem;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *ptrs[i] = p;
        p += round16(sizes[i]);
    }
    st->hsz = hsz;
    st->aq = (uint8_t *)aq;
    return VIT_OK;
}

static vit_status cpu_init(vit_session *s, char *err, size_t errlen) {
    const vit_model *m = s->model;
    int int8 = s->opts.precision == VIT_PREC_INT8;
    vit_status rc = cpu_check_model(m, int8, err, errlen);
    if (rc) return rc;
    cpu_state *st = calloc(1, sizeof *st);
    if (!st) return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory");
    s->state = st;
    cpu_dims(st, s, int8);
    int threads = s->opts.threads;
    rc = cpu_activations(st, m->cfg.feature_dim, threads, err, errlen);
    if (rc) { cpu_free(s); return rc; }
    /* image-parallel from 2 images per thread (VIT_CPU_PARALLEL=ops|images forces either) */
    st->split_min = vit_knob_is(VIT_KNOB_CPU_PARALLEL, "ops")      ? INT_MAX
                    : vit_knob_is(VIT_KNOB_CPU_PARALLEL, "images") ? 2
                                                                   : 2 * threads;
    st->own_gemm = vit_gemm_avx512_preferred();
    if ((int8 || st->own_gemm) && packed_acquire(st, m, int8) != 0) {
        cpu_free(s);
        return vit_errf(VIT_E_NOMEM, err, errlen, "cannot allocate the packed weights");
    }
    st->pool = cpu_pool_new(threads);
    if (!st->pool) {
        cpu_free(s);
        return vit_errf(VIT_E_NOMEM, err, errlen, "cannot start %d threads", threads);
    }
    return VIT_OK;
}

/* ---- parallel pieces --------------------------------------------------------------- */

/* The activations of images [b0, b0 + B) of the batch: every buffer is laid out by image, so
 * two views of disjoint image ranges never share memory (h per image holds the im2col patches
 * and later the MLP hidden). */
typedef struct {
    const float *input;
    float *x, *ln, *qkv, *ao, *h, *kT, *attn, *roll, *roll2;
    float *attn_cls, *attn_rollout; /* outputs of these images, or NULL */
    uint8_t *aq;                    /* int8: their quantized GEMM inputs and row scales */
    float *ascale;
    int B;
} view;

static void view_at(const cpu_state *st, const vit_config *c, const float *input,
                    const vit_outputs *out, int b0, int B, view *v) {
    size_t T = (size_t)st->T, D = (size_t)st->D, b = (size_t)b0;
    size_t img = (size_t)c->num_channels * (size_t)(c->grid_h * c->patch_size) *
                 (size_t)(c->grid_w * c->patch_size);
    v->input = input + b * img;
    v->x = st->x + b * T * D;
    v->ln = st->ln + b * T * D;
    v->qkv = st->qkv + b * T * 3 * D;
    v->ao = st->ao + b * T * D;
    v->h = st->h + b * st->hsz;
    v->kT = st->kT + b * (size_t)st->H * st->hd * st->ldk;
    v->attn = st->attn + b * T * T;
    v->roll = st->roll + b * T * T;
    v->roll2 = st->roll2 + b * T * T;
    v->attn_cls = out->attn_cls ? out->attn_cls + b * st->NP : NULL;
    v->attn_rollout = out->attn_rollout ? out->attn_rollout + b * st->NP : NULL;
    v->aq = st->aq ? st->aq + b * T * (size_t)st->ldq : NULL;
    v->ascale = st->ascale ? st->ascale + b * T : NULL;
    v->B = B;
}

typedef struct {
    cpu_state *st;
    const vit_model *m;
    const vit_layer_weights *L;
    const view *v;
    int nchunks, rows;         /* row-chunked passes: rows in total, split in nchunks */
    const float *bias, *w, *b; /* residual_layernorm */
    float eps;
    int rb, nblk;              /* attention: rows per task, tasks per image */
    int want_probs;
} fwd_ctx;

static void chunk_range(const fwd_ctx *k, int task, int *r0, int *r1) {
    *r0 = (int)((int64_t)k->rows * task / k->nchunks);
    *r1 = (int)((int64_t)k->rows * (task + 1) / k->nchunks);
}

static void task_im2col(void *ctx, int b, int worker) {
    (void)worker;
    fwd_ctx *k = ctx;
    const vit_config *c = &k->m->cfg;
    vit_im2col_patches(k->v->h, k->v->input, b, b + 1, c->num_channels, c->grid_h * c->patch_size,
                       c->grid_w * c->patch_size, c->patch_size);
}

static void task_embed(void *ctx, int b, int worker) {
    (void)worker;
    fwd_ctx *k = ctx;
    const vit_model *m = k->m;
    /* prefix tokens in order: class, distillation, registers (rows of reg_tokens) */
    const float *prefix[2 + VIT_MAX_REGISTERS];
    int n = 0;
    if (m->cls_token) prefix[n++] = m->cls_token;
    if (m->dist_token) prefix[n++] = m->dist_token;
    for (int r = 0; r < m->cfg.num_register_tokens; r++) prefix[n++] = m->reg_tokens + (size_t)r * k->st->D;
    vit_embed_tokens(k->v->x, k->v->ao, m->patch_b, prefix, k->st->nprefix, m->pos_embed, b,
                     b + 1, k->st->T, k->st->D);
}

static void task_resln(void *ctx, int task, int worker) {
    (void)worker;
    fwd_ctx *k = ctx;
    int r0, r1;
    chunk_range(k, task, &r0, &r1);
    size_t D = (size_t)k->st->D;
    vit_residual_layernorm(k->v->ln + r0 * D, k->v->x + r0 * D, k->bias, k->w, k->b, r1 - r0,
                           (int)D, k->eps);
}

static void task_transpose_k(void *ctx, int task, int worker) {
    (void)worker;
    fwd_ctx *k = ctx;
    cpu_state *st = k->st;
    int b = task / st->H, h = task % st->H;
    size_t D = (size_t)st->D;
    const float *kin = k->v->qkv + (size_t)b * st->T * 3 * D + D + (size_t)h * st->hd;
    float *kT = k->v->kT + ((size_t)b * st->H + h) * st->hd * st->ldk;
    vit_attn_transpose_k(kT, st->ldk, kin, (int)(3 * D), k->L->qkv_b + D + (size_t)h * st->hd,
                         st->T, st->hd);
}

static void task_attention(void *ctx, int task, int worker) {
    fwd_ctx *k = ctx;
    cpu_state *st = k->st;
    const view *v = k->v;
    int b = task / k->nblk, blk = task % k->nblk;
    int r0 = blk * k->rb, r1 = r0 + k->rb < st->T ? r0 + k->rb : st->T;
    if (r0 >= r1) return;
    size_t D = (size_t)st->D, T = (size_t)st->T;
    const float *base = v->qkv + (size_t)b * T * 3 * D;
    float *probs = NULL;
    if (k->want_probs) {
        probs = v->attn + (size_t)b * T * T + (size_t)r0 * T;
        memset(probs, 0, sizeof(float) * (size_t)(r1 - r0) * T);
    }
    float scale = 1.0f / sqrtf((float)st->hd);
    float *scratch = st->scratch + (size_t)worker * st->scratch_per;
    for (int h = 0; h < st->H; h++) {
        size_t off = (size_t)h * st->hd;
        const float *kT = v->kT + ((size_t)b * st->H + h) * st->hd * st->ldk;
        vit_attention_rows(v->ao + (size_t)b * T * D + off, (int)D, probs, (int)T,
                           1.0f / (float)st->H, base + off, base + 2 * D + off, (int)(3 * D),
                           k->L->qkv_b + off, k->L->qkv_b + 2 * D + off, kT, st->ldk, r0, r1,
                           (int)T, st->hd, scale, scratch);
    }
}

static void run_resln(const exec *e, fwd_ctx *k, const float *bias, const float *w,
                      const float *b, float eps) {
    k->rows = k->v->B * k->st->T;
    k->nchunks = exec_threads(e) == 1 ? 1 : exec_threads(e) * 4;
    if (k->nchunks > k->rows) k->nchunks = k->rows;
    k->bias = bias;
    k->w = w;
    k->b = b;
    k->eps = eps;
    exec_run(e, k->nchunks, task_resln, k);
}

/* ---- forward ----------------------------------------------------------------------- */

/* Embedding and every encoder block for the images of v, on e; leaves the residual stream in
 * v->x without the last block's fc2 bias (returned in *pending_bias). */
static void forward_blocks(cpu_state *st, const vit_model *m, const exec *e, const view *v,
                           const float **pending_bias) {
    const vit_config *c = &m->cfg;
    int T = st->T, D = st->D, M = st->M, NP = st->NP, B = v->B, nthreads = exec_threads(e);
    float eps = c->layer_norm_eps;
    int want_rollout = v->attn_rollout != NULL, want_cls = v->attn_cls != NULL;
    fwd_ctx k = {.st = st, .m = m, .v = v};
    size_t N = (size_t)B * T;

    /* patch embedding: im2col (B*NP, CPP) -> GEMM (B*NP, D) -> + bias, prefix tokens, pos */
    exec_run(e, B, task_im2col, &k);
    pgemm(st, e, v->ao, v->h, m->patch_w, st->pk_patch, B * NP, D, st->CPP, 0.0f, EPI_NONE, NULL);
    exec_run(e, B, task_embed, &k);

    /* attention task split: enough tasks for every thread, rows in multiples of 4 */
    int nblk = nthreads == 1 ? 1 : (4 * nthreads + B - 1) / B;
    int rb = (T + nblk - 1) / nblk;
    rb = rb < 4 ? 4 : (rb + 3) & ~3;
    k.rb = rb;
    k.nblk = (T + rb - 1) / rb;

    /* encoder Linear i (0 qkv, 1 proj, 2 fc1, 3 fc2) of layer l: FP32 or INT8 (calibrated
     * per-tensor scales when st->amax, else per token); the calibrator's hook sees its input */
#define LINEAR(l, i, C, A, W, Nout, K, beta, epi, bias)                                         \
    do {                                                                                        \
        if (st->sess->observe) st->sess->observe(st->sess->observe_ctx, l, i, A, (int)N, K);   \
        if (st->int8)                                                                           \
            pgemm_i8(st, e, v->aq, v->ascale, C, A, st->pk[4 * (l) + (i)], (int)N, Nout, K,     \
                     beta, epi, bias, st->amax ? st->amax[4 * (l) + (i)] : 0.f);                \
        else                                                                                    \
            pgemm(st, e, C, A, W, st->own_gemm ? st->pk[4 * (l) + (i)] : NULL, (int)N, Nout, K, \
                  beta, epi, bias);                                                             \
    } while (0)
    const float *pending = NULL; /* bias of the last GEMM that accumulated into x */
    for (int l = 0; l < c->num_layers; l++) {
        const vit_layer_weights *L = &m->layers[l];
        k.L = L;
        run_resln(e, &k, pending, L->ln1_w, L->ln1_b, eps);
        LINEAR(l, 0, v->qkv, v->ln, L->qkv_w, 3 * D, D, 0.0f, EPI_NONE, NULL);
        exec_run(e, B * st->H, task_transpose_k, &k);
        k.want_probs = want_rollout || (want_cls && l == c->num_layers - 1);
        exec_run(e, B * k.nblk, task_attention, &k);
        LINEAR(l, 1, v->x, v->ao, L->proj_w, D, D, 1.0f, EPI_NONE, NULL);
        run_resln(e, &k, L->proj_b, L->ln2_w, L->ln2_b, eps);
        LINEAR(l, 2, v->h, v->ln, L->fc1_w, M, D, 0.0f, EPI_BIAS_GELU, L->fc1_b);
        LINEAR(l, 3, v->x, v->h, L->fc2_w, D, M, 1.0f, EPI_NONE, NULL);
        pending = L->fc2_b;

        if (want_cls && l == c->num_layers - 1) /* row 0 = CLS, raw head-averaged softmax */
            for (int b = 0; b < B; b++)
                memcpy(v->attn_cls + (size_t)b * NP, v->attn + (size_t)b * T * T + st->nprefix,
                       sizeof(float) * NP);
        if (want_rollout) {
            for (int b = 0; b < B; b++) {
                float *a = v->attn + (size_t)b * T * T;
                float *r = v->roll + (size_t)b * T * T, *r2 = v->roll2 + (size_t)b * T * T;
                vit_rollout_prepare(a, T);
                if (l == 0) {
                    memcpy(r, a, sizeof(float) * (size_t)T * T);
                } else {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, T, T, 1.0f, a, T,
                                r, T, 0.0f, r2, T);
                    memcpy(r, r2, sizeof(float) * (size_t)T * T);
                }
            }
        }
    }
#undef LINEAR
    if (want_rollout)
        for (int b = 0; b < B; b++) {
            if (c->num_layers == 0) /* row 0 = CLS */
                memset(v->attn_rollout + (size_t)b * NP, 0, sizeof(float) * NP);
            else
                memcpy(v->attn_rollout + (size_t)b * NP, v->roll + (size_t)b * T * T + st->nprefix,
                       sizeof(float) * NP);
        }
    if (want_cls && c->num_layers == 0) memset(v->attn_cls, 0, sizeof(float) * (size_t)B * NP);
    *pending_bias = pending;
}

/* image-parallel: group g of the batch, on the thread that claimed it, alone */
typedef struct {
    cpu_state *st;
    const vit_model *m;
    const float *input;
    const vit_outputs *out;
    int B, ngroups;
    const float *pending_bias;
} group_job;

static void task_group(void *ctx, int g, int worker) {
    group_job *j = ctx;
    int b0 = (int)((int64_t)j->B * g / j->ngroups), b1 = (int)((int64_t)j->B * (g + 1) / j->ngroups);
    if (b0 >= b1) return;
    view v;
    view_at(j->st, &j->m->cfg, j->input, j->out, b0, b1 - b0, &v);
    exec e = {NULL, worker};
    const float *pb;
    forward_blocks(j->st, j->m, &e, &v, &pb);
    if (g == 0) j->pending_bias = pb; /* the same for every group */
}

/* Two ways to use the session's threads.  Operator-parallel (small batches): every GEMM, the
 * attention and the LayerNorms are split over the pool, ~10 fork-joins per block.  Image-parallel
 * (at least split_min images, 2 per thread by default): the batch is cut into one group of images
 * per thread and each thread runs the whole network on its group alone, one fork-join in all:
 * no barrier waits, no thread left idle while another finishes its slice, and a thread that the
 * OS preempts (decoders on the same cores) delays only its own group.  Both paths compute every
 * output element with the same operations in the same order. */
static vit_status cpu_forward(vit_session *s, const float *input, int B, const vit_head *head,
                              vit_outputs *out) {
    cpu_state *st = s->state;
    const vit_model *m = s->model;
    const vit_config *c = &m->cfg;
    int T = st->T, D = st->D, nthreads = cpu_pool_size(st->pool);
    float eps = c->layer_norm_eps;
    if ((out->attn_rollout || out->attn_cls) && !m->cls_token)
        return vit_errf(VIT_E_ARG, s->errmsg, sizeof s->errmsg,
                        "attention maps need a class token; this model has none");
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);

    const float *pending_bias = NULL;
    if (nthreads > 1 && B >= st->split_min) {
        group_job j = {st, m, input, out, B, nthreads < B ? nthreads : B, NULL};
        cpu_pool_run(st->pool, j.ngroups, task_group, &j);
        pending_bias = j.pending_bias;
    } else {
        view v;
        view_at(st, c, input, out, 0, B, &v);
        exec e = {st->pool, 0};
        forward_blocks(st, m, &e, &v, &pending_bias);
    }

    /* pooling: the final LayerNorm only on the rows that are used */
    int F = c->feature_dim;
    float *feat = st->pooled;
    for (int b = 0; b < B; b++) {
        float *xb = st->x + (size_t)b * T * D;
        float *pb = st->pooled + (size_t)b * F;
        if (c->pooling == VIT_POOL_CLS) {
            for (int t = 0; t < (c->distilled ? 2 : 1); t++) {
                float *o = pb + (size_t)t * D;
                memcpy(o, xb + (size_t)t * D, sizeof(float) * D);
                if (pending_bias) vit_bias_add(o, pending_bias, 1, D);
                if (m->norm_w) vit_layernorm(o, o, m->norm_w, m->norm_b, 1, D, eps);
            }
        } else {
            if (pending_bias) vit_bias_add(xb, pending_bias, T, D);
            if (m->norm_w) vit_layernorm(xb, xb, m->norm_w, m->norm_b, T, D, eps);
            if (c->pooling == VIT_POOL_CLS_MEAN) {   /* [cls; mean of the patch tokens] */
                memcpy(pb, xb, sizeof(float) * D);
                vit_mean_tokens(pb + D, xb, st->nprefix, T, D);
            } else {
                vit_mean_tokens(pb, xb, st->nprefix, T, D);
            }
        }
        if (m->fc_norm_w) vit_layernorm(pb, pb, m->fc_norm_w, m->fc_norm_b, 1, D, eps);
    }
    if (c->has_pre_logits) {
        gemm_nt(st->pooled2, st->pooled, m->pre_logits_w, B, D, D, 0.0f);
        vit_bias_tanh(st->pooled2, m->pre_logits_b, B, D);
        feat = st->pooled2;
    }
    if (out->features) memcpy(out->features, feat, sizeof(float) * (size_t)B * F);
    if (out->logits) {
        int C = head->num_classes;
        gemm_nt(out->logits, feat, head->w, B, C, F, 0.0f);
        vit_bias_add(out->logits, head->b, B, C);
    }
    return VIT_OK;
}

const vit_backend vit_backend_cpu = {
    .name = "cpu",
    .init = cpu_init,
    .forward = cpu_forward,
    .free = cpu_free,
};
