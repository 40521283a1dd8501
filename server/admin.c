/* admin.c: the admin API (see admin.h): example features per label, background head training
 * jobs, head versions with atomic activation and rollback, persistence in --state-dir.
 *
 *   POST   /admin/examples?label=NAME   images (multipart `image` parts or raw body) -> features
 *   GET    /admin/examples              {"counts": {label: n}, "total", "max", "dim"}
 *   DELETE /admin/examples[?label=NAME] clear all, or one label
 *   POST   /admin/train                 JSON options -> 202 {"job": id}
 *   GET    /admin/jobs                  every job;  GET/DELETE /admin/jobs/{id}: status / cancel
 *   GET    /admin/heads                 versions (1 = the checkpoint's head), which is active
 *   POST   /admin/heads/{v}/activate    swap it in (rollback = activate an older one)
 *   DELETE /admin/heads/{v}             forget a version (not the active one, not 1)
 *
 * Locking: one mutex (g_adm.mu) guards examples, jobs and heads; it is never held while
 * training, while extracting features or while writing files, except that a head version's
 * file is written before the version is published.  The trainer thread takes the oldest queued
 * job, snapshots nothing itself (the job got its copy of the examples at submission) and trains
 * without the lock; progress is copied into the job under the lock once per epoch. */
#include "admin.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "io/safetensors_write.h"
#include "server.h"
#include "textcheck.h"
#include "util.h"

#define ADMIN_MAX_EXAMPLES   10000   /* stored feature vectors, all labels together */
#define ADMIN_MAX_LABELS     1000
#define ADMIN_MAX_LABEL_LEN  128
#define ADMIN_MAX_JOBS       64      /* remembered jobs; the oldest finished ones are forgotten */
#define ADMIN_MAX_PENDING    4       /* queued + running */
#define ADMIN_MAX_HEADS      256
#define ADMIN_MAX_IMAGES     64      /* per POST /admin/examples */
#define ADMIN_MIN_TOKEN      16
#define ADMIN_MAX_TOKEN      4096

typedef struct ex_label {
    char name[ADMIN_MAX_LABEL_LEN + 1];
    int n, cap;
    float *feat;                  /* (n, dim) */
} ex_label;

enum { JOB_QUEUED, JOB_RUNNING, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED };
static const char *const job_state_str[] = {"queued", "running", "succeeded", "failed", "cancelled"};

typedef struct adm_job {
    int id;
    int state;
    atomic_int cancel;
    vit_train_opts opts;
    vit_label_mode mode;
    /* snapshot of the examples at submission */
    int N, nlabels;
    float *x;                     /* (N, dim) */
    int32_t *y;                   /* (N) index into names */
    char **names;                 /* nlabels */
    /* progress and outcome (under g_adm.mu) */
    int epoch;
    float loss, val_acc, train_acc;
    int has_loss;
    int head_version;             /* 0 until it succeeded */
    char error[512];
    double created, started, finished;
} adm_job;

typedef struct adm_head {
    int version;
    vit_head *head;               /* one reference */
    double created;               /* unix seconds */
    int job;                      /* 0 for the checkpoint's head */
    char *metrics;                /* JSON object text or NULL */
} adm_head;

static struct {
    int enabled;
    char token[ADMIN_MAX_TOKEN + 1];
    size_t token_len;
    char *state_dir;              /* NULL: no persistence */
    int dim;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ex_label *labels;             /* ADMIN_MAX_LABELS */
    int nlabels, total;
    adm_job *jobs[ADMIN_MAX_JOBS];
    int njobs, next_job;
    adm_head heads[ADMIN_MAX_HEADS];
    int nheads, next_version, active;
    pthread_t trainer;
    int trainer_started, stop;
} g_adm = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static double unix_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- auth ------------------------------------------------------------------------------ */

/* Constant time in the content of `given` (depends only on the secret's length). */
static int token_ok(const char *given) {
    if (!given) return 0;
    size_t gl = strnlen(given, ADMIN_MAX_TOKEN + 1);
    volatile unsigned char diff = gl != g_adm.token_len;
    for (size_t i = 0; i < g_adm.token_len; i++)
        diff |= (unsigned char)g_adm.token[i] ^ (unsigned char)(i < gl ? given[i] : 0);
    return diff == 0;
}

/* 1 if the request may proceed; otherwise it has been answered */
static int check_auth(srv_conn *c) {
    if (!g_adm.enabled) {
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
    if (!token_ok(tok)) {
        srv_conn_set_header(c, "WWW-Authenticate", "Bearer realm=\"vitd-admin\"");
        srv_reply_error(c, 401, "unauthorized", h ? "wrong admin token"
                                                  : "missing Authorization: Bearer <admin token>");
        return 0;
    }
    return 1;
}

static int read_token(const char *file, char *err, size_t errlen) {
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
    } else {
        src = getenv("VITD_ADMIN_TOKEN");
    }
    if (file && *file && !*src) {
        free(buf);
        snprintf(err, errlen, "--admin-token-file %s: the file holds no token", file);
        return -1;
    }
    if (!src || !*src) {
        free(buf);
        return 0;                 /* disabled */
    }
    size_t n = strlen(src);
    if (n < ADMIN_MIN_TOKEN || n > ADMIN_MAX_TOKEN) {
        free(buf);
        snprintf(err, errlen, "admin token must be %d to %d bytes long (got %zu)", ADMIN_MIN_TOKEN,
                 ADMIN_MAX_TOKEN, n);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)src[i] <= 0x20 || (unsigned char)src[i] == 0x7f) {
            free(buf);
            snprintf(err, errlen, "admin token must not contain spaces or control characters");
            return -1;
        }
    memcpy(g_adm.token, src, n + 1);
    g_adm.token_len = n;
    free(buf);
    return 1;
}

