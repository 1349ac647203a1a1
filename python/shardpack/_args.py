"""Arguments as the C library takes them: paths as file-system bytes, timeouts as milliseconds."""

import math
import numbers
import os


def fs_path(path, what):
    """path (str, bytes or os.PathLike) as the bytes the C library opens.

    The encoding is os.fsencode's, so a name os.listdir returned with surrogate escapes (a name
    that is not valid UTF-8) becomes its original bytes again, and bytes pass through unchanged.
    what names the argument in errors ("Loader() path")."""
    try:
        p = os.fspath(path)
    except TypeError:
        raise TypeError("%s takes str, bytes or os.PathLike, not %s"
                        % (what, type(path).__name__)) from None
    b = os.fsencode(p)
    if b"\0" in b:
        raise ValueError("%s %r holds a NUL byte" % (what, p))
    return b


def timeout_ms(timeout, what):
    """A timeout in seconds as sp_loader_next's milliseconds: None (or infinity) waits without
    limit (-1), 0 does not wait; a negative, NaN or non-numeric timeout is refused."""
    if timeout is None:
        return -1
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError("%s: timeout takes seconds (a number >= 0) or None, not %s %r"
                        % (what, type(timeout).__name__, timeout))
    t = float(timeout)
    if not t >= 0:  # also NaN
        raise ValueError("%s: timeout %r is not valid: give seconds >= 0 (0: do not wait), "
                         "or None to wait without limit" % (what, timeout))
    if math.isinf(t):
        return -1
    return int(t * 1000)


def index_arg(value, what, hi):
    """value as an int in [0, hi] for a C integer argument, which ctypes would otherwise wrap or
    truncate (2**64 -> 0, -1 -> 2**64 - 1, 1.5 -> 1) or take from a string: any numbers.Integral
    but bool, else TypeError; out of range, ValueError. what names the argument ("set_epoch()
    epoch")."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError("%s takes an integer, not %s %r" % (what, type(value).__name__, value))
    v = int(value)
    if not 0 <= v <= hi:
        raise ValueError("%s %d is out of range: it takes 0 to %d" % (what, v, hi))
    return v


def meta_item(key, value, what):
    """A metadata entry as the bytes the library stores: key str (encoded as UTF-8; a key that
    Dataset.meta() decoded with surrogate escapes becomes its stored bytes again) or bytes (as
    they are), any other type a TypeError rather than its str() (b'k' is not the key "b'k'");
    value str (UTF-8) or bytes-like, a number a TypeError (bytes(5) would be five zero bytes).
    The library checks the key's text. what names the call ("set_meta()")."""
    if isinstance(key, str):
        k = key.encode("utf-8", "surrogateescape")
    elif isinstance(key, bytes):
        k = key
    else:
        raise TypeError("%s: a metadata key is str or bytes, not %s %r" % (what, type(key).__name__, key))
    if isinstance(value, str):
        return k, value.encode()
    if isinstance(value, numbers.Number):
        raise TypeError("%s: the value of metadata key %r is str or bytes, not %s %r (give str(%r) "
                        "for its text)" % (what, key, type(value).__name__, value, value))
    return k, bytes(value)
