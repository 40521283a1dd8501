/* store_dir.c: the admin store in one process (see admin_store.h, store_dir.h): jobs in memory;
 * examples and head versions in memory and, with a state directory, on disk: the examples of a
 * label in D/examples/label-HHHHHHHHHHHHHHHH.safetensors (H: the label's FNV-1a 64 hash; the file
 * holds the label, the feature size and the backbone fingerprint in its __metadata__, the rows as
 * an F32 (n, dim) tensor), rewritten after every add to that label and unlinked when it is
 * deleted, before the call answers; head versions in D/heads/head-NNNNNN.safetensors, the active
 * choice in D/active.json (each written to a temporary file, fsynced, renamed, the directory
 * fsynced), restored at open (an examples file that is corrupt, of another feature size or from
 * another backbone than the model's is logged and skipped).  A running job's
 * training checkpoint is kept in memory, or with a state directory in
 * D/checkpoints/job-NNNNNN.ckpt (written the same way), until the job finishes; jobs live in
 * memory, so the checkpoints a previous process left are removed at open.
 *
 * The directory belongs to one process: D/vitd.lock is held with flock(2) while the store is
 * open (a second vitd on D refuses to start, pointing at --state-url); temporary files a crash
 * left in D, D/heads or D/examples are removed at open.
 *
 * Locking: one mutex (s->mu) guards everything.  It is not held while a head version's file is
 * written (the version is minted under it, the file written, then the version published under
 * it), but it is held across writing active.json and the on_active hook, so activations are
 * serialised, across unlinking a deleted version's file, and across writing or unlinking a label's
 * examples file (adds and deletes of examples are serialised; a failed write is undone in memory
 * before the lock is released, so nothing half-done is ever seen).  The vitd_admin_* gauges are
 * updated under it after every change. */
#include "store_dir.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "log.h"
#include "metrics.h"
#include "io/safetensors.h"
#include "io/safetensors_write.h"
#include "textcheck.h"
#include "util.h"

#define EX_FORMAT "vitd-examples-1"   /* __metadata__ "format" of an examples file */

typedef struct ex_label {
    char name[ADM_MAX_LABEL_LEN + 1];
    int n, cap;
    float *feat;                  /* (n, dim) */
} ex_label;

typedef struct sd_job {
    int id;
    adm_job_state state;
    atomic_int cancel;
    vit_train_opts opts;
    vit_label_mode mode;
    /* snapshot of the examples at creation; x and y move to the claim */
    int n, nlabels;
    float *x;                     /* (n, dim) */
    int32_t *y;                   /* (n) index into labels */
    char **labels;                /* nlabels */
    int epoch, has_loss, head_version;
    float loss, val_acc, train_acc;
    char error[512];
    double created, started, finished;
    int resumed_from;             /* the epoch its claim resumed from (job_resume) */
    size_t ckpt_max;              /* set at claim: adm_checkpoint_max for this job */
    int ckpt_epoch;               /* its checkpoint's epoch; 0: none */
    void *ckpt;                   /* without a state directory: the checkpoint (ckpt_len bytes) */
    size_t ckpt_len;
} sd_job;

typedef struct sd_head {
    int version;
    vit_head *head;               /* one reference */
    double created;               /* unix seconds */
    int job;                      /* 0 for the checkpoint's head and restored ones */
    char *metrics;                /* JSON object text or NULL */
} sd_head;

typedef struct sd_store {
    pthread_mutex_t mu;
    char *state_dir;              /* NULL: memory only */
    int lock_fd;                  /* D/vitd.lock, flock'ed while open; -1: none */
    int dim;
    char *model_fp;               /* the model's fingerprint (restored examples must match); NULL: any */
    char fingerprint[320];        /* of the stored examples; "" while there are none */
    adm_store_hooks hooks;
    ex_label *labels;             /* ADM_MAX_LABELS */
    int nlabels, total;
    sd_job *jobs[ADM_MAX_JOBS];
    int njobs, next_job;
    sd_head heads[ADM_MAX_HEADS];
    int nheads, next_version, active;
} sd_store;

static double unix_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* vitd_admin_* gauges in /metrics (under mu) */
static void update_gauges(const sd_store *s) {
    metrics_gauge_set("admin_active_head_version", "head version serving /classify (1 = the checkpoint's)", s->active);
    metrics_gauge_set("admin_head_versions", "head versions kept by the admin API", s->nheads);
    metrics_gauge_set("admin_examples", "example feature vectors stored for training", s->total);
}

static sd_head *find_head(sd_store *s, int v) {  /* under mu */
    for (int i = 0; i < s->nheads; i++)
        if (s->heads[i].version == v) return &s->heads[i];
    return NULL;
}

static sd_job *find_job(sd_store *s, int id) {   /* under mu */
    for (int i = 0; i < s->njobs; i++)
        if (s->jobs[i]->id == id) return s->jobs[i];
    return NULL;
}

static ex_label *find_label(sd_store *s, const char *label) {   /* under mu */
    for (int i = 0; i < s->nlabels; i++)
        if (!strcmp(s->labels[i].name, label)) return &s->labels[i];
    return NULL;
}

static void job_free(sd_job *j) {
    if (!j) return;
    free(j->ckpt);
    free(j->x);
    free(j->y);
    for (int i = 0; j->labels && i < j->nlabels; i++) free(j->labels[i]);
    free(j->labels);
    free(j);
}

static void sort_heads(sd_store *s) {
    for (int i = 1; i < s->nheads; i++)
        for (int k = i; k > 0 && s->heads[k].version < s->heads[k - 1].version; k--) {
            sd_head t = s->heads[k];
            s->heads[k] = s->heads[k - 1];
            s->heads[k - 1] = t;
        }
}

/* ---- persistence ----------------------------------------------------------------------- */