/* ---- helpers --------------------------------------------------------------------------- */

/* 1..ADMIN_MAX_LABEL_LEN bytes of UTF-8 without control characters (NUL included: n is the
 * length as sent), so every answer that echoes labels stays valid JSON text */
static int label_valid(const char *l, size_t n) {
    return l && n > 0 && n <= ADMIN_MAX_LABEL_LEN && txt_utf8_clean(l, n, NULL, 0);
}

static cJSON *counts_json(void) {   /* under mu */
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < g_adm.nlabels; i++)
        cJSON_AddNumberToObject(o, g_adm.labels[i].name, g_adm.labels[i].n);
    return o;
}

static cJSON *labels_json(const vit_head *h) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < vit_head_num_classes(h); i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(vit_head_label(h, i)));
    return a;
}

static adm_head *find_head(int v) {  /* under mu */
    for (int i = 0; i < g_adm.nheads; i++)
        if (g_adm.heads[i].version == v) return &g_adm.heads[i];
    return NULL;
}

static adm_job *find_job(int id) {   /* under mu */
    for (int i = 0; i < g_adm.njobs; i++)
        if (g_adm.jobs[i]->id == id) return g_adm.jobs[i];
    return NULL;
}

static void job_free(adm_job *j) {
    if (!j) return;
    free(j->x);
    free(j->y);
    for (int i = 0; j->names && i < j->nlabels; i++) free(j->names[i]);
    free(j->names);
    free(j);
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

/* vitd_admin_* gauges in /metrics (under mu) */
static void update_gauges(void) {
    metrics_gauge_set("admin_active_head_version", "head version serving /classify (1 = the checkpoint's)",
                      g_adm.active);
    metrics_gauge_set("admin_head_versions", "head versions kept by the admin API", g_adm.nheads);
    metrics_gauge_set("admin_examples", "example feature vectors stored for training", g_adm.total);
}

/* ---- persistence ----------------------------------------------------------------------- */

static vit_status save_active(int version, char *err, size_t errlen) {
    if (!g_adm.state_dir) return VIT_OK;
    char path[4096], txt[64];
    snprintf(path, sizeof path, "%s/active.json", g_adm.state_dir);
    int n = snprintf(txt, sizeof txt, "{\"version\": %d}\n", version);
    stw_chunk ch = { txt, (size_t)n };
    return vit_write_file_atomic(path, &ch, 1, 0600, err, errlen);
}

static vit_status save_head(const adm_head *h, char *err, size_t errlen) {
    if (!g_adm.state_dir) return VIT_OK;
    char path[4096], ver[16], created[32], job[16];
    snprintf(path, sizeof path, "%s/heads/head-%06d.safetensors", g_adm.state_dir, h->version);
    snprintf(ver, sizeof ver, "%d", h->version);
    snprintf(created, sizeof created, "%.3f", h->created);
    snprintf(job, sizeof job, "%d", h->job);
    const char *kv[] = {"version", ver, "created", created, "job", job,
                        "metrics", h->metrics ? h->metrics : "null"};
    return vit_head_save(h->head, path, kv, 4, err, errlen);
}

static void restore_state(void) {
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/heads", g_adm.state_dir);
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char fp[4400];
        snprintf(fp, sizeof fp, "%s/%s", path, e->d_name);
        if (strstr(e->d_name, ".tmp.")) {       /* left by a crash mid-write */
            srv_log(SRV_LOG_WARN, "admin: removing stale temporary file %s", fp);
            unlink(fp);
            continue;
        }
        int v;
        char tail[32];
        if (sscanf(e->d_name, "head-%d.%31s", &v, tail) != 2 || strcmp(tail, "safetensors") || v < 2)
            continue;
        if (g_adm.nheads >= ADMIN_MAX_HEADS) {
            srv_log(SRV_LOG_WARN, "admin: more than %d heads in %s, ignoring %s", ADMIN_MAX_HEADS, path, fp);
            continue;
        }
        vit_head *h = NULL;
        char *meta = NULL;
        vit_status st = vit_head_load(fp, &h, &meta, err, sizeof err);
        if (st != VIT_OK) {
            srv_log(SRV_LOG_ERROR, "admin: skipping corrupt head file: %s", err);
            continue;
        }
        if (vit_head_dim(h) != g_adm.dim || find_head(v)) {
            srv_log(SRV_LOG_ERROR, "admin: skipping head file %s: %s", fp,
                    find_head(v) ? "duplicate version" : "feature size differs from the model's");
            vit_head_release(h);
            free(meta);
            continue;
        }
        adm_head *ah = &g_adm.heads[g_adm.nheads++];
        memset(ah, 0, sizeof *ah);
        ah->version = v;
        ah->head = h;
        cJSON *m = cJSON_Parse(meta);
        const cJSON *cr = cJSON_GetObjectItemCaseSensitive(m, "created");
        const cJSON *jb = cJSON_GetObjectItemCaseSensitive(m, "job");
        const cJSON *mt = cJSON_GetObjectItemCaseSensitive(m, "metrics");
        if (cJSON_IsString(cr)) ah->created = atof(cr->valuestring);
        if (cJSON_IsString(jb)) ah->job = atoi(jb->valuestring);
        if (cJSON_IsString(mt) && strcmp(mt->valuestring, "null")) {
            cJSON *chk = cJSON_Parse(mt->valuestring);
            if (cJSON_IsObject(chk)) ah->metrics = strdup(mt->valuestring);
            cJSON_Delete(chk);
        }
        cJSON_Delete(m);
        free(meta);
        if (v >= g_adm.next_version) g_adm.next_version = v + 1;
        srv_log(SRV_LOG_INFO, "admin: restored head version %d (%d labels)", v, vit_head_num_classes(h));
    }
    if (d) closedir(d);
    /* keep versions in order */
    for (int i = 1; i < g_adm.nheads; i++)
        for (int k = i; k > 0 && g_adm.heads[k].version < g_adm.heads[k - 1].version; k--) {
            adm_head t = g_adm.heads[k];
            g_adm.heads[k] = g_adm.heads[k - 1];
            g_adm.heads[k - 1] = t;
        }

    snprintf(path, sizeof path, "%s/active.json", g_adm.state_dir);
    uint8_t *buf;
    size_t len;
    if (access(path, F_OK) != 0) return;
    if (vit_read_file(path, 4096, &buf, &len, err, sizeof err) != VIT_OK) {
        srv_log(SRV_LOG_ERROR, "admin: skipping active head choice: %s", err);
        return;
    }
    cJSON *a = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(a, "version");
    adm_head *h = cJSON_IsNumber(v) && v->valuedouble == (int)v->valuedouble ? find_head(v->valueint) : NULL;
    if (!h) {
        srv_log(SRV_LOG_ERROR, "admin: skipping corrupt %s (or unknown version); head 1 stays active", path);
    } else if (server_set_active_head(h->head) != 0) {
        srv_log(SRV_LOG_ERROR, "admin: cannot activate head version %d", h->version);
    } else {
        g_adm.active = h->version;
        srv_log(SRV_LOG_INFO, "admin: head version %d is active", h->version);
    }
    cJSON_Delete(a);
}

