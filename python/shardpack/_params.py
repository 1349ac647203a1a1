"""The library's parameter table, read from the loaded library (never copied by hand)."""

import collections
import ctypes
import os

from . import _lib
from ._errors import ShardpackError, check
from ._lib import lib

ParamInfo = collections.namedtuple(
    "ParamInfo", "key name type default min max choices doc scope")

_TYPE_NAMES = {_lib.SP_PTYPE_INT: "int", _lib.SP_PTYPE_SIZE: "size", _lib.SP_PTYPE_BOOL: "bool",
               _lib.SP_PTYPE_ENUM: "enum", _lib.SP_PTYPE_FLOAT3: "float3",
               _lib.SP_PTYPE_DEVICE: "device", _lib.SP_PTYPE_STRING: "str"}


def _read_table():
    table = collections.OrderedDict()
    for key in range(lib.sp_param_count()):
        info = _lib.sp_param_info()
        check(lib.sp_param_describe(key, ctypes.byref(info)))
        choices = tuple(info.choices.decode().split("|")) if info.choices else None
        default, lo, hi = info.default, info.min, info.max
        if info.type == _lib.SP_PTYPE_FLOAT3:
            # three numbers per colour channel: the default is written in choices, the bounds of
            # each number are in thousandths
            default = tuple(float(x) for x in info.choices.decode().split(","))
            choices, lo, hi = None, info.min / 1000, info.max / 1000
        elif info.type == _lib.SP_PTYPE_STRING:
            default, lo, hi = None, None, None
        p = ParamInfo(info.key, info.name.decode(), _TYPE_NAMES.get(info.type, str(info.type)),
                      default, lo, hi, choices, info.doc.decode(), info.scope)
        table[p.name] = p
    return table


PARAMS = _read_table()


def params():
    """Every parameter of the loaded library: name -> ParamInfo(key, name, type, default, min,
    max, choices, doc, scope)."""
    return dict(PARAMS)


def bounds(p):
    """A human description of what p accepts."""
    if p.type == "enum":
        return "one of " + ", ".join(repr(c) for c in p.choices)
    if p.type == "bool":
        return "True, False" + (" or None (auto)" if p.min == -1 else "")
    if p.type == "float3":
        return "three numbers in [%g, %g], one per colour channel" % (p.min, p.max)
    if p.type == "str":
        return "a string or path (None or '': unset)"
    if p.type == "device":
        return "'auto', 'cpu', 'cuda' or 'cuda:N' (N in [0, %d]), or a torch.device" % p.max
    return "an integer in [%d, %d]" % (p.min, p.max) + (
        " (bytes; strings take K, M, G, T suffixes)" if p.type == "size" else "")


def _as_string(p, value):
    """The string sp_params_set_str parses for value, or TypeError naming p."""
    if p.type == "bool":
        if value is None and p.min == -1:
            return "auto"
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return "1" if value else "0"
        if isinstance(value, str):
            return value
    elif p.type == "float3":
        if isinstance(value, str):
            return value
        try:
            vals = [float(v) for v in value]
        except (TypeError, ValueError):
            vals = None
        if vals is not None and len(vals) == 3:
            return ",".join(repr(v) for v in vals)
        if vals is not None:
            raise ValueError("parameter %r: %d numbers given; it takes %s" % (p.name, len(vals), bounds(p)))
    elif p.type == "device":
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return "auto" if value == _lib.SP_DEVICE_AUTO else "cpu" if value == _lib.SP_DEVICE_CPU \
                else "cuda:%d" % value
        if hasattr(value, "type") and hasattr(value, "index"):  # torch.device
            if value.type == "cuda":
                return "cuda" if value.index is None else "cuda:%d" % value.index
            return str(value.type)
    elif p.type == "str":
        if value is None:
            return ""
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
    elif p.type == "enum":
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 <= value < len(p.choices):
                return p.choices[value]
            raise ValueError("parameter %r: %d is out of range; it takes %s"
                             % (p.name, value, bounds(p)))
    else:
        if isinstance(value, bool):
            pass
        elif isinstance(value, int):
            return str(value)
        elif isinstance(value, float) and value.is_integer():
            return str(int(value))
        elif isinstance(value, str):
            return value
        elif hasattr(value, "__index__"):  # NumPy integers
            return str(value.__index__())
    raise TypeError("parameter %r takes %s, not %s %r"
                    % (p.name, bounds(p), type(value).__name__, value))


class Params:
    """An sp_params set built from keyword arguments; scope is the SP_SCOPE_* bits a user reads."""

    def __init__(self, kwargs, scope, what):
        self._ptr = lib.sp_params_create()
        if not self._ptr:
            raise MemoryError("sp_params_create")
        for name, value in kwargs.items():
            self.set(name, value, scope, what)

    def set(self, name, value, scope, what):
        p = PARAMS.get(name) or PARAMS.get(name.replace("-", "_"))
        if p is None:
            known = ", ".join(n for n, q in PARAMS.items() if q.scope & scope)
            raise TypeError("%s got an unexpected keyword argument %r; it takes: %s"
                            % (what, name, known))
        if not p.scope & scope:
            raise TypeError("%s does not take %r (a parameter of %s only)"
                            % (what, name, _scope_names(p.scope)))
        s = _as_string(p, value)
        rc = lib.sp_params_set_str(self._ptr, p.name.encode(), s.encode())
        if rc:
            msg = _lib.last_error()
            if p.name not in msg:
                msg = "parameter %r: %s" % (p.name, msg or "bad value %r" % (value,))
            raise ValueError("%s (it takes %s)" % (msg, bounds(p)))

    def get(self, name):
        p = PARAMS[name]
        if p.type == "float3":
            out = (ctypes.c_double * 3)()
            check(lib.sp_params_get_float3(self._ptr, p.key, out))
            return tuple(out)
        if p.type == "str":
            return lib.sp_params_get_str(self._ptr, p.key).decode()
        return lib.sp_params_get(self._ptr, p.key)

    @property
    def ptr(self):
        return self._ptr

    def __del__(self):
        if self._ptr:
            lib.sp_params_destroy(self._ptr)
            self._ptr = None


def _scope_names(scope):
    names = [n for bit, n in ((_lib.SP_SCOPE_WRITE, "the writer"), (_lib.SP_SCOPE_READ, "the reader"),
                              (_lib.SP_SCOPE_LOAD, "the loader"), (_lib.SP_SCOPE_IMPORT, "the import"))
             if scope & bit]
    return " and ".join(names)


def doc_table(scope, defaults=None):
    """Lines describing every parameter read under scope (for docstrings). defaults: {name:
    default} where the documented function's default differs from the table's (as with_params)."""
    defaults = defaults or {}
    lines = []
    for p in PARAMS.values():
        if p.scope & scope:
            lines.append("    %s (%s, default %r; %s): %s" % (p.name, p.type,
                                                             defaults.get(p.name, _default(p)),
                                                             bounds(p), p.doc))
    return "\n".join(lines)


def _default(p):
    if p.type == "str":
        return None
    if p.type == "device":
        return {_lib.SP_DEVICE_AUTO: "auto", _lib.SP_DEVICE_CPU: "cpu"}.get(p.default, "cuda:%d" % p.default)
    if p.type == "enum":
        return p.choices[p.default]
    if p.type == "bool":
        return None if p.default == -1 else bool(p.default)
    return p.default


__all__ = ["ParamInfo", "params", "Params", "ShardpackError"]
