#!/bin/sh
# The install a user makes: `pip install .` from the repository root (meson-python builds the
# library and the CLI, the library goes inside the package) into a fresh virtual environment
# (--system-site-packages: Debian's torch, numpy and meson-python), then, from /, with no
# SHARDPACK_LIBRARY: `import shardpack` loads the library inside the installed package, the
# installed CLI runs, and the Python suite passes against the installed package. First,
# `meson install` of BUILD_DIR (into a scratch DESTDIR) must install the package too, with
# _install.py naming the directory the library went to.
# Usage: check_wheel.sh BUILD_DIR [MODULE...]   (BUILD_DIR: a build of this tree, for the test tools;
# modules default to all)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: check_wheel.sh BUILD_DIR [MODULE...]}" && pwd)
shift
[ $# -gt 0 ] || set -- all
work=$(mktemp -d /tmp/sp-wheel-XXXXXX)
trap 'rm -rf "$work"' EXIT
meson install -C "$build" --destdir "$work/dest" --quiet >/dev/null
inst=$(find "$work/dest" -name _install.py -path '*/shardpack/*')
[ -n "$inst" ] && [ -f "$(dirname "$inst")/loader.py" ] || { echo "meson install: no shardpack package"; exit 1; }
libdir=$(/usr/bin/python3 -c 'import runpy, sys; print(runpy.run_path(sys.argv[1])["LIBDIR"])' "$inst")
[ -e "$work/dest$libdir/libshardpack.so.2" ] || { echo "meson install: _install.py names $libdir, no library there"; exit 1; }
echo "meson install: package $(dirname "$inst"), library in $libdir"
/usr/bin/python3 -m venv --system-site-packages "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install --no-build-isolation --no-index --no-deps --quiet "$root"
cd /
unset SHARDPACK_LIBRARY PYTHONPATH
"$py" - <<'PY'
import os, sys
import shardpack
pkg = os.path.dirname(os.path.abspath(shardpack.__file__))
lib = os.path.dirname(os.path.abspath(shardpack.library_path))
assert pkg.startswith(sys.prefix), "shardpack imported from %s, outside the venv %s" % (pkg, sys.prefix)
assert lib == pkg, "library %s is not the one inside the package %s" % (shardpack.library_path, pkg)
assert os.path.isfile(os.path.join(pkg, "py.typed")), "no py.typed in %s" % pkg
print("import shardpack from /: %s, library %s" % (pkg, shardpack.library_path))
PY
"$work/venv/bin/shardpack" --version
SHARDPACK_CLI="$work/venv/bin/shardpack" SP_PACK_C="$build/tests/import/pack-c" \
SP_GEN_IMAGEFOLDER="$build/datasets/sp-gen-imagefolder" OMP_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1 \
    "$py" "$root/python/tests/run.py" --installed "$@"
