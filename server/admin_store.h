/* admin_store.h: the admin store, what the admin API keeps (example features, training jobs,
 * head versions, the active version) behind one small interface with no HTTP in it.  The admin
 * HTTP handlers (admin_http.c) and the trainer (trainer.c) see only this; each implementation
 * opens itself and fills an adm_store:
 *
 *   store_dir.c   the embedded default: memory, plus files in --state-dir when one is given
 *                 (heads/head-NNNNNN.safetensors, active.json, examples/label-H.safetensors;
 *                 jobs stay in memory).  One process; the claim of a job is an in-process state change.
 *   (PostgreSQL)  a fleet of replicas sharing one database: same calls, same rules.
 *
 * Rules every implementation keeps:
 *   - Head version numbers are minted by the store (head_publish), never by its callers;
 *     version 1 is the checkpoint's head, present from open and never deleted.
 *   - A job is created in the store (job_create snapshots the examples it will train on) and
 *     run by whichever trainer claims it (job_claim, oldest queued first) with a lease it
 *     renews (job_progress); progress, the result and failures are written through the store.
 *     A job whose lease lapses may be claimed again (the dir store's trainer never loses one);
 *     a shared store's job whose replica drains is released (job_release) and claimed again at
 *     once.
 *   - After every finished epoch the trainer stores the job's training checkpoint
 *     (job_checkpoint: the head, optimizer state, batch order and RNG, vit.h "Checkpoints"),
 *     replacing the previous one; a claim of a job that has one carries it, and the trainer
 *     resumes from it (job_resume records from which epoch, or that it was refused and the job
 *     starts again from epoch 0).  A checkpoint is bounded by adm_checkpoint_max and is deleted
 *     when its job finishes, whatever the outcome.
 *   - The active version is set through the store (active_set); the store calls hooks.on_active
 *     for every change it learns of (its own, and for a shared store another replica's), and
 *     once at open for the stored choice.  The hook swaps the served head; when it refuses
 *     (non-zero: the head does not fit the model) active_set fails with ADM_CONFLICT and the
 *     stored choice is left as it was.
 *   - Errors come back as a status and a one-line message; ADM_UNAVAILABLE means the store
 *     cannot be reached (the HTTP layer answers 503).
 *
 * Threads: every function may be called from any thread at once (HTTP threads, the trainer);
 * the store locks inside.  Visitor callbacks (adm_*_visit) run with the store's lock held and
 * must not call back into the store; what they are given is borrowed for the call.  on_active
 * runs on active_set's caller's thread with the lock held (activations are serialised), at open
 * on the opener's thread before any other call can run, and for a shared store on the thread
 * that learns of another replica's change.
 *
 * Ownership: strings and arrays passed in are copied (features, labels, metrics text); vit_head
 * pointers passed in are retained by the store, and heads handed out are retained for the
 * caller (release them) unless the function says borrowed.  close frees everything the store
 * holds (NULL-safe through adm_store_close). */
#ifndef SRV_ADMIN_STORE_H
#define SRV_ADMIN_STORE_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "vit.h"

#define ADM_MAX_EXAMPLES  10000   /* stored feature vectors, all labels together */
#define ADM_MAX_LABELS    1000
#define ADM_MAX_LABEL_LEN 128
#define ADM_MAX_JOBS      64      /* remembered jobs; the oldest finished ones are forgotten */
#define ADM_MAX_PENDING   4       /* queued + running */
#define ADM_MAX_HEADS     256

typedef enum {
    ADM_OK = 0,
    ADM_BAD_REQUEST,      /* the call cannot succeed as asked (no examples to train on, ...) */
    ADM_NOT_FOUND,
    ADM_CONFLICT,         /* the object's state forbids it (active head, finished job, ...) */
    ADM_FULL,             /* the example store is full */
    ADM_BUSY,             /* too many jobs queued or running */
    ADM_NOMEM,
    ADM_IO,               /* persisting failed; nothing changed */
    ADM_UNAVAILABLE,      /* the store cannot be reached */
} adm_status;

/* A store's failure: msg (when given) formatted, st returned; every implementation reports its
 * errors through it. */
