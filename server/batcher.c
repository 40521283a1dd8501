/* batcher.c: decode pool + dynamic batcher + engine workers (see batcher.h for the flow).
 * One mutex guards the FIFO, the batch buffers and the counters; decoding and the forward pass
 * run outside it.  Batch buffers: 2 per worker, each sized once for max_batch images, from
 * vit_input_alloc (pinned on CUDA).  They hold the type the sessions read fastest
 * (vit_session_input_type): FP16 on CUDA, where each decoder preprocesses an image into its own
 * FP32 scratch and converts it into the batch slot (half the bytes for the GPU copy, the same
 * results), FP32 on the CPU, where the image is preprocessed straight into its slot. */
#include "batcher.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "util.h"

typedef struct batch {
    float *input;              /* (max_batch, 3, H, W) of in_type: float, or uint16_t (FP16) */
    srv_item **items;          /* (max_batch) */
    uint8_t *ok;               /* (max_batch) 1 when the slot decoded fine */
    int reserved, filled;      /* slots handed to decoders / slots finished decoding */
    double t_first;            /* vit_now() when the first slot was reserved */
    struct batch *next;
} batch;

typedef struct worker {
    batcher *b;
    vit_session *sess;
    pthread_t th;
    int started;
    float *logits;             /* (max_batch, logits_cap) */
    int logits_cap;
    float *features;           /* (max_batch, feature_dim) */
    float *attn;               /* (max_batch, num_patches) */
    int *good;                 /* (max_batch) scratch */
} worker;

struct batcher {
    const vit_config *cfg;
    batcher_opts o;
    size_t img_elems;          /* C * H * W (C = 3, or 1 for a grayscale model) */
    vit_input_type in_type;    /* what the batch buffers hold (the sessions' fastest input) */
    size_t img_bytes;          /* img_elems * (4 or 2) */
    vit_preprocess pp;         /* the model's, with DCT-domain JPEG scaling when fast_decode */
    pthread_mutex_t mu;
    pthread_cond_t cv_dec, cv_work, cv_sweep;
    srv_job *rr_head, *rr_tail;   /* jobs with images queued for a decoder, round robin */
    int queued;                   /* images in them not yet handed to a decoder */
    srv_job *act_head, *act_tail; /* admitted jobs not finished, oldest first */
    srv_item **sweep_buf;         /* (max_queue) images the sweep drops */
    double last_expired;          /* vit_now() when an image last missed its deadline waiting */
    pthread_t sweeper;
    int sweeper_started;
    long pending;              /* admitted images not yet in a running batch */
    batch *bufs;
    int nbufs;
    batch *free_list, *filling, *ready_head, *ready_tail;
    int in_decode;             /* items popped by decoders, not yet in a slot or failed */
    int stop;
    double ewma_batch_s;
    worker *workers;
    pthread_t *decoders;
    struct decoder_arg *dec_args; /* (decoders) */
    int ndec_started;
    pthread_mutex_t head_mu;
    vit_head *head;
    int head_version;             /* the admin store's number for head (1: the checkpoint's) */
    vit_device device;
    vit_precision precision;
};

/* ---- jobs ----------------------------------------------------------------------------- */

srv_job *srv_job_new(batcher *b, int n, int want, int top_k) {
    if (n <= 0 || top_k < 1) return NULL;
    if (top_k > SRV_TOPK_MAX) top_k = SRV_TOPK_MAX;
    size_t np = (want & (SRV_WANT_ATTN_CLS | SRV_WANT_ROLLOUT)) ? (size_t)b->cfg->num_patches : 0;
    size_t nf = (want & SRV_WANT_FEATURES) ? (size_t)b->cfg->feature_dim : 0;
    size_t nc = 0;
    if (want & SRV_WANT_PROBS) {
        vit_head *h = batcher_get_head(b);
        nc = (size_t)vit_head_num_classes(h);
        vit_head_release(h);
    }
    size_t sz = sizeof(srv_job) + (size_t)n * sizeof(srv_item);
    sz = (sz + 15) & ~(size_t)15;
    size_t per = (size_t)top_k * (sizeof(int) + sizeof(float)) + (np + nf + nc) * sizeof(float);
    srv_job *j = calloc(1, sz + (size_t)n * per);
    if (!j) return NULL;
    j->n = n; j->want = want; j->top_k = top_k; j->probs_cap = (int)nc;
    j->b = b;
    j->client_fd = -1;
    atomic_init(&j->remaining, n);
    atomic_init(&j->unfinished, n);
    atomic_init(&j->cancelled, 0);
    atomic_init(&j->cost, 0);
    char *p = (char *)j + sz;
    for (int i = 0; i < n; i++) {
        srv_item *it = &j->items[i];
        it->job = j;
        it->topk_idx = (int *)p; p += (size_t)top_k * sizeof(int);
        it->topk_score = (float *)p; p += (size_t)top_k * sizeof(float);
        if (np) { it->attn = (float *)p; p += np * sizeof(float); }
        if (nf) { it->features = (float *)p; p += nf * sizeof(float); }
        if (nc) { it->probs = (float *)p; p += nc * sizeof(float); }
    }
    return j;
}

