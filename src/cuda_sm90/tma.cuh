/*
 * tma.cuh - the Hopper (sm_90a) pieces of the cuda-sm90 backend:
 *
 *   host   tensor maps (cuTensorMapEncodeTiled, reached through
 *          cudaGetDriverEntryPointByVersion: the library never links libcuda)
 *   device thin PTX wrappers: mbarrier (init, arrive, arrive.expect_tx,
 *          try_wait.parity), fence.proxy.async, cp.async.bulk.tensor (TMA
 *          2-D tile loads completing on an mbarrier), wgmma shared-memory
 *          descriptors, wgmma.mma_async m64n256k16 (bf16, f16; f32
 *          accumulators), wgmma fence / commit_group / wait_group, and
 *          setmaxnreg.
 *
 * The device wrappers exist only in the sm_90a device pass (SM90_DEVICE);
 * every other arch, and the host pass, sees none of them, so the kernels
 * that use them compile to empty bodies there.
 */
#ifndef MOE_CUDA_SM90_TMA_CUH
#define MOE_CUDA_SM90_TMA_CUH

#include <cuda.h> /* CUtensorMap and its enums (types only; no libcuda) */
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

/* K elements of a ring stage's rows: 64 (128-byte rows, 128-byte swizzle),
 * or 32 with -DSM90_BK=32 (64-byte rows and swizzle; measurement). */
#ifndef SM90_BK
#define SM90_BK 64
#endif
#if SM90_BK != 64 && SM90_BK != 32
#error "SM90_BK is 64 or 32"
#endif

/* wgmma, setmaxnreg: sm_90a only (nvcc defines __CUDA_ARCH_FEAT_SM90_ALL
 * for the arch-specific target "90a"; plain sm_90 lacks them). */
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ == 900) &&                        \
    defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SM90_DEVICE 1
#endif

/* ---- host: tensor maps ---- */

typedef PFN_cuTensorMapEncodeTiled_v12000 sm90_encode_fn;

/* The driver's cuTensorMapEncodeTiled (ABI of CUDA 12.0), or NULL. */
static inline sm90_encode_fn sm90_get_encode_fn(void) {
  void *fn = NULL;
  cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
  cudaError_t e = cudaGetDriverEntryPointByVersion(
      "cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q);
  if (e != cudaSuccess || q != cudaDriverEntryPointSuccess) {
    (void)cudaGetLastError();
    return NULL;
  }
  return (sm90_encode_fn)fn;
}

/* A 2-D row-major matrix [rows][cols] of 16-bit elements, row stride
 * ld elements, read in boxes of box_rows x 64 columns (128 bytes, the
 * 128-byte swizzle the wgmma descriptors below expect). Elements outside
 * [rows][cols] read as zero. Needs ptr 16-byte aligned, ld % 8 == 0. */
static inline int sm90_encode_2d(sm90_encode_fn enc, CUtensorMap *map,
                                 int is_bf16, const void *ptr,
                                 unsigned long long rows,
                                 unsigned long long cols, unsigned long long ld,
                                 unsigned box_rows) {
  if (!enc || !ptr || ((uintptr_t)ptr & 15) || (ld & 7) || rows == 0 ||
      cols == 0 || rows > (1ull << 32) || cols > (1ull << 32))
    return -1;
  cuuint64_t dim[2] = {cols, rows};
  cuuint64_t stride[1] = {ld * 2};
  cuuint32_t box[2] = {SM90_BK, box_rows};
  cuuint32_t estride[2] = {1, 1};
  CUresult r = enc(
      map,
      is_bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
              : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
      2, (void *)ptr, dim, stride, box, estride, CU_TENSOR_MAP_INTERLEAVE_NONE,
      SM90_BK == 64 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_64B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? 0 : -1;
}

/* ---- device (sm_90a) ---- */
#ifdef SM90_DEVICE

__device__ __forceinline__ uint32_t sm90_smem_addr(const void *p) {
  return (uint32_t)__cvta_generic_to_shared(p);
}

/* mbarrier: count arrivals complete a phase (plus any expected bytes). */
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar),
               "r"(count)
               : "memory");
}
/* Makes initialised barriers visible to the other threads and to the
 * async proxy (TMA) before first use (then a __syncthreads). */
__device__ __forceinline__ void mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar)
               : "memory");
}
/* One arrival that also announces `bytes` of incoming TMA data. */
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar,
                                                      uint32_t bytes) {
  asm volatile(
      "mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar),
      "r"(bytes)
      : "memory");
}
/* Waits until the phase of parity `parity` has completed. A fresh barrier
 * counts as having completed the phase of parity 1. */
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile("{\n .reg .pred p;\n"
                 " mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                 " selp.u32 %0, 1, 0, p;\n}\n"
                 : "=r"(done)
                 : "r"(bar), "r"(parity)
                 : "memory");
  } while (!done);
}

__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/* Bulk copy of `bytes` (a multiple of 16; both addresses 16-byte aligned)
 * from shared memory to global memory, in this thread's current bulk
 * group; the group is closed by bulk_commit and waited on by the same
 * thread. */
