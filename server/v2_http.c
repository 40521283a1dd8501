/* v2_http.c: the Open Inference Protocol routes (v2_http.h): health and metadata answers, and
 * inference: parse (v2proto.c), one batcher job for the request's images, then the outputs
 * gathered from the items (probabilities, classification strings, embeddings, attention). */
#include "v2_http.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "v2proto.h"

#define V2_MODEL_VERSION "1"
#define V2_MAX_IMAGES 64       /* images per request, whatever --max-images says (as multipart parts) */

/* ---- replies ---------------------------------------------------------------------------- */

static void v2_error(srv_conn *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void v2_error(srv_conn *c, int status, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "error", msg);
    srv_reply_json(c, status, r);
}

/* a health answer: the status alone, empty body */
static void empty(srv_conn *c, int status) {
    char *b = malloc(1);
    if (b) b[0] = '\0';
    srv_reply_raw(c, status, b, 0, NULL);
}

static int is_get(srv_conn *c) {
    const char *m = srv_conn_method(c);
    return !strcmp(m, "GET") || !strcmp(m, "HEAD");
}

static int wrong_method(srv_conn *c, const char *allow) {
    srv_conn_set_header(c, "Allow", allow);
    v2_error(c, 405, "%s not allowed on %s (allowed: %s)", srv_conn_method(c), srv_conn_path(c), allow);
    return 1;
}

/* ---- metadata ---------------------------------------------------------------------------- */

static void server_metadata(srv_conn *c) {
    const vit_build_info *bi = vit_build();
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "name", "vitd");
    cJSON_AddStringToObject(r, "version", bi->version);
    cJSON *ext = cJSON_AddArrayToObject(r, "extensions");
    cJSON_AddItemToArray(ext, cJSON_CreateString("binary_tensor_data"));
    cJSON_AddItemToArray(ext, cJSON_CreateString("classification"));
    srv_reply_json(c, 200, r);
}

static void add_tensor(cJSON *arr, const char *name, const char *dt, const int *shape, int nd) {
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "name", name);
    cJSON_AddStringToObject(t, "datatype", dt);
    cJSON_AddItemToObject(t, "shape", cJSON_CreateIntArray(shape, nd));
    cJSON_AddItemToArray(arr, t);
}

static void model_metadata(srv_conn *c, srv_state *st) {
    const vit_config *m = st->mc;
    vit_head *h = batcher_get_head(st->batcher);
    int classes = vit_head_num_classes(h);
    vit_head_release(h);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "name", st->model_name);
    cJSON *v = cJSON_AddArrayToObject(r, "versions");
    cJSON_AddItemToArray(v, cJSON_CreateString(V2_MODEL_VERSION));
    cJSON_AddStringToObject(r, "platform", "vitd");
    cJSON *in = cJSON_AddArrayToObject(r, "inputs");
    add_tensor(in, "image", "BYTES", (int[]){-1}, 1);
    add_tensor(in, "pixel_values", "FP32", (int[]){-1, 3, m->preprocess.out_h, m->preprocess.out_w}, 4);
    cJSON *out = cJSON_AddArrayToObject(r, "outputs");
    add_tensor(out, v2_output_name(V2_OUT_PROBS), "FP32", (int[]){-1, classes}, 2);
    add_tensor(out, v2_output_name(V2_OUT_EMBEDDING), "FP32", (int[]){-1, m->feature_dim}, 2);
    add_tensor(out, v2_output_name(V2_OUT_ATTENTION), "FP32", (int[]){-1, m->grid_h, m->grid_w}, 3);
    srv_reply_json(c, 200, r);
}

/* ---- inference: the answer ------------------------------------------------------------- */

typedef struct infer_ctx {
    v2_request rq;
    srv_state *st;
    float *buf;                /* the FP32 outputs gathered from the items */
    char *strs;                /* classification strings, 128 bytes each */
    const char **sptr;
} infer_ctx;

static void infer_ctx_free(void *p) {
    infer_ctx *x = p;
    if (!x) return;
    v2_request_free(&x->rq);
    free(x->buf);
    free(x->strs);
    free((void *)x->sptr);
    free(x);
}

