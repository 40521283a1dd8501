/* test_cuda_api.c: the CUDA-related public API on a machine without a GPU (this suite's CI):
 * vit_cuda_device_info answers VIT_E_DEVICE cleanly (with or without CUDA in the build),
 * vit_session_input_buffer is NULL for CPU sessions and NULL-safe, vit_input_alloc gives
 * aligned memory a forward reads like any other (bad sizes: NULL), and with CUDA built in,
 * vit_cuda_device_count() returns 0 without crashing.  (vit_session_new with device CUDA ->
 * VIT_E_DEVICE and AUTO -> CPU are covered by test_forward.)  On a GPU machine the device
 * checks SKIP; tests/gpu covers that case. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "harness.h"
#include "model.h"

int main(void) {
    char name[128] = "unset";
    size_t tot = 1, fr = 1;
    int ndev = 0;
#ifdef VIT_HAVE_CUDA
    ndev = vit_cuda_device_count();
    CHECK(ndev >= 0, "vit_cuda_device_count() = %d, no crash", ndev);
#endif
    vit_status st = vit_cuda_device_info(0, name, sizeof name, &tot, &fr);
    if (ndev == 0) {
        CHECK(st == VIT_E_DEVICE, "vit_cuda_device_info without a GPU -> %s", vit_status_str(st));
    } else {
        CHECK(st == VIT_OK && tot > 0 && name[0], "vit_cuda_device_info: %s, %zu bytes", name, tot);
    }
    CHECK(vit_cuda_device_info(-1, NULL, 0, NULL, NULL) == VIT_E_DEVICE, "device -1 -> VIT_E_DEVICE");
    CHECK(vit_cuda_device_info(1 << 20, NULL, 0, NULL, NULL) == VIT_E_DEVICE, "device 2^20 -> VIT_E_DEVICE");
    CHECK(vit_session_input_buffer(NULL) == NULL, "vit_session_input_buffer(NULL) == NULL");

    /* a CPU session on the smallest fixture has no staging buffer */
    vit_model *m = NULL;
    char err[256] = "";
    if (vit_model_load("tests/fixtures/models/tiny-hf", NULL, &m, err, sizeof err) != VIT_OK) {
        SKIP("tiny-hf fixture: %s", err);
    } else {
        vit_session_opts so = {.max_batch = 2, .threads = 1, .device = VIT_DEVICE_CPU};
        vit_session *s = NULL;
        st = vit_session_new(m, &so, &s, err, sizeof err);
        CHECK(st == VIT_OK, "cpu session: %s", st == VIT_OK ? "ok" : err);
        if (s) CHECK(vit_session_input_buffer(s) == NULL, "cpu session: no input staging buffer");
        /* vit_input_alloc: 64-byte aligned on the CPU, a forward reads it like any input */
        if (s) {
            const vit_config *c = vit_model_config(m);
            const size_t per = (size_t)c->num_channels * c->image_size * c->image_size;
            float *in = vit_input_alloc(s, 2), logits_a[2 * 16], logits_b[2 * 16];
            CHECK(in && (uintptr_t)in % 64 == 0, "vit_input_alloc(cpu session, 2): 64-byte aligned");
            CHECK(vit_input_alloc(s, 0) == NULL && vit_input_alloc(s, -3) == NULL &&
                      vit_input_alloc(NULL, 2) == NULL,
                  "vit_input_alloc: NULL for 0 or negative images, or no session");
            float *plain = malloc(sizeof(float) * 2 * per);
            if (in && plain && c->num_classes <= 16) {
                for (size_t i = 0; i < 2 * per; i++) in[i] = plain[i] = (float)((i * 7919) % 255) / 127.f - 1.f;
                vit_outputs oa = {.logits = logits_a}, ob = {.logits = logits_b};
                st = vit_forward(s, in, 2, NULL, &oa);
                vit_status st2 = vit_forward(s, plain, 2, NULL, &ob);
                CHECK(st == VIT_OK && st2 == VIT_OK &&
                          !memcmp(logits_a, logits_b, sizeof(float) * 2 * c->num_classes),
                      "forward from vit_input_alloc memory == from malloc memory");
            }
            free(plain);
            vit_input_free(s, in);
            vit_input_free(s, NULL);
        }
        vit_session_free(s);
        /* AUTO with CUDA built in but no device: the CPU, and still no staging buffer */
        so.device = VIT_DEVICE_AUTO;
        st = vit_session_new(m, &so, &s, err, sizeof err);
        if (ndev == 0)
            CHECK(st == VIT_OK && vit_session_device(s) == VIT_DEVICE_CPU &&
                      vit_session_input_buffer(s) == NULL,
                  "auto without a GPU -> cpu session without staging buffer");
        else
            CHECK(st == VIT_OK && vit_session_input_buffer(s) != NULL,
                  "auto with a GPU -> cuda session with a pinned staging buffer");
        vit_session_free(s);
        vit_model_free(m);
    }
    return TEST_SUMMARY();
}
