/* v2proto.c: Open Inference Protocol (KServe v2) inference requests and responses (v2proto.h):
 * the JSON part through jsonbody's parser, Triton's binary tensor data after it, and the
 * response writer (FP32 as the shortest round-tripping decimal, binary outputs appended). */
#include "v2proto.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "jsonbody.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "v2proto.c reads binary tensor data (little-endian) in place: little-endian hosts only"
#endif

#define MAX_NEST 6             /* nesting of a tensor's "data" arrays */

static const char *const out_names[V2_NOUT] = {"probabilities", "embedding", "attention"};

const char *v2_output_name(int which) { return which >= 0 && which < V2_NOUT ? out_names[which] : "?"; }

static int v2_fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- parameters ------------------------------------------------------------------------ */

/* $parameters: an object of string/number/boolean values */
static int check_params(const cJSON *p, const char *where, char *err, size_t errlen) {
    if (!p) return 0;
    if (!cJSON_IsObject(p)) return v2_fail(err, errlen, "%s: \"parameters\" must be an object", where);
    const cJSON *it;
    cJSON_ArrayForEach(it, p)
        if (!cJSON_IsString(it) && !cJSON_IsNumber(it) && !cJSON_IsBool(it))
            return v2_fail(err, errlen, "%s: parameter \"%.40s\" must be a string, number or boolean", where,
                        it->string ? it->string : "");
    return 0;
}

/* boolean parameter key of p: 0/1, def when absent, -1 when present and not a boolean */
static int param_bool(const cJSON *p, const char *key, int def) {
    const cJSON *v = p ? cJSON_GetObjectItemCaseSensitive(p, key) : NULL;
    if (!v) return def;
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : -1;
}

/* integer parameter: 1 and *out set, 0 when absent, -1 when not an integer in [lo, hi] */
static int param_int(const cJSON *p, const char *key, long long lo, long long hi, long long *out) {
    const cJSON *v = p ? cJSON_GetObjectItemCaseSensitive(p, key) : NULL;
    if (!v) return 0;
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d)) return -1;
    *out = (long long)d;
    return 1;
}

/* ---- requested outputs ------------------------------------------------------------------ */

static int parse_output(const cJSON *o, const v2_model *m, int binary_default, v2_request *rq,
                        char *err, size_t errlen) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (!cJSON_IsObject(o) || !cJSON_IsString(name))
        return v2_fail(err, errlen, "each requested output must be an object with a \"name\"");
    int w = -1;
    for (int i = 0; i < V2_NOUT; i++)
        if (!strcmp(name->valuestring, out_names[i])) w = i;
    if (w < 0)
        return v2_fail(err, errlen, "unexpected inference output '%.64s' (outputs: probabilities, embedding, attention)",
                    name->valuestring);
    v2_output_req *r = &rq->out[w];
    if (r->want) return v2_fail(err, errlen, "output '%s' requested twice", out_names[w]);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "parameters");
    if (check_params(p, out_names[w], err, errlen)) return -1;
    r->want = 1;
    rq->order[rq->nout++] = w;
    if ((r->binary = param_bool(p, "binary_data", binary_default)) < 0)
        return v2_fail(err, errlen, "output '%s': \"binary_data\" must be a boolean", out_names[w]);
    long long k = 0;
    int got = param_int(p, "classification", 1, m->max_classification, &k);
    if (got < 0 || (got && w != V2_OUT_PROBS))
        return v2_fail(err, errlen, "output '%s': \"classification\" must be an integer in [1, %d], on probabilities only",
                    out_names[w], m->max_classification);
    r->classification = (int)k;
    if ((r->normalize = param_bool(p, "normalize", 0)) < 0 || (r->normalize && w != V2_OUT_EMBEDDING))
        return v2_fail(err, errlen, "output '%s': \"normalize\" is a boolean of embedding", out_names[w]);
    const cJSON *mode = p ? cJSON_GetObjectItemCaseSensitive(p, "mode") : NULL;
    if (mode) {
        if (w != V2_OUT_ATTENTION || !cJSON_IsString(mode) ||
            (strcmp(mode->valuestring, "cls") && strcmp(mode->valuestring, "rollout")))
            return v2_fail(err, errlen, "output '%s': \"mode\" is \"cls\" or \"rollout\", of attention", out_names[w]);
        r->rollout = !strcmp(mode->valuestring, "rollout");
    }
    return 0;
}

