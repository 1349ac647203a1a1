#!/usr/bin/env python3
"""Checks every #include "..." under lib/ against the folder order the build enforces.

Usage: check_layering.py LIBDIR RULE... where each RULE is FOLDER=SEEN,SEEN (the folders FOLDER may
include besides itself and common/; lib/meson.build passes its lib_sees table, so the order is
written once). The compiler already refuses a header outside a folder's include path; this adds
what include paths cannot say:
  - a header named with a path ("load/ld.h", "../x.h") would bypass the folder's include path;
  - cuda/ may see only the two headers load/ owns for it (ld_device.h, ld_host.h);
  - every header a file names exists in exactly one folder it may see.
Exit 0 when clean, 1 with one line per violation (file:line: what is wrong)."""
import os
import re
import sys

EXTERNAL = {"shardpack.h", "sp_config.h"}  # the public header and the build's configuration
# Headers of a seen folder that only some folders may use: folder -> {seen folder: allowed headers}.
NARROW = {"cuda": {"load": {"ld_device.h", "ld_host.h"}}}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def main(argv):
    if len(argv) < 2:
        print("usage: check_layering.py LIBDIR FOLDER=SEEN,SEEN ...", file=sys.stderr)
        return 2
    libdir = argv[1]
    sees = {}
    for rule in argv[2:]:
        folder, _, seen = rule.partition("=")
        sees[folder] = [s for s in seen.split(",") if s]
    owner = {}  # header name -> folders holding one of that name
    for folder in sorted(os.listdir(libdir)):
        path = os.path.join(libdir, folder)
        if os.path.isdir(path):
            for name in os.listdir(path):
                if name.endswith(".h"):
                    owner.setdefault(name, []).append(folder)
    bad = []
    for folder in sorted(sees):
        path = os.path.join(libdir, folder)
        if not os.path.isdir(path):
            continue
        visible = [folder, "common"] + sees[folder]
        for name in sorted(os.listdir(path)):
            if not name.endswith((".c", ".h", ".cu")):
                continue
            src = os.path.join(path, name)
            with open(src, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    hdr = m.group(1)
                    where = f"lib/{folder}/{name}:{lineno}"
                    if hdr in EXTERNAL:
                        continue
                    if "/" in hdr:
                        bad.append(f"{where}: \"{hdr}\" names a path; include by name from a folder it may see")
                        continue
                    homes = [h for h in owner.get(hdr, []) if h in visible]
                    if not homes:
                        held = ", ".join(owner.get(hdr, [])) or "no folder"
                        bad.append(f"{where}: \"{hdr}\" is in {held}, which lib/{folder}/ may not include "
                                   f"(it sees {', '.join(visible)})")
                        continue
                    if len(homes) > 1:
                        bad.append(f"{where}: \"{hdr}\" exists in {', '.join(homes)}: ambiguous")
                        continue
                    narrow = NARROW.get(folder, {}).get(homes[0])
                    if narrow is not None and hdr not in narrow:
                        bad.append(f"{where}: lib/{folder}/ may include from lib/{homes[0]}/ only "
                                   f"{', '.join(sorted(narrow))}, not \"{hdr}\"")
    missing = [f for f in os.listdir(libdir) if os.path.isdir(os.path.join(libdir, f)) and f not in sees]
    for f in sorted(missing):
        bad.append(f"lib/{f}/: folder has no rule in lib/meson.build's lib_sees")
    for line in bad:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
