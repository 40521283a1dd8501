/* test_forward.c: the CPU forward pass end to end.
 * Part 1, synthetic: small random models built in memory (synth_model.h) in every
 * variant (CLS, mean pooling + fc_norm, pre_logits, DeiT distilled, [cls; mean], non-square
 * inputs, head dims that take the vector and the generic attention paths), checked against a
 * naive float64 forward written
 * here: logits, features, CLS attention and rollout; batching, argument checks, devices.
 * Part 2, fixtures: every model directory in tests/fixtures/models/ (PyTorch references). */
#include <dirent.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"
#include "cpu/cpu_gemm.h"
#include "harness.h"
#include "model.h"
#include "synth_model.h"
#include "util.h"

static float maxabs(const float *v, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fabsf(v[i]) > m ? fabsf(v[i]) : m;
    return m;
}

/* ---- naive float64 reference --------------------------------------------------------- */

static void ref_ln(double *o, const double *x, const float *w, const float *b, int D, double eps) {
    double mean = 0, var = 0;
    for (int d = 0; d < D; d++) mean += x[d];
    mean /= D;
    for (int d = 0; d < D; d++) var += (x[d] - mean) * (x[d] - mean);
    var /= D;
    for (int d = 0; d < D; d++) o[d] = (x[d] - mean) / sqrt(var + eps) * w[d] + b[d];
}

static void ref_linear(double *o, const double *x, const float *w, const float *b, int out, int in) {
    for (int i = 0; i < out; i++) {
        double a = b ? b[i] : 0;
        for (int k = 0; k < in; k++) a += (double)w[(size_t)i * in + k] * x[k];
        o[i] = a;
    }
}