static vit_status save_active(const sd_store *s, int version, char *err, size_t errlen) {
    if (!s->state_dir) return VIT_OK;
    char path[4096], txt[64];
    snprintf(path, sizeof path, "%s/active.json", s->state_dir);
    int n = snprintf(txt, sizeof txt, "{\"version\": %d}\n", version);
    stw_chunk ch = {txt, (size_t)n};
    return vit_write_file_atomic(path, &ch, 1, 0600, err, errlen);
}

static vit_status save_head(const sd_store *s, const sd_head *h, char *err, size_t errlen) {
    if (!s->state_dir) return VIT_OK;
    char path[4096], ver[16], created[32], job[16];
    snprintf(path, sizeof path, "%s/heads/head-%06d.safetensors", s->state_dir, h->version);
    snprintf(ver, sizeof ver, "%d", h->version);
    snprintf(created, sizeof created, "%.3f", h->created);
    snprintf(job, sizeof job, "%d", h->job);
    const char *kv[] = {"version", ver, "created", created, "job", job, "metrics", h->metrics ? h->metrics : "null"};
    return vit_head_save(h->head, path, kv, 4, err, errlen);
}

static void ckpt_path(const sd_store *s, int id, char *path, size_t len) {
    snprintf(path, len, "%s/checkpoints/job-%06d.ckpt", s->state_dir, id);
}

/* The job's checkpoint is gone (it finished, or its checkpoint was refused) (under mu). */
static void ckpt_drop(sd_store *s, sd_job *j) {
    if (!j->ckpt_epoch) return;
    if (s->state_dir) {
        char path[4096];
        ckpt_path(s, j->id, path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT)
            srv_log(SRV_LOG_WARN, "admin: cannot remove %s: %s", path, strerror(errno));
    }
    free(j->ckpt);
    j->ckpt = NULL;
    j->ckpt_len = 0;
    j->ckpt_epoch = 0;
}

/* A label's examples file name: "label-" and the 64-bit FNV-1a hash of the label in hex, so any
 * label (up to ADM_MAX_LABEL_LEN bytes of UTF-8) gives a short, safe name; the label itself is
 * in the file, and examples_add refuses a new label whose name another label already has. */
static void ex_name(const char *label, char *name, size_t len) {
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)label; *p; p++) h = (h ^ *p) * 1099511628211ULL;
    snprintf(name, len, "label-%016llx.safetensors", (unsigned long long)h);
}

static void ex_path(const sd_store *s, const char *label, char *path, size_t len) {
    char name[64];
    ex_name(label, name, sizeof name);
    snprintf(path, len, "%s/examples/%s", s->state_dir, name);
}

/* L's rows (with the fingerprint fp) into its file, atomically; every row, so the file alone
 * is the label's state */
static vit_status save_label(const sd_store *s, const ex_label *L, const char *fp, char *err, size_t errlen) {
    if (!s->state_dir) return VIT_OK;
    char path[4096], dim[16];
    ex_path(s, L->name, path, sizeof path);
    snprintf(dim, sizeof dim, "%d", s->dim);
    const char *kv[] = {"format", EX_FORMAT, "label", L->name, "dim", dim, "fingerprint", fp};
    stw_tensor t = {.name = "features", .dtype = "F32", .ndim = 2, .shape = {L->n, s->dim}, .data = L->feat,
                    .nbytes = sizeof(float) * (size_t)L->n * (size_t)s->dim};
    return vit_safetensors_write(path, &t, 1, kv, 4, err, errlen);
}

/* the state directory's D/examples fsynced, so an unlink there is durable (0, or -1 with errno) */
static int sync_examples_dir(const sd_store *s) {
    char path[4096];
    snprintf(path, sizeof path, "%s/examples", s->state_dir);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int r = fsync(fd) != 0 && errno != EINVAL ? -1 : 0;
    close(fd);
    return r;
}