/* ---- examples -------------------------------------------------------------------------- */

static void examples_done(srv_conn *c, srv_job *job, void *arg) {
    char *label = arg;
    int added = 0, first_err = -1, full = 0;
    cJSON *errors = cJSON_CreateArray();
    pthread_mutex_lock(&g_adm.mu);
    ex_label *L = NULL;
    for (int i = 0; i < g_adm.nlabels; i++)
        if (!strcmp(g_adm.labels[i].name, label)) L = &g_adm.labels[i];
    for (int i = 0; i < job->n; i++) {
        srv_item *it = &job->items[i];
        if (it->http != 200 || !it->features) {
            if (first_err < 0) first_err = i;
            cJSON *e = cJSON_CreateObject(), *eo = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "index", i);
            cJSON_AddStringToObject(eo, "code", it->code ? it->code : "error");
            cJSON_AddStringToObject(eo, "message", it->err);
            cJSON_AddItemToObject(e, "error", eo);
            cJSON_AddItemToArray(errors, e);
            continue;
        }
        if (g_adm.total >= ADMIN_MAX_EXAMPLES || (!L && g_adm.nlabels >= ADMIN_MAX_LABELS)) {
            full = 1;
            continue;
        }
        if (!L) {
            L = &g_adm.labels[g_adm.nlabels++];
            memset(L, 0, sizeof *L);
            snprintf(L->name, sizeof L->name, "%s", label);
        }
        if (L->n == L->cap) {
            int nc = L->cap ? 2 * L->cap : 64;
            float *nf = realloc(L->feat, sizeof(float) * (size_t)nc * (size_t)g_adm.dim);
            if (!nf) { full = 1; continue; }
            L->feat = nf;
            L->cap = nc;
        }
        memcpy(L->feat + (size_t)L->n * g_adm.dim, it->features, sizeof(float) * (size_t)g_adm.dim);
        L->n++;
        g_adm.total++;
        added++;
    }
    cJSON *counts = counts_json();
    int total = g_adm.total;
    update_gauges();
    pthread_mutex_unlock(&g_adm.mu);
    free(label);
    if (added == 0) {
        cJSON_Delete(counts);
        cJSON_Delete(errors);
        if (full) {
            srv_reply_error(c, 413, "too_many_examples", "the example store is full (%d examples, %d labels at most)",
                            ADMIN_MAX_EXAMPLES, ADMIN_MAX_LABELS);
        } else {
            srv_item *it = &job->items[first_err < 0 ? 0 : first_err];
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

static void examples_post(srv_conn *c) {
    size_t label_len = 0;
    const char *label = srv_conn_query_n(c, "label", &label_len);
    if (!label_valid(label, label_len)) {
        srv_reply_error(c, 400, "bad_request",
                        "?label=NAME is required: 1 to %d bytes of UTF-8, no control characters", ADMIN_MAX_LABEL_LEN);
        return;
    }
    pthread_mutex_lock(&g_adm.mu);
    int total = g_adm.total;
    pthread_mutex_unlock(&g_adm.mu);
    if (total >= ADMIN_MAX_EXAMPLES) {
        srv_reply_error(c, 413, "too_many_examples", "the example store is full (%d examples); "
                        "DELETE /admin/examples to clear it", ADMIN_MAX_EXAMPLES);
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
    srv_job *job = srv_job_new(g_srv.batcher, n, SRV_WANT_FEATURES, 1);
    char *lab = strdup(label);
    if (!job || !lab) {
        srv_job_free(job);
        free(lab);
        srv_reply_error(c, 500, "internal", "out of memory");
        return;
    }
    for (int i = 0; i < n; i++) {
        job->items[i].data = data[i];
        job->items[i].len = len[i];
    }
    if (srv_conn_submit(c, job, examples_done, lab) != 0) free(lab);   /* 503 answered */
}

static void examples_get(srv_conn *c) {
    cJSON *r = cJSON_CreateObject();
    pthread_mutex_lock(&g_adm.mu);
    cJSON_AddItemToObject(r, "counts", counts_json());
    cJSON_AddNumberToObject(r, "total", g_adm.total);
    pthread_mutex_unlock(&g_adm.mu);
    cJSON_AddNumberToObject(r, "max", ADMIN_MAX_EXAMPLES);
    cJSON_AddNumberToObject(r, "dim", g_adm.dim);
    srv_reply_json(c, 200, r);
}

static void examples_delete(srv_conn *c) {
    const char *label = srv_conn_query(c, "label");
    int deleted = 0, found = 0;
    pthread_mutex_lock(&g_adm.mu);
    for (int i = 0; i < g_adm.nlabels; i++) {
        ex_label *L = &g_adm.labels[i];
        if (label && strcmp(L->name, label)) continue;
        found = 1;
        deleted += L->n;
        g_adm.total -= L->n;
        free(L->feat);
        g_adm.labels[i] = g_adm.labels[--g_adm.nlabels];
        i--;
    }
    cJSON *counts = counts_json();
    int total = g_adm.total;
    update_gauges();
    pthread_mutex_unlock(&g_adm.mu);
    if (label && !found) {
        cJSON_Delete(counts);
        srv_reply_error(c, 404, "not_found", "no examples for label '%s'", label);
        return;
    }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "deleted", deleted);
    cJSON_AddItemToObject(r, "counts", counts);
    cJSON_AddNumberToObject(r, "total", total);
    srv_reply_json(c, 200, r);
}

/* ---- training jobs --------------------------------------------------------------------- */

static cJSON *job_json(const adm_job *j) {   /* under mu */
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "job", j->id);
    cJSON_AddStringToObject(r, "state", job_state_str[j->state]);
    cJSON_AddNumberToObject(r, "epoch", j->epoch);
    cJSON_AddNumberToObject(r, "epochs", j->opts.epochs);
    if (j->has_loss) cJSON_AddNumberToObject(r, "loss", j->loss);
    else cJSON_AddNullToObject(r, "loss");
    if (j->has_loss && j->val_acc >= 0) cJSON_AddNumberToObject(r, "val_accuracy", j->val_acc);
    else cJSON_AddNullToObject(r, "val_accuracy");
    if (j->state == JOB_SUCCEEDED) cJSON_AddNumberToObject(r, "train_accuracy", j->train_acc);
    if (j->head_version) cJSON_AddNumberToObject(r, "head_version", j->head_version);
    else cJSON_AddNullToObject(r, "head_version");
    if (j->error[0]) cJSON_AddStringToObject(r, "error", j->error);
    cJSON_AddNumberToObject(r, "examples", j->N);
    cJSON *names = cJSON_CreateArray();
    for (int i = 0; i < j->nlabels; i++) cJSON_AddItemToArray(names, cJSON_CreateString(j->names[i]));
    cJSON_AddItemToObject(r, "example_labels", names);
    cJSON_AddStringToObject(r, "labels", j->mode == VIT_LABELS_EXTEND ? "extend" : "replace");
    cJSON_AddNumberToObject(r, "created", j->created);
    if (j->started > 0) cJSON_AddNumberToObject(r, "started", j->started);
    if (j->finished > 0) cJSON_AddNumberToObject(r, "finished", j->finished);
    return r;
}

static void train_post(srv_conn *c) {
    size_t len;
    const uint8_t *body = srv_conn_body(c, &len);
    adm_job *j = calloc(1, sizeof *j);
    if (!j) { srv_reply_error(c, 500, "internal", "out of memory"); return; }
    char msg[300];
    if (admin_parse_train(body, len, &j->opts, &j->mode, msg, sizeof msg) != 0) {
        free(j);
        srv_reply_error(c, 400, "bad_request", "%s", msg);
        return;
    }
    pthread_mutex_lock(&g_adm.mu);
    int pending = 0;
    for (int i = 0; i < g_adm.njobs; i++) pending += g_adm.jobs[i]->state <= JOB_RUNNING;
    const char *why = NULL;
    int status = 400;
    if (g_adm.total == 0) why = "no examples: POST /admin/examples?label=NAME first";
    else if (j->mode == VIT_LABELS_REPLACE && g_adm.nlabels < 2)
        why = "replace needs examples of at least 2 labels (or use \"labels\": \"extend\")";
    else if (pending >= ADMIN_MAX_PENDING) { why = "too many training jobs queued or running"; status = 429; }
    if (!why && g_adm.njobs == ADMIN_MAX_JOBS) {   /* forget the oldest finished job */
        int k = 0;
        while (k < g_adm.njobs && g_adm.jobs[k]->state <= JOB_RUNNING) k++;
        if (k == g_adm.njobs) { why = "too many jobs"; status = 429; }
        else {
            job_free(g_adm.jobs[k]);
            memmove(&g_adm.jobs[k], &g_adm.jobs[k + 1], sizeof(adm_job *) * (size_t)(g_adm.njobs - k - 1));
            g_adm.njobs--;
        }
    }
    if (!why) {   /* snapshot the examples */
        j->N = g_adm.total;
        j->nlabels = g_adm.nlabels;
        j->x = malloc(sizeof(float) * (size_t)j->N * (size_t)g_adm.dim);
        j->y = malloc(sizeof(int32_t) * (size_t)j->N);
        j->names = calloc((size_t)j->nlabels, sizeof(char *));
        /* labels in name order (as `vit finetune` orders its folders) */
        int order[ADMIN_MAX_LABELS];
        for (int i = 0; i < g_adm.nlabels; i++) {
            int k = i;
            for (; k > 0 && strcmp(g_adm.labels[order[k - 1]].name, g_adm.labels[i].name) > 0; k--)
                order[k] = order[k - 1];
            order[k] = i;
        }
        int ok = j->x && j->y && j->names, r = 0;
        for (int i = 0; ok && i < g_adm.nlabels; i++) {
            ex_label *L = &g_adm.labels[order[i]];
            ok = (j->names[i] = strdup(L->name)) != NULL;
            if (L->n > 0) memcpy(j->x + (size_t)r * g_adm.dim, L->feat, sizeof(float) * (size_t)L->n * g_adm.dim);
            for (int k = 0; k < L->n; k++) j->y[r + k] = i;
            r += L->n;
        }
        if (!ok) { why = "out of memory"; status = 500; }
    }
    if (why) {
        pthread_mutex_unlock(&g_adm.mu);
        job_free(j);
        srv_reply_error(c, status, status == 429 ? "too_many_jobs" : status == 500 ? "internal" : "bad_request",
                        "%s", why);
        return;
    }
    j->id = ++g_adm.next_job;
    j->state = JOB_QUEUED;
    j->val_acc = -1;
    j->created = unix_now();
    g_adm.jobs[g_adm.njobs++] = j;
    cJSON *r = job_json(j);
    pthread_cond_signal(&g_adm.cv);
    pthread_mutex_unlock(&g_adm.mu);
    srv_reply_json(c, 202, r);
}

static void on_epoch(void *ctx, int epoch, int epochs, float loss, float val) {
    adm_job *j = ctx;
    (void)epochs;
    pthread_mutex_lock(&g_adm.mu);
    j->epoch = epoch;
    j->loss = loss;
    j->val_acc = val;
    j->has_loss = 1;
    pthread_mutex_unlock(&g_adm.mu);
}

static int job_should_stop(void *ctx) {
    adm_job *j = ctx;
    return atomic_load(&j->cancel);
}

/* Train j (no lock held); publish the new head version on success. */
static void run_job(adm_job *j) {
    char err[512] = "";
    vit_head *base = server_get_active_head(), *init = NULL, *trained = NULL;
    int32_t *map = malloc(sizeof(int32_t) * (size_t)j->nlabels);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)j->N);
    vit_train_result res;
    memset(&res, 0, sizeof res);
    vit_status st = !map || !y ? vit_errf(VIT_E_NOMEM, err, sizeof err, "out of memory")
                               : vit_head_init_for_training(base, j->mode, (const char *const *)j->names,
                                                            j->nlabels, g_adm.dim, &init, map, err, sizeof err);
    if (st == VIT_OK) {
        for (int i = 0; i < j->N; i++) y[i] = map[j->y[i]];
        j->opts.progress = on_epoch;
        j->opts.should_stop = job_should_stop;
        j->opts.cb_ctx = j;
        /* on the GPU when the model runs there (FP32 either way) */
        j->opts.device = g_srv.batcher && batcher_device(g_srv.batcher) == VIT_DEVICE_CUDA
                             ? VIT_DEVICE_CUDA : VIT_DEVICE_CPU;
        st = vit_head_train(init, j->x, y, j->N, &j->opts, &trained, &res, err, sizeof err);
        if (j->opts.device == VIT_DEVICE_CUDA && (st == VIT_E_BACKEND || st == VIT_E_DEVICE)) {
            /* a CUDA failure (e.g. out of device memory next to the sessions) is not the
             * job's fault: train it again on the CPU */
            srv_log(SRV_LOG_WARN, "admin: job %d: training on cuda failed (%s); retrying on the cpu",
                    j->id, err);
            j->opts.device = VIT_DEVICE_CPU;
            st = vit_head_train(init, j->x, y, j->N, &j->opts, &trained, &res, err, sizeof err);
        }
    }
    vit_head_release(base);
    vit_head_release(init);
    free(map);
    free(y);
    int version = 0;
    if (st == VIT_OK) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddNumberToObject(m, "loss", res.loss);
        cJSON_AddNumberToObject(m, "train_accuracy", res.train_accuracy);
        if (res.n_val > 0) cJSON_AddNumberToObject(m, "val_accuracy", res.val_accuracy);
        else cJSON_AddNullToObject(m, "val_accuracy");
        cJSON_AddNumberToObject(m, "examples", j->N);
        cJSON_AddNumberToObject(m, "train", res.n_train);
        cJSON_AddNumberToObject(m, "val", res.n_val);
        cJSON_AddNumberToObject(m, "epochs", res.epochs_done);
        cJSON_AddStringToObject(m, "device", res.device == VIT_DEVICE_CUDA ? "cuda" : "cpu");
        cJSON_AddStringToObject(m, "optimizer", j->opts.optimizer == VIT_OPT_SGD ? "sgd" : "adamw");
        cJSON_AddNumberToObject(m, "lr", j->opts.lr);
        cJSON_AddNumberToObject(m, "batch_size", j->opts.batch_size);
        cJSON_AddNumberToObject(m, "weight_decay", j->opts.weight_decay);
        cJSON_AddStringToObject(m, "labels", j->mode == VIT_LABELS_EXTEND ? "extend" : "replace");
        char *metrics = cJSON_PrintUnformatted(m);
        cJSON_Delete(m);
        adm_head ah = { .head = trained, .created = unix_now(), .job = j->id, .metrics = metrics };
        pthread_mutex_lock(&g_adm.mu);
        if (g_adm.nheads >= ADMIN_MAX_HEADS) {
            st = vit_errf(VIT_E_ARG, err, sizeof err, "too many head versions (%d); DELETE /admin/heads/{v}",
                          ADMIN_MAX_HEADS);
        } else {
            ah.version = g_adm.next_version++;
        }
        pthread_mutex_unlock(&g_adm.mu);
        /* the file first (outside the lock), then publish the version */
        if (st == VIT_OK) st = save_head(&ah, err, sizeof err);
        pthread_mutex_lock(&g_adm.mu);
        if (st == VIT_OK) {
            g_adm.heads[g_adm.nheads++] = ah;
            version = ah.version;
            update_gauges();
        }
        pthread_mutex_unlock(&g_adm.mu);
        if (st != VIT_OK) {
            vit_head_release(trained);
            free(metrics);
        }
    }
    pthread_mutex_lock(&g_adm.mu);
    j->finished = unix_now();
    if (st == VIT_OK) {
        j->state = JOB_SUCCEEDED;
        j->head_version = version;
        j->train_acc = res.train_accuracy;
        j->loss = res.loss;
        j->val_acc = res.n_val > 0 ? res.val_accuracy : -1;
        j->has_loss = 1;
    } else if (st == VIT_E_CANCELLED) {
        j->state = JOB_CANCELLED;
    } else {
        j->state = JOB_FAILED;
        snprintf(j->error, sizeof j->error, "%s", err);
    }
    /* the snapshot is not needed any more */
    free(j->x);
    j->x = NULL;
    pthread_mutex_unlock(&g_adm.mu);
    srv_log(SRV_LOG_INFO, "admin: job %d %s%s%s", j->id, job_state_str[j->state], st == VIT_OK || st == VIT_E_CANCELLED ? "" : ": ",
            st == VIT_OK || st == VIT_E_CANCELLED ? "" : err);
}

