"""The binding on PyTorch CUDA tensors (CUDA backends), against a torch
reference: eager, on the caller's non-default stream, and inside CUDA graph
captures. Skipped, with the reason shown, without torch, without a GPU, or
with a library built without CUDA backends."""

import math
import zlib

import pytest

try:
    import torch
except ImportError:
    pytest.skip("torch is not installed: CUDA binding tests skipped",
                allow_module_level=True)
if not torch.cuda.is_available():
    pytest.skip("torch sees no CUDA device: CUDA binding tests skipped",
                allow_module_level=True)

import numpy as np  # noqa: E402

import moe  # noqa: E402

if not any(b.startswith("cuda") for b in moe.backends()):
    pytest.skip("libmoe was built without CUDA backends (%s)"
                % " ".join(moe.backends()), allow_module_level=True)

DEV = torch.device("cuda", torch.cuda.current_device())
H, I = 128, 96
BF16 = torch.bfloat16
TOL = {torch.bfloat16: 1e-2, torch.float16: 1e-2}


# ---- data ----


@pytest.fixture
def gen(request, seed):
    g = torch.Generator(device=DEV)
    g.manual_seed((seed << 32) | zlib.crc32(request.node.name.encode()))
    return g


def rand(gen, shape, scale=1.0, dtype=torch.float32):
    """Uniform in (-scale, scale) on the GPU, never all zeros."""
    t = (torch.rand(shape, generator=gen, device=DEV) * 2.0 - 1.0) * scale
    return t.to(dtype).contiguous()


def weights(gen, e, dtype=BF16, gated=True, h=H, i=I, scale=1.0):
    n1 = 2 * i if gated else i
    w13 = rand(gen, (e, n1, h), scale * 2.0 / math.sqrt(h), dtype)
    w2 = rand(gen, (e, h, i), 2.0 / math.sqrt(i), dtype)
    return w13, w2


def random_ids(gen, m, k, e):
    scores = torch.rand((m, e), generator=gen, device=DEV)
    return scores.topk(k, dim=1).indices.to(torch.int32).contiguous()


def rel_error(got, ref):
    got = got.double()
    ref = ref.double()
    assert torch.isfinite(got).all(), "output holds NaN or Inf"
    den = torch.linalg.norm(ref).item()
    return torch.linalg.norm(got - ref).item() / (den if den > 0 else 1.0)


# ---- torch reference (float64, semantics of moe.h) ----


