/* store_pg.c: the admin store in PostgreSQL through libpq (see store_pg.h, admin_store.h).
 *
 * Tables (created by the migrations below, schema version in vitd_schema_version):
 *   vitd_examples       one row per feature vector: label, backbone fingerprint, features
 *                       (dim float32 in the host's byte order), who added it
 *   vitd_jobs           training jobs: state, options (JSON), the snapshot's labels (JSON, name
 *                       order), owner + lease_until while running, progress, outcome
 *   vitd_job_examples   each job's snapshot of the examples, copied inside the database
 *   vitd_heads          head versions >= 2 (sequence vitd_head_version): weights, bias, labels
 *                       (JSON), fingerprint, metrics, job, who trained it
 *   vitd_active         one row: the active version (1 = every replica's checkpoint head)
 *   vitd_job_checkpoints  (schema 2) one row per running job that finished an epoch: its
 *                       training checkpoint (bytea, vit.h "Checkpoints"), the epoch, who wrote
 *                       it; a re-claim after a lapsed lease resumes from it; deleted when the
 *                       job finishes (and with the job)
 * Notifications: vitd_active (payload: version) on activation, vitd_cancel (payload: job id).
 *
 * Locking: s->mu guards the calls' connection and the replica-side state (the active version
 * and its head, the head cache, claimed jobs); it is held across each call's round trips, so
 * calls are serialised; the listener thread has its own connection and takes s->mu only to
 * apply a change.  A call never waits for a reconnect: while the database is down it answers
 * ADM_UNAVAILABLE until the backoff allows another attempt (connect_timeout bounds that one). */
#include "store_pg.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <libpq-fe.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

#define PG_LOCK_CLASS     1986622564   /* 'vitd': advisory lock class */
#define PG_LOCK_MIGRATE   1
#define PG_LOCK_EXAMPLES  2
#define PG_LOCK_JOBS      3
#define PG_LOCK_HEADS     4            /* activation and deletion of versions, serialised */
#define PG_HEAD_CACHE     16           /* head versions kept loaded besides the active one */
#define PG_MAX_CLAIMED    8
#define PG_BACKOFF_MIN_S  0.25
#define PG_BACKOFF_MAX_S  5.0
#define PG_LISTEN_BACKOFF_S 1.0        /* the listener's longest wait between attempts */
#define PG_OPEN_TRIES     6            /* connection attempts at start-up (about 20 s) */

typedef struct pg_conn {
    PGconn *c;                    /* NULL while down */
    unsigned gen;                 /* connections made so far (a new one needs LISTEN again) */
    double next_try;              /* monotonic seconds: no reconnect attempt before */
    double backoff, max_backoff;  /* the wait after a failed attempt doubles up to max_backoff */
} pg_conn;

typedef struct pg_cached {
    int version;
    vit_head *head;               /* one reference */
} pg_cached;

typedef struct pg_store {
    pthread_mutex_t mu;
    pg_conn main;                 /* the calls' connection (under mu) */
    char *url, *password;         /* password NULL: libpq finds it itself */
    char instance[128];
    char owner[160];              /* instance#pid: who holds this process's job claims */
    char fingerprint[320];
    int dim;
    double recheck_s, lease_s;
    adm_store_hooks hooks;
    vit_head *base;               /* version 1 */
    double base_created;
    int active;                   /* the version this replica serves (under mu) */
    vit_head *active_head;        /* its head (one reference) */
    int refused;                  /* a version the hook or the backbone check refused (logged once) */
    pg_cached cache[PG_HEAD_CACHE];
    int claimed[PG_MAX_CLAIMED];  /* jobs this replica runs (under mu) */
    int claimed_n[PG_MAX_CLAIMED];            /* their examples */
    int claimed_epochs[PG_MAX_CLAIMED];       /* their epochs */
    size_t claimed_ckpt_max[PG_MAX_CLAIMED];  /* their adm_checkpoint_max */
    atomic_int cancel[PG_MAX_CLAIMED];
    pthread_t listener;
    int listener_started;
    atomic_int stop;
    atomic_int up;
    atomic_int notified;          /* vitd_active notifications received */
} pg_store;

static const char *const g_migrations[] = {
    /* 1: the first schema */
    "CREATE TABLE vitd_examples (id bigserial PRIMARY KEY, label text NOT NULL, fingerprint text NOT NULL,"
    " features bytea NOT NULL, added_by text NOT NULL, created timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX vitd_examples_label ON vitd_examples (label);"
    "CREATE TABLE vitd_jobs (id serial PRIMARY KEY, state text NOT NULL, mode text NOT NULL, opts text NOT NULL,"
    " epochs int NOT NULL, fingerprint text NOT NULL, labels text NOT NULL, examples int NOT NULL,"
    " epoch int NOT NULL DEFAULT 0, loss real, val_accuracy real, train_accuracy real, head_version int,"
    " error text NOT NULL DEFAULT '', owner text, lease_until timestamptz, attempts int NOT NULL DEFAULT 0,"
    " cancel_requested boolean NOT NULL DEFAULT false, created timestamptz NOT NULL DEFAULT now(),"
    " started timestamptz, finished timestamptz);"
    "CREATE TABLE vitd_job_examples (job int NOT NULL REFERENCES vitd_jobs (id) ON DELETE CASCADE,"
    " id bigint NOT NULL, label text NOT NULL, features bytea NOT NULL, PRIMARY KEY (job, id));"
    "CREATE SEQUENCE vitd_head_version START 2;"
    "CREATE TABLE vitd_heads (version int PRIMARY KEY DEFAULT nextval('vitd_head_version'),"
    " fingerprint text NOT NULL, dim int NOT NULL, num_classes int NOT NULL, labels text NOT NULL,"
    " weight bytea NOT NULL, bias bytea NOT NULL, job int, trained_by text NOT NULL, metrics text,"
    " created timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE vitd_active (id int PRIMARY KEY CHECK (id = 1), version int NOT NULL,"
    " changed timestamptz NOT NULL DEFAULT now(), changed_by text);"
    "INSERT INTO vitd_active (id, version) VALUES (1, 1);",
    /* 2: training checkpoints, and the epoch a re-claimed job resumed from */
    "CREATE TABLE vitd_job_checkpoints (job int PRIMARY KEY REFERENCES vitd_jobs (id) ON DELETE CASCADE,"
    " epoch int NOT NULL, data bytea NOT NULL, owner text NOT NULL, created timestamptz NOT NULL DEFAULT now());"
    "ALTER TABLE vitd_jobs ADD COLUMN resumed_from_epoch int NOT NULL DEFAULT 0;",
};
#define PG_SCHEMA_VERSION ((int)(sizeof g_migrations / sizeof g_migrations[0]))

/* libpq's message without its trailing newline */
static const char *pg_err(PGconn *c, char *buf, size_t len) {
    snprintf(buf, len, "%s", c ? PQerrorMessage(c) : "not connected");
    char *nl = strchr(buf, '\n');
    if (nl) *nl = '\0';
    return buf;
}

/* ---- connections ------------------------------------------------------------------------- */

int store_pg_check_url(const char *url, char *err, size_t errlen) {
    if (!url || (strncmp(url, "postgresql://", 13) && strncmp(url, "postgres://", 11))) {
        snprintf(err, errlen, "--state-url must be a postgresql:// URL");
        return -1;
    }
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &perr);
    if (!opts) {
        snprintf(err, errlen, "--state-url: %s", perr ? perr : "cannot parse");
        PQfreemem(perr);
        return -1;
    }
    int has_pw = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (!strcmp(o->keyword, "password") && o->val && *o->val) has_pw = 1;
    PQconninfoFree(opts);
    if (has_pw) {
        snprintf(err, errlen, "--state-url must not carry a password: use --state-password-file, PGPASSWORD "
                              "or PGPASSFILE");
        return -1;
    }
    return 0;
}

/* libpq's notices (NOTICE: ... already exists, the FATAL of a server shutdown) go to our log */
static void on_notice(void *arg, const char *message) {
    (void)arg;
    srv_log(SRV_LOG_DEBUG, "admin store: PostgreSQL says: %.*s", (int)strcspn(message, "\n"), message);
}

/* A new connection (blocking, bounded by connect_timeout), or NULL with err set. */
static PGconn *pg_connect(const pg_store *s, char *err, size_t errlen) {
    const char *kw[5], *val[5];
    int n = 0;
    kw[n] = "dbname"; val[n++] = s->url;
    if (s->password) { kw[n] = "password"; val[n++] = s->password; }
    if (!strstr(s->url, "connect_timeout")) { kw[n] = "connect_timeout"; val[n++] = "5"; }
    kw[n] = "application_name"; val[n++] = "vitd";
    kw[n] = NULL; val[n] = NULL;
    PGconn *c = PQconnectdbParams(kw, val, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        pg_err(c, err, errlen);
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, on_notice, NULL);
    PQclear(PQexec(c, "SET statement_timeout = '30s'"));
    return c;
}

static void set_up(pg_store *s, int up) {
    if (atomic_exchange(&s->up, up) != up) {
        metrics_gauge_set("store_up", "1 while the admin store (PostgreSQL) is reachable", up);
        srv_log(up ? SRV_LOG_INFO : SRV_LOG_ERROR, "admin store: PostgreSQL %s", up ? "reachable" : "unreachable");
    }
}

