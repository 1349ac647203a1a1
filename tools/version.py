#!/usr/bin/env python3
"""Prints the version (or, with --abi, the ABI version) read from include/shardpack_version.h."""
import pathlib
import re
import sys

text = (pathlib.Path(__file__).resolve().parent.parent / "include" / "shardpack_version.h").read_text()


def field(name):
    match = re.search(r"#define\s+%s\s+(\d+)" % name, text)
    if not match:
        sys.exit("shardpack_version.h has no %s" % name)
    return match.group(1)


if "--abi" in sys.argv[1:]:
    print(field("SP_ABI_VERSION"))
else:
    print(".".join(field("SP_VERSION_" + part) for part in ("MAJOR", "MINOR", "PATCH")))
