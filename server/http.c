/* http.c: the transport (see http.h): libmicrohttpd, the route table, per-connection context,
 * bounded streaming body accumulation (Content-Length checked first, then every chunk), JSON
 * error bodies, CORS, suspend/resume around the batcher, and one access-log line per request.
 * The shared state arrives as libmicrohttpd's closure argument (the srv_http) and is reached
 * from each connection; the endpoints live in routes.c and admin_http.c. */
#include "http.h"

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
#include <malloc.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "connguard.h"
#include "log.h"
#include "logfmt.h"
#include "metrics.h"
#include "multipart.h"
#include "textcheck.h"
#include "util.h"

#define MAX_PARTS SRV_MAX_PARTS
#define MAX_ROUTES 32

struct srv_conn {
    struct MHD_Connection *mhd;
    srv_http *http;                    /* the server (its state and config) */
    const char *url, *method;          /* copies below (libmicrohttpd's may not outlive the request) */
    char url_buf[256], method_buf[16];
    srv_handler handler;
    void *handler_ctx;
    uint8_t *body;
    size_t len, cap;
    double t_start;
    int status;                        /* replied status, 0 until then */
    int images;
    int head_version;                  /* the head that answered (X-Head-Version, logged); 0: none */
    srv_job *job;                      /* while submitted */
    srv_done_fn done;
    void *done_arg;
    int job_done;                      /* set once every image finished (then resumed) */
    cg_conn *guard;                    /* the connection's deadlines (connguard.h) */
    size_t reserved;                   /* bytes of the in-flight body budget held */
    int discard;                       /* body over the limit: the 413 went out, the body is dropped */
    int close;                         /* reply with Connection: close */
    char xhdr_name[32], xhdr_val[64];  /* one extra response header (Retry-After, Allow, WWW-Authenticate) */
    char reqid[SRV_REQID_MAX + 1];     /* X-Request-Id: the client's (when well-formed) or ours */
    logfmt_trace trace;                /* the client's W3C traceparent, when valid (has_trace) */
    int has_trace;
    char span[17];                     /* our span under that trace (16 hex) */
    struct srv_conn *next;             /* free list */
};

typedef struct route {
    char path[64];                     /* the exact path, or the prefix */
    char methods[32];                  /* exact routes: "GET, HEAD", "POST" */
    int prefix;
    srv_handler fn;
    void *ctx;
} route;

/* Finished request contexts are kept (with their body buffers up to CONN_KEEP_BODY) for the next
 * requests, so a steady load allocates no context and no body buffer per request. */
#define CONN_POOL_MAX 64
#define CONN_KEEP_BODY ((size_t)1 << 20)

struct srv_http {
    struct MHD_Daemon *mhd;
    srv_state *st;
    const srv_config *cfg;             /* &st->cfg */
    route routes[MAX_ROUTES];
    atomic_int nroutes;                /* entries below it are complete (release/acquire) */
    pthread_mutex_t routes_mu;         /* serialises registrations */
    pthread_mutex_t pool_mu;
    struct srv_conn *pool;
    int pool_n;
    cg *guard;                         /* client deadlines and the connection cap (connguard.h) */
    atomic_llong body_inflight;        /* bytes of request bodies reserved (--max-inflight-body-mb) */
};

static struct srv_conn *conn_get(srv_http *h) {
    pthread_mutex_lock(&h->pool_mu);
    struct srv_conn *c = h->pool;
    if (c) { h->pool = c->next; h->pool_n--; }
    pthread_mutex_unlock(&h->pool_mu);
    if (!c) return calloc(1, sizeof *c);
    uint8_t *body = c->body;
    size_t cap = c->cap;
    memset(c, 0, sizeof *c);
    c->body = body;
    c->cap = cap;
    return c;
}

