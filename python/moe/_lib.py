"""Loading libmoe and declaring its C API (mirrors include/moe.h).

The library is looked for, in order:

1. the file named by the ``MOE_LIBRARY`` environment variable;
2. ``libmoe.so`` next to this package (copied there by ``pip install``);
3. the repository's ``build/`` directory, for use from a source tree;
4. the system loader (``ctypes.util.find_library("moe")``).

Loading is lazy: importing :mod:`moe` never fails because the library is
missing; the first call that needs it raises :class:`LibraryNotFoundError`.
"""

import ctypes
import ctypes.util
import os
import threading

# The ABI this binding was written against (include/moe.h).
ABI_MAJOR = 0

_LIB_NAMES = ("libmoe.so", "libmoe.dylib", "moe.dll")


class LibraryNotFoundError(OSError):
    """libmoe could not be found or loaded."""


# ---- C structures (field order and types exactly as in moe.h) ----


class Routing(ctypes.Structure):
    _fields_ = [
        ("scoring", ctypes.c_int),
        ("n_group", ctypes.c_int),
        ("topk_group", ctypes.c_int),
        ("renormalize", ctypes.c_int),
        ("routed_scaling_factor", ctypes.c_float),
    ]


class LayerDesc(ctypes.Structure):
    _fields_ = [
        ("num_experts", ctypes.c_int),
        ("top_k", ctypes.c_int),
        ("hidden", ctypes.c_int),
        ("intermediate", ctypes.c_int),
        ("activation", ctypes.c_int),
        ("gated", ctypes.c_int),
        ("swiglu_alpha", ctypes.c_float),
        ("swiglu_limit", ctypes.c_float),
        ("dtype", ctypes.c_int),
        ("routing", Routing),
        ("shared_intermediate", ctypes.c_int),
        ("expert_map", ctypes.c_void_p),
        ("max_tokens", ctypes.c_int),
        ("backend", ctypes.c_char_p),
        ("allow_fallback", ctypes.c_int),
        ("self_check", ctypes.c_int),
    ]


class Weights(ctypes.Structure):
    _fields_ = [
        ("memory", ctypes.c_int),
        ("w13", ctypes.c_void_p),
        ("w2", ctypes.c_void_p),
        ("w13_bias", ctypes.c_void_p),
        ("w2_bias", ctypes.c_void_p),
        ("correction_bias", ctypes.c_void_p),
        ("shared_w13", ctypes.c_void_p),
        ("shared_w2", ctypes.c_void_p),
    ]


class ContextOptions(ctypes.Structure):
    _fields_ = [
        ("num_threads", ctypes.c_int),
        ("cuda_device", ctypes.c_int),
        ("device_override", ctypes.c_char_p),
        ("ref_double_accumulation", ctypes.c_int),
        ("strict_inputs", ctypes.c_int),
    ]


class PlanEntry(ctypes.Structure):
    _fields_ = [
        ("backend", ctypes.c_char_p),
        ("verdict", ctypes.c_int),
        ("reason", ctypes.c_char_p),
    ]


# Enum values (pinned in moe.h).
DTYPE_F32, DTYPE_F16, DTYPE_BF16 = 0, 1, 2
ACT_SILU, ACT_GELU, ACT_RELU2, ACT_SWIGLU_OAI = 0, 1, 2, 3
SCORING_SOFTMAX, SCORING_SIGMOID = 0, 1
MEMORY_HOST, MEMORY_CUDA = 0, 1

_c_int, _c_void_p, _c_char_p = ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
_P = ctypes.POINTER

