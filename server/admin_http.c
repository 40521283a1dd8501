/* admin_http.c: the admin API's HTTP handlers (see admin.h) on top of the admin store
 * (admin_store.h) and the trainer: token auth, routing, JSON in and out.  It keeps nothing of
 * its own but the token; every example, job and head version is in the store.
 *
 *   POST   /admin/examples?label=NAME   images (multipart `image` parts or raw body) -> features
 *   GET    /admin/examples              {"counts": {label: n}, "total", "max", "dim"}
 *   DELETE /admin/examples[?label=NAME] clear all, or one label
 *   POST   /admin/train                 JSON options -> 202 {"job": id}
 *   GET    /admin/jobs                  every job;  GET/DELETE /admin/jobs/{id}: status / cancel
 *   GET    /admin/heads                 versions (1 = the checkpoint's head), which is active
 *   POST   /admin/heads/{v}/activate    swap it in (rollback = activate an older one)
 *   DELETE /admin/heads/{v}             forget a version (not the active one, not 1) */
#include "admin.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "textcheck.h"
#include "util.h"

#define ADMIN_MAX_IMAGES 64      /* per POST /admin/examples */
#define ADMIN_MIN_TOKEN  16

struct admin_http {
    srv_state *st;
    adm_store *store;
    trainer *trainer;
    int enabled;
    char token[ADMIN_MAX_TOKEN + 1];
    size_t token_len;
    int dim;
    char fingerprint[320];        /* the backbone the examples' features come from */
};

/* ---- auth ------------------------------------------------------------------------------ */

/* Constant time in the content of `given` (depends only on the secret's length). */
static int token_ok(const admin_http *a, const char *given) {
    if (!given) return 0;
    size_t gl = strnlen(given, ADMIN_MAX_TOKEN + 1);
    volatile unsigned char diff = gl != a->token_len;
    for (size_t i = 0; i < a->token_len; i++)
        diff |= (unsigned char)a->token[i] ^ (unsigned char)(i < gl ? given[i] : 0);
    return diff == 0;
}

/* 1 if the request may proceed; otherwise it has been answered */
static int check_auth(const admin_http *a, srv_conn *c) {
    if (!a->enabled) {
        srv_reply_error(c, 404, "not_found",
                        "the admin API is disabled (start vitd with --admin-token-file or VITD_ADMIN_TOKEN)");
        return 0;
    }
    const char *h = srv_conn_header(c, "Authorization");
    const char *tok = NULL;
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        tok = h + 7;
        while (*tok == ' ') tok++;
    }
    if (!token_ok(a, tok)) {
        srv_conn_set_header(c, "WWW-Authenticate", "Bearer realm=\"vitd-admin\"");
        srv_reply_error(c, 401, "unauthorized", h ? "wrong admin token" : "missing Authorization: Bearer <admin token>");
        return 0;
    }
    return 1;
}

/* the token's checks; 0, or -1 with err set */
static int token_valid(const char *src, char *err, size_t errlen) {
    size_t n = strlen(src);
    if (n < ADMIN_MIN_TOKEN || n > ADMIN_MAX_TOKEN) {
        snprintf(err, errlen, "admin token must be %d to %d bytes long (got %zu)", ADMIN_MIN_TOKEN, ADMIN_MAX_TOKEN, n);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)src[i] <= 0x20 || (unsigned char)src[i] == 0x7f) {
            snprintf(err, errlen, "admin token must not contain spaces or control characters");
            return -1;
        }
    return 0;
}

int admin_token_read(const char *file, const char *value, char tok[ADMIN_MAX_TOKEN + 1], char *err, size_t errlen) {
    const char *src = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (file && *file) {
        if (vit_read_file(file, 64 * 1024, &buf, &len, err, errlen) != VIT_OK) return -1;
        /* first line, trimmed */
        char *s = (char *)buf, *e;
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
        e = s;
        while (*e && *e != '\n' && *e != '\r') e++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        *e = 0;
        src = s;
        if (!*src) {
            free(buf);
            snprintf(err, errlen, "--admin-token-file %s: the file holds no token", file);
            return -1;
        }
    } else {
        src = value;
    }
    int r = !src || !*src ? 0 : token_valid(src, err, errlen) != 0 ? -1 : 1;
    if (r == 1) memcpy(tok, src, strlen(src) + 1);
    if (buf) explicit_bzero(buf, len);
    free(buf);
    return r;
}

/* ---- helpers --------------------------------------------------------------------------- */

