/* batcher.h: the request pipeline behind /classify (and the admin API's feature extraction).
 *
 *   submit(job) --bounded, fair queue--> decode pool --(decode straight into a slot of the filling
 *   batch buffer)--> worker (one per engine session): takes the batch when it holds max_batch
 *   images or max_delay_us passed since its first image, drops failed and expired slots, runs one
 *   vit_forward with the active head, writes each image's result, completes jobs.
 *
 * A job is one request's images; every image gets its own result or error.  When the last image
 * of a job finishes, job->done(job, arg) runs on the thread that finished it (keep it short:
 * the HTTP layer only resumes the connection there).  Admission is bounded by max_queue images
 * not yet in a running batch: a full queue rejects the whole job (503 + Retry-After).
 * Nothing is allocated per image on the hot path except the job itself (one allocation).
 *
 * Fairness: decoders take queued images round robin over the jobs that have some (one image of
 * each job in turn), so one request with 64 costly images cannot starve the others.
 * Budgets: each image is decoded under vit_decode_limits (max_pixels, max_image_cost,
 * max_scans, checked from its headers before any pixel work) and charged to its job's
 * max_request_cost.  Cancellation: a job is dropped at every stage once its deadline passed
 * (X-Request-Timeout-Ms, and at most queue_timeout_s after admission) or its client left
 * (batcher_cancel, or a sweep that finds EOF on client_fd): queued images are failed by a sweep
 * thread without waiting for a decoder, a running decode stops at its next poll, and a batch
 * drops the slot.  Failed images: 504 deadline_exceeded, 499 client_closed_request. */
#ifndef SRV_BATCHER_H
#define SRV_BATCHER_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "vit.h"

enum {
    SRV_WANT_ATTN_CLS = 1,     /* last-layer CLS attention per image */
    SRV_WANT_ROLLOUT = 2,      /* attention rollout per image */
    SRV_WANT_FEATURES = 4,     /* pooled features (vit_outputs.features) per image */
    SRV_WANT_PROBS = 8,        /* every class's probability per image (the v2 protocol) */
};

#define SRV_TOPK_MAX 100

typedef struct srv_job srv_job;

typedef struct srv_item {
    const uint8_t *data;       /* encoded image (owned by the caller until the job is done) */
    size_t len;
    int pixels;                /* 1: data is the model input itself, 3*H*W little-endian FP32
                                  (already preprocessed), copied into the batch as it is */
    srv_job *job;
    int http;                  /* 0 while pending; 200 on success; the error's HTTP status */
    const char *code;          /* error code string for JSON ("invalid_image", ...) */
    char err[160];             /* error message */
    vit_head *head;            /* head that produced the result (retained; released by job_free) */
    int head_version;          /* its version (batcher_set_head_version; 1: the checkpoint's) */
    int k;                     /* predictions written */
    int *topk_idx;             /* (top_k) */
    float *topk_score;         /* (top_k) softmax probabilities, descending */
    float *attn;               /* (num_patches) when SRV_WANT_ATTN_CLS or _ROLLOUT */
    float *features;           /* (feature_dim) when SRV_WANT_FEATURES */
    float *probs;              /* (nprobs) softmax over every class when SRV_WANT_PROBS */
    int nprobs;                /* the head's class count (<= probs_cap of the job) */
    double decode_s, queue_s, infer_s;
    int batch_size;            /* images in the batch this one ran in */
} srv_item;

typedef struct batcher batcher;

