/* test_train_cuda.c: head training on CUDA (engine/cuda/train_cuda.cu) against the CPU reference
 * (engine/train/train.c) through the public API, vit_train_linear with opts.device CUDA vs CPU, on the
 * same random features (seeded from the clock unless VITD_SEED is set; printed for replay).
 * Needs a GPU; run by bench/gpu_check.sh; without one it SKIPs and exits 0.
 * Cases: AdamW and SGD (with and without momentum / weight decay), with and without a
 * validation split, a last batch smaller than the others, one batch larger than N, an explicit
 * per-epoch permutation, non-zero starting weights, 1000 classes (several softmax passes per
 * block), cancellation after a fixed number of batches (the weights reached so far must agree),
 * per-epoch progress, device AUTO landing on CUDA, a missing GPU id (clean VIT_E_DEVICE), and
 * checkpoints: a CUDA run's checkpoint after epoch 3 (optimizer state read back from the device)
 * resumed on CUDA (state written to the device) and on the CPU lands where the uninterrupted runs
 * do (same tolerance; whether the CUDA resume is bit-identical is printed).
 * Checks: weights and bias max|cuda - cpu| <= 1e-4 * max(1, max|cpu|) (they differ only by the
 * GEMMs' and softmax sums' rounding order); final and per-epoch loss within 1e-4 relative; train
 * and validation accuracy within one example (the same unless a margin is below the rounding). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "harness.h"

static uint64_t rs;
static float frand(void) { /* uniform [-1, 1) */
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return (float)((rs >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
}

typedef struct {
    const char *name;
    int C, D, N, epochs, batch;
    vit_optimizer opt;
    float lr, wd, mom, val;
    int use_perm, random_init, stop_after;   /* stop_after > 0: cancel before that batch */
} tcase;

#define MAX_EPOCHS 16
typedef struct {
    int calls, stop_after, epochs_seen;
    float loss[MAX_EPOCHS], val[MAX_EPOCHS];
} cb_state;

static void on_epoch(void *ctx, int epoch, int epochs, float loss, float val) {
    cb_state *c = ctx;
    (void)epochs;
    if (epoch >= 1 && epoch <= MAX_EPOCHS) {
        c->loss[epoch - 1] = loss;
        c->val[epoch - 1] = val;
    }
    c->epochs_seen = epoch;
}
static int should_stop(void *ctx) {
    cb_state *c = ctx;
    return c->stop_after > 0 && ++c->calls >= c->stop_after;
}

static float maxabs(const float *a, size_t n) {
    float m = 0.f;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i]));
    return m;
}

