/* train.c: training a linear classification head on stored features (softmax cross-entropy,
 * mini-batch AdamW or SGD with PyTorch's update rules): the host side shared by both backends
 * (argument checks, the validation split, per-epoch batch orders, optimizer coefficients,
 * cancellation, progress, results) and the CPU backend, the reference of head training.  The
 * CUDA backend (train_cuda.cu, behind train_cuda.h) receives the same batches and coefficients.
 *
 * Shapes: w (C, D), b (C), x (N, D), y (N); a batch gathers B rows of x into xb (B, D),
 * logits (B, C) = xb w^T + b, dlogits (B, C) = (softmax - onehot) / B,
 * dw (C, D) = dlogits^T xb, db (C) = column sums of dlogits.
 * The order of work mirrors torch.nn.CrossEntropyLoss (mean reduction) + torch.optim.AdamW /
 * torch.optim.SGD on nn.Linear, so a run with the same batch order lands on the same weights
 * up to float rounding (tests/unit/test_train.c checks this against PyTorch fixtures). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cuda/train_cuda.h"
#include "util.h"

void vit_train_opts_default(vit_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->epochs = 20;
    o->batch_size = 32;
    o->lr = 1e-3f;
    o->weight_decay = 0.01f;
    o->optimizer = VIT_OPT_ADAMW;
    o->momentum = 0.9f;
    o->val_fraction = 0.f;
    o->seed = 0;
    o->device = VIT_DEVICE_CPU;
}

/* ---- random numbers (splitmix64: tiny, seedable, same on every platform) ----------- */

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Fisher-Yates shuffle of a[0..n) */
static void shuffle(int32_t *a, int n, uint64_t *s) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng_next(s) % (uint64_t)(i + 1));
        int32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* ---- forward + backward on one contiguous batch ------------------------------------ */

/* xb (B, D), yb (B) -> returns the SUM of per-example losses; logits (B, C) is scratch and
 * ends up holding dlogits; dw (C, D) and db (C) receive the gradient of the MEAN loss when
 * non-NULL.  correct (may be NULL) counts argmax hits. */
static double batch_ce(const float *w, const float *b, int C, int D, const float *xb,
                       const int32_t *yb, int B, float *logits, float *dw, float *db,
                       int *correct) {
    /* logits (B, C) = xb (B, D) @ w^T (D, C) + b */
    for (int i = 0; i < B; i++) memcpy(logits + (size_t)i * C, b, sizeof(float) * (size_t)C);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, C, D, 1.f, xb, D, w, D, 1.f,
                logits, C);
    double loss = 0.0;
    const float inv_b = 1.f / (float)B;
    for (int i = 0; i < B; i++) {
        float *l = logits + (size_t)i * C;
        int arg = 0;
        float mx = l[0];
        for (int c = 1; c < C; c++)
            if (l[c] > mx) { mx = l[c]; arg = c; }
        if (correct && arg == yb[i]) (*correct)++;
        const float zy = l[yb[i]] - mx;
        float sum = 0.f;
        for (int c = 0; c < C; c++) {
            l[c] = expf(l[c] - mx);
            sum += l[c];
        }
        loss += (double)(logf(sum) - zy);                        /* -log_softmax[y] */
        float inv = 1.f / sum;
        for (int c = 0; c < C; c++) l[c] = l[c] * inv * inv_b;   /* softmax / B */
        l[yb[i]] -= inv_b;                                       /* - onehot / B */
    }
    if (dw) /* dw (C, D) = dlogits^T (C, B) @ xb (B, D) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, D, B, 1.f, logits, C, xb, D,
                    0.f, dw, D);
    if (db) {
        for (int c = 0; c < C; c++) db[c] = 0.f;
        for (int i = 0; i < B; i++)
            for (int c = 0; c < C; c++) db[c] += logits[(size_t)i * C + c];
    }
    return loss;
}

double vit_linear_ce(const float *w, const float *b, int C, int D, const float *x,
                     const int32_t *y, int N, float *dw, float *db) {
    if (!w || !b || !x || !y || C < 1 || D < 1 || N < 1) return NAN;
    for (int i = 0; i < N; i++)
        if (y[i] < 0 || y[i] >= C) return NAN;
    float *logits = malloc(sizeof(float) * (size_t)N * (size_t)C);
    if (!logits) return NAN;
    float *dbb = db;
    if (dw && !db && !(dbb = malloc(sizeof(float) * (size_t)C))) {
        free(logits);
        return NAN;
    }
    double loss = batch_ce(w, b, C, D, x, y, N, logits, dw, dbb, NULL);
    if (dbb != db) free(dbb);
    free(logits);
    return loss / N;
}

/* ---- optimizers (torch.optim semantics, one parameter group) ------------------------ */

