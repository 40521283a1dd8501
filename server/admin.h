/* admin.h: the admin API over HTTP (server/admin_http.c, plus admin_parse.c): teach the served
 * model new labels online by training its head on stored example features, with background
 * jobs, head versions, atomic activation and rollback.  Everything lives under /admin/ and needs
 * `Authorization: Bearer <token>`.  What it keeps is in the admin store (admin_store.h; the
 * state directory, store_dir.c); jobs run on the trainer (trainer.h).
 *
 *   token: --admin-token-file F (env VITD_ADMIN_TOKEN_FILE) (first line, surrounding whitespace trimmed), else the
 *          VITD_ADMIN_TOKEN environment variable (main.c's flag table: a secret, never a command-line
 *          flag, never printed); at least 16 bytes.  No token configured:
 *          the admin API is disabled and every /admin/ path answers 404 (never open).
 *          Missing or wrong token: 401 with `WWW-Authenticate: Bearer realm="vitd-admin"`.
 *          The comparison takes the same time whatever the client sent.
 *   state: --state-dir D keeps head versions (D/heads/head-NNNNNN.safetensors) and the active
 *          choice (D/active.json); every file is written to a temporary file, fsynced, renamed,
 *          and the directory fsynced.  Restored at start-up; a corrupt file is logged and skipped.
 *          Without --state-dir heads live in memory only.  Examples are never persisted.  A
 *          running job's training checkpoint (after each epoch) is D/checkpoints/job-NNNNNN.ckpt,
 *          deleted when the job finishes (the shared store keeps it in PostgreSQL, where another
 *          replica resumes the job from it).
 *
 * Threads: handlers run on HTTP threads and never block on training; the store locks inside. */
#ifndef SRV_ADMIN_H
#define SRV_ADMIN_H
#include <stddef.h>
#include <stdint.h>

#include "admin_store.h"
#include "http.h"
#include "server.h"
#include "trainer.h"
#include "vit.h"

#define ADMIN_MAX_TOKEN 4096

/* The admin token: from file when given (first line, trimmed; the file's mode is not checked:
 * Kubernetes mounts Secrets group-readable, compose's file secrets must be readable by the
 * image's user), else value (VITD_ADMIN_TOKEN, which main.c reads; NULL or "": none),
 * into tok.  1 read, 0 none configured (the API is off), -1 with err set (unreadable file, empty
 * file, shorter than 16 or longer than ADMIN_MAX_TOKEN bytes, spaces or control characters);
 * err never holds the token. */
int admin_token_read(const char *file, const char *value, char tok[ADMIN_MAX_TOKEN + 1], char *err, size_t errlen);

typedef struct admin_http admin_http;
typedef struct admin_http_opts {
    srv_state *st;                /* the model's feature size, fingerprint and batcher */
    adm_store *store;
    trainer *trainer;             /* NULL when the API is off */
    const char *token;            /* NULL or "": off (every /admin/ path answers 404) */
} admin_http_opts;

/* Register /admin/ on http.  Everything in o must outlive the HTTP server.  Returns the
 * handlers' context (free it after the HTTP server stopped), or NULL with err set. */
admin_http *admin_http_start(srv_http *http, const admin_http_opts *o, char *err, size_t errlen);
void admin_http_free(admin_http *a);

/* Strict parse of a POST /admin/train body (admin_parse.c): empty or a JSON object whose fields
 * (epochs, lr, batch_size, weight_decay, val_fraction, momentum, seed, optimizer, labels) are
 * all optional and range-checked.  Fills o and mode (defaults first).  0, or -1 with a one-line
 * reason in msg. */
int admin_parse_train(const uint8_t *body, size_t len, vit_train_opts *o, vit_label_mode *mode, char *msg,
                      size_t msglen);

#endif
