# The CPU backends (cpu-ref, cpu-avx2, cpu-avx512). Paths are relative to the
# repository root; the SIMD files carry their targets in attributes, so every
# file builds with the default flags.
set(MOE_CPU_SOURCES
  src/cpu/route.c
  src/cpu/activation.c
  src/cpu/features.c
  src/cpu/threadpool.c
  src/cpu/layer_cpu.c
  src/cpu/forward_ref.c
  src/cpu/forward_fast.c
  src/cpu/dot_avx2.c
  src/cpu/dot_avx512.c
  src/cpu/backends.c
)
