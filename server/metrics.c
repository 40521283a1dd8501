/* metrics.c: Prometheus metrics (see metrics.h).  One mutex guards everything: recording is a
 * handful of additions, far cheaper than the requests it measures. */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MET_MAX_BUCKETS 16
#define MET_MAX_REQ 96
#define MET_MAX_GAUGES 16

typedef struct {
    const char *name, *help;
    int nb;
    double bounds[MET_MAX_BUCKETS];
    uint64_t counts[MET_MAX_BUCKETS + 1];  /* last: +Inf */
    double sum;
    uint64_t count;
} hist;

/* the path labels: vitd's routes, the v2 protocol's routes with the model name left out, the
 * admin API's collections; anything else is "other" (the last) */
static const char *const known_paths[] = {
    "/classify", "/invocations", "/embed", "/healthz", "/readyz", "/ping", "/v1/models", "/metrics",
    "/openapi.json", "/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{model}",
    "/v2/models/{model}/ready", "/v2/models/{model}/infer", "/admin/examples", "/admin/train",
    "/admin/jobs", "/admin/heads", "other"};
#define NPATHS (int)(sizeof known_paths / sizeof known_paths[0])

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static hist hists[MET_HIST_COUNT];
static hist req_hists[NPATHS];                 /* request_duration_seconds by path label */
static struct { const char *path; int status; uint64_t n; } reqs[MET_MAX_REQ];
static int nreqs;
static uint64_t images_ok, images_failed;
static long queue_depth;
static char info_labels[512];
static char instance_label[160];   /* --instance-name, escaped; "" until set */
static uint64_t rejected[MET_REJ_COUNT], cancelled[MET_CANCEL_COUNT];
static const char *const reject_names[MET_REJ_COUNT] = {
    [MET_REJ_BODY_TOO_LARGE] = "body_too_large", [MET_REJ_BODY_BUDGET] = "body_budget",
    [MET_REJ_CONN_LIMIT] = "connection_limit", [MET_REJ_HEADER_TIMEOUT] = "header_timeout",
    [MET_REJ_BODY_TIMEOUT] = "body_timeout", [MET_REJ_JSON_LIMIT] = "json_limit", [MET_REJ_FRAMING] = "framing",
    [MET_REJ_IMAGE_TOO_LARGE] = "image_too_large", [MET_REJ_DECODE_COST] = "decode_cost",
    [MET_REJ_SCAN_POLICY] = "scan_policy", [MET_REJ_QUEUE_FULL] = "queue_full",
};
static const char *const cancel_names[MET_CANCEL_COUNT] = {
    [MET_CANCEL_DEADLINE] = "deadline", [MET_CANCEL_CLIENT_GONE] = "client_gone",
};
static char build_labels[512];
static struct { char name[64], help[128]; double v; } gauges[MET_MAX_GAUGES];
static int ngauges;

static void hist_setup(hist *h, const char *name, const char *help, const double *b, int nb) {
    memset(h, 0, sizeof *h);
    h->name = name; h->help = help; h->nb = nb;
    memcpy(h->bounds, b, sizeof(double) * (size_t)nb);
}

