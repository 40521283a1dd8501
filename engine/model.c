/* model.c: load a model directory (config.json + model.safetensors [+ preprocessor_config.json,
 * labels.txt]) into the FP32 layout of model.h, whatever the naming scheme (the tensor names are
 * io/naming.c's tables, the directory's files io/model_dir.c's):
 *   Hugging Face  vit.embeddings.*, vit.encoder.layer.{i}.*, vit.layernorm, classifier
 *                 (DeiT: deit.* with distillation_token, and cls_classifier + distillation_classifier
 *                 or a classifier on the class token only)
 *                 dims from config.json (HF keys and defaults), checked against every tensor;
 *   timm          patch_embed.proj, cls_token, pos_embed, blocks.{i}.*, norm, head
 *                 (+ fc_norm, pre_logits.fc, dist_token/head_dist, reg_token registers,
 *                 blocks.{i}.ls1/ls2.gamma LayerScale, folded into attn.proj and mlp.fc2);
 *   torchvision   conv_proj, class_token, encoder.pos_embedding, encoder.layers.encoder_layer_{i}.*,
 *                 encoder.ln, heads.head (+ heads.pre_logits).
 * For timm and torchvision the dims come from the tensor shapes; the number of heads from
 * config.json (model_args.num_heads, num_heads or num_attention_heads) or the architecture name
 * (vit_base_patch16_224, deit_small_..., vit_b_16, ...).  Every tensor the model needs must be
 * present with exactly the expected shape; a tensor the model does not use is an error too (it
 * would mean an unsupported variant, e.g. a LayerScale written under another name), except HF's
 * unused pooler.
 * Position embeddings are resampled bicubically to --image-size as timm does. */
#include <cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model.h"
#include "io/model_dir.h"
#include "io/naming.h"
#include "io/safetensors.h"
#include "knobs.h"
#include "util.h"

#define MAX_IMAGE_SIZE   4096
#define MAX_TOKENS       65536

typedef struct loader {
    const char *dir;
    char st_path[4096];
    st_file *st;
    model_dir md;          /* config.json (md.config), preprocessing, labels */
    cJSON *cfg;            /* == md.config */
    const naming_scheme *ns;
    naming_id nm;
    char hf_prefix[NAMING_PREFIX_MAX]; /* "vit.", "deit.", "dinov2." ... or "" */
    int hf_deit;           /* HF DeiT: distillation token; two heads or one on the class token */
    int hf_two_heads;      /* HF DeiT with teacher: cls_classifier + distillation_classifier */
    char *err;
    size_t errlen;
    size_t ckpt_params;    /* elements of the checkpoint tensors used */
    int pos_prefix_rows;   /* prefix rows the checkpoint's pos_embed has (the rest get zeros): all
                              of them, 0 (no_embed_class) or 1 (HF Dinov2 registers: class only) */
    int trained_tokens;    /* rows of the checkpoint's position embeddings */
    int trained_h, trained_w; /* the trained image size (h, w) */
    int has_norm, has_fc_norm, has_pre, qkv_bias;
    int num_reg;           /* timm register tokens */
    int layer_scale;       /* timm ls1/ls2.gamma in every block */
    const char *dims_from; /* "config.json" or "tensor shapes" (for messages) */
} loader;

/* ---- config.json helpers ------------------------------------------------------------- */

