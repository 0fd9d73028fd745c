"""The C++ runtime loaded before rego-cpp's library.

regopy's ``librego_shared.so`` defines and exports its own ``operator new`` / ``delete``
and copies of libstdc++ internals. When it is the first C++ library a process loads, the
dynamic linker relocates libstdc++ inside librego's lookup scope, so libstdc++'s own
allocations go through librego's ``operator new`` while every later C++ extension (DuckDB)
frees through libstdc++'s: a DuckDB ``regexp_*`` after ``import regopy`` ended the
process with "double free or corruption". Loading libstdc++ first, on its own, makes its
relocations bind to itself; this is what importing DuckDB first did by chance. The
evaluators package does it when it is imported, before any module of it imports regopy.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util

_loaded: list[ctypes.CDLL] = []


def load_cxx_runtime() -> None:
    """Load (once) the system libstdc++ into the global scope; a machine without one
    (no C++ extension can run there either) is left as it is."""
    if _loaded:
        return
    name = ctypes.util.find_library("stdc++") or "libstdc++.so.6"
    with contextlib.suppress(OSError):
        _loaded.append(ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL))
