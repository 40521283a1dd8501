/* test_loader.c: checkpoint loading (engine/model.c, safetensors.c, head.c).
 * Every fixture in tests/fixtures/models loads with the dims, labels and options its
 * ref/meta.json states, and every tensor lands in the model.h layout with the values the
 * generator wrote (checksums; F16/BF16 exact); position embeddings resample as timm does.
 * Hostile checkpoints, made at run time in a temporary directory from a good fixture, each
 * give a clean error naming the problem. */
#include <cJSON.h>
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "model.h"
#include "io/safetensors.h"
#include "util.h"

#define FIX "tests/fixtures/models"

static const char *const fixtures[] = {
    "tiny-hf", "tiny-timm", "tiny-tv", "tiny-timm-avgpool", "tiny-timm-prelogits",
    "tiny-deit-distilled", "tiny-hf-noqkvbias", "tiny-hf-f16", "tiny-timm-bf16", "tiny-hf-deit-distilled",
    "tiny-timm-layerscale", "tiny-timm-reg4", "tiny-timm-gray", "tiny-hf-gray", "tiny-timm-dinov2",
    "tiny-timm-rect", "tiny-hf-rect", "tiny-hf-dinov2", "tiny-hf-dinov2-reg4",
};

static cJSON *read_json(const char *path) {
    uint8_t *buf;
    size_t len;
    char err[256];
    if (vit_read_file(path, 1 << 24, &buf, &len, err, sizeof err)) {
        printf("# %s\n", err);
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    return j;
}

static int jint(const cJSON *o, const char *k) { return cJSON_GetObjectItem(o, k)->valueint; }
static double jnum(const cJSON *o, const char *k) { return cJSON_GetObjectItem(o, k)->valuedouble; }
static int jbool(const cJSON *o, const char *k) { return cJSON_IsTrue(cJSON_GetObjectItem(o, k)); }

/* the model.h tensor behind a canonical name of meta.json */
static const float *canon(const vit_model *m, const char *name, size_t *n) {
    const vit_config *c = &m->cfg;
    size_t D = (size_t)c->hidden_size, M = (size_t)c->mlp_size, P = (size_t)c->patch_size;
    int li;
    char rest[64];
    if (sscanf(name, "layers.%d.%63s", &li, rest) == 2) {
        if (li < 0 || li >= c->num_layers) return NULL;
        const vit_layer_weights *l = &m->layers[li];
        struct { const char *n; const float *p; size_t k; } t[] = {
            {"ln1_w", l->ln1_w, D}, {"ln1_b", l->ln1_b, D}, {"qkv_w", l->qkv_w, 3 * D * D},
            {"qkv_b", l->qkv_b, 3 * D}, {"proj_w", l->proj_w, D * D}, {"proj_b", l->proj_b, D},
            {"ln2_w", l->ln2_w, D}, {"ln2_b", l->ln2_b, D}, {"fc1_w", l->fc1_w, M * D},
            {"fc1_b", l->fc1_b, M}, {"fc2_w", l->fc2_w, D * M}, {"fc2_b", l->fc2_b, D},
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            if (!strcmp(rest, t[i].n)) { *n = t[i].k; return t[i].p; }
        return NULL;
    }
    size_t K = (size_t)c->num_classes;
    struct { const char *n; const float *p; size_t k; } t[] = {
        {"patch_w", m->patch_w, D * (size_t)c->num_channels * P * P}, {"patch_b", m->patch_b, D},
        {"cls_token", m->cls_token, D}, {"dist_token", m->dist_token, D},
        {"reg_tokens", m->reg_tokens, (size_t)c->num_register_tokens * D},
        {"pos_embed", m->pos_embed, (size_t)c->num_tokens * D},
        {"norm_w", m->norm_w, D}, {"norm_b", m->norm_b, D},
        {"fc_norm_w", m->fc_norm_w, D}, {"fc_norm_b", m->fc_norm_b, D},
        {"pre_logits_w", m->pre_logits_w, D * D}, {"pre_logits_b", m->pre_logits_b, D},
        {"head_w", vit_head_weight(vit_model_head(m)), K * (size_t)c->feature_dim},
        {"head_b", vit_head_bias(vit_model_head(m)), K},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(name, t[i].n)) { *n = t[i].k; return t[i].p; }
    return NULL;
}

/* compare every tensor's checksums; returns the number of mismatches */
static int check_tensors(const vit_model *m, const cJSON *tensors, const char *fx) {
    int bad = 0, count = 0;
    for (const cJSON *e = tensors->child; e; e = e->next, count++) {
        size_t n = 0;
        const float *p = canon(m, e->string, &n);
        size_t want = 1;
        const cJSON *sh = cJSON_GetObjectItem(e, "shape");
        for (const cJSON *d = sh->child; d; d = d->next) want *= (size_t)d->valueint;
        if (!p || n != want) {
            printf("# %s: %s: %s (n=%zu want %zu)\n", fx, e->string, p ? "wrong size" : "missing", n, want);
            bad++;
            continue;
        }
        double s = 0, a = 0, w = 0;
        for (size_t i = 0; i < n; i++) {
            s += p[i];
            a += fabs(p[i]);
            w += p[i] * (double)(i % 7 + 1);
        }
        double tol = 1e-9 * (jnum(e, "abssum") * 7 + 1);
        int ok = fabs(s - jnum(e, "sum")) <= tol && fabs(a - jnum(e, "abssum")) <= tol && fabs(w - jnum(e, "wsum")) <= tol;
        const cJSON *first = cJSON_GetObjectItem(e, "first");
        int i = 0;
        for (const cJSON *f = first->child; f; f = f->next, i++) ok = ok && (double)p[i] == f->valuedouble;
        ok = ok && (double)p[n - 1] == jnum(e, "last");
        if (!ok) {
            printf("# %s: %s: sum %.9g vs %.9g, wsum %.9g vs %.9g, first %.9g vs %.9g\n", fx, e->string, s,
                   jnum(e, "sum"), w, jnum(e, "wsum"), (double)p[0], first->child->valuedouble);
            bad++;
        }
    }
    return count ? bad : 1;
}

static void test_fixture(const char *fx) {
    char dir[512], path[600], err[512] = "";
    snprintf(dir, sizeof dir, FIX "/%s", fx);
    snprintf(path, sizeof path, "%s/ref/meta.json", dir);
    cJSON *meta = read_json(path);
    if (!meta) { CHECK(0, "%s: meta.json readable", fx); return; }
    vit_model *m = NULL;
    vit_status st = vit_model_load(dir, NULL, &m, err, sizeof err);
    CHECK(st == VIT_OK && m, "%s: loads (%s)", fx, st ? err : "ok");
    if (!m) { cJSON_Delete(meta); return; }
    const vit_config *c = vit_model_config(m);
    const char *scheme = cJSON_GetObjectItem(meta, "scheme")->valuestring;
    const char *pool = cJSON_GetObjectItem(meta, "pooling")->valuestring;
    int img = jint(meta, "image_size"), P = jint(meta, "patch_size"), g = img / P;
    const cJSON *hw = cJSON_GetObjectItem(meta, "image_hw");   /* non-square: [h, w] */
    int img_w = hw ? cJSON_GetArrayItem(hw, 1)->valueint : img, gw = img_w / P;
    int dims_ok = !strcmp(c->naming, scheme) && c->image_size == img && c->trained_image_size == img &&
                  c->patch_size == P && c->hidden_size == jint(meta, "hidden") &&
                  c->num_layers == jint(meta, "layers") && c->num_heads == jint(meta, "heads") &&
                  c->mlp_size == jint(meta, "mlp") && c->num_classes == jint(meta, "classes") &&
                  c->grid_h == g && c->grid_w == gw && c->num_patches == g * gw && c->image_h == img &&
                  c->image_w == img_w && c->trained_image_h == img && c->trained_image_w == img_w &&
                  c->num_prefix_tokens == jint(meta, "num_prefix_tokens") &&
                  c->num_tokens == c->num_prefix_tokens + g * gw && c->qkv_bias == jbool(meta, "qkv_bias") &&
                  c->pooling == (!strcmp(pool, "mean") ? VIT_POOL_MEAN : !strcmp(pool, "cls+mean") ? VIT_POOL_CLS_MEAN
                                                                                               : VIT_POOL_CLS) &&
                  c->distilled == jbool(meta, "distilled") && c->has_pre_logits == jbool(meta, "pre_logits") &&
                  c->feature_dim == jint(meta, "feature_dim") &&
                  fabs(c->layer_norm_eps - jnum(meta, "eps")) <= 1e-6 * jnum(meta, "eps") &&
                  c->num_params == (size_t)jint(meta, "num_params");
    const cJSON *nreg = cJSON_GetObjectItem(meta, "num_register_tokens"), *ls = cJSON_GetObjectItem(meta, "layer_scale");
    const cJSON *nch = cJSON_GetObjectItem(meta, "channels");
    dims_ok = dims_ok && c->num_channels == (nch ? nch->valueint : 3) && c->preprocess.channels == c->num_channels &&
              c->num_register_tokens == (nreg ? nreg->valueint : 0) &&
              c->layer_scale == (ls ? cJSON_IsTrue(ls) : 0) && (c->num_register_tokens > 0) == (m->reg_tokens != NULL);
    CHECK(dims_ok, "%s: config (naming %s, image %d/%d, D %d, L %d, H %d, M %d, classes %d, eps %g, params %zu)", fx,
          c->naming, c->image_size, c->patch_size, c->hidden_size, c->num_layers, c->num_heads, c->mlp_size,
          c->num_classes, (double)c->layer_norm_eps, c->num_params);
    /* model.h invariants */
    CHECK((c->num_prefix_tokens >= 1) == (m->cls_token != NULL) && (c->distilled == (m->dist_token != NULL)) &&
              ((m->fc_norm_w != NULL) == (c->pooling == VIT_POOL_MEAN)) &&
              ((m->norm_w != NULL) == (c->pooling != VIT_POOL_MEAN)) &&
              ((m->pre_logits_w != NULL) == c->has_pre_logits) && m->params && m->layers &&
              vit_head_dim(vit_model_head(m)) == c->feature_dim &&
              vit_head_num_classes(vit_model_head(m)) == c->num_classes,
          "%s: optional tensors and head dims", fx);
    /* labels */
    const cJSON *labels = cJSON_GetObjectItem(meta, "labels");
    int lok = cJSON_GetArraySize(labels) == c->num_classes && c->labels;
    for (int i = 0; lok && i < c->num_classes; i++)
        lok = !strcmp(c->labels[i], cJSON_GetArrayItem(labels, i)->valuestring) &&
              !strcmp(vit_head_label(vit_model_head(m), i), c->labels[i]);
    CHECK(lok, "%s: labels (%s, ...)", fx, c->labels ? c->labels[0] : "NULL");
    int bad = check_tensors(m, cJSON_GetObjectItem(meta, "tensors"), fx);
    CHECK(bad == 0, "%s: every tensor equals the checkpoint's values (%s)%s", fx,
          cJSON_GetObjectItem(meta, "dtype")->valuestring, bad ? " -- mismatches above" : "");
    /* qkv bias zeros without one */
    if (!c->qkv_bias) {
        int z = 1;
        for (int l = 0; l < c->num_layers; l++)
            for (int i = 0; i < 3 * c->hidden_size; i++) z = z && m->layers[l].qkv_b[i] == 0.0f;
        CHECK(z, "%s: qkv_b is zeros", fx);
    }
    CHECK(c->preprocess.out_h == img && c->preprocess.out_w == img_w, "%s: preprocessing produces %dx%d", fx,
          c->preprocess.out_h, c->preprocess.out_w);
    vit_model_free(m);
    cJSON_Delete(meta);
}

static void test_resample(void) {
    char err[512] = "";
    vit_model *m = NULL;
    vit_load_opts o = {.image_size = 48};
    vit_status st = vit_model_load(FIX "/tiny-timm", &o, &m, err, sizeof err);
    CHECK(st == VIT_OK, "tiny-timm at --image-size 48 loads (%s)", st ? err : "ok");
    if (st) return;
    const vit_config *c = vit_model_config(m);
    CHECK(c->image_size == 48 && c->trained_image_size == 32 && c->grid_h == 6 && c->grid_w == 6 &&
              c->num_patches == 36 && c->num_tokens == 37 && c->preprocess.out_h == 48,
          "image 48: grid %dx%d, %d tokens, trained %d", c->grid_h, c->grid_w, c->num_tokens, c->trained_image_size);
    float *ref = NULL;
    int64_t shape[8];
    int nd = 0;
    st = vit_npy_read(FIX "/tiny-timm/ref_s48/pos_embed.npy", &ref, shape, &nd, err, sizeof err);
    CHECK(st == VIT_OK && nd == 2 && shape[0] == 37 && shape[1] == c->hidden_size, "pos_embed.npy readable");
    if (!st) CHECK_CLOSE(m->pos_embed, ref, (size_t)37 * c->hidden_size, 1e-5, "pos_embed bicubic 4x4 -> 6x6 vs timm");
    free(ref);
    vit_model_free(m);
    /* same size: untouched; smaller: resampled down without error */
    o.image_size = 16;
    st = vit_model_load(FIX "/tiny-timm", &o, &m, err, sizeof err);
    CHECK(st == VIT_OK && vit_model_config(m)->num_tokens == 5, "tiny-timm at --image-size 16 loads (2x2 grid)");
    vit_model_free(m);
    m = NULL;
    o.image_size = 36;
    st = vit_model_load(FIX "/tiny-timm", &o, &m, err, sizeof err);
    CHECK(st == VIT_E_ARG && !m && strstr(err, "multiple of the patch size"), "--image-size 36 rejected: %s", err);
}

static void test_halfs(void) {
    /* every F16 value against its definition */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        int s = h >> 15, e = (h >> 10) & 31, mnt = h & 1023;
        double v = e == 0 ? ldexp(mnt, -24) : e == 31 ? (mnt ? NAN : INFINITY) : ldexp(1024 + mnt, e - 25);
        if (s) v = -v;
        const uint16_t h16 = (uint16_t)h;
        float f;
        vit_f16_to_f32(&h16, &f, 1);
        if (isnan(v) ? !isnan(f) : (double)f != v || !!signbit(f) != s) bad++;
    }
    CHECK(bad == 0, "F16 -> F32 exact for all 65536 values (%d wrong)", bad);
    bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t bits = h << 16;
        float want;
        memcpy(&want, &bits, 4);
        float f = st_bf16_to_f32((uint16_t)h);
        if (memcmp(&f, &want, 4)) bad++;
    }
    CHECK(bad == 0 && st_bf16_to_f32(0x3f80) == 1.0f && st_bf16_to_f32(0xc040) == -3.0f,
          "BF16 -> F32 exact for all 65536 values (%d wrong)", bad);
}

