"""An independent numpy reference of the MoE layer, written from the
semantics in include/moe.h, computed in float64."""

import math

import numpy as np

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
    BF16 = None

DTYPES = {"f32": np.dtype(np.float32), "f16": np.dtype(np.float16)}
if BF16 is not None:
    DTYPES["bf16"] = BF16
TOLERANCE = {"f32": 1e-4, "f16": 1e-2, "bf16": 1e-2}

_erf = np.vectorize(math.erf, otypes=[np.float64])


def f64(a):
    return np.asarray(a).astype(np.float64)


def rel_error(got, ref):
    got, ref = f64(got), f64(ref)
    assert np.all(np.isfinite(got)), "output holds NaN or Inf"
    den = np.linalg.norm(ref)
    return float(np.linalg.norm(got - ref) / (den if den > 0 else 1.0))


def random(rng, shape, scale=1.0, dtype="f32"):
    """Uniform in (-scale, scale), never all zeros, in the given dtype."""
    a = rng.uniform(-1.0, 1.0, size=shape) * scale
    return np.ascontiguousarray(a.astype(DTYPES[dtype]))


def route(logits, k, scoring="softmax", n_group=0, topk_group=0,
          renormalize=False, scale=1.0, bias=None):
    """-> ids [M, k] int32, weights [M, k] float64 (moe.h's routing)."""
    L = f64(logits)
    M, E = L.shape
    fin = np.isfinite(L)
    Lz = np.where(fin, L, 0.0)
    if scoring == "softmax":
        mx = np.max(np.where(fin, L, -np.inf), axis=1, keepdims=True)
        mx = np.where(np.isfinite(mx), mx, 0.0)
        e = np.where(fin, np.exp(Lz - mx), 0.0)
        tot = e.sum(axis=1, keepdims=True)
        s = e / np.where(tot > 0, tot, 1.0)
    else:
        s = np.where(fin, 1.0 / (1.0 + np.exp(-Lz)), 0.0)
    c = s.copy()
    if bias is not None and scoring == "sigmoid":
        c = c + f64(bias)[None, :]
    c = np.where(fin, c, -np.inf)
    if n_group and n_group > 1:
        G = E // n_group
        srt = -np.sort(-c.reshape(M, n_group, G), axis=2)
        gscore = srt[:, :, 0] + srt[:, :, 1] if bias is not None \
            else srt[:, :, 0]
        best = np.argsort(-gscore, axis=1, kind="stable")[:, :topk_group]
        keep = np.zeros((M, n_group), dtype=bool)
        np.put_along_axis(keep, best, True, axis=1)
        c = np.where(np.repeat(keep, G, axis=1), c, -np.inf)
    order = np.argsort(-c, axis=1, kind="stable")[:, :k]
    w = np.take_along_axis(s, order, axis=1)
    w = np.where(np.take_along_axis(fin, order, axis=1), w, 0.0)
    if renormalize:
        tot = w.sum(axis=1, keepdims=True)
        w = w / np.where(tot > 0, tot, 1.0)
    w = w * (scale if scale else 1.0)
    return order.astype(np.int32), w


def activation(act, gated, h, intermediate, alpha=1.702, limit=7.0):
    if gated:
        if act == "swiglu-oai":
            gate, up = h[:, 0::2], h[:, 1::2]
        else:
            gate, up = h[:, :intermediate], h[:, intermediate:]
    else:
        gate, up = h, None
    if act == "silu":
        a = gate / (1.0 + np.exp(-gate))
    elif act == "gelu":
        a = 0.5 * gate * (1.0 + _erf(gate / math.sqrt(2.0)))
    elif act == "relu2":
        a = np.maximum(gate, 0.0) ** 2
    elif act == "swiglu-oai":
        g = np.minimum(gate, limit)
        u = np.clip(up, -limit, limit)
        return (u + 1.0) * g / (1.0 + np.exp(-alpha * g))
    else:
        raise ValueError(act)
    return a * up if gated else a


def expert(x, w13, w2, act, gated, b13=None, b2=None, alpha=1.702,
           limit=7.0):
    """x [n, H] float64 through one expert -> [n, H]."""
    h = x @ f64(w13).T
    if b13 is not None:
        h = h + f64(b13)[None, :]
    a = activation(act, gated, h, w2.shape[1], alpha, limit)
    y = a @ f64(w2).T
    if b2 is not None:
        y = y + f64(b2)[None, :]
    return y


def forward_routed(x, ids, weights, w13, w2, act="silu", gated=True,
                   expert_map=None, w13_bias=None, w2_bias=None,
                   shared_w13=None, shared_w2=None, alpha=1.702, limit=7.0):
    X = f64(x)
    ids = np.asarray(ids)
    W = f64(weights)
    out = np.zeros_like(X)
    E = len(expert_map) if expert_map is not None else w13.shape[0]
    for e in range(E):
        le = int(expert_map[e]) if expert_map is not None else e
        if le < 0:
            continue
        t, j = np.nonzero(ids == e)
        if t.size == 0:
            continue
        y = expert(X[t], w13[le], w2[le], act, gated,
                   None if w13_bias is None else w13_bias[le],
                   None if w2_bias is None else w2_bias[le], alpha, limit)
        np.add.at(out, t, W[t, j][:, None] * y)
    if shared_w13 is not None:
        out += expert(X, shared_w13, shared_w2, act, gated, alpha=alpha,
                      limit=limit)
    return out


def forward(x, logits, w13, w2, top_k, scoring="softmax", n_group=0,
            topk_group=0, renormalize=False, scale=1.0,
            correction_bias=None, **kw):
    ids, w = route(logits, top_k, scoring, n_group, topk_group, renormalize,
                   scale, correction_bias)
    return forward_routed(x, ids, w, w13, w2, **kw)
