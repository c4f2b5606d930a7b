/*
 * model_config.c - Hugging Face config.json of the MoE families we load,
 * mapped to the layer descriptor, plus which layers are MoE layers.
 *
 *   family       experts / top-k / expert I                    MoE layers
 *   mixtral      num_local_experts, num_experts_per_tok,        all
 *                intermediate_size
 *   qwen3_moe    num_experts, num_experts_per_tok,              not in
 * mlp_only_layers moe_intermediate_size, norm_topk_prob          and (L+1) %
 * decoder_sparse_step == 0 deepseek_v3  n_routed_experts, num_experts_per_tok,
 * L >= first_k_dense_replace moe_intermediate_size, n_shared_experts,       and
 * L % moe_layer_freq == 0 scoring_func, topk_method, n_group, topk_group,
 *                norm_topk_prob, routed_scaling_factor
 *   nemotron_h   n_routed_experts, num_experts_per_tok,         'E' in
 * hybrid_override_pattern moe_intermediate_size,                         (or
 * "moe" in layers_block_type) moe_shared_expert_intermediate_size, n_group,
 *                topk_group, norm_topk_prob, routed_scaling_factor
 *   gpt_oss      num_local_experts, num_experts_per_tok,        all
 *                intermediate_size, swiglu_limit
 *
 * Defaults for optional fields are those of the families' own config
 * classes (DeepSeek-V3: 1 shared expert, scale 2.5, 8 groups / top 4,
 * first 3 layers dense; Qwen3: norm_topk_prob false; Nemotron-H: n_group 1,
 * renormalised). Sizes are range-checked so later products cannot overflow.
 */
#define _POSIX_C_SOURCE 200809L
#include "io/io.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIM (1 << 20)
#define MAX_EXPERTS 65536

static moe_status fail(moe_io_error *err, moe_status s, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
  }
  return s;
}

static const char *const family_names[MOE_FAMILY_COUNT] = {
    "mixtral", "qwen3_moe", "deepseek_v3", "nemotron_h", "gpt_oss"};

const char *moe_family_name(moe_family f) {
  if ((int)f < 0 || f >= MOE_FAMILY_COUNT) return NULL;
  return family_names[f];
}

static const struct {
  const char *arch;
  moe_family family;
} arch_names[] = {
    {"MixtralForCausalLM", MOE_FAMILY_MIXTRAL},
    {"Qwen3MoeForCausalLM", MOE_FAMILY_QWEN3_MOE},
    {"DeepseekV3ForCausalLM", MOE_FAMILY_DEEPSEEK_V3},
    {"NemotronHForCausalLM", MOE_FAMILY_NEMOTRON_H},
    {"GptOssForCausalLM", MOE_FAMILY_GPT_OSS},
};

/* A reading context: the parsed object, the file label, the family. */
typedef struct reader {
  json_t *root;
  const char *label;
  const char *family;
  moe_io_error *err;
} reader;

/* Integer field in [lo, hi]. Missing: error when required, else *out = def.
 * JSON null counts as missing. */
static moe_status get_int(reader *r, const char *key, int required, int def,
                          int lo, int hi, int *out) {
  json_t *v = json_object_get(r->root, key);
  if (!v || json_is_null(v)) {
    if (required)
      return fail(r->err, MOE_ERR_FORMAT,
                  "%s: missing required field '%s' (%s)", r->label, key,
                  r->family);
    *out = def;
    return MOE_OK;
  }
  if (!json_is_integer(v))
    return fail(r->err, MOE_ERR_FORMAT, "%s: field '%s' is not an integer",
                r->label, key);
  json_int_t x = json_integer_value(v);
  if (x < lo || x > hi)
    return fail(r->err, MOE_ERR_FORMAT,
                "%s: field '%s' = %lld out of range [%d, %d]", r->label, key,
                (long long)x, lo, hi);
  *out = (int)x;
  return MOE_OK;
}

static moe_status get_float(reader *r, const char *key, double def, double lo,
                            double hi, float *out) {
  json_t *v = json_object_get(r->root, key);
  if (!v || json_is_null(v)) {
    *out = (float)def;
    return MOE_OK;
  }
  if (!json_is_number(v))
    return fail(r->err, MOE_ERR_FORMAT, "%s: field '%s' is not a number",
                r->label, key);
  double x = json_number_value(v);
  if (!(x >= lo && x <= hi))
    return fail(r->err, MOE_ERR_FORMAT, "%s: field '%s' = %g out of range",
                r->label, key, x);
  *out = (float)x;
  return MOE_OK;
}