static void conn_put(srv_http *h, struct srv_conn *c) {
    if (c->cap > CONN_KEEP_BODY) { free(c->body); c->body = NULL; c->cap = 0; }
    pthread_mutex_lock(&h->pool_mu);
    if (h->pool_n < CONN_POOL_MAX) { c->next = h->pool; h->pool = c; h->pool_n++; c = NULL; }
    pthread_mutex_unlock(&h->pool_mu);
    if (c) { free(c->body); free(c); }
}

static void conn_pool_free(srv_http *h) {
    pthread_mutex_lock(&h->pool_mu);
    while (h->pool) { struct srv_conn *c = h->pool; h->pool = c->next; free(c->body); free(c); }
    h->pool_n = 0;
    pthread_mutex_unlock(&h->pool_mu);
}

/* ---- routes ----------------------------------------------------------------------------- */

static int route_add(srv_http *h, const char *path, const char *methods, int prefix, srv_handler fn, void *ctx) {
    pthread_mutex_lock(&h->routes_mu);
    int n = atomic_load(&h->nroutes);
    if (n >= MAX_ROUTES || strlen(path) >= sizeof h->routes[0].path ||
        strlen(methods) >= sizeof h->routes[0].methods) {
        pthread_mutex_unlock(&h->routes_mu);
        return -1;
    }
    route *r = &h->routes[n];
    snprintf(r->path, sizeof r->path, "%s", path);
    snprintf(r->methods, sizeof r->methods, "%s", methods);
    r->prefix = prefix;
    r->fn = fn;
    r->ctx = ctx;
    atomic_store_explicit(&h->nroutes, n + 1, memory_order_release);
    pthread_mutex_unlock(&h->routes_mu);
    return 0;
}

int srv_http_route(srv_http *h, const char *path, const char *methods, srv_handler fn, void *ctx) {
    return route_add(h, path, methods, 0, fn, ctx);
}

int srv_http_route_prefix(srv_http *h, const char *prefix, srv_handler fn, void *ctx) {
    return route_add(h, prefix, "", 1, fn, ctx);
}

/* method is one of the comma-separated tokens of list */
static int method_in(const char *method, const char *list) {
    size_t n = strlen(method);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',') p++;
        size_t l = strcspn(p, ", ");
        if (l == n && !strncmp(p, method, n)) return 1;
        p += l;
    }
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
const char *srv_conn_query_n(srv_conn *c, const char *key, size_t *len) {
    const char *v = NULL;
    size_t n = 0;
    if (MHD_lookup_connection_value_n(c->mhd, MHD_GET_ARGUMENT_KIND, key, strlen(key), &v, &n) != MHD_YES) v = NULL;
    if (len) *len = v ? n : 0;
    return v;
}
const char *srv_conn_header(srv_conn *c, const char *key) {
    return MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, key);
}
double srv_conn_start_time(const srv_conn *c) { return c->t_start; }
const uint8_t *srv_conn_body(const srv_conn *c, size_t *len) {
    if (len) *len = c->len;
    return c->body;
}
void srv_conn_set_images(srv_conn *c, int n) { c->images = n; }
void srv_conn_set_head_version(srv_conn *c, int version) { c->head_version = version > 0 ? version : 0; }

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
    const char *list = c->http->cfg->cors_origin;
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
    MHD_add_response_header(r, "Access-Control-Expose-Headers", "X-Request-Id, Retry-After, X-Head-Version, traceparent, Inference-Header-Content-Length");
}

/* Queue body (malloc'd, taken over) with status. */
void srv_reply_raw(srv_conn *c, int status, char *body, size_t len, const char *ctype) {
    if (c->status) { free(body); return; }    /* one reply per request */
    c->status = status;
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(body); return; }
    if (ctype) MHD_add_response_header(r, "Content-Type", ctype);
    cors_headers(c, r);
    if (c->xhdr_name[0]) MHD_add_response_header(r, c->xhdr_name, c->xhdr_val);
    if (c->head_version) {
        char hv[16];
        snprintf(hv, sizeof hv, "%d", c->head_version);
        MHD_add_response_header(r, "X-Head-Version", hv);
    }
    if (c->reqid[0]) MHD_add_response_header(r, "X-Request-Id", c->reqid);
    if (c->has_trace) {
        char tp[56];
        logfmt_traceparent(tp, &c->trace, c->span);
        MHD_add_response_header(r, "traceparent", tp);
    }
    if (c->close || atomic_load(&c->http->st->draining)) MHD_add_response_header(r, "Connection", "close");
    MHD_queue_response(c->mhd, (unsigned)status, r);
    MHD_destroy_response(r);
}