def ref_route(logits, k, scoring="softmax", n_group=0, topk_group=0,
              renormalize=False, scale=1.0, bias=None):
    L = logits.double()
    s = torch.softmax(L, dim=-1) if scoring == "softmax" else torch.sigmoid(L)
    c = s + bias.double()[None, :] if bias is not None else s.clone()
    if n_group and n_group > 1:
        m, e = c.shape
        g = c.view(m, n_group, e // n_group)
        top2 = g.topk(2, dim=-1).values
        gscore = top2.sum(-1) if bias is not None else top2[..., 0]
        keep = torch.zeros((m, n_group), dtype=torch.bool, device=c.device)
        keep.scatter_(1, gscore.topk(topk_group, dim=-1).indices, True)
        c = c.masked_fill(~keep.repeat_interleave(e // n_group, dim=1),
                          -math.inf)
    ids = c.topk(k, dim=-1).indices
    w = s.gather(1, ids)
    if renormalize:
        w = w / w.sum(-1, keepdim=True)
    return ids.to(torch.int32), w * (scale or 1.0)


def ref_act(act, gated, h, i, alpha=1.702, limit=7.0):
    if gated:
        if act == "swiglu-oai":
            gate, up = h[:, 0::2], h[:, 1::2]
        else:
            gate, up = h[:, :i], h[:, i:]
    else:
        gate, up = h, None
    if act == "silu":
        a = torch.nn.functional.silu(gate)
    elif act == "gelu":
        a = torch.nn.functional.gelu(gate)
    elif act == "relu2":
        a = torch.relu(gate) ** 2
    else:
        g = gate.clamp(max=limit)
        u = up.clamp(-limit, limit)
        return (u + 1.0) * g * torch.sigmoid(alpha * g)
    return a * up if gated else a


def ref_expert(x, w13, w2, act, gated, b13=None, b2=None):
    h = x @ w13.double().T
    if b13 is not None:
        h = h + b13.double()
    a = ref_act(act, gated, h, w2.shape[1])
    y = a @ w2.double().T
    if b2 is not None:
        y = y + b2.double()
    return y


def ref_forward_routed(x, ids, w, w13, w2, act="silu", gated=True,
                       expert_map=None, b13=None, b2=None, shared=None):
    X = x.double()
    out = torch.zeros_like(X)
    ids = ids.long()
    n_global = len(expert_map) if expert_map is not None else w13.shape[0]
    for e in range(n_global):
        le = int(expert_map[e]) if expert_map is not None else e
        if le < 0:
            continue
        t, j = (ids == e).nonzero(as_tuple=True)
        if t.numel() == 0:
            continue
        y = ref_expert(X[t], w13[le], w2[le], act, gated,
                       None if b13 is None else b13[le],
                       None if b2 is None else b2[le])
        out.index_add_(0, t, w[t, j].double()[:, None] * y)
    if shared is not None:
        out += ref_expert(X, shared[0], shared[1], act, gated)
    return out


def same_selection(ids, w, want_ids, want_w):
    """Ids per token as sets (a backend may order the k choices
    differently), weights following their ids."""
    a, ia = ids.long().sort(dim=1)
    b, ib = want_ids.long().sort(dim=1)
    assert torch.equal(a, b), "routing chose different experts"
    torch.testing.assert_close(w.double().gather(1, ia),
                               want_w.double().gather(1, ib),
                               rtol=1e-4, atol=1e-5)


# ---- eager ----

ACTIVATIONS = [("silu", True), ("silu", False), ("gelu", True),
               ("gelu", False), ("relu2", False), ("swiglu-oai", True)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("act,gated", ACTIVATIONS)
def test_activation(gen, act, gated, dtype):
    E, k, M = 8, 2, 37
    scale = 12.0 if act == "swiglu-oai" else 1.0
    w13, w2 = weights(gen, E, dtype, gated, scale=scale)
    x = rand(gen, (M, H), 1.0, dtype)
    logits = rand(gen, (M, E), 3.0)
    with moe.Layer(w13, w2, top_k=k, activation=act, gated=gated,
                   renormalize=True) as layer:
        assert layer.memory == "cuda" and layer.backend.startswith("cuda")
        out = layer.forward(x, logits)
        assert out.device == x.device and out.dtype == dtype
        torch.cuda.synchronize()
        ids, w = ref_route(logits, k, renormalize=True)
        want = ref_forward_routed(x, ids, w, w13, w2, act, gated)
        assert rel_error(out, want) < TOL[dtype], layer.backend


ROUTINGS = {
    "softmax-renormalize": dict(scoring="softmax", renormalize=True),
    "sigmoid-bias-scaled": dict(scoring="sigmoid", bias=True,
                                renormalize=True,
                                routed_scaling_factor=2.5),
    "grouped-softmax": dict(scoring="softmax", n_group=4, topk_group=2),
    "grouped-sigmoid-bias": dict(scoring="sigmoid", bias=True, n_group=4,
                                 topk_group=2, renormalize=True,
                                 routed_scaling_factor=2.5),
}


@pytest.mark.parametrize("mode", sorted(ROUTINGS))
def test_routing(gen, mode):
    E, k, M = 16, 4, 41
    r = dict(ROUTINGS[mode])
    bias = rand(gen, (E,), 0.5) if r.pop("bias", False) else None
    w13, w2 = weights(gen, E)
    x = rand(gen, (M, H), 1.0, BF16)
    logits = rand(gen, (M, E), 3.0)
    want_ids, want_w = ref_route(
        logits, k, r["scoring"], r.get("n_group", 0), r.get("topk_group", 0),
        r.get("renormalize", False), r.get("routed_scaling_factor", 1.0),
        bias)
    with moe.Layer(w13, w2, top_k=k, correction_bias=bias, **r) as layer:
        ids, w = layer.route(logits)
        assert ids.dtype == torch.int32 and ids.is_cuda
        out = layer.forward(x, logits)
        torch.cuda.synchronize()
        same_selection(ids, w, want_ids, want_w)
        want = ref_forward_routed(x, want_ids, want_w, w13, w2)
        assert rel_error(out, want) < 1e-2
    ids2, w2_ = moe.route(logits, k, correction_bias=bias, **r)
    torch.cuda.synchronize()
    same_selection(ids2, w2_, want_ids, want_w)


def test_shared_expert_and_expert_map(gen, seed):
    E, k, M, Is = 12, 3, 29, 64
    local = torch.randperm(E, generator=torch.Generator().manual_seed(seed))
    local = local[:7]
    emap = torch.full((E,), -1, dtype=torch.int32)
    emap[local] = torch.arange(7, dtype=torch.int32)
    w13, w2 = weights(gen, 7)
    sw13 = rand(gen, (2 * Is, H), 2.0 / math.sqrt(H), BF16)
    sw2 = rand(gen, (H, Is), 2.0 / math.sqrt(Is), BF16)
    x = rand(gen, (M, H), 1.0, BF16)
    ids = random_ids(gen, M, k, E)
    w = rand(gen, (M, k), 1.0)
    with moe.Layer(w13, w2, top_k=k, num_experts=E, expert_map=emap,
                   shared_w13=sw13, shared_w2=sw2) as layer:
        out = layer.forward_routed(x, ids, w)
        torch.cuda.synchronize()
    want = ref_forward_routed(x, ids, w, w13, w2, expert_map=emap.tolist(),
                              shared=(sw13, sw2))
    assert rel_error(out, want) < 1e-2


def test_gpt_oss_biases(gen):
    E, k, M = 8, 4, 33
    w13, w2 = weights(gen, E, scale=8.0)
    b13 = rand(gen, (E, 2 * I), 1.0)
    b2 = rand(gen, (E, H), 1.0)
    x = rand(gen, (M, H), 1.0, BF16)
    logits = rand(gen, (M, E), 3.0)
    with moe.Layer(w13, w2, top_k=k, activation="swiglu-oai", w13_bias=b13,
                   w2_bias=b2) as layer:
        out = layer.forward(x, logits)
        torch.cuda.synchronize()
    ids, w = ref_route(logits, k)
    want = ref_forward_routed(x, ids, w, w13, w2, "swiglu-oai", True,
                              b13=b13, b2=b2)
    assert rel_error(out, want) < 1e-2


def test_sizes_and_chunks(gen):
    E, k = 8, 2
    w13, w2 = weights(gen, E)
    with moe.Layer(w13, w2, top_k=k, max_tokens=16) as layer:
        for M in (0, 1, 5, 70):  # 70 > max_tokens: chunked
            x = rand(gen, (M, H), 1.0, BF16)
            logits = rand(gen, (M, E), 3.0)
            out = torch.full((M, H), float("nan"), dtype=BF16, device=DEV)
            assert layer.forward(x, logits, out=out) is out
            torch.cuda.synchronize()
            if M:
                ids, w = ref_route(logits, k)
                want = ref_forward_routed(x, ids, w, w13, w2)
                assert rel_error(out, want) < 1e-2


# ---- streams ----


def test_runs_on_the_callers_stream(gen):
    """The call is ordered after earlier work on the caller's stream: the
    input is written there behind a long sleep; a call on any other stream
    would read the stale input."""
    if not hasattr(torch.cuda, "_sleep"):
        pytest.skip("torch.cuda._sleep is not available")
    E, k, M = 8, 2, 64
    w13, w2 = weights(gen, E)
    stale = rand(gen, (M, H), 1.0, BF16)
    fresh = rand(gen, (M, H), 1.0, BF16)
    logits = rand(gen, (M, E), 3.0)
    x = stale.clone()
    out = torch.zeros((M, H), dtype=BF16, device=DEV)
    with moe.Layer(w13, w2, top_k=k) as layer:
        layer.forward(x, logits, out=out)  # warm-up
        torch.cuda.synchronize()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            torch.cuda._sleep(200_000_000)  # about 0.1 s of GPU time
            x.copy_(fresh)
            layer.forward(x, logits, out=out)  # on `side`, no sync inside
        # explicit stream argument, from the default stream's context
        with torch.cuda.stream(side):
            x2 = fresh.clone()
            out2 = torch.zeros_like(out)
        layer.forward(x2, logits, out=out2, stream=side)
        side.synchronize()
    ids, w = ref_route(logits, k)
    want = ref_forward_routed(fresh, ids, w, w13, w2)
    assert rel_error(out, want) < 1e-2
    assert rel_error(out2, want) < 1e-2


def test_no_synchronisation_in_forward(gen):
    """A call returns while the stream is still busy."""
    if not hasattr(torch.cuda, "_sleep"):
        pytest.skip("torch.cuda._sleep is not available")
    E, k, M = 8, 2, 16
    w13, w2 = weights(gen, E)
    x = rand(gen, (M, H), 1.0, BF16)
    logits = rand(gen, (M, E), 3.0)
    with moe.Layer(w13, w2, top_k=k) as layer:
        layer.forward(x, logits)
        ids, w = layer.route(logits)
        layer.forward_routed(x, ids, w)
        torch.cuda.synchronize()
        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            torch.cuda._sleep(1_000_000_000)  # about half a second
            slept = torch.cuda.Event()
            slept.record()
            layer.forward(x, logits)
            ids, w = layer.route(logits)
            layer.forward_routed(x, ids, w)
        # had any call synchronised the stream (or the device), the sleep
        # before it would be over
        assert not slept.query(), "a call waited for the stream"
        s.synchronize()


# ---- CUDA graphs ----


def test_graph_capture_forward_route_and_routed(gen):
    E, k, M = 16, 4, 24
    w13, w2 = weights(gen, E)
    bias = rand(gen, (E,), 0.5)
    x = rand(gen, (M, H), 1.0, BF16)
    logits = rand(gen, (M, E), 3.0)
    out = torch.empty((M, H), dtype=BF16, device=DEV)
    out_routed = torch.empty_like(out)
    kw = dict(scoring="sigmoid", n_group=4, topk_group=2, renormalize=True,
              routed_scaling_factor=2.5)
    with moe.Layer(w13, w2, top_k=k, correction_bias=bias, **kw) as layer:
        # warm-up on a side stream, as torch recommends before capture
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            layer.forward(x, logits, out=out)
            ids, w = layer.route(logits)
            layer.forward_routed(x, ids, w, out=out_routed)
        torch.cuda.current_stream().wait_stream(s)
        torch.cuda.synchronize()

        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            layer.forward(x, logits, out=out)
            ids_g, w_g = layer.route(logits)
            layer.forward_routed(x, ids_g, w_g, out=out_routed)

        for _ in range(2):  # new data each replay
            x.copy_(rand(gen, (M, H), 1.0, BF16))
            logits.copy_(rand(gen, (M, E), 3.0))
            out.fill_(float("nan"))
            out_routed.fill_(float("nan"))
            g.replay()
            torch.cuda.synchronize()
            want_ids, want_w = ref_route(logits, k, "sigmoid", 4, 2, True,
                                         2.5, bias)
            same_selection(ids_g, w_g, want_ids, want_w)
            want = ref_forward_routed(x, want_ids, want_w, w13, w2)
            assert rel_error(out, want) < 1e-2
            assert rel_error(out_routed, want) < 1e-2
        del g


def test_graph_capture_fused_experts(gen):
    moe.clear_cache()
    E, k, M = 8, 2, 19
    w1, w2 = weights(gen, E)
    x = rand(gen, (M, H), 1.0, BF16)
    ids = random_ids(gen, M, k, E).long()  # int64, converted inside
    w = rand(gen, (M, k), 1.0)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        moe.fused_experts(x, w1, w2, w, ids)  # builds and caches the layer
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = moe.fused_experts(x, w1, w2, w, ids)
    x.copy_(rand(gen, (M, H), 1.0, BF16))
    g.replay()
    torch.cuda.synchronize()
    want = ref_forward_routed(x, ids, w, w1, w2)
    assert rel_error(out, want) < 1e-2
    del g
    moe.clear_cache()


# ---- fused_experts eager ----


def test_fused_experts_swigluoai_inplace(gen):
    E, k, M = 8, 4, 21
    w1, w2 = weights(gen, E, scale=8.0)
    b1 = rand(gen, (E, 2 * I), 1.0, BF16)  # bf16 biases, converted once
    b2 = rand(gen, (E, H), 1.0, BF16)
    x = rand(gen, (M, H), 1.0, BF16)
    ids = random_ids(gen, M, k, E)
    w = rand(gen, (M, k), 1.0)
    want = ref_forward_routed(x, ids, w, w1, w2, "swiglu-oai", True,
                              b13=b1.float(), b2=b2.float())
    got = moe.fused_experts(x, w1, w2, w, ids, inplace=True,
                            activation="swigluoai", w1_bias=b1, w2_bias=b2)
    torch.cuda.synchronize()
    assert got is x
    assert rel_error(x, want) < 1e-2


# ---- bad inputs ----


def test_bad_inputs_leave_output_untouched(gen):
    E, k, M = 8, 2, 6
    w13, w2 = weights(gen, E)
    x = rand(gen, (M, H), 1.0, BF16)
    logits = rand(gen, (M, E), 3.0)
    out = torch.full((M, H), 7.25, dtype=BF16, device=DEV)

    def untouched():
        torch.cuda.synchronize()
        return bool((out == 7.25).all())

    with moe.Layer(w13, w2, top_k=k) as layer:
        cases = [
            ((x.cpu(), logits), ValueError, "x is in host"),
            ((x.float().cpu().numpy(), logits), TypeError,
             "x has dtype float32"),
            ((x, logits.cpu()), ValueError, "logits is in host"),
            ((x, logits.cpu().numpy()), ValueError, "logits is in host"),
            ((x.float(), logits), TypeError, "x has dtype float32"),
            ((x.half(), logits), TypeError, "x has dtype float16"),
            ((x, logits.to(BF16)), TypeError, "logits has dtype bfloat16"),
            ((x.t().contiguous().t(), logits), ValueError, "x must be contig"),
            ((x[:, :H - 1].contiguous(), logits), ValueError, "x has shape"),
            ((x[:, :H - 1], logits), ValueError, "x must be contiguous"),
            ((x, logits[:M - 1]), ValueError, "logits has shape"),
        ]
        for (xa, la), exc, text in cases:
            with pytest.raises(exc, match=text):
                layer.forward(xa, la, out=out)
            assert untouched()
        with pytest.raises(ValueError, match="out is in host"):
            layer.forward(x, logits, out=out.cpu())
        with pytest.raises(TypeError, match="out has dtype float16"):
            layer.forward(x, logits, out=out.half())
        ids = random_ids(gen, M, k, E)
        w = rand(gen, (M, k))
        with pytest.raises(TypeError, match="topk_ids has dtype int64"):
            layer.forward_routed(x, ids.long(), w, out=out)
        with pytest.raises(ValueError, match="topk_weights is in host"):
            layer.forward_routed(x, ids, w.cpu(), out=out)
        assert untouched()


def test_weights_on_mixed_devices_or_unsupported_dtype(gen):
    w13, w2 = weights(gen, 4)
    with pytest.raises(ValueError, match="w2 is in host"):
        moe.Layer(w13, w2.cpu(), top_k=2)
    with pytest.raises(TypeError, match="w2 has dtype float32"):
        moe.Layer(w13, w2.float().cpu().numpy(), top_k=2)
    with pytest.raises(ValueError, match="correction_bias is in host"):
        moe.Layer(w13, w2, top_k=2, scoring="sigmoid",
                  correction_bias=torch.zeros(4))
    # float32 CUDA weights: no CUDA kernel; the planner says so
    with pytest.raises(moe.MoeError) as ei:
        moe.Layer(w13.float(), w2.float(), top_k=2)
    assert ei.value.message


def test_numpy_layer_rejects_cuda_tensors(seed):
    w13 = np.random.default_rng(seed).uniform(-0.1, 0.1, (4, 2 * 32, 16))
    w2 = np.random.default_rng(seed + 1).uniform(-0.1, 0.1, (4, 16, 32))
    with moe.Layer(w13.astype(np.float32), w2.astype(np.float32),
                   top_k=2) as layer:
        assert layer.memory == "host"
        x = torch.ones((3, 16), device=DEV)
        logits = torch.ones((3, 4), device=DEV)
        with pytest.raises(ValueError, match="x is in cuda:"):
            layer.forward(x, logits)
        # torch CPU tensors are host memory: accepted
        out = layer.forward(x.cpu(), logits.cpu())
        assert isinstance(out, torch.Tensor) and out.device.type == "cpu"