static void run_case(const tcase *t) {
    const int C = t->C, D = t->D, N = t->N;
    const size_t nw = (size_t)C * D;
    float *x = malloc(sizeof(float) * (size_t)N * D), *mu = malloc(sizeof(float) * nw);
    float *w0 = malloc(sizeof(float) * nw), *b0 = malloc(sizeof(float) * C);
    float *wc = malloc(sizeof(float) * nw), *bc = malloc(sizeof(float) * C);
    float *wg = malloc(sizeof(float) * nw), *bg = malloc(sizeof(float) * C);
    int32_t *y = malloc(sizeof(int32_t) * N), *perm = NULL;
    /* features: a random class mean plus noise, so the head has something to learn */
    for (size_t i = 0; i < nw; i++) mu[i] = frand();
    for (int i = 0; i < N; i++) {
        y[i] = (int32_t)((i * 7 + 3) % C);
        for (int d = 0; d < D; d++) x[(size_t)i * D + d] = 0.8f * mu[(size_t)y[i] * D + d] + frand();
    }
    for (size_t i = 0; i < nw; i++) w0[i] = t->random_init ? 0.05f * frand() : 0.f;
    for (int c = 0; c < C; c++) b0[c] = t->random_init ? 0.05f * frand() : 0.f;
    vit_train_opts o;
    vit_train_opts_default(&o);
    o.epochs = t->epochs;
    o.batch_size = t->batch;
    o.optimizer = t->opt;
    o.lr = t->lr;
    o.weight_decay = t->wd;
    o.momentum = t->mom;
    o.val_fraction = t->val;
    o.seed = rs;
    if (t->use_perm) {
        perm = malloc(sizeof(int32_t) * (size_t)N * t->epochs);
        for (int e = 0; e < t->epochs; e++) {
            int32_t *p = perm + (size_t)e * N;
            for (int i = 0; i < N; i++) p[i] = i;
            for (int i = N - 1; i > 0; i--) {
                int j = (int)((frand() * 0.5f + 0.5f) * (i + 1)) % (i + 1);
                int32_t s = p[i]; p[i] = p[j]; p[j] = s;
            }
        }
        o.perm = perm;
    }
    o.progress = on_epoch;
    o.should_stop = should_stop;
    cb_state cc = {.stop_after = t->stop_after}, cg = {.stop_after = t->stop_after};
    vit_train_result rc, rg;
    char ec[256] = "", eg[256] = "";

    memcpy(wc, w0, sizeof(float) * nw);
    memcpy(bc, b0, sizeof(float) * C);
    o.device = VIT_DEVICE_CPU;
    o.cb_ctx = &cc;
    vit_status sc = vit_train_linear(wc, bc, C, D, x, y, N, &o, &rc, ec, sizeof ec);

    memcpy(wg, w0, sizeof(float) * nw);
    memcpy(bg, b0, sizeof(float) * C);
    o.device = VIT_DEVICE_CUDA;
    o.cb_ctx = &cg;
    vit_status sg = vit_train_linear(wg, bg, C, D, x, y, N, &o, &rg, eg, sizeof eg);

    const vit_status want = t->stop_after > 0 ? VIT_E_CANCELLED : VIT_OK;
    CHECK(sc == want && sg == want && rg.device == VIT_DEVICE_CUDA,
          "%s: cpu %s, cuda %s (%s / %s)", t->name, vit_status_str(sc), vit_status_str(sg), ec, eg);
    const float tol_w = 1e-4f * fmaxf(1.f, maxabs(wc, nw)), tol_b = 1e-4f * fmaxf(1.f, maxabs(bc, C));
    CHECK_CLOSE(wg, wc, nw, tol_w, t->name);
    CHECK_CLOSE(bg, bc, (size_t)C, tol_b, t->name);
    if (want == VIT_OK) {
        CHECK(fabsf(rg.loss - rc.loss) <= 1e-4f * fmaxf(1.f, fabsf(rc.loss)) && rg.n_train == rc.n_train &&
                  rg.n_val == rc.n_val && rg.epochs_done == rc.epochs_done,
              "%s: loss cuda %.7f cpu %.7f, split %d/%d vs %d/%d", t->name, (double)rg.loss,
              (double)rc.loss, rg.n_train, rg.n_val, rc.n_train, rc.n_val);
        const float one_tr = 1.f / (float)rc.n_train + 1e-6f;
        const float one_va = rc.n_val ? 1.f / (float)rc.n_val + 1e-6f : 0.f;
        CHECK(fabsf(rg.train_accuracy - rc.train_accuracy) <= one_tr &&
                  fabsf(rg.val_accuracy - rc.val_accuracy) <= one_va,
              "%s: accuracy train cuda %.4f cpu %.4f, val cuda %.4f cpu %.4f", t->name,
              (double)rg.train_accuracy, (double)rc.train_accuracy, (double)rg.val_accuracy,
              (double)rc.val_accuracy);
        int ok = cg.epochs_seen == cc.epochs_seen;
        float worst = 0.f;
        for (int e = 0; e < cc.epochs_seen && e < MAX_EPOCHS; e++) {
            worst = fmaxf(worst, fabsf(cg.loss[e] - cc.loss[e]) / fmaxf(1.f, fabsf(cc.loss[e])));
            if ((cc.val[e] < 0) != (cg.val[e] < 0) || fabsf(cg.val[e] - cc.val[e]) > one_va) ok = 0;
        }
        CHECK(ok && worst <= 1e-4f, "%s: per-epoch progress agrees (%d epochs, loss rel diff %.2g)",
              t->name, cc.epochs_seen, (double)worst);
    } else {
        CHECK(cg.calls == cc.calls && rg.epochs_done == rc.epochs_done,
              "%s: cancelled at the same batch (%d) and epoch (%d)", t->name, cg.calls, rg.epochs_done);
    }
    free(x); free(mu); free(w0); free(b0); free(wc); free(bc); free(wg); free(bg); free(y); free(perm);
}

