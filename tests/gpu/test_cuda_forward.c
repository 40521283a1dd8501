/* test_cuda_forward.c: the CUDA backend (FP16) against the CPU backend (FP32, the reference) end
 * to end through the public API.  Needs a GPU; run by bench/gpu_check.sh.
 * Part 1, synthetic models built in memory: a ViT-B/16-shaped one (T = 197, head dim 64: the
 *   WMMA attention path) and small variants (mean pooling + fc_norm, pre_logits, DeiT distilled,
 *   then non-square inputs with CLS, [cls; mean] (DINOv2's head, head dim 64) and mean pooling);
 *   batches that hit a bucket exactly and ones that don't, graph replay == eager first run, a head
 *   swap (another head object, other class count) and back, then the exact-erf GELU mode and the
 *   WMMA attention kernel (VIT_CUDA_ATTN=wmma; the default is the mma.sync one) on the ViT-B-shaped model.
 * Part 2, fixtures: every tests/fixtures/models/DIR with ref/input.npy (one-channel, LayerScale,
 * register-token, non-square and [cls; mean]-pooled models included); the non-square and
 * [cls; mean] ones also at a larger square size, their position embeddings resampled at load
 * (timm's resample_abs_pos_embed, which the CUDA session uploads as is; a transformers Dinov2
 * model is refused at load for both backends, which the test checks).
 * FP16 input (vit_forward_f16): on every synthetic model, bucket and the sub-batched session, logits
 *   and features bit-identical to FP32 input of the same values (maps within 1e-5: atomics).
 * Checks: logits max|diff| <= 1e-2 * max|logit_cpu| per image; identical top-1 (on synthetic
 * models only where the CPU's top-2 margin exceeds the tolerance); features 1e-2 relative;
 * attention maps (CLS row and rollout) within 1e-3 absolute.
 *   VITD_GPU_QUICK=1   small models only (for compute-sanitizer)
 *   VITD_FIXTURES=DIR  fixture root (default tests/fixtures/models) */
#include <dirent.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "harness.h"
#include "model.h"
#include "synth_model.h"
#include "util.h"

typedef struct {
    float *logits, *feat, *cls, *roll;
} outs;

static outs outs_new(int B, int C, int F, int NP) {
    outs o = {calloc((size_t)B * C, 4), calloc((size_t)B * F, 4), calloc((size_t)B * NP, 4),
              calloc((size_t)B * NP, 4)};
    return o;
}
static void outs_free(outs *o) { free(o->logits); free(o->feat); free(o->cls); free(o->roll); }

static vit_status run(vit_session *s, const float *x, int B, const vit_head *h, outs *o, int maps) {
    vit_outputs vo = {o->logits, o->feat, maps ? o->cls : NULL, maps ? o->roll : NULL};
    return vit_forward(s, x, B, h, &vo);
}

static vit_status run16(vit_session *s, const uint16_t *x, int B, const vit_head *h, outs *o, int maps) {
    vit_outputs vo = {o->logits, o->feat, maps ? o->cls : NULL, maps ? o->roll : NULL};
    return vit_forward_f16(s, x, B, h, &vo);
}

/* FP16 input against FP32 input of the same values (xr = xh widened) on one CUDA session: the GPU
 * rounds FP32 input to FP16 first, so logits and features must be identical bit for bit.  The
 * attention maps are sums over heads by atomicAdd, whose order varies from run to run, so they
 * get a tolerance far below any real difference (1e-5; FP32 reordering of a dozen terms <= 1) */
