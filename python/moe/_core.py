"""Context and Layer: the binding of moe.h's context and layer handles."""

import ctypes
import operator
import threading
import weakref

import numpy as np

from . import _lib
from . import _tensors as T
from ._errors import error_for
from ._plan import Plan

_ACTIVATIONS = {
    "silu": _lib.ACT_SILU, "swish": _lib.ACT_SILU,
    "gelu": _lib.ACT_GELU,
    "relu2": _lib.ACT_RELU2, "relu^2": _lib.ACT_RELU2,
    "swiglu-oai": _lib.ACT_SWIGLU_OAI, "swiglu_oai": _lib.ACT_SWIGLU_OAI,
    "swigluoai": _lib.ACT_SWIGLU_OAI,
}
_ACT_NAMES = {_lib.ACT_SILU: "silu", _lib.ACT_GELU: "gelu",
              _lib.ACT_RELU2: "relu2", _lib.ACT_SWIGLU_OAI: "swiglu-oai"}
_SCORINGS = {"softmax": _lib.SCORING_SOFTMAX,
             "sigmoid": _lib.SCORING_SIGMOID}
_INT_MAX = 2**31 - 1


def _int(name, v, lo=-_INT_MAX - 1, hi=_INT_MAX):
    try:
        v = operator.index(v)
    except TypeError:
        raise TypeError("%s must be an integer, not %s"
                        % (name, type(v).__name__)) from None
    if not lo <= v <= hi:
        raise ValueError("%s = %d is out of range [%d, %d]" % (name, v, lo, hi))
    return v


def _float(name, v):
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError("%s must be a number, not %s"
                        % (name, type(v).__name__)) from None


def _parse_activation(activation):
    if not isinstance(activation, str):
        raise TypeError("activation must be a string, not %s"
                        % type(activation).__name__)
    act = _ACTIVATIONS.get(activation.lower())
    if act is None:
        raise ValueError("activation %r: expected one of silu, gelu, relu2, "
                         "swiglu-oai" % activation)
    return act


def _parse_scoring(scoring):
    if not isinstance(scoring, str) or scoring.lower() not in _SCORINGS:
        raise ValueError("scoring %r: expected 'softmax' or 'sigmoid'"
                         % (scoring,))
    return _SCORINGS[scoring.lower()]


def _default_gated(act):
    if act == _lib.ACT_RELU2:
        return False
    return True


# ---- context ----