typedef struct {
    vit_optimizer kind;
    double lr, wd, momentum, beta1, beta2, eps;
} optim_cfg;

/* the scalars of optimizer step number `step` (from 1), as torch computes them */
static train_coeffs optim_coeffs(const optim_cfg *o, long step) {
    train_coeffs k;
    memset(&k, 0, sizeof k);
    k.adamw = o->kind == VIT_OPT_ADAMW;
    k.first = step == 1;
    k.decay = (float)(1.0 - o->lr * o->wd);
    k.b1 = (float)o->beta1;
    k.b2 = (float)o->beta2;
    k.c1 = (float)(1.0 - o->beta1);
    k.c2 = (float)(1.0 - o->beta2);
    const double bc1 = 1.0 - pow(o->beta1, (double)step);
    const double bc2 = 1.0 - pow(o->beta2, (double)step);
    k.step_size = (float)(o->lr / bc1);
    k.bc2_sqrt = (float)sqrt(bc2);
    k.eps = (float)o->eps;
    k.lr = (float)o->lr;
    k.wd = (float)o->wd;
    k.mom = (float)o->momentum;
    return k;
}
/* the element-wise update these scalars drive is train_optim_update (train_cuda.h), shared with
 * the kernel tests */

/* ---- the CPU backend (the reference): trains w and b in place ---------------------------- */

static void gather(const float *x, const int32_t *y, int D, const int32_t *idx, int B,
                   float *xb, int32_t *yb) {
    for (int i = 0; i < B; i++) {
        memcpy(xb + (size_t)i * D, x + (size_t)idx[i] * D, sizeof(float) * (size_t)D);
        yb[i] = y[idx[i]];
    }
}

typedef struct {
    float *w, *b;                  /* caller's (C, D), (C), updated in place */
    int C, D, cap;
    const float *x;                /* (N, D) */
    const int32_t *y, *idx;        /* (N), set_index's array */
    int32_t *yb;                   /* (cap) */
    float *xb, *logits, *grad, *state;  /* (cap, D), (cap, C), [dw; db], [m; v] */
    double loss;
} cpu_train;

static void cpu_free(void *ctx) {
    cpu_train *t = ctx;
    if (!t) return;
    free(t->yb);
    free(t->xb);
    free(t->logits);
    free(t->grad);
    free(t->state);
    free(t);
}

static vit_status cpu_open(void **out, float *w, float *b, int C, int D, const float *x,
                           const int32_t *y, int cap, char *err, size_t errlen) {
    const size_t np = (size_t)C * (size_t)D + (size_t)C;
    cpu_train *t = calloc(1, sizeof *t);
    if (t) {
        *t = (cpu_train){.w = w, .b = b, .C = C, .D = D, .cap = cap, .x = x, .y = y};
        t->yb = malloc(sizeof(int32_t) * (size_t)cap);
        t->xb = malloc(sizeof(float) * (size_t)cap * (size_t)D);
        t->logits = malloc(sizeof(float) * (size_t)cap * (size_t)C);
        t->grad = malloc(sizeof(float) * np);
        t->state = calloc(2 * np, sizeof(float));
    }
    if (!t || !t->yb || !t->xb || !t->logits || !t->grad || !t->state) {
        cpu_free(t);
        return vit_errf(VIT_E_NOMEM, err, errlen, "train: out of memory (D=%d C=%d batch %d)", D,
                        C, cap);
    }
    *out = t;
    return VIT_OK;
}

static vit_status cpu_set_index(void *ctx, const int32_t *idx, int n, char *err, size_t errlen) {
    (void)n, (void)err, (void)errlen;
    ((cpu_train *)ctx)->idx = idx;
    return VIT_OK;
}

