/*
 * dequant.c - decodes checkpoint elements to fp32: the IEEE-like float
 * types safetensors stores and the 8-bit and 4-bit formats quantised
 * checkpoints use (E4M3 "fn" without infinities, E5M2, E2M1 nibbles of
 * MXFP4). Reads go through memcpy: mapped tensors need not be aligned.
 */
#define _POSIX_C_SOURCE 200809L
#include "backend.h"
#include "io/io.h"

#include <math.h>
#include <string.h>

float moe_fp8_e4m3_to_f32(uint8_t v) {
  /* e4m3fn: bias 7, no infinities, S.1111.111 is NaN. */
  int sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 7;
  float r;
  if (exp == 15 && man == 7)
    r = NAN;
  else if (exp == 0)
    r = ldexpf((float)man, -9); /* man/8 * 2^-6 */
  else
    r = ldexpf((float)(8 + man), exp - 10); /* (1 + man/8) * 2^(exp-7) */
  return sign ? -r : r;
}

float moe_fp8_e5m2_to_f32(uint8_t v) {
  /* e5m2 is the top byte of an IEEE half. */
  return moe_f16_to_f32((uint16_t)((uint16_t)v << 8));
}

float moe_fp4_e2m1_to_f32(uint8_t nibble) {
  static const float lut[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,
                                4.0f,  6.0f,  -0.0f, -0.5f, -1.0f, -1.5f,
                                -2.0f, -3.0f, -4.0f, -6.0f};
  return lut[nibble & 15];
}

int moe_st_is_float(moe_st_dtype d) {
  return d == MOE_ST_F32 || d == MOE_ST_F16 || d == MOE_ST_BF16 ||
         d == MOE_ST_F64 || d == MOE_ST_F8_E4M3 || d == MOE_ST_F8_E5M2;
}

void moe_st_decode(const moe_st_tensor *t, uint64_t first, size_t n,
                   float *dst) {
  const unsigned char *p = (const unsigned char *)t->data;
  size_t es = moe_st_dtype_size(t->dtype);
  p += first * es;
  switch (t->dtype) {
  case MOE_ST_F32:
    memcpy(dst, p, n * 4);
    break;
  case MOE_ST_F64:
    for (size_t i = 0; i < n; i++) {
      double d;
      memcpy(&d, p + 8 * i, 8);
      dst[i] = (float)d;
    }
    break;
  case MOE_ST_F16:
  case MOE_ST_BF16:
    for (size_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, p + 2 * i, 2);
      dst[i] = t->dtype == MOE_ST_F16 ? moe_f16_to_f32(h) : moe_bf16_to_f32(h);
    }
    break;
  case MOE_ST_F8_E4M3:
    for (size_t i = 0; i < n; i++)
      dst[i] = moe_fp8_e4m3_to_f32(p[i]);
    break;
  case MOE_ST_F8_E5M2:
    for (size_t i = 0; i < n; i++)
      dst[i] = moe_fp8_e5m2_to_f32(p[i]);
    break;
  default: /* callers check moe_st_is_float first */
    for (size_t i = 0; i < n; i++)
      dst[i] = 0.0f;
    break;
  }
}
