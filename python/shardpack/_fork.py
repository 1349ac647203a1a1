"""After os.fork(): the Loaders and Writers the child inherited belong to the parent.

The library refuses every call on them in the child (ShardpackError SP_ESTATE, "loader opened in
process P, used in child C; open it after fork"): their threads, io_uring ring and staging
directory are the parent's. Here the child's copies are marked foreign, so that nothing Python
does on its own in the child (a finalizer, close(), a lease going back) calls into the library for
them, and their locks are replaced: a lock held by a parent thread at the fork would never be
released in the child.
"""

import os
import weakref

_live = weakref.WeakSet()


def track(obj):
    """obj (with a _forked() method) is marked foreign in every child forked while it lives."""
    _live.add(obj)


def _after_in_child():
    for obj in list(_live):
        obj._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_in_child)