static vit_status cpu_step(void *ctx, int off, int B, const train_coeffs *k, char *err,
                           size_t errlen) {
    (void)err, (void)errlen;
    cpu_train *t = ctx;
    const size_t nw = (size_t)t->C * (size_t)t->D, np = nw + (size_t)t->C;
    float *m = t->state, *v = t->state + np;
    gather(t->x, t->y, t->D, t->idx + off, B, t->xb, t->yb);
    t->loss += batch_ce(t->w, t->b, t->C, t->D, t->xb, t->yb, B, t->logits, t->grad,
                        t->grad + nw, NULL);
    train_optim_update(k, t->w, t->grad, m, v, nw);
    train_optim_update(k, t->b, t->grad + nw, m + nw, v + nw, (size_t)t->C);
    return VIT_OK;
}

static vit_status cpu_take_loss(void *ctx, double *loss, char *err, size_t errlen) {
    (void)err, (void)errlen;
    cpu_train *t = ctx;
    *loss = t->loss;
    t->loss = 0.0;
    return VIT_OK;
}

static vit_status cpu_correct(void *ctx, int off, int n, int *hits, char *err, size_t errlen) {
    (void)err, (void)errlen;
    cpu_train *t = ctx;
    *hits = 0;
    for (int s = 0; s < n; s += t->cap) {
        int B = n - s < t->cap ? n - s : t->cap;
        gather(t->x, t->y, t->D, t->idx + off + s, B, t->xb, t->yb);
        batch_ce(t->w, t->b, t->C, t->D, t->xb, t->yb, B, t->logits, NULL, NULL, hits);
    }
    return VIT_OK;
}

static vit_status cpu_read_params(void *ctx, float *w, float *b, char *err, size_t errlen) {
    (void)ctx, (void)w, (void)b, (void)err, (void)errlen;   /* trained in place */
    return VIT_OK;
}

static vit_status cpu_read_state(void *ctx, float *mv, char *err, size_t errlen) {
    (void)err, (void)errlen;
    cpu_train *t = ctx;
    memcpy(mv, t->state, sizeof(float) * 2 * ((size_t)t->C * (size_t)t->D + (size_t)t->C));
    return VIT_OK;
}

static vit_status cpu_write_state(void *ctx, const float *mv, char *err, size_t errlen) {
    (void)err, (void)errlen;
    cpu_train *t = ctx;
    memcpy(t->state, mv, sizeof(float) * 2 * ((size_t)t->C * (size_t)t->D + (size_t)t->C));
    return VIT_OK;
}

static const train_backend cpu_backend = {"cpu", cpu_set_index, cpu_step, cpu_take_loss,
                                          cpu_correct, cpu_read_params, cpu_read_state,
                                          cpu_write_state, cpu_free};

/* ---- checkpoints (the format is described in vit.h) -------------------------------------- */

#define CKPT_MAGIC   "VITTRNCK"
#define CKPT_VERSION 1u
#define CKPT_ENDIAN  0x01020304u
#define CKPT_HEADER  80            /* bytes before the payload */

/* a 64-bit hash of n bytes, word at a time (a checksum and a run identity, not cryptographic) */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (; n >= 8; n -= 8, s += 8) {
        uint64_t k;
        memcpy(&k, s, 8);
        k *= 0xFF51AFD7ED558CCDull;
        h ^= (k << 31) | (k >> 33);
        h = ((h << 27) | (h >> 37)) * 0x9E3779B97F4A7C15ull + 0x52DCE729ull;
    }
    for (; n; n--, s++) h = (h ^ *s) * 0x100000001B3ull;
    return rng_next(&h);
}

size_t vit_train_checkpoint_size(int C, int D, int N) {
    if (C < 1 || D < 1 || N < 1 || (size_t)C * (size_t)D > ((size_t)1 << 31)) return 0;
    const size_t np = (size_t)C * (size_t)D + (size_t)C;
    return CKPT_HEADER + sizeof(float) * 3 * np + sizeof(int32_t) * (size_t)N + 8;
}

