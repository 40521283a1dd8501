/* cpu_pool.h: a tiny fork-join thread pool for the CPU backend's non-GEMM work (attention,
 * LayerNorm, GELU).  Idle workers sleep on a condition variable, never spin, so they do not
 * steal cycles from OpenBLAS's own threads while a GEMM runs.  One pool per session. */
#ifndef VIT_CPU_POOL_H
#define VIT_CPU_POOL_H

typedef struct cpu_pool cpu_pool;

/* fn(ctx, task, worker): worker in [0, nthreads) identifies per-thread scratch */
typedef void (*cpu_pool_fn)(void *ctx, int task, int worker);

/* nthreads >= 1 in total, the caller included (nthreads - 1 threads are started).
 * Returns NULL on failure. */
cpu_pool *cpu_pool_new(int nthreads);
void cpu_pool_free(cpu_pool *p);          /* NULL harmless */
int cpu_pool_size(const cpu_pool *p);
/* Run fn for task = 0..ntasks-1 on all threads (the caller too); returns when all are done. */
void cpu_pool_run(cpu_pool *p, int ntasks, cpu_pool_fn fn, void *ctx);

#endif
