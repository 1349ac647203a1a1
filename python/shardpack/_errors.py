"""Exceptions carrying the library's code, name and message."""

from . import _lib
from ._lib import lib


class ShardpackError(RuntimeError):
    """A libshardpack call failed. code: the negative sp_error code; name: "SP_ECHECKSUM";
    message: the library's message, which names the file, block and sample involved."""

    def __init__(self, code, message=""):
        self.code = code
        self.name = (lib.sp_error_name(code) or b"SP_UNKNOWN").decode()
        self.strerror = (lib.sp_strerror(code) or b"").decode()
        self.message = message or self.strerror
        super().__init__("%s: %s" % (self.name, self.message))


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