static moe_status get_bool(reader *r, const char *key, int def, int *out) {
  json_t *v = json_object_get(r->root, key);
  if (!v || json_is_null(v)) {
    *out = def;
    return MOE_OK;
  }
  if (!json_is_boolean(v))
    return fail(r->err, MOE_ERR_FORMAT, "%s: field '%s' is not a boolean",
                r->label, key);
  *out = json_is_true(v);
  return MOE_OK;
}

/* String field; missing gives def. */
static moe_status get_str(reader *r, const char *key, const char *def,
                          const char **out) {
  json_t *v = json_object_get(r->root, key);
  if (!v || json_is_null(v)) {
    *out = def;
    return MOE_OK;
  }
  if (!json_is_string(v))
    return fail(r->err, MOE_ERR_FORMAT, "%s: field '%s' is not a string",
                r->label, key);
  *out = json_string_value(v);
  return MOE_OK;
}

static moe_status activation(reader *r, const char *key, const char *def,
                             int gated, moe_model_config *c) {
  const char *a = def;
  moe_status st = get_str(r, key, def, &a);
  if (st) return st;
  if (gated && (!strcmp(a, "silu") || !strcmp(a, "swish")))
    c->desc.activation = MOE_ACT_SILU;
  else if (gated && !strcmp(a, "gelu"))
    c->desc.activation = MOE_ACT_GELU;
  else if (!gated && !strcmp(a, "relu2"))
    c->desc.activation = MOE_ACT_RELU2;
  else
    return fail(r->err, MOE_ERR_UNSUPPORTED,
                "%s: field '%s' = '%.32s': activation not supported for %s",
                r->label, key, a, r->family);
  c->desc.gated = gated;
  return MOE_OK;
}

/* Experts, top-k, hidden and expert sizes, layer count. */
static moe_status sizes(reader *r, const char *experts_key,
                        const char *topk_key, const char *inter_key,
                        moe_model_config *c) {
  moe_layer_desc *d = &c->desc;
  moe_status st;
  if ((st = get_int(r, "hidden_size", 1, 0, 1, MAX_DIM, &d->hidden)) ||
      (st = get_int(r, experts_key, 1, 0, 1, MAX_EXPERTS, &d->num_experts)) ||
      (st = get_int(r, topk_key, 1, 0, 1, MAX_EXPERTS, &d->top_k)) ||
      (st = get_int(r, inter_key, 1, 0, 1, MAX_DIM, &d->intermediate)))
    return st;
  if (d->top_k > d->num_experts)
    return fail(r->err, MOE_ERR_FORMAT, "%s: field '%s' = %d exceeds %s = %d",
                r->label, topk_key, d->top_k, experts_key, d->num_experts);
  return get_int(r, "num_hidden_layers", 1, 0, 1, MOE_CONFIG_MAX_LAYERS,
                 &c->num_layers);
}

static moe_status grouping(reader *r, int def_group, int def_topk,
                           moe_model_config *c) {
  moe_routing *g = &c->desc.routing;
  moe_status st;
  if ((st = get_int(r, "n_group", 0, def_group, 1, MAX_EXPERTS, &g->n_group)) ||
      (st = get_int(r, "topk_group", 0, def_topk, 1, MAX_EXPERTS,
                    &g->topk_group)))
    return st;
  if (g->n_group > 1 &&
      (c->desc.num_experts % g->n_group != 0 || g->topk_group > g->n_group))
    return fail(r->err, MOE_ERR_FORMAT,
                "%s: n_group %d / topk_group %d do not fit %d experts",
                r->label, g->n_group, g->topk_group, c->desc.num_experts);
  return MOE_OK;
}

static void all_moe(moe_model_config *c) {
  memset(c->is_moe, 1, (size_t)c->num_layers);
}

static moe_status parse_mixtral(reader *r, moe_model_config *c) {
  moe_status st = sizes(r, "num_local_experts", "num_experts_per_tok",
                        "intermediate_size", c);
  if (!st) st = activation(r, "hidden_act", "silu", 1, c);
  c->desc.routing.renormalize = 1;
  if (!st) all_moe(c);
  return st;
}

