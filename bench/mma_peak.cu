// mma_peak.cu - the mma.sync ceilings of this GPU, against which the
// cuda-mma tiles are measured (bench/NOTES.md):
//   regs  m16n8k16 bf16 MMAs from registers only: 32 independent
//         accumulators a warp (the 64 x 64 warp tile's), no memory;
//   smem  the same MMAs fed by ldmatrix.x4 from shared memory in the
//         64 x 64 warp tile's pattern (4 A + 4 B loads per 32 MMAs),
//         XOR-swizzled rows as in gemm.cuh;
// on every SM, with 4 and 8 warps a SM (one or two CTAs of the 128 x 128
// tile; more do not fit its registers). Prints TFLOP/s (median of 5).
// Build (from the repository root):
//   nvcc -O3 -arch=sm_90a -Iinclude -Isrc bench/mma_peak.cu -o mma_peak
#include <algorithm>
#include <cstdio>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "bench_check.h"

#include "cuda/common.cuh"

/* 32 MMAs a step (MI = 4 row blocks x NI = 8 column blocks), SMEM = 1:
 * their fragments loaded from shared memory first. */
template <int SMEM>
__global__ void __launch_bounds__(128) peak_kernel(int steps, float *out) {
  __shared__ __align__(128) unsigned char sm[2 * 64 * 128];
  const int lane = threadIdx.x & 31;
  const uint32_t base = smem_u32(sm);
  for (int i = threadIdx.x; i < (int)sizeof sm / 4; i += blockDim.x)
    ((uint32_t *)sm)[i] = 0x3c003c00u ^ (uint32_t)i; /* finite bf16 pairs */
  __syncthreads();
  float acc[4][8][4];
  uint32_t af[4][4], bf[8][2];
#pragma unroll
  for (int mi = 0; mi < 4; mi++)
#pragma unroll
    for (int q = 0; q < 4; q++)
      af[mi][q] = 0x3c003c00u + (uint32_t)(lane + mi + q);
#pragma unroll
  for (int ni = 0; ni < 8; ni++) {
    bf[ni][0] = 0x3c003c00u + (uint32_t)(lane + ni);
    bf[ni][1] = 0x3c003c00u - (uint32_t)(lane + ni);
  }
#pragma unroll
  for (int mi = 0; mi < 4; mi++)
#pragma unroll
    for (int ni = 0; ni < 8; ni++)
#pragma unroll
      for (int q = 0; q < 4; q++)
        acc[mi][ni][q] = 0.0f;
  for (int s = 0; s < steps; s++) {
    if (SMEM) {
      const int kk = s & 3; /* four k16 slices of a 64-wide row */
#pragma unroll
      for (int mi = 0; mi < 4; mi++) {
        const int r = mi * 16 + (lane & 15), ch = kk * 2 + (lane >> 4);
        ldmatrix_x4(af[mi], base + (r * 64 + ((ch ^ (r & 7)) << 3)) * 2);
      }
#pragma unroll
      for (int nj = 0; nj < 4; nj++) {
        uint32_t b[4];
        const int r = nj * 16 + (lane & 7) + ((lane >> 4) << 3);
        const int ch = kk * 2 + ((lane >> 3) & 1);
        ldmatrix_x4(b, base + 64 * 128 + (r * 64 + ((ch ^ (r & 7)) << 3)) * 2);
        bf[2 * nj][0] = b[0], bf[2 * nj][1] = b[1];
        bf[2 * nj + 1][0] = b[2], bf[2 * nj + 1][1] = b[3];
      }
    }
#pragma unroll
    for (int mi = 0; mi < 4; mi++)
#pragma unroll
      for (int ni = 0; ni < 8; ni++)
        mma_16816<__nv_bfloat16>(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
  }
  float sum = 0.0f;
#pragma unroll
  for (int mi = 0; mi < 4; mi++)
#pragma unroll
    for (int ni = 0; ni < 8; ni++)
#pragma unroll
      for (int q = 0; q < 4; q++)
        sum += acc[mi][ni][q];
  out[blockIdx.x * blockDim.x + threadIdx.x] = sum;
}

template <int SMEM> static int run(int sms, int warps_per_sm, double *tflops) {
  const int threads = 128, blocks = sms * warps_per_sm / 4, steps = 4096;
  float *out = nullptr;
  CHECK(cudaMalloc(&out, (size_t)blocks * threads * sizeof(float)));
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  peak_kernel<SMEM><<<blocks, threads>>>(steps, out); /* warm-up */
  CHECK(cudaGetLastError());
  float ms[5];
  for (int i = 0; i < 5; i++) {
    CHECK(cudaEventRecord(a));
    peak_kernel<SMEM><<<blocks, threads>>>(steps, out);
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    CHECK(cudaEventElapsedTime(&ms[i], a, b));
  }
  std::sort(ms, ms + 5);
  const double flops = 2.0 * 16 * 8 * 16 * 32 * (double)steps * blocks * 4;
  *tflops = flops / (ms[2] * 1e-3) / 1e12;
  CHECK(cudaFree(out));
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  return 0;
}

int main() {
  int dev = 0, sms = 0, maj = 0, mnr = 0;
  CHECK(cudaGetDevice(&dev));
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  CHECK(cudaDeviceGetAttribute(&maj, cudaDevAttrComputeCapabilityMajor, dev));
  CHECK(cudaDeviceGetAttribute(&mnr, cudaDevAttrComputeCapabilityMinor, dev));
  printf("sm_%d%d, %d SMs: mma.sync m16n8k16 bf16, TFLOP/s (median of 5)\n",
         maj, mnr, sms);
  printf("%12s %10s %10s\n", "warps/SM", "regs", "smem");
  int occ = 0;
  CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, peak_kernel<1>, 128,
                                                      0));
  printf("(at most %d CTAs of 4 warps resident a SM)\n", occ);
  for (int w = 4; w <= 8 && w <= 4 * occ; w *= 2) {
    double r = 0, s = 0;
    if (run<0>(sms, w, &r) || run<1>(sms, w, &s)) return 1;
    printf("%12d %10.1f %10.1f\n", w, r, s);
  }
  return 0;
}
