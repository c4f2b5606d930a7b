"""Engine-facing functions: fused_experts() with vLLM's signature, and
route() without a layer. Both build layers on first use and cache them."""

import collections
import threading

import numpy as np

from . import _tensors as T
from ._core import Layer

_lock = threading.Lock()
_fused_cache = collections.OrderedDict()
_router_cache = collections.OrderedDict()
_limits = {"fused": 512, "router": 64}


def clear_cache():
    """Drops every layer that fused_experts() and route() built (and with
    them the references they hold on the callers' weights)."""
    with _lock:
        layers = list(_fused_cache.values()) + list(_router_cache.values())
        _fused_cache.clear()
        _router_cache.clear()
    for layer in layers:
        layer.close()


def set_cache_limit(fused=None, router=None):
    """How many layers each cache keeps (least recently used dropped)."""
    with _lock:
        if fused is not None:
            _limits["fused"] = max(1, int(fused))
        if router is not None:
            _limits["router"] = max(1, int(router))


def cache_info():
    with _lock:
        return {"fused": len(_fused_cache), "router": len(_router_cache)}


def _cached(cache, limit_key, key, make):
    with _lock:
        layer = cache.get(key)
        if layer is not None:
            cache.move_to_end(key)
            return layer
    layer = make()
    evicted = []
    with _lock:
        other = cache.get(key)
        if other is not None:  # another thread built it meanwhile
            evicted.append(layer)
            layer = other
        else:
            cache[key] = layer
            while len(cache) > _limits[limit_key]:
                evicted.append(cache.popitem(last=False)[1])
    for old in evicted:
        old.close()
    return layer


def _key_of(d):
    if d is None:
        return None
    return (d.ptr, d.shape, d.code, d.memory, d.cuda_index)


# vLLM activation names -> (moe activation, gated)
_VLLM_ACTIVATIONS = {
    "silu": ("silu", True), "gelu": ("gelu", True),
    "swigluoai": ("swiglu-oai", True), "swiglu_oai": ("swiglu-oai", True),
    "swiglu-oai": ("swiglu-oai", True),
    "silu_no_mul": ("silu", False), "gelu_no_mul": ("gelu", False),
    "relu2_no_mul": ("relu2", False), "relu2": ("relu2", False),
}

_QUANT_FLAGS = ("use_fp8_w8a8", "use_int8_w8a8", "use_int8_w8a16",
                "use_int4_w4a16", "use_mxfp4_w4a4", "per_channel_quant")
_QUANT_TENSORS = ("w1_scale", "w2_scale", "w1_zp", "w2_zp", "a1_scale",
                  "a2_scale", "block_shape", "quant_config")
# Hints some engine versions pass that do not change the result.
_IGNORED = ("allow_deep_gemm", "allow_cutlass_block_scaled_grouped_gemm")


def _as_f32(name, t):
    """Biases: the library takes float32; convert once (kept by the layer)."""
    if t is None:
        return None
    d = T.describe(name, t)
    if d.code == T.F32:
        return t
    if d.is_torch:
        return t.float().contiguous()
    return np.ascontiguousarray(t, dtype=np.float32)


