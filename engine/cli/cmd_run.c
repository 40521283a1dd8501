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

/* the command line: paths, batch and the shared engine options */
typedef struct run_args {
    cli_engine_opts eo;
    const char *input, *output, *attn_path, *roll_path, *feat_path;
    int batch;
} run_args;

/* the outputs of N images: logits always, the others when their path was given */
typedef struct run_outputs {
    float *logits, *attn, *roll, *feat;
} run_outputs;

/* 0 to go on, else the exit status (0 after --help is reported as -1) */
static int parse_args(int argc, char **argv, run_args *r) {
    *r = (run_args){.batch = 8};
    for (int i = 1; i < argc; i++) {
        int rc = cli_engine_arg(argc, argv, &i, &r->eo, usage);
        if (rc == CLI_ARG_NEXT) continue;
        if (rc != CLI_ARG_OWN) return rc ? rc : -1;
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--input") && v) { r->input = v; i++; }
        else if (!strcmp(a, "--output") && v) { r->output = v; i++; }
        else if (!strcmp(a, "--attention") && v) { r->attn_path = v; i++; }
        else if (!strcmp(a, "--rollout") && v) { r->roll_path = v; i++; }
        else if (!strcmp(a, "--features") && v) { r->feat_path = v; i++; }
        else if (!strcmp(a, "--batch") && v) { if ((r->batch = cli_parse_int("--batch", v, 1, 4096)) < 0) return 2; i++; }
        else return cli_unknown_option("run", a, usage, stderr);
    }
    if (!r->eo.model || !r->input || !r->output) {
        fprintf(stderr, "vit run: --model, --input and --output are required\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

/* X.npy as float32 (N, C, H, W) at the model's input size: *x (caller frees) and *N; 0 or the
 * exit status */
static int read_input(const char *input, const vit_config *c, float **x, int *N) {
    char err[512];
    int64_t shape[8];
    int nd;
    vit_status st = vit_npy_read(input, x, shape, &nd, err, sizeof err);
    if (st) {
        fprintf(stderr, "vit run: %s\n", err);
        return st == VIT_E_IO ? 3 : 2;
    }
    int H = c->grid_h * c->patch_size, W = c->grid_w * c->patch_size;
    if (nd != 4 || shape[0] < 1 || shape[1] != c->num_channels || shape[2] != H || shape[3] != W) {
        fprintf(stderr, "vit run: %s: expected float32 (N, %d, %d, %d), got %d dims (", input,
                c->num_channels, H, W, nd);
        for (int i = 0; i < nd; i++) fprintf(stderr, "%s%lld", i ? ", " : "", (long long)shape[i]);
        fprintf(stderr, ")\n");
        return 2;
    }
    if (shape[0] > 1000000) {
        fprintf(stderr, "vit run: %s: %lld images, at most 1000000\n", input, (long long)shape[0]);
        return 2;
    }
    *N = (int)shape[0];
    return 0;
}

/* every image through the session in batches of `batch`, into o; 0 or the exit status */
static int run_batches(vit_session *s, const vit_config *c, const float *x, int N, int batch, int K,
                       const run_outputs *o) {
    int NP = c->num_patches, F = c->feature_dim;
    size_t img = (size_t)c->num_channels * (c->grid_h * c->patch_size) * (c->grid_w * c->patch_size);
    for (int i = 0; i < N; i += batch) {
        int b = N - i < batch ? N - i : batch;
        vit_outputs vo = {
            .logits = o->logits + (size_t)i * K,
            .features = o->feat ? o->feat + (size_t)i * F : NULL,
            .attn_cls = o->attn ? o->attn + (size_t)i * NP : NULL,
            .attn_rollout = o->roll ? o->roll + (size_t)i * NP : NULL,
        };
        vit_status st = vit_forward(s, x + (size_t)i * img, b, NULL, &vo);
        if (st) {
            fprintf(stderr, "vit run: forward: %s\n", vit_session_errmsg(s));
            return cli_exit_status(st);
        }
    }
    return 0;
}

/* the .npy files asked for; 0 or 3 */
static int write_outputs(const run_args *r, const run_outputs *o, int N, int K, int NP, int F) {
    char err[512];
    int64_t s_logits[2] = {N, K}, s_patch[2] = {N, NP}, s_feat[2] = {N, F};
    struct { const char *path; const float *data; const int64_t *shape; } outs[] = {
        {r->output, o->logits, s_logits}, {r->attn_path, o->attn, s_patch}, {r->roll_path, o->roll, s_patch},
        {r->feat_path, o->feat, s_feat},
    };
    for (size_t k = 0; k < sizeof outs / sizeof outs[0]; k++) {
        if (!outs[k].path) continue;
        if (vit_npy_write(outs[k].path, outs[k].data, outs[k].shape, 2, err, sizeof err)) {
            fprintf(stderr, "vit run: %s\n", err);
            return 3;
        }
    }
    return 0;
}

int cmd_run(int argc, char **argv) {
    run_args r;
    int rc = parse_args(argc, argv, &r);
    if (rc) return rc < 0 ? 0 : rc;
    vit_model *m = NULL;
    vit_session *s = NULL;
    float *x = NULL;
    run_outputs o = {0};
    vit_load_opts lo = {.image_size = r.eo.image_size};
    if ((rc = cli_load_model("run", r.eo.model, &lo, &m)) != 0) return rc;
    const vit_config *c = vit_model_config(m);
    int N = 0;
    if ((rc = read_input(r.input, c, &x, &N)) != 0) goto out;
    int batch = r.batch > N ? N : r.batch;
    vit_session_opts so = {.max_batch = batch, .threads = r.eo.threads, .device = r.eo.device,
                           .precision = r.eo.precision};
    if ((rc = cli_open_session("run", m, &so, &s)) != 0) goto out;
    rc = 1;
    int K = vit_head_num_classes(vit_model_head(m)), NP = c->num_patches, F = c->feature_dim;
    o.logits = malloc(sizeof(float) * (size_t)N * K);
    if (r.attn_path) o.attn = malloc(sizeof(float) * (size_t)N * NP);
    if (r.roll_path) o.roll = malloc(sizeof(float) * (size_t)N * NP);
    if (r.feat_path) o.feat = malloc(sizeof(float) * (size_t)N * F);
    if (!o.logits || (r.attn_path && !o.attn) || (r.roll_path && !o.roll) || (r.feat_path && !o.feat)) {
        fprintf(stderr, "vit run: out of memory for %d images\n", N);
        goto out;
    }
    if ((rc = run_batches(s, c, x, N, batch, K, &o)) != 0) goto out;
    rc = write_outputs(&r, &o, N, K, NP, F);
out:
    free(x);
    free(o.logits);
    free(o.attn);
    free(o.roll);
    free(o.feat);
    vit_session_free(s);
    vit_model_free(m);
    return rc;
}