/* A store error as the HTTP answer: the status and code for each adm_status. */
static void reply_store_error(srv_conn *c, adm_status st, const char *msg) {
    switch (st) {
    case ADM_BAD_REQUEST: srv_reply_error(c, 400, "bad_request", "%s", msg); break;
    case ADM_NOT_FOUND: srv_reply_error(c, 404, "not_found", "%s", msg); break;
    case ADM_CONFLICT: srv_reply_error(c, 409, "conflict", "%s", msg); break;
    case ADM_FULL: srv_reply_error(c, 413, "too_many_examples", "%s", msg); break;
    case ADM_BUSY: srv_reply_error(c, 429, "too_many_jobs", "%s", msg); break;
    case ADM_UNAVAILABLE:
        srv_conn_set_header(c, "Retry-After", "1");
        srv_reply_error(c, 503, "store_unavailable", "admin store unavailable: %s", msg);
        break;
    default: srv_reply_error(c, 500, "internal", "%s", msg); break;
    }
}

/* 1..ADM_MAX_LABEL_LEN bytes of UTF-8 without control characters (NUL included: n is the length
 * as sent), so every answer that echoes labels stays valid JSON text */
static int label_valid(const char *l, size_t n) {
    return l && n > 0 && n <= ADM_MAX_LABEL_LEN && txt_utf8_clean(l, n, NULL, 0);
}

static void count_visit(void *ctx, const char *label, int n) { cJSON_AddNumberToObject(ctx, label, n); }

/* {label: n} of the store; *total all; NULL after replying with the store's error */
static cJSON *counts_json(admin_http *a, srv_conn *c, int *total) {
    char msg[512];
    cJSON *o = cJSON_CreateObject();
    adm_status st = a->store->examples_list(a->store->self, count_visit, o, total, msg, sizeof msg);
    if (st != ADM_OK) {
        cJSON_Delete(o);
        reply_store_error(c, st, msg);
        return NULL;
    }
    return o;
}

static cJSON *labels_json(const vit_head *h) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < vit_head_num_classes(h); i++) cJSON_AddItemToArray(a, cJSON_CreateString(vit_head_label(h, i)));
    return a;
}

/* positive integer from a path segment, or -1 */
static long parse_id(const char *s, const char **rest) {
    if (!s || *s < '0' || *s > '9') return -1;
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (errno || v <= 0 || v > INT_MAX) return -1;
    if (rest) *rest = e;
    else if (*e) return -1;
    return v;
}

/* ---- examples -------------------------------------------------------------------------- */

typedef struct examples_req {
    admin_http *a;
    char label[ADM_MAX_LABEL_LEN + 1];
} examples_req;

/* the failed images as [{"index", "error": {...}}]; *first the first one's index (-1: none) */
static cJSON *item_errors(const srv_job *job, int *first) {
    cJSON *errors = cJSON_CreateArray();
    *first = -1;
    for (int i = 0; i < job->n; i++) {
        const srv_item *it = &job->items[i];
        if (it->http == 200 && it->features) continue;
        if (*first < 0) *first = i;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "index", i);
        cJSON_AddItemToObject(e, "error", srv_error_obj(it->code ? it->code : "error", it->err));
        cJSON_AddItemToArray(errors, e);
    }
    return errors;
}

/* Every image's features are in: the good ones go to the store. */
static void examples_done(srv_conn *c, srv_job *job, void *arg) {
    examples_req *rq = arg;
    admin_http *a = rq->a;
    int first_err, added = 0, full = 0, total = 0, ok = 0;
    cJSON *errors = item_errors(job, &first_err);
    float *x = malloc(sizeof(float) * (size_t)job->n * (size_t)a->dim);
    for (int i = 0; x && i < job->n; i++)
        if (job->items[i].http == 200 && job->items[i].features)
            memcpy(x + (size_t)ok++ * a->dim, job->items[i].features, sizeof(float) * (size_t)a->dim);
    char msg[512] = "out of memory";
    adm_status st = !x ? ADM_NOMEM : ok == 0 ? ADM_OK
                  : a->store->examples_add(a->store->self, rq->label, a->fingerprint, x, ok, &added, &full, msg, sizeof msg);
    free(x);
    cJSON *counts = st == ADM_OK && added > 0 ? counts_json(a, c, &total) : NULL;
    free(rq);
    if (st != ADM_OK || (added > 0 && !counts)) {
        cJSON_Delete(errors);
        if (st != ADM_OK) reply_store_error(c, st, msg);
        return;
    }
    if (added == 0) {
        cJSON_Delete(errors);
        if (full) {
            srv_reply_error(c, 413, "too_many_examples", "the example store is full (%d examples, %d labels at most)",
                            ADM_MAX_EXAMPLES, ADM_MAX_LABELS);
        } else {
            const srv_item *it = &job->items[first_err < 0 ? 0 : first_err];
            srv_reply_error(c, it->http >= 400 ? it->http : 500, it->code ? it->code : "error", "%s", it->err);
        }
        return;
    }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "added", added);
    cJSON_AddItemToObject(r, "counts", counts);
    cJSON_AddNumberToObject(r, "total", total);
    if (cJSON_GetArraySize(errors) > 0) cJSON_AddItemToObject(r, "errors", errors);
    else cJSON_Delete(errors);
    if (full) cJSON_AddBoolToObject(r, "store_full", 1);
    srv_reply_json(c, 200, r);
}

