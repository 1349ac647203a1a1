"""Exceptions carrying the library's code, name and message."""

import re

from . import _lib
from ._lib import lib

_NAME_IN_TEXT = re.compile(r"\b(SP_[A-Z]+): ")


def _code_of(name):
    """The code of an error name ("SP_EIO" -> -3), or None for a name the library lacks."""
    for code in range(0, -256, -1):
        got = lib.sp_error_name(code)
        if got is not None and got.decode() == name:
            return code
    return None


class ShardpackError(RuntimeError):
    """A libshardpack call failed. code: the negative sp_error code; name: "SP_ECHECKSUM";
    message: the library's message, which names the file, block and sample involved.

    ShardpackError(code, message) as the bindings raise it, or ShardpackError(text) rebuilt
    from a text holding "SP_NAME: ..." (its last such name gives the code; what PyTorch's
    DataLoader does when it re-raises a worker's exception in the main process). It pickles
    with its code, name and message, so multiprocessing and DataLoader workers hand it on
    whole."""

    def __init__(self, code, message=""):
        if isinstance(code, str) and not message:
            text = code
            names = _NAME_IN_TEXT.findall(text)
            found = _code_of(names[-1]) if names else None
            code, message = found, text
        if code is None:  # a text naming no library error
            self.code, self.name, self.strerror = None, "SP_UNKNOWN", ""
            self.message = message
            super().__init__(message)
            return
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError("ShardpackError(code, message): code is an int error code or a text "
                            "holding 'SP_NAME: ...', not %s %r" % (type(code).__name__, code))
        self.code = code
        self.name = (lib.sp_error_name(code) or b"SP_UNKNOWN").decode()
        self.strerror = (lib.sp_strerror(code) or b"").decode()
        self.message = message or self.strerror
        super().__init__("%s: %s" % (self.name, self.message))

    def __reduce__(self):
        if self.code is None:
            return (type(self), (self.message,))
        return (type(self), (self.code, self.message))


class EndOfEpoch(Exception):
    """Internal: sp_loader_next reported SP_EEPOCH."""


def check(rc, errmsg=None):
    """Raises ShardpackError for a negative rc; errmsg: the handle's message, when it has one."""
    if rc < 0:
        raise error(rc, errmsg)
    return rc


def error(rc, errmsg=None):
    msg = _lib.last_error()
    if not msg and errmsg is not None:
        msg = (errmsg or b"").decode("utf-8", "replace")
    return ShardpackError(rc, msg)