static void *trainer_main(void *arg) {
    (void)arg;
    /* training yields to /classify: nice 10 for this thread only (Linux: per-thread priority) */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0)
        srv_log(SRV_LOG_DEBUG, "admin: cannot lower the trainer's priority: %s", strerror(errno));
    pthread_mutex_lock(&g_adm.mu);
    for (;;) {
        adm_job *next = NULL;
        for (int i = 0; i < g_adm.njobs && !next; i++)
            if (g_adm.jobs[i]->state == JOB_QUEUED) next = g_adm.jobs[i];
        if (g_adm.stop) break;
        if (!next) {
            pthread_cond_wait(&g_adm.cv, &g_adm.mu);
            continue;
        }
        next->state = JOB_RUNNING;
        next->started = unix_now();
        pthread_mutex_unlock(&g_adm.mu);
        run_job(next);
        pthread_mutex_lock(&g_adm.mu);
    }
    pthread_mutex_unlock(&g_adm.mu);
    return NULL;
}

static void jobs_get(srv_conn *c, long id) {
    pthread_mutex_lock(&g_adm.mu);
    cJSON *r;
    if (id > 0) {
        adm_job *j = find_job((int)id);
        r = j ? job_json(j) : NULL;
    } else {
        r = cJSON_CreateObject();
        cJSON *a = cJSON_AddArrayToObject(r, "jobs");
        for (int i = 0; i < g_adm.njobs; i++) cJSON_AddItemToArray(a, job_json(g_adm.jobs[i]));
    }
    pthread_mutex_unlock(&g_adm.mu);
    if (!r) srv_reply_error(c, 404, "not_found", "no job %ld", id);
    else srv_reply_json(c, 200, r);
}

