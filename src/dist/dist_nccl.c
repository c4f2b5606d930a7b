/*
 * dist_nccl.c - the NCCL side of the multi-GPU layer: the communicator's
 * checks, the EP_A2A workspace, the all-reduce of the replicated modes and
 * the grouped send/receive of EP_A2A, and the single-process helper.
 * Compiled only with MOE_HAVE_NCCL. Every call is stream-ordered on the
 * caller's stream; nothing here synchronises it.
 */
#include "dist.h"

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCK(call, what)                                                        \
  do {                                                                         \
    ncclResult_t r_ = (call);                                                  \
    if (r_ != ncclSuccess) {                                                   \
      snprintf(msg, n, "%s: %s", what, ncclGetErrorString(r_));                \
      return MOE_ERR_DEVICE;                                                   \
    }                                                                          \
  } while (0)
#define CCK(call, what)                                                        \
  do {                                                                         \
    cudaError_t e_ = (call);                                                   \
    if (e_ != cudaSuccess) {                                                   \
      (void)cudaGetLastError();                                                \
      snprintf(msg, n, "%s: %s", what, cudaGetErrorString(e_));                \
      return e_ == cudaErrorMemoryAllocation ? MOE_ERR_OUT_OF_MEMORY           \
                                             : MOE_ERR_DEVICE;                 \
    }                                                                          \
  } while (0)

moe_status moe_dist_nccl_check(void *comm, int rank, int world, char *msg,
                               size_t n) {
  ncclComm_t c = (ncclComm_t)comm;
  int cw = 0, cr = 0, cd = -1, cur = -1;
  NCK(ncclCommCount(c, &cw), "ncclCommCount");
  NCK(ncclCommUserRank(c, &cr), "ncclCommUserRank");
  NCK(ncclCommCuDevice(c, &cd), "ncclCommCuDevice");
  CCK(cudaGetDevice(&cur), "cudaGetDevice");
  if (cw != world || cr != rank) {
    snprintf(msg, n,
             "the communicator is rank %d of %d but rank = %d, world = %d "
             "were given",
             cr, cw, rank, world);
    return MOE_ERR_INVALID_ARGUMENT;
  }
  if (cd != cur) {
    snprintf(msg, n,
             "the communicator's device is %d but the current CUDA device "
             "is %d (make the rank's device current)",
             cd, cur);
    return MOE_ERR_INVALID_ARGUMENT;
  }
  return MOE_OK;
}

moe_status moe_dist_nccl_alloc(moe_dist_layer *L, char *msg, size_t n) {
  const moe_a2a_sizes *sz = &L->sz;
  CCK(cudaMalloc(&L->ws, sz->total), "cudaMalloc(ep-a2a buffers)");
  /* Zeros everywhere (no stale NaN in unused rows), ids -1 until the first
   * routing (a communication-only run reads them). */
  CCK(cudaMemset(L->ws, 0, sz->total), "cudaMemset");
  for (int i = 0; i < MOE_A2A_NBUF; i++)
    L->buf[i] = sz->bytes[i] ? (char *)L->ws + sz->off[i] : NULL;
  CCK(cudaMemset(L->buf[MOE_A2A_RIDS], 0xff, sz->bytes[MOE_A2A_RIDS]),
      "cudaMemset");
  if (L->buf[MOE_A2A_ONE_W]) {
    float *ones = malloc(sz->bytes[MOE_A2A_ONE_W]);
    if (!ones) {
      snprintf(msg, n, "ep-a2a: out of host memory");
      return MOE_ERR_OUT_OF_MEMORY;
    }
    for (int i = 0; i < L->T; i++)
      ones[i] = 1.0f;
    cudaError_t e =
        cudaMemcpy(L->buf[MOE_A2A_ONE_W], ones, sz->bytes[MOE_A2A_ONE_W],
                   cudaMemcpyHostToDevice);
    free(ones);
    CCK(e, "cudaMemcpy");
  }
  /* The fills above ran on the legacy default stream: complete them before
   * any stream of the caller's uses the buffers (at creation only, as the
   * other layers' uploads do). */
  CCK(cudaStreamSynchronize(0), "cudaStreamSynchronize");
  return MOE_OK;
}

void moe_dist_nccl_free(moe_dist_layer *L) {
  if (L->ws) (void)cudaFree(L->ws);
  L->ws = NULL;
}

static ncclDataType_t nccl_type(moe_dtype dt) {
  switch (dt) {
  case MOE_DTYPE_BF16:
    return ncclBfloat16;
  case MOE_DTYPE_F16:
    return ncclFloat16;
  default:
    return ncclFloat32;
  }
}