void srv_reply_static(srv_conn *c, int status, const void *body, size_t len, const char *ctype,
                      const char *const *hdrs) {
    if (c->status) return;
    c->status = status;
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r) return;
    if (ctype) MHD_add_response_header(r, "Content-Type", ctype);
    for (int i = 0; hdrs && hdrs[i] && hdrs[i + 1]; i += 2) MHD_add_response_header(r, hdrs[i], hdrs[i + 1]);
    if (c->reqid[0]) MHD_add_response_header(r, "X-Request-Id", c->reqid);
    if (atomic_load(&c->http->st->draining)) MHD_add_response_header(r, "Connection", "close");
    MHD_queue_response(c->mhd, (unsigned)status, r);
    MHD_destroy_response(r);
}

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
    srv_reply_raw(c, status, s, n, "application/json");
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
        if (n == JB_TOO_COMPLEX) metrics_rejected(MET_REJ_JSON_LIMIT, 1);
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
    const union MHD_ConnectionInfo *fdi = MHD_get_connection_info(c->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (fdi) job->client_fd = fdi->connect_fd;       /* the batcher drops the work if the client leaves */
    atomic_fetch_add(&job->remaining, 1);          /* hold: completion cannot race the suspend */
    int retry = 1;
    if (batcher_submit(c->http->st->batcher, job, &retry) != 0) {
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

/* A reply written straight to the socket (nothing else has been written on it), for answers that
 * cannot wait for the body: libmicrohttpd 0.9.75 sends a response queued mid-upload only after
 * the whole upload.  reply_now also shuts the write side and closes (MHD_NO): used when a
 * chunked body grows past --max-body-mb or past the in-flight budget while streaming; the rest
 * of the body is never read. */
static void write_now(srv_conn *c, int status, const char *reason, const char *code, const char *m, int shut) {
    char body[200], msg[600];
    int bl = snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}\n", code, m);
    int ml = snprintf(msg, sizeof msg,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                      "X-Request-Id: %s\r\n%sConnection: close\r\n\r\n%s", status, reason, bl, c->reqid,
                      status == 503 ? "Retry-After: 1\r\n" : "", body);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci && ml > 0 && ml < (int)sizeof msg) {
        ssize_t w = send(ci->connect_fd, msg, (size_t)ml, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
        if (shut) shutdown(ci->connect_fd, SHUT_WR);
    }
    c->status = status;
}

static enum MHD_Result reply_now(srv_conn *c, int status, const char *reason, const char *code, const char *m) {
    write_now(c, status, reason, code, m, 1);
    return MHD_NO;
}

static void too_large_msg(const srv_conn *c, char *m, size_t n) {
    snprintf(m, n, "request body over the limit of %zu bytes", c->http->cfg->max_body);
}

static enum MHD_Result reply_413_now(srv_conn *c) {
    char m[96];
    too_large_msg(c, m, sizeof m);
    metrics_rejected(MET_REJ_BODY_TOO_LARGE, 1);
    return reply_now(c, 413, "Content Too Large", "payload_too_large", m);
}

/* ---- admission: framing, body size, the in-flight body budget ---------------------------- */

#define LINGER_MAX ((size_t)64 << 20)   /* an oversized body up to this is read and dropped, then closed */
/* The in-flight budget has a lane for small bodies: bodies past SMALL_BODY may fill only 7/8 of
 * it, so a flood of big uploads cannot starve ordinary requests (which still meet the whole cap). */
#define SMALL_BODY ((size_t)1 << 20)

static int body_reserve(srv_conn *c, size_t n) {
    srv_http *h = c->http;
    unsigned long long cap = h->cfg->max_inflight_body;
    if (c->reserved + n > SMALL_BODY) cap -= cap / 8;
    long long cur = atomic_load(&h->body_inflight);
    do {
        if ((unsigned long long)cur + n > cap) return -1;
    } while (!atomic_compare_exchange_weak(&h->body_inflight, &cur, cur + (long long)n));
    c->reserved += n;
    return 0;
}

static void body_release(srv_conn *c) {
    if (c->reserved) atomic_fetch_sub(&c->http->body_inflight, (long long)c->reserved);
    c->reserved = 0;
}

typedef struct { int cl, te, cl_differs; char first_cl[32]; } framing;
static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    framing *f = cls;
    (void)kind;
    if (!value) value = "";
    if (!strcasecmp(key, "Content-Length")) {
        if (f->cl++ == 0) snprintf(f->first_cl, sizeof f->first_cl, "%s", value);
        else if (strcmp(f->first_cl, value) != 0) f->cl_differs = 1;
    } else if (!strcasecmp(key, "Transfer-Encoding")) {
        f->te++;
    }
    return MHD_YES;
}

