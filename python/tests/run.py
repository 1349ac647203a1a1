#!/usr/bin/env python3
"""Runs test modules under unittest for meson: exit 0 pass, 1 fail, 77 skipped (whole module
skipped, or every test in it skipped), so `meson test` reports SKIP rather than a silent pass.

    run.py MODULE                 the shardpack package of this source tree (meson test)
    run.py --installed MODULE...  the installed one (pip install .): this tree's package is not on
                                  the path and SHARDPACK_LIBRARY is ignored; "all" runs every module
"""

import glob
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def run(name):
    try:
        module = __import__(name)
    except unittest.SkipTest as e:
        print("SKIP %s: %s" % (name, e))
        return 77
    suite = unittest.defaultTestLoader.loadTestsFromModule(module)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    if not result.wasSuccessful():
        return 1
    if result.testsRun and len(result.skipped) == result.testsRun:
        return 77
    return 0


def main(args):
    sys.path.insert(0, HERE)
    if args[:1] != ["--installed"]:
        sys.path.insert(0, os.path.dirname(HERE))  # the shardpack package of this source tree
        return run(args[0])
    os.environ["SP_TEST_INSTALLED"] = "1"  # read by sp_testutil, and inherited by children
    os.environ.pop("SHARDPACK_LIBRARY", None)
    import shardpack
    pkg = os.path.dirname(os.path.abspath(shardpack.__file__))
    if pkg == os.path.join(os.path.dirname(HERE), "shardpack"):
        print("run.py --installed: shardpack was imported from the source tree (%s), not an "
              "installed package" % pkg)
        return 1
    print("shardpack %s from %s, library %s" % (shardpack.__version__, pkg, shardpack.library_path))
    names = args[1:]
    if names == ["all"]:
        names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(HERE, "test_*.py")))
    failed = [n for n in names if run(n) not in (0, 77)]
    if failed:
        print("FAILED: %s" % " ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