/* one image: input (C,H,W) -> logits (classes), features (F), cls (NP), rollout (NP) */
static void ref_forward(const vit_model *m, const float *img, const vit_head *head, float *logits,
                        float *feat, float *cls, float *roll) {
    const vit_config *c = &m->cfg;
    int D = c->hidden_size, T = c->num_tokens, H = c->num_heads, hd = D / H, M = c->mlp_size;
    int P = c->patch_size, G = c->grid_w, Hi = c->grid_h * P, Wi = G * P, np = c->num_prefix_tokens;
    double *x = calloc((size_t)T * D, sizeof(double)), *ln = calloc((size_t)T * D, sizeof(double));
    double *qkv = calloc((size_t)T * 3 * D, sizeof(double)), *ao = calloc((size_t)T * D, sizeof(double));
    double *hbuf = calloc((size_t)M, sizeof(double)), *tmp = calloc((size_t)D, sizeof(double));
    double *A = calloc((size_t)T * T, sizeof(double)), *R = calloc((size_t)T * T, sizeof(double));
    double *R2 = calloc((size_t)T * T, sizeof(double)), *s = calloc((size_t)T, sizeof(double));
    for (int t = 0; t < T; t++)
        for (int d = 0; d < D; d++) {
            double v;
            if (t < np) v = (t == 0 ? m->cls_token : m->dist_token)[d];
            else {
                int p = t - np, gy = p / G, gx = p % G;
                v = m->patch_b[d];
                for (int ch = 0; ch < c->num_channels; ch++)
                    for (int ky = 0; ky < P; ky++)
                        for (int kx = 0; kx < P; kx++)
                            v += (double)m->patch_w[(((size_t)d * c->num_channels + ch) * P + ky) * P + kx] *
                                 img[((size_t)ch * Hi + gy * P + ky) * Wi + gx * P + kx];
            }
            x[(size_t)t * D + d] = v + m->pos_embed[(size_t)t * D + d];
        }
    for (int i = 0; i < T; i++) R[(size_t)i * T + i] = 1;
    for (int l = 0; l < c->num_layers; l++) {
        const vit_layer_weights *L = &m->layers[l];
        for (int t = 0; t < T; t++) {
            ref_ln(ln + (size_t)t * D, x + (size_t)t * D, L->ln1_w, L->ln1_b, D, c->layer_norm_eps);
            ref_linear(qkv + (size_t)t * 3 * D, ln + (size_t)t * D, L->qkv_w, L->qkv_b, 3 * D, D);
        }
        memset(A, 0, sizeof(double) * T * T);
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                double mx = -1e300, sum = 0;
                for (int j = 0; j < T; j++) {
                    double a = 0;
                    for (int d = 0; d < hd; d++)
                        a += qkv[(size_t)i * 3 * D + h * hd + d] * qkv[(size_t)j * 3 * D + D + h * hd + d];
                    s[j] = a / sqrt((double)hd);
                    mx = s[j] > mx ? s[j] : mx;
                }
                for (int j = 0; j < T; j++) { s[j] = exp(s[j] - mx); sum += s[j]; }
                for (int j = 0; j < T; j++) { s[j] /= sum; A[(size_t)i * T + j] += s[j] / H; }
                for (int d = 0; d < hd; d++) {
                    double o = 0;
                    for (int j = 0; j < T; j++) o += s[j] * qkv[(size_t)j * 3 * D + 2 * D + h * hd + d];
                    ao[(size_t)i * D + h * hd + d] = o;
                }
            }
        for (int t = 0; t < T; t++) {
            ref_linear(tmp, ao + (size_t)t * D, L->proj_w, L->proj_b, D, D);
            for (int d = 0; d < D; d++) x[(size_t)t * D + d] += tmp[d];
            ref_ln(ln + (size_t)t * D, x + (size_t)t * D, L->ln2_w, L->ln2_b, D, c->layer_norm_eps);
            ref_linear(hbuf, ln + (size_t)t * D, L->fc1_w, L->fc1_b, M, D);
            for (int k = 0; k < M; k++) hbuf[k] = 0.5 * hbuf[k] * (1 + erf(hbuf[k] / sqrt(2.0)));
            ref_linear(tmp, hbuf, L->fc2_w, L->fc2_b, D, M);
            for (int d = 0; d < D; d++) x[(size_t)t * D + d] += tmp[d];
        }
        if (l == c->num_layers - 1)
            for (int p = 0; p < c->num_patches; p++) cls[p] = (float)A[np + p];
        for (int i = 0; i < T; i++) {
            double sum = 0;
            for (int j = 0; j < T; j++) { A[(size_t)i * T + j] = 0.5 * A[(size_t)i * T + j] + (i == j) * 0.5; sum += A[(size_t)i * T + j]; }
            for (int j = 0; j < T; j++) A[(size_t)i * T + j] /= sum;
        }
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++) {
                double a = 0;
                for (int k = 0; k < T; k++) a += A[(size_t)i * T + k] * R[(size_t)k * T + j];
                R2[(size_t)i * T + j] = a;
            }
        memcpy(R, R2, sizeof(double) * T * T);
    }
    for (int p = 0; p < c->num_patches; p++) roll[p] = (float)R[np + p];
    int F = c->feature_dim;
    double *f = calloc((size_t)F, sizeof(double)), *f2 = calloc((size_t)F, sizeof(double));
    if (c->pooling == VIT_POOL_CLS) {
        for (int t = 0; t < (c->distilled ? 2 : 1); t++) {
            if (m->norm_w) ref_ln(f + (size_t)t * D, x + (size_t)t * D, m->norm_w, m->norm_b, D, c->layer_norm_eps);
            else memcpy(f + (size_t)t * D, x + (size_t)t * D, sizeof(double) * D);
        }
    } else {   /* the mean of the patch rows; [cls; mean]: after the class token's row */
        double *fm = f;
        if (c->pooling == VIT_POOL_CLS_MEAN) {
            if (m->norm_w) ref_ln(f, x, m->norm_w, m->norm_b, D, c->layer_norm_eps);
            else memcpy(f, x, sizeof(double) * D);
            fm = f + D;
        }
        for (int t = np; t < T; t++) {
            if (m->norm_w) ref_ln(tmp, x + (size_t)t * D, m->norm_w, m->norm_b, D, c->layer_norm_eps);
            else memcpy(tmp, x + (size_t)t * D, sizeof(double) * D);
            for (int d = 0; d < D; d++) fm[d] += tmp[d] / (T - np);
        }
    }
    if (m->fc_norm_w) { memcpy(tmp, f, sizeof(double) * D); ref_ln(f, tmp, m->fc_norm_w, m->fc_norm_b, D, c->layer_norm_eps); }
    if (c->has_pre_logits) {
        ref_linear(f2, f, m->pre_logits_w, m->pre_logits_b, D, D);
        for (int d = 0; d < D; d++) f[d] = tanh(f2[d]);
    }
    for (int i = 0; i < F; i++) feat[i] = (float)f[i];
    double *lg = calloc((size_t)head->num_classes, sizeof(double));
    ref_linear(lg, f, head->w, head->b, head->num_classes, F);
    for (int i = 0; i < head->num_classes; i++) logits[i] = (float)lg[i];
    free(x); free(ln); free(qkv); free(ao); free(hbuf); free(tmp); free(A); free(R); free(R2);
    free(s); free(f); free(f2); free(lg);
}

