/* metrics.h: process-wide Prometheus metrics with the prefix vitd_ (text exposition format
 * 0.0.4): requests by path and status, request seconds by path, histograms of queue/decode/
 * inference seconds and of batch size, queue depth, images classified, model and build info.
 * Thread-safe; no allocation when recording. */
#ifndef SRV_METRICS_H
#define SRV_METRICS_H
#include <stddef.h>
#include <stdint.h>

typedef enum {
    MET_QUEUE_SECONDS = 0,   /* per image: admitted -> its batch starts, minus decode */
    MET_DECODE_SECONDS,      /* per image: decode + preprocess */
    MET_INFER_SECONDS,       /* per batch: the forward pass */
    MET_BATCH_SIZE,          /* per batch: images in it */
    MET_HIST_COUNT
} met_hist;

/* Work refused or dropped, by reason: vitd_rejected_total{reason} (refused before or instead of
 * the work: limits, budgets, slow clients) and vitd_cancelled_total{reason} (admitted work
 * dropped: deadline passed, client gone). */
typedef enum {
    MET_REJ_BODY_TOO_LARGE = 0,  /* one body over --max-body-mb (413) */
    MET_REJ_BODY_BUDGET,         /* bodies in flight over --max-inflight-body-mb (503) */
    MET_REJ_CONN_LIMIT,          /* past --max-connections or --max-connections-per-ip */
    MET_REJ_HEADER_TIMEOUT,      /* header block not in within --header-timeout-s */
    MET_REJ_BODY_TIMEOUT,        /* body slower than --min-body-rate-kbps */
    MET_REJ_JSON_LIMIT,          /* JSON size, depth or value count over its limit */
    MET_REJ_FRAMING,             /* conflicting Content-Length / Transfer-Encoding */
    MET_REJ_IMAGE_TOO_LARGE,     /* width x height over --max-pixels */
    MET_REJ_DECODE_COST,         /* image or request decode cost over its budget */
    MET_REJ_SCAN_POLICY,         /* JPEG scans over the limit */
    MET_REJ_QUEUE_FULL,          /* admission: --max-queue */
    MET_REJ_COUNT
} met_reject;
typedef enum { MET_CANCEL_DEADLINE = 0, MET_CANCEL_CLIENT_GONE, MET_CANCEL_COUNT } met_cancel;
void metrics_rejected(met_reject r, uint64_t n);
void metrics_cancelled(met_cancel c, uint64_t n);

void metrics_init(void);
/* A finished request: vitd_requests_total{path,status} and
 * vitd_request_duration_seconds{path} (first byte to response queued).  path is reduced to a
 * fixed set (metrics_path_label) so the series stay bounded whatever clients send. */
void metrics_request(const char *path, int status, double seconds);
/* The label of a request path: a route ("/classify", "/v2/models/{model}/infer", ...; a
 * prefix route's first two segments, "/admin/jobs"), else "other".  Static storage. */
const char *metrics_path_label(const char *path);
void metrics_observe(met_hist h, double v);
void metrics_images(uint64_t n, int ok);          /* images classified (ok) or failed */
void metrics_queue_depth(long depth);
/* Model info gauge labels (copied). */
void metrics_model_info(const char *model, const char *architecture, const char *device,
                        const char *precision, int image_size, int num_classes, int max_batch);
/* This replica's name: vitd_instance_info{instance_name="..."} 1 (copied). */
void metrics_instance(const char *name);
/* vitd_build_info{version,commit,build_type,cuda} 1 (labels copied). */
void metrics_build_info(const char *version, const char *commit, const char *build_type, int cuda);
/* A named gauge for other modules (admin: head version...); up to 16 names, name without prefix. */
void metrics_gauge_set(const char *name, const char *help, double v);
/* Render everything; returns a malloc'd NUL-terminated string (caller frees) or NULL. */
char *metrics_render(size_t *len);

#endif
