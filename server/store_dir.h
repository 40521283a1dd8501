/* store_dir.h: the admin store in one process (server/store_dir.c): memory, plus examples, head
 * versions and the active choice in a state directory when one is given (see admin_store.h for the
 * interface and its rules). */
#ifndef SRV_STORE_DIR_H
#define SRV_STORE_DIR_H
#include <stddef.h>

#include "admin_store.h"

typedef struct store_dir_opts {
    const char *state_dir;        /* NULL or "": memory only */
    int dim;                      /* feature size of the model's backbone */
    const char *fingerprint;      /* the backbone's fingerprint: stored examples of another one are
                                   * skipped at open; NULL: not checked */
    vit_head *base_head;          /* version 1 (retained by the store) */
    double base_created;          /* its creation time (unix seconds; the checkpoint's mtime) */
    adm_store_hooks hooks;        /* on_active runs at open for a stored choice */
} store_dir_opts;

/* Open (creating D, D/heads, D/checkpoints and D/examples when missing; restoring what they hold, a corrupt file logged and
 * skipped) and fill *out.  0, or -1 with err set (state directory unusable, out of memory). */
int store_dir_open(const store_dir_opts *o, adm_store *out, char *err, size_t errlen);

#endif
