/* gpu_case.c - see gpu_case.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cuda/cuda_backends.h"
#include "gpu_case.h"

void gpu_fill(tu_rng *r, void *p, size_t n, moe_dtype dt, float a) {
  for (size_t i = 0; i < n; i++)
    moe_store_elem(p, i, dt, tu_uniform(r, -a, a));
}

void gpu_make_host(const tcase *c, host_layer *h, tu_rng *r) {
  memset(h, 0, sizeof *h);
  size_t es = moe_dtype_size(c->dt);
  h->El = c->E;
  if (c->emap) {
    h->El = 0;
    for (int e = 0; e < c->E; e++)
      h->map[e] = (e % 2 == 0) ? h->El++ : -1;
  }
  h->N1 = c->gated ? 2 * c->I : c->I;
  h->N1s = c->gated ? 2 * c->Is : c->Is;
  int Mx = c->M > 0 ? c->M : 1;
  h->nx = (size_t)Mx * c->H;
  h->nw13 = (size_t)h->El * h->N1 * c->H;
  h->nw2 = (size_t)h->El * c->H * c->I;
  h->nsw13 = (size_t)h->N1s * c->H;
  h->nsw2 = (size_t)c->H * c->Is;
  h->x = malloc(h->nx * es);
  h->w13 = malloc(h->nw13 * es);
  h->w2 = malloc(h->nw2 * es);
  gpu_fill(r, h->x, h->nx, c->dt, 1.0f);
  gpu_fill(r, h->w13, h->nw13, c->dt, 2.0f / sqrtf((float)c->H));
  gpu_fill(r, h->w2, h->nw2, c->dt, 2.0f / sqrtf((float)c->I));
  if (c->Is) {
    h->sw13 = malloc(h->nsw13 * es);
    h->sw2 = malloc(h->nsw2 * es);
    gpu_fill(r, h->sw13, h->nsw13, c->dt, 2.0f / sqrtf((float)c->H));
    gpu_fill(r, h->sw2, h->nsw2, c->dt, 2.0f / sqrtf((float)c->Is));
  }
  h->logits = malloc((size_t)Mx * c->E * sizeof(float));
  for (size_t i = 0; i < (size_t)Mx * c->E; i++)
    h->logits[i] = tu_uniform(r, -3, 3);
  for (int t = 0; t < Mx; t++) {
    if (c->skew == 1) h->logits[(size_t)t * c->E] = 20.0f;
    if (c->skew == 2) h->logits[(size_t)t * c->E + c->E - 1] = -30.0f;
  }
  if (c->ebias) {
    h->b13 = malloc((size_t)h->El * h->N1 * sizeof(float));
    h->b2 = malloc((size_t)h->El * c->H * sizeof(float));
    for (size_t i = 0; i < (size_t)h->El * h->N1; i++)
      h->b13[i] = tu_uniform(r, -0.3f, 0.3f);
    for (size_t i = 0; i < (size_t)h->El * c->H; i++)
      h->b2[i] = tu_uniform(r, -0.3f, 0.3f);
  }
  if (c->cbias) {
    h->cb = malloc((size_t)c->E * sizeof(float));
    for (int i = 0; i < c->E; i++)
      h->cb[i] = tu_uniform(r, -0.5f, 0.5f);
  }
}

void gpu_free_host(host_layer *h) {
  free(h->x);
  free(h->w13);
  free(h->w2);
  free(h->sw13);
  free(h->sw2);
  free(h->logits);
  free(h->b13);
  free(h->b2);
  free(h->cb);
}

void *gpu_dev_copy(const void *h, size_t bytes) {
  if (!h) return NULL;
  void *d = NULL;
  assert_int_equal(moe_memops_cuda.alloc(&d, bytes), MOE_OK);
  assert_int_equal(moe_memops_cuda.upload(d, h, bytes), MOE_OK);
  return d;
}

void gpu_desc_of(const tcase *c, const host_layer *h, moe_layer_desc *d,
                 const char *backend) {
  moe_layer_desc_init(d);
  d->num_experts = c->E;
  d->top_k = c->k;
  d->hidden = c->H;
  d->intermediate = c->I;
  d->activation = c->act;
  d->gated = c->gated;
  d->dtype = c->dt;
  d->routing.scoring = c->scoring;
  d->routing.n_group = c->n_group;
  d->routing.topk_group = c->topk_group;
  d->routing.renormalize = c->renorm;
  d->routing.routed_scaling_factor = c->scale;
  d->shared_intermediate = c->Is;
  d->expert_map = c->emap ? h->map : NULL;
  d->max_tokens = c->max_tokens;
  d->backend = backend;
  d->allow_fallback = 0;
  d->self_check = 0;
}

void gpu_to_f32(const void *p, size_t n, moe_dtype dt, float *o) {
  for (size_t i = 0; i < n; i++)
    o[i] = moe_load_elem(p, i, dt);
}

/* ---- the case runner ---- */