static const cJSON *jget(const cJSON *o, const char *k) {
    return o && cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

/* integer config value: 1 found, 0 absent (or null), -1 bad (err written) */
static int cfg_int(loader *L, const cJSON *o, const char *where, const char *k, int lo, int hi, int *out) {
    const cJSON *j = jget(o, k);
    if (!j || cJSON_IsNull(j)) return 0;
    /* timm writes sizes as [h, w] too: accept a square pair */
    if (cJSON_IsArray(j) && cJSON_GetArraySize(j) == 2 && cJSON_IsNumber(j->child) && cJSON_IsNumber(j->child->next) &&
        j->child->valuedouble == j->child->next->valuedouble)
        j = j->child;
    double v = cJSON_IsNumber(j) ? j->valuedouble : NAN;
    if (!cJSON_IsNumber(j) || v != floor(v) || v < lo || v > hi) {
        vit_errf(VIT_E_CONFIG, L->err, L->errlen, "%s/config.json: %s%s must be an integer in [%d, %d]%s", L->dir,
                 where, k, lo, hi, cJSON_IsArray(j) ? " (or a square [h, w] pair)" : "");
        return -1;
    }
    *out = (int)v;
    return 1;
}

/* an image size: an integer or an [h, w] pair (timm img_size, HF image_size); 1 found, 0 absent,
 * -1 bad */
static int cfg_hw(loader *L, const cJSON *o, const char *where, const char *k, int *h, int *w) {
    const cJSON *j = jget(o, k);
    if (!j || cJSON_IsNull(j)) return 0;
    const cJSON *a = cJSON_IsArray(j) && cJSON_GetArraySize(j) == 2 ? j->child : j, *b = a == j ? j : a->next;
    double vh = cJSON_IsNumber(a) ? a->valuedouble : NAN, vw = cJSON_IsNumber(b) ? b->valuedouble : NAN;
    if (!(vh == floor(vh) && vw == floor(vw) && vh >= 1 && vw >= 1 && vh <= MAX_IMAGE_SIZE && vw <= MAX_IMAGE_SIZE)) {
        vit_errf(VIT_E_CONFIG, L->err, L->errlen, "%s/config.json: %s%s must be an integer or an [h, w] pair in [1, %d]",
                 L->dir, where, k, MAX_IMAGE_SIZE);
        return -1;
    }
    *h = (int)vh;
    *w = (int)vw;
    return 1;
}

/* the first image size found among img_size / image_size, in config.json then model_args */
static int cfg_hw_any(loader *L, int *h, int *w, const char **which) {
    static const char *const keys[] = {"img_size", "image_size", NULL};
    for (int pass = 0; pass < 2; pass++) {
        const cJSON *o = pass ? jget(L->cfg, "model_args") : L->cfg;
        for (int i = 0; keys[i]; i++) {
            int r = cfg_hw(L, o, pass ? "model_args." : "", keys[i], h, w);
            if (r) {
                if (which) *which = keys[i];
                return r;
            }
        }
    }
    return 0;
}

/* first integer found among keys in o then in model_args */
static int cfg_int_any(loader *L, const char *const *keys, int lo, int hi, int *out, const char **which) {
    const cJSON *ma = jget(L->cfg, "model_args");
    for (int pass = 0; pass < 2; pass++) {
        const cJSON *o = pass ? ma : L->cfg;
        for (int i = 0; keys[i]; i++) {
            int r = cfg_int(L, o, pass ? "model_args." : "", keys[i], lo, hi, out);
            if (r) {
                if (which) *which = keys[i];
                return r;
            }
        }
    }
    return 0;
}

static const char *cfg_str_any(loader *L, const char *k) {
    const cJSON *j = jget(L->cfg, k);
    if (!j) j = jget(jget(L->cfg, "model_args"), k);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

/* ---- architecture names -------------------------------------------------------------- */

typedef struct { const char *word; int dim, depth, heads; } arch_size;
static const arch_size arch_sizes[] = {
    {"tiny", 192, 12, 3},    {"small", 384, 12, 6},  {"medium", 512, 12, 8},
    {"base", 768, 12, 12},   {"large", 1024, 24, 16}, {"huge", 1280, 32, 16},
    {"giant", 1408, 40, 16}, {"gigantic", 1664, 48, 16},
    /* torchvision: vit_b_16, vit_b_32, vit_l_16, vit_l_32, vit_h_14 */
    {"b", 768, 12, 12},      {"l", 1024, 24, 16},    {"h", 1280, 32, 16},
};

/* the size word of "vit_base_patch16_224", "deit_small_distilled_patch16_224", "vit_b_16" */
static const arch_size *arch_lookup(const char *arch) {
    if (!arch) return NULL;
    const char *p = strchr(arch, '_');
    if (!p || (strncmp(arch, "vit", 3) && strncmp(arch, "deit", 4))) return NULL;
    p++;
    size_t n = strcspn(p, "_.");
    for (size_t i = 0; i < sizeof arch_sizes / sizeof arch_sizes[0]; i++)
        if (strlen(arch_sizes[i].word) == n && !strncmp(p, arch_sizes[i].word, n)) return &arch_sizes[i];
    return NULL;
}

/* ---- tensors --------------------------------------------------------------------------- */

/* Hugging Face layouts: dims from config.json */
static int hf_family(const loader *L) { return L->nm == NAMING_HF || L->nm == NAMING_HF_DINOV2; }

/* tensor name from a pattern of the scheme's table ("%d": the layer index) */
static const char *tname(loader *L, char *buf, size_t n, const char *pat, int i) {
    return naming_name(L->ns, L->hf_prefix, pat, i, buf, n);
}

static int has(loader *L, const char *fmt, int i) {
    char nb[320];
    tname(L, nb, sizeof nb, fmt, i);
    return st_lookup(L->st, nb) != NULL;
}

static st_tensor *get_shape(loader *L, const char *fmt, int i, st_tensor **out) {
    char nb[320];
    tname(L, nb, sizeof nb, fmt, i);
    st_tensor *t = st_lookup(L->st, nb);
    *out = t;
    return t;
}

/* Load tensor fmt(i) with exactly this shape into dst.  dst NULL (the count pass): only check that
 * it is there with this shape and dtype, so that nothing sized from config.json is allocated
 * before the checkpoint has shown that it holds that many parameters. */
static vit_status load(loader *L, float *dst, const char *fmt, int i, int ndim, int64_t d0, int64_t d1,
                       int64_t d2, int64_t d3) {
    char nb[320], e1[160], e2[160];
    int64_t want[4] = {d0, d1, d2, d3};
    tname(L, nb, sizeof nb, fmt, i);
    st_tensor *t = st_find(L->st, nb);
    if (!t)
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: missing tensor '%s' (expected shape %s)",
                        L->st_path, nb, st_shape_str(want, ndim, e1, sizeof e1));
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: tensor '%s': dtype %s not supported (F32, F16, BF16)",
                        L->st_path, nb, st_dtype_name(t->dtype));
    int ok = t->ndim == ndim;
    for (int k = 0; ok && k < ndim; k++) ok = t->shape[k] == want[k];
    if (!ok)
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: tensor '%s': expected shape %s (from %s), got %s",
                        L->st_path, nb, st_shape_str(want, ndim, e1, sizeof e1), L->dims_from,
                        st_shape_str(t->shape, t->ndim, e2, sizeof e2));
    if (!dst) return VIT_OK;
    L->ckpt_params += t->numel;
    return st_read_f32(L->st, t, dst, L->err, L->errlen);
}
#define LOAD1(dst, fmt, i, a) load(L, dst, fmt, i, 1, a, 0, 0, 0)
#define LOAD2(dst, fmt, i, a, b) load(L, dst, fmt, i, 2, a, b, 0, 0)
#define LOAD3(dst, fmt, i, a, b, c) load(L, dst, fmt, i, 3, a, b, c, 0)
#define LOAD4(dst, fmt, i, a, b, c, d) load(L, dst, fmt, i, 4, a, b, c, d)

/* bump allocator over the one parameter block; base NULL counts only */
typedef struct { float *base; size_t off; } bump;
static float *take(bump *b, size_t n) {
    size_t o = b->off;
    b->off += (n + 15) & ~(size_t)15;            /* 64-byte aligned sub-tensors */
    return b->base ? b->base + o : NULL;
}

/* ---- position embedding resampling (timm resample_abs_pos_embed) ---------------------- */

static double cubic1(double x, double A) { return ((A + 2) * x - (A + 3)) * x * x + 1; }
static double cubic2(double x, double A) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; }

/* PyTorch upsample_bicubic2d weights and taps for one axis, align_corners=False */
static void cubic_taps(int in, int out, int o, int idx[4], double w[4]) {
    float scale = (float)in / (float)out;
    float real = scale * ((float)o + 0.5f) - 0.5f;
    int i0 = (int)floorf(real);
    double t = (double)(real - (float)i0), A = -0.75;
    w[0] = cubic2(t + 1, A);
    w[1] = cubic1(t, A);
    w[2] = cubic1(1 - t, A);
    w[3] = cubic2(2 - t, A);
    for (int k = 0; k < 4; k++) {
        int v = i0 - 1 + k;
        idx[k] = v < 0 ? 0 : v >= in ? in - 1 : v;
    }
}

/* src (gh*gw, D) grid -> dst (nh*nw, D), bicubic, align_corners=False, no antialias */
static void resample_grid(float *dst, const float *src, int gh, int gw, int nh, int nw, int D) {
    for (int y = 0; y < nh; y++) {
        int iy[4], ix[4];
        double wy[4], wx[4];
        cubic_taps(gh, nh, y, iy, wy);
        for (int x = 0; x < nw; x++) {
            cubic_taps(gw, nw, x, ix, wx);
            float *o = dst + ((size_t)y * nw + x) * D;
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int a = 0; a < 4; a++) {
                    double row = 0;
                    for (int b = 0; b < 4; b++) row += wx[b] * src[((size_t)iy[a] * gw + ix[b]) * D + d];
                    acc += wy[a] * row;
                }
                o[d] = (float)acc;
            }
        }
    }
}


/* ---- dims ------------------------------------------------------------------------------ */

/* layer_norm_eps from config.json, else def */
static vit_status cfg_eps(loader *L, float def, float *out) {
    *out = def;
    const cJSON *eps = jget(L->cfg, "layer_norm_eps");
    if (!eps) return VIT_OK;
    if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0) || eps->valuedouble > 1)
        return vit_errf(VIT_E_CONFIG, L->err, L->errlen, "%s/config.json: layer_norm_eps must be a number in (0, 1]", L->dir);
    *out = (float)eps->valuedouble;
    return VIT_OK;
}

/* Hugging Face: dims from config.json with HF's defaults; tensors are checked against them. */
/* transformers' Dinov2 (configuration_dinov2.py defaults: patch 14, mlp_ratio 4, eps 1e-6):
 * MLP width hidden * mlp_ratio, LayerScale (layer_scale1/2.lambda1) in every block, registers
 * (Dinov2WithRegisters: register_tokens after the class token, without position embeddings), and
 * Dinov2ForImageClassification's head on [class token; mean of the patch tokens] */
