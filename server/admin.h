/* admin.h: the admin API (issue 7): teach the served model new labels online by training its
 * head on stored example features, with background jobs, head versions, atomic activation,
 * rollback and persistence in a state directory.  Everything lives under /admin/ and needs
 * `Authorization: Bearer <token>`.
 *
 *   token: --admin-token-file F (env VITD_ADMIN_TOKEN_FILE) (first line, surrounding whitespace trimmed), else the
 *          VITD_ADMIN_TOKEN environment variable; at least 16 bytes.  No token configured:
 *          the admin API is disabled and every /admin/ path answers 404 (never open).
 *          Missing or wrong token: 401 with `WWW-Authenticate: Bearer realm="vitd-admin"`.
 *          The comparison takes the same time whatever the client sent.
 *   state: --state-dir D keeps head versions (D/heads/head-NNNNNN.safetensors) and the active
 *          choice (D/active.json); every file is written to a temporary file, fsynced, renamed,
 *          and the directory fsynced.  Restored at start-up; a corrupt file is logged and skipped.
 *          Without --state-dir heads live in memory only.  Examples are never persisted.
 *
 * Threads: handlers run on HTTP threads and never block on training; one trainer thread (nice 10,
 * so /classify keeps priority) runs the jobs in order.  All admin state is behind one mutex. */
#ifndef SRV_ADMIN_H
#define SRV_ADMIN_H
#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "server.h"
#include "vit.h"

 /* admin_init: after the model and batcher are up: read the token, restore the state
 * (activating the persisted head), register the /admin/ route, start the trainer.  Returns 0,
 * or -1 with err set (unreadable token file, token too short, state dir unusable).
 * admin_shutdown: cancel running jobs, stop the trainer, free everything. */
int admin_init(srv_state *st, srv_http *http, char *err, size_t errlen);
void admin_shutdown(void);

/* Strict parse of a POST /admin/train body (admin_parse.c): empty or a JSON object whose fields
 * (epochs, lr, batch_size, weight_decay, val_fraction, momentum, seed, optimizer, labels) are
 * all optional and range-checked.  Fills o and mode (defaults first).  0, or -1 with a one-line
 * reason in msg. */
int admin_parse_train(const uint8_t *body, size_t len, vit_train_opts *o, vit_label_mode *mode, char *msg,
                      size_t msglen);

#endif
