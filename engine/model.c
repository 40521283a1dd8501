/* model.c: load a model directory (config.json + model.safetensors [+ preprocessor_config.json,
 * labels.txt]) into the FP32 layout of model.h, whatever the naming scheme:
 *   Hugging Face  vit.embeddings.*, vit.encoder.layer.{i}.*, vit.layernorm, classifier
 *                 (DeiT: deit.* with distillation_token, and cls_classifier + distillation_classifier
 *                 or a classifier on the class token only)
 *                 dims from config.json (HF keys and defaults), checked against every tensor;
 *   timm          patch_embed.proj, cls_token, pos_embed, blocks.{i}.*, norm, head
 *                 (+ fc_norm, pre_logits.fc, dist_token/head_dist);
 *   torchvision   conv_proj, class_token, encoder.pos_embedding, encoder.layers.encoder_layer_{i}.*,
 *                 encoder.ln, heads.head (+ heads.pre_logits).
 * For timm and torchvision the dims come from the tensor shapes; the number of heads from
 * config.json (model_args.num_heads, num_heads or num_attention_heads) or the architecture name
 * (vit_base_patch16_224, deit_small_..., vit_b_16, ...).  Every tensor the model needs must be
 * present with exactly the expected shape; a tensor the model does not use is an error too (it
 * would mean an unsupported variant, e.g. layer scale), except HF's unused pooler.
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
#include "io/safetensors.h"
#include "knobs.h"
#include "util.h"

#define CFG_MAX_BYTES    (64u << 20)  /* config.json, labels.txt (in21k id2label is ~1 MB) */
#define MAX_IMAGE_SIZE   4096
#define MAX_TOKENS       65536

typedef enum { NAMING_HF = 0, NAMING_TIMM, NAMING_TV } naming;
static const char *const naming_str[] = {"hf", "timm", "torchvision"};