static vit_status dims_hf_dinov2(loader *L, vit_config *c) {
    int ratio = 4;
    if (cfg_int(L, L->cfg, "", "mlp_ratio", 1, 64, &ratio) < 0) return VIT_E_CONFIG;
    c->mlp_size = c->hidden_size * ratio;
    const cJSON *sw = jget(L->cfg, "use_swiglu_ffn");
    if (cJSON_IsTrue(sw))
        return vit_errf(VIT_E_CONFIG, L->err, L->errlen, "%s/config.json: use_swiglu_ffn (DINOv2 giant's SwiGLU MLP) is not supported",
                        L->dir);
    L->layer_scale = 1;
    st_tensor *t;
    L->num_reg = 0;
    if (get_shape(L, L->ns->reg_token, 0, &t)) {
        if (t->ndim != 3 || t->shape[0] != 1 || t->shape[1] < 1 || t->shape[1] > VIT_MAX_REGISTERS ||
            t->shape[2] != c->hidden_size)
            return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: tensor '%s%s': expected shape [1, R, %d] with R in [1, %d]",
                            L->st_path, L->hf_prefix, L->ns->reg_token, c->hidden_size, VIT_MAX_REGISTERS);
        L->num_reg = (int)t->shape[1];
    }
    int want = L->num_reg;
    if (cfg_int(L, L->cfg, "", "num_register_tokens", 0, VIT_MAX_REGISTERS, &want) < 0) return VIT_E_CONFIG;
    if (want != L->num_reg)
        return vit_errf(VIT_E_CONFIG, L->err, L->errlen, "%s/config.json: num_register_tokens %d but the checkpoint has %d",
                        L->dir, want, L->num_reg);
    c->num_prefix_tokens = 1 + L->num_reg;
    L->pos_prefix_rows = 1;
    c->pooling = VIT_POOL_CLS_MEAN;
    return VIT_OK;
}

static vit_status dims_hf(loader *L, vit_config *c) {
    const int dino = L->nm == NAMING_HF_DINOV2;
    L->dims_from = "config.json";
    c->image_size = 224; c->patch_size = dino ? 14 : 16; c->num_channels = 3; c->hidden_size = 768;
    c->num_layers = 12; c->num_heads = 12; c->mlp_size = 3072;
    L->trained_h = L->trained_w = 224;
    if (cfg_hw(L, L->cfg, "", "image_size", &L->trained_h, &L->trained_w) < 0 ||
        cfg_int(L, L->cfg, "", "patch_size", 1, 1024, &c->patch_size) < 0 ||
        cfg_int(L, L->cfg, "", "num_channels", 1, 64, &c->num_channels) < 0 ||
        cfg_int(L, L->cfg, "", "hidden_size", 1, 65536, &c->hidden_size) < 0 ||
        cfg_int(L, L->cfg, "", "num_hidden_layers", 1, 1024, &c->num_layers) < 0 ||
        cfg_int(L, L->cfg, "", "num_attention_heads", 1, 4096, &c->num_heads) < 0 ||
        cfg_int(L, L->cfg, "", "intermediate_size", 1, 1 << 20, &c->mlp_size) < 0)
        return VIT_E_CONFIG;
    const cJSON *act = jget(L->cfg, "hidden_act");
    if (act && !(cJSON_IsString(act) && !strcmp(act->valuestring, "gelu")))
        return vit_errf(VIT_E_CONFIG, L->err, L->errlen,
                        "%s/config.json: hidden_act '%.40s' is not supported: only 'gelu' (the exact erf form)",
                        L->dir, cJSON_IsString(act) ? act->valuestring : "(not a string)");
    vit_status st = cfg_eps(L, dino ? 1e-6f : 1e-12f, &c->layer_norm_eps);
    if (st) return st;
    const cJSON *qb = jget(L->cfg, "qkv_bias");
    if (qb && !cJSON_IsBool(qb))
        return vit_errf(VIT_E_CONFIG, L->err, L->errlen, "%s/config.json: qkv_bias must be true or false", L->dir);
    L->qkv_bias = qb ? cJSON_IsTrue(qb) : 1;
    c->num_prefix_tokens = L->hf_deit ? 2 : 1;
    c->distilled = L->hf_deit;
    c->pooling = VIT_POOL_CLS;
    L->pos_prefix_rows = c->num_prefix_tokens;
    if (dino && (st = dims_hf_dinov2(L, c))) return st;
    L->has_norm = 1;
    L->hf_two_heads = L->hf_deit && has(L, L->ns->head_cls_w, 0);
    const char *hw = L->hf_two_heads ? L->ns->head_cls_w : L->ns->head_w;
    /* classes: id2label's size when given, else the classifier's rows */
    st_tensor *t;
    c->num_classes = 0;
    const cJSON *id2 = jget(L->cfg, "id2label");
    if (id2 && cJSON_IsObject(id2)) c->num_classes = cJSON_GetArraySize(id2);
    if (c->num_classes == 0 && get_shape(L, hw, 0, &t) && t->ndim == 2)
        c->num_classes = (int)(t->shape[0] > 0 && t->shape[0] < 1000000 ? t->shape[0] : 0);
    if (c->num_classes == 0) {
        if (!has(L, hw, 0))
            return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen,
                            "%s: no classification head ('%s'): a base model without a classifier is not supported",
                            L->st_path, hw);
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: tensor '%s' has a bad shape", L->st_path, hw);
    }
    return VIT_OK;
}

/* timm / torchvision: width, channels and patch from the patch filter; layers; MLP width */
static vit_status dims_shape(loader *L, vit_config *c) {
    const naming_scheme *ns = L->ns;
    st_tensor *t;
    char e1[160];
    get_shape(L, ns->patch_w, 0, &t);
    if (t->ndim != 4 || t->shape[2] != t->shape[3] || t->shape[0] < 1 || t->shape[0] > 65536 || t->shape[1] < 1 ||
        t->shape[1] > 64 || t->shape[2] < 1 || t->shape[2] > 1024)
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: tensor '%s': expected shape [D, C, P, P], got %s",
                        L->st_path, ns->patch_w, st_shape_str(t->shape, t->ndim, e1, sizeof e1));
    c->hidden_size = (int)t->shape[0];
    c->num_channels = (int)t->shape[1];
    c->patch_size = (int)t->shape[2];
    c->num_layers = 0;
    while (c->num_layers < 1024 && has(L, ns->ln1_w, c->num_layers)) c->num_layers++;
    char nb[320];
    if (c->num_layers == 0)
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: missing tensor '%s' (no transformer blocks)",
                        L->st_path, tname(L, nb, sizeof nb, ns->ln1_w, 0));
    const char *fc1 = ns->fc1_w_legacy && !has(L, ns->fc1_w, 0) ? ns->fc1_w_legacy : ns->fc1_w;
    tname(L, nb, sizeof nb, fc1, 0);
    if (!get_shape(L, fc1, 0, &t))
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: missing tensor '%s'", L->st_path, nb);
    if (t->ndim != 2 || t->shape[1] != c->hidden_size || t->shape[0] < 1 || t->shape[0] > (1 << 20))
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: tensor '%s': expected shape [M, %d], got %s", L->st_path,
                        nb, c->hidden_size, st_shape_str(t->shape, t->ndim, e1, sizeof e1));
    c->mlp_size = (int)t->shape[0];
    return VIT_OK;
}

