/* calib_io.c: read, check and write the calibration file (format in calib_io.h).  The reader
 * takes untrusted bytes: the size is bounded before parsing, every key is checked for type and
 * range, and nothing is allocated from a count before that count is checked against the rows
 * that are actually there. */
#include "io/calib_io.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *const method_names[] = {"minmax", "percentile", "mse"};

const char *vit_calib_method_str(vit_calib_method m) {
    return (unsigned)m < sizeof method_names / sizeof method_names[0] ? method_names[m] : "?";
}

int vit_calib_method_parse(const char *s, vit_calib_method *out) {
    for (int i = 0; s && i < (int)(sizeof method_names / sizeof method_names[0]); i++)
        if (!strcmp(s, method_names[i])) {
            *out = (vit_calib_method)i;
            return 0;
        }
    return -1;
}

void vit_calib_free(vit_calib *c) {
    if (!c) return;
    free(c->amax);
    memset(c, 0, sizeof *c);
}

/* an integer-valued number in [lo, hi] */
static int get_int(const cJSON *root, const char *key, int lo, int hi, int *out, char *err,
                   size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
        v->valuedouble != floor(v->valuedouble)) {
        vit_errf(VIT_E_CONFIG, err, errlen, "calibration: \"%s\" must be an integer in [%d, %d]",
                 key, lo, hi);
        return -1;
    }
    *out = (int)v->valuedouble;
    return 0;
}

static const char *const known_keys[] = {"format", "version", "method", "samples", "num_layers",
                                         "hidden_size", "mlp_size", "amax"};

static vit_status parse_header(vit_calib *c, const cJSON *root, char *err, size_t errlen) {
    if (!cJSON_IsObject(root))
        return vit_errf(VIT_E_CONFIG, err, errlen, "calibration: not a JSON object");
    for (const cJSON *e = root->child; e; e = e->next) {
        int known = 0;
        for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0]; i++)
            known |= e->string && !strcmp(e->string, known_keys[i]);
        if (!known)
            return vit_errf(VIT_E_CONFIG, err, errlen, "calibration: unknown key \"%.40s\"",
                            e->string ? e->string : "");
    }
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(f) || strcmp(f->valuestring, "vitd-calibration"))
        return vit_errf(VIT_E_CONFIG, err, errlen,
                        "calibration: \"format\" must be \"vitd-calibration\"");
    int version;
    if (get_int(root, "version", 1, 1, &version, err, errlen)) return VIT_E_CONFIG;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "method");
    if (!cJSON_IsString(m) || vit_calib_method_parse(m->valuestring, &c->method))
        return vit_errf(VIT_E_CONFIG, err, errlen,
                        "calibration: \"method\" must be \"minmax\", \"percentile\" or \"mse\"");
    if (get_int(root, "samples", 1, 1 << 30, &c->samples, err, errlen) ||
        get_int(root, "num_layers", 0, VIT_CALIB_MAX_LAYERS, &c->num_layers, err, errlen) ||
        get_int(root, "hidden_size", 1, 1 << 20, &c->hidden_size, err, errlen) ||
        get_int(root, "mlp_size", 1, 1 << 20, &c->mlp_size, err, errlen))
        return VIT_E_CONFIG;
    return VIT_OK;
}

static vit_status parse_amax(vit_calib *c, const cJSON *root, char *err, size_t errlen) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "amax");
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != c->num_layers)
        return vit_errf(VIT_E_CONFIG, err, errlen,
                        "calibration: \"amax\" must be an array of num_layers (%d) rows",
                        c->num_layers);
    c->amax = malloc(sizeof(float) * VIT_CALIB_LINEARS * (size_t)(c->num_layers ? c->num_layers : 1));
    if (!c->amax) return vit_errf(VIT_E_NOMEM, err, errlen, "calibration: out of memory");
    int l = 0;
    for (const cJSON *row = a->child; row; row = row->next, l++) {
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != VIT_CALIB_LINEARS)
            return vit_errf(VIT_E_CONFIG, err, errlen,
                            "calibration: amax[%d] must be [qkv, proj, fc1, fc2]", l);
        int j = 0;
        for (const cJSON *v = row->child; v; v = v->next, j++) {
            double d = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
            /* below FLT_MAX + half an ulp (what rounds to a finite float), above 0 as a float */
            if (!(d > 0.0 && d < 3.4028235677973366e38) || !((float)d > 0.0f))
                return vit_errf(VIT_E_CONFIG, err, errlen,
                                "calibration: amax[%d][%d] must be a finite number > 0", l, j);
            c->amax[(size_t)l * VIT_CALIB_LINEARS + j] = (float)d;
        }
    }
    return VIT_OK;
}

