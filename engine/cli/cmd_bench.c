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

typedef struct bench_args {
    cli_engine_opts eo;
    int batch, iters, warmup, attention, f16;
} bench_args;

/* 0 to go on, else the exit status (0 after --help is reported as -1) */
static int parse_args(int argc, char **argv, bench_args *b) {
    *b = (bench_args){.iters = 10, .warmup = 2};
    for (int i = 1; i < argc; i++) {
        int rc = cli_engine_arg(argc, argv, &i, &b->eo, usage);
        if (rc == CLI_ARG_NEXT) continue;
        if (rc != CLI_ARG_OWN) return rc ? rc : -1;
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--batch") && v) { if ((b->batch = cli_parse_int("--batch", v, 1, 4096)) < 0) return 2; i++; }
        else if (!strcmp(a, "--iters") && v) { if ((b->iters = cli_parse_int("--iters", v, 1, 1000000)) < 0) return 2; i++; }
        else if (!strcmp(a, "--warmup") && v) { if ((b->warmup = cli_parse_int("--warmup", v, 0, 1000000)) < 0) return 2; i++; }
        else if (!strcmp(a, "--attention")) b->attention = 1;
        else if (!strcmp(a, "--f16")) b->f16 = 1;
        else return cli_unknown_option("bench", a, usage, stderr);
    }
    if (!b->eo.model || b->batch < 1) {
        fprintf(stderr, "vit bench: --model and --batch are required\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

/* a batch of input (FP32, and FP16 with --f16) and the outputs asked for */
typedef struct bench_bufs {
    float *x, *logits, *attn, *roll;
    uint16_t *x16;
} bench_bufs;

static void bufs_free(bench_bufs *u) {
    free(u->x);
    free(u->x16);
    free(u->logits);
    free(u->attn);
    free(u->roll);
}

/* the buffers for c's batches, the input filled: a normalized image is roughly N(0,1), so each
 * value is a sum of 4 uniforms (fixed seed); 0, or 1 after "out of memory" */
static int bufs_make(bench_bufs *u, const vit_config *c, int classes, const bench_args *b) {
    size_t img = (size_t)c->num_channels * c->grid_h * c->patch_size * c->grid_w * c->patch_size;
    size_t n = img * b->batch;
    int NP = c->num_patches;
    u->x = malloc(sizeof(float) * n);
    u->logits = malloc(sizeof(float) * (size_t)classes * b->batch);
    if (b->attention) {
        u->attn = malloc(sizeof(float) * (size_t)NP * b->batch);
        u->roll = malloc(sizeof(float) * (size_t)NP * b->batch);
    }
    if (b->f16) u->x16 = malloc(sizeof(uint16_t) * n);
    if (!u->x || !u->logits || (b->attention && (!u->attn || !u->roll)) || (b->f16 && !u->x16)) {
        fprintf(stderr, "vit bench: out of memory\n");
        return 1;
    }
    unsigned long long r = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        float a = 0;
        for (int k = 0; k < 4; k++) {
            r ^= r << 13; r ^= r >> 7; r ^= r << 17;
            a += (float)((r >> 40) * (1.0 / 16777216.0)) - 0.5f;
        }
        u->x[i] = a * 1.7320508f;
    }
    if (b->f16) vit_f32_to_f16(u->x, u->x16, n);
    return 0;
}

/* the warm-up forwards, then the timed ones: *dt seconds for b->iters of them */
static vit_status bench_time(vit_session *s, const bench_args *b, const bench_bufs *u, double *dt) {
    vit_outputs o = {.logits = u->logits, .attn_cls = u->attn, .attn_rollout = u->roll};
#define FORWARD() (b->f16 ? vit_forward_f16(s, u->x16, b->batch, NULL, &o) : vit_forward(s, u->x, b->batch, NULL, &o))
    vit_status st = VIT_OK;
    for (int i = 0; i < b->warmup; i++) {
        if ((st = FORWARD()) != VIT_OK) break;
    }
    double t0 = vit_now();
    for (int i = 0; i < b->iters && st == VIT_OK; i++) st = FORWARD();
#undef FORWARD
    *dt = vit_now() - t0;
    return st;
}

/* images/s, then the line of detail */
static void bench_report(const vit_session *s, const vit_config *c, const bench_args *b, double dt) {
    int batch = b->batch, iters = b->iters;
    printf("%.3f images/s\n", (double)iters * batch / dt);
    char th[16] = "all cores", gemm[64] = "";
    if (b->eo.threads) snprintf(th, sizeof th, "%d", b->eo.threads);
    if (vit_session_device(s) == VIT_DEVICE_CPU)
        snprintf(gemm, sizeof gemm, ", gemm %s%s", vit_gemm_avx512_preferred() ? "own-avx512" : "openblas",
                 vit_session_precision(s) != VIT_PREC_INT8 ? ""
                 : vit_gemm_i8_impl_best() == VIT_I8_VNNI ? ", int8 kernel avx512-vnni"
                 : vit_gemm_i8_impl_best() == VIT_I8_AVX2 ? ", int8 kernel avx2" : ", int8 kernel scalar");
    printf("batch %d, %d iters: %.2f ms/batch, %.2f ms/image; device %s, %s%s, threads %s%s "
           "(OpenBLAS kernels %s); model %s (%dx%d, D=%d, %d layers)\n",
           batch, iters, dt / iters * 1e3, dt / iters / batch * 1e3,
           vit_session_device(s) == VIT_DEVICE_CUDA ? "cuda" : "cpu",
           vit_precision_str(vit_session_precision(s)), b->f16 ? ", fp16 input" : "", th, gemm,
           openblas_get_corename(), c->architecture,
           c->grid_h * c->patch_size, c->grid_w * c->patch_size, c->hidden_size, c->num_layers);
}

int cmd_bench(int argc, char **argv) {
    bench_args b;
    int rc = parse_args(argc, argv, &b);
    if (rc) return rc < 0 ? 0 : rc;
    vit_model *m = NULL;
    vit_session *s = NULL;
    bench_bufs u = {0};
    vit_load_opts lo = {.image_size = b.eo.image_size};
    if ((rc = cli_load_model("bench", b.eo.model, &lo, &m)) != 0) return rc;
    const vit_config *c = vit_model_config(m);
    vit_session_opts so = {.max_batch = b.batch, .threads = b.eo.threads, .device = b.eo.device,
                           .precision = b.eo.precision};
    if ((rc = cli_open_session("bench", m, &so, &s)) != 0) goto out;
    rc = 1;
    if (bufs_make(&u, c, vit_head_num_classes(vit_model_head(m)), &b)) goto out;
    double dt;
    vit_status st = bench_time(s, &b, &u, &dt);
    if (st) {
        fprintf(stderr, "vit bench: forward: %s\n", vit_session_errmsg(s));
        rc = cli_exit_status(st);
        goto out;
    }
    bench_report(s, c, &b, dt);
    rc = 0;
out:
    bufs_free(&u);
    vit_session_free(s);
    vit_model_free(m);
    return rc;
}