/* timm register tokens reg_token (1, R, D): extra learned tokens after the class token */
static vit_status dims_registers(loader *L, vit_config *c, int cls, int dist) {
    st_tensor *t;
    char e1[160];
    L->num_reg = 0;
    if (!L->ns->reg_token || !get_shape(L, L->ns->reg_token, 0, &t)) return VIT_OK;
    if (t->ndim != 3 || t->shape[0] != 1 || t->shape[2] != c->hidden_size || t->shape[1] < 1 ||
        t->shape[1] > VIT_MAX_REGISTERS)
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: tensor '%s': expected shape [1, R, %d] with R in [1, %d], got %s",
                        L->st_path, L->ns->reg_token, c->hidden_size, VIT_MAX_REGISTERS,
                        st_shape_str(t->shape, t->ndim, e1, sizeof e1));
    if (dist)
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: register tokens with a distillation token are not supported",
                        L->st_path);
    (void)cls;
    L->num_reg = (int)t->shape[1];
    return VIT_OK;
}

/* the trained grid side g from the position embeddings' rows: prefix tokens + g*g patches, or
 * g*g patches alone (timm no_embed_class: L->pos_prefix_rows 0).  When both fit, config.json's
 * no_embed_class or img_size decides, else the prefix is taken to be included. */
static vit_status pos_layout(loader *L, const vit_config *c, int rows, int npatch, int *g) {
    int g1 = (int)lround(sqrt((double)(npatch > 0 ? npatch : 0))), g2 = (int)lround(sqrt((double)rows));
    int with = npatch > 0 && g1 * g1 == npatch, without = c->num_prefix_tokens > 0 && g2 * g2 == rows;
    int ch, cw, P = c->patch_size;
    if (cfg_hw_any(L, &ch, &cw, NULL) > 0 && ch != cw) {
        /* a non-square img_size: the grid is (h / P) x (w / P), prefix tokens included or not */
        int gh = ch / P, gw = cw / P;
        if (ch % P || cw % P || (gh * gw != npatch && !(c->num_prefix_tokens && gh * gw == rows)))
            return vit_errf(VIT_E_CONFIG, L->err, L->errlen,
                            "%s/config.json: img_size [%d, %d] with patch %d does not match the %d rows of '%s'", L->dir, ch,
                            cw, P, rows, L->ns->pos_embed);
        L->pos_prefix_rows = gh * gw != npatch ? 0 : c->num_prefix_tokens;
        L->trained_h = ch;
        L->trained_w = cw;
        *g = -1;
        return VIT_OK;
    }
    const cJSON *nec = jget(L->cfg, "no_embed_class");
    if (!nec) nec = jget(jget(L->cfg, "model_args"), "no_embed_class");
    int img = 0;
    static const char *const k_img[] = {"img_size", "image_size", NULL};
    if (cJSON_IsBool(nec)) {
        if (cJSON_IsTrue(nec)) with = 0;
        else without = 0;
    } else if (with && without && cfg_int_any(L, k_img, 1, 1 << 20, &img, NULL) > 0) {
        if (g2 * c->patch_size == img) with = 0;
        else if (g1 * c->patch_size == img) without = 0;
    }
    if (!with && !without)
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen,
                        "%s: tensor '%s' has %d rows: not %d prefix token(s) plus a square grid of patches%s", L->st_path,
                        L->ns->pos_embed, rows, c->num_prefix_tokens,
                        cJSON_IsTrue(nec) ? " (config.json: no_embed_class, so a square grid alone)" : "");
    L->pos_prefix_rows = with ? c->num_prefix_tokens : 0;
    *g = with ? g1 : g2;
    L->trained_h = L->trained_w = *g * P;
    return VIT_OK;
}

/* timm / torchvision: prefix tokens and the trained grid from the position embeddings */
static vit_status dims_tokens(loader *L, vit_config *c) {
    const naming_scheme *ns = L->ns;
    st_tensor *t;
    char e1[160];
    const int D = c->hidden_size;
    vit_status st;
    int cls = has(L, ns->cls_token, 0);
    int dist = ns->dist_token && has(L, ns->dist_token, 0);
    if (dist && !cls)
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: 'dist_token' without 'cls_token' is not supported", L->st_path);
    if ((st = dims_registers(L, c, cls, dist))) return st;
    c->num_prefix_tokens = cls + dist + L->num_reg;
    c->distilled = dist;
    const char *pos = ns->pos_embed;
    if (!get_shape(L, pos, 0, &t))
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: missing tensor '%s'", L->st_path, pos);
    if (t->ndim != 3 || t->shape[0] != 1 || t->shape[2] != D || t->shape[1] < 1 || t->shape[1] > MAX_TOKENS)
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: tensor '%s': expected shape [1, tokens, %d], got %s",
                        L->st_path, pos, D, st_shape_str(t->shape, t->ndim, e1, sizeof e1));
    int rows = (int)t->shape[1], npatch = rows - c->num_prefix_tokens, g = 0;
    if ((st = pos_layout(L, c, rows, npatch, &g))) return st;
    L->trained_tokens = rows;
    (void)g;
    return VIT_OK;
}

/* timm / torchvision: attention heads from config.json or the architecture name; every size
 * config.json states must agree with the tensors */
