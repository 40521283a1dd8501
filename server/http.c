/* http.c: the libmicrohttpd side of vitd: routing, per-connection context, bounded streaming
 * body accumulation (Content-Length checked first, then every chunk), JSON error bodies, the
 * built-in endpoints (/classify, /healthz, /readyz, /v1/models, /metrics), suspend/resume around
 * the batcher, and one access-log line per request.  See server.h for the handler API. */
#include <ctype.h>
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "describe.h"
#include "embed.h"
#include "metrics.h"
#include "jsonbody.h"
#include "multipart.h"
#include "server.h"
#include "util.h"

#define MAX_PARTS 64
#define MAX_PREFIX_ROUTES 8

struct srv_conn {
    struct MHD_Connection *mhd;
    const char *url, *method;          /* copies below (libmicrohttpd's may not outlive the request) */
    char url_buf[256], method_buf[16];
    srv_handler handler;
    uint8_t *body;
    size_t len, cap;
    double t_start;
    int status;                        /* replied status, 0 until then */
    int images;
    srv_job *job;                      /* while submitted */
    srv_done_fn done;
    void *done_arg;
    int job_done;                      /* set once every image finished (then resumed) */
    char xhdr_name[32], xhdr_val[64];  /* one extra response header (Retry-After, Allow, WWW-Authenticate) */
    char reqid[SRV_REQID_MAX + 1];     /* X-Request-Id: the client's (when well-formed) or ours */
    logfmt_trace trace;                /* the client's W3C traceparent, when valid (has_trace) */
    int has_trace;
    char span[17];                     /* our span under that trace (16 hex) */
    struct srv_conn *next;             /* free list */
};

/* Finished request contexts are kept (with their body buffers up to CONN_KEEP_BODY) for the next
 * requests, so a steady load allocates no context and no body buffer per request. */
#define CONN_POOL_MAX 64
#define CONN_KEEP_BODY ((size_t)1 << 20)
static pthread_mutex_t g_pool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct srv_conn *g_pool;
static int g_pool_n;

static struct srv_conn *conn_get(void) {
    pthread_mutex_lock(&g_pool_mu);
    struct srv_conn *c = g_pool;
    if (c) { g_pool = c->next; g_pool_n--; }
    pthread_mutex_unlock(&g_pool_mu);
    if (!c) return calloc(1, sizeof *c);
    uint8_t *body = c->body;
    size_t cap = c->cap;
    memset(c, 0, sizeof *c);
    c->body = body;
    c->cap = cap;
    return c;
}

static void conn_put(struct srv_conn *c) {
    if (c->cap > CONN_KEEP_BODY) { free(c->body); c->body = NULL; c->cap = 0; }
    pthread_mutex_lock(&g_pool_mu);
    if (g_pool_n < CONN_POOL_MAX) { c->next = g_pool; g_pool = c; g_pool_n++; c = NULL; }
    pthread_mutex_unlock(&g_pool_mu);
    if (c) { free(c->body); free(c); }
}

static void conn_pool_free(void) {
    pthread_mutex_lock(&g_pool_mu);
    while (g_pool) { struct srv_conn *c = g_pool; g_pool = c->next; free(c->body); free(c); }
    g_pool_n = 0;
    pthread_mutex_unlock(&g_pool_mu);
}

static struct MHD_Daemon *g_mhd;
static struct { char prefix[64]; srv_handler h; } g_prefix[MAX_PREFIX_ROUTES];
static atomic_int g_nprefix;                 /* entries below it are complete (release/acquire) */
static pthread_mutex_t g_prefix_mu = PTHREAD_MUTEX_INITIALIZER;

int srv_route_prefix(const char *prefix, srv_handler h) {
    pthread_mutex_lock(&g_prefix_mu);
    int n = atomic_load(&g_nprefix);
    if (n >= MAX_PREFIX_ROUTES || strlen(prefix) >= sizeof g_prefix[0].prefix) {
        pthread_mutex_unlock(&g_prefix_mu);
        return -1;
    }
    snprintf(g_prefix[n].prefix, sizeof g_prefix[0].prefix, "%s", prefix);
    g_prefix[n].h = h;
    atomic_store_explicit(&g_nprefix, n + 1, memory_order_release);
    pthread_mutex_unlock(&g_prefix_mu);
    return 0;
}

