/* test_train.c: head training (engine/train/train.c): analytic gradients against finite differences
 * of a double-precision reference loss, loss going down, cancellation, seeded determinism and
 * the validation split, argument checks, and PyTorch parity: the same head trained by
 * torch.optim.AdamW / SGD on the same features and batch order (tests/tools/gen_train_fixtures.py,
 * fixtures in tests/fixtures/train/) must reach the same weights and test accuracy.  Checkpoints:
 * a run interrupted after epoch k and resumed from its checkpoint in another process ends with
 * the same bits as the run never interrupted; corrupt or foreign checkpoints are refused. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* ---- checkpoint and resume ---------------------------------------------------------------- */

typedef struct {
    int stop_at;                  /* cancel once this epoch's checkpoint is taken (0: never) */
    int last;                     /* epoch of the last checkpoint */
    int stopping;
    unsigned char *blob;          /* the last checkpoint (a copy) */
    size_t len;
    unsigned char *at[16];        /* every epoch's checkpoint */
    int n;                        /* checkpoints taken */
    int yield_at;                 /* stop_after_epoch: nonzero after this epoch (0: never) */
    int asked;                    /* stop_after_epoch calls */
} ck_state;

static void on_checkpoint(void *ctx, int epoch, const void *data, size_t len) {
    ck_state *k = ctx;
    free(k->blob);
    k->blob = malloc(len);
    memcpy(k->blob, data, len);
    k->len = len;
    k->last = epoch;
    k->n++;
    if (epoch < 16) {
        free(k->at[epoch]);
        k->at[epoch] = malloc(len);
        memcpy(k->at[epoch], data, len);
    }
    if (epoch == k->stop_at) k->stopping = 1;   /* as if the process died right after */
}
static int ck_stop(void *ctx) { return ((ck_state *)ctx)->stopping; }
/* called after every epoch but the last: the n-th call follows epoch n */
static int ck_yield(void *ctx) {
    ck_state *k = ctx;
    return ++k->asked == k->yield_at;
}

static void ck_free(ck_state *k) {
    free(k->blob);
    for (int i = 0; i < 16; i++) free(k->at[i]);
    memset(k, 0, sizeof *k);
}

/* Resume from the checkpoint file `path` in a child process (nothing of this one's state but
 * the arguments) and send the head back through a pipe: 0 and w, b filled, or -1. */
static int resume_in_child(const char *path, const float *w0, const float *b0, int C, int D,
                           const fixtures *f, const vit_train_opts *o, float *w, float *b,
                           int *resumed_from) {
    int fd[2];
    if (pipe(fd) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fd[0]);
        uint8_t *blob = NULL;
        size_t len = 0;
        char err[256];
        int32_t rf = -1;
        float *cw = malloc(sizeof(float) * (size_t)C * D), *cb = malloc(sizeof(float) * C);
        memcpy(cw, w0, sizeof(float) * (size_t)C * D);
        memcpy(cb, b0, sizeof(float) * C);
        vit_train_opts ro = *o;
        vit_train_result res;
        if (vit_read_file(path, 1 << 24, &blob, &len, err, sizeof err) == VIT_OK) {
            ro.resume = blob;
            ro.resume_len = len;
            if (vit_train_linear(cw, cb, C, D, f->x, f->y, f->N, &ro, &res, err, sizeof err) == VIT_OK)
                rf = res.resumed_from_epoch;
        }
        ssize_t n = write(fd[1], &rf, sizeof rf);
        n += write(fd[1], cw, sizeof(float) * (size_t)C * D);
        n += write(fd[1], cb, sizeof(float) * C);
        _exit(n == (ssize_t)(sizeof rf + sizeof(float) * ((size_t)C * D + C)) ? 0 : 1);
    }
    close(fd[1]);
    int32_t rf = -1;
    size_t want[3] = {sizeof rf, sizeof(float) * (size_t)C * D, sizeof(float) * C}, got = 0;
    void *dst[3] = {&rf, w, b};
    for (int i = 0; i < 3; i++) {
        size_t k = 0;
        while (k < want[i]) {
            ssize_t n = read(fd[0], (char *)dst[i] + k, want[i] - k);
            if (n <= 0) break;
            k += (size_t)n;
        }
        got += k;
    }
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    *resumed_from = rf;
    return got == want[0] + want[1] + want[2] && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
                   rf > 0 ? 0 : -1;
}

