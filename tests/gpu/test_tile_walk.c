/*
 * test_tile_walk.c - the grouped GEMMs' tile order (src/cuda/tile_walk.h) on
 * the host: for every walk size and band, each (row tile, N tile) pair is
 * taken exactly once, and within a band the N tile never goes back (the
 * order that keeps a band's CTAs on the same weights). Runs without a GPU.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cuda/tile_walk.h"

static void check_walk(int mt, int nt0, int R) {
  const int n = mt * nt0;
  unsigned char *seen = calloc((size_t)n, 1);
  assert_non_null(seen);
  int prev_b = -1, prev_nt = -1;
  for (int t = 0; t < n; t++) {
    int m = -1, nt = -1;
    moe_band_walk(t, mt, nt0, R, &m, &nt);
    assert_in_range(m, 0, mt - 1);
    assert_in_range(nt, 0, nt0 - 1);
    assert_int_equal(seen[m * nt0 + nt], 0);
    seen[m * nt0 + nt] = 1;
    const int b = m / R; /* the band of row tile m */
    if (b == prev_b)
      assert_true(nt >= prev_nt);
    else
      assert_true(b == prev_b + 1); /* bands in order */
    prev_b = b;
    prev_nt = nt;
  }
  for (int i = 0; i < n; i++)
    assert_int_equal(seen[i], 1);
  free(seen);
}

static void test_walk_is_a_permutation(void **state) {
  (void)state;
  static const int bands[] = {1, 2, 3, 4, 7, 16, 64};
  for (int mt = 1; mt <= 41; mt++)
    for (int nt0 = 1; nt0 <= 23; nt0 += 2)
      for (size_t i = 0; i < sizeof bands / sizeof bands[0]; i++)
        check_walk(mt, nt0, bands[i]);
}

/* R = 1 is the plain row-tile-major walk. */
static void test_band_one_is_row_major(void **state) {
  (void)state;
  for (int t = 0; t < 7 * 5; t++) {
    int m, nt;
    moe_band_walk(t, 7, 5, 1, &m, &nt);
    assert_int_equal(m, t / 5);
    assert_int_equal(nt, t % 5);
  }
}

/* A band of R row tiles, N tile outermost: t = nt * R + (m - r0). */
static void test_band_order(void **state) {
  (void)state;
  int m, nt;
  moe_band_walk(0, 40, 6, 16, &m, &nt);
  assert_int_equal(m, 0);
  assert_int_equal(nt, 0);
  moe_band_walk(15, 40, 6, 16, &m, &nt);
  assert_int_equal(m, 15);
  assert_int_equal(nt, 0);
  moe_band_walk(16, 40, 6, 16, &m, &nt);
  assert_int_equal(m, 0);
  assert_int_equal(nt, 1);
  /* the last band holds 40 - 32 = 8 row tiles */
  moe_band_walk(2 * 16 * 6 + 9, 40, 6, 16, &m, &nt);
  assert_int_equal(m, 33);
  assert_int_equal(nt, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_walk_is_a_permutation),
      cmocka_unit_test(test_band_one_is_row_major),
      cmocka_unit_test(test_band_order),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