/* ---- request ids ---------------------------------------------------------------------- */

static atomic_uint_fast64_t g_reqid_counter;
static uint32_t g_reqid_prefix;
static void reqid_seed(void) {
    uint32_t r = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&r, sizeof r, 1, f) != 1) r = (uint32_t)(vit_now() * 1e6) ^ (uint32_t)getpid() * 2654435761u;
    if (f) fclose(f);
    g_reqid_prefix = r;
}

/* The client's X-Request-Id when it is 1..SRV_REQID_MAX characters of [A-Za-z0-9._:-] (so it is
 * safe in a header and a log line), else 16 hex digits: a per-process random prefix and a
 * counter, unique within the process and unlikely to repeat across restarts. */
static void request_id(srv_conn *c) {
    const char *h = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "X-Request-Id");
    size_t n = 0;
    if (h) {
        while (n <= SRV_REQID_MAX && h[n] && (isalnum((unsigned char)h[n]) || strchr("._:-", h[n]))) n++;
        if (n >= 1 && n <= SRV_REQID_MAX && !h[n]) { memcpy(c->reqid, h, n + 1); return; }
    }
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, reqid_seed);
    uint64_t k = atomic_fetch_add(&g_reqid_counter, 1);
    snprintf(c->reqid, sizeof c->reqid, "%08x%08x", (unsigned)g_reqid_prefix, (unsigned)(k & 0xffffffffu));
}

/* W3C trace context: a valid traceparent is kept; our span under it is this process's random
 * prefix (scrambled, never 0) and a counter, so the response and the log name the same span */
static void trace_context(srv_conn *c) {
    const char *h = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "traceparent");
    c->has_trace = logfmt_trace_parse(h, &c->trace) == 0;
    if (!c->has_trace) return;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, reqid_seed);
    uint64_t k = atomic_fetch_add(&g_reqid_counter, 1);
    snprintf(c->span, sizeof c->span, "%08x%08x", (unsigned)(g_reqid_prefix * 2654435761u) | 1u, (unsigned)(k & 0xffffffffu));
}

const char *srv_conn_request_id(const srv_conn *c) { return c->reqid; }

/* ---- accessors ------------------------------------------------------------------------ */

const char *srv_conn_method(const srv_conn *c) { return c->method; }
const char *srv_conn_path(const srv_conn *c) { return c->url; }
const char *srv_conn_query(srv_conn *c, const char *key) {
    return MHD_lookup_connection_value(c->mhd, MHD_GET_ARGUMENT_KIND, key);
}
const char *srv_conn_header(srv_conn *c, const char *key) {
    return MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, key);
}
const uint8_t *srv_conn_body(const srv_conn *c, size_t *len) {
    if (len) *len = c->len;
    return c->body;
}
void srv_conn_set_images(srv_conn *c, int n) { c->images = n; }

/* ---- replies -------------------------------------------------------------------------- */

static void set_header(srv_conn *c, const char *name, const char *val) {
    snprintf(c->xhdr_name, sizeof c->xhdr_name, "%s", name);
    snprintf(c->xhdr_val, sizeof c->xhdr_val, "%s", val);
}
void srv_conn_set_header(srv_conn *c, const char *name, const char *val) { set_header(c, name, val); }

/* ---- CORS (--cors-origin) --------------------------------------------------------------- */

/* The Access-Control-Allow-Origin value for this request's Origin: "*" when the list is "*", the
 * origin itself when the comma-separated list names it exactly, else NULL (no CORS headers). */
static const char *cors_allow(srv_conn *c) {
    const char *list = g_srv.cfg.cors_origin;
    if (!list || !*list) return NULL;
    if (!strcmp(list, "*")) return "*";
    const char *o = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "Origin");
    if (!o || !*o) return NULL;
    size_t n = strlen(o);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        while (l && p[l - 1] == ' ') l--;
        if (l == n && !memcmp(p, o, n)) return o;
        if (!e) break;
        p = e + 1;
        while (*p == ' ') p++;
    }
    return NULL;
}

static void cors_headers(srv_conn *c, struct MHD_Response *r) {
    const char *allow = cors_allow(c);
    if (!allow) return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", allow);
    if (strcmp(allow, "*") != 0) MHD_add_response_header(r, "Vary", "Origin");
    MHD_add_response_header(r, "Access-Control-Expose-Headers", "X-Request-Id, Retry-After, traceparent, Inference-Header-Content-Length");
}

