/* train.c: training a linear classification head on stored features (softmax cross-entropy,
 * mini-batch AdamW or SGD with PyTorch's update rules), the CPU reference of head training.
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
    long step;
    float *m, *v;     /* AdamW moments / SGD momentum buffer (m), each sized like the params */
} optim;

/* p (n) updated from g (n); m, v point at this tensor's slice of the state */
static void optim_update(const optim *o, float *p, const float *g, float *m, float *v, size_t n) {
    if (o->kind == VIT_OPT_ADAMW) {
        const float decay = (float)(1.0 - o->lr * o->wd);
        const float b1 = (float)o->beta1, b2 = (float)o->beta2;
        const float c1 = (float)(1.0 - o->beta1), c2 = (float)(1.0 - o->beta2);
        const double bc1 = 1.0 - pow(o->beta1, (double)o->step);
        const double bc2 = 1.0 - pow(o->beta2, (double)o->step);
        const float step_size = (float)(o->lr / bc1);
        const float bc2_sqrt = (float)sqrt(bc2);
        const float eps = (float)o->eps;
        for (size_t i = 0; i < n; i++) {
            p[i] *= decay;
            m[i] = m[i] * b1 + g[i] * c1;
            v[i] = v[i] * b2 + g[i] * g[i] * c2;
            float denom = sqrtf(v[i]) / bc2_sqrt + eps;
            p[i] += -step_size * (m[i] / denom);
        }
    } else {
        const float wd = (float)o->wd, mom = (float)o->momentum, lr = (float)o->lr;
        for (size_t i = 0; i < n; i++) {
            float d = g[i];
            if (wd != 0.f) d += wd * p[i];
            if (mom != 0.f) {
                m[i] = o->step == 1 ? d : m[i] * mom + d;
                d = m[i];
            }
            p[i] += -lr * d;
        }
    }
}

/* ---- the training loop --------------------------------------------------------------- */

static void gather(const float *x, const int32_t *y, int D, const int32_t *idx, int B,
                   float *xb, int32_t *yb) {
    for (int i = 0; i < B; i++) {
        memcpy(xb + (size_t)i * D, x + (size_t)idx[i] * D, sizeof(float) * (size_t)D);
        yb[i] = y[idx[i]];
    }
}

/* accuracy of (w, b) on the examples idx[0..n), in chunks of cap rows */
static float subset_accuracy(const float *w, const float *b, int C, int D, const float *x,
                             const int32_t *y, const int32_t *idx, int n, int cap, float *xb,
                             int32_t *yb, float *logits) {
    if (n <= 0) return -1.f;
    int correct = 0;
    for (int s = 0; s < n; s += cap) {
        int B = n - s < cap ? n - s : cap;
        gather(x, y, D, idx + s, B, xb, yb);
        batch_ce(w, b, C, D, xb, yb, B, logits, NULL, NULL, &correct);
    }
    return (float)correct / (float)n;
}