moe_status moe_dist_nccl_allreduce(moe_dist_layer *L, void *out, size_t count,
                                   void *stream, char *msg, size_t n) {
  NCK(ncclAllReduce(out, out, count, nccl_type(L->dtype), ncclSum,
                    (ncclComm_t)L->comm, (cudaStream_t)stream),
      "ncclAllReduce");
  return MOE_OK;
}

/* One grouped exchange: for every peer d, send count_i elements of each
 * (send_i + block d) and receive as many into (recv_i + block d). */
typedef struct xfer {
  const char *send;
  char *recv;
  size_t count; /* elements per block */
  size_t elem;
  ncclDataType_t type;
} xfer;

static moe_status exchange(moe_dist_layer *L, const xfer *x, int nx,
                           void *stream, char *msg, size_t n) {
  ncclComm_t c = (ncclComm_t)L->comm;
  cudaStream_t s = (cudaStream_t)stream;
  ncclResult_t r = ncclGroupStart();
  if (r != ncclSuccess) {
    snprintf(msg, n, "ncclGroupStart: %s", ncclGetErrorString(r));
    return MOE_ERR_DEVICE;
  }
  ncclResult_t first = ncclSuccess;
  for (int d = 0; d < L->world; d++) {
    if (d == L->rank) continue;
    for (int i = 0; i < nx && first == ncclSuccess; i++) {
      const size_t off = (size_t)d * x[i].count * x[i].elem;
      first = ncclSend(x[i].send + off, x[i].count, x[i].type, d, c, s);
      if (first == ncclSuccess)
        first = ncclRecv(x[i].recv + off, x[i].count, x[i].type, d, c, s);
    }
  }
  /* The group is always closed, even after a failed call inside it. */
  r = ncclGroupEnd();
  if (first == ncclSuccess) first = r;
  if (first != ncclSuccess) {
    snprintf(msg, n, "ncclSend/ncclRecv: %s", ncclGetErrorString(first));
    return MOE_ERR_DEVICE;
  }
  return MOE_OK;
}

moe_status moe_dist_nccl_dispatch(moe_dist_layer *L, int B, void *stream,
                                  char *msg, size_t n) {
  const size_t es = moe_dtype_size(L->dtype);
  const xfer x[3] = {
      {L->buf[MOE_A2A_SEND_X], L->buf[MOE_A2A_RECV_X], (size_t)B * L->H, es,
       nccl_type(L->dtype)},
      {L->buf[MOE_A2A_SEND_IDS], L->buf[MOE_A2A_RECV_IDS], (size_t)B * L->k, 4,
       ncclInt32},
      {L->buf[MOE_A2A_SEND_W], L->buf[MOE_A2A_RECV_W], (size_t)B * L->k, 4,
       ncclFloat32},
  };
  return exchange(L, x, 3, stream, msg, n);
}

moe_status moe_dist_nccl_return(moe_dist_layer *L, int B, void *stream,
                                char *msg, size_t n) {
  const size_t es = moe_dtype_size(L->dtype);
  const xfer x[1] = {{L->buf[MOE_A2A_Y], L->buf[MOE_A2A_BACK], (size_t)B * L->H,
                      es, nccl_type(L->dtype)}};
  return exchange(L, x, 1, stream, msg, n);
}

moe_status moe_dist_nccl_comms_create(int world, const int *devices,
                                      void **comms, char *msg, size_t n) {
  int ndev = 0;
  CCK(cudaGetDeviceCount(&ndev), "cudaGetDeviceCount");
  int devs[64];
  if (world > 64) {
    snprintf(msg, n, "world = %d: at most 64 devices in one process", world);
    return MOE_ERR_INVALID_ARGUMENT;
  }
  for (int i = 0; i < world; i++) {
    devs[i] = devices ? devices[i] : i;
    if (devs[i] < 0 || devs[i] >= ndev) {
      snprintf(msg, n, "device %d of rank %d: this machine has %d GPU(s)",
               devs[i], i, ndev);
      return MOE_ERR_INVALID_ARGUMENT;
    }
  }
  ncclComm_t c[64];
  NCK(ncclCommInitAll(c, world, devs), "ncclCommInitAll");
  for (int i = 0; i < world; i++)
    comms[i] = c[i];
  return MOE_OK;
}

void moe_dist_nccl_comms_destroy(int world, void **comms) {
  for (int i = 0; i < world; i++)
    if (comms[i]) {
      (void)ncclCommDestroy((ncclComm_t)comms[i]);
      comms[i] = NULL;
    }
}
