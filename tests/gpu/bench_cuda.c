/* bench_cuda.c: throughput of vit_forward on one session, for bench/gpu_vs_torch.py.
 *   bench_cuda --model DIR --batch B [--iters N] [--warmup W] [--device cuda|cpu] [--f16]
 *              [--input X.npy --output LOGITS.npy]
 * Times vit_forward end to end (host input -> host logits, synchronous), input already in the
 * session's pinned buffer on CUDA (what a server's batcher would fill), random values.
 * Prints one line per run and ends with "<images/s> images/s".  With --input: runs those
 * images once (batch = N of the file) and writes the logits, for a correctness cross-check.
 * --f16: the same values rounded to FP16 (vit_f32_to_f16) in the same buffer, through
 * vit_forward_f16 (half the bytes to the GPU; on CUDA the logits equal FP32 input's bit for bit). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vit.h"
#include "util.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *in = NULL, *outp = NULL;
    int B = 1, iters = 50, warmup = 5;
    vit_device dev = VIT_DEVICE_CUDA;
    int f16 = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--f16")) { f16 = 1; continue; }
        if (!v) { fprintf(stderr, "bench_cuda: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "--model")) dir = v;
        else if (!strcmp(a, "--batch")) B = atoi(v);
        else if (!strcmp(a, "--iters")) iters = atoi(v);
        else if (!strcmp(a, "--warmup")) warmup = atoi(v);
        else if (!strcmp(a, "--device")) dev = !strcmp(v, "cpu") ? VIT_DEVICE_CPU : VIT_DEVICE_CUDA;
        else if (!strcmp(a, "--input")) in = v;
        else if (!strcmp(a, "--output")) outp = v;
        else { fprintf(stderr, "bench_cuda: unknown option %s\n", a); return 2; }
        i++;
    }
    if (!dir || B < 1 || iters < 1 || warmup < 0) {
        fprintf(stderr, "usage: bench_cuda --model DIR --batch B [--iters N] [--warmup W] [--device cuda|cpu] [--f16] [--input X.npy --output L.npy]\n");
        return 2;
    }
    char err[256];
    vit_model *m = NULL;
    if (vit_model_load(dir, NULL, &m, err, sizeof err)) { fprintf(stderr, "bench_cuda: %s\n", err); return 1; }
    const vit_config *c = vit_model_config(m);
    const int H = c->grid_h * c->patch_size, W = c->grid_w * c->patch_size, CH = c->num_channels;
    float *x = NULL;
    int64_t shape[8];
    int nd = 0;
    if (in) {
        if (vit_npy_read(in, &x, shape, &nd, err, sizeof err)) { fprintf(stderr, "bench_cuda: %s\n", err); return 1; }
        if (nd != 4 || shape[1] != CH || shape[2] != H || shape[3] != W) {
            fprintf(stderr, "bench_cuda: input must be (N,%d,%d,%d)\n", CH, H, W);
            return 1;
        }
        B = (int)shape[0];
    }
    vit_session_opts so = {.max_batch = B, .threads = 0, .device = dev,
                           .precision = dev == VIT_DEVICE_CUDA ? VIT_PREC_FP16 : VIT_PREC_FP32};
    vit_session *s = NULL;
    if (vit_session_new(m, &so, &s, err, sizeof err)) { fprintf(stderr, "bench_cuda: %s\n", err); return 1; }
    size_t img = (size_t)CH * H * W;
    float *buf = vit_session_input_buffer(s);   /* pinned on CUDA, NULL on the CPU */
    int own = !buf;
    if (own) buf = malloc(sizeof(float) * img * B);
    float *vals = x ? x : malloc(sizeof(float) * img * B);
    if (!x) {
        unsigned long long r = 88172645463325252ull;
        for (size_t i = 0; i < img * B; i++) {
            r ^= r << 13; r ^= r >> 7; r ^= r << 17;
            vals[i] = (float)((r >> 11) * (1.0 / 9007199254740992.0)) * 4.f - 2.f;
        }
    }
    if (f16) vit_f32_to_f16(vals, (uint16_t *)buf, img * B);   /* fits: half the bytes */
    else memcpy(buf, vals, sizeof(float) * img * B);
    if (!x) free(vals);
#define FORWARD() (f16 ? vit_forward_f16(s, (const uint16_t *)buf, B, NULL, &o) : vit_forward(s, buf, B, NULL, &o))
    int C = c->num_classes;
    float *logits = malloc(sizeof(float) * C * B);
    vit_outputs o = {.logits = logits};
    if (x) {
        vit_status st = FORWARD();
        if (st) { fprintf(stderr, "bench_cuda: %s\n", vit_session_errmsg(s)); return 1; }
        int64_t os[2] = {B, C};
        if (outp && vit_npy_write(outp, logits, os, 2, err, sizeof err)) { fprintf(stderr, "bench_cuda: %s\n", err); return 1; }
        printf("wrote %s (%d x %d)\n", outp ? outp : "(nothing)", B, C);
        return 0;
    }
    for (int i = 0; i < warmup; i++)
        if (FORWARD()) { fprintf(stderr, "bench_cuda: %s\n", vit_session_errmsg(s)); return 1; }
    double *t = malloc(sizeof(double) * iters), total = 0;
    for (int i = 0; i < iters; i++) {
        double t0 = vit_now();
        if (FORWARD()) { fprintf(stderr, "bench_cuda: %s\n", vit_session_errmsg(s)); return 1; }
        t[i] = vit_now() - t0;
        total += t[i];
    }
    qsort(t, iters, sizeof *t, cmp);
    printf("device %s input %s batch %d: median %.3f ms, p90 %.3f ms, mean %.3f ms per batch\n",
           vit_session_device(s) == VIT_DEVICE_CUDA ? "cuda" : "cpu", f16 ? "fp16" : "fp32", B, t[iters / 2] * 1e3,
           t[(int)(iters * 0.9)] * 1e3, total / iters * 1e3);
    printf("%.1f images/s\n", B / t[iters / 2]);
    free(t);
    free(logits);
    if (own) free(buf);
    vit_session_free(s);
    vit_model_free(m);
    return 0;
}
