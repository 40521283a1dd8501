/* head_io.c: heads on disk.  A head file is a small safetensors file: "weight" F32 (C, D),
 * "bias" F32 (C), and __metadata__ {"format": "vitd-head", "labels": "<JSON array of C
 * strings>", ...caller's pairs}.  Written atomically (safetensors_write.c); read with the one
 * safetensors reader (safetensors.c, from the file's bytes) and every value validated before use.
 * A model directory with a new head is model_dir_write.c's. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "io/safetensors_write.h"
#include "util.h"

#define HEAD_FILE_MAX   ((size_t)1 << 30)      /* 1 GiB: 100k classes x 2560 dims */
#define MAX_LABEL_LEN   4096

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

/* labels: a JSON array of C non-empty strings (pointers into la) */
static vit_status parse_labels(const char *path, const cJSON *la, int C, const char **lab, char *err,
                               size_t errlen) {
    if (!cJSON_IsArray(la) || cJSON_GetArraySize(la) != C)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: labels must be a JSON array of %d strings", path, C);
    int i = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, la) {
        if (!cJSON_IsString(s) || !s->valuestring[0] || strlen(s->valuestring) > MAX_LABEL_LEN)
            return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: label %d is not a non-empty string", path, i);
        lab[i++] = s->valuestring;
    }
    return VIT_OK;
}

/* weight (C, D) and bias (C), F32, finite weights, read into fresh w and b */
static vit_status read_weights(const char *path, const st_file *f, const st_tensor *tw, const st_tensor *tb,
                               float **w, float **b, char *err, size_t errlen) {
    if (tw->dtype != ST_F32 || tb->dtype != ST_F32 || tw->ndim != 2 || tb->ndim != 1 || tw->shape[0] < 1 ||
        tw->shape[0] > 1000000 || tw->shape[1] < 1 || tw->shape[1] > 1000000 || tb->shape[0] != tw->shape[0])
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: weight must be F32 (C, D) and bias F32 (C)", path);
    *w = malloc(sizeof(float) * tw->numel);
    *b = malloc(sizeof(float) * tb->numel);
    if (!*w || !*b) return vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", path);
    vit_status st;
    if ((st = st_read_f32(f, tw, *w, err, errlen)) || (st = st_read_f32(f, tb, *b, err, errlen))) return st;
    for (size_t k = 0; k < tw->numel; k++)
        if (!isfinite((*w)[k])) return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: weight %zu is not finite", path, k);
    return VIT_OK;
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
    st_file *f = NULL;
    cJSON *la = NULL;
    const char **lab = NULL;
    float *w = NULL, *b = NULL;
    if ((st = st_open_buffer(path, buf, len, &f, err, errlen)) != VIT_OK) goto out;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(f->meta, "format");
    const cJSON *ls = cJSON_GetObjectItemCaseSensitive(f->meta, "labels");
    st_tensor *tw = st_lookup(f, "weight"), *tb = st_lookup(f, "bias");
    if (!cJSON_IsObject(f->meta) || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, "vitd-head") ||
        !cJSON_IsString(ls) || !tw || !tb || f->n != 2) {
        st = vit_errf(VIT_E_CHECKPOINT, err, errlen,
                      "%s: not a vitd head file (needs weight, bias and metadata format/labels)", path);
        goto out;
    }
    if ((st = read_weights(path, f, tw, tb, &w, &b, err, errlen)) != VIT_OK) goto out;
    int C = (int)tw->shape[0], D = (int)tw->shape[1];
    la = cJSON_Parse(ls->valuestring);
    if (!(lab = malloc(sizeof(char *) * (size_t)C))) {
        st = vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", path);
        goto out;
    }
    if ((st = parse_labels(path, la, C, lab, err, errlen)) != VIT_OK) goto out;
    if ((st = vit_head_new(C, D, w, b, lab, out)) != VIT_OK) {
        vit_errf(st, err, errlen, "%s: %s", path, vit_status_str(st));
        goto out;
    }
    if (meta_json && !(*meta_json = cJSON_PrintUnformatted(f->meta))) {
        vit_head_release(*out);
        *out = NULL;
        st = vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", path);
    }
out:
    cJSON_Delete(la);
    st_close(f);
    free(buf);
    free(lab);
    free(w);
    free(b);
    return st;
}