/* the declared body over --max-body-mb: 413 now; without Expect: 100-continue, lingering close
 * (the 413 goes out at once, a client waiting for it before sending gets it; the body is read
 * and dropped up to LINGER_MAX, then the connection closes with nothing unread, so a client that
 * sends first and reads after gets the 413, not a reset) */
static void body_too_large(srv_conn *c, int bad_number, unsigned long long v) {
    const char *ex = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "Expect");
    char m[96];
    too_large_msg(c, m, sizeof m);
    metrics_rejected(MET_REJ_BODY_TOO_LARGE, 1);
    if (bad_number || v > LINGER_MAX || (ex && !strcasecmp(ex, "100-continue"))) {
        c->close = 1;
        srv_reply_error(c, 413, "payload_too_large", "%s", m);
        return;
    }
    write_now(c, 413, "Content Too Large", "payload_too_large", m, 0);
    c->discard = 1;
}

/* Checks once the header block is in: one framing (RFC 9112 6.3: Content-Length with
 * Transfer-Encoding, or Content-Lengths that disagree, are refused: request smuggling is built
 * on them), the declared body against --max-body-mb and against the in-flight budget (503). */
static void admit_body(srv_conn *c) {
    framing f = {0};
    MHD_get_connection_values(c->mhd, MHD_HEADER_KIND, count_framing, &f);
    if (f.cl_differs || (f.cl && f.te) || f.te > 1) {
        metrics_rejected(MET_REJ_FRAMING, 1);
        c->close = 1;
        srv_reply_error(c, 400, "bad_request", "conflicting framing: %s",
                        f.cl_differs ? "Content-Length headers that differ" :
                        f.te > 1 ? "more than one Transfer-Encoding" : "Content-Length with Transfer-Encoding");
        return;
    }
    if (!f.cl) return;                                           /* chunked: bounded while it streams */
    char *end;
    unsigned long long v = strtoull(f.first_cl, &end, 10);
    if (*end || v > c->http->cfg->max_body) {
        body_too_large(c, *end != '\0', v);
        return;
    }
    if (body_reserve(c, (size_t)v) != 0) {
        metrics_rejected(MET_REJ_BODY_BUDGET, 1);
        c->close = 1;
        set_header(c, "Retry-After", "1");
        srv_reply_error(c, 503, "body_budget", "too many request bodies in flight (--max-inflight-body-mb): retry shortly");
        return;
    }
    if (v > c->cap) {                                            /* the whole body in one allocation */
        uint8_t *nb = realloc(c->body, (size_t)v);
        if (nb) { c->body = nb; c->cap = (size_t)v; }
    }
}

