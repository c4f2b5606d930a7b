/*
 * device.c - what the machine is: the GPU's exact capability, family,
 * multiprocessors, shared memory and L2; the CPU's features. Also the
 * what-if devices (MOE_DEVICE=sm_121) used for planning and tests, and the
 * three device predicates, named as what they are.
 */
#include "cpu/cpu.h"
#include "internal.h"
#ifdef MOE_HAVE_CUDA
#include "cuda/cuda_backends.h"
#endif

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Figures of the devices users run on (vendor datasheets; shared memory is
 * the per-block opt-in limit). */
typedef struct known_device {
  const char *name; /* "sm_121" */
  int sm;
  const char *model;
  int sms;
  int smem_optin;
  int l2_bytes;
  double mem_bw_gbs;
} known_device;

#define KB 1024
#define MB (1024 * 1024)
static const known_device known[] = {
    {"sm_75", 75, "Tesla T4", 40, 64 * KB, 4 * MB, 320},
    {"sm_80", 80, "A100", 108, 163 * KB, 40 * MB, 2039},
    {"sm_86", 86, "A10 / RTX 30", 72, 99 * KB, 6 * MB, 600},
    {"sm_89", 89, "L40S / RTX 40", 142, 99 * KB, 96 * MB, 864},
    {"sm_90", 90, "H100 / H200", 132, 227 * KB, 50 * MB, 4800},
    {"sm_100", 100, "B200", 148, 227 * KB, 126 * MB, 8000},
    {"sm_103", 103, "B300", 148, 227 * KB, 126 * MB, 8000},
    {"sm_110", 110, "Jetson Thor", 20, 227 * KB, 32 * MB, 273},
    {"sm_120", 120, "RTX 50 / RTX PRO 6000", 188, 99 * KB, 128 * MB, 1792},
    {"sm_121", 121, "DGX Spark (GB10)", 48, 99 * KB, 24 * MB, 273},
};
#define N_KNOWN ((int)(sizeof known / sizeof known[0]))

int moe_known_device_count(void) {
  return N_KNOWN;
}

const char *moe_known_device_name(int i) {
  return (i >= 0 && i < N_KNOWN) ? known[i].name : NULL;
}

/* ---- predicates ---- */

int moe_pred_exact(int sm, const moe_device *dev) {
  return dev->is_cuda && dev->sm == sm;
}

int moe_pred_family(int sm, const moe_device *dev) {
  return dev->is_cuda && dev->sm / 10 == sm / 10;
}

int moe_pred_at_least(int sm, const moe_device *dev) {
  return dev->is_cuda && dev->sm >= sm;
}

int moe_pred_admits(moe_device_pred p, const moe_device *dev) {
  switch (p.kind) {
  case MOE_PRED_CPU:
    return (dev->cpu_features & p.cpu_features) == p.cpu_features;
  case MOE_PRED_EXACT:
    return moe_pred_exact(p.sm, dev);
  case MOE_PRED_FAMILY:
    return moe_pred_family(p.sm, dev);
  case MOE_PRED_AT_LEAST:
    return moe_pred_at_least(p.sm, dev);
  }
  return 0;
}

void moe_cpu_features_string(uint32_t f, char *buf, size_t n) {
  static const struct {
    uint32_t bit;
    const char *name;
  } names[] = {{MOE_CPU_AVX2, "avx2"},
               {MOE_CPU_FMA, "fma"},
               {MOE_CPU_F16C, "f16c"},
               {MOE_CPU_AVX512F, "avx512f"},
               {MOE_CPU_AVX512BW, "avx512bw"},
               {MOE_CPU_AVX512VL, "avx512vl"},
               {MOE_CPU_AVX512BF16, "avx512bf16"}};
  size_t used = 0;
  if (n) buf[0] = '\0';
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (!(f & names[i].bit)) continue;
    int w = snprintf(buf + used, n > used ? n - used : 0, "%s%s",
                     used ? "+" : "", names[i].name);
    if (w > 0) used += (size_t)w;
  }
  if (!used) snprintf(buf, n, "scalar");
}

void moe_pred_format(moe_device_pred p, char *buf, size_t n) {
  char f[128];
  switch (p.kind) {
  case MOE_PRED_CPU:
    moe_cpu_features_string(p.cpu_features, f, sizeof f);
    snprintf(buf, n, "cpu(%s)", p.cpu_features ? f : "any");
    return;
  case MOE_PRED_EXACT:
    snprintf(buf, n, "exact(%d)", p.sm);
    return;
  case MOE_PRED_FAMILY:
    snprintf(buf, n, "family(%d)", p.sm);
    return;
  case MOE_PRED_AT_LEAST:
    snprintf(buf, n, "at_least(%d)", p.sm);
    return;
  }
  snprintf(buf, n, "?");
}