static void test_resume(const fixtures *f, vit_optimizer opt, float val_fraction, int batch) {
    const int C = f->C, D = f->D, E = 7, K = 3;
    const size_t nw = (size_t)C * D;
    const char *name = opt == VIT_OPT_SGD ? "sgd" : "adamw";
    float *w0 = malloc(sizeof(float) * nw), *b0 = malloc(sizeof(float) * C);
    for (size_t i = 0; i < nw; i++) w0[i] = 0.05f * frand();   /* a non-zero starting head */
    for (int i = 0; i < C; i++) b0[i] = 0.1f * frand();
    float *wa = malloc(sizeof(float) * nw), *ba = malloc(sizeof(float) * C);
    float *wb = malloc(sizeof(float) * nw), *bb = malloc(sizeof(float) * C);
    vit_train_opts o;
    vit_train_opts_default(&o);
    o.epochs = E;
    o.lr = 0.02f;
    o.batch_size = batch;
    o.optimizer = opt;
    o.val_fraction = val_fraction;
    o.seed = 7;
    char err[256] = "";
    vit_train_result res;

    /* the uninterrupted run, checkpointing every epoch */
    ck_state straight = {0};
    memcpy(wa, w0, sizeof(float) * nw);
    memcpy(ba, b0, sizeof(float) * C);
    vit_train_opts so = o;
    so.checkpoint = on_checkpoint;
    so.cb_ctx = &straight;
    vit_status st = vit_train_linear(wa, ba, C, D, f->x, f->y, f->N, &so, &res, err, sizeof err);
    CHECK(st == VIT_OK && straight.last == E && straight.len == vit_train_checkpoint_size(C, D, f->N),
          "%s: a checkpoint after every epoch, %zu bytes (%s)", name, straight.len, err);
    /* checkpointing does not change the run */
    memcpy(wb, w0, sizeof(float) * nw);
    memcpy(bb, b0, sizeof(float) * C);
    st = vit_train_linear(wb, bb, C, D, f->x, f->y, f->N, &o, NULL, err, sizeof err);
    CHECK(st == VIT_OK && !memcmp(wa, wb, sizeof(float) * nw) && !memcmp(ba, bb, sizeof(float) * C),
          "%s: the same head with and without checkpoints", name);
    /* checkpoint_every_s: the first epoch's, then none until that long has passed (1e9 s: never) */
    ck_state sparse = {0};
    memcpy(wb, w0, sizeof(float) * nw);
    memcpy(bb, b0, sizeof(float) * C);
    vit_train_opts po = so;
    po.cb_ctx = &sparse;
    po.checkpoint_every_s = 1e9;
    st = vit_train_linear(wb, bb, C, D, f->x, f->y, f->N, &po, NULL, err, sizeof err);
    CHECK(st == VIT_OK && sparse.n == 1 && sparse.last == 1 && straight.at[1] &&
              !memcmp(sparse.blob, straight.at[1], sparse.len) && !memcmp(wa, wb, sizeof(float) * nw),
          "%s: checkpoint_every_s 1e9: epoch 1's checkpoint only (%d taken), the same head", name, sparse.n);
    ck_free(&sparse);
    /* stop_after_epoch (a hand-over): stops after epoch K with that epoch's checkpoint, however
     * recent the last one; never asked after the last epoch */
    ck_state yk = {.yield_at = K};
    vit_train_result yres;
    memcpy(wb, w0, sizeof(float) * nw);
    memcpy(bb, b0, sizeof(float) * C);
    po.cb_ctx = &yk;
    po.stop_after_epoch = ck_yield;
    st = vit_train_linear(wb, bb, C, D, f->x, f->y, f->N, &po, &yres, err, sizeof err);
    CHECK(st == VIT_E_CANCELLED && yres.epochs_done == K && yk.asked == K && yk.n == 2 && yk.last == K &&
              straight.at[K] && !memcmp(yk.blob, straight.at[K], yk.len),
          "%s: stop_after_epoch %d: stopped there with its checkpoint despite checkpoint_every_s (%d taken)", name, K, yk.n);
    ck_free(&yk);
    yk = (ck_state){.yield_at = E};
    memcpy(wb, w0, sizeof(float) * nw);
    memcpy(bb, b0, sizeof(float) * C);
    st = vit_train_linear(wb, bb, C, D, f->x, f->y, f->N, &po, &yres, err, sizeof err);
    CHECK(st == VIT_OK && yk.asked == E - 1 && yres.epochs_done == E && !memcmp(wa, wb, sizeof(float) * nw),
          "%s: stop_after_epoch is not asked after the last epoch (%d calls): the run finishes", name, yk.asked);
    ck_free(&yk);
    float loss_straight = res.loss, tacc = res.train_accuracy, vacc = res.val_accuracy;

    /* interrupted after epoch K (its checkpoint taken), resumed in another process */
    ck_state cut = {.stop_at = K};
    memcpy(wb, w0, sizeof(float) * nw);
    memcpy(bb, b0, sizeof(float) * C);
    vit_train_opts co = so;
    co.cb_ctx = &cut;
    co.should_stop = ck_stop;
    st = vit_train_linear(wb, bb, C, D, f->x, f->y, f->N, &co, &res, err, sizeof err);
    CHECK(st == VIT_E_CANCELLED && cut.last == K && res.epochs_done == K,
          "%s: run stopped after epoch %d's checkpoint (%s)", name, K, vit_status_str(st));
    vit_train_checkpoint_info info;
    err[0] = '\0';
    st = vit_train_checkpoint_info_get(cut.blob, cut.len, &info, err, sizeof err);
    CHECK(st == VIT_OK && info.epoch == K && info.epochs == E && info.C == C && info.D == D &&
          info.N == f->N, "%s: checkpoint info epoch %d of %d (%s)", name, info.epoch, info.epochs, err);
    CHECK(!memcmp(cut.blob, straight.at[K], cut.len), "%s: the interrupted run's checkpoint is the "
          "straight run's", name);
    char path[64];
    snprintf(path, sizeof path, "/tmp/vitd_test_ckpt.%d", (int)getpid());
    FILE *fp = fopen(path, "wb");
    int wrote = fp && fwrite(cut.blob, 1, cut.len, fp) == cut.len;
    if (fp) fclose(fp);
    memset(wb, 0, sizeof(float) * nw);
    memset(bb, 0, sizeof(float) * C);
    int rf = 0;
    int ok = wrote && resume_in_child(path, w0, b0, C, D, f, &o, wb, bb, &rf) == 0;
    unlink(path);
    CHECK(ok && rf == K && !memcmp(wa, wb, sizeof(float) * nw) && !memcmp(ba, bb, sizeof(float) * C),
          "%s: resumed from epoch %d in a new process: head bit-identical to the uninterrupted run "
          "(maxdiff=%.3g)", name, rf, (double)th_maxdiff(wa, wb, nw));

    /* in this process too, with the results of the whole run */
    memcpy(wb, w0, sizeof(float) * nw);
    memcpy(bb, b0, sizeof(float) * C);
    vit_train_opts ro = o;
    ro.resume = cut.blob;
    ro.resume_len = cut.len;
    st = vit_train_linear(wb, bb, C, D, f->x, f->y, f->N, &ro, &res, err, sizeof err);
    CHECK(st == VIT_OK && res.resumed_from_epoch == K && res.epochs_done == E &&
          !memcmp(wa, wb, sizeof(float) * nw) && res.loss == loss_straight &&
          res.train_accuracy == tacc && res.val_accuracy == vacc,
          "%s: resumed run's loss %.6f and accuracies equal the straight run's", name, res.loss);
    /* the last epoch's checkpoint: nothing left to train, same head and loss */
    ro.resume = straight.at[E];
    memcpy(wb, w0, sizeof(float) * nw);
    memcpy(bb, b0, sizeof(float) * C);
    st = vit_train_linear(wb, bb, C, D, f->x, f->y, f->N, &ro, &res, err, sizeof err);
    CHECK(st == VIT_OK && res.resumed_from_epoch == E && res.epochs_done == E &&
          !memcmp(wa, wb, sizeof(float) * nw) && res.loss == loss_straight,
          "%s: resume from the final epoch's checkpoint trains nothing more", name);
    free(w0); free(b0); free(wa); free(ba); free(wb); free(bb);
    ck_free(&straight);
    ck_free(&cut);
}