static void check_f16_input(const char *tag, vit_session *g, const float *xr, const uint16_t *xh,
                            int B, int C, int F, int NP, int maps) {
    outs a = outs_new(B, C, F, NP), b = outs_new(B, C, F, NP);
    memset(b.logits, 0xff, sizeof(float) * B * C);
    memset(b.feat, 0xff, sizeof(float) * B * F);
    vit_status s1 = run(g, xr, B, NULL, &a, maps), s2 = run16(g, xh, B, NULL, &b, maps);
    CHECK(s1 == VIT_OK && s2 == VIT_OK, "%s B=%d fp16-input forward: %s", tag, B,
          s1 == VIT_OK && s2 == VIT_OK ? "ok" : vit_session_errmsg(g));
    if (s1 == VIT_OK && s2 == VIT_OK) {
        CHECK(!memcmp(a.logits, b.logits, sizeof(float) * B * C) &&
                  !memcmp(a.feat, b.feat, sizeof(float) * B * F),
              "%s B=%d%s: fp16 input == fp32 input, logits and features bit for bit", tag, B,
              maps ? " +maps" : "");
        if (maps) {
            double dc = 0, dr = 0;
            for (size_t i = 0; i < (size_t)B * NP; i++) {
                dc = fabs(a.cls[i] - b.cls[i]) > dc ? fabs(a.cls[i] - b.cls[i]) : dc;
                dr = fabs(a.roll[i] - b.roll[i]) > dr ? fabs(a.roll[i] - b.roll[i]) : dr;
            }
            CHECK(dc <= 1e-5 && dr <= 1e-5, "%s B=%d: fp16 input maps: attn_cls maxdiff=%.3g rollout maxdiff=%.3g tol=1e-5",
                  tag, B, dc, dr);
        }
    }
    outs_free(&a); outs_free(&b);
}

static double maxabs(const float *v, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(v[i]) > m ? fabs(v[i]) : m;
    return m;
}
static int argmax2(const float *v, int n, double *margin) {
    int a = 0;
    for (int i = 1; i < n; i++) if (v[i] > v[a]) a = i;
    double second = -INFINITY;
    for (int i = 0; i < n; i++) if (i != a && v[i] > second) second = v[i];
    *margin = v[a] - second;
    return a;
}

/* compare CUDA outputs g against CPU outputs c for B images; strict_top1: on every image */
static void compare(const char *tag, const outs *g, const outs *c, int B, int C, int F, int NP,
                    int maps, int strict_top1) {
    double worst_l = 0, worst_f = 0, dc = 0, dr = 0;
    int top1_bad = 0, top1_checked = 0, finite = 1;
    for (int b = 0; b < B; b++) {
        const float *gl = g->logits + (size_t)b * C, *cl = c->logits + (size_t)b * C;
        double scale = maxabs(cl, C), d = 0;
        for (int i = 0; i < C; i++) {
            if (!isfinite(gl[i])) finite = 0;
            d = fabs(gl[i] - cl[i]) > d ? fabs(gl[i] - cl[i]) : d;
        }
        double rel = d / (scale > 1e-6 ? scale : 1e-6);
        if (rel > worst_l) worst_l = rel;
        double margin;
        int ct = argmax2(cl, C, &margin), gt;
        double gm;
        gt = argmax2(gl, C, &gm);
        if (strict_top1 || margin > 2e-2 * scale) {
            top1_checked++;
            if (ct != gt) top1_bad++;
        }
        const float *gf = g->feat + (size_t)b * F, *cf = c->feat + (size_t)b * F;
        double fs = maxabs(cf, F), fd = 0;
        for (int i = 0; i < F; i++) fd = fabs(gf[i] - cf[i]) > fd ? fabs(gf[i] - cf[i]) : fd;
        if (fd / (fs > 1e-6 ? fs : 1e-6) > worst_f) worst_f = fd / (fs > 1e-6 ? fs : 1e-6);
    }
    if (maps)
        for (size_t i = 0; i < (size_t)B * NP; i++) {
            if (!isfinite(g->cls[i]) || !isfinite(g->roll[i])) finite = 0;
            dc = fabs(g->cls[i] - c->cls[i]) > dc ? fabs(g->cls[i] - c->cls[i]) : dc;
            dr = fabs(g->roll[i] - c->roll[i]) > dr ? fabs(g->roll[i] - c->roll[i]) : dr;
        }
    CHECK(finite && worst_l <= 1e-2, "%s logits rel maxdiff=%.3g tol=1e-2", tag, worst_l);
    CHECK(top1_bad == 0, "%s top-1 identical on %d/%d images checked (%d differ)", tag,
          top1_checked, B, top1_bad);
    CHECK(finite && worst_f <= 1e-2, "%s features rel maxdiff=%.3g tol=1e-2", tag, worst_f);
    if (maps) {
        CHECK(dc <= 1e-3, "%s attn_cls maxdiff=%.3g tol=1e-3", tag, dc);
        CHECK(dr <= 1e-3, "%s rollout maxdiff=%.3g tol=1e-3", tag, dr);
    }
}