/* Queue body (malloc'd, taken over) with status. */
static void reply_raw(srv_conn *c, int status, char *body, size_t len, const char *ctype) {
    if (c->status) { free(body); return; }    /* one reply per request */
    c->status = status;
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(body); return; }
    if (ctype) MHD_add_response_header(r, "Content-Type", ctype);
    cors_headers(c, r);
    if (c->xhdr_name[0]) MHD_add_response_header(r, c->xhdr_name, c->xhdr_val);
    if (c->reqid[0]) MHD_add_response_header(r, "X-Request-Id", c->reqid);
    if (c->has_trace) {
        char tp[56];
        logfmt_traceparent(tp, &c->trace, c->span);
        MHD_add_response_header(r, "traceparent", tp);
    }
    if (atomic_load(&g_srv.draining)) MHD_add_response_header(r, "Connection", "close");
    MHD_queue_response(c->mhd, (unsigned)status, r);
    MHD_destroy_response(r);
}

void srv_reply_raw(srv_conn *c, int status, char *body, size_t len, const char *ctype) {
    reply_raw(c, status, body, len, ctype);
}
double srv_conn_start_time(const srv_conn *c) { return c->t_start; }

void srv_reply_json(srv_conn *c, int status, cJSON *root) {
    char *s = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!s) {
        const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        s = strdup(oom);
        status = 500;
        if (!s) return;
    }
    size_t n = strlen(s);
    /* a trailing newline keeps curl output tidy */
    char *t = realloc(s, n + 2);
    if (t) { s = t; s[n++] = '\n'; s[n] = '\0'; }
    reply_raw(c, status, s, n, "application/json");
}

cJSON *srv_error_obj(const char *code, const char *msg) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    return e;
}

void srv_reply_error(srv_conn *c, int status, const char *code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "error", srv_error_obj(code, msg));
    srv_reply_json(c, status, root);
}

/* ---- images from the body ------------------------------------------------------------- */

int srv_conn_images(srv_conn *c, const uint8_t **data, size_t *len, int max, jb_params *params) {
    const char *ct = srv_conn_header(c, "Content-Type");
    const char *ce = srv_conn_header(c, "Content-Encoding");
    if (ce && *ce && strcasecmp(ce, "identity") != 0) {
        srv_reply_error(c, 415, "unsupported_media_type",
                        "Content-Encoding %.40s not supported: send the image bytes as they are (JPEG and PNG are compressed already)", ce);
        return -1;
    }
    if (ct && strncasecmp(ct, "multipart/", 10) == 0) {
        char bnd[MP_MAX_BOUNDARY + 1], err[160];
        if (mp_boundary(ct, bnd, sizeof bnd) != 0) {
            srv_reply_error(c, 400, "bad_request", "multipart/form-data with a missing or invalid boundary");
            return -1;
        }
        mp_part parts[MAX_PARTS];
        int np = mp_parse(c->body, c->len, bnd, parts, MAX_PARTS, err, sizeof err);
        if (np < 0) {
            srv_reply_error(c, 400, "bad_request", "malformed multipart body: %s", err);
            return -1;
        }
        int n = 0;
        for (int i = 0; i < np; i++) {
            if (strcmp(parts[i].name, "image") != 0) continue;
            if (n >= max) {
                srv_reply_error(c, 400, "too_many_images", "at most %d images per request", max);
                return -1;
            }
            data[n] = parts[i].data;
            len[n] = parts[i].len;
            n++;
        }
        if (n == 0) {
            srv_reply_error(c, 400, "bad_request", "no multipart part named \"image\"");
            return -1;
        }
        return n;
    }
    size_t tl = 0;
    if (ct) { while (ct[tl] && ct[tl] != ';' && ct[tl] != ' ') tl++; }
    if (tl == 16 && !strncasecmp(ct, "application/json", 16)) {
        char err[160];
        jb_params dummy;
        int n = jb_parse(c->body, c->len, data, len, max, params ? params : &dummy, err, sizeof err);
        if (n == JB_TOO_MANY) srv_reply_error(c, 400, "too_many_images", "%s", err);
        else if (n == JB_BAD_BASE64) srv_reply_error(c, 400, "invalid_image", "%s", err);
        else if (n < 0) srv_reply_error(c, 400, "bad_request", "%s", err);
        return n < 0 ? -1 : n;
    }
    /* a raw image: any image/ type (image/jpeg, image/png, image/jpg, image/any...), SageMaker's
     * application/x-image, or octet-stream; the bytes decide the format */
    if (!ct || (tl > 6 && !strncasecmp(ct, "image/", 6)) || (tl == 19 && !strncasecmp(ct, "application/x-image", 19)) ||
        (tl == 24 && !strncasecmp(ct, "application/octet-stream", 24))) {
        if (c->len == 0) {
            srv_reply_error(c, 400, "bad_request", "empty request body: send an image");
            return -1;
        }
        data[0] = c->body;
        len[0] = c->len;
        return 1;
    }
    srv_reply_error(c, 415, "unsupported_media_type",
                    "Content-Type %.*s not supported: use multipart/form-data, image/* (jpeg, png), application/x-image, application/octet-stream or application/json",
                    (int)(tl < 100 ? tl : 100), ct);
    return -1;
}

