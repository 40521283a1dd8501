/* trainer.c: the training thread (see trainer.h).  It sees the admin store only through
 * admin_store.h: job_claim hands it a job with its own copy of the examples, so it trains with
 * no lock held; progress goes to the store once per epoch (renewing the claim's lease), then the
 * epoch's checkpoint (job_checkpoint); the cancel flag is read between batches.  A claim that
 * carries a checkpoint (a job another replica ran until its lease lapsed) resumes from it; one
 * the engine refuses (corrupt, another run's) is logged, dropped, and the job starts again from
 * epoch 0.
 *
 * Drain (trainer_drain, SIGTERM): with a store other replicas share (job_release), the running
 * job stops at its next epoch end with a checkpoint of that epoch (the engine's
 * stop_after_epoch), or right away once the hand-over deadline passes (the last checkpoint
 * stays), and is released: queued again for another replica, which resumes it.  No job is
 * claimed after that.  The dir store has no one to hand a job to: its job runs on until
 * trainer_stop, then ends cancelled ("vitd is shutting down"). */
#include "trainer.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "log.h"
#include "util.h"

#define TRAINER_LEASE_S 300.0     /* a claim lapses when not renewed for this long */
#define TRAINER_POLL_S  1         /* a shared store's jobs are looked for this often */
#define TRAINER_CKPT_EVERY_S 1.0  /* a checkpoint after the first epoch, then at most once a second:
                                     a take-over loses at most a second of training, and a big
                                     head's checkpoint (9 MB for 1000 x 768) is not written to the
                                     store after every sub-second epoch */

struct trainer {
    adm_store *store;
    batcher *batcher;
    char owner[64];               /* who claims: host and pid */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, kicked;             /* under mu */
    int draining;                 /* under mu: hand the running job over, claim no more */
    double handover_by;           /* under mu: vit_now() after which a draining job stops at once */
    int busy;                     /* under mu: claiming or running a job */
};

typedef struct run_ctx {
    trainer *t;
    int id;
    int ckpt_epoch;               /* the epoch of the job's checkpoint in the store; 0: none */
} run_ctx;

static void on_epoch(void *ctx, int epoch, int epochs, float loss, float val) {
    run_ctx *r = ctx;
    (void)epochs;
    r->t->store->job_progress(r->t->store->self, r->id, epoch, loss, val, TRAINER_LEASE_S);
}

static void on_checkpoint(void *ctx, int epoch, const void *data, size_t len) {
    run_ctx *r = ctx;
    char msg[256];
    /* a checkpoint that cannot be stored costs only the resumability of this epoch */
    if (r->t->store->job_checkpoint(r->t->store->self, r->id, epoch, data, len, msg, sizeof msg) != ADM_OK)
        srv_log(SRV_LOG_WARN, "admin: job %d: cannot store the checkpoint of epoch %d: %s", r->id, epoch, msg);
    else
        r->ckpt_epoch = epoch;
}

/* Before every batch: stopped, cancelled, or draining past the hand-over deadline. */
static int should_stop(void *ctx) {
    run_ctx *r = ctx;
    pthread_mutex_lock(&r->t->mu);
    int stop = r->t->stop || (r->t->draining && vit_now() >= r->t->handover_by);
    pthread_mutex_unlock(&r->t->mu);
    return stop || r->t->store->job_cancelled(r->t->store->self, r->id);
}

/* After every epoch but the last: a draining trainer stops there, with that epoch's checkpoint. */
static int stop_after_epoch(void *ctx) {
    run_ctx *r = ctx;
    pthread_mutex_lock(&r->t->mu);
    int draining = r->t->draining;
    pthread_mutex_unlock(&r->t->mu);
    return draining;
}

/* Train the claimed job from init, resuming from the claim's checkpoint when it has one.  The
 * engine checks the checkpoint (vit.h "Checkpoints") before any training: when it is refused
 * the job starts again from epoch 0, and says so in the log. */