static const char *meta_str(const st_file *f, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(f->meta, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* One file of D/examples: a stale temporary is removed; a label's file is loaded when it is
 * whole, of this model's feature size and backbone, and fits the limits; anything else is logged
 * and skipped (under no lock: open is single-threaded). */
static void restore_label(sd_store *s, const char *dir, const char *name) {
    char fp[4400], err[512], want[64], why[256] = "";
    snprintf(fp, sizeof fp, "%s/%s", dir, name);
    if (strstr(name, ".tmp.")) {       /* left by a crash mid-write */
        srv_log(SRV_LOG_WARN, "admin: removing stale temporary file %s", fp);
        unlink(fp);
        return;
    }
    size_t nl = strlen(name);
    if (name[0] == '.' || nl < 12 || strcmp(name + nl - 12, ".safetensors")) return;
    if (s->nlabels >= ADM_MAX_LABELS) {
        srv_log(SRV_LOG_WARN, "admin: more than %d labels in %s, ignoring %s", ADM_MAX_LABELS, dir, fp);
        return;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    st_file *f = NULL;
    /* at most every example of the store in one label, plus a header */
    size_t max = sizeof(float) * (size_t)ADM_MAX_EXAMPLES * (size_t)s->dim + (64u << 10);
    if (vit_read_file(fp, max, &buf, &len, err, sizeof err) != VIT_OK ||
        st_open_buffer(fp, buf, len, &f, err, sizeof err) != VIT_OK) {
        srv_log(SRV_LOG_ERROR, "admin: skipping corrupt examples file: %s", err);
        free(buf);
        return;
    }
    const char *format = meta_str(f, "format"), *label = meta_str(f, "label"), *dim = meta_str(f, "dim");
    const char *bb = meta_str(f, "fingerprint");
    st_tensor *t = st_find(f, "features");
    char dimtxt[16];
    snprintf(dimtxt, sizeof dimtxt, "%d", s->dim);
    if (label) ex_name(label, want, sizeof want);
    int n = t && t->ndim == 2 ? (int)t->shape[0] : 0;
    if (!format || strcmp(format, EX_FORMAT) || !label || !dim || !bb || !t || f->n != 1)
        snprintf(why, sizeof why, "not an examples file (format, label, dim, fingerprint, one features tensor)");
    else if (!*label || strlen(label) > ADM_MAX_LABEL_LEN || !txt_utf8_clean(label, strlen(label), NULL, 0))
        snprintf(why, sizeof why, "its label is not 1..%d bytes of UTF-8 without control characters", ADM_MAX_LABEL_LEN);
    else if (strcmp(name, want) || find_label(s, label))
        snprintf(why, sizeof why, "it is not the file of its label (%s)", want);
    else if (strcmp(dim, dimtxt) || t->dtype != ST_F32 || t->ndim != 2 || t->shape[1] != s->dim)
        snprintf(why, sizeof why, "feature size %s differs from the model's (%d)", dim, s->dim);
    else if (n < 1 || t->shape[0] > ADM_MAX_EXAMPLES)
        snprintf(why, sizeof why, "bad number of examples");
    else if ((s->model_fp && strcmp(bb, s->model_fp)) || (s->total > 0 && strcmp(bb, s->fingerprint)))
        snprintf(why, sizeof why, "its examples come from another backbone (%.200s)", bb);
    else if (s->total + n > ADM_MAX_EXAMPLES)
        snprintf(why, sizeof why, "more than %d examples in all", ADM_MAX_EXAMPLES);
    float *feat = NULL;
    if (!why[0] && !(feat = malloc(sizeof(float) * (size_t)n * (size_t)s->dim)))
        snprintf(why, sizeof why, "out of memory");
    if (!why[0] && st_read_f32(f, t, feat, err, sizeof err) != VIT_OK) snprintf(why, sizeof why, "%.250s", err);
    if (why[0]) {
        srv_log(SRV_LOG_ERROR, "admin: skipping examples file %s: %s", fp, why);
        free(feat);
    } else {
        ex_label *L = &s->labels[s->nlabels++];
        memset(L, 0, sizeof *L);
        snprintf(L->name, sizeof L->name, "%s", label);
        L->n = L->cap = n;
        L->feat = feat;
        s->total += n;
        snprintf(s->fingerprint, sizeof s->fingerprint, "%s", bb);
    }
    st_close(f);
    free(buf);
}

/* D/examples: every label's file (labels in name order, as the API lists them after a restart) */
static void restore_examples(sd_store *s) {
    char path[4096];
    snprintf(path, sizeof path, "%s/examples", s->state_dir);
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) restore_label(s, path, e->d_name);
    if (d) closedir(d);
    for (int i = 1; i < s->nlabels; i++)
        for (int k = i; k > 0 && strcmp(s->labels[k].name, s->labels[k - 1].name) < 0; k--) {
            ex_label t = s->labels[k];
            s->labels[k] = s->labels[k - 1];
            s->labels[k - 1] = t;
        }
    if (s->total > 0) srv_log(SRV_LOG_INFO, "admin: restored %d examples of %d labels", s->total, s->nlabels);
}

/* created/job/metrics from a head file's metadata into h */
static void head_meta(sd_head *h, const char *meta) {
    cJSON *m = cJSON_Parse(meta);
    const cJSON *cr = cJSON_GetObjectItemCaseSensitive(m, "created");
    const cJSON *jb = cJSON_GetObjectItemCaseSensitive(m, "job");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(m, "metrics");
    if (cJSON_IsString(cr)) h->created = atof(cr->valuestring);
    if (cJSON_IsString(jb)) h->job = atoi(jb->valuestring);
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "null")) {
        cJSON *chk = cJSON_Parse(mt->valuestring);
        if (cJSON_IsObject(chk)) h->metrics = strdup(mt->valuestring);
        cJSON_Delete(chk);
    }
    cJSON_Delete(m);
}

/* One file of D/heads: a stale temporary is removed, a head file loaded (corrupt: skipped). */
static void restore_head(sd_store *s, const char *dir, const char *name) {
    char fp[4400], err[512];
    snprintf(fp, sizeof fp, "%s/%s", dir, name);
    if (strstr(name, ".tmp.")) {       /* left by a crash mid-write */
        srv_log(SRV_LOG_WARN, "admin: removing stale temporary file %s", fp);
        unlink(fp);
        return;
    }
    int v;
    char tail[32];
    if (sscanf(name, "head-%d.%31s", &v, tail) != 2 || strcmp(tail, "safetensors") || v < 2) return;
    if (s->nheads >= ADM_MAX_HEADS) {
        srv_log(SRV_LOG_WARN, "admin: more than %d heads in %s, ignoring %s", ADM_MAX_HEADS, dir, fp);
        return;
    }
    vit_head *h = NULL;
    char *meta = NULL;
    if (vit_head_load(fp, &h, &meta, err, sizeof err) != VIT_OK) {
        srv_log(SRV_LOG_ERROR, "admin: skipping corrupt head file: %s", err);
        return;
    }
    if (vit_head_dim(h) != s->dim || find_head(s, v)) {
        srv_log(SRV_LOG_ERROR, "admin: skipping head file %s: %s", fp,
                find_head(s, v) ? "duplicate version" : "feature size differs from the model's");
        vit_head_release(h);
        free(meta);
        return;
    }
    sd_head *sh = &s->heads[s->nheads++];
    memset(sh, 0, sizeof *sh);
    sh->version = v;
    sh->head = h;
    head_meta(sh, meta);
    free(meta);
    if (v >= s->next_version) s->next_version = v + 1;
    srv_log(SRV_LOG_INFO, "admin: restored head version %d (%d labels)", v, vit_head_num_classes(h));
}