typedef struct loader {
    const char *dir;
    char st_path[4096];
    st_file *st;
    cJSON *cfg;            /* config.json root */
    naming nm;
    char hf_prefix[8];     /* "vit.", "deit." or "" */
    int hf_deit;           /* HF DeiT: distillation token; two heads or one on the class token */
    int hf_two_heads;      /* HF DeiT with teacher: cls_classifier + distillation_classifier */
    char *err;
    size_t errlen;
    size_t ckpt_params;    /* elements of the checkpoint tensors used */
    int pos_no_prefix;     /* timm no_embed_class: pos_embed covers the patches only */
    int trained_tokens;    /* rows of the checkpoint's position embeddings */
    int has_norm, has_fc_norm, has_pre, qkv_bias;
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

/* tensor name from a pattern whose "%d" (if any) is the layer index; HF names get "vit." */
static const char *tname(loader *L, char *buf, size_t n, const char *pat, int i) {
    int head = !strncmp(pat, "classifier", 10) || !strncmp(pat, "cls_classifier", 14) ||
               !strncmp(pat, "distillation_classifier", 23);
    const char *pre = L->nm == NAMING_HF && !head ? L->hf_prefix : "";
    const char *d = strstr(pat, "%d");
    if (d)
        snprintf(buf, n, "%s%.*s%d%s", pre, (int)(d - pat), pat, i, d + 2);
    else
        snprintf(buf, n, "%s%s", pre, pat);
    return buf;
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

/* ---- labels ---------------------------------------------------------------------------- */

static void free_labels(char **lab, int n) {
    if (!lab) return;
    for (int i = 0; i < n; i++) free(lab[i]);
    free(lab);
}

/* labels from id2label / label_names in config.json, else labels.txt, else NULL (defaults) */
static vit_status read_labels(loader *L, int C, char ***out) {
    *out = NULL;
    char **lab = calloc((size_t)C, sizeof *lab);
    if (!lab) return vit_errf(VIT_E_NOMEM, L->err, L->errlen, "out of memory");
    const cJSON *id2 = jget(L->cfg, "id2label"), *names = jget(L->cfg, "label_names");
    vit_status st = VIT_OK;
    if (id2 && cJSON_IsObject(id2) && id2->child) {
        int n = 0;
        for (const cJSON *e = id2->child; e; e = e->next, n++) {
            char *end;
            long k = strtol(e->string, &end, 10);
            if (*e->string == 0 || *end || k < 0 || k >= C || !cJSON_IsString(e)) {
                st = vit_errf(VIT_E_CONFIG, L->err, L->errlen,
                              "%s/config.json: id2label entry '%.40s' is not a class index in [0, %d) with a string label",
                              L->dir, e->string, C);
                goto fail;
            }
            if (lab[k]) {
                st = vit_errf(VIT_E_CONFIG, L->err, L->errlen, "%s/config.json: id2label has class %ld twice", L->dir, k);
                goto fail;
            }
            if (!(lab[k] = strdup(e->valuestring))) goto nomem;
        }
        if (n != C) {
            st = vit_errf(VIT_E_CONFIG, L->err, L->errlen, "%s/config.json: id2label has %d labels but the head has %d classes",
                          L->dir, n, C);
            goto fail;
        }
    } else if (names && cJSON_IsArray(names) && cJSON_GetArraySize(names) > 0) {
        int n = cJSON_GetArraySize(names);
        if (n != C) {
            st = vit_errf(VIT_E_CONFIG, L->err, L->errlen, "%s/config.json: label_names has %d labels but the head has %d classes",
                          L->dir, n, C);
            goto fail;
        }
        int i = 0;
        for (const cJSON *e = names->child; e; e = e->next, i++) {
            if (!cJSON_IsString(e)) {
                st = vit_errf(VIT_E_CONFIG, L->err, L->errlen, "%s/config.json: label_names[%d] is not a string", L->dir, i);
                goto fail;
            }
            if (!(lab[i] = strdup(e->valuestring))) goto nomem;
        }
    } else {
        char path[4200];
        snprintf(path, sizeof path, "%s/labels.txt", L->dir);
        struct stat sb;
        if (stat(path, &sb) != 0) { free(lab); return VIT_OK; }   /* defaults */
        uint8_t *buf;
        size_t len;
        st = vit_read_file(path, CFG_MAX_BYTES, &buf, &len, L->err, L->errlen);
        if (st) goto fail;
        int n = 0;
        char *p = (char *)buf, *end = (char *)buf + len;
        while (p < end) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t k = nl ? (size_t)(nl - p) : (size_t)(end - p);
            if (k && p[k - 1] == '\r') k--;
            if (n < C && !(lab[n] = strndup(p, k))) { free(buf); goto nomem; }
            n++;
            p = nl ? nl + 1 : end;
        }
        free(buf);
        if (n != C) {
            st = vit_errf(VIT_E_CONFIG, L->err, L->errlen, "%s: %d labels but the head has %d classes", path, n, C);
            goto fail;
        }
    }
    *out = lab;
    return VIT_OK;
nomem:
    st = vit_errf(VIT_E_NOMEM, L->err, L->errlen, "out of memory reading labels");
fail:
    free_labels(lab, C);
    return st;
}

/* ---- dims ------------------------------------------------------------------------------ */

/* Hugging Face: dims from config.json with HF's defaults; tensors are checked against them. */
static vit_status dims_hf(loader *L, vit_config *c) {
    L->dims_from = "config.json";
    c->image_size = 224; c->patch_size = 16; c->num_channels = 3; c->hidden_size = 768;
    c->num_layers = 12; c->num_heads = 12; c->mlp_size = 3072;
    if (cfg_int(L, L->cfg, "", "image_size", 1, MAX_IMAGE_SIZE, &c->image_size) < 0 ||
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
    c->layer_norm_eps = 1e-12f;
    const cJSON *eps = jget(L->cfg, "layer_norm_eps");
    if (eps) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0) || eps->valuedouble > 1)
            return vit_errf(VIT_E_CONFIG, L->err, L->errlen, "%s/config.json: layer_norm_eps must be a number in (0, 1]", L->dir);
        c->layer_norm_eps = (float)eps->valuedouble;
    }
    const cJSON *qb = jget(L->cfg, "qkv_bias");
    if (qb && !cJSON_IsBool(qb))
        return vit_errf(VIT_E_CONFIG, L->err, L->errlen, "%s/config.json: qkv_bias must be true or false", L->dir);
    L->qkv_bias = qb ? cJSON_IsTrue(qb) : 1;
    c->trained_image_size = c->image_size;
    c->num_prefix_tokens = L->hf_deit ? 2 : 1;
    c->distilled = L->hf_deit;
    c->pooling = VIT_POOL_CLS;
    L->has_norm = 1;
    L->hf_two_heads = L->hf_deit && has(L, "cls_classifier.weight", 0);
    const char *hw = L->hf_two_heads ? "cls_classifier.weight" : "classifier.weight";
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