static moe_status parse_qwen3(reader *r, moe_model_config *c) {
  moe_status st = sizes(r, "num_experts", "num_experts_per_tok",
                        "moe_intermediate_size", c);
  int step = 1;
  if (!st) st = activation(r, "hidden_act", "silu", 1, c);
  if (!st) st = get_bool(r, "norm_topk_prob", 0, &c->desc.routing.renormalize);
  if (!st)
    st = get_int(r, "decoder_sparse_step", 0, 1, 1, MOE_CONFIG_MAX_LAYERS,
                 &step);
  if (st) return st;
  for (int l = 0; l < c->num_layers; l++)
    c->is_moe[l] = (l + 1) % step == 0;
  json_t *only = json_object_get(r->root, "mlp_only_layers");
  if (only && !json_is_null(only)) {
    if (!json_is_array(only))
      return fail(r->err, MOE_ERR_FORMAT,
                  "%s: field 'mlp_only_layers' is not an array", r->label);
    size_t i;
    json_t *v;
    json_array_foreach(only, i, v) {
      if (!json_is_integer(v))
        return fail(r->err, MOE_ERR_FORMAT,
                    "%s: mlp_only_layers[%zu] is not an integer", r->label, i);
      json_int_t l = json_integer_value(v);
      if (l >= 0 && l < c->num_layers) c->is_moe[l] = 0;
    }
  }
  return MOE_OK;
}

static moe_status parse_deepseek(reader *r, moe_model_config *c) {
  moe_layer_desc *d = &c->desc;
  moe_status st = sizes(r, "n_routed_experts", "num_experts_per_tok",
                        "moe_intermediate_size", c);
  int shared = 0, first_dense = 0, freq = 1;
  const char *scoring = "sigmoid", *method = "noaux_tc";
  if (st || (st = activation(r, "hidden_act", "silu", 1, c)) ||
      (st = get_int(r, "n_shared_experts", 0, 1, 0, 64, &shared)) ||
      (st = get_float(r, "routed_scaling_factor", 2.5, 1e-6, 1e6,
                      &d->routing.routed_scaling_factor)) ||
      (st = get_bool(r, "norm_topk_prob", 1, &d->routing.renormalize)) ||
      (st = get_str(r, "scoring_func", "sigmoid", &scoring)) ||
      (st = get_str(r, "topk_method", "noaux_tc", &method)) ||
      (st = get_int(r, "first_k_dense_replace", 0, 3, 0, MOE_CONFIG_MAX_LAYERS,
                    &first_dense)) ||
      (st =
           get_int(r, "moe_layer_freq", 0, 1, 1, MOE_CONFIG_MAX_LAYERS, &freq)))
    return st;
  if (!strcmp(scoring, "sigmoid"))
    d->routing.scoring = MOE_SCORING_SIGMOID;
  else if (!strcmp(scoring, "softmax"))
    d->routing.scoring = MOE_SCORING_SOFTMAX;
  else
    return fail(r->err, MOE_ERR_UNSUPPORTED,
                "%s: field 'scoring_func' = '%.32s' not supported", r->label,
                scoring);
  if (!strcmp(method, "noaux_tc")) {
    if (d->routing.scoring != MOE_SCORING_SIGMOID)
      return fail(r->err, MOE_ERR_UNSUPPORTED,
                  "%s: topk_method noaux_tc needs scoring_func sigmoid",
                  r->label);
    c->has_correction_bias = 1;
    st = grouping(r, 8, 4, c);
  } else if (!strcmp(method, "group_limited_greedy")) {
    st = grouping(r, 8, 4, c);
  } else if (!strcmp(method, "greedy")) {
    d->routing.n_group = 1;
    d->routing.topk_group = 1;
  } else {
    return fail(r->err, MOE_ERR_UNSUPPORTED,
                "%s: field 'topk_method' = '%.32s' not supported", r->label,
                method);
  }
  if (st) return st;
  d->shared_intermediate = shared * d->intermediate;
  for (int l = 0; l < c->num_layers; l++)
    c->is_moe[l] = l >= first_dense && l % freq == 0;
  json_t *q = json_object_get(r->root, "quantization_config");
  json_t *bs = q ? json_object_get(q, "weight_block_size") : NULL;
  if (bs && !json_is_null(bs)) {
    json_t *b0 = json_array_get(bs, 0), *b1 = json_array_get(bs, 1);
    if (!json_is_array(bs) || json_array_size(bs) != 2 ||
        !json_is_integer(b0) || !json_is_integer(b1) ||
        json_integer_value(b0) < 1 || json_integer_value(b0) > MAX_DIM ||
        json_integer_value(b1) < 1 || json_integer_value(b1) > MAX_DIM)
      return fail(r->err, MOE_ERR_FORMAT,
                  "%s: quantization_config.weight_block_size is not two "
                  "positive integers",
                  r->label);
    c->fp8_block[0] = (int)json_integer_value(b0);
    c->fp8_block[1] = (int)json_integer_value(b1);
  }
  return MOE_OK;
}

