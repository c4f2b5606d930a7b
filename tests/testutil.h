/*
 * testutil.h - helpers shared by the C tests: a seeded random generator
 * (fresh seed every run, printed so a failure can be replayed with
 * MOE_TEST_SEED), relative error, poisoned buffers.
 */
#ifndef MOE_TESTUTIL_H
#define MOE_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct tu_rng {
  uint64_t s;
} tu_rng;

/* Seed: MOE_TEST_SEED if set, else time and address entropy. Printed. */
static inline uint64_t tu_seed(void) {
  static uint64_t seed;
  if (!seed) {
    const char *e = getenv("MOE_TEST_SEED");
    if (e && *e) {
      seed = strtoull(e, NULL, 0);
    } else {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      seed = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
             (uint64_t)(uintptr_t)&ts;
    }
    if (!seed) seed = 1;
    fprintf(stderr, "test seed: MOE_TEST_SEED=%llu\n",
            (unsigned long long)seed);
  }
  return seed;
}

static inline tu_rng tu_rng_make(uint64_t stream) {
  tu_rng r;
  r.s = tu_seed() ^ (stream * 0x9E3779B97F4A7C15ull);
  if (!r.s) r.s = 0x12345;
  return r;
}

static inline uint64_t tu_next(tu_rng *r) {
  /* xorshift64* */
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  return r->s * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [lo, hi). */
static inline float tu_uniform(tu_rng *r, float lo, float hi) {
  double u = (double)(tu_next(r) >> 11) * (1.0 / 9007199254740992.0);
  return (float)(lo + (hi - lo) * u);
}

static inline int tu_int(tu_rng *r, int n) {
  return (int)(tu_next(r) % (uint64_t)n);
}

/* ||a - b|| / ||b|| in double; returns INFINITY if any value is NaN. */
static inline double tu_rel_error(const float *a, const float *b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    if (isnan(a[i]) || isnan(b[i])) return INFINITY;
    double d = (double)a[i] - (double)b[i];
    num += d * d;
    den += (double)b[i] * (double)b[i];
  }
  if (den == 0) return num == 0 ? 0 : INFINITY;
  return sqrt(num / den);
}

/* Fills bytes with a poison pattern (0xFF bytes: NaN in f32, f16, bf16). */
static inline void tu_poison(void *p, size_t bytes) {
  memset(p, 0xFF, bytes);
}

/* 1 when every byte still holds the poison. */
static inline int tu_all_poison(const void *p, size_t bytes) {
  const unsigned char *c = (const unsigned char *)p;
  for (size_t i = 0; i < bytes; i++)
    if (c[i] != 0xFF) return 0;
  return 1;
}

#endif