/* D/active.json: the stored choice, handed to hooks.on_active */
static void restore_active(sd_store *s) {
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/active.json", s->state_dir);
    uint8_t *buf;
    size_t len;
    if (access(path, F_OK) != 0) return;
    if (vit_read_file(path, 4096, &buf, &len, err, sizeof err) != VIT_OK) {
        srv_log(SRV_LOG_ERROR, "admin: skipping active head choice: %s", err);
        return;
    }
    cJSON *a = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(a, "version");
    sd_head *h = cJSON_IsNumber(v) && v->valuedouble == (int)v->valuedouble ? find_head(s, v->valueint) : NULL;
    if (!h) {
        srv_log(SRV_LOG_ERROR, "admin: skipping corrupt %s (or unknown version); head 1 stays active", path);
    } else if (s->hooks.on_active && s->hooks.on_active(s->hooks.ctx, h->version, h->head) != 0) {
        srv_log(SRV_LOG_ERROR, "admin: cannot activate head version %d", h->version);
    } else {
        s->active = h->version;
        srv_log(SRV_LOG_INFO, "admin: head version %d is active", h->version);
    }
    cJSON_Delete(a);
}

/* temporary files of D itself (active.json's) a crash left behind */
static void remove_stale_temps(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strstr(e->d_name, ".tmp.")) continue;
        char fp[4400];
        snprintf(fp, sizeof fp, "%s/%s", dir, e->d_name);
        srv_log(SRV_LOG_WARN, "admin: removing stale temporary file %s", fp);
        unlink(fp);
    }
    if (d) closedir(d);
}

/* D/checkpoints: every file there belongs to a job of a previous process (jobs live in memory) */
static void remove_stale_checkpoints(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoints", dir);
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char fp[4400];
        snprintf(fp, sizeof fp, "%s/%s", path, e->d_name);
        srv_log(SRV_LOG_WARN, "admin: removing %s: the job it checkpointed died with its process", fp);
        unlink(fp);
    }
    if (d) closedir(d);
}

static void restore_state(sd_store *s) {
    char path[4096];
    remove_stale_temps(s->state_dir);
    remove_stale_checkpoints(s->state_dir);
    snprintf(path, sizeof path, "%s/heads", s->state_dir);
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) restore_head(s, path, e->d_name);
    if (d) closedir(d);
    sort_heads(s);
    restore_active(s);
    restore_examples(s);
}

/* ---- examples -------------------------------------------------------------------------- */

static adm_status examples_add(void *self, const char *label, const char *fingerprint, const float *x, int n,
                               int *added, int *full, char *msg, size_t msglen) {
    sd_store *s = self;
    *added = 0;
    *full = 0;
    if (!label || strlen(label) > ADM_MAX_LABEL_LEN) return adm_fail(ADM_BAD_REQUEST, msg, msglen, "bad label");
    const char *fp = fingerprint ? fingerprint : "";
    pthread_mutex_lock(&s->mu);   /* held across the label's file: adds and deletes are serialised */
    if (s->total > 0 && strcmp(s->fingerprint, fp)) {
        pthread_mutex_unlock(&s->mu);
        return adm_fail(ADM_CONFLICT, msg, msglen, "the stored examples come from another backbone (%s)", s->fingerprint);
    }
    ex_label *L = find_label(s, label);
    if (!L && s->state_dir) {     /* two labels never share a file */
        char a[64], b[64];
        ex_name(label, a, sizeof a);
        for (int i = 0; i < s->nlabels; i++) {
            ex_name(s->labels[i].name, b, sizeof b);
            if (strcmp(a, b)) continue;
            pthread_mutex_unlock(&s->mu);
            return adm_fail(ADM_CONFLICT, msg, msglen, "label '%s' cannot be stored next to label '%s' (same file name %s)",
                            label, s->labels[i].name, a);
        }
    }
    int was_new = !L, old_n = L ? L->n : 0;
    for (int i = 0; i < n; i++) {
        if (s->total >= ADM_MAX_EXAMPLES || (!L && s->nlabels >= ADM_MAX_LABELS)) { *full = 1; break; }
        if (!L) {
            L = &s->labels[s->nlabels++];
            memset(L, 0, sizeof *L);
            snprintf(L->name, sizeof L->name, "%s", label);
        }
        if (L->n == L->cap) {
            int nc = L->cap ? 2 * L->cap : 64;
            float *nf = realloc(L->feat, sizeof(float) * (size_t)nc * (size_t)s->dim);
            if (!nf) { *full = 1; break; }
            L->feat = nf;
            L->cap = nc;
        }
        memcpy(L->feat + (size_t)L->n * s->dim, x + (size_t)i * s->dim, sizeof(float) * (size_t)s->dim);
        L->n++;
        s->total++;
        (*added)++;
    }
    char err[512];
    if (*added > 0 && save_label(s, L, fp, err, sizeof err) != VIT_OK) {
        /* not on disk: the call fails and memory is as before it */
        s->total -= *added;
        L->n = old_n;
        if (was_new) {
            free(L->feat);
            s->nlabels--;
        }
        *added = 0;
        *full = 0;
        pthread_mutex_unlock(&s->mu);
        srv_log(SRV_LOG_ERROR, "admin: cannot persist the examples of a label: %s", err);
        return adm_fail(ADM_IO, msg, msglen, "cannot persist the examples: %s", err);
    }
    if (s->total > 0) snprintf(s->fingerprint, sizeof s->fingerprint, "%s", fp);
    update_gauges(s);
    pthread_mutex_unlock(&s->mu);
    return ADM_OK;
}

static adm_status examples_count(void *self, int *total, char *msg, size_t msglen) {
    (void)msg; (void)msglen;
    sd_store *s = self;
    pthread_mutex_lock(&s->mu);
    *total = s->total;
    pthread_mutex_unlock(&s->mu);
    return ADM_OK;
}

static adm_status examples_list(void *self, adm_label_visit visit, void *ctx, int *total, char *msg, size_t msglen) {
    (void)msg; (void)msglen;
    sd_store *s = self;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nlabels; i++) visit(ctx, s->labels[i].name, s->labels[i].n);
    *total = s->total;
    pthread_mutex_unlock(&s->mu);
    return ADM_OK;
}

