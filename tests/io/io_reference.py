"""An independent numpy implementation of each family's MoE layer, written
from the families' own definitions (Hugging Face modelling code) and working
on the checkpoint tensors as stored (their names and layouts), in float64.
It shares nothing with the library.
"""

import json
import struct

import ml_dtypes
import numpy as np

from io_fixtures import FP4_VALUES

_DT = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
       "F64": np.float64, "F8_E4M3": ml_dtypes.float8_e4m3fn,
       "U8": np.uint8, "I32": np.int32, "I64": np.int64}


def load_safetensors(path):
    """Reads a .safetensors file into numpy (bf16 and fp8 included)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        b, e = v["data_offsets"]
        arr = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=_DT[v["dtype"]])
        out[name] = arr.reshape(v["shape"])
    return out


def f64(a):
    return np.asarray(a).astype(np.float32).astype(np.float64)


def softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def silu(x):
    return x * sigmoid(x)


def topk_ids(scores, k):
    return np.argsort(-scores, kind="stable")[:k]


def route_softmax(logits, k, renormalize):
    """Mixtral / Qwen3-MoE: softmax, top-k, optional renormalisation."""
    ids, ws = [], []
    for row in logits:
        p = softmax(row)
        i = topk_ids(p, k)
        w = p[i]
        if renormalize:
            w = w / w.sum()
        ids.append(i)
        ws.append(w)
    return ids, ws


def route_topk_then_softmax(logits, k):
    """gpt-oss: top-k of the logits, softmax over those k."""
    ids, ws = [], []
    for row in logits:
        i = topk_ids(row, k)
        ids.append(i)
        ws.append(softmax(row[i]))
    return ids, ws


def route_noaux_tc(logits, bias, k, n_group, topk_group, renormalize, scale):
    """DeepSeek-V3 / Nemotron-H: sigmoid, groups scored by the sum of their
    two best biased scores, top-k of biased scores among kept groups,
    weights are the unbiased scores."""
    E = logits.shape[1]
    ids, ws = [], []
    for row in logits:
        s = sigmoid(row)
        c = s + bias
        if n_group > 1:
            g = c.reshape(n_group, E // n_group)
            gs = np.sort(g, axis=1)[:, ::-1][:, :2].sum(axis=1)
            keep = topk_ids(gs, topk_group)
            mask = np.full(n_group, -np.inf)
            mask[keep] = 0.0
            c = (g + mask[:, None]).reshape(E)
        i = topk_ids(c, k)
        w = s[i]
        if renormalize:
            w = w / (w.sum() + 1e-20)
        ids.append(i)
        ws.append(w * scale)
    return ids, ws


def fp8_dequant(t, name, block):
    q = f64(t[name])
    s = f64(t[name + "_scale_inv"])
    s = np.repeat(np.repeat(s, block, axis=0), block, axis=1)
    return q * s[:q.shape[0], :q.shape[1]]


def mxfp4_dequant(blocks, scales):
    """[E, R, G, 16] codes + [E, R, G] exponents -> [E, R, G*32]."""
    lo = FP4_VALUES[blocks & 0x0F].astype(np.float64)
    hi = FP4_VALUES[blocks >> 4].astype(np.float64)
    v = np.stack([lo, hi], axis=-1).reshape(*blocks.shape[:-1], 32)
    v = v * np.ldexp(1.0, scales.astype(np.int32) - 127)[..., None]
    return v.reshape(blocks.shape[0], blocks.shape[1], -1)


def moe_layer(family, t, cfg, layer, x):
    """x [M][H] float64 -> y [M][H] float64 for MoE layer `layer`."""
    M = x.shape[0]
    y = np.zeros_like(x)
    if family == "mixtral":
        p = "model.layers.%d.block_sparse_moe." % layer
        ids, ws = route_softmax(x @ f64(t[p + "gate.weight"]).T,
                                cfg["num_experts_per_tok"], True)
        for m in range(M):
            for e, w in zip(ids[m], ws[m]):
                q = p + "experts.%d." % e
                a = silu(f64(t[q + "w1.weight"]) @ x[m]) * \
                    (f64(t[q + "w3.weight"]) @ x[m])
                y[m] += w * (f64(t[q + "w2.weight"]) @ a)
        return y
    if family in ("qwen3_moe", "deepseek_v3"):
        p = "model.layers.%d.mlp." % layer
        logits = x @ f64(t[p + "gate.weight"]).T
        if family == "qwen3_moe":
            ids, ws = route_softmax(logits, cfg["num_experts_per_tok"],
                                    cfg["norm_topk_prob"])
            get = lambda n: f64(t[n])  # noqa: E731
        else:
            ids, ws = route_noaux_tc(
                logits, f64(t[p + "gate.e_score_correction_bias"]),
                cfg["num_experts_per_tok"], cfg["n_group"], cfg["topk_group"],
                cfg["norm_topk_prob"], cfg["routed_scaling_factor"])
            block = cfg["quantization_config"]["weight_block_size"][0]
            get = lambda n: fp8_dequant(t, n, block)  # noqa: E731

        def mlp(q, v):
            a = silu(get(q + "gate_proj.weight") @ v) * \
                (get(q + "up_proj.weight") @ v)
            return get(q + "down_proj.weight") @ a

        for m in range(M):
            for e, w in zip(ids[m], ws[m]):
                y[m] += w * mlp(p + "experts.%d." % e, x[m])
            if cfg.get("n_shared_experts"):
                y[m] += mlp(p + "shared_experts.", x[m])
        return y
    if family == "nemotron_h":
        p = "backbone.layers.%d.mixer." % layer
        ids, ws = route_noaux_tc(
            x @ f64(t[p + "gate.weight"]).T,
            f64(t[p + "gate.e_score_correction_bias"]),
            cfg["num_experts_per_tok"], cfg["n_group"], cfg["topk_group"],
            cfg["norm_topk_prob"], cfg["routed_scaling_factor"])

        def mlp(q, v):
            h = np.maximum(f64(t[q + "up_proj.weight"]) @ v, 0.0)
            return f64(t[q + "down_proj.weight"]) @ (h * h)

        for m in range(M):
            for e, w in zip(ids[m], ws[m]):
                y[m] += w * mlp(p + "experts.%d." % e, x[m])
            y[m] += mlp(p + "shared_experts.", x[m])
        return y
    if family == "gpt_oss":
        p = "model.layers.%d.mlp." % layer
        logits = x @ f64(t[p + "router.weight"]).T + f64(t[p + "router.bias"])
        ids, ws = route_topk_then_softmax(logits, cfg["num_experts_per_tok"])
        if p + "experts.gate_up_proj" in t:
            gu = f64(t[p + "experts.gate_up_proj"])  # [E, H, 2I]
            dn = f64(t[p + "experts.down_proj"])  # [E, I, H]
        else:  # MXFP4 is stored [E, out, in]: transpose to the module's view
            gu = mxfp4_dequant(t[p + "experts.gate_up_proj_blocks"],
                               t[p + "experts.gate_up_proj_scales"])
            dn = mxfp4_dequant(t[p + "experts.down_proj_blocks"],
                               t[p + "experts.down_proj_scales"])
            gu, dn = gu.transpose(0, 2, 1), dn.transpose(0, 2, 1)
        gub = f64(t[p + "experts.gate_up_proj_bias"])
        dnb = f64(t[p + "experts.down_proj_bias"])
        limit, alpha = cfg.get("swiglu_limit", 7.0), 1.702
        for m in range(M):
            for e, w in zip(ids[m], ws[m]):
                h = x[m] @ gu[e] + gub[e]
                gate, up = h[0::2], h[1::2]
                gate = np.minimum(gate, limit)
                up = np.clip(up, -limit, limit)
                a = (up + 1.0) * gate * sigmoid(gate * alpha)
                y[m] += w * (a @ dn[e] + dnb[e])
        return y
    raise ValueError(family)