/* ---- heads --------------------------------------------------------------------------- */

static void *hammer(void *arg) {
    vit_head *h = arg;
    for (int i = 0; i < 20000; i++) {
        vit_head_retain(h);
        vit_head_release(h);
    }
    return NULL;
}

static void test_heads(void) {
    float w[6] = {1, 2, 3, 4, 5, 6}, b[2] = {7, 8};
    const char *labels[2] = {"cat", "dog"};
    vit_head *h = NULL;
    CHECK(vit_head_new(2, 3, w, b, labels, &h) == VIT_OK && h, "vit_head_new");
    w[0] = 99;
    labels[0] = "changed";
    CHECK(vit_head_num_classes(h) == 2 && vit_head_dim(h) == 3 && vit_head_weight(h)[0] == 1 &&
              vit_head_weight(h)[5] == 6 && vit_head_bias(h)[1] == 8 && !strcmp(vit_head_label(h, 0), "cat") &&
              !strcmp(vit_head_label(h, 1), "dog") && vit_head_label(h, 2) == NULL && vit_head_label(h, -1) == NULL,
          "head copies weights and labels");
    pthread_t th[4];
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, hammer, h);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    CHECK(atomic_load(&h->refs) == 1, "retain/release from 4 threads balance (refs %d)", atomic_load(&h->refs));
    vit_head_release(h);
    vit_head_release(NULL);
    vit_head *d = NULL;
    CHECK(vit_head_new(2, 3, w, b, NULL, &d) == VIT_OK && !strcmp(vit_head_label(d, 1), "LABEL_1"),
          "labels default to LABEL_i");
    vit_head_release(d);
    CHECK(vit_head_new(0, 2, w, b, NULL, &d) == VIT_E_ARG && !d, "zero classes rejected");
    CHECK(vit_head_new(2, 2, NULL, b, NULL, &d) == VIT_E_ARG, "NULL weights rejected");
    /* the model's head outlives the model when retained */
    char err[256];
    vit_model *m = NULL;
    if (vit_model_load(FIX "/tiny-tv", NULL, &m, err, sizeof err) == VIT_OK) {
        vit_head *mh = vit_model_head(m);
        vit_head_retain(mh);
        vit_model_free(m);
        CHECK(!strcmp(vit_head_label(mh, 6), "stingray") && vit_head_num_classes(mh) == 7,
              "model head retained past vit_model_free");
        vit_head_release(mh);
    } else {
        CHECK(0, "tiny-tv loads: %s", err);
    }
    vit_model_free(NULL);
    CHECK(vit_model_config(NULL) == NULL && vit_model_head(NULL) == NULL, "NULL model accessors");
}

