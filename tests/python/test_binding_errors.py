"""Bad inputs raise clear exceptions naming the argument, and leave the
outputs untouched; library failures become moe.MoeError subclasses."""

import numpy as np
import pytest

import moe
import binding_reference as ref

E, K, H, I, M = 8, 2, 32, 24, 5
SENTINEL = 7.25


@pytest.fixture
def case(rng):
    w13 = ref.random(rng, (E, 2 * I, H), 0.3)
    w2 = ref.random(rng, (E, H, I), 0.3)
    layer = moe.Layer(w13, w2, top_k=K)
    x = ref.random(rng, (M, H))
    logits = ref.random(rng, (M, E), 2.0)
    ids = np.stack([rng.permutation(E)[:K] for _ in range(M)]).astype(
        np.int32)
    w = ref.random(rng, (M, K))
    yield layer, x, logits, ids, w
    layer.close()


def sentinel(shape=(M, H), dtype=np.float32):
    return np.full(shape, SENTINEL, dtype=dtype)


def untouched(out):
    return bool(np.all(out == SENTINEL))


def test_forward_bad_x(case):
    layer, x, logits, _, _ = case
    out = sentinel()
    bad = [
        (x.astype(np.float64), TypeError, "x has dtype float64"),
        (x.astype(np.float16), TypeError, "x has dtype float16"),
        (x[:, :H - 1].copy(), ValueError, "x has shape"),
        (x.reshape(-1), ValueError, "x has shape"),
        (np.asfortranarray(np.repeat(x, 2, axis=0)[:M]), None, None),
        (np.repeat(x, 2, axis=1)[:, ::2], ValueError, "x must be C-contiguous"),
        (x.tolist(), TypeError, "x must be a numpy.ndarray or a torch.Tensor"),
        (None, TypeError, "x"),
    ]
    for arr, exc, text in bad:
        if exc is None:  # a Fortran-ordered [M, H] is not C-contiguous
            exc, text = ValueError, "x must be C-contiguous"
            assert not arr.flags.c_contiguous
        with pytest.raises(exc, match=text):
            layer.forward(arr, logits, out=out)
        assert untouched(out)


def test_forward_bad_logits(case):
    layer, x, logits, _, _ = case
    out = sentinel()
    for arr, exc, text in [
        (logits.astype(np.float64), TypeError, "logits has dtype float64"),
        (logits.astype(np.float16), TypeError, "logits has dtype"),
        (logits[:M - 1], ValueError, r"logits has shape \[4, 8\]; expected "
                                     r"\[5, 8\]"),
        (np.zeros((M, E + 1), np.float32), ValueError, "logits has shape"),
        (np.asfortranarray(logits), ValueError, "logits must be C-contig"),
    ]:
        with pytest.raises(exc, match=text):
            layer.forward(x, arr, out=out)
        assert untouched(out)


def test_forward_bad_out(case):
    layer, x, logits, _, _ = case
    for out, exc, text in [
        (sentinel(dtype=np.float16), TypeError, "out has dtype float16"),
        (sentinel((M, H + 1)), ValueError, "out has shape"),
        (sentinel((M + 1, H)), ValueError, "out has shape"),
        (sentinel((H, M)).T, ValueError, "out must be C-contiguous"),
    ]:
        with pytest.raises(exc, match=text):
            layer.forward(x, logits, out=out)
        assert untouched(out)
    ro = sentinel()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        layer.forward(x, logits, out=ro)
    assert untouched(ro)
    with pytest.raises(ValueError, match="out must not be the same memory"):
        layer.forward(x, logits, out=x)


def test_forward_routed_bad_ids_and_weights(case):
    layer, x, _, ids, w = case
    out = sentinel()
    for i, ww, exc, text in [
        (ids.astype(np.int64), w, TypeError, "topk_ids has dtype int64"),
        (ids[:, :1].copy(), w, ValueError, "topk_ids has shape"),
        (ids, w.astype(np.float64), TypeError, "topk_weights has dtype"),
        (ids, w[:M - 1], ValueError, "topk_weights has shape"),
        (ids.astype(np.float32), w, TypeError, "topk_ids has dtype float32"),
    ]:
        with pytest.raises(exc, match=text):
            layer.forward_routed(x, i, ww, out=out)
        assert untouched(out)