/* the first failed image's status, with its message; 0 when every image succeeded */
static int first_failure(srv_job *job, char *msg, size_t n) {
    for (int i = 0; i < job->n; i++) {
        srv_item *it = &job->items[i];
        if (it->http != 200) {
            snprintf(msg, n, "image %d: %s", i, it->err);
            return it->http ? it->http : 500;
        }
    }
    return 0;
}

/* classification strings "score:index:label" of every item: (n, k) */
static int fill_classes(infer_ctx *x, srv_job *job, int k, v2_tensor *t) {
    size_t cnt = (size_t)job->n * (size_t)k;
    x->strs = malloc(cnt * 128);
    x->sptr = malloc(cnt * sizeof *x->sptr);
    if (!x->strs || !x->sptr) return -1;
    for (int i = 0; i < job->n; i++) {
        srv_item *it = &job->items[i];
        for (int j = 0; j < k; j++) {
            char *s = x->strs + ((size_t)i * (size_t)k + (size_t)j) * 128;
            if (j < it->k) v2_class_string(s, 128, it->topk_score[j], it->topk_idx[j], vit_head_label(it->head, it->topk_idx[j]));
            else s[0] = '\0';                 /* a head with fewer classes than k */
            x->sptr[(size_t)i * (size_t)k + (size_t)j] = s;
        }
    }
    *t = (v2_tensor){.name = v2_output_name(V2_OUT_PROBS), .bytes = 1, .ndim = 2, .shape = {job->n, k}, .strs = x->sptr};
    return 0;
}

/* one FP32 output of every item into dst: (n, d) */
static int fill_f32(srv_job *job, int which, int normalize, float *dst, int d) {
    for (int i = 0; i < job->n; i++) {
        srv_item *it = &job->items[i];
        const float *src = which == V2_OUT_PROBS ? it->probs : which == V2_OUT_EMBEDDING ? it->features : it->attn;
        if (which == V2_OUT_PROBS && it->nprobs != d) return -1;      /* heads swapped mid-request */
        float *row = dst + (size_t)i * (size_t)d;
        memcpy(row, src, sizeof(float) * (size_t)d);
        if (normalize) {
            double ss = 0;
            for (int j = 0; j < d; j++) ss += (double)row[j] * row[j];
            double nrm = sqrt(ss) > 1e-12 ? sqrt(ss) : 1e-12;
            for (int j = 0; j < d; j++) row[j] = (float)(row[j] / nrm);
        }
    }
    return 0;
}

static void infer_done(srv_conn *c, srv_job *job, void *arg) {
    infer_ctx *x = arg;
    const vit_config *m = x->st->mc;
    char msg[300];
    int fail = first_failure(job, msg, sizeof msg);
    if (fail) { v2_error(c, fail, "%s", msg); return; }
    int n = job->n, classes = job->items[0].nprobs;
    int dims[V2_NOUT] = {classes, m->feature_dim, m->num_patches};
    size_t total = 0;
    for (int w = 0; w < V2_NOUT; w++) total += (size_t)n * (size_t)dims[w];
    if (!(x->buf = malloc(sizeof(float) * total))) { v2_error(c, 500, "out of memory"); return; }
    v2_tensor outs[V2_NOUT];
    float *at = x->buf;
    for (int o = 0; o < x->rq.nout; o++) {
        int w = x->rq.order[o];
        const v2_output_req *r = &x->rq.out[w];
        if (w == V2_OUT_PROBS && r->classification) {
            if (fill_classes(x, job, r->classification, &outs[o])) { v2_error(c, 500, "out of memory"); return; }
        } else {
            if (fill_f32(job, w, r->normalize, at, dims[w])) {
                v2_error(c, 503, "the active head changed its classes during the request: retry");
                return;
            }
            outs[o] = (v2_tensor){.name = v2_output_name(w), .ndim = 2, .shape = {n, dims[w]}, .f32 = at};
            if (w == V2_OUT_ATTENTION)
                outs[o] = (v2_tensor){.name = v2_output_name(w), .ndim = 3, .shape = {n, m->grid_h, m->grid_w}, .f32 = at};
            at += (size_t)n * (size_t)dims[w];
        }
        outs[o].binary = r->binary;
    }
    /* probabilities come from a head: X-Head-Version and the access log name the first image's */
    if (x->rq.out[V2_OUT_PROBS].want) srv_conn_set_head_version(c, job->items[0].head_version);
    size_t len = 0, hl = 0;
    char *body = v2_write_response(x->st->model_name, V2_MODEL_VERSION, &x->rq, outs, x->rq.nout, &len, &hl);
    if (!body) { v2_error(c, 500, "out of memory"); return; }
    if (hl == len) {                        /* JSON only: a trailing newline, as every JSON answer */
        body[len] = '\n';
        srv_reply_raw(c, 200, body, len + 1, "application/json");
        return;
    }
    char hv[32];
    snprintf(hv, sizeof hv, "%zu", hl);
    srv_conn_set_header(c, "Inference-Header-Content-Length", hv);
    srv_reply_raw(c, 200, body, len, "application/octet-stream");
}

