/* naming.c: the three naming schemes' tensor names (see naming.h). */
#include "io/naming.h"

#include <stdio.h>
#include <string.h>

static const naming_scheme schemes[NAMING_COUNT] = {
    [NAMING_HF] = {
        .id = NAMING_HF, .name = "hf",
        .patch_w = "embeddings.patch_embeddings.projection.weight",
        .patch_b = "embeddings.patch_embeddings.projection.bias",
        .cls_token = "embeddings.cls_token", .dist_token = "embeddings.distillation_token",
        .pos_embed = "embeddings.position_embeddings",
        .ln1_w = "encoder.layer.%d.layernorm_before.weight", .ln1_b = "encoder.layer.%d.layernorm_before.bias",
        .q_k_v_w = {"encoder.layer.%d.attention.attention.query.weight", "encoder.layer.%d.attention.attention.key.weight",
                    "encoder.layer.%d.attention.attention.value.weight"},
        .q_k_v_b = {"encoder.layer.%d.attention.attention.query.bias", "encoder.layer.%d.attention.attention.key.bias",
                    "encoder.layer.%d.attention.attention.value.bias"},
        .proj_w = "encoder.layer.%d.attention.output.dense.weight", .proj_b = "encoder.layer.%d.attention.output.dense.bias",
        .ln2_w = "encoder.layer.%d.layernorm_after.weight", .ln2_b = "encoder.layer.%d.layernorm_after.bias",
        .fc1_w = "encoder.layer.%d.intermediate.dense.weight", .fc1_b = "encoder.layer.%d.intermediate.dense.bias",
        .fc2_w = "encoder.layer.%d.output.dense.weight", .fc2_b = "encoder.layer.%d.output.dense.bias",
        .norm_w = "layernorm.weight", .norm_b = "layernorm.bias",
        .head_w = "classifier.weight", .head_b = "classifier.bias",
        .head_cls_w = "cls_classifier.weight", .head_cls_b = "cls_classifier.bias",
        .head_dist_w = "distillation_classifier.weight", .head_dist_b = "distillation_classifier.bias",
    },
    [NAMING_TIMM] = {
        .id = NAMING_TIMM, .name = "timm",
        .patch_w = "patch_embed.proj.weight", .patch_b = "patch_embed.proj.bias",
        .cls_token = "cls_token", .dist_token = "dist_token", .reg_token = "reg_token", .pos_embed = "pos_embed",
        .ln1_w = "blocks.%d.norm1.weight", .ln1_b = "blocks.%d.norm1.bias",
        .qkv_w = "blocks.%d.attn.qkv.weight", .qkv_b = "blocks.%d.attn.qkv.bias",
        .proj_w = "blocks.%d.attn.proj.weight", .proj_b = "blocks.%d.attn.proj.bias",
        .ln2_w = "blocks.%d.norm2.weight", .ln2_b = "blocks.%d.norm2.bias",
        .fc1_w = "blocks.%d.mlp.fc1.weight", .fc1_b = "blocks.%d.mlp.fc1.bias",
        .fc2_w = "blocks.%d.mlp.fc2.weight", .fc2_b = "blocks.%d.mlp.fc2.bias",
        .ls1 = "blocks.%d.ls1.gamma", .ls2 = "blocks.%d.ls2.gamma",
        .norm_w = "norm.weight", .norm_b = "norm.bias",
        .fc_norm_w = "fc_norm.weight", .fc_norm_b = "fc_norm.bias",
        .pre_w = "pre_logits.fc.weight", .pre_b = "pre_logits.fc.bias",
        .head_w = "head.weight", .head_b = "head.bias",
        .head_cls_w = "head.weight", .head_cls_b = "head.bias",
        .head_dist_w = "head_dist.weight", .head_dist_b = "head_dist.bias",
    },
    [NAMING_HF_DINOV2] = {
        .id = NAMING_HF_DINOV2, .name = "hf-dinov2",
        .patch_w = "embeddings.patch_embeddings.projection.weight",
        .patch_b = "embeddings.patch_embeddings.projection.bias",
        .cls_token = "embeddings.cls_token", .reg_token = "embeddings.register_tokens",
        .mask_token = "embeddings.mask_token", .pos_embed = "embeddings.position_embeddings",
        .ln1_w = "encoder.layer.%d.norm1.weight", .ln1_b = "encoder.layer.%d.norm1.bias",
        .q_k_v_w = {"encoder.layer.%d.attention.attention.query.weight", "encoder.layer.%d.attention.attention.key.weight",
                    "encoder.layer.%d.attention.attention.value.weight"},
        .q_k_v_b = {"encoder.layer.%d.attention.attention.query.bias", "encoder.layer.%d.attention.attention.key.bias",
                    "encoder.layer.%d.attention.attention.value.bias"},
        .proj_w = "encoder.layer.%d.attention.output.dense.weight", .proj_b = "encoder.layer.%d.attention.output.dense.bias",
        .ln2_w = "encoder.layer.%d.norm2.weight", .ln2_b = "encoder.layer.%d.norm2.bias",
        .fc1_w = "encoder.layer.%d.mlp.fc1.weight", .fc1_b = "encoder.layer.%d.mlp.fc1.bias",
        .fc2_w = "encoder.layer.%d.mlp.fc2.weight", .fc2_b = "encoder.layer.%d.mlp.fc2.bias",
        .ls1 = "encoder.layer.%d.layer_scale1.lambda1", .ls2 = "encoder.layer.%d.layer_scale2.lambda1",
        .norm_w = "layernorm.weight", .norm_b = "layernorm.bias",
        .head_w = "classifier.weight", .head_b = "classifier.bias",
    },
    [NAMING_TV] = {
        .id = NAMING_TV, .name = "torchvision",
        .patch_w = "conv_proj.weight", .patch_b = "conv_proj.bias",
        .cls_token = "class_token", .pos_embed = "encoder.pos_embedding",
        .ln1_w = "encoder.layers.encoder_layer_%d.ln_1.weight", .ln1_b = "encoder.layers.encoder_layer_%d.ln_1.bias",
        .qkv_w = "encoder.layers.encoder_layer_%d.self_attention.in_proj_weight",
        .qkv_b = "encoder.layers.encoder_layer_%d.self_attention.in_proj_bias",
        .proj_w = "encoder.layers.encoder_layer_%d.self_attention.out_proj.weight",
        .proj_b = "encoder.layers.encoder_layer_%d.self_attention.out_proj.bias",
        .ln2_w = "encoder.layers.encoder_layer_%d.ln_2.weight", .ln2_b = "encoder.layers.encoder_layer_%d.ln_2.bias",
        .fc1_w = "encoder.layers.encoder_layer_%d.mlp.0.weight", .fc1_b = "encoder.layers.encoder_layer_%d.mlp.0.bias",
        .fc2_w = "encoder.layers.encoder_layer_%d.mlp.3.weight", .fc2_b = "encoder.layers.encoder_layer_%d.mlp.3.bias",
        .fc1_w_legacy = "encoder.layers.encoder_layer_%d.mlp.linear_1.weight",
        .fc1_b_legacy = "encoder.layers.encoder_layer_%d.mlp.linear_1.bias",
        .fc2_w_legacy = "encoder.layers.encoder_layer_%d.mlp.linear_2.weight",
        .fc2_b_legacy = "encoder.layers.encoder_layer_%d.mlp.linear_2.bias",
        .norm_w = "encoder.ln.weight", .norm_b = "encoder.ln.bias",
        .pre_w = "heads.pre_logits.weight", .pre_b = "heads.pre_logits.bias",
        .head_w = "heads.head.weight", .head_b = "heads.head.bias",
    },
};