/* the identity of a run: sizes, the options that shape it, the starting head and the data */
static uint64_t run_hash(int C, int D, int N, const vit_train_opts *o, const optim_cfg *cfg,
                         const float *w, const float *b, const float *x, const int32_t *y) {
    struct {
        int32_t C, D, N, epochs, batch, kind;
        float lr, wd, momentum, val_fraction;
        double beta1, beta2, eps;
        uint64_t seed;
        int32_t has_perm, pad;
    } k;
    memset(&k, 0, sizeof k);
    k.C = C, k.D = D, k.N = N, k.epochs = o->epochs, k.batch = o->batch_size, k.kind = o->optimizer;
    k.lr = o->lr, k.wd = o->weight_decay, k.momentum = o->momentum, k.val_fraction = o->val_fraction;
    k.beta1 = cfg->beta1, k.beta2 = cfg->beta2, k.eps = cfg->eps, k.seed = o->seed;
    k.has_perm = o->perm != NULL;
    uint64_t h = hash_bytes(0x7669746472756E31ull, &k, sizeof k);
    h = hash_bytes(h, w, sizeof(float) * (size_t)C * (size_t)D);
    h = hash_bytes(h, b, sizeof(float) * (size_t)C);
    h = hash_bytes(h, x, sizeof(float) * (size_t)N * (size_t)D);
    h = hash_bytes(h, y, sizeof(int32_t) * (size_t)N);
    if (o->perm) h = hash_bytes(h, o->perm, sizeof(int32_t) * (size_t)o->epochs * (size_t)N);
    return h;
}

/* the header's fields (host byte order) */
typedef struct ckpt_head {
    char magic[8];
    uint32_t version, endian;
    int32_t C, D, N, n_train, epoch, epochs, optimizer;
    uint32_t reserved;
    uint64_t step, rng, run;
    float loss, val_accuracy;
} ckpt_head;
_Static_assert(sizeof(ckpt_head) == CKPT_HEADER, "checkpoint header layout");

vit_status vit_train_checkpoint_info_get(const void *data, size_t len,
                                         vit_train_checkpoint_info *info, char *err,
                                         size_t errlen) {
    ckpt_head h;
    if (info) memset(info, 0, sizeof *info);
    if (!data || len < CKPT_HEADER + 8)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "training checkpoint: %zu bytes, too short",
                        data ? len : 0);
    memcpy(&h, data, sizeof h);
    if (memcmp(h.magic, CKPT_MAGIC, 8))
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "training checkpoint: not a vitd training "
                        "checkpoint (bad magic)");
    if (h.endian != CKPT_ENDIAN)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "training checkpoint: written on a host of "
                        "another byte order");
    if (h.version != CKPT_VERSION)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "training checkpoint: format version %u, "
                        "this build reads version %u", h.version, CKPT_VERSION);
    size_t want = vit_train_checkpoint_size(h.C, h.D, h.N);
    if (!want || len != want)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "training checkpoint: %zu bytes, its sizes "
                        "(C=%d D=%d N=%d) imply %zu", len, (int)h.C, (int)h.D, (int)h.N, want);
    if (h.epochs < 1 || h.epochs > 100000 || h.epoch < 1 || h.epoch > h.epochs || h.n_train < 1 ||
        h.n_train > h.N)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "training checkpoint: epoch %d of %d, %d of "
                        "%d examples for training: out of range", (int)h.epoch, (int)h.epochs,
                        (int)h.n_train, (int)h.N);
    uint64_t sum;
    memcpy(&sum, (const unsigned char *)data + len - 8, 8);
    if (hash_bytes(0, data, len - 8) != sum)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "training checkpoint: checksum mismatch "
                        "(corrupt)");
    if (info) *info = (vit_train_checkpoint_info){h.epoch, h.epochs, h.C, h.D, h.N};
    return VIT_OK;
}

/* A run's state after `epoch` into buf (vit_train_checkpoint_size(C, D, N) bytes). */
static void ckpt_write(unsigned char *buf, size_t len, const ckpt_head *h, const float *w,
                       const float *b, const float *mv, const int32_t *order) {
    const size_t nw = (size_t)h->C * (size_t)h->D, np = nw + (size_t)h->C;
    unsigned char *p = buf;
    memcpy(p, h, sizeof *h);
    p += sizeof *h;
    memcpy(p, w, sizeof(float) * nw);
    p += sizeof(float) * nw;
    memcpy(p, b, sizeof(float) * (size_t)h->C);
    p += sizeof(float) * (size_t)h->C;
    memcpy(p, mv, sizeof(float) * 2 * np);
    p += sizeof(float) * 2 * np;
    memcpy(p, order, sizeof(int32_t) * (size_t)h->N);
    uint64_t sum = hash_bytes(0, buf, len - 8);
    memcpy(buf + len - 8, &sum, 8);
}

/* Check that data continues this very run and, only then, load it: w, b, mv, order (whose
 * validation rows order[n_train..N) must be the ones this run's split chose), the RNG, the
 * step count, the epoch reached and its loss (its validation accuracy is informational: the
 * final accuracies are measured again). */