static int parse_outputs(const cJSON *outs, const v2_model *m, int binary_default, v2_request *rq,
                         char *err, size_t errlen) {
    if (!outs) {                                    /* all of the model's outputs */
        for (int i = 0; i < V2_NOUT; i++) {
            rq->out[i].want = 1;
            rq->out[i].binary = binary_default;
            rq->order[rq->nout++] = i;
        }
        return 0;
    }
    if (!cJSON_IsArray(outs) || cJSON_GetArraySize(outs) == 0)
        return v2_fail(err, errlen, "\"outputs\" must be a non-empty array");
    const cJSON *o;
    cJSON_ArrayForEach(o, outs)
        if (parse_output(o, m, binary_default, rq, err, errlen)) return -1;
    return 0;
}

/* ---- input shape and data -------------------------------------------------------------- */

/* shape: array of non-negative integers, at most 4 dims */
static int parse_shape(const cJSON *s, int64_t *shape, int *ndim, char *err, size_t errlen) {
    if (!cJSON_IsArray(s)) return v2_fail(err, errlen, "input \"shape\" must be an array of integers");
    int n = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, s) {
        if (n >= 4) return v2_fail(err, errlen, "input shape has too many dimensions");
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 1e12 || d->valuedouble != floor(d->valuedouble))
            return v2_fail(err, errlen, "input shape dimensions must be non-negative integers");
        shape[n++] = (int64_t)d->valuedouble;
    }
    *ndim = n;
    return 0;
}

/* the JSON data of a tensor, flattened (row major, nested arrays or flat): calls visit on every
 * leaf; at most limit leaves (-1 past it) */
typedef int (*leaf_fn)(const cJSON *leaf, long long idx, void *arg);
static long long walk_data(const cJSON *a, int depth, long long at, long long limit, leaf_fn fn, void *arg) {
    if (!cJSON_IsArray(a)) {
        if (at >= limit) return -1;
        return fn(a, at, arg) ? -2 : at + 1;
    }
    if (depth >= MAX_NEST) return -2;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        at = walk_data(e, depth + 1, at, limit, fn, arg);
        if (at < 0) return at;
    }
    return at;
}

typedef struct { uint8_t *body; size_t w; const uint8_t **data; size_t *lens; char *err; size_t errlen; } img_ctx;
static int leaf_image(const cJSON *leaf, long long idx, void *arg) {
    img_ctx *c = arg;
    if (!cJSON_IsString(leaf)) { v2_fail(c->err, c->errlen, "input 'image': element %lld is not a base64 string", idx); return -1; }
    return jb_decode_image(leaf, (int)idx, c->body, &c->w, c->data, c->lens, c->err, c->errlen) ? -1 : 0;
}

typedef struct { float *dst; char *err; size_t errlen; } f32_ctx;
static int leaf_f32(const cJSON *leaf, long long idx, void *arg) {
    f32_ctx *c = arg;
    if (!cJSON_IsNumber(leaf) || !isfinite(leaf->valuedouble) || fabs(leaf->valuedouble) > 3.0e38) {
        v2_fail(c->err, c->errlen, "input 'pixel_values': element %lld is not a finite FP32 number", idx);
        return -1;
    }
    c->dst[idx] = (float)leaf->valuedouble;
    return 0;
}

/* BYTES binary data: n elements of a 4-byte little-endian length and the bytes */
static int binary_images(const uint8_t *p, size_t size, int n, const uint8_t **data, size_t *lens, char *err,
                         size_t errlen) {
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        if (size - at < 4) return v2_fail(err, errlen, "input 'image': binary data ends before element %d", i);
        uint32_t l = (uint32_t)p[at] | (uint32_t)p[at + 1] << 8 | (uint32_t)p[at + 2] << 16 | (uint32_t)p[at + 3] << 24;
        at += 4;
        if (l > size - at) return v2_fail(err, errlen, "input 'image': element %d's length %u runs past the binary data", i, l);
        if (l == 0) return v2_fail(err, errlen, "input 'image': element %d is empty", i);
        data[i] = p + at;
        lens[i] = l;
        at += l;
    }
    if (at != size) return v2_fail(err, errlen, "input 'image': %zu bytes of binary data after the %d elements of its shape", size - at, n);
    return 0;
}

/* ---- the input ------------------------------------------------------------------------- */

typedef struct {
    uint8_t *body;
    const uint8_t *bin;        /* binary data of this input, or NULL */
    size_t bin_size;
} input_src;

