/* cmd_check.c: `vit check`: is a device computing this model right?  Runs vit_device_check: the
 * same 2 image-like inputs through the chosen device/precision and through the CPU in FP32,
 * and prints the relative errors of features, logits and CLS attention.
 *   vit check --model DIR [--device auto|cpu|cuda] [--precision auto|fp32|fp16|int8|fp8]
 *             [--tol T] [--threads N] [--image-size N]
 * Exit status: 0 agrees within --tol (default 0.05), 1 differs, 2 usage, 7 bad model,
 * 8 device unavailable.  vitd runs the same check before serving on CUDA (--device-check). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: vit check --model DIR [--device auto|cpu|cuda] [--precision auto|fp32|fp16|int8|fp8]\n"
               "                 [--tol T] [--threads N] [--image-size N]\n"
               "  compare the device's features, logits and CLS attention with the CPU FP32 reference\n"
               "  on 2 synthetic images; exit 0 when every relative error is <= T (default 0.05)\n");
}

int cmd_check(int argc, char **argv) {
    cli_engine_opts eo = {0};
    double tol = 0.05;
    for (int i = 1; i < argc; i++) {
        int rc = cli_engine_arg(argc, argv, &i, &eo, usage);
        if (rc == CLI_ARG_NEXT) continue;
        if (rc != CLI_ARG_OWN) return rc;
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--tol") && v) {
            char *end;
            tol = strtod(v, &end);
            if (*end || !(tol > 0 && tol < 1e6)) { fprintf(stderr, "vit check: --tol: expected a positive number, got '%s'\n", v); return 2; }
            i++;
        } else return cli_unknown_option("check", a, usage, stderr);
    }
    const char *model = eo.model;
    int threads = eo.threads, image_size = eo.image_size;
    vit_device device = eo.device;
    vit_precision precision = eo.precision;
    if (!model) {
        fprintf(stderr, "vit check: --model is required\n");
        usage(stderr);
        return 2;
    }
    vit_model *m = NULL;
    vit_load_opts lo = {.image_size = image_size};
    int rc = cli_load_model("check", model, &lo, &m);
    if (rc) return rc;
    vit_session_opts so = {.max_batch = 2, .threads = threads, .device = device, .precision = precision};
    vit_check_result r;
    char err[512];
    vit_status st = vit_device_check(m, &so, tol, &r, err, sizeof err);
    if (st == VIT_OK || st == VIT_E_BACKEND) {
        printf("%s/%s vs cpu/fp32: relative error features %.3g, logits %.3g, attention %.3g; top-1 %s; tolerance %.3g: %s\n",
               r.device == VIT_DEVICE_CUDA ? "cuda" : "cpu", vit_precision_str(r.precision), r.features_err,
               r.logits_err, r.attn_err, r.top1_agree ? "agrees" : "differs", tol, st == VIT_OK ? "ok" : "MISMATCH");
        rc = st == VIT_OK ? 0 : 1;
    } else {
        fprintf(stderr, "vit check: %s\n", err);
        rc = cli_exit_status(st);
    }
    vit_model_free(m);
    return rc;
}
