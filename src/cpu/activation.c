/*
 * activation.c - the activation functions, one element at a time. These are
 * the definitions the other backends are checked against (moe.h):
 *   SILU        x * sigmoid(x)
 *   GELU        0.5 x (1 + erf(x / sqrt 2))   (exact, not the tanh form)
 *   RELU2       max(x, 0)^2
 *   SWIGLU_OAI  g = min(gate, limit), u = clamp(up, -limit, limit),
 *               (u + 1) * g * sigmoid(alpha g)
 * Gated: act(gate) * up (SWIGLU_OAI has its own formula). Plain: act(h), up
 * ignored. Comparisons are written so that a NaN input stays NaN (fminf
 * would replace it by the limit and hide it).
 */
#include "cpu_internal.h"

#include <math.h>

float moe_cpu_activation(const moe_shape *s, float gate, float up) {
  float a;
  switch (s->act) {
  case MOE_ACT_SILU:
    a = gate / (1.0f + expf(-gate));
    break;
  case MOE_ACT_GELU:
    a = 0.5f * gate * (1.0f + erff(gate * 0.70710678118654752f));
    break;
  case MOE_ACT_RELU2: {
    float r = gate > 0.0f ? gate : (gate == gate ? 0.0f : gate);
    a = r * r;
    break;
  }
  case MOE_ACT_SWIGLU_OAI: {
    float lim = s->swiglu_limit, al = s->swiglu_alpha;
    float g = gate > lim ? lim : gate;
    if (!s->gated) return g / (1.0f + expf(-al * g));
    float u = up > lim ? lim : (up < -lim ? -lim : up);
    return (u + 1.0f) * (g / (1.0f + expf(-al * g)));
  }
  default:
    return NAN;
  }
  return s->gated ? a * up : a;
}

double moe_cpu_activation_d(const moe_shape *s, double gate, double up) {
  double a;
  switch (s->act) {
  case MOE_ACT_SILU:
    a = gate / (1.0 + exp(-gate));
    break;
  case MOE_ACT_GELU:
    a = 0.5 * gate * (1.0 + erf(gate * 0.70710678118654752440));
    break;
  case MOE_ACT_RELU2: {
    double r = gate > 0.0 ? gate : (gate == gate ? 0.0 : gate);
    a = r * r;
    break;
  }
  case MOE_ACT_SWIGLU_OAI: {
    double lim = s->swiglu_limit, al = s->swiglu_alpha;
    double g = gate > lim ? lim : gate;
    if (!s->gated) return g / (1.0 + exp(-al * g));
    double u = up > lim ? lim : (up < -lim ? -lim : up);
    return (u + 1.0) * (g / (1.0 + exp(-al * g)));
  }
  default:
    return NAN;
  }
  return s->gated ? a * up : a;
}
