/* test_trainer.c: the training thread (server/trainer.c) resuming jobs, over the state-directory
 * store in memory (server/store_dir.c) whose job_claim is wrapped to hand the trainer what a
 * shared store hands it after another replica died holding the job: a claim with a checkpoint.
 *   - a valid checkpoint (after epoch 2 of the same job): the job resumes from it
 *     (resumed_from_epoch 2) and publishes a head bit-identical to an uninterrupted run;
 *   - a corrupt one, and one of another run (other seed): refused, the job starts again from
 *     epoch 0 (resumed_from_epoch 0) and still publishes the uninterrupted run's head;
 *   - every job stored a checkpoint per epoch while running, and none is left once it finished.
 * And the drain (trainer_drain), with job_release wrapped in as a shared store has it:
 *   - the running job stops at its next epoch end with that epoch's checkpoint (whatever the
 *     once-a-second throttle says) and is released; no job is claimed after that;
 *   - past the hand-over deadline it stops before the next batch, relying on the last checkpoint;
 *   - without job_release (the dir store) the job runs on; trainer_stop ends it cancelled with
 *     "vitd is shutting down". */
#include "harness.h"

#include <time.h>
#include <unistd.h>

#include "../../server/log.c"
#include "../../server/logfmt.c"
#include "../../server/metrics.c"
#include "../../server/textcheck.c"
#include "../../server/store_dir.c"
#include "../../server/trainer.c"
#include "store_ckpt.h"

/* the trainer only asks the batcher which device the model runs on; it has none here */
vit_device batcher_device(const batcher *b) {
    (void)b;
    return VIT_DEVICE_CPU;
}

#define DIM 8

static adm_store g_real;          /* the store_dir underneath */
static int g_mode;                /* what the next claim carries: 0 valid, 1 corrupt, 2 another run's */
static adm_claim g_seen;          /* a copy of the last claim's examples (for the reference run) */
static int g_checkpoints;         /* job_checkpoint calls that succeeded */

static adm_status wrapped_claim(void *self, const char *owner, double lease_s, adm_claim *out, char *msg, size_t msglen) {
    adm_status st = g_real.job_claim(self, owner, lease_s, out, msg, msglen);
    if (st != ADM_OK) return st;
    adm_claim_free(&g_seen);
    g_seen = *out;
    g_seen.x = malloc(sizeof(float) * (size_t)out->n * DIM);
    g_seen.y = malloc(sizeof(int32_t) * (size_t)out->n);
    g_seen.labels = calloc((size_t)out->nlabels, sizeof(char *));
    memcpy(g_seen.x, out->x, sizeof(float) * (size_t)out->n * DIM);
    memcpy(g_seen.y, out->y, sizeof(int32_t) * (size_t)out->n);
    for (int i = 0; i < out->nlabels; i++) g_seen.labels[i] = strdup(out->labels[i]);
    adm_claim other = *out;
    if (g_mode == 2) other.opts.seed += 1;
    size_t len = 0;
    out->checkpoint = ckpt_of(&other, 2, &len);
    out->checkpoint_len = len;
    if (g_mode == 1 && out->checkpoint) ((unsigned char *)out->checkpoint)[len / 3] ^= 0x40;
    return ADM_OK;
}

static adm_status counted_checkpoint(void *self, int id, int epoch, const void *data, size_t len, char *msg, size_t msglen) {
    adm_status st = g_real.job_checkpoint(self, id, epoch, data, len, msg, msglen);
    if (st == ADM_OK) g_checkpoints++;
    return st;
}

static int g_progress_ms, g_batch_ms;   /* sleeps that make epochs / batches last */
static int g_released, g_released_id, g_released_ckpt;
static double g_released_at;

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static adm_status slow_progress(void *self, int id, int epoch, float loss, float val_accuracy, double lease_s) {
    if (g_progress_ms) sleep_ms(g_progress_ms);
    return g_real.job_progress(self, id, epoch, loss, val_accuracy, lease_s);
}

/* called before every batch (should_stop) */
static int slow_cancelled(void *self, int id) {
    if (g_batch_ms) sleep_ms(g_batch_ms);
    return g_real.job_cancelled(self, id);
}