static moe_status nemotron_layers(reader *r, moe_model_config *c) {
  const char *pat = NULL;
  moe_status st = get_str(r, "hybrid_override_pattern", NULL, &pat);
  if (st) return st;
  json_t *types = json_object_get(r->root, "layers_block_type");
  int n;
  if (pat) {
    n = (int)strlen(pat);
  } else if (json_is_array(types)) {
    n = (int)json_array_size(types);
  } else {
    return fail(r->err, MOE_ERR_FORMAT,
                "%s: missing required field 'hybrid_override_pattern' (%s)",
                r->label, r->family);
  }
  if (n < 1 || n > MOE_CONFIG_MAX_LAYERS)
    return fail(r->err, MOE_ERR_FORMAT, "%s: layer pattern of %d layers",
                r->label, n);
  int layers = 0;
  st = get_int(r, "num_hidden_layers", 0, n, 1, MOE_CONFIG_MAX_LAYERS, &layers);
  if (st) return st;
  if (layers != n)
    return fail(r->err, MOE_ERR_FORMAT,
                "%s: num_hidden_layers %d but the layer pattern has %d",
                r->label, layers, n);
  c->num_layers = n;
  for (int l = 0; l < n; l++) {
    if (pat) {
      c->is_moe[l] = pat[l] == 'E';
    } else {
      const char *t = json_string_value(json_array_get(types, (size_t)l));
      if (!t)
        return fail(r->err, MOE_ERR_FORMAT,
                    "%s: layers_block_type[%d] is not a string", r->label, l);
      c->is_moe[l] = strcmp(t, "moe") == 0;
    }
  }
  return MOE_OK;
}

static moe_status parse_nemotron(reader *r, moe_model_config *c) {
  moe_layer_desc *d = &c->desc;
  moe_status st;
  int shared = 1, latent = 0;
  if ((st = nemotron_layers(r, c)) ||
      (st = get_int(r, "hidden_size", 1, 0, 1, MAX_DIM, &d->hidden)) ||
      (st = get_int(r, "n_routed_experts", 1, 0, 1, MAX_EXPERTS,
                    &d->num_experts)) ||
      (st = get_int(r, "num_experts_per_tok", 1, 0, 1, MAX_EXPERTS,
                    &d->top_k)) ||
      (st = get_int(r, "moe_intermediate_size", 1, 0, 1, MAX_DIM,
                    &d->intermediate)) ||
      (st = get_int(r, "n_shared_experts", 0, 1, 0, 64, &shared)) ||
      (st = get_int(r, "moe_latent_size", 0, 0, 0, MAX_DIM, &latent)) ||
      (st = activation(r, "mlp_hidden_act", "relu2", 0, c)) ||
      (st = get_float(r, "routed_scaling_factor", 1.0, 1e-6, 1e6,
                      &d->routing.routed_scaling_factor)) ||
      (st = get_bool(r, "norm_topk_prob", 1, &d->routing.renormalize)))
    return st;
  if (d->top_k > d->num_experts)
    return fail(r->err, MOE_ERR_FORMAT,
                "%s: num_experts_per_tok %d exceeds n_routed_experts %d",
                r->label, d->top_k, d->num_experts);
  if (latent)
    return fail(r->err, MOE_ERR_UNSUPPORTED,
                "%s: field 'moe_latent_size': latent MoE projections are not "
                "supported",
                r->label);
  if (shared > 0 && (st = get_int(r, "moe_shared_expert_intermediate_size", 1,
                                  0, 1, MAX_DIM, &d->shared_intermediate)))
    return st;
  d->routing.scoring = MOE_SCORING_SIGMOID;
  c->has_correction_bias = 1;
  return grouping(r, 1, 1, c);
}

static moe_status parse_gpt_oss(reader *r, moe_model_config *c) {
  moe_layer_desc *d = &c->desc;
  const char *topk = json_object_get(r->root, "num_experts_per_tok")
                         ? "num_experts_per_tok"
                         : "experts_per_token";
  moe_status st = sizes(r, "num_local_experts", topk, "intermediate_size", c);
  if (!st) st = get_float(r, "swiglu_limit", 7.0, 1e-6, 1e6, &d->swiglu_limit);
  if (st) return st;
  d->activation = MOE_ACT_SWIGLU_OAI;
  d->gated = 1;
  d->swiglu_alpha = 1.702f;
  d->routing.renormalize = 1; /* softmax over the top-k logits */
  c->has_router_bias = 1;
  c->has_expert_bias = 1;
  all_moe(c);
  return MOE_OK;
}

