"""Real signatures for functions taking the library's parameters as **params.

The parameter set comes from the loaded library's table, so it is attached at import time as
__signature__ (what inspect.signature, help() and IDEs read): every parameter of the scope as a
keyword-only argument with the table's default. The functions themselves keep **params, so any
keyword the library accepts reaches it and an unknown one is refused with its message.
"""

import inspect

from ._params import PARAMS, _default

_TYPES = {"int": int, "size": "int | str", "bool": "bool | None", "enum": str,
          "float3": "tuple[float, float, float] | str", "device": "str"}


def with_params(func, scope, skip=(), defaults=None):
    """Sets func.__signature__: its own arguments, then the table's parameters of scope (those not
    already among them or in skip) as keyword-only arguments, then **params for the rest.
    defaults: {name: default} where func's own default differs from the table's."""
    defaults = defaults or {}
    sig = inspect.signature(func)
    own = [p for p in sig.parameters.values() if p.kind != p.VAR_KEYWORD]
    var = [p for p in sig.parameters.values() if p.kind == p.VAR_KEYWORD]
    names = {p.name for p in own} | set(skip)
    extra = [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(p.name, _default(p)),
                               annotation=_TYPES.get(p.type, inspect.Parameter.empty))
             for p in PARAMS.values() if p.scope & scope and p.name not in names]
    # Keyword-only arguments must follow the positional ones: keep func's order, the table's last.
    pos = [p for p in own if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    kw = [p for p in own if p.kind == p.KEYWORD_ONLY]
    func.__signature__ = sig.replace(parameters=pos + kw + extra + var)
    return func