static vit_status resume(trainer *t, adm_claim *j, run_ctx *rc, const vit_head *init, const int32_t *y,
                         vit_head **trained, vit_train_result *res, char *err, size_t errlen) {
    char msg[256];
    vit_train_checkpoint_info info = {0};
    if (j->checkpoint) {
        j->opts.resume = j->checkpoint;
        j->opts.resume_len = j->checkpoint_len;
        /* the framing first, so that resumed_from_epoch is recorded before the training runs */
        vit_status st = vit_train_checkpoint_info_get(j->checkpoint, j->checkpoint_len, &info, err, errlen);
        if (st == VIT_OK && t->store->job_resume(t->store->self, j->id, info.epoch, msg, sizeof msg) != ADM_OK)
            srv_log(SRV_LOG_WARN, "admin: job %d: cannot record its resumption: %s", j->id, msg);
        if (st == VIT_OK) {
            rc->ckpt_epoch = info.epoch;   /* until a newer one is stored */
            st = vit_head_train(init, j->x, y, j->n, &j->opts, trained, res, err, errlen);
            if (st != VIT_E_CHECKPOINT) {
                if (st == VIT_OK || st == VIT_E_CANCELLED)
                    srv_log(SRV_LOG_INFO, "admin: job %d resumed from its checkpoint after epoch %d of %d", j->id,
                            info.epoch, info.epochs);
                return st;
            }
        }
        rc->ckpt_epoch = 0;
        srv_log(SRV_LOG_WARN, "admin: job %d: its checkpoint is refused (%s); the job starts again from epoch 0", j->id,
                err);
        if (t->store->job_resume(t->store->self, j->id, 0, msg, sizeof msg) != ADM_OK)
            srv_log(SRV_LOG_WARN, "admin: job %d: cannot drop its checkpoint: %s", j->id, msg);
        j->opts.resume = NULL;
        j->opts.resume_len = 0;
    }
    return vit_head_train(init, j->x, y, j->n, &j->opts, trained, res, err, errlen);
}

/* Train the claimed job from the active head: *trained and *res on VIT_OK. */
static vit_status train(trainer *t, adm_claim *j, run_ctx *rc, vit_head **trained, vit_train_result *res, char *err,
                        size_t errlen) {
    vit_head *base = NULL, *init = NULL;
    int active;
    char msg[256];
    if (t->store->active_get(t->store->self, &active, &base, msg, sizeof msg) != ADM_OK || !base)
        return vit_errf(VIT_E_BACKEND, err, errlen, "admin store: %s", msg);
    int32_t *map = malloc(sizeof(int32_t) * (size_t)j->nlabels);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)j->n);
    vit_status st = !map || !y ? vit_errf(VIT_E_NOMEM, err, errlen, "out of memory")
                               : vit_head_init_for_training(base, j->mode, (const char *const *)j->labels, j->nlabels,
                                                            j->dim, &init, map, err, errlen);
    if (st == VIT_OK) {
        for (int i = 0; i < j->n; i++) y[i] = map[j->y[i]];
        j->opts.progress = on_epoch;
        j->opts.should_stop = should_stop;
        j->opts.stop_after_epoch = stop_after_epoch;
        j->opts.checkpoint = on_checkpoint;
        j->opts.checkpoint_every_s = TRAINER_CKPT_EVERY_S;
        j->opts.cb_ctx = rc;
        /* on the GPU when the model runs there (FP32 either way) */
        j->opts.device = t->batcher && batcher_device(t->batcher) == VIT_DEVICE_CUDA ? VIT_DEVICE_CUDA : VIT_DEVICE_CPU;
        st = resume(t, j, rc, init, y, trained, res, err, errlen);
        if (j->opts.device == VIT_DEVICE_CUDA && (st == VIT_E_BACKEND || st == VIT_E_DEVICE)) {
            /* a CUDA failure (e.g. out of device memory next to the sessions) is not the
             * job's fault: train it again on the CPU */
            srv_log(SRV_LOG_WARN, "admin: job %d: training on cuda failed (%s); retrying on the cpu", j->id, err);
            j->opts.device = VIT_DEVICE_CPU;
            st = vit_head_train(init, j->x, y, j->n, &j->opts, trained, res, err, errlen);
        }
    }
    vit_head_release(base);
    vit_head_release(init);
    free(map);
    free(y);
    return st;
}