/* The route for url, or NULL after replying (404, 405, a CORS preflight). */
static const route *route_find(srv_conn *c, const char *url, const char *method) {
    srv_http *h = c->http;
    int n = atomic_load_explicit(&h->nroutes, memory_order_acquire);
    for (int i = 0; i < n; i++) {
        const route *r = &h->routes[i];
        if (r->prefix || strcmp(url, r->path) != 0) continue;
        int ok = method_in(method, r->methods);
        if (!ok && !strcmp(method, "OPTIONS") && cors_allow(c)) {
            preflight(c, r->methods);
            return NULL;
        }
        if (!ok) {
            set_header(c, "Allow", r->methods);
            srv_reply_error(c, 405, "method_not_allowed", "%s not allowed on %s (allowed: %s)", method, url, r->methods);
            return NULL;
        }
        return r;
    }
    for (int i = 0; i < n; i++) {
        const route *r = &h->routes[i];
        if (!r->prefix || strncmp(url, r->path, strlen(r->path)) != 0) continue;
        if (!strcmp(method, "OPTIONS") && cors_allow(c)) {
            preflight(c, "GET, POST, PUT, DELETE");
            return NULL;
        }
        return r;
    }
    /* before ready, the modules may still be registering their routes (main does it right after
     * listening; the admin API after the model loads): not ready, rather than a 404 that a
     * probe or a client would take as final */
    if (!atomic_load(&h->st->ready)) {
        set_header(c, "Retry-After", "1");
        srv_reply_error(c, 503, "not_ready", "starting: %s is not served yet", url);
        return NULL;
    }
    srv_reply_error(c, 404, "not_found", "no such endpoint: %s", url);
    return NULL;
}

static cg_conn *conn_guard(struct MHD_Connection *mc) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* A new request (its header block is in): its context, id, the connection cap, route, framing
 * and the body's bounds. */
static enum MHD_Result request_begin(srv_http *h, struct MHD_Connection *mc, const char *url, const char *method,
                                     void **ptr) {
    srv_conn *c = conn_get(h);
    if (!c) return MHD_NO;
    c->mhd = mc;
    c->http = h;
    snprintf(c->url_buf, sizeof c->url_buf, "%s", url);
    snprintf(c->method_buf, sizeof c->method_buf, "%s", method);
    c->url = c->url_buf;
    c->method = c->method_buf;
    c->t_start = vit_now();
    c->guard = conn_guard(mc);
    cg_headers_in(h->guard, c->guard);
    request_id(c);
    trace_context(c);
    atomic_fetch_add(&h->st->inflight, 1);
    *ptr = c;
    srv_log(SRV_LOG_DEBUG, "begin %p %s %s", (void *)c, method, url);
    if (cg_is_over(c->guard)) {                /* past --max-connections: answered at once, closed */
        c->close = 1;
        set_header(c, "Retry-After", "1");
        srv_reply_error(c, 503, "too_many_connections", "more than %d connections open: retry shortly",
                        h->cfg->max_connections);
        return MHD_YES;
    }
    const route *r = route_find(c, url, method);
    if (!r) return MHD_YES;
    c->handler = r->fn;
    c->handler_ctx = r->ctx;
    admit_body(c);
    return MHD_YES;
}