/* ---- checks ------------------------------------------------------------------------ */

/* Runs B images x (B, img) through s with every output asked for and compares them with the
 * reference: logits rlg (B,K) and features rft (B,F) within 1e-4 of their scale, attn_cls rac
 * and rollout rro (B,NP) within 1e-5; then the batch against its images run one by one.  The
 * check names are "<tag> logits<suffix>", ...  lg (B,K) receives the batch's logits. */
static void check_outputs(vit_session *s, const char *tag, const char *suffix, const float *x,
                          size_t img, int B, int K, int F, int NP, const float *rlg,
                          const float *rft, const float *rac, const float *rro, float *lg) {
    float *ft = calloc((size_t)B * F, 4), *ac = calloc((size_t)B * NP, 4),
          *ro = calloc((size_t)B * NP, 4), *one = calloc((size_t)B * K, 4);
    vit_outputs out = {.logits = lg, .features = ft, .attn_cls = ac, .attn_rollout = ro};
    vit_status st = vit_forward(s, x, B, NULL, &out);
    CHECK(st == VIT_OK, "%s: forward (%s)", tag, vit_session_errmsg(s));
    char n[200];
    snprintf(n, sizeof n, "%s logits%s", tag, suffix);
    CHECK_CLOSE(lg, rlg, (size_t)B * K, 1e-4f * maxabs(rlg, (size_t)B * K), n);
    snprintf(n, sizeof n, "%s features%s", tag, suffix);
    CHECK_CLOSE(ft, rft, (size_t)B * F, 1e-4f * maxabs(rft, (size_t)B * F), n);
    snprintf(n, sizeof n, "%s attn_cls%s", tag, suffix);
    CHECK_CLOSE(ac, rac, (size_t)B * NP, 1e-5f, n);
    snprintf(n, sizeof n, "%s rollout%s", tag, suffix);
    CHECK_CLOSE(ro, rro, (size_t)B * NP, 1e-5f, n);

    /* a batch equals its images run one by one, with only logits asked for */
    int ok = 1;
    for (int b = 0; b < B && ok; b++) {
        vit_outputs o1 = {.logits = one + (size_t)b * K};
        ok = vit_forward(s, x + b * img, 1, NULL, &o1) == VIT_OK;
    }
    snprintf(n, sizeof n, "%s batch of %d == %d batches of 1", tag, B, B);
    CHECK(ok, "%s: single forwards", tag);
    CHECK_CLOSE(one, lg, (size_t)B * K, 1e-5f * maxabs(rlg, (size_t)B * K), n);
    free(ft); free(ac); free(ro); free(one);
}

