/* describe.c: the model description that `vit info --json` and GET /v1/models both print
 * (describe.h): one function, so the two cannot drift apart. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "describe.h"

const char *vit_resample_name(int r) {
    return r == VIT_RESAMPLE_BICUBIC ? "bicubic" : r == VIT_RESAMPLE_BILINEAR ? "bilinear"
           : r == VIT_RESAMPLE_NEAREST ? "nearest" : "?";
}

/* a float as the short decimal it was written as (1e-06, not 9.99999997e-07) */
static double f2d(float f) {
    char b[32];
    snprintf(b, sizeof b, "%.7g", (double)f);
    return strtod(b, NULL);
}

static int add_pair(cJSON *o, const char *name, int a, int b) {
    int v[2] = {a, b};
    cJSON *arr = cJSON_CreateIntArray(v, 2);
    return arr && cJSON_AddItemToObject(o, name, arr) ? 1 : (cJSON_Delete(arr), 0);
}

static int add_f3(cJSON *o, const char *name, const float *v) {
    double d[3] = {f2d(v[0]), f2d(v[1]), f2d(v[2])};
    cJSON *arr = cJSON_CreateDoubleArray(d, 3);
    return arr && cJSON_AddItemToObject(o, name, arr) ? 1 : (cJSON_Delete(arr), 0);
}

static int add_config(cJSON *o, const vit_config *c) {
    return cJSON_AddStringToObject(o, "architecture", c->architecture) &&
           cJSON_AddStringToObject(o, "naming", c->naming) &&
           cJSON_AddNumberToObject(o, "image_size", c->image_size) &&
           cJSON_AddNumberToObject(o, "trained_image_size", c->trained_image_size) &&
           cJSON_AddNumberToObject(o, "patch_size", c->patch_size) &&
           cJSON_AddNumberToObject(o, "num_channels", c->num_channels) &&
           add_pair(o, "attention_grid", c->grid_h, c->grid_w) &&
           cJSON_AddNumberToObject(o, "num_patches", c->num_patches) &&
           cJSON_AddNumberToObject(o, "num_prefix_tokens", c->num_prefix_tokens) &&
           cJSON_AddNumberToObject(o, "num_tokens", c->num_tokens) &&
           cJSON_AddNumberToObject(o, "hidden_size", c->hidden_size) &&
           cJSON_AddNumberToObject(o, "num_layers", c->num_layers) &&
           cJSON_AddNumberToObject(o, "num_heads", c->num_heads) &&
           cJSON_AddNumberToObject(o, "mlp_size", c->mlp_size) &&
           cJSON_AddNumberToObject(o, "layer_norm_eps", f2d(c->layer_norm_eps)) &&
           cJSON_AddBoolToObject(o, "qkv_bias", c->qkv_bias) &&
           cJSON_AddStringToObject(o, "pooling", c->pooling == VIT_POOL_MEAN ? "mean" : "cls") &&
           cJSON_AddBoolToObject(o, "pre_logits", c->has_pre_logits) &&
           cJSON_AddBoolToObject(o, "distilled", c->distilled) &&
           cJSON_AddNumberToObject(o, "num_params", (double)c->num_params) &&
           cJSON_AddNumberToObject(o, "feature_dim", c->feature_dim);
}

static int add_labels(cJSON *o, const vit_config *c, const vit_head *h) {
    int n = h ? vit_head_num_classes(h) : c->num_classes;
    cJSON *labels = cJSON_AddNumberToObject(o, "num_classes", n) ? cJSON_AddArrayToObject(o, "labels") : NULL;
    for (int i = 0; labels && i < n; i++) {
        const char *l = h ? vit_head_label(h, i) : c->labels ? c->labels[i] : NULL;
        cJSON *s = cJSON_CreateString(l ? l : "");
        if (!s || !cJSON_AddItemToArray(labels, s)) {
            cJSON_Delete(s);
            labels = NULL;
        }
    }
    return labels != NULL;
}

static int add_preprocessing(cJSON *o, const vit_preprocess *p) {
    cJSON *pp = cJSON_AddObjectToObject(o, "preprocessing");
    return pp && cJSON_AddBoolToObject(pp, "do_resize", p->do_resize) &&
           (p->shortest_edge > 0 ? cJSON_AddNumberToObject(pp, "shortest_edge", p->shortest_edge) != NULL
                                 : add_pair(pp, "resize", p->resize_h, p->resize_w)) &&
           cJSON_AddStringToObject(pp, "resample", vit_resample_name(p->resample)) &&
           cJSON_AddBoolToObject(pp, "do_center_crop", p->do_center_crop) &&
           add_pair(pp, "crop", p->crop_h, p->crop_w) &&
           cJSON_AddBoolToObject(pp, "do_rescale", p->do_rescale) &&
           cJSON_AddNumberToObject(pp, "rescale_factor", p->do_rescale ? f2d(p->rescale_factor) : 1.0) &&
           cJSON_AddBoolToObject(pp, "do_normalize", p->do_normalize) &&
           add_f3(pp, "mean", p->mean) && add_f3(pp, "std", p->std) &&
           add_pair(pp, "output", p->out_h, p->out_w);
}

static int add_knobs(cJSON *o) {
    cJSON *k = cJSON_AddObjectToObject(o, "knobs");
    for (int i = 0; k && i < vit_knob_count(); i++) {
        vit_knob_info ki;
        if (vit_knob_info_get(i, &ki) != 0) return 0;
        int ok = !strcmp(ki.type, "enum") ? cJSON_AddStringToObject(k, ki.name, ki.value) != NULL
                                          : cJSON_AddNumberToObject(k, ki.name, atoi(ki.value)) != NULL;
        if (!ok) return 0;
    }
    return k != NULL;
}

vit_status vit_describe_json(cJSON *o, const vit_config *c, const vit_head *h) {
    int ok = add_config(o, c) && add_labels(o, c, h) && add_preprocessing(o, &c->preprocess) && add_knobs(o);
    return ok ? VIT_OK : VIT_E_NOMEM;
}
