/* model_dir_write.c: a complete model directory whose head is replaced by a trained one
 * (vit_model_save_with_head): model.safetensors rewritten with every other tensor copied byte for
 * byte and the head tensors named by the checkpoint's naming scheme (naming.c), config.json's
 * labels updated, preprocessor_config.json and labels.txt carried over.  The source is read with
 * the one safetensors reader and model_dir.c; every file is written atomically. */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/model_dir.h"
#include "io/naming.h"
#include "io/safetensors.h"
#include "io/safetensors_write.h"
#include "util.h"

#define MODEL_FILE_MAX  ((size_t)16 << 30)     /* 16 GiB */

static vit_status copy_file(const char *src, const char *dst, char *err, size_t errlen) {
    uint8_t *buf;
    size_t len;
    vit_status st = vit_read_file(src, MD_MAX_JSON, &buf, &len, err, errlen);
    if (st != VIT_OK) return st;
    stw_chunk c = { buf, len };
    st = vit_write_file_atomic(dst, &c, 1, 0644, err, errlen);
    free(buf);
    return st;
}

static void json_set(cJSON *o, const char *key, cJSON *v) {
    if (cJSON_GetObjectItemCaseSensitive(o, key)) cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
    else cJSON_AddItemToObject(o, key, v);
}

/* config.json with the head's labels: HF id2label/label2id/num_labels, timm num_classes/
 * label_names (+ pretrained_cfg.num_classes), torchvision-style num_classes. */
static vit_status write_config(cJSON *cfg, const char *dst, const vit_head *h, char *err, size_t errlen) {
    int C = vit_head_num_classes(h);
    int timm = cJSON_GetObjectItemCaseSensitive(cfg, "label_names") ||
               cJSON_GetObjectItemCaseSensitive(cfg, "pretrained_cfg");
    int hf = !timm || cJSON_GetObjectItemCaseSensitive(cfg, "id2label");
    if (cJSON_GetObjectItemCaseSensitive(cfg, "num_classes") || timm) {
        json_set(cfg, "num_classes", cJSON_CreateNumber(C));
        cJSON *pc = cJSON_GetObjectItemCaseSensitive(cfg, "pretrained_cfg");
        if (cJSON_IsObject(pc) && cJSON_GetObjectItemCaseSensitive(pc, "num_classes"))
            json_set(pc, "num_classes", cJSON_CreateNumber(C));
    }
    if (timm) {
        cJSON *ln = cJSON_CreateArray();
        for (int c = 0; c < C; c++) cJSON_AddItemToArray(ln, cJSON_CreateString(vit_head_label(h, c)));
        json_set(cfg, "label_names", ln);
    }
    if (hf) {
        cJSON *i2l = cJSON_CreateObject(), *l2i = cJSON_CreateObject();
        for (int c = 0; c < C; c++) {
            char k[16];
            snprintf(k, sizeof k, "%d", c);
            cJSON_AddStringToObject(i2l, k, vit_head_label(h, c));
            cJSON_AddNumberToObject(l2i, vit_head_label(h, c), c);
        }
        json_set(cfg, "id2label", i2l);
        json_set(cfg, "label2id", l2i);
        if (cJSON_GetObjectItemCaseSensitive(cfg, "num_labels"))
            json_set(cfg, "num_labels", cJSON_CreateNumber(C));
    }
    char *txt = cJSON_Print(cfg);
    if (!txt) return vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", dst);
    stw_chunk ch[2] = { { txt, strlen(txt) }, { "\n", 1 } };
    vit_status st = vit_write_file_atomic(dst, ch, 2, 0644, err, errlen);
    free(txt);
    return st;
}

/* the tensors being written: the source's minus its head, then the new head's */
typedef struct {
    stw_tensor *t;
    int n;
    float *dist_w;         /* (2, C, D/2): the two DeiT heads, when the source has two */
} head_tensors;

