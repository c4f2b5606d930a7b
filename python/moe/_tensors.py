"""Describing numpy arrays and torch tensors for the C API.

Every check happens here, before the library is called, and raises a
TypeError (wrong kind or dtype) or ValueError (shape, contiguity, device)
that names the argument.
"""

import sys

import numpy as np

try:  # bf16 numpy arrays
    import ml_dtypes as _ml_dtypes

    _NP_BF16 = np.dtype(_ml_dtypes.bfloat16)
except Exception:  # pragma: no cover - ml_dtypes is optional
    _ml_dtypes = None
    _NP_BF16 = None

# dtype codes used in this module: the moe_dtype names plus i32.
F32, F16, BF16, I32 = "f32", "f16", "bf16", "i32"
MOE_DTYPE = {F32: 0, F16: 1, BF16: 2}
_DTYPE_ALIASES = {
    "f32": F32, "float32": F32, "float": F32, "fp32": F32,
    "f16": F16, "float16": F16, "half": F16, "fp16": F16,
    "bf16": BF16, "bfloat16": BF16,
}

_NP_CODES = {np.dtype(np.float32): F32, np.dtype(np.float16): F16,
             np.dtype(np.int32): I32}
if _NP_BF16 is not None:
    _NP_CODES[_NP_BF16] = BF16


def torch_module():
    """torch if the caller has imported it (never imports it ourselves)."""
    return sys.modules.get("torch")


def is_torch(obj):
    t = torch_module()
    return t is not None and isinstance(obj, t.Tensor)


def _torch_codes(torch):
    return {torch.float32: F32, torch.float16: F16, torch.bfloat16: BF16,
            torch.int32: I32}


def dtype_code(dtype):
    """A user's dtype (string, numpy dtype, torch dtype) -> f32/f16/bf16."""
    if isinstance(dtype, str):
        code = _DTYPE_ALIASES.get(dtype.lower())
        if code is None:
            raise ValueError("dtype %r: expected one of bf16, f16, f32"
                             % dtype)
        return code
    t = torch_module()
    if t is not None and isinstance(dtype, t.dtype):
        code = _torch_codes(t).get(dtype)
        if code in MOE_DTYPE:
            return code
        raise ValueError("dtype %s: expected bfloat16, float16 or float32"
                         % dtype)
    try:
        code = _NP_CODES.get(np.dtype(dtype))
    except TypeError:
        code = None
    if code in MOE_DTYPE:
        return code
    raise ValueError("dtype %r: expected bf16, f16 or f32" % (dtype,))


def numpy_dtype(code):
    if code == BF16:
        if _NP_BF16 is None:
            raise TypeError("bf16 numpy arrays need the ml_dtypes package")
        return _NP_BF16
    return {F32: np.dtype(np.float32), F16: np.dtype(np.float16),
            I32: np.dtype(np.int32)}[code]


def torch_dtype(code):
    torch = torch_module()
    return {F32: torch.float32, F16: torch.float16, BF16: torch.bfloat16,
            I32: torch.int32}[code]


class Tensor:
    """What the binding needs to know about one array or tensor."""

    __slots__ = ("obj", "name", "is_torch", "ptr", "shape", "code",
                 "dtype_str", "device", "cuda_index")

    @property
    def memory(self):
        return "cuda" if self.device == "cuda" else "host"

    def where(self):
        if self.device == "cuda":
            return "cuda:%d" % self.cuda_index
        return "host (%s)" % ("torch cpu" if self.is_torch else "numpy")