static void examples_post(admin_http *a, srv_conn *c) {
    size_t label_len = 0;
    const char *label = srv_conn_query_n(c, "label", &label_len);
    if (!label_valid(label, label_len)) {
        srv_reply_error(c, 400, "bad_request", "?label=NAME is required: 1 to %d bytes of UTF-8, no control characters",
                        ADM_MAX_LABEL_LEN);
        return;
    }
    int total = 0;
    char msg[512];
    adm_status st = a->store->examples_count(a->store->self, &total, msg, sizeof msg);
    if (st != ADM_OK) { reply_store_error(c, st, msg); return; }
    if (total >= ADM_MAX_EXAMPLES) {
        srv_reply_error(c, 413, "too_many_examples", "the example store is full (%d examples); "
                        "DELETE /admin/examples to clear it", ADM_MAX_EXAMPLES);
        return;
    }
    const uint8_t *data[ADMIN_MAX_IMAGES];
    size_t len[ADMIN_MAX_IMAGES];
    int n = srv_conn_images(c, data, len, ADMIN_MAX_IMAGES, NULL);
    if (n < 0) return;                          /* answered */
    if (n == 0) {
        srv_reply_error(c, 400, "bad_request", "no image in the request");
        return;
    }
    srv_conn_set_images(c, n);
    srv_job *job = srv_job_new(a->st->batcher, n, SRV_WANT_FEATURES, 1);
    examples_req *rq = malloc(sizeof *rq);
    if (!job || !rq) {
        srv_job_free(job);
        free(rq);
        srv_reply_error(c, 500, "internal", "out of memory");
        return;
    }
    rq->a = a;
    snprintf(rq->label, sizeof rq->label, "%s", label);
    for (int i = 0; i < n; i++) {
        job->items[i].data = data[i];
        job->items[i].len = len[i];
    }
    if (srv_conn_submit(c, job, examples_done, rq) != 0) free(rq);   /* 503 answered */
}

static void examples_get(admin_http *a, srv_conn *c) {
    int total = 0;
    cJSON *counts = counts_json(a, c, &total);
    if (!counts) return;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddItemToObject(r, "counts", counts);
    cJSON_AddNumberToObject(r, "total", total);
    cJSON_AddNumberToObject(r, "max", ADM_MAX_EXAMPLES);
    cJSON_AddNumberToObject(r, "dim", a->dim);
    srv_reply_json(c, 200, r);
}

static void examples_delete(admin_http *a, srv_conn *c) {
    const char *label = srv_conn_query(c, "label");
    int deleted = 0, total = 0;
    char msg[512];
    adm_status st = a->store->examples_delete(a->store->self, label, &deleted, msg, sizeof msg);
    if (st != ADM_OK) { reply_store_error(c, st, msg); return; }
    cJSON *counts = counts_json(a, c, &total);
    if (!counts) return;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "deleted", deleted);
    cJSON_AddItemToObject(r, "counts", counts);
    cJSON_AddNumberToObject(r, "total", total);
    srv_reply_json(c, 200, r);
}

/* ---- training jobs --------------------------------------------------------------------- */

