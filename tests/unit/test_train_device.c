/* test_train_device.c: where head training runs (vit_train_opts.device) on a machine without a
 * GPU, the case this suite's CI sees: device CUDA is a clean VIT_E_DEVICE whose message names
 * cuda (built with or without CUDA), AUTO falls back to the CPU and trains exactly as device CPU
 * does, an unknown device is VIT_E_ARG, and the default options train on the CPU.  With a GPU
 * present the CUDA checks SKIP: tests/gpu/test_train_cuda.c compares the two backends there. */
#include <stdint.h>
#include <string.h>

#include "backend.h"
#include "harness.h"

enum { C = 4, D = 6, N = 40 };

static uint64_t rs = 0x2545F4914F6CDD1Dull;
static float frand(void) { /* uniform [-1, 1) */
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return (float)((rs >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
}

static vit_status train(vit_device dev, float *w, float *b, const float *x, const int32_t *y,
                        vit_train_result *res, char *err, size_t errlen) {
    vit_train_opts o;
    vit_train_opts_default(&o);
    o.epochs = 5;
    o.batch_size = 8;
    o.val_fraction = 0.25f;
    o.seed = 11;
    o.device = dev;
    return vit_train_linear(w, b, C, D, x, y, N, &o, res, err, errlen);
}

int main(void) {
    float x[N * D], w[C * D], b[C], w2[C * D], b2[C];
    int32_t y[N];
    for (int i = 0; i < N; i++) {
        y[i] = i % C;
        for (int d = 0; d < D; d++) x[i * D + d] = frand() + (d == y[i] ? 2.f : 0.f);
    }
    int ndev = 0;
#ifdef VIT_HAVE_CUDA
    ndev = vit_cuda_device_count();
#endif
    vit_train_opts def;
    vit_train_opts_default(&def);
    CHECK(def.device == VIT_DEVICE_CPU, "vit_train_opts_default: device cpu");

    char err[256] = "";
    vit_train_result res;
    memset(w, 0, sizeof w);
    memset(b, 0, sizeof b);
    vit_status st = train(VIT_DEVICE_CPU, w, b, x, y, &res, err, sizeof err);
    CHECK(st == VIT_OK && res.device == VIT_DEVICE_CPU && res.train_accuracy > 0.9f,
          "device cpu trains (train accuracy %.3f, %s)", (double)res.train_accuracy,
          st == VIT_OK ? "ok" : err);

    if (ndev > 0) {
        SKIP("a GPU is present: device cuda / auto on it are tests/gpu/test_train_cuda's");
    } else {
        vit_train_result r2;
        for (int i = 0; i < C * D; i++) w2[i] = 42.f;
        err[0] = 0;
        st = train(VIT_DEVICE_CUDA, w2, b2, x, y, &r2, err, sizeof err);
        CHECK(st == VIT_E_DEVICE && strstr(err, "cuda") != NULL,
              "device cuda without a GPU -> %s: %s", vit_status_str(st), err);
        CHECK(r2.epochs_done == 0 && w2[0] == 42.f && w2[C * D - 1] == 42.f,
              "device cuda: nothing trained, w untouched");
        memset(w2, 0, sizeof w2);
        memset(b2, 0, sizeof b2);
        st = train(VIT_DEVICE_AUTO, w2, b2, x, y, &r2, err, sizeof err);
        CHECK(st == VIT_OK && r2.device == VIT_DEVICE_CPU, "device auto without a GPU -> cpu (%s)",
              st == VIT_OK ? "ok" : err);
        CHECK(!memcmp(w, w2, sizeof w) && !memcmp(b, b2, sizeof b) &&
                  r2.val_accuracy == res.val_accuracy && r2.loss == res.loss,
              "device auto on the cpu: bit-identical to device cpu (val accuracy %.3f)",
              (double)r2.val_accuracy);
    }
    st = train((vit_device)7, w2, b2, x, y, NULL, err, sizeof err);
    CHECK(st == VIT_E_ARG && strstr(err, "device"), "unknown device 7 -> %s: %s",
          vit_status_str(st), err);
    return TEST_SUMMARY();
}