/* ---- inference: the request ------------------------------------------------------------- */

/* the request's Inference-Header-Content-Length: -1 absent, -2 malformed */
static long long header_length(srv_conn *c) {
    const char *h = srv_conn_header(c, "Inference-Header-Content-Length");
    if (!h) return -1;
    char *end;
    long long v = strtoll(h, &end, 10);
    return (*h && !*end && v >= 0) ? v : -2;
}

static int body_type_ok(srv_conn *c) {
    const char *ce = srv_conn_header(c, "Content-Encoding");
    if (ce && *ce && strcasecmp(ce, "identity") != 0) {
        v2_error(c, 415, "Content-Encoding %.40s not supported", ce);
        return 0;
    }
    const char *ct = srv_conn_header(c, "Content-Type");
    size_t tl = ct ? strcspn(ct, "; ") : 0;
    if (ct && tl && !(tl == 16 && !strncasecmp(ct, "application/json", 16)) &&
        !(tl == 24 && !strncasecmp(ct, "application/octet-stream", 24))) {
        v2_error(c, 415, "Content-Type %.*s not supported: application/json, or application/octet-stream with "
                 "Inference-Header-Content-Length", (int)(tl < 80 ? tl : 80), ct);
        return 0;
    }
    return 1;
}

static int job_want(const v2_request *rq) {
    int want = 0;
    if (rq->out[V2_OUT_PROBS].want) want |= rq->out[V2_OUT_PROBS].classification ? 0 : SRV_WANT_PROBS;
    if (rq->out[V2_OUT_EMBEDDING].want) want |= SRV_WANT_FEATURES;
    if (rq->out[V2_OUT_ATTENTION].want) want |= rq->out[V2_OUT_ATTENTION].rollout ? SRV_WANT_ROLLOUT : SRV_WANT_ATTN_CLS;
    return want;
}

static void infer(srv_conn *c, srv_state *st) {
    if (!body_type_ok(c)) return;
    long long hl = header_length(c);
    if (hl == -2) { v2_error(c, 400, "Inference-Header-Content-Length must be a non-negative integer"); return; }
    infer_ctx *x = calloc(1, sizeof *x);
    if (!x) { v2_error(c, 500, "out of memory"); return; }
    const uint8_t *data[V2_MAX_IMAGES];
    size_t lens[V2_MAX_IMAGES];
    vit_head *h = batcher_get_head(st->batcher);
    int classes = vit_head_num_classes(h);
    vit_head_release(h);
    int max = st->cfg.max_images < V2_MAX_IMAGES ? st->cfg.max_images : V2_MAX_IMAGES;
    v2_model vm = {.height = st->mc->preprocess.out_h, .width = st->mc->preprocess.out_w, .num_classes = classes,
                   .max_images = max, .max_classification = classes < SRV_TOPK_MAX ? classes : SRV_TOPK_MAX};
    size_t len = 0;
    uint8_t *body = (uint8_t *)srv_conn_body(c, &len);
    char err[300];
    if (v2_parse_infer(body, len, hl, &vm, data, lens, &x->rq, err, sizeof err) != 0) {
        free(x);
        v2_error(c, 400, "%s", err);
        return;
    }
    x->rq.data = NULL;                      /* the arrays are this frame's; the items keep the spans */
    x->rq.len = NULL;
    x->st = st;
    int k = x->rq.out[V2_OUT_PROBS].classification;
    srv_job *job = srv_job_new(st->batcher, x->rq.n, job_want(&x->rq), k ? k : 1);
    if (!job) { infer_ctx_free(x); v2_error(c, 500, "out of memory"); return; }
    job->user = x;
    job->user_free = infer_ctx_free;
    for (int i = 0; i < x->rq.n; i++) {
        job->items[i].data = data[i];
        job->items[i].len = lens[i];
        job->items[i].pixels = x->rq.pixels;
    }
    srv_conn_set_images(c, x->rq.n);
    srv_conn_submit(c, job, infer_done, x);
}