@pytest.mark.parametrize("bad_id", [E, E + 100, -1, -(2**31)])
def test_forward_routed_ids_out_of_range(case, bad_id):
    layer, x, _, ids, w = case
    out = sentinel()
    ids = ids.copy()
    ids[3, 1] = bad_id
    with pytest.raises(ValueError,
                       match=r"topk_ids\[3, 1\] = %d is not an expert id"
                       % bad_id):
        layer.forward_routed(x, ids, w, out=out)
    assert untouched(out)


def test_route_bad_outputs(case):
    layer, _, logits, _, _ = case
    ids_out = np.full((M, K), 123, np.int32)
    w_out = np.full((M, K), SENTINEL, np.float32)
    with pytest.raises(TypeError, match="topk_ids has dtype int64"):
        layer.route(logits, np.zeros((M, K), np.int64), w_out)
    with pytest.raises(ValueError, match="topk_weights has shape"):
        layer.route(logits, ids_out, np.zeros((M, K + 1), np.float32))
    assert np.all(ids_out == 123) and untouched(w_out)
    got_ids, got_w = layer.route(logits, ids_out, w_out)
    assert got_ids is ids_out and got_w is w_out
    want_ids, _ = ref.route(logits, K)
    np.testing.assert_array_equal(ids_out, want_ids)


def test_strict_inputs_nan_logits_is_a_library_error(rng):
    w13 = ref.random(rng, (E, 2 * I, H), 0.3)
    w2 = ref.random(rng, (E, H, I), 0.3)
    x = ref.random(rng, (M, H))
    logits = ref.random(rng, (M, E), 2.0)
    logits[2, 3] = np.nan
    out = sentinel()
    with moe.Layer(w13, w2, top_k=K, strict_inputs=True) as layer:
        with pytest.raises(moe.InvalidArgumentError) as ei:
            layer.forward(x, logits, out=out)
    err = ei.value
    assert isinstance(err, moe.MoeError) and isinstance(err, ValueError)
    assert err.status == 1 and err.status_name == "MOE_ERR_INVALID_ARGUMENT"
    assert err.message and "moe_forward" in str(err)
    assert untouched(out)


def test_library_rejects_descriptor(rng):
    w13 = ref.random(rng, (E, 2 * I, H), 0.3)
    w2 = ref.random(rng, (E, H, I), 0.3)
    with pytest.raises(moe.InvalidArgumentError, match="top_k") as ei:
        moe.Layer(w13, w2, top_k=E + 1)
    assert ei.value.status == 1
    with pytest.raises(moe.InvalidArgumentError, match="n_group"):
        moe.Layer(w13, w2, top_k=K, n_group=3, topk_group=1)
    # relu2 is non-gated only: the shapes fit a gated layer, the library
    # rejects the combination
    with pytest.raises(moe.InvalidArgumentError, match="relu2"):
        moe.Layer(w13, w2, top_k=K, activation="relu2", gated=True)
    with pytest.raises(moe.MoeError, match="no-such-backend") as ei:
        moe.Layer(w13, w2, top_k=K, backend="no-such-backend")
    assert ei.value.status in (1, 2)


