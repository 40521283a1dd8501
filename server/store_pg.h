/* store_pg.h: the admin store in PostgreSQL (server/store_pg.c), for a fleet of replicas sharing
 * one database: examples, jobs, head versions and the active version live in it (see
 * admin_store.h for the interface and its rules).
 *
 *   - Version numbers and job ids come from the database (a sequence, a serial column), so two
 *     replicas never mint the same one.
 *   - A queued job is claimed by one replica (SELECT ... FOR UPDATE SKIP LOCKED) with a lease that
 *     a heartbeat renews while the replica lives; a lapsed lease lets another replica claim it.
 *   - Activation commits the choice and a NOTIFY; every replica LISTENs and also re-reads the
 *     active version every recheck_s seconds, then swaps its head through hooks.on_active.
 *   - Examples and heads carry the backbone's fingerprint: a replica serving another backbone
 *     gets ADM_CONFLICT rather than mixing them, and never claims such jobs.
 *   - The schema is created and migrated at open under an advisory lock (vitd_schema_version).
 *   - While the database is unreachable, calls return ADM_UNAVAILABLE at once; the store
 *     reconnects with backoff; the gauge vitd_store_up says which.
 *
 * Threads: a listener thread of its own (LISTEN, re-check, lease heartbeat, reconnects); the
 * interface's functions are safe from any thread (one connection behind a mutex). */
#ifndef SRV_STORE_PG_H
#define SRV_STORE_PG_H
#include <stddef.h>

#include "admin_store.h"

typedef struct store_pg_opts {
    const char *url;              /* postgresql://user@host:port/db[?...]: no password in it */
    const char *password_file;    /* NULL/"": libpq's own PGPASSWORD, PGPASSFILE, ~/.pgpass */
    const char *instance;         /* this replica's name: job owner, who trained a head */
    const char *fingerprint;      /* the backbone's (model) fingerprint */
    int dim;                      /* feature size of the backbone */
    vit_head *base_head;          /* version 1: the checkpoint's head (retained) */
    double base_created;          /* its creation time (unix seconds) */
    double recheck_s;             /* re-read the active version this often (> 0) */
    double lease_s;               /* a job claim lapses when not renewed for this long (> 0) */
    adm_store_hooks hooks;        /* on_active: at open for the stored choice, then every change */
} store_pg_opts;

/* Connect, create or migrate the schema, apply the active version, start the listener, fill
 * *out.  0, or -1 with err set (bad URL, a password in it, unreachable at start, a schema newer
 * than this build knows). */
int store_pg_open(const store_pg_opts *o, adm_store *out, char *err, size_t errlen);

/* Check a --state-url without connecting: 0, or -1 with err set (not a PostgreSQL URL, a
 * password in it). */
int store_pg_check_url(const char *url, char *err, size_t errlen);

#endif
