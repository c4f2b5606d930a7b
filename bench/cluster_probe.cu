// cluster_probe.cu - how many clusters of 1, 2 and 4 CTAs of the cuda-sm90
// GEMM's shape (384 threads, the GEMM's dynamic shared memory) can be
// resident at once on this GPU. Build: nvcc -arch=sm_90a -Isrc
// bench/cluster_probe.cu -o /tmp/cluster_probe
#include <cstdio>
#include <cuda_runtime.h>

#include "cuda/mma.h"
#include "cuda_sm90/sm90.h"

__global__ void probe_kernel(int *p) {
  extern __shared__ int s[];
  if (p) p[0] = s[0];
}

int main() {
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  cudaFuncSetAttribute(probe_kernel,
                       cudaFuncAttributeMaxDynamicSharedMemorySize, SM90_SMEM);
  cudaFuncSetAttribute(probe_kernel,
                       cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  printf("SMs %d, dynamic shared memory %d bytes\n", sms, SM90_SMEM);
  for (int c = 1; c <= 16; c *= 2) {
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute at[1];
    cfg.gridDim = dim3(c * 4, 1, 1);
    cfg.blockDim = dim3(384, 1, 1);
    cfg.dynamicSmemBytes = SM90_SMEM;
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = c;
    at[0].val.clusterDim.y = 1;
    at[0].val.clusterDim.z = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    int n = -1;
    cudaError_t e = cudaOccupancyMaxActiveClusters(&n, probe_kernel, &cfg);
    printf("cluster %2d: %3d resident clusters = %3d CTAs (%s)\n", c, n, n * c,
           cudaGetErrorString(e));
  }
  return 0;
}
