/* head_io.c: heads on disk.  A head file is a small safetensors file: "weight" F32 (C, D),
 * "bias" F32 (C), and __metadata__ {"format": "vitd-head", "labels": "<JSON array of C
 * strings>", ...caller's pairs}.  Also writes a complete model directory whose head is
 * replaced by a trained one (config.json labels updated, preprocessing copied, model.safetensors
 * rewritten with every other tensor copied byte for byte).  Every file is written atomically
 * (safetensors_write.c) and every byte read is validated before use. */
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/safetensors_write.h"
#include "util.h"

#define HEAD_FILE_MAX   ((size_t)1 << 30)      /* 1 GiB: 100k classes x 2560 dims */
#define MODEL_FILE_MAX  ((size_t)16 << 30)     /* 16 GiB */
#define JSON_FILE_MAX   ((size_t)64 << 20)
#define ST_HEADER_MAX   ((uint64_t)100 << 20)
#define MAX_LABEL_LEN   4096

/* ---- reading a safetensors buffer (header parse + byte-range checks) ------------------ */

typedef struct {
    cJSON *root;           /* parsed header */
    const uint8_t *data;   /* start of the data section */
    uint64_t data_len;
} st_buf;

static vit_status st_buf_parse(const char *path, const uint8_t *buf, size_t len, st_buf *out,
                               char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (len < 8) return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: %zu bytes, too short", path, len);
    uint64_t hl = 0;
    for (int b = 0; b < 8; b++) hl |= (uint64_t)buf[b] << (8 * b);
    if (hl > ST_HEADER_MAX || hl > len - 8)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen,
                        "%s: header length %llu past the end of the file (%zu bytes)", path,
                        (unsigned long long)hl, len);
    out->root = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hl);
    if (!cJSON_IsObject(out->root)) {
        cJSON_Delete(out->root);
        out->root = NULL;
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: header is not a JSON object", path);
    }
    out->data = buf + 8 + hl;
    out->data_len = len - 8 - hl;
    return VIT_OK;
}

static size_t st_dtype_bytes(const char *d) {
    static const struct { const char *n; size_t s; } t[] = {
        {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I64", 8}, {"I32", 4}, {"I16", 2},
        {"I8", 1}, {"U8", 1}, {"U16", 2}, {"U32", 4}, {"U64", 8}, {"BOOL", 1}, {"F8_E4M3", 1},
        {"F8_E5M2", 1}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(d, t[i].n)) return t[i].s;
    return 0;
}

/* Validate one header entry; fills the writer's view of it (data points into the buffer). */
static vit_status st_buf_tensor(const char *path, const st_buf *sb, const cJSON *e, stw_tensor *t,
                                char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    t->name = e->string;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    size_t es = cJSON_IsString(dt) ? st_dtype_bytes(dt->valuestring) : 0;
    if (!cJSON_IsObject(e) || !es || !cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > 8 ||
        !cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: tensor %s: bad header entry", path,
                        e->string);
    t->dtype = dt->valuestring;
    uint64_t numel = 1;
    const cJSON *d;
    cJSON_ArrayForEach(d, sh) {
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 9e15 ||
            d->valuedouble != floor(d->valuedouble))
            return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: tensor %s: bad shape", path, e->string);
        t->shape[t->ndim++] = (int64_t)d->valuedouble;
        if (numel && (uint64_t)d->valuedouble > UINT64_MAX / numel / 8)
            return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: tensor %s: shape too large", path,
                            e->string);
        numel *= (uint64_t)d->valuedouble;
    }
    double b0 = cJSON_GetArrayItem(of, 0)->valuedouble, b1 = cJSON_GetArrayItem(of, 1)->valuedouble;
    if (!cJSON_IsNumber(cJSON_GetArrayItem(of, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(of, 1)) ||
        b0 < 0 || b1 < b0 || b1 > (double)sb->data_len || b0 != floor(b0) || b1 != floor(b1) ||
        (uint64_t)(b1 - b0) != numel * es)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen,
                        "%s: tensor %s: data_offsets [%.0f, %.0f] do not fit the data (%llu bytes) "
                        "or its shape", path, e->string, b0, b1, (unsigned long long)sb->data_len);
    t->data = sb->data + (uint64_t)b0;
    t->nbytes = (size_t)(b1 - b0);
    return VIT_OK;
}

/* ---- head files ----------------------------------------------------------------------- */

