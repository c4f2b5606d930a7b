/*
 * cpu.h - the CPU backends: cpu-ref (scalar reference), cpu-avx2 and
 * cpu-avx512 (SIMD, multithreaded). One implementation of the layer, with
 * its inner products chosen per backend.
 */
#ifndef MOE_CPU_H
#define MOE_CPU_H

#include "../backend.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const moe_backend moe_backend_cpu_ref;
#if defined(__x86_64__) || defined(_M_X64)
#define MOE_HAVE_CPU_X86 1
extern const moe_backend moe_backend_cpu_avx2;
extern const moe_backend moe_backend_cpu_avx512;
#endif

/* The host memory space (malloc, memcpy). */
extern const moe_memops moe_memops_host;

/* Reference routing of M tokens (see moe.h for the rules). bias may be
 * NULL. Writes ids [M][k] (global ids) and weights [M][k]. Needs no
 * allocation: scratch is on the stack up to MOE_CPU_ROUTE_MAX_E experts. */
#define MOE_CPU_ROUTE_MAX_E 4096
void moe_cpu_route(const moe_shape *s, const float *bias, const float *logits,
                   int M, int32_t *ids, float *weights);

/* One activation element (gate, up) -> value; for plain activations up is
 * ignored. The single definition every backend's tests compare against. */
float moe_cpu_activation(const moe_shape *s, float gate, float up);

/* Reads the host CPU's features (MOE_CPU_*) and core count. */
uint32_t moe_cpu_detect_features(void);
int moe_cpu_count_cores(void);

#ifdef __cplusplus
}
#endif
#endif /* MOE_CPU_H */