void gpu_run_case(const tcase *c, const char *backend, const char *tag) {
  tu_rng r = tu_rng_make((uint64_t)(uintptr_t)c->name ^ (uint64_t)c->M);
  host_layer h;
  gpu_make_host(c, &h, &r);
  size_t es = moe_dtype_size(c->dt);
  moe_context *ctx = NULL;
  moe_context_options o;
  moe_context_options_init(&o);
  o.device_override = "";
  o.num_threads = c->M > 2048 ? 8 : 1;
  assert_int_equal(moe_context_create(&o, &ctx), MOE_OK);

  /* Reference on the CPU. */
  moe_layer_desc d;
  gpu_desc_of(c, &h, &d, "cpu-ref");
  moe_weights hw = {MOE_MEMORY_HOST, h.w13, h.w2, h.b13, h.b2, h.cb,
                    h.sw13,          h.sw2};
  moe_layer *ref = NULL;
  moe_status st = moe_layer_create(ctx, &d, &hw, &ref);
  if (st != MOE_OK) fprintf(stderr, "cpu-ref: %s\n", moe_last_error(ctx));
  assert_int_equal(st, MOE_OK);
  size_t Mx = c->M > 0 ? (size_t)c->M : 1, nout = Mx * c->H;
  void *ref_out = malloc(nout * es);
  int32_t *ids = malloc(Mx * c->k * sizeof(int32_t));
  float *wts = malloc(Mx * c->k * sizeof(float));
  if (c->emap) {
    assert_int_equal(moe_route(ref, h.logits, c->M, ids, wts, NULL), MOE_OK);
    assert_int_equal(
        moe_forward_routed(ref, h.x, ids, wts, c->M, ref_out, NULL), MOE_OK);
  } else {
    assert_int_equal(moe_forward(ref, h.x, h.logits, c->M, ref_out, NULL),
                     MOE_OK);
  }

  /* The same on the GPU. */
  void *dx = gpu_dev_copy(h.x, h.nx * es),
       *dw13 = gpu_dev_copy(h.w13, h.nw13 * es);
  void *dw2 = gpu_dev_copy(h.w2, h.nw2 * es);
  void *dsw13 = gpu_dev_copy(h.sw13, h.nsw13 * es);
  void *dsw2 = gpu_dev_copy(h.sw2, h.nsw2 * es);
  float *dlog = gpu_dev_copy(h.logits, Mx * c->E * sizeof(float));
  float *db13 = h.b13 ? gpu_dev_copy(h.b13, (size_t)h.El * h.N1 * 4) : NULL;
  float *db2 = h.b2 ? gpu_dev_copy(h.b2, (size_t)h.El * c->H * 4) : NULL;
  float *dcb = h.cb ? gpu_dev_copy(h.cb, (size_t)c->E * 4) : NULL;
  int32_t *dids = gpu_dev_copy(ids, Mx * c->k * 4);
  float *dwts = gpu_dev_copy(wts, Mx * c->k * 4);
  void *dout = NULL, *dout2 = NULL;
  assert_int_equal(moe_memops_cuda.alloc(&dout, nout * es), MOE_OK);
  assert_int_equal(moe_memops_cuda.alloc(&dout2, nout * es), MOE_OK);
  gpu_desc_of(c, &h, &d, backend);
  moe_weights dw = {MOE_MEMORY_CUDA, dw13, dw2, db13, db2, dcb, dsw13, dsw2};
  moe_layer *gl = NULL;
  st = moe_layer_create(ctx, &d, &dw, &gl);
  if (st != MOE_OK) fprintf(stderr, "%s: %s\n", backend, moe_last_error(ctx));
  assert_int_equal(st, MOE_OK);
  assert_string_equal(moe_layer_backend(gl), backend);

  void *got = malloc(nout * es), *got2 = malloc(nout * es);
  float *fr = malloc(nout * sizeof(float)), *fg = malloc(nout * sizeof(float));
#define FWD(out, strm)                                                         \
  (c->emap ? moe_forward_routed(gl, dx, dids, dwts, c->M, out, strm)           \
           : moe_forward(gl, dx, dlog, c->M, out, strm))
  assert_int_equal(moe_memops_cuda.fill(dout, 0xFF, nout * es), MOE_OK);
  st = FWD(dout, NULL);
  if (st != MOE_OK) fprintf(stderr, "forward: %s\n", moe_last_error(ctx));
  assert_int_equal(st, MOE_OK);
  assert_int_equal(moe_memops_cuda.sync(), MOE_OK);
  assert_int_equal(moe_memops_cuda.download(got, dout, nout * es), MOE_OK);
  if (c->M == 0) {
    assert_true(tu_all_poison(got, nout * es));
  } else {
    gpu_to_f32(ref_out, nout, c->dt, fr);
    gpu_to_f32(got, nout, c->dt, fg);
    double err = tu_rel_error(fg, fr, nout);
    printf("  %-28s M=%-6d rel err %.2e%s\n", c->name, c->M, err, tag);
    assert_true(err < 1e-2);

    /* Run to run: bit-identical. */
    assert_int_equal(moe_memops_cuda.fill(dout2, 0xFF, nout * es), MOE_OK);
    assert_int_equal(FWD(dout2, NULL), MOE_OK);
    assert_int_equal(moe_memops_cuda.download(got2, dout2, nout * es), MOE_OK);
    assert_memory_equal(got, got2, nout * es);

    /* Routing ids agree with the reference exactly. */
    if (!c->emap) {
      int32_t *gid = malloc(Mx * c->k * 4), *rid = malloc(Mx * c->k * 4);
      float *gw = malloc(Mx * c->k * 4), *rw = malloc(Mx * c->k * 4);
      assert_int_equal(moe_route(ref, h.logits, c->M, rid, rw, NULL), MOE_OK);
      assert_int_equal(moe_route(gl, dlog, c->M, dids, dwts, NULL), MOE_OK);
      assert_int_equal(moe_memops_cuda.sync(), MOE_OK);
      assert_int_equal(moe_memops_cuda.download(gid, dids, Mx * c->k * 4),
                       MOE_OK);
      assert_int_equal(moe_memops_cuda.download(gw, dwts, Mx * c->k * 4),
                       MOE_OK);
      for (size_t i = 0; i < (size_t)c->M * c->k; i++) {
        if (gid[i] != rid[i])
          fprintf(stderr, "id mismatch at %zu: %d vs %d\n", i, gid[i], rid[i]);
        assert_int_equal(gid[i], rid[i]);
        assert_true(fabsf(gw[i] - rw[i]) <= 1e-5f * (1.0f + fabsf(rw[i])));
      }
      free(gid);
      free(rid);
      free(gw);
      free(rw);
    }
  }
#undef FWD
  moe_layer_destroy(gl);
  moe_layer_destroy(ref);
  moe_context_destroy(ctx);
  void *dp[] = {dx,  dw13, dw2,  dsw13, dsw2, dlog, db13,
                db2, dcb,  dids, dwts,  dout, dout2};
  for (size_t i = 0; i < sizeof dp / sizeof dp[0]; i++)
    moe_memops_cuda.release(dp[i]);
  free(ref_out);
  free(ids);
  free(wts);
  free(got);
  free(got2);
  free(fr);
  free(fg);
  gpu_free_host(&h);
}