static adm_status examples_delete(void *self, const char *label, int *deleted, char *msg, size_t msglen) {
    sd_store *s = self;
    int found = 0, failed = 0;
    char path[4096];
    *deleted = 0;
    pthread_mutex_lock(&s->mu);   /* held across unlinking the labels' files */
    for (int i = 0; i < s->nlabels; i++) {
        ex_label *L = &s->labels[i];
        if (label && strcmp(L->name, label)) continue;
        found = 1;
        if (s->state_dir) {       /* the file first: a label whose file stays, stays */
            ex_path(s, L->name, path, sizeof path);
            if (unlink(path) != 0 && errno != ENOENT) {
                failed = errno;
                break;
            }
        }
        *deleted += L->n;
        s->total -= L->n;
        free(L->feat);
        s->labels[i] = s->labels[--s->nlabels];
        i--;
    }
    if (s->total == 0) s->fingerprint[0] = '\0';
    if (s->state_dir && found && !failed && sync_examples_dir(s) != 0)
        srv_log(SRV_LOG_WARN, "admin: cannot sync %s/examples after deleting examples: %s", s->state_dir, strerror(errno));
    update_gauges(s);
    pthread_mutex_unlock(&s->mu);
    if (failed) {
        srv_log(SRV_LOG_ERROR, "admin: cannot delete %s: %s", path, strerror(failed));
        return adm_fail(ADM_IO, msg, msglen, "cannot delete the examples file %s: %s (%d examples deleted before it)",
                        path, strerror(failed), *deleted);
    }
    if (label && !found) return adm_fail(ADM_NOT_FOUND, msg, msglen, "no examples for label '%s'", label);
    return ADM_OK;
}

/* ---- jobs ------------------------------------------------------------------------------ */

static void job_view(const sd_job *j, adm_job_view *v) {   /* under mu */
    *v = (adm_job_view){.id = j->id, .state = j->state, .epoch = j->epoch, .epochs = j->opts.epochs,
                        .has_loss = j->has_loss, .loss = j->loss, .val_accuracy = j->val_acc,
                        .train_accuracy = j->train_acc, .head_version = j->head_version, .error = j->error,
                        .examples = j->n, .nlabels = j->nlabels, .labels = (const char *const *)j->labels,
                        .mode = j->mode, .created = j->created, .started = j->started, .finished = j->finished,
                        .resumed_from_epoch = j->resumed_from};
}

/* Room for one more job: forget the oldest finished one when ADM_MAX_JOBS are kept (under mu). */
static adm_status job_room(sd_store *s, char *msg, size_t msglen) {
    int pending = 0;
    for (int i = 0; i < s->njobs; i++) pending += s->jobs[i]->state <= ADM_JOB_RUNNING;
    if (pending >= ADM_MAX_PENDING) return adm_fail(ADM_BUSY, msg, msglen, "too many training jobs queued or running");
    if (s->njobs < ADM_MAX_JOBS) return ADM_OK;
    int k = 0;
    while (k < s->njobs && s->jobs[k]->state <= ADM_JOB_RUNNING) k++;
    if (k == s->njobs) return adm_fail(ADM_BUSY, msg, msglen, "too many jobs");
    job_free(s->jobs[k]);
    memmove(&s->jobs[k], &s->jobs[k + 1], sizeof(sd_job *) * (size_t)(s->njobs - k - 1));
    s->njobs--;
    return ADM_OK;
}

/* The examples into j: labels in name order (as `vit finetune` orders its folders) (under mu). */
static int job_snapshot(sd_store *s, sd_job *j) {
    j->n = s->total;
    j->nlabels = s->nlabels;
    j->x = malloc(sizeof(float) * (size_t)j->n * (size_t)s->dim);
    j->y = malloc(sizeof(int32_t) * (size_t)j->n);
    j->labels = calloc((size_t)j->nlabels, sizeof(char *));
    int order[ADM_MAX_LABELS];
    for (int i = 0; i < s->nlabels; i++) {
        int k = i;
        for (; k > 0 && strcmp(s->labels[order[k - 1]].name, s->labels[i].name) > 0; k--) order[k] = order[k - 1];
        order[k] = i;
    }
    int ok = j->x && j->y && j->labels, r = 0;
    for (int i = 0; ok && i < s->nlabels; i++) {
        ex_label *L = &s->labels[order[i]];
        ok = (j->labels[i] = strdup(L->name)) != NULL;
        if (L->n > 0) memcpy(j->x + (size_t)r * s->dim, L->feat, sizeof(float) * (size_t)L->n * s->dim);
        for (int k = 0; k < L->n; k++) j->y[r + k] = i;
        r += L->n;
    }
    return ok ? 0 : -1;
}

static adm_status job_create(void *self, const vit_train_opts *opts, vit_label_mode mode, int *id, char *msg,
                             size_t msglen) {
    sd_store *s = self;
    sd_job *j = calloc(1, sizeof *j);
    if (!j) return adm_fail(ADM_NOMEM, msg, msglen, "out of memory");
    j->opts = *opts;
    j->mode = mode;
    pthread_mutex_lock(&s->mu);
    adm_status st = ADM_OK;
    if (s->total == 0) st = adm_fail(ADM_BAD_REQUEST, msg, msglen, "no examples: POST /admin/examples?label=NAME first");
    else if (mode == VIT_LABELS_REPLACE && s->nlabels < 2)
        st = adm_fail(ADM_BAD_REQUEST, msg, msglen, "replace needs examples of at least 2 labels (or use \"labels\": \"extend\")");
    if (st == ADM_OK) st = job_room(s, msg, msglen);
    if (st == ADM_OK && job_snapshot(s, j) != 0) st = adm_fail(ADM_NOMEM, msg, msglen, "out of memory");
    if (st != ADM_OK) {
        pthread_mutex_unlock(&s->mu);
        job_free(j);
        return st;
    }
    j->id = ++s->next_job;
    j->state = ADM_JOB_QUEUED;
    j->val_acc = -1;
    j->created = unix_now();
    s->jobs[s->njobs++] = j;
    *id = j->id;
    pthread_mutex_unlock(&s->mu);
    return ADM_OK;
}

