/* test_cuda_api.c: the CUDA-related public API on a machine without a GPU (this suite's CI):
 * vit_cuda_device_info answers VIT_E_DEVICE cleanly (with or without CUDA in the build),
 * vit_session_input_buffer is NULL for CPU sessions and NULL-safe, and with CUDA built in,
 * vit_cuda_device_count() returns 0 without crashing.  (vit_session_new with device CUDA ->
 * VIT_E_DEVICE and AUTO -> CPU are covered by test_forward.)  On a GPU machine the device
 * checks SKIP; tests/gpu covers that case. */
#include <stdatomic.h>
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
