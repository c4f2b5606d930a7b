"""The binding on numpy arrays (CPU backends) against the numpy reference
in binding_reference.py: every activation and dtype, every routing mode."""

import numpy as np
import pytest

import moe
import binding_reference as ref

H, I = 64, 48

ACTIVATIONS = [  # (activation, gated)
    ("silu", True), ("silu", False), ("gelu", True), ("gelu", False),
    ("relu2", False), ("swiglu-oai", True),
]


def make_weights(rng, e_local, dtype, gated=True, h=H, i=I, scale=1.0):
    n1 = 2 * i if gated else i
    w13 = ref.random(rng, (e_local, n1, h), scale * 2.0 / np.sqrt(h), dtype)
    w2 = ref.random(rng, (e_local, h, i), 2.0 / np.sqrt(i), dtype)
    return w13, w2


def dtypes():
    return [d for d in ("f32", "bf16", "f16") if d in ref.DTYPES]


@pytest.mark.parametrize("dtype", dtypes())
@pytest.mark.parametrize("act,gated", ACTIVATIONS)
def test_activation(rng, act, gated, dtype):
    E, k, M = 8, 2, 19
    # swiglu-oai: large pre-activations so the clamp at limit 7 is exercised
    scale = 12.0 if act == "swiglu-oai" else 1.0
    w13, w2 = make_weights(rng, E, dtype, gated, scale=scale)
    x = ref.random(rng, (M, H), 1.0, dtype)
    logits = ref.random(rng, (M, E), 3.0)
    kw = {}
    if act == "swiglu-oai":
        kw = dict(swiglu_alpha=1.702, swiglu_limit=7.0)
    with moe.Layer(w13, w2, top_k=k, activation=act, gated=gated,
                   renormalize=True, **kw) as layer:
        assert layer.activation == act and layer.gated == gated
        assert layer.dtype == dtype
        out = layer.forward(x, logits)
        assert out.dtype == ref.DTYPES[dtype] and out.shape == (M, H)
        want = ref.forward(x, logits, w13, w2, k, renormalize=True, act=act,
                           gated=gated)
        assert ref.rel_error(out, want) < ref.TOLERANCE[dtype], layer.backend


def test_swiglu_clamp_is_reached(rng):
    """The swiglu-oai case above only tests the clamp if values pass 7."""
    w13, _ = make_weights(rng, 8, "f32", True, scale=12.0)
    x = ref.random(rng, (19, H))
    h = x.astype(np.float64) @ w13[0].astype(np.float64).T
    assert np.abs(h).max() > 7.0


ROUTINGS = {
    "softmax": dict(scoring="softmax"),
    "softmax-renormalize": dict(scoring="softmax", renormalize=True),
    "softmax-scaled": dict(scoring="softmax", routed_scaling_factor=2.5),
    "sigmoid": dict(scoring="sigmoid"),
    "sigmoid-renormalize": dict(scoring="sigmoid", renormalize=True),
    "sigmoid-bias": dict(scoring="sigmoid", bias=True, renormalize=True,
                         routed_scaling_factor=2.5),
    "grouped": dict(scoring="softmax", n_group=4, topk_group=2),
    "grouped-sigmoid-bias": dict(scoring="sigmoid", bias=True, n_group=4,
                                 topk_group=2, renormalize=True,
                                 routed_scaling_factor=2.5),
}


def _routing_args(rng, E, r):
    r = dict(r)
    bias = ref.random(rng, (E,), 0.5) if r.pop("bias", False) else None
    return r, bias


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("mode", sorted(ROUTINGS))
def test_routing_mode(rng, mode, dtype):
    if dtype not in ref.DTYPES:
        pytest.skip("ml_dtypes is not installed")
    E, k, M = 16, 4, 23
    r, bias = _routing_args(rng, E, ROUTINGS[mode])
    w13, w2 = make_weights(rng, E, dtype)
    x = ref.random(rng, (M, H), 1.0, dtype)
    logits = ref.random(rng, (M, E), 3.0)
    with moe.Layer(w13, w2, top_k=k, correction_bias=bias, **r) as layer:
        ids, w = layer.route(logits)
        want_ids, want_w = ref.route(
            logits, k, r["scoring"], r.get("n_group", 0),
            r.get("topk_group", 0), r.get("renormalize", False),
            r.get("routed_scaling_factor", 1.0), bias)
        assert ids.dtype == np.int32 and w.dtype == np.float32
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(w, want_w, rtol=1e-5, atol=1e-6)
        out = layer.forward(x, logits)
        want = ref.forward(x, logits, w13, w2, k, r["scoring"],
                           r.get("n_group", 0), r.get("topk_group", 0),
                           r.get("renormalize", False),
                           r.get("routed_scaling_factor", 1.0), bias)
        assert ref.rel_error(out, want) < ref.TOLERANCE[dtype]
    # the layer-free router agrees
    ids2, w2_ = moe.route(logits, k, correction_bias=bias, **r)
    np.testing.assert_array_equal(ids2, want_ids)
    np.testing.assert_allclose(w2_, want_w, rtol=1e-5, atol=1e-6)


