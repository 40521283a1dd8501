/* model_dir.c: a model directory's JSON and label files, each read and parsed once (model_dir.h).
 * Every file is size-capped before it is read (vit_read_file). */
#include "io/model_dir.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

#define MD_MAX_PATH 4096

vit_status md_open(const char *dir, model_dir *md, char *err, size_t errlen) {
    memset(md, 0, sizeof *md);
    if (!dir || strlen(dir) > 3000) return vit_errf(VIT_E_ARG, err, errlen, "model directory path too long");
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return vit_errf(VIT_E_IO, err, errlen, "%s: not a model directory", dir);
    md->dir = dir;
    return VIT_OK;
}

void md_close(model_dir *md) {
    if (!md) return;
    cJSON_Delete(md->config);
    cJSON_Delete(md->preprocessor);
    memset(md, 0, sizeof *md);
}

int md_has_file(const model_dir *md, const char *name) {
    char path[MD_MAX_PATH];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", md->dir, name);
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* dir/name parsed into *root; absent and !required: VIT_OK with *root NULL */
static vit_status read_json(const model_dir *md, const char *name, int required, cJSON **root, char *err,
                            size_t errlen) {
    *root = NULL;
    char path[MD_MAX_PATH];
    snprintf(path, sizeof path, "%s/%s", md->dir, name);
    if (!required && !md_has_file(md, name)) return VIT_OK;
    uint8_t *buf;
    size_t len;
    vit_status st = vit_read_file(path, MD_MAX_JSON, &buf, &len, err, errlen);
    if (st) return st == VIT_E_ARG ? VIT_E_CONFIG : st;
    *root = cJSON_ParseWithLength((const char *)buf, len);
    if (!*root || !cJSON_IsObject(*root)) {
        const char *ep = cJSON_GetErrorPtr();
        long at = (ep && ep >= (char *)buf && ep <= (char *)buf + len) ? (long)(ep - (char *)buf) : -1;
        if (*root) st = vit_errf(VIT_E_CONFIG, err, errlen, "%s: bad JSON: not a JSON object", path);
        else st = vit_errf(VIT_E_CONFIG, err, errlen, "%s: bad JSON (near byte %ld)", path, at);
        cJSON_Delete(*root);
        *root = NULL;
    }
    free(buf);
    return st;
}

vit_status md_config(model_dir *md, int required, char *err, size_t errlen) {
    if (md->config_read && (md->config || !required)) return VIT_OK;
    vit_status st = read_json(md, "config.json", required, &md->config, err, errlen);
    if (!st) md->config_read = 1;
    return st;
}

vit_status md_preprocessor(model_dir *md, char *err, size_t errlen) {
    if (md->preprocessor_read) return VIT_OK;
    vit_status st = read_json(md, "preprocessor_config.json", 0, &md->preprocessor, err, errlen);
    if (!st) md->preprocessor_read = 1;
    return st;
}

void md_free_labels(char **lab, int n) {
    if (!lab) return;
    for (int i = 0; i < n; i++) free(lab[i]);
    free(lab);
}

/* config.json id2label {"0": "cat", ...} into lab[C] */
static vit_status labels_id2label(const model_dir *md, const cJSON *id2, int C, char **lab, char *err,
                                  size_t errlen) {
    int n = 0;
    for (const cJSON *e = id2->child; e; e = e->next, n++) {
        char *end;
        long k = strtol(e->string, &end, 10);
        if (*e->string == 0 || *end || k < 0 || k >= C || !cJSON_IsString(e))
            return vit_errf(VIT_E_CONFIG, err, errlen,
                            "%s/config.json: id2label entry '%.40s' is not a class index in [0, %d) with a string label",
                            md->dir, e->string, C);
        if (lab[k]) return vit_errf(VIT_E_CONFIG, err, errlen, "%s/config.json: id2label has class %ld twice", md->dir, k);
        if (!(lab[k] = strdup(e->valuestring))) return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory reading labels");
    }
    if (n != C)
        return vit_errf(VIT_E_CONFIG, err, errlen, "%s/config.json: id2label has %d labels but the head has %d classes",
                        md->dir, n, C);
    return VIT_OK;
}

/* config.json label_names ["cat", ...] into lab[C] */
static vit_status labels_names(const model_dir *md, const cJSON *names, int C, char **lab, char *err,
                               size_t errlen) {
    int n = cJSON_GetArraySize(names);
    if (n != C)
        return vit_errf(VIT_E_CONFIG, err, errlen, "%s/config.json: label_names has %d labels but the head has %d classes",
                        md->dir, n, C);
    int i = 0;
    for (const cJSON *e = names->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e))
            return vit_errf(VIT_E_CONFIG, err, errlen, "%s/config.json: label_names[%d] is not a string", md->dir, i);
        if (!(lab[i] = strdup(e->valuestring))) return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory reading labels");
    }
    return VIT_OK;
}

/* labels.txt, one per line (CRLF tolerated), into lab[C] */
static vit_status labels_txt(const model_dir *md, int C, char **lab, char *err, size_t errlen) {
    char path[MD_MAX_PATH];
    snprintf(path, sizeof path, "%s/labels.txt", md->dir);
    uint8_t *buf;
    size_t len;
    vit_status st = vit_read_file(path, MD_MAX_JSON, &buf, &len, err, errlen);
    if (st) return st;
    int n = 0;
    char *p = (char *)buf, *end = (char *)buf + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t k = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (k && p[k - 1] == '\r') k--;
        if (n < C && !(lab[n] = strndup(p, k))) {
            free(buf);
            return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory reading labels");
        }
        n++;
        p = nl ? nl + 1 : end;
    }
    free(buf);
    if (n != C) return vit_errf(VIT_E_CONFIG, err, errlen, "%s: %d labels but the head has %d classes", path, n, C);
    return VIT_OK;
}

vit_status md_labels(model_dir *md, int C, char ***out, char *err, size_t errlen) {
    *out = NULL;
    char **lab = calloc((size_t)C, sizeof *lab);
    if (!lab) return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory");
    const cJSON *id2 = cJSON_GetObjectItemCaseSensitive(md->config, "id2label");
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(md->config, "label_names");
    vit_status st;
    if (cJSON_IsObject(id2) && id2->child) st = labels_id2label(md, id2, C, lab, err, errlen);
    else if (cJSON_IsArray(names) && cJSON_GetArraySize(names) > 0) st = labels_names(md, names, C, lab, err, errlen);
    else if (md_has_file(md, "labels.txt")) st = labels_txt(md, C, lab, err, errlen);
    else {
        free(lab);   /* defaults */
        return VIT_OK;
    }
    if (st) {
        md_free_labels(lab, C);
        return st;
    }
    *out = lab;
    return VIT_OK;
}