static void jobs_delete(srv_conn *c, long id) {
    pthread_mutex_lock(&g_adm.mu);
    adm_job *j = find_job((int)id);
    cJSON *r = NULL;
    int conflict = 0;
    if (j) {
        if (j->state == JOB_QUEUED) {
            j->state = JOB_CANCELLED;
            j->finished = unix_now();
        } else if (j->state == JOB_RUNNING) {
            atomic_store(&j->cancel, 1);       /* the trainer sees it before its next batch */
        } else {
            conflict = 1;
        }
        r = job_json(j);
    }
    pthread_mutex_unlock(&g_adm.mu);
    if (!j) srv_reply_error(c, 404, "not_found", "no job %ld", id);
    else if (conflict) {
        cJSON_Delete(r);
        srv_reply_error(c, 409, "conflict", "job %ld already finished", id);
    } else {
        srv_reply_json(c, 202, r);
    }
}

/* ---- heads ----------------------------------------------------------------------------- */

static cJSON *head_json(const adm_head *h) {  /* under mu */
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "version", h->version);
    cJSON_AddBoolToObject(r, "active", h->version == g_adm.active);
    cJSON_AddStringToObject(r, "source", h->job ? "job" : (h->version == 1 ? "checkpoint" : "restored"));
    if (h->job) cJSON_AddNumberToObject(r, "job", h->job);
    cJSON_AddNumberToObject(r, "created", h->created);
    cJSON_AddNumberToObject(r, "num_classes", vit_head_num_classes(h->head));
    cJSON_AddItemToObject(r, "labels", labels_json(h->head));
    cJSON *m = h->metrics ? cJSON_Parse(h->metrics) : NULL;
    if (m) cJSON_AddItemToObject(r, "metrics", m);
    else cJSON_AddNullToObject(r, "metrics");
    return r;
}

