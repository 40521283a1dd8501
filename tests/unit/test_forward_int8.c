/* test_forward_int8.c: the CPU forward pass at precision int8 (W8A8 encoder Linears, see
 * engine/cpu/cpu_gemm_i8.c) against the FP32 path of the same build.
 *
 * Tolerance.  A symmetric int8 grid has 127 steps per side, so each quantized operand carries a
 * relative error of at most half a step of its row's range, 1/254, and one quantized GEMM (both
 * operands) at most ~2/254 = 1/127 of its output scale.  The logits go through 4 such GEMMs per
 * layer; the test allows one step per quantized GEMM on the path, relative to the largest FP32
 * logit: max |logits_int8 - logits_fp32| <= 4 L / 127 * max |logits_fp32|.  (The errors add up
 * far less than that in practice: the measured ratio is printed.)  Besides:
 * - the int8 logits are NOT bit-identical to FP32 (the int8 path really ran);
 * - top-1 is the same on the ten tests/data images with the shipped model (models/fashion-vit)
 *   and on the synthetic models' inputs (the random fixture models' near ties are only printed);
 * - int8 is deterministic across the CPU parallel modes (VIT_CPU_PARALLEL=ops|images), thread
 *   counts and kernels (VNNI, AVX2 and the portable loop, VIT_GEMM_I8=avx2|scalar): bit-identical
 *   logits;
 * - int8 sessions share one packed int8 copy per model and make no FP32 packed copy;
 * - the API: int8/fp8 on cuda without a calibration is VIT_E_ARG naming `vit calibrate`, device auto + int8 runs int8 on the
 *   CPU, vit_precision_str / vit_precision_parse;
 * - with a calibration (model->calib, from vit_calibrator on the same inputs): the static
 *   per-tensor scheme that the CUDA INT8 path computes, against FP32 with the same bound and
 *   top-1, not identical to the dynamic scheme, deterministic like it. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "cpu/cpu_gemm_i8.h"
#include "harness.h"
#include "io/calib_io.h"
#include "synth_model.h"
#include "util.h"
#include "vit.h"

static float maxabs(const float *v, size_t n) {
    float m = 0.f;
    for (size_t i = 0; i < n; i++) m = fabsf(v[i]) > m ? fabsf(v[i]) : m;
    return m;
}

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (v[i] > v[b]) b = i;
    return b;
}

/* logits of B images at a precision (env: VIT_CPU_PARALLEL / VIT_GEMM_I8 set for this session
 * only, NULL = unset); 0 on success */
static int run(const vit_model *m, vit_precision p, int threads, const char *par,
               const char *i8kernel, const float *x, int B, float *logits) {
    if (par) setenv("VIT_CPU_PARALLEL", par, 1); else unsetenv("VIT_CPU_PARALLEL");
    if (i8kernel) setenv("VIT_GEMM_I8", i8kernel, 1); else unsetenv("VIT_GEMM_I8");
    vit_session *s = NULL;
    char err[256];
    vit_session_opts so = {.max_batch = B, .threads = threads, .device = VIT_DEVICE_CPU, .precision = p};
    vit_status st = vit_session_new(m, &so, &s, err, sizeof err);
    unsetenv("VIT_CPU_PARALLEL");
    unsetenv("VIT_GEMM_I8");
    if (st != VIT_OK) {
        CHECK(0, "session_new %s: %s", vit_precision_str(p), err);
        return -1;
    }
    int ok = vit_session_precision(s) == p;
    vit_outputs o = {.logits = logits};
    ok = ok && vit_forward(s, x, B, NULL, &o) == VIT_OK;
    vit_session_free(s);
    return ok ? 0 : -1;
}

/* int8 vs fp32 on one model and input: tolerance, not identical, and top-1 when need_top1
 * (the random fixture models have near-tied logits: their agreement is only printed) */
static void compare(const char *name, const vit_model *m, const float *x, int B, int threads,
                    int need_top1) {
    const vit_config *c = vit_model_config(m);
    int K = c->num_classes;
    float *l32 = calloc((size_t)B * K, 4), *l8 = calloc((size_t)B * K, 4);
    if (run(m, VIT_PREC_FP32, threads, NULL, NULL, x, B, l32) || run(m, VIT_PREC_INT8, threads, NULL, NULL, x, B, l8)) {
        CHECK(0, "%s: forward", name);
    } else {
        float scale = maxabs(l32, (size_t)B * K), d = th_maxdiff(l8, l32, (size_t)B * K);
        float tol = 4.f * (float)c->num_layers / 127.f * scale;
        th_result(d <= tol && d > 0.f,
                  "%s int8 vs fp32 logits maxdiff=%.3g tol=%.3g (%.2f steps of 1/127 per quantized GEMM), not identical",
                  name, (double)d, (double)tol, (double)(d / scale * 127.f / (4.f * (float)c->num_layers)));
        int same = 0;
        for (int b = 0; b < B; b++) same += argmax(l8 + (size_t)b * K, K) == argmax(l32 + (size_t)b * K, K);
        if (need_top1) CHECK(same == B, "%s: int8 top-1 == fp32 top-1 on %d of %d inputs", name, same, B);
        else printf("info %s: int8 top-1 == fp32 top-1 on %d of %d inputs\n", name, same, B);
    }
    free(l32);
    free(l8);
}