/* every non-head tensor of f into out->t (bytes point into f's buffer); the head's input width */
static void copy_body(const st_file *f, head_tensors *out, int *has_dist, int *old_head_dim) {
    *has_dist = 0;
    *old_head_dim = -1;
    for (int i = 0; i < f->n; i++) {
        const st_tensor *x = &f->tensors[i];
        /* two heads (DeiT with distillation): features are [cls; dist], 2D wide */
        if (!strcmp(x->name, "head_dist.weight") || !strcmp(x->name, "distillation_classifier.weight")) *has_dist = 1;
        if (naming_is_head_tensor(x->name)) {
            if (strstr(x->name, ".weight") && x->ndim == 2 && !strstr(x->name, "dist")) *old_head_dim = (int)x->shape[1];
            continue;
        }
        stw_tensor *t = &out->t[out->n++];
        *t = (stw_tensor){ x->name, st_dtype_name(x->dtype), x->ndim, {0}, st_bytes(f, x), (size_t)(x->end - x->begin) };
        memcpy(t->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    }
}

/* the head tensors in scheme s: one head, or DeiT's two (each gets 2 W's half: the engine averages) */
static vit_status add_head(const naming_scheme *s, const vit_head *head, int has_dist, head_tensors *out,
                           char *err, size_t errlen) {
    const int C = vit_head_num_classes(head), D = vit_head_dim(head);
    const size_t bb = sizeof(float) * (size_t)C;
    if (!has_dist) {
        out->t[out->n++] = (stw_tensor){ s->head_w, "F32", 2, {C, D}, vit_head_weight(head), bb * (size_t)D };
        out->t[out->n++] = (stw_tensor){ s->head_b, "F32", 1, {C}, vit_head_bias(head), bb };
        return VIT_OK;
    }
    const int h = D / 2;
    if (!s->head_dist_w || !(out->dist_w = malloc(bb * (size_t)D)))
        return vit_errf(s->head_dist_w ? VIT_E_NOMEM : VIT_E_ARG, err, errlen,
                        "save: %s", s->head_dist_w ? "out of memory" : "this naming scheme has no distillation head");
    const float *w = vit_head_weight(head);
    for (int c = 0; c < C; c++)
        for (int k = 0; k < h; k++) {
            out->dist_w[(size_t)c * h + k] = 2.f * w[(size_t)c * D + k];
            out->dist_w[(size_t)C * h + (size_t)c * h + k] = 2.f * w[(size_t)c * D + h + k];
        }
    size_t wb = bb * (size_t)h;
    out->t[out->n++] = (stw_tensor){ s->head_cls_w, "F32", 2, {C, h}, out->dist_w, wb };
    out->t[out->n++] = (stw_tensor){ s->head_cls_b, "F32", 1, {C}, vit_head_bias(head), bb };
    out->t[out->n++] = (stw_tensor){ s->head_dist_w, "F32", 2, {C, h}, out->dist_w + (size_t)C * h, wb };
    out->t[out->n++] = (stw_tensor){ s->head_dist_b, "F32", 1, {C}, vit_head_bias(head), bb };
    return VIT_OK;
}

/* src_dir/model.safetensors -> out_dir/model.safetensors with head in place of the old one */
static vit_status write_weights(const char *src_dir, const vit_head *head, const char *out_dir, char *err,
                                size_t errlen) {
    char src[4096], dst[4096], prefix[NAMING_PREFIX_MAX];
    snprintf(src, sizeof src, "%s/model.safetensors", src_dir);
    snprintf(dst, sizeof dst, "%s/model.safetensors", out_dir);
    uint8_t *buf;
    size_t len;
    vit_status st = vit_read_file(src, MODEL_FILE_MAX, &buf, &len, err, errlen);
    if (st != VIT_OK) return st;
    st_file *f = NULL;
    head_tensors ht = {0};
    const char **kv = NULL;
    if ((st = st_open_buffer(src, buf, len, &f, err, errlen)) != VIT_OK) goto out;
    const naming_scheme *s = naming_detect(f, prefix);
    if (!s) s = naming_get(NAMING_TIMM);   /* no known patch embedding: timm's head names */
    int n_meta = cJSON_GetArraySize(f->meta), k = 0;
    ht.t = calloc((size_t)f->n + 4, sizeof *ht.t);   /* + the four head tensors at most */
    kv = calloc((size_t)2 * (size_t)n_meta + 2, sizeof(char *));
    if (!ht.t || !kv) { st = vit_errf(VIT_E_NOMEM, err, errlen, "save: out of memory"); goto out; }
    const cJSON *m;
    cJSON_ArrayForEach(m, f->meta) if (cJSON_IsString(m)) {
        kv[2 * k] = m->string;
        kv[2 * k + 1] = m->valuestring;
        k++;
    }
    int has_dist, old_dim, D = vit_head_dim(head);
    copy_body(f, &ht, &has_dist, &old_dim);
    int fd_ = has_dist ? D / 2 : D;   /* DeiT: features [cls; dist], each head sees half */
    if ((has_dist && D % 2) || (old_dim >= 0 && old_dim != fd_)) {
        st = vit_errf(VIT_E_ARG, err, errlen, "save: head has %d inputs, the checkpoint's head takes %d%s", D, old_dim,
                      has_dist ? " per token (distilled: [cls; dist])" : "");
        goto out;
    }
    if ((st = add_head(s, head, has_dist, &ht, err, errlen)) != VIT_OK) goto out;
    st = vit_safetensors_write(dst, ht.t, ht.n, kv, k, err, errlen);
out:
    st_close(f);
    free(buf);
    free(ht.t);
    free(ht.dist_w);
    free(kv);
    return st;
}

/* out_dir/labels.txt: one label per line */
static vit_status write_labels(const vit_head *head, const char *dst, char *err, size_t errlen) {
    int C = vit_head_num_classes(head);
    size_t cap = 1;
    for (int c = 0; c < C; c++) cap += strlen(vit_head_label(head, c)) + 1;
    char *txt = malloc(cap), *p = txt;
    if (!txt) return vit_errf(VIT_E_NOMEM, err, errlen, "save: out of memory");
    for (int c = 0; c < C; c++) p += sprintf(p, "%s\n", vit_head_label(head, c));
    stw_chunk ch = { txt, (size_t)(p - txt) };
    vit_status st = vit_write_file_atomic(dst, &ch, 1, 0644, err, errlen);
    free(txt);
    return st;
}

vit_status vit_model_save_with_head(const char *src_dir, const vit_head *head, const char *out_dir,
                                    char *err, size_t errlen) {
    if (!src_dir || !head || !out_dir) return vit_errf(VIT_E_ARG, err, errlen, "save: bad arguments");
    char src[4096], dst[4096];
    struct stat sst, dstt;
    if (stat(src_dir, &sst) == 0 && stat(out_dir, &dstt) == 0 && sst.st_dev == dstt.st_dev &&
        sst.st_ino == dstt.st_ino)
        return vit_errf(VIT_E_ARG, err, errlen, "save: output directory %s is the source", out_dir);
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST)
        return vit_errf(VIT_E_IO, err, errlen, "mkdir %s: %s", out_dir, strerror(errno));
    vit_status st = write_weights(src_dir, head, out_dir, err, errlen);
    if (st != VIT_OK) return st;
    model_dir md;
    if ((st = md_open(src_dir, &md, err, errlen)) != VIT_OK) return st;
    snprintf(dst, sizeof dst, "%s/config.json", out_dir);
    if ((st = md_config(&md, 1, err, errlen)) != VIT_OK || (st = write_config(md.config, dst, head, err, errlen)))
        goto out;
    snprintf(src, sizeof src, "%s/preprocessor_config.json", src_dir);
    snprintf(dst, sizeof dst, "%s/preprocessor_config.json", out_dir);
    if (md_has_file(&md, "preprocessor_config.json") && (st = copy_file(src, dst, err, errlen)) != VIT_OK) goto out;
    snprintf(dst, sizeof dst, "%s/labels.txt", out_dir);
    if (md_has_file(&md, "labels.txt")) st = write_labels(head, dst, err, errlen);
out:
    md_close(&md);
    return st;
}
