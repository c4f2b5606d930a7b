"""Planning without weights, and what the library says of itself."""

import ctypes

from . import _lib
from . import _tensors as T
from ._core import (Context, _Desc, _default_gated, _expert_map_array,
                    _parse_activation)
from ._plan import Plan


def plan(*, num_experts, top_k, hidden, intermediate, activation="silu",
         gated=None, dtype="bf16", swiglu_alpha=None, swiglu_limit=None,
         scoring="softmax", n_group=0, topk_group=0, renormalize=False,
         routed_scaling_factor=1.0, shared_intermediate=0, expert_map=None,
         max_tokens=0, backend=None, allow_fallback=False, memory="host",
         device=None, cuda_device=0, num_threads=0):
    """What-if planning without weights: which backend would serve this
    layer for tensors in `memory` ("host" or "cuda") on this machine, or on
    the device named by `device` (e.g. "sm_121", "sm_90", "cpu").

    Returns a Plan; str(plan) is the library's decision table."""
    act = _parse_activation(activation)
    if gated is None:
        gated = _default_gated(act)
    if memory not in ("host", "cuda"):
        raise ValueError("memory %r: expected 'host' or 'cuda'" % (memory,))
    map_arr = _expert_map_array(expert_map) if expert_map is not None else None
    desc = _Desc(num_experts=num_experts, top_k=top_k, hidden=hidden,
                 intermediate=intermediate, act=act, gated=gated,
                 dtype_code=T.dtype_code(dtype), swiglu_alpha=swiglu_alpha,
                 swiglu_limit=swiglu_limit, scoring=scoring, n_group=n_group,
                 topk_group=topk_group, renormalize=renormalize,
                 routed_scaling_factor=routed_scaling_factor,
                 shared_intermediate=shared_intermediate, expert_map=map_arr,
                 max_tokens=max_tokens, backend=backend,
                 allow_fallback=allow_fallback, self_check=True)
    mem = _lib.MEMORY_CUDA if memory == "cuda" else _lib.MEMORY_HOST
    with Context(num_threads=num_threads, cuda_device=cuda_device,
                 device=device) as ctx:
        lib = _lib.load()
        p = ctypes.c_void_p()
        try:
            ctx.call("moe_plan_create", ctx.handle, ctypes.byref(desc.c), mem,
                     ctypes.byref(p))
        finally:
            # The library hands back a plan even when no backend can serve
            # (its explanation says why); it is freed here either way.
            if p.value:
                plan_obj = Plan._from_handle(lib, p.value)
                lib.moe_plan_destroy(p.value)
        return plan_obj


def version():
    """The library's version string, e.g. "0.1.0"."""
    return _lib.cstr(_lib.load().moe_version_string())


def build_info():
    """The library's build description: backends and CUDA archs compiled
    in, one "key: values" line each."""
    return _lib.cstr(_lib.load().moe_build_info())


def backends():
    """Names of the backends compiled into the library."""
    for line in build_info().splitlines():
        key, _, rest = line.partition(":")
        if key.strip() == "backends":
            return rest.split()
    return []


def device_info(device=None):
    """The library's description of this machine (or a what-if device)."""
    with Context(device=device) as ctx:
        return ctx.device_info
