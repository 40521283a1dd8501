/* store_pg_contract.c: the admin store's contract (server/admin_store.h) on the PostgreSQL store
 * (server/store_pg.c), through the function pointers only, with two or three stores open on one
 * database as replicas would be: examples seen by every replica, fingerprints, jobs (snapshot,
 * one claimer each, progress, a cancel that reaches the claimer by NOTIFY, a lapsed lease taken
 * over), versions minted by the database, activation reaching the other replica's hook, a
 * refused head, another backbone kept apart, persistence across a reopen; training checkpoints
 * (stored by the claimer, bounded and checked, handed to the replica that takes the job over
 * after its lease lapsed, an oversized row dropped at claim, deleted when the job finishes); a
 * draining replica's release (only by its owner, claimable at once with its checkpoint, no attempt
 * counted; not a finished job, nor one asked to cancel).
 * Needs a database: tests/integration/test_store_pg.py starts one and runs this with
 * VITD_TEST_PG_URL and VITD_TEST_PG_PASSWORD_FILE set (without them it skips). */
#include "harness.h"

#include <time.h>
#include <unistd.h>

#include "../../server/log.c"
#include "../../server/logfmt.c"
#include "../../server/metrics.c"
#include "../../server/store_pg.c"
#include "store_ckpt.h"

#define DIM 4

typedef struct hook_log {
    atomic_int calls, last_version, refuse;
} hook_log;

static int on_active(void *ctx, int version, vit_head *h) {
    hook_log *l = ctx;
    atomic_fetch_add(&l->calls, 1);
    if (atomic_load(&l->refuse) || !h) return -1;
    atomic_store(&l->last_version, version);
    return 0;
}

static vit_head *make_head(int classes, float fill) {
    float w[8 * DIM], b[8];
    const char *labels[8] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    for (int i = 0; i < classes * DIM; i++) w[i] = fill + 0.01f * (float)i;
    for (int i = 0; i < classes; i++) b[i] = fill;
    vit_head *h = NULL;
    return vit_head_new(classes, DIM, w, b, labels, &h) == VIT_OK ? h : NULL;
}

static const char *g_url, *g_pwfile;
static vit_head *g_base;