static vit_status dims_config(loader *L, vit_config *c) {
    static const char *const head_keys[] = {"num_heads", "num_attention_heads", NULL};
    const char *arch = c->architecture;
    const int D = c->hidden_size;
    int r = cfg_int_any(L, head_keys, 1, 4096, &c->num_heads, NULL);
    if (r < 0) return VIT_E_CONFIG;
    if (r == 0) {
        const arch_size *as = arch_lookup(arch);
        if (!as)
            return vit_errf(VIT_E_CONFIG, L->err, L->errlen,
                            "%s/config.json: cannot tell the number of attention heads of architecture '%s': "
                            "add \"num_heads\" to config.json", L->dir, arch);
        if (as->dim != D)
            return vit_errf(VIT_E_CONFIG, L->err, L->errlen,
                            "%s/config.json: architecture '%s' has hidden size %d but the tensors have %d: "
                            "add \"num_heads\" to config.json", L->dir, arch, as->dim, D);
        c->num_heads = as->heads;
    }
    int ch, cw;
    const char *which;
    r = cfg_hw_any(L, &ch, &cw, &which);
    if (r < 0) return VIT_E_CONFIG;
    if (r > 0 && (ch != L->trained_h || cw != L->trained_w))
        return vit_errf(VIT_E_CONFIG, L->err, L->errlen,
                        "%s/config.json: %s [%d, %d] does not match the checkpoint (image size [%d, %d] from the tensor shapes)",
                        L->dir, which, ch, cw, L->trained_h, L->trained_w);
    static const char *const k_patch[] = {"patch_size", NULL},
                             *const k_dim[] = {"embed_dim", "hidden_size", "hidden_dim", NULL},
                             *const k_depth[] = {"depth", "num_hidden_layers", "num_layers", NULL},
                             *const k_mlp[] = {"intermediate_size", "mlp_dim", NULL};
    struct { const char *const *keys; int have; const char *what; } chk[] = {
        {k_patch, c->patch_size, "patch size"},
        {k_dim, D, "hidden size"}, {k_depth, c->num_layers, "number of layers"}, {k_mlp, c->mlp_size, "MLP size"},
    };
    for (size_t i = 0; i < sizeof chk / sizeof chk[0]; i++) {
        int v;
        r = cfg_int_any(L, chk[i].keys, 1, 1 << 20, &v, &which);
        if (r < 0) return VIT_E_CONFIG;
        if (r > 0 && v != chk[i].have)
            return vit_errf(VIT_E_CONFIG, L->err, L->errlen,
                            "%s/config.json: %s %d does not match the checkpoint (%s %d from the tensor shapes)", L->dir,
                            which, v, chk[i].what, chk[i].have);
    }
    const char *act = cfg_str_any(L, "act_layer");
    if (!act) act = cfg_str_any(L, "hidden_act");
    if (act && strcmp(act, "gelu"))
        return vit_errf(VIT_E_CONFIG, L->err, L->errlen,
                        "%s/config.json: activation '%.40s' is not supported: only 'gelu' (the exact erf form)", L->dir, act);
    return cfg_eps(L, 1e-6f, &c->layer_norm_eps);
}

/* timm / torchvision: qkv bias, final norms, pooling, representation layer */
static vit_status dims_pooling(loader *L, vit_config *c) {
    const naming_scheme *ns = L->ns;
    int cls = c->num_prefix_tokens >= 1;
    L->qkv_bias = has(L, ns->qkv_b, 0);
    L->has_norm = has(L, ns->norm_w, 0);
    L->has_fc_norm = ns->fc_norm_w && has(L, ns->fc_norm_w, 0);
    L->has_pre = has(L, ns->pre_w, 0);
    L->layer_scale = ns->ls1 && (has(L, ns->ls1, 0) || has(L, ns->ls2, 0));
    const char *gp = cfg_str_any(L, "global_pool");
    if (gp && !strcmp(gp, "avg"))
        c->pooling = VIT_POOL_MEAN;
    else if (gp && *gp && strcmp(gp, "token"))
        return vit_errf(VIT_E_CONFIG, L->err, L->errlen,
                        "%s/config.json: global_pool '%.40s' is not supported ('token' or 'avg')", L->dir, gp);
    else if (!gp && (L->has_fc_norm || !cls))
        c->pooling = VIT_POOL_MEAN;
    else
        c->pooling = VIT_POOL_CLS;
    if (c->pooling == VIT_POOL_CLS && !cls)
        return vit_errf(VIT_E_CONFIG, L->err, L->errlen, "%s: class-token pooling but the checkpoint has no class token",
                        L->st_path);
    if (c->distilled && c->pooling != VIT_POOL_CLS)
        return vit_errf(VIT_E_CONFIG, L->err, L->errlen, "%s: a distilled model with mean pooling is not supported", L->st_path);
    if (!L->has_norm && !L->has_fc_norm)
        L->has_norm = 1;   /* report 'norm.weight' missing when loading */
    return VIT_OK;
}

/* timm / torchvision: classes from the head; the representation layer must be D x D */
static vit_status dims_classes(loader *L, vit_config *c) {
    const naming_scheme *ns = L->ns;
    st_tensor *t;
    char e1[160];
    const int D = c->hidden_size;
    const char *hw = ns->head_w;
    if (!get_shape(L, hw, 0, &t))
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: missing tensor '%s' (no classification head)", L->st_path, hw);
    if (t->ndim != 2 || t->shape[0] < 1 || t->shape[0] > 1000000)
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: tensor '%s': expected shape [classes, %d], got %s",
                        L->st_path, hw, D, st_shape_str(t->shape, t->ndim, e1, sizeof e1));
    c->num_classes = (int)t->shape[0];
    /* a head twice as wide on a class token: DINOv2's linear head on [cls; mean of patch tokens] */
    if (t->shape[1] == 2 * (int64_t)D && c->pooling == VIT_POOL_CLS && !c->distilled) {
        if (L->has_pre || !L->has_norm)
            return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen,
                            "%s: a [class token; mean] head (%s of width %d) needs the final norm and no representation layer",
                            L->st_path, hw, 2 * D);
        c->pooling = VIT_POOL_CLS_MEAN;
    }
    if (L->has_pre) {
        get_shape(L, ns->pre_w, 0, &t);
        if (t->ndim == 2 && t->shape[0] != D && t->shape[1] == D)
            return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen,
                            "%s: representation layer of size %lld != hidden size %d is not supported", L->st_path,
                            (long long)t->shape[0], D);
    }
    int k;
    int r = cfg_int_any(L, (const char *const[]){"num_classes", NULL}, 1, 1000000, &k, NULL);
    if (r < 0) return VIT_E_CONFIG;
    if (r > 0 && k != c->num_classes)
        return vit_errf(VIT_E_CONFIG, L->err, L->errlen,
                        "%s/config.json: num_classes %d does not match the checkpoint ('%s' has %d rows)", L->dir, k, hw,
                        c->num_classes);
    return VIT_OK;
}

/* timm / torchvision: dims from the tensor shapes, heads from config.json or the name */
static vit_status dims_from_tensors(loader *L, vit_config *c) {
    L->dims_from = "tensor shapes";
    vit_status st;
    if ((st = dims_shape(L, c)) || (st = dims_tokens(L, c)) || (st = dims_config(L, c)) || (st = dims_pooling(L, c)) ||
        (st = dims_classes(L, c)))
        return st;
    return VIT_OK;
}

/* ---- building the parameter block ------------------------------------------------------ */

/* position embeddings: the checkpoint's (1, T0, D) -> (num_tokens, D) at the run size */
static vit_status build_pos_embed(loader *L, vit_model *m, bump *b) {
    vit_config *c = &m->cfg;
    const int D = c->hidden_size, T0 = L->trained_tokens, npre = c->num_prefix_tokens;
    float *p = take(b, (size_t)c->num_tokens * D);
    m->pos_embed = p;
    if (!p) return LOAD3(NULL, L->ns->pos_embed, 0, 1, T0, D);
    float *tmp = malloc((size_t)T0 * D * sizeof *tmp);
    if (!tmp) return vit_errf(VIT_E_NOMEM, L->err, L->errlen, "out of memory (position embeddings)");
    vit_status st = LOAD3(tmp, L->ns->pos_embed, 0, 1, T0, D);
    if (!st) {
        int src_pre = L->pos_prefix_rows;
        const int g0h = L->trained_h / c->patch_size, g0w = L->trained_w / c->patch_size;
        memcpy(p, tmp, (size_t)src_pre * D * sizeof *p);
        memset(p + (size_t)src_pre * D, 0, (size_t)(npre - src_pre) * D * sizeof *p);
        float *dst = p + (size_t)npre * D;
        const float *src = tmp + (size_t)src_pre * D;
        if (g0h == c->grid_h && g0w == c->grid_w)
            memcpy(dst, src, (size_t)c->num_patches * D * sizeof *p);
        else   /* per axis, as timm's resample_abs_pos_embed */
            resample_grid(dst, src, g0h, g0w, c->grid_h, c->grid_w, D);
    }
    free(tmp);
    return st;
}