static vit_status ckpt_load(const void *data, size_t len, uint64_t run, int C, int D, int N,
                            int n_train, const vit_train_opts *o, int cap, float *w, float *b,
                            float *mv, int32_t *order, uint64_t *rng, long *step, int *epoch,
                            float *loss, char *err, size_t errlen) {
    vit_train_checkpoint_info info;
    vit_status st = vit_train_checkpoint_info_get(data, len, &info, err, errlen);
    if (st != VIT_OK) return st;
    ckpt_head h;
    memcpy(&h, data, sizeof h);
    if (h.C != C || h.D != D || h.N != N || h.epochs != o->epochs || h.n_train != n_train ||
        h.optimizer != (int32_t)o->optimizer || h.run != run)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "training checkpoint: of another run (C=%d "
                        "D=%d N=%d, %d epochs; this run: C=%d D=%d N=%d, %d epochs%s)", (int)h.C,
                        (int)h.D, (int)h.N, (int)h.epochs, C, D, N, o->epochs,
                        h.run != run ? "; its options, starting head or examples differ" : "");
    const long per_epoch = (n_train + cap - 1) / cap;
    if (h.step != (uint64_t)(per_epoch * h.epoch))
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "training checkpoint: step %llu after epoch "
                        "%d, expected %ld", (unsigned long long)h.step, (int)h.epoch,
                        per_epoch * h.epoch);
    const size_t nw = (size_t)C * (size_t)D, np = nw + (size_t)C;
    const unsigned char *p = (const unsigned char *)data + CKPT_HEADER;
    const unsigned char *ord = p + sizeof(float) * 3 * np;
    unsigned char *seen = calloc((size_t)N, 1);
    if (!seen) return vit_errf(VIT_E_NOMEM, err, errlen, "train: out of memory");
    for (int i = 0; i < N && st == VIT_OK; i++) {
        int32_t e;
        memcpy(&e, ord + sizeof(int32_t) * (size_t)i, sizeof e);
        if (e < 0 || e >= N || seen[e] || (i >= n_train && e != order[i]))
            st = vit_errf(VIT_E_CHECKPOINT, err, errlen, "training checkpoint: its batch order is "
                          "not this run's (row %d)", i);
        else
            seen[e] = 1;
    }
    free(seen);
    if (st != VIT_OK) return st;
    memcpy(w, p, sizeof(float) * nw);
    memcpy(b, p + sizeof(float) * nw, sizeof(float) * (size_t)C);
    memcpy(mv, p + sizeof(float) * np, sizeof(float) * 2 * np);
    memcpy(order, ord, sizeof(int32_t) * (size_t)N);
    *rng = h.rng;
    *step = (long)h.step;
    *epoch = h.epoch;
    *loss = h.loss;
    return VIT_OK;
}

/* ---- the training loop (host side, shared by both backends) ------------------------------ */

static vit_status check_opts(int C, int D, int N, const int32_t *y, const vit_train_opts *o,
                             optim_cfg *cfg, char *err, size_t errlen) {
    if (C < 1 || D < 1 || N < 1 || (size_t)C * (size_t)D > ((size_t)1 << 31))
        return vit_errf(VIT_E_ARG, err, errlen, "train: bad sizes C=%d D=%d N=%d", C, D, N);
    if (o->epochs < 1 || o->epochs > 100000)
        return vit_errf(VIT_E_ARG, err, errlen, "train: epochs %d not in [1, 100000]", o->epochs);
    if (o->batch_size < 1 || o->batch_size > 65536)
        return vit_errf(VIT_E_ARG, err, errlen, "train: batch_size %d not in [1, 65536]",
                        o->batch_size);
    if (!(o->lr > 0.f) || !isfinite(o->lr))
        return vit_errf(VIT_E_ARG, err, errlen, "train: lr must be > 0");
    if (!(o->weight_decay >= 0.f) || !isfinite(o->weight_decay))
        return vit_errf(VIT_E_ARG, err, errlen, "train: weight_decay must be >= 0");
    if (o->optimizer != VIT_OPT_ADAMW && o->optimizer != VIT_OPT_SGD)
        return vit_errf(VIT_E_ARG, err, errlen, "train: unknown optimizer %d", (int)o->optimizer);
    if (!(o->momentum >= 0.f && o->momentum < 1.f))
        return vit_errf(VIT_E_ARG, err, errlen, "train: momentum must be in [0, 1)");
    if (!(o->val_fraction >= 0.f && o->val_fraction <= 0.9f))
        return vit_errf(VIT_E_ARG, err, errlen, "train: val_fraction must be in [0, 0.9]");
    if (o->perm && o->val_fraction > 0.f)
        return vit_errf(VIT_E_ARG, err, errlen, "train: an explicit permutation needs val_fraction 0");
    double beta1 = o->beta1, beta2 = o->beta2, eps = o->eps;
    if (beta1 == 0.0 && beta2 == 0.0 && eps == 0.0) { beta1 = 0.9; beta2 = 0.999; eps = 1e-8; }
    if (!(beta1 >= 0.0 && beta1 < 1.0 && beta2 >= 0.0 && beta2 < 1.0 && eps > 0.0))
        return vit_errf(VIT_E_ARG, err, errlen, "train: betas must be in [0, 1) and eps > 0");
    for (int i = 0; i < N; i++)
        if (y[i] < 0 || y[i] >= C)
            return vit_errf(VIT_E_ARG, err, errlen, "train: label %d of example %d not in [0, %d)",
                            (int)y[i], i, C);
    *cfg = (optim_cfg){.kind = o->optimizer, .lr = o->lr, .wd = o->weight_decay,
                       .momentum = o->momentum, .beta1 = beta1, .beta2 = beta2, .eps = eps};
    return VIT_OK;
}