/* One chunk of the body, bounded by --max-body-mb, the in-flight budget and --request-timeout-s. */
static enum MHD_Result request_chunk(srv_conn *c, const char *data, size_t n) {
    const srv_config *cfg = c->http->cfg;
    cg_body_bytes(c->http->guard, c->guard, n);
    if (c->status) return MHD_YES;                           /* answered (or over the limit): dropped */
    if (n > cfg->max_body - c->len) return reply_413_now(c);
    /* a client trickling its body never looks idle: bound the whole upload too */
    if (vit_now() - c->t_start > cfg->request_timeout_s) {
        srv_log(SRV_LOG_DEBUG, "upload slower than --request-timeout-s: closing");
        c->status = 408;
        return MHD_NO;
    }
    if (c->len + n > c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 65536;
        while (nc < c->len + n) nc *= 2;
        if (nc > cfg->max_body) nc = cfg->max_body;
        if (nc > c->reserved && body_reserve(c, nc - c->reserved) != 0) {
            metrics_rejected(MET_REJ_BODY_BUDGET, 1);
            return reply_now(c, 503, "Service Unavailable", "body_budget",
                             "too many request bodies in flight (--max-inflight-body-mb): retry shortly");
        }
        uint8_t *nb = realloc(c->body, nc);
        if (!nb) { srv_reply_error(c, 500, "internal", "out of memory"); return MHD_YES; }
        c->body = nb; c->cap = nc;
    }
    memcpy(c->body + c->len, data, n);
    c->len += n;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **ptr) {
    (void)version;
    srv_conn *c = *ptr;
    if (!c) return request_begin(cls, mc, url, method, ptr);
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        return request_chunk(c, upload_data, n);
    }
    if (c->discard) return MHD_NO;                               /* the 413 went out: close */
    if (c->status) return MHD_YES;
    if (c->job) {                                                /* resumed: all images done */
        if (!c->job_done) return MHD_YES;
        c->done(c, c->job, c->done_arg);
        if (!c->status) srv_reply_error(c, 500, "internal", "handler did not reply");
        return MHD_YES;
    }
    cg_body_in(c->http->guard, c->guard);                        /* the body is in: no client deadline */
    c->handler(c, c->handler_ctx);
    if (!c->status && !c->job) srv_reply_error(c, 500, "internal", "handler did not reply");
    return MHD_YES;
}

static void access_log(srv_conn *c, struct MHD_Connection *mc, int status, double ms, enum MHD_RequestTerminationCode toe) {
    char ip[INET6_ADDRSTRLEN] = "-";
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        if (ci->client_addr->sa_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)ci->client_addr)->sin_addr, ip, sizeof ip);
        else if (ci->client_addr->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ci->client_addr)->sin6_addr, ip, sizeof ip);
    }
    char path[200], meth[40];                 /* the decoded path may hold CR LF or escape sequences */
    txt_log_escape(path, sizeof path, c->url, strlen(c->url));
    txt_log_escape(meth, sizeof meth, c->method, strlen(c->method));
    logfmt_access a = {.request_id = c->reqid, .method = meth, .path = path, .client = ip,
                       .trace_id = c->has_trace ? c->trace.trace_id : NULL, .span_id = c->has_trace ? c->span : NULL,
                       .note = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? NULL :
                               toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? "(timeout)" : "(aborted)",
                       .status = status, .images = c->images, .duration_ms = ms,
                       .head_version = c->head_version ? c->head_version : -1};
    srv_log_access(&a);
}

#define TRIM_AFTER ((size_t)4 << 20)   /* body buffers this big are followed by a trim */

/* After a big request, give freed heap memory back (every thread's arena), at most once a
 * second: a worst-case request does not leave the process that much larger. */
static void trim_memory(void) {
    static _Atomic double last;
    double now = vit_now(), prev = atomic_load(&last);
    if (now - prev < 1.0 || !atomic_compare_exchange_strong(&last, &prev, now)) return;
    malloc_trim(0);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **ptr, enum MHD_RequestTerminationCode toe) {
    srv_http *h = cls;
    srv_conn *c = *ptr;
    if (!c) return;
    *ptr = NULL;
    double ms = (vit_now() - c->t_start) * 1e3;
    int status = c->status ? c->status : 499;                   /* client went away before a reply */
    metrics_request(c->url, status, ms * 1e-3);
    if (srv_log_enabled(SRV_LOG_INFO)) access_log(c, mc, status, ms, toe);
    srv_log(SRV_LOG_DEBUG, "end %p", (void *)c);
    srv_job_free(c->job);
    body_release(c);
    cg_reply_done(h->guard, conn_guard(mc));
    size_t big = c->cap;
    conn_put(h, c);
    atomic_fetch_sub(&h->st->inflight, 1);
    if (big >= TRIM_AFTER) trim_memory();
}

