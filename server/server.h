/* server.h: the daemon's shared state: its configuration (from the flags) and what start-up
 * builds (model, batcher, readiness).  server/main.c, the composition root, owns the one
 * srv_state and hands a pointer to the modules (the transport keeps it as libmicrohttpd's
 * closure argument, routes receive it as their context); no module reads it from a global.
 *
 * Threads: cfg, model, mc and model_name are written before the HTTP server sees the state and
 * read-only afterwards; batcher is set before `ready` turns 1 (release) and read only by
 * handlers that checked `ready` (acquire) or run after it; ready/draining/inflight are atomic. */
#ifndef SRV_SERVER_H
#define SRV_SERVER_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "batcher.h"
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
    int log_level;           /* SRV_LOG_ERROR..SRV_LOG_DEBUG (log.h) */
    int log_format;          /* LOGFMT_TEXT or LOGFMT_JSON (logfmt.h, --log-format) */
    vit_device device;
    vit_precision precision;
    int device_check;        /* on CUDA: vit_device_check against the CPU before serving */
    int max_connections;     /* past it, a new connection is answered 503 and closed at once */
    int max_connections_per_ip; /* open connections from one client address (0: no cap) */
    int request_timeout_s;   /* idle/slow client timeout */
    int header_timeout_s;    /* the whole header block (0: none) */
    int body_grace_s;        /* the minimum body rate applies after this */
    long min_body_rate_kb;   /* KiB/s averaged over the body (0: none) */
    size_t max_inflight_body;/* bytes of request bodies in flight, all connections together */
    uint64_t max_image_cost; /* decode cost per image, samples (vit_decode_limits; 0: none) */
    uint64_t max_request_cost; /* the same over a request's images (0: none) */
    int max_scans;           /* JPEG scans per image */
    long queue_timeout_ms;   /* longest wait of an admitted image (0: none) */
    int max_images;          /* images (multipart parts) per request */
    int max_top_k;
    const char *admin_token_file;  /* admin API: token file; NULL/"" = none */
    const char *state_dir;         /* admin API: heads + active choice persist here (one process) */
    const char *state_url;         /* admin API: a PostgreSQL store shared by replicas (store_pg.h) */
    const char *state_password_file;  /* its password; NULL/"": PGPASSWORD, PGPASSFILE */
    const char *instance_name;     /* this replica's name (/v1/models, /metrics, job owner) */
    int job_lease_s;               /* PostgreSQL store: a job claim lapses after this long unrenewed */
    const char *cors_origin;       /* "*", "https://a,https://b", or ""/NULL: no CORS */
} srv_config;

typedef struct srv_state {
    srv_config cfg;
    vit_model *model;
    const vit_config *mc;
    char model_name[128];
    char fingerprint[160];   /* the backbone: model name, architecture, feature size, checkpoint hash */
    batcher *batcher;
    atomic_int ready;        /* model loaded and warm-up ran */
    atomic_int draining;
    atomic_long inflight;    /* requests begun and not yet completed */
} srv_state;

#endif
