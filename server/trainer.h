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
/* SIGTERM: with a store other replicas share (job_release), hand the running job over (stopped
 * at its next epoch end with that epoch's checkpoint, or at once when that would come later than
 * timeout_s less a margin of up to a second; then released for another replica to resume) and
 * claim no more.  A store no other process shares keeps its job running (trainer_stop ends it).
 * NULL: nothing. */
void trainer_drain(trainer *t, double timeout_s);
/* After trainer_drain: 1 while the job to hand over still runs (or a claim is under way), 0 once
 * it is handed over or finished.  0 without a drain, for a store with no job_release, and for
 * NULL. */
int trainer_busy(trainer *t);
/* Ask the running job to stop, join the thread, free t (NULL: nothing).  The job is released
 * as on a drain when the store allows it, else it ends cancelled ("vitd is shutting down"). */
void trainer_stop(trainer *t);

#endif
