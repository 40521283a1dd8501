/* cpu_pool.c: fork-join pool (see cpu_pool.h).  Tasks are claimed with an atomic counter; the
 * caller works too and then waits until every worker has left the job.  Between jobs of one
 * forward pass (microseconds apart) a worker spins briefly on the job counter before it sleeps
 * on the condition variable, so back-to-back jobs do not pay a futex wake-up each; an idle
 * session's threads sleep after ~50 us. */
#include "cpu/cpu_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_ROUNDS 4000 /* ~50 us of pause instructions */

typedef struct {
    cpu_pool *pool;
    int id;
} worker_arg;

struct cpu_pool {
    int n;                       /* threads in total, caller included */
    pthread_t *threads;          /* n - 1 */
    worker_arg *args;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    atomic_ulong generation;     /* bumped per job (under mu) */
    atomic_int busy;             /* workers still inside the current job */
    int quit;
    cpu_pool_fn fn;
    void *ctx;
    int ntasks;
    atomic_int next;
};

static void drain(cpu_pool *p, cpu_pool_fn fn, void *ctx, int ntasks, int id) {
    for (;;) {
        int t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= ntasks) break;
        fn(ctx, t, id);
    }
}

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    cpu_pool *p = wa->pool;
    unsigned long seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN_ROUNDS && atomic_load(&p->generation) == seen; i++) cpu_relax();
        pthread_mutex_lock(&p->mu);
        while (!p->quit && atomic_load(&p->generation) == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        seen = atomic_load(&p->generation);
        cpu_pool_fn fn = p->fn;
        void *ctx = p->ctx;
        int ntasks = p->ntasks;
        pthread_mutex_unlock(&p->mu);
        drain(p, fn, ctx, ntasks, wa->id);
        if (atomic_fetch_sub(&p->busy, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

cpu_pool *cpu_pool_new(int nthreads) {
    if (nthreads < 1) nthreads = 1;
    cpu_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (nthreads > 1) {
        p->threads = calloc((size_t)nthreads - 1, sizeof *p->threads);
        p->args = calloc((size_t)nthreads - 1, sizeof *p->args);
        if (!p->threads || !p->args) { p->n = 1; cpu_pool_free(p); return NULL; }
        for (int i = 0; i < nthreads - 1; i++) {
            p->args[i] = (worker_arg){p, i + 1};
            if (pthread_create(&p->threads[i], NULL, worker_main, &p->args[i]) != 0) {
                p->n = i + 1; /* only i threads were started */
                cpu_pool_free(p);
                return NULL;
            }
        }
    }
    return p;
}

void cpu_pool_free(cpu_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n - 1; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p->args);
    free(p);
}

int cpu_pool_size(const cpu_pool *p) { return p ? p->n : 1; }

void cpu_pool_run(cpu_pool *p, int ntasks, cpu_pool_fn fn, void *ctx) {
    if (ntasks <= 0) return;
    if (p->n == 1 || ntasks == 1) {
        for (int t = 0; t < ntasks; t++) fn(ctx, t, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->ntasks = ntasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store(&p->busy, p->n - 1);
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    drain(p, fn, ctx, ntasks, 0);
    for (int i = 0; i < SPIN_ROUNDS && atomic_load(&p->busy) > 0; i++) cpu_relax();
    if (atomic_load(&p->busy) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->busy) > 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