/* ---- submit through the batcher ------------------------------------------------------- */

static void job_done_cb(srv_job *job, void *arg) {
    (void)job;
    srv_conn *c = arg;
    c->job_done = 1;
    MHD_resume_connection(c->mhd);
}

int srv_conn_submit(srv_conn *c, srv_job *job, srv_done_fn done, void *arg) {
    const char *to = srv_conn_header(c, "X-Request-Timeout-Ms");
    if (to) {
        char *end;
        long ms = strtol(to, &end, 10);
        if (*to == '\0' || *end || ms < 1 || ms > 3600000) {
            srv_job_free(job);
            srv_reply_error(c, 400, "bad_request", "X-Request-Timeout-Ms must be an integer in [1, 3600000]");
            return -1;
        }
        job->deadline = c->t_start + (double)ms * 1e-3;
    }
    job->done = job_done_cb;
    job->done_arg = c;
    atomic_fetch_add(&job->remaining, 1);          /* hold: completion cannot race the suspend */
    int retry = 1;
    if (batcher_submit(g_srv.batcher, job, &retry) != 0) {
        srv_job_free(job);
        char ra[16];
        snprintf(ra, sizeof ra, "%d", retry);
        set_header(c, "Retry-After", ra);
        srv_reply_error(c, 503, "queue_full", "server overloaded: queue full, retry in %d s", retry);
        return -1;
    }
    c->job = job;
    c->done = done;
    c->done_arg = arg;
    MHD_suspend_connection(c->mhd);
    if (atomic_fetch_sub(&job->remaining, 1) == 1) job_done_cb(job, c);
    return 0;
}

/* ---- built-in endpoints --------------------------------------------------------------- */

/* a float as the shortest double that prints with `digits` significant digits (short JSON) */
static double round_sig(double v, int digits) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.*g", digits, v);
    return strtod(buf, NULL);
}

