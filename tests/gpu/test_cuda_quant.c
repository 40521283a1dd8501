/* test_cuda_quant.c: the CUDA backend at precision int8 and fp8 (cuBLASLt IMMA / E4M3 GEMMs in
 * the encoder Linears, kernels/quant.cuh around them) against the CPU, end to end through the
 * public API.  Needs a GPU; run by bench/gpu_check.sh (never run yet: written without one).
 * Each synthetic model is calibrated first (vit_calibrator, method mse, on the test's own
 * inputs), then:
 * - cuda int8 vs the CPU's calibrated int8 (the same scales, weights and rounding; the GPU's
 *   residual stream and attention output are FP16, the CPU's FP32 (the LayerNorm outputs are
 *   quantized from FP32 on both), so a quantized value may land one step apart): logits within 2e-2 of the largest logit, top-1 identical where the CPU's
 *   top-2 margin is above that;
 * - cuda int8 and fp8 vs CPU fp32: logits within 4 L steps of the type's grid (1/127 INT8,
 *   1/16 E4M3) of the largest logit, as the CPU int8 tests bound it;
 * - every output works in every precision: features, CLS attention and rollout maps (1e-2),
 *   FP16 input (bit-identical to FP32 input of the same values), graph replay (the second run
 *   identical to the first), sub-batches (VIT_CUDA_SUBBATCH=2: identical to whole batches);
 * - vit_session_precision says int8 / fp8; an uncalibrated model is refused (VIT_E_ARG);
 *   fp8 below sm_89 is VIT_E_DEVICE (reported as skipped).
 *   VITD_GPU_QUICK=1   the small models only (for compute-sanitizer) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "harness.h"
#include "model.h"
#include "synth_model.h"
#include "util.h"

static float maxabs(const float *v, size_t n) {
    float m = 0.f;
    for (size_t i = 0; i < n; i++) m = fabsf(v[i]) > m ? fabsf(v[i]) : m;
    return m;
}

static int calibrate(vit_model *m, const float *x, int B) {
    char err[256];
    const int ok = synth_calibrate(m, x, B, 0, err, sizeof err) == 0;
    CHECK(ok, "calibrate: %s", ok ? "ok" : err);
    return ok;
}

static vit_session *open_session(const vit_model *m, vit_device d, vit_precision p, int maxB,
                                 vit_status *st) {
    char err[256] = "";
    vit_session_opts so = {.max_batch = maxB, .device = d, .precision = p};
    vit_session *s = NULL;
    *st = vit_session_new(m, &so, &s, err, sizeof err);
    if (*st != VIT_OK && *st != VIT_E_DEVICE) CHECK(0, "session %s: %s", vit_precision_str(p), err);
    if (*st == VIT_E_DEVICE) SKIP("%s on cuda: %s", vit_precision_str(p), err);
    return s;
}

typedef struct { float *l, *f, *c, *r; } outs;

static int fwd(vit_session *s, const float *x, const uint16_t *xh, int B, outs *o, int C, int F,
               int NP) {
    o->l = calloc((size_t)B * C, 4); o->f = calloc((size_t)B * F, 4);
    o->c = calloc((size_t)B * NP, 4); o->r = calloc((size_t)B * NP, 4);
    vit_outputs vo = {o->l, o->f, o->c, o->r};
    return (xh ? vit_forward_f16(s, xh, B, NULL, &vo) : vit_forward(s, x, B, NULL, &vo)) == VIT_OK;
}
static void outs_free(outs *o) { free(o->l); free(o->f); free(o->c); free(o->r); }

static void test_model(const synth_spec *sp, int B) {
    vit_model *m = synth_model(sp);
    const vit_config *c = &m->cfg;
    const int C = c->num_classes, F = c->feature_dim, NP = c->num_patches, L = c->num_layers;
    const size_t img = (size_t)3 * c->image_size * c->image_size;
    float *x = malloc(sizeof(float) * B * img);
    uint16_t *xh = malloc(sizeof(uint16_t) * B * img);
    for (size_t i = 0; i < B * img; i++) x[i] = synth_frand();
    vit_f32_to_f16(x, xh, B * img);
    vit_f16_to_f32(xh, x, B * img);   /* x = the FP16 values: the two inputs are the same */
    vit_status st;
    vit_session *g = open_session(m, VIT_DEVICE_CUDA, VIT_PREC_INT8, B, &st);
    CHECK(!g && st == VIT_E_ARG, "%s: cuda int8 without a calibration refused", sp->name);
    vit_session_free(g);
    if (!calibrate(m, x, B)) { synth_free(m); free(x); free(xh); return; }
    outs r32, r8;
    vit_session *c32 = open_session(m, VIT_DEVICE_CPU, VIT_PREC_FP32, B, &st);
    vit_session *c8 = open_session(m, VIT_DEVICE_CPU, VIT_PREC_INT8, B, &st);
    int ok = c32 && c8 && fwd(c32, x, NULL, B, &r32, C, F, NP) && fwd(c8, x, NULL, B, &r8, C, F, NP);
    CHECK(ok, "%s: cpu fp32 and calibrated int8 forwards", sp->name);
    const float scale = ok ? maxabs(r32.l, (size_t)B * C) : 1.f;
    for (int p = VIT_PREC_INT8; ok && p <= VIT_PREC_FP8; p++) {
        const char *pn = vit_precision_str((vit_precision)p);
        g = open_session(m, VIT_DEVICE_CUDA, (vit_precision)p, B, &st);
        if (!g) continue;
        CHECK(vit_session_precision(g) == (vit_precision)p, "%s %s: session says %s", sp->name, pn,
              vit_precision_str(vit_session_precision(g)));
        outs a, b, h;
        int ran = fwd(g, x, NULL, B, &a, C, F, NP) && fwd(g, x, NULL, B, &b, C, F, NP) &&
                  fwd(g, NULL, xh, B, &h, C, F, NP);
        CHECK(ran, "%s %s: forwards (fp32 input twice, fp16 input): %s", sp->name, pn, vit_session_errmsg(g));
        if (ran) {
            const float step = p == VIT_PREC_INT8 ? 1.f / 127.f : 1.f / 16.f;
            float d32 = th_maxdiff(a.l, r32.l, (size_t)B * C), tol32 = 4.f * L * step * scale;
            CHECK(d32 <= tol32, "%s cuda %s vs cpu fp32 logits maxdiff=%.3g tol=%.3g", sp->name, pn, d32, tol32);
            if (p == VIT_PREC_INT8) {
                float d8 = th_maxdiff(a.l, r8.l, (size_t)B * C);
                CHECK(d8 <= 2e-2f * scale, "%s cuda int8 vs cpu calibrated int8 logits maxdiff=%.3g tol=%.3g",
                      sp->name, d8, 2e-2f * scale);
            }
            CHECK(!memcmp(a.l, b.l, sizeof(float) * B * C), "%s %s: graph replay == first (eager) run", sp->name, pn);
            CHECK(!memcmp(a.l, h.l, sizeof(float) * B * C) && !memcmp(a.f, h.f, sizeof(float) * B * F),
                  "%s %s: fp16 input == fp32 input of the same values", sp->name, pn);
            CHECK(th_maxdiff(a.c, r32.c, (size_t)B * NP) <= 1e-2f && th_maxdiff(a.r, r32.r, (size_t)B * NP) <= 1e-2f,
                  "%s %s: attention maps within 1e-2 of fp32 (cls %.3g, rollout %.3g)", sp->name, pn,
                  th_maxdiff(a.c, r32.c, (size_t)B * NP), th_maxdiff(a.r, r32.r, (size_t)B * NP));
            outs_free(&b); outs_free(&h);
            setenv("VIT_CUDA_SUBBATCH", "2", 1);
            vit_session *gs = open_session(m, VIT_DEVICE_CUDA, (vit_precision)p, B, &st);
            unsetenv("VIT_CUDA_SUBBATCH");
            outs sb;
            if (gs && fwd(gs, x, NULL, B, &sb, C, F, NP))
                CHECK(th_maxdiff(sb.l, a.l, (size_t)B * C) <= 1e-3f * scale,
                      "%s %s: sub-batches of 2 match whole batches (maxdiff %.3g)", sp->name, pn,
                      th_maxdiff(sb.l, a.l, (size_t)B * C));
            if (gs) outs_free(&sb);
            vit_session_free(gs);
        }
        if (ran) outs_free(&a);
        vit_session_free(g);
    }
    if (ok) { outs_free(&r32); outs_free(&r8); }
    vit_session_free(c32);
    vit_session_free(c8);
    vit_calib_free(&m->calib);
    synth_free(m);
    free(x);
    free(xh);
}

int main(void) {
    if (vit_cuda_device_count() <= 0) {
        SKIP("no CUDA device");
        return TEST_SUMMARY();
    }
    synth_rng = 0x51A7E5EEDull;
    const synth_spec small[] = {
        {"small-cls", 64, 2, 4, 128, 8, 64, 3, 10, VIT_POOL_CLS, 0, 0, 0, 0},
        {"small-mean-fcnorm", 64, 2, 2, 96, 8, 48, 3, 7, VIT_POOL_MEAN, 0, 0, 1, 0},
        {"small-distilled", 96, 2, 6, 192, 8, 48, 3, 6, VIT_POOL_CLS, 1, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) test_model(&small[i], 5);
    if (!(getenv("VITD_GPU_QUICK") && atoi(getenv("VITD_GPU_QUICK")))) {
        const synth_spec vitb = {"vitb16-2layer", 768, 2, 12, 3072, 16, 224, 3, 1000, VIT_POOL_CLS, 0, 0, 0, 0};
        test_model(&vitb, 8);
    }
    return TEST_SUMMARY();
}