static moe_status detect(reader *r, moe_model_config *c) {
  json_t *mt = json_object_get(r->root, "model_type");
  if (mt && !json_is_string(mt))
    return fail(r->err, MOE_ERR_FORMAT,
                "%s: field 'model_type' is not a "
                "string",
                r->label);
  if (mt) {
    snprintf(c->model_type, sizeof c->model_type, "%s", json_string_value(mt));
    for (int f = 0; f < MOE_FAMILY_COUNT; f++)
      if (!strcmp(c->model_type, family_names[f])) {
        c->family = (moe_family)f;
        return MOE_OK;
      }
  }
  json_t *arch = json_array_get(json_object_get(r->root, "architectures"), 0);
  for (size_t i = 0; json_is_string(arch) && i < 5; i++)
    if (!strcmp(json_string_value(arch), arch_names[i].arch)) {
      c->family = arch_names[i].family;
      return MOE_OK;
    }
  if (!mt)
    return fail(r->err, MOE_ERR_FORMAT,
                "%s: missing required field 'model_type'", r->label);
  return fail(r->err, MOE_ERR_UNSUPPORTED,
              "%s: model_type '%s' is not a MoE family we load (mixtral, "
              "qwen3_moe, deepseek_v3, nemotron_h, gpt_oss)",
              r->label, c->model_type);
}

moe_status moe_model_config_parse(const char *json, size_t len,
                                  const char *label, moe_model_config *cfg,
                                  moe_io_error *err) {
  if (!cfg || (!json && len))
    return fail(err, MOE_ERR_INVALID_ARGUMENT,
                "moe_model_config_parse: NULL argument");
  if (!label) label = "config.json";
  moe_model_config c;
  memset(&c, 0, sizeof c);
  c.desc.routing.scoring = MOE_SCORING_SOFTMAX;
  c.desc.routing.n_group = 1;
  c.desc.routing.topk_group = 1;
  c.desc.routing.routed_scaling_factor = 1.0f;
  c.fp8_block[0] = c.fp8_block[1] = 128;
  json_error_t je;
  json_t *root = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &je);
  if (!root)
    return fail(err, MOE_ERR_FORMAT, "%s: not valid JSON: %s (line %d)", label,
                je.text, je.line);
  reader r = {root, label, "?", err};
  moe_status st = MOE_OK;
  if (!json_is_object(root))
    st = fail(err, MOE_ERR_FORMAT, "%s: not a JSON object", label);
  if (!st) st = detect(&r, &c);
  if (!st) {
    r.family = family_names[c.family];
    switch (c.family) {
    case MOE_FAMILY_MIXTRAL:
      st = parse_mixtral(&r, &c);
      break;
    case MOE_FAMILY_QWEN3_MOE:
      st = parse_qwen3(&r, &c);
      break;
    case MOE_FAMILY_DEEPSEEK_V3:
      st = parse_deepseek(&r, &c);
      break;
    case MOE_FAMILY_NEMOTRON_H:
      st = parse_nemotron(&r, &c);
      break;
    default:
      st = parse_gpt_oss(&r, &c);
      break;
    }
  }
  json_decref(root);
  if (st) return st;
  *cfg = c;
  return MOE_OK;
}

moe_status moe_model_config_load(const char *dir, moe_model_config *cfg,
                                 moe_io_error *err) {
  if (!dir || !cfg)
    return fail(err, MOE_ERR_INVALID_ARGUMENT,
                "moe_model_config_load: NULL argument");
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  FILE *fp = fopen(path, "rb");
  if (!fp) return fail(err, MOE_ERR_IO, "%s: cannot open", path);
  const size_t cap = 16u << 20; /* configs are a few KB */
  char *buf = malloc(cap);
  size_t n = buf ? fread(buf, 1, cap, fp) : 0;
  int too_big = buf && n == cap && fgetc(fp) != EOF;
  int rd_err = ferror(fp);
  fclose(fp);
  if (!buf) return fail(err, MOE_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  moe_status st;
  if (rd_err)
    st = fail(err, MOE_ERR_IO, "%s: read error", path);
  else if (too_big)
    st = fail(err, MOE_ERR_FORMAT, "%s: larger than 16 MB", path);
  else
    st = moe_model_config_parse(buf, n, path, cfg, err);
  free(buf);
  return st;
}

int moe_model_config_is_moe(const moe_model_config *cfg, int layer) {
  if (!cfg || layer < 0 || layer >= cfg->num_layers) return 0;
  return cfg->is_moe[layer];
}