/* corrupt, truncated, foreign checkpoints: refused before any training, w and b untouched */
static void test_resume_refused(const fixtures *f) {
    const int C = f->C, D = f->D;
    const size_t nw = (size_t)C * D;
    float *w = calloc(nw, sizeof(float)), *b = calloc(C, sizeof(float));
    vit_train_opts o;
    vit_train_opts_default(&o);
    o.epochs = 3;
    o.lr = 0.01f;
    o.val_fraction = 0.2f;
    o.seed = 11;
    ck_state k = {0};
    o.checkpoint = on_checkpoint;
    o.cb_ctx = &k;
    char err[256] = "";
    vit_status st = vit_train_linear(w, b, C, D, f->x, f->y, f->N, &o, NULL, err, sizeof err);
    unsigned char *good = k.at[1];
    size_t len = k.len;
    CHECK(st == VIT_OK && good, "checkpointed run (%s)", err);
    if (!good) { free(w); free(b); ck_free(&k); return; }
    unsigned char *bad = malloc(len + 16);
    vit_train_opts ro = o;
    ro.checkpoint = NULL;
    struct { const char *what, *expect; int kind; } cases[] = {
        {"a flipped payload byte", "checksum", 0}, {"truncated", "imply", 1},
        {"a trailing byte", "imply", 2}, {"another magic", "magic", 3},
        {"format version 2", "version", 4}, {"another byte order", "byte order", 5},
        {"too short", "too short", 6}, {"another seed", "another run", 7},
        {"other examples", "another run", 8}, {"another starting head", "another run", 9},
        {"more epochs", "another run", 10}, {"NULL data", "too short", 11},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        memcpy(bad, good, len);
        size_t blen = len;
        vit_train_opts oo = ro;
        float *x2 = NULL;
        memset(w, 0, sizeof(float) * nw);
        memset(b, 0, sizeof(float) * C);
        switch (cases[c].kind) {
        case 0: bad[len / 2] ^= 0x10; break;
        case 1: blen = len - 4; break;
        case 2: bad[len] = 0; blen = len + 1; break;
        case 3: bad[0] = 'X'; break;
        case 4: bad[8] = 2; break;
        case 5: bad[12] ^= 0xFF; break;
        case 6: blen = 40; break;
        case 7: oo.seed = 12; break;
        case 8: x2 = malloc(sizeof(float) * (size_t)f->N * D);
                memcpy(x2, f->x, sizeof(float) * (size_t)f->N * D);
                x2[5] += 1.f; break;
        case 9: w[3] = 0.5f; break;
        case 10: oo.epochs = 4; break;
        default: break;
        }
        oo.resume = bad;
        oo.resume_len = blen;
        float w3 = w[3];
        err[0] = '\0';
        if (cases[c].kind == 11) {
            vit_train_checkpoint_info info;
            st = vit_train_checkpoint_info_get(NULL, 100, &info, err, sizeof err);
        } else {
            st = vit_train_linear(w, b, C, D, x2 ? x2 : f->x, f->y, f->N, &oo, NULL, err, sizeof err);
        }
        int untouched = w[3] == w3 && w[0] == 0.f && b[0] == 0.f;
        CHECK(st == VIT_E_CHECKPOINT && strstr(err, cases[c].expect) && untouched,
              "checkpoint with %s refused: %s", cases[c].what, err);
        free(x2);
    }
    free(bad);
    free(w);
    free(b);
    ck_free(&k);
}

int main(void) {
    test_gradient();
    fixtures f;
    if (load_fixtures(&f) == 0) {
        CHECK(f.N > 0 && f.C > 1 && f.C <= 16 && f.E <= 64, "fixtures N=%d M=%d D=%d C=%d epochs=%d",
              f.N, f.M, f.D, f.C, f.E);
        test_torch_parity(&f);
        test_training(&f);
        test_resume(&f, VIT_OPT_ADAMW, 0.25f, 32);
        test_resume(&f, VIT_OPT_SGD, 0.f, 50);
        test_resume_refused(&f);
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