# name: (restype, argtypes). Pointers to tensors are declared void* so that
# plain integers (numpy .ctypes.data, torch .data_ptr()) can be passed.
_PROTOTYPES = {
    "moe_version_string": (_c_char_p, []),
    "moe_version_number": (_c_int, []),
    "moe_build_info": (_c_char_p, []),
    "moe_status_string": (_c_char_p, [_c_int]),
    "moe_dtype_name": (_c_char_p, [_c_int]),
    "moe_activation_name": (_c_char_p, [_c_int]),
    "moe_context_options_init": (None, [_P(ContextOptions)]),
    "moe_context_create": (_c_int, [_P(ContextOptions), _P(_c_void_p)]),
    "moe_context_destroy": (None, [_c_void_p]),
    "moe_last_error": (_c_char_p, [_c_void_p]),
    "moe_context_device_info": (_c_char_p, [_c_void_p]),
    "moe_layer_desc_init": (None, [_P(LayerDesc)]),
    "moe_layer_create": (
        _c_int, [_c_void_p, _P(LayerDesc), _P(Weights), _P(_c_void_p)]),
    "moe_layer_destroy": (None, [_c_void_p]),
    "moe_layer_backend": (_c_char_p, [_c_void_p]),
    "moe_layer_plan": (_c_void_p, [_c_void_p]),
    "moe_route": (
        _c_int, [_c_void_p, _c_void_p, _c_int, _c_void_p, _c_void_p,
                 _c_void_p]),
    "moe_forward": (
        _c_int, [_c_void_p, _c_void_p, _c_void_p, _c_int, _c_void_p,
                 _c_void_p]),
    "moe_forward_routed": (
        _c_int, [_c_void_p, _c_void_p, _c_void_p, _c_void_p, _c_int,
                 _c_void_p, _c_void_p]),
    "moe_plan_create": (
        _c_int, [_c_void_p, _P(LayerDesc), _c_int, _P(_c_void_p)]),
    "moe_plan_destroy": (None, [_c_void_p]),
    "moe_plan_backend": (_c_char_p, [_c_void_p]),
    "moe_plan_num_entries": (_c_int, [_c_void_p]),
    "moe_plan_entry_get": (_c_int, [_c_void_p, _c_int, _P(PlanEntry)]),
    "moe_plan_fell_back": (_c_int, [_c_void_p]),
    "moe_plan_explain": (ctypes.c_size_t, [_c_void_p, _c_char_p,
                                           ctypes.c_size_t]),
}

# Present only in builds with MOE_TEST_HOOKS (used by the tests).
_OPTIONAL_PROTOTYPES = {
    "moe_test_set_fault": (None, [_c_void_p, _c_char_p, _c_int]),
}

_lock = threading.Lock()
_lib = None
_lib_path = None


def _package_dir():
    return os.path.dirname(os.path.abspath(__file__))


def candidates():
    """The places searched for libmoe, in order, as (origin, path) pairs.

    Only the existing files are listed, plus the system loader's answer."""
    out = []
    env = os.environ.get("MOE_LIBRARY")
    if env:
        return [("MOE_LIBRARY", env)]
    here = _package_dir()
    for name in _LIB_NAMES:
        p = os.path.join(here, name)
        if os.path.exists(p):
            out.append(("package", p))
    repo_build = os.path.normpath(os.path.join(here, "..", "..", "build"))
    for name in _LIB_NAMES:
        p = os.path.join(repo_build, name)
        if os.path.exists(p):
            out.append(("source tree", p))
    found = ctypes.util.find_library("moe")
    if found:
        out.append(("system", found))
    return out


def _searched_description():
    here = _package_dir()
    repo_build = os.path.normpath(os.path.join(here, "..", "..", "build"))
    return ("  1. the MOE_LIBRARY environment variable (unset)\n"
            "  2. %s/libmoe.so (copied there by pip install when the library "
            "was built)\n"
            "  3. %s/libmoe.so (a source-tree build)\n"
            "  4. the system loader (ctypes.util.find_library('moe'))"
            % (here, repo_build))


def _declare(lib):
    for name, (res, args) in _PROTOTYPES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError as e:
            raise LibraryNotFoundError(
                "%s does not export %s: not a libmoe of this version (%s)"
                % (_lib_path, name, e)) from None
        fn.restype = res
        fn.argtypes = args
    for name, (res, args) in _OPTIONAL_PROTOTYPES.items():
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype = res
            fn.argtypes = args


def load():
    """Returns the loaded library (a ctypes.CDLL), loading it on first use."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        cands = candidates()
        if not cands:
            raise LibraryNotFoundError(
                "libmoe was not found. Searched:\n" + _searched_description()
                + "\nBuild it (cmake -S . -B build && cmake --build build) "
                "and set MOE_LIBRARY=/path/to/libmoe.so, or reinstall the "
                "package after building.")
        errors = []
        for origin, path in cands:
            try:
                lib = ctypes.CDLL(path)
            except OSError as e:
                errors.append("  %s (%s): %s" % (path, origin, e))
                if origin == "MOE_LIBRARY":
                    break
                continue
            _lib_path = path
            _declare(lib)
            major = lib.moe_version_number() // 10000
            if major != ABI_MAJOR:
                raise LibraryNotFoundError(
                    "%s is libmoe %s; this binding needs major version %d"
                    % (path, lib.moe_version_string().decode(), ABI_MAJOR))
            _lib = lib
            return lib
        raise LibraryNotFoundError(
            "libmoe could not be loaded:\n" + "\n".join(errors))


def library_path():
    """Path of the loaded library (loads it if needed)."""
    load()
    return _lib_path


def cstr(b):
    """bytes from the library -> str ('' for NULL)."""
    if b is None:
        return ""
    return b.decode("utf-8", errors="replace")


def has_test_hooks():
    return getattr(load(), "moe_test_set_fault", None) is not None