void metrics_init(void) {
    static const double secs[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    static const double sizes[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
    int ns = (int)(sizeof secs / sizeof secs[0]), nz = (int)(sizeof sizes / sizeof sizes[0]);
    pthread_mutex_lock(&mu);
    for (int i = 0; i < NPATHS; i++)
        hist_setup(&req_hists[i], "request_duration_seconds", "Request time from arrival to response, by path", secs, ns);
    hist_setup(&hists[MET_QUEUE_SECONDS], "queue_duration_seconds", "Per image: time waiting for a batch (excludes decode)", secs, ns);
    hist_setup(&hists[MET_DECODE_SECONDS], "decode_duration_seconds", "Per image: decode and preprocess time", secs, ns);
    hist_setup(&hists[MET_INFER_SECONDS], "inference_duration_seconds", "Per batch: forward pass time", secs, ns);
    hist_setup(&hists[MET_BATCH_SIZE], "batch_size", "Images per executed batch", sizes, nz);
    nreqs = 0; images_ok = images_failed = 0; queue_depth = 0; ngauges = 0;
    memset(rejected, 0, sizeof rejected);
    memset(cancelled, 0, sizeof cancelled);
    snprintf(info_labels, sizeof info_labels, "model=\"\"");
    build_labels[0] = '\0';
    pthread_mutex_unlock(&mu);
}

static int label_index(const char *label) {
    for (int i = 0; i < NPATHS - 1; i++)
        if (!strcmp(known_paths[i], label)) return i;
    return NPATHS - 1;
}

/* index into known_paths */
static int path_index(const char *path) {
    if (!strncmp(path, "/v2/models/", 11) && path[11] && path[11] != '/') {
        const char *end = path + strcspn(path, "?");
        size_t n = (size_t)(end - path);
        if (n > 6 && !memcmp(end - 6, "/infer", 6)) return label_index("/v2/models/{model}/infer");
        if (n > 6 && !memcmp(end - 6, "/ready", 6)) return label_index("/v2/models/{model}/ready");
        return label_index("/v2/models/{model}");
    }
    for (int i = 0; i < NPATHS - 1; i++) {
        if (strchr(known_paths[i], '{')) continue;
        size_t n = strlen(known_paths[i]);
        int v2root = !strcmp(known_paths[i], "/v2");  /* only /v2 itself: /v2/x is not a route */
        if (strncmp(path, known_paths[i], n) == 0 &&
            (path[n] == '\0' || path[n] == '?' || (path[n] == '/' && !v2root)))
            return i;
    }
    return NPATHS - 1;
}

const char *metrics_path_label(const char *path) { return known_paths[path_index(path ? path : "")]; }

static void hist_add(hist *h, double v) {
    int b = 0;
    while (b < h->nb && v > h->bounds[b]) b++;
    h->counts[b]++;
    h->sum += v;
    h->count++;
}

void metrics_request(const char *path, int status, double seconds) {
    int pi = path_index(path ? path : "");
    const char *p = known_paths[pi];
    pthread_mutex_lock(&mu);
    hist_add(&req_hists[pi], seconds);
    int i;
    for (i = 0; i < nreqs; i++)
        if (reqs[i].status == status && reqs[i].path == p) break;
    if (i == nreqs && nreqs < MET_MAX_REQ) { reqs[i].path = p; reqs[i].status = status; reqs[i].n = 0; nreqs++; }
    if (i < nreqs) reqs[i].n++;
    pthread_mutex_unlock(&mu);
}

void metrics_observe(met_hist which, double v) {
    if ((int)which < 0 || which >= MET_HIST_COUNT) return;
    pthread_mutex_lock(&mu);
    hist_add(&hists[which], v);
    pthread_mutex_unlock(&mu);
}

void metrics_images(uint64_t n, int ok) {
    pthread_mutex_lock(&mu);
    if (ok) images_ok += n; else images_failed += n;
    pthread_mutex_unlock(&mu);
}

void metrics_rejected(met_reject r, uint64_t n) {
    if ((int)r < 0 || r >= MET_REJ_COUNT) return;
    pthread_mutex_lock(&mu);
    rejected[r] += n;
    pthread_mutex_unlock(&mu);
}

void metrics_cancelled(met_cancel c, uint64_t n) {
    if ((int)c < 0 || c >= MET_CANCEL_COUNT) return;
    pthread_mutex_lock(&mu);
    cancelled[c] += n;
    pthread_mutex_unlock(&mu);
}

void metrics_queue_depth(long d) {
    pthread_mutex_lock(&mu);
    queue_depth = d;
    pthread_mutex_unlock(&mu);
}

/* copy s into a label value, escaping \ " and newlines */
static void label_escape(char *out, size_t n, const char *s) {
    size_t k = 0;
    for (; s && *s && k + 3 < n; s++) {
        if (*s == '\\' || *s == '"') { out[k++] = '\\'; out[k++] = *s; }
        else if (*s == '\n') { out[k++] = '\\'; out[k++] = 'n'; }
        else out[k++] = *s;
    }
    out[k] = '\0';
}

void metrics_instance(const char *name) {
    char n[160];
    label_escape(n, sizeof n, name);
    pthread_mutex_lock(&mu);
    snprintf(instance_label, sizeof instance_label, "%s", n);
    pthread_mutex_unlock(&mu);
}

void metrics_model_info(const char *model, const char *arch, const char *device,
                        const char *precision, int image_size, int num_classes, int max_batch) {
    char m[128], a[96], d[32], p[32];
    label_escape(m, sizeof m, model); label_escape(a, sizeof a, arch);
    label_escape(d, sizeof d, device); label_escape(p, sizeof p, precision);
    pthread_mutex_lock(&mu);
    snprintf(info_labels, sizeof info_labels,
             "model=\"%s\",architecture=\"%s\",device=\"%s\",precision=\"%s\",image_size=\"%d\",num_classes=\"%d\",max_batch=\"%d\"",
             m, a, d, p, image_size, num_classes, max_batch);
    pthread_mutex_unlock(&mu);
}

void metrics_build_info(const char *version, const char *commit, const char *build_type, int cuda) {
    char v[128], c[96], t[32];
    label_escape(v, sizeof v, version); label_escape(c, sizeof c, commit); label_escape(t, sizeof t, build_type);
    pthread_mutex_lock(&mu);
    snprintf(build_labels, sizeof build_labels, "version=\"%s\",commit=\"%s\",build_type=\"%s\",cuda=\"%s\"", v, c, t,
             cuda ? "true" : "false");
    pthread_mutex_unlock(&mu);
}

void metrics_gauge_set(const char *name, const char *help, double v) {
    pthread_mutex_lock(&mu);
    int i;
    for (i = 0; i < ngauges; i++)
        if (!strcmp(gauges[i].name, name)) break;
    if (i == ngauges && ngauges < MET_MAX_GAUGES) {
        snprintf(gauges[i].name, sizeof gauges[i].name, "%s", name);
        snprintf(gauges[i].help, sizeof gauges[i].help, "%s", help ? help : name);
        ngauges++;
    }
    if (i < ngauges) gauges[i].v = v;
    pthread_mutex_unlock(&mu);
}

typedef struct { char *buf; size_t len, cap; int oom; } sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) { b->oom = 1; return; }
        if ((size_t)n < b->cap - b->len) { b->len += (size_t)n; return; }
        size_t nc = b->cap * 2 + (size_t)n + 1;
        char *nb = realloc(b->buf, nc);
        if (!nb) { b->oom = 1; return; }
        b->buf = nb; b->cap = nc;
    }
}

