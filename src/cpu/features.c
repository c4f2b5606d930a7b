/*
 * features.c - what the host CPU can execute (cpuid + xgetbv) and how many
 * cores this process may use.
 */
#define _GNU_SOURCE
#include "cpu.h"

#include <sched.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t read_xcr0(void) {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}

uint32_t moe_cpu_detect_features(void) {
  unsigned a, b, c, d;
  uint32_t f = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  int fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
  int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
  /* The OS must save the wide registers, or using them faults. */
  if (!osxsave || !avx) return 0;
  uint64_t xcr0 = read_xcr0();
  int ymm_ok = (xcr0 & 0x6) == 0x6;   /* SSE + AVX state */
  int zmm_ok = (xcr0 & 0xe6) == 0xe6; /* + opmask, ZMM_Hi256, Hi16_ZMM */
  if (!ymm_ok) return 0;
  if (fma) f |= MOE_CPU_FMA;
  if (f16c) f |= MOE_CPU_F16C;
  if (__get_cpuid_max(0, NULL) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  if ((b >> 5) & 1) f |= MOE_CPU_AVX2;
  if (zmm_ok) {
    if ((b >> 16) & 1) f |= MOE_CPU_AVX512F;
    if ((b >> 30) & 1) f |= MOE_CPU_AVX512BW;
    if ((b >> 31) & 1) f |= MOE_CPU_AVX512VL;
    unsigned a1, b1, c1, d1;
    __cpuid_count(7, 1, a1, b1, c1, d1);
    if ((a1 >> 5) & 1) f |= MOE_CPU_AVX512BF16;
  }
  return f;
}
#else
uint32_t moe_cpu_detect_features(void) {
  return 0;
}
#endif

/* CPUs in this process's affinity mask (what a container or taskset grants),
 * falling back to the online count. Logical CPUs: on SMT machines the
 * caller may prefer fewer threads for memory-bound work. */
int moe_cpu_count_cores(void) {
#ifdef CPU_COUNT
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
