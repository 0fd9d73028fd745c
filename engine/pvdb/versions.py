"""Version schemes: each vendor numbers its versions its own way.

Comparison goes through maintained parsers (``univers``) per scheme, never through
string comparison:

========== ===========================================================================
scheme     meaning
========== ===========================================================================
semver     Semantic Versioning, coerced (``6.10`` reads as ``6.10.0``)
kernel     upstream Linux kernel releases (``6.6.39``, ``6.10-rc3``); a suffix is dropped
           and the leading part compared, so the matcher never hands it a distribution
           kernel's release (``6.1.0-18-amd64`` is upstream 6.1.76, not 6.1.0): those
           are read first by :mod:`engine.pvdb.kernels`
rpm        RPM ``epoch:version-release`` (Red Hat, AlmaLinux, SUSE…): a missing epoch is
           0, any epoch outranks the version, ``~`` sorts before and ``^`` after
deb        Debian ``epoch:upstream-revision`` (Debian, Ubuntu): a missing epoch is 0,
           ``~`` sorts before everything (``1.0~rc1`` < ``1.0``, ``-1~bpo11+1`` < ``-1``)
generic    dotted numbers (``1.2.3.4``) compared number by number; anything else as
           coerced semver
git, custom, unknown
           not comparable: a statement in these schemes is reported, never guessed
========== ===========================================================================

A range end may be a wildcard: ``6.6.*`` (inclusive) covers every ``6.6.x`` and ``*``
covers everything.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from univers.versions import DebianVersion, InvalidVersion, RpmVersion, SemverVersion

from engine.errors import VersionSchemeError

COMPARABLE = frozenset({"semver", "kernel", "rpm", "deb", "generic"})
"""Schemes whose versions can be ordered."""

_KERNEL = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:-rc(\d+))?")
_DOTTED = re.compile(r"^\d+(?:\.\d+)*$")


def is_comparable(scheme: str) -> bool:
    return scheme in COMPARABLE


@lru_cache(maxsize=262_144)
def parse(scheme: str, text: str) -> Any:
    """A comparable key for ``text`` in ``scheme``.

    Raises :class:`VersionSchemeError` when the scheme is not comparable or the text is
    not a version of that scheme.
    """
    text = text.strip()
    try:
        if scheme == "kernel":
            m = _KERNEL.match(text)
            if not m:
                raise InvalidVersion(text)
            major, minor, patch, rc = m.groups()
            core = f"{major}.{minor}.{patch or 0}"
            return SemverVersion(f"{core}-rc{rc}" if rc else core)
        if scheme == "semver":
            return SemverVersion(text)
        if scheme == "rpm":
            if not text or " " in text:
                raise InvalidVersion(text)
            return RpmVersion(text)
        if scheme == "deb":
            return DebianVersion(text)
        if scheme == "generic":
            if _DOTTED.match(text):
                return _Dotted(tuple(int(p) for p in text.split(".")))
            return _Dotted.from_semver(SemverVersion(text))
    except (InvalidVersion, ValueError, TypeError) as exc:
        raise VersionSchemeError(f"{text!r} is not a valid {scheme} version") from exc
    raise VersionSchemeError(f"versions in scheme {scheme!r} cannot be compared")


class _Dotted:
    """Dotted numbers compared number by number, shorter padded with zeros."""

    __slots__ = ("key",)

    def __init__(self, parts: tuple[int, ...], pre: tuple[Any, ...] = ()) -> None:
        width = 8
        padded = parts + (0,) * (width - len(parts)) if len(parts) < width else parts
        # A pre-release sorts before the release: (0, pre) < (1,)
        self.key: tuple[Any, ...] = (padded, (0, pre) if pre else (1,))

    @classmethod
    def from_semver(cls, v: SemverVersion) -> _Dotted:
        value = v.value
        pre = tuple(str(p) for p in value.prerelease) if value.prerelease else ()
        return cls((value.major, value.minor, value.patch), pre)

    def __lt__(self, other: _Dotted) -> bool:
        return self.key < other.key

    def __le__(self, other: _Dotted) -> bool:
        return self.key <= other.key

    def __gt__(self, other: _Dotted) -> bool:
        return self.key > other.key

    def __ge__(self, other: _Dotted) -> bool:
        return self.key >= other.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Dotted) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


KEYED = frozenset({"kernel", "semver", "generic"})
"""Schemes whose versions have a plain-tuple :func:`sort_key`."""

_RELEASE = (1,)
_LOWEST = (0,)


@lru_cache(maxsize=262_144)
def sort_key(scheme: str, text: str) -> tuple[Any, ...] | None:
    """A plain tuple that orders like :func:`parse` for ``kernel``, ``semver`` and
    ``generic`` versions (fast to compare), or None for other schemes and for versions
    that do not parse. A release sorts after its pre-releases."""
    if scheme not in KEYED:
        return None
    try:
        value = parse(scheme, text)
    except VersionSchemeError:
        return None
    if isinstance(value, _Dotted):
        return tuple(value.key)
    v = value.value
    pre = tuple((0, p) if isinstance(p, int) or str(p).isdigit() else (1, str(p))
                for p in (int(x) if str(x).isdigit() else x for x in v.prerelease))
    return (v.major, v.minor, v.patch, (0, *pre) if pre else _RELEASE)


@lru_cache(maxsize=65_536)
def wildcard_end_key(scheme: str, end: str) -> tuple[Any, ...] | None:
    """For ``X.Y.*`` in ``kernel``/``semver``/``generic``: the exclusive bound that
    equals "at most branch X.Y" (the lowest key of X.(Y+1)); None otherwise."""
    prefix = wildcard_prefix(end)
    if not prefix or scheme not in KEYED:
        return None
    try:
        numbers = [int(p) for p in prefix]
    except ValueError:
        return None
    numbers[-1] += 1
    if scheme == "generic":
        padded = tuple(numbers) + (0,) * (8 - len(numbers)) if len(numbers) < 8 else tuple(
            numbers)
        return (padded, _LOWEST)
    numbers += [0] * (3 - len(numbers))
    return (numbers[0], numbers[1], numbers[2], _LOWEST)


@lru_cache(maxsize=262_144)
def compare(scheme: str, a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is lower than, equal to or higher than ``b`` (cached: one
    advisory's fixed package closes many CVEs, so the same pairs come back, and a
    comparison of rpm versions costs ~10 µs)."""
    va, vb = parse(scheme, a), parse(scheme, b)
    return -1 if va < vb else (1 if va > vb else 0)