/* the bucket, sum and count lines of h, with path="..." first among the labels when given */
static void render_hist(sbuf *b, const hist *h, const char *path) {
    char pl[96] = "", pb[96] = "";
    if (path) {
        snprintf(pl, sizeof pl, "{path=\"%s\"}", path);
        snprintf(pb, sizeof pb, "path=\"%s\",", path);
    }
    uint64_t cum = 0;
    for (int i = 0; i < h->nb; i++) {
        cum += h->counts[i];
        sb_printf(b, "vitd_%s_bucket{%sle=\"%g\"} %llu\n", h->name, pb, h->bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[h->nb];
    sb_printf(b, "vitd_%s_bucket{%sle=\"+Inf\"} %llu\n", h->name, pb, (unsigned long long)cum);
    sb_printf(b, "vitd_%s_sum%s %.9g\nvitd_%s_count%s %llu\n", h->name, pl, h->sum, h->name, pl, (unsigned long long)h->count);
}

char *metrics_render(size_t *len) {
    sbuf b = {malloc(8192), 0, 8192, 0};
    if (!b.buf) return NULL;
    b.buf[0] = '\0';
    pthread_mutex_lock(&mu);
    sb_printf(&b, "# HELP vitd_requests_total HTTP requests by path and status\n# TYPE vitd_requests_total counter\n");
    for (int i = 0; i < nreqs; i++)
        sb_printf(&b, "vitd_requests_total{path=\"%s\",status=\"%d\"} %llu\n", reqs[i].path, reqs[i].status,
                  (unsigned long long)reqs[i].n);
    sb_printf(&b, "# HELP vitd_%s %s\n# TYPE vitd_%s histogram\n", req_hists[0].name, req_hists[0].help, req_hists[0].name);
    for (int k = 0; k < NPATHS; k++)
        if (req_hists[k].count) render_hist(&b, &req_hists[k], known_paths[k]);
    for (int k = 0; k < MET_HIST_COUNT; k++) {
        hist *h = &hists[k];
        sb_printf(&b, "# HELP vitd_%s %s\n# TYPE vitd_%s histogram\n", h->name, h->help, h->name);
        render_hist(&b, h, NULL);
    }
    sb_printf(&b, "# HELP vitd_queue_depth Images admitted and not yet in a running batch\n# TYPE vitd_queue_depth gauge\nvitd_queue_depth %ld\n", queue_depth);
    sb_printf(&b, "# HELP vitd_images_classified_total Images that got a result\n# TYPE vitd_images_classified_total counter\nvitd_images_classified_total %llu\n",
              (unsigned long long)images_ok);
    sb_printf(&b, "# HELP vitd_images_failed_total Images that got an error (decode, deadline, ...)\n# TYPE vitd_images_failed_total counter\nvitd_images_failed_total %llu\n",
              (unsigned long long)images_failed);
    sb_printf(&b, "# HELP vitd_rejected_total Requests or images refused by a limit, by reason\n"
                  "# TYPE vitd_rejected_total counter\n");
    for (int i = 0; i < MET_REJ_COUNT; i++)
        sb_printf(&b, "vitd_rejected_total{reason=\"%s\"} %llu\n", reject_names[i], (unsigned long long)rejected[i]);
    sb_printf(&b, "# HELP vitd_cancelled_total Admitted images dropped before their result, by reason\n"
                  "# TYPE vitd_cancelled_total counter\n");
    for (int i = 0; i < MET_CANCEL_COUNT; i++)
        sb_printf(&b, "vitd_cancelled_total{reason=\"%s\"} %llu\n", cancel_names[i], (unsigned long long)cancelled[i]);
    sb_printf(&b, "# HELP vitd_model_info The served model (value is always 1)\n# TYPE vitd_model_info gauge\nvitd_model_info{%s} 1\n", info_labels);
    if (instance_label[0])
        sb_printf(&b, "# HELP vitd_instance_info This replica (--instance-name; value is always 1)\n# TYPE vitd_instance_info gauge\n"
                      "vitd_instance_info{instance_name=\"%s\"} 1\n", instance_label);
    if (build_labels[0])
        sb_printf(&b, "# HELP vitd_build_info The running binary (value is always 1)\n# TYPE vitd_build_info gauge\nvitd_build_info{%s} 1\n",
                  build_labels);
    for (int i = 0; i < ngauges; i++)
        sb_printf(&b, "# HELP vitd_%s %s\n# TYPE vitd_%s gauge\nvitd_%s %.9g\n", gauges[i].name, gauges[i].help,
                  gauges[i].name, gauges[i].name, gauges[i].v);
    pthread_mutex_unlock(&mu);
    if (b.oom) { free(b.buf); return NULL; }
    if (len) *len = b.len;
    return b.buf;
}