/* head tensors of variants the loader does not take but the head writer must still replace */
static const char *const other_head_tensors[] = {"head.fc.weight", "head.fc.bias"};

const naming_scheme *naming_get(naming_id id) {
    return (int)id >= 0 && id < NAMING_COUNT ? &schemes[id] : NULL;
}

const naming_scheme *naming_detect(const st_file *f, char prefix[NAMING_PREFIX_MAX]) {
    static const struct { const char *prefix; naming_id id; } hf[] = {
        {"vit.", NAMING_HF}, {"deit.", NAMING_HF}, {"dinov2.", NAMING_HF_DINOV2},
        {"dinov2_with_registers.", NAMING_HF_DINOV2}, {"", NAMING_HF}};
    char nb[160];
    prefix[0] = 0;
    for (size_t i = 0; i < sizeof hf / sizeof hf[0]; i++) {
        snprintf(nb, sizeof nb, "%s%s", hf[i].prefix, schemes[hf[i].id].patch_w);
        if (st_lookup(f, nb)) {
            snprintf(prefix, NAMING_PREFIX_MAX, "%s", hf[i].prefix);
            return &schemes[hf[i].id];
        }
    }
    if (st_lookup(f, schemes[NAMING_TIMM].patch_w)) return &schemes[NAMING_TIMM];
    if (st_lookup(f, schemes[NAMING_TV].patch_w)) return &schemes[NAMING_TV];
    return NULL;
}

static int is_head_pattern(const naming_scheme *s, const char *pat) {
    const char *const h[] = {s->head_w, s->head_b, s->head_cls_w, s->head_cls_b, s->head_dist_w, s->head_dist_b};
    for (size_t i = 0; i < sizeof h / sizeof h[0]; i++)
        if (h[i] && (h[i] == pat || !strcmp(h[i], pat))) return 1;
    return 0;
}

const char *naming_name(const naming_scheme *s, const char *prefix, const char *pat, int i, char *buf,
                        size_t n) {
    const char *pre = prefix && !is_head_pattern(s, pat) ? prefix : "";
    const char *d = strstr(pat, "%d");
    if (d)
        snprintf(buf, n, "%s%.*s%d%s", pre, (int)(d - pat), pat, i, d + 2);
    else
        snprintf(buf, n, "%s%s", pre, pat);
    return buf;
}

int naming_is_head_tensor(const char *name) {
    for (int k = 0; k < NAMING_COUNT; k++)
        if (is_head_pattern(&schemes[k], name)) return 1;
    for (size_t i = 0; i < sizeof other_head_tensors / sizeof other_head_tensors[0]; i++)
        if (!strcmp(name, other_head_tensors[i])) return 1;
    return 0;
}