/* ---- detection ---- */

static void fill_cpu(moe_device *dev) {
  dev->cpu_features = moe_cpu_detect_features();
  dev->cpu_cores = moe_cpu_count_cores();
  snprintf(dev->cpu_name, sizeof dev->cpu_name, "host CPU");
#if defined(__linux__)
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f) {
    char line[256];
    while (fgets(line, sizeof line, f)) {
      if (strncmp(line, "model name", 10) != 0) continue;
      char *c = strchr(line, ':');
      if (!c) break;
      c++;
      while (*c == ' ')
        c++;
      c[strcspn(c, "\n")] = '\0';
      snprintf(dev->cpu_name, sizeof dev->cpu_name, "%s", c);
      break;
    }
    fclose(f);
  }
#endif
}

int moe_device_from_table(const char *name, moe_device *dev) {
  if (!name) return 0;
  const char *p = name;
  if (strncmp(p, "sm_", 3) == 0 || strncmp(p, "SM_", 3) == 0) p += 3;
  if (strcmp(name, "cpu") == 0) {
    dev->is_cuda = 0;
    dev->overridden = 1;
    dev->runnable = 0;
    snprintf(dev->name, sizeof dev->name, "none (what-if: cpu only)");
    return 1;
  }
  char *end = NULL;
  long sm = strtol(p, &end, 10);
  if (end == p || (*end != '\0' && strcmp(end, "a") != 0)) return 0;
  for (int i = 0; i < N_KNOWN; i++) {
    if (known[i].sm != sm) continue;
    dev->is_cuda = 1;
    dev->overridden = 1;
    dev->runnable = 0;
    dev->ordinal = 0;
    dev->sm = known[i].sm;
    dev->sms = known[i].sms;
    dev->smem_optin = known[i].smem_optin;
    dev->l2_bytes = known[i].l2_bytes;
    dev->mem_bw_gbs = known[i].mem_bw_gbs;
    snprintf(dev->name, sizeof dev->name, "%s (what-if)", known[i].model);
    return 1;
  }
  return 0;
}

moe_status moe_device_detect(moe_context *ctx, const char *override_name,
                             int cuda_ordinal, moe_device *dev) {
  memset(dev, 0, sizeof *dev);
  fill_cpu(dev);
  if (override_name && *override_name) {
    if (!moe_device_from_table(override_name, dev)) {
      char list[512] = "";
      size_t used = 0;
      for (int i = 0; i < N_KNOWN; i++) {
        int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                         known[i].name);
        if (w > 0) used += (size_t)w;
      }
      return moe_fail(ctx, MOE_ERR_INVALID_ARGUMENT,
                      "device override '%s' is unknown; known: cpu, %s",
                      override_name, list);
    }
    return MOE_OK;
  }
#ifdef MOE_HAVE_CUDA
  char msg[256];
  moe_device gpu = *dev;
  if (moe_cuda_query_device(cuda_ordinal, &gpu, msg, sizeof msg) == MOE_OK) {
    *dev = gpu;
    /* Datasheet bandwidth of the matching known device, for reports. */
    for (int i = 0; i < N_KNOWN; i++)
      if (known[i].sm == dev->sm) dev->mem_bw_gbs = known[i].mem_bw_gbs;
  } else {
    dev->is_cuda = 0;
    snprintf(dev->name, sizeof dev->name, "none (%.180s)", msg);
  }
#else
  (void)cuda_ordinal;
  snprintf(dev->name, sizeof dev->name, "none (built without CUDA)");
#endif
  return MOE_OK;
}

void moe_device_describe(const moe_device *dev, char *buf, size_t n) {
  char feats[160];
  moe_cpu_features_string(dev->cpu_features, feats, sizeof feats);
  if (dev->is_cuda)
    snprintf(buf, n,
             "gpu: sm_%d %s, %d SMs, %d KB shared memory per block, %d MB "
             "L2%s\ncpu: %s, %d cores, %s",
             dev->sm, dev->name, dev->sms, dev->smem_optin / 1024,
             dev->l2_bytes / (1024 * 1024),
             dev->runnable ? "" : " (not runnable here)", dev->cpu_name,
             dev->cpu_cores, feats);
  else
    snprintf(buf, n, "gpu: %s\ncpu: %s, %d cores, %s", dev->name, dev->cpu_name,
             dev->cpu_cores, feats);
}