def test_non_finite_logits_are_minus_infinity(rng):
    E, k, M = 8, 3, 6
    w13, w2 = make_weights(rng, E, "f32")
    logits = ref.random(rng, (M, E), 2.0)
    logits[0, 2] = np.nan
    logits[1, 5] = np.inf
    logits[2, 0] = -np.inf
    logits[3, :E - 1] = np.nan  # only one finite expert: two get weight 0
    with moe.Layer(w13, w2, top_k=k) as layer:
        ids, w = layer.route(logits)
    want_ids, want_w = ref.route(logits, k)
    for t in (0, 1, 2):
        np.testing.assert_array_equal(ids[t], want_ids[t])
    assert ids[3, 0] == E - 1
    np.testing.assert_allclose(w, want_w, rtol=1e-5, atol=1e-6)


def test_shared_expert(rng):
    E, k, M, Is = 8, 2, 13, 40
    w13, w2 = make_weights(rng, E, "bf16")
    sw13 = ref.random(rng, (2 * Is, H), 2.0 / np.sqrt(H), "bf16")
    sw2 = ref.random(rng, (H, Is), 2.0 / np.sqrt(Is), "bf16")
    bias = ref.random(rng, (E,), 0.5)
    x = ref.random(rng, (M, H), 1.0, "bf16")
    logits = ref.random(rng, (M, E), 3.0)
    with moe.Layer(w13, w2, top_k=k, scoring="sigmoid",
                   correction_bias=bias, renormalize=True,
                   routed_scaling_factor=2.5, shared_w13=sw13,
                   shared_w2=sw2) as layer:
        assert layer.shared_intermediate == Is
        out = layer.forward(x, logits)
    want = ref.forward(x, logits, w13, w2, k, "sigmoid", renormalize=True,
                       scale=2.5, correction_bias=bias, shared_w13=sw13,
                       shared_w2=sw2)
    assert ref.rel_error(out, want) < 1e-2


def test_shared_expert_non_gated_relu2(rng):
    """Nemotron-H: relu2, non-gated, with a shared expert."""
    E, k, M, Is = 8, 3, 9, 32
    w13, w2 = make_weights(rng, E, "f32", gated=False)
    sw13 = ref.random(rng, (Is, H), 2.0 / np.sqrt(H))
    sw2 = ref.random(rng, (H, Is), 2.0 / np.sqrt(Is))
    x = ref.random(rng, (M, H))
    logits = ref.random(rng, (M, E), 3.0)
    with moe.Layer(w13, w2, top_k=k, activation="relu2", scoring="sigmoid",
                   renormalize=True, shared_w13=sw13,
                   shared_w2=sw2) as layer:
        assert not layer.gated
        out = layer.forward(x, logits)
    want = ref.forward(x, logits, w13, w2, k, "sigmoid", renormalize=True,
                       act="relu2", gated=False, shared_w13=sw13,
                       shared_w2=sw2)
    assert ref.rel_error(out, want) < 1e-4


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_expert_map(rng, dtype):
    if dtype not in ref.DTYPES:
        pytest.skip("ml_dtypes is not installed")
    E, k, M = 12, 3, 21
    local = rng.permutation(E)[:5]  # 5 experts live here, in this order
    emap = np.full(E, -1, dtype=np.int32)
    emap[local] = np.arange(5)
    w13, w2 = make_weights(rng, 5, dtype)
    x = ref.random(rng, (M, H), 1.0, dtype)
    logits = ref.random(rng, (M, E), 3.0)
    with moe.Layer(w13, w2, top_k=k, num_experts=E, expert_map=emap,
                   renormalize=True) as layer:
        assert layer.num_experts == E and layer.num_local_experts == 5
        out = layer.forward(x, logits)
        want = ref.forward(x, logits, w13, w2, k, renormalize=True,
                           expert_map=emap)
        assert ref.rel_error(out, want) < ref.TOLERANCE[dtype]
        # routed: ids of experts elsewhere contribute nothing
        ids = np.stack([rng.permutation(E)[:k] for _ in range(M)]).astype(
            np.int32)
        w = ref.random(rng, (M, k), 1.0)
        out = layer.forward_routed(x, ids, w)
        want = ref.forward_routed(x, ids, w, w13, w2, expert_map=emap)
        assert ref.rel_error(out, want) < ref.TOLERANCE[dtype]


