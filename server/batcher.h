/* batcher.h: the request pipeline behind /classify (and the admin API's feature extraction).
 *
 *   submit(job) --bounded FIFO--> decode pool --(decode straight into a slot of the filling
 *   batch buffer)--> worker (one per engine session): takes the batch when it holds max_batch
 *   images or max_delay_us passed since its first image, drops failed and expired slots, runs one
 *   vit_forward with the active head, writes each image's result, completes jobs.
 *
 * A job is one request's images; every image gets its own result or error.  When the last image
 * of a job finishes, job->done(job, arg) runs on the thread that finished it (keep it short:
 * the HTTP layer only resumes the connection there).  Admission is bounded by max_queue images
 * not yet in a running batch: a full queue rejects the whole job (503 + Retry-After).
 * Nothing is allocated per image on the hot path except the job itself (one allocation). */
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

struct srv_job {
    int n, want, top_k;
    int probs_cap;             /* SRV_WANT_PROBS: room per item (the active head's classes at
                                  srv_job_new; a batch with a larger head fails the item 503) */
    double t_submit;           /* vit_now() at submit */
    double deadline;           /* vit_now() based; 0 = none */
    atomic_int remaining;
    void (*done)(srv_job *job, void *arg);
    void *done_arg;
    void *user;                /* the submitter's per-request state: user_free(user) runs in */
    void (*user_free)(void *); /* srv_job_free, whether or not the request got its answer */
    srv_item items[];
};

typedef struct batcher batcher;

typedef struct batcher_opts {
    int max_batch, max_queue, workers, threads, decoders;
    long max_delay_us;
    int eager_dispatch;        /* 1: an idle worker closes the filling batch when no more images
                                  are on their way (queued or decoding), without waiting */
    uint64_t max_pixels;
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
vit_device batcher_device(const batcher *b);
vit_precision batcher_precision(const batcher *b);
/* what the batch buffers hold and the forward reads: FP16 on CUDA, FP32 on the CPU */
vit_input_type batcher_input_type(const batcher *b);

/* The active head (reference counted).  set: retains h, swaps atomically for later batches,
 * releases the previous one (running batches keep theirs).  get: returns a retained reference. */
void batcher_set_head(batcher *b, vit_head *h);
vit_head *batcher_get_head(batcher *b);

#endif
