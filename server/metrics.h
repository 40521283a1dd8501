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
/* vitd_build_info{version,commit,build_type,cuda} 1 (labels copied). */
void metrics_build_info(const char *version, const char *commit, const char *build_type, int cuda);
/* A named gauge for other modules (admin: head version...); up to 16 names, name without prefix. */
void metrics_gauge_set(const char *name, const char *help, double v);
/* Render everything; returns a malloc'd NUL-terminated string (caller frees) or NULL. */
char *metrics_render(size_t *len);

#endif
