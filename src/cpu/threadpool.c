/*
 * threadpool.c - persistent worker threads woken by a generation counter.
 *
 * Workers spin briefly on the generation before sleeping on a condition
 * variable: decode calls issue a few runs back to back, and a sleeping
 * worker costs tens of microseconds to wake, which is visible next to a
 * millisecond of weight streaming. The spin is bounded so idle layers do not
 * burn a core.
 */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define POOL_SPIN 4000

struct cpu_pool {
  int n;
  pthread_t *threads;
  pthread_mutex_t mu;
  pthread_cond_t wake;
  pthread_cond_t done;
  atomic_uint gen;    /* bumped once per run */
  atomic_int pending; /* workers still running the current task */
  atomic_int stop;
  cpu_task_fn fn;
  void *arg;
  int started; /* threads actually created */
};

typedef struct worker_arg {
  cpu_pool *p;
  int tid;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static void *worker_main(void *v) {
  cpu_pool *p = ((worker_arg *)v)->p;
  int tid = ((worker_arg *)v)->tid;
  free(v);
  /* gen is 0 before any worker starts: reading it here instead would race
   * with a first run issued before this thread is scheduled. */
  unsigned seen = 0;
  for (;;) {
    int spins = 0;
    while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen &&
           !atomic_load(&p->stop) && spins < POOL_SPIN) {
      cpu_relax();
      spins++;
    }
    if (atomic_load_explicit(&p->gen, memory_order_acquire) == seen &&
        !atomic_load(&p->stop)) {
      pthread_mutex_lock(&p->mu);
      while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->wake, &p->mu);
      pthread_mutex_unlock(&p->mu);
    }
    if (atomic_load(&p->stop)) break;
    seen = atomic_load_explicit(&p->gen, memory_order_acquire);
    p->fn(p->arg, tid, p->n);
    if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
      pthread_mutex_lock(&p->mu);
      pthread_cond_signal(&p->done);
      pthread_mutex_unlock(&p->mu);
    }
  }
  return NULL;
}

cpu_pool *cpu_pool_create(int nthreads) {
  if (nthreads < 1) nthreads = 1;
  cpu_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->n = nthreads;
  atomic_init(&p->gen, 0);
  atomic_init(&p->pending, 0);
  atomic_init(&p->stop, 0);
  if (pthread_mutex_init(&p->mu, NULL)) {
    free(p);
    return NULL;
  }
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->done, NULL);
  if (nthreads > 1) {
    p->threads = calloc((size_t)nthreads - 1, sizeof *p->threads);
    if (!p->threads) {
      cpu_pool_destroy(p);
      return NULL;
    }
  }
  for (int i = 1; i < nthreads; i++) {
    worker_arg *a = malloc(sizeof *a);
    if (!a) {
      cpu_pool_destroy(p);
      return NULL;
    }
    a->p = p;
    a->tid = i;
    if (pthread_create(&p->threads[i - 1], NULL, worker_main, a)) {
      free(a);
      cpu_pool_destroy(p);
      return NULL;
    }
    p->started++;
  }
  return p;
}

void cpu_pool_destroy(cpu_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->stop, 1);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->started; i++)
    pthread_join(p->threads[i], NULL);
  free(p->threads);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->done);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

int cpu_pool_threads(const cpu_pool *p) {
  return p ? p->n : 1;
}

void cpu_pool_run(cpu_pool *p, cpu_task_fn fn, void *arg) {
  if (!p || p->n == 1) {
    fn(arg, 0, 1);
    return;
  }
  p->fn = fn;
  p->arg = arg;
  atomic_store(&p->pending, p->n - 1);
  pthread_mutex_lock(&p->mu);
  atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  fn(arg, 0, p->n);
  int spins = 0;
  while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0 &&
         spins < POOL_SPIN) {
    cpu_relax();
    spins++;
  }
  if (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->pending) > 0)
      pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
  }
}
