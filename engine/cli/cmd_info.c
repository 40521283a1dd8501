/* cmd_info.c: `vit info --model DIR [--image-size N] [--json]`: what a model directory holds
 * (architecture, naming scheme, dims, pooling, labels, preprocessing, parameter count), as
 * text or as one JSON object.  Loading validates the whole checkpoint, so this is also the
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
    if (p->do_normalize && p->channels == 1)
        printf("normalize mean [%.4g] std [%.4g], ", (double)p->mean[0], (double)p->std[0]);
    else if (p->do_normalize)
        printf("normalize mean [%.4g, %.4g, %.4g] std [%.4g, %.4g, %.4g], ", (double)p->mean[0], (double)p->mean[1],
               (double)p->mean[2], (double)p->std[0], (double)p->std[1], (double)p->std[2]);
    printf("-> %dx%dx%d%s\n", p->channels ? p->channels : 3, p->out_h, p->out_w,
           p->channels == 1 ? " (luminance, as PIL's convert(\"L\"))" : "");
}

static const char *pooling_str(const vit_config *c) {
    if (c->distilled) return "class + distillation tokens (DeiT; head averages both)";
    return c->pooling == VIT_POOL_MEAN       ? "mean of patch tokens"
           : c->pooling == VIT_POOL_CLS_MEAN ? "[class token; mean of patch tokens] (DINOv2 linear head)"
                                             : "class token";
}

/* a float as the short decimal it was written as (1e-06, not 9.99999997e-07) */
static double f2d(float f) {
    char b[32];
    snprintf(b, sizeof b, "%.7g", (double)f);
    return strtod(b, NULL);
}

static cJSON *f3(const float *v) {
    double d[3] = {f2d(v[0]), f2d(v[1]), f2d(v[2])};
    return cJSON_CreateDoubleArray(d, 3);
}

static int print_json(const char *dir, const vit_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", dir);
    if (vit_describe_json(o, c, NULL) != VIT_OK) {
        cJSON_Delete(o);
        fprintf(stderr, "vit: info: out of memory\n");
        return 1;
    }
    cJSON_AddNumberToObject(o, "trained_image_size", c->trained_image_size);
    cJSON *g = cJSON_AddArrayToObject(o, "grid");
    cJSON_AddItemToArray(g, cJSON_CreateNumber(c->grid_h));
    cJSON_AddItemToArray(g, cJSON_CreateNumber(c->grid_w));
    cJSON_AddNumberToObject(o, "num_patches", c->num_patches);
    cJSON_AddNumberToObject(o, "num_prefix_tokens", c->num_prefix_tokens);
    cJSON_AddNumberToObject(o, "num_tokens", c->num_tokens);
    cJSON_AddNumberToObject(o, "layer_norm_eps", f2d(c->layer_norm_eps));
    cJSON_AddBoolToObject(o, "qkv_bias", c->qkv_bias);
    cJSON_AddStringToObject(o, "pooling", c->pooling == VIT_POOL_MEAN       ? "mean"
                                          : c->pooling == VIT_POOL_CLS_MEAN ? "cls+mean"
                                                                            : "cls");
    cJSON_AddBoolToObject(o, "pre_logits", c->has_pre_logits);
    cJSON_AddBoolToObject(o, "distilled", c->distilled);
    const vit_preprocess *p = &c->preprocess;
    cJSON *pp = cJSON_AddObjectToObject(o, "preprocess");
    cJSON_AddBoolToObject(pp, "do_resize", p->do_resize);
    cJSON_AddNumberToObject(pp, "shortest_edge", p->shortest_edge);
    cJSON_AddNumberToObject(pp, "resize_h", p->resize_h);
    cJSON_AddNumberToObject(pp, "resize_w", p->resize_w);
    cJSON_AddStringToObject(pp, "resample", vit_resample_name(p->resample));
    cJSON_AddBoolToObject(pp, "do_center_crop", p->do_center_crop);
    cJSON_AddNumberToObject(pp, "crop_h", p->crop_h);
    cJSON_AddNumberToObject(pp, "crop_w", p->crop_w);
    cJSON_AddBoolToObject(pp, "do_rescale", p->do_rescale);
    cJSON_AddNumberToObject(pp, "rescale_factor", f2d(p->rescale_factor));
    cJSON_AddBoolToObject(pp, "do_normalize", p->do_normalize);
    cJSON_AddItemToObject(pp, "mean", f3(p->mean));
    cJSON_AddItemToObject(pp, "std", f3(p->std));
    cJSON_AddNumberToObject(pp, "out_h", p->out_h);
    cJSON_AddNumberToObject(pp, "out_w", p->out_w);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) {
        fprintf(stderr, "vit: info: out of memory\n");
        return 1;
    }
    puts(s);
    cJSON_free(s);
    return 0;
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
        if (c->image_h != c->image_w) printf("image size:     %dx%d (h x w)", c->image_h, c->image_w);
        else printf("image size:     %d", c->image_size);
        if (c->image_size != c->trained_image_size)
            printf(" (trained at %d; position embeddings interpolated bicubically)", c->trained_image_size);
        printf(", patch %d, grid %dx%d = %d patches, %d tokens\n", c->patch_size, c->grid_h, c->grid_w,
               c->num_patches, c->num_tokens);
        printf("transformer:    hidden %d, %d layers, %d heads, MLP %d, GELU (erf), LayerNorm eps %g, qkv bias %s\n",
               c->hidden_size, c->num_layers, c->num_heads, c->mlp_size, (double)c->layer_norm_eps,
               c->qkv_bias ? "yes" : "no");
        if (c->num_register_tokens || c->layer_scale)
            printf("extras:         %d register token(s)%s\n", c->num_register_tokens,
                   c->layer_scale ? ", LayerScale (folded into proj and fc2)" : "");
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
    }
    vit_model_free(m);
    return rc;
}