static void check_synth(const char *name, const synth_spec *sp, int threads, int B) {
    vit_model *m = synth_model(sp);
    const vit_config *c = &m->cfg;
    int NP = c->num_patches, F = c->feature_dim, K = sp->classes;
    size_t img = (size_t)sp->C * (c->grid_h * sp->P) * (c->grid_w * sp->P);
    float *x = malloc(sizeof(float) * B * img);
    for (size_t i = 0; i < B * img; i++) x[i] = synth_frand();
    float *lg = malloc(sizeof(float) * B * K);
    float *rlg = malloc(sizeof(float) * B * K), *rft = malloc(sizeof(float) * B * F),
          *rac = malloc(sizeof(float) * B * NP), *rro = malloc(sizeof(float) * B * NP);
    for (int b = 0; b < B; b++)
        ref_forward(m, x + b * img, m->head, rlg + b * K, rft + b * F, rac + b * NP, rro + b * NP);

    vit_session *s = NULL;
    char err[256];
    vit_session_opts so = {.max_batch = B, .threads = threads, .device = VIT_DEVICE_CPU};
    vit_status st = vit_session_new(m, &so, &s, err, sizeof err);
    CHECK(st == VIT_OK, "%s: session_new (%s)", name, st ? err : "ok");
    if (st == VIT_OK) {
        char tag[128];
        snprintf(tag, sizeof tag, "%s threads=%d", name, threads);
        check_outputs(s, tag, "", x, img, B, K, F, NP, rlg, rft, rac, rro, lg);
    }
    vit_session_free(s);
    free(x); free(lg); free(rlg); free(rft); free(rac); free(rro);
    synth_free(m);
}