static int parse_image_input(const cJSON *in, const int64_t *shape, int ndim, const v2_model *m,
                             const input_src *src, v2_request *rq, char *err, size_t errlen) {
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(in, "datatype");
    if (strcmp(dt->valuestring, "BYTES") != 0)
        return v2_fail(err, errlen, "input 'image': datatype must be BYTES (encoded JPEG/PNG), got %.16s", dt->valuestring);
    if (!(ndim == 1 || (ndim == 2 && shape[1] == 1)))
        return v2_fail(err, errlen, "input 'image': shape must be [N] or [N, 1]");
    if (shape[0] < 1 || shape[0] > m->max_images)
        return v2_fail(err, errlen, "input 'image': batch size %lld outside [1, %d]", (long long)shape[0], m->max_images);
    rq->n = (int)shape[0];
    if (src->bin) return binary_images(src->bin, src->bin_size, rq->n, rq->data, rq->len, err, errlen);
    img_ctx c = {src->body, 0, rq->data, rq->len, err, errlen};
    err[0] = '\0';
    long long got = walk_data(cJSON_GetObjectItemCaseSensitive(in, "data"), 0, 0, rq->n, leaf_image, &c);
    if (got == -2 && err[0]) return -1;
    if (got != rq->n) return v2_fail(err, errlen, "input 'image': data must hold exactly %d base64 strings (its shape)", rq->n);
    return 0;
}

static int parse_pixel_input(const cJSON *in, const int64_t *shape, int ndim, const v2_model *m,
                             const input_src *src, v2_request *rq, char *err, size_t errlen) {
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(in, "datatype");
    if (strcmp(dt->valuestring, "FP32") != 0)
        return v2_fail(err, errlen, "input 'pixel_values': datatype must be FP32, got %.16s", dt->valuestring);
    if (ndim != 4 || shape[1] != 3 || shape[2] != m->height || shape[3] != m->width)
        return v2_fail(err, errlen, "input 'pixel_values': shape must be [N, 3, %d, %d]", m->height, m->width);
    if (shape[0] < 1 || shape[0] > m->max_images)
        return v2_fail(err, errlen, "input 'pixel_values': batch size %lld outside [1, %d]", (long long)shape[0], m->max_images);
    rq->n = (int)shape[0];
    rq->pixels = 1;
    size_t per = (size_t)3 * (size_t)m->height * (size_t)m->width;
    size_t total = per * (size_t)rq->n;
    const uint8_t *base;
    if (src->bin) {
        if (src->bin_size != total * sizeof(float))
            return v2_fail(err, errlen, "input 'pixel_values': binary_data_size %zu, the shape needs %zu", src->bin_size, total * sizeof(float));
        for (size_t i = 0; i < total; i++) {
            float v;
            memcpy(&v, src->bin + i * sizeof v, sizeof v);
            if (!isfinite(v)) return v2_fail(err, errlen, "input 'pixel_values': element %zu is not finite", i);
        }
        base = src->bin;
    } else {
        if (!(rq->pixel_buf = malloc(total * sizeof(float)))) return v2_fail(err, errlen, "out of memory");
        f32_ctx c = {rq->pixel_buf, err, errlen};
        err[0] = '\0';
        long long got = walk_data(cJSON_GetObjectItemCaseSensitive(in, "data"), 0, 0, (long long)total, leaf_f32, &c);
        if (got == -2 && err[0]) return -1;
        if (got != (long long)total)
            return v2_fail(err, errlen, "input 'pixel_values': data must hold exactly %zu numbers (its shape)", total);
        base = (const uint8_t *)rq->pixel_buf;
    }
    for (int i = 0; i < rq->n; i++) {
        rq->data[i] = base + (size_t)i * per * sizeof(float);
        rq->len[i] = per * sizeof(float);
    }
    return 0;
}

