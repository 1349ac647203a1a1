"""Shared helpers of the Python tests: temporary datasets and optional modules."""

import ctypes
import os
import shutil
import tempfile
import unittest

import shardpack

SEQ = 33  # tokens per sample (T+1)

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))  # this source tree (tests, examples, headers)
# run.py --installed: the package under test is the installed one, not this tree's python/.
INSTALLED = os.environ.get("SP_TEST_INSTALLED") == "1"


def child_env(**extra):
    """os.environ for a Python child process that must import the shardpack under test: the
    source tree's package on PYTHONPATH unless the installed one is tested."""
    env = dict(os.environ, **extra)
    if not INSTALLED:
        env["PYTHONPATH"] = os.path.join(SOURCE_ROOT, "python")
    return env


def need(module, why=""):
    """Imports module or raises unittest.SkipTest with a reason."""
    try:
        return __import__(module)
    except ImportError as e:
        raise unittest.SkipTest("%s is not installed (%s)%s; on Debian: apt install python3-%s"
                                % (module, e, " " + why if why else "", module))


class TempDir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="sp-py-")

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


def token_value(i, j):
    return (i * 7919 + j * 31) % 50257


def make_tokens(path, n=600, seq=SEQ, **params):
    """A token dataset: sample i holds token_value(i, j); plus its label i."""
    params.setdefault("block_size", "4K")
    with shardpack.Writer(path, [("tokens", "tokens", "uint16", (seq,)), ("label", "label")],
                          **params) as w:
        for i in range(n):
            w.add(bytes(_u16([token_value(i, j) for j in range(seq)])), i)
    return path


def _u16(vals):
    a = (ctypes.c_uint16 * len(vals))(*vals)
    return memoryview(a).cast("B")


def tensor_bytes(t):
    """The bytes a shardpack Tensor points at (a copy), without NumPy."""
    return ctypes.string_at(t.data_ptr, t.nbytes)