static vit_session *new_session(const vit_model *m, vit_device dev, int maxB) {
    char err[256] = "";
    vit_session_opts so = {.max_batch = maxB, .threads = 0, .device = dev,
                           .precision = dev == VIT_DEVICE_CUDA ? VIT_PREC_FP16 : VIT_PREC_FP32};
    vit_session *s = NULL;
    vit_status st = vit_session_new(m, &so, &s, err, sizeof err);
    CHECK(st == VIT_OK, "session %s max_batch %d: %s", dev == VIT_DEVICE_CUDA ? "cuda" : "cpu",
          maxB, st == VIT_OK ? "ok" : err);
    return st == VIT_OK ? s : NULL;
}

/* a CUDA session opened with one engine knob set (VIT_CUDA_*: read at session start) */
static vit_session *new_cuda_session_env(const vit_model *m, int maxB, const char *name, const char *val) {
    setenv(name, val, 1);
    vit_session *s = new_session(m, VIT_DEVICE_CUDA, maxB);
    unsetenv(name);
    return s;
}

/* a session with one VIT_CUDA_* knob set, against the CPU on B images (maps when asked): every
 * path a knob selects must compute the same model */
static void check_knob(const char *what, const vit_model *m, int maxB, vit_session *cpu,
                       const float *x, int B, int C, int F, int NP, const char *name,
                       const char *val, int maps) {
    vit_session *k = new_cuda_session_env(m, maxB, name, val);
    outs oc = outs_new(B, C, F, NP), ok = outs_new(B, C, F, NP);
    char tag[200];
    snprintf(tag, sizeof tag, "%s B=%d %s=%s", what, B, name, val);
    if (k && run(cpu, x, B, NULL, &oc, maps) == VIT_OK && run(k, x, B, NULL, &ok, maps) == VIT_OK)
        compare(tag, &ok, &oc, B, C, F, NP, maps, 0);
    else
        CHECK(0, "%s: %s", tag, k ? vit_session_errmsg(k) : "no session");
    vit_session_free(k);
    outs_free(&oc); outs_free(&ok);
}