/* The live connection of pc, reconnecting when the backoff allows; NULL when down. */
static PGconn *conn_get(pg_store *s, pg_conn *pc, char *msg, size_t msglen) {
    if (pc->c && PQstatus(pc->c) == CONNECTION_OK) return pc->c;
    if (pc->c) { PQfinish(pc->c); pc->c = NULL; }
    double now = vit_now();
    if (now < pc->next_try) {
        adm_fail(ADM_UNAVAILABLE, msg, msglen, "the admin store (PostgreSQL) is unreachable; retrying");
        return NULL;
    }
    char err[256];
    pc->c = pg_connect(s, err, sizeof err);
    if (!pc->c) {
        pc->backoff = pc->backoff <= 0 ? PG_BACKOFF_MIN_S : fmin(pc->backoff * 2, pc->max_backoff);
        pc->next_try = vit_now() + pc->backoff;
        adm_fail(ADM_UNAVAILABLE, msg, msglen, "the admin store (PostgreSQL) is unreachable: %s", err);
        set_up(s, 0);
        return NULL;
    }
    pc->backoff = 0;
    pc->gen++;
    set_up(s, 1);
    return pc->c;
}

/* Run sql with text params; a result of the wanted status, or NULL with *st and msg set (and a
 * lost connection dropped). */
static PGresult *run(pg_store *s, PGconn *c, const char *sql, int n, const char *const *vals, const int *lens,
                     const int *fmts, int binary, adm_status *st, char *msg, size_t msglen) {
    PGresult *r = PQexecParams(c, sql, n, NULL, vals, lens, fmts, binary);
    ExecStatusType es = PQresultStatus(r);
    if (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK) return r;
    char e[256];
    pg_err(c, e, sizeof e);
    PQclear(r);
    if (PQstatus(c) != CONNECTION_OK) {
        *st = adm_fail(ADM_UNAVAILABLE, msg, msglen, "the admin store (PostgreSQL) is unreachable: %s", e);
        set_up(s, 0);
    } else {
        *st = adm_fail(ADM_IO, msg, msglen, "admin store: %s", e);
    }
    return NULL;
}

/* a statement whose result is not needed: 0, or -1 with *st/msg set */
static int exec0(pg_store *s, PGconn *c, const char *sql, int n, const char *const *vals, adm_status *st, char *msg,
                 size_t msglen) {
    PGresult *r = run(s, c, sql, n, vals, NULL, NULL, 0, st, msg, msglen);
    PQclear(r);
    return r ? 0 : -1;
}

static void rollback(PGconn *c) {
    if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE) PQclear(PQexec(c, "ROLLBACK"));
}

static int begin_locked(pg_store *s, PGconn *c, int lock, adm_status *st, char *msg, size_t msglen) {
    char sql[128];
    snprintf(sql, sizeof sql, "BEGIN; SELECT pg_advisory_xact_lock(%d, %d)", PG_LOCK_CLASS, lock);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) { PQclear(r); return 0; }
    PQclear(r);
    char e[256];
    pg_err(c, e, sizeof e);
    rollback(c);
    *st = PQstatus(c) == CONNECTION_OK ? adm_fail(ADM_IO, msg, msglen, "admin store: %s", e)
                                       : adm_fail(ADM_UNAVAILABLE, msg, msglen, "the admin store (PostgreSQL) is unreachable: %s", e);
    if (*st == ADM_UNAVAILABLE) set_up(s, 0);
    return -1;
}

static int commit(pg_store *s, PGconn *c, adm_status *st, char *msg, size_t msglen) {
    if (exec0(s, c, "COMMIT", 0, NULL, st, msg, msglen) == 0) return 0;
    rollback(c);
    return -1;
}

/* ---- schema ------------------------------------------------------------------------------ */

/* Create or migrate the schema under an advisory lock (replicas starting at once wait for the
 * first).  0, or -1 with err set. */
static int migrate(PGconn *c, char *err, size_t errlen) {
    char sql[160], e[256];
    snprintf(sql, sizeof sql, "BEGIN; SELECT pg_advisory_xact_lock(%d, %d)", PG_LOCK_CLASS, PG_LOCK_MIGRATE);
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    if (ok) {
        r = PQexec(c, "CREATE TABLE IF NOT EXISTS vitd_schema_version (version int PRIMARY KEY,"
                      " applied timestamptz NOT NULL DEFAULT now());"
                      "SELECT coalesce(max(version), 0) FROM vitd_schema_version");
        ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    }
    int have = ok ? atoi(PQgetvalue(r, 0, 0)) : 0;
    if (ok) PQclear(r);
    if (ok && have > PG_SCHEMA_VERSION) {
        rollback(c);
        snprintf(err, errlen, "the database's vitd schema is version %d, newer than this vitd knows (%d)", have,
                 PG_SCHEMA_VERSION);
        return -1;
    }
    for (int v = have + 1; ok && v <= PG_SCHEMA_VERSION; v++) {
        r = PQexec(c, g_migrations[v - 1]);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        snprintf(sql, sizeof sql, "INSERT INTO vitd_schema_version (version) VALUES (%d)", v);
        if (ok) {
            r = PQexec(c, sql);
            ok = PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
        }
        if (ok) srv_log(SRV_LOG_INFO, "admin store: schema migrated to version %d", v);
    }
    if (ok) {
        r = PQexec(c, "COMMIT");
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    if (!ok) {
        snprintf(err, errlen, "admin store: schema migration failed: %s", pg_err(c, e, sizeof e));
        rollback(c);
        return -1;
    }
    return 0;
}

/* ---- heads: rows <-> vit_head ---------------------------------------------------------------- */

/* labels of h as a JSON array text (malloc'd) */
static char *labels_json_text(const vit_head *h) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < vit_head_num_classes(h); i++) cJSON_AddItemToArray(a, cJSON_CreateString(vit_head_label(h, i)));
    char *t = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return t;
}

/* A JSON array of strings -> n malloc'd strings (NULL on a malformed one). */
static char **labels_parse(const char *json, int *n) {
    cJSON *a = cJSON_Parse(json);
    int k = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
    char **out = k > 0 ? calloc((size_t)k, sizeof(char *)) : NULL;
    int ok = out != NULL;
    for (int i = 0; ok && i < k; i++) {
        const cJSON *e = cJSON_GetArrayItem(a, i);
        ok = cJSON_IsString(e) && (out[i] = strdup(e->valuestring)) != NULL;
    }
    cJSON_Delete(a);
    if (!ok) {
        for (int i = 0; out && i < k; i++) free(out[i]);
        free(out);
        return NULL;
    }
    *n = k;
    return out;
}

static void labels_free(char **l, int n) {
    for (int i = 0; l && i < n; i++) free(l[i]);
    free(l);
}

/* A head from a binary-format row: columns dim, num_classes, labels, weight, bias, fingerprint
 * (all text but the two bytea).  NULL with msg set when it does not fit this replica. */
static vit_head *head_from_row(const pg_store *s, PGresult *r, int row, int version, char *msg, size_t msglen) {
    int dim = atoi(PQgetvalue(r, row, 0)), C = atoi(PQgetvalue(r, row, 1)), nl = 0;
    const char *fp = PQgetvalue(r, row, 5);
    if (strcmp(fp, s->fingerprint)) {
        adm_fail(ADM_CONFLICT, msg, msglen, "head version %d was trained on another backbone (%s; this replica serves %s)",
             version, fp, s->fingerprint);
        return NULL;
    }
    char **labels = labels_parse(PQgetvalue(r, row, 2), &nl);
    vit_head *h = NULL;
    if (dim == s->dim && C >= 1 && nl == C && PQgetlength(r, row, 3) == (int)(sizeof(float) * (size_t)C * (size_t)dim)
        && PQgetlength(r, row, 4) == (int)(sizeof(float) * (size_t)C)) {
        float *w = malloc(sizeof(float) * (size_t)C * (size_t)dim), *b = malloc(sizeof(float) * (size_t)C);
        if (w && b) {
            memcpy(w, PQgetvalue(r, row, 3), sizeof(float) * (size_t)C * (size_t)dim);
            memcpy(b, PQgetvalue(r, row, 4), sizeof(float) * (size_t)C);
            vit_head_new(C, dim, w, b, (const char *const *)labels, &h);
        }
        free(w);
        free(b);
    }
    labels_free(labels, nl);
    if (!h) adm_fail(ADM_IO, msg, msglen, "head version %d in the database is malformed or does not fit the model", version);
    return h;
}

#define HEAD_COLS "dim::text, num_classes::text, labels, weight, bias, fingerprint"

/* Head `version` (retained), from the cache or the database (under mu).  NULL with *st/msg. */
static vit_head *head_get(pg_store *s, PGconn *c, int version, adm_status *st, char *msg, size_t msglen) {
    if (version == 1) { vit_head_retain(s->base); return s->base; }
    for (int i = 0; i < PG_HEAD_CACHE; i++)
        if (s->cache[i].head && s->cache[i].version == version) {
            vit_head_retain(s->cache[i].head);
            return s->cache[i].head;
        }
    char v[16];
    snprintf(v, sizeof v, "%d", version);
    const char *p[1] = {v};
    PGresult *r = run(s, c, "SELECT " HEAD_COLS " FROM vitd_heads WHERE version = $1", 1, p, NULL, NULL, 1, st, msg, msglen);
    if (!r) return NULL;
    vit_head *h = NULL;
    if (PQntuples(r) == 0) *st = adm_fail(ADM_NOT_FOUND, msg, msglen, "no head version %d", version);
    else if (!(h = head_from_row(s, r, 0, version, msg, msglen))) *st = strstr(msg, "backbone") ? ADM_CONFLICT : ADM_IO;
    PQclear(r);
    if (!h) return NULL;
    int slot = version % PG_HEAD_CACHE;   /* a plain direct-mapped cache */
    vit_head_release(s->cache[slot].head);
    s->cache[slot] = (pg_cached){version, h};
    vit_head_retain(h);
    return h;
}

/* ---- examples ---------------------------------------------------------------------------- */

/* total examples, labels, whether label has any, and the stored fingerprint (inside the
 * examples lock's transaction) */
