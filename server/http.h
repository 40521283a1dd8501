/* http.h: the transport (server/http.c): libmicrohttpd, per-request connection objects, bounded
 * bodies, replies with JSON errors, CORS, request ids, suspend/resume around the batcher, the
 * access log.  It knows no endpoint: routes are registered by the modules that own them
 * (server/routes.c, server/admin_http.c, ...), each with its own context pointer.
 *
 * Threads: handlers and `done` callbacks run on libmicrohttpd threads; never block there for long
 * (submit work and return).  A handler must reply exactly once: directly (srv_reply_json /
 * srv_reply_error) or later through srv_conn_submit's callback. */
#ifndef SRV_HTTP_H
#define SRV_HTTP_H
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "batcher.h"
#include "jsonbody.h"
#include "server.h"

typedef struct srv_http srv_http;
typedef struct srv_conn srv_conn;
/* Called once the whole request body is in (bounded by --max-body-mb); ctx as registered. */
typedef void (*srv_handler)(srv_conn *c, void *ctx);

/* Listen on st->cfg's host and port with its limits; st stays the caller's and must outlive the
 * server (the transport reads cfg, `draining` and the batcher, and counts `inflight`).  Returns
 * the server and sets *port (the bound one, for --port 0), or NULL with err set. */
srv_http *srv_http_start(srv_state *st, int *port, char *err, size_t errlen);
void srv_http_quiesce(srv_http *h);     /* stop accepting new connections */
void srv_http_stop(srv_http *h);        /* close everything, free h (NULL: nothing) */

/* Register a route; safe while serving (a route is visible once complete).  Up to 32 routes.
 * srv_http_route: exactly `path`, for the methods in `methods` ("GET, HEAD" or "POST"); other
 * methods get 405 with Allow, OPTIONS from an allowed origin a CORS preflight.
 * srv_http_route_prefix: every path starting with `prefix` (e.g. "/admin/"), all methods (the
 * handler checks the method and replies 405 itself).  Exact routes are matched first.
 * Returns 0, or -1 when the table is full or the path too long. */
int srv_http_route(srv_http *h, const char *path, const char *methods, srv_handler fn, void *ctx);
int srv_http_route_prefix(srv_http *h, const char *prefix, srv_handler fn, void *ctx);

const char *srv_conn_method(const srv_conn *c);
const char *srv_conn_path(const srv_conn *c);
const char *srv_conn_query(srv_conn *c, const char *key);     /* NULL if absent */
/* The same with its length as sent (a %00 in the query decodes to a NUL inside the value). */
const char *srv_conn_query_n(srv_conn *c, const char *key, size_t *len);
const char *srv_conn_header(srv_conn *c, const char *key);    /* NULL if absent */
const uint8_t *srv_conn_body(const srv_conn *c, size_t *len);
double srv_conn_start_time(const srv_conn *c);                /* vit_now() when the request began */
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
#define SRV_MAX_PARTS 64
int srv_conn_images(srv_conn *c, const uint8_t **data, size_t *len, int max, jb_params *params);

void srv_reply_json(srv_conn *c, int status, cJSON *root);    /* takes ownership of root */
void srv_reply_error(srv_conn *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Any other body (malloc'd, taken over) with its Content-Type. */
void srv_reply_raw(srv_conn *c, int status, char *body, size_t len, const char *ctype);
/* A body that outlives the reply (bytes compiled in; not copied, not freed), its Content-Type
 * (NULL: none, e.g. a 304) and extra headers as name, value pairs ending with NULL.  No CORS
 * headers: the web page's files are for its own origin. */
void srv_reply_static(srv_conn *c, int status, const void *body, size_t len, const char *ctype,
                      const char *const *hdrs);
/* {"code", "message"}: the error object of a reply body or of one image's result */
cJSON *srv_error_obj(const char *code, const char *msg);

/* Submit job (its items' data/len set, e.g. from srv_conn_images) through the batcher; the
 * connection is suspended; when every image is done, done(c, job, arg) runs on an HTTP thread
 * and must reply.  The job is owned by the connection from here and freed after the request
 * ends.  Honors X-Request-Timeout-Ms.  On a full queue this replies 503 + Retry-After itself
 * and returns -1 (job already freed); else 0. */
typedef void (*srv_done_fn)(srv_conn *c, srv_job *job, void *arg);
int srv_conn_submit(srv_conn *c, srv_job *job, srv_done_fn done, void *arg);
void srv_conn_set_images(srv_conn *c, int n);                 /* for the access log */
/* The head version that answered the request (> 0; 0: none): sent as X-Head-Version on the
 * reply and logged with the request (the access line's head_version). */
void srv_conn_set_head_version(srv_conn *c, int version);
/* One extra header on the reply to come (name < 32, value < 64 bytes; a later call replaces it):
 * Retry-After on 503, WWW-Authenticate on 401, Allow on 405. */
void srv_conn_set_header(srv_conn *c, const char *name, const char *val);

#endif