static void check_api(void) {
    synth_spec sp = {.D = 32, .L = 1, .H = 2, .M = 48, .P = 4, .S = 8, .C = 3, .classes = 4};
    vit_model *m = synth_model(&sp);
    char err[256] = "";
    vit_session *s = NULL;
    vit_session_opts so = {.max_batch = 2, .threads = 1, .device = VIT_DEVICE_CPU};
    CHECK(vit_session_new(m, &so, &s, err, sizeof err) == VIT_OK, "session_new cpu");
    CHECK(vit_session_device(s) == VIT_DEVICE_CPU && vit_session_precision(s) == VIT_PREC_FP32 &&
              vit_session_max_batch(s) == 2, "session reports cpu, fp32, max_batch 2");
    float x[3 * 3 * 8 * 8] = {0}, lg[3 * 4];
    vit_outputs out = {.logits = lg};
    CHECK(vit_forward(s, x, 3, NULL, &out) == VIT_E_ARG && strstr(vit_session_errmsg(s), "batch"),
          "B > max_batch rejected: %s", vit_session_errmsg(s));
    CHECK(vit_forward(s, x, 0, NULL, &out) == VIT_E_ARG, "B = 0 rejected");
    CHECK(vit_forward(s, NULL, 1, NULL, &out) == VIT_E_ARG, "NULL input rejected");
    /* a head of another width is refused; a head of the right width replaces the model's */
    vit_head bad = {.num_classes = 2, .dim = 31, .w = lg, .b = lg};
    atomic_init(&bad.refs, 1);
    CHECK(vit_forward(s, x, 1, &bad, &out) == VIT_E_ARG, "head of the wrong dim rejected: %s",
          vit_session_errmsg(s));
    float hw[2 * 32], hb[2] = {0.5f, -0.25f}, feat[32], lg2[2];
    for (int i = 0; i < 64; i++) hw[i] = synth_frand();
    vit_head good = {.num_classes = 2, .dim = 32, .w = hw, .b = hb};
    atomic_init(&good.refs, 1);
    vit_outputs o2 = {.logits = lg2, .features = feat};
    CHECK(vit_forward(s, x, 1, &good, &o2) == VIT_OK, "head override runs");
    float want[2];
    for (int k = 0; k < 2; k++) {
        double a = hb[k];
        for (int d = 0; d < 32; d++) a += (double)hw[k * 32 + d] * feat[d];
        want[k] = (float)a;
    }
    CHECK_CLOSE(lg2, want, 2, 1e-5f, "head override logits = W . features + b");
    vit_outputs none = {0};
    CHECK(vit_forward(s, x, 1, NULL, &none) == VIT_OK, "forward with no outputs asked");
    vit_session_free(s);
    vit_session_free(NULL);

    so.device = VIT_DEVICE_CUDA;
    s = (vit_session *)1;
    vit_status st = vit_session_new(m, &so, &s, err, sizeof err);
#ifdef VIT_HAVE_CUDA
    if (vit_cuda_device_count() > 0) {
        SKIP("device cuda error: a GPU is present");
        vit_session_free(s);
    } else
#endif
        CHECK(st == VIT_E_DEVICE && s == NULL && strstr(err, "cuda"),
              "device cuda without a GPU -> VIT_E_DEVICE: %s", err);
#ifdef VIT_HAVE_CUDA
    if (vit_cuda_device_count() > 0) {
        so.precision = VIT_PREC_FP32;
        CHECK(vit_session_new(m, &so, &s, err, sizeof err) == VIT_E_ARG && s == NULL,
              "cuda + fp32 refused, never run as fp16 silently: %s", err);
    }
#endif
    so.device = VIT_DEVICE_CPU;
    so.precision = VIT_PREC_FP32;
    CHECK(vit_session_new(m, &so, &s, err, sizeof err) == VIT_OK &&
              vit_session_precision(s) == VIT_PREC_FP32, "cpu + explicit fp32 accepted");
    vit_session_free(s);
    so.precision = (vit_precision)7;
    CHECK(vit_session_new(m, &so, &s, err, sizeof err) == VIT_E_ARG, "unknown precision rejected: %s", err);
    so.precision = VIT_PREC_FP16;
    CHECK(vit_session_new(m, &so, &s, err, sizeof err) == VIT_E_ARG, "cpu + fp16 rejected: %s", err);
    so.device = VIT_DEVICE_AUTO;
    if (vit_session_new(m, &so, &s, err, sizeof err) == VIT_OK) {
        CHECK(vit_session_device(s) == VIT_DEVICE_CUDA ||
                  vit_session_precision(s) == VIT_PREC_FP32,
              "auto on the cpu falls back to fp32");
        vit_session_free(s);
    } else {
        CHECK(0, "auto session: %s", err);
    }
    so = (vit_session_opts){.max_batch = 0, .device = VIT_DEVICE_CPU};
    CHECK(vit_session_new(m, &so, &s, err, sizeof err) == VIT_E_ARG, "max_batch 0 rejected");
    synth_free(m);
}

/* ---- part 2: PyTorch fixtures ------------------------------------------------------- */

#define FIXTURES "tests/fixtures/models"

static float *load_ref(const char *dir, const char *name, size_t want) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    float *d;
    int64_t shape[8];
    int nd;
    char err[256];
    if (vit_npy_read(path, &d, shape, &nd, err, sizeof err) != VIT_OK) {
        CHECK(0, "read %s: %s", path, err);
        return NULL;
    }
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)shape[i];
    if (want && n != want) {
        CHECK(0, "%s: %zu values, expected %zu", path, n, want);
        free(d);
        return NULL;
    }
    return d;
}

