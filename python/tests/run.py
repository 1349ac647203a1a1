#!/usr/bin/env python3
"""Runs one test module under unittest for meson: exit 0 pass, 1 fail, 77 skipped (whole module
skipped, or every test in it skipped), so `meson test` reports SKIP rather than a silent pass."""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # the shardpack package of this source tree


def main():
    name = sys.argv[1]
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


if __name__ == "__main__":
    sys.exit(main())