static cJSON *job_json(const adm_job_view *j) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "job", j->id);
    cJSON_AddStringToObject(r, "state", adm_job_state_str(j->state));
    cJSON_AddNumberToObject(r, "epoch", j->epoch);
    cJSON_AddNumberToObject(r, "epochs", j->epochs);
    if (j->has_loss) cJSON_AddNumberToObject(r, "loss", j->loss);
    else cJSON_AddNullToObject(r, "loss");
    if (j->has_loss && j->val_accuracy >= 0) cJSON_AddNumberToObject(r, "val_accuracy", j->val_accuracy);
    else cJSON_AddNullToObject(r, "val_accuracy");
    if (j->state == ADM_JOB_SUCCEEDED) cJSON_AddNumberToObject(r, "train_accuracy", j->train_accuracy);
    if (j->head_version) cJSON_AddNumberToObject(r, "head_version", j->head_version);
    else cJSON_AddNullToObject(r, "head_version");
    if (j->error && j->error[0]) cJSON_AddStringToObject(r, "error", j->error);
    cJSON_AddNumberToObject(r, "examples", j->examples);
    cJSON *names = cJSON_CreateArray();
    for (int i = 0; i < j->nlabels; i++) cJSON_AddItemToArray(names, cJSON_CreateString(j->labels[i]));
    cJSON_AddItemToObject(r, "example_labels", names);
    cJSON_AddStringToObject(r, "labels", j->mode == VIT_LABELS_EXTEND ? "extend" : "replace");
    cJSON_AddNumberToObject(r, "created", j->created);
    if (j->started > 0) cJSON_AddNumberToObject(r, "started", j->started);
    if (j->finished > 0) cJSON_AddNumberToObject(r, "finished", j->finished);
    if (j->owner && *j->owner) cJSON_AddStringToObject(r, "owner", j->owner);
    cJSON_AddNumberToObject(r, "resumed_from_epoch", j->resumed_from_epoch);
    return r;
}

static void job_visit_one(void *ctx, const adm_job_view *j) { *(cJSON **)ctx = job_json(j); }
static void job_visit_all(void *ctx, const adm_job_view *j) { cJSON_AddItemToArray(ctx, job_json(j)); }

static void train_post(admin_http *a, srv_conn *c) {
    size_t len;
    const uint8_t *body = srv_conn_body(c, &len);
    vit_train_opts o;
    vit_label_mode mode;
    char msg[512];
    if (admin_parse_train(body, len, &o, &mode, msg, sizeof msg) != 0) {
        srv_reply_error(c, 400, "bad_request", "%s", msg);
        return;
    }
    int id = 0;
    cJSON *r = NULL;
    adm_status st = a->store->job_create(a->store->self, &o, mode, &id, msg, sizeof msg);
    if (st == ADM_OK) st = a->store->job_get(a->store->self, id, job_visit_one, &r, msg, sizeof msg);
    if (st != ADM_OK) { reply_store_error(c, st, msg); return; }
    trainer_kick(a->trainer);
    srv_reply_json(c, 202, r);
}

static void jobs_get(admin_http *a, srv_conn *c, long id) {
    char msg[512];
    cJSON *r = NULL, *list = NULL;
    adm_status st;
    if (id > 0) {
        st = a->store->job_get(a->store->self, (int)id, job_visit_one, &r, msg, sizeof msg);
    } else {
        r = cJSON_CreateObject();
        list = cJSON_AddArrayToObject(r, "jobs");
        st = a->store->job_get(a->store->self, 0, job_visit_all, list, msg, sizeof msg);
    }
    if (st != ADM_OK) {
        cJSON_Delete(r);
        reply_store_error(c, st, msg);
        return;
    }
    srv_reply_json(c, 200, r);
}

static void jobs_delete(admin_http *a, srv_conn *c, long id) {
    char msg[512];
    cJSON *r = NULL;
    adm_status st = a->store->job_cancel(a->store->self, (int)id, job_visit_one, &r, msg, sizeof msg);
    if (st != ADM_OK) reply_store_error(c, st, msg);
    else srv_reply_json(c, 202, r);
}

/* ---- heads ----------------------------------------------------------------------------- */

static void head_visit(void *ctx, const adm_head_view *h) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "version", h->version);
    cJSON_AddBoolToObject(r, "active", h->active);
    cJSON_AddStringToObject(r, "source", h->job ? "job" : (h->version == 1 ? "checkpoint" : "restored"));
    if (h->job) cJSON_AddNumberToObject(r, "job", h->job);
    cJSON_AddNumberToObject(r, "created", h->created);
    if (h->trained_by && *h->trained_by) cJSON_AddStringToObject(r, "trained_by", h->trained_by);
    cJSON_AddNumberToObject(r, "num_classes", vit_head_num_classes(h->head));
    cJSON_AddItemToObject(r, "labels", labels_json(h->head));
    cJSON *m = h->metrics ? cJSON_Parse(h->metrics) : NULL;
    if (m) cJSON_AddItemToObject(r, "metrics", m);
    else cJSON_AddNullToObject(r, "metrics");
    cJSON_AddItemToArray(ctx, r);
}

static void heads_get(admin_http *a, srv_conn *c) {
    char msg[512];
    int active = 0;
    cJSON *list = cJSON_CreateArray();
    adm_status st = a->store->head_list(a->store->self, head_visit, list, &active, msg, sizeof msg);
    if (st != ADM_OK) {
        cJSON_Delete(list);
        reply_store_error(c, st, msg);
        return;
    }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "active", active);
    cJSON_AddItemToObject(r, "heads", list);
    srv_reply_json(c, 200, r);
}

