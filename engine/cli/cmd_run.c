/* cmd_run.c: `vit run`: the forward pass on preprocessed tensors, for scripts and tests.
 *   vit run --model DIR --input X.npy --output LOGITS.npy [--attention ATTN.npy]
 *           [--rollout R.npy] [--features F.npy] [--threads N] [--batch B]
 *           [--device auto|cpu|cuda] [--precision auto|fp32|fp16|int8|fp8] [--image-size N]
 * X is float32 (N, 3, H, W) at the size the model runs at; LOGITS (N, classes); ATTN and R
 * (N, num_patches): the last layer's head-averaged CLS attention and the attention rollout;
 * F (N, feature_dim).  Images run in batches of B (default min(N, 8)).
 * Exit status: 0 ok, 2 usage, 3 i/o, 7 bad model, 8 device unavailable, 1 other. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vit run --model DIR --input X.npy --output LOGITS.npy [--attention ATTN.npy]\n"
            "               [--rollout R.npy] [--features F.npy] [--threads N] [--batch B]\n"
            "               [--device auto|cpu|cuda] [--precision auto|fp32|fp16|int8|fp8] [--image-size N]\n"
            "  X: float32 (N, 3, H, W), preprocessed; LOGITS (N, classes); ATTN, R (N, patches);\n"
            "  F (N, feature_dim)\n");
}

int cmd_run(int argc, char **argv) {
    cli_engine_opts eo = {0};
    const char *input = NULL, *output = NULL, *attn_path = NULL,
               *roll_path = NULL, *feat_path = NULL;
    int batch = 8;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int eng = cli_engine_opt(a, v, &eo);
        if (eng < 0) return 2;
        if (eng > 0) { i++; continue; }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--input") && v) { input = v; i++; }
        else if (!strcmp(a, "--output") && v) { output = v; i++; }
        else if (!strcmp(a, "--attention") && v) { attn_path = v; i++; }
        else if (!strcmp(a, "--rollout") && v) { roll_path = v; i++; }
        else if (!strcmp(a, "--features") && v) { feat_path = v; i++; }
        else if (!strcmp(a, "--batch") && v) { if ((batch = cli_parse_int("--batch", v, 1, 4096)) < 0) return 2; i++; }
        else { fprintf(stderr, "vit run: unknown or incomplete option '%s'\n", a); usage(stderr); return 2; }
    }
    const char *model = eo.model;
    int threads = eo.threads, image_size = eo.image_size;
    vit_device device = eo.device;
    vit_precision precision = eo.precision;
    if (!model || !input || !output) {
        fprintf(stderr, "vit run: --model, --input and --output are required\n");
        usage(stderr);
        return 2;
    }

    char err[512];
    vit_model *m = NULL;
    vit_session *s = NULL;
    float *x = NULL, *logits = NULL, *attn = NULL, *roll = NULL, *feat = NULL;
    int rc = 1;
    vit_load_opts lo = {.image_size = image_size};
    vit_status st;
    if ((rc = cli_load_model("run", model, &lo, &m)) != 0) return rc;
    rc = 1;
    const vit_config *c = vit_model_config(m);
    int64_t shape[8];
    int nd;
    st = vit_npy_read(input, &x, shape, &nd, err, sizeof err);
    if (st) {
        fprintf(stderr, "vit run: %s\n", err);
        rc = st == VIT_E_IO ? 3 : 2;
        goto out;
    }
    int H = c->grid_h * c->patch_size, W = c->grid_w * c->patch_size;
    if (nd != 4 || shape[0] < 1 || shape[1] != c->num_channels || shape[2] != H || shape[3] != W) {
        fprintf(stderr, "vit run: %s: expected float32 (N, %d, %d, %d), got %d dims (", input,
                c->num_channels, H, W, nd);
        for (int i = 0; i < nd; i++) fprintf(stderr, "%s%lld", i ? ", " : "", (long long)shape[i]);
        fprintf(stderr, ")\n");
        rc = 2;
        goto out;
    }
    if (shape[0] > 1000000) {
        fprintf(stderr, "vit run: %s: %lld images, at most 1000000\n", input, (long long)shape[0]);
        rc = 2;
        goto out;
    }
    int N = (int)shape[0];
    if (batch > N) batch = N;
    vit_session_opts so = {.max_batch = batch, .threads = threads, .device = device,
                           .precision = precision};
    if ((rc = cli_open_session("run", m, &so, &s)) != 0) goto out;
    rc = 1;
    const vit_head *head = vit_model_head(m);
    int K = vit_head_num_classes(head), NP = c->num_patches, F = c->feature_dim;
    logits = malloc(sizeof(float) * (size_t)N * K);
    if (attn_path) attn = malloc(sizeof(float) * (size_t)N * NP);
    if (roll_path) roll = malloc(sizeof(float) * (size_t)N * NP);
    if (feat_path) feat = malloc(sizeof(float) * (size_t)N * F);
    if (!logits || (attn_path && !attn) || (roll_path && !roll) || (feat_path && !feat)) {
        fprintf(stderr, "vit run: out of memory for %d images\n", N);
        goto out;
    }
    size_t img = (size_t)c->num_channels * H * W;
    for (int i = 0; i < N; i += batch) {
        int b = N - i < batch ? N - i : batch;
        vit_outputs o = {
            .logits = logits + (size_t)i * K,
            .features = feat ? feat + (size_t)i * F : NULL,
            .attn_cls = attn ? attn + (size_t)i * NP : NULL,
            .attn_rollout = roll ? roll + (size_t)i * NP : NULL,
        };
        st = vit_forward(s, x + (size_t)i * img, b, NULL, &o);
        if (st) {
            fprintf(stderr, "vit run: forward: %s\n", vit_session_errmsg(s));
            rc = cli_exit_status(st);
            goto out;
        }
    }
    int64_t s_logits[2] = {N, K}, s_patch[2] = {N, NP}, s_feat[2] = {N, F};
    struct { const char *path; const float *data; const int64_t *shape; } outs[] = {
        {output, logits, s_logits}, {attn_path, attn, s_patch}, {roll_path, roll, s_patch},
        {feat_path, feat, s_feat},
    };
    for (size_t k = 0; k < sizeof outs / sizeof outs[0]; k++) {
        if (!outs[k].path) continue;
        st = vit_npy_write(outs[k].path, outs[k].data, outs[k].shape, 2, err, sizeof err);
        if (st) {
            fprintf(stderr, "vit run: %s\n", err);
            rc = 3;
            goto out;
        }
    }
    rc = 0;
out:
    free(x);
    free(logits);
    free(attn);
    free(roll);
    free(feat);
    vit_session_free(s);
    vit_model_free(m);
    return rc;
}