static void heads_get(srv_conn *c) {
    cJSON *r = cJSON_CreateObject();
    pthread_mutex_lock(&g_adm.mu);
    cJSON_AddNumberToObject(r, "active", g_adm.active);
    cJSON *a = cJSON_AddArrayToObject(r, "heads");
    for (int i = 0; i < g_adm.nheads; i++) cJSON_AddItemToArray(a, head_json(&g_adm.heads[i]));
    pthread_mutex_unlock(&g_adm.mu);
    srv_reply_json(c, 200, r);
}

static void heads_activate(srv_conn *c, long v) {
    char err[512];
    pthread_mutex_lock(&g_adm.mu);   /* held across the swap: activations are serialised */
    adm_head *h = find_head((int)v);
    if (!h) {
        pthread_mutex_unlock(&g_adm.mu);
        srv_reply_error(c, 404, "not_found", "no head version %ld", v);
        return;
    }
    if (save_active(h->version, err, sizeof err) != VIT_OK) {
        pthread_mutex_unlock(&g_adm.mu);
        srv_reply_error(c, 500, "internal", "cannot persist the active head: %s", err);
        return;
    }
    if (server_set_active_head(h->head) != 0) {
        int prev = g_adm.active;
        pthread_mutex_unlock(&g_adm.mu);
        save_active(prev, err, sizeof err);
        srv_reply_error(c, 409, "conflict", "head version %ld does not fit the model", v);
        return;
    }
    g_adm.active = h->version;
    update_gauges();
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "active", h->version);
    cJSON_AddItemToObject(r, "labels", labels_json(h->head));
    pthread_mutex_unlock(&g_adm.mu);
    srv_log(SRV_LOG_INFO, "admin: head version %ld activated", v);
    srv_reply_json(c, 200, r);
}