void srv_job_free(srv_job *j) {
    if (!j) return;
    if (j->user_free) j->user_free(j->user);
    for (int i = 0; i < j->n; i++) vit_head_release(j->items[i].head);
    free(j);
}

/* never called with b->mu held: the last image takes its job off the active list (before the
 * job can be freed: `remaining` may hold the caller's reference a little longer) */
static void item_finish(srv_item *it) {
    metrics_images(1, it->http == 200);
    srv_job *j = it->job;
    batcher *b = j->b;
    if (atomic_fetch_sub(&j->unfinished, 1) == 1 && b) {
        pthread_mutex_lock(&b->mu);
        if (j->active) {
            if (j->act_prev) j->act_prev->act_next = j->act_next; else b->act_head = j->act_next;
            if (j->act_next) j->act_next->act_prev = j->act_prev; else b->act_tail = j->act_prev;
            j->active = 0;
        }
        pthread_mutex_unlock(&b->mu);
    }
    if (atomic_fetch_sub(&j->remaining, 1) == 1 && j->done) j->done(j, j->done_arg);
}

static void item_fail(srv_item *it, int http, const char *code, const char *msg) {
    it->http = http;
    it->code = code;
    size_t n = strnlen(msg, sizeof it->err - 1);
    memcpy(it->err, msg, n);
    it->err[n] = '\0';
    item_finish(it);
}

/* an image dropped unfinished: its client left (499) or its deadline passed (504) */
static void item_drop(batcher *b, srv_item *it, int queued) {
    if (atomic_load(&it->job->cancelled)) {
        metrics_cancelled(MET_CANCEL_CLIENT_GONE, 1);
        item_fail(it, 499, "client_closed_request", "the client closed the connection before the answer");
        return;
    }
    metrics_cancelled(MET_CANCEL_DEADLINE, 1);
    if (queued) {
        pthread_mutex_lock(&b->mu);
        b->last_expired = vit_now();
        pthread_mutex_unlock(&b->mu);
    }
    item_fail(it, 504, "deadline_exceeded", queued ? "request deadline passed while the image waited"
                                                   : "request deadline passed while the image decoded");
}

static int job_expired(const srv_job *j, double now) {
    return atomic_load(&j->cancelled) || (j->deadline > 0 && now > j->deadline);
}

static void item_fail_status(srv_item *it, vit_status st, const char *msg) {
    switch (st) {
    case VIT_E_IMAGE_FORMAT: item_fail(it, 415, "unsupported_media_type", msg); break;
    case VIT_E_IMAGE_TOO_LARGE:
        metrics_rejected(MET_REJ_IMAGE_TOO_LARGE, 1);
        item_fail(it, 413, "image_too_large", msg);
        break;
    case VIT_E_IMAGE_COST:
        metrics_rejected(MET_REJ_DECODE_COST, 1);
        item_fail(it, 413, "decode_cost_exceeded", msg);
        break;
    case VIT_E_IMAGE_POLICY:
        metrics_rejected(MET_REJ_SCAN_POLICY, 1);
        item_fail(it, 422, "image_refused", msg);
        break;
    case VIT_E_CANCELLED: item_drop(it->job->b, it, 0); break;
    case VIT_E_IMAGE_CORRUPT: case VIT_E_ARG: item_fail(it, 400, "invalid_image", msg); break;
    default: item_fail(it, 500, "internal", msg); break;
    }
}

/* ---- head ----------------------------------------------------------------------------- */

void batcher_set_head_version(batcher *b, vit_head *h, int version) {
    if (!h) return;
    vit_head_retain(h);
    pthread_mutex_lock(&b->head_mu);
    vit_head *old = b->head;
    b->head = h;
    b->head_version = version;
    pthread_mutex_unlock(&b->head_mu);
    vit_head_release(old);
}

void batcher_set_head(batcher *b, vit_head *h) {
    pthread_mutex_lock(&b->head_mu);
    int v = b->head_version;
    pthread_mutex_unlock(&b->head_mu);
    batcher_set_head_version(b, h, v);
}

vit_head *batcher_get_head_version(batcher *b, int *version) {
    pthread_mutex_lock(&b->head_mu);
    vit_head *h = b->head;
    vit_head_retain(h);
    if (version) *version = b->head_version;
    pthread_mutex_unlock(&b->head_mu);
    return h;
}

