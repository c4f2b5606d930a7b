"""Exceptions: one class per moe_status, all subclasses of MoeError."""

from . import _lib


class MoeError(Exception):
    """A libmoe call failed.

    Attributes:
        status: the moe_status integer (pinned values, see moe.h).
        status_name: its name, e.g. "MOE_ERR_UNSUPPORTED".
        message: the library's detailed message (moe_last_error).
    """

    status = None
    status_name = None

    def __init__(self, message, status=None, function=None):
        if status is not None:
            self.status = status
        self.message = message
        self.function = function
        if self.status is not None:
            self.status_name = _status_name(self.status)
        text = message or "(no message)"
        if function:
            text = "%s: %s" % (function, text)
        if self.status_name:
            text = "%s [%s]" % (text, self.status_name)
        super().__init__(text)


class InvalidArgumentError(MoeError, ValueError):
    """MOE_ERR_INVALID_ARGUMENT: a NULL, a size or an enum out of range."""
    status = 1


class UnsupportedError(MoeError):
    """MOE_ERR_UNSUPPORTED: no backend (or not the one asked) can serve."""
    status = 2


class OutOfMemoryError(MoeError, MemoryError):
    """MOE_ERR_OUT_OF_MEMORY: a host or device allocation failed."""
    status = 3


class DeviceError(MoeError):
    """MOE_ERR_DEVICE: a CUDA runtime call failed."""
    status = 4


class NoKernelImageError(MoeError):
    """MOE_ERR_NO_KERNEL_IMAGE: the binary has no kernel for this GPU."""
    status = 5


class SelfCheckError(MoeError):
    """MOE_ERR_SELF_CHECK: a backend disagreed with the reference."""
    status = 6


class MoeIOError(MoeError, OSError):
    """MOE_ERR_IO: a file could not be opened or read."""
    status = 7


class FormatError(MoeError):
    """MOE_ERR_FORMAT: a file's contents are malformed."""
    status = 8


class InternalError(MoeError):
    """MOE_ERR_INTERNAL: a bug in the library."""
    status = 9


_BY_STATUS = {c.status: c for c in (
    InvalidArgumentError, UnsupportedError, OutOfMemoryError, DeviceError,
    NoKernelImageError, SelfCheckError, MoeIOError, FormatError,
    InternalError)}

_FALLBACK_NAMES = {
    1: "MOE_ERR_INVALID_ARGUMENT", 2: "MOE_ERR_UNSUPPORTED",
    3: "MOE_ERR_OUT_OF_MEMORY", 4: "MOE_ERR_DEVICE",
    5: "MOE_ERR_NO_KERNEL_IMAGE", 6: "MOE_ERR_SELF_CHECK", 7: "MOE_ERR_IO",
    8: "MOE_ERR_FORMAT", 9: "MOE_ERR_INTERNAL",
}


def _status_name(status):
    try:
        name = _lib.cstr(_lib.load().moe_status_string(int(status)))
        if name:
            return name
    except Exception:  # the name is a courtesy; never mask the real error
        pass
    return _FALLBACK_NAMES.get(status, "MOE_STATUS_%d" % status)


def error_for(status, message, function=None):
    """The exception object for a failed status."""
    cls = _BY_STATUS.get(int(status))
    if cls is None:
        err = MoeError(message, status=int(status), function=function)
    else:
        err = cls(message, function=function)
    return err
