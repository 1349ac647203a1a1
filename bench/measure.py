#!/usr/bin/env python3
"""measure.py CMD... - runs CMD, then prints its wall time and the peak RSS of its process tree."""
import resource
import subprocess
import sys
import time

if len(sys.argv) < 2:
    sys.exit("usage: measure.py CMD...")
t0 = time.perf_counter()
rc = subprocess.call(sys.argv[1:])
wall = time.perf_counter() - t0
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print("measure: %.2f s wall, peak RSS %.1f MiB (%s)" % (wall, peak_kib / 1024, sys.argv[1].rsplit("/", 1)[-1]),
      file=sys.stderr)
sys.exit(rc)