vit_head *batcher_get_head(batcher *b) { return batcher_get_head_version(b, NULL); }

/* ---- admission ------------------------------------------------------------------------ */

static int retry_after_locked(batcher *b) {
    double per_batch = b->ewma_batch_s > 0 ? b->ewma_batch_s : 0.05;
    double batches = ceil((double)b->pending / b->o.max_batch / b->o.workers) + 1;
    int s = (int)ceil(batches * per_batch);
    if (s < 1) s = 1;
    if (s > 60) s = 60;
    return s;
}

static void rr_push(batcher *b, srv_job *j) {
    j->rr_next = NULL;
    if (b->rr_tail) b->rr_tail->rr_next = j; else b->rr_head = j;
    b->rr_tail = j;
}

/* the next image for a decoder: one of the job at the head, which then goes to the back */
static srv_item *pop_fair(batcher *b) {
    srv_job *j = b->rr_head;
    b->rr_head = j->rr_next;
    if (!b->rr_head) b->rr_tail = NULL;
    srv_item *it = &j->items[j->next++];
    if (j->next < j->n) rr_push(b, j);
    b->queued--;
    return it;
}

int batcher_submit(batcher *b, srv_job *j, int *retry_after_s) {
    j->t_submit = vit_now();
    if (b->o.queue_timeout_s > 0 && (j->deadline <= 0 || j->deadline > j->t_submit + b->o.queue_timeout_s))
        j->deadline = j->t_submit + b->o.queue_timeout_s;
    pthread_mutex_lock(&b->mu);
    if (b->stop || b->pending + j->n > b->o.max_queue) {
        if (retry_after_s) *retry_after_s = retry_after_locked(b);
        pthread_mutex_unlock(&b->mu);
        metrics_rejected(MET_REJ_QUEUE_FULL, 1);
        return 503;
    }
    j->b = b;
    j->next = 0;
    rr_push(b, j);
    j->act_next = NULL;
    j->act_prev = b->act_tail;
    if (b->act_tail) b->act_tail->act_next = j; else b->act_head = j;
    b->act_tail = j;
    j->active = 1;
    b->queued += j->n;
    b->pending += j->n;
    pthread_cond_signal(&b->cv_sweep);
    long depth = b->pending;
    pthread_cond_broadcast(&b->cv_dec);
    pthread_mutex_unlock(&b->mu);
    metrics_queue_depth(depth);
    return 0;
}

long batcher_queue_depth(batcher *b) {
    pthread_mutex_lock(&b->mu);
    long d = b->pending;
    pthread_mutex_unlock(&b->mu);
    return d;
}

void batcher_cancel(batcher *b, srv_job *j) {
    atomic_store(&j->cancelled, 1);
    pthread_mutex_lock(&b->mu);
    pthread_cond_signal(&b->cv_sweep);
    pthread_mutex_unlock(&b->mu);
}

int batcher_saturated(batcher *b) {
    double now = vit_now();
    pthread_mutex_lock(&b->mu);
    int sat = (b->last_expired > 0 && now - b->last_expired < 2.0) ||
              (b->o.queue_timeout_s > 0 && b->act_head && now - b->act_head->t_submit > 0.5 * b->o.queue_timeout_s);
    pthread_mutex_unlock(&b->mu);
    return sat;
}

vit_device batcher_device(const batcher *b) { return b->device; }
vit_input_type batcher_input_type(const batcher *b) { return b->in_type; }
vit_precision batcher_precision(const batcher *b) { return b->precision; }

/* ---- decode pool ---------------------------------------------------------------------- */

typedef struct decoder_arg {
    batcher *b;
    float *scratch;            /* (3, H, W) FP32, NULL when the batches are FP32 */
} decoder_arg;

/* the image at slot of bt: preprocessed straight into it, or (FP16 batches) into the decoder's
 * scratch and converted */
/* the request budget: charge cost to the job unless that takes it past max_request_cost */
static int job_charge(void *ctx, uint64_t cost) {
    srv_job *j = ((srv_item *)ctx)->job;
    uint64_t cap = j->b->o.max_request_cost;
    uint64_t cur = atomic_load(&j->cost);
    do {
        if (cap && (cost > cap || cur > cap - cost)) return 1;
    } while (!atomic_compare_exchange_weak(&j->cost, &cur, cur + cost));
    return 0;
}

static int item_cancelled(void *ctx) { return job_expired(((srv_item *)ctx)->job, vit_now()); }