/* ---- hostile checkpoints --------------------------------------------------------------- */

static char tmpdir[256];

static int copy_file(const char *src, const char *dst) {
    uint8_t *buf;
    size_t len;
    char err[256];
    if (vit_read_file(src, 1 << 26, &buf, &len, err, sizeof err)) return -1;
    FILE *f = fopen(dst, "wb");
    int ok = f && fwrite(buf, 1, len, f) == len;
    if (f) fclose(f);
    free(buf);
    return ok ? 0 : -1;
}

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(p, 1, n, f) == n;
    if (f) fclose(f);
    return ok ? 0 : -1;
}

/* a fresh copy of fixture src as tmpdir/name; returns its path in dir */
static int make_case(const char *src, const char *name, char *dir, size_t n) {
    snprintf(dir, n, "%s/%s", tmpdir, name);
    if (mkdir(dir, 0755) != 0) return -1;
    const char *files[] = {"config.json", "model.safetensors", "preprocessor_config.json", "labels.txt"};
    for (size_t i = 0; i < 4; i++) {
        char s[600], d[600];
        snprintf(s, sizeof s, FIX "/%s/%s", src, files[i]);
        snprintf(d, sizeof d, "%s/%s", dir, files[i]);
        if (access(s, F_OK) == 0 && copy_file(s, d)) return -1;
    }
    return 0;
}

typedef void (*mutator)(cJSON *hdr, void *arg);

/* rewrite dir/model.safetensors's header through fn; append extra zero bytes to the data */
static int rewrite_header(const char *dir, mutator fn, void *arg, size_t extra) {
    char path[600], err[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    uint8_t *buf;
    size_t len;
    if (vit_read_file(path, 1 << 26, &buf, &len, err, sizeof err)) return -1;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | buf[i];
    cJSON *h = cJSON_ParseWithLength((const char *)buf + 8, hl);
    if (!h) { free(buf); return -1; }
    fn(h, arg);
    char *txt = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t tl = strlen(txt), dl = len - 8 - hl;
    uint8_t *out = calloc(1, 8 + tl + dl + extra);
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)tl >> (8 * i));
    memcpy(out + 8, txt, tl);
    memcpy(out + 8 + tl, buf + 8 + hl, dl);
    int r = write_bytes(path, out, 8 + tl + dl + extra);
    free(out);
    free(txt);
    free(buf);
    return r;
}

static cJSON *entry(cJSON *h, const char *name) { return cJSON_GetObjectItemCaseSensitive(h, name); }

static void set_ints(cJSON *arr, int n, const long long *v) {
    while (cJSON_GetArraySize(arr) > 0) cJSON_DeleteItemFromArray(arr, 0);
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)v[i]));
}

static void m_offsets_out(cJSON *h, void *a) {
    (void)a;
    cJSON *o = cJSON_GetObjectItem(entry(h, "head.bias"), "data_offsets");
    long long b = (long long)cJSON_GetArrayItem(o, 0)->valuedouble;
    set_ints(o, 2, (long long[]){b + 1000000, b + 1000020});
}
static void m_overlap(cJSON *h, void *a) {
    (void)a;   /* norm1.bias takes norm1.weight's bytes (same size) */
    cJSON *w = cJSON_GetObjectItem(entry(h, "blocks.0.norm1.weight"), "data_offsets");
    cJSON *b = cJSON_GetObjectItem(entry(h, "blocks.0.norm1.bias"), "data_offsets");
    set_ints(b, 2, (long long[]){(long long)cJSON_GetArrayItem(w, 0)->valuedouble + 4,
                                 (long long)cJSON_GetArrayItem(w, 1)->valuedouble + 4});
}
static void m_size_mismatch(cJSON *h, void *a) {
    (void)a;
    set_ints(cJSON_GetObjectItem(entry(h, "blocks.0.norm2.bias"), "shape"), 1, (long long[]){33});
}
static void m_wrong_shape(cJSON *h, void *a) {
    (void)a;
    set_ints(cJSON_GetObjectItem(entry(h, "blocks.1.norm1.weight"), "shape"), 2, (long long[]){4, 8});
}
static void m_wrong_shape2(cJSON *h, void *a) {
    (void)a;   /* (96, 32) -> (32, 96): same bytes, transposed */
    set_ints(cJSON_GetObjectItem(entry(h, "blocks.2.attn.qkv.weight"), "shape"), 2, (long long[]){32, 96});
}
static void m_twelve_channels(cJSON *h, void *a) {
    (void)a;   /* (32, 3, 8, 8) -> (32, 12, 4, 4): same bytes, a 12-channel filter with patch 4 */
    set_ints(cJSON_GetObjectItem(entry(h, "patch_embed.proj.weight"), "shape"), 4, (long long[]){32, 12, 4, 4});
}
static void m_reg_wide(cJSON *h, void *a) {
    (void)a;   /* reg_token (1, 4, 32) -> (1, 32, 4): registers of the wrong width */
    set_ints(cJSON_GetObjectItem(entry(h, "reg_token"), "shape"), 3, (long long[]){1, 32, 4});
}
static void m_missing(cJSON *h, void *a) {
    (void)a;
    cJSON_DeleteItemFromObjectCaseSensitive(h, "blocks.1.attn.proj.bias");
}
static void m_unknown_dtype(cJSON *h, void *a) {
    (void)a;
    cJSON_ReplaceItemInObject(entry(h, "norm.bias"), "dtype", cJSON_CreateString("F33"));
}
static void m_int_dtype(cJSON *h, void *a) {
    (void)a;   /* I64 of 16 elements: same 128 bytes as F32[32] */
    cJSON *e = entry(h, "norm.weight");
    cJSON_ReplaceItemInObject(e, "dtype", cJSON_CreateString("I64"));
    set_ints(cJSON_GetObjectItem(e, "shape"), 1, (long long[]){16});
}
static void m_duplicate(cJSON *h, void *a) {
    (void)a;
    cJSON *e = entry(h, "norm.bias");
    free(e->string);
    e->string = strdup("norm.weight");
}
static void add_extra(cJSON *h, long long end, const char *name) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "dtype", "F32");
    cJSON_AddItemToObject(e, "shape", cJSON_CreateArray());
    set_ints(cJSON_GetObjectItem(e, "shape"), 1, (long long[]){32});
    cJSON_AddItemToObject(e, "data_offsets", cJSON_CreateArray());
    set_ints(cJSON_GetObjectItem(e, "data_offsets"), 2, (long long[]){end, end + 128});
    cJSON_AddItemToObject(h, name, e);
}
/* timm qk_norm: a variant this engine does not run */
static void m_extra(cJSON *h, void *arg) { add_extra(h, *(long long *)arg, "blocks.0.attn.q_norm.weight"); }
/* LayerScale on one branch of one block only */
static void m_extra_ls(cJSON *h, void *arg) { add_extra(h, *(long long *)arg, "blocks.0.ls1.gamma"); }
static void m_neg_offset(cJSON *h, void *a) {
    (void)a;
    set_ints(cJSON_GetObjectItem(entry(h, "head.bias"), "data_offsets"), 2, (long long[]){-20, 0});
}
static void m_reversed(cJSON *h, void *a) {
    (void)a;
    cJSON *o = cJSON_GetObjectItem(entry(h, "head.bias"), "data_offsets");
    long long b = (long long)cJSON_GetArrayItem(o, 0)->valuedouble, e = (long long)cJSON_GetArrayItem(o, 1)->valuedouble;
    set_ints(o, 2, (long long[]){e, b});
}