static void classify_done(srv_conn *c, srv_job *job, void *arg) {
    (void)arg;
    const vit_config *mc = g_srv.mc;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", g_srv.model_name);
    cJSON *results = cJSON_AddArrayToObject(root, "results");
    double dec = 0, que = 0, inf = 0;
    int bs = 0, nok = 0, first_err = -1;
    for (int i = 0; i < job->n; i++) {
        srv_item *it = &job->items[i];
        cJSON *r = cJSON_CreateObject();
        if (it->http != 200) {
            cJSON_AddItemToObject(r, "error", srv_error_obj(it->code ? it->code : "internal", it->err));
            if (first_err < 0) first_err = i;
        } else {
            nok++;
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
    cJSON_AddNumberToObject(t, "total_ms", round_sig((vit_now() - c->t_start) * 1e3, 4));
    cJSON_AddNumberToObject(root, "batch_size", bs);
    int status = 200;
    if (nok == 0 && first_err >= 0) {
        srv_item *it = &job->items[first_err];
        status = it->http;
        cJSON_AddItemToObject(root, "error", srv_error_obj(it->code ? it->code : "internal", it->err));
    }
    srv_reply_json(c, status, root);
}

static void h_classify(srv_conn *c) {
    if (!atomic_load(&g_srv.ready)) {
        set_header(c, "Retry-After", "1");
        srv_reply_error(c, 503, "not_ready", "model is loading");
        return;
    }
    const uint8_t *data[MAX_PARTS];
    size_t len[MAX_PARTS];
    int max = g_srv.cfg.max_images < MAX_PARTS ? g_srv.cfg.max_images : MAX_PARTS;
    jb_params jp = {0};
    int n = srv_conn_images(c, data, len, max, &jp);
    if (n < 0) return;
    /* options: the query string, else the JSON body's */
    int top_k = 5, want = 0;
    const char *q = srv_conn_query(c, "top_k");
    if (q || jp.top_k || jp.top_k_invalid) {
        char *end = NULL;
        long v = q ? strtol(q, &end, 10) : jp.top_k;
        if ((q && (!*q || *end)) || (!q && jp.top_k_invalid) || v < 1 || v > g_srv.cfg.max_top_k) {
            srv_reply_error(c, 400, "bad_request", "top_k must be an integer in [1, %d]", g_srv.cfg.max_top_k);
            return;
        }
        top_k = (int)v;
    }
    q = srv_conn_query(c, "attention");
    if (!q && jp.attention[0]) q = jp.attention;
    if (q) {
        if (!strcmp(q, "cls")) want |= SRV_WANT_ATTN_CLS;
        else if (!strcmp(q, "rollout")) want |= SRV_WANT_ROLLOUT;
        else if (*q && strcmp(q, "none") != 0) {
            srv_reply_error(c, 400, "bad_request", "attention must be cls or rollout");
            return;
        }
    }
    c->images = n;
    srv_job *job = srv_job_new(g_srv.batcher, n, want, top_k);
    if (!job) { srv_reply_error(c, 500, "internal", "out of memory"); return; }
    for (int i = 0; i < n; i++) { job->items[i].data = data[i]; job->items[i].len = len[i]; }
    srv_conn_submit(c, job, classify_done, NULL);
}

static void h_healthz(srv_conn *c) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "status", "ok");
    srv_reply_json(c, 200, r);
}

static void h_readyz(srv_conn *c) {
    if (atomic_load(&g_srv.draining)) {
        srv_reply_error(c, 503, "draining", "shutting down");
    } else if (!atomic_load(&g_srv.ready)) {
        srv_reply_error(c, 503, "not_ready", "model is loading");
    } else {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "status", "ready");
        srv_reply_json(c, 200, r);
    }
}

static const char *device_str(vit_device d) { return d == VIT_DEVICE_CUDA ? "cuda" : d == VIT_DEVICE_CPU ? "cpu" : "auto"; }