/* int8 bit-identical across parallel modes, thread counts and kernels */
static void check_determinism(const char *name, const vit_model *m, const float *x, int B) {
    int K = vit_model_config(m)->num_classes;
    float *a = calloc((size_t)B * K, 4), *b = calloc((size_t)B * K, 4);
    static const struct { int threads; const char *par, *kern; } v[] = {
        {2, "images", NULL}, {1, NULL, NULL}, {2, "ops", "scalar"}, {2, "images", "scalar"},
        {2, "ops", "avx2"},
    };
    if (run(m, VIT_PREC_INT8, 2, "ops", NULL, x, B, a) == 0)
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
            if (run(m, VIT_PREC_INT8, v[i].threads, v[i].par, v[i].kern, x, B, b) != 0) continue;
            CHECK(!memcmp(a, b, sizeof(float) * (size_t)B * K),
                  "%s int8 B=%d: threads=2 ops == threads=%d %s kernel %s, bit for bit", name, B,
                  v[i].threads, v[i].par ? v[i].par : "default", v[i].kern ? v[i].kern : "best");
        }
    free(a);
    free(b);
}

static void check_synth(void) {
    synth_spec sp = {.name = "synth", .D = 64, .L = 2, .H = 4, .M = 128, .P = 4, .S = 16, .C = 3, .classes = 7};
    synth_spec sp2 = {.name = "synth-odd", .D = 36, .L = 3, .H = 3, .M = 75, .P = 4, .S = 20, .C = 3,
                      .classes = 5, .pool = VIT_POOL_MEAN, .fc_norm = 1};
    const synth_spec *specs[] = {&sp, &sp2};
    for (int i = 0; i < 2; i++) {
        synth_rng = 0x9E3779B97F4A7C15ull + (unsigned long long)i;
        vit_model *m = synth_model(specs[i]);
        int B = 6;
        size_t img = (size_t)specs[i]->C * specs[i]->S * specs[i]->S;
        float *x = malloc(sizeof(float) * B * img);
        for (size_t k = 0; k < B * img; k++) x[k] = synth_frand();
        char n[96];
        snprintf(n, sizeof n, "%s B=%d", specs[i]->name, B);
        compare(n, m, x, B, 2, 1);
        snprintf(n, sizeof n, "%s B=1", specs[i]->name);
        compare(n, m, x, 1, 1, 1);
        check_determinism(specs[i]->name, m, x, B);
        check_determinism(specs[i]->name, m, x, 1);
        free(x);
        synth_free(m);
    }
}

/* every fixture model on its PyTorch reference inputs */
static void check_fixtures(void) {
    const char *root = "tests/fixtures/models";
    DIR *d = opendir(root);
    CHECK(d != NULL, "open %s", root);
    if (!d) return;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strlen(e->d_name) > 200) continue;
        char dir[512], path[600];
        struct stat sb;
        snprintf(dir, sizeof dir, "%s/%.200s", root, e->d_name);
        snprintf(path, sizeof path, "%s/ref/input.npy", dir);
        if (stat(path, &sb) != 0) continue;
        vit_model *m = NULL;
        char err[256];
        if (vit_model_load(dir, NULL, &m, err, sizeof err) != VIT_OK) {
            CHECK(0, "%s: load: %s", dir, err);
            continue;
        }
        float *x = NULL;
        int64_t shape[8];
        int nd = 0;
        if (vit_npy_read(path, &x, shape, &nd, err, sizeof err) == VIT_OK && nd == 4) {
            compare(e->d_name, m, x, (int)shape[0], 2, 0);
            n++;
        } else {
            CHECK(0, "%s: %s", path, err);
        }
        free(x);
        vit_model_free(m);
    }
    closedir(d);
    CHECK(n >= 3, "%d fixture models compared", n);
}