static vit_status decode_into(batcher *b, srv_item *it, batch *bt, int slot, float *scratch,
                              char *err, size_t errlen) {
    void *dst = (char *)bt->input + (size_t)slot * b->img_bytes;
    if (it->pixels) {                                  /* already the model input */
        if (it->len != b->img_elems * sizeof(float))
            return vit_errf(VIT_E_ARG, err, errlen, "pixel tensor of %zu bytes, the model takes %zu", it->len,
                            b->img_elems * sizeof(float));
        if (b->in_type == VIT_INPUT_F32) { memcpy(dst, it->data, it->len); return VIT_OK; }
        memcpy(scratch, it->data, it->len);
        vit_f32_to_f16(scratch, dst, b->img_elems);
        return VIT_OK;
    }
    vit_decode_limits lim = {.max_pixels = b->o.max_pixels, .max_cost = b->o.max_image_cost,
                             .max_scans = b->o.max_scans, .charge = job_charge, .cancelled = item_cancelled,
                             .ctx = it};
    if (b->in_type == VIT_INPUT_F32)
        return vit_image_load_limited(it->data, it->len, &b->pp, &lim, dst, err, errlen);
    vit_status st = vit_image_load_limited(it->data, it->len, &b->pp, &lim, scratch, err, errlen);
    if (st == VIT_OK) vit_f32_to_f16(scratch, dst, b->img_elems);
    return st;
}