static void test_synthetic(const synth_spec *sp, int maxB, const int *batches, int nb) {
    vit_model *m = synth_model(sp);
    const vit_config *c = &m->cfg;
    int C = sp->classes, F = c->feature_dim, NP = c->num_patches;
    size_t img = (size_t)sp->C * (c->grid_h * sp->P) * (c->grid_w * sp->P);
    float *x = malloc(sizeof(float) * img * maxB);
    for (size_t i = 0; i < img * maxB; i++) x[i] = synth_frand();
    /* the FP16 input: x rounded (xh), and the same values as FP32 (xr) */
    uint16_t *xh = malloc(sizeof(uint16_t) * img * maxB);
    float *xr = malloc(sizeof(float) * img * maxB);
    vit_f32_to_f16(x, xh, img * maxB);
    vit_f16_to_f32(xh, xr, img * maxB);
    vit_session *cpu = new_session(m, VIT_DEVICE_CPU, maxB), *gpu = new_session(m, VIT_DEVICE_CUDA, maxB);
    if (!cpu || !gpu) goto out;
    CHECK(vit_session_input_type(gpu) == VIT_INPUT_F16 && vit_session_input_type(cpu) == VIT_INPUT_F32,
          "%s: vit_session_input_type: F16 on cuda, F32 on cpu", sp->name);
    for (int k = 0; k < nb; k++) {
        int B = batches[k];
        char tag[160];
        outs oc = outs_new(B, C, F, NP), og = outs_new(B, C, F, NP), og2 = outs_new(B, C, F, NP);
        int maps = k % 2 == 0;   /* alternate: with and without attention maps */
        vit_status a = run(cpu, x, B, NULL, &oc, maps), b = run(gpu, x, B, NULL, &og, maps);
        CHECK(a == VIT_OK && b == VIT_OK, "%s B=%d forward: cpu %s, cuda %s", sp->name, B,
              vit_status_str(a), b == VIT_OK ? "ok" : vit_session_errmsg(gpu));
        snprintf(tag, sizeof tag, "%s B=%d%s", sp->name, B, maps ? " +maps" : "");
        if (a == VIT_OK && b == VIT_OK) compare(tag, &og, &oc, B, C, F, NP, maps, 0);
        /* second call: graph replay must give what the eager first call gave */
        b = run(gpu, x, B, NULL, &og2, maps);
        double d = 0;
        for (size_t i = 0; i < (size_t)B * C; i++)
            d = fabs(og2.logits[i] - og.logits[i]) > d ? fabs(og2.logits[i] - og.logits[i]) : d;
        CHECK(b == VIT_OK && d <= 1e-6 * (1 + maxabs(og.logits, (size_t)B * C)),
              "%s B=%d graph replay == eager run: maxdiff=%.3g", sp->name, B, d);
        /* the same images from pinned memory (vit_input_alloc, the session's own buffer): one
         * DMA instead of a staged copy, the same logits bit for bit */
        float *pin = vit_input_alloc(gpu, B), *own = vit_session_input_buffer(gpu);
        CHECK(pin && own, "%s B=%d vit_input_alloc / vit_session_input_buffer on cuda", sp->name, B);
        if (pin && own) {
            outs op = outs_new(B, C, F, NP), oo = outs_new(B, C, F, NP);
            memcpy(pin, x, sizeof(float) * img * B);
            memcpy(own, x, sizeof(float) * img * B);
            vit_status bp = run(gpu, pin, B, NULL, &op, maps), bo = run(gpu, own, B, NULL, &oo, maps);
            CHECK(bp == VIT_OK && bo == VIT_OK &&
                      !memcmp(op.logits, og2.logits, sizeof(float) * B * C) &&
                      !memcmp(oo.logits, og2.logits, sizeof(float) * B * C),
                  "%s B=%d input from pinned memory: logits identical to pageable input", sp->name, B);
            outs_free(&op); outs_free(&oo);
        }
        vit_input_free(gpu, pin);
        /* FP16 input (every bucket this loop visits, with and without maps), pageable and from a
         * pinned buffer */
        check_f16_input(sp->name, gpu, xr, xh, B, C, F, NP, maps);
        uint16_t *pin16 = (uint16_t *)vit_input_alloc(gpu, B);
        if (pin16) {
            memcpy(pin16, xh, sizeof(uint16_t) * img * B);
            char t2[160];
            snprintf(t2, sizeof t2, "%s pinned", sp->name);
            check_f16_input(t2, gpu, xr, pin16, B, C, F, NP, !maps);
        }
        vit_input_free(gpu, (float *)pin16);
        outs_free(&oc); outs_free(&og); outs_free(&og2);
    }
    {   /* sub-batches: parts of 2 images (the last bucket's last part smaller when odd), the
         * input copy of part j+1 overlapping part j; maps included */
        int B = batches[nb - 1];
        vit_session *sb = new_cuda_session_env(m, maxB, "VIT_CUDA_SUBBATCH", "2");
        outs oc = outs_new(B, C, F, NP), os = outs_new(B, C, F, NP), os2 = outs_new(B, C, F, NP);
        char tag[160];
        snprintf(tag, sizeof tag, "%s B=%d sub-batches of 2", sp->name, B);
        if (sb && run(cpu, x, B, NULL, &oc, 1) == VIT_OK && run(sb, x, B, NULL, &os, 1) == VIT_OK &&
            run(sb, x, B, NULL, &os2, 1) == VIT_OK) {
            compare(tag, &os, &oc, B, C, F, NP, 1, 0);
            CHECK(!memcmp(os.logits, os2.logits, sizeof(float) * B * C),
                  "%s: graph replay == eager run, bit for bit", tag);
            /* FP16 input through the parts: each part's copy is B_part * img * 2 bytes */
            check_f16_input(tag, sb, xr, xh, B, C, F, NP, 1);
            check_f16_input(tag, sb, xr, xh, B, C, F, NP, 0);
            if (B > 1) check_f16_input(tag, sb, xr, xh, B - 1, C, F, NP, 0);
        } else {
            CHECK(0, "%s: %s", tag, sb ? vit_session_errmsg(sb) : "no session");
        }
        vit_session_free(sb);
        outs_free(&oc); outs_free(&os); outs_free(&os2);
    }
    /* the knobs' other paths (the defaults are what every other case here runs), maps included:
     * the residual add in LayerNorm instead of the GEMM epilogue; the last layer on every row
     * instead of the pooled prefix rows alone; up to 16 timed GEMM candidates a shape, so that
     * less common algorithms (split-K, other tiles) may win and must be right too */
    check_knob(sp->name, m, maxB, cpu, x, batches[nb - 1], C, F, NP, "VIT_CUDA_RESFUSE", "0", 1);
    check_knob(sp->name, m, maxB, cpu, x, batches[nb - 1], C, F, NP, "VIT_CUDA_CLS_ONLY", "0", 1);
    check_knob(sp->name, m, maxB, cpu, x, batches[nb - 1], C, F, NP, "VIT_CUDA_GEMM_ALGOS", "16", 1);
    {   /* head swap: another head with another class count, then back to the model's */
        vit_head *h2 = synth_head(C + 3, F);
        int B = batches[nb - 1];
        outs oc = outs_new(B, C + 3, F, NP), og = outs_new(B, C + 3, F, NP);
        vit_status a = run(cpu, x, B, h2, &oc, 0), b = run(gpu, x, B, h2, &og, 0);
        CHECK(a == VIT_OK && b == VIT_OK, "%s head swap forward", sp->name);
        if (a == VIT_OK && b == VIT_OK) compare("head swap", &og, &oc, B, C + 3, F, NP, 0, 0);
        outs_free(&oc); outs_free(&og);
        outs oc1 = outs_new(B, C, F, NP), og1 = outs_new(B, C, F, NP);
        a = run(cpu, x, B, NULL, &oc1, 0);
        b = run(gpu, x, B, NULL, &og1, 0);
        if (a == VIT_OK && b == VIT_OK) compare("head swapped back", &og1, &oc1, B, C, F, NP, 0, 0);
        outs_free(&oc1); outs_free(&og1);
        synth_head_free(h2);
    }
    if (sp->D >= 768) {   /* exact-erf GELU mode: report how far each mode is from the CPU */
        int B = batches[nb - 1];
        outs oc = outs_new(B, C, F, NP), ot = outs_new(B, C, F, NP), oe = outs_new(B, C, F, NP);
        vit_session *ge = new_cuda_session_env(m, maxB, "VIT_CUDA_GELU", "erf");
        if (ge && run(cpu, x, B, NULL, &oc, 0) == VIT_OK && run(gpu, x, B, NULL, &ot, 0) == VIT_OK &&
            run(ge, x, B, NULL, &oe, 0) == VIT_OK) {
            double dt = 0, de = 0, s = maxabs(oc.logits, (size_t)B * C);
            for (size_t i = 0; i < (size_t)B * C; i++) {
                dt = fabs(ot.logits[i] - oc.logits[i]) > dt ? fabs(ot.logits[i] - oc.logits[i]) : dt;
                de = fabs(oe.logits[i] - oc.logits[i]) > de ? fabs(oe.logits[i] - oc.logits[i]) : de;
            }
            printf("# gelu modes vs CPU (%s, B=%d): cublasLt epilogue rel maxdiff %.3g, exact erf kernel %.3g\n",
                   sp->name, B, dt / s, de / s);
            compare("gelu=erf", &oe, &oc, B, C, F, NP, 0, 0);
        }
        vit_session_free(ge);
        /* the WMMA attention kernel (VIT_CUDA_ATTN=wmma; dh 64 defaults to mma.sync), maps included */
        check_knob(sp->name, m, maxB, cpu, x, B, C, F, NP, "VIT_CUDA_ATTN", "wmma", 1);
        outs_free(&oc); outs_free(&ot); outs_free(&oe);
    }
out:
    vit_session_free(cpu);
    vit_session_free(gpu);
    free(x); free(xh); free(xr);
    synth_free(m);
}