def test_layer_bad_weights(rng):
    w13 = ref.random(rng, (E, 2 * I, H), 0.3)
    w2 = ref.random(rng, (E, H, I), 0.3)
    cases = [
        (dict(w13=w13.astype(np.int32)), TypeError, "w13 has dtype int32"),
        (dict(w2=w2.astype(np.float16)), TypeError, "w2 has dtype float16"),
        (dict(w13=w13[:, :, :H - 1].copy()), ValueError, "w2 has shape"),
        (dict(w2=w2[:E - 1].copy()), ValueError, "w2 has shape"),
        (dict(w13=w13[:, :2 * I - 1].copy()), ValueError, "w13 has shape"),
        (dict(w13=w13[0]), ValueError, "w13 has shape"),
        (dict(w13=np.asfortranarray(w13)), ValueError, "w13 must be C-con"),
        (dict(w13=w13.tolist()), TypeError, "w13 must be a numpy.ndarray"),
        (dict(hidden=H + 1), ValueError, "hidden"),
        (dict(intermediate=I + 1), ValueError, "intermediate"),
        (dict(num_experts=E + 1), ValueError, "num_experts"),
        (dict(dtype="bf17"), ValueError, "dtype 'bf17'"),
        (dict(activation="tanh"), ValueError, "activation 'tanh'"),
        (dict(scoring="argmax"), ValueError, "scoring 'argmax'"),
        (dict(top_k="2"), TypeError, "top_k must be an integer"),
        (dict(top_k=2**40), ValueError, "top_k"),
        (dict(correction_bias=np.ones(E, np.float32)), ValueError,
         "correction_bias is used with scoring='sigmoid'"),
        (dict(correction_bias=np.ones(E + 1, np.float32), scoring="sigmoid"),
         ValueError, "correction_bias has shape"),
        (dict(correction_bias=np.ones(E), scoring="sigmoid"), TypeError,
         "correction_bias has dtype float64"),
        (dict(w13_bias=np.ones((E, I), np.float32)), ValueError,
         "w13_bias has shape"),
        (dict(w2_bias=np.ones((E, H), np.float16)), TypeError,
         "w2_bias has dtype"),
        (dict(shared_w13=np.ones((2 * I, H), np.float32)), ValueError,
         "shared_w13 and shared_w2"),
        (dict(shared_w13=np.ones((I, H), np.float32),
              shared_w2=np.ones((H, I), np.float32)), ValueError,
         "shared_w13 has shape"),
        (dict(shared_intermediate=16), ValueError, "shared_intermediate"),
        (dict(expert_map=[0, 1, 2]), ValueError,
         "expert_map maps 3 experts to this device but w13 holds 8"),
        (dict(expert_map=[[0, 1]]), ValueError, "one-dimensional"),
        (dict(expert_map=[-2] + list(range(E))), ValueError,
         r"expert_map\[0\] = -2"),
    ]
    for kw, exc, text in cases:
        args = dict(w13=w13, w2=w2, top_k=K)
        args.update(kw)
        with pytest.raises(exc, match=text):
            moe.Layer(**args)


def test_closed_layer(rng):
    w13 = ref.random(rng, (E, 2 * I, H), 0.3)
    w2 = ref.random(rng, (E, H, I), 0.3)
    layer = moe.Layer(w13, w2, top_k=K)
    x = ref.random(rng, (M, H))
    logits = ref.random(rng, (M, E))
    layer.close()
    layer.close()  # idempotent
    assert layer.closed
    with pytest.raises(ValueError, match="closed"):
        layer.forward(x, logits)
    with moe.Layer(w13, w2, top_k=K) as layer2:
        assert not layer2.closed
    assert layer2.closed
    del layer2  # __del__ after close is harmless


def test_forward_failure_from_backend(rng):
    """A backend failing at run time surfaces as DeviceError with the
    library's message (test-hook builds only)."""
    from moe import _lib

    if not _lib.has_test_hooks():
        pytest.skip("library built without MOE_TEST_HOOKS")
    w13 = ref.random(rng, (E, 2 * I, H), 0.3)
    w2 = ref.random(rng, (E, H, I), 0.3)
    x = ref.random(rng, (M, H))
    logits = ref.random(rng, (M, E))
    with moe.Layer(w13, w2, top_k=K) as layer:
        lib = _lib.load()
        lib.moe_test_set_fault(layer.context.handle, layer.backend.encode(),
                               1)
        with pytest.raises(moe.DeviceError) as ei:
            layer.forward(x, logits)
        assert ei.value.status == 4 and ei.value.message
        lib.moe_test_set_fault(layer.context.handle, layer.backend.encode(),
                               0)
        layer.forward(x, logits)
