/* test_train.c: head training (engine/train/train.c): analytic gradients against finite differences
 * of a double-precision reference loss, loss going down, cancellation, seeded determinism and
 * the validation split, argument checks, and PyTorch parity: the same head trained by
 * torch.optim.AdamW / SGD on the same features and batch order (tests/tools/gen_train_fixtures.py,
 * fixtures in tests/fixtures/train/) must reach the same weights and test accuracy. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "util.h"

#define FIX "tests/fixtures/train/"

/* double-precision mean cross-entropy, the reference for the gradient check */
static double ref_loss(const double *w, const double *b, int C, int D, const float *x,
                       const int32_t *y, int N) {
    double tot = 0;
    for (int i = 0; i < N; i++) {
        double z[16], mx = -1e300, s = 0;
        for (int c = 0; c < C; c++) {
            z[c] = b[c];
            for (int d = 0; d < D; d++) z[c] += w[c * D + d] * x[i * D + d];
            if (z[c] > mx) mx = z[c];
        }
        for (int c = 0; c < C; c++) s += exp(z[c] - mx);
        tot += log(s) - (z[y[i]] - mx);
    }
    return tot / N;
}

static uint64_t rs = 88172645463325252ull;
static float frand(void) { /* uniform [-1, 1) */
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return (float)((rs >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
}

static void test_gradient(void) {
    enum { C = 3, D = 5, N = 7 };
    float w[C * D], b[C], x[N * D], dw[C * D], db[C];
    int32_t y[N];
    double wd[C * D], bd[C];
    for (int i = 0; i < C * D; i++) wd[i] = w[i] = frand();
    for (int i = 0; i < C; i++) bd[i] = b[i] = 0.5f * frand();
    for (int i = 0; i < N * D; i++) x[i] = 2.f * frand();
    for (int i = 0; i < N; i++) y[i] = i % C;
    double loss = vit_linear_ce(w, b, C, D, x, y, N, dw, db);
    double lref = ref_loss(wd, bd, C, D, x, y, N);
    CHECK(fabs(loss - lref) < 1e-5 * (1 + fabs(lref)), "ce loss value %.8f vs double %.8f", loss, lref);
    /* central differences in double: error ~h^2, far below float rounding of the analytic one */
    const double h = 1e-5;
    double maxrel = 0;
    for (int k = 0; k < C * D + C; k++) {
        double *p = k < C * D ? &wd[k] : &bd[k - C * D];
        double keep = *p;
        *p = keep + h;
        double lp = ref_loss(wd, bd, C, D, x, y, N);
        *p = keep - h;
        double lm = ref_loss(wd, bd, C, D, x, y, N);
        *p = keep;
        double fd = (lp - lm) / (2 * h);
        double an = k < C * D ? dw[k] : db[k - C * D];
        double rel = fabs(an - fd) / (1e-3 + fabs(fd));
        if (rel > maxrel) maxrel = rel;
    }
    CHECK(maxrel < 1e-4, "gradient vs finite differences maxrel=%.3g tol=1e-4", maxrel);
    /* dw NULL must still work, db NULL with dw must not crash */
    double l2 = vit_linear_ce(w, b, C, D, x, y, N, dw, NULL);
    CHECK(l2 == loss, "ce with db NULL gives the same loss");
    int32_t bad[N];
    memcpy(bad, y, sizeof bad);
    bad[3] = C;
    CHECK(isnan(vit_linear_ce(w, b, C, D, x, bad, N, NULL, NULL)), "ce rejects a label out of range");
}

typedef struct { int calls, stop_after; float loss[64]; float val[64]; int epochs_seen; } cb_state;

static void on_progress(void *ctx, int epoch, int epochs, float loss, float val) {
    cb_state *s = ctx;
    (void)epochs;
    if (epoch >= 1 && epoch <= 64) { s->loss[epoch - 1] = loss; s->val[epoch - 1] = val; }
    s->epochs_seen = epoch;
}
static int should_stop(void *ctx) {
    cb_state *s = ctx;
    return ++s->calls > s->stop_after;
}

typedef struct {
    float *x, *xt, *perm_f, *w_ref[2], *b_ref[2], *meta[2];
    float *yf, *ytf;
    int32_t *y, *yt, *perm;
    int N, M, D, C, E;
} fixtures;

static const char *g_prefix = "";   /* fixture set: "" synthetic, "fm_" real Fashion-MNIST features */

static int load(const char *name, float **out, int64_t *shape, int *nd) {
    char err[256], path[256];
    snprintf(path, sizeof path, FIX "%s%s.npy", g_prefix, name);
    if (vit_npy_read(path, out, shape, nd, err, sizeof err) != VIT_OK) {
        printf("FAIL load %s: %s\n", name, err);
        return -1;
    }
    return 0;
}

static int load_fixtures(fixtures *f) {
    int64_t sh[8];
    int nd, r = 0;
    memset(f, 0, sizeof *f);
    r |= load("x_train", &f->x, sh, &nd);
    if (!r) { f->N = (int)sh[0]; f->D = (int)sh[1]; }
    r |= load("y_train", &f->yf, sh, &nd);
    r |= load("x_test", &f->xt, sh, &nd);
    if (!r) f->M = (int)sh[0];
    r |= load("y_test", &f->ytf, sh, &nd);
    r |= load("perm", &f->perm_f, sh, &nd);
    if (!r) f->E = (int)sh[0];
    const char *kinds[2] = {"adamw", "sgd"};
    for (int k = 0; k < 2 && !r; k++) {
        char n[32];
        snprintf(n, sizeof n, "%s_w", kinds[k]);
        r |= load(n, &f->w_ref[k], sh, &nd);
        if (!r) f->C = (int)sh[0];
        snprintf(n, sizeof n, "%s_b", kinds[k]);
        r |= load(n, &f->b_ref[k], sh, &nd);
        snprintf(n, sizeof n, "%s_meta", kinds[k]);
        r |= load(n, &f->meta[k], sh, &nd);
    }
    if (r) return -1;
    f->y = malloc(sizeof(int32_t) * f->N);
    f->yt = malloc(sizeof(int32_t) * f->M);
    f->perm = malloc(sizeof(int32_t) * f->N * f->E);
    for (int i = 0; i < f->N; i++) f->y[i] = (int32_t)f->yf[i];
    for (int i = 0; i < f->M; i++) f->yt[i] = (int32_t)f->ytf[i];
    for (int i = 0; i < f->N * f->E; i++) f->perm[i] = (int32_t)f->perm_f[i];
    return 0;
}

static void free_fixtures(fixtures *f) {
    free(f->x); free(f->xt); free(f->perm_f); free(f->yf); free(f->ytf);
    for (int k = 0; k < 2; k++) { free(f->w_ref[k]); free(f->b_ref[k]); free(f->meta[k]); }
    free(f->y); free(f->yt); free(f->perm);
}

static float accuracy(const float *w, const float *b, int C, int D, const float *x,
                      const int32_t *y, int N) {
    int ok = 0;
    for (int i = 0; i < N; i++) {
        int arg = 0;
        float best = -INFINITY;
        for (int c = 0; c < C; c++) {
            float z = b[c];
            for (int d = 0; d < D; d++) z += w[c * D + d] * x[i * D + d];
            if (z > best) { best = z; arg = c; }
        }
        ok += arg == y[i];
    }
    return (float)ok / N;
}

static void test_torch_parity(const fixtures *f) {
    const char *kinds[2] = {g_prefix[0] ? "real features, adamw" : "adamw",
                            g_prefix[0] ? "real features, sgd" : "sgd"};
    for (int k = 0; k < 2; k++) {
        const float *meta = f->meta[k];
        vit_train_opts o;
        vit_train_opts_default(&o);
        o.optimizer = k == 0 ? VIT_OPT_ADAMW : VIT_OPT_SGD;
        o.lr = meta[2];
        o.weight_decay = meta[3];
        o.momentum = meta[4];
        o.epochs = (int)meta[5];
        o.batch_size = (int)meta[6];
        o.perm = f->perm;
        float *w = calloc((size_t)f->C * f->D, sizeof(float)), *b = calloc(f->C, sizeof(float));
        vit_train_result res;
        char err[256] = "";
        vit_status st = vit_train_linear(w, b, f->C, f->D, f->x, f->y, f->N, &o, &res, err, sizeof err);
        CHECK(st == VIT_OK, "%s: train status %s %s", kinds[k], vit_status_str(st), err);
        float wmax = 0;
        for (int i = 0; i < f->C * f->D; i++) wmax = fmaxf(wmax, fabsf(f->w_ref[k][i]));
        char name[64];
        snprintf(name, sizeof name, "%s: weights vs torch (max|w|=%.3f)", kinds[k], wmax);
        CHECK_CLOSE(w, f->w_ref[k], (size_t)f->C * f->D, 2e-5f * (1 + wmax), name);
        snprintf(name, sizeof name, "%s: bias vs torch", kinds[k]);
        CHECK_CLOSE(b, f->b_ref[k], (size_t)f->C, 2e-5f * (1 + wmax), name);
        CHECK(fabsf(res.loss - meta[1]) < 1e-4f, "%s: last epoch loss %.6f vs torch %.6f", kinds[k],
              res.loss, meta[1]);
        float acc = accuracy(w, b, f->C, f->D, f->xt, f->yt, f->M);
        CHECK(fabsf(acc - meta[0]) <= 0.01f && acc > 0.5f,
              "%s: test accuracy %.4f vs torch %.4f (within 1 point)", kinds[k], acc, meta[0]);
        free(w);
        free(b);
    }
}

static void test_training(const fixtures *f) {
    const int C = f->C, D = f->D;
    float *w = calloc((size_t)C * D, sizeof(float)), *b = calloc(C, sizeof(float));
    float *w2 = calloc((size_t)C * D, sizeof(float)), *b2 = calloc(C, sizeof(float));
    vit_train_opts o;
    vit_train_opts_default(&o);
    o.epochs = 6;
    o.lr = 0.01f;
    o.val_fraction = 0.25f;
    o.seed = 42;
    cb_state cs = { .stop_after = 1 << 30 };
    o.progress = on_progress;
    o.cb_ctx = &cs;
    vit_train_result res;
    char err[256] = "";
    vit_status st = vit_train_linear(w, b, C, D, f->x, f->y, f->N, &o, &res, err, sizeof err);
    CHECK(st == VIT_OK && res.epochs_done == 6 && cs.epochs_seen == 6, "seeded run with val split (%s)", err);
    int dec = 1;
    for (int e = 1; e < 6; e++) dec &= cs.loss[e] < cs.loss[e - 1];
    CHECK(dec && cs.loss[5] < 0.8f * cs.loss[0], "loss decreases every epoch (%.4f -> %.4f)",
          cs.loss[0], cs.loss[5]);
    /* 480 examples in 4 classes, 25% per class rounded */
    int cnt[16] = {0}, nv = 0;
    for (int i = 0; i < f->N; i++) cnt[f->y[i]]++;
    for (int c = 0; c < C; c++) nv += (int)floor(0.25 * cnt[c] + 0.5);
    CHECK(res.n_val == nv && res.n_train == f->N - nv, "stratified split n_val=%d (expect %d)", res.n_val, nv);
    CHECK(res.val_accuracy > 0.6f && res.val_accuracy <= 1.f && cs.val[5] == res.val_accuracy,
          "val accuracy %.3f reported", res.val_accuracy);
    CHECK(res.train_accuracy > 0.6f, "train accuracy %.3f", res.train_accuracy);

    /* same seed: identical weights; another seed: different */
    o.progress = NULL;
    st = vit_train_linear(w2, b2, C, D, f->x, f->y, f->N, &o, NULL, err, sizeof err);
    CHECK(st == VIT_OK && !memcmp(w, w2, sizeof(float) * C * D) && !memcmp(b, b2, sizeof(float) * C),
          "same seed, same weights");
    memset(w2, 0, sizeof(float) * C * D);
    memset(b2, 0, sizeof(float) * C);
    o.seed = 43;
    st = vit_train_linear(w2, b2, C, D, f->x, f->y, f->N, &o, NULL, err, sizeof err);
    CHECK(st == VIT_OK && memcmp(w, w2, sizeof(float) * C * D), "another seed, other weights");

    /* cancellation: stop after 20 batches of 15 per epoch -> cancelled in epoch 2 */
    memset(w2, 0, sizeof(float) * C * D);
    memset(b2, 0, sizeof(float) * C);
    o.val_fraction = 0.f;
    o.should_stop = should_stop;
    cs.calls = 0;
    cs.stop_after = 20;
    st = vit_train_linear(w2, b2, C, D, f->x, f->y, f->N, &o, &res, err, sizeof err);
    CHECK(st == VIT_E_CANCELLED && res.epochs_done == 1 && cs.calls == 21,
          "cancellation stops before the next batch (%s, epochs_done=%d, calls=%d)",
          vit_status_str(st), res.epochs_done, cs.calls);
    int finite = 1, nonzero = 0;
    for (int i = 0; i < C * D; i++) { finite &= isfinite(w2[i]); nonzero |= w2[i] != 0.f; }
    CHECK(finite && nonzero, "cancelled run keeps the weights reached so far");
    o.should_stop = NULL;

    /* argument checks */
    int32_t *yb = malloc(sizeof(int32_t) * f->N);
    memcpy(yb, f->y, sizeof(int32_t) * f->N);
    yb[17] = C;
    st = vit_train_linear(w2, b2, C, D, f->x, yb, f->N, &o, NULL, err, sizeof err);
    CHECK(st == VIT_E_ARG && strstr(err, "example 17"), "label out of range rejected: %s", err);
    free(yb);
    vit_train_opts bad = o;
    bad.lr = 0.f;
    CHECK(vit_train_linear(w2, b2, C, D, f->x, f->y, f->N, &bad, NULL, err, sizeof err) == VIT_E_ARG,
          "lr 0 rejected: %s", err);
    bad = o; bad.epochs = 0;
    CHECK(vit_train_linear(w2, b2, C, D, f->x, f->y, f->N, &bad, NULL, err, sizeof err) == VIT_E_ARG,
          "epochs 0 rejected: %s", err);
    bad = o; bad.val_fraction = 0.95f;
    CHECK(vit_train_linear(w2, b2, C, D, f->x, f->y, f->N, &bad, NULL, err, sizeof err) == VIT_E_ARG,
          "val_fraction 0.95 rejected: %s", err);
    bad = o; bad.optimizer = VIT_OPT_SGD; bad.momentum = 1.f;
    CHECK(vit_train_linear(w2, b2, C, D, f->x, f->y, f->N, &bad, NULL, err, sizeof err) == VIT_E_ARG,
          "momentum 1 rejected: %s", err);
    /* a perm row that repeats an index */
    int32_t *pb = malloc(sizeof(int32_t) * f->N);
    for (int i = 0; i < f->N; i++) pb[i] = i;
    pb[5] = 4;
    bad = o; bad.epochs = 1; bad.perm = pb;
    CHECK(vit_train_linear(w2, b2, C, D, f->x, f->y, f->N, &bad, NULL, err, sizeof err) == VIT_E_ARG,
          "perm that is not a permutation rejected: %s", err);
    free(pb);
    /* divergence is reported, not returned as a NaN head */
    bad = o; bad.optimizer = VIT_OPT_SGD; bad.lr = 1e30f; bad.momentum = 0.f; bad.epochs = 3;
    st = vit_train_linear(w2, b2, C, D, f->x, f->y, f->N, &bad, NULL, err, sizeof err);
    CHECK(st == VIT_E_ARG && strstr(err, "diverged"), "divergence reported: %s", err);

    free(w); free(b); free(w2); free(b2);
}

int main(void) {
    test_gradient();
    fixtures f;
    if (load_fixtures(&f) == 0) {
        CHECK(f.N > 0 && f.C > 1 && f.C <= 16 && f.E <= 64, "fixtures N=%d M=%d D=%d C=%d epochs=%d",
              f.N, f.M, f.D, f.C, f.E);
        test_torch_parity(&f);
        test_training(&f);
        free_fixtures(&f);
    } else {
        CHECK(0, "fixtures in " FIX);
    }
    /* the same parity on real features: the shipped model's, of the admin test's images */
    g_prefix = "fm_";
    if (load_fixtures(&f) == 0) {
        CHECK(f.N == 180 && f.M == 300 && f.C == 3, "real-feature fixtures N=%d M=%d D=%d C=%d", f.N, f.M, f.D, f.C);
        test_torch_parity(&f);
        free_fixtures(&f);
    } else {
        CHECK(0, "fixtures fm_* in " FIX);
    }
    return TEST_SUMMARY();
}