static int parse_input(const cJSON *in, const v2_model *m, input_src *src, v2_request *rq, char *err, size_t errlen) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(in, "name");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(in, "datatype");
    if (!cJSON_IsObject(in) || !cJSON_IsString(name) || !cJSON_IsString(dt))
        return v2_fail(err, errlen, "each input must be an object with \"name\", \"shape\" and \"datatype\"");
    int is_image = !strcmp(name->valuestring, "image");
    if (!is_image && strcmp(name->valuestring, "pixel_values") != 0)
        return v2_fail(err, errlen, "unexpected inference input '%.64s' (inputs: image, pixel_values)", name->valuestring);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(in, "parameters");
    if (check_params(p, name->valuestring, err, errlen)) return -1;
    int64_t shape[4];
    int ndim = 0;
    if (parse_shape(cJSON_GetObjectItemCaseSensitive(in, "shape"), shape, &ndim, err, errlen)) return -1;
    long long bsize = 0;
    int has_bin = param_int(p, "binary_data_size", 0, (long long)1 << 50, &bsize);
    if (has_bin < 0) return v2_fail(err, errlen, "input '%s': \"binary_data_size\" must be a non-negative integer", name->valuestring);
    int has_data = cJSON_GetObjectItemCaseSensitive(in, "data") != NULL;
    if (has_bin == has_data)
        return v2_fail(err, errlen, "input '%s': give either \"data\" or the \"binary_data_size\" parameter", name->valuestring);
    if (has_bin) {
        if ((unsigned long long)bsize != src->bin_size)
            return v2_fail(err, errlen, "input '%s': binary_data_size %lld, but %zu bytes follow the JSON header",
                        name->valuestring, bsize, src->bin_size);
    } else {
        src->bin = NULL;
    }
    return is_image ? parse_image_input(in, shape, ndim, m, src, rq, err, errlen)
                    : parse_pixel_input(in, shape, ndim, m, src, rq, err, errlen);
}

/* ---- the request ----------------------------------------------------------------------- */

static int parse_root(const cJSON *root, const v2_model *m, input_src *src, v2_request *rq, char *err, size_t errlen) {
    if (!cJSON_IsObject(root)) return v2_fail(err, errlen, "the inference request must be a JSON object");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    if (id) {
        if (!cJSON_IsString(id) || strlen(id->valuestring) > V2_ID_MAX)
            return v2_fail(err, errlen, "\"id\" must be a string of at most %d bytes", V2_ID_MAX);
        snprintf(rq->id, sizeof rq->id, "%s", id->valuestring);
        rq->has_id = 1;
    }
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "parameters");
    if (check_params(p, "request", err, errlen)) return -1;
    int bin_out = param_bool(p, "binary_data_output", 0);
    if (bin_out < 0) return v2_fail(err, errlen, "\"binary_data_output\" must be a boolean");
    const cJSON *ins = cJSON_GetObjectItemCaseSensitive(root, "inputs");
    if (!cJSON_IsArray(ins) || cJSON_GetArraySize(ins) == 0)
        return v2_fail(err, errlen, "\"inputs\" must be a non-empty array");
    if (cJSON_GetArraySize(ins) != 1)
        return v2_fail(err, errlen, "expected 1 input (image or pixel_values), got %d", cJSON_GetArraySize(ins));
    if (parse_input(ins->child, m, src, rq, err, errlen)) return -1;
    if (!src->bin && src->bin_size)
        return v2_fail(err, errlen, "%zu bytes follow the JSON header but no input has binary_data_size", src->bin_size);
    return parse_outputs(cJSON_GetObjectItemCaseSensitive(root, "outputs"), m, bin_out, rq, err, errlen);
}

int v2_parse_infer(uint8_t *body, size_t len, long long header_len, const v2_model *m,
                   const uint8_t **data, size_t *lens, v2_request *rq, char *err, size_t errlen) {
    memset(rq, 0, sizeof *rq);
    rq->data = data;
    rq->len = lens;
    size_t jl = len;
    if (header_len >= 0) {
        if (header_len == 0 || (unsigned long long)header_len > len)
            return v2_fail(err, errlen, "Inference-Header-Content-Length %lld outside [1, %zu] (the body's length)", header_len, len);
        jl = (size_t)header_len;
    }
    if (jl == 0) return v2_fail(err, errlen, "empty request body: send an inference request");
    /* a JSON FP32 pixel tensor is one value per element: bounded by the largest request */
    long max_values = JB_MAX_VALUES + 3L * m->height * m->width * (m->max_images > 0 ? m->max_images : 1);
    cJSON *root = jb_json_parse(body, jl, max_values, NULL, err, errlen);
    if (!root) return -1;
    input_src src = {body, body + jl, len - jl};
    int rc = parse_root(root, m, &src, rq, err, errlen);
    cJSON_Delete(root);
    if (rc) v2_request_free(rq);
    return rc;
}

void v2_request_free(v2_request *rq) {
    if (!rq) return;
    free(rq->pixel_buf);
    rq->pixel_buf = NULL;
}

/* ---- the response ---------------------------------------------------------------------- */

/* the shortest decimal (6 to 9 significant digits) that reads back as v */
static void f32_text(char *num, size_t n, float v) {
    int p = 6;
    do snprintf(num, n, "%.*g", p++, (double)v);
    while (p <= 9 && strtof(num, NULL) != v);
}

