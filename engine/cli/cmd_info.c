/* cmd_info.c: `vit info --model DIR [--image-size N] [--json]`: what a model directory holds
 * (architecture, naming scheme, dims, pooling, labels, preprocessing, parameter count, the
 * environment knobs in effect), as text or as one JSON object (the same one GET /v1/models
 * gives, engine/describe.c).  Loading validates the whole checkpoint, so this is also the
 * quick way to check a directory before serving it. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "describe.h"
#include "vit.h"

static void usage(FILE *f) {
    fprintf(f, "usage: vit info --model DIR [--image-size N] [--json]\n"
               "  --model DIR       model directory (config.json + model.safetensors)\n"
               "  --image-size N    run size (position embeddings interpolated); default: as trained\n"
               "  --json            print one JSON object instead of text\n");
}

static void print_pre(const vit_preprocess *p) {
    if (p->do_resize) {
        if (p->shortest_edge > 0) printf("resize shortest edge to %d", p->shortest_edge);
        else printf("resize to %dx%d", p->resize_h, p->resize_w);
        printf(" (%s), ", vit_resample_name(p->resample));
    }
    if (p->do_center_crop) printf("center crop %dx%d, ", p->crop_h, p->crop_w);
    if (p->do_rescale) printf("x %.6g, ", (double)p->rescale_factor);
    if (p->do_normalize)
        printf("normalize mean [%.4g, %.4g, %.4g] std [%.4g, %.4g, %.4g], ", (double)p->mean[0], (double)p->mean[1],
               (double)p->mean[2], (double)p->std[0], (double)p->std[1], (double)p->std[2]);
    printf("-> 3x%dx%d\n", p->out_h, p->out_w);
}

static const char *pooling_str(const vit_config *c) {
    if (c->distilled) return "class + distillation tokens (DeiT; head averages both)";
    return c->pooling == VIT_POOL_MEAN ? "mean of patch tokens" : "class token";
}

/* the one description /v1/models also prints (engine/describe.c), plus the path given */
static int print_json(const char *dir, const vit_config *c) {
    cJSON *o = cJSON_CreateObject();
    if (o && !(cJSON_AddStringToObject(o, "path", dir) && vit_describe_json(o, c, NULL) == VIT_OK)) {
        cJSON_Delete(o);
        o = NULL;
    }
    return cli_print_json("info", o);
}

/* "knobs:" and every knob's value in effect, wrapped after ~100 columns */
static void print_knobs(void) {
    int col = printf("knobs:          ");
    for (int i = 0; i < vit_knob_count(); i++) {
        vit_knob_info ki;
        if (vit_knob_info_get(i, &ki) != 0) continue;
        if (col > 100) col = printf("\n                ");
        col += printf("%s=%s%s ", ki.name, ki.value, ki.from_env ? " (env)" : "");
    }
    printf("\n");
}

int cmd_info(int argc, char **argv) {
    const char *dir = NULL;
    int image_size = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--model") && i + 1 < argc) {
            dir = argv[++i];
        } else if (!strcmp(argv[i], "--image-size") && i + 1 < argc) {
            if ((image_size = cli_parse_int("--image-size", argv[++i], 1, 16384)) < 0) return 2;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else {
            fprintf(stderr, "vit: info: unknown or incomplete option '%s'\n", argv[i]);
            cli_suggest_option("info", argv[i], usage);
            usage(stderr);
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "vit: info: --model DIR is required\n");
        usage(stderr);
        return 2;
    }
    char err[1024] = "";
    vit_model *m = NULL;
    vit_load_opts opts = {.image_size = image_size};
    vit_status st = vit_model_load(dir, &opts, &m, err, sizeof err);
    if (st) {
        fprintf(stderr, "vit: info: %s: %s\n", vit_status_str(st), err);
        return 1;
    }
    const vit_config *c = vit_model_config(m);
    int rc = 0;
    if (json) {
        rc = print_json(dir, c);
    } else {
        printf("model:          %s\n", dir);
        printf("architecture:   %s (%s tensor names)\n", c->architecture,
               !strcmp(c->naming, "hf") ? "Hugging Face" : c->naming);
        printf("image size:     %d", c->image_size);
        if (c->image_size != c->trained_image_size)
            printf(" (trained at %d; position embeddings interpolated bicubically)", c->trained_image_size);
        printf(", patch %d, grid %dx%d = %d patches, %d tokens\n", c->patch_size, c->grid_h, c->grid_w,
               c->num_patches, c->num_tokens);
        printf("transformer:    hidden %d, %d layers, %d heads, MLP %d, GELU (erf), LayerNorm eps %g, qkv bias %s\n",
               c->hidden_size, c->num_layers, c->num_heads, c->mlp_size, (double)c->layer_norm_eps,
               c->qkv_bias ? "yes" : "no");
        printf("pooling:        %s%s\n", pooling_str(c), c->has_pre_logits ? ", then tanh representation layer" : "");
        printf("head:           %d features -> %d classes\n", c->feature_dim, c->num_classes);
        printf("labels:         ");
        int show = c->num_classes < 8 ? c->num_classes : 8;
        for (int i = 0; i < show; i++) printf("%s%d:%s", i ? ", " : "", i, c->labels[i]);
        if (show < c->num_classes) printf(", ... (%d labels)", c->num_classes);
        printf("\n");
        printf("preprocessing:  ");
        print_pre(&c->preprocess);
        printf("parameters:     %zu (%.2f M)\n", c->num_params, (double)c->num_params / 1e6);
        print_knobs();
    }
    vit_model_free(m);
    return rc;
}