/* ---- the shared case tables ---- */

#define BF MOE_DTYPE_BF16
#define SM MOE_SCORING_SOFTMAX
#define SG MOE_SCORING_SIGMOID

void gpu_cases_act_x_routing(void (*run)(const tcase *c)) {
  struct {
    moe_activation a;
    int gated;
  } acts[] = {{MOE_ACT_SILU, 1}, {MOE_ACT_GELU, 1}, {MOE_ACT_SWIGLU_OAI, 1},
              {MOE_ACT_SILU, 0}, {MOE_ACT_GELU, 0}, {MOE_ACT_RELU2, 0}};
  struct {
    moe_scoring sc;
    int ng, tg, renorm, cb;
    float scale;
  } routes[] = {{SM, 0, 0, 0, 0, 0.0f},
                {SM, 0, 0, 1, 0, 0.0f},
                {SG, 0, 0, 1, 1, 2.5f},
                {SG, 4, 2, 1, 1, 2.5f},
                {SG, 4, 2, 0, 0, 1.0f}};
  for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++)
    for (size_t q = 0; q < sizeof routes / sizeof routes[0]; q++) {
      tcase c;
      memset(&c, 0, sizeof c);
      c.name = "act x routing";
      c.E = 16, c.k = 4, c.H = 128, c.I = 64;
      c.act = acts[a].a, c.gated = acts[a].gated;
      c.scoring = routes[q].sc, c.n_group = routes[q].ng;
      c.topk_group = routes[q].tg, c.renorm = routes[q].renorm;
      c.scale = routes[q].scale, c.cbias = routes[q].cb;
      c.ebias = acts[a].a == MOE_ACT_SWIGLU_OAI;
      c.dt = BF, c.M = 33;
      run(&c);
    }
}