static void patch_u64(const char *dir, uint64_t v) {
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "r+b");
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    if (f) { fwrite(b, 1, 8, f); fclose(f); }
}

static long file_size(const char *dir, const char *name) {
    char path[600];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &sb) ? -1 : (long)sb.st_size;
}

static void truncate_to(const char *dir, long n) {
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (truncate(path, n)) perror("truncate");
}

static void write_text(const char *dir, const char *name, const char *text) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_bytes(path, text, strlen(text));
}

/* replace the first `from` in dir/name by `to` */
static void edit_text(const char *dir, const char *name, const char *from, const char *to) {
    char path[600], err[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t *buf;
    size_t len;
    if (vit_read_file(path, 1 << 24, &buf, &len, err, sizeof err)) return;
    char *p = strstr((char *)buf, from);
    if (p) {
        FILE *f = fopen(path, "wb");
        fwrite(buf, 1, (size_t)(p - (char *)buf), f);
        fputs(to, f);
        fputs(p + strlen(from), f);
        fclose(f);
    } else {
        printf("# edit_text: '%s' not found in %s\n", from, path);
    }
    free(buf);
}

static void expect_fail(const char *dir, const vit_load_opts *o, vit_status want, const char *needle,
                        const char *what) {
    char err[600] = "";
    vit_model *m = (vit_model *)(uintptr_t)1;
    vit_status st = vit_model_load(dir, o, &m, err, sizeof err);
    int ok = st == want && m == NULL && (!needle || strstr(err, needle));
    CHECK(ok, "hostile: %s -> %s: %s", what, vit_status_str(st), err);
    if (!ok) printf("#   wanted %s with '%s'\n", vit_status_str(want), needle ? needle : "");
    if (st == VIT_OK) vit_model_free(m);
}

/* append tensors (F32, zero data) at the end of the data section */
typedef struct { long long end; int n; const char *names[4]; int ndim[4]; long long shape[4][4]; } add_spec;
static void m_add(cJSON *h, void *arg) {
    add_spec *a = arg;
    long long off = a->end;
    for (int i = 0; i < a->n; i++) {
        long long numel = 1;
        for (int k = 0; k < a->ndim[i]; k++) numel *= a->shape[i][k];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "dtype", "F32");
        cJSON_AddItemToObject(e, "shape", cJSON_CreateArray());
        set_ints(cJSON_GetObjectItem(e, "shape"), a->ndim[i], a->shape[i]);
        cJSON_AddItemToObject(e, "data_offsets", cJSON_CreateArray());
        set_ints(cJSON_GetObjectItem(e, "data_offsets"), 2, (long long[]){off, off + 4 * numel});
        cJSON_AddItemToObject(h, a->names[i], e);
        off += 4 * numel;
    }
}
static size_t add_bytes(const add_spec *a) {
    size_t n = 0;
    for (int i = 0; i < a->n; i++) {
        long long numel = 1;
        for (int k = 0; k < a->ndim[i]; k++) numel *= a->shape[i][k];
        n += 4 * (size_t)numel;
    }
    return n;
}
static long long data_end(const char *dir) {
    char path[600], err[256];
    st_file *f = NULL;
    long long end = -1;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (st_open(path, &f, err, sizeof err) == VIT_OK) end = (long long)(f->file_size - f->data_start);
    st_close(f);
    return end;
}
/* pos_embed without its first (prefix) row: timm no_embed_class; arg non-NULL also drops cls_token */
static void m_pos_noprefix(cJSON *h, void *drop_cls) {
    cJSON *e = entry(h, "pos_embed");
    cJSON *o = cJSON_GetObjectItem(e, "data_offsets");
    long long b = (long long)cJSON_GetArrayItem(o, 0)->valuedouble, en = (long long)cJSON_GetArrayItem(o, 1)->valuedouble;
    set_ints(o, 2, (long long[]){b + 128, en});
    set_ints(cJSON_GetObjectItem(e, "shape"), 3, (long long[]){1, 16, 32});
    if (drop_cls) cJSON_DeleteItemFromObjectCaseSensitive(h, "cls_token");
}
/* HF DeiTForImageClassification: one classifier on the class token */
static void m_deit_cls_only(cJSON *h, void *a) {
    (void)a;
    cJSON_DeleteItemFromObjectCaseSensitive(h, "distillation_classifier.weight");
    cJSON_DeleteItemFromObjectCaseSensitive(h, "distillation_classifier.bias");
    for (cJSON *e = h->child; e; e = e->next)
        if (!strncmp(e->string, "cls_classifier.", 15)) {
            char nn[64];
            snprintf(nn, sizeof nn, "classifier.%s", e->string + 15);
            free(e->string);
            e->string = strdup(nn);
        }
}

/* torchvision before 0.13: mlp.linear_1 / mlp.linear_2 */
static void m_tv_legacy(cJSON *h, void *a) {
    (void)a;
    for (cJSON *e = h->child; e; e = e->next) {
        char *p;
        if ((p = strstr(e->string, "mlp.0.")) || (p = strstr(e->string, "mlp.3."))) {
            char nn[256];
            snprintf(nn, sizeof nn, "%.*smlp.linear_%c.%s", (int)(p - e->string), e->string, p[4] == '0' ? '1' : '2', p + 6);
            free(e->string);
            e->string = strdup(nn);
        }
    }
}