/* the shipped model on the ten labelled images of tests/data */
static void check_shipped(void) {
    static const char *imgs[] = {"ankle_boot", "bag", "coat", "dress", "pullover",
                                 "sandal", "shirt", "sneaker", "trouser", "tshirt"};
    enum { B = 10 };
    vit_model *m = NULL;
    char err[256];
    if (vit_model_load("models/fashion-vit", NULL, &m, err, sizeof err) != VIT_OK) {
        CHECK(0, "models/fashion-vit: %s", err);
        return;
    }
    const vit_config *c = vit_model_config(m);
    size_t per = (size_t)3 * c->preprocess.out_h * c->preprocess.out_w;
    float *x = malloc(sizeof(float) * per * B);
    int ok = 1;
    for (int i = 0; i < B && ok; i++) {
        char p[256];
        snprintf(p, sizeof p, "tests/data/%s.png", imgs[i]);
        uint8_t *buf = NULL;
        size_t len = 0;
        ok = vit_read_file(p, 1 << 24, &buf, &len, err, sizeof err) == VIT_OK &&
             vit_image_load(buf, len, &c->preprocess, VIT_DEFAULT_MAX_PIXELS, x + per * i, err, sizeof err) == VIT_OK;
        free(buf);
        if (!ok) CHECK(0, "%s: %s", p, err);
    }
    if (ok) compare("fashion-vit on tests/data/*.png", m, x, B, 2, 1);
    free(x);
    vit_model_free(m);
}

/* packed copies: int8 sessions share one, and make no FP32 one */
static void check_sharing(void) {
    synth_spec sp = {.D = 64, .L = 2, .H = 4, .M = 128, .P = 4, .S = 16, .C = 3, .classes = 7};
    vit_model *m = synth_model(&sp);
    vit_session *a = NULL, *b = NULL;
    char err[256];
    vit_session_opts so = {.max_batch = 2, .threads = 1, .device = VIT_DEVICE_CPU, .precision = VIT_PREC_INT8};
    int ok = vit_session_new(m, &so, &a, err, sizeof err) == VIT_OK &&
             vit_session_new(m, &so, &b, err, sizeof err) == VIT_OK;
    CHECK(ok && vit_cpu_packed_refs(m, 1) == 2 && vit_cpu_packed_refs(m, 0) == 0,
          "two int8 sessions: one shared int8 copy (refs %d), no FP32 packed copy", vit_cpu_packed_refs(m, 1));
    vit_session_free(a);
    CHECK(vit_cpu_packed_refs(m, 1) == 1, "int8 copy kept while a session uses it");
    vit_session_free(b);
    CHECK(vit_cpu_packed_refs(m, 1) == 0, "int8 copy freed with the last session");
    synth_free(m);
}

static void check_api(void) {
    synth_spec sp = {.D = 32, .L = 1, .H = 2, .M = 64, .P = 4, .S = 8, .C = 3, .classes = 3};
    vit_model *m = synth_model(&sp);
    vit_session *s = NULL;
    char err[256] = "";
    vit_session_opts so = {.max_batch = 1, .threads = 1, .device = VIT_DEVICE_CUDA, .precision = VIT_PREC_INT8};
    vit_status st = vit_session_new(m, &so, &s, err, sizeof err);
    CHECK(st == VIT_E_ARG && !s && strstr(err, "vit calibrate"),
          "int8 on cuda, model without calibration: VIT_E_ARG naming vit calibrate (%s)", err);
    so.precision = VIT_PREC_FP8;
    st = vit_session_new(m, &so, &s, err, sizeof err);
    CHECK(st == VIT_E_ARG && !s && strstr(err, "vit calibrate"),
          "fp8 on cuda, model without calibration: VIT_E_ARG naming vit calibrate (%s)", err);
    so.device = VIT_DEVICE_CPU;
    st = vit_session_new(m, &so, &s, err, sizeof err);
    CHECK(st == VIT_E_ARG && !s && strstr(err, "needs the CUDA device"), "fp8 on the cpu: VIT_E_ARG (%s)", err);
    so.precision = VIT_PREC_INT8;
    so.device = VIT_DEVICE_AUTO;
    st = vit_session_new(m, &so, &s, err, sizeof err);
    CHECK(st == VIT_OK && vit_session_device(s) == VIT_DEVICE_CPU && vit_session_precision(s) == VIT_PREC_INT8,
          "device auto + int8: the CPU, int8");
    vit_session_free(s);
    so.precision = (vit_precision)7;
    s = NULL;
    CHECK(vit_session_new(m, &so, &s, err, sizeof err) == VIT_E_ARG && !s, "unknown precision 7 rejected");
    int rt = 1;
    for (int p = VIT_PREC_AUTO; p <= VIT_PREC_FP8; p++) {
        vit_precision q;
        rt &= vit_precision_parse(vit_precision_str((vit_precision)p), &q) == 0 && (int)q == p;
    }
    vit_precision q = VIT_PREC_FP16;
    CHECK(rt && !strcmp(vit_precision_str(VIT_PREC_INT8), "int8") && vit_precision_parse("INT8", &q) == -1 &&
              vit_precision_parse(NULL, &q) == -1 && q == VIT_PREC_FP16 && !strcmp(vit_precision_str((vit_precision)9), "?"),
          "vit_precision_str / vit_precision_parse round trip, bad names rejected");
    synth_free(m);
}