void v2_class_string(char *buf, size_t n, float score, int index, const char *label) {
    char num[32];
    f32_text(num, sizeof num, score);
    if (label && *label) snprintf(buf, n, "%s:%d:%s", num, index, label);
    else snprintf(buf, n, "%s:%d", num, index);
}

static size_t numel(const v2_tensor *t) {
    size_t e = 1;
    for (int d = 0; d < t->ndim; d++) e *= (size_t)t->shape[d];
    return e;
}

/* the FP32 values as a JSON array text, each the shortest decimal that reads back as the float */
char *v2_f32_array_json(const float *v, size_t n) {
    char *s = malloc(n * 18 + 3);
    if (!s) return NULL;
    size_t w = 0;
    s[w++] = '[';
    for (size_t i = 0; i < n; i++) {
        char num[32];
        f32_text(num, sizeof num, v[i]);
        if (i) s[w++] = ',';
        size_t l = strlen(num);
        memcpy(s + w, num, l);
        w += l;
    }
    s[w++] = ']';
    s[w] = '\0';
    return s;
}

/* binary size of t: FP32 4 bytes an element; BYTES a 4-byte length + the bytes */
static size_t binary_size(const v2_tensor *t) {
    size_t e = numel(t), s = 0;
    if (!t->bytes) return e * sizeof(float);
    for (size_t i = 0; i < e; i++) s += 4 + strlen(t->strs[i]);
    return s;
}

static int add_output(cJSON *outs, const v2_tensor *t) {
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(outs, o)) { cJSON_Delete(o); return -1; }
    cJSON_AddStringToObject(o, "name", t->name);
    cJSON_AddStringToObject(o, "datatype", t->bytes ? "BYTES" : "FP32");
    cJSON *sh = cJSON_AddArrayToObject(o, "shape");
    for (int d = 0; sh && d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
    if (t->binary) {
        cJSON *p = cJSON_AddObjectToObject(o, "parameters");
        return p && cJSON_AddNumberToObject(p, "binary_data_size", (double)binary_size(t)) ? 0 : -1;
    }
    if (t->bytes) {
        cJSON *a = cJSON_AddArrayToObject(o, "data");
        for (size_t i = 0; a && i < numel(t); i++) cJSON_AddItemToArray(a, cJSON_CreateString(t->strs[i]));
        return a ? 0 : -1;
    }
    char *txt = v2_f32_array_json(t->f32, numel(t));
    cJSON *raw = txt ? cJSON_CreateRaw(txt) : NULL;
    free(txt);
    return raw && cJSON_AddItemToObject(o, "data", raw) ? 0 : -1;
}

static void put_binary(uint8_t *dst, const v2_tensor *t) {
    size_t e = numel(t);
    if (!t->bytes) { memcpy(dst, t->f32, e * sizeof(float)); return; }
    for (size_t i = 0; i < e; i++) {
        uint32_t l = (uint32_t)strlen(t->strs[i]);
        uint8_t le[4] = {(uint8_t)l, (uint8_t)(l >> 8), (uint8_t)(l >> 16), (uint8_t)(l >> 24)};
        memcpy(dst, le, 4);
        memcpy(dst + 4, t->strs[i], l);
        dst += 4 + l;
    }
}

char *v2_write_response(const char *model_name, const char *model_version, const v2_request *rq,
                        const v2_tensor *outs, int nout, size_t *len, size_t *header_len) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddStringToObject(root, "model_name", model_name);
    if (model_version) cJSON_AddStringToObject(root, "model_version", model_version);
    if (rq && rq->has_id) cJSON_AddStringToObject(root, "id", rq->id);
    cJSON *arr = cJSON_AddArrayToObject(root, "outputs");
    int bad = !arr;
    size_t bin = 0;
    for (int i = 0; i < nout && !bad; i++) {
        bad = add_output(arr, &outs[i]);
        if (outs[i].binary) bin += binary_size(&outs[i]);
    }
    char *json = bad ? NULL : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) return NULL;
    size_t jl = strlen(json);
    char *body = realloc(json, jl + bin + 1);
    if (!body) { free(json); return NULL; }
    size_t at = jl;
    for (int i = 0; i < nout; i++)
        if (outs[i].binary) { put_binary((uint8_t *)body + at, &outs[i]); at += binary_size(&outs[i]); }
    body[at] = '\0';
    *len = at;
    *header_len = jl;
    return body;
}
