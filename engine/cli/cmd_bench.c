/* cmd_bench.c: `vit bench`: time the forward pass on random input.
 *   vit bench --model DIR --batch B [--iters K] [--warmup W] [--threads N]
 *             [--device auto|cpu|cuda] [--precision auto|fp32|fp16|int8|fp8] [--image-size N] [--attention]
 *             [--f16]   (FP16 input through vit_forward_f16: the same values rounded)
 * Runs W warm-up forwards (default 2), then K timed ones (default 10), and prints on stdout
 *   <images/s> images/s
 * followed by one line of detail (ms per batch and per image, device, precision, threads).
 * Exit status: 0 ok, 2 usage, 7 bad model, 8 device unavailable, 1 other. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "cli.h"
#include "cpu/cpu_gemm.h"
#include "cpu/cpu_gemm_i8.h"
#include "util.h"

static void usage(FILE *f) {
    fprintf(f, "usage: vit bench --model DIR --batch B [--iters K] [--warmup W] [--threads N]\n"
               "                 [--device auto|cpu|cuda] [--precision auto|fp32|fp16|int8|fp8] [--image-size N]\n"
               "                 [--attention]   (also compute CLS attention and rollout)\n"
               "                 [--f16]         (FP16 input, vit_forward_f16: what a CUDA session reads fastest)\n");
}

int cmd_bench(int argc, char **argv) {
    cli_engine_opts eo = {0};
    int batch = 0, iters = 10, warmup = 2, attention = 0, f16 = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int eng = cli_engine_opt(a, v, &eo);
        if (eng < 0) return 2;
        if (eng > 0) { i++; continue; }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--batch") && v) { if ((batch = cli_parse_int("--batch", v, 1, 4096)) < 0) return 2; i++; }
        else if (!strcmp(a, "--iters") && v) { if ((iters = cli_parse_int("--iters", v, 1, 1000000)) < 0) return 2; i++; }
        else if (!strcmp(a, "--warmup") && v) { if ((warmup = cli_parse_int("--warmup", v, 0, 1000000)) < 0) return 2; i++; }
        else if (!strcmp(a, "--attention")) attention = 1;
        else if (!strcmp(a, "--f16")) f16 = 1;
        else { fprintf(stderr, "vit bench: unknown or incomplete option '%s'\n", a); cli_suggest_option("bench", a, usage); usage(stderr); return 2; }
    }
    const char *model = eo.model;
    int threads = eo.threads, image_size = eo.image_size;
    vit_device device = eo.device;
    vit_precision precision = eo.precision;
    if (!model || batch < 1) {
        fprintf(stderr, "vit bench: --model and --batch are required\n");
        usage(stderr);
        return 2;
    }
    vit_model *m = NULL;
    vit_session *s = NULL;
    float *x = NULL, *logits = NULL, *attn = NULL, *roll = NULL;
    uint16_t *x16 = NULL;
    int rc = 1;
    vit_load_opts lo = {.image_size = image_size};
    vit_status st;
    if ((rc = cli_load_model("bench", model, &lo, &m)) != 0) return rc;
    rc = 1;
    const vit_config *c = vit_model_config(m);
    vit_session_opts so = {.max_batch = batch, .threads = threads, .device = device,
                           .precision = precision};
    if ((rc = cli_open_session("bench", m, &so, &s)) != 0) goto out;
    rc = 1;
    size_t img = (size_t)c->num_channels * c->grid_h * c->patch_size * c->grid_w * c->patch_size;
    int K = vit_head_num_classes(vit_model_head(m)), NP = c->num_patches;
    x = malloc(sizeof(float) * img * batch);
    logits = malloc(sizeof(float) * (size_t)K * batch);
    if (attention) {
        attn = malloc(sizeof(float) * (size_t)NP * batch);
        roll = malloc(sizeof(float) * (size_t)NP * batch);
    }
    if (f16) x16 = malloc(sizeof(uint16_t) * img * batch);
    if (!x || !logits || (attention && (!attn || !roll)) || (f16 && !x16)) {
        fprintf(stderr, "vit bench: out of memory\n");
        goto out;
    }
    /* a normalized image is roughly N(0,1): sum of 4 uniforms, fixed seed */
    unsigned long long r = 88172645463325252ull;
    for (size_t i = 0; i < img * batch; i++) {
        float a = 0;
        for (int k = 0; k < 4; k++) {
            r ^= r << 13; r ^= r >> 7; r ^= r << 17;
            a += (float)((r >> 40) * (1.0 / 16777216.0)) - 0.5f;
        }
        x[i] = a * 1.7320508f;
    }
    if (f16) vit_f32_to_f16(x, x16, img * batch);
    vit_outputs o = {.logits = logits, .attn_cls = attn, .attn_rollout = roll};
#define FORWARD() (f16 ? vit_forward_f16(s, x16, batch, NULL, &o) : vit_forward(s, x, batch, NULL, &o))
    st = VIT_OK;
    for (int i = 0; i < warmup; i++) {
        if ((st = FORWARD()) != VIT_OK) break;
    }
    double t0 = vit_now();
    for (int i = 0; i < iters && st == VIT_OK; i++) st = FORWARD();
#undef FORWARD
    double dt = vit_now() - t0;
    if (st) {
        fprintf(stderr, "vit bench: forward: %s\n", vit_session_errmsg(s));
        rc = cli_exit_status(st);
        goto out;
    }
    double ips = (double)iters * batch / dt;
    printf("%.3f images/s\n", ips);
    char th[16] = "all cores", gemm[64] = "";
    if (threads) snprintf(th, sizeof th, "%d", threads);
    if (vit_session_device(s) == VIT_DEVICE_CPU)
        snprintf(gemm, sizeof gemm, ", gemm %s%s", vit_gemm_avx512_preferred() ? "own-avx512" : "openblas",
                 vit_session_precision(s) != VIT_PREC_INT8 ? ""
                 : vit_gemm_i8_impl_best() == VIT_I8_VNNI ? ", int8 kernel avx512-vnni"
                 : vit_gemm_i8_impl_best() == VIT_I8_AVX2 ? ", int8 kernel avx2" : ", int8 kernel scalar");
    printf("batch %d, %d iters: %.2f ms/batch, %.2f ms/image; device %s, %s%s, threads %s%s "
           "(OpenBLAS kernels %s); model %s (%dx%d, D=%d, %d layers)\n",
           batch, iters, dt / iters * 1e3, dt / iters / batch * 1e3,
           vit_session_device(s) == VIT_DEVICE_CUDA ? "cuda" : "cpu",
           vit_precision_str(vit_session_precision(s)), f16 ? ", fp16 input" : "", th, gemm,
           openblas_get_corename(), c->architecture,
           c->grid_h * c->patch_size, c->grid_w * c->patch_size, c->hidden_size, c->num_layers);
    rc = 0;
out:
    free(x);
    free(x16);
    free(logits);
    free(attn);
    free(roll);
    vit_session_free(s);
    vit_model_free(m);
    return rc;
}
