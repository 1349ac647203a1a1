"""Every ctypes Structure in the shardpack package against the library's own layout (sp_struct_*)."""

import ast
import ctypes
import importlib
import os
import re
import unittest

import shardpack
from shardpack import _lib
from sp_testutil import SOURCE_ROOT

L = _lib.lib
PKG = os.path.dirname(os.path.abspath(shardpack.__file__))
HEADER = os.path.join(SOURCE_ROOT, "include", "shardpack.h")


def c_layout(name):
    """(size, min_size, [(member, offset, size)]) as the library was built, or None."""
    size, min_size, n = ctypes.c_size_t(), ctypes.c_size_t(), ctypes.c_size_t()
    if L.sp_struct_layout(name.encode(), ctypes.byref(size), ctypes.byref(min_size), ctypes.byref(n)) != 0:
        return None
    members = []
    for i in range(n.value):
        fname, off, fsize = ctypes.c_char_p(), ctypes.c_size_t(), ctypes.c_size_t()
        rc = L.sp_struct_field(name.encode(), i, ctypes.byref(fname), ctypes.byref(off), ctypes.byref(fsize))
        assert rc == 0, _lib.last_error()
        members.append((fname.value.decode(), off.value, fsize.value))
    return size.value, min_size.value, members


def c_struct_names():
    names, i = [], 0
    while True:
        n = L.sp_struct_name(i)
        if n is None:
            return names
        names.append(n.decode())
        i += 1


def structure_classes():
    """{class name: (module file, class)} of every ctypes Structure defined in the package's modules,
    found in the source (so a module whose import needs an optional dependency is not missed)."""
    found = {}
    for fname in sorted(os.listdir(PKG)):
        if not fname.endswith(".py"):
            continue
        tree = ast.parse(open(os.path.join(PKG, fname)).read())
        classes = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
        if not classes:
            continue
        try:
            mod = importlib.import_module("shardpack." + fname[:-3])
        except ImportError as e:
            # Only acceptable when the module mirrors no struct: say which classes went unchecked.
            found[fname] = (fname, ImportError("%s: %s (classes %s unchecked)" % (fname, e, classes)))
            continue
        for cname in classes:
            cls = getattr(mod, cname, None)
            if isinstance(cls, type) and issubclass(cls, (ctypes.Structure, ctypes.Union)):
                found[cname] = (fname, cls)
    return found


def header_structs():
    """{name: [member names]} of every `typedef struct NAME { ... } NAME;` in shardpack.h."""
    text = re.sub(r"/\*.*?\*/", "", open(HEADER).read(), flags=re.S)
    out = {}
    for m in re.finditer(r"typedef struct (\w+) \{(.*?)\} (\w+);", text, flags=re.S):
        members = []
        for decl in m.group(2).split(";"):
            decl = decl.strip()
            if not decl:
                continue
            # "uint64_t a, b[3]" or "const char *name": the identifiers after the type
            decl = re.sub(r"\[[^\]]*\]", "", decl)
            parts = decl.split(",")
            first = re.findall(r"\w+", parts[0])[-1]
            members.append(first)
            members += [re.findall(r"\w+", p)[-1] for p in parts[1:]]
        out[m.group(3)] = members
    return out


class Layout(unittest.TestCase):
    def test_every_mirror_matches_the_library(self):
        classes = structure_classes()
        self.assertIn("sp_loader_stats", classes)
        checked = 0
        for cname, (fname, cls) in sorted(classes.items()):
            with self.subTest(struct=cname):
                self.assertNotIsInstance(cls, ImportError, str(cls))
                if "_fields_" not in cls.__dict__:
                    continue  # an abstract base such as _Sized
                lay = c_layout(cname)
                self.assertIsNotNone(lay, "%s (%s) mirrors a struct the library does not describe: %s"
                                     % (cname, fname, _lib.last_error()))
                size, min_size, members = lay
                self.assertEqual(ctypes.sizeof(cls), size, "%s: sizeof" % cname)
                renamed = getattr(cls, "_c_names_", {})
                py = [(renamed.get(n, n), getattr(cls, n).offset, getattr(cls, n).size)
                      for n, *_ in cls._fields_]
                self.assertEqual([m[0] for m in py], [m[0] for m in members], "%s: members" % cname)
                for (n, off, sz), (_, coff, csz) in zip(py, members):
                    self.assertEqual((off, sz), (coff, csz), "%s.%s: (offset, size)" % (cname, n))
                if min_size:
                    # A sized struct: struct_size first, and new instances set it.
                    self.assertEqual(members[0][0], "struct_size")
                    self.assertEqual(cls().struct_size, size, "%s() does not set struct_size" % cname)
                checked += 1
        self.assertGreaterEqual(checked, 10)

    def test_library_table_matches_the_header(self):
        if not os.path.isfile(HEADER):
            self.skipTest("no source tree: %s is missing" % HEADER)
        header = header_structs()
        described = c_struct_names()
        self.assertEqual(sorted(n for n in described if n.startswith("sp_")), sorted(header),
                         "the library describes other structs than shardpack.h declares")
        for name, members in header.items():
            with self.subTest(struct=name):
                size, min_size, cm = c_layout(name)
                self.assertEqual([m[0] for m in cm], members)
                # Members tile the struct in order, without overlap.
                for (_, o1, s1), (_, o2, _) in zip(cm, cm[1:]):
                    self.assertLessEqual(o1 + s1, o2)
                self.assertLessEqual(cm[-1][1] + cm[-1][2], size)
                if name == "sp_value":
                    self.assertEqual(min_size, 0)  # fixed for good, no struct_size
                else:
                    self.assertEqual(cm[0][0], "struct_size")
                    self.assertTrue(cm[-1][1] + cm[-1][2] >= min_size > cm[0][2])

    def test_unknown_names_are_refused_with_a_message(self):
        self.assertNotEqual(L.sp_struct_layout(b"sp_no_such", None, None, None), 0)
        self.assertIn("sp_no_such", _lib.last_error())
        self.assertNotEqual(L.sp_struct_field(b"sp_value", 2, None, None, None), 0)
        self.assertIn("sp_value", _lib.last_error())
        self.assertIsNone(L.sp_struct_name(len(c_struct_names())))
        self.assertIn("sp_struct_name", _lib.last_error())


if __name__ == "__main__":
    unittest.main()
