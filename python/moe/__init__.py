"""moe: fused Mixture-of-Experts layers (a ctypes binding of libmoe).

    import moe
    layer = moe.Layer(w13, w2, top_k=2)          # numpy or CUDA torch weights
    out = layer.forward(x, logits)               # x [M, H], logits [M, E] f32
    ids, weights = layer.route(logits)
    out = layer.forward_routed(x, ids, weights)
    print(layer.backend, layer.plan)

See docs/python.md.
"""

from ._lib import LibraryNotFoundError, library_path
from ._errors import (
    MoeError,
    InvalidArgumentError,
    UnsupportedError,
    OutOfMemoryError,
    DeviceError,
    NoKernelImageError,
    SelfCheckError,
    MoeIOError,
    FormatError,
    InternalError,
)
from ._core import Context, Layer
from ._plan import Plan, PlanEntry, Verdict
from ._info import plan, version, build_info, backends, device_info
from ._fused import fused_experts, route, clear_cache, set_cache_limit, \
    cache_info

__version__ = "0.1.0"

__all__ = [
    "Context", "Layer", "Plan", "PlanEntry", "Verdict",
    "plan", "route", "fused_experts", "version", "build_info", "backends",
    "device_info", "library_path", "clear_cache", "set_cache_limit",
    "cache_info",
    "MoeError", "InvalidArgumentError", "UnsupportedError",
    "OutOfMemoryError", "DeviceError", "NoKernelImageError",
    "SelfCheckError", "MoeIOError", "FormatError", "InternalError",
    "LibraryNotFoundError",
]