/* patch embedding, class and distillation tokens, position embeddings */
static vit_status build_embed(loader *L, vit_model *m, bump *b) {
    vit_config *c = &m->cfg;
    const naming_scheme *ns = L->ns;
    const int D = c->hidden_size, C = c->num_channels, P = c->patch_size;
    vit_status st;
    float *p = take(b, (size_t)D * C * P * P);
    m->patch_w = p;
    if ((st = LOAD4(p, ns->patch_w, 0, D, C, P, P))) return st;
    m->patch_b = p = take(b, (size_t)D);
    if ((st = LOAD1(p, ns->patch_b, 0, D))) return st;
    m->cls_token = m->dist_token = NULL;
    if (c->num_prefix_tokens >= 1) {
        m->cls_token = p = take(b, (size_t)D);
        if ((st = LOAD3(p, ns->cls_token, 0, 1, 1, D))) return st;
    }
    if (c->distilled) {
        m->dist_token = p = take(b, (size_t)D);
        if ((st = LOAD3(p, ns->dist_token, 0, 1, 1, D))) return st;
    }
    m->reg_tokens = NULL;
    if (L->num_reg) {
        m->reg_tokens = p = take(b, (size_t)L->num_reg * D);
        if ((st = LOAD3(p, ns->reg_token, 0, 1, L->num_reg, D))) return st;
    }
    return build_pos_embed(L, m, b);
}

/* qkv (3D, D) rows [q; k; v] and its bias (3D), zeros without one */
static vit_status build_qkv(loader *L, vit_layer_weights *lw, int i, int D, bump *b) {
    const naming_scheme *ns = L->ns;
    vit_status st;
    float *qw = take(b, (size_t)3 * D * D), *qb = take(b, (size_t)3 * D);
    lw->qkv_w = qw;
    lw->qkv_b = qb;
    if (ns->qkv_w) {
        if ((st = LOAD2(qw, ns->qkv_w, i, 3 * D, D))) return st;
        if (L->qkv_bias && (st = LOAD1(qb, ns->qkv_b, i, 3 * D))) return st;
    } else {
        for (int j = 0; j < 3; j++) {
            if ((st = LOAD2(qw ? qw + (size_t)j * D * D : NULL, ns->q_k_v_w[j], i, D, D))) return st;
            if (L->qkv_bias && (st = LOAD1(qb ? qb + (size_t)j * D : NULL, ns->q_k_v_b[j], i, D))) return st;
        }
    }
    if (qb && !L->qkv_bias) memset(qb, 0, (size_t)3 * D * sizeof *qb);
    return VIT_OK;
}

/* LayerScale x + gamma * (W h + b) folded into the Linear: W[o, :] *= gamma[o], b[o] *= gamma[o]
 * (w, b (rows, cols), (rows); NULL in the count pass, which only checks gamma's shape) */
static vit_status fold_layer_scale(loader *L, const char *name, int i, float *w, float *b, int rows, int cols) {
    if (!w) return LOAD1(NULL, name, i, rows);
    float *g = malloc((size_t)rows * sizeof *g);
    if (!g) return vit_errf(VIT_E_NOMEM, L->err, L->errlen, "out of memory (LayerScale)");
    vit_status st = LOAD1(g, name, i, rows);
    for (int o = 0; !st && o < rows; o++) {
        for (int k = 0; k < cols; k++) w[(size_t)o * cols + k] *= g[o];
        b[o] *= g[o];
    }
    free(g);
    return st;
}

/* one transformer block */
static vit_status build_layer(loader *L, vit_layer_weights *lw, int i, int D, int M, bump *b) {
    const naming_scheme *ns = L->ns;
    /* older torchvision checkpoints name the MLP linear_1 / linear_2 */
    int legacy = ns->fc1_w_legacy && !has(L, ns->fc1_w, i) && has(L, ns->fc1_w_legacy, i);
    const char *f1w = legacy ? ns->fc1_w_legacy : ns->fc1_w, *f1b = legacy ? ns->fc1_b_legacy : ns->fc1_b;
    const char *f2w = legacy ? ns->fc2_w_legacy : ns->fc2_w, *f2b = legacy ? ns->fc2_b_legacy : ns->fc2_b;
    vit_status st;
    float *p;
    if ((st = LOAD1(p = take(b, D), ns->ln1_w, i, D))) return st;
    lw->ln1_w = p;
    if ((st = LOAD1(p = take(b, D), ns->ln1_b, i, D))) return st;
    lw->ln1_b = p;
    if ((st = build_qkv(L, lw, i, D, b))) return st;
    if ((st = LOAD2(p = take(b, (size_t)D * D), ns->proj_w, i, D, D))) return st;
    lw->proj_w = p;
    if ((st = LOAD1(p = take(b, D), ns->proj_b, i, D))) return st;
    lw->proj_b = p;
    if ((st = LOAD1(p = take(b, D), ns->ln2_w, i, D))) return st;
    lw->ln2_w = p;
    if ((st = LOAD1(p = take(b, D), ns->ln2_b, i, D))) return st;
    lw->ln2_b = p;
    if ((st = LOAD2(p = take(b, (size_t)M * D), f1w, i, M, D))) return st;
    lw->fc1_w = p;
    if ((st = LOAD1(p = take(b, M), f1b, i, M))) return st;
    lw->fc1_b = p;
    if ((st = LOAD2(p = take(b, (size_t)D * M), f2w, i, D, M))) return st;
    lw->fc2_w = p;
    if ((st = LOAD1(p = take(b, D), f2b, i, D))) return st;
    lw->fc2_b = p;
    if (L->layer_scale) {
        if ((st = fold_layer_scale(L, ns->ls1, i, (float *)lw->proj_w, (float *)lw->proj_b, D, D))) return st;
        if ((st = fold_layer_scale(L, ns->ls2, i, (float *)lw->fc2_w, (float *)lw->fc2_b, D, M))) return st;
    }
    return VIT_OK;
}

/* final norm, fc_norm, representation layer */
static vit_status build_final(loader *L, vit_model *m, bump *b) {
    const naming_scheme *ns = L->ns;
    const int D = m->cfg.hidden_size;
    vit_status st;
    float *p;
    m->norm_w = m->norm_b = m->fc_norm_w = m->fc_norm_b = m->pre_logits_w = m->pre_logits_b = NULL;
    if (L->has_norm) {
        if ((st = LOAD1(p = take(b, D), ns->norm_w, 0, D))) return st;
        m->norm_w = p;
        if ((st = LOAD1(p = take(b, D), ns->norm_b, 0, D))) return st;
        m->norm_b = p;
    }
    if (L->has_fc_norm) {
        if ((st = LOAD1(p = take(b, D), ns->fc_norm_w, 0, D))) return st;
        m->fc_norm_w = p;
        if ((st = LOAD1(p = take(b, D), ns->fc_norm_b, 0, D))) return st;
        m->fc_norm_b = p;
    }
    if (L->has_pre) {
        if ((st = LOAD2(p = take(b, (size_t)D * D), ns->pre_w, 0, D, D))) return st;
        m->pre_logits_w = p;
        if ((st = LOAD1(p = take(b, D), ns->pre_b, 0, D))) return st;
        m->pre_logits_b = p;
    }
    return VIT_OK;
}