/* timm / torchvision: dims from the tensor shapes, heads from config.json or the name */
static vit_status dims_from_tensors(loader *L, vit_config *c) {
    L->dims_from = "tensor shapes";
    int tv = L->nm == NAMING_TV;
    st_tensor *t;
    char e1[160];
    const char *patch = tv ? "conv_proj.weight" : "patch_embed.proj.weight";
    get_shape(L, patch, 0, &t);
    if (t->ndim != 4 || t->shape[2] != t->shape[3] || t->shape[0] < 1 || t->shape[0] > 65536 || t->shape[1] < 1 ||
        t->shape[1] > 64 || t->shape[2] < 1 || t->shape[2] > 1024)
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: tensor '%s': expected shape [D, C, P, P], got %s",
                        L->st_path, patch, st_shape_str(t->shape, t->ndim, e1, sizeof e1));
    c->hidden_size = (int)t->shape[0];
    c->num_channels = (int)t->shape[1];
    c->patch_size = (int)t->shape[2];
    int D = c->hidden_size;
    /* layers */
    const char *ln1 = tv ? "encoder.layers.encoder_layer_%d.ln_1.weight" : "blocks.%d.norm1.weight";
    c->num_layers = 0;
    while (c->num_layers < 1024 && has(L, ln1, c->num_layers)) c->num_layers++;
    if (c->num_layers == 0)
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: missing tensor '%s' (no transformer blocks)",
                        L->st_path, tv ? "encoder.layers.encoder_layer_0.ln_1.weight" : "blocks.0.norm1.weight");
    /* MLP width */
    const char *fc1 = tv ? (has(L, "encoder.layers.encoder_layer_0.mlp.0.weight", 0)
                                ? "encoder.layers.encoder_layer_0.mlp.0.weight"
                                : "encoder.layers.encoder_layer_0.mlp.linear_1.weight")
                         : "blocks.0.mlp.fc1.weight";
    if (!get_shape(L, fc1, 0, &t))
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: missing tensor '%s'", L->st_path, fc1);
    if (t->ndim != 2 || t->shape[1] != D || t->shape[0] < 1 || t->shape[0] > (1 << 20))
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: tensor '%s': expected shape [M, %d], got %s", L->st_path,
                        fc1, D, st_shape_str(t->shape, t->ndim, e1, sizeof e1));
    c->mlp_size = (int)t->shape[0];
    /* prefix tokens and position embeddings */
    int cls = has(L, tv ? "class_token" : "cls_token", 0);
    int dist = !tv && has(L, "dist_token", 0);
    if (dist && !cls)
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: 'dist_token' without 'cls_token' is not supported", L->st_path);
    c->num_prefix_tokens = cls + dist;
    c->distilled = dist;
    const char *pos = tv ? "encoder.pos_embedding" : "pos_embed";
    if (!get_shape(L, pos, 0, &t))
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: missing tensor '%s'", L->st_path, pos);
    if (t->ndim != 3 || t->shape[0] != 1 || t->shape[2] != D || t->shape[1] < 1 || t->shape[1] > MAX_TOKENS)
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: tensor '%s': expected shape [1, tokens, %d], got %s",
                        L->st_path, pos, D, st_shape_str(t->shape, t->ndim, e1, sizeof e1));
    int rows = (int)t->shape[1], npatch = rows - c->num_prefix_tokens;
    int g = (int)lround(sqrt((double)(npatch > 0 ? npatch : 0)));
    if (npatch <= 0 || g * g != npatch) {
        int g2 = (int)lround(sqrt((double)rows));
        if (c->num_prefix_tokens && g2 * g2 == rows) {   /* timm no_embed_class */
            L->pos_no_prefix = 1;
            g = g2;
        } else {
            return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen,
                            "%s: tensor '%s' has %d rows: not %d prefix token(s) plus a square grid of patches",
                            L->st_path, pos, rows, c->num_prefix_tokens);
        }
    }
    L->trained_tokens = rows;
    c->trained_image_size = c->image_size = g * c->patch_size;
    /* heads */
    static const char *const head_keys[] = {"num_heads", "num_attention_heads", NULL};
    const char *arch = c->architecture;
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
    /* values config.json states must agree with the tensors */
    static const char *const k_patch[] = {"patch_size", NULL}, *const k_img[] = {"img_size", "image_size", NULL},
                             *const k_dim[] = {"embed_dim", "hidden_size", "hidden_dim", NULL},
                             *const k_depth[] = {"depth", "num_hidden_layers", "num_layers", NULL},
                             *const k_mlp[] = {"intermediate_size", "mlp_dim", NULL};
    struct { const char *const *keys; int have; const char *what; } chk[] = {
        {k_patch, c->patch_size, "patch size"}, {k_img, c->trained_image_size, "image size"},
        {k_dim, D, "hidden size"}, {k_depth, c->num_layers, "number of layers"}, {k_mlp, c->mlp_size, "MLP size"},
    };
    for (size_t i = 0; i < sizeof chk / sizeof chk[0]; i++) {
        int v;
        const char *which;
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
    c->layer_norm_eps = 1e-6f;
    const cJSON *eps = jget(L->cfg, "layer_norm_eps");
    if (eps) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0) || eps->valuedouble > 1)
            return vit_errf(VIT_E_CONFIG, L->err, L->errlen, "%s/config.json: layer_norm_eps must be a number in (0, 1]", L->dir);
        c->layer_norm_eps = (float)eps->valuedouble;
    }
    L->qkv_bias = has(L, tv ? "encoder.layers.encoder_layer_%d.self_attention.in_proj_bias" : "blocks.%d.attn.qkv.bias", 0);
    /* pooling, final norms, representation layer */
    L->has_norm = has(L, tv ? "encoder.ln.weight" : "norm.weight", 0);
    L->has_fc_norm = !tv && has(L, "fc_norm.weight", 0);
    L->has_pre = has(L, tv ? "heads.pre_logits.weight" : "pre_logits.fc.weight", 0);
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
    if (dist && c->pooling != VIT_POOL_CLS)
        return vit_errf(VIT_E_CONFIG, L->err, L->errlen, "%s: a distilled model with mean pooling is not supported", L->st_path);
    if (!L->has_norm && !L->has_fc_norm)
        L->has_norm = 1;   /* report 'norm.weight' missing when loading */
    /* classes */
    const char *hw = tv ? "heads.head.weight" : "head.weight";
    if (!get_shape(L, hw, 0, &t))
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: missing tensor '%s' (no classification head)", L->st_path, hw);
    if (t->ndim != 2 || t->shape[0] < 1 || t->shape[0] > 1000000)
        return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen, "%s: tensor '%s': expected shape [classes, %d], got %s",
                        L->st_path, hw, D, st_shape_str(t->shape, t->ndim, e1, sizeof e1));
    c->num_classes = (int)t->shape[0];
    if (L->has_pre) {
        get_shape(L, tv ? "heads.pre_logits.weight" : "pre_logits.fc.weight", 0, &t);
        if (t->ndim == 2 && t->shape[0] != D && t->shape[1] == D)
            return vit_errf(VIT_E_CHECKPOINT, L->err, L->errlen,
                            "%s: representation layer of size %lld != hidden size %d is not supported", L->st_path,
                            (long long)t->shape[0], D);
    }
    r = cfg_int_any(L, (const char *const[]){"num_classes", NULL}, 1, 1000000, &g, NULL);
    if (r < 0) return VIT_E_CONFIG;
    if (r > 0 && g != c->num_classes)
        return vit_errf(VIT_E_CONFIG, L->err, L->errlen,
                        "%s/config.json: num_classes %d does not match the checkpoint ('%s' has %d rows)", L->dir, g, hw,
                        c->num_classes);
    return VIT_OK;
}