static void test_variants(void) {
    char d[512], err[512] = "";
    vit_model *ref = NULL, *m = NULL;
    vit_status st;
    if (vit_model_load(FIX "/tiny-timm", NULL, &ref, err, sizeof err)) { CHECK(0, "tiny-timm loads: %s", err); return; }
    const int D = 32;

    /* timm no_embed_class: pos_embed covers the patches only -> prefix rows zero */
    make_case("tiny-timm", "no-embed-class", d, sizeof d);
    rewrite_header(d, m_pos_noprefix, NULL, 0);
    st = vit_model_load(d, NULL, &m, err, sizeof err);
    CHECK(st == VIT_OK, "timm no_embed_class pos_embed (16 rows + cls) loads (%s)", st ? err : "ok");
    if (!st) {
        int z = 1;
        for (int i = 0; i < D; i++) z = z && m->pos_embed[i] == 0.0f;
        CHECK(z && vit_model_config(m)->num_tokens == 17 && vit_model_config(m)->num_params == vit_model_config(ref)->num_params - D,
              "no_embed_class: prefix row zero, 17 tokens");
        CHECK_CLOSE(m->pos_embed + D, ref->pos_embed + D, (size_t)16 * D, 0.0, "no_embed_class: patch rows unchanged");
    }
    vit_model_free(m);
    m = NULL;
    /* ... and resampled at another size keeps the prefix row zero */
    vit_load_opts o48 = {.image_size = 48};
    st = vit_model_load(d, &o48, &m, err, sizeof err);
    CHECK(st == VIT_OK && m->pos_embed[0] == 0.0f && vit_model_config(m)->num_tokens == 37,
          "no_embed_class at --image-size 48 (%s)", st ? err : "ok");
    vit_model_free(m);
    m = NULL;

    /* timm without a class token (class_token=False, global_pool avg) */
    make_case("tiny-timm-avgpool", "no-cls", d, sizeof d);
    rewrite_header(d, m_pos_noprefix, "drop", 0);
    st = vit_model_load(d, NULL, &m, err, sizeof err);
    CHECK(st == VIT_OK && m->cls_token == NULL && vit_model_config(m)->num_prefix_tokens == 0 &&
              vit_model_config(m)->num_tokens == 16 && vit_model_config(m)->pooling == VIT_POOL_MEAN,
          "timm without class token: 0 prefix tokens, mean pooling (%s)", st ? err : "ok");
    vit_model_free(m);
    m = NULL;
    make_case("tiny-timm", "no-cls-token-pool", d, sizeof d);
    rewrite_header(d, m_pos_noprefix, "drop", 0);
    expect_fail(d, NULL, VIT_E_CONFIG, "no class token", "global_pool token without a class token");

    /* timm img_size as [h, w] */
    make_case("tiny-timm", "img-size-pair", d, sizeof d);
    edit_text(d, "config.json", "\"img_size\": 32", "\"img_size\": [32, 32]");
    st = vit_model_load(d, NULL, &m, err, sizeof err);
    CHECK(st == VIT_OK, "timm model_args.img_size [32, 32] accepted (%s)", st ? err : "ok");
    vit_model_free(m);
    m = NULL;
    make_case("tiny-timm", "img-size-rect", d, sizeof d);
    edit_text(d, "config.json", "\"img_size\": 32", "\"img_size\": [32, 48]");
    expect_fail(d, NULL, VIT_E_CONFIG, "img_size [32, 48] with patch 8 does not match the 17 rows of 'pos_embed'",
                "timm non-square img_size that the position embeddings do not have");
    /* input channels: 1 and 3 only */
    make_case("tiny-hf", "hf-2-channels", d, sizeof d);
    edit_text(d, "config.json", "\"num_channels\": 3", "\"num_channels\": 2");
    expect_fail(d, NULL, VIT_E_CONFIG, "2 input channels: only 1 (grayscale) and 3 (RGB)", "HF num_channels 2");
    make_case("tiny-timm", "timm-12-channels", d, sizeof d);
    rewrite_header(d, m_twelve_channels, NULL, 0);
    edit_text(d, "config.json", "\"img_size\": 32", "\"img_size\": 16");
    edit_text(d, "config.json", "\"patch_size\": 8", "\"patch_size\": 4");
    expect_fail(d, NULL, VIT_E_CONFIG, "12 input channels: only 1 (grayscale) and 3 (RGB)", "timm 12-channel patch filter");
    make_case("tiny-hf-gray", "hf-gray-says-3", d, sizeof d);
    edit_text(d, "config.json", "\"num_channels\": 1", "\"num_channels\": 3");
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "expected shape [32, 3, 4, 4]", "HF config 3 channels, filter has 1");
    /* register tokens */
    make_case("tiny-timm-reg4", "reg-wide", d, sizeof d);
    rewrite_header(d, m_reg_wide, NULL, 0);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "expected shape [1, R, 32]", "reg_token of the wrong width");
    make_case("tiny-timm-reg4", "reg-pos-mismatch", d, sizeof d);   /* 16 rows: not 5 prefix + a square */
    edit_text(d, "config.json", "\"no_embed_class\": true", "\"no_embed_class\": false");
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "16 rows: not 5 prefix token(s) plus a square grid",
                "4 registers + class token that the position embeddings do not cover");
    make_case("tiny-hf-dinov2-reg4", "dinov2-reg-count", d, sizeof d);
    edit_text(d, "config.json", "\"num_register_tokens\": 4", "\"num_register_tokens\": 3");
    expect_fail(d, NULL, VIT_E_CONFIG, "num_register_tokens 3 but the checkpoint has 4", "HF Dinov2 register count mismatch");
    make_case("tiny-hf-dinov2", "dinov2-swiglu", d, sizeof d);
    edit_text(d, "config.json", "\"use_swiglu_ffn\": false", "\"use_swiglu_ffn\": true");
    expect_fail(d, NULL, VIT_E_CONFIG, "use_swiglu_ffn", "HF Dinov2 SwiGLU MLP refused");
    expect_fail(FIX "/tiny-hf-dinov2", &(vit_load_opts){.image_size = 42}, VIT_E_ARG, "runs at its trained size 28x28",
                "HF Dinov2 at another size refused");
    make_case("tiny-hf-gray", "gray-30-by-4", d, sizeof d);
    edit_text(d, "config.json", "\"image_size\": 28", "\"image_size\": 30");
    expect_fail(d, NULL, VIT_E_CONFIG, "image size 30 is not a multiple of the patch size 4", "image size 30 with patch 4");
    make_case("tiny-timm", "global-pool-map", d, sizeof d);
    edit_text(d, "config.json", "\"global_pool\": \"token\"", "\"global_pool\": \"map\"");
    expect_fail(d, NULL, VIT_E_CONFIG, "global_pool 'map' is not supported", "timm attention pooling (map)");
    make_case("tiny-timm", "act-layer", d, sizeof d);
    edit_text(d, "config.json", "\"num_heads\": 4,", "\"num_heads\": 4, \"act_layer\": \"quick_gelu\",");
    expect_fail(d, NULL, VIT_E_CONFIG, "activation 'quick_gelu' is not supported", "timm act_layer quick_gelu");
    vit_model_free(ref);
    ref = NULL;

    /* Hugging Face: the unused pooler is ignored */
    make_case("tiny-hf", "hf-pooler", d, sizeof d);
    {
        add_spec a = {.end = data_end(d), .n = 2, .names = {"vit.pooler.dense.weight", "vit.pooler.dense.bias"},
                      .ndim = {2, 1}, .shape = {{32, 32}, {32}}};
        rewrite_header(d, m_add, &a, add_bytes(&a));
    }
    st = vit_model_load(d, NULL, &m, err, sizeof err);
    CHECK(st == VIT_OK && vit_model_config(m)->num_params == 32646, "HF checkpoint with vit.pooler.* loads, pooler ignored (%s)",
          st ? err : "ok");
    vit_model_free(m);
    m = NULL;

    /* HF DeiT without the teacher head: head [W, 0], b on [cls; dist] */
    make_case("tiny-hf-deit-distilled", "hf-deit-cls-only", d, sizeof d);
    rewrite_header(d, m_deit_cls_only, NULL, 0);
    st = vit_model_load(d, NULL, &m, err, sizeof err);
    CHECK(st == VIT_OK, "HF DeiTForImageClassification (classifier on the class token) loads (%s)", st ? err : "ok");
    if (!st) {
        char path[600];
        snprintf(path, sizeof path, FIX "/tiny-hf-deit-distilled/model.safetensors");
        st_file *f = NULL;
        float w[4 * 32], b[4];
        int ok = st_open(path, &f, err, sizeof err) == VIT_OK &&
                 st_read_f32(f, st_find(f, "cls_classifier.weight"), w, err, sizeof err) == VIT_OK &&
                 st_read_f32(f, st_find(f, "cls_classifier.bias"), b, err, sizeof err) == VIT_OK;
        st_close(f);
        const vit_head *hh = vit_model_head(m);
        const float *hw = vit_head_weight(hh);
        for (int k = 0; ok && k < 4; k++) {
            for (int i = 0; i < 32; i++) ok = ok && hw[k * 64 + i] == w[k * 32 + i] && hw[k * 64 + 32 + i] == 0.0f;
            ok = ok && vit_head_bias(hh)[k] == b[k];
        }
        CHECK(ok && vit_head_dim(hh) == 64 && vit_model_config(m)->distilled, "HF DeiT class-token head folded as [W, 0], b");
    }
    vit_model_free(m);
    m = NULL;

    /* torchvision: legacy MLP names and the representation layer heads.pre_logits */
    if (vit_model_load(FIX "/tiny-tv", NULL, &ref, err, sizeof err)) { CHECK(0, "tiny-tv loads: %s", err); return; }
    make_case("tiny-tv", "tv-legacy", d, sizeof d);
    rewrite_header(d, m_tv_legacy, NULL, 0);
    st = vit_model_load(d, NULL, &m, err, sizeof err);
    CHECK(st == VIT_OK, "torchvision legacy mlp.linear_1/linear_2 names load (%s)", st ? err : "ok");
    if (!st) {
        CHECK_CLOSE(m->layers[2].fc1_w, ref->layers[2].fc1_w, (size_t)64 * D, 0.0, "legacy names: fc1 weights");
        CHECK_CLOSE(m->layers[2].fc2_b, ref->layers[2].fc2_b, (size_t)D, 0.0, "legacy names: fc2 bias");
    }
    vit_model_free(m);
    m = NULL;
    make_case("tiny-tv", "tv-pre-logits", d, sizeof d);
    {
        add_spec a = {.end = data_end(d), .n = 2, .names = {"heads.pre_logits.weight", "heads.pre_logits.bias"},
                      .ndim = {2, 1}, .shape = {{32, 32}, {32}}};
        rewrite_header(d, m_add, &a, add_bytes(&a));
    }
    st = vit_model_load(d, NULL, &m, err, sizeof err);
    CHECK(st == VIT_OK && vit_model_config(m)->has_pre_logits && m->pre_logits_w && m->pre_logits_b,
          "torchvision heads.pre_logits loads as the tanh representation layer (%s)", st ? err : "ok");
    vit_model_free(m);
    m = NULL;
    make_case("tiny-tv", "tv-pre-logits-wide", d, sizeof d);
    {
        add_spec a = {.end = data_end(d), .n = 2, .names = {"heads.pre_logits.weight", "heads.pre_logits.bias"},
                      .ndim = {2, 1}, .shape = {{48, 32}, {48}}};
        rewrite_header(d, m_add, &a, add_bytes(&a));
    }
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "representation layer of size 48 != hidden size 32", "pre_logits wider than hidden");
    vit_model_free(ref);
}