vit_status vit_calib_parse(vit_calib *out, const char *buf, size_t len, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (!buf || len > VIT_CALIB_MAX_BYTES)
        return vit_errf(VIT_E_CONFIG, err, errlen, "calibration: %zu bytes, more than the limit of %u",
                        len, VIT_CALIB_MAX_BYTES);
    cJSON *root = cJSON_ParseWithLength(buf, len);
    if (!root) return vit_errf(VIT_E_CONFIG, err, errlen, "calibration: bad JSON");
    vit_calib c = {0};
    vit_status st = parse_header(&c, root, err, errlen);
    if (st == VIT_OK) st = parse_amax(&c, root, err, errlen);
    cJSON_Delete(root);
    if (st != VIT_OK) {
        vit_calib_free(&c);
        return st;
    }
    *out = c;
    return VIT_OK;
}

vit_status vit_calib_check(const vit_calib *c, const vit_config *cfg, char *err, size_t errlen) {
    if (c->num_layers != cfg->num_layers || c->hidden_size != cfg->hidden_size ||
        c->mlp_size != cfg->mlp_size)
        return vit_errf(VIT_E_CONFIG, err, errlen,
                        "calibration: made for %d layers, hidden %d, MLP %d; the model has %d, %d, %d",
                        c->num_layers, c->hidden_size, c->mlp_size, cfg->num_layers,
                        cfg->hidden_size, cfg->mlp_size);
    return VIT_OK;
}

vit_status vit_calib_load_dir(const char *dir, const vit_config *cfg, vit_calib *out, char *err,
                              size_t errlen) {
    memset(out, 0, sizeof *out);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, VIT_CALIB_FILE);
    FILE *f = fopen(path, "rb");
    if (!f) return VIT_E_IO;   /* absent: the model is uncalibrated */
    fclose(f);
    uint8_t *buf;
    size_t len;
    vit_status st = vit_read_file(path, VIT_CALIB_MAX_BYTES, &buf, &len, err, errlen);
    if (st != VIT_OK) return st == VIT_E_IO ? VIT_E_CONFIG : st;
    char msg[200] = "";
    st = vit_calib_parse(out, (const char *)buf, len, msg, sizeof msg);
    free(buf);
    if (st == VIT_OK && (st = vit_calib_check(out, cfg, msg, sizeof msg)) != VIT_OK)
        vit_calib_free(out);
    if (st != VIT_OK) return vit_errf(st, err, errlen, "%s: %s", path, msg);
    return VIT_OK;
}

char *vit_calib_to_json(const vit_calib *c) {
    size_t cap = 512 + (size_t)c->num_layers * VIT_CALIB_LINEARS * 20;
    char *s = malloc(cap);
    if (!s) return NULL;
    size_t n = (size_t)snprintf(s, cap,
                                "{\"format\": \"vitd-calibration\", \"version\": 1, \"method\": \"%s\", "
                                "\"samples\": %d,\n \"num_layers\": %d, \"hidden_size\": %d, "
                                "\"mlp_size\": %d,\n \"amax\": [",
                                vit_calib_method_str(c->method), c->samples, c->num_layers,
                                c->hidden_size, c->mlp_size);
    for (int l = 0; l < c->num_layers; l++) {
        const float *r = c->amax + (size_t)l * VIT_CALIB_LINEARS;
        n += (size_t)snprintf(s + n, cap - n, "%s\n  [%.9g, %.9g, %.9g, %.9g]", l ? "," : "",
                              (double)r[0], (double)r[1], (double)r[2], (double)r[3]);
    }
    snprintf(s + n, cap - n, "]}\n");
    return s;
}