/* ---- building the parameter block ------------------------------------------------------ */

/* One pass over every tensor in model.h order.  b->base NULL: count only. */
static vit_status build(loader *L, vit_model *m, bump *b) {
    vit_config *c = &m->cfg;
    const int D = c->hidden_size, C = c->num_channels, P = c->patch_size, M = c->mlp_size;
    const int hf = L->nm == NAMING_HF, tv = L->nm == NAMING_TV;
    vit_status st;
    float *p;

    p = take(b, (size_t)D * C * P * P);
    m->patch_w = p;
    if ((st = LOAD4(p, hf ? "embeddings.patch_embeddings.projection.weight" : tv ? "conv_proj.weight" : "patch_embed.proj.weight",
                    0, D, C, P, P))) return st;
    p = take(b, (size_t)D);
    m->patch_b = p;
    if ((st = LOAD1(p, hf ? "embeddings.patch_embeddings.projection.bias" : tv ? "conv_proj.bias" : "patch_embed.proj.bias",
                    0, D))) return st;
    m->cls_token = m->dist_token = NULL;
    if (c->num_prefix_tokens >= 1) {
        p = take(b, (size_t)D);
        m->cls_token = p;
        if ((st = LOAD3(p, hf ? "embeddings.cls_token" : tv ? "class_token" : "cls_token", 0, 1, 1, D))) return st;
    }
    if (c->distilled) {
        p = take(b, (size_t)D);
        m->dist_token = p;
        if ((st = LOAD3(p, hf ? "embeddings.distillation_token" : "dist_token", 0, 1, 1, D))) return st;
    }
    /* position embeddings: checkpoint's (1, T0, D) -> (num_tokens, D) at the run size */
    p = take(b, (size_t)c->num_tokens * D);
    m->pos_embed = p;
    if (p) {
        int T0 = L->trained_tokens, npre = c->num_prefix_tokens;
        float *tmp = malloc((size_t)T0 * D * sizeof *tmp);
        if (!tmp) return vit_errf(VIT_E_NOMEM, L->err, L->errlen, "out of memory (position embeddings)");
        st = LOAD3(tmp, hf ? "embeddings.position_embeddings" : tv ? "encoder.pos_embedding" : "pos_embed", 0, 1, T0, D);
        if (!st) {
            int src_pre = L->pos_no_prefix ? 0 : npre;
            int g0 = (int)lround(sqrt((double)(T0 - src_pre)));
            if (L->pos_no_prefix) memset(p, 0, (size_t)npre * D * sizeof *p);
            else memcpy(p, tmp, (size_t)npre * D * sizeof *p);
            float *dst = p + (size_t)npre * D;
            const float *src = tmp + (size_t)src_pre * D;
            if (g0 == c->grid_h && g0 == c->grid_w)
                memcpy(dst, src, (size_t)c->num_patches * D * sizeof *p);
            else
                resample_grid(dst, src, g0, g0, c->grid_h, c->grid_w, D);
        }
        free(tmp);
        if (st) return st;
    } else if ((st = LOAD3(NULL, hf ? "embeddings.position_embeddings" : tv ? "encoder.pos_embedding" : "pos_embed", 0, 1,
                           L->trained_tokens, D))) {
        return st;
    }
    /* blocks */
    for (int i = 0; i < c->num_layers; i++) {
        vit_layer_weights *lw = b->base ? &m->layers[i] : &(vit_layer_weights){0};
        const char *n_ln1w, *n_ln1b, *n_pw, *n_pb, *n_ln2w, *n_ln2b, *n_f1w, *n_f1b, *n_f2w, *n_f2b;
        if (hf) {
            n_ln1w = "encoder.layer.%d.layernorm_before.weight"; n_ln1b = "encoder.layer.%d.layernorm_before.bias";
            n_pw = "encoder.layer.%d.attention.output.dense.weight"; n_pb = "encoder.layer.%d.attention.output.dense.bias";
            n_ln2w = "encoder.layer.%d.layernorm_after.weight"; n_ln2b = "encoder.layer.%d.layernorm_after.bias";
            n_f1w = "encoder.layer.%d.intermediate.dense.weight"; n_f1b = "encoder.layer.%d.intermediate.dense.bias";
            n_f2w = "encoder.layer.%d.output.dense.weight"; n_f2b = "encoder.layer.%d.output.dense.bias";
        } else if (tv) {
            int legacy = !has(L, "encoder.layers.encoder_layer_%d.mlp.0.weight", i) &&
                         has(L, "encoder.layers.encoder_layer_%d.mlp.linear_1.weight", i);
            n_ln1w = "encoder.layers.encoder_layer_%d.ln_1.weight"; n_ln1b = "encoder.layers.encoder_layer_%d.ln_1.bias";
            n_pw = "encoder.layers.encoder_layer_%d.self_attention.out_proj.weight";
            n_pb = "encoder.layers.encoder_layer_%d.self_attention.out_proj.bias";
            n_ln2w = "encoder.layers.encoder_layer_%d.ln_2.weight"; n_ln2b = "encoder.layers.encoder_layer_%d.ln_2.bias";
            n_f1w = legacy ? "encoder.layers.encoder_layer_%d.mlp.linear_1.weight" : "encoder.layers.encoder_layer_%d.mlp.0.weight";
            n_f1b = legacy ? "encoder.layers.encoder_layer_%d.mlp.linear_1.bias" : "encoder.layers.encoder_layer_%d.mlp.0.bias";
            n_f2w = legacy ? "encoder.layers.encoder_layer_%d.mlp.linear_2.weight" : "encoder.layers.encoder_layer_%d.mlp.3.weight";
            n_f2b = legacy ? "encoder.layers.encoder_layer_%d.mlp.linear_2.bias" : "encoder.layers.encoder_layer_%d.mlp.3.bias";
        } else {
            n_ln1w = "blocks.%d.norm1.weight"; n_ln1b = "blocks.%d.norm1.bias";
            n_pw = "blocks.%d.attn.proj.weight"; n_pb = "blocks.%d.attn.proj.bias";
            n_ln2w = "blocks.%d.norm2.weight"; n_ln2b = "blocks.%d.norm2.bias";
            n_f1w = "blocks.%d.mlp.fc1.weight"; n_f1b = "blocks.%d.mlp.fc1.bias";
            n_f2w = "blocks.%d.mlp.fc2.weight"; n_f2b = "blocks.%d.mlp.fc2.bias";
        }
        if ((st = LOAD1(p = take(b, D), n_ln1w, i, D))) return st;
        lw->ln1_w = p;
        if ((st = LOAD1(p = take(b, D), n_ln1b, i, D))) return st;
        lw->ln1_b = p;
        /* qkv (3D, D) rows [q; k; v] and its bias (3D), zeros without one */
        float *qw = take(b, (size_t)3 * D * D), *qb = take(b, (size_t)3 * D);
        lw->qkv_w = qw;
        lw->qkv_b = qb;
        if (hf) {
            static const char *const qn[3] = {"query", "key", "value"};
            for (int j = 0; j < 3; j++) {
                char fw[128], fb[128];
                snprintf(fw, sizeof fw, "encoder.layer.%sd.attention.attention.%s.weight", "%", qn[j]);
                snprintf(fb, sizeof fb, "encoder.layer.%sd.attention.attention.%s.bias", "%", qn[j]);
                if ((st = LOAD2(qw ? qw + (size_t)j * D * D : NULL, fw, i, D, D))) return st;
                if (L->qkv_bias && (st = LOAD1(qb ? qb + (size_t)j * D : NULL, fb, i, D))) return st;
            }
        } else {
            if ((st = LOAD2(qw, tv ? "encoder.layers.encoder_layer_%d.self_attention.in_proj_weight" : "blocks.%d.attn.qkv.weight",
                            i, 3 * D, D))) return st;
            if (L->qkv_bias &&
                (st = LOAD1(qb, tv ? "encoder.layers.encoder_layer_%d.self_attention.in_proj_bias" : "blocks.%d.attn.qkv.bias",
                            i, 3 * D))) return st;
        }
        if (qb && !L->qkv_bias) memset(qb, 0, (size_t)3 * D * sizeof *qb);
        if ((st = LOAD2(p = take(b, (size_t)D * D), n_pw, i, D, D))) return st;
        lw->proj_w = p;
        if ((st = LOAD1(p = take(b, D), n_pb, i, D))) return st;
        lw->proj_b = p;
        if ((st = LOAD1(p = take(b, D), n_ln2w, i, D))) return st;
        lw->ln2_w = p;
        if ((st = LOAD1(p = take(b, D), n_ln2b, i, D))) return st;
        lw->ln2_b = p;
        if ((st = LOAD2(p = take(b, (size_t)M * D), n_f1w, i, M, D))) return st;
        lw->fc1_w = p;
        if ((st = LOAD1(p = take(b, M), n_f1b, i, M))) return st;
        lw->fc1_b = p;
        if ((st = LOAD2(p = take(b, (size_t)D * M), n_f2w, i, D, M))) return st;
        lw->fc2_w = p;
        if ((st = LOAD1(p = take(b, D), n_f2b, i, D))) return st;
        lw->fc2_b = p;
    }
    m->norm_w = m->norm_b = m->fc_norm_w = m->fc_norm_b = m->pre_logits_w = m->pre_logits_b = NULL;
    if (L->has_norm) {
        if ((st = LOAD1(p = take(b, D), hf ? "layernorm.weight" : tv ? "encoder.ln.weight" : "norm.weight", 0, D))) return st;
        m->norm_w = p;
        if ((st = LOAD1(p = take(b, D), hf ? "layernorm.bias" : tv ? "encoder.ln.bias" : "norm.bias", 0, D))) return st;
        m->norm_b = p;
    }
    if (L->has_fc_norm) {
        if ((st = LOAD1(p = take(b, D), "fc_norm.weight", 0, D))) return st;
        m->fc_norm_w = p;
        if ((st = LOAD1(p = take(b, D), "fc_norm.bias", 0, D))) return st;
        m->fc_norm_b = p;
    }
    if (L->has_pre) {
        if ((st = LOAD2(p = take(b, (size_t)D * D), tv ? "heads.pre_logits.weight" : "pre_logits.fc.weight", 0, D, D))) return st;
        m->pre_logits_w = p;
        if ((st = LOAD1(p = take(b, D), tv ? "heads.pre_logits.bias" : "pre_logits.fc.bias", 0, D))) return st;
        m->pre_logits_b = p;
    }
    return VIT_OK;
}