/* A connection opened or closed: its deadlines (connguard.h).  Past --max-connections it is
 * `over` (answered 503 at once); past half the slack above that, closed at once, so
 * libmicrohttpd's own limit (max + slack, where it would stop accepting and leave clients in the
 * backlog) is not reached. */
#define CONN_SLACK(max) ((max) / 4 > 16 ? (max) / 4 : 16)
static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code) {
    srv_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        cg_close(h->guard, *socket_ctx);
        *socket_ctx = NULL;
        return;
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return;
    int over = 0;
    *socket_ctx = cg_open(h->guard, ci->connect_fd, &over);
    int max = h->cfg->max_connections;
    if (!*socket_ctx || (over && cg_open_count(h->guard) >= max + CONN_SLACK(max) / 2))
        shutdown(ci->connect_fd, SHUT_RDWR);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    if (!srv_log_enabled(SRV_LOG_DEBUG)) return;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == '\n') buf[--n] = '\0';
    srv_log(SRV_LOG_DEBUG, "mhd: %s", buf);
}

/* cfg's host and port as a socket address; MHD_USE_IPv6 added to *flags for an IPv6 host */
static int listen_addr(const srv_config *cfg, struct sockaddr_storage *ss, unsigned *flags, char *err, size_t errlen) {
    memset(ss, 0, sizeof *ss);
    if (strchr(cfg->host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)cfg->port);
        if (inet_pton(AF_INET6, cfg->host, &a->sin6_addr) != 1) { snprintf(err, errlen, "bad --host %s", cfg->host); return -1; }
        *flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)cfg->port);
        if (inet_pton(AF_INET, cfg->host, &a->sin_addr) != 1) { snprintf(err, errlen, "bad --host %s (an IPv4 or IPv6 address)", cfg->host); return -1; }
    }
    return 0;
}

srv_http *srv_http_start(srv_state *st, int *port, char *err, size_t errlen) {
    const srv_config *cfg = &st->cfg;
    struct sockaddr_storage ss;
    /* poll(), not epoll: with epoll, libmicrohttpd 0.9.75 missed some client closes mid-upload
     * (they held their slot until the timeout) */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (listen_addr(cfg, &ss, &flags, err, errlen) != 0) return NULL;
    srv_http *h = calloc(1, sizeof *h);
    if (!h) { snprintf(err, errlen, "out of memory"); return NULL; }
    h->st = st;
    h->cfg = cfg;
    pthread_mutex_init(&h->routes_mu, NULL);
    pthread_mutex_init(&h->pool_mu, NULL);
    cg_opts go = {.max_connections = cfg->max_connections, .header_timeout_s = cfg->header_timeout_s,
                  .over_timeout_s = 1, .body_grace_s = cfg->body_grace_s,
                  .min_body_rate = (double)cfg->min_body_rate_kb * 1024.0};
    h->guard = cg_new(&go);
    if (!h->guard) {
        snprintf(err, errlen, "cannot start the connection watchdog");
        srv_http_stop(h);
        return NULL;
    }
    h->mhd = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, h,
                              MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->http_threads,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)(cfg->max_connections + CONN_SLACK(cfg->max_connections)),
                              MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->max_connections_per_ip,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->request_timeout_s,
                              MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                              MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                              MHD_OPTION_END);
    if (!h->mhd) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", cfg->host, cfg->port, strerror(errno));
        srv_http_stop(h);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    *port = di ? di->port : cfg->port;
    return h;
}

void srv_http_quiesce(srv_http *h) {
    if (!h || !h->mhd) return;
    MHD_socket fd = MHD_quiesce_daemon(h->mhd);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void srv_http_stop(srv_http *h) {
    if (!h) return;
    if (h->mhd) MHD_stop_daemon(h->mhd);
    cg_free(h->guard);
    conn_pool_free(h);
    pthread_mutex_destroy(&h->routes_mu);
    pthread_mutex_destroy(&h->pool_mu);
    free(h);
}