def fused_experts(hidden_states, w1, w2, topk_weights, topk_ids,
                  inplace=False, activation="silu",
                  apply_router_weight_on_input=False, global_num_experts=-1,
                  expert_map=None, w1_bias=None, w2_bias=None, **kwargs):
    """vLLM's fused_experts() over moe_forward_routed.

    hidden_states [M, H]; w1 [E, N1, H] (vLLM's w13: gate rows then up rows,
    or interleaved for "swigluoai"); w2 [E, H, I]; topk_weights [M, k];
    topk_ids [M, k] (int32 or int64). Returns the output [M, H] (written into
    hidden_states when inplace). The layer for (w1, w2, activation, ...) is
    built on the first call and cached, keyed on the weights' pointers,
    shapes and dtype: weights must not change in place afterwards (call
    moe.clear_cache() if they do). Quantised weights are not supported.
    """
    for name, value in kwargs.items():
        if name in _QUANT_FLAGS:
            if value:
                raise ValueError("%s: quantised weights are not supported by "
                                 "moe" % name)
        elif name in _QUANT_TENSORS:
            if value is not None:
                raise ValueError("%s: quantised weights are not supported by "
                                 "moe" % name)
        elif name not in _IGNORED:
            raise TypeError("fused_experts() got an unexpected keyword "
                            "argument %r" % name)
    if not isinstance(activation, str) or activation.lower() not in \
            _VLLM_ACTIVATIONS:
        raise ValueError("activation %r: expected one of %s" % (
            activation, ", ".join(sorted(_VLLM_ACTIVATIONS))))
    act, gated = _VLLM_ACTIVATIONS[activation.lower()]

    xd = T.describe("hidden_states", hidden_states)
    w1d = T.describe("w1", w1)
    w2d = T.describe("w2", w2)
    if len(w1d.shape) != 3:
        raise ValueError("w1 has shape %s; expected [E, N1, H]"
                         % list(w1d.shape))
    if len(xd.shape) != 2:
        raise ValueError("hidden_states has shape %s; expected [M, H]"
                         % list(xd.shape))

    # Ids and weights in the library's types.
    idd = T.describe("topk_ids", topk_ids)
    if len(idd.shape) != 2:
        raise ValueError("topk_ids has shape %s; expected [M, top_k]"
                         % list(idd.shape))
    if idd.code != T.I32:
        if idd.dtype_str not in ("int64", "int16", "int8", "uint8"):
            raise TypeError("topk_ids has dtype %s; expected int32 or int64"
                            % idd.dtype_str)
        topk_ids = (topk_ids.to(T.torch_dtype(T.I32)) if idd.is_torch
                    else topk_ids.astype(np.int32))
    wd = T.describe("topk_weights", topk_weights)
    if wd.code != T.F32:
        if wd.code not in (T.F16, T.BF16):
            raise TypeError("topk_weights has dtype %s; expected a float "
                            "type" % wd.dtype_str)
        topk_weights = (topk_weights.float() if wd.is_torch
                        else topk_weights.astype(np.float32))
    top_k = idd.shape[1]

    if apply_router_weight_on_input:
        if top_k != 1:
            raise ValueError("apply_router_weight_on_input needs top_k = 1, "
                             "got %d" % top_k)
        if wd.is_torch:
            hidden_states = (hidden_states * topk_weights).to(
                hidden_states.dtype)
            topk_weights = T.torch_module().ones_like(topk_weights)
        else:
            hidden_states = (hidden_states.astype(np.float32)
                             * topk_weights).astype(hidden_states.dtype)
            topk_weights = np.ones_like(topk_weights)

    mapd = T.describe("expert_map", expert_map) if expert_map is not None \
        else None
    if global_num_experts is None or global_num_experts < 0:
        num_experts = mapd.shape[0] if mapd is not None else w1d.shape[0]
    else:
        num_experts = int(global_num_experts)
    b1d = T.describe("w1_bias", w1_bias) if w1_bias is not None else None
    b2d = T.describe("w2_bias", w2_bias) if w2_bias is not None else None

    key = (_key_of(w1d), _key_of(w2d), act, gated, top_k, num_experts,
           _key_of(mapd), _key_of(b1d), _key_of(b2d))

    def make():
        return Layer(w1, w2, top_k=top_k, num_experts=num_experts,
                     activation=act, gated=gated, expert_map=expert_map,
                     w13_bias=_as_f32("w1_bias", w1_bias),
                     w2_bias=_as_f32("w2_bias", w2_bias))

    layer = _cached(_fused_cache, "fused", key, make)
    out = layer.forward_routed(hidden_states, topk_ids, topk_weights)
    if inplace:
        target = T.describe("hidden_states", hidden_states)
        if target.is_torch:
            hidden_states.copy_(out)
        else:
            hidden_states[...] = out
        return hidden_states
    return out


_ROUTE_DIM = {"host": 64, "cuda": 128}


def route(logits, top_k, *, scoring="softmax", n_group=0, topk_group=0,
          renormalize=False, routed_scaling_factor=1.0, correction_bias=None,
          topk_ids=None, topk_weights=None, stream=None):
    """Routing without a layer: logits [M, E] float32 -> (topk_ids [M, k]
    int32, topk_weights [M, k] float32), by the library's routing (see
    moe.h). A routing-only layer is built per configuration and cached."""
    ld = T.describe("logits", logits)
    if ld.code != T.F32:
        raise TypeError("logits has dtype %s; expected float32"
                        % ld.dtype_str)
    if len(ld.shape) != 2:
        raise ValueError("logits has shape %s; expected [M, num_experts]"
                         % list(ld.shape))
    num_experts = ld.shape[1]
    cbd = (T.describe("correction_bias", correction_bias)
           if correction_bias is not None else None)
    key = (num_experts, top_k, str(scoring).lower(), n_group, topk_group,
           bool(renormalize), float(routed_scaling_factor or 0.0),
           _key_of(cbd), ld.memory, ld.cuda_index)

    def make():
        n = _ROUTE_DIM[ld.memory]
        code = T.BF16
        if ld.memory == "host" and T._NP_BF16 is None:
            code = T.F32
        w13 = T.zeros_weights(ld.memory, ld.cuda_index,
                              (num_experts, 2 * n, n), code)
        w2 = T.zeros_weights(ld.memory, ld.cuda_index,
                             (num_experts, n, n), code)
        return Layer(w13, w2, top_k=top_k, scoring=scoring, n_group=n_group,
                     topk_group=topk_group, renormalize=renormalize,
                     routed_scaling_factor=routed_scaling_factor,
                     correction_bias=correction_bias)

    if not isinstance(top_k, int) and not isinstance(top_k, np.integer):
        raise TypeError("top_k must be an integer")
    layer = _cached(_router_cache, "router", key, make)
    return layer.route(logits, topk_ids, topk_weights, stream=stream)
