/* trainer.h: the admin API's training thread (server/trainer.c): claims queued jobs from the
 * admin store, trains a head on each job's example snapshot (on the GPU when the model runs
 * there, at nice 10 so /classify keeps priority), publishes the result as a new head version
 * and writes progress, results and failures back through the store.
 *
 * Threads: one thread of its own; trainer_kick and trainer_stop from any other thread. */
#ifndef SRV_TRAINER_H
#define SRV_TRAINER_H
#include <stddef.h>

#include "admin_store.h"
#include "batcher.h"

typedef struct trainer trainer;

/* Start the thread.  store must outlive the trainer; batcher (may be NULL: train on the CPU)
 * only tells which device the model runs on.  0, or -1 with err set. */
int trainer_start(adm_store *store, batcher *b, trainer **out, char *err, size_t errlen);
/* A job was queued: look now rather than at the next poll. */
void trainer_kick(trainer *t);
/* Ask the running job to stop (it ends cancelled), join the thread, free t (NULL: nothing). */
void trainer_stop(trainer *t);

#endif