/* Mutated checkpoints (deterministic): random byte edits in the header, its length field and the
 * data, random truncations.  Every load must end in VIT_OK or a clean error with a message;
 * under ASan (the suite reruns this binary so) any out-of-bounds access or leak fails the run. */
static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void test_fuzz(void) {
    char src[600], dir[512], path[600], err[512];
    snprintf(src, sizeof src, FIX "/tiny-timm/model.safetensors");
    uint8_t *good;
    size_t len;
    if (vit_read_file(src, 1 << 24, &good, &len, err, sizeof err)) { CHECK(0, "fuzz: read %s", src); return; }
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | good[i];
    make_case("tiny-timm", "fuzz", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    uint8_t *buf = malloc(len);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
#define NEXT() xorshift(&rng)
    int n_ok = 0, n_err = 0, n_bad = 0;
    for (int it = 0; it < 400; it++) {
        memcpy(buf, good, len);
        size_t n = len;
        int kind = (int)(NEXT() % 4);
        int edits = 1 + (int)(NEXT() % 4);
        for (int e = 0; e < edits; e++) {
            size_t at;
            if (kind == 0) at = NEXT() % 8;                       /* header length */
            else if (kind == 3) at = 8 + hl + NEXT() % (len - 8 - hl); /* data */
            else at = 8 + NEXT() % hl;                            /* header JSON */
            uint8_t v = (uint8_t)NEXT();
            if (kind == 2) {                                      /* digits for digits: plausible JSON */
                if (buf[at] >= '0' && buf[at] <= '9') v = (uint8_t)('0' + v % 10);
                else v = buf[at];
            }
            buf[at] = v;
        }
        if (NEXT() % 5 == 0) n = (size_t)(NEXT() % len);          /* and sometimes truncate */
        if (write_bytes(path, buf, n)) { n_bad++; continue; }
        vit_model *m = NULL;
        err[0] = 0;
        vit_status st = vit_model_load(dir, NULL, &m, err, sizeof err);
        if (st == VIT_OK && m) n_ok++;
        else if (st != VIT_OK && !m && err[0]) n_err++;
        else { n_bad++; printf("# fuzz %d: status %d, model %p, err '%s'\n", it, st, (void *)m, err); }
        vit_model_free(m);
    }
    free(buf);
    free(good);
    CHECK(n_bad == 0 && n_err > 100, "fuzz: 400 mutated checkpoints: %d load, %d clean errors, %d bad", n_ok, n_err, n_bad);

    /* config.json: byte edits (printable, JSON punctuation, digits) in an HF and a timm config */
    static const char *const cfgs[] = {"tiny-hf", "tiny-timm"};
    static const char alphabet[] = "{}[]:,\"0123456789-.e truefalsnul";
    n_ok = n_err = n_bad = 0;
    for (int c = 0; c < 2; c++) {
        char cdir[512];
        snprintf(cdir, sizeof cdir, "fuzz-%s", cfgs[c]);
        make_case(cfgs[c], cdir, dir, sizeof dir);
        snprintf(src, sizeof src, FIX "/%s/config.json", cfgs[c]);
        snprintf(path, sizeof path, "%s/config.json", dir);
        if (vit_read_file(src, 1 << 20, &good, &len, err, sizeof err)) { CHECK(0, "fuzz: read %s", src); return; }
        buf = malloc(len + 1);
        for (int it = 0; it < 150; it++) {
            memcpy(buf, good, len);
            int edits = 1 + (int)(NEXT() % 3);
            for (int e = 0; e < edits; e++) {
                size_t at = NEXT() % len;
                buf[at] = (uint8_t)alphabet[NEXT() % (sizeof alphabet - 1)];
            }
            if (write_bytes(path, buf, len)) { n_bad++; continue; }
            vit_model *m = NULL;
            err[0] = 0;
            vit_status st = vit_model_load(dir, NULL, &m, err, sizeof err);
            if (st == VIT_OK && m) n_ok++;
            else if (st != VIT_OK && !m && err[0]) n_err++;
            else { n_bad++; printf("# config fuzz %s %d: status %d, err '%s'\n", cfgs[c], it, st, err); }
            vit_model_free(m);
        }
        free(buf);
        free(good);
    }
#undef NEXT
    CHECK(n_bad == 0 && n_err > 50, "fuzz: 300 mutated config.json: %d load, %d clean errors, %d bad", n_ok, n_err, n_bad);
}

static void test_hostile(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/vitd-test-loader-XXXXXX");
    if (!mkdtemp(tmpdir)) { CHECK(0, "mkdtemp"); return; }
    char d[512];
    long full = 0;

    make_case("tiny-timm", "good", d, sizeof d);
    full = file_size(d, "model.safetensors");
    {
        char err[256];
        vit_model *m = NULL;
        CHECK(vit_model_load(d, NULL, &m, err, sizeof err) == VIT_OK, "copied fixture loads (control)");
        vit_model_free(m);
    }
    make_case("tiny-timm", "truncated", d, sizeof d);
    truncate_to(d, full / 2);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "outside the data section", "truncated file");
    make_case("tiny-timm", "truncated-last-byte", d, sizeof d);
    truncate_to(d, full - 1);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "truncated", "file one byte short");
    make_case("tiny-timm", "truncated-in-header", d, sizeof d);
    truncate_to(d, 100);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "runs past the end", "file cut inside the header");
    make_case("tiny-timm", "short", d, sizeof d);
    truncate_to(d, 5);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "truncated", "5-byte file");
    make_case("tiny-timm", "empty", d, sizeof d);
    truncate_to(d, 0);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "empty file", "empty file");
    make_case("tiny-timm", "hlen-past-end", d, sizeof d);
    patch_u64(d, (uint64_t)full);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "runs past the end", "header length past the end");
    make_case("tiny-timm", "hlen-huge", d, sizeof d);
    patch_u64(d, 0x7fffffffffffff00ull);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "exceeds", "header length huge");
    make_case("tiny-timm", "hlen-max", d, sizeof d);
    patch_u64(d, UINT64_MAX);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "exceeds", "header length 2^64-1");
    make_case("tiny-timm", "hlen-short", d, sizeof d);
    patch_u64(d, 40);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "bad JSON", "header length too short (JSON cut)");
    make_case("tiny-timm", "offsets-out", d, sizeof d);
    rewrite_header(d, m_offsets_out, NULL, 0);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "'head.bias': data_offsets", "offsets out of range");
    make_case("tiny-timm", "offsets-negative", d, sizeof d);
    rewrite_header(d, m_neg_offset, NULL, 0);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "data_offsets must be", "negative offset");
    make_case("tiny-timm", "offsets-reversed", d, sizeof d);
    rewrite_header(d, m_reversed, NULL, 0);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "'head.bias'", "offsets reversed");
    make_case("tiny-timm", "overlap", d, sizeof d);
    rewrite_header(d, m_overlap, NULL, 0);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "overlap", "overlapping offsets");
    make_case("tiny-timm", "size-mismatch", d, sizeof d);
    rewrite_header(d, m_size_mismatch, NULL, 0);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "'blocks.0.norm2.bias': data_offsets span 128 bytes but F32 [33] needs 132",
                "offsets not matching dtype*shape");
    make_case("tiny-timm", "wrong-shape", d, sizeof d);
    rewrite_header(d, m_wrong_shape, NULL, 0);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "tensor 'blocks.1.norm1.weight': expected shape [32] (from tensor shapes), got [4, 8]",
                "wrong shape");
    make_case("tiny-timm", "wrong-shape-qkv", d, sizeof d);
    rewrite_header(d, m_wrong_shape2, NULL, 0);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "'blocks.2.attn.qkv.weight': expected shape [96, 32] (from tensor shapes), got [32, 96]",
                "transposed qkv weight");
    make_case("tiny-timm", "missing", d, sizeof d);
    rewrite_header(d, m_missing, NULL, 0);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "missing tensor 'blocks.1.attn.proj.bias' (expected shape [32])", "missing tensor");
    make_case("tiny-timm", "unknown-dtype", d, sizeof d);
    rewrite_header(d, m_unknown_dtype, NULL, 0);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "'norm.bias': unknown dtype 'F33'", "unknown dtype");
    make_case("tiny-timm", "int-dtype", d, sizeof d);
    rewrite_header(d, m_int_dtype, NULL, 0);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "'norm.weight': dtype I64 not supported", "integer dtype");
    make_case("tiny-timm", "duplicate", d, sizeof d);
    rewrite_header(d, m_duplicate, NULL, 0);
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "appears twice", "duplicate tensor name");
    make_case("tiny-timm", "extra-tensor", d, sizeof d);
    {
        long long end = 0;   /* end of the data section */
        char path[600], err[256];
        st_file *f = NULL;
        snprintf(path, sizeof path, "%s/model.safetensors", d);
        if (st_open(path, &f, err, sizeof err) == VIT_OK) end = (long long)(f->file_size - f->data_start);
        st_close(f);
        rewrite_header(d, m_extra, &end, 128);
    }
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "unexpected tensor 'blocks.0.attn.q_norm.weight'", "unsupported extra tensor (qk norm)");
    make_case("tiny-timm", "extra-ls", d, sizeof d);
    {
        long long end = 0;   /* end of the data section */
        char path[600], err[256];
        st_file *f = NULL;
        snprintf(path, sizeof path, "%s/model.safetensors", d);
        if (st_open(path, &f, err, sizeof err) == VIT_OK) end = (long long)(f->file_size - f->data_start);
        st_close(f);
        rewrite_header(d, m_extra_ls, &end, 128);
    }
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "missing tensor 'blocks.0.ls2.gamma'", "LayerScale on one branch only");
    make_case("tiny-timm", "bad-json-header", d, sizeof d);
    {
        char path[600];
        snprintf(path, sizeof path, "%s/model.safetensors", d);
        FILE *f = fopen(path, "r+b");
        if (f) { fseek(f, 8 + 30, SEEK_SET); fputs("\"}{,,]", f); fclose(f); }
    }
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "bad JSON in header", "bad JSON in header");
    make_case("tiny-timm", "header-array", d, sizeof d);
    {
        char path[600];
        snprintf(path, sizeof path, "%s/model.safetensors", d);
        uint8_t b[16] = {8, 0, 0, 0, 0, 0, 0, 0, '[', '1', ']', ' ', ' ', ' ', ' ', ' '};
        write_bytes(path, b, sizeof b);
    }
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "not a JSON object", "header is a JSON array");
    make_case("tiny-timm", "bad-json-config", d, sizeof d);
    edit_text(d, "config.json", "\"num_classes\": 5,", "\"num_classes\": 5,,");
    expect_fail(d, NULL, VIT_E_CONFIG, "config.json: bad JSON", "bad JSON in config.json");
    make_case("tiny-timm", "config-not-object", d, sizeof d);
    write_text(d, "config.json", "[1, 2]");
    expect_fail(d, NULL, VIT_E_CONFIG, "bad JSON: not a JSON object", "config.json is an array");
    make_case("tiny-timm", "config-dim-mismatch", d, sizeof d);
    edit_text(d, "config.json", "\"embed_dim\": 32", "\"embed_dim\": 48");
    expect_fail(d, NULL, VIT_E_CONFIG, "embed_dim 48 does not match the checkpoint (hidden size 32", "timm config/tensor dim mismatch");
    make_case("tiny-timm", "config-classes-mismatch", d, sizeof d);
    edit_text(d, "config.json", "\"num_classes\": 5,", "\"num_classes\": 6,");
    expect_fail(d, NULL, VIT_E_CONFIG, "num_classes 6 does not match", "timm num_classes mismatch");
    make_case("tiny-timm", "no-heads", d, sizeof d);
    edit_text(d, "config.json", "\"num_heads\": 4,", "");
    expect_fail(d, NULL, VIT_E_CONFIG, "add \"num_heads\"", "timm: heads unknown for a custom architecture");
    make_case("tiny-timm", "arch-mismatch", d, sizeof d);
    edit_text(d, "config.json", "\"num_heads\": 4,", "");
    edit_text(d, "config.json", "vit_test_patch8_32", "vit_base_patch16_224");
    edit_text(d, "config.json", "\"patch_size\": 8,", "");
    edit_text(d, "config.json", "\"img_size\": 32,", "");
    expect_fail(d, NULL, VIT_E_CONFIG, "has hidden size 768 but the tensors have 32", "timm architecture name vs tensors");
    make_case("tiny-timm", "bad-labels", d, sizeof d);
    edit_text(d, "config.json", "\"tench\",", "");
    expect_fail(d, NULL, VIT_E_CONFIG, "label_names has 4 labels but the head has 5", "label_names count");
    make_case("tiny-timm", "no-safetensors", d, sizeof d);
    {
        char path[600];
        snprintf(path, sizeof path, "%s/model.safetensors", d);
        unlink(path);
    }
    expect_fail(d, NULL, VIT_E_IO, "model.safetensors", "directory without model.safetensors");
    make_case("tiny-timm", "no-config", d, sizeof d);
    {
        char path[600];
        snprintf(path, sizeof path, "%s/config.json", d);
        unlink(path);
    }
    expect_fail(d, NULL, VIT_E_IO, "config.json", "directory without config.json");
    expect_fail("/nonexistent/vitd-model", NULL, VIT_E_IO, "not a model directory", "no such directory");
    expect_fail(FIX "/tiny-timm/config.json", NULL, VIT_E_IO, "not a model directory", "a file instead of a directory");

    /* Hugging Face config.json */
    make_case("tiny-hf", "hf-dim-mismatch", d, sizeof d);
    edit_text(d, "config.json", "\"hidden_size\": 32", "\"hidden_size\": 64");
    expect_fail(d, NULL, VIT_E_CHECKPOINT,
                "tensor 'vit.embeddings.patch_embeddings.projection.weight': expected shape [64, 3, 8, 8] (from config.json), got [32, 3, 8, 8]",
                "HF config hidden_size vs tensors");
    make_case("tiny-hf", "hf-layers-mismatch", d, sizeof d);
    edit_text(d, "config.json", "\"num_hidden_layers\": 3", "\"num_hidden_layers\": 4");
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "missing tensor 'vit.encoder.layer.3.layernorm_before.weight'", "HF config: more layers than tensors");
    make_case("tiny-hf", "hf-layers-fewer", d, sizeof d);
    edit_text(d, "config.json", "\"num_hidden_layers\": 3", "\"num_hidden_layers\": 2");
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "unexpected tensor 'vit.encoder.layer.2.", "HF config: fewer layers than tensors");
    make_case("tiny-hf", "hf-act", d, sizeof d);
    edit_text(d, "config.json", "\"hidden_act\": \"gelu\"", "\"hidden_act\": \"gelu_new\"");
    expect_fail(d, NULL, VIT_E_CONFIG, "hidden_act 'gelu_new' is not supported", "HF hidden_act gelu_new");
    make_case("tiny-hf", "hf-heads", d, sizeof d);
    edit_text(d, "config.json", "\"num_attention_heads\": 4", "\"num_attention_heads\": 5");
    expect_fail(d, NULL, VIT_E_CONFIG, "not a multiple of the 5 attention heads", "HF heads not dividing hidden size");
    make_case("tiny-hf", "hf-qkv-bias-false", d, sizeof d);
    edit_text(d, "config.json", "\"qkv_bias\": true", "\"qkv_bias\": false");
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "qkv_bias false", "HF qkv_bias false but bias tensors present");
    make_case("tiny-hf-noqkvbias", "hf-qkv-bias-true", d, sizeof d);
    edit_text(d, "config.json", "\"qkv_bias\": false", "\"qkv_bias\": true");
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "missing tensor 'vit.encoder.layer.0.attention.attention.query.bias'",
                "HF qkv_bias true but no bias tensors");
    make_case("tiny-hf", "hf-id2label", d, sizeof d);
    edit_text(d, "config.json", "\"5\": \"electric ray\"", "\"7\": \"electric ray\"");
    expect_fail(d, NULL, VIT_E_CONFIG, "id2label entry '7'", "HF id2label index out of range");
    make_case("tiny-hf", "hf-string-size", d, sizeof d);
    edit_text(d, "config.json", "\"image_size\": 32", "\"image_size\": \"32\"");
    expect_fail(d, NULL, VIT_E_CONFIG, "image_size must be an integer", "HF image_size as a string");
    make_case("tiny-hf", "hf-image-size", d, sizeof d);
    edit_text(d, "config.json", "\"image_size\": 32", "\"image_size\": 40");
    expect_fail(d, NULL, VIT_E_CHECKPOINT, "'vit.embeddings.position_embeddings': expected shape [1, 26, 32] (from config.json), got [1, 17, 32]",
                "HF image_size vs position embeddings");

    /* torchvision */
    make_case("tiny-tv", "tv-labels", d, sizeof d);
    write_text(d, "labels.txt", "a\nb\n");
    expect_fail(d, NULL, VIT_E_CONFIG, "2 labels but the head has 7", "labels.txt count");
    make_case("tiny-tv", "tv-no-heads", d, sizeof d);
    write_text(d, "config.json", "{\"architecture\": \"vit_b_16\"}");
    expect_fail(d, NULL, VIT_E_CONFIG, "'vit_b_16' has hidden size 768 but the tensors have 32", "torchvision arch vs tensors");
    {   /* a torchvision model dir without labels.txt gets LABEL_i */
        char err[256];
        vit_model *m = NULL;
        make_case("tiny-tv", "tv-nolabels", d, sizeof d);
        char path[600];
        snprintf(path, sizeof path, "%s/labels.txt", d);
        unlink(path);
        vit_status st = vit_model_load(d, NULL, &m, err, sizeof err);
        CHECK(st == VIT_OK && !strcmp(vit_model_config(m)->labels[3], "LABEL_3"), "no labels: LABEL_i defaults");
        vit_model_free(m);
    }
    /* image size option */
    vit_load_opts big = {.image_size = 8192};
    expect_fail(FIX "/tiny-timm", &big, VIT_E_ARG, "at most", "--image-size 8192");

    test_variants();
    test_fuzz();

    /* clean up */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("# could not remove %s\n", tmpdir);
}

int main(void) {
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) test_fixture(fixtures[i]);
    test_resample();
    test_halfs();
    test_heads();
    test_hostile();
    return TEST_SUMMARY();
}
