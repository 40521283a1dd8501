/* embed.c: POST /embed and GET /openapi.json (embed.h).  An embedding answer mirrors
 * /classify's: one entry per image in upload order (a failed image has its own error), the
 * largest stage times, the largest batch; each vector printed as the shortest decimals that read
 * back as the same floats. */
#include "embed.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assets.h"
#include "util.h"
#include "v2proto.h"

#define EMBED_MAX_IMAGES SRV_MAX_PARTS    /* images per request, whatever --max-images says */

/* the `normalize` option: the query's, else the JSON body's; -1 when malformed */
static int normalize_option(srv_conn *c, const jb_params *jp) {
    const char *q = srv_conn_query(c, "normalize");
    if (q) {
        if (!strcmp(q, "true") || !strcmp(q, "1")) return 1;
        if (!strcmp(q, "false") || !strcmp(q, "0")) return 0;
        return -1;
    }
    if (jp->normalize == 2) return -1;
    return jp->normalize == 1;
}

static void l2_normalize(float *v, int d) {
    double ss = 0;
    for (int j = 0; j < d; j++) ss += (double)v[j] * v[j];
    double n = sqrt(ss) > 1e-12 ? sqrt(ss) : 1e-12;
    for (int j = 0; j < d; j++) v[j] = (float)(v[j] / n);
}

static double round_sig(double v) {
    char b[32];
    snprintf(b, sizeof b, "%.4g", v);
    return strtod(b, NULL);
}

typedef struct embed_ctx {
    srv_state *st;
    int normalize;
} embed_ctx;

static void embed_done(srv_conn *c, srv_job *job, void *arg) {
    const embed_ctx *x = arg;
    srv_state *st = x->st;
    int normalize = x->normalize, d = st->mc->feature_dim;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", st->model_name);
    cJSON_AddNumberToObject(root, "dim", d);
    cJSON_AddBoolToObject(root, "normalized", normalize);
    cJSON *results = cJSON_AddArrayToObject(root, "results");
    double dec = 0, que = 0, inf = 0;
    int bs = 0, nok = 0, first_err = -1;
    for (int i = 0; i < job->n; i++) {
        srv_item *it = &job->items[i];
        cJSON *r = cJSON_CreateObject();
        cJSON_AddItemToArray(results, r);
        if (it->http != 200) {
            cJSON_AddItemToObject(r, "error", srv_error_obj(it->code ? it->code : "internal", it->err));
            if (first_err < 0) first_err = i;
            continue;
        }
        nok++;
        if (normalize) l2_normalize(it->features, d);
        char *txt = v2_f32_array_json(it->features, (size_t)d);
        cJSON *raw = txt ? cJSON_CreateRaw(txt) : NULL;
        free(txt);
        if (!raw) { cJSON_Delete(root); srv_reply_error(c, 500, "internal", "out of memory"); return; }
        cJSON_AddItemToObject(r, "embedding", raw);
        if (it->decode_s > dec) dec = it->decode_s;
        if (it->queue_s > que) que = it->queue_s;
        if (it->infer_s > inf) inf = it->infer_s;
        if (it->batch_size > bs) bs = it->batch_size;
    }
    cJSON *t = cJSON_AddObjectToObject(root, "timing");
    cJSON_AddNumberToObject(t, "decode_ms", round_sig(dec * 1e3));
    cJSON_AddNumberToObject(t, "queue_ms", round_sig(que * 1e3));
    cJSON_AddNumberToObject(t, "infer_ms", round_sig(inf * 1e3));
    cJSON_AddNumberToObject(t, "total_ms", round_sig((vit_now() - srv_conn_start_time(c)) * 1e3));
    cJSON_AddNumberToObject(root, "batch_size", bs);
    int status = 200;
    if (nok == 0 && first_err >= 0) {
        srv_item *it = &job->items[first_err];
        status = it->http;
        cJSON_AddItemToObject(root, "error", srv_error_obj(it->code ? it->code : "internal", it->err));
    }
    srv_reply_json(c, status, root);
}

static void embed_handle(srv_conn *c, void *ctx) {
    srv_state *st = ctx;
    if (!atomic_load(&st->ready)) {
        srv_conn_set_header(c, "Retry-After", "1");
        srv_reply_error(c, 503, "not_ready", "model is loading");
        return;
    }
    const uint8_t *data[EMBED_MAX_IMAGES];
    size_t len[EMBED_MAX_IMAGES];
    int max = st->cfg.max_images < EMBED_MAX_IMAGES ? st->cfg.max_images : EMBED_MAX_IMAGES;
    jb_params jp = {.normalize = -1};
    int n = srv_conn_images(c, data, len, max, &jp);
    if (n < 0) return;
    int normalize = normalize_option(c, &jp);
    if (normalize < 0) { srv_reply_error(c, 400, "bad_request", "normalize must be true or false"); return; }
    srv_conn_set_images(c, n);
    srv_job *job = srv_job_new(st->batcher, n, SRV_WANT_FEATURES, 1);
    embed_ctx *x = malloc(sizeof *x);
    if (!job || !x) { srv_job_free(job); free(x); srv_reply_error(c, 500, "internal", "out of memory"); return; }
    *x = (embed_ctx){.st = st, .normalize = normalize};
    job->user = x;                          /* freed with the job, answered or not */
    job->user_free = free;
    for (int i = 0; i < n; i++) { job->items[i].data = data[i]; job->items[i].len = len[i]; }
    srv_conn_submit(c, job, embed_done, x);
}

static void openapi_handle(srv_conn *c, void *ctx) {
    (void)ctx;
    const srv_asset *doc = srv_asset_find("/openapi.json");   /* server/openapi.json, compiled in */
    if (!doc) { srv_reply_error(c, 500, "internal", "no OpenAPI document compiled in"); return; }
    char *b = malloc(doc->len + 1);
    if (!b) { srv_reply_error(c, 500, "internal", "out of memory"); return; }
    memcpy(b, doc->data, doc->len + 1);
    srv_reply_raw(c, 200, b, doc->len, doc->ctype);
}

int embed_register(srv_http *h, srv_state *st) {
    if (srv_http_route(h, "/embed", "POST", embed_handle, st) != 0) return -1;
    return srv_http_route(h, "/openapi.json", "GET, HEAD", openapi_handle, st);
}