class Context:
    """A libmoe context: CPU threads, CUDA device, the last error message.

    Layers made without an explicit context each get their own. Calls on
    one context are serialised (the library's error message and a layer's
    workspace belong to one call at a time).
    """

    def __init__(self, num_threads=0, cuda_device=0, device=None,
                 ref_double_accumulation=False, strict_inputs=False):
        self._handle = None
        lib = _lib.load()
        opts = _lib.ContextOptions()
        lib.moe_context_options_init(ctypes.byref(opts))
        opts.num_threads = _int("num_threads", num_threads, 0)
        opts.cuda_device = _int("cuda_device", cuda_device, 0)
        if device is not None:
            if not isinstance(device, str):
                raise TypeError("device must be a string such as 'sm_121' or"
                                " 'cpu', not %s" % type(device).__name__)
            self._device_bytes = device.encode()
            opts.device_override = self._device_bytes
        opts.ref_double_accumulation = int(bool(ref_double_accumulation))
        opts.strict_inputs = int(bool(strict_inputs))
        h = ctypes.c_void_p()
        st = lib.moe_context_create(ctypes.byref(opts), ctypes.byref(h))
        if st != 0:
            raise error_for(st, "could not create a context",
                            "moe_context_create")
        self._lib = lib
        self._handle = h.value
        self.cuda_device = opts.cuda_device
        self.lock = threading.RLock()
        self._layers = weakref.WeakSet()

    @property
    def handle(self):
        if self._handle is None:
            raise ValueError("the moe context is closed")
        return self._handle

    @property
    def device_info(self):
        """The library's description of the machine (devices, CPU)."""
        return _lib.cstr(self._lib.moe_context_device_info(self.handle))

    @property
    def last_error(self):
        return _lib.cstr(self._lib.moe_last_error(self.handle))

    def call(self, name, *args):
        """Calls a status-returning function; raises MoeError on failure."""
        fn = getattr(self._lib, name)
        with self.lock:
            st = fn(*args)
            if st != 0:
                raise error_for(st, self.last_error, name)

    def close(self):
        """Destroys the context, closing the layers made on it first."""
        for layer in list(getattr(self, "_layers", ())):
            layer.close()
        h, self._handle = self._handle, None
        if h is not None:
            self._lib.moe_context_destroy(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# ---- descriptor ----


class _Desc:
    """A filled moe_layer_desc plus the Python objects it points into."""

    def __init__(self, *, num_experts, top_k, hidden, intermediate, act,
                 gated, dtype_code, swiglu_alpha, swiglu_limit, scoring,
                 n_group, topk_group, renormalize, routed_scaling_factor,
                 shared_intermediate, expert_map, max_tokens, backend,
                 allow_fallback, self_check):
        lib = _lib.load()
        d = _lib.LayerDesc()
        lib.moe_layer_desc_init(ctypes.byref(d))
        d.num_experts = _int("num_experts", num_experts)
        d.top_k = _int("top_k", top_k)
        d.hidden = _int("hidden", hidden)
        d.intermediate = _int("intermediate", intermediate)
        d.activation = act
        d.gated = 1 if gated else 0
        d.dtype = T.MOE_DTYPE[dtype_code]
        if swiglu_alpha is not None:
            d.swiglu_alpha = _float("swiglu_alpha", swiglu_alpha)
        if swiglu_limit is not None:
            d.swiglu_limit = _float("swiglu_limit", swiglu_limit)
        d.routing.scoring = _parse_scoring(scoring)
        d.routing.n_group = _int("n_group", n_group or 0)
        d.routing.topk_group = _int("topk_group", topk_group or 0)
        d.routing.renormalize = 1 if renormalize else 0
        d.routing.routed_scaling_factor = _float(
            "routed_scaling_factor",
            1.0 if routed_scaling_factor is None else routed_scaling_factor)
        d.shared_intermediate = _int("shared_intermediate",
                                     shared_intermediate or 0)
        self.expert_map = expert_map
        if expert_map is not None:
            d.expert_map = expert_map.ctypes.data
        d.max_tokens = _int("max_tokens", max_tokens or 0)
        self.backend_bytes = None
        if backend is not None:
            if not isinstance(backend, str):
                raise TypeError("backend must be a string or None, not %s"
                                % type(backend).__name__)
            self.backend_bytes = backend.encode()
            d.backend = self.backend_bytes
        d.allow_fallback = 1 if allow_fallback else 0
        d.self_check = 1 if self_check else 0
        self.c = d


def _expert_map_array(expert_map):
    """expert_map (sequence, numpy array or torch tensor) -> int32 array."""
    if T.is_torch(expert_map):
        expert_map = expert_map.detach().cpu().numpy()
    arr = np.asarray(expert_map)
    if arr.ndim != 1:
        raise ValueError("expert_map must be one-dimensional (one entry per "
                         "expert), got shape %s" % list(arr.shape))
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError("expert_map must hold integers, not %s" % arr.dtype)
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < -1 or arr.max() > _INT_MAX):
        bad = int(np.argmax((arr < -1) | (arr > _INT_MAX)))
        raise ValueError("expert_map[%d] = %d: must be -1 or a local expert "
                         "index" % (bad, int(arr[bad])))
    return np.ascontiguousarray(arr.astype(np.int32))


# ---- layers ----