vit_status vit_train_linear(float *w, float *b, int C, int D, const float *x, const int32_t *y,
                            int N, const vit_train_opts *o, vit_train_result *res,
                            char *err, size_t errlen) {
    if (res) memset(res, 0, sizeof *res);
    if (!w || !b || !x || !y || !o)
        return vit_errf(VIT_E_ARG, err, errlen, "train: NULL argument");
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

    const size_t nw = (size_t)C * (size_t)D, np = nw + (size_t)C;
    const int cap = o->batch_size < N ? o->batch_size : N;
    int32_t *order = malloc(sizeof(int32_t) * (size_t)N);      /* train idx, then val idx */
    int32_t *counts = calloc((size_t)C, sizeof(int32_t));
    int32_t *yb = malloc(sizeof(int32_t) * (size_t)cap);
    float *xb = malloc(sizeof(float) * (size_t)cap * (size_t)D);   /* (cap, D) */
    float *logits = malloc(sizeof(float) * (size_t)cap * (size_t)C);/* (cap, C) */
    float *grad = malloc(sizeof(float) * np);                      /* [dw (C, D); db (C)] */
    float *state = calloc(2 * np, sizeof(float));                  /* [m; v] */
    int32_t *seen = o->perm ? calloc((size_t)N, sizeof(int32_t)) : NULL;
    vit_status st = VIT_OK;
    if (!order || !counts || !yb || !xb || !logits || !grad || !state || (o->perm && !seen)) {
        st = vit_errf(VIT_E_NOMEM, err, errlen, "train: out of memory (N=%d D=%d C=%d)", N, D, C);
        goto done;
    }

    /* split: stratified, seeded.  Walk a shuffled order; the first k_c examples of class c
     * go to validation, k_c = round(val_fraction * n_c), keeping at least one for training. */
    uint64_t rng = o->seed ^ 0x5EEDull;
    int n_train = N, n_val = 0;
    for (int i = 0; i < N; i++) order[i] = i;
    if (o->val_fraction > 0.f) {
        int32_t *tmp = malloc(sizeof(int32_t) * (size_t)N);
        int32_t *quota = calloc((size_t)C, sizeof(int32_t));
        if (!tmp || !quota) {
            free(tmp);
            free(quota);
            st = vit_errf(VIT_E_NOMEM, err, errlen, "train: out of memory");
            goto done;
        }
        for (int i = 0; i < N; i++) counts[y[i]]++;
        for (int c = 0; c < C; c++) {
            int k = (int)floor((double)o->val_fraction * counts[c] + 0.5);
            quota[c] = k > counts[c] - 1 ? (counts[c] > 0 ? counts[c] - 1 : 0) : k;
            n_val += quota[c];
        }
        shuffle(order, N, &rng);
        n_train = N - n_val;
        int ti = 0, vi = n_train;
        for (int i = 0; i < N; i++) {
            int e = order[i];
            if (quota[y[e]] > 0) { quota[y[e]]--; tmp[vi++] = e; }
            else tmp[ti++] = e;
        }
        memcpy(order, tmp, sizeof(int32_t) * (size_t)N);
        free(tmp);
        free(quota);
    }
    if (res) { res->n_train = n_train; res->n_val = n_val; }

    optim opt = { .kind = o->optimizer, .lr = o->lr, .wd = o->weight_decay,
                  .momentum = o->momentum, .beta1 = beta1, .beta2 = beta2, .eps = eps,
                  .step = 0, .m = state, .v = state + np };
    float loss_epoch = 0.f;
    for (int ep = 0; ep < o->epochs; ep++) {
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
        double loss_sum = 0.0;
        for (int s = 0; s < n_train; s += cap) {
            if (o->should_stop && o->should_stop(o->cb_ctx)) {
                st = vit_errf(VIT_E_CANCELLED, err, errlen, "train: cancelled in epoch %d", ep + 1);
                if (res) res->epochs_done = ep;
                goto done;
            }
            int B = n_train - s < cap ? n_train - s : cap;
            gather(x, y, D, idx + s, B, xb, yb);
            loss_sum += batch_ce(w, b, C, D, xb, yb, B, logits, grad, grad + nw, NULL);
            opt.step++;
            optim_update(&opt, w, grad, opt.m, opt.v, nw);
            optim_update(&opt, b, grad + nw, opt.m + nw, opt.v + nw, (size_t)C);
        }
        loss_epoch = (float)(loss_sum / n_train);
        if (!isfinite(loss_epoch)) {
            st = vit_errf(VIT_E_ARG, err, errlen,
                          "train: diverged (loss not finite in epoch %d); lower the learning rate",
                          ep + 1);
            goto done;
        }
        if (res) { res->epochs_done = ep + 1; res->loss = loss_epoch; }
        if (o->progress) {
            float va = subset_accuracy(w, b, C, D, x, y, order + n_train, n_val, cap, xb, yb, logits);
            o->progress(o->cb_ctx, ep + 1, o->epochs, loss_epoch, va);
        }
    }
    if (res) {
        res->train_accuracy = subset_accuracy(w, b, C, D, x, y, o->perm ? o->perm : order,
                                              n_train, cap, xb, yb, logits);
        res->val_accuracy = subset_accuracy(w, b, C, D, x, y, order + n_train, n_val, cap, xb,
                                            yb, logits);
    }

done:
    free(order);
    free(counts);
    free(yb);
    free(xb);
    free(logits);
    free(grad);
    free(state);
    free(seen);
    return st;
}
