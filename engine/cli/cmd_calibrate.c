/* cmd_calibrate.c: `vit calibrate`: activation ranges for INT8 / FP8 inference, from real images
 * through the CPU FP32 forward (engine/calib.c), written beside the model as calibration.json
 * (format: engine/io/calib_io.h), which vit_model_load then loads with the model.
 *   vit calibrate --model DIR --data PATH [--samples N] [--method minmax|percentile|mse]
 *                 [--out FILE] [--batch N] [--threads N] [--labels FILE]
 * --samples N takes N evenly spaced images of the data set (default 256; 0: all), so the output
 * depends only on the data, N and the method. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dataset.h"

static void calibrate_usage(FILE *f) {
    fprintf(f,
            "usage: vit calibrate --model DIR --data PATH [--samples N] [--method minmax|percentile|mse]\n"
            "                     [--out FILE] [--batch N] [--threads N] [--labels FILE]\n"
            "  --data PATH          ImageFolder directory or IDX images file (as vit eval)\n"
            "  --samples N          evenly spaced images of the data set (default 256, 0: all)\n"
            "  --method M           clipping range per tensor: minmax (largest |x|), percentile\n"
            "                       (99.99th), mse (least INT8 error; default)\n"
            "  --out FILE           default DIR/calibration.json, which the model loads with it\n");
}

typedef struct {
    const char *model, *data, *out, *labels;
    int samples, batch, threads;
    vit_calib_method method;
} calib_args;

/* 0 ok, 1 --help printed, 2 bad arguments (printed) */
static int parse_args(int argc, char **argv, calib_args *a) {
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) { calibrate_usage(stdout); return 1; }
        if (!v || strncmp(k, "--", 2)) {
            fprintf(stderr, "vit calibrate: %s '%s'\n",
                    strncmp(k, "--", 2) ? "unexpected argument" : "missing value for", k);
            return 2;
        }
        i++;
        if (!strcmp(k, "--model")) a->model = v;
        else if (!strcmp(k, "--data")) a->data = v;
        else if (!strcmp(k, "--out")) a->out = v;
        else if (!strcmp(k, "--labels")) a->labels = v;
        else if (!strcmp(k, "--samples")) { if ((a->samples = cli_parse_int(k, v, 0, 1 << 24)) < 0) return 2; }
        else if (!strcmp(k, "--batch")) { if ((a->batch = cli_parse_int(k, v, 1, 1024)) < 0) return 2; }
        else if (!strcmp(k, "--threads")) { if ((a->threads = cli_parse_int(k, v, 0, 256)) < 0) return 2; }
        else if (!strcmp(k, "--method")) {
            if (vit_calib_method_parse(v, &a->method) != 0) {
                fprintf(stderr, "vit calibrate: --method: expected minmax, percentile or mse, got '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "vit calibrate: unknown option '%s'\n", k);
            return 2;
        }
    }
    if (!a->model || !a->data) {
        fprintf(stderr, "vit calibrate: --model and --data are required\n");
        return 2;
    }
    return 0;
}

/* every sample of ds through the calibrator, a batch at a time */
static int feed(vit_calibrator *cal, const cli_dataset *ds, const vit_preprocess *pp, int batch,
                float *input) {
    char err[512] = "";
    const int N = cli_dataset_count(ds);
    const size_t per = (size_t)3 * pp->out_h * pp->out_w;
    for (int i0 = 0; i0 < N; i0 += batch) {
        const int B = N - i0 < batch ? N - i0 : batch;
        for (int b = 0; b < B; b++) {
            vit_status st = cli_dataset_tensor(ds, i0 + b, pp, VIT_DEFAULT_MAX_PIXELS,
                                               input + (size_t)b * per, err, sizeof err);
            if (st != VIT_OK) {
                char name[512];
                fprintf(stderr, "vit calibrate: %s: %s\n",
                        cli_dataset_sample_name(ds, i0 + b, name, sizeof name), err);
                return cli_exit_status(st);
            }
        }
        vit_status st = vit_calibrator_add(cal, input, B, err, sizeof err);
        if (st != VIT_OK) {
            fprintf(stderr, "vit calibrate: %s\n", err);
            return cli_exit_status(st);
        }
    }
    return 0;
}

int cmd_calibrate(int argc, char **argv) {
    calib_args a = {.samples = 256, .batch = 16, .method = VIT_CALIB_MSE};
    int pr = parse_args(argc, argv, &a);
    if (pr) {
        if (pr == 2) calibrate_usage(stderr);
        return pr == 1 ? 0 : 2;
    }
    char err[512] = "", outpath[4200];
    int rc = 1;
    vit_model *m = NULL;
    cli_dataset *ds = NULL;
    vit_calibrator *cal = NULL;
    float *input = NULL;
    if ((rc = cli_load_model("calibrate", a.model, NULL, &m)) != 0) goto out;
    rc = 1;
    const vit_config *cfg = vit_model_config(m);
    vit_status st = cli_dataset_open(a.data, a.labels, NULL, 0, 0, &ds, err,
                                     sizeof err);
    if (st != VIT_OK) {
        fprintf(stderr, "vit calibrate: %s\n", err);
        rc = cli_exit_status(st);
        goto out;
    }
    cli_dataset_limit(ds, a.samples);
    const vit_preprocess *pp = &cfg->preprocess;
    if (pp->out_h != cfg->image_size || pp->out_w != cfg->image_size) {
        fprintf(stderr, "vit calibrate: preprocessing makes %dx%d, the model runs at %d\n",
                pp->out_h, pp->out_w, cfg->image_size);
        goto out;
    }
    if (a.batch > cli_dataset_count(ds)) a.batch = cli_dataset_count(ds);
    if (a.batch < 1) {
        fprintf(stderr, "vit calibrate: %s: no images\n", a.data);
        goto out;
    }
    if ((st = vit_calibrator_new(m, a.method, a.batch, a.threads, &cal, err, sizeof err))) {
        fprintf(stderr, "vit calibrate: %s\n", err);
        rc = cli_exit_status(st);
        goto out;
    }
    input = malloc(sizeof(float) * 3 * (size_t)pp->out_h * pp->out_w * (size_t)a.batch);
    if (!input) {
        fprintf(stderr, "vit calibrate: out of memory (batch %d)\n", a.batch);
        goto out;
    }
    if ((rc = feed(cal, ds, pp, a.batch, input)) != 0) goto out;
    rc = 1;
    if (a.out) snprintf(outpath, sizeof outpath, "%s", a.out);
    else snprintf(outpath, sizeof outpath, "%s/calibration.json", a.model);
    if ((st = vit_calibrator_write(cal, outpath, err, sizeof err))) {
        fprintf(stderr, "vit calibrate: %s\n", err);
        rc = cli_exit_status(st);
        goto out;
    }
    printf("calibrated %s on %d images (%s), method %s: %s\n", a.model, cli_dataset_count(ds),
           cli_dataset_kind(ds), vit_calib_method_str(a.method), outpath);
    rc = 0;
out:
    free(input);
    vit_calibrator_free(cal);
    cli_dataset_free(ds);
    vit_model_free(m);
    return rc;
}
