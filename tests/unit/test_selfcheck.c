/* test_selfcheck.c: vit_device_check (engine/selfcheck.c).  CPU FP32 against itself is exact;
 * CPU INT8 against FP32 is caught by a tolerance below its quantization error and passes a
 * loose one; a model without a head compares features and attention only; CUDA where none is
 * present is a device error; bad arguments are rejected. */
#include <string.h>

#include "harness.h"
#include "synth_model.h"
#include "vit.h"

int main(void) {
    synth_spec sp = {.D = 64, .L = 2, .H = 4, .M = 128, .P = 4, .S = 16, .C = 3, .classes = 7};
    vit_model *m = synth_model(&sp);
    char err[512];
    vit_check_result r;
    vit_session_opts cpu = {.max_batch = 1, .threads = 1, .device = VIT_DEVICE_CPU, .precision = VIT_PREC_FP32};
    vit_status st = vit_device_check(m, &cpu, 1e-6, &r, err, sizeof err);
    CHECK(st == VIT_OK && r.features_err == 0 && r.logits_err == 0 && r.attn_err == 0 && r.top1_agree
          && r.device == VIT_DEVICE_CPU && r.precision == VIT_PREC_FP32,
          "cpu/fp32 against itself: exactly equal (%s)", st ? err : "ok");

    vit_session_opts i8 = cpu;
    i8.precision = VIT_PREC_INT8;
    st = vit_device_check(m, &i8, 1e-6, &r, err, sizeof err);
    CHECK(st == VIT_E_BACKEND && r.precision == VIT_PREC_INT8 && r.logits_err > 1e-6 && strstr(err, "int8")
          && strstr(err, "differs from the CPU FP32 reference"),
          "cpu/int8 under a 1e-6 tolerance: a mismatch, with the numbers (%s)", err);
    double i8_err = r.logits_err;
    st = vit_device_check(m, &i8, 0.2, &r, err, sizeof err);
    CHECK(st == VIT_OK && r.logits_err == i8_err && r.logits_err < 0.2, "cpu/int8 under 0.2: agrees (logits %.3g)", r.logits_err);

    synth_spec nh = sp;
    nh.classes = 0;
    vit_model *m2 = synth_model(&nh);
    st = vit_device_check(m2, &cpu, 1e-6, &r, err, sizeof err);
    CHECK(st == VIT_OK && r.logits_err == 0, "model without a head: features and attention only (%s)", st ? err : "ok");
    synth_free(m2);

    vit_session_opts cuda = cpu;
    cuda.device = VIT_DEVICE_CUDA;
    cuda.precision = VIT_PREC_AUTO;
    vit_status dst = vit_device_check(m, &cuda, 0.05, &r, err, sizeof err);
    char name[128];
    if (vit_cuda_device_info(0, name, sizeof name, NULL, NULL) == VIT_OK)
        CHECK(dst == VIT_OK, "cuda/fp16 agrees with the CPU on %s (%s)", name, dst ? err : "ok");
    else
        CHECK(dst == VIT_E_DEVICE, "cuda without a device: VIT_E_DEVICE (%s)", err);
    CHECK(vit_device_check(m, &cpu, 0, &r, err, sizeof err) == VIT_E_ARG, "tolerance 0 rejected");
    CHECK(vit_device_check(NULL, &cpu, 0.1, &r, err, sizeof err) == VIT_E_ARG, "NULL model rejected");
    synth_free(m);
    return TEST_SUMMARY();
}