vit_status vit_head_save(const vit_head *h, const char *path, const char *const *meta_kv,
                         int n_meta, char *err, size_t errlen) {
    if (!h || !path || n_meta < 0 || (n_meta && !meta_kv))
        return vit_errf(VIT_E_ARG, err, errlen, "head save: bad arguments");
    int C = vit_head_num_classes(h), D = vit_head_dim(h);
    cJSON *labels = cJSON_CreateArray();
    for (int c = 0; labels && c < C; c++)
        cJSON_AddItemToArray(labels, cJSON_CreateString(vit_head_label(h, c)));
    char *lj = labels ? cJSON_PrintUnformatted(labels) : NULL;
    cJSON_Delete(labels);
    const char **kv = malloc(sizeof(char *) * (size_t)(2 * n_meta + 4));
    if (!lj || !kv) {
        free(lj);
        free(kv);
        return vit_errf(VIT_E_NOMEM, err, errlen, "head save: out of memory");
    }
    kv[0] = "format"; kv[1] = "vitd-head";
    kv[2] = "labels"; kv[3] = lj;
    for (int i = 0; i < 2 * n_meta; i++) kv[4 + i] = meta_kv[i];
    stw_tensor t[2] = {
        { "weight", "F32", 2, {C, D}, vit_head_weight(h), sizeof(float) * (size_t)C * (size_t)D },
        { "bias", "F32", 1, {C}, vit_head_bias(h), sizeof(float) * (size_t)C },
    };
    vit_status st = vit_safetensors_write(path, t, 2, kv, n_meta + 2, err, errlen);
    free(lj);
    free(kv);
    return st;
}

vit_status vit_head_load(const char *path, vit_head **out, char **meta_json, char *err,
                         size_t errlen) {
    if (!out || !path) return vit_errf(VIT_E_ARG, err, errlen, "head load: bad arguments");
    *out = NULL;
    if (meta_json) *meta_json = NULL;
    uint8_t *buf;
    size_t len;
    vit_status st = vit_read_file(path, HEAD_FILE_MAX, &buf, &len, err, errlen);
    if (st != VIT_OK) return st;
    st_buf sb;
    const char **lab = NULL;
    float *w = NULL, *b = NULL;
    if ((st = st_buf_parse(path, buf, len, &sb, err, errlen)) != VIT_OK) goto out;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(sb.root, "__metadata__");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(meta, "format");
    const cJSON *ls = cJSON_GetObjectItemCaseSensitive(meta, "labels");
    const cJSON *we = cJSON_GetObjectItemCaseSensitive(sb.root, "weight");
    const cJSON *be = cJSON_GetObjectItemCaseSensitive(sb.root, "bias");
    if (!cJSON_IsObject(meta) || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, "vitd-head") ||
        !cJSON_IsString(ls) || !we || !be || cJSON_GetArraySize(sb.root) != 3) {
        st = vit_errf(VIT_E_CHECKPOINT, err, errlen,
                      "%s: not a vitd head file (needs weight, bias and metadata format/labels)", path);
        goto out;
    }
    stw_tensor tw, tb;
    if ((st = st_buf_tensor(path, &sb, we, &tw, err, errlen)) != VIT_OK ||
        (st = st_buf_tensor(path, &sb, be, &tb, err, errlen)) != VIT_OK)
        goto out;
    if (strcmp(tw.dtype, "F32") || strcmp(tb.dtype, "F32") || tw.ndim != 2 || tb.ndim != 1 ||
        tw.shape[0] < 1 || tw.shape[0] > 1000000 || tw.shape[1] < 1 || tw.shape[1] > 1000000 ||
        tb.shape[0] != tw.shape[0]) {
        st = vit_errf(VIT_E_CHECKPOINT, err, errlen,
                      "%s: weight must be F32 (C, D) and bias F32 (C)", path);
        goto out;
    }
    int C = (int)tw.shape[0], D = (int)tw.shape[1];
    cJSON *la = cJSON_Parse(ls->valuestring);
    if (!cJSON_IsArray(la) || cJSON_GetArraySize(la) != C) {
        cJSON_Delete(la);
        st = vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: labels must be a JSON array of %d strings",
                      path, C);
        goto out;
    }
    lab = malloc(sizeof(char *) * (size_t)C);
    w = malloc(tw.nbytes);   /* copies: the file buffer has no float alignment guarantee */
    b = malloc(tb.nbytes);
    if (!lab || !w || !b) {
        cJSON_Delete(la);
        st = vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", path);
        goto out;
    }
    int i = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, la) {
        if (!cJSON_IsString(s) || !s->valuestring[0] || strlen(s->valuestring) > MAX_LABEL_LEN) {
            cJSON_Delete(la);
            st = vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: label %d is not a non-empty string",
                          path, i);
            goto out;
        }
        lab[i++] = s->valuestring;
    }
    memcpy(w, tw.data, tw.nbytes);
    memcpy(b, tb.data, tb.nbytes);
    for (size_t k = 0; k < (size_t)C * (size_t)D; k++)
        if (!isfinite(w[k])) {
            cJSON_Delete(la);
            st = vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: weight %zu is not finite", path, k);
            goto out;
        }
    st = vit_head_new(C, D, w, b, lab, out);
    cJSON_Delete(la);
    if (st != VIT_OK) {
        vit_errf(st, err, errlen, "%s: %s", path, vit_status_str(st));
        goto out;
    }
    if (meta_json && !(*meta_json = cJSON_PrintUnformatted(meta))) {
        vit_head_release(*out);
        *out = NULL;
        st = vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", path);
    }
