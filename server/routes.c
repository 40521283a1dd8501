/* routes.c: the serving endpoints: POST /classify (and SageMaker's /invocations), GET /healthz,
 * /readyz (and /ping), /v1/models, /metrics.  Each handler gets the shared state as its route
 * context (see routes.h); the transport is http.c. */
#include "routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "describe.h"
#include "metrics.h"
#include "util.h"


/* a float as the shortest double that prints with `digits` significant digits (short JSON) */
static double round_sig(double v, int digits) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.*g", digits, v);
    return strtod(buf, NULL);
}

static void classify_done(srv_conn *c, srv_job *job, void *arg) {
    const srv_state *st = arg;
    const vit_config *mc = st->mc;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", st->model_name);
    cJSON *results = cJSON_AddArrayToObject(root, "results");
    double dec = 0, que = 0, inf = 0;
    int bs = 0, nok = 0, first_err = -1, head_version = 0;
    for (int i = 0; i < job->n; i++) {
        srv_item *it = &job->items[i];
        cJSON *r = cJSON_CreateObject();
        if (it->http != 200) {
            cJSON_AddItemToObject(r, "error", srv_error_obj(it->code ? it->code : "internal", it->err));
            if (first_err < 0) first_err = i;
        } else {
            nok++;
            if (!head_version) head_version = it->head_version;
            cJSON_AddNumberToObject(r, "head_version", it->head_version);
            cJSON *preds = cJSON_AddArrayToObject(r, "predictions");
            for (int k = 0; k < it->k; k++) {
                cJSON *p = cJSON_CreateObject();
                const char *label = vit_head_label(it->head, it->topk_idx[k]);
                cJSON_AddStringToObject(p, "label", label ? label : "");
                cJSON_AddNumberToObject(p, "index", it->topk_idx[k]);
                cJSON_AddNumberToObject(p, "score", round_sig(it->topk_score[k], 6));
                cJSON_AddItemToArray(preds, p);
            }
            if (it->attn) {
                cJSON *a = cJSON_AddObjectToObject(r, "attention");
                int grid[2] = {mc->grid_h, mc->grid_w};
                cJSON_AddItemToObject(a, "grid", cJSON_CreateIntArray(grid, 2));
                cJSON *vals = cJSON_AddArrayToObject(a, "values");
                for (int k = 0; k < mc->num_patches; k++)
                    cJSON_AddItemToArray(vals, cJSON_CreateNumber(round_sig(it->attn[k], 5)));
            }
        }
        cJSON_AddItemToArray(results, r);
        if (it->decode_s > dec) dec = it->decode_s;
        if (it->queue_s > que) que = it->queue_s;
        if (it->infer_s > inf) inf = it->infer_s;
        if (it->batch_size > bs) bs = it->batch_size;
    }
    cJSON *t = cJSON_AddObjectToObject(root, "timing");
    cJSON_AddNumberToObject(t, "decode_ms", round_sig(dec * 1e3, 4));
    cJSON_AddNumberToObject(t, "queue_ms", round_sig(que * 1e3, 4));
    cJSON_AddNumberToObject(t, "infer_ms", round_sig(inf * 1e3, 4));
    cJSON_AddNumberToObject(t, "total_ms", round_sig((vit_now() - srv_conn_start_time(c)) * 1e3, 4));
    cJSON_AddNumberToObject(root, "batch_size", bs);
    int status = 200;
    if (nok == 0 && first_err >= 0) {
        srv_item *it = &job->items[first_err];
        status = it->http;
        cJSON_AddItemToObject(root, "error", srv_error_obj(it->code ? it->code : "internal", it->err));
    }
    /* X-Head-Version and the access log: the first result's head (a request split across an
     * activation has two) */
    srv_conn_set_head_version(c, head_version);
    srv_reply_json(c, status, root);
}