/* The metrics a head version keeps: JSON text (malloc'd) or NULL. */
static char *head_metrics(const adm_claim *j, const vit_train_result *res) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddNumberToObject(m, "loss", res->loss);
    cJSON_AddNumberToObject(m, "train_accuracy", res->train_accuracy);
    if (res->n_val > 0) cJSON_AddNumberToObject(m, "val_accuracy", res->val_accuracy);
    else cJSON_AddNullToObject(m, "val_accuracy");
    cJSON_AddNumberToObject(m, "examples", j->n);
    cJSON_AddNumberToObject(m, "train", res->n_train);
    cJSON_AddNumberToObject(m, "val", res->n_val);
    cJSON_AddNumberToObject(m, "epochs", res->epochs_done);
    cJSON_AddStringToObject(m, "device", res->device == VIT_DEVICE_CUDA ? "cuda" : "cpu");
    cJSON_AddStringToObject(m, "optimizer", j->opts.optimizer == VIT_OPT_SGD ? "sgd" : "adamw");
    cJSON_AddNumberToObject(m, "lr", j->opts.lr);
    cJSON_AddNumberToObject(m, "batch_size", j->opts.batch_size);
    cJSON_AddNumberToObject(m, "weight_decay", j->opts.weight_decay);
    cJSON_AddStringToObject(m, "labels", j->mode == VIT_LABELS_EXTEND ? "extend" : "replace");
    char *text = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    return text;
}

/* A job stopped by a drain or trainer_stop, not by a cancel: released for another replica (1),
 * or 0 when the store cannot take it back (the dir store; a cancel that came in meanwhile; the
 * job no longer ours) and the caller ends it. */
static int hand_over(trainer *t, const adm_claim *j, const run_ctx *rc, const vit_train_result *res) {
    char msg[256];
    pthread_mutex_lock(&t->mu);
    int draining = t->draining;
    pthread_mutex_unlock(&t->mu);
    if (!t->store->job_release) return 0;
    adm_status st = t->store->job_release(t->store->self, j->id, msg, sizeof msg);
    if (st == ADM_OK) {
        srv_log(SRV_LOG_INFO, "admin: job %d handed over at epoch %d (%s)", j->id, rc->ckpt_epoch,
                draining ? "draining" : "stopping");
        if (res->epochs_done > rc->ckpt_epoch)   /* the drain deadline came first, or a checkpoint was not stored */
            srv_log(SRV_LOG_WARN, "admin: job %d: epochs %d to %d have no checkpoint; the next replica trains them again",
                    j->id, rc->ckpt_epoch + 1, res->epochs_done);
        return 1;
    }
    if (st == ADM_CONFLICT) return 0;   /* cancelled meanwhile, or not ours: ended below (or by its new owner) */
    /* the store is unreachable: the job stays ours until its lease lapses, then another replica
     * takes it over from its last checkpoint */
    srv_log(SRV_LOG_WARN, "admin: job %d: cannot hand it over (%s); another replica takes it when its lease lapses",
            j->id, msg);
    return 1;
}

/* Train, publish the head version on success, record the outcome in the store (or hand the job
 * over when the trainer drains). */