def test_expert_biases_gpt_oss(rng):
    """gpt-oss: swiglu-oai, interleaved rows, w13 and w2 biases, softmax
    top-k without renormalisation."""
    E, k, M = 8, 4, 17
    w13, w2 = make_weights(rng, E, "bf16", scale=8.0)
    b13 = ref.random(rng, (E, 2 * I), 1.0)
    b2 = ref.random(rng, (E, H), 1.0)
    x = ref.random(rng, (M, H), 1.0, "bf16")
    logits = ref.random(rng, (M, E), 3.0)
    with moe.Layer(w13, w2, top_k=k, activation="swiglu-oai",
                   w13_bias=b13, w2_bias=b2) as layer:
        out = layer.forward(x, logits)
    want = ref.forward(x, logits, w13, w2, k, act="swiglu-oai", w13_bias=b13,
                       w2_bias=b2)
    assert ref.rel_error(out, want) < 1e-2


@pytest.mark.parametrize("dtype", dtypes())
def test_forward_routed(rng, dtype):
    E, k, M = 8, 3, 15
    w13, w2 = make_weights(rng, E, dtype)
    x = ref.random(rng, (M, H), 1.0, dtype)
    ids = np.stack([rng.permutation(E)[:k] for _ in range(M)]).astype(
        np.int32)
    w = ref.random(rng, (M, k), 1.5)  # used as given: any sign, any sum
    with moe.Layer(w13, w2, top_k=k) as layer:
        out = layer.forward_routed(x, ids, w)
    want = ref.forward_routed(x, ids, w, w13, w2)
    assert ref.rel_error(out, want) < ref.TOLERANCE[dtype]


def test_out_argument_and_sizes(rng):
    E, k = 8, 2
    w13, w2 = make_weights(rng, E, "f32")
    with moe.Layer(w13, w2, top_k=k, max_tokens=8) as layer:
        for M in (0, 1, 7, 37):  # 37 > max_tokens: processed in chunks
            x = ref.random(rng, (M, H))
            logits = ref.random(rng, (M, E), 3.0)
            out = np.full((M, H), np.nan, dtype=np.float32)
            got = layer.forward(x, logits, out=out)
            assert got is out
            want = ref.forward(x, logits, w13, w2, k)
            if M:
                assert ref.rel_error(out, want) < 1e-4
            ids, w = layer.route(logits)
            assert ids.shape == (M, k) and w.shape == (M, k)
            out2 = layer(x, logits)  # __call__ is forward
            np.testing.assert_array_equal(out2, out)


def test_top_k_equals_experts_and_one(rng):
    E, M = 5, 11
    w13, w2 = make_weights(rng, E, "f32")
    x = ref.random(rng, (M, H))
    logits = ref.random(rng, (M, E), 3.0)
    for k in (1, E):
        with moe.Layer(w13, w2, top_k=k) as layer:
            out = layer.forward(x, logits)
        assert ref.rel_error(out, ref.forward(x, logits, w13, w2, k)) < 1e-4


def test_inputs_unchanged(rng):
    E, k, M = 8, 2, 9
    w13, w2 = make_weights(rng, E, "f32")
    x = ref.random(rng, (M, H))
    logits = ref.random(rng, (M, E), 3.0)
    copies = [a.copy() for a in (w13, w2, x, logits)]
    with moe.Layer(w13, w2, top_k=k) as layer:
        layer.forward(x, logits)
    for a, b in zip((w13, w2, x, logits), copies):
        np.testing.assert_array_equal(a, b)
