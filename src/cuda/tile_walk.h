/*
 * tile_walk.h - the order in which the grouped GEMMs take their tiles
 * (cuda-mma's grid in gemm.cuh, cuda-sm90's persistent walk in
 * gemm_sm90.cu): plain C, shared with a host test
 * (tests/gpu/test_tile_walk.c) that proves it a permutation.
 *
 * A walk covers mt row tiles x nt0 N tiles. Row tiles are taken in bands of
 * R; within a band the N tile is the slow index, so the CTAs in
 * flight (P of them) read R row tiles of A and ~P / R N tiles of W, each from
 * DRAM once, instead of every row tile of a large expert streaming all of that
 * expert's weights again. R = 1 is row tile major. The last band may hold
 * fewer than R row tiles.
 */
#ifndef MOE_CUDA_TILE_WALK_H
#define MOE_CUDA_TILE_WALK_H

#ifdef __CUDACC__
#define MOE_WALK_FN static __host__ __device__ __forceinline__
#else
#define MOE_WALK_FN static inline
#endif

/* Row tile *m and N tile *nt of walk index t (0 <= t < mt * nt0; R >= 1). */
MOE_WALK_FN void moe_band_walk(int t, int mt, int nt0, int R, int *m, int *nt) {
  const int per = R * nt0;
  const int b = t / per, r0 = b * R;
  const int rb = mt - r0 < R ? mt - r0 : R;
  const int ti = t - b * per;
  *nt = ti / rb;
  *m = r0 + ti - *nt * rb;
}

#endif