/* m->calib from a calibration (method mse) on the B images x */
static int calibrate_into(vit_model *m, const float *x, int B) {
    char err[256];
    const int rc = synth_calibrate(m, x, B, 2, err, sizeof err);
    if (rc) CHECK(0, "calibrate: %s", err);
    return rc;
}

/* The calibrated static scheme (per-tensor activation scales, the CUDA INT8 path's arithmetic)
 * against FP32 with the same bound as the dynamic scheme, not identical to the dynamic int8
 * logits (the static path really ran), deterministic across threads, modes and kernels */
static void check_calibrated_one(const char *name, vit_model *m, const float *x, int B, int need_top1) {
    const int K = vit_model_config(m)->num_classes;
    float *dyn = calloc((size_t)B * K, 4), *sta = calloc((size_t)B * K, 4);
    int ok = run(m, VIT_PREC_INT8, 2, NULL, NULL, x, B, dyn) == 0;
    if (ok && calibrate_into(m, x, B) == 0) {
        char n[160];
        snprintf(n, sizeof n, "%s calibrated (static scales)", name);
        compare(n, m, x, B, 2, need_top1);
        ok = run(m, VIT_PREC_INT8, 2, NULL, NULL, x, B, sta) == 0;
        CHECK(ok && memcmp(dyn, sta, sizeof(float) * (size_t)B * K),
              "%s: calibrated int8 logits differ from the dynamic ones (maxdiff %.3g)", name,
              (double)th_maxdiff(dyn, sta, (size_t)B * K));
        check_determinism(n, m, x, B);
        vit_calib_free(&m->calib);
    }
    free(dyn);
    free(sta);
}

static void check_calibrated(void) {
    synth_spec sp = {.name = "synth", .D = 64, .L = 2, .H = 4, .M = 128, .P = 4, .S = 16, .C = 3, .classes = 7};
    synth_rng = 0x9E3779B97F4A7C15ull;
    vit_model *m = synth_model(&sp);
    enum { B = 6 };
    size_t img = (size_t)3 * 16 * 16;
    float *x = malloc(sizeof(float) * B * img);
    for (size_t k = 0; k < B * img; k++) x[k] = synth_frand();
    check_calibrated_one("synth B=6", m, x, B, 1);
    free(x);
    synth_free(m);

    static const char *imgs[] = {"ankle_boot", "bag", "coat", "dress", "pullover",
                                 "sandal", "shirt", "sneaker", "trouser", "tshirt"};
    char err[256];
    if (vit_model_load("models/fashion-vit", NULL, &m, err, sizeof err) != VIT_OK) {
        CHECK(0, "models/fashion-vit: %s", err);
        return;
    }
    const vit_config *c = vit_model_config(m);
    size_t per = (size_t)3 * c->preprocess.out_h * c->preprocess.out_w;
    x = malloc(sizeof(float) * per * 10);
    int ok = 1;
    for (int i = 0; i < 10 && ok; i++) {
        char p[256];
        snprintf(p, sizeof p, "tests/data/%s.png", imgs[i]);
        uint8_t *buf = NULL;
        size_t len = 0;
        ok = vit_read_file(p, 1 << 24, &buf, &len, err, sizeof err) == VIT_OK &&
             vit_image_load(buf, len, &c->preprocess, VIT_DEFAULT_MAX_PIXELS, x + per * i, err, sizeof err) == VIT_OK;
        free(buf);
    }
    if (ok) check_calibrated_one("fashion-vit on tests/data/*.png", m, x, 10, 1);
    else CHECK(0, "tests/data images: %s", err);
    free(x);
    vit_model_free(m);
}

int main(void) {
    printf("int8 kernel: %s\n", vit_gemm_i8_impl_best() == VIT_I8_VNNI ? "avx512-vnni" : "portable scalar");
    check_api();
    check_sharing();
    check_synth();
    check_fixtures();
    check_shipped();
    check_calibrated();
    return TEST_SUMMARY();
}