static void heads_delete(srv_conn *c, long v) {
    pthread_mutex_lock(&g_adm.mu);
    adm_head *h = find_head((int)v);
    if (!h || v == 1 || v == g_adm.active) {
        pthread_mutex_unlock(&g_adm.mu);
        if (!h) srv_reply_error(c, 404, "not_found", "no head version %ld", v);
        else srv_reply_error(c, 409, "conflict", "head version %ld is %s", v,
                             v == 1 ? "the checkpoint's head" : "active");
        return;
    }
    adm_head gone = *h;
    *h = g_adm.heads[--g_adm.nheads];
    for (int i = 1; i < g_adm.nheads; i++)   /* restore version order */
        for (int k = i; k > 0 && g_adm.heads[k].version < g_adm.heads[k - 1].version; k--) {
            adm_head t = g_adm.heads[k];
            g_adm.heads[k] = g_adm.heads[k - 1];
            g_adm.heads[k - 1] = t;
        }
    if (g_adm.state_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/heads/head-%06d.safetensors", g_adm.state_dir, gone.version);
        unlink(path);
    }
    update_gauges();
    pthread_mutex_unlock(&g_adm.mu);
    vit_head_release(gone.head);
    free(gone.metrics);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "deleted", (double)v);
    srv_reply_json(c, 200, r);
}

/* ---- routing ---------------------------------------------------------------------------- */

static void method_not_allowed(srv_conn *c, const char *allow) {
    srv_conn_set_header(c, "Allow", allow);
    srv_reply_error(c, 405, "method_not_allowed", "%s %s: allowed: %s", srv_conn_method(c),
                    srv_conn_path(c), allow);
}