/* device AUTO: CUDA when built in and a device is present, else the CPU (as sessions do) */
static vit_status resolve_device(vit_device want, vit_device *out, char *err, size_t errlen) {
    int have = 0;
#ifdef VIT_HAVE_CUDA
    have = vit_cuda_device_count() > 0;
#endif
    switch (want) {
    case VIT_DEVICE_AUTO: *out = have ? VIT_DEVICE_CUDA : VIT_DEVICE_CPU; return VIT_OK;
    case VIT_DEVICE_CPU: *out = VIT_DEVICE_CPU; return VIT_OK;
    case VIT_DEVICE_CUDA:
        *out = VIT_DEVICE_CUDA;
        if (have) return VIT_OK;
#ifdef VIT_HAVE_CUDA
        return vit_errf(VIT_E_DEVICE, err, errlen,
                        "train: device cuda requested but no CUDA device is present");
#else
        return vit_errf(VIT_E_DEVICE, err, errlen,
                        "train: device cuda requested but this build has no CUDA support "
                        "(rebuild with nvcc available)");
#endif
    default:
        return vit_errf(VIT_E_ARG, err, errlen, "train: unknown device %d", (int)want);
    }
}

/* Stratified, seeded split of order[0..N) (the identity on entry): the first k_c examples of
 * class c met in a shuffled order go to validation (order[n_train..N)), k_c =
 * round(val_fraction * n_c), keeping at least one for training.  Returns n_val, -1 on OOM. */
static int split_val(int32_t *order, const int32_t *y, int N, int C, float val_fraction,
                     uint64_t *rng) {
    int32_t *tmp = malloc(sizeof(int32_t) * (size_t)N);
    int32_t *quota = calloc((size_t)C, sizeof(int32_t));   /* class counts, then quotas */
    if (!tmp || !quota) {
        free(tmp);
        free(quota);
        return -1;
    }
    int n_val = 0;
    for (int i = 0; i < N; i++) quota[y[i]]++;
    for (int c = 0; c < C; c++) {
        int k = (int)floor((double)val_fraction * quota[c] + 0.5);
        quota[c] = k > quota[c] - 1 ? (quota[c] > 0 ? quota[c] - 1 : 0) : k;
        n_val += quota[c];
    }
    shuffle(order, N, rng);
    int ti = 0, vi = N - n_val;
    for (int i = 0; i < N; i++) {
        int e = order[i];
        if (quota[y[e]] > 0) { quota[y[e]]--; tmp[vi++] = e; }
        else tmp[ti++] = e;
    }
    memcpy(order, tmp, sizeof(int32_t) * (size_t)N);
    free(tmp);
    free(quota);
    return n_val;
}

/* accuracy on rows idx[off..off+n) of the backend's index; -1 when n == 0 */
static vit_status subset_accuracy(const train_backend *be, void *ctx, int off, int n, float *acc,
                                  char *err, size_t errlen) {
    *acc = -1.f;
    if (n <= 0) return VIT_OK;
    int hits = 0;
    vit_status st = be->correct(ctx, off, n, &hits, err, errlen);
    if (st == VIT_OK) *acc = (float)hits / (float)n;
    return st;
}

