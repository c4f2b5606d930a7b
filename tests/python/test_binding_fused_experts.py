"""fused_experts() with vLLM's signature, on numpy arrays."""

import numpy as np
import pytest

import moe
import binding_reference as ref

E, H, I = 8, 64, 32


def topk(rng, M, k, E=E):
    ids = np.stack([rng.permutation(E)[:k] for _ in range(M)])
    w = rng.uniform(0.1, 1.0, size=(M, k)).astype(np.float32)
    return ids, w


@pytest.mark.parametrize("ids_dtype", [np.int32, np.int64])
def test_silu_matches_reference(rng, ids_dtype):
    moe.clear_cache()
    M, k = 13, 2
    w1 = ref.random(rng, (E, 2 * I, H), 0.25, "bf16")
    w2 = ref.random(rng, (E, H, I), 0.35, "bf16")
    x = ref.random(rng, (M, H), 1.0, "bf16")
    ids, w = topk(rng, M, k)
    out = moe.fused_experts(x, w1, w2, w, ids.astype(ids_dtype))
    assert out.dtype == x.dtype and out.shape == (M, H)
    want = ref.forward_routed(x, ids, w, w1, w2)
    assert ref.rel_error(out, want) < 1e-2
    # the layer is cached: a second call builds nothing new
    n = moe.cache_info()["fused"]
    out2 = moe.fused_experts(x, w1, w2, w, ids.astype(ids_dtype))
    np.testing.assert_array_equal(out, out2)
    assert moe.cache_info()["fused"] == n == 1
    moe.clear_cache()
    assert moe.cache_info()["fused"] == 0


def test_swigluoai_with_biases_and_inplace(rng):
    M, k = 9, 4
    w1 = ref.random(rng, (E, 2 * I, H), 1.0, "bf16")
    w2 = ref.random(rng, (E, H, I), 0.35, "bf16")
    b1 = ref.random(rng, (E, 2 * I), 1.0, "bf16")  # converted to float32
    b2 = ref.random(rng, (E, H), 0.5)
    x = ref.random(rng, (M, H), 1.0, "bf16")
    ids, w = topk(rng, M, k)
    want = ref.forward_routed(x, ids, w, w1, w2, act="swiglu-oai",
                              w13_bias=b1, w2_bias=b2)
    got = moe.fused_experts(x, w1, w2, w, ids, inplace=True,
                            activation="swigluoai", w1_bias=b1, w2_bias=b2)
    assert got is x
    assert ref.rel_error(x, want) < 1e-2


def test_non_gated_and_expert_map(rng):
    M, k, E_global = 11, 3, 10
    emap = np.full(E_global, -1, np.int32)
    emap[[1, 4, 6, 9]] = [2, 0, 3, 1]
    w1 = ref.random(rng, (4, I, H), 0.25)
    w2 = ref.random(rng, (4, H, I), 0.35)
    x = ref.random(rng, (M, H))
    ids, w = topk(rng, M, k, E_global)
    out = moe.fused_experts(x, w1, w2, w, ids.astype(np.int32),
                            activation="relu2_no_mul",
                            global_num_experts=E_global, expert_map=emap)
    want = ref.forward_routed(x, ids, w, w1, w2, act="relu2", gated=False,
                              expert_map=emap)
    assert ref.rel_error(out, want) < 1e-4


def test_router_weight_on_input(rng):
    M = 7
    w1 = ref.random(rng, (E, 2 * I, H), 0.25)
    w2 = ref.random(rng, (E, H, I), 0.35)
    x = ref.random(rng, (M, H))
    ids, w = topk(rng, M, 1)
    out = moe.fused_experts(x, w1, w2, w, ids,
                            apply_router_weight_on_input=True)
    want = ref.forward_routed(x * w, ids, np.ones_like(w), w1, w2)
    assert ref.rel_error(out, want) < 1e-4
    ids2, w2_ = topk(rng, M, 2)
    with pytest.raises(ValueError, match="top_k = 1"):
        moe.fused_experts(x, w1, w2, w2_, ids2,
                          apply_router_weight_on_input=True)


def test_unsupported_arguments(rng):
    w1 = ref.random(rng, (E, 2 * I, H), 0.25)
    w2 = ref.random(rng, (E, H, I), 0.35)
    x = ref.random(rng, (3, H))
    ids, w = topk(rng, 3, 2)
    with pytest.raises(ValueError, match="use_fp8_w8a8"):
        moe.fused_experts(x, w1, w2, w, ids, use_fp8_w8a8=True)
    with pytest.raises(ValueError, match="w1_scale"):
        moe.fused_experts(x, w1, w2, w, ids, w1_scale=np.ones(E, np.float32))
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        moe.fused_experts(x, w1, w2, w, ids, bogus=1)
    with pytest.raises(ValueError, match="activation 'tanh'"):
        moe.fused_experts(x, w1, w2, w, ids, activation="tanh")
    with pytest.raises(TypeError, match="topk_ids has dtype float32"):
        moe.fused_experts(x, w1, w2, w, ids.astype(np.float32))
    bad = ids.astype(np.int32).copy()
    bad[0, 0] = E
    xx = x.copy()
    with pytest.raises(ValueError, match=r"topk_ids\[0, 0\]"):
        moe.fused_experts(xx, w1, w2, w, bad, inplace=True)
    np.testing.assert_array_equal(xx, x)  # inplace target untouched
    # quantisation flags that are off are accepted
    moe.fused_experts(x, w1, w2, w, ids, use_fp8_w8a8=False, w1_scale=None,
                      allow_deep_gemm=True)


def test_route_function_cache(rng):
    logits = ref.random(rng, (6, E), 2.0)
    ids, w = moe.route(logits, 2, renormalize=True)
    want_ids, want_w = ref.route(logits, 2, renormalize=True)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(w, want_w, rtol=1e-5, atol=1e-6)
    n = moe.cache_info()["router"]
    moe.route(logits, 2, renormalize=True)
    assert moe.cache_info()["router"] == n
    with pytest.raises(TypeError, match="logits has dtype float64"):
        moe.route(logits.astype(np.float64), 2)