out:
    cJSON_Delete(sb.root);
    free(buf);
    free(lab);
    free(w);
    free(b);
    return st;
}

/* ---- a model directory with a new head ------------------------------------------------- */

static int file_exists(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISREG(s.st_mode);
}

static vit_status copy_file(const char *src, const char *dst, char *err, size_t errlen) {
    uint8_t *buf;
    size_t len;
    vit_status st = vit_read_file(src, JSON_FILE_MAX, &buf, &len, err, errlen);
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
static vit_status write_config(const char *src, const char *dst, const vit_head *h, char *err,
                               size_t errlen) {
    uint8_t *buf;
    size_t len;
    vit_status st = vit_read_file(src, JSON_FILE_MAX, &buf, &len, err, errlen);
    if (st != VIT_OK) return st;
    cJSON *cfg = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    if (!cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        return vit_errf(VIT_E_CONFIG, err, errlen, "%s: not a JSON object", src);
    }
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
    cJSON_Delete(cfg);
    if (!txt) return vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", dst);
    stw_chunk ch[2] = { { txt, strlen(txt) }, { "\n", 1 } };
    st = vit_write_file_atomic(dst, ch, 2, 0644, err, errlen);
    free(txt);
    return st;
}

static int is_head_tensor(const char *n) {
    static const char *const names[] = {
        "classifier.weight", "classifier.bias", "head.weight", "head.bias",
        "heads.head.weight", "heads.head.bias", "head_dist.weight", "head_dist.bias",
        "head.fc.weight", "head.fc.bias", "cls_classifier.weight", "cls_classifier.bias",
        "distillation_classifier.weight", "distillation_classifier.bias"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(n, names[i])) return 1;
    return 0;
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

    /* model.safetensors: every tensor copied, the head's replaced (F32) */
    snprintf(src, sizeof src, "%s/model.safetensors", src_dir);
    snprintf(dst, sizeof dst, "%s/model.safetensors", out_dir);
    uint8_t *buf;
    size_t len;
    vit_status st = vit_read_file(src, MODEL_FILE_MAX, &buf, &len, err, errlen);
    if (st != VIT_OK) return st;
    st_buf sb;
    stw_tensor *t = NULL;
    float *dist_w = NULL;
    const char **kv = NULL;
    if ((st = st_buf_parse(src, buf, len, &sb, err, errlen)) != VIT_OK) goto out;
    int n = cJSON_GetArraySize(sb.root), nt = 0, n_meta = 0;
    t = calloc((size_t)n + 4, sizeof *t);
    kv = calloc((size_t)2 * (size_t)n + 2, sizeof(char *));
    if (!t || !kv) {
        st = vit_errf(VIT_E_NOMEM, err, errlen, "save: out of memory");
        goto out;
    }
    const int C = vit_head_num_classes(head), D = vit_head_dim(head);
    int has_hf = 0, has_tv = 0, has_dist = 0, old_head_dim = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, sb.root) {
        if (!strcmp(e->string, "__metadata__")) {
            const cJSON *m;
            cJSON_ArrayForEach(m, e) if (cJSON_IsString(m)) {
                kv[2 * n_meta] = m->string;
                kv[2 * n_meta + 1] = m->valuestring;
                n_meta++;
            }
            continue;
        }
        stw_tensor x;
        if ((st = st_buf_tensor(src, &sb, e, &x, err, errlen)) != VIT_OK) goto out;
        if (!strncmp(x.name, "vit.", 4) || !strncmp(x.name, "deit.", 5)) has_hf = 1;
        if (!strncmp(x.name, "conv_proj.", 10) || !strncmp(x.name, "encoder.layers.", 15)) has_tv = 1;
        /* two heads (DeiT with distillation): features are [cls; dist], 2D wide */
        if (!strcmp(x.name, "head_dist.weight") || !strcmp(x.name, "distillation_classifier.weight"))
            has_dist = 1;
        if (is_head_tensor(x.name)) {
            if (strstr(x.name, ".weight") && x.ndim == 2 && !strstr(x.name, "dist"))
                old_head_dim = (int)x.shape[1];
            continue;
        }
        t[nt++] = x;
    }
    int fd_ = has_dist ? D / 2 : D;   /* DeiT: features [cls; dist], each head sees half */
    if ((has_dist && D % 2) || (old_head_dim >= 0 && old_head_dim != fd_)) {
        st = vit_errf(VIT_E_ARG, err, errlen,
                      "save: head has %d inputs, the checkpoint's head takes %d%s", D, old_head_dim,
                      has_dist ? " per token (distilled: [cls; dist])" : "");
        goto out;
    }
    const char *wn = has_hf ? "classifier.weight" : has_tv ? "heads.head.weight" : "head.weight";
    const char *bn = has_hf ? "classifier.bias" : has_tv ? "heads.head.bias" : "head.bias";
    if (!has_dist) {
        t[nt++] = (stw_tensor){ wn, "F32", 2, {C, D}, vit_head_weight(head),
                                sizeof(float) * (size_t)C * (size_t)D };
        t[nt++] = (stw_tensor){ bn, "F32", 1, {C}, vit_head_bias(head), sizeof(float) * (size_t)C };
    } else {
        /* the engine averages the two heads: W_cls = 2 W[:, :D/2], W_dist = 2 W[:, D/2:], b both */
        dist_w = malloc(sizeof(float) * (size_t)C * (size_t)D);
        if (!dist_w) {
            st = vit_errf(VIT_E_NOMEM, err, errlen, "save: out of memory");
            goto out;
        }
        const float *w = vit_head_weight(head);
        for (int c = 0; c < C; c++)
            for (int k = 0; k < fd_; k++) {
                dist_w[(size_t)c * fd_ + k] = 2.f * w[(size_t)c * D + k];
                dist_w[(size_t)C * fd_ + (size_t)c * fd_ + k] = 2.f * w[(size_t)c * D + fd_ + k];
            }
        size_t wb = sizeof(float) * (size_t)C * (size_t)fd_;
        /* timm head / head_dist; Hugging Face cls_classifier / distillation_classifier */
        t[nt++] = (stw_tensor){ has_hf ? "cls_classifier.weight" : "head.weight", "F32", 2, {C, fd_}, dist_w, wb };
        t[nt++] = (stw_tensor){ has_hf ? "cls_classifier.bias" : "head.bias", "F32", 1, {C},
                                vit_head_bias(head), sizeof(float) * (size_t)C };
        /* t was sized n + 4: room for the four head tensors even when the source has none */
        t[nt++] = (stw_tensor){ has_hf ? "distillation_classifier.weight" : "head_dist.weight", "F32", 2,
                                {C, fd_}, dist_w + (size_t)C * fd_, wb };
        t[nt++] = (stw_tensor){ has_hf ? "distillation_classifier.bias" : "head_dist.bias", "F32", 1, {C},
                                vit_head_bias(head), sizeof(float) * (size_t)C };
    }
    if (nt > n + 4) {
        st = vit_errf(VIT_E_INTERNAL, err, errlen, "save: tensor count");
        goto out;
    }
    if ((st = vit_safetensors_write(dst, t, nt, kv, n_meta, err, errlen)) != VIT_OK) goto out;

    snprintf(src, sizeof src, "%s/config.json", src_dir);
    snprintf(dst, sizeof dst, "%s/config.json", out_dir);
    if ((st = write_config(src, dst, head, err, errlen)) != VIT_OK) goto out;
    snprintf(src, sizeof src, "%s/preprocessor_config.json", src_dir);
    snprintf(dst, sizeof dst, "%s/preprocessor_config.json", out_dir);
    if (file_exists(src) && (st = copy_file(src, dst, err, errlen)) != VIT_OK) goto out;
    snprintf(src, sizeof src, "%s/labels.txt", src_dir);
    snprintf(dst, sizeof dst, "%s/labels.txt", out_dir);
    if (file_exists(src)) {
        size_t cap = 1;
        for (int c = 0; c < C; c++) cap += strlen(vit_head_label(head, c)) + 1;
        char *txt = malloc(cap), *p = txt;
        if (!txt) {
            st = vit_errf(VIT_E_NOMEM, err, errlen, "save: out of memory");
            goto out;
        }
        for (int c = 0; c < C; c++) p += sprintf(p, "%s\n", vit_head_label(head, c));
        stw_chunk ch = { txt, (size_t)(p - txt) };
        st = vit_write_file_atomic(dst, &ch, 1, 0644, err, errlen);
        free(txt);
    }
out:
    cJSON_Delete(sb.root);
    free(buf);
    free(t);
    free(kv);
    free(dist_w);
    return st;
}
