"""Ordering versions of image components without knowing their vendor's scheme.

A version is read as runs of digits (compared as numbers) and runs of other characters
(compared as text, after any number: ``6.1.76`` < ``6.1.76+lp1`` < ``6.1.77``); a
leading ``v`` is dropped. Its *branch* (the PVDB's "line") is its first numbers, two
for a kernel (``6.1`` for ``6.1.76``); components with one line (firmware, microcode)
use depth 0. This is the order the patch graph
needs (which of two versions of the same component is newer, on which line); matching
versions against vulnerability ranges stays the PVDB's.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["branch", "version_key"]

_TOKEN = re.compile(r"\d+|[^\d.\-_~:]+")


@lru_cache(maxsize=65_536)
def version_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key: numbers before text at the same position, a longer version after its
    prefix (``6.1`` < ``6.1.0``) except a ``~`` suffix, which sorts before."""
    value = text.strip()
    if value[:1] in "vV" and value[1:2].isdigit():
        value = value[1:]
    head, tilde, _rest = value.partition("~")
    key: list[tuple[int, int | str]] = []
    for token in _TOKEN.findall(head):
        key.append((1, int(token)) if token.isdigit() else (2, token.lower()))
    key.append((0, 0) if tilde else (0, 1))  # the end: before any further number or text
    return tuple(key)


def branch(text: str, depth: int = 2) -> str:
    """The first ``depth`` numbers of the version, joined by dots (its line); with
    ``depth`` 0 every version is on the one line ``""``."""
    if depth <= 0:
        return ""
    numbers = re.findall(r"\d+", text.strip().lstrip("vV"))
    return ".".join(numbers[:depth])