/* 1 when the model is up; else replies 503 not_ready */
static int ready_or_503(srv_conn *c, const srv_state *st) {
    if (atomic_load(&st->ready)) return 1;
    srv_conn_set_header(c, "Retry-After", "1");
    srv_reply_error(c, 503, "not_ready", "model is loading");
    return 0;
}

/* top_k and attention from the query string, else the JSON body's; 0, or -1 after a 400 */
static int classify_options(srv_conn *c, const srv_state *st, const jb_params *jp, int *top_k, int *want) {
    *top_k = 5;
    *want = 0;
    const char *q = srv_conn_query(c, "top_k");
    if (q || jp->top_k || jp->top_k_invalid) {
        char *end = NULL;
        long v = q ? strtol(q, &end, 10) : jp->top_k;
        if ((q && (!*q || *end)) || (!q && jp->top_k_invalid) || v < 1 || v > st->cfg.max_top_k) {
            srv_reply_error(c, 400, "bad_request", "top_k must be an integer in [1, %d]", st->cfg.max_top_k);
            return -1;
        }
        *top_k = (int)v;
    }
    q = srv_conn_query(c, "attention");
    if (!q && jp->attention[0]) q = jp->attention;
    if (q) {
        if (!strcmp(q, "cls")) *want |= SRV_WANT_ATTN_CLS;
        else if (!strcmp(q, "rollout")) *want |= SRV_WANT_ROLLOUT;
        else if (*q && strcmp(q, "none") != 0) {
            srv_reply_error(c, 400, "bad_request", "attention must be cls or rollout");
            return -1;
        }
    }
    return 0;
}

static void h_classify(srv_conn *c, void *ctx) {
    srv_state *st = ctx;
    if (!ready_or_503(c, st)) return;
    const uint8_t *data[SRV_MAX_PARTS];
    size_t len[SRV_MAX_PARTS];
    int max = st->cfg.max_images < SRV_MAX_PARTS ? st->cfg.max_images : SRV_MAX_PARTS;
    jb_params jp = {.normalize = -1};
    int n = srv_conn_images(c, data, len, max, &jp);
    if (n < 0) return;
    if (jp.normalize != -1) {   /* an option of /embed's, not of /classify's */
        srv_reply_error(c, 400, "bad_request", "\"normalize\" is an option of /embed; /classify takes top_k and attention");
        return;
    }
    int top_k, want;
    if (classify_options(c, st, &jp, &top_k, &want) != 0) return;
    srv_conn_set_images(c, n);
    srv_job *job = srv_job_new(st->batcher, n, want, top_k);
    if (!job) { srv_reply_error(c, 500, "internal", "out of memory"); return; }
    for (int i = 0; i < n; i++) { job->items[i].data = data[i]; job->items[i].len = len[i]; }
    srv_conn_submit(c, job, classify_done, st);
}

static void h_healthz(srv_conn *c, void *ctx) {
    (void)ctx;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "status", "ok");
    srv_reply_json(c, 200, r);
}

static void h_readyz(srv_conn *c, void *ctx) {
    const srv_state *st = ctx;
    if (atomic_load(&st->draining)) {
        srv_reply_error(c, 503, "draining", "shutting down");
    } else if (!atomic_load(&st->ready)) {
        srv_reply_error(c, 503, "not_ready", "model is loading");
    } else if (batcher_saturated(st->batcher)) {
        srv_conn_set_header(c, "Retry-After", "1");
        srv_reply_error(c, 503, "saturated", "images are missing their deadlines while they wait: route elsewhere for now");
    } else {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "status", "ready");
        srv_reply_json(c, 200, r);
    }
}

static const char *device_str(vit_device d) { return d == VIT_DEVICE_CUDA ? "cuda" : d == VIT_DEVICE_CPU ? "cpu" : "auto"; }