static int open_store(adm_store *s, const char *instance, const char *fp, hook_log *hl) {
    char err[512];
    store_pg_opts o = {.url = g_url, .password_file = g_pwfile, .instance = instance, .fingerprint = fp, .dim = DIM,
                       .base_head = g_base, .recheck_s = 0.2, .lease_s = 1.0,
                       .hooks = {.on_active = on_active, .ctx = hl}};
    int rc = store_pg_open(&o, s, err, sizeof err);
    if (rc != 0) printf("store_pg_open(%s): %s\n", instance, err);
    return rc;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static void count_labels(void *ctx, const char *label, int n) {
    (void)label;
    *(int *)ctx += n;
}
static void view_state(void *ctx, const adm_job_view *j) {
    adm_job_view *v = ctx;
    *v = *j;
    v->labels = NULL;   /* borrowed: not kept past the call */
    v->error = "";
    v->owner = "";
}
static void head_count(void *ctx, const adm_head_view *h) {
    (void)h;
    (*(int *)ctx)++;
}

static void test_examples(adm_store *a, adm_store *b) {
    char msg[256];
    float x[3 * DIM] = {0};
    int added = 0, full = 0, total = 0, deleted = 0, sum = 0;
    CHECK(a->examples_add(a->self, "cat", "fp1", x, 3, &added, &full, msg, sizeof msg) == ADM_OK && added == 3 && !full,
          "examples_add stores every vector that fits");
    CHECK(b->examples_add(b->self, "dog", "fp1", x, 2, &added, &full, msg, sizeof msg) == ADM_OK && added == 2,
          "a second label, from the other replica");
    CHECK(a->examples_add(a->self, "dog", "other-backbone", x, 1, &added, &full, msg, sizeof msg) == ADM_CONFLICT,
          "another backbone's features are refused (ADM_CONFLICT)");
    CHECK(b->examples_list(b->self, count_labels, &sum, &total, msg, sizeof msg) == ADM_OK && sum == 5 && total == 5,
          "each replica lists every replica's examples");
    CHECK(a->examples_delete(a->self, "cow", &deleted, msg, sizeof msg) == ADM_NOT_FOUND && strstr(msg, "cow"),
          "deleting an unknown label is ADM_NOT_FOUND with a message");
    CHECK(a->examples_delete(a->self, "dog", &deleted, msg, sizeof msg) == ADM_OK && deleted == 2, "deleting one label");
    CHECK(b->examples_count(b->self, &total, msg, sizeof msg) == ADM_OK && total == 3, "count after the delete");
}

/* the cancel flag reaches the claimer through NOTIFY vitd_cancel (or its heartbeat) */
static int wait_cancelled(adm_store *s, int id) {
    for (int i = 0; i < 100 && !s->job_cancelled(s->self, id); i++) sleep_s(0.05);
    return s->job_cancelled(s->self, id);
}

static void test_jobs(adm_store *a, adm_store *b) {
    char msg[256];
    vit_train_opts o;
    vit_train_opts_default(&o);
    o.epochs = 3;
    int id1 = 0, id2 = 0;
    CHECK(a->job_create(a->self, &o, VIT_LABELS_REPLACE, &id1, msg, sizeof msg) == ADM_BAD_REQUEST,
          "replace with one label is ADM_BAD_REQUEST");
    float x[DIM] = {1, 2, 3, 4};
    int added, full, deleted;
    a->examples_add(a->self, "ant", "fp1", x, 1, &added, &full, msg, sizeof msg);
    CHECK(a->job_create(a->self, &o, VIT_LABELS_REPLACE, &id1, msg, sizeof msg) == ADM_OK && id1 > 0, "job_create");
    CHECK(b->job_create(b->self, &o, VIT_LABELS_EXTEND, &id2, msg, sizeof msg) == ADM_OK && id2 > id1,
          "ids come from the database: the other replica's is the next one");
    a->examples_delete(a->self, NULL, &deleted, msg, sizeof msg);
    adm_claim c1, c2, none;
    CHECK(b->job_claim(b->self, "t", 60, &c1, msg, sizeof msg) == ADM_OK && c1.id == id1, "the oldest queued job is claimed first");
    CHECK(c1.n == 4 && c1.nlabels == 2 && c1.dim == DIM && !strcmp(c1.labels[0], "ant") && !strcmp(c1.labels[1], "cat") &&
              c1.y[0] == 0 && c1.y[3] == 1 && c1.x[2] == 3.f && c1.x[3 * DIM + 2] == 0.f,
          "the claim holds the snapshot taken at creation, labels in name order");
    CHECK(a->job_claim(a->self, "t", 60, &c2, msg, sizeof msg) == ADM_OK && c2.id == id2, "the other replica gets the next job");
    CHECK(a->job_claim(a->self, "t", 60, &none, msg, sizeof msg) == ADM_NOT_FOUND, "nothing left to claim");
    adm_job_view v;
    a->job_get(a->self, id1, view_state, &v, msg, sizeof msg);
    CHECK(v.state == ADM_JOB_RUNNING && v.started > 0, "a claimed job is running, seen from any replica");
    CHECK(b->job_progress(b->self, id1, 2, 0.5f, 0.75f, 60) == ADM_OK, "job_progress by the claimer");
    CHECK(a->job_progress(a->self, id1, 3, 0.1f, 0.9f, 60) == ADM_NOT_FOUND, "not by another replica");
    a->job_get(a->self, id1, view_state, &v, msg, sizeof msg);
    CHECK(v.epoch == 2 && v.has_loss && v.loss == 0.5f && v.val_accuracy == 0.75f, "progress is visible");
    CHECK(!b->job_cancelled(b->self, id1), "not cancelled yet");
    CHECK(a->job_cancel(a->self, id1, view_state, &v, msg, sizeof msg) == ADM_OK && v.state == ADM_JOB_RUNNING,
          "cancelling a running job on one replica");
    CHECK(wait_cancelled(b, id1), "reaches the claimer on the other replica");
    adm_job_result r = {.state = ADM_JOB_FAILED, .error = "boom"};
    CHECK(a->job_finish(a->self, id1, &r, msg, sizeof msg) != ADM_OK, "only the claimer may finish its job");
    CHECK(b->job_finish(b->self, id1, &r, msg, sizeof msg) == ADM_OK, "job_finish");
    a->job_get(a->self, id1, view_state, &v, msg, sizeof msg);
    CHECK(v.state == ADM_JOB_FAILED && v.finished > 0, "the failure is recorded");
    CHECK(a->job_cancel(a->self, id1, view_state, &v, msg, sizeof msg) == ADM_CONFLICT, "a finished job cannot be cancelled");
    CHECK(a->job_get(a->self, 999, view_state, &v, msg, sizeof msg) == ADM_NOT_FOUND, "unknown job");
    adm_claim_free(&c1);
    adm_claim_free(&c2);
}

/* a replica that dies holding a job (its store closed: no heartbeat): another takes it over */
static void test_lease(adm_store *b) {
    char msg[256];
    hook_log hl = {0};
    adm_store d;
    if (open_store(&d, "doomed", "fp1", &hl) != 0) { CHECK(0, "open a third replica"); return; }
    vit_train_opts o;
    vit_train_opts_default(&o);
    float x[2 * DIM] = {1, 2, 3, 4, 5, 6, 7, 8};
    int added, full, id = 0, deleted;
    d.examples_add(d.self, "p", "fp1", x, 1, &added, &full, msg, sizeof msg);
    d.examples_add(d.self, "q", "fp1", x + DIM, 1, &added, &full, msg, sizeof msg);
    d.job_create(d.self, &o, VIT_LABELS_REPLACE, &id, msg, sizeof msg);
    d.examples_delete(d.self, NULL, &deleted, msg, sizeof msg);
    adm_claim c, c2;
    CHECK(d.job_claim(d.self, "t", 1, &c, msg, sizeof msg) == ADM_OK && c.id == id, "a replica claims a job");
    sleep_s(1.6);
    CHECK(b->job_claim(b->self, "t", 1, &c2, msg, sizeof msg) == ADM_NOT_FOUND, "its heartbeat keeps the lease while it lives");
    adm_store_close(&d);
    sleep_s(1.3);
    CHECK(b->job_claim(b->self, "t", 1, &c2, msg, sizeof msg) == ADM_OK && c2.id == id && c2.n == 2,
          "once the lease lapsed another replica claims it, with its snapshot");
    adm_job_result r = {.state = ADM_JOB_CANCELLED};
    b->job_finish(b->self, id, &r, msg, sizeof msg);
    adm_claim_free(&c);
    adm_claim_free(&c2);
}

/* rows of vitd_job_checkpoints for job id, through s's own connection (-1 on error) */
static int ckpt_rows(adm_store *s, int id) {
    pg_store *ps = s->self;
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM vitd_job_checkpoints WHERE job = %d", id);
    pthread_mutex_lock(&ps->mu);
    PGresult *r = ps->main.c ? PQexec(ps->main.c, sql) : NULL;
    int n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoi(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    pthread_mutex_unlock(&ps->mu);
    return n;
}

/* a replica dies after checkpointing two jobs; the one that takes them over gets job 1's
 * checkpoint as written, job 2's (made larger than its head can need) is dropped */
static void test_checkpoints(adm_store *a, adm_store *b) {
    char msg[256];
    hook_log hl = {0};
    adm_store d;
    if (open_store(&d, "doomed-ckpt", "fp1", &hl) != 0) { CHECK(0, "open a replica to checkpoint"); return; }
    vit_train_opts o;
    vit_train_opts_default(&o);
    o.epochs = 3;
    o.batch_size = 2;
    float x[4 * DIM];
    for (int i = 0; i < 4 * DIM; i++) x[i] = (float)((i * 5) % 7) - 3.f;
    int added, full, id1 = 0, id2 = 0, deleted;
    d.examples_add(d.self, "p", "fp1", x, 2, &added, &full, msg, sizeof msg);
    d.examples_add(d.self, "q", "fp1", x + 2 * DIM, 2, &added, &full, msg, sizeof msg);
    d.job_create(d.self, &o, VIT_LABELS_REPLACE, &id1, msg, sizeof msg);
    d.job_create(d.self, &o, VIT_LABELS_REPLACE, &id2, msg, sizeof msg);
    d.examples_delete(d.self, NULL, &deleted, msg, sizeof msg);
    adm_claim c1, c2, t1, t2;
    memset(&t1, 0, sizeof t1);
    memset(&t2, 0, sizeof t2);
    if (d.job_claim(d.self, "t", 1, &c1, msg, sizeof msg) != ADM_OK || d.job_claim(d.self, "t", 1, &c2, msg, sizeof msg) != ADM_OK) {
        CHECK(0, "claim two jobs (%s)", msg);
        adm_store_close(&d);
        return;
    }
    CHECK(c1.id == id1 && c2.id == id2 && !c1.checkpoint, "a first claim carries no checkpoint");
    size_t l1 = 0, l2 = 0;
    void *k1 = ckpt_of(&c1, 1, &l1), *k2 = ckpt_of(&c1, 2, &l2);
    CHECK(k1 && k2 && d.job_checkpoint(d.self, id1, 1, k1, l1, msg, sizeof msg) == ADM_OK &&
              d.job_checkpoint(d.self, id1, 2, k2, l2, msg, sizeof msg) == ADM_OK && ckpt_rows(&d, id1) == 1,
          "job_checkpoint after epochs 1 and 2: one row, replaced (%s)", msg);
    CHECK(b->job_checkpoint(b->self, id1, 2, k2, l2, msg, sizeof msg) == ADM_CONFLICT,
          "only the claimer stores a job's checkpoint");
    CHECK(d.job_checkpoint(d.self, id1, 3, k2, l2, msg, sizeof msg) == ADM_BAD_REQUEST && strstr(msg, "not of epoch 3"),
          "a checkpoint of another epoch is refused: %s", msg);
    uint8_t *big = calloc(1, l2 + 4096);
    CHECK(d.job_checkpoint(d.self, id1, 2, big, l2 + 4096, msg, sizeof msg) == ADM_BAD_REQUEST && strstr(msg, "at most"),
          "one larger than the job's head can need is refused: %s", msg);
    CHECK(d.job_checkpoint(d.self, id2, 1, k1, l1, msg, sizeof msg) == ADM_OK, "the second job's checkpoint");
    /* what a bad disk or a bug could leave: a row larger than the job can need */
    pg_store *ds = d.self;
    char sql[200];
    snprintf(sql, sizeof sql, "UPDATE vitd_job_checkpoints SET data = data || decode(repeat('00', 8192), 'hex') WHERE job = %d", id2);
    pthread_mutex_lock(&ds->mu);
    PQclear(PQexec(ds->main.c, sql));
    pthread_mutex_unlock(&ds->mu);
    adm_store_close(&d);   /* the replica dies: no heartbeat, no finish */
    sleep_s(1.3);
    CHECK(b->job_claim(b->self, "t", 1, &t1, msg, sizeof msg) == ADM_OK && t1.id == id1 && t1.checkpoint &&
              t1.checkpoint_len == l2 && !memcmp(t1.checkpoint, k2, l2),
          "the replica that takes the job over gets its last checkpoint, as written");
    CHECK(b->job_claim(b->self, "t", 1, &t2, msg, sizeof msg) == ADM_OK && t2.id == id2 && !t2.checkpoint &&
              ckpt_rows(b, id2) == 0,
          "an oversized checkpoint row is dropped at claim (the job starts from epoch 0)");
    adm_job_view v;
    CHECK(b->job_resume(b->self, id1, 2, msg, sizeof msg) == ADM_OK &&
              a->job_get(a->self, id1, view_state, &v, msg, sizeof msg) == ADM_OK && v.resumed_from_epoch == 2 && v.epoch == 2,
          "job_resume: resumed_from_epoch seen from every replica");
    adm_job_result r = {.state = ADM_JOB_SUCCEEDED, .head_version = 0};
    CHECK(b->job_checkpoint(b->self, id1, 2, k2, l2, msg, sizeof msg) == ADM_OK &&
              b->job_finish(b->self, id1, &r, msg, sizeof msg) == ADM_OK && ckpt_rows(b, id1) == 0,
          "the checkpoint is deleted when the job finishes");
    CHECK(b->job_checkpoint(b->self, id1, 2, k2, l2, msg, sizeof msg) == ADM_CONFLICT, "a finished job takes no checkpoint");
    r.state = ADM_JOB_CANCELLED;
    b->job_finish(b->self, id2, &r, msg, sizeof msg);
    a->job_get(a->self, id2, view_state, &v, msg, sizeof msg);
    CHECK(v.resumed_from_epoch == 0, "a job that never resumed reports 0");
    free(big);
    free(k1);
    free(k2);
    adm_claim_free(&c1);
    adm_claim_free(&c2);
    adm_claim_free(&t1);
    adm_claim_free(&t2);
}

/* an int column of job id, through s's own connection (-1 on error) */
static int job_col(adm_store *s, int id, const char *col) {
    pg_store *ps = s->self;
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT %s FROM vitd_jobs WHERE id = %d", col, id);
    pthread_mutex_lock(&ps->mu);
    PGresult *r = ps->main.c ? PQexec(ps->main.c, sql) : NULL;
    int n = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    pthread_mutex_unlock(&ps->mu);
    return n;
}

static void view_owner(void *ctx, const adm_job_view *j) {
    adm_job_view *v = ctx;
    view_state(ctx, j);
    v->owner = j->owner && *j->owner ? "someone" : "";
}

/* a replica drains: it releases its job after checkpointing epoch 1; another claims it at once
 * (no lease wait) with that checkpoint */
static void test_release(adm_store *a, adm_store *b) {
    char msg[256];
    hook_log hl = {0};
    adm_store d;
    if (open_store(&d, "draining", "fp1", &hl) != 0) { CHECK(0, "open a replica to drain"); return; }
    vit_train_opts o;
    vit_train_opts_default(&o);
    o.epochs = 3;
    o.batch_size = 2;
    float x[4 * DIM];
    for (int i = 0; i < 4 * DIM; i++) x[i] = (float)((i * 3) % 5) - 2.f;
    int added, full, id = 0, id2 = 0, deleted;
    d.examples_add(d.self, "p", "fp1", x, 2, &added, &full, msg, sizeof msg);
    d.examples_add(d.self, "q", "fp1", x + 2 * DIM, 2, &added, &full, msg, sizeof msg);
    d.job_create(d.self, &o, VIT_LABELS_REPLACE, &id, msg, sizeof msg);
    d.job_create(d.self, &o, VIT_LABELS_REPLACE, &id2, msg, sizeof msg);
    d.examples_delete(d.self, NULL, &deleted, msg, sizeof msg);
    adm_claim c, c2, t;
    memset(&t, 0, sizeof t);
    if (d.job_claim(d.self, "t", 1, &c, msg, sizeof msg) != ADM_OK || c.id != id) {
        CHECK(0, "claim the job to release (%s)", msg);
        adm_store_close(&d);
        return;
    }
    size_t l1 = 0;
    void *k1 = ckpt_of(&c, 1, &l1);
    CHECK(k1 && d.job_checkpoint(d.self, id, 1, k1, l1, msg, sizeof msg) == ADM_OK &&
              d.job_progress(d.self, id, 1, 0.5f, -1.f, 1) == ADM_OK,
          "epoch 1 done and checkpointed (%s)", msg);
    CHECK(b->job_release(b->self, id, msg, sizeof msg) == ADM_CONFLICT, "only the claimer releases its job: %s", msg);
    adm_job_view v;
    double t0 = vit_now();
    CHECK(d.job_release(d.self, id, msg, sizeof msg) == ADM_OK, "job_release by the claimer (%s)", msg);
    a->job_get(a->self, id, view_owner, &v, msg, sizeof msg);
    CHECK(v.state == ADM_JOB_QUEUED && !*v.owner && v.epoch == 1 && ckpt_rows(a, id) == 1,
          "released: queued, no owner, its epoch and checkpoint kept (state %s)", adm_job_state_str(v.state));
    CHECK(d.job_release(d.self, id, msg, sizeof msg) == ADM_CONFLICT, "a queued job cannot be released");
    CHECK(b->job_claim(b->self, "t", 1, &t, msg, sizeof msg) == ADM_OK && t.id == id && t.checkpoint &&
              t.checkpoint_len == l1 && !memcmp(t.checkpoint, k1, l1) && vit_now() - t0 < 0.5,
          "another replica claims it at once (%.0f ms, no lease wait), with its checkpoint", (vit_now() - t0) * 1e3);
    CHECK(job_col(b, id, "attempts") == 1, "the hand-over counts no attempt (attempts %d)", job_col(b, id, "attempts"));
    CHECK(d.job_checkpoint(d.self, id, 1, k1, l1, msg, sizeof msg) == ADM_CONFLICT &&
              d.job_progress(d.self, id, 2, 0.4f, -1.f, 1) == ADM_NOT_FOUND,
          "the releasing replica writes nothing to it any more");
    CHECK(b->job_progress(b->self, id, 2, 0.4f, -1.f, 1) == ADM_OK, "the new owner runs it");
    adm_job_result r = {.state = ADM_JOB_SUCCEEDED};
    CHECK(b->job_finish(b->self, id, &r, msg, sizeof msg) == ADM_OK && b->job_release(b->self, id, msg, sizeof msg) == ADM_CONFLICT,
          "a finished job cannot be released");
    /* a cancel asked for wins: the release is refused, the claimer finishes it cancelled */
    if (d.job_claim(d.self, "t", 1, &c2, msg, sizeof msg) == ADM_OK && c2.id == id2) {
        CHECK(a->job_cancel(a->self, id2, view_state, &v, msg, sizeof msg) == ADM_OK &&
                  d.job_release(d.self, id2, msg, sizeof msg) == ADM_CONFLICT,
              "a job asked to cancel is not released: %s", msg);
        r.state = ADM_JOB_CANCELLED;
        CHECK(d.job_finish(d.self, id2, &r, msg, sizeof msg) == ADM_OK, "its claimer still finishes it");
        adm_claim_free(&c2);
    } else {
        CHECK(0, "claim a second job (%s)", msg);
    }
    free(k1);
    adm_claim_free(&c);
    adm_claim_free(&t);
    adm_store_close(&d);
}

static int wait_version(hook_log *hl, int v) {
    for (int i = 0; i < 100 && atomic_load(&hl->last_version) != v; i++) sleep_s(0.05);
    return atomic_load(&hl->last_version) == v;
}

static void test_heads(adm_store *a, adm_store *b, hook_log *ha, hook_log *hb) {
    char msg[256];
    vit_head *h2 = make_head(3, 0.5f), *h3 = make_head(2, 0.f);
    int v2 = 0, v3 = 0, active = 0, n = 0;
    CHECK(h2 && b->head_publish(b->self, h2, 1, "{\"loss\": 1}", &v2, msg, sizeof msg) == ADM_OK && v2 == 2,
          "head_publish mints version 2");
    CHECK(a->head_publish(a->self, h3, 0, NULL, &v3, msg, sizeof msg) == ADM_OK && v3 == 3, "the other replica mints 3");
    a->head_list(a->self, head_count, &n, &active, msg, sizeof msg);
    CHECK(n == 3 && active == 1, "three versions, 1 active");
    vit_head *got = NULL;
    CHECK(b->active_set(b->self, 2, &got, msg, sizeof msg) == ADM_OK && got && vit_head_num_classes(got) == 3 &&
              atomic_load(&hb->last_version) == 2,
          "active_set calls on_active and returns the head");
    vit_head_release(got);
    CHECK(wait_version(ha, 2), "the other replica's on_active follows (NOTIFY)");
    a->active_get(a->self, &active, &got, msg, sizeof msg);
    CHECK(active == 2 && got && !memcmp(vit_head_weight(got), vit_head_weight(h2), sizeof(float) * 3 * DIM),
          "it serves the same weights");
    vit_head_release(got);
    atomic_store(&hb->refuse, 1);
    CHECK(b->active_set(b->self, 3, NULL, msg, sizeof msg) == ADM_CONFLICT, "a refused head is ADM_CONFLICT");
    atomic_store(&hb->refuse, 0);
    sleep_s(0.5);
    a->active_get(a->self, &active, NULL, msg, sizeof msg);
    CHECK(active == 2, "the refusal leaves the stored choice (the other replica stays on 2)");
    CHECK(a->head_delete(a->self, 2, msg, sizeof msg) == ADM_CONFLICT, "the active version cannot be deleted");
    CHECK(a->head_delete(a->self, 1, msg, sizeof msg) == ADM_CONFLICT, "version 1 cannot be deleted");
    CHECK(a->head_delete(a->self, 3, msg, sizeof msg) == ADM_OK, "another version can");
    CHECK(b->active_set(b->self, 3, NULL, msg, sizeof msg) == ADM_NOT_FOUND, "a deleted version is gone for every replica");
    vit_head_release(h2);
    vit_head_release(h3);
}

static void test_other_backbone(adm_store *a) {
    char msg[256];
    hook_log hl = {0};
    float x1[DIM] = {0};
    int added1, full1;
    a->examples_add(a->self, "y", "fp1", x1, 1, &added1, &full1, msg, sizeof msg);
    adm_store c;
    if (open_store(&c, "other", "fp2", &hl) != 0) { CHECK(0, "open a replica of another backbone"); return; }
    int active = 0;
    c.active_get(c.self, &active, NULL, msg, sizeof msg);
    CHECK(active == 1, "another backbone's replica keeps version 1 while fp1's version 2 is active");
    CHECK(c.active_set(c.self, 2, NULL, msg, sizeof msg) == ADM_CONFLICT && strstr(msg, "backbone"),
          "activating fp1's head there is ADM_CONFLICT");
    float x[DIM] = {0};
    int added, full;
    CHECK(c.examples_add(c.self, "z", "fp2", x, 1, &added, &full, msg, sizeof msg) == ADM_CONFLICT,
          "its examples do not mix with fp1's");
    adm_store_close(&c);
}

static void test_reopen(void) {
    char msg[256];
    hook_log hl = {0};
    adm_store s;
    if (open_store(&s, "again", "fp1", &hl) != 0) { CHECK(0, "reopen"); return; }
    int active = 0;
    s.active_get(s.self, &active, NULL, msg, sizeof msg);
    CHECK(active == 2 && atomic_load(&hl.last_version) == 2 && atomic_load(&hl.calls) == 1,
          "a new replica serves the active version from open (on_active once)");
    adm_store_close(&s);
}

int main(void) {
    g_url = getenv("VITD_TEST_PG_URL");
    g_pwfile = getenv("VITD_TEST_PG_PASSWORD_FILE");
    if (!g_url || !*g_url) {
        SKIP("store_pg contract: no VITD_TEST_PG_URL (tests/integration/test_store_pg.py starts a database)");
        return TEST_SUMMARY();
    }
    srv_log_set_level(SRV_LOG_ERROR);
    metrics_init();
    g_base = make_head(2, 0.f);
    hook_log ha = {0}, hb = {0};
    adm_store a, b;
    if (open_store(&a, "a", "fp1", &ha) != 0 || open_store(&b, "b", "fp1", &hb) != 0) {
        CHECK(0, "open two stores on one database");
        return TEST_SUMMARY();
    }
    test_examples(&a, &b);
    test_jobs(&a, &b);
    test_lease(&b);
    test_checkpoints(&a, &b);
    test_release(&a, &b);
    test_heads(&a, &b, &ha, &hb);
    test_other_backbone(&a);
    adm_store_close(&a);
    adm_store_close(&b);
    test_reopen();
    vit_head_release(g_base);
    return TEST_SUMMARY();
}