struct srv_job {
    int n, want, top_k;
    int probs_cap;             /* SRV_WANT_PROBS: room per item (the active head's classes at
                                  srv_job_new; a batch with a larger head fails the item 503) */
    double t_submit;           /* vit_now() at submit */
    double deadline;           /* vit_now() based; 0 = none (submit caps it at queue_timeout_s) */
    int client_fd;             /* the client's socket, polled for EOF while queued; -1 = none */
    atomic_int cancelled;      /* 1: drop the remaining work (client gone) */
    atomic_uint_least64_t cost;/* decode cost charged so far (samples) */
    atomic_int remaining;      /* items not finished, plus holds taken by the caller (done at 0) */
    atomic_int unfinished;     /* items not finished (the job leaves the active list at 0) */
    /* the batcher's own (under its mutex) */
    batcher *b;
    int next;                  /* next item to hand to a decoder */
    int active;                /* in the active list: admitted, not finished */
    srv_job *rr_next;          /* round-robin list of jobs with queued images */
    srv_job *act_prev, *act_next;
    void (*done)(srv_job *job, void *arg);
    void *done_arg;
    void *user;                /* the submitter's per-request state: user_free(user) runs in */
    void (*user_free)(void *); /* srv_job_free, whether or not the request got its answer */
    srv_item items[];
};

typedef struct batcher_opts {
    int max_batch, max_queue, workers, threads, decoders;
    long max_delay_us;
    int eager_dispatch;        /* 1: an idle worker closes the filling batch when no more images
                                  are on their way (queued or decoding), without waiting */
    uint64_t max_pixels;
    uint64_t max_image_cost;   /* decode cost cap per image (samples, vit_decode_limits); 0: none */
    uint64_t max_request_cost; /* the same summed over a job's images; 0: none */
    int max_scans;             /* JPEG scans per image; 0: VIT_DEFAULT_MAX_SCANS */
    double queue_timeout_s;    /* a job's deadline is at most this long after submit; 0: none */
    int fast_decode;           /* 1: JPEGs >= 2x the target may be downscaled in the DCT domain */
    int decoder_nice;          /* > 0: decode threads run at this nice level (below the engine) */
    vit_device device;
    vit_precision precision;
    int input_f16;             /* 1: FP16 batch buffers even where the sessions read FP32 fastest
                                  (the CPU: converted back there); -1: FP32 even where they read
                                  FP16 fastest (CUDA); 0: the sessions' choice,
                                  vit_session_input_type (vitd --input) */
} batcher_opts;

/* Create sessions (one per worker), run a warm-up batch on each, start the threads. */
vit_status batcher_new(const vit_model *m, const batcher_opts *o, batcher **out, char *err, size_t errlen);
/* Stop threads after the queue drained (everything admitted is answered first); free. */
void batcher_free(batcher *b);

/* One allocation holding the job, its n items and their result storage. data/len set by caller. */
srv_job *srv_job_new(batcher *b, int n, int want, int top_k);
void srv_job_free(srv_job *job);   /* releases the items' heads */

/* Admit job (all its images, or none).  Returns 0, or 503 with *retry_after_s set. */
int batcher_submit(batcher *b, srv_job *job, int *retry_after_s);

long batcher_queue_depth(batcher *b);
/* The client of job left: its queued images are dropped (499) and a running decode stops.
 * Safe from any thread while the job is not yet done. */
void batcher_cancel(batcher *b, srv_job *job);
/* 1 while the pipeline is saturated beyond its deadlines: an image missed its deadline while
 * waiting within the last 2 s, or the oldest unfinished job has waited more than half of
 * queue_timeout_s.  Recovers by itself once the queue moves again (/readyz reports it). */
int batcher_saturated(batcher *b);
vit_device batcher_device(const batcher *b);
vit_precision batcher_precision(const batcher *b);
/* what the batch buffers hold and the forward reads: FP16 on CUDA, FP32 on the CPU */
vit_input_type batcher_input_type(const batcher *b);

/* The active head (reference counted) and its version number, which every result carries.
 * set: retains h, swaps head and version together for later batches, releases the previous head
 * (running batches keep theirs); batcher_set_head keeps the version number.  get: returns a
 * retained reference (and the version when the pointer is not NULL). */
void batcher_set_head_version(batcher *b, vit_head *h, int version);
void batcher_set_head(batcher *b, vit_head *h);
vit_head *batcher_get_head_version(batcher *b, int *version);
vit_head *batcher_get_head(batcher *b);

#endif