/* One pass over every tensor in model.h order.  b->base NULL: count only. */
static vit_status build(loader *L, vit_model *m, bump *b) {
    vit_config *c = &m->cfg;
    vit_status st = build_embed(L, m, b);
    if (st) return st;
    for (int i = 0; i < c->num_layers; i++) {
        vit_layer_weights *lw = b->base ? &m->layers[i] : &(vit_layer_weights){0};
        if ((st = build_layer(L, lw, i, c->hidden_size, c->mlp_size, b))) return st;
    }
    return build_final(L, m, b);
}

/* DeiT: w holds the class-token head (K, D) packed, w2/b2 the distillation head; fold both into
 * one (K, 2D) head on [cls; dist] that averages them, spreading from the last row backwards */
static void fold_two_heads(float *w, float *bias, const float *w2, const float *b2, int K, int D) {
    for (int k = K - 1; k >= 0; k--) {
        float *row = w + (size_t)k * 2 * D;
        memmove(row, w + (size_t)k * D, (size_t)D * sizeof *w);
        for (int d = 0; d < D; d++) {
            row[d] *= 0.5f;
            row[D + d] = 0.5f * w2[(size_t)k * D + d];
        }
        bias[k] = 0.5f * (bias[k] + b2[k]);
    }
}

/* the head: (classes, feature_dim); DeiT's two heads folded into one on [cls; dist] */
static vit_status build_head(loader *L, vit_model *m) {
    vit_config *c = &m->cfg;
    const naming_scheme *ns = L->ns;
    const int D = c->hidden_size, K = c->num_classes, Fd = c->feature_dim;
    const int two = L->hf_two_heads || (c->distilled && !hf_family(L));
    vit_status st;
    const char *hw = L->hf_two_heads ? ns->head_cls_w : ns->head_w, *hb = L->hf_two_heads ? ns->head_cls_b : ns->head_b;
    const int hin = c->pooling == VIT_POOL_CLS_MEAN ? Fd : D;   /* the checkpoint head's input width */
    /* K comes from config.json (id2label) for HF: the tensor must match before K x Fd is allocated */
    if ((st = LOAD2(NULL, hw, 0, K, hin)) || (st = LOAD1(NULL, hb, 0, K))) return st;
    float *w = malloc((size_t)K * Fd * sizeof *w), *bias = malloc((size_t)K * sizeof *bias);
    float *w2 = NULL, *b2 = NULL;
    char **labels = NULL;
    if (!w || !bias) { st = vit_errf(VIT_E_NOMEM, L->err, L->errlen, "out of memory (head)"); goto done; }
    if ((st = LOAD2(w, hw, 0, K, hin))) goto done;
    if ((st = LOAD1(bias, hb, 0, K))) goto done;
    if (c->distilled) {
        w2 = calloc((size_t)K * D, sizeof *w2);
        b2 = calloc((size_t)K, sizeof *b2);
        if (!w2 || !b2) { st = vit_errf(VIT_E_NOMEM, L->err, L->errlen, "out of memory (head)"); goto done; }
        if (!two) {
            /* HF DeiTForImageClassification: the head sees the class token only: [W, 0], b.
             * The fold halves both, so give it 2W and 2b for the class-token half. */
            for (size_t i = 0; i < (size_t)K * D; i++) w[i] *= 2.0f;
            for (int k = 0; k < K; k++) { b2[k] = bias[k]; }
        } else {
            if ((st = LOAD2(w2, ns->head_dist_w, 0, K, D))) goto done;
            if ((st = LOAD1(b2, ns->head_dist_b, 0, K))) goto done;
        }
        fold_two_heads(w, bias, w2, b2, K, D);
    }
    if ((st = md_labels(&L->md, K, &labels, L->err, L->errlen))) goto done;
    st = vit_head_new(K, Fd, w, bias, (const char *const *)labels, &m->head);
    if (st) vit_errf(st, L->err, L->errlen, "cannot create the head: %s", vit_status_str(st));
done:
    free(w); free(bias); free(w2); free(b2);
    md_free_labels(labels, K);
    return st;
}

/* ---- public ------------------------------------------------------------------------------ */

void vit_model_free(vit_model *m) {
    if (!m) return;
    vit_head_release(m->head);
    free(m->layers);
    free(m->params);
    vit_calib_free(&m->calib);
    free(m);
}

int vit_model_calibrated(const vit_model *m) { return m && m->calib.amax; }

const vit_config *vit_model_config(const vit_model *m) { return m ? &m->cfg : NULL; }
vit_head *vit_model_head(const vit_model *m) { return m ? m->head : NULL; }

static int is_ignorable(const loader *L, const char *name) {
    /* HF ViTModel's pooler (unused by image classification) and masked-image-modeling token */
    return hf_family(L) && (strstr(name, "pooler.") || strstr(name, "mask_token"));
}

/* the naming scheme from the patch embedding; the architecture name from config.json */
static vit_status detect_scheme(loader *L, vit_config *c) {
    L->ns = naming_detect(L->st, L->hf_prefix);
    if (!L->ns)
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen,
                        "%s: unknown tensor naming: no patch embedding ('vit.embeddings.patch_embeddings.projection.weight' or 'deit.embeddings...' "
                        "(Hugging Face), 'patch_embed.proj.weight' (timm) or 'conv_proj.weight' (torchvision))", L->st_path);
    L->nm = L->ns->id;
    L->hf_deit = !strcmp(L->hf_prefix, "deit.");
    snprintf(c->naming, sizeof c->naming, "%s", L->ns->name);
    const cJSON *a = jget(L->cfg, "architecture"), *as = jget(L->cfg, "architectures");
    const char *name = NULL;
    if (cJSON_IsString(a)) name = a->valuestring;
    else if (cJSON_IsArray(as) && cJSON_IsString(cJSON_GetArrayItem(as, 0))) name = cJSON_GetArrayItem(as, 0)->valuestring;
    else if (cJSON_IsString(jget(L->cfg, "model_type"))) name = jget(L->cfg, "model_type")->valuestring;
    snprintf(c->architecture, sizeof c->architecture, "%s",
             name ? name : L->nm == NAMING_HF ? "ViTForImageClassification" : L->nm == NAMING_HF_DINOV2 ? "Dinov2ForImageClassification"
                   : L->nm == NAMING_TV ? "vit_torchvision" : "vit");
    return VIT_OK;
}

