/* describe.c: the model description shared by `vit info --json` and GET /v1/models (describe.h). */
#include "describe.h"

const char *vit_resample_name(int r) {
    return r == VIT_RESAMPLE_BICUBIC ? "bicubic" : r == VIT_RESAMPLE_BILINEAR ? "bilinear"
           : r == VIT_RESAMPLE_NEAREST ? "nearest" : "?";
}

vit_status vit_describe_json(cJSON *o, const vit_config *c, const vit_head *h) {
    int ok = cJSON_AddStringToObject(o, "architecture", c->architecture) &&
             cJSON_AddStringToObject(o, "naming", c->naming) &&
             cJSON_AddNumberToObject(o, "image_size", c->image_size) &&
             cJSON_AddNumberToObject(o, "patch_size", c->patch_size) &&
             cJSON_AddNumberToObject(o, "hidden_size", c->hidden_size) &&
             cJSON_AddNumberToObject(o, "num_layers", c->num_layers) &&
             cJSON_AddNumberToObject(o, "num_heads", c->num_heads) &&
             cJSON_AddNumberToObject(o, "mlp_size", c->mlp_size) &&
             cJSON_AddNumberToObject(o, "num_params", (double)c->num_params) &&
             cJSON_AddNumberToObject(o, "feature_dim", c->feature_dim) &&
             cJSON_AddNumberToObject(o, "num_channels", c->num_channels) &&
             cJSON_AddNumberToObject(o, "num_register_tokens", c->num_register_tokens) &&
             cJSON_AddBoolToObject(o, "layer_scale", c->layer_scale);
    cJSON *hw = ok ? cJSON_AddArrayToObject(o, "image_hw") : NULL;   /* (h, w): non-square models */
    ok = hw && cJSON_AddItemToArray(hw, cJSON_CreateNumber(c->image_h)) &&
         cJSON_AddItemToArray(hw, cJSON_CreateNumber(c->image_w));
    int n = h ? vit_head_num_classes(h) : c->num_classes;
    ok = ok && cJSON_AddNumberToObject(o, "num_classes", n);
    cJSON *labels = ok ? cJSON_AddArrayToObject(o, "labels") : NULL;
    for (int i = 0; labels && i < n; i++) {
        const char *l = h ? vit_head_label(h, i) : c->labels ? c->labels[i] : NULL;
        cJSON *s = cJSON_CreateString(l ? l : "");
        if (!s || !cJSON_AddItemToArray(labels, s)) {
            cJSON_Delete(s);
            labels = NULL;
        }
    }
    return labels ? VIT_OK : VIT_E_NOMEM;
}
