/* convert.c - scalar conversions between f32 and the 16-bit formats. */
#include "backend.h"

#include <string.h>

float moe_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

uint16_t moe_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a (quiet) NaN */
    return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
  return (uint16_t)(u >> 16);
}

float moe_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else { /* subnormal: normalise */
      int e = -1;
      do {
        e++;
        man <<= 1;
      } while (!(man & 0x400u));
      u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

uint16_t moe_f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* overflow */
  if (a < 0x38800000u) {                                   /* subnormal */
    if (a < 0x33000000u) return (uint16_t)sign;            /* underflow */
    uint32_t e = a >> 23;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; /* 14..24 */
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
  }
  uint32_t r = ((a >> 13) - ((127 - 15) << 10));
  uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
  return (uint16_t)(sign | r);
}

size_t moe_dtype_size(moe_dtype d) {
  switch (d) {
  case MOE_DTYPE_F32:
    return 4;
  case MOE_DTYPE_F16:
  case MOE_DTYPE_BF16:
    return 2;
  }
  return 0;
}

float moe_load_elem(const void *p, size_t i, moe_dtype d) {
  switch (d) {
  case MOE_DTYPE_F32:
    return ((const float *)p)[i];
  case MOE_DTYPE_F16:
    return moe_f16_to_f32(((const uint16_t *)p)[i]);
  case MOE_DTYPE_BF16:
    return moe_bf16_to_f32(((const uint16_t *)p)[i]);
  }
  return 0.0f;
}

void moe_store_elem(void *p, size_t i, moe_dtype d, float v) {
  switch (d) {
  case MOE_DTYPE_F32:
    ((float *)p)[i] = v;
    break;
  case MOE_DTYPE_F16:
    ((uint16_t *)p)[i] = moe_f32_to_f16(v);
    break;
  case MOE_DTYPE_BF16:
    ((uint16_t *)p)[i] = moe_f32_to_bf16(v);
    break;
  }
}