/* the dims the scheme gives, checked; the run size (opts->image_size) and the token count */
static vit_status resolve_dims(loader *L, vit_config *c, const vit_load_opts *opts) {
    const char *dir = L->dir;
    char *err = L->err;
    size_t errlen = L->errlen;
    vit_status st = hf_family(L) ? dims_hf(L, c) : dims_from_tensors(L, c);
    if (st) return st;
    if (c->num_channels != 3 && c->num_channels != 1)
        return vit_errf(VIT_E_CONFIG, err, errlen, "%s: %d input channels: only 1 (grayscale) and 3 (RGB) are supported", dir,
                        c->num_channels);
    if (c->hidden_size % c->num_heads)
        return vit_errf(VIT_E_CONFIG, err, errlen, "%s/config.json: hidden size %d is not a multiple of the %d attention heads",
                        dir, c->hidden_size, c->num_heads);
    const int P = c->patch_size, th = L->trained_h, tw = L->trained_w;
    if (th % P || tw % P) {
        if (th == tw)
            return vit_errf(VIT_E_CONFIG, err, errlen, "%s/config.json: image size %d is not a multiple of the patch size %d",
                            dir, th, P);
        return vit_errf(VIT_E_CONFIG, err, errlen, "%s/config.json: image size [%d, %d] is not a multiple of the patch size %d",
                        dir, th, tw, P);
    }
    if (hf_family(L)) L->trained_tokens = L->pos_prefix_rows + (th / P) * (tw / P);
    c->trained_image_h = th;
    c->trained_image_w = tw;
    c->image_h = th;
    c->image_w = tw;
    if (opts && opts->image_size && L->nm == NAMING_HF_DINOV2 && (opts->image_size != th || th != tw))
        return vit_errf(VIT_E_ARG, err, errlen, "image size %d: a Hugging Face Dinov2 model runs at its trained size %dx%d here "
                        "(its own position-embedding interpolation, with the 0.1 offset, is not implemented)",
                        opts->image_size, th, tw);
    if (opts && opts->image_size) {   /* run square at this size, position embeddings resampled per axis */
        if (opts->image_size < P || opts->image_size > MAX_IMAGE_SIZE || opts->image_size % P)
            return vit_errf(VIT_E_ARG, err, errlen, "image size %d: must be a multiple of the patch size %d, at most %d",
                            opts->image_size, P, MAX_IMAGE_SIZE);
        c->image_h = c->image_w = opts->image_size;
    }
    c->trained_image_size = th;
    c->image_size = c->image_h;
    c->grid_h = c->image_h / P;
    c->grid_w = c->image_w / P;
    c->num_patches = c->grid_h * c->grid_w;
    c->num_tokens = c->num_prefix_tokens + c->num_patches;
    if (c->num_tokens > MAX_TOKENS)
        return vit_errf(VIT_E_ARG, err, errlen, "image size %d gives %d tokens, more than %d", c->image_size, c->num_tokens,
                        MAX_TOKENS);
    c->qkv_bias = L->qkv_bias;
    c->has_pre_logits = L->has_pre;
    c->feature_dim = c->distilled || c->pooling == VIT_POOL_CLS_MEAN ? 2 * c->hidden_size : c->hidden_size;
    c->num_register_tokens = L->num_reg;
    c->layer_scale = L->layer_scale;
    return VIT_OK;
}

/* parameters: count, allocate once, load; the head; then no tensor may be left unused */
static vit_status load_params(loader *L, vit_model *m) {
    vit_config *c = &m->cfg;
    bump b = {0};
    vit_status st = build(L, m, &b);
    if (st) return st;
    m->params_count = b.off;
    m->params = aligned_alloc(64, ((b.off * sizeof(float)) + 63) & ~(size_t)63);
    m->layers = calloc((size_t)c->num_layers, sizeof *m->layers);
    if (!m->params || !m->layers) return vit_errf(VIT_E_NOMEM, L->err, L->errlen, "out of memory: %zu parameters", b.off);
    b = (bump){.base = m->params};
    L->ckpt_params = 0;
    if ((st = build(L, m, &b)) || (st = build_head(L, m))) return st;
    for (int i = 0; i < L->st->n; i++) {
        const st_tensor *t = &L->st->tensors[i];
        if (!t->used && !is_ignorable(L, t->name))
            return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen,
                            "%s: unexpected tensor '%s' (not part of a %s ViT this engine runs%s)", L->st_path, t->name,
                            L->ns->name, hf_family(L) && !L->qkv_bias && strstr(t->name, ".bias") &&
                            strstr(t->name, "attention.attention.") ? "; config.json says qkv_bias false" : "");
    }
    c->num_params = L->ckpt_params;
    c->labels = m->head->labels;
    return VIT_OK;
}

vit_status vit_model_load(const char *dir, const vit_load_opts *opts, vit_model **out, char *err,
                          size_t errlen) {
    if (!out) return vit_errf(VIT_E_ARG, err, errlen, "vit_model_load: out is NULL");
    *out = NULL;
    if (!dir || !*dir) return vit_errf(VIT_E_ARG, err, errlen, "vit_model_load: no model directory");
    if (strlen(dir) > 3000) return vit_errf(VIT_E_ARG, err, errlen, "vit_model_load: directory path too long");
    vit_status kst = vit_knobs_load(err, errlen);   /* a bad knob fails here, before any work */
    if (kst != VIT_OK) return kst;
    loader Ls = {.dir = dir, .err = err, .errlen = errlen}, *L = &Ls;
    vit_model *m = calloc(1, sizeof *m);
    if (!m) return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory");
    vit_config *c = &m->cfg;
    vit_status st;
    if ((st = md_open(dir, &L->md, err, errlen)) || (st = md_config(&L->md, 1, err, errlen))) goto fail;
    L->cfg = L->md.config;
    snprintf(L->st_path, sizeof L->st_path, "%s/model.safetensors", dir);
    if ((st = st_open(L->st_path, &L->st, err, errlen))) goto fail;
    if ((st = detect_scheme(L, c)) || (st = resolve_dims(L, c, opts)) || (st = load_params(L, m))) goto fail;
    /* a non-square model at its trained size takes the preprocessing config's h x w as it is */
    if ((st = md_preprocess(&L->md, c->image_h == c->image_w ? c->image_size : 0, &c->preprocess, err, errlen))) goto fail;
    c->preprocess.channels = c->num_channels;   /* the patch filter decides, whatever the config says */
    if (c->preprocess.out_h != c->image_h || c->preprocess.out_w != c->image_w) {
        st = vit_errf(VIT_E_CONFIG, err, errlen, "%s: preprocessing makes %dx%d (h x w) images but the model runs at %dx%d", dir,
                      c->preprocess.out_h, c->preprocess.out_w, c->image_h, c->image_w);
        goto fail;
    }
    /* calibration.json (INT8 / FP8 activation ranges), optional; a broken one is an error */
    st = vit_calib_load_dir(dir, c, &m->calib, err, errlen);
    if (st != VIT_OK && st != VIT_E_IO) goto fail;
    st_close(L->st);
    md_close(&L->md);
    *out = m;
    return VIT_OK;
fail:
    st_close(L->st);
    md_close(&L->md);
    vit_model_free(m);
    return st;
}