static void h_models(srv_conn *c, void *ctx) {
    const srv_state *st = ctx;
    if (!ready_or_503(c, st)) return;
    const vit_config *m = st->mc;
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "models");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToArray(arr, o);
    cJSON_AddStringToObject(o, "id", st->model_name);
    cJSON_AddStringToObject(o, "path", st->cfg.model_dir);
    int head_version;
    vit_head *h = batcher_get_head_version(st->batcher, &head_version);
    vit_status ds = vit_describe_json(o, m, h);
    vit_head_release(h);
    if (ds != VIT_OK) {
        cJSON_Delete(root);
        srv_reply_error(c, 500, "internal", "out of memory");
        return;
    }
    cJSON_AddStringToObject(o, "device", device_str(batcher_device(st->batcher)));
    if (batcher_device(st->batcher) == VIT_DEVICE_CUDA) {
        char gname[128] = "";
        size_t total = 0, avail = 0;
        if (vit_cuda_device_info(0, gname, sizeof gname, &total, &avail) == VIT_OK) {
            cJSON *g = cJSON_AddObjectToObject(o, "gpu");
            cJSON_AddStringToObject(g, "name", gname);
            cJSON_AddNumberToObject(g, "memory_total_bytes", (double)total);
            cJSON_AddNumberToObject(g, "memory_free_bytes", (double)avail);
        }
    }
    cJSON_AddStringToObject(o, "precision", vit_precision_str(batcher_precision(st->batcher)));
    cJSON_AddStringToObject(o, "input", batcher_input_type(st->batcher) == VIT_INPUT_F16 ? "fp16" : "fp32");
    cJSON_AddNumberToObject(o, "max_batch", st->cfg.max_batch);
    cJSON_AddNumberToObject(o, "workers", st->cfg.workers);
    cJSON_AddNumberToObject(o, "head_version", head_version);
    cJSON_AddStringToObject(o, "instance_name", st->cfg.instance_name ? st->cfg.instance_name : "");
    const vit_build_info *bi = vit_build();
    cJSON *b = cJSON_AddObjectToObject(o, "build");
    cJSON_AddStringToObject(b, "version", bi->version);
    cJSON_AddStringToObject(b, "commit", bi->commit);
    cJSON_AddStringToObject(b, "build_type", bi->build_type);
    cJSON_AddBoolToObject(b, "cuda", bi->cuda);
    srv_reply_json(c, 200, root);
}

static void h_metrics(srv_conn *c, void *ctx) {
    const srv_state *st = ctx;
    if (atomic_load(&st->ready)) {
        metrics_queue_depth(batcher_queue_depth(st->batcher));
        size_t total = 0, avail = 0;
        if (batcher_device(st->batcher) == VIT_DEVICE_CUDA &&
            vit_cuda_device_info(0, NULL, 0, &total, &avail) == VIT_OK) {
            metrics_gauge_set("gpu_memory_total_bytes", "GPU memory of the device in use", (double)total);
            metrics_gauge_set("gpu_memory_used_bytes", "GPU memory in use (all processes)", (double)(total - avail));
        }
    }
    size_t n = 0;
    char *t = metrics_render(&n);
    if (!t) { srv_reply_error(c, 500, "internal", "out of memory"); return; }
    srv_reply_raw(c, 200, t, n, "text/plain; version=0.0.4; charset=utf-8");
}

int routes_register(srv_http *h, srv_state *st) {
    static const struct { const char *path, *methods; srv_handler fn; } table[] = {
        {"/classify", "POST", h_classify},
        {"/healthz", "GET, HEAD", h_healthz},
        {"/readyz", "GET, HEAD", h_readyz},
        {"/v1/models", "GET, HEAD", h_models},
        {"/metrics", "GET, HEAD", h_metrics},
        /* Amazon SageMaker's serving-container contract: GET /ping, POST /invocations on port 8080 */
        {"/ping", "GET, HEAD", h_readyz},
        {"/invocations", "POST", h_classify},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (srv_http_route(h, table[i].path, table[i].methods, table[i].fn, st) != 0) return -1;
    return 0;
}