def wildcard_prefix(end: str) -> tuple[str, ...] | None:
    """For a wildcard range end (``6.6.*`` or ``*``), the fixed leading parts
    (``('6', '6')`` or ``()``); None when ``end`` is not a wildcard."""
    if end.strip() == "*":
        return ()
    if end.endswith(".*"):
        return tuple(end[:-2].split("."))
    return None


@lru_cache(maxsize=262_144)
def branch_of(scheme: str, text: str, depth: int) -> tuple[str, ...]:
    """The first ``depth`` dotted parts of a version (its branch), after the scheme's
    own normalisation (the kernel's distribution suffix is dropped)."""
    text = text.strip()
    if scheme == "kernel":
        m = _KERNEL.match(text)
        if m:
            text = ".".join(g for g in m.groups()[:3] if g is not None)
    parts = re.split(r"[.\-+~:]", text)
    return tuple(parts[:depth])


_EPOCH = re.compile(r"^(\d+):")
_DIST = re.compile(r"(?:^|[.+_-])(el\d+(?:_\d+)?|fc\d+|amzn\d+|module\+el[\d.]+)")


@lru_cache(maxsize=262_144)
def line_of(scheme: str, text: str) -> tuple[str, ...]:
    """The line (maintained branch) a version is on: a fix on the same line is a patch,
    one on another line an upgrade to that line.

    For ``rpm`` the epoch, the upstream ``major.minor`` and the distribution tag of the
    release (``el9_4``, ``module+el8.10.0``): ``5.14.0-427.31.1.el9_4`` is on the line of
    ``5.14.0-427.13.1.el9_4``, ``5.14.0-503.11.1.el9_5`` is not. Other schemes: the first
    two dotted parts (:func:`branch_of`)."""
    if scheme != "rpm":
        return branch_of(scheme, text, 2)
    text = text.strip()
    m = _EPOCH.match(text)
    epoch = m.group(1) if m else "0"
    body = text[m.end():] if m else text
    version, _, release = body.partition("-")
    dist = _DIST.search(release)
    return (epoch, *version.split(".")[:2], dist.group(1) if dist else "")


def in_range(
    scheme: str,
    version: str,
    *,
    start: str | None,
    start_inclusive: bool,
    end: str | None,
    end_inclusive: bool,
) -> bool:
    """Whether ``version`` lies within the bounds (None is unbounded).

    Raises :class:`VersionSchemeError` when a version cannot be read in the scheme.
    """
    v = parse(scheme, version)
    if start is not None and start not in ("0", "*", ""):
        s = parse(scheme, start)
        if v < s or (v == s and not start_inclusive):
            return False
    if end is not None:
        prefix = wildcard_prefix(end)
        if prefix is not None:
            if not prefix:
                return True
            return _branch_at_most(scheme, version, prefix)
        e = parse(scheme, end)
        if v > e or (v == e and not end_inclusive):
            return False
    return True


def _branch_at_most(scheme: str, version: str, prefix: tuple[str, ...]) -> bool:
    """``version`` <= ``prefix.*``: its leading parts are at most the prefix."""
    mine = branch_of(scheme, version, len(prefix))
    try:
        return tuple(int(p) for p in mine) <= tuple(int(p) for p in prefix)
    except ValueError:
        limit = ".".join(prefix)
        return bool(parse(scheme, ".".join(mine)) <= parse(scheme, limit))
