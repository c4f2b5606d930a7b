/*
 * route.cuh - routing of one token by one warp (moe.h rules), shared by the
 * routing kernel and the fused route + permute kernel.
 *
 * key[e] (shared memory, E floats per warp) holds the selection score:
 * the logit for softmax (softmax is monotonic, so the order is the same),
 * sigmoid + correction bias for sigmoid scoring, -Inf for non-finite logits
 * and for experts of groups that were not kept. Chosen experts are marked
 * NaN. Every comparison breaks ties towards the lower index.
 */
#ifndef MOE_CUDA_ROUTE_CUH
#define MOE_CUDA_ROUTE_CUH

#include "common.cuh"

#include <math.h>

/* (v, i) beats (bv, bi): larger value, then lower index; bi < 0 is empty. */
__device__ __forceinline__ bool route_better(float v, int i, float bv, int bi) {
  return bi < 0 || v > bv || (v == bv && i < bi);
}

/* Order-preserving map of a float to uint32 (-0 taken as +0, so that equal
 * floats map to equal keys); 0 stays below every float, -Inf included. */
__device__ __forceinline__ uint32_t route_ord(float v) {
  const uint32_t b = __float_as_uint(v == 0.0f ? 0.0f : v);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

/* The warp's best (bv, bi) by route_better, on every lane: two warp
 * reductions (largest key, then lowest index holding it) instead of five
 * rounds of two shuffles. Values are never NaN here. */
__device__ __forceinline__ void route_warp_best(float &bv, int &bi) {
  const uint32_t o = bi >= 0 ? route_ord(bv) : 0u;
  const uint32_t m = __reduce_max_sync(0xffffffffu, o);
  const uint32_t c = bi >= 0 && o == m ? (uint32_t)bi : 0xffffffffu;
  const uint32_t i = __reduce_min_sync(0xffffffffu, c);
  if (i == 0xffffffffu) {
    bi = -1;
    return;
  }
  bv = __uint_as_float((m & 0x80000000u) ? (m & 0x7fffffffu) : ~m);
  bi = (int)i;
}

__device__ __forceinline__ float route_sigmoid(float x) {
  return 1.0f / (1.0f + expf(-x));
}

/* Routes token t into ids[k] and w[k] (global or shared memory); all 32
 * lanes of the warp call it. Mirrors the reference (src/cpu/route.c) step
 * by step, so that ids agree on untied data: the softmax is
 * s = exp(l - max) * (1 / sum), the key is s (+ bias), and an expert is
 * selectable only when its logit and key are finite. */
static __device__ void route_token_warp_to(const mma_route_args &r, int t,
                                           float *key, int32_t *ids, float *w) {
  /* Per-warp scratch: key[E], the weights sv[E], the chosen weights [k]. */
  float *sv = key + r.E, *wsel = key + 2 * r.E;
  const int lane = threadIdx.x & 31, E = r.E;
  const float *lg = r.logits + (long long)t * E;
  const bool softmax = r.scoring == MOE_SCORING_SOFTMAX;
  const float *bias = softmax ? nullptr : r.bias;
  float mx = -INFINITY, inv = 0.0f;
  if (softmax) {
    for (int e = lane; e < E; e += 32) {
      float l = lg[e];
      if (isfinite(l)) mx = fmaxf(mx, l);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0.0f;
    for (int e = lane; e < E; e += 32) {
      float l = lg[e];
      if (isfinite(l)) sum += expf(l - mx);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
      sum += __shfl_xor_sync(0xffffffffu, sum, o);
    inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  }
  for (int e = lane; e < E; e += 32) {
    float l = lg[e], kv = -INFINITY, sw = 0.0f;
    if (isfinite(l)) {
      sw = softmax ? expf(l - mx) * inv : route_sigmoid(l);
      kv = bias ? sw + bias[e] : sw;
      if (!isfinite(kv)) kv = -INFINITY;
    }
    key[e] = kv;
    sv[e] = sw;
  }
  __syncwarp();

  /* Grouped selection: keep the topk_group best groups. */
  const int G = r.n_group, keepn = r.topk_group;
  if (G > 1 && G <= E && E % G == 0 && keepn > 0 && keepn < G) {
    const int gs = E / G;
    float gsc[2];
    bool keep[2] = {false, false};
#pragma unroll
    for (int q = 0; q < 2; q++) {
      const int g = lane + 32 * q;
      gsc[q] = -INFINITY;
      if (g >= G) continue;
      float b1 = -INFINITY, b2 = -INFINITY;
      for (int e = g * gs; e < (g + 1) * gs; e++) {
        float v = key[e];
        if (v > b1) {
          b2 = b1;
          b1 = v;
        } else if (v > b2) {
          b2 = v;
        }
      }
      gsc[q] = (bias && gs >= 2) ? b1 + b2 : b1;
    }
    __syncwarp(); /* every lane has read its groups' keys */
    for (int s = 0; s < keepn; s++) {
      float bv = -INFINITY;
      int bi = -1;
#pragma unroll
      for (int q = 0; q < 2; q++) {
        const int g = lane + 32 * q;
        if (g < G && !keep[q] && route_better(gsc[q], g, bv, bi)) {
          bv = gsc[q];
          bi = g;
        }
      }
      route_warp_best(bv, bi);
      if (bi >= 0 && (bi & 31) == lane) {
        if (bi >> 5)
          keep[1] = true;
        else
          keep[0] = true;
      }
    }
    for (int e0 = 0; e0 < E; e0 += 32) {
      const int e = e0 + lane;
      const int g = (e < E ? e : E - 1) / gs;
      const int k0 = __shfl_sync(0xffffffffu, (int)keep[0], g & 31);
      const int k1 = __shfl_sync(0xffffffffu, (int)keep[1], g & 31);
      if (e < E && !((g >> 5) ? k1 : k0)) key[e] = -INFINITY;
    }
    __syncwarp();
  }

  /* top-k, in order; lane 0 writes ids and (unnormalised) weights. */
  float wsum = 0.0f;
  for (int s = 0; s < r.k; s++) {
    float bv = -INFINITY;
    int bi = -1;
    for (int e = lane; e < E; e += 32) {
      float v = key[e];
      if (!isnan(v) && route_better(v, e, bv, bi)) {
        bv = v;
        bi = e;
      }
    }
    route_warp_best(bv, bi);
    __syncwarp(); /* every lane has read the keys of this round */
    if (lane == 0) {
      /* Not selectable (key -Inf): a fill slot, weight 0. */
      const float wt = bv != -INFINITY ? sv[bi] : 0.0f;
      ids[s] = bi;
      wsel[s] = wt;
      wsum += wt;
      key[bi] = NAN;
    }
    __syncwarp();
  }
  wsum = __shfl_sync(0xffffffffu, wsum, 0);
  const bool norm = r.renormalize && wsum > 0.0f;
  for (int s = lane; s < r.k; s += 32)
    w[s] = (norm ? wsel[s] / wsum : wsel[s]) * r.scale;
}

/* Routes token t into r.ids and r.weights. */
static __device__ void route_token_warp(const mma_route_args &r, int t,
                                        float *key) {
  route_token_warp_to(r, t, key, r.ids + (long long)t * r.k,
                      r.weights + (long long)t * r.k);
}

#endif