static adm_status job_get(void *self, int id, adm_job_visit visit, void *ctx, char *msg, size_t msglen) {
    sd_store *s = self;
    adm_job_view v;
    pthread_mutex_lock(&s->mu);
    if (id > 0) {
        sd_job *j = find_job(s, id);
        if (!j) {
            pthread_mutex_unlock(&s->mu);
            return adm_fail(ADM_NOT_FOUND, msg, msglen, "no job %d", id);
        }
        job_view(j, &v);
        visit(ctx, &v);
    } else {
        for (int i = 0; i < s->njobs; i++) {
            job_view(s->jobs[i], &v);
            visit(ctx, &v);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return ADM_OK;
}

static adm_status job_cancel(void *self, int id, adm_job_visit visit, void *ctx, char *msg, size_t msglen) {
    sd_store *s = self;
    pthread_mutex_lock(&s->mu);
    sd_job *j = find_job(s, id);
    adm_status st = ADM_OK;
    if (!j) st = adm_fail(ADM_NOT_FOUND, msg, msglen, "no job %d", id);
    else if (j->state == ADM_JOB_QUEUED) {
        j->state = ADM_JOB_CANCELLED;
        j->finished = unix_now();
        ckpt_drop(s, j);
    } else if (j->state == ADM_JOB_RUNNING) {
        atomic_store(&j->cancel, 1);       /* the trainer sees it before its next batch */
    } else {
        st = adm_fail(ADM_CONFLICT, msg, msglen, "job %d already finished", id);
    }
    if (st == ADM_OK) {
        adm_job_view v;
        job_view(j, &v);
        visit(ctx, &v);
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* In one process the claim cannot lapse: the lease is not recorded. */
static adm_status job_claim(void *self, const char *owner, double lease_s, adm_claim *out, char *msg, size_t msglen) {
    (void)owner; (void)lease_s;
    sd_store *s = self;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->mu);
    sd_job *j = NULL;
    for (int i = 0; i < s->njobs && !j; i++)
        if (s->jobs[i]->state == ADM_JOB_QUEUED) j = s->jobs[i];
    char **labels = j ? calloc((size_t)j->nlabels, sizeof(char *)) : NULL;
    int ok = labels != NULL;
    for (int i = 0; ok && i < j->nlabels; i++) ok = (labels[i] = strdup(j->labels[i])) != NULL;
    if (!j || !ok) {
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; labels && i < j->nlabels; i++) free(labels[i]);
        free(labels);
        return j ? adm_fail(ADM_NOMEM, msg, msglen, "out of memory") : adm_fail(ADM_NOT_FOUND, msg, msglen, "no queued job");
    }
    sd_head *act = find_head(s, s->active);
    j->ckpt_max = adm_checkpoint_max(j->nlabels, act ? vit_head_num_classes(act->head) : 0, s->dim, j->n);
    /* a job here is claimed once and never outlives the process, so its claim carries no
     * checkpoint (the shared store's re-claim after a lapsed lease does) */
    j->state = ADM_JOB_RUNNING;
    j->started = unix_now();
    j->resumed_from = 0;
    *out = (adm_claim){.id = j->id, .opts = j->opts, .mode = j->mode, .n = j->n, .nlabels = j->nlabels,
                       .dim = s->dim, .x = j->x, .y = j->y, .labels = labels};
    j->x = NULL;                  /* the snapshot moves to the trainer */
    j->y = NULL;
    pthread_mutex_unlock(&s->mu);
    return ADM_OK;
}

static adm_status job_checkpoint(void *self, int id, int epoch, const void *data, size_t len, char *msg, size_t msglen) {
    sd_store *s = self;
    char err[512];
    vit_train_checkpoint_info info;
    pthread_mutex_lock(&s->mu);
    sd_job *j = find_job(s, id);
    adm_status st = ADM_OK;
    if (!j) st = adm_fail(ADM_NOT_FOUND, msg, msglen, "no job %d", id);
    else if (j->state != ADM_JOB_RUNNING) st = adm_fail(ADM_CONFLICT, msg, msglen, "job %d is not running", id);
    else if (!data || len > j->ckpt_max)
        st = adm_fail(ADM_BAD_REQUEST, msg, msglen, "job %d: a checkpoint of %zu bytes, at most %zu fit its head", id, len,
                      j->ckpt_max);
    else if (vit_train_checkpoint_info_get(data, len, &info, err, sizeof err) != VIT_OK)
        st = adm_fail(ADM_BAD_REQUEST, msg, msglen, "job %d: %s", id, err);
    else if (info.epoch != epoch || info.D != s->dim || info.N != j->n || info.epochs != j->opts.epochs)
        st = adm_fail(ADM_BAD_REQUEST, msg, msglen, "job %d: the checkpoint (epoch %d of %d, D=%d, N=%d) is not of epoch %d of "
                      "this job (%d epochs, D=%d, N=%d)", id, info.epoch, info.epochs, info.D, info.N, epoch,
                      j->opts.epochs, s->dim, j->n);
    void *copy = NULL;
    if (st == ADM_OK && !s->state_dir) {
        if (!(copy = malloc(len))) st = adm_fail(ADM_NOMEM, msg, msglen, "out of memory");
        else memcpy(copy, data, len);
    }
    pthread_mutex_unlock(&s->mu);
    if (st != ADM_OK) return st;
    /* the file outside the lock: only this job's trainer writes it or finishes the job */
    if (s->state_dir) {
        char path[4096];
        ckpt_path(s, id, path, sizeof path);
        stw_chunk ch = {data, len};
        if (vit_write_file_atomic(path, &ch, 1, 0600, err, sizeof err) != VIT_OK)
            return adm_fail(ADM_IO, msg, msglen, "job %d: cannot persist its checkpoint: %s", id, err);
    }
    pthread_mutex_lock(&s->mu);
    if ((j = find_job(s, id))) {
        free(j->ckpt);
        j->ckpt = copy;
        j->ckpt_len = len;
        j->ckpt_epoch = epoch;
        copy = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    free(copy);
    return ADM_OK;
}

static adm_status job_resume(void *self, int id, int epoch, char *msg, size_t msglen) {
    sd_store *s = self;
    pthread_mutex_lock(&s->mu);
    sd_job *j = find_job(s, id);
    adm_status st = ADM_OK;
    if (!j) st = adm_fail(ADM_NOT_FOUND, msg, msglen, "no job %d", id);
    else if (j->state != ADM_JOB_RUNNING) st = adm_fail(ADM_CONFLICT, msg, msglen, "job %d is not running", id);
    else if (epoch < 0 || epoch > j->opts.epochs)
        st = adm_fail(ADM_BAD_REQUEST, msg, msglen, "job %d: epoch %d not in [0, %d]", id, epoch, j->opts.epochs);
    else {
        if (epoch == 0) ckpt_drop(s, j);
        j->resumed_from = epoch;
        j->epoch = epoch;         /* the epochs done: those of the checkpoint, or none */
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

static adm_status job_progress(void *self, int id, int epoch, float loss, float val_accuracy, double lease_s) {
    (void)lease_s;
    sd_store *s = self;
    pthread_mutex_lock(&s->mu);
    sd_job *j = find_job(s, id);
    if (j) {
        j->epoch = epoch;
        j->loss = loss;
        j->val_acc = val_accuracy;
        j->has_loss = 1;
    }
    pthread_mutex_unlock(&s->mu);
    return j ? ADM_OK : ADM_NOT_FOUND;
}

/* Called between training batches: a lookup under the lock, then the atomic flag. */
static int job_cancelled(void *self, int id) {
    sd_store *s = self;
    pthread_mutex_lock(&s->mu);
    sd_job *j = find_job(s, id);
    pthread_mutex_unlock(&s->mu);
    return j ? atomic_load(&j->cancel) : 1;
}

static adm_status job_finish(void *self, int id, const adm_job_result *r, char *msg, size_t msglen) {
    sd_store *s = self;
    pthread_mutex_lock(&s->mu);
    sd_job *j = find_job(s, id);
    if (!j) {
        pthread_mutex_unlock(&s->mu);
        return adm_fail(ADM_NOT_FOUND, msg, msglen, "no job %d", id);
    }
    j->finished = unix_now();
    j->state = r->state;
    ckpt_drop(s, j);              /* whatever the outcome */
    if (r->state == ADM_JOB_SUCCEEDED) {
        j->head_version = r->head_version;
        j->train_acc = r->train_accuracy;
        j->loss = r->loss;
        j->val_acc = r->val_accuracy;
        j->has_loss = 1;
    } else if (r->state == ADM_JOB_FAILED) {
        snprintf(j->error, sizeof j->error, "%s", r->error ? r->error : "failed");
    } else if (r->state == ADM_JOB_CANCELLED && r->error) {
        snprintf(j->error, sizeof j->error, "%s", r->error);   /* why, when not asked for */
    }
    pthread_mutex_unlock(&s->mu);
    return ADM_OK;
}

/* ---- heads ----------------------------------------------------------------------------- */

static adm_status head_publish(void *self, vit_head *h, int job, const char *metrics, int *version, char *msg,
                               size_t msglen) {
    sd_store *s = self;
    sd_head sh = {.head = h, .created = unix_now(), .job = job, .metrics = metrics ? strdup(metrics) : NULL};
    if (metrics && !sh.metrics) return adm_fail(ADM_NOMEM, msg, msglen, "out of memory");
    pthread_mutex_lock(&s->mu);
    adm_status st = ADM_OK;
    if (s->nheads >= ADM_MAX_HEADS)
        st = adm_fail(ADM_FULL, msg, msglen, "too many head versions (%d); DELETE /admin/heads/{v}", ADM_MAX_HEADS);
    else
        sh.version = s->next_version++;
    pthread_mutex_unlock(&s->mu);
    /* the file first (outside the lock), then publish the version */
    char err[512];
    if (st == ADM_OK && save_head(s, &sh, err, sizeof err) != VIT_OK) st = adm_fail(ADM_IO, msg, msglen, "%s", err);
    if (st != ADM_OK) {
        free(sh.metrics);
        return st;
    }
    vit_head_retain(h);
    pthread_mutex_lock(&s->mu);
    s->heads[s->nheads++] = sh;
    sort_heads(s);
    update_gauges(s);
    pthread_mutex_unlock(&s->mu);
    *version = sh.version;
    return ADM_OK;
}

static adm_status head_list(void *self, adm_head_visit visit, void *ctx, int *active, char *msg, size_t msglen) {
    (void)msg; (void)msglen;
    sd_store *s = self;
    pthread_mutex_lock(&s->mu);
    *active = s->active;
    for (int i = 0; i < s->nheads; i++) {
        const sd_head *h = &s->heads[i];
        adm_head_view v = {.version = h->version, .active = h->version == s->active, .job = h->job,
                           .created = h->created, .head = h->head, .metrics = h->metrics};
        visit(ctx, &v);
    }
    pthread_mutex_unlock(&s->mu);
    return ADM_OK;
}

static adm_status head_delete(void *self, int v, char *msg, size_t msglen) {
    sd_store *s = self;
    pthread_mutex_lock(&s->mu);
    sd_head *h = find_head(s, v);
    if (!h || v == 1 || v == s->active) {
        pthread_mutex_unlock(&s->mu);
        if (!h) return adm_fail(ADM_NOT_FOUND, msg, msglen, "no head version %d", v);
        return adm_fail(ADM_CONFLICT, msg, msglen, "head version %d is %s", v, v == 1 ? "the checkpoint's head" : "active");
    }
    sd_head gone = *h;
    *h = s->heads[--s->nheads];
    sort_heads(s);
    if (s->state_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/heads/head-%06d.safetensors", s->state_dir, gone.version);
        unlink(path);
    }
    update_gauges(s);
    pthread_mutex_unlock(&s->mu);
    vit_head_release(gone.head);
    free(gone.metrics);
    return ADM_OK;
}

static adm_status active_get(void *self, int *version, vit_head **head, char *msg, size_t msglen) {
    (void)msg; (void)msglen;
    sd_store *s = self;
    pthread_mutex_lock(&s->mu);
    sd_head *h = find_head(s, s->active);
    *version = s->active;
    if (head) {
        *head = h ? h->head : NULL;
        if (*head) vit_head_retain(*head);
    }
    pthread_mutex_unlock(&s->mu);
    return ADM_OK;
}

static adm_status active_set(void *self, int v, vit_head **head, char *msg, size_t msglen) {
    sd_store *s = self;
    char err[512];
    pthread_mutex_lock(&s->mu);   /* held across the file and the hook: activations are serialised */
    sd_head *h = find_head(s, v);
    adm_status st = ADM_OK;
    if (!h) st = adm_fail(ADM_NOT_FOUND, msg, msglen, "no head version %d", v);
    else if (save_active(s, h->version, err, sizeof err) != VIT_OK)
        st = adm_fail(ADM_IO, msg, msglen, "cannot persist the active head: %s", err);
    else if (s->hooks.on_active && s->hooks.on_active(s->hooks.ctx, h->version, h->head) != 0) {
        save_active(s, s->active, err, sizeof err);
        st = adm_fail(ADM_CONFLICT, msg, msglen, "head version %d does not fit the model", v);
    }
    if (st == ADM_OK) {
        s->active = h->version;
        update_gauges(s);
        if (head) vit_head_retain(*head = h->head);
    }
    pthread_mutex_unlock(&s->mu);
    if (st == ADM_OK) srv_log(SRV_LOG_INFO, "admin: head version %d activated", v);
    return st;
}

/* ---- open / close ---------------------------------------------------------------------- */

static void store_close(void *self) {
    sd_store *s = self;
    if (!s) return;
    for (int i = 0; i < s->njobs; i++) job_free(s->jobs[i]);
    for (int i = 0; i < s->nheads; i++) {
        vit_head_release(s->heads[i].head);
        free(s->heads[i].metrics);
    }
    for (int i = 0; s->labels && i < s->nlabels; i++) free(s->labels[i].feat);
    free(s->labels);
    free(s->state_dir);
    free(s->model_fp);
    if (s->lock_fd >= 0) close(s->lock_fd);   /* releases the flock */
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* the state directory and its heads/, checkpoints/ and examples/ exist and are writable */
static int make_dirs(const char *dir, char *err, size_t errlen) {
    char p[4096], c[4096], x[4096];
    snprintf(p, sizeof p, "%s/heads", dir);
    snprintf(c, sizeof c, "%s/checkpoints", dir);
    snprintf(x, sizeof x, "%s/examples", dir);
    if ((mkdir(dir, 0700) != 0 && errno != EEXIST) || (mkdir(p, 0700) != 0 && errno != EEXIST) || access(p, W_OK) != 0 ||
        (mkdir(c, 0700) != 0 && errno != EEXIST) || access(c, W_OK) != 0 ||
        (mkdir(x, 0700) != 0 && errno != EEXIST) || access(x, W_OK) != 0) {
        snprintf(err, errlen, "--state-dir %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* D/vitd.lock, flock'ed for as long as the store is open, with our pid in it.  The fd, or -1
 * with err set (another vitd holds it: the message names the way to share state). */
static int lock_dir(const char *dir, char *err, size_t errlen) {
    char p[4096], pid[32] = "";
    snprintf(p, sizeof p, "%s/vitd.lock", dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "--state-dir %s: cannot open %s: %s", dir, p, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        ssize_t n = read(fd, pid, sizeof pid - 1);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        snprintf(err, errlen, "--state-dir %s is in use by another vitd (pid %s): a state directory belongs to one "
                 "process; to share heads between replicas, give each --state-url postgresql://... (the PostgreSQL "
                 "admin store) instead", dir, pid[0] ? pid : "unknown");
        close(fd);
        return -1;
    }
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
        srv_log(SRV_LOG_WARN, "admin: cannot write our pid into %s", p);
    return fd;
}

int store_dir_open(const store_dir_opts *o, adm_store *out, char *err, size_t errlen) {
    sd_store *s = calloc(1, sizeof *s);
    if (!s || !(s->labels = calloc(ADM_MAX_LABELS, sizeof(ex_label)))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&s->mu, NULL);
    s->lock_fd = -1;
    s->dim = o->dim;
    s->hooks = o->hooks;
    if (o->fingerprint && !(s->model_fp = strdup(o->fingerprint))) {
        store_close(s);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->next_version = 2;
    s->active = 1;
    sd_head *h0 = &s->heads[s->nheads++];   /* version 1: the checkpoint's head */
    *h0 = (sd_head){.version = 1, .head = o->base_head, .created = o->base_created};
    vit_head_retain(o->base_head);
    if (o->state_dir && *o->state_dir) {
        if (make_dirs(o->state_dir, err, errlen) != 0 || (s->lock_fd = lock_dir(o->state_dir, err, errlen)) < 0) {
            store_close(s);
            return -1;
        }
        if (!(s->state_dir = strdup(o->state_dir))) {
            snprintf(err, errlen, "out of memory");
            store_close(s);
            return -1;
        }
        restore_state(s);
    }
    pthread_mutex_lock(&s->mu);
    update_gauges(s);
    pthread_mutex_unlock(&s->mu);
    *out = (adm_store){.self = s, .examples_add = examples_add, .examples_count = examples_count,
                       .examples_list = examples_list, .examples_delete = examples_delete, .job_create = job_create,
                       .job_get = job_get, .job_cancel = job_cancel, .job_claim = job_claim,
                       .job_progress = job_progress, .job_cancelled = job_cancelled, .job_finish = job_finish,
                       .job_checkpoint = job_checkpoint, .job_resume = job_resume, .head_publish = head_publish, .head_list = head_list, .head_delete = head_delete,
                       .active_get = active_get, .active_set = active_set, .close = store_close};
    return 0;
}
