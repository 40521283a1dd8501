/* test_store_dir.c: the admin store's contract (server/admin_store.h) on its state-directory
 * implementation (server/store_dir.c), through the function pointers only: examples (limits,
 * per-label delete, fingerprints), jobs (snapshot at creation, oldest-first claim, progress,
 * cancel of queued/running/finished jobs, results), head versions minted by the store, the
 * active version with the on_active hook (a refusal leaves the stored choice), persistence
 * across a reopen, and a corrupt state directory (skipped, never fatal); training checkpoints
 * (written atomically to D/checkpoints, bounded and checked, deleted when the job finishes,
 * a previous process's removed at open; job_resume's resumed_from_epoch). */
#include "harness.h"

#include <sys/stat.h>
#include <unistd.h>

#include "../../server/log.c"
#include "../../server/logfmt.c"
#include "../../server/metrics.c"
#include "../../server/textcheck.c"
#include "../../server/store_dir.c"
#include "store_ckpt.h"

#define DIM 4

typedef struct hook_log {
    int calls, last_version, refuse;
} hook_log;

static int on_active(void *ctx, int version, vit_head *h) {
    hook_log *l = ctx;
    l->calls++;
    if (l->refuse || !h) return -1;
    l->last_version = version;
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

static void count_labels(void *ctx, const char *label, int n) {
    (void)label;
    *(int *)ctx += n;
}

static void view_state(void *ctx, const adm_job_view *j) { *(adm_job_view *)ctx = *j; }

static void head_count(void *ctx, const adm_head_view *h) {
    (void)h;
    (*(int *)ctx)++;
}

static void test_examples(adm_store *s) {
    char msg[256];
    float x[3 * DIM] = {0};
    int added = 0, full = 0, total = 0, deleted = 0, sum = 0;
    CHECK(s->examples_add(s->self, "cat", "fp1", x, 3, &added, &full, msg, sizeof msg) == ADM_OK && added == 3 && !full,
          "examples_add stores every vector that fits");
    CHECK(s->examples_add(s->self, "dog", "fp1", x, 2, &added, &full, msg, sizeof msg) == ADM_OK && added == 2,
          "a second label");
    CHECK(s->examples_add(s->self, "dog", "other-backbone", x, 1, &added, &full, msg, sizeof msg) == ADM_CONFLICT,
          "another backbone's features are refused (ADM_CONFLICT)");
    CHECK(s->examples_list(s->self, count_labels, &sum, &total, msg, sizeof msg) == ADM_OK && sum == 5 && total == 5,
          "examples_list visits every label with its count");
    CHECK(s->examples_delete(s->self, "cow", &deleted, msg, sizeof msg) == ADM_NOT_FOUND && strstr(msg, "cow"),
          "deleting an unknown label is ADM_NOT_FOUND with a message");
    CHECK(s->examples_delete(s->self, "dog", &deleted, msg, sizeof msg) == ADM_OK && deleted == 2,
          "deleting one label");
    CHECK(s->examples_count(s->self, &total, msg, sizeof msg) == ADM_OK && total == 3, "count after the delete");
}

static void test_jobs(adm_store *s) {
    char msg[256];
    vit_train_opts o;
    vit_train_opts_default(&o);
    o.epochs = 3;
    int id1 = 0, id2 = 0;
    CHECK(s->job_create(s->self, &o, VIT_LABELS_REPLACE, &id1, msg, sizeof msg) == ADM_BAD_REQUEST,
          "replace with one label is ADM_BAD_REQUEST");
    float x[DIM] = {1, 2, 3, 4};
    int added, full;
    s->examples_add(s->self, "ant", "fp1", x, 1, &added, &full, msg, sizeof msg);
    CHECK(s->job_create(s->self, &o, VIT_LABELS_REPLACE, &id1, msg, sizeof msg) == ADM_OK && id1 > 0, "job_create");
    CHECK(s->job_create(s->self, &o, VIT_LABELS_EXTEND, &id2, msg, sizeof msg) == ADM_OK && id2 > id1, "ids increase");
    int deleted;
    s->examples_delete(s->self, NULL, &deleted, msg, sizeof msg);
    adm_claim c;
    CHECK(s->job_claim(s->self, "t1", 60, &c, msg, sizeof msg) == ADM_OK && c.id == id1, "the oldest queued job is claimed first");
    CHECK(c.n == 4 && c.nlabels == 2 && c.dim == DIM && !strcmp(c.labels[0], "ant") && !strcmp(c.labels[1], "cat") &&
              c.y[0] == 0 && c.y[3] == 1 && c.x[2] == 3.f && c.x[3 * DIM + 2] == 0.f,
          "the claim holds the snapshot taken at creation, labels in name order");
    adm_job_view v;
    s->job_get(s->self, id1, view_state, &v, msg, sizeof msg);
    CHECK(v.state == ADM_JOB_RUNNING && v.started > 0, "a claimed job is running");
    CHECK(s->job_progress(s->self, id1, 2, 0.5f, 0.75f, 60) == ADM_OK, "job_progress");
    s->job_get(s->self, id1, view_state, &v, msg, sizeof msg);
    CHECK(v.epoch == 2 && v.has_loss && v.loss == 0.5f, "progress is visible");
    CHECK(!s->job_cancelled(s->self, id1), "not cancelled yet");
    CHECK(s->job_cancel(s->self, id1, view_state, &v, msg, sizeof msg) == ADM_OK && v.state == ADM_JOB_RUNNING &&
              s->job_cancelled(s->self, id1),
          "cancelling a running job asks its trainer to stop");
    CHECK(s->job_cancel(s->self, id2, view_state, &v, msg, sizeof msg) == ADM_OK && v.state == ADM_JOB_CANCELLED,
          "cancelling a queued job ends it now");
    adm_claim none;
    CHECK(s->job_claim(s->self, "t1", 60, &none, msg, sizeof msg) == ADM_NOT_FOUND, "nothing left to claim");
    adm_job_result r = {.state = ADM_JOB_FAILED, .error = "boom"};
    CHECK(s->job_finish(s->self, id1, &r, msg, sizeof msg) == ADM_OK, "job_finish");
    s->job_get(s->self, id1, view_state, &v, msg, sizeof msg);
    CHECK(v.state == ADM_JOB_FAILED && !strcmp(v.error, "boom") && v.finished > 0, "the failure is recorded");
    CHECK(s->job_cancel(s->self, id1, view_state, &v, msg, sizeof msg) == ADM_CONFLICT, "a finished job cannot be cancelled");
    CHECK(s->job_get(s->self, 999, view_state, &v, msg, sizeof msg) == ADM_NOT_FOUND, "unknown job");
    adm_claim_free(&c);
}

static void test_heads(adm_store *s, hook_log *hl) {
    char msg[256];
    vit_head *h2 = make_head(3, 0.5f), *wrong = make_head(2, 0.f);
    int v2 = 0, v3 = 0, active = 0, n = 0;
    CHECK(h2 && s->head_publish(s->self, h2, 1, "{\"loss\": 1}", &v2, msg, sizeof msg) == ADM_OK && v2 == 2,
          "head_publish mints version 2");
    CHECK(s->head_publish(s->self, wrong, 0, NULL, &v3, msg, sizeof msg) == ADM_OK && v3 == 3, "then version 3");
    s->head_list(s->self, head_count, &n, &active, msg, sizeof msg);
    CHECK(n == 3 && active == 1, "three versions, 1 active");
    vit_head *got = NULL;
    int calls = hl->calls;
    CHECK(s->active_set(s->self, 2, &got, msg, sizeof msg) == ADM_OK && got == h2 && hl->last_version == 2 &&
              hl->calls == calls + 1,
          "active_set calls on_active and returns the head");
    vit_head_release(got);
    hl->refuse = 1;
    CHECK(s->active_set(s->self, 3, NULL, msg, sizeof msg) == ADM_CONFLICT, "a refused head is ADM_CONFLICT");
    hl->refuse = 0;
    s->active_get(s->self, &active, NULL, msg, sizeof msg);
    CHECK(active == 2, "the refusal leaves the active version");
    CHECK(s->head_delete(s->self, 2, msg, sizeof msg) == ADM_CONFLICT, "the active version cannot be deleted");
    CHECK(s->head_delete(s->self, 1, msg, sizeof msg) == ADM_CONFLICT, "version 1 cannot be deleted");
    CHECK(s->head_delete(s->self, 3, msg, sizeof msg) == ADM_OK, "another version can");
    CHECK(s->active_set(s->self, 3, NULL, msg, sizeof msg) == ADM_NOT_FOUND, "a deleted version is gone");
    vit_head_release(h2);
    vit_head_release(wrong);
}

/* the bytes of file p equal data[0..len) (-1: no such file) */
static int file_is(const char *p, const void *data, size_t len) {
    uint8_t *buf = NULL;
    size_t n = 0;
    char err[256];
    if (vit_read_file(p, len + 1024, &buf, &n, err, sizeof err) != VIT_OK) return -1;
    int same = n == len && !memcmp(buf, data, len);
    free(buf);
    return same;
}

static void test_checkpoints(adm_store *s, const char *dir) {
    char msg[256], path[512];
    float x[6 * DIM];
    for (int i = 0; i < 6 * DIM; i++) x[i] = (float)((i * 7) % 11) - 5.f;
    int added, full, id = 0, deleted;
    s->examples_delete(s->self, NULL, &deleted, msg, sizeof msg);
    s->examples_add(s->self, "ant", "fp1", x, 3, &added, &full, msg, sizeof msg);
    s->examples_add(s->self, "bee", "fp1", x + 3 * DIM, 3, &added, &full, msg, sizeof msg);
    vit_train_opts o;
    vit_train_opts_default(&o);
    o.epochs = 3;
    o.batch_size = 4;
    s->job_create(s->self, &o, VIT_LABELS_REPLACE, &id, msg, sizeof msg);
    adm_claim c;
    if (s->job_claim(s->self, "t", 60, &c, msg, sizeof msg) != ADM_OK || c.id != id) {
        CHECK(0, "claim a job to checkpoint (%s)", msg);
        return;
    }
    CHECK(!c.checkpoint && !c.checkpoint_len, "a first claim carries no checkpoint");
    size_t l1 = 0, l2 = 0;
    void *b1 = ckpt_of(&c, 1, &l1), *b2 = ckpt_of(&c, 2, &l2);
    snprintf(path, sizeof path, "%s/checkpoints/job-%06d.ckpt", dir, id);
    CHECK(b1 && b2 && s->job_checkpoint(s->self, id, 1, b1, l1, msg, sizeof msg) == ADM_OK,
          "job_checkpoint after epoch 1 (%zu bytes)", l1);
    CHECK(file_is(path, b1, l1) == 1, "written to D/checkpoints/job-NNNNNN.ckpt");
    CHECK(s->job_checkpoint(s->self, id, 2, b1, l1, msg, sizeof msg) == ADM_BAD_REQUEST && strstr(msg, "not of epoch 2"),
          "a checkpoint of another epoch is refused: %s", msg);
    uint8_t *bad = malloc(l2 + 4096);
    memcpy(bad, b2, l2);
    bad[l2 / 2] ^= 1;
    CHECK(s->job_checkpoint(s->self, id, 2, bad, l2, msg, sizeof msg) == ADM_BAD_REQUEST && strstr(msg, "checksum"),
          "a corrupt checkpoint is refused: %s", msg);
    memset(bad, 0, l2 + 4096);
    CHECK(s->job_checkpoint(s->self, id, 2, bad, l2 + 4096, msg, sizeof msg) == ADM_BAD_REQUEST && strstr(msg, "at most"),
          "one larger than the job's head can need is refused before it is read: %s", msg);
    CHECK(s->job_checkpoint(s->self, 999, 1, b1, l1, msg, sizeof msg) == ADM_NOT_FOUND, "unknown job");
    CHECK(file_is(path, b1, l1) == 1, "the refusals left the stored checkpoint");
    CHECK(s->job_checkpoint(s->self, id, 2, b2, l2, msg, sizeof msg) == ADM_OK && file_is(path, b2, l2) == 1,
          "epoch 2's replaces epoch 1's");
    adm_job_view v;
    CHECK(s->job_resume(s->self, id, 2, msg, sizeof msg) == ADM_OK &&
              s->job_get(s->self, id, view_state, &v, msg, sizeof msg) == ADM_OK && v.resumed_from_epoch == 2 && v.epoch == 2,
          "job_resume records resumed_from_epoch");
    CHECK(s->job_resume(s->self, id, 4, msg, sizeof msg) == ADM_BAD_REQUEST, "an epoch past the job's is refused");
    CHECK(s->job_resume(s->self, id, 0, msg, sizeof msg) == ADM_OK && file_is(path, b2, l2) == -1 &&
              s->job_get(s->self, id, view_state, &v, msg, sizeof msg) == ADM_OK && v.resumed_from_epoch == 0 && v.epoch == 0,
          "job_resume 0 (a refused checkpoint) deletes it");
    s->job_checkpoint(s->self, id, 2, b2, l2, msg, sizeof msg);
    adm_job_result r = {.state = ADM_JOB_CANCELLED};
    CHECK(s->job_finish(s->self, id, &r, msg, sizeof msg) == ADM_OK && file_is(path, b2, l2) == -1,
          "the checkpoint is deleted when the job finishes");
    CHECK(s->job_checkpoint(s->self, id, 2, b2, l2, msg, sizeof msg) == ADM_CONFLICT, "a finished job takes no checkpoint");
    free(bad);
    free(b1);
    free(b2);
    adm_claim_free(&c);
}

typedef struct label_seen {
    int n, total;
    char names[8][64];
    int counts[8];
} label_seen;

static void seen_label(void *ctx, const char *label, int n) {
    label_seen *l = ctx;
    if (l->n < 8) {
        snprintf(l->names[l->n], sizeof l->names[0], "%s", label);
        l->counts[l->n++] = n;
    }
}

/* the count of label in s, -1 when it has none */
static int label_count(adm_store *s, const char *label, int *total) {
    label_seen l = {0};
    char msg[256];
    s->examples_list(s->self, seen_label, &l, total, msg, sizeof msg);
    for (int i = 0; i < l.n; i++)
        if (!strcmp(l.names[i], label)) return l.counts[i];
    return -1;
}

/* one examples file written by hand (the store's own format, with what the test chooses) */
static void write_examples_file(const char *dir, const char *label, const char *dim, const char *fp, int rows, int cols) {
    char name[64], path[600], err[256];
    float x[2 * 8] = {0};
    ex_name(label, name, sizeof name);
    snprintf(path, sizeof path, "%s/examples/%s", dir, name);
    const char *kv[] = {"format", EX_FORMAT, "label", label, "dim", dim, "fingerprint", fp};
    stw_tensor t = {.name = "features", .dtype = "F32", .ndim = 2, .shape = {rows, cols}, .data = x,
                    .nbytes = sizeof(float) * (size_t)rows * (size_t)cols};
    if (vit_safetensors_write(path, &t, 1, kv, 4, err, sizeof err) != VIT_OK) printf("warning: %s\n", err);
}

/* Examples survive a reopen of the state directory (labels, counts, bytes); a delete does too;
 * a corrupt, wrong-size or foreign-backbone file is skipped at open; a write that fails fails the
 * call and leaves memory as it was. */
static void test_examples_persist(const store_dir_opts *base, const char *parent) {
    char dir[512], msg[256], err[512], p[600], q[600];
    snprintf(dir, sizeof dir, "%s/ex", parent);
    store_dir_opts o = *base;
    o.state_dir = dir;
    o.fingerprint = "fp1";
    o.hooks = (adm_store_hooks){0};
    const char *uni = "\xc3\xa9t\xc3\xa9";   /* "été" */
    float x[4 * DIM];
    for (int i = 0; i < 4 * DIM; i++) x[i] = 0.5f * (float)i - 3.f;
    adm_store s;
    int added = 0, full = 0, total = 0, deleted = 0;
    CHECK(store_dir_open(&o, &s, err, sizeof err) == 0, "open a state directory for examples");
    s.examples_add(s.self, "cat", "fp1", x, 3, &added, &full, msg, sizeof msg);
    s.examples_add(s.self, "dog", "fp1", x + DIM, 2, &added, &full, msg, sizeof msg);
    s.examples_add(s.self, "cat", "fp1", x + 3 * DIM, 1, &added, &full, msg, sizeof msg);
    CHECK(s.examples_add(s.self, uni, "fp1", x + 2 * DIM, 1, &added, &full, msg, sizeof msg) == ADM_OK && added == 1,
          "examples of three labels, one added to twice, one UTF-8");
    adm_store_close(&s);

    CHECK(store_dir_open(&o, &s, err, sizeof err) == 0, "reopen the examples' state directory");
    CHECK(label_count(&s, "cat", &total) == 4 && label_count(&s, "dog", &total) == 2 && label_count(&s, uni, &total) == 1 &&
              total == 7,
          "the reopened store has the same labels and counts");
    vit_train_opts to;
    vit_train_opts_default(&to);
    int id = 0;
    adm_claim c;
    memset(&c, 0, sizeof c);
    float want[7 * DIM];   /* name order: cat (rows 0,1,2,3), dog (rows 1,2), été (row 2) */
    memcpy(want, x, sizeof(float) * 4 * DIM);
    memcpy(want + 4 * DIM, x + DIM, sizeof(float) * 2 * DIM);
    memcpy(want + 6 * DIM, x + 2 * DIM, sizeof(float) * DIM);
    CHECK(s.job_create(s.self, &to, VIT_LABELS_REPLACE, &id, msg, sizeof msg) == ADM_OK &&
              s.job_claim(s.self, "t", 60, &c, msg, sizeof msg) == ADM_OK && c.n == 7 && c.nlabels == 3 &&
              !strcmp(c.labels[2], uni) && !memcmp(c.x, want, sizeof want),
          "the reopened examples are the same bytes");
    adm_claim_free(&c);
    CHECK(s.examples_add(s.self, "cat", "fp2", x, 1, &added, &full, msg, sizeof msg) == ADM_CONFLICT,
          "the restored examples keep their backbone");
    CHECK(s.examples_delete(s.self, "dog", &deleted, msg, sizeof msg) == ADM_OK && deleted == 2, "delete one label");
    adm_store_close(&s);
    CHECK(store_dir_open(&o, &s, err, sizeof err) == 0 && label_count(&s, "dog", &total) == -1 && total == 5 &&
              label_count(&s, "cat", &total) == 4,
          "a deleted label stays deleted after a reopen");
    adm_store_close(&s);

    /* at open: a corrupt file, a file of another feature size, one of another backbone, a file
     * under another label's name, a stray temporary: skipped (the temporary removed) */
    snprintf(p, sizeof p, "%s/examples/label-0123456789abcdef.safetensors", dir);
    FILE *f = fopen(p, "w");
    if (f) { fputs("not a safetensors file", f); fclose(f); }
    write_examples_file(dir, "wide", "5", "fp1", 1, 5);
    write_examples_file(dir, "alien", "4", "fp9", 2, DIM);
    write_examples_file(dir, "ctrl\x01", "4", "fp1", 1, DIM);
    snprintf(q, sizeof q, "%s/examples/label-0000000000000000.safetensors.tmp.1.2", dir);
    f = fopen(q, "w");
    if (f) { fputs("half", f); fclose(f); }
    CHECK(store_dir_open(&o, &s, err, sizeof err) == 0 && total == 5 && label_count(&s, "cat", &total) == 4 &&
              label_count(&s, uni, &total) == 1 && label_count(&s, "wide", &total) == -1 &&
              label_count(&s, "alien", &total) == -1 && total == 5 && access(q, F_OK) != 0,
          "corrupt, wrong-size, foreign and bad-label files are skipped, the others loaded, temporaries removed");
    s.examples_delete(s.self, uni, &deleted, msg, sizeof msg);
    adm_store_close(&s);
    store_dir_opts other = o;
    other.fingerprint = "fp2";
    CHECK(store_dir_open(&other, &s, err, sizeof err) == 0 && label_count(&s, "cat", &total) == -1 && total == 0,
          "examples of another backbone than the model's are not loaded");
    adm_store_close(&s);

    /* a write that fails (D/examples replaced by a file) fails the call; memory stays */
    CHECK(store_dir_open(&o, &s, err, sizeof err) == 0 && label_count(&s, "cat", &total) == 4, "reopen with cat");
    snprintf(p, sizeof p, "%s/examples", dir);
    snprintf(q, sizeof q, "%s/examples.away", dir);
    if (rename(p, q) == 0 && (f = fopen(p, "w"))) fclose(f);
    CHECK(s.examples_add(s.self, "cat", "fp1", x, 2, &added, &full, msg, sizeof msg) == ADM_IO && added == 0 &&
              strstr(msg, "persist") && label_count(&s, "cat", &total) == 4 && total == 4,
          "a failed write of a known label: ADM_IO, its examples unchanged");
    CHECK(s.examples_add(s.self, "newt", "fp1", x, 1, &added, &full, msg, sizeof msg) == ADM_IO && added == 0 &&
              label_count(&s, "newt", &total) == -1 && total == 4,
          "a failed write of a new label: ADM_IO, no label");
    CHECK(s.examples_delete(s.self, "cat", &deleted, msg, sizeof msg) == ADM_IO && label_count(&s, "cat", &total) == 4,
          "a delete whose file cannot be removed fails and keeps the label");
    unlink(p);
    rename(q, p);
    CHECK(s.examples_add(s.self, "newt", "fp1", x, 1, &added, &full, msg, sizeof msg) == ADM_OK && added == 1 &&
              total == 4 && label_count(&s, "newt", &total) == 1 && total == 5,
          "adds work again once the directory is back");
    adm_store_close(&s);
}

int main(void) {
    srv_log_set_level(SRV_LOG_ERROR);
    metrics_init();
    char dir[] = "/tmp/vitd-test-store-XXXXXX";
    if (!mkdtemp(dir)) { printf("FAIL mkdtemp\n"); return 1; }
    vit_head *base = make_head(2, 0.f);
    hook_log hl = {0};
    store_dir_opts o = {.state_dir = dir, .dim = DIM, .base_head = base, .base_created = 1.0,
                        .hooks = {.on_active = on_active, .ctx = &hl}};
    adm_store s;
    char err[512] = "";
    CHECK(store_dir_open(&o, &s, err, sizeof err) == 0, "open an empty state directory");
    test_examples(&s);
    test_jobs(&s);
    test_heads(&s, &hl);
    test_checkpoints(&s, dir);
    adm_store_close(&s);

    /* reopen: version 2 comes back active (through on_active), numbering continues after 3 */
    hl = (hook_log){0};
    CHECK(store_dir_open(&o, &s, err, sizeof err) == 0, "reopen");
    int active = 0, n = 0, v = 0;
    char msg[256], p[512];
    FILE *f;
    s.head_list(s.self, head_count, &n, &active, msg, sizeof msg);
    CHECK(active == 2 && hl.last_version == 2 && hl.calls == 1 && n == 2, "the active version is restored through on_active");
    vit_head *h = make_head(2, 1.f);
    CHECK(s.head_publish(s.self, h, 0, NULL, &v, msg, sizeof msg) == ADM_OK && v == 3, "numbering continues from the files");
    vit_head_release(h);
    adm_store_close(&s);

    /* a checkpoint left by a previous process (its job died with it) is removed at open */
    snprintf(p, sizeof p, "%s/checkpoints/job-000077.ckpt", dir);
    f = fopen(p, "w");
    if (f) { fputs("stale", f); fclose(f); }
    CHECK(store_dir_open(&o, &s, err, sizeof err) == 0 && access(p, F_OK) != 0, "a stale checkpoint is removed at open");
    adm_store_close(&s);

    /* a corrupt head file and active choice are skipped, never fatal */
    snprintf(p, sizeof p, "%s/heads/head-000009.safetensors", dir);
    f = fopen(p, "w");
    if (f) { fputs("not a safetensors file", f); fclose(f); }
    snprintf(p, sizeof p, "%s/active.json", dir);
    f = fopen(p, "w");
    if (f) { fputs("{\"version\": 9}", f); fclose(f); }
    hl = (hook_log){0};
    CHECK(store_dir_open(&o, &s, err, sizeof err) == 0, "reopen with a corrupt head and active choice");
    s.active_get(s.self, &active, NULL, msg, sizeof msg);
    CHECK(active == 1 && hl.calls == 0, "head 1 stays active");
    adm_store_close(&s);

    /* an unusable state directory is an error at open */
    snprintf(p, sizeof p, "%s/file", dir);
    f = fopen(p, "w");
    if (f) fclose(f);
    store_dir_opts bad = o;
    bad.state_dir = p;
    CHECK(store_dir_open(&bad, &s, err, sizeof err) != 0 && strstr(err, "--state-dir"), "a state dir that is a file fails");

    test_examples_persist(&o, dir);

    /* memory only */
    store_dir_opts mem = o;
    mem.state_dir = NULL;
    CHECK(store_dir_open(&mem, &s, err, sizeof err) == 0, "memory-only store");
    s.active_get(s.self, &active, NULL, msg, sizeof msg);
    CHECK(active == 1, "memory only starts at version 1");
    adm_store_close(&s);

    vit_head_release(base);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", dir);
    return TEST_SUMMARY();
}