static void heads_activate(admin_http *a, srv_conn *c, long v) {
    char msg[512];
    vit_head *h = NULL;
    adm_status st = a->store->active_set(a->store->self, (int)v, &h, msg, sizeof msg);
    if (st != ADM_OK) { reply_store_error(c, st, msg); return; }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "active", (double)v);
    cJSON_AddItemToObject(r, "labels", labels_json(h));
    vit_head_release(h);
    srv_reply_json(c, 200, r);
}

static void heads_delete(admin_http *a, srv_conn *c, long v) {
    char msg[512];
    adm_status st = a->store->head_delete(a->store->self, (int)v, msg, sizeof msg);
    if (st != ADM_OK) { reply_store_error(c, st, msg); return; }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "deleted", (double)v);
    srv_reply_json(c, 200, r);
}

/* ---- routing ---------------------------------------------------------------------------- */

static void method_not_allowed(srv_conn *c, const char *allow) {
    srv_conn_set_header(c, "Allow", allow);
    srv_reply_error(c, 405, "method_not_allowed", "%s %s: allowed: %s", srv_conn_method(c), srv_conn_path(c), allow);
}

/* /admin/jobs/{id} and /admin/heads/{v}[/activate] */
static void route_item(admin_http *a, srv_conn *c, const char *p, int get, int post, int del) {
    if (!strncmp(p, "jobs/", 5)) {
        long id = parse_id(p + 5, NULL);
        if (id < 0) srv_reply_error(c, 404, "not_found", "no such job");
        else if (get) jobs_get(a, c, id);
        else if (del) jobs_delete(a, c, id);
        else method_not_allowed(c, "GET, DELETE");
        return;
    }
    const char *rest = NULL;
    long v = parse_id(p + 6, &rest);
    if (v < 0 || (*rest && strcmp(rest, "/activate"))) srv_reply_error(c, 404, "not_found", "no such head path");
    else if (!*rest) { if (del) heads_delete(a, c, v); else method_not_allowed(c, "DELETE"); }
    else if (post) heads_activate(a, c, v);
    else method_not_allowed(c, "POST");
}

static void admin_handler(srv_conn *c, void *ctx) {
    admin_http *a = ctx;
    if (!check_auth(a, c)) return;
    const char *m = srv_conn_method(c), *p = srv_conn_path(c) + strlen("/admin/");
    int get = !strcmp(m, "GET"), post = !strcmp(m, "POST"), del = !strcmp(m, "DELETE");
    if (!strcmp(p, "examples")) {
        if (post) examples_post(a, c);
        else if (get) examples_get(a, c);
        else if (del) examples_delete(a, c);
        else method_not_allowed(c, "GET, POST, DELETE");
    } else if (!strcmp(p, "train")) {
        if (post) train_post(a, c);
        else method_not_allowed(c, "POST");
    } else if (!strcmp(p, "jobs")) {
        if (get) jobs_get(a, c, 0);
        else method_not_allowed(c, "GET");
    } else if (!strcmp(p, "heads")) {
        if (get) heads_get(a, c);
        else method_not_allowed(c, "GET");
    } else if (!strncmp(p, "jobs/", 5) || !strncmp(p, "heads/", 6)) {
        route_item(a, c, p, get, post, del);
    } else {
        srv_reply_error(c, 404, "not_found", "unknown admin path %s", srv_conn_path(c));
    }
}

/* ---- life cycle -------------------------------------------------------------------------- */

admin_http *admin_http_start(srv_http *http, const admin_http_opts *o, char *err, size_t errlen) {
    admin_http *a = calloc(1, sizeof *a);
    if (!a) { snprintf(err, errlen, "out of memory"); return NULL; }
    a->st = o->st;
    a->store = o->store;
    a->trainer = o->trainer;
    a->dim = o->st->mc->feature_dim;
    a->enabled = o->token && *o->token;
    if (a->enabled) {
        snprintf(a->token, sizeof a->token, "%s", o->token);
        a->token_len = strlen(a->token);
    }
    /* the backbone: model name, architecture, feature size, checkpoint hash (main.c) */
    snprintf(a->fingerprint, sizeof a->fingerprint, "%s", o->st->fingerprint);
    if (srv_http_route_prefix(http, "/admin/", admin_handler, a) != 0) {
        free(a);
        snprintf(err, errlen, "cannot register the /admin/ route");
        return NULL;
    }
    return a;
}

void admin_http_free(admin_http *a) { free(a); }