/* one model dir + one reference dir (ref/ at the trained size, ref_s48/ at 48) */
static void check_fixture(const char *name, const char *refdir_name, int image_size) {
    char dir[512], ref[600];
    snprintf(dir, sizeof dir, FIXTURES "/%s", name);
    snprintf(ref, sizeof ref, "%s/%s", dir, refdir_name);
    char err[256] = "";
    vit_model *m = NULL;
    vit_load_opts lo = {.image_size = image_size};
    vit_status st = vit_model_load(dir, &lo, &m, err, sizeof err);
    CHECK(st == VIT_OK, "%s: load (%s)", name, st ? err : "ok");
    if (st) return;
    const vit_config *c = vit_model_config(m);
    int B = 2, NP = c->num_patches, F = c->feature_dim, K = c->num_classes;
    size_t img = (size_t)c->num_channels * c->grid_h * c->patch_size * c->grid_w * c->patch_size;
    float *x = load_ref(ref, "input.npy", B * img);
    float *rl = load_ref(ref, "logits.npy", (size_t)B * K), *rf = load_ref(ref, "features.npy", (size_t)B * F);
    float *ra = load_ref(ref, "attn_cls.npy", (size_t)B * NP), *rr = load_ref(ref, "rollout.npy", (size_t)B * NP);
    float *lg = calloc((size_t)B * K, 4);
    vit_session *s = NULL;
    vit_session_opts so = {.max_batch = B, .threads = 2, .device = VIT_DEVICE_CPU};
    if (x && rl && rf && ra && rr &&
        vit_session_new(m, &so, &s, err, sizeof err) == VIT_OK) {
        char n[160];
        snprintf(n, sizeof n, "%s/%s", name, refdir_name);
        check_outputs(s, n, " vs PyTorch", x, img, B, K, F, NP, rl, rf, ra, rr, lg);

        /* a head from vit_head_new (3 new classes over the same features) replaces the model's */
        float *hw = malloc(sizeof(float) * 3 * F), hb[3] = {0.1f, -0.2f, 0.3f}, lg3[2 * 3], want[2 * 3];
        for (int i = 0; i < 3 * F; i++) hw[i] = synth_frand();
        const char *labels[3] = {"a", "b", "c"};
        vit_head *h = NULL;
        st = vit_head_new(3, F, hw, hb, labels, &h);
        CHECK(st == VIT_OK, "%s: vit_head_new", name);
        if (h) {
            vit_outputs o3 = {.logits = lg3};
            CHECK(vit_forward(s, x, B, h, &o3) == VIT_OK, "%s: forward with a new head", name);
            for (int b = 0; b < B; b++)
                for (int k = 0; k < 3; k++) {
                    double a = hb[k];
                    for (int d = 0; d < F; d++) a += (double)hw[k * F + d] * rf[(size_t)b * F + d];
                    want[b * 3 + k] = (float)a;
                }
            snprintf(n, sizeof n, "%s/%s new head logits = W . features + b", name, refdir_name);
            CHECK_CLOSE(lg3, want, 6, 1e-4f * (1 + maxabs(want, 6)), n);
            vit_head_release(h);
        }
        free(hw);
        if (B + 1 > so.max_batch) {
            vit_outputs o4 = {.logits = lg};
            CHECK(vit_forward(s, x, B + 1, NULL, &o4) == VIT_E_ARG, "%s: B > max_batch rejected", name);
        }
    } else if (x && rl && rf && ra && rr) {
        CHECK(0, "%s: session_new: %s", name, err);
    }
    vit_session_free(s);
    vit_model_free(m);
    free(x); free(rl); free(rf); free(ra); free(rr); free(lg);
}

static void check_fixtures(void) {
    DIR *d = opendir(FIXTURES);
    if (!d) {
        CHECK(0, "no fixture directory " FIXTURES " (run from the repository root)");
        return;
    }
    char names[64][256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64) {
        if (e->d_name[0] == '.') continue;
        char p[512];
        struct stat sb;
        if (strlen(e->d_name) > 200) continue;
        snprintf(p, sizeof p, FIXTURES "/%.200s/ref", e->d_name);
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    }
    closedir(d);
    CHECK(n >= 3, "found %d fixture models", n);
    for (int i = 0; i < n; i++) {
        check_fixture(names[i], "ref", 0);
        char p[512];
        struct stat sb;
        static const int other[] = {48, 56};   /* ref_sN: run at N x N, position embeddings resampled */
        for (size_t k = 0; k < sizeof other / sizeof other[0]; k++) {
            char sub[32];
            snprintf(sub, sizeof sub, "ref_s%d", other[k]);
            snprintf(p, sizeof p, FIXTURES "/%.200s/%s", names[i], sub);
            if (stat(p, &sb) == 0) check_fixture(names[i], sub, other[k]);
        }
    }
}