static void h_models(srv_conn *c) {
    if (!atomic_load(&g_srv.ready)) {
        set_header(c, "Retry-After", "1");
        srv_reply_error(c, 503, "not_ready", "model is loading");
        return;
    }
    const vit_config *m = g_srv.mc;
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "models");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToArray(arr, o);
    cJSON_AddStringToObject(o, "id", g_srv.model_name);
    cJSON_AddStringToObject(o, "path", g_srv.cfg.model_dir);
    vit_head *h = server_get_active_head();
    vit_status st = vit_describe_json(o, m, h);
    vit_head_release(h);
    if (st != VIT_OK) {
        cJSON_Delete(root);
        srv_reply_error(c, 500, "internal", "out of memory");
        return;
    }
    int grid[2] = {m->grid_h, m->grid_w};
    cJSON_AddItemToObject(o, "attention_grid", cJSON_CreateIntArray(grid, 2));
    const vit_preprocess *p = &m->preprocess;
    cJSON *pp = cJSON_AddObjectToObject(o, "preprocessing");
    cJSON_AddBoolToObject(pp, "do_resize", p->do_resize);
    if (p->shortest_edge > 0) cJSON_AddNumberToObject(pp, "shortest_edge", p->shortest_edge);
    else {
        int rs[2] = {p->resize_h, p->resize_w};
        cJSON_AddItemToObject(pp, "resize", cJSON_CreateIntArray(rs, 2));
    }
    cJSON_AddStringToObject(pp, "resample", vit_resample_name(p->resample));
    cJSON_AddBoolToObject(pp, "do_center_crop", p->do_center_crop);
    int crop[2] = {p->crop_h, p->crop_w};
    cJSON_AddItemToObject(pp, "crop", cJSON_CreateIntArray(crop, 2));
    cJSON_AddNumberToObject(pp, "rescale_factor", p->do_rescale ? p->rescale_factor : 1.0);
    cJSON_AddItemToObject(pp, "mean", cJSON_CreateFloatArray(p->mean, 3));
    cJSON_AddItemToObject(pp, "std", cJSON_CreateFloatArray(p->std, 3));
    int out[2] = {p->out_h, p->out_w};
    cJSON_AddItemToObject(pp, "output", cJSON_CreateIntArray(out, 2));
    cJSON_AddStringToObject(o, "device", device_str(batcher_device(g_srv.batcher)));
    if (batcher_device(g_srv.batcher) == VIT_DEVICE_CUDA) {
        char gname[128] = "";
        size_t total = 0, avail = 0;
        if (vit_cuda_device_info(0, gname, sizeof gname, &total, &avail) == VIT_OK) {
            cJSON *g = cJSON_AddObjectToObject(o, "gpu");
            cJSON_AddStringToObject(g, "name", gname);
            cJSON_AddNumberToObject(g, "memory_total_bytes", (double)total);
            cJSON_AddNumberToObject(g, "memory_free_bytes", (double)avail);
        }
    }
    cJSON_AddStringToObject(o, "precision", vit_precision_str(batcher_precision(g_srv.batcher)));
    cJSON_AddStringToObject(o, "input", batcher_input_type(g_srv.batcher) == VIT_INPUT_F16 ? "fp16" : "fp32");
    cJSON_AddNumberToObject(o, "max_batch", g_srv.cfg.max_batch);
    cJSON_AddNumberToObject(o, "workers", g_srv.cfg.workers);
    const vit_build_info *bi = vit_build();
    cJSON *b = cJSON_AddObjectToObject(o, "build");
    cJSON_AddStringToObject(b, "version", bi->version);
    cJSON_AddStringToObject(b, "commit", bi->commit);
    cJSON_AddStringToObject(b, "build_type", bi->build_type);
    cJSON_AddBoolToObject(b, "cuda", bi->cuda);
    srv_reply_json(c, 200, root);
}

static void h_metrics(srv_conn *c) {
    if (g_srv.batcher) {
        metrics_queue_depth(batcher_queue_depth(g_srv.batcher));
        size_t total = 0, avail = 0;
        if (batcher_device(g_srv.batcher) == VIT_DEVICE_CUDA &&
            vit_cuda_device_info(0, NULL, 0, &total, &avail) == VIT_OK) {
            metrics_gauge_set("gpu_memory_total_bytes", "GPU memory of the device in use", (double)total);
            metrics_gauge_set("gpu_memory_used_bytes", "GPU memory in use (all processes)", (double)(total - avail));
        }
    }
    size_t n = 0;
    char *t = metrics_render(&n);
    if (!t) { srv_reply_error(c, 500, "internal", "out of memory"); return; }
    reply_raw(c, 200, t, n, "text/plain; version=0.0.4; charset=utf-8");
}

static void h_embed(srv_conn *c) { embed_handle(c, &g_srv); }
static void h_openapi(srv_conn *c) { openapi_handle(c, &g_srv); }

typedef struct { const char *path, *methods; srv_handler h; int post; } route;
static const route routes[] = {
    {"/classify", "POST", h_classify, 1},
    {"/healthz", "GET, HEAD", h_healthz, 0},
    {"/readyz", "GET, HEAD", h_readyz, 0},
    {"/v1/models", "GET, HEAD", h_models, 0},
    {"/metrics", "GET, HEAD", h_metrics, 0},
    /* Amazon SageMaker's serving-container contract: GET /ping, POST /invocations on port 8080 */
    {"/ping", "GET, HEAD", h_readyz, 0},
    {"/invocations", "POST", h_classify, 1},
    {"/embed", "POST", h_embed, 1},
    {"/openapi.json", "GET, HEAD", h_openapi, 0},
};

/* ---- libmicrohttpd callbacks ---------------------------------------------------------- */

/* A CORS preflight (OPTIONS from an allowed origin): 204 with what the path accepts. */
static void preflight(srv_conn *c, const char *methods) {
    char m[64];
    snprintf(m, sizeof m, "%s, OPTIONS", methods);
    set_header(c, "Access-Control-Allow-Methods", m);
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!r) return;
    c->status = 204;
    cors_headers(c, r);
    MHD_add_response_header(r, c->xhdr_name, c->xhdr_val);
    MHD_add_response_header(r, "Access-Control-Allow-Headers",
                            "Content-Type, Authorization, X-Request-Id, X-Request-Timeout-Ms, traceparent, Inference-Header-Content-Length");
    MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    if (c->reqid[0]) MHD_add_response_header(r, "X-Request-Id", c->reqid);
    MHD_queue_response(c->mhd, 204, r);
    MHD_destroy_response(r);
}