/* a fixture model, CUDA against the CPU on B images x, maps included; strict_top1 as compare() */
static void compare_fixture(const char *tag, const vit_model *m, const float *x, int B, int strict_top1) {
    const vit_config *c = vit_model_config(m);
    int C = c->num_classes, F = c->feature_dim, NP = c->num_patches;
    vit_session *cpu = new_session(m, VIT_DEVICE_CPU, B), *gpu = new_session(m, VIT_DEVICE_CUDA, B);
    if (cpu && gpu) {
        outs oc = outs_new(B, C, F, NP), og = outs_new(B, C, F, NP);
        vit_status a = run(cpu, x, B, NULL, &oc, 1), b = run(gpu, x, B, NULL, &og, 1);
        CHECK(a == VIT_OK && b == VIT_OK, "%s forward: cuda %s", tag,
              b == VIT_OK ? "ok" : vit_session_errmsg(gpu));
        if (a == VIT_OK && b == VIT_OK) compare(tag, &og, &oc, B, C, F, NP, 1, strict_top1);
        outs_free(&oc); outs_free(&og);
    }
    vit_session_free(cpu);
    vit_session_free(gpu);
}

/* a model that is non-square or [cls; mean]-pooled, loaded again to run square at a size it was
 * not trained at: the position embeddings resampled at load (timm's way), which the CUDA session
 * uploads as the CPU uses them.  A transformers Dinov2 model refuses that at load, on any device
 * (its own interpolation is not implemented): that refusal is checked instead. */