/* The five presets of DESIGN.md, E/H/I scaled down (multiples of 8 kept),
 * the rest kept: name, E, k, H, I, shared I, activation, gated, scoring,
 * n_group, topk_group, renormalize, scale, correction bias, expert bias. */
#define PRESET(n, E, k, H, I, Is, act, g, sc, ng, tg, rn, scale, cb, eb)       \
  { n, E, k, H, I, Is, act, g, sc, ng, tg, rn, scale, cb, eb, BF, 0, 0, 0, 0 }
const tcase gpu_presets[GPU_N_PRESETS] = {
    PRESET("nemotron3-nano", 32, 6, 320, 232, 464, MOE_ACT_RELU2, 0, SG, 1, 1,
           1, 2.5f, 1, 0),
    PRESET("qwen3-30b-a3b", 32, 8, 256, 96, 0, MOE_ACT_SILU, 1, SM, 0, 0, 1,
           0.0f, 0, 0),
    PRESET("mixtral-8x7b", 8, 2, 512, 448, 0, MOE_ACT_SILU, 1, SM, 0, 0, 1,
           0.0f, 0, 0),
    PRESET("deepseek-v3", 64, 8, 448, 128, 128, MOE_ACT_SILU, 1, SG, 8, 4, 1,
           2.5f, 1, 0),
    PRESET("gpt-oss-120b", 32, 4, 360, 360, 0, MOE_ACT_SWIGLU_OAI, 1, SM, 0, 0,
           1, 0.0f, 0, 1),
};