static void *decoder_main(void *arg) {
    batcher *b = ((decoder_arg *)arg)->b;
    float *scratch = ((decoder_arg *)arg)->scratch;
    char err[160];
    if (b->o.decoder_nice > 0) setpriority(PRIO_PROCESS, (id_t)gettid(), b->o.decoder_nice);
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (b->queued == 0 && !b->stop) pthread_cond_wait(&b->cv_dec, &b->mu);
        if (b->queued == 0 && b->stop) break;
        srv_item *it = pop_fair(b);
        b->in_decode++;
        if (job_expired(it->job, vit_now())) {
            b->pending--;
            pthread_mutex_unlock(&b->mu);
            item_drop(b, it, 1);
            pthread_mutex_lock(&b->mu);
            b->in_decode--;
            pthread_cond_broadcast(&b->cv_work);
            continue;
        }
        /* reserve a slot in the filling batch (wait for a free buffer if all are busy) */
        while (!b->filling && !b->free_list) pthread_cond_wait(&b->cv_dec, &b->mu);
        if (!b->filling) {
            b->filling = b->free_list;
            b->free_list = b->filling->next;
            b->filling->next = NULL;
            b->filling->reserved = b->filling->filled = 0;
            b->filling->t_first = vit_now();
        }
        batch *bt = b->filling;
        int slot = bt->reserved++;
        bt->items[slot] = it;
        bt->ok[slot] = 0;
        if (bt->reserved == b->o.max_batch) {          /* full: no more reservations */
            b->filling = NULL;
            if (b->ready_tail) b->ready_tail->next = bt; else b->ready_head = bt;
            b->ready_tail = bt;
        }
        pthread_mutex_unlock(&b->mu);

        double t0 = vit_now();
        vit_status st = decode_into(b, it, bt, slot, scratch, err, sizeof err);
        it->decode_s = vit_now() - t0;
        metrics_observe(MET_DECODE_SECONDS, it->decode_s);
        if (st != VIT_OK) {
            if (!err[0]) snprintf(err, sizeof err, "%s", vit_status_str(st));
            item_fail_status(it, st, err);
        }
        pthread_mutex_lock(&b->mu);
        if (st == VIT_OK) bt->ok[slot] = 1;
        else b->pending--;
        bt->filled++;
        b->in_decode--;
        pthread_cond_broadcast(&b->cv_work);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* ---- sweep: cancellation while images wait ---------------------------------------------- */

#define SWEEP_INTERVAL_S 0.05  /* how often waiting jobs' clients and deadlines are checked */

/* EOF (or an error) on the client's socket: it closed its end (what nginx checks with a peek) */
static int client_gone(int fd) {
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Under b->mu: mark jobs whose client left, take the queued images of cancelled or expired jobs
 * off the round-robin list into b->sweep_buf; returns how many. */
static int sweep_locked(batcher *b, double now) {
    for (srv_job *j = b->act_head; j; j = j->act_next)
        if (j->client_fd >= 0 && !atomic_load(&j->cancelled) && client_gone(j->client_fd))
            atomic_store(&j->cancelled, 1);
    int k = 0;
    srv_job *keep_head = NULL, *keep_tail = NULL;
    for (srv_job *j = b->rr_head, *next; j; j = next) {
        next = j->rr_next;
        j->rr_next = NULL;
        if (job_expired(j, now)) {
            while (j->next < j->n) b->sweep_buf[k++] = &j->items[j->next++];
            continue;
        }
        if (keep_tail) keep_tail->rr_next = j; else keep_head = j;
        keep_tail = j;
    }
    b->rr_head = keep_head;
    b->rr_tail = keep_tail;
    b->queued -= k;
    b->pending -= k;
    return k;
}

static void *sweeper_main(void *arg) {
    batcher *b = arg;
    pthread_mutex_lock(&b->mu);
    while (!b->stop) {
        if (!b->act_head) {
            pthread_cond_wait(&b->cv_sweep, &b->mu);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += (long)(SWEEP_INTERVAL_S * 1e9);
            if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
            pthread_cond_timedwait(&b->cv_sweep, &b->mu, &ts);
        }
        int k = sweep_locked(b, vit_now());
        if (!k) continue;
        long depth = b->pending;
        pthread_cond_broadcast(&b->cv_work);
        pthread_mutex_unlock(&b->mu);
        metrics_queue_depth(depth);
        for (int i = 0; i < k; i++) item_drop(b, b->sweep_buf[i], 1);
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* ---- workers -------------------------------------------------------------------------- */

/* Wait for a batch to run; NULL when stopping and nothing is left.  The filling batch is closed
 * to new images once max_delay_us passed since its first (or when stopping): it joins the ready
 * list, and runs as soon as the images already handed to decoders are in.  So an image waits at
 * most max_delay_us plus one decode for its batch to start, however busy the decoders are.
 * With eager_dispatch it is also closed at once when nothing else is on its way (every reserved image decoded, none
 * queued or decoding) and this worker is free: waiting could only add latency, so a lone request
 * on an idle server is answered as fast as with --max-batch 1, while under load the batch keeps
 * filling during the previous forward pass. */
static batch *take_batch(batcher *b) {
    for (;;) {
        double now = vit_now();
        batch *f = b->filling;
        double due = f ? f->t_first + (double)b->o.max_delay_us * 1e-6 : 0;
        int nothing_coming = b->o.eager_dispatch && f && f->filled == f->reserved &&
                             b->queued == 0 && b->in_decode == 0;
        if (f && f->reserved > 0 && (now >= due || b->stop || nothing_coming)) {
            b->filling = NULL;
            if (b->ready_tail) b->ready_tail->next = f; else b->ready_head = f;
            b->ready_tail = f;
            f = NULL;
        }
        batch *r = b->ready_head;
        if (r && r->filled == r->reserved) {
            b->ready_head = r->next;
            if (!b->ready_head) b->ready_tail = NULL;
            r->next = NULL;
            return r;
        }
        if (b->stop && !r && !f && b->queued == 0 && b->in_decode == 0) return NULL;
        if (f && f->reserved > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            double wait = due - now;
            long ns = ts.tv_nsec + (long)((wait - floor(wait)) * 1e9);
            ts.tv_sec += (time_t)floor(wait) + ns / 1000000000L;
            ts.tv_nsec = ns % 1000000000L;
            pthread_cond_timedwait(&b->cv_work, &b->mu, &ts);
        } else {
            pthread_cond_wait(&b->cv_work, &b->mu);
        }
    }
}

static int ensure_logits(worker *w, int classes) {
    if (classes <= w->logits_cap) return 0;
    float *p = realloc(w->logits, sizeof(float) * (size_t)w->b->o.max_batch * (size_t)classes);
    if (!p) return -1;
    w->logits = p;
    w->logits_cap = classes;
    return 0;
}

/* one forward on a batch buffer of the batcher's input type */
static vit_status forward_buf(batcher *b, vit_session *s, const float *in, int n, const vit_head *h,
                              vit_outputs *out) {
    if (b->in_type == VIT_INPUT_F16) return vit_forward_f16(s, (const uint16_t *)in, n, h, out);
    return vit_forward(s, in, n, h, out);
}

/* Drop failed and expired slots, compacting the tensors; the count left. */
static int compact_batch(batcher *b, batch *bt, double t_start) {
    int ngood = 0;
    for (int i = 0; i < bt->reserved; i++) {
        if (!bt->ok[i]) continue;
        srv_item *it = bt->items[i];
        if (job_expired(it->job, t_start)) {
            item_drop(b, it, 1);
            continue;
        }
        if (i != ngood) {
            memcpy((char *)bt->input + (size_t)ngood * b->img_bytes,
                   (char *)bt->input + (size_t)i * b->img_bytes, b->img_bytes);
            bt->items[ngood] = it;
        }
        ngood++;
    }
    return ngood;
}

/* The forward pass(es) over ngood images into w's buffers; *dt their time. */
static vit_status forward_batch(worker *w, batch *bt, int ngood, int want, vit_head *head, double *dt) {
    batcher *b = w->b;
    const vit_config *c = b->cfg;
    double t0 = vit_now();
    *dt = 0;
    if (ensure_logits(w, vit_head_num_classes(head)) != 0) return VIT_E_NOMEM;
    /* CLS attention and rollout share one buffer; a batch wanting both is rare (two
     * requests with different modes): run rollout's forward separately below. */
    vit_outputs out = {.logits = w->logits};
    if (want & SRV_WANT_FEATURES) out.features = w->features;
    if (want & SRV_WANT_ATTN_CLS) out.attn_cls = w->attn;
    else if (want & SRV_WANT_ROLLOUT) out.attn_rollout = w->attn;
    vit_status st = forward_buf(b, w->sess, bt->input, ngood, head, &out);
    *dt = vit_now() - t0;
    if (st != VIT_OK) return st;
    for (int i = 0; i < ngood; i++) {
        srv_item *it = bt->items[i];
        if ((it->job->want & SRV_WANT_ATTN_CLS) && it->attn)
            memcpy(it->attn, w->attn + (size_t)i * c->num_patches, sizeof(float) * (size_t)c->num_patches);
    }
    if ((want & SRV_WANT_ATTN_CLS) && (want & SRV_WANT_ROLLOUT)) {
        vit_outputs o2 = {.attn_rollout = w->attn};
        st = forward_buf(b, w->sess, bt->input, ngood, head, &o2);
        *dt = vit_now() - t0;
    }
    return st;
}

/* Image i's result from w's buffers: top-k, every probability (SRV_WANT_PROBS), attention,
 * features; the job may complete. */
static void item_result(worker *w, srv_item *it, int i, vit_head *head, int head_version, double dt, int ngood) {
    const vit_config *c = w->b->cfg;
    int C = vit_head_num_classes(head);
    float *row = w->logits + (size_t)i * C;
    vit_softmax(row, C);
    if (it->probs) {
        if (C > it->job->probs_cap) {
            item_fail(it, 503, "head_changed", "the active head changed its classes while queued: retry");
            return;
        }
        memcpy(it->probs, row, sizeof(float) * (size_t)C);
        it->nprobs = C;
    }
    int k = it->job->top_k < C ? it->job->top_k : C;
    it->k = vit_topk(row, C, k, it->topk_idx);
    for (int j = 0; j < it->k; j++) it->topk_score[j] = row[it->topk_idx[j]];
    if ((it->job->want & SRV_WANT_ROLLOUT) && it->attn)
        memcpy(it->attn, w->attn + (size_t)i * c->num_patches, sizeof(float) * (size_t)c->num_patches);
    if (it->features)
        memcpy(it->features, w->features + (size_t)i * c->feature_dim, sizeof(float) * (size_t)c->feature_dim);
    vit_head_retain(head);
    it->head = head;
    it->head_version = head_version;
    it->infer_s = dt;
    it->batch_size = ngood;
    it->http = 200;
    item_finish(it);
}

static void run_batch(worker *w, batch *bt) {
    batcher *b = w->b;
    double t_start = vit_now();
    int ngood = compact_batch(b, bt, t_start);
    if (ngood == 0) return;
    int want = 0;
    for (int i = 0; i < ngood; i++) {
        srv_item *it = bt->items[i];
        want |= it->job->want;
        it->queue_s = t_start - it->job->t_submit - it->decode_s;
        if (it->queue_s < 0) it->queue_s = 0;
        metrics_observe(MET_QUEUE_SECONDS, it->queue_s);
    }
    int head_version;
    vit_head *head = batcher_get_head_version(b, &head_version);
    double dt;
    vit_status st = forward_batch(w, bt, ngood, want, head, &dt);
    char msg[200];
    if (st != VIT_OK) snprintf(msg, sizeof msg, "inference failed: %s", vit_session_errmsg(w->sess));
    metrics_observe(MET_INFER_SECONDS, dt);
    metrics_observe(MET_BATCH_SIZE, ngood);
    for (int i = 0; i < ngood; i++) {
        if (st != VIT_OK) item_fail(bt->items[i], 500, "inference_failed", msg);
        else item_result(w, bt->items[i], i, head, head_version, dt, ngood);
    }
    vit_head_release(head);
    pthread_mutex_lock(&b->mu);
    b->ewma_batch_s = b->ewma_batch_s > 0 ? 0.8 * b->ewma_batch_s + 0.2 * dt : dt;
    pthread_mutex_unlock(&b->mu);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    batcher *b = w->b;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        batch *bt = take_batch(b);
        if (!bt) break;
        int ok = 0;
        for (int i = 0; i < bt->reserved; i++) ok += bt->ok[i];
        b->pending -= ok;
        long depth = b->pending;
        pthread_mutex_unlock(&b->mu);
        metrics_queue_depth(depth);
        run_batch(w, bt);
        pthread_mutex_lock(&b->mu);
        bt->reserved = bt->filled = 0;
        bt->next = b->free_list;
        b->free_list = bt;
        pthread_cond_broadcast(&b->cv_dec);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* ---- lifetime ------------------------------------------------------------------------- */

/* One session per worker with its output buffers. */
static vit_status make_workers(batcher *b, const vit_model *m, char *err, size_t errlen) {
    const batcher_opts *o = &b->o;
    for (int i = 0; i < o->workers; i++) {
        worker *w = &b->workers[i];
        w->b = b;
        vit_session_opts so = {.max_batch = o->max_batch, .threads = o->threads, .device = o->device,
                               .precision = o->precision, .gpu_id = 0};
        vit_status st = vit_session_new(m, &so, &w->sess, err, errlen);
        if (st != VIT_OK) return st;
        w->features = malloc(sizeof(float) * (size_t)o->max_batch * (size_t)b->cfg->feature_dim);
        w->attn = malloc(sizeof(float) * (size_t)o->max_batch * (size_t)b->cfg->num_patches);
        w->good = malloc(sizeof(int) * (size_t)o->max_batch);
        if (!w->features || !w->attn || !w->good || ensure_logits(w, b->cfg->num_classes) != 0)
            return vit_errf(VIT_E_NOMEM, err, errlen, "batcher: out of memory");
    }
    return VIT_OK;
}

/* The batch buffers decoders fill: pinned on CUDA, so a batch goes to the GPU in one DMA
 * straight from here (any session of the model would do: all are on one device); FP16 when
 * the sessions read that fastest (vit_input_alloc's buffer holds either). */
static vit_status make_buffers(batcher *b, char *err, size_t errlen) {
    const batcher_opts *o = &b->o;
    b->in_type = o->input_f16 > 0 ? VIT_INPUT_F16 : o->input_f16 < 0 ? VIT_INPUT_F32
                                                   : vit_session_input_type(b->workers[0].sess);
    b->img_bytes = b->img_elems * (b->in_type == VIT_INPUT_F16 ? sizeof(uint16_t) : sizeof(float));
    for (int i = 0; i < o->decoders; i++) {
        b->dec_args[i].b = b;
        if (b->in_type == VIT_INPUT_F16 &&
            !(b->dec_args[i].scratch = aligned_alloc(64, (b->img_elems * sizeof(float) + 63) / 64 * 64)))
            return vit_errf(VIT_E_NOMEM, err, errlen, "batcher: out of memory");
    }
    for (int i = 0; i < b->nbufs; i++) {
        batch *bt = &b->bufs[i];
        bt->input = vit_input_alloc(b->workers[0].sess, o->max_batch);
        bt->items = calloc((size_t)o->max_batch, sizeof *bt->items);
        bt->ok = calloc((size_t)o->max_batch, 1);
        if (!bt->input || !bt->items || !bt->ok) return vit_errf(VIT_E_NOMEM, err, errlen, "batcher: out of memory");
        bt->next = b->free_list;
        b->free_list = bt;
    }
    return VIT_OK;
}

/* Warm-up: one full batch of zeros through every path the server uses, on every worker. */
static vit_status warm_up(batcher *b, char *err, size_t errlen) {
    for (int i = 0; i < b->o.workers; i++) {
        worker *w = &b->workers[i];
        float *x = b->bufs[0].input;
        memset(x, 0, b->img_bytes * (size_t)b->o.max_batch);   /* zeros in either type */
        vit_outputs wo = {.logits = w->logits, .features = w->features, .attn_cls = w->attn};
        double t0 = vit_now();
        vit_status st = forward_buf(b, w->sess, x, b->o.max_batch, b->head, &wo);
        if (st != VIT_OK) return vit_errf(st, err, errlen, "warm-up forward failed: %s", vit_session_errmsg(w->sess));
        b->ewma_batch_s = vit_now() - t0;
    }
    return VIT_OK;
}

static vit_status start_threads(batcher *b, char *err, size_t errlen) {
    for (int i = 0; i < b->o.workers; i++) {
        if (pthread_create(&b->workers[i].th, NULL, worker_main, &b->workers[i]) != 0)
            return vit_errf(VIT_E_INTERNAL, err, errlen, "batcher: cannot start worker thread");
        b->workers[i].started = 1;
    }
    if (pthread_create(&b->sweeper, NULL, sweeper_main, b) != 0)
        return vit_errf(VIT_E_INTERNAL, err, errlen, "batcher: cannot start the sweep thread");
    b->sweeper_started = 1;
    for (int i = 0; i < b->o.decoders; i++) {
        if (pthread_create(&b->decoders[i], NULL, decoder_main, &b->dec_args[i]) != 0)
            return vit_errf(VIT_E_INTERNAL, err, errlen, "batcher: cannot start decoder thread");
        b->ndec_started++;
    }
    return VIT_OK;
}

vit_status batcher_new(const vit_model *m, const batcher_opts *o, batcher **out, char *err, size_t errlen) {
    *out = NULL;
    if (o->max_batch < 1 || o->max_queue < 1 || o->workers < 1 || o->decoders < 1)
        return vit_errf(VIT_E_ARG, err, errlen, "batcher: max_batch, max_queue, workers, decoders must be >= 1");
    batcher *b = calloc(1, sizeof *b);
    if (!b) return vit_errf(VIT_E_NOMEM, err, errlen, "batcher: out of memory");
    b->cfg = vit_model_config(m);
    b->o = *o;
    b->img_elems = (size_t)b->cfg->num_channels * b->cfg->preprocess.out_h * b->cfg->preprocess.out_w;
    b->pp = b->cfg->preprocess;
    if (o->fast_decode) b->pp.allow_dct_scaling = 1;
    pthread_mutex_init(&b->mu, NULL);
    pthread_mutex_init(&b->head_mu, NULL);
    pthread_cond_init(&b->cv_dec, NULL);
    pthread_cond_init(&b->cv_work, NULL);
    pthread_cond_init(&b->cv_sweep, NULL);
    b->head = vit_model_head(m);
    b->head_version = 1;
    vit_head_retain(b->head);
    b->sweep_buf = calloc((size_t)o->max_queue, sizeof *b->sweep_buf);
    b->nbufs = 2 * o->workers;
    b->bufs = calloc((size_t)b->nbufs, sizeof *b->bufs);
    b->workers = calloc((size_t)o->workers, sizeof *b->workers);
    b->decoders = calloc((size_t)o->decoders, sizeof *b->decoders);
    b->dec_args = calloc((size_t)o->decoders, sizeof *b->dec_args);
    vit_status st = !b->sweep_buf || !b->bufs || !b->workers || !b->decoders || !b->dec_args
                        ? vit_errf(VIT_E_NOMEM, err, errlen, "batcher: out of memory") : VIT_OK;
    if (st == VIT_OK) st = make_workers(b, m, err, errlen);
    if (st == VIT_OK) st = make_buffers(b, err, errlen);
    if (st == VIT_OK) st = warm_up(b, err, errlen);
    if (st == VIT_OK) {
        b->device = vit_session_device(b->workers[0].sess);
        b->precision = vit_session_precision(b->workers[0].sess);
        st = start_threads(b, err, errlen);
    }
    if (st != VIT_OK) {
        batcher_free(b);
        return st;
    }
    *out = b;
    return VIT_OK;
}

void batcher_free(batcher *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->stop = 1;
    pthread_cond_broadcast(&b->cv_dec);
    pthread_cond_broadcast(&b->cv_work);
    pthread_cond_broadcast(&b->cv_sweep);
    pthread_mutex_unlock(&b->mu);
    for (int i = 0; i < b->ndec_started; i++) pthread_join(b->decoders[i], NULL);
    if (b->sweeper_started) pthread_join(b->sweeper, NULL);
    pthread_mutex_lock(&b->mu);
    pthread_cond_broadcast(&b->cv_work);
    pthread_mutex_unlock(&b->mu);
    if (b->workers)
        for (int i = 0; i < b->o.workers; i++)
            if (b->workers[i].started) pthread_join(b->workers[i].th, NULL);
    /* the buffers first: vit_input_free needs the session that allocated them (workers[0]) */
    if (b->bufs)
        for (int i = 0; i < b->nbufs; i++) {
            vit_input_free(b->workers ? b->workers[0].sess : NULL, b->bufs[i].input);
            free(b->bufs[i].items); free(b->bufs[i].ok);
        }
    if (b->workers) {
        for (int i = 0; i < b->o.workers; i++) {
            worker *w = &b->workers[i];
            vit_session_free(w->sess);
            free(w->logits); free(w->features); free(w->attn); free(w->good);
        }
    }
    if (b->dec_args)
        for (int i = 0; i < b->o.decoders; i++) free(b->dec_args[i].scratch);
    free(b->bufs); free(b->workers); free(b->decoders); free(b->dec_args); free(b->sweep_buf);
    vit_head_release(b->head);
    pthread_mutex_destroy(&b->mu);
    pthread_mutex_destroy(&b->head_mu);
    pthread_cond_destroy(&b->cv_dec);
    pthread_cond_destroy(&b->cv_work);
    pthread_cond_destroy(&b->cv_sweep);
    free(b);
}