int main(void) {
    synth_spec base = {.D = 64, .L = 3, .H = 4, .M = 128, .P = 4, .S = 16, .C = 3, .classes = 7,
                       .pool = VIT_POOL_CLS};
    check_synth("synthetic cls hd=16", &base, 1, 3);
    check_synth("synthetic cls hd=16", &base, 2, 3);
    synth_spec g = base;
    g.D = 40; g.H = 5; /* hd = 8: generic attention path */
    check_synth("synthetic cls hd=8", &g, 2, 3);
    synth_spec h32 = base;
    h32.H = 2; h32.S = 32; h32.L = 2; /* hd = 32, 65 tokens: 32-wide attention blocks + a 16 tail */
    check_synth("synthetic cls hd=32", &h32, 2, 3);
    synth_spec mean = base;
    mean.pool = VIT_POOL_MEAN; mean.fc_norm = 1; mean.L = 2;
    check_synth("synthetic mean+fc_norm", &mean, 2, 3);
    synth_spec pl = base;
    pl.pre_logits = 1; pl.L = 2;
    check_synth("synthetic pre_logits", &pl, 2, 3);
    synth_spec dist = base;
    dist.distilled = 1; dist.L = 2;
    check_synth("synthetic distilled", &dist, 2, 3);
    synth_spec rect = base;
    rect.Sw = 24; rect.L = 2;   /* 16 x 24: a 4 x 6 grid */
    check_synth("synthetic cls non-square", &rect, 2, 3);
    synth_spec cm = rect;
    cm.pool = VIT_POOL_CLS_MEAN;   /* [cls; mean], DINOv2's head: features 2D */
    check_synth("synthetic [cls; mean] non-square", &cm, 2, 3);
    cm.Sw = 0;
    check_synth("synthetic [cls; mean]", &cm, 1, 3);
    synth_spec tall = base;
    tall.S = 32; tall.L = 2; /* 65 tokens x 8 images = 520 rows: GEMMs split by rows */
    check_synth("synthetic 520-row batch", &tall, 2, 8); /* 4 images per thread: image-parallel */
    /* both ways of using the threads on the same shapes (see cpu_forward): operator-parallel
       (GEMMs split by rows at 520 rows), and image-parallel with uneven groups */
    setenv("VIT_CPU_PARALLEL", "ops", 1);
    check_synth("synthetic 520-row batch, operator-parallel", &tall, 2, 8);
    setenv("VIT_CPU_PARALLEL", "images", 1);
    check_synth("synthetic cls hd=16, image-parallel 2+1", &base, 2, 3);
    check_synth("synthetic mean+fc_norm, image-parallel 1+1+1", &mean, 3, 3);
    check_synth("synthetic distilled, image-parallel", &dist, 2, 5);
    unsetenv("VIT_CPU_PARALLEL");
    /* the other GEMM too: OpenBLAS where the own AVX-512 one is the default, and back */
    const char *other = vit_gemm_avx512_preferred() ? "openblas" : "avx512";
    if (strcmp(other, "avx512") != 0 || vit_gemm_avx512_available()) {
        setenv("VIT_GEMM", other, 1);
        char n[64];
        snprintf(n, sizeof n, "synthetic gemm=%s", other);
        check_synth(n, &tall, 2, 8);
        unsetenv("VIT_GEMM");
    }
    check_api();
    check_fixtures();
    return TEST_SUMMARY();
}