__device__ __forceinline__ void bulk_store(void *dst, uint32_t src,
                                           uint32_t bytes) {
  asm volatile(
      "cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(
          (uint64_t)(uintptr_t)dst),
      "r"(src), "r"(bytes)
      : "memory");
}
__device__ __forceinline__ void bulk_commit() {
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}
/* This thread's bulk groups have read their shared memory (it may be
 * written again). */
__device__ __forceinline__ void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}
/* This thread's bulk groups are complete (their writes performed). */
__device__ __forceinline__ void bulk_wait_all() {
  asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
}

__device__ __forceinline__ void tma_prefetch_map(const CUtensorMap *m) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"((uint64_t)(uintptr_t)m)
               : "memory");
}

/* TMA: box at (column c0, row c1) of `map` into shared memory at dst;
 * completes `bar`'s transaction count with the box's bytes. */
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap *m,
                                            int c0, int c1, uint32_t bar) {
  asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::"
               "complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
               "l"((uint64_t)(uintptr_t)m), "r"(c0), "r"(c1), "r"(bar)
               : "memory");
}

/* wgmma shared-memory descriptor of a K-major tile whose rows are 128
 * bytes (64 16-bit elements), 128-byte swizzled as TMA wrote it: groups of
 * 8 rows are 1024 bytes apart (stride byte offset); the leading byte offset
 * is unused with this swizzle. (With SM90_BK 32: 64-byte rows and swizzle,
 * 512 bytes a group of 8 rows.) The tile must start 1024-byte aligned;
 * stepping K by 16 elements inside the row adds 32 bytes (2 in the
 * address field). */
__device__ __forceinline__ uint64_t wgmma_desc(uint32_t smem_addr) {
  uint64_t d = 0;
  d |= (uint64_t)((smem_addr & 0x3FFFF) >> 4);
  d |= (uint64_t)1 << 16; /* leading byte offset (unused) */
  /* stride byte offset: 8 rows of SM90_BK 16-bit elements */
  d |= (uint64_t)((8 * SM90_BK * 2) >> 4) << 32;
  /* layout: 1 = 128-byte swizzle, 2 = 64-byte swizzle */
  d |= (uint64_t)(SM90_BK == 64 ? 1 : 2) << 62;
  return d;
}

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* Keeps the compiler from moving accumulator reads/writes across the
 * asynchronous wgmma window. */
__device__ __forceinline__ void wgmma_fence_acc(float (&d)[128]) {
#pragma unroll
  for (int i = 0; i < 128; i++)
    asm volatile("" : "+f"(d[i])::"memory");
}

template <int N> __device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N> __device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

/* D[64 x 256] (+)= A[64 x 16] * B[256 x 16]^T, both K-major in shared
 * memory (descriptors), fp32 accumulators: 128 per thread of the
 * warpgroup; scale_d = 0 overwrites D. Register r of the thread (warp w of
 * the warpgroup, lane l) holds row 16 w + l / 4 + 8 ((r / 2) % 2), column
 * 8 (r / 4) + 2 (l % 4) + r % 2. */
#define SM90_ACC_LIST                                                          \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, "          \
  "%15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, "          \
  "%28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, "          \
  "%41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, "          \
  "%54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, "          \
  "%67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "          \
  "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, "          \
  "%93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, "          \
  "%105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, "         \
  "%116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, "         \
  "%127"
#define SM90_ACC_OPERANDS                                                      \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),      \
      "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]),             \
      "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),         \
      "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),         \
      "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]),         \
      "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),         \
      "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),         \
      "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),         \
      "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]),         \
      "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]),         \
      "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),         \
      "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]),         \
      "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]),         \
      "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]),         \
      "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]),         \
      "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]),         \
      "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]),         \
      "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]),         \
      "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),         \
      "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]),        \
      "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]),    \
      "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]),    \
      "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]),    \
      "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]),    \
      "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]),    \
      "+f"(d[126]), "+f"(d[127])
#define SM90_WGMMA_N256(NAME, TY)                                              \
  __device__ __forceinline__ void NAME(float(&d)[128], uint64_t da,            \
                                       uint64_t db, int scale_d) {             \
    asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %130, 0;\n"               \
                 " wgmma.mma_async.sync.aligned.m64n256k16.f32." TY "." TY     \
                 " {" SM90_ACC_LIST "}, %128, %129, p, 1, 1, 0, 0;\n}\n"       \
                 : SM90_ACC_OPERANDS                                           \
                 : "l"(da), "l"(db), "r"(scale_d));                            \
  }
SM90_WGMMA_N256(wgmma_m64n256k16_bf16, "bf16")
SM90_WGMMA_N256(wgmma_m64n256k16_f16, "f16")
#undef SM90_WGMMA_N256

template <class T>
__device__ __forceinline__ void wgmma_m64n256k16(float (&d)[128], uint64_t da,
                                                 uint64_t db, int scale_d);
template <>
__device__ __forceinline__ void
wgmma_m64n256k16<__nv_bfloat16>(float (&d)[128], uint64_t da, uint64_t db,
                                int scale_d) {
  wgmma_m64n256k16_bf16(d, da, db, scale_d);
}
template <>
__device__ __forceinline__ void
wgmma_m64n256k16<__half>(float (&d)[128], uint64_t da, uint64_t db,
                         int scale_d) {
  wgmma_m64n256k16_f16(d, da, db, scale_d);
}

#endif /* SM90_DEVICE */
#endif
