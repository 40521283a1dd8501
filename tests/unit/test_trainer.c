/* test_trainer.c: the training thread (server/trainer.c) resuming jobs, over the state-directory
 * store in memory (server/store_dir.c) whose job_claim is wrapped to hand the trainer what a
 * shared store hands it after another replica died holding the job: a claim with a checkpoint.
 *   - a valid checkpoint (after epoch 2 of the same job): the job resumes from it
 *     (resumed_from_epoch 2) and publishes a head bit-identical to an uninterrupted run;
 *   - a corrupt one, and one of another run (other seed): refused, the job starts again from
 *     epoch 0 (resumed_from_epoch 0) and still publishes the uninterrupted run's head;
 *   - every job stored a checkpoint per epoch while running, and none is left once it finished. */
#include "harness.h"

#include <time.h>
#include <unistd.h>

#include "../../server/log.c"
#include "../../server/logfmt.c"
#include "../../server/metrics.c"
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
    adm_claim_free(&g_seen);
    adm_store_close(&g_real);
    vit_head_release(base);
    return TEST_SUMMARY();
}
