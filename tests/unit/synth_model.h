/* synth_model.h: small random ViTs built in memory (engine/model.h layout) for the forward tests,
 * shared by tests/unit/test_forward.c (CPU vs a float64 reference) and tests/gpu/test_cuda_forward.c
 * (CUDA vs CPU).  Header-only, like harness.h: the test Makefile rules build one source per binary.
 * The random stream is a xorshift64 in synth_rng; a test may reseed it before building.
 *   synth_spec sp = {.D = 64, .L = 2, .H = 4, .M = 128, .P = 4, .S = 16, .C = 3, .classes = 7};
 * (.Sw = 24 makes the input 16 x 24: a non-square 4 x 6 grid.)
 *   vit_model *m = synth_model(&sp);  ... vit_session_new(m, ...) ...  synth_free(m); */
#ifndef VIT_TEST_SYNTH_MODEL_H
#define VIT_TEST_SYNTH_MODEL_H
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "model.h"
#include "util.h"
#include "vit.h"

static unsigned long long synth_rng = 0x2545F4914F6CDD1Dull;

/* uniform in [-1, 1) */
static inline float synth_frand(void) {
    synth_rng ^= synth_rng << 13; synth_rng ^= synth_rng >> 7; synth_rng ^= synth_rng << 17;
    return (float)((synth_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
}

typedef struct {
    const char *name;          /* becomes cfg.architecture (may be NULL) */
    int D, L, H, M, P, S, C;   /* hidden, layers, heads, MLP, patch, image size, channels */
    int classes;
    vit_pooling pool;
    int distilled, pre_logits, fc_norm;
    int Sw;                    /* image width when not S (non-square input), 0: S */
} synth_spec;

/* n values offset + scale * U[-1,1) at *cursor, which moves past them */
static inline float *synth_take(float **cursor, size_t n, float scale, float offset) {
    float *p = *cursor;
    for (size_t i = 0; i < n; i++) p[i] = offset + scale * synth_frand();
    *cursor += n;
    return p;
}

/* a head (classes, dim) with weights ~ U/sqrt(dim), biases ~ 0.1 U; no labels */
static inline vit_head *synth_head(int classes, int dim) {
    vit_head *h = calloc(1, sizeof *h);
    atomic_init(&h->refs, 1);
    h->num_classes = classes;
    h->dim = dim;
    h->w = malloc(sizeof(float) * classes * dim);
    h->b = malloc(sizeof(float) * classes);
    for (int i = 0; i < classes * dim; i++) h->w[i] = synth_frand() / sqrtf((float)dim);
    for (int i = 0; i < classes; i++) h->b[i] = 0.1f * synth_frand();
    return h;
}

static inline void synth_head_free(vit_head *h) {
    if (!h) return;
    free(h->w);
    free(h->b);
    free(h);
}

/* All parameters in one allocation, drawn in checkpoint order; layer norms near 1, the rest
 * scaled so activations stay O(1) through the layers. */
static inline vit_model *synth_model(const synth_spec *sp) {
    vit_model *m = calloc(1, sizeof *m);
    vit_config *c = &m->cfg;
    const int Sw = sp->Sw ? sp->Sw : sp->S;
    int D = sp->D, M = sp->M, G = sp->S / sp->P, Gw = Sw / sp->P, CPP = sp->C * sp->P * sp->P;
    if (sp->name) snprintf(c->architecture, sizeof c->architecture, "%s", sp->name);
    c->image_size = c->trained_image_size = sp->S;
    c->image_h = c->trained_image_h = G * sp->P;
    c->image_w = c->trained_image_w = Gw * sp->P;
    c->patch_size = sp->P;
    c->num_channels = sp->C;
    c->hidden_size = D;
    c->num_layers = sp->L;
    c->num_heads = sp->H;
    c->mlp_size = M;
    c->grid_h = G;
    c->grid_w = Gw;
    c->num_patches = G * Gw;
    c->num_prefix_tokens = sp->distilled ? 2 : 1;
    c->num_tokens = c->num_prefix_tokens + c->num_patches;
    c->layer_norm_eps = 1e-6f;
    c->qkv_bias = 1;
    c->pooling = sp->pool;
    c->has_pre_logits = sp->pre_logits;
    c->distilled = sp->distilled;
    c->feature_dim = sp->distilled || sp->pool == VIT_POOL_CLS_MEAN ? 2 * D : D;
    c->num_classes = sp->classes;
    int T = c->num_tokens;
    /* per layer: ln1 + ln2 (4D), qkv (3DD + 3D), proj (DD + D), fc1 (MD + M), fc2 (DM + D) */
    size_t per_layer = 4 * (size_t)D + 4 * (size_t)D * D + 4 * (size_t)D + 2 * (size_t)M * D + M + D;
    /* patch (D*CPP + D), cls + dist (2D), pos (TD), layers, final norm (2D), pre_logits (DD + D) */
    size_t total = (size_t)D * CPP + 3 * (size_t)D + (size_t)T * D + per_layer * sp->L +
                   3 * (size_t)D + (size_t)D * D;
    m->params = malloc(total * sizeof(float));
    m->params_count = total;
    float *cur = m->params, ws = 1.0f / sqrtf((float)D);
    m->patch_w = synth_take(&cur, (size_t)D * CPP, 0.1f, 0);
    m->patch_b = synth_take(&cur, D, 0.1f, 0);
    m->cls_token = synth_take(&cur, D, 0.5f, 0);
    m->dist_token = synth_take(&cur, D, 0.5f, 0);
    if (!sp->distilled) m->dist_token = NULL;
    m->pos_embed = synth_take(&cur, (size_t)T * D, 0.3f, 0);
    m->layers = calloc((size_t)sp->L, sizeof *m->layers);
    for (int l = 0; l < sp->L; l++) {
        vit_layer_weights *w = &m->layers[l];
        w->ln1_w = synth_take(&cur, D, 0.2f, 1);
        w->ln1_b = synth_take(&cur, D, 0.1f, 0);
        w->qkv_w = synth_take(&cur, 3 * (size_t)D * D, 2 * ws, 0);
        w->qkv_b = synth_take(&cur, 3 * (size_t)D, 0.2f, 0);
        w->proj_w = synth_take(&cur, (size_t)D * D, ws, 0);
        w->proj_b = synth_take(&cur, D, 0.1f, 0);
        w->ln2_w = synth_take(&cur, D, 0.2f, 1);
        w->ln2_b = synth_take(&cur, D, 0.1f, 0);
        w->fc1_w = synth_take(&cur, (size_t)M * D, ws, 0);
        w->fc1_b = synth_take(&cur, M, 0.1f, 0);
        w->fc2_w = synth_take(&cur, (size_t)D * M, 1.0f / sqrtf((float)M), 0);
        w->fc2_b = synth_take(&cur, D, 0.1f, 0);
    }
    /* one final norm: after the tokens (norm) or after pooling (fc_norm) */
    float *nw = synth_take(&cur, D, 0.2f, 1), *nb = synth_take(&cur, D, 0.1f, 0);
    if (sp->fc_norm) { m->fc_norm_w = nw; m->fc_norm_b = nb; }
    else { m->norm_w = nw; m->norm_b = nb; }
    m->pre_logits_w = synth_take(&cur, (size_t)D * D, ws, 0);
    m->pre_logits_b = synth_take(&cur, D, 0.1f, 0);
    if (!sp->pre_logits) m->pre_logits_w = m->pre_logits_b = NULL;
    m->head = synth_head(sp->classes, c->feature_dim);
    return m;
}

static inline void synth_free(vit_model *m) {
    if (!m) return;
    synth_head_free(m->head);
    free(m->layers);
    free(m->params);
    free(m);
}

/* m->calib from a calibration (method mse, `threads` threads, 0 = all) on the B images x, through
 * the calibrator's file as `vit calibrate` writes it; 0, or -1 with the reason in err (the CPU
 * int8 tests and tests/gpu/test_cuda_quant.c) */
static inline int synth_calibrate(vit_model *m, const float *x, int B, int threads, char *err, size_t errlen) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/vitd_synth_calib_%d.json", (int)getpid());
    vit_calibrator *cal = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    err[0] = '\0';
    int ok = vit_calibrator_new(m, VIT_CALIB_MSE, B, threads, &cal, err, errlen) == VIT_OK &&
             vit_calibrator_add(cal, x, B, err, errlen) == VIT_OK &&
             vit_calibrator_write(cal, path, err, errlen) == VIT_OK &&
             vit_read_file(path, 1 << 20, &buf, &len, err, errlen) == VIT_OK &&
             vit_calib_parse(&m->calib, (const char *)buf, len, err, errlen) == VIT_OK;
    vit_calibrator_free(cal);
    free(buf);
    remove(path);
    return ok ? 0 : -1;
}

#endif
