/*
 * test_io_errors.c - the io readers on corrupt and valid inputs: every
 * corruption gives its status and a message naming the file and the tensor
 * (or config field), nothing crashes, nothing leaks (run under ASan), and a
 * failed layer load hands back nothing.
 */
#define _XOPEN_SOURCE 700
#include "backend.h"
#include "io/io.h"

#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static char dir[256];

static int rm_one(const char *p, const struct stat *sb, int flag,
                  struct FTW *f) {
  (void)sb;
  (void)flag;
  (void)f;
  return remove(p);
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/moe_io_test_XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  return nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *path_of(const char *name) {
  static char p[1024];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return p;
}

static void write_bytes(const char *name, const void *b, size_t n) {
  FILE *f = fopen(path_of(name), "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b, 1, n, f), n);
  fclose(f);
}

static void write_text(const char *name, const char *text) {
  write_bytes(name, text, strlen(text));
}

/* A safetensors file: 8-byte length, the header, `data_len` data bytes. */
static void write_st(const char *name, const char *header, size_t data_len) {
  size_t h = strlen(header);
  unsigned char *b = calloc(1, 8 + h + data_len + 1);
  for (int i = 0; i < 8; i++)
    b[i] = (unsigned char)((uint64_t)h >> (8 * i));
  memcpy(b + 8, header, h);
  for (size_t i = 0; i < data_len; i++)
    b[8 + h + i] = (unsigned char)i;
  write_bytes(name, b, 8 + h + data_len);
  free(b);
}

/* Opens `name`; expects status `want` and every fragment in the message. */
static void expect_open(const char *name, moe_status want, ...) {
  moe_io_error err;
  memset(&err, 0, sizeof err);
  moe_st_file *f = (moe_st_file *)0x1;
  moe_status st = moe_st_open(path_of(name), &f, &err);
  if (st != want) fprintf(stderr, "%s: got %d: %s\n", name, st, err.message);
  assert_int_equal(st, want);
  if (want != MOE_OK) {
    assert_null(f);
    assert_non_null(strstr(err.message, path_of(name)));
  }
  va_list ap;
  va_start(ap, want);
  for (const char *s; (s = va_arg(ap, const char *)) != NULL;) {
    if (!strstr(err.message, s))
      fprintf(stderr, "message '%s' lacks '%s'\n", err.message, s);
    assert_non_null(strstr(err.message, s));
  }
  va_end(ap);
  moe_st_close(st == MOE_OK ? f : NULL);
}

#define T1(n, o)                                                               \
  "\"" n "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" o "}"

static void test_st_corrupt(void **state) {
  (void)state;
  write_bytes("short.safetensors", "\x10\x00\x00", 3);
  expect_open("short.safetensors", MOE_ERR_FORMAT, "truncated", NULL);
  write_bytes("past.safetensors", "\xff\x00\x00\x00\x00\x00\x00\x00{}", 10);
  expect_open("past.safetensors", MOE_ERR_FORMAT, "past the end", NULL);
  write_bytes("huge.safetensors", "\x00\x00\x00\x00\x01\x00\x00\x00{}", 10);
  expect_open("huge.safetensors", MOE_ERR_FORMAT, "exceeds the limit", NULL);
  write_st("json.safetensors", "{\"a\": {\"dtype\": ", 0);
  expect_open("json.safetensors", MOE_ERR_FORMAT, "not valid JSON", NULL);
  write_st("arr.safetensors", "[1,2]", 0);
  expect_open("arr.safetensors", MOE_ERR_FORMAT, "start with", NULL);
  write_st("overlap.safetensors",
           "{" T1("a", "[0,8]") "," T1("b", "[4,12]") "}", 12);
  expect_open("overlap.safetensors", MOE_ERR_FORMAT, "tensor b", "overlaps",
              NULL);
  write_st("gap.safetensors", "{" T1("a", "[0,8]") "," T1("b", "[12,20]") "}",
           20);
  expect_open("gap.safetensors", MOE_ERR_FORMAT, "tensor b", "gap", NULL);
  write_st("end.safetensors", "{" T1("a", "[0,8]") "," T1("b", "[8,16]") "}",
           12);
  expect_open("end.safetensors", MOE_ERR_FORMAT, "tensor b", "past the end",
              NULL);
  write_st("size.safetensors", "{" T1("a", "[0,12]") "}", 12);
  expect_open("size.safetensors", MOE_ERR_FORMAT, "tensor a", "needs 8", NULL);
  write_st("dtype.safetensors",
           "{\"w\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,1]}}",
           1);
  expect_open("dtype.safetensors", MOE_ERR_FORMAT, "tensor w",
              "unknown dtype 'F7'", NULL);
  write_st("dup.safetensors", "{" T1("a", "[0,8]") "," T1("a", "[8,16]") "}",
           16);
  expect_open("dup.safetensors", MOE_ERR_FORMAT, "duplicate", NULL);
  write_st("rev.safetensors", "{" T1("a", "[0,8]") "," T1("b", "[0,8]") "}", 8);
  expect_open("rev.safetensors", MOE_ERR_FORMAT, "overlaps", NULL);
  write_st("trail.safetensors", "{" T1("a", "[0,8]") "}", 9);
  expect_open("trail.safetensors", MOE_ERR_FORMAT, "trailing", NULL);
  write_st("neg.safetensors",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}",
           0);
  expect_open("neg.safetensors", MOE_ERR_FORMAT, "tensor a", "shape", NULL);
  write_st("ovf.safetensors",
           "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],"
           "\"data_offsets\":[0,0]}}",
           0);
  expect_open("ovf.safetensors", MOE_ERR_FORMAT, "tensor a", "overflow", NULL);
  write_st("noff.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 0);
  expect_open("noff.safetensors", MOE_ERR_FORMAT, "tensor a", "data_offsets",
              NULL);
  write_st("meta.safetensors", "{\"__metadata__\":{\"k\":1}}", 0);
  expect_open("meta.safetensors", MOE_ERR_FORMAT, "__metadata__", NULL);
  expect_open("absent.safetensors", MOE_ERR_IO, "cannot open", NULL);
}

static void test_st_valid_and_truncated(void **state) {
  (void)state;
  /* Listed out of order but tiling the data: valid. */
  write_st("ok.safetensors",
           "{\"__metadata__\":{\"format\":\"pt\"}," T1("b", "[8,16]") "," T1(
               "a", "[0,8]") ",\"e\":{\"dtype\":\"BF16\",\"shape\":[0,3],"
                             "\"data_offsets\":[16,16]}}",
           16);
  moe_io_error err;
  moe_st_file *f = NULL;
  assert_int_equal(moe_st_open(path_of("ok.safetensors"), &f, &err), MOE_OK);
  assert_int_equal(moe_st_count(f), 3);
  const moe_st_tensor *b = moe_st_find(f, "b");
  assert_non_null(b);
  assert_int_equal(((const unsigned char *)b->data)[0], 8);
  assert_int_equal(moe_st_find(f, "e")->numel, 0);
  assert_null(moe_st_find(f, "zz"));
  assert_string_equal(moe_st_metadata(f, "format"), "pt");
  moe_st_close(f);

  /* Writer round trip, then the same file cut short by one byte. */
  float v[6] = {1, 2, 3, 4, 5, 6};
  uint16_t h[2] = {moe_f32_to_bf16(1.5f), moe_f32_to_bf16(-2.0f)};
  moe_st_out t[2] = {{"x", MOE_ST_F32, 2, {2, 3}, v},
                     {"y", MOE_ST_BF16, 1, {2}, h}};
  assert_int_equal(moe_st_write(path_of("w.safetensors"), t, 2, &err), MOE_OK);
  assert_int_equal(moe_st_open(path_of("w.safetensors"), &f, &err), MOE_OK);
  const moe_st_tensor *x = moe_st_find(f, "x"), *y = moe_st_find(f, "y");
  assert_true(x && y && x->ndim == 2 && x->shape[1] == 3);
  float d[6];
  moe_st_decode(x, 0, 6, d);
  assert_memory_equal(d, v, sizeof v);
  moe_st_decode(y, 0, 2, d);
  assert_true(d[0] == 1.5f && d[1] == -2.0f);
  FILE *fp = fopen(path_of("w.safetensors"), "rb");
  unsigned char buf[4096];
  size_t n = fread(buf, 1, sizeof buf, fp);
  fclose(fp);
  moe_st_close(f);
  write_bytes("cut.safetensors", buf, n - 1);
  expect_open("cut.safetensors", MOE_ERR_FORMAT, "tensor y", "past the end",
              NULL);
}

static void test_dequant(void **state) {
  (void)state;
  assert_true(moe_fp8_e4m3_to_f32(0x7e) == 448.0f);
  assert_true(moe_fp8_e4m3_to_f32(0xfe) == -448.0f);
  assert_true(moe_fp8_e4m3_to_f32(0x01) == ldexpf(1.0f, -9));
  assert_true(moe_fp8_e4m3_to_f32(0x38) == 1.0f);
  assert_true(isnan(moe_fp8_e4m3_to_f32(0x7f)));
  assert_true(moe_fp8_e5m2_to_f32(0x3c) == 1.0f);
  assert_true(moe_fp4_e2m1_to_f32(7) == 6.0f);
  assert_true(moe_fp4_e2m1_to_f32(0xd) == -3.0f);
}

/* ---- config.json ---- */

static moe_status parse_cfg(const char *json, moe_model_config *c,
                            moe_io_error *err) {
  memset(err, 0, sizeof *err);
  return moe_model_config_parse(json, strlen(json), "cfg.json", c, err);
}

static void expect_cfg(const char *json, moe_status want, const char *frag) {
  moe_model_config c;
  moe_io_error err;
  moe_status st = parse_cfg(json, &c, &err);
  if (st != want || !strstr(err.message, frag))
    fprintf(stderr, "config %s -> %d '%s' (want '%s')\n", json, st, err.message,
            frag);
  assert_int_equal(st, want);
  assert_non_null(strstr(err.message, "cfg.json"));
  assert_non_null(strstr(err.message, frag));
}

#define MIX "\"model_type\":\"mixtral\",\"hidden_size\":8,"
static void test_config_errors(void **state) {
  (void)state;
  expect_cfg("{\"model_type\": ", MOE_ERR_FORMAT, "not valid JSON");
  expect_cfg("[]", MOE_ERR_FORMAT, "not a JSON object");
  expect_cfg("{\"hidden_size\":8}", MOE_ERR_FORMAT, "'model_type'");
  expect_cfg("{\"model_type\":\"llama\"}", MOE_ERR_UNSUPPORTED, "llama");
  expect_cfg("{" MIX "\"num_experts_per_tok\":2,\"intermediate_size\":4,"
             "\"num_hidden_layers\":2}",
             MOE_ERR_FORMAT, "'num_local_experts'");
  expect_cfg("{" MIX "\"num_local_experts\":\"8\",\"num_experts_per_tok\":2,"
             "\"intermediate_size\":4,\"num_hidden_layers\":2}",
             MOE_ERR_FORMAT, "not an integer");
  expect_cfg("{" MIX "\"num_local_experts\":2,\"num_experts_per_tok\":3,"
             "\"intermediate_size\":4,\"num_hidden_layers\":2}",
             MOE_ERR_FORMAT, "exceeds");
  expect_cfg("{" MIX "\"num_local_experts\":2,\"num_experts_per_tok\":1,"
             "\"intermediate_size\":4,\"num_hidden_layers\":0}",
             MOE_ERR_FORMAT, "out of range");
  expect_cfg("{\"model_type\":\"nemotron_h\",\"hidden_size\":8,"
             "\"hybrid_override_pattern\":\"ME\",\"num_hidden_layers\":3}",
             MOE_ERR_FORMAT, "pattern has 2");
  expect_cfg("{\"model_type\":\"nemotron_h\",\"hidden_size\":8}",
             MOE_ERR_FORMAT, "hybrid_override_pattern");
  expect_cfg("{\"model_type\":\"deepseek_v3\",\"hidden_size\":8,"
             "\"n_routed_experts\":6,\"num_experts_per_tok\":2,"
             "\"moe_intermediate_size\":4,\"num_hidden_layers\":2,"
             "\"scoring_func\":\"tanh\"}",
             MOE_ERR_UNSUPPORTED, "scoring_func");
  expect_cfg("{\"model_type\":\"deepseek_v3\",\"hidden_size\":8,"
             "\"n_routed_experts\":6,\"num_experts_per_tok\":2,"
             "\"moe_intermediate_size\":4,\"num_hidden_layers\":2,"
             "\"n_group\":4,\"topk_group\":2}",
             MOE_ERR_FORMAT, "n_group");
  moe_model_config c;
  moe_io_error err;
  assert_int_equal(moe_model_config_load(path_of("nowhere"), &c, &err),
                   MOE_ERR_IO);
  assert_non_null(strstr(err.message, "config.json"));
}

static void test_config_families(void **state) {
  (void)state;
  moe_model_config c;
  moe_io_error err;
  assert_int_equal(
      parse_cfg("{\"model_type\":\"deepseek_v3\",\"hidden_size\":16,"
                "\"n_routed_experts\":8,\"num_experts_per_tok\":3,"
                "\"moe_intermediate_size\":4,\"num_hidden_layers\":5,"
                "\"n_shared_experts\":2,\"routed_scaling_factor\":2.5,"
                "\"n_group\":4,\"topk_group\":2,\"first_k_dense_replace\":1,"
                "\"moe_layer_freq\":2,\"scoring_func\":\"sigmoid\","
                "\"topk_method\":\"noaux_tc\",\"norm_topk_prob\":true}",
                &c, &err),
      MOE_OK);
  assert_int_equal(c.family, MOE_FAMILY_DEEPSEEK_V3);
  assert_int_equal(c.desc.shared_intermediate, 8);
  assert_int_equal(c.desc.routing.scoring, MOE_SCORING_SIGMOID);
  assert_int_equal(c.desc.routing.n_group, 4);
  assert_true(c.desc.routing.routed_scaling_factor == 2.5f);
  assert_true(c.has_correction_bias && c.desc.routing.renormalize);
  int want_ds[5] = {0, 0, 1, 0, 1};
  for (int l = 0; l < 5; l++)
    assert_int_equal(moe_model_config_is_moe(&c, l), want_ds[l]);

  assert_int_equal(
      parse_cfg("{\"model_type\":\"qwen3_moe\",\"hidden_size\":16,"
                "\"num_experts\":8,\"num_experts_per_tok\":2,"
                "\"moe_intermediate_size\":4,\"num_hidden_layers\":4,"
                "\"decoder_sparse_step\":2,\"mlp_only_layers\":[3]}",
                &c, &err),
      MOE_OK);
  int want_q[4] = {0, 1, 0, 0};
  for (int l = 0; l < 4; l++)
    assert_int_equal(moe_model_config_is_moe(&c, l), want_q[l]);
  assert_int_equal(c.desc.routing.renormalize, 0);

  assert_int_equal(
      parse_cfg("{\"architectures\":[\"NemotronHForCausalLM\"],"
                "\"hidden_size\":16,\"hybrid_override_pattern\":\"M-E*E\","
                "\"n_routed_experts\":8,\"num_experts_per_tok\":2,"
                "\"moe_intermediate_size\":4,"
                "\"moe_shared_expert_intermediate_size\":6,"
                "\"routed_scaling_factor\":2.5}",
                &c, &err),
      MOE_OK);
  assert_int_equal(c.family, MOE_FAMILY_NEMOTRON_H);
  assert_int_equal(c.desc.activation, MOE_ACT_RELU2);
  assert_int_equal(c.desc.gated, 0);
  assert_int_equal(c.desc.shared_intermediate, 6);
  assert_int_equal(c.num_layers, 5);
  assert_true(!c.is_moe[1] && c.is_moe[2] && !c.is_moe[3] && c.is_moe[4]);

  assert_int_equal(parse_cfg("{\"model_type\":\"gpt_oss\",\"hidden_size\":16,"
                             "\"num_local_experts\":8,\"experts_per_token\":2,"
                             "\"intermediate_size\":4,\"num_hidden_layers\":2,"
                             "\"swiglu_limit\":5.0}",
                             &c, &err),
                   MOE_OK);
  assert_int_equal(c.desc.activation, MOE_ACT_SWIGLU_OAI);
  assert_true(c.desc.swiglu_limit == 5.0f && c.has_router_bias &&
              c.has_expert_bias && c.desc.top_k == 2);
}

/* ---- one layer of a checkpoint ---- */

#define E_ 2
#define H_ 4
#define I_ 3

typedef struct tiny {
  moe_st_out t[32];
  int n;
  float store[32][64];
} tiny;

static void tiny_add(tiny *c, const char *name, int r, int k, float base) {
  static char names[32][96];
  snprintf(names[c->n], sizeof names[0], "%s", name);
  moe_st_out *o = &c->t[c->n];
  o->name = names[c->n];
  o->dtype = MOE_ST_F32;
  o->ndim = k ? 2 : 1;
  o->shape[0] = r;
  o->shape[1] = k;
  for (int i = 0; i < r * (k ? k : 1); i++)
    c->store[c->n][i] = base + i;
  o->data = c->store[c->n];
  c->n++;
}

static const char *mix_cfg =
    "{\"model_type\":\"mixtral\",\"hidden_size\":4,\"intermediate_size\":3,"
    "\"num_local_experts\":2,\"num_experts_per_tok\":1,"
    "\"num_hidden_layers\":2}";

/* The mixtral layer-1 tensors; `skip` is left out, `bad` is misshapen. */
static void tiny_mixtral(const char *sub, const char *skip, const char *bad) {
  char d[512], n[96];
  snprintf(d, sizeof d, "%s/%s", dir, sub);
  mkdir(d, 0755);
  tiny *c = calloc(1, sizeof *c);
  const char *pre = "model.layers.1.block_sparse_moe.";
  snprintf(n, sizeof n, "%sgate.weight", pre);
  tiny_add(c, n, E_, H_, 1000);
  for (int e = 0; e < E_; e++) {
    static const char *w[3] = {"w1", "w3", "w2"};
    for (int j = 0; j < 3; j++) {
      snprintf(n, sizeof n, "%sexperts.%d.%s.weight", pre, e, w[j]);
      if (skip && !strcmp(n, skip)) continue;
      int r = j == 2 ? H_ : I_, k = j == 2 ? I_ : H_;
      if (bad && !strcmp(n, bad)) k++;
      tiny_add(c, n, r, k, (float)(100 * e + 10 * j));
    }
  }
  char p[600];
  snprintf(p, sizeof p, "%s/model.safetensors", d);
  moe_io_error err;
  assert_int_equal(moe_st_write(p, c->t, c->n, &err), MOE_OK);
  snprintf(p, sizeof p, "%s/config.json", sub);
  write_text(p, mix_cfg);
  free(c);
}

static void test_layer_load_layout(void **state) {
  (void)state;
  tiny_mixtral("mix", NULL, NULL);
  moe_layer_bundle *b = NULL;
  moe_io_error err;
  assert_int_equal(moe_checkpoint_load_layer(path_of("mix"), 1, MOE_DTYPE_F32,
                                             NULL, &b, &err),
                   MOE_OK);
  const float *w13 = b->w13, *w2 = b->w2, *r = b->router_weight;
  for (int e = 0; e < E_; e++)
    for (int i = 0; i < 2 * I_ * H_; i++) /* [w1 rows; w3 rows] */
      assert_true(w13[e * 2 * I_ * H_ + i] ==
                  (float)(100 * e + (i < I_ * H_ ? i : 10 + i - I_ * H_)));
  for (int i = 0; i < E_ * H_ * I_; i++)
    assert_true(w2[i] == (float)(100 * (i / (H_ * I_)) + 20 + i % (H_ * I_)));
  assert_true(r[5] == 1005.0f && b->weights.memory == MOE_MEMORY_HOST);
  assert_true(b->weights.w13 == b->w13 && b->desc.dtype == MOE_DTYPE_F32);
  assert_true(b->desc.num_experts == E_ && b->desc.top_k == 1);
  moe_layer_bundle_free(b);
  assert_int_equal(moe_checkpoint_load_layer(path_of("mix"), 1, MOE_DTYPE_BF16,
                                             NULL, &b, &err),
                   MOE_OK);
  assert_true(moe_load_elem(b->w13, 13, MOE_DTYPE_BF16) == 11.0f);
  moe_layer_bundle_free(b);
}

static void expect_load(const char *sub, int layer, moe_status want,
                        const char *frag) {
  moe_layer_bundle *b = (moe_layer_bundle *)0x1;
  moe_io_error err;
  memset(&err, 0, sizeof err);
  moe_status st = moe_checkpoint_load_layer(path_of(sub), layer, MOE_DTYPE_BF16,
                                            NULL, &b, &err);
  if (st != want || !strstr(err.message, frag))
    fprintf(stderr, "%s: %d '%s' (want '%s')\n", sub, st, err.message, frag);
  assert_int_equal(st, want);
  assert_null(b); /* never a partial layer */
  assert_non_null(strstr(err.message, frag));
  assert_non_null(strstr(err.message, path_of(sub)));
}

static void test_layer_load_errors(void **state) {
  (void)state;
  const char *miss = "model.layers.1.block_sparse_moe.experts.1.w3.weight";
  tiny_mixtral("miss", miss, NULL);
  expect_load("miss", 1, MOE_ERR_FORMAT, miss);
  const char *bad = "model.layers.1.block_sparse_moe.experts.0.w2.weight";
  tiny_mixtral("shape", NULL, bad);
  expect_load("shape", 1, MOE_ERR_FORMAT, bad);
  expect_load("shape", 1, MOE_ERR_FORMAT, "expected [4, 3]");
  expect_load("miss", 0, MOE_ERR_FORMAT, "model.layers.0.block_sparse_moe");
  expect_load("miss", 2, MOE_ERR_INVALID_ARGUMENT, "out of range");
  expect_load("nowhere", 1, MOE_ERR_IO, "config.json");

  /* Sharded: an index naming a file outside the directory, a tensor the
   * shard lacks, a corrupt shard. */
  tiny_mixtral("idx", NULL, NULL);
  write_text("idx/model.safetensors.index.json",
             "{\"weight_map\":{\"a\":\"../x.safetensors\"}}");
  expect_load("idx", 1, MOE_ERR_FORMAT, "../x.safetensors");
  write_text("idx/model.safetensors.index.json",
             "{\"weight_map\":{\"model.layers.1.block_sparse_moe.gate.weight\":"
             "\"bad.safetensors\"}}");
  write_st("idx/bad.safetensors", "{\"a\":1}", 0);
  expect_load("idx", 1, MOE_ERR_FORMAT, "bad.safetensors");
  write_text("idx/model.safetensors.index.json",
             "{\"weight_map\":{\"model.layers.1.block_sparse_moe.gate.weight\":"
             "\"model.safetensors\",\"zz\":\"model.safetensors\"}}");
  expect_load("idx", 1, MOE_ERR_FORMAT, "experts.0.w1.weight");

  /* A non-MoE layer, and FP8 weights without their block scales. */
  write_text("idx/config.json",
             "{\"model_type\":\"deepseek_v3\",\"hidden_size\":4,"
             "\"n_routed_experts\":2,\"num_experts_per_tok\":1,"
             "\"moe_intermediate_size\":3,\"num_hidden_layers\":2,"
             "\"first_k_dense_replace\":1,\"topk_method\":\"greedy\"}");
  expect_load("idx", 0, MOE_ERR_INVALID_ARGUMENT, "not a MoE layer");
  remove(path_of("idx/model.safetensors.index.json"));
  unsigned char q[12] = {0x38};
  moe_st_out t = {
      "model.layers.1.mlp.gate.weight", MOE_ST_F8_E4M3, 2, {3, 4}, q};
  moe_io_error err;
  assert_int_equal(moe_st_write(path_of("idx/model.safetensors"), &t, 1, &err),
                   MOE_OK);
  remove(path_of("idx/bad.safetensors"));
  expect_load("idx", 1, MOE_ERR_FORMAT, "shape [3, 4], expected [2, 4]");
  t.shape[0] = 2;
  assert_int_equal(moe_st_write(path_of("idx/model.safetensors"), &t, 1, &err),
                   MOE_OK);
  expect_load("idx", 1, MOE_ERR_FORMAT, "gate.weight_scale_inv");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_st_corrupt),
      cmocka_unit_test(test_st_valid_and_truncated),
      cmocka_unit_test(test_dequant),
      cmocka_unit_test(test_config_errors),
      cmocka_unit_test(test_config_families),
      cmocka_unit_test(test_layer_load_layout),
      cmocka_unit_test(test_layer_load_errors),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