/* A body without Content-Length (chunked) grew past --max-body-mb while streaming.
 * libmicrohttpd 0.9.75 sends a response queued mid-upload only after the whole upload, so
 * the 413 is written straight to the socket (nothing else has been written on it), the write
 * side is shut, and the connection is closed by returning MHD_NO: the body is never read. */
static enum MHD_Result reply_413_now(srv_conn *c) {
    char body[200], msg[512];
    int bl = snprintf(body, sizeof body,
                      "{\"error\":{\"code\":\"payload_too_large\",\"message\":\"request body over the limit of %zu bytes\"}}\n",
                      g_srv.cfg.max_body);
    int ml = snprintf(msg, sizeof msg,
                      "HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                      "X-Request-Id: %s\r\nConnection: close\r\n\r\n%s", bl, c->reqid, body);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci && ml > 0 && ml < (int)sizeof msg) {
        ssize_t w = send(ci->connect_fd, msg, (size_t)ml, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
        shutdown(ci->connect_fd, SHUT_WR);
    }
    c->status = 413;
    return MHD_NO;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **ptr) {
    (void)cls; (void)version;
    srv_conn *c = *ptr;
    if (!c) {
        c = conn_get();
        if (!c) return MHD_NO;
        c->mhd = mc;
        snprintf(c->url_buf, sizeof c->url_buf, "%s", url);
        snprintf(c->method_buf, sizeof c->method_buf, "%s", method);
        c->url = c->url_buf;
        c->method = c->method_buf;
        c->t_start = vit_now();
        request_id(c);
        trace_context(c);
        atomic_fetch_add(&g_srv.inflight, 1);
        *ptr = c;
        if (g_srv.cfg.log_level >= SRV_LOG_DEBUG) srv_log(SRV_LOG_DEBUG, "begin %p %s %s", (void *)c, method, url);
        for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
            if (strcmp(url, routes[i].path) != 0) continue;
            int ok = routes[i].post ? !strcmp(method, "POST") : (!strcmp(method, "GET") || !strcmp(method, "HEAD"));
            if (!ok && !strcmp(method, "OPTIONS") && cors_allow(c)) {
                preflight(c, routes[i].methods);
                return MHD_YES;
            }
            if (!ok) {
                set_header(c, "Allow", routes[i].methods);
                srv_reply_error(c, 405, "method_not_allowed", "%s not allowed on %s (allowed: %s)", method, url, routes[i].methods);
                return MHD_YES;
            }
            c->handler = routes[i].h;
            break;
        }
        int np = atomic_load_explicit(&g_nprefix, memory_order_acquire);
        if (!c->handler)
            for (int i = 0; i < np; i++)
                if (!strncmp(url, g_prefix[i].prefix, strlen(g_prefix[i].prefix))) {
                    if (!strcmp(method, "OPTIONS") && cors_allow(c)) {
                        preflight(c, "GET, POST, PUT, DELETE");
                        return MHD_YES;
                    }
                    c->handler = g_prefix[i].h;
                    break;
                }
        if (!c->handler) {
            srv_reply_error(c, 404, "not_found", "no such endpoint: %s", url);
            return MHD_YES;
        }
        const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            unsigned long long v = strtoull(cl, &end, 10);
            if (*end || v > g_srv.cfg.max_body) {
                srv_reply_error(c, 413, "payload_too_large", "request body over the limit of %zu bytes", g_srv.cfg.max_body);
                return MHD_YES;
            }
            if (v > c->cap) {                                    /* the whole body in one allocation */
                uint8_t *nb = realloc(c->body, (size_t)v);
                if (nb) { c->body = nb; c->cap = (size_t)v; }
            }
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (c->status) return MHD_YES;                           /* already answered: discard */
        if (n > g_srv.cfg.max_body - c->len) return reply_413_now(c);
        /* a client trickling its body never looks idle: bound the whole upload too */
        if (vit_now() - c->t_start > g_srv.cfg.request_timeout_s) {
            srv_log(SRV_LOG_DEBUG, "upload slower than --request-timeout-s: closing");
            c->status = 408;
            return MHD_NO;
        }
        if (c->len + n > c->cap) {
            size_t nc = c->cap ? c->cap * 2 : 65536;
            while (nc < c->len + n) nc *= 2;
            if (nc > g_srv.cfg.max_body) nc = g_srv.cfg.max_body;
            uint8_t *nb = realloc(c->body, nc);
            if (!nb) { srv_reply_error(c, 500, "internal", "out of memory"); return MHD_YES; }
            c->body = nb; c->cap = nc;
        }
        memcpy(c->body + c->len, upload_data, n);
        c->len += n;
        return MHD_YES;
    }
    if (c->status) return MHD_YES;
    if (c->job) {                                                /* resumed: all images done */
        if (!c->job_done) return MHD_YES;
        c->done(c, c->job, c->done_arg);
        if (!c->status) srv_reply_error(c, 500, "internal", "handler did not reply");
        return MHD_YES;
    }
    c->handler(c);
    if (!c->status && !c->job) srv_reply_error(c, 500, "internal", "handler did not reply");
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **ptr, enum MHD_RequestTerminationCode toe) {
    (void)cls; (void)mc;
    srv_conn *c = *ptr;
    if (!c) return;
    *ptr = NULL;
    double ms = (vit_now() - c->t_start) * 1e3;
    int status = c->status ? c->status : 499;                   /* client went away before a reply */
    metrics_request(c->url, status, ms * 1e-3);
    if (g_srv.cfg.log_level >= SRV_LOG_INFO) {
        char ip[INET6_ADDRSTRLEN] = "-";
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            if (ci->client_addr->sa_family == AF_INET)
                inet_ntop(AF_INET, &((struct sockaddr_in *)ci->client_addr)->sin_addr, ip, sizeof ip);
            else if (ci->client_addr->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ci->client_addr)->sin6_addr, ip, sizeof ip);
        }
        logfmt_access a = {.request_id = c->reqid, .method = c->method, .path = c->url, .client = ip,
                           .trace_id = c->has_trace ? c->trace.trace_id : NULL, .span_id = c->has_trace ? c->span : NULL,
                           .note = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? NULL :
                                   toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? "(timeout)" : "(aborted)",
                           .status = status, .images = c->images, .duration_ms = ms, .head_version = -1};
        srv_log_access(&a);
    }
    if (g_srv.cfg.log_level >= SRV_LOG_DEBUG) srv_log(SRV_LOG_DEBUG, "end %p", (void *)c);
    srv_job_free(c->job);
    conn_put(c);
    atomic_fetch_sub(&g_srv.inflight, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    if (g_srv.cfg.log_level < SRV_LOG_DEBUG) return;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == '\n') buf[--n] = '\0';
    srv_log(SRV_LOG_DEBUG, "mhd: %s", buf);
}

