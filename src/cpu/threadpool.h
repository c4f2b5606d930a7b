/*
 * threadpool.h - a persistent pool of pthreads owned by one CPU layer.
 * Threads are created once (cpu_pool_create) and joined once
 * (cpu_pool_destroy); a run only wakes them, so a forward call creates no
 * thread and allocates nothing.
 */
#ifndef MOE_CPU_THREADPOOL_H
#define MOE_CPU_THREADPOOL_H

/* A task: runs once on every thread, tid in [0, nthreads). */
typedef void (*cpu_task_fn)(void *arg, int tid, int nthreads);

typedef struct cpu_pool cpu_pool;

/* nthreads >= 1; the calling thread of cpu_pool_run is thread 0, so
 * nthreads - 1 threads are started. Returns NULL when a thread or the pool
 * cannot be created (nothing is left behind). */
cpu_pool *cpu_pool_create(int nthreads);
void cpu_pool_destroy(cpu_pool *p); /* NULL is fine */
int cpu_pool_threads(const cpu_pool *p);
/* Runs fn(arg, tid, n) on all threads and returns when all have finished.
 * Not reentrant: one run at a time per pool. */
void cpu_pool_run(cpu_pool *p, cpu_task_fn fn, void *arg);

#endif