static void admin_handler(srv_conn *c) {
    if (!check_auth(c)) return;
    const char *m = srv_conn_method(c), *p = srv_conn_path(c) + strlen("/admin/");
    int get = !strcmp(m, "GET"), post = !strcmp(m, "POST"), del = !strcmp(m, "DELETE");
    if (!strcmp(p, "examples")) {
        if (post) examples_post(c);
        else if (get) examples_get(c);
        else if (del) examples_delete(c);
        else method_not_allowed(c, "GET, POST, DELETE");
        return;
    }
    if (!strcmp(p, "train")) {
        if (post) train_post(c);
        else method_not_allowed(c, "POST");
        return;
    }
    if (!strcmp(p, "jobs")) {
        if (get) jobs_get(c, 0);
        else method_not_allowed(c, "GET");
        return;
    }
    if (!strncmp(p, "jobs/", 5)) {
        long id = parse_id(p + 5, NULL);
        if (id < 0) srv_reply_error(c, 404, "not_found", "no such job");
        else if (get) jobs_get(c, id);
        else if (del) jobs_delete(c, id);
        else method_not_allowed(c, "GET, DELETE");
        return;
    }
    if (!strcmp(p, "heads")) {
        if (get) heads_get(c);
        else method_not_allowed(c, "GET");
        return;
    }
    if (!strncmp(p, "heads/", 6)) {
        const char *rest = NULL;
        long v = parse_id(p + 6, &rest);
        if (v < 0 || (*rest && strcmp(rest, "/activate"))) srv_reply_error(c, 404, "not_found", "no such head path");
        else if (!*rest) { if (del) heads_delete(c, v); else method_not_allowed(c, "DELETE"); }
        else if (post) heads_activate(c, v);
        else method_not_allowed(c, "POST");
        return;
    }
    srv_reply_error(c, 404, "not_found", "unknown admin path %s", srv_conn_path(c));
}

/* ---- life cycle -------------------------------------------------------------------------- */

int admin_init(char *err, size_t errlen) {
    const char *token_file = g_srv.cfg.admin_token_file, *state_dir = g_srv.cfg.state_dir;
    g_adm.dim = g_srv.mc->feature_dim;
    g_adm.next_version = 2;
    g_adm.active = 1;
    int t = read_token(token_file, err, errlen);
    if (t < 0) return -1;
    g_adm.enabled = t;
    /* version 1: the checkpoint's head */
    adm_head *h0 = &g_adm.heads[g_adm.nheads++];
    memset(h0, 0, sizeof *h0);
    h0->version = 1;
    {   /* its creation time: the checkpoint file's modification time */
        char mp[4096];
        struct stat sb;
        snprintf(mp, sizeof mp, "%s/model.safetensors", g_srv.cfg.model_dir ? g_srv.cfg.model_dir : ".");
        if (stat(mp, &sb) == 0) h0->created = (double)sb.st_mtime;
    }
    h0->head = vit_model_head(g_srv.model);
    vit_head_retain(h0->head);
    if (state_dir && *state_dir) {
        char p[4096];
        snprintf(p, sizeof p, "%s/heads", state_dir);
        if ((mkdir(state_dir, 0700) != 0 && errno != EEXIST) || (mkdir(p, 0700) != 0 && errno != EEXIST) ||
            access(p, W_OK) != 0) {
            snprintf(err, errlen, "--state-dir %s: %s", state_dir, strerror(errno));
            return -1;
        }
        if (!(g_adm.state_dir = strdup(state_dir))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        restore_state();
    }
    if (!(g_adm.labels = calloc(ADMIN_MAX_LABELS, sizeof(ex_label)))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (srv_route_prefix("/admin/", admin_handler) != 0) {
        snprintf(err, errlen, "cannot register the /admin/ route");
        return -1;
    }
    pthread_mutex_lock(&g_adm.mu);
    update_gauges();
    pthread_mutex_unlock(&g_adm.mu);
    if (g_adm.enabled) {
        if (pthread_create(&g_adm.trainer, NULL, trainer_main, NULL) != 0) {
            snprintf(err, errlen, "cannot start the trainer thread");
            return -1;
        }
        g_adm.trainer_started = 1;
    }
    srv_log(SRV_LOG_INFO, "admin: API %s%s%s", g_adm.enabled ? "enabled" : "disabled (no token)",
            g_adm.state_dir ? ", state in " : "", g_adm.state_dir ? g_adm.state_dir : "");
    return 0;
}

void admin_shutdown(void) {
    pthread_mutex_lock(&g_adm.mu);
    g_adm.stop = 1;
    for (int i = 0; i < g_adm.njobs; i++) atomic_store(&g_adm.jobs[i]->cancel, 1);
    pthread_cond_broadcast(&g_adm.cv);
    pthread_mutex_unlock(&g_adm.mu);
    if (g_adm.trainer_started) pthread_join(g_adm.trainer, NULL);
    g_adm.trainer_started = 0;
    for (int i = 0; i < g_adm.njobs; i++) job_free(g_adm.jobs[i]);
    g_adm.njobs = 0;
    for (int i = 0; i < g_adm.nheads; i++) {
        vit_head_release(g_adm.heads[i].head);
        free(g_adm.heads[i].metrics);
    }
    g_adm.nheads = 0;
    for (int i = 0; g_adm.labels && i < g_adm.nlabels; i++) free(g_adm.labels[i].feat);
    free(g_adm.labels);
    g_adm.labels = NULL;
    free(g_adm.state_dir);
    g_adm.state_dir = NULL;
}