int srv_http_start(char *err, size_t errlen) {
    const srv_config *cfg = &g_srv.cfg;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    /* poll(), not epoll: with epoll, 0.9.75 missed some client closes mid-upload (they held
     * their slot until the timeout) */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (strchr(cfg->host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)cfg->port);
        if (inet_pton(AF_INET6, cfg->host, &a->sin6_addr) != 1) { snprintf(err, errlen, "bad --host %s", cfg->host); return -1; }
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)cfg->port);
        if (inet_pton(AF_INET, cfg->host, &a->sin_addr) != 1) { snprintf(err, errlen, "bad --host %s (an IPv4 or IPv6 address)", cfg->host); return -1; }
    }
    g_mhd = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, NULL,
                             MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                             MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                             MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->http_threads,
                             MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->request_timeout_s,
                             MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
                             MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                             MHD_OPTION_END);
    if (!g_mhd) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", cfg->host, cfg->port, strerror(errno));
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(g_mhd, MHD_DAEMON_INFO_BIND_PORT);
    return di ? di->port : cfg->port;
}

void srv_http_quiesce(void) {
    if (!g_mhd) return;
    MHD_socket fd = MHD_quiesce_daemon(g_mhd);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void srv_http_stop(void) {
    if (g_mhd) MHD_stop_daemon(g_mhd);
    g_mhd = NULL;
    conn_pool_free();
}