class Layer:
    """One MoE layer: shape, borrowed weights, the backend chosen to run it.

    Weights are numpy arrays (host memory, CPU backends) or CUDA torch
    tensors (CUDA backends); the layer keeps references to them, because the
    library reads them in place on every call. Close it with close() or use
    it as a context manager; it is also closed when garbage-collected.
    """

    def __init__(self, w13, w2, *, top_k, num_experts=None, hidden=None,
                 intermediate=None, activation="silu", gated=None,
                 dtype=None, swiglu_alpha=None, swiglu_limit=None,
                 scoring="softmax", n_group=0, topk_group=0,
                 renormalize=False, routed_scaling_factor=1.0,
                 shared_intermediate=None, expert_map=None, max_tokens=0,
                 backend=None, allow_fallback=False, self_check=True,
                 w13_bias=None, w2_bias=None, correction_bias=None,
                 shared_w13=None, shared_w2=None, context=None,
                 num_threads=0, device=None, strict_inputs=False):
        self._handle = None
        self._ctx = None
        self._own_ctx = False
        act = _parse_activation(activation)

        # dtype: given, or that of w13.
        w13d = T.describe("w13", w13)
        if dtype is None:
            if w13d.code not in T.MOE_DTYPE:
                raise TypeError("w13 has dtype %s; expected bfloat16, float16"
                                " or float32" % w13d.dtype_str)
            code = w13d.code
        else:
            code = T.dtype_code(dtype)
        w13d = T.check("w13", w13, (None, None, None), code)
        e_local, n1, h = w13d.shape
        if hidden is not None and _int("hidden", hidden) != h:
            raise ValueError("w13 has shape %s: its last dimension must be "
                             "hidden = %d" % (list(w13d.shape), hidden))
        w2d = T.check("w2", w2, (e_local, h, None), code)
        i = w2d.shape[2]
        if intermediate is not None and _int("intermediate",
                                             intermediate) != i:
            raise ValueError("w2 has shape %s: its last dimension must be "
                             "intermediate = %d" % (list(w2d.shape),
                                                    intermediate))
        if gated is None:
            if act in (_lib.ACT_SILU, _lib.ACT_GELU) and n1 == i:
                gated = False
            else:
                gated = _default_gated(act)
        gated = bool(gated)
        want_n1 = 2 * i if gated else i
        if n1 != want_n1:
            raise ValueError(
                "w13 has shape %s: a %s layer with intermediate = %d needs "
                "%d rows per expert (w13 [E, %s, H])" % (
                    list(w13d.shape), "gated" if gated else "non-gated", i,
                    want_n1, "2*I" if gated else "I"))

        # Experts: global count and the expert map.
        map_arr = None
        if expert_map is not None:
            map_arr = _expert_map_array(expert_map)
            n_mapped = int((map_arr >= 0).sum())
            if n_mapped != e_local:
                raise ValueError(
                    "expert_map maps %d experts to this device but w13 holds "
                    "%d experts" % (n_mapped, e_local))
            if num_experts is not None and _int("num_experts",
                                                num_experts) != map_arr.size:
                raise ValueError("expert_map has %d entries; it needs one per "
                                 "expert (num_experts = %d)"
                                 % (map_arr.size, num_experts))
            E = int(map_arr.size)
        else:
            E = e_local if num_experts is None else _int("num_experts",
                                                         num_experts)
            if E != e_local:
                raise ValueError(
                    "w13 holds %d experts but num_experts = %d: without an "
                    "expert_map every expert's weights must be given"
                    % (e_local, E))

        if (correction_bias is not None
                and _parse_scoring(scoring) != _lib.SCORING_SIGMOID):
            raise ValueError("correction_bias is used with scoring='sigmoid' "
                             "only")
        b13d = T.check("w13_bias", w13_bias, (e_local, n1), T.F32, True)
        b2d = T.check("w2_bias", w2_bias, (e_local, h), T.F32, True)
        cbd = T.check("correction_bias", correction_bias, (E,), T.F32, True)

        if (shared_w13 is None) != (shared_w2 is None):
            raise ValueError("a shared expert needs both shared_w13 and "
                             "shared_w2")
        s13d = s2d = None
        if shared_w2 is not None:
            s2d = T.check("shared_w2", shared_w2, (h, None), code)
            i_s = s2d.shape[1]
            s13d = T.check("shared_w13", shared_w13,
                           (2 * i_s if gated else i_s, h), code)
            if shared_intermediate is not None and _int(
                    "shared_intermediate", shared_intermediate) != i_s:
                raise ValueError(
                    "shared_w2 has shape %s: its last dimension must be "
                    "shared_intermediate = %d" % (list(s2d.shape),
                                                  shared_intermediate))
        else:
            i_s = 0
            if shared_intermediate:
                raise ValueError("shared_intermediate = %s but no shared_w13"
                                 " / shared_w2 were given"
                                 % shared_intermediate)

        for d in (w2d, b13d, b2d, cbd, s13d, s2d):
            T.same_place(w13d, d, "w13 is")
        on_cuda = w13d.memory == "cuda"

        # Context.
        if context is None:
            context = Context(num_threads=num_threads,
                              cuda_device=w13d.cuda_index if on_cuda else 0,
                              device=device, strict_inputs=strict_inputs)
            self._own_ctx = True
        elif not isinstance(context, Context):
            raise TypeError("context must be a moe.Context")
        elif on_cuda and context.cuda_device != w13d.cuda_index:
            raise ValueError("the weights are on cuda:%d but the context is "
                             "for cuda:%d" % (w13d.cuda_index,
                                              context.cuda_device))
        self._ctx = context

        desc = _Desc(num_experts=E, top_k=top_k, hidden=h, intermediate=i,
                     act=act, gated=gated, dtype_code=code,
                     swiglu_alpha=swiglu_alpha, swiglu_limit=swiglu_limit,
                     scoring=scoring, n_group=n_group, topk_group=topk_group,
                     renormalize=renormalize,
                     routed_scaling_factor=routed_scaling_factor,
                     shared_intermediate=i_s, expert_map=map_arr,
                     max_tokens=max_tokens, backend=backend,
                     allow_fallback=allow_fallback, self_check=self_check)
        wts = _lib.Weights()
        wts.memory = _lib.MEMORY_CUDA if on_cuda else _lib.MEMORY_HOST
        wts.w13 = w13d.ptr
        wts.w2 = w2d.ptr
        wts.w13_bias = b13d.ptr if b13d else None
        wts.w2_bias = b2d.ptr if b2d else None
        wts.correction_bias = cbd.ptr if cbd else None
        wts.shared_w13 = s13d.ptr if s13d else None
        wts.shared_w2 = s2d.ptr if s2d else None

        lib = _lib.load()
        out = ctypes.c_void_p()
        with T_device(w13d):
            context.call("moe_layer_create", context.handle,
                         ctypes.byref(desc.c), ctypes.byref(wts),
                         ctypes.byref(out))
        self._lib = lib
        self._handle = out.value
        context._layers.add(self)
        # The library borrows these: keep them alive as long as the layer.
        self._borrowed = (w13, w2, w13_bias, w2_bias, correction_bias,
                          shared_w13, shared_w2, map_arr)
        self._place = w13d
        self.num_experts = E
        self.num_local_experts = e_local
        self.top_k = desc.c.top_k
        self.hidden = h
        self.intermediate = i
        self.shared_intermediate = i_s
        self.activation = _ACT_NAMES[act]
        self.gated = gated
        self.dtype = code
        self.memory = w13d.memory
        self.cuda_device = w13d.cuda_index if on_cuda else None
        self.backend = _lib.cstr(lib.moe_layer_backend(self._handle))
        self.plan = Plan._from_handle(lib, lib.moe_layer_plan(self._handle))

    # -- helpers --

    def _live(self):
        if self._handle is None:
            raise ValueError("the moe layer is closed")
        return self._handle

    def _input(self, name, obj, shape, code):
        d = T.check(name, obj, shape, code)
        T.same_place(self._place, d, "the layer's weights are")
        return d

    def _output(self, name, obj, shape, code, like):
        if obj is None:
            arr = T.empty(like, shape, code)
            return T.describe(name, arr)
        d = self._input(name, obj, shape, code)
        T.check_writable(d)
        return d

    def _tokens(self, m):
        if m > _INT_MAX:
            raise ValueError("%d tokens: at most %d per call" % (m, _INT_MAX))
        return m

    # -- calls --

    def forward(self, x, logits, out=None, *, stream=None):
        """out[M, H] = the layer applied to x[M, H] with router logits
        [M, E] (float32). Returns out (allocated when not given)."""
        h = self._live()
        xd = self._input("x", x, (None, self.hidden), self.dtype)
        m = self._tokens(xd.shape[0])
        ld = self._input("logits", logits, (m, self.num_experts), T.F32)
        od = self._output("out", out, (m, self.hidden), self.dtype, xd)
        _no_alias(od, xd)
        if m:
            s = T.cuda_stream(xd, stream)
            with T_device(xd):
                self._ctx.call("moe_forward", h, xd.ptr, ld.ptr, m, od.ptr, s)
        return od.obj

    __call__ = forward

    def forward_routed(self, x, topk_ids, topk_weights, out=None, *,
                       stream=None):
        """As forward() with the caller's routing: topk_ids [M, k] int32
        (global expert ids) and topk_weights [M, k] float32, used as given."""
        h = self._live()
        xd = self._input("x", x, (None, self.hidden), self.dtype)
        m = self._tokens(xd.shape[0])
        idd = self._input("topk_ids", topk_ids, (m, self.top_k), T.I32)
        wd = self._input("topk_weights", topk_weights, (m, self.top_k),
                         T.F32)
        od = self._output("out", out, (m, self.hidden), self.dtype, xd)
        _no_alias(od, xd)
        bad = T.ids_out_of_range(idd, self.num_experts)
        if bad is not None:
            raise ValueError("topk_ids%s = %d is not an expert id in [0, %d)"
                             % (list(bad[0]), bad[1], self.num_experts))
        if m:
            s = T.cuda_stream(xd, stream)
            with T_device(xd):
                self._ctx.call("moe_forward_routed", h, xd.ptr, idd.ptr,
                               wd.ptr, m, od.ptr, s)
        return od.obj

    def route(self, logits, topk_ids=None, topk_weights=None, *,
              stream=None):
        """Routing only: logits [M, E] float32 -> (topk_ids [M, k] int32,
        topk_weights [M, k] float32)."""
        h = self._live()
        ld = self._input("logits", logits, (None, self.num_experts), T.F32)
        m = self._tokens(ld.shape[0])
        idd = self._output("topk_ids", topk_ids, (m, self.top_k), T.I32, ld)
        wd = self._output("topk_weights", topk_weights, (m, self.top_k),
                          T.F32, ld)
        if m:
            s = T.cuda_stream(ld, stream)
            with T_device(ld):
                self._ctx.call("moe_route", h, ld.ptr, m, idd.ptr, wd.ptr, s)
        return idd.obj, wd.obj

    @property
    def context(self):
        return self._ctx

    def close(self):
        """Destroys the C layer (and its own context). Idempotent."""
        h, self._handle = self._handle, None
        if h is not None:
            self._lib.moe_layer_destroy(h)
        self._borrowed = None
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            ctx._layers.discard(self)
            if self._own_ctx:
                ctx.close()

    @property
    def closed(self):
        return self._handle is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        state = "closed" if self._handle is None else self.backend
        return ("<moe.Layer E=%d k=%d H=%d I=%d %s%s %s %s>" % (
            self.num_experts, self.top_k, self.hidden, self.intermediate,
            self.activation, "" if self.gated else " (non-gated)",
            self.dtype, state))


def _no_alias(od, xd):
    if od.ptr == xd.ptr and xd.shape[0]:
        raise ValueError("out must not be the same memory as x")


class T_device:
    """Makes the tensor's CUDA device current for a call (torch only)."""

    def __init__(self, d):
        self.guard = None
        if d.memory == "cuda":
            torch = T.torch_module()
            if torch.cuda.current_device() != d.cuda_index:
                self.guard = torch.cuda.device(d.cuda_index)

    def __enter__(self):
        if self.guard is not None:
            self.guard.__enter__()

    def __exit__(self, *exc):
        if self.guard is not None:
            self.guard.__exit__(*exc)