/* ---- routing ------------------------------------------------------------------------------ */

/* "/v2/models/<name>[/versions/<v>][/ready|/infer]": 0 and the pieces, or -1 (not this shape) */
typedef struct { char name[128]; char version[32]; int has_version; const char *op; } model_path;
static int parse_model_path(const char *p, model_path *mp) {
    memset(mp, 0, sizeof *mp);
    p += strlen("/v2/models/");
    size_t n = strcspn(p, "/");
    if (n == 0 || n >= sizeof mp->name) return -1;
    memcpy(mp->name, p, n);
    p += n;
    if (!strncmp(p, "/versions/", 10)) {
        p += 10;
        size_t vn = strcspn(p, "/");
        if (vn == 0 || vn >= sizeof mp->version) return -1;
        memcpy(mp->version, p, vn);
        mp->has_version = 1;
        p += vn;
    }
    if (!*p) mp->op = "";
    else if (!strcmp(p, "/ready")) mp->op = "ready";
    else if (!strcmp(p, "/infer")) mp->op = "infer";
    else return -1;
    return 0;
}

static void model_route(srv_conn *c, srv_state *st, const model_path *mp) {
    if (strcmp(mp->name, st->model_name) != 0 || (mp->has_version && strcmp(mp->version, V2_MODEL_VERSION) != 0)) {
        if (mp->has_version)
            v2_error(c, 404, "Request for unknown model: '%s' version %s is not found", mp->name, mp->version);
        else
            v2_error(c, 404, "Request for unknown model: '%s' is not found", mp->name);
        return;
    }
    int ready = atomic_load(&st->ready) && !atomic_load(&st->draining);
    if (!strcmp(mp->op, "ready")) {
        if (!is_get(c)) wrong_method(c, "GET, HEAD");
        else empty(c, ready ? 200 : 400);
        return;
    }
    if (!atomic_load(&st->ready)) {
        srv_conn_set_header(c, "Retry-After", "1");
        v2_error(c, 503, "model '%s' is loading", mp->name);
        return;
    }
    if (!strcmp(mp->op, "infer")) {
        if (strcmp(srv_conn_method(c), "POST") != 0) wrong_method(c, "POST");
        else infer(c, st);
        return;
    }
    if (!is_get(c)) wrong_method(c, "GET, HEAD");
    else model_metadata(c, st);
}

static void v2_handle(srv_conn *c, void *ctx) {
    srv_state *st = ctx;
    const char *p = srv_conn_path(c);
    if (!strcmp(p, "/v2") || !strcmp(p, "/v2/")) {
        if (!is_get(c)) wrong_method(c, "GET, HEAD");
        else server_metadata(c);
        return;
    }
    if (!strcmp(p, "/v2/health/live") || !strcmp(p, "/v2/health/ready")) {
        if (!is_get(c)) { wrong_method(c, "GET, HEAD"); return; }
        int ok = p[11] == 'l' || (atomic_load(&st->ready) && !atomic_load(&st->draining));
        empty(c, ok ? 200 : 400);
        return;
    }
    model_path mp;
    if (!strncmp(p, "/v2/models/", 11) && parse_model_path(p, &mp) == 0) {
        model_route(c, st, &mp);
        return;
    }
    v2_error(c, 404, "no such endpoint: %.200s", p);
}

int v2_http_register(srv_http *h, srv_state *st) {
    if (srv_http_route(h, "/v2", "GET, HEAD", v2_handle, st) != 0) return -1;
    return srv_http_route_prefix(h, "/v2/", v2_handle, st);
}