static void test_fixture_resized(const char *dir, const char *name, const vit_config *c0) {
    const int P = c0->patch_size, S = ((c0->grid_h > c0->grid_w ? c0->grid_h : c0->grid_w) + 1) * P;
    vit_load_opts lo = {.image_size = S};
    vit_model *m = NULL;
    char err[256] = "", tag[400];
    vit_status st = vit_model_load(dir, &lo, &m, err, sizeof err);
    if (st != VIT_OK) {
        CHECK(st == VIT_E_ARG && strstr(err, "Dinov2") && strstr(err, "not implemented"),
              "fixture %s at %dx%d: loads, or is refused as a transformers Dinov2 model: %s", name, S, S, err);
        return;
    }
    const vit_config *c = vit_model_config(m);
    CHECK(c->grid_h == S / P && c->grid_w == S / P, "fixture %s at %dx%d: grid %dx%d", name, S, S, c->grid_h, c->grid_w);
    const int B = 3;
    const size_t n = (size_t)B * c->num_channels * S * S;
    float *x = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = 2.f * synth_frand();
    snprintf(tag, sizeof tag, "fixture %s at %dx%d (position embeddings resampled)", name, S, S);
    compare_fixture(tag, m, x, B, 0);   /* random images: top-1 only where the CPU's margin is clear */
    free(x);
    vit_model_free(m);
}