static int examples_state(pg_store *s, PGconn *c, const char *label, int *total, int *nlabels, int *has_label,
                          char *fp, size_t fplen, adm_status *st, char *msg, size_t msglen) {
    const char *p[1] = {label};
    PGresult *r = run(s, c,
                      "SELECT count(*)::int, count(DISTINCT label)::int, count(*) FILTER (WHERE label = $1)::int,"
                      " coalesce(min(fingerprint), '') FROM vitd_examples",
                      1, p, NULL, NULL, 0, st, msg, msglen);
    if (!r) return -1;
    *total = atoi(PQgetvalue(r, 0, 0));
    *nlabels = atoi(PQgetvalue(r, 0, 1));
    *has_label = atoi(PQgetvalue(r, 0, 2)) > 0;
    snprintf(fp, fplen, "%s", PQgetvalue(r, 0, 3));
    PQclear(r);
    return 0;
}

static adm_status examples_add_locked(pg_store *s, PGconn *c, const char *label, const char *fingerprint,
                                      const float *x, int n, int *added, int *full, char *msg, size_t msglen) {
    adm_status st = ADM_OK;
    int total, nlabels, has;
    char fp[320];
    if (begin_locked(s, c, PG_LOCK_EXAMPLES, &st, msg, msglen) != 0) return st;
    if (examples_state(s, c, label, &total, &nlabels, &has, fp, sizeof fp, &st, msg, msglen) != 0) {
        rollback(c);
        return st;
    }
    if (total > 0 && strcmp(fp, fingerprint)) {
        rollback(c);
        return adm_fail(ADM_CONFLICT, msg, msglen, "the stored examples come from another backbone (%s; this replica serves %s)",
                    fp, fingerprint);
    }
    int room = ADM_MAX_EXAMPLES - total;
    if (!has && nlabels >= ADM_MAX_LABELS) room = 0;
    int k = n < room ? n : room;
    *full = k < n;
    for (int i = 0; i < k; i++) {
        const char *p[4] = {label, fingerprint, (const char *)(x + (size_t)i * s->dim), s->instance};
        int lens[4] = {0, 0, (int)(sizeof(float) * (size_t)s->dim), 0}, fmts[4] = {0, 0, 1, 0};
        PGresult *r = run(s, c, "INSERT INTO vitd_examples (label, fingerprint, features, added_by) VALUES ($1, $2, $3, $4)",
                          4, p, lens, fmts, 0, &st, msg, msglen);
        if (!r) { rollback(c); return st; }
        PQclear(r);
    }
    if (commit(s, c, &st, msg, msglen) != 0) return st;
    *added = k;
    metrics_gauge_set("admin_examples", "example feature vectors stored for training", total + k);
    return ADM_OK;
}

static adm_status examples_add(void *self, const char *label, const char *fingerprint, const float *x, int n,
                               int *added, int *full, char *msg, size_t msglen) {
    pg_store *s = self;
    *added = 0;
    *full = 0;
    if (!label || strlen(label) > ADM_MAX_LABEL_LEN) return adm_fail(ADM_BAD_REQUEST, msg, msglen, "bad label");
    pthread_mutex_lock(&s->mu);
    adm_status st = ADM_UNAVAILABLE;
    PGconn *c = conn_get(s, &s->main, msg, msglen);
    if (c) st = examples_add_locked(s, c, label, fingerprint ? fingerprint : "", x, n, added, full, msg, msglen);
    pthread_mutex_unlock(&s->mu);
    return st;
}