static inline adm_status adm_fail(adm_status st, char *msg, size_t msglen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline adm_status adm_fail(adm_status st, char *msg, size_t msglen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (msg && msglen) vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
    return st;
}

typedef enum { ADM_JOB_QUEUED, ADM_JOB_RUNNING, ADM_JOB_SUCCEEDED, ADM_JOB_FAILED, ADM_JOB_CANCELLED } adm_job_state;
static inline const char *adm_job_state_str(adm_job_state s) {
    static const char *const names[] = {"queued", "running", "succeeded", "failed", "cancelled"};
    return (unsigned)s < 5 ? names[s] : "unknown";
}

/* A job as stored (borrowed inside a visitor). */
typedef struct adm_job_view {
    int id;
    adm_job_state state;
    int epoch, epochs;
    int has_loss;                 /* loss/val_accuracy known (an epoch finished) */
    float loss, val_accuracy;     /* val_accuracy < 0: no validation split */
    float train_accuracy;         /* when succeeded */
    int head_version;             /* 0 until it succeeded */
    const char *error;            /* "" unless failed, or cancelled with a reason */
    int examples, nlabels;
    const char *const *labels;    /* nlabels, in name order */
    vit_label_mode mode;
    double created, started, finished;   /* unix seconds; 0 = not yet */
    const char *owner;            /* who runs or ran it (a shared store: instance#pid); NULL: this process */
    int resumed_from_epoch;       /* the checkpoint's epoch its last claim resumed from; 0: none */
} adm_job_view;
typedef void (*adm_job_visit)(void *ctx, const adm_job_view *j);

/* A head version as stored (borrowed inside a visitor). */
typedef struct adm_head_view {
    int version;
    int active;
    int job;                      /* the job that trained it; 0: the checkpoint's or restored */
    double created;               /* unix seconds */
    const vit_head *head;         /* borrowed */
    const char *metrics;          /* JSON object text or NULL */
    const char *trained_by;       /* the replica that trained it (a shared store); NULL: this process */
} adm_head_view;
typedef void (*adm_head_visit)(void *ctx, const adm_head_view *h);
typedef void (*adm_label_visit)(void *ctx, const char *label, int count);

/* A claimed job: what its trainer needs, owned by the claimer (adm_claim_free). */
typedef struct adm_claim {
    int id;
    vit_train_opts opts;          /* progress/should_stop/cb_ctx unset */
    vit_label_mode mode;
    int n, nlabels, dim;
    float *x;                     /* (n, dim) */
    int32_t *y;                   /* (n) index into labels */
    char **labels;                /* nlabels, in name order */
    void *checkpoint;             /* the job's training checkpoint when it has one, else NULL */
    size_t checkpoint_len;        /* (at most adm_checkpoint_max of the claim, checked by the store) */
} adm_claim;

/* The largest checkpoint a job may have: a head of at most its labels plus the active head's
 * classes (extend appends to it), dim features, n examples (vit_train_checkpoint_size). */
static inline size_t adm_checkpoint_max(int nlabels, int active_classes, int dim, int n) {
    return vit_train_checkpoint_size(nlabels + active_classes, dim, n);
}

/* How a job ended (job_finish). */
typedef struct adm_job_result {
    adm_job_state state;          /* succeeded, failed or cancelled */
    int head_version;             /* succeeded: the version head_publish minted */
    float loss, train_accuracy, val_accuracy;   /* succeeded; val_accuracy < 0: none */
    const char *error;            /* failed; cancelled: why, when no cancel was asked for (or NULL) */
} adm_job_result;

/* What a store tells the server. */
typedef struct adm_store_hooks {
    int (*on_active)(void *ctx, int version, vit_head *head);   /* head borrowed; 0 = accepted */
    void *ctx;
} adm_store_hooks;

typedef struct adm_store adm_store;
struct adm_store {
    void *self;                   /* the implementation's state */

    /* ---- examples: pooled feature vectors (dim floats) with a label and the fingerprint of
     * the backbone that made them; a store never mixes fingerprints (ADM_CONFLICT). */
    /* Add n vectors x (n, dim) under label: as many as fit; *added how many, *full 1 when the
     * store ran out of room (ADM_OK with *added 0 and *full 1 is possible). */
    adm_status (*examples_add)(void *self, const char *label, const char *fingerprint, const float *x, int n,
                               int *added, int *full, char *msg, size_t msglen);
    adm_status (*examples_count)(void *self, int *total, char *msg, size_t msglen);
    /* visit(label, count) for every label with examples; *total all of them */
    adm_status (*examples_list)(void *self, adm_label_visit visit, void *ctx, int *total, char *msg, size_t msglen);
    /* label NULL: all; else that label (ADM_NOT_FOUND when it has none).  *deleted: how many */
    adm_status (*examples_delete)(void *self, const char *label, int *deleted, char *msg, size_t msglen);

    /* ---- jobs ---- */
    /* Queue a job over a snapshot of the examples now stored.  *id its number.  ADM_BAD_REQUEST
     * (no examples; replace with fewer than 2 labels), ADM_BUSY (too many pending). */
    adm_status (*job_create)(void *self, const vit_train_opts *opts, vit_label_mode mode, int *id, char *msg,
                             size_t msglen);
    /* visit one job (ADM_NOT_FOUND) or, with id 0, every remembered job, oldest first */
    adm_status (*job_get)(void *self, int id, adm_job_visit visit, void *ctx, char *msg, size_t msglen);
    /* Cancel: a queued job ends cancelled now, a running one is asked to stop (its trainer sees
     * job_cancelled); a finished one is ADM_CONFLICT.  visit(ctx, job) after the change. */
    adm_status (*job_cancel)(void *self, int id, adm_job_visit visit, void *ctx, char *msg, size_t msglen);
    /* Claim the oldest queued job for `owner` for lease_s seconds: ADM_OK and *out filled, or
     * ADM_NOT_FOUND when none is queued. */
    adm_status (*job_claim)(void *self, const char *owner, double lease_s, adm_claim *out, char *msg, size_t msglen);
    /* Progress after an epoch; renews the lease by lease_s. */
    adm_status (*job_progress)(void *self, int id, int epoch, float loss, float val_accuracy, double lease_s);
    /* 1 when a cancel was asked for (cheap: called between training batches) */
    int (*job_cancelled)(void *self, int id);
    adm_status (*job_finish)(void *self, int id, const adm_job_result *r, char *msg, size_t msglen);
    /* After epoch `epoch` of a job this process runs: keep data[0..len) (copied) as its checkpoint,
     * replacing the previous one; persisted before it returns (a file written atomically, a
     * row).  ADM_BAD_REQUEST when len is over adm_checkpoint_max or the data is not a checkpoint
     * of that epoch for this job's examples; ADM_CONFLICT when the job is not running here. */
    adm_status (*job_checkpoint)(void *self, int id, int epoch, const void *data, size_t len, char *msg,
                                 size_t msglen);
    /* The claimed job resumes from its checkpoint after `epoch` (the job's resumed_from_epoch,
     * and its epoch until the next progress); epoch 0: its checkpoint was refused, the job starts
     * from epoch 0 and the checkpoint is deleted. */
    adm_status (*job_resume)(void *self, int id, int epoch, char *msg, size_t msglen);
    /* Hand a job this process runs back (its trainer is draining): queued again with no owner,
     * its checkpoint, epoch and loss kept, in one change that checks the job is still running
     * here and not asked to cancel; claimable by any replica at once, and the claim counts no
     * attempt.  ADM_CONFLICT when it is not running here any more (finished, lease lapsed) or a
     * cancel was asked for (finish it cancelled instead).  NULL in a store no other process
     * shares (the dir store): there is no one to hand a job to. */
    adm_status (*job_release)(void *self, int id, char *msg, size_t msglen);

    /* ---- head versions and the active one ---- */
    /* Store (and persist) head h (retained) trained by job with metrics (JSON text or NULL);
     * *version is the number the store minted.  ADM_FULL when ADM_MAX_HEADS are kept. */
    adm_status (*head_publish)(void *self, vit_head *h, int job, const char *metrics, int *version, char *msg,
                               size_t msglen);
    /* visit every version in order; *active the active one */
    adm_status (*head_list)(void *self, adm_head_visit visit, void *ctx, int *active, char *msg, size_t msglen);
    /* ADM_CONFLICT for version 1 and the active one */
    adm_status (*head_delete)(void *self, int version, char *msg, size_t msglen);
    /* the active version and its head (retained; may be NULL when not wanted) */
    adm_status (*active_get)(void *self, int *version, vit_head **head, char *msg, size_t msglen);
    /* Make version active: persisted, then hooks.on_active; *head (retained, may be NULL when
     * not wanted) the head now active. */
    adm_status (*active_set)(void *self, int version, vit_head **head, char *msg, size_t msglen);

    void (*close)(void *self);
};

static inline void adm_store_close(adm_store *s) {
    if (s && s->close) s->close(s->self);
}

static inline void adm_claim_free(adm_claim *c) {
    if (!c) return;
    free(c->x);
    free(c->y);
    for (int i = 0; c->labels && i < c->nlabels; i++) free(c->labels[i]);
    free(c->labels);
    free(c->checkpoint);
    c->x = NULL;
    c->y = NULL;
    c->labels = NULL;
    c->checkpoint = NULL;
    c->checkpoint_len = 0;
}

#endif