static void run_job(trainer *t, adm_claim *j) {
    char err[512] = "";
    vit_head *trained = NULL;
    vit_train_result res;
    memset(&res, 0, sizeof res);
    run_ctx rc = {t, j->id, 0};
    vit_status st = train(t, j, &rc, &trained, &res, err, sizeof err);
    adm_job_result r = {.state = ADM_JOB_FAILED, .error = err};
    if (st == VIT_OK) {
        char *metrics = head_metrics(j, &res);
        int version = 0;
        if (t->store->head_publish(t->store->self, trained, j->id, metrics, &version, err, sizeof err) == ADM_OK)
            r = (adm_job_result){.state = ADM_JOB_SUCCEEDED, .head_version = version, .loss = res.loss,
                                 .train_accuracy = res.train_accuracy, .val_accuracy = res.n_val > 0 ? res.val_accuracy : -1};
        free(metrics);
        vit_head_release(trained);
    } else if (st == VIT_E_CANCELLED) {
        /* a cancel asked for wins over a hand-over; a stop without one is vitd leaving */
        int cancelled = t->store->job_cancelled(t->store->self, j->id);
        if (!cancelled && hand_over(t, j, &rc, &res)) return;
        r = (adm_job_result){.state = ADM_JOB_CANCELLED, .error = cancelled ? NULL : "vitd is shutting down"};
    }
    char msg[256];
    if (t->store->job_finish(t->store->self, j->id, &r, msg, sizeof msg) != ADM_OK)
        srv_log(SRV_LOG_ERROR, "admin: job %d: cannot record its outcome: %s", j->id, msg);
    srv_log(SRV_LOG_INFO, "admin: job %d %s%s%s", j->id, adm_job_state_str(r.state), r.error ? ": " : "",
            r.error ? r.error : "");
}

static void *trainer_main(void *arg) {
    trainer *t = arg;
    /* training yields to /classify: nice 10 for this thread only (Linux: per-thread priority) */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0)
        srv_log(SRV_LOG_DEBUG, "admin: cannot lower the trainer's priority: %s", strerror(errno));
    pthread_mutex_lock(&t->mu);
    while (!t->stop && !t->draining) {
        t->kicked = 0;
        t->busy = 1;
        pthread_mutex_unlock(&t->mu);
        adm_claim j;
        char msg[256];
        adm_status st = t->store->job_claim(t->store->self, t->owner, TRAINER_LEASE_S, &j, msg, sizeof msg);
        if (st == ADM_OK) {
            run_job(t, &j);
            adm_claim_free(&j);
        } else if (st != ADM_NOT_FOUND) {
            srv_log(SRV_LOG_WARN, "admin: cannot claim a job: %s", msg);
        }
        pthread_mutex_lock(&t->mu);
        t->busy = 0;
        if (st == ADM_OK || t->stop || t->draining || t->kicked) continue;
        struct timespec to;
        clock_gettime(CLOCK_REALTIME, &to);
        to.tv_sec += TRAINER_POLL_S;
        pthread_cond_timedwait(&t->cv, &t->mu, &to);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

int trainer_start(adm_store *store, batcher *b, trainer **out, char *err, size_t errlen) {
    trainer *t = calloc(1, sizeof *t);
    if (!t) { snprintf(err, errlen, "out of memory"); return -1; }
    t->store = store;
    t->batcher = b;
    char host[32] = "";
    gethostname(host, sizeof host - 1);
    snprintf(t->owner, sizeof t->owner, "%s:%ld", host, (long)getpid());
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    if (pthread_create(&t->thread, NULL, trainer_main, t) != 0) {
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv);
        free(t);
        snprintf(err, errlen, "cannot start the trainer thread");
        return -1;
    }
    *out = t;
    return 0;
}

void trainer_kick(trainer *t) {
    if (!t) return;
    pthread_mutex_lock(&t->mu);
    t->kicked = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

void trainer_drain(trainer *t, double timeout_s) {
    if (!t || !t->store->job_release) return;   /* no one to hand a job to: it runs until trainer_stop */
    /* the release and the process's exit need a moment before the drain timeout */
    double margin = timeout_s / 4 < 1.0 ? timeout_s / 4 : 1.0;
    pthread_mutex_lock(&t->mu);
    t->draining = 1;
    t->handover_by = vit_now() + (timeout_s - margin > 0 ? timeout_s - margin : 0);
    if (t->busy) srv_log(SRV_LOG_INFO, "admin: draining: the running job is handed over at its next epoch end");
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

int trainer_busy(trainer *t) {
    if (!t) return 0;
    pthread_mutex_lock(&t->mu);
    int busy = t->busy && t->draining;
    pthread_mutex_unlock(&t->mu);
    return busy;
}

void trainer_stop(trainer *t) {
    if (!t) return;
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t);
}