/* a shared store's release, recorded: the checkpoint the job has in the store at that moment */
static adm_status recorded_release(void *self, int id, char *msg, size_t msglen) {
    (void)msg; (void)msglen;
    sd_store *ss = self;
    pthread_mutex_lock(&ss->mu);
    sd_job *j = find_job(ss, id);
    g_released_ckpt = j ? j->ckpt_epoch : -1;
    pthread_mutex_unlock(&ss->mu);
    g_released_id = id;
    g_released_at = vit_now();
    g_released++;
    return ADM_OK;
}

static void view_state(void *ctx, const adm_job_view *j) { *(adm_job_view *)ctx = *j; }

static int wait_finished(adm_store *s, int id, adm_job_view *v) {
    char msg[256];
    for (int i = 0; i < 1000; i++) {
        if (s->job_get(s->self, id, view_state, v, msg, sizeof msg) == ADM_OK && v->state > ADM_JOB_RUNNING) return 1;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

typedef struct { int version; vit_head *head; } head_find;
static void find_head_cb(void *ctx, const adm_head_view *h) {
    head_find *f = ctx;
    if (h->version == f->version) vit_head_retain(f->head = (vit_head *)h->head);
}

/* the job's head as an uninterrupted run trains it from the claim's examples */
static vit_head *reference(vit_head *base) {
    vit_head *init = NULL, *out = NULL;
    char err[256];
    vit_train_opts o = g_seen.opts;
    o.device = VIT_DEVICE_CPU;
    if (vit_head_init_for_training(base, g_seen.mode, (const char *const *)g_seen.labels, g_seen.nlabels, DIM, &init,
                                   NULL, err, sizeof err) == VIT_OK)
        vit_head_train(init, g_seen.x, g_seen.y, g_seen.n, &o, &out, NULL, err, sizeof err);
    vit_head_release(init);
    return out;
}

static void check_job(adm_store *s, trainer *t, vit_head *base, int mode, int want_resumed, const char *what) {
    char msg[256];
    vit_train_opts o;
    vit_train_opts_default(&o);
    o.epochs = 5;
    o.batch_size = 7;
    o.lr = 0.01f;
    o.val_fraction = 0.2f;
    o.seed = 5;
    int id = 0;
    g_mode = mode;
    g_checkpoints = 0;
    if (s->job_create(s->self, &o, VIT_LABELS_REPLACE, &id, msg, sizeof msg) != ADM_OK) {
        CHECK(0, "%s: job_create: %s", what, msg);
        return;
    }
    trainer_kick(t);
    adm_job_view v;
    int done = wait_finished(s, id, &v);
    CHECK(done && v.state == ADM_JOB_SUCCEEDED && v.resumed_from_epoch == want_resumed && v.epoch == 5,
          "%s: succeeded, resumed_from_epoch %d (want %d)", what, v.resumed_from_epoch, want_resumed);
    /* the trainer checkpoints at most once a second (the first epoch always): 1 .. the epochs trained */
    CHECK(g_checkpoints >= 1 && g_checkpoints <= 5 - want_resumed, "%s: checkpoints stored (%d of at most %d)", what,
          g_checkpoints, 5 - want_resumed);
    sd_job *j = find_job(s->self, id);
    CHECK(j && j->ckpt_epoch == 0 && !j->ckpt, "%s: no checkpoint left once it finished", what);
    head_find f = {.version = v.head_version};
    int active;
    s->head_list(s->self, find_head_cb, &f, &active, msg, sizeof msg);
    vit_head *ref = reference(base);
    int C = ref ? vit_head_num_classes(ref) : 0;
    CHECK(f.head && ref && vit_head_num_classes(f.head) == C &&
              !memcmp(vit_head_weight(f.head), vit_head_weight(ref), sizeof(float) * (size_t)C * DIM) &&
              !memcmp(vit_head_bias(f.head), vit_head_bias(ref), sizeof(float) * (size_t)C),
          "%s: the published head is bit-identical to an uninterrupted run's", what);
    vit_head_release(f.head);
    vit_head_release(ref);
}

static int create_job(adm_store *s, int epochs, const char *what) {
    char msg[256];
    vit_train_opts o;
    vit_train_opts_default(&o);
    o.epochs = epochs;
    o.batch_size = 7;
    o.lr = 0.01f;
    int id = 0;
    if (s->job_create(s->self, &o, VIT_LABELS_REPLACE, &id, msg, sizeof msg) != ADM_OK) CHECK(0, "%s: job_create: %s", what, msg);
    return id;
}

/* wait (5 s at most) for the job to report epoch >= epoch */
static int wait_epoch(adm_store *s, int id, int epoch) {
    char msg[256];
    adm_job_view v = {0};
    for (int i = 0; i < 500; i++) {
        if (s->job_get(s->self, id, view_state, &v, msg, sizeof msg) == ADM_OK && v.epoch >= epoch) return 1;
        sleep_ms(10);
    }
    return 0;
}

static int wait_idle(trainer *t, double max_s) {
    double until = vit_now() + max_s;
    while (trainer_busy(t) && vit_now() < until) sleep_ms(5);
    return !trainer_busy(t);
}

static void test_drain(adm_store *base_store) {
    char err[512], msg[256];
    adm_store s = *base_store;
    s.job_progress = slow_progress;
    s.job_cancelled = slow_cancelled;
    s.job_release = recorded_release;
    s.job_claim = g_real.job_claim;   /* no checkpoint handed in */

    /* at the next epoch end, with that epoch's checkpoint (epochs of ~30 ms: the throttle would
     * have skipped it) */
    trainer *t = NULL;
    if (trainer_start(&s, NULL, &t, err, sizeof err) != 0) { CHECK(0, "trainer_start: %s", err); return; }
    g_progress_ms = 30;
    g_released = 0;
    int id = create_job(&s, 1000, "drain");
    trainer_kick(t);
    int running = wait_epoch(&s, id, 3);
    trainer_drain(t, 10);
    int idle = wait_idle(t, 5);
    adm_job_view v = {0};
    s.job_get(s.self, id, view_state, &v, msg, sizeof msg);
    CHECK(running && idle && g_released == 1 && g_released_id == id && g_released_ckpt == v.epoch && v.epoch >= 3 &&
              v.epoch < 1000,
          "drain: job released at an epoch end (%d) with that epoch's checkpoint (%d)", v.epoch, g_released_ckpt);
    int id2 = create_job(&s, 2, "drain");
    trainer_kick(t);
    sleep_ms(100);
    s.job_get(s.self, id2, view_state, &v, msg, sizeof msg);
    CHECK(v.state == ADM_JOB_QUEUED && !trainer_busy(t), "drain: no job is claimed after it");
    s.job_cancel(s.self, id2, view_state, &v, msg, sizeof msg);
    trainer_stop(t);
    CHECK(g_released == 1, "drain: trainer_stop after it releases nothing more");
    g_progress_ms = 0;

    /* past the deadline (a drain timeout of 0): before the next batch, not at the epoch end */
    if (trainer_start(&s, NULL, &t, err, sizeof err) != 0) { CHECK(0, "trainer_start: %s", err); return; }
    g_batch_ms = 40;   /* 4 batches an epoch: about 160 ms */
    g_released = 0;
    id = create_job(&s, 1000, "deadline");
    trainer_kick(t);
    running = wait_epoch(&s, id, 1);
    sleep_ms(20);      /* inside epoch 2 */
    s.job_get(s.self, id, view_state, &v, msg, sizeof msg);
    int e0 = v.epoch;
    double t0 = vit_now();
    trainer_drain(t, 0);
    idle = wait_idle(t, 5);
    s.job_get(s.self, id, view_state, &v, msg, sizeof msg);
    CHECK(running && idle && g_released == 1 && g_released_id == id && g_released_at - t0 < 0.12 && v.epoch == e0 &&
              g_released_ckpt >= 1 && g_released_ckpt <= e0,
          "drain past its deadline: released before the next batch (%.0f ms) with the last checkpoint (epoch %d)",
          (g_released_at - t0) * 1e3, g_released_ckpt);
    trainer_stop(t);
    g_batch_ms = 0;

    /* no job_release (the dir store): the job runs on through the drain, trainer_stop cancels it */
    s.job_release = NULL;
    if (trainer_start(&s, NULL, &t, err, sizeof err) != 0) { CHECK(0, "trainer_start: %s", err); return; }
    g_progress_ms = 10;
    id = create_job(&s, 1000, "dir store");
    trainer_kick(t);
    running = wait_epoch(&s, id, 1);
    s.job_get(s.self, id, view_state, &v, msg, sizeof msg);
    e0 = v.epoch;
    trainer_drain(t, 0);
    sleep_ms(50);
    s.job_get(s.self, id, view_state, &v, msg, sizeof msg);
    /* main's drain does not wait for it (trainer_busy 0) */
    int ran_on = v.state == ADM_JOB_RUNNING && v.epoch > e0 && !trainer_busy(t);
    trainer_stop(t);
    s.job_get(s.self, id, view_state, &v, msg, sizeof msg);
    sd_job *j = find_job(s.self, id);
    CHECK(running && ran_on && v.state == ADM_JOB_CANCELLED && !strcmp(v.error, "vitd is shutting down") && j &&
              !j->ckpt,
          "dir store: the job runs on through the drain, then ends cancelled (\"%s\"), no checkpoint left", v.error);
    g_progress_ms = 0;
    /* a cancel asked for says nothing */
    if (trainer_start(&s, NULL, &t, err, sizeof err) != 0) { CHECK(0, "trainer_start: %s", err); return; }
    g_progress_ms = 10;
    id = create_job(&s, 1000, "cancel");
    trainer_kick(t);
    running = wait_epoch(&s, id, 1);
    s.job_cancel(s.self, id, view_state, &v, msg, sizeof msg);
    for (int i = 0; i < 200 && v.state <= ADM_JOB_RUNNING; i++) {
        sleep_ms(10);
        s.job_get(s.self, id, view_state, &v, msg, sizeof msg);
    }
    CHECK(running && v.state == ADM_JOB_CANCELLED && !v.error[0], "a cancelled job has no error text");
    trainer_stop(t);
    g_progress_ms = 0;
}

int main(void) {
    srv_log_set_level(SRV_LOG_ERROR);
    metrics_init();
    float w[2 * DIM] = {0}, b[2] = {0};
    const char *labels[2] = {"x", "y"};
    vit_head *base = NULL;
    vit_head_new(2, DIM, w, b, labels, &base);
    store_dir_opts so = {.dim = DIM, .base_head = base, .base_created = 1.0};
    char err[512] = "", msg[256];
    if (store_dir_open(&so, &g_real, err, sizeof err) != 0) {
        CHECK(0, "open a memory store: %s", err);
        return TEST_SUMMARY();
    }
    adm_store s = g_real;
    s.job_claim = wrapped_claim;
    s.job_checkpoint = counted_checkpoint;
    /* three labels of 12 examples: a class mean plus a little spread */
    const char *names[3] = {"ant", "bee", "cow"};
    for (int l = 0; l < 3; l++) {
        float x[12 * DIM];
        for (int i = 0; i < 12 * DIM; i++) x[i] = (float)(i % DIM == l) * 2.f + 0.1f * (float)((i * 37 + l * 11) % 17 - 8);
        int added, full;
        s.examples_add(s.self, names[l], "fp", x, 12, &added, &full, msg, sizeof msg);
    }
    trainer *t = NULL;
    if (trainer_start(&s, NULL, &t, err, sizeof err) != 0) {
        CHECK(0, "trainer_start: %s", err);
        return TEST_SUMMARY();
    }
    check_job(&s, t, base, 0, 2, "a claim with the checkpoint of epoch 2");
    check_job(&s, t, base, 1, 0, "a claim with a corrupt checkpoint");
    check_job(&s, t, base, 2, 0, "a claim with another run's checkpoint");
    trainer_stop(t);
    test_drain(&s);
    adm_claim_free(&g_seen);
    adm_store_close(&g_real);
    vit_head_release(base);
    return TEST_SUMMARY();
}
