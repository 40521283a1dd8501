/* server.h: the daemon's shared state and the API other server modules (the admin API, issue 7)
 * build on: configuration, routing hooks, the per-request connection object, body/image access,
 * replies, submitting images through the decode+batch pipeline (for logits or features), and
 * the active head swap.
 *
 * Threads: route handlers and `done` callbacks run on libmicrohttpd threads; never block there
 * for long (submit work and return).  A handler must reply exactly once: directly
 * (srv_reply_json / srv_reply_error) or later through srv_conn_submit's callback. */
#ifndef SRV_SERVER_H
#define SRV_SERVER_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "batcher.h"
#include "jsonbody.h"
#include "logfmt.h"
#include "vit.h"

/* relative tolerance of the start-up device check: FP16 ViT-B/16 is ~1e-2 from FP32; a layout
 * or kernel bug is O(1) */
#define SRV_DEVICE_CHECK_TOL 0.05

typedef struct srv_config {
    const char *model_dir;
    const char *host;
    int port;
    int max_batch;
    long max_delay_us;
    int eager_dispatch;      /* an idle worker runs a partial batch when nothing else is coming */
    int max_queue;
    int workers;             /* engine sessions (each its own batcher worker) */
    int threads;             /* engine threads per session; 0 = all cores */
    int decoders;            /* decode pool threads; 0 = number of cores */
    int decode_nice;         /* nice level of the decode threads (0: same as the engine) */
    int fast_decode;         /* allow DCT-domain JPEG downscaling (faster, not PIL-exact) */
    int http_threads;        /* libmicrohttpd thread pool size */
    size_t max_body;         /* bytes (from --max-body-mb) */
    uint64_t max_pixels;
    int drain_timeout_s;
    int log_level;           /* 0 error, 1 warn, 2 info, 3 debug */
    int log_format;          /* LOGFMT_TEXT or LOGFMT_JSON (logfmt.h) */
    vit_device device;
    vit_precision precision;
    int device_check;        /* on CUDA: vit_device_check against the CPU before serving */
    int max_connections;
    int request_timeout_s;   /* idle/slow client timeout */
    int max_images;          /* images (multipart parts) per request */
    int max_top_k;
    const char *admin_token_file;  /* admin API (issue 7): token file; NULL/"" = none */
    const char *state_dir;         /* admin API: heads + active choice persist here */
    const char *cors_origin;       /* "*", "https://a,https://b", or ""/NULL: no CORS */
} srv_config;

typedef struct srv_state {
    srv_config cfg;
    vit_model *model;
    const vit_config *mc;
    char model_name[128];
    batcher *batcher;
    atomic_int ready;        /* model loaded and warm-up ran */
    atomic_int draining;
    atomic_long inflight;    /* requests begun and not yet completed */
} srv_state;

extern srv_state g_srv;

/* ---- logging (stderr) ---------------------------------------------------------------- */
void srv_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One request's access line (at info), in --log-format's format. */
void srv_log_access(const logfmt_access *a);
enum { SRV_LOG_ERROR = 0, SRV_LOG_WARN, SRV_LOG_INFO, SRV_LOG_DEBUG };

/* ---- HTTP (server/http.c) ------------------------------------------------------------ */

typedef struct srv_conn srv_conn;
/* Called once the whole request body is in (bounded by --max-body-mb). */
typedef void (*srv_handler)(srv_conn *c);

/* Route every path starting with prefix (e.g. "/admin/") to h, all methods (the handler checks
 * the method and replies 405 itself).  Safe while serving (from admin_init).  Up to 8. */
int srv_route_prefix(const char *prefix, srv_handler h);

int srv_http_start(char *err, size_t errlen);
void srv_http_quiesce(void);          /* stop accepting new connections */
void srv_http_stop(void);

const char *srv_conn_method(const srv_conn *c);
const char *srv_conn_path(const srv_conn *c);
const char *srv_conn_query(srv_conn *c, const char *key);     /* NULL if absent */
const char *srv_conn_header(srv_conn *c, const char *key);    /* NULL if absent */
const uint8_t *srv_conn_body(const srv_conn *c, size_t *len);
/* The request's id, sent back as X-Request-Id and logged: the client's X-Request-Id when it is
 * 1..SRV_REQID_MAX characters of [A-Za-z0-9._:-], else one vitd made (16 hex digits). */
#define SRV_REQID_MAX 64
const char *srv_conn_request_id(const srv_conn *c);

/* The images of the request, exactly as /classify reads them: multipart `image` parts, a raw
 * body (image/jpeg, image/png, application/octet-stream), or base64 strings in a JSON body
 * (application/json, see jsonbody.h; decoded in place, so the body is changed).  Fills data/len
 * of up to max spans (pointing into the body) and, when params is not NULL, the options a JSON
 * body gave (top_k, attention).  Returns the count, or -1 after replying with the error (400
 * malformed / no image / bad base64, 415 other content type or any Content-Encoding). */
int srv_conn_images(srv_conn *c, const uint8_t **data, size_t *len, int max, jb_params *params);

void srv_reply_json(srv_conn *c, int status, cJSON *root);    /* takes ownership of root */
/* Any other body (malloc'd, taken over) with its Content-Type (NULL: none). */
void srv_reply_raw(srv_conn *c, int status, char *body, size_t len, const char *ctype);
/* {"code", "message"}: the error object of a reply body or of one image's result */
cJSON *srv_error_obj(const char *code, const char *msg);
double srv_conn_start_time(const srv_conn *c);                /* vit_now() when the request began */
void srv_reply_error(srv_conn *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Submit job (its items' data/len set, e.g. from srv_conn_images) through the batcher; the
 * connection is suspended; when every image is done, done(c, job, arg) runs on an HTTP thread
 * and must reply.  The job is owned by the connection from here and freed after the request
 * ends.  Honors X-Request-Timeout-Ms.  On a full queue this replies 503 + Retry-After itself
 * and returns -1 (job already freed); else 0. */
typedef void (*srv_done_fn)(srv_conn *c, srv_job *job, void *arg);
int srv_conn_submit(srv_conn *c, srv_job *job, srv_done_fn done, void *arg);
void srv_conn_set_images(srv_conn *c, int n);                 /* for the access log */
/* One extra header on the reply to come (name < 32, value < 64 bytes; a later call replaces it):
 * WWW-Authenticate on 401, Allow on 405. */
void srv_conn_set_header(srv_conn *c, const char *name, const char *val);

/* ---- admin API hook ------------------------------------------------------------------ */
/* Defined by server/admin.c when present (weak here, so vitd links without it).  Called once,
 * after the model, sessions and warm-up are up and before readiness turns 200: register routes
 * with srv_route_prefix, restore state, activate a stored head.  Non-zero = fatal start-up error
 * (message in err).  admin_shutdown runs after the HTTP server stopped, before the batcher is freed. */
int admin_init(char *err, size_t errlen) __attribute__((weak));
void admin_shutdown(void) __attribute__((weak));

/* ---- heads --------------------------------------------------------------------------- */
/* Make h the head later batches use (retains h; batches already running finish with the old
 * one).  Returns 0, or -1 when the head's dim does not match the model's feature_dim. */
int server_set_active_head(vit_head *h);
vit_head *server_get_active_head(void);                       /* retained: release it */

#endif