typedef struct { int at; void *data; size_t len; } ck_keep;
static void keep_ckpt(void *ctx, int epoch, const void *data, size_t len) {
    ck_keep *k = ctx;
    if (epoch != k->at || k->data || !(k->data = malloc(len))) return;
    memcpy(k->data, data, len);
    k->len = len;
}

static void test_checkpoint_resume(void) {
    enum { C = 6, D = 40, N = 170, E = 6, K = 3 };
    float *x = malloc(sizeof(float) * N * D), w0[C * D], b0[C];
    int32_t y[N];
    for (int i = 0; i < N; i++) {
        y[i] = (int32_t)((i * 5 + 1) % C);
        for (int d = 0; d < D; d++) x[i * D + d] = frand() + 0.7f * (d % C == y[i]);
    }
    for (int i = 0; i < C * D; i++) w0[i] = 0.05f * frand();
    for (int i = 0; i < C; i++) b0[i] = 0.05f * frand();
    float wg[C * D], bg[C], wc[C * D], bc[C], wr[C * D], br[C];
    vit_train_opts o;
    vit_train_opts_default(&o);
    o.epochs = E;
    o.batch_size = 32;
    o.lr = 5e-3f;
    o.val_fraction = 0.2f;
    o.seed = rs;
    char err[256] = "";
    ck_keep k = {.at = K};
    /* uninterrupted: CUDA (keeping epoch K's checkpoint) and the CPU */
    memcpy(wg, w0, sizeof wg);
    memcpy(bg, b0, sizeof bg);
    vit_train_opts og = o;
    og.device = VIT_DEVICE_CUDA;
    og.checkpoint = keep_ckpt;
    og.cb_ctx = &k;
    vit_status st = vit_train_linear(wg, bg, C, D, x, y, N, &og, NULL, err, sizeof err);
    CHECK(st == VIT_OK && k.data && k.len == vit_train_checkpoint_size(C, D, N),
          "cuda run with checkpoints (%s)", st == VIT_OK ? "ok" : err);
    memcpy(wc, w0, sizeof wc);
    memcpy(bc, b0, sizeof bc);
    vit_train_opts oc = o;
    oc.device = VIT_DEVICE_CPU;
    st = vit_train_linear(wc, bc, C, D, x, y, N, &oc, NULL, err, sizeof err);
    CHECK(st == VIT_OK, "cpu reference run (%s)", st == VIT_OK ? "ok" : err);
    if (!k.data) { free(x); return; }
    /* resumed on CUDA from the CUDA checkpoint */
    vit_train_result r;
    memcpy(wr, w0, sizeof wr);
    memcpy(br, b0, sizeof br);
    vit_train_opts orc = o;
    orc.device = VIT_DEVICE_CUDA;
    orc.resume = k.data;
    orc.resume_len = k.len;
    st = vit_train_linear(wr, br, C, D, x, y, N, &orc, &r, err, sizeof err);
    const float tol = 1e-4f * fmaxf(1.f, maxabs(wc, (size_t)C * D));
    CHECK(st == VIT_OK && r.resumed_from_epoch == K && r.device == VIT_DEVICE_CUDA,
          "cuda resume from epoch %d (%s)", r.resumed_from_epoch, st == VIT_OK ? "ok" : err);
    printf("# cuda resume vs uninterrupted cuda run: %s\n",
           !memcmp(wr, wg, sizeof wr) && !memcmp(br, bg, sizeof br) ? "bit-identical" : "differs in rounding");
    CHECK_CLOSE(wr, wg, (size_t)C * D, tol, "cuda resumed vs cuda uninterrupted: weights");
    CHECK_CLOSE(br, bg, (size_t)C, tol, "cuda resumed vs cuda uninterrupted: bias");
    /* the CUDA checkpoint resumed on the CPU */
    memcpy(wr, w0, sizeof wr);
    memcpy(br, b0, sizeof br);
    orc.device = VIT_DEVICE_CPU;
    st = vit_train_linear(wr, br, C, D, x, y, N, &orc, &r, err, sizeof err);
    CHECK(st == VIT_OK && r.resumed_from_epoch == K, "cuda checkpoint resumed on the cpu (%s)",
          st == VIT_OK ? "ok" : err);
    CHECK_CLOSE(wr, wc, (size_t)C * D, tol, "cuda checkpoint resumed on the cpu vs the cpu run: weights");
    free(k.data);
    free(x);
}