def describe(name, obj):
    """Checks that obj is an array we can pass and describes it."""
    d = Tensor()
    d.obj = obj
    d.name = name
    if isinstance(obj, np.ndarray):
        d.is_torch = False
        d.shape = tuple(int(s) for s in obj.shape)
        d.code = _NP_CODES.get(obj.dtype)
        d.dtype_str = str(obj.dtype)
        d.device = "cpu"
        d.cuda_index = -1
        if not obj.flags.c_contiguous:
            raise ValueError("%s must be C-contiguous (row-major, no strides);"
                             " pass numpy.ascontiguousarray(%s)"
                             % (name, name))
        if not obj.flags.aligned:
            raise ValueError("%s is not aligned to its element size" % name)
        d.ptr = int(obj.ctypes.data)
        return d
    if is_torch(obj):
        d.is_torch = True
        d.shape = tuple(int(s) for s in obj.shape)
        d.code = _torch_codes(torch_module()).get(obj.dtype)
        d.dtype_str = str(obj.dtype).replace("torch.", "")
        dev = obj.device
        if dev.type == "cuda":
            d.device = "cuda"
            d.cuda_index = dev.index if dev.index is not None else 0
        elif dev.type == "cpu":
            d.device = "cpu"
            d.cuda_index = -1
        else:
            raise ValueError("%s is on device %s; moe runs on the CPU (host "
                             "memory) or on CUDA devices" % (name, dev))
        if not obj.is_contiguous():
            raise ValueError("%s must be contiguous (row-major); pass "
                             "%s.contiguous()" % (name, name))
        d.ptr = int(obj.data_ptr())
        return d
    raise TypeError("%s must be a numpy.ndarray or a torch.Tensor, not %s"
                    % (name, type(obj).__name__))


def check(name, obj, shape, code, optional=False):
    """describe() plus dtype and shape checks. shape entries may be None
    (any). Returns the Tensor, or None for an absent optional argument."""
    if obj is None:
        if optional:
            return None
        raise TypeError("%s is required" % name)
    d = describe(name, obj)
    if d.code != code:
        raise TypeError("%s has dtype %s; expected %s" % (
            name, d.dtype_str, _code_name(code)))
    if len(d.shape) != len(shape) or any(
            want is not None and want != got
            for want, got in zip(shape, d.shape)):
        raise ValueError("%s has shape %s; expected %s" % (
            name, list(d.shape), _shape_str(shape)))
    return d


def _code_name(code):
    return {F32: "float32", F16: "float16", BF16: "bfloat16",
            I32: "int32"}[code]


def _shape_str(shape):
    return "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"


def check_writable(d):
    if not d.is_torch and not d.obj.flags.writeable:
        raise ValueError("%s is read-only" % d.name)


def same_place(ref, d, what):
    """d must live where ref does (same memory space, same CUDA device)."""
    if d is None:
        return
    if d.memory != ref.memory or (d.memory == "cuda"
                                  and d.cuda_index != ref.cuda_index):
        raise ValueError("%s is in %s but %s in %s: a layer's tensors must "
                         "all be host arrays or all be on one CUDA device"
                         % (d.name, d.where(), what, ref.where()))


def empty(like, shape, code):
    """A new uninitialised array of the same kind and device as `like`."""
    if like.is_torch:
        torch = torch_module()
        return torch.empty(shape, dtype=torch_dtype(code),
                           device=like.obj.device)
    return np.empty(shape, dtype=numpy_dtype(code))


def zeros_weights(memory, cuda_index, shape, code):
    if memory == "cuda":
        torch = torch_module()
        return torch.zeros(shape, dtype=torch_dtype(code),
                           device="cuda:%d" % cuda_index)
    return np.zeros(shape, dtype=numpy_dtype(code))


def ids_out_of_range(d, limit):
    """(index, value) of the first id outside [0, limit), or None. Host
    tensors only: reading a CUDA tensor would synchronise the stream."""
    if d.memory != "host" or not d.shape or 0 in d.shape:
        return None
    if d.is_torch:
        arr = d.obj.detach().numpy()
    else:
        arr = d.obj
    bad = (arr < 0) | (arr >= limit)
    if not bad.any():
        return None
    idx = np.unravel_index(int(np.argmax(bad)), arr.shape)
    return tuple(int(i) for i in idx), int(arr[idx])


def cuda_stream(d, stream):
    """The stream handle (an integer) for a call on tensors like d."""
    if d.memory != "cuda":
        return None
    if stream is None:
        torch = torch_module()
        return int(torch.cuda.current_stream(d.cuda_index).cuda_stream)
    if isinstance(stream, int):
        return stream
    handle = getattr(stream, "cuda_stream", None)
    if handle is None:
        raise TypeError("stream must be a torch.cuda.Stream or an integer "
                        "cudaStream_t, not %s" % type(stream).__name__)
    return int(handle)