/* opts.stop_after_epoch after epoch ep + 1 (0-based ep), never after the last */
static int stop_asked(const vit_train_opts *o, int ep) {
    return ep + 1 < o->epochs && o->stop_after_epoch && o->stop_after_epoch(o->cb_ctx);
}

vit_status vit_train_linear(float *w, float *b, int C, int D, const float *x, const int32_t *y,
                            int N, const vit_train_opts *o, vit_train_result *res,
                            char *err, size_t errlen) {
    if (res) memset(res, 0, sizeof *res);
    if (!w || !b || !x || !y || !o)
        return vit_errf(VIT_E_ARG, err, errlen, "train: NULL argument");
    optim_cfg cfg = {0};
    vit_device dev;
    vit_status st = check_opts(C, D, N, y, o, &cfg, err, errlen);
    if (st == VIT_OK) st = resolve_device(o->device, &dev, err, errlen);
    if (st != VIT_OK) return st;
    if (res) res->device = dev;

    const int cap = o->batch_size < N ? o->batch_size : N;
    int32_t *order = malloc(sizeof(int32_t) * (size_t)N);      /* train idx, then val idx */
    int32_t *seen = o->perm ? calloc((size_t)N, sizeof(int32_t)) : NULL;
    const train_backend *be = &cpu_backend;
    void *ctx = NULL;
    float *mv = NULL, last_loss = 0.f;   /* checkpoints: [m; v], the loss of the checkpoint's epoch */
    unsigned char *ck = NULL;
    size_t ck_len = 0;
    double ck_last = -1.0;          /* when the last checkpoint was taken (vit_now), -1: none yet */
    long step = 0;
    int start = 0;
    if (!order || (o->perm && !seen)) {
        st = vit_errf(VIT_E_NOMEM, err, errlen, "train: out of memory (N=%d)", N);
        goto done;
    }
    uint64_t rng = o->seed ^ 0x5EEDull;
    int n_train = N, n_val = 0;
    for (int i = 0; i < N; i++) order[i] = i;
    if (o->val_fraction > 0.f && (n_val = split_val(order, y, N, C, o->val_fraction, &rng)) < 0) {
        n_val = 0;
        st = vit_errf(VIT_E_NOMEM, err, errlen, "train: out of memory");
        goto done;
    }
    n_train = N - n_val;
    if (res) { res->n_train = n_train; res->n_val = n_val; }

    /* checkpoints: the run's identity from the starting head, then (resume) its state */
    const size_t np = (size_t)C * (size_t)D + (size_t)C;
    uint64_t run = 0;
    if (o->checkpoint || o->resume) {
        run = run_hash(C, D, N, o, &cfg, w, b, x, y);
        ck_len = o->checkpoint ? vit_train_checkpoint_size(C, D, N) : 0;
        mv = malloc(sizeof(float) * 2 * np);
        if (!mv || (o->checkpoint && !(ck = malloc(ck_len)))) {
            st = vit_errf(VIT_E_NOMEM, err, errlen, "train: out of memory (checkpoint)");
            goto done;
        }
    }
    if (o->resume) {
        st = ckpt_load(o->resume, o->resume_len, run, C, D, N, n_train, o, cap, w, b, mv, order,
                       &rng, &step, &start, &last_loss, err, errlen);
        if (st != VIT_OK) goto done;
        if (res) { res->resumed_from_epoch = start; res->epochs_done = start; res->loss = last_loss; }
    }

    if (dev == VIT_DEVICE_CUDA) {
#ifdef VIT_HAVE_CUDA
        be = &vtc_backend;
        st = vtc_open(&ctx, w, b, C, D, x, y, N, cap, o->gpu_id, err, errlen);
#else
        st = vit_errf(VIT_E_INTERNAL, err, errlen, "train: no CUDA backend in this build");
#endif
    } else {
        st = cpu_open(&ctx, w, b, C, D, x, y, cap, err, errlen);
    }
    if (st != VIT_OK) goto done;
    if (o->resume && (st = be->write_state(ctx, mv, err, errlen)) != VIT_OK) goto done;

    for (int ep = start; ep < o->epochs; ep++) {
        const int32_t *idx = order;
        if (o->perm) {
            idx = o->perm + (size_t)ep * (size_t)N;
            for (int i = 0; i < N; i++) {
                if (idx[i] < 0 || idx[i] >= N || seen[idx[i]] == ep + 1) {
                    st = vit_errf(VIT_E_ARG, err, errlen,
                                  "train: perm row %d is not a permutation of [0, %d)", ep, N);
                    goto done;
                }
                seen[idx[i]] = ep + 1;
            }
        } else {
            shuffle(order, n_train, &rng);
        }
        if ((st = be->set_index(ctx, idx, N, err, errlen)) != VIT_OK) goto done;
        for (int s = 0; s < n_train; s += cap) {
            if (o->should_stop && o->should_stop(o->cb_ctx)) {
                st = vit_errf(VIT_E_CANCELLED, err, errlen, "train: cancelled in epoch %d", ep + 1);
                if (res) res->epochs_done = ep;
                goto done;
            }
            int B = n_train - s < cap ? n_train - s : cap;
            train_coeffs k = optim_coeffs(&cfg, ++step);
            if ((st = be->step(ctx, s, B, &k, err, errlen)) != VIT_OK) goto done;
        }
        double loss_sum = 0.0;
        if ((st = be->take_loss(ctx, &loss_sum, err, errlen)) != VIT_OK) goto done;
        float loss_epoch = (float)(loss_sum / n_train);
        if (!isfinite(loss_epoch)) {
            st = vit_errf(VIT_E_ARG, err, errlen,
                          "train: diverged (loss not finite in epoch %d); lower the learning rate",
                          ep + 1);
            goto done;
        }
        if (res) { res->epochs_done = ep + 1; res->loss = loss_epoch; }
        int yield = 0;   /* a stop asked for after this epoch (never after the last: the run is done) */
        if (o->progress || o->checkpoint) {
            float va = -1.f;
            /* validation rows are order[n_train..N) (none with a perm) */
            if ((st = subset_accuracy(be, ctx, n_train, n_val, &va, err, errlen)) != VIT_OK)
                goto done;
            if (o->progress) o->progress(o->cb_ctx, ep + 1, o->epochs, loss_epoch, va);
            yield = stop_asked(o, ep);
            if (o->checkpoint && (o->checkpoint_every_s <= 0 || ck_last < 0 || yield ||
                                  vit_now() - ck_last >= o->checkpoint_every_s)) {
                ck_last = vit_now();
                /* the weights into w and b (a no-op on the CPU, which trains them in place) */
                if ((st = be->read_params(ctx, w, b, err, errlen)) != VIT_OK ||
                    (st = be->read_state(ctx, mv, err, errlen)) != VIT_OK)
                    goto done;
                ckpt_head h = {.version = CKPT_VERSION, .endian = CKPT_ENDIAN,
                               .C = C, .D = D, .N = N, .n_train = n_train, .epoch = ep + 1,
                               .epochs = o->epochs, .optimizer = o->optimizer,
                               .step = (uint64_t)step, .rng = rng, .run = run,
                               .loss = loss_epoch, .val_accuracy = va};
                memcpy(h.magic, CKPT_MAGIC, sizeof h.magic);
                ckpt_write(ck, ck_len, &h, w, b, mv, order);
                o->checkpoint(o->cb_ctx, ep + 1, ck, ck_len);
            }
        } else {
            yield = stop_asked(o, ep);
        }
        if (yield) {
            st = vit_errf(VIT_E_CANCELLED, err, errlen, "train: stopped after epoch %d", ep + 1);
            goto done;
        }
    }
    /* accuracies with the final weights: the training set is order[0..n_train) (the same set
     * as any perm row), validation order[n_train..N) */
    if (res && (st = be->set_index(ctx, order, N, err, errlen)) == VIT_OK &&
        (st = subset_accuracy(be, ctx, 0, n_train, &res->train_accuracy, err, errlen)) == VIT_OK)
        st = subset_accuracy(be, ctx, n_train, n_val, &res->val_accuracy, err, errlen);

done:
    if (ctx) {
        /* w and b get the weights reached so far, also after a cancel or an error */
        char e2[256];
        vit_status s2 = be->read_params(ctx, w, b, e2, sizeof e2);
        if (st == VIT_OK && s2 != VIT_OK) st = vit_errf(s2, err, errlen, "%s", e2);
        be->free(ctx);
    }
    free(order);
    free(seen);
    free(mv);
    free(ck);
    return st;
}