static adm_status examples_count(void *self, int *total, char *msg, size_t msglen) {
    pg_store *s = self;
    pthread_mutex_lock(&s->mu);
    adm_status st = ADM_UNAVAILABLE;
    PGconn *c = conn_get(s, &s->main, msg, msglen);
    PGresult *r = c ? run(s, c, "SELECT count(*)::int FROM vitd_examples", 0, NULL, NULL, NULL, 0, &st, msg, msglen) : NULL;
    if (r) {
        *total = atoi(PQgetvalue(r, 0, 0));
        st = ADM_OK;
        PQclear(r);
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

static adm_status examples_list(void *self, adm_label_visit visit, void *ctx, int *total, char *msg, size_t msglen) {
    pg_store *s = self;
    pthread_mutex_lock(&s->mu);
    adm_status st = ADM_UNAVAILABLE;
    PGconn *c = conn_get(s, &s->main, msg, msglen);
    PGresult *r = c ? run(s, c, "SELECT label, count(*)::int FROM vitd_examples GROUP BY label ORDER BY label COLLATE \"C\"",
                          0, NULL, NULL, NULL, 0, &st, msg, msglen)
                    : NULL;
    if (r) {
        *total = 0;
        for (int i = 0; i < PQntuples(r); i++) {
            visit(ctx, PQgetvalue(r, i, 0), atoi(PQgetvalue(r, i, 1)));
            *total += atoi(PQgetvalue(r, i, 1));
        }
        st = ADM_OK;
        PQclear(r);
        metrics_gauge_set("admin_examples", "example feature vectors stored for training", *total);
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

static adm_status examples_delete(void *self, const char *label, int *deleted, char *msg, size_t msglen) {
    pg_store *s = self;
    *deleted = 0;
    pthread_mutex_lock(&s->mu);
    adm_status st = ADM_UNAVAILABLE;
    PGconn *c = conn_get(s, &s->main, msg, msglen);
    const char *p[1] = {label};
    PGresult *r = !c ? NULL
                  : label ? run(s, c, "DELETE FROM vitd_examples WHERE label = $1", 1, p, NULL, NULL, 0, &st, msg, msglen)
                          : run(s, c, "DELETE FROM vitd_examples", 0, NULL, NULL, NULL, 0, &st, msg, msglen);
    if (r) {
        *deleted = atoi(PQcmdTuples(r));
        PQclear(r);
        st = label && *deleted == 0 ? adm_fail(ADM_NOT_FOUND, msg, msglen, "no examples for label '%s'", label) : ADM_OK;
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* ---- jobs: options as JSON ------------------------------------------------------------------- */

static char *opts_json(const vit_train_opts *o) {
    cJSON *j = cJSON_CreateObject();
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    cJSON_AddNumberToObject(j, "epochs", o->epochs);
    cJSON_AddNumberToObject(j, "batch_size", o->batch_size);
    cJSON_AddNumberToObject(j, "lr", o->lr);
    cJSON_AddNumberToObject(j, "weight_decay", o->weight_decay);
    cJSON_AddNumberToObject(j, "optimizer", o->optimizer);
    cJSON_AddNumberToObject(j, "momentum", o->momentum);
    cJSON_AddNumberToObject(j, "beta1", o->beta1);
    cJSON_AddNumberToObject(j, "beta2", o->beta2);
    cJSON_AddNumberToObject(j, "eps", o->eps);
    cJSON_AddNumberToObject(j, "val_fraction", o->val_fraction);
    cJSON_AddStringToObject(j, "seed", seed);
    char *t = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return t;
}

static double num(const cJSON *o, const char *k, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static int opts_parse(const char *text, vit_train_opts *o) {
    cJSON *j = cJSON_Parse(text);
    if (!cJSON_IsObject(j)) { cJSON_Delete(j); return -1; }
    vit_train_opts_default(o);
    o->epochs = (int)num(j, "epochs", o->epochs);
    o->batch_size = (int)num(j, "batch_size", o->batch_size);
    o->lr = (float)num(j, "lr", o->lr);
    o->weight_decay = (float)num(j, "weight_decay", o->weight_decay);
    o->optimizer = (vit_optimizer)(int)num(j, "optimizer", o->optimizer);
    o->momentum = (float)num(j, "momentum", o->momentum);
    o->beta1 = (float)num(j, "beta1", o->beta1);
    o->beta2 = (float)num(j, "beta2", o->beta2);
    o->eps = (float)num(j, "eps", o->eps);
    o->val_fraction = (float)num(j, "val_fraction", o->val_fraction);
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(j, "seed");
    if (cJSON_IsString(seed)) o->seed = strtoull(seed->valuestring, NULL, 10);
    cJSON_Delete(j);
    return 0;
}

static adm_job_state state_parse(const char *s) {
    for (int i = ADM_JOB_QUEUED; i <= ADM_JOB_CANCELLED; i++)
        if (!strcmp(s, adm_job_state_str((adm_job_state)i))) return (adm_job_state)i;
    return ADM_JOB_FAILED;
}

/* ---- jobs: create, read, cancel ------------------------------------------------------------- */

#define JOB_COLS "id::text, state, epoch::text, epochs::text, loss::text, val_accuracy::text, train_accuracy::text," \
                 " coalesce(head_version, 0)::text, error, examples::text, labels, mode," \
                 " extract(epoch FROM created)::text, coalesce(extract(epoch FROM started), 0)::text," \
                 " coalesce(extract(epoch FROM finished), 0)::text, coalesce(owner, ''), resumed_from_epoch::text"

static void visit_jobs(PGresult *r, adm_job_visit visit, void *ctx) {
    for (int i = 0; i < PQntuples(r); i++) {
        int nl = 0;
        char **labels = labels_parse(PQgetvalue(r, i, 10), &nl);
        adm_job_view v = {.id = atoi(PQgetvalue(r, i, 0)), .state = state_parse(PQgetvalue(r, i, 1)),
                          .epoch = atoi(PQgetvalue(r, i, 2)), .epochs = atoi(PQgetvalue(r, i, 3)),
                          .has_loss = !PQgetisnull(r, i, 4), .loss = (float)atof(PQgetvalue(r, i, 4)),
                          .val_accuracy = PQgetisnull(r, i, 5) ? -1.f : (float)atof(PQgetvalue(r, i, 5)),
                          .train_accuracy = (float)atof(PQgetvalue(r, i, 6)), .head_version = atoi(PQgetvalue(r, i, 7)),
                          .error = PQgetvalue(r, i, 8), .examples = atoi(PQgetvalue(r, i, 9)), .nlabels = nl,
                          .labels = (const char *const *)labels,
                          .mode = strcmp(PQgetvalue(r, i, 11), "extend") ? VIT_LABELS_REPLACE : VIT_LABELS_EXTEND,
                          .created = atof(PQgetvalue(r, i, 12)), .started = atof(PQgetvalue(r, i, 13)),
                          .finished = atof(PQgetvalue(r, i, 14)), .owner = PQgetvalue(r, i, 15),
                          .resumed_from_epoch = atoi(PQgetvalue(r, i, 16))};
        visit(ctx, &v);
        labels_free(labels, nl);
    }
}

/* Checks, forgetting old finished jobs, the job row and its snapshot (inside the jobs lock). */
static adm_status job_insert(pg_store *s, PGconn *c, const vit_train_opts *opts, vit_label_mode mode, int *id,
                             char *msg, size_t msglen) {
    adm_status st = ADM_OK;
    PGresult *r = run(s, c,
                      "SELECT (SELECT count(*) FROM vitd_examples)::int, (SELECT count(DISTINCT label) FROM vitd_examples)::int,"
                      " (SELECT count(*) FROM vitd_jobs WHERE state IN ('queued', 'running'))::int,"
                      " (SELECT coalesce(min(fingerprint), '') FROM vitd_examples)",
                      0, NULL, NULL, NULL, 0, &st, msg, msglen);
    if (!r) return st;
    int total = atoi(PQgetvalue(r, 0, 0)), nlabels = atoi(PQgetvalue(r, 0, 1)), pending = atoi(PQgetvalue(r, 0, 2));
    int other = total > 0 && strcmp(PQgetvalue(r, 0, 3), s->fingerprint);
    PQclear(r);
    if (total == 0) return adm_fail(ADM_BAD_REQUEST, msg, msglen, "no examples: POST /admin/examples?label=NAME first");
    if (other) return adm_fail(ADM_CONFLICT, msg, msglen, "the stored examples come from another backbone than this replica's");
    if (mode == VIT_LABELS_REPLACE && nlabels < 2)
        return adm_fail(ADM_BAD_REQUEST, msg, msglen, "replace needs examples of at least 2 labels (or use \"labels\": \"extend\")");
    if (pending >= ADM_MAX_PENDING) return adm_fail(ADM_BUSY, msg, msglen, "too many training jobs queued or running");
    char keep[16], epochs[16];
    snprintf(keep, sizeof keep, "%d", ADM_MAX_JOBS - 1);
    const char *pk[1] = {keep};
    if (exec0(s, c, "DELETE FROM vitd_jobs WHERE id IN (SELECT id FROM vitd_jobs WHERE state NOT IN ('queued', 'running')"
                    " ORDER BY id LIMIT greatest(0, (SELECT count(*) FROM vitd_jobs) - $1::int))", 1, pk, &st, msg, msglen))
        return st;
    char *oj = opts_json(opts);
    snprintf(epochs, sizeof epochs, "%d", opts->epochs);
    const char *p[5] = {mode == VIT_LABELS_EXTEND ? "extend" : "replace", oj ? oj : "{}", epochs, s->fingerprint};
    r = run(s, c,
            "INSERT INTO vitd_jobs (state, mode, opts, epochs, fingerprint, examples, labels) SELECT 'queued', $1, $2, $3::int, $4,"
            " (SELECT count(*) FROM vitd_examples), (SELECT coalesce(json_agg(l ORDER BY l COLLATE \"C\"), '[]')::text"
            " FROM (SELECT DISTINCT label AS l FROM vitd_examples) d) RETURNING id::text",
            4, p, NULL, NULL, 0, &st, msg, msglen);
    free(oj);
    if (!r) return st;
    *id = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    const char *pj[1] = {epochs};
    snprintf(epochs, sizeof epochs, "%d", *id);
    if (exec0(s, c, "INSERT INTO vitd_job_examples (job, id, label, features) SELECT $1::int, id, label, features"
                    " FROM vitd_examples", 1, pj, &st, msg, msglen))
        return st;
    return ADM_OK;
}

static adm_status job_create(void *self, const vit_train_opts *opts, vit_label_mode mode, int *id, char *msg,
                             size_t msglen) {
    pg_store *s = self;
    pthread_mutex_lock(&s->mu);
    adm_status st = ADM_UNAVAILABLE;
    PGconn *c = conn_get(s, &s->main, msg, msglen);
    if (c && begin_locked(s, c, PG_LOCK_JOBS, &st, msg, msglen) == 0) {
        st = job_insert(s, c, opts, mode, id, msg, msglen);
        if (st != ADM_OK) rollback(c);
        else if (commit(s, c, &st, msg, msglen) != 0) st = st == ADM_OK ? ADM_IO : st;
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

static adm_status job_get(void *self, int id, adm_job_visit visit, void *ctx, char *msg, size_t msglen) {
    pg_store *s = self;
    char ids[16];
    snprintf(ids, sizeof ids, "%d", id);
    const char *p[1] = {ids};
    pthread_mutex_lock(&s->mu);
    adm_status st = ADM_UNAVAILABLE;
    PGconn *c = conn_get(s, &s->main, msg, msglen);
    PGresult *r = !c ? NULL
                  : id > 0 ? run(s, c, "SELECT " JOB_COLS " FROM vitd_jobs WHERE id = $1::int", 1, p, NULL, NULL, 0, &st, msg, msglen)
                           : run(s, c, "SELECT " JOB_COLS " FROM vitd_jobs ORDER BY id", 0, NULL, NULL, NULL, 0, &st, msg, msglen);
    if (r) {
        st = id > 0 && PQntuples(r) == 0 ? adm_fail(ADM_NOT_FOUND, msg, msglen, "no job %d", id) : ADM_OK;
        visit_jobs(r, visit, ctx);
        PQclear(r);
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

static adm_status job_cancel_locked(pg_store *s, PGconn *c, int id, adm_job_visit visit, void *ctx, char *msg,
                                    size_t msglen) {
    char ids[16];
    snprintf(ids, sizeof ids, "%d", id);
    const char *p[1] = {ids};
    adm_status st = ADM_OK;
    if (exec0(s, c, "BEGIN", 0, NULL, &st, msg, msglen)) return st;
    PGresult *r = run(s, c, "SELECT state FROM vitd_jobs WHERE id = $1::int FOR UPDATE", 1, p, NULL, NULL, 0, &st, msg, msglen);
    if (!r) { rollback(c); return st; }
    adm_job_state js = PQntuples(r) ? state_parse(PQgetvalue(r, 0, 0)) : ADM_JOB_FAILED;
    int found = PQntuples(r) > 0;
    PQclear(r);
    if (!found || js > ADM_JOB_RUNNING) {
        rollback(c);
        return found ? adm_fail(ADM_CONFLICT, msg, msglen, "job %d already finished", id) : adm_fail(ADM_NOT_FOUND, msg, msglen, "no job %d", id);
    }
    const char *sql = js == ADM_JOB_QUEUED
                          ? "UPDATE vitd_jobs SET state = 'cancelled', finished = now() WHERE id = $1::int"
                          : "UPDATE vitd_jobs SET cancel_requested = true WHERE id = $1::int";
    if (exec0(s, c, sql, 1, p, &st, msg, msglen) ||
        (js == ADM_JOB_RUNNING && exec0(s, c, "SELECT pg_notify('vitd_cancel', $1)", 1, p, &st, msg, msglen)) ||
        commit(s, c, &st, msg, msglen)) {
        rollback(c);
        return st;
    }
    r = run(s, c, "SELECT " JOB_COLS " FROM vitd_jobs WHERE id = $1::int", 1, p, NULL, NULL, 0, &st, msg, msglen);
    if (!r) return st;
    visit_jobs(r, visit, ctx);
    PQclear(r);
    return ADM_OK;
}

static adm_status job_cancel(void *self, int id, adm_job_visit visit, void *ctx, char *msg, size_t msglen) {
    pg_store *s = self;
    pthread_mutex_lock(&s->mu);
    adm_status st = ADM_UNAVAILABLE;
    PGconn *c = conn_get(s, &s->main, msg, msglen);
    if (c) st = job_cancel_locked(s, c, id, visit, ctx, msg, msglen);
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* ---- jobs: claim, lease, progress, finish ---------------------------------------------------- */

static int claim_slot(pg_store *s, int id) {   /* under mu; -1 when not claimed here */
    for (int i = 0; i < PG_MAX_CLAIMED; i++)
        if (s->claimed[i] == id && id > 0) return i;
    return -1;
}

/* The job's snapshot into out (labels already set): rows in label (C collation) order. */
static adm_status claim_load(pg_store *s, PGconn *c, adm_claim *out, char *msg, size_t msglen) {
    char ids[16];
    snprintf(ids, sizeof ids, "%d", out->id);
    const char *p[1] = {ids};
    adm_status st = ADM_OK;
    PGresult *r = run(s, c, "SELECT label, features FROM vitd_job_examples WHERE job = $1::int ORDER BY label COLLATE \"C\", id",
                      1, p, NULL, NULL, 1, &st, msg, msglen);
    if (!r) return st;
    int n = PQntuples(r);
    out->x = malloc(sizeof(float) * (size_t)(n ? n : 1) * (size_t)s->dim);
    out->y = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    if (!out->x || !out->y) st = adm_fail(ADM_NOMEM, msg, msglen, "out of memory");
    int k = 0;
    for (int i = 0; st == ADM_OK && i < n; i++) {
        if (PQgetlength(r, i, 1) != (int)(sizeof(float) * (size_t)s->dim)) continue;   /* another dim: skipped */
        int li = -1;
        for (int l = 0; l < out->nlabels && li < 0; l++)
            if (!strcmp(out->labels[l], PQgetvalue(r, i, 0))) li = l;
        if (li < 0) continue;
        memcpy(out->x + (size_t)k * s->dim, PQgetvalue(r, i, 1), sizeof(float) * (size_t)s->dim);
        out->y[k++] = li;
    }
    out->n = k;
    PQclear(r);
    if (st == ADM_OK && k == 0) st = adm_fail(ADM_IO, msg, msglen, "job %d has no usable examples", out->id);
    return st;
}

/* Mark the oldest claimable job (queued, or running with a lapsed lease) ours (one transaction,
 * FOR UPDATE SKIP LOCKED: two replicas never take the same row). */
static adm_status claim_row(pg_store *s, PGconn *c, const char *owner, double lease_s, adm_claim *out, char *msg,
                            size_t msglen) {
    adm_status st = ADM_OK;
    char lease[32];
    snprintf(lease, sizeof lease, "%.3f", lease_s);
    const char *p[3] = {s->fingerprint, owner, lease};
    if (exec0(s, c, "BEGIN", 0, NULL, &st, msg, msglen)) return st;
    /* a running job whose cancel was asked and whose replica is gone ends cancelled */
    if (exec0(s, c, "UPDATE vitd_jobs SET state = 'cancelled', finished = now() WHERE state = 'running'"
                    " AND lease_until < now() AND cancel_requested", 0, NULL, &st, msg, msglen) ||
        exec0(s, c, "DELETE FROM vitd_job_checkpoints WHERE job IN (SELECT id FROM vitd_jobs WHERE state NOT IN"
                    " ('queued', 'running'))", 0, NULL, &st, msg, msglen)) {
        rollback(c);
        return st;
    }
    PGresult *r = run(s, c,
                      "UPDATE vitd_jobs SET state = 'running', owner = $2, lease_until = now() + make_interval(secs => $3::float8),"
                      " started = now(), attempts = attempts + 1, epoch = 0, loss = NULL, val_accuracy = NULL, resumed_from_epoch = 0"
                      " WHERE id = (SELECT id FROM vitd_jobs WHERE fingerprint = $1 AND (state = 'queued' OR (state = 'running'"
                      " AND lease_until < now() AND NOT cancel_requested)) ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                      " RETURNING id::text, mode, opts, labels, attempts::text",
                      3, p, NULL, NULL, 0, &st, msg, msglen);
    if (!r || commit(s, c, &st, msg, msglen)) {
        PQclear(r);
        rollback(c);
        return st == ADM_OK ? ADM_IO : st;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        return adm_fail(ADM_NOT_FOUND, msg, msglen, "no queued job");
    }
    out->id = atoi(PQgetvalue(r, 0, 0));
    out->mode = strcmp(PQgetvalue(r, 0, 1), "extend") ? VIT_LABELS_REPLACE : VIT_LABELS_EXTEND;
    out->dim = s->dim;
    int bad = opts_parse(PQgetvalue(r, 0, 2), &out->opts) != 0 || !(out->labels = labels_parse(PQgetvalue(r, 0, 3), &out->nlabels));
    if (atoi(PQgetvalue(r, 0, 4)) > 1)
        srv_log(SRV_LOG_WARN, "admin store: job %d claimed again (attempt %s): its previous claim's lease lapsed", out->id,
                PQgetvalue(r, 0, 4));
    PQclear(r);
    return bad ? adm_fail(ADM_IO, msg, msglen, "job %d is malformed in the database", out->id) : ADM_OK;
}

static adm_status finish_row(pg_store *s, PGconn *c, int id, const adm_job_result *res, char *msg, size_t msglen);

/* The job's checkpoint, when it has one of at most `max` bytes, into out (a larger one, which no
 * head of this job can need, is deleted and logged).  Only ADM_NOMEM / a lost database fail. */
static adm_status claim_checkpoint(pg_store *s, PGconn *c, adm_claim *out, size_t max, char *msg, size_t msglen) {
    char ids[16], mx[32];
    snprintf(ids, sizeof ids, "%d", out->id);
    snprintf(mx, sizeof mx, "%zu", max);
    const char *p[2] = {ids, mx};
    adm_status st = ADM_OK;
    /* the bytes only when they fit: the length is checked in the database, before any transfer */
    PGresult *r = run(s, c,
                      "SELECT epoch::text, octet_length(data)::text, CASE WHEN octet_length(data) <= $2::bigint THEN data END"
                      " FROM vitd_job_checkpoints WHERE job = $1::int",
                      2, p, NULL, NULL, 1, &st, msg, msglen);
    if (!r) return st;
    if (PQntuples(r) == 1 && PQgetisnull(r, 0, 2)) {
        srv_log(SRV_LOG_WARN, "admin store: job %d: its checkpoint (%s bytes) is larger than its head can need (%zu):"
                " deleted; the job starts from epoch 0", out->id, PQgetvalue(r, 0, 1), max);
        exec0(s, c, "DELETE FROM vitd_job_checkpoints WHERE job = $1::int", 1, p, &st, msg, msglen);
        st = ADM_OK;
    } else if (PQntuples(r) == 1) {
        size_t len = (size_t)PQgetlength(r, 0, 2);
        if (!(out->checkpoint = malloc(len ? len : 1))) st = adm_fail(ADM_NOMEM, msg, msglen, "out of memory");
        else {
            memcpy(out->checkpoint, PQgetvalue(r, 0, 2), len);
            out->checkpoint_len = len;
        }
    }
    PQclear(r);
    return st;
}

static adm_status job_claim(void *self, const char *owner, double lease_s, adm_claim *out, char *msg, size_t msglen) {
    pg_store *s = self;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->mu);
    adm_status st = ADM_UNAVAILABLE;
    PGconn *c = conn_get(s, &s->main, msg, msglen);
    int slot = -1;
    for (int i = 0; i < PG_MAX_CLAIMED && slot < 0; i++)
        if (s->claimed[i] == 0) slot = i;
    if (c && slot < 0) st = adm_fail(ADM_BUSY, msg, msglen, "this replica runs %d jobs already", PG_MAX_CLAIMED);
    else if (c) st = claim_row(s, c, s->owner, s->lease_s, out, msg, msglen);
    /* the claim belongs to this process (instance name and pid: a restarted replica is another
     * owner), with the lease the store was opened with, renewed by the listener's heartbeat
     * whatever the trainer's own lease_s */
    (void)owner;
    (void)lease_s;
    if (st == ADM_OK) st = claim_load(s, c, out, msg, msglen);
    size_t ckpt_max = 0;
    if (st == ADM_OK) {
        ckpt_max = adm_checkpoint_max(out->nlabels, vit_head_num_classes(s->active_head), s->dim, out->n);
        st = claim_checkpoint(s, c, out, ckpt_max, msg, msglen);
    }
    if (st == ADM_OK) {
        s->claimed[slot] = out->id;
        s->claimed_n[slot] = out->n;
        s->claimed_epochs[slot] = out->opts.epochs;
        s->claimed_ckpt_max[slot] = ckpt_max;
        atomic_store(&s->cancel[slot], 0);
    } else if (out->id > 0) {   /* claimed but unusable: it fails rather than bouncing between replicas */
        adm_job_result fr = {.state = ADM_JOB_FAILED, .error = msg};
        char m2[256];
        if (c) finish_row(s, c, out->id, &fr, m2, sizeof m2);
        adm_claim_free(out);
        st = ADM_NOT_FOUND;
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

static adm_status job_progress(void *self, int id, int epoch, float loss, float val_accuracy, double lease_s) {
    pg_store *s = self;
    char ids[16], ep[16], ls[32], va[32], lease[32], msg[256];
    snprintf(ids, sizeof ids, "%d", id);
    snprintf(ep, sizeof ep, "%d", epoch);
    snprintf(ls, sizeof ls, "%.9g", loss);
    snprintf(va, sizeof va, "%.9g", val_accuracy);
    (void)lease_s;   /* the store's own lease (see job_claim) */
    snprintf(lease, sizeof lease, "%.3f", s->lease_s);
    const char *p[6] = {ids, ep, ls, val_accuracy >= 0 ? va : NULL, lease, s->owner};
    pthread_mutex_lock(&s->mu);
    adm_status st = ADM_UNAVAILABLE;
    PGconn *c = conn_get(s, &s->main, msg, sizeof msg);
    PGresult *r = c ? run(s, c,
                          "UPDATE vitd_jobs SET epoch = $2::int, loss = $3::real, val_accuracy = $4::real,"
                          " lease_until = now() + make_interval(secs => $5::float8) WHERE id = $1::int AND owner = $6"
                          " AND state = 'running' RETURNING cancel_requested::text",
                          6, p, NULL, NULL, 0, &st, msg, sizeof msg)
                    : NULL;
    if (r) {
        int slot = claim_slot(s, id);
        st = PQntuples(r) ? ADM_OK : ADM_NOT_FOUND;
        if (slot >= 0 && PQntuples(r) && !strcmp(PQgetvalue(r, 0, 0), "true")) atomic_store(&s->cancel[slot], 1);
        PQclear(r);
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* Between training batches: the flag the heartbeat, progress and NOTIFY vitd_cancel set. */
static int job_cancelled(void *self, int id) {
    pg_store *s = self;
    pthread_mutex_lock(&s->mu);
    int slot = claim_slot(s, id);
    pthread_mutex_unlock(&s->mu);
    return slot >= 0 && atomic_load(&s->cancel[slot]);
}

static adm_status finish_row(pg_store *s, PGconn *c, int id, const adm_job_result *res, char *msg, size_t msglen) {
    char ids[16], hv[16], ls[32], ta[32], va[32];
    snprintf(ids, sizeof ids, "%d", id);
    snprintf(hv, sizeof hv, "%d", res->head_version);
    snprintf(ls, sizeof ls, "%.9g", res->loss);
    snprintf(ta, sizeof ta, "%.9g", res->train_accuracy);
    snprintf(va, sizeof va, "%.9g", res->val_accuracy);
    int ok = res->state == ADM_JOB_SUCCEEDED;
    const char *p[8] = {ids, adm_job_state_str(res->state), ok ? hv : NULL, ok ? ls : NULL, ok ? ta : NULL,
                        ok && res->val_accuracy >= 0 ? va : NULL,
                        res->state == ADM_JOB_FAILED      ? (res->error ? res->error : "failed")
                        : res->state == ADM_JOB_CANCELLED && res->error ? res->error
                                                                        : "",
                        s->owner};
    adm_status st = ADM_OK;
    PGresult *r = run(s, c,
                      "UPDATE vitd_jobs SET state = $2, finished = now(), head_version = $3::int,"
                      " loss = coalesce($4::real, loss), train_accuracy = $5::real,"
                      " val_accuracy = CASE WHEN $2 = 'succeeded' THEN $6::real ELSE val_accuracy END, error = $7,"
                      " lease_until = NULL WHERE id = $1::int AND owner = $8 AND state = 'running'",
                      8, p, NULL, NULL, 0, &st, msg, msglen);
    if (!r) return st;
    int n = atoi(PQcmdTuples(r));
    PQclear(r);
    if (n == 0) return adm_fail(ADM_CONFLICT, msg, msglen, "job %d is no longer this replica's (its lease lapsed)", id);
    const char *pj[1] = {ids};
    exec0(s, c, "DELETE FROM vitd_job_examples WHERE job = $1::int", 1, pj, &st, msg, msglen);
    exec0(s, c, "DELETE FROM vitd_job_checkpoints WHERE job = $1::int", 1, pj, &st, msg, msglen);
    return ADM_OK;
}

static adm_status job_finish(void *self, int id, const adm_job_result *res, char *msg, size_t msglen) {
    pg_store *s = self;
    pthread_mutex_lock(&s->mu);
    int slot = claim_slot(s, id);
    if (slot >= 0) s->claimed[slot] = 0;   /* no more heartbeats: on failure below the lease lapses */
    adm_status st = ADM_UNAVAILABLE;
    PGconn *c = conn_get(s, &s->main, msg, msglen);
    if (c) st = finish_row(s, c, id, res, msg, msglen);
    pthread_mutex_unlock(&s->mu);
    return st;
}

static adm_status job_checkpoint(void *self, int id, int epoch, const void *data, size_t len, char *msg, size_t msglen) {
    pg_store *s = self;
    char err[256], ids[16], ep[16];
    vit_train_checkpoint_info info;
    pthread_mutex_lock(&s->mu);
    int slot = claim_slot(s, id);
    adm_status st = ADM_OK;
    if (slot < 0) st = adm_fail(ADM_CONFLICT, msg, msglen, "job %d is not running on this replica", id);
    else if (!data || len > s->claimed_ckpt_max[slot] || len > (size_t)INT32_MAX)
        st = adm_fail(ADM_BAD_REQUEST, msg, msglen, "job %d: a checkpoint of %zu bytes, at most %zu fit its head", id, len,
                      s->claimed_ckpt_max[slot]);
    else if (vit_train_checkpoint_info_get(data, len, &info, err, sizeof err) != VIT_OK)
        st = adm_fail(ADM_BAD_REQUEST, msg, msglen, "job %d: %s", id, err);
    else if (info.epoch != epoch || info.D != s->dim || info.N != s->claimed_n[slot] || info.epochs != s->claimed_epochs[slot])
        st = adm_fail(ADM_BAD_REQUEST, msg, msglen, "job %d: the checkpoint (epoch %d of %d, D=%d, N=%d) is not of epoch %d of "
                      "this job (%d epochs, D=%d, N=%d)", id, info.epoch, info.epochs, info.D, info.N, epoch,
                      s->claimed_epochs[slot], s->dim, s->claimed_n[slot]);
    PGconn *c = st == ADM_OK ? conn_get(s, &s->main, msg, msglen) : NULL;
    if (st == ADM_OK && !c) st = ADM_UNAVAILABLE;
    if (c) {
        snprintf(ids, sizeof ids, "%d", id);
        snprintf(ep, sizeof ep, "%d", epoch);
        const char *p[4] = {ids, ep, (const char *)data, s->owner};
        int lens[4] = {0, 0, (int)len, 0}, fmts[4] = {0, 0, 1, 0};
        /* only while the job is still ours: a replica whose lease lapsed writes nothing */
        PGresult *r = run(s, c,
                          "INSERT INTO vitd_job_checkpoints (job, epoch, data, owner) SELECT $1::int, $2::int, $3, $4"
                          " FROM vitd_jobs WHERE id = $1::int AND owner = $4 AND state = 'running'"
                          " ON CONFLICT (job) DO UPDATE SET epoch = excluded.epoch, data = excluded.data,"
                          " owner = excluded.owner, created = now()",
                          4, p, lens, fmts, 0, &st, msg, msglen);
        if (r) {
            st = atoi(PQcmdTuples(r)) == 1
                     ? ADM_OK
                     : adm_fail(ADM_CONFLICT, msg, msglen, "job %d is no longer this replica's (its lease lapsed)", id);
            PQclear(r);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

static adm_status job_resume(void *self, int id, int epoch, char *msg, size_t msglen) {
    pg_store *s = self;
    char ids[16], ep[16];
    snprintf(ids, sizeof ids, "%d", id);
    snprintf(ep, sizeof ep, "%d", epoch);
    const char *p[3] = {ids, ep, s->owner};
    pthread_mutex_lock(&s->mu);
    int slot = claim_slot(s, id);
    adm_status st = ADM_OK;
    if (slot < 0) st = adm_fail(ADM_CONFLICT, msg, msglen, "job %d is not running on this replica", id);
    else if (epoch < 0 || epoch > s->claimed_epochs[slot])
        st = adm_fail(ADM_BAD_REQUEST, msg, msglen, "job %d: epoch %d not in [0, %d]", id, epoch, s->claimed_epochs[slot]);
    PGconn *c = st == ADM_OK ? conn_get(s, &s->main, msg, msglen) : NULL;
    if (st == ADM_OK && !c) st = ADM_UNAVAILABLE;
    PGresult *r = c ? run(s, c,
                          "UPDATE vitd_jobs SET resumed_from_epoch = $2::int, epoch = $2::int"
                          " WHERE id = $1::int AND owner = $3 AND state = 'running'",
                          3, p, NULL, NULL, 0, &st, msg, msglen)
                    : NULL;
    if (r) {
        st = atoi(PQcmdTuples(r)) == 1
                 ? ADM_OK
                 : adm_fail(ADM_CONFLICT, msg, msglen, "job %d is no longer this replica's (its lease lapsed)", id);
        PQclear(r);
        if (st == ADM_OK && epoch == 0)
            exec0(s, c, "DELETE FROM vitd_job_checkpoints WHERE job = $1::int", 1, p, &st, msg, msglen);
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* A draining replica hands its job back: queued with no owner, its checkpoint row kept, in one
 * statement that checks it is still ours and not asked to cancel.  The attempt its claim counted
 * is taken back (attempts counts the claims that ran a job until it ended or its lease lapsed):
 * the next claim is not logged as a take-over.  The other replicas' trainers poll for queued
 * jobs (about every second): no NOTIFY is needed to reach them. */
static adm_status job_release(void *self, int id, char *msg, size_t msglen) {
    pg_store *s = self;
    char ids[16];
    snprintf(ids, sizeof ids, "%d", id);
    const char *p[2] = {ids, s->owner};
    pthread_mutex_lock(&s->mu);
    adm_status st = ADM_UNAVAILABLE;
    PGconn *c = conn_get(s, &s->main, msg, msglen);
    PGresult *r = c ? run(s, c,
                          "UPDATE vitd_jobs SET state = 'queued', owner = NULL, lease_until = NULL,"
                          " attempts = greatest(attempts - 1, 0) WHERE id = $1::int AND owner = $2 AND state = 'running'"
                          " AND NOT cancel_requested",
                          2, p, NULL, NULL, 0, &st, msg, msglen)
                    : NULL;
    if (r) {
        st = atoi(PQcmdTuples(r)) == 1
                 ? ADM_OK
                 : adm_fail(ADM_CONFLICT, msg, msglen, "job %d is not running on this replica, or a cancel was asked for", id);
        PQclear(r);
    }
    int slot = claim_slot(s, id);
    if (st == ADM_OK && slot >= 0) s->claimed[slot] = 0;   /* no more heartbeats: it is no longer ours */
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* ---- head versions ------------------------------------------------------------------------ */

static adm_status head_insert(pg_store *s, PGconn *c, vit_head *h, int job, const char *metrics, int *version, char *msg,
                              size_t msglen) {
    adm_status st = ADM_OK;
    PGresult *r = run(s, c, "SELECT count(*)::int FROM vitd_heads", 0, NULL, NULL, NULL, 0, &st, msg, msglen);
    if (!r) return st;
    int n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (n + 1 >= ADM_MAX_HEADS)
        return adm_fail(ADM_FULL, msg, msglen, "too many head versions (%d); DELETE /admin/heads/{v}", ADM_MAX_HEADS);
    int C = vit_head_num_classes(h), D = vit_head_dim(h);
    char dim[16], nc[16], jb[16];
    snprintf(dim, sizeof dim, "%d", D);
    snprintf(nc, sizeof nc, "%d", C);
    snprintf(jb, sizeof jb, "%d", job);
    char *labels = labels_json_text(h);
    const char *p[9] = {s->fingerprint, dim, nc, labels ? labels : "[]", (const char *)vit_head_weight(h),
                        (const char *)vit_head_bias(h), job > 0 ? jb : NULL, s->owner, metrics};
    int lens[9] = {0, 0, 0, 0, (int)(sizeof(float) * (size_t)C * (size_t)D), (int)(sizeof(float) * (size_t)C), 0, 0, 0};
    int fmts[9] = {0, 0, 0, 0, 1, 1, 0, 0, 0};
    r = run(s, c,
            "INSERT INTO vitd_heads (fingerprint, dim, num_classes, labels, weight, bias, job, trained_by, metrics)"
            " VALUES ($1, $2::int, $3::int, $4, $5, $6, $7::int, $8, $9) RETURNING version::text",
            9, p, lens, fmts, 0, &st, msg, msglen);
    free(labels);
    if (!r) return st;
    *version = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return ADM_OK;
}

static adm_status head_publish(void *self, vit_head *h, int job, const char *metrics, int *version, char *msg,
                               size_t msglen) {
    pg_store *s = self;
    pthread_mutex_lock(&s->mu);
    adm_status st = ADM_UNAVAILABLE;
    PGconn *c = conn_get(s, &s->main, msg, msglen);
    if (c) st = head_insert(s, c, h, job, metrics, version, msg, msglen);
    if (st == ADM_OK) {
        int slot = *version % PG_HEAD_CACHE;
        vit_head_release(s->cache[slot].head);
        vit_head_retain(h);
        s->cache[slot] = (pg_cached){*version, h};
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* A listing needs a head's labels, not its weights: a zero-weight head with the row's labels (or
 * the cached head).  NULL when the row is another backbone's or malformed. */
static vit_head *head_for_listing(pg_store *s, PGresult *r, int row, int version) {
    int slot = version % PG_HEAD_CACHE, dim = atoi(PQgetvalue(r, row, 0)), C = atoi(PQgetvalue(r, row, 1)), nl = 0;
    if (s->cache[slot].head && s->cache[slot].version == version) {
        vit_head_retain(s->cache[slot].head);
        return s->cache[slot].head;
    }
    if (strcmp(PQgetvalue(r, row, 3), s->fingerprint) || dim != s->dim || C < 1) return NULL;
    char **labels = labels_parse(PQgetvalue(r, row, 2), &nl);
    float *w = nl == C ? calloc((size_t)C * (size_t)dim, sizeof(float)) : NULL, *b = w ? calloc((size_t)C, sizeof(float)) : NULL;
    vit_head *h = NULL;
    if (w && b) vit_head_new(C, dim, w, b, (const char *const *)labels, &h);
    free(w);
    free(b);
    labels_free(labels, nl);
    return h;
}

static adm_status head_list_locked(pg_store *s, PGconn *c, adm_head_visit visit, void *ctx, int *active, char *msg,
                                   size_t msglen) {
    adm_status st = ADM_OK;
    PGresult *r = run(s, c,
                      "SELECT dim::text, num_classes::text, labels, fingerprint, version::text, coalesce(job, 0)::text,"
                      " extract(epoch FROM created)::text, metrics, trained_by FROM vitd_heads ORDER BY version",
                      0, NULL, NULL, NULL, 0, &st, msg, msglen);
    if (!r) return st;
    *active = s->active;
    adm_head_view v1 = {.version = 1, .active = s->active == 1, .created = s->base_created, .head = s->base};
    visit(ctx, &v1);
    for (int i = 0; i < PQntuples(r); i++) {
        int version = atoi(PQgetvalue(r, i, 4));
        vit_head *h = head_for_listing(s, r, i, version);
        if (!h) continue;   /* another backbone's heads are not this replica's to list */
        adm_head_view v = {.version = version, .active = version == s->active, .job = atoi(PQgetvalue(r, i, 5)),
                           .created = atof(PQgetvalue(r, i, 6)), .head = h,
                           .metrics = PQgetisnull(r, i, 7) ? NULL : PQgetvalue(r, i, 7), .trained_by = PQgetvalue(r, i, 8)};
        visit(ctx, &v);
        vit_head_release(h);
    }
    PQclear(r);
    return ADM_OK;
}

static adm_status head_list(void *self, adm_head_visit visit, void *ctx, int *active, char *msg, size_t msglen) {
    pg_store *s = self;
    pthread_mutex_lock(&s->mu);
    adm_status st = ADM_UNAVAILABLE;
    PGconn *c = conn_get(s, &s->main, msg, msglen);
    if (c) st = head_list_locked(s, c, visit, ctx, active, msg, msglen);
    pthread_mutex_unlock(&s->mu);
    return st;
}

static adm_status head_delete(void *self, int v, char *msg, size_t msglen) {
    pg_store *s = self;
    char vs[16];
    snprintf(vs, sizeof vs, "%d", v);
    const char *p[1] = {vs};
    if (v == 1) return adm_fail(ADM_CONFLICT, msg, msglen, "head version 1 is the checkpoint's head");
    pthread_mutex_lock(&s->mu);
    adm_status st = ADM_UNAVAILABLE;
    PGconn *c = conn_get(s, &s->main, msg, msglen);
    if (c && begin_locked(s, c, PG_LOCK_HEADS, &st, msg, msglen)) c = NULL;
    PGresult *r = c ? run(s, c,
                          "WITH a AS (SELECT version FROM vitd_active WHERE id = 1),"
                          " d AS (DELETE FROM vitd_heads WHERE version = $1::int AND version <> (SELECT version FROM a) RETURNING 1)"
                          " SELECT (SELECT count(*) FROM d)::int, (SELECT count(*) FROM vitd_heads WHERE version = $1::int)::int",
                          1, p, NULL, NULL, 0, &st, msg, msglen)
                    : NULL;
    if (c && !r) rollback(c);
    if (r) {
        int deleted = atoi(PQgetvalue(r, 0, 0)), exists = atoi(PQgetvalue(r, 0, 1));
        PQclear(r);
        if (commit(s, c, &st, msg, msglen) != 0) deleted = 0;   /* st/msg: why */
        else st = deleted ? ADM_OK
                  : exists ? adm_fail(ADM_CONFLICT, msg, msglen, "head version %d is active", v)
                           : adm_fail(ADM_NOT_FOUND, msg, msglen, "no head version %d", v);
        int slot = v % PG_HEAD_CACHE;
        if (deleted && s->cache[slot].version == v) {
            vit_head_release(s->cache[slot].head);
            s->cache[slot] = (pg_cached){0, NULL};
        }
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* ---- the active version ------------------------------------------------------------------- */

/* Serve version v with head h through the hook (under mu).  0, or -1 when refused. */
static int apply_active(pg_store *s, int v, vit_head *h) {
    if (s->hooks.on_active && s->hooks.on_active(s->hooks.ctx, v, h) != 0) return -1;
    vit_head_retain(h);
    vit_head_release(s->active_head);
    s->active_head = h;
    s->active = v;
    metrics_gauge_set("admin_active_head_version", "head version serving /classify (1 = the checkpoint's)", v);
    return 0;
}

static adm_status active_get(void *self, int *version, vit_head **head, char *msg, size_t msglen) {
    (void)msg; (void)msglen;
    pg_store *s = self;
    pthread_mutex_lock(&s->mu);
    *version = s->active;
    if (head) vit_head_retain(*head = s->active_head);
    pthread_mutex_unlock(&s->mu);
    return ADM_OK;
}

/* The choice and its NOTIFY commit only once this replica's hook took the head. */
static adm_status active_set_locked(pg_store *s, PGconn *c, int v, vit_head **head, char *msg, size_t msglen) {
    adm_status st = ADM_OK;
    vit_head *h = head_get(s, c, v, &st, msg, msglen);
    if (!h) return st;
    char vs[16];
    snprintf(vs, sizeof vs, "%d", v);
    const char *p[2] = {vs, s->instance};
    int prev = s->active;
    vit_head *prev_head = s->active_head;
    vit_head_retain(prev_head);
    /* under the heads lock the version must still be in the table: a cached head may have been
     * deleted by another replica */
    PGresult *r = NULL;
    if (begin_locked(s, c, PG_LOCK_HEADS, &st, msg, msglen) ||
        !(r = run(s, c, "SELECT count(*)::int FROM vitd_heads WHERE version = $1::int", 1, p, NULL, NULL, 0, &st, msg, msglen)) ||
        (v != 1 && atoi(PQgetvalue(r, 0, 0)) == 0 && (st = adm_fail(ADM_NOT_FOUND, msg, msglen, "no head version %d", v))) ||
        exec0(s, c, "UPDATE vitd_active SET version = $1::int, changed = now(), changed_by = $2 WHERE id = 1", 2, p, &st, msg,
              msglen) ||
        exec0(s, c, "SELECT pg_notify('vitd_active', $1)", 1, p, &st, msg, msglen)) {
        rollback(c);
    } else if (apply_active(s, v, h) != 0) {
        rollback(c);
        st = adm_fail(ADM_CONFLICT, msg, msglen, "head version %d does not fit the model", v);
    } else if (commit(s, c, &st, msg, msglen) != 0) {
        apply_active(s, prev, prev_head);   /* the database kept the old choice: so do we */
    } else if (head) {
        vit_head_retain(*head = h);
    }
    PQclear(r);
    vit_head_release(prev_head);
    vit_head_release(h);
    return st;
}

static adm_status active_set(void *self, int v, vit_head **head, char *msg, size_t msglen) {
    pg_store *s = self;
    pthread_mutex_lock(&s->mu);
    adm_status st = ADM_UNAVAILABLE;
    PGconn *c = conn_get(s, &s->main, msg, msglen);
    if (c) st = active_set_locked(s, c, v, head, msg, msglen);
    pthread_mutex_unlock(&s->mu);
    if (st == ADM_OK) srv_log(SRV_LOG_INFO, "admin: head version %d activated (all replicas follow)", v);
    return st;
}

/* ---- the listener: NOTIFY, re-check, lease heartbeat ------------------------------------------ */

/* Read the active version and follow it when it changed. */
static void recheck(pg_store *s, PGconn *c) {
    adm_status st = ADM_OK;
    char msg[512];
    /* read under mu: an activation in flight on this replica commits before we look */
    pthread_mutex_lock(&s->mu);
    PGresult *r = run(s, c, "SELECT version::text FROM vitd_active WHERE id = 1", 0, NULL, NULL, NULL, 0, &st, msg, sizeof msg);
    if (!r) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    int v = PQntuples(r) ? atoi(PQgetvalue(r, 0, 0)) : 1;
    PQclear(r);
    if (v != s->active && v != s->refused) {
        vit_head *h = head_get(s, c, v, &st, msg, sizeof msg);
        if (h && apply_active(s, v, h) == 0) {
            srv_log(SRV_LOG_INFO, "admin store: head version %d is active (set by another replica)", v);
        } else if (st != ADM_UNAVAILABLE) {
            srv_log(SRV_LOG_ERROR, "admin store: cannot serve head version %d: %s; keeping version %d", v,
                    h ? "it does not fit the model" : msg, s->active);
            s->refused = v;
        }
        vit_head_release(h);
    }
    pthread_mutex_unlock(&s->mu);
}

/* Renew the leases of the jobs this replica runs; pick up cancel requests. */
static void heartbeat(pg_store *s, PGconn *c) {
    char ids[PG_MAX_CLAIMED * 12 + 4] = "{", lease[32], msg[256];
    int n = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < PG_MAX_CLAIMED; i++)
        if (s->claimed[i] > 0) n += snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%d", n ? "," : "", s->claimed[i]) > 0;
    pthread_mutex_unlock(&s->mu);
    if (!n) return;
    strcat(ids, "}");
    snprintf(lease, sizeof lease, "%.3f", s->lease_s);
    const char *p[3] = {s->owner, ids, lease};
    adm_status st = ADM_OK;
    PGresult *r = run(s, c,
                      "UPDATE vitd_jobs SET lease_until = now() + make_interval(secs => $3::float8) WHERE owner = $1"
                      " AND state = 'running' AND id = ANY($2::int[]) RETURNING id::text, cancel_requested::text",
                      3, p, NULL, NULL, 0, &st, msg, sizeof msg);
    if (!r) return;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < PQntuples(r); i++) {
        int slot = claim_slot(s, atoi(PQgetvalue(r, i, 0)));
        if (slot >= 0 && !strcmp(PQgetvalue(r, i, 1), "true")) atomic_store(&s->cancel[slot], 1);
    }
    pthread_mutex_unlock(&s->mu);
    PQclear(r);
}

static void on_notify(pg_store *s, PGnotify *n, double *next_check) {
    if (!strcmp(n->relname, "vitd_active")) {
        *next_check = 0;
        metrics_gauge_set("store_activations_notified", "activations this replica heard of by NOTIFY",
                          (double)atomic_fetch_add(&s->notified, 1) + 1);
    } else if (!strcmp(n->relname, "vitd_cancel")) {
        pthread_mutex_lock(&s->mu);
        int slot = claim_slot(s, atoi(n->extra));
        if (slot >= 0) atomic_store(&s->cancel[slot], 1);
        pthread_mutex_unlock(&s->mu);
    }
}

static void *listener_main(void *arg) {
    pg_store *s = arg;
    pg_conn lc = {.max_backoff = PG_LISTEN_BACKOFF_S};   /* one connection: it may retry often */
    unsigned listening = 0;       /* lc.gen that LISTENs */
    double next_check = 0, next_beat = 0;
    while (!atomic_load(&s->stop)) {
        char msg[256];
        PGconn *c = conn_get(s, &lc, msg, sizeof msg);
        if (!c) {
            poll(NULL, 0, 100);
            continue;
        }
        if (lc.gen != listening) {
            PGresult *r = PQexec(c, "LISTEN vitd_active; LISTEN vitd_cancel");
            listening = PQresultStatus(r) == PGRES_COMMAND_OK ? lc.gen : 0;
            PQclear(r);
            next_check = 0;
            pthread_mutex_lock(&s->mu);   /* the database is back: calls may reconnect at once */
            s->main.next_try = 0;
            pthread_mutex_unlock(&s->mu);
        }
        double now = vit_now();
        if (now >= next_check) { recheck(s, c); next_check = now + s->recheck_s; }
        if (now >= next_beat) { heartbeat(s, c); next_beat = now + s->lease_s / 3; }
        struct pollfd pf = {.fd = PQsocket(c), .events = POLLIN};
        if (pf.fd >= 0 && poll(&pf, 1, 100) > 0 && !PQconsumeInput(c)) {
            set_up(s, 0);
            continue;   /* conn_get sees the broken connection and reconnects */
        }
        PGnotify *n;
        while ((n = PQnotifies(c))) {
            on_notify(s, n, &next_check);
            PQfreemem(n);
        }
    }
    PQfinish(lc.c);
    return NULL;
}

/* ---- open / close ------------------------------------------------------------------------- */

static void store_close(void *self) {
    pg_store *s = self;
    if (!s) return;
    if (s->listener_started) {
        atomic_store(&s->stop, 1);
        pthread_join(s->listener, NULL);
    }
    PQfinish(s->main.c);
    for (int i = 0; i < PG_HEAD_CACHE; i++) vit_head_release(s->cache[i].head);
    vit_head_release(s->active_head);
    vit_head_release(s->base);
    if (s->password) memset(s->password, 0, strlen(s->password));
    free(s->password);
    free(s->url);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* the first line of a password file (trimmed), malloc'd; NULL with err set */
static char *read_password(const char *file, char *err, size_t errlen) {
    FILE *f = fopen(file, "r");
    char buf[1024] = "";
    if (!f || !fgets(buf, sizeof buf, f)) {
        snprintf(err, errlen, "--state-password-file %s: %s", file, f ? "empty" : strerror(errno));
        if (f) fclose(f);
        return NULL;
    }
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    char *p = strdup(buf);
    memset(buf, 0, sizeof buf);
    if (!p) snprintf(err, errlen, "out of memory");
    return p;
}

/* a connection failure worth another try at start-up (not a wrong password or database) */
static int transient(const char *e) {
    static const char *const words[] = {"timeout expired", "Connection refused", "starting up", "shutting down",
                                        "too many clients", "recovery mode"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strstr(e, words[i])) return 1;
    return 0;
}

/* Connect, migrate, serve the stored active version. */
static int open_db(pg_store *s, char *err, size_t errlen) {
    char e[256], msg[512];
    /* a database that is starting, or busy, gets PG_OPEN_TRIES attempts with backoff */
    double wait = PG_BACKOFF_MIN_S;
    for (int i = 0; i < PG_OPEN_TRIES && !(s->main.c = pg_connect(s, e, sizeof e)) && transient(e); i++) {
        srv_log(SRV_LOG_WARN, "admin store: cannot connect to PostgreSQL (%s); retrying in %.2gs", e, wait);
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
        wait = fmin(wait * 2, PG_BACKOFF_MAX_S);
    }
    if (!s->main.c) {
        snprintf(err, errlen, "--state-url: cannot connect to PostgreSQL: %s", e);
        return -1;
    }
    if (migrate(s->main.c, err, errlen) != 0) return -1;
    set_up(s, 1);
    adm_status st = ADM_OK;
    PGresult *r = run(s, s->main.c, "SELECT version::text FROM vitd_active WHERE id = 1", 0, NULL, NULL, NULL, 0, &st, msg,
                      sizeof msg);
    if (!r) {
        snprintf(err, errlen, "%s", msg);
        return -1;
    }
    int v = PQntuples(r) ? atoi(PQgetvalue(r, 0, 0)) : 1;
    PQclear(r);
    vit_head *h = head_get(s, s->main.c, v, &st, msg, sizeof msg);
    if (h && apply_active(s, v, h) == 0) {
        srv_log(SRV_LOG_INFO, "admin store: head version %d is active", v);
    } else {
        srv_log(SRV_LOG_ERROR, "admin store: cannot serve the active head version %d: %s; serving version 1 until it changes",
                v, h ? "it does not fit the model" : msg);
        s->refused = v;
    }
    vit_head_release(h);
    return 0;
}

int store_pg_open(const store_pg_opts *o, adm_store *out, char *err, size_t errlen) {
    if (store_pg_check_url(o->url, err, errlen) != 0) return -1;
    pg_store *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, errlen, "out of memory"); return -1; }
    pthread_mutex_init(&s->mu, NULL);
    s->url = strdup(o->url);
    s->main.max_backoff = PG_BACKOFF_MAX_S;
    snprintf(s->instance, sizeof s->instance, "%s", o->instance ? o->instance : "vitd");
    snprintf(s->owner, sizeof s->owner, "%s#%ld", s->instance, (long)getpid());
    snprintf(s->fingerprint, sizeof s->fingerprint, "%s", o->fingerprint ? o->fingerprint : "");
    s->dim = o->dim;
    s->recheck_s = o->recheck_s > 0 ? o->recheck_s : 1;
    s->lease_s = o->lease_s > 0 ? o->lease_s : 30;
    s->hooks = o->hooks;
    s->base = o->base_head;
    vit_head_retain(s->base);
    s->base_created = o->base_created;
    s->active = 1;
    vit_head_retain(s->active_head = s->base);
    atomic_init(&s->up, -1);
    int bad = !s->url;
    if (!bad && o->password_file && *o->password_file && !(s->password = read_password(o->password_file, err, errlen))) bad = 1;
    else if (bad) snprintf(err, errlen, "out of memory");
    if (bad || open_db(s, err, errlen) != 0) {
        store_close(s);
        return -1;
    }
    if (pthread_create(&s->listener, NULL, listener_main, s) != 0) {
        snprintf(err, errlen, "cannot start the admin store's listener thread");
        store_close(s);
        return -1;
    }
    s->listener_started = 1;
    *out = (adm_store){.self = s, .examples_add = examples_add, .examples_count = examples_count,
                       .examples_list = examples_list, .examples_delete = examples_delete, .job_create = job_create,
                       .job_get = job_get, .job_cancel = job_cancel, .job_claim = job_claim,
                       .job_progress = job_progress, .job_cancelled = job_cancelled, .job_finish = job_finish,
                       .job_checkpoint = job_checkpoint, .job_resume = job_resume, .job_release = job_release,
                       .head_publish = head_publish, .head_list = head_list, .head_delete = head_delete,
                       .active_get = active_get, .active_set = active_set, .close = store_close};
    return 0;
}