static int test_fixture(const char *root, const char *name) {
    char dir[1024], path[1200], err[256] = "";
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    snprintf(path, sizeof path, "%s/ref/input.npy", dir);
    float *x = NULL;
    int64_t shape[8];
    int nd = 0;
    if (vit_npy_read(path, &x, shape, &nd, err, sizeof err) != VIT_OK) return 0; /* not a model dir */
    vit_model *m = NULL;
    if (vit_model_load(dir, NULL, &m, err, sizeof err) != VIT_OK) {
        CHECK(0, "fixture %s loads: %s", name, err);
        free(x);
        return 1;
    }
    const vit_config *c = vit_model_config(m);
    char tag[300];
    snprintf(tag, sizeof tag, "fixture %s", name);
    compare_fixture(tag, m, x, (int)shape[0], 1);
    if (c->pooling == VIT_POOL_CLS_MEAN || c->grid_h != c->grid_w) test_fixture_resized(dir, name, c);
    vit_model_free(m);
    free(x);
    return 1;
}

int main(void) {
    if (vit_cuda_device_count() <= 0) {
        SKIP("no CUDA device");
        return TEST_SUMMARY();
    }
    synth_rng = 0x9E3779B97F4A7C15ull;   /* the stream this test's tolerances were set on */
    int quick = getenv("VITD_GPU_QUICK") && atoi(getenv("VITD_GPU_QUICK"));
    const synth_spec small[] = {
        {"small-cls-dh16", 64, 2, 4, 128, 8, 64, 3, 10, VIT_POOL_CLS, 0, 0, 0, 0},
        {"small-mean-fcnorm", 64, 2, 2, 96, 8, 48, 3, 7, VIT_POOL_MEAN, 0, 0, 1, 0},
        {"small-prelogits", 64, 2, 4, 128, 8, 48, 3, 5, VIT_POOL_CLS, 0, 1, 0, 0},
        {"small-distilled", 96, 2, 6, 192, 8, 48, 3, 6, VIT_POOL_CLS, 1, 0, 0, 0},
    };
    const int b_small[] = {1, 3, 4, 5};
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) test_synthetic(&small[i], 5, b_small, 4);
    if (!quick) {
        /* ViT-B/16 shapes (2 layers to keep the CPU reference quick) */
        const synth_spec vitb = {"vitb16-2layer", 768, 2, 12, 3072, 16, 224, 3, 1000, VIT_POOL_CLS, 0, 0, 0, 0};
        const int b_b[] = {1, 2, 6, 8};
        test_synthetic(&vitb, 8, b_b, 4);
    }
    /* after the models above, so that their random stream is the one their tolerances were set
     * on: non-square inputs (grid_h != grid_w) with CLS pooling (the last layer on the CLS rows
     * alone), [cls; mean] pooling (DINOv2's head, every row to the end; head dim 64: the mma.sync
     * attention kernel) and mean pooling + fc_norm; VITD_GPU_QUICK (compute-sanitizer): the
     * non-square [cls; mean] one alone */
    const synth_spec rect[] = {
        {"small-cls-rect", 64, 2, 4, 128, 8, 64, 3, 10, VIT_POOL_CLS, 0, 0, 0, 40},
        {"small-clsmean-rect", 128, 2, 2, 256, 8, 48, 3, 9, VIT_POOL_CLS_MEAN, 0, 0, 0, 80},
        {"small-clsmean-square", 64, 2, 4, 128, 8, 40, 3, 6, VIT_POOL_CLS_MEAN, 0, 0, 0, 0},
        {"small-mean-fcnorm-rect", 64, 2, 2, 96, 8, 32, 3, 7, VIT_POOL_MEAN, 0, 0, 1, 56},
    };
    for (size_t i = 0; i < sizeof rect / sizeof rect[0]; i++)
        if (!quick || !strcmp(rect[i].name, "small-clsmean-rect")) test_synthetic(&rect[i], 5, b_small, 4);
    const char *root = getenv("VITD_FIXTURES") ? getenv("VITD_FIXTURES") : "tests/fixtures/models";
    DIR *d = opendir(root);
    if (!d) {
        SKIP("no fixture directory %s", root);
    } else {
        struct dirent *e;
        int n = 0;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            if (quick && n > 0) break;
            n += test_fixture(root, e->d_name);
        }
        closedir(d);
    }
    return TEST_SUMMARY();
}