int main(void) {
    const char *s = getenv("VITD_SEED");
    rs = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) * 2654435761u + (uint64_t)clock();
    if (!rs) rs = 88172645463325252ull;
    printf("# seed %llu (replay with VITD_SEED)\n", (unsigned long long)rs);
    int ndev = vit_cuda_device_count();
    if (ndev < 1) {
        SKIP("no CUDA device: head training on CUDA not tested");
        return TEST_SUMMARY();
    }
    const tcase cases[] = {
        {"adamw", 7, 64, 300, 8, 32, VIT_OPT_ADAMW, 3e-3f, 1e-2f, 0.9f, 0.f, 0, 0, 0},
        {"adamw val 0.2, batch 50 (last batch smaller), random init", 7, 64, 301, 6, 50,
         VIT_OPT_ADAMW, 3e-3f, 1e-4f, 0.9f, 0.2f, 0, 1, 0},
        {"sgd momentum 0.9", 5, 48, 200, 8, 16, VIT_OPT_SGD, 0.05f, 0.f, 0.9f, 0.f, 0, 0, 0},
        {"sgd momentum 0.9 weight decay 1e-3 val 0.25", 5, 48, 200, 8, 16, VIT_OPT_SGD, 0.05f,
         1e-3f, 0.9f, 0.25f, 0, 1, 0},
        {"sgd plain (no momentum, no decay)", 4, 32, 120, 5, 24, VIT_OPT_SGD, 0.1f, 0.f, 0.f, 0.f,
         0, 0, 0},
        {"adamw batch > N", 3, 16, 40, 10, 64, VIT_OPT_ADAMW, 1e-2f, 1e-2f, 0.9f, 0.f, 0, 0, 0},
        {"adamw explicit perm", 6, 40, 150, 4, 32, VIT_OPT_ADAMW, 3e-3f, 1e-2f, 0.9f, 0.f, 1, 1, 0},
        {"adamw 1000 classes, D 384, val 0.5", 1000, 384, 2000, 2, 128, VIT_OPT_ADAMW, 1e-3f,
         1e-2f, 0.9f, 0.5f, 0, 1, 0},
        {"adamw cancelled before batch 23", 7, 64, 300, 8, 32, VIT_OPT_ADAMW, 3e-3f, 1e-2f, 0.9f,
         0.1f, 0, 0, 23},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
    test_checkpoint_resume();

    /* AUTO lands on CUDA when a device is present; a GPU id that does not exist is clean */
    enum { C = 3, D = 8, N = 30 };
    float x[N * D], w[C * D] = {0}, b[C] = {0};
    int32_t y[N];
    for (int i = 0; i < N; i++) {
        y[i] = i % C;
        for (int d = 0; d < D; d++) x[i * D + d] = frand() + (d == y[i]);
    }
    vit_train_opts o;
    vit_train_opts_default(&o);
    o.epochs = 2;
    o.device = VIT_DEVICE_AUTO;
    vit_train_result r;
    char err[256] = "";
    vit_status st = vit_train_linear(w, b, C, D, x, y, N, &o, &r, err, sizeof err);
    CHECK(st == VIT_OK && r.device == VIT_DEVICE_CUDA, "device auto with a GPU -> cuda (%s)",
          st == VIT_OK ? "ok" : err);
    o.device = VIT_DEVICE_CUDA;
    o.gpu_id = 1 << 20;
    st = vit_train_linear(w, b, C, D, x, y, N, &o, &r, err, sizeof err);
    CHECK(st == VIT_E_DEVICE && strstr(err, "cuda"), "gpu_id 2^20 -> %s: %s", vit_status_str(st), err);
    return TEST_SUMMARY();
}