/* the head: (classes, feature_dim); DeiT's two heads folded into one on [cls; dist] */
static vit_status build_head(loader *L, vit_model *m) {
    vit_config *c = &m->cfg;
    const int D = c->hidden_size, K = c->num_classes, Fd = c->feature_dim;
    const int hf = L->nm == NAMING_HF, tv = L->nm == NAMING_TV;
    vit_status st;
    const char *hw = hf ? (L->hf_two_heads ? "cls_classifier.weight" : "classifier.weight")
                        : tv ? "heads.head.weight" : "head.weight";
    const char *hb = hf ? (L->hf_two_heads ? "cls_classifier.bias" : "classifier.bias")
                        : tv ? "heads.head.bias" : "head.bias";
    /* K comes from config.json (id2label) for HF: the tensor must match before K x Fd is allocated */
    if ((st = LOAD2(NULL, hw, 0, K, D)) || (st = LOAD1(NULL, hb, 0, K))) return st;
    float *w = malloc((size_t)K * Fd * sizeof *w), *bias = malloc((size_t)K * sizeof *bias);
    float *w2 = NULL, *b2 = NULL;
    char **labels = NULL;
    if (!w || !bias) { st = vit_errf(VIT_E_NOMEM, L->err, L->errlen, "out of memory (head)"); goto done; }
    if ((st = LOAD2(w, hw, 0, K, D))) goto done;
    if ((st = LOAD1(bias, hb, 0, K))) goto done;
    if (c->distilled) {
        w2 = calloc((size_t)K * D, sizeof *w2);
        b2 = calloc((size_t)K, sizeof *b2);
        if (!w2 || !b2) { st = vit_errf(VIT_E_NOMEM, L->err, L->errlen, "out of memory (head)"); goto done; }
        if (hf && !L->hf_two_heads) {
            /* HF DeiTForImageClassification: the head sees the class token only: [W, 0], b.
             * The fold below halves both, so give it 2W and 2b for the class-token half. */
            for (size_t i = 0; i < (size_t)K * D; i++) w[i] *= 2.0f;
            for (int k = 0; k < K; k++) { b2[k] = bias[k]; }
        } else {
            const char *dw = hf ? "distillation_classifier.weight" : "head_dist.weight";
            const char *db = hf ? "distillation_classifier.bias" : "head_dist.bias";
            if ((st = LOAD2(w2, dw, 0, K, D))) goto done;
            if ((st = LOAD1(b2, db, 0, K))) goto done;
        }
        /* w holds (K, D) packed; spread to (K, 2D) from the last row backwards */
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
    if ((st = read_labels(L, K, &labels))) goto done;
    st = vit_head_new(K, Fd, w, bias, (const char *const *)labels, &m->head);
    if (st) vit_errf(st, L->err, L->errlen, "cannot create the head: %s", vit_status_str(st));
done:
    free(w); free(bias); free(w2); free(b2);
    free_labels(labels, K);
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
    return L->nm == NAMING_HF && (strstr(name, "pooler.") || strstr(name, "mask_token"));
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
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        st = vit_errf(VIT_E_IO, err, errlen, "%s: not a model directory", dir);
        goto fail;
    }

    /* config.json */
    {
        char path[4200];
        snprintf(path, sizeof path, "%s/config.json", dir);
        uint8_t *buf;
        size_t len;
        if ((st = vit_read_file(path, CFG_MAX_BYTES, &buf, &len, err, errlen))) {
            if (st == VIT_E_ARG) st = VIT_E_CONFIG;
            goto fail;
        }
        L->cfg = cJSON_ParseWithLength((const char *)buf, len);
        if (!L->cfg || !cJSON_IsObject(L->cfg)) {
            const char *ep = cJSON_GetErrorPtr();
            long at = (ep && ep >= (char *)buf && ep <= (char *)buf + len) ? (long)(ep - (char *)buf) : -1;
            if (L->cfg) st = vit_errf(VIT_E_CONFIG, err, errlen, "%s: bad JSON: not a JSON object", path);
            else st = vit_errf(VIT_E_CONFIG, err, errlen, "%s: bad JSON (near byte %ld)", path, at);
            free(buf);
            goto fail;
        }
        free(buf);
    }
    /* model.safetensors */
    snprintf(L->st_path, sizeof L->st_path, "%s/model.safetensors", dir);
    if ((st = st_open(L->st_path, &L->st, err, errlen))) goto fail;

    /* naming scheme */
    if (st_lookup(L->st, "vit.embeddings.patch_embeddings.projection.weight")) {
        L->nm = NAMING_HF;
        strcpy(L->hf_prefix, "vit.");
    } else if (st_lookup(L->st, "deit.embeddings.patch_embeddings.projection.weight")) {
        L->nm = NAMING_HF;
        L->hf_deit = 1;
        strcpy(L->hf_prefix, "deit.");
    } else if (st_lookup(L->st, "embeddings.patch_embeddings.projection.weight")) {
        L->nm = NAMING_HF;
    } else if (st_lookup(L->st, "patch_embed.proj.weight")) {
        L->nm = NAMING_TIMM;
    } else if (st_lookup(L->st, "conv_proj.weight")) {
        L->nm = NAMING_TV;
    } else {
        st = vit_errf(VIT_E_CHECKPOINT, err, errlen,
                      "%s: unknown tensor naming: no patch embedding ('vit.embeddings.patch_embeddings.projection.weight' or 'deit.embeddings...' "
                      "(Hugging Face), 'patch_embed.proj.weight' (timm) or 'conv_proj.weight' (torchvision))", L->st_path);
        goto fail;
    }
    snprintf(c->naming, sizeof c->naming, "%s", naming_str[L->nm]);

    /* architecture name */
    {
        const cJSON *a = jget(L->cfg, "architecture"), *as = jget(L->cfg, "architectures");
        const char *name = NULL;
        if (cJSON_IsString(a)) name = a->valuestring;
        else if (cJSON_IsArray(as) && cJSON_IsString(cJSON_GetArrayItem(as, 0))) name = cJSON_GetArrayItem(as, 0)->valuestring;
        else if (cJSON_IsString(jget(L->cfg, "model_type"))) name = jget(L->cfg, "model_type")->valuestring;
        snprintf(c->architecture, sizeof c->architecture, "%s",
                 name ? name : L->nm == NAMING_HF ? "ViTForImageClassification" : L->nm == NAMING_TV ? "vit_torchvision" : "vit");
    }

    /* dims */
    st = L->nm == NAMING_HF ? dims_hf(L, c) : dims_from_tensors(L, c);
    if (st) goto fail;
    if (c->num_channels != 3) {
        st = vit_errf(VIT_E_CONFIG, err, errlen, "%s: %d input channels: only 3 (RGB) are supported", dir, c->num_channels);
        goto fail;
    }
    if (c->hidden_size % c->num_heads) {
        st = vit_errf(VIT_E_CONFIG, err, errlen, "%s/config.json: hidden size %d is not a multiple of the %d attention heads",
                      dir, c->hidden_size, c->num_heads);
        goto fail;
    }
    if (c->trained_image_size % c->patch_size) {
        st = vit_errf(VIT_E_CONFIG, err, errlen, "%s/config.json: image size %d is not a multiple of the patch size %d", dir,
                      c->trained_image_size, c->patch_size);
        goto fail;
    }
    if (L->nm == NAMING_HF) {
        int g = c->trained_image_size / c->patch_size;
        L->trained_tokens = c->num_prefix_tokens + g * g;
    }
    c->image_size = c->trained_image_size;
    if (opts && opts->image_size) {
        if (opts->image_size < c->patch_size || opts->image_size > MAX_IMAGE_SIZE || opts->image_size % c->patch_size) {
            st = vit_errf(VIT_E_ARG, err, errlen, "image size %d: must be a multiple of the patch size %d, at most %d",
                          opts->image_size, c->patch_size, MAX_IMAGE_SIZE);
            goto fail;
        }
        c->image_size = opts->image_size;
    }
    c->grid_h = c->grid_w = c->image_size / c->patch_size;
    c->num_patches = c->grid_h * c->grid_w;
    c->num_tokens = c->num_prefix_tokens + c->num_patches;
    if (c->num_tokens > MAX_TOKENS) {
        st = vit_errf(VIT_E_ARG, err, errlen, "image size %d gives %d tokens, more than %d", c->image_size, c->num_tokens,
                      MAX_TOKENS);
        goto fail;
    }
    c->qkv_bias = L->qkv_bias;
    c->has_pre_logits = L->has_pre;
    c->feature_dim = c->distilled ? 2 * c->hidden_size : c->hidden_size;

    /* parameters: count, allocate once, load */
    {
        bump b = {0};
        if ((st = build(L, m, &b))) goto fail;
        m->params_count = b.off;
        m->params = aligned_alloc(64, ((b.off * sizeof(float)) + 63) & ~(size_t)63);
        m->layers = calloc((size_t)c->num_layers, sizeof *m->layers);
        if (!m->params || !m->layers) {
            st = vit_errf(VIT_E_NOMEM, err, errlen, "out of memory: %zu parameters", b.off);
            goto fail;
        }
        b = (bump){.base = m->params};
        L->ckpt_params = 0;
        if ((st = build(L, m, &b))) goto fail;
        if ((st = build_head(L, m))) goto fail;
    }
    for (int i = 0; i < L->st->n; i++) {
        const st_tensor *t = &L->st->tensors[i];
        if (!t->used && !is_ignorable(L, t->name)) {
            st = vit_errf(VIT_E_CHECKPOINT, err, errlen,
                          "%s: unexpected tensor '%s' (not part of a %s ViT this engine runs%s)", L->st_path, t->name,
                          naming_str[L->nm], L->nm == NAMING_HF && !L->qkv_bias && strstr(t->name, ".bias") &&
                          strstr(t->name, "attention.attention.") ? "; config.json says qkv_bias false" : "");
            goto fail;
        }
    }
    c->num_params = L->ckpt_params;
    c->labels = m->head->labels;
    if ((st = vit_preprocess_load(dir, c->image_size, &c->preprocess, err, errlen))) goto fail;
    /* calibration.json (INT8 / FP8 activation ranges), optional; a broken one is an error */
    st = vit_calib_load_dir(dir, c, &m->calib, err, errlen);
    if (st != VIT_OK && st != VIT_E_IO) goto fail;

    st_close(L->st);
    cJSON_Delete(L->cfg);
    *out = m;
    return VIT_OK;
fail:
    st_close(L->st);
    cJSON_Delete(L->cfg);
    vit_model_free(m);
    return st;
}
