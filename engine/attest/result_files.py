"""The verifier's folder of hosts' attestation results, read back.

``vigil attest verify --out`` writes each host's latest result as ``<host id>.jwt`` into
the folder named by the ``attest_results`` setting. :func:`read_result_file` reads one
host's file and trusts it only once its signature verifies with the verifier's public
key: a missing file is no result (and no problem), anything else that is not a verified
result of a regular file says why.
"""

from __future__ import annotations

import errno
import os
import re
import stat as stat_kinds
from dataclasses import dataclass
from pathlib import Path

from engine.attest.result import AttestationResult, verify_result
from engine.attest.signing_keys import VerificationKey
from engine.errors import VigilError

HOST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
"""A host id that names a file in the folder (nothing else is looked up)."""

MAX_RESULT_BYTES = 16 * 1024 * 1024
"""A result (a compact JWT, a few KB) larger than this is refused unread."""

NO_KEY = ("no key to verify its attestation result (set "
          "VIGIL_ATTEST_RESULT_VERIFICATION_KEY)")


@dataclass(frozen=True)
class ResultFile:
    """One host's file: its verified result and the EAR it was read from, or why there is
    none (``problem`` is empty when there is simply no file)."""

    result: AttestationResult | None = None
    token: str | None = None
    problem: str = ""
    stamp: tuple[int, int] | None = None
    """(size, mtime in ns) of the file read: a cache keyed by it re-reads a changed file."""


def result_path(folder: Path, host_id: str) -> Path | None:
    """The file that holds ``host_id``'s result, or None for an id that names no file."""
    return folder / f"{host_id}.jwt" if HOST_ID.match(host_id) else None


def stat_result_file(folder: Path, host_id: str) -> tuple[tuple[int, int] | None, str]:
    """The (size, mtime) stamp of the host's file; (None, "") when there is none, (None,
    why) when the path is not a regular file (a FIFO, a symlink, a folder)."""
    path = result_path(folder, host_id)
    if path is None:
        return None, ""
    try:
        st = path.lstat()
    except OSError:
        return None, ""
    if not stat_kinds.S_ISREG(st.st_mode):
        return None, f"{path} is not a regular file"
    return (st.st_size, st.st_mtime_ns), ""


def read_result_file(folder: Path, host_id: str,
                     key: VerificationKey | None) -> ResultFile:
    """The host's result from the folder, verified with ``key``. The file is opened
    without following a symlink and without blocking, and checked to be a regular file
    on the open descriptor, so a file swapped for a FIFO after a check cannot hang the
    reader."""
    path = result_path(folder, host_id)
    if path is None:
        return ResultFile()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return ResultFile()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return ResultFile(problem=f"{path} is not a regular file")
        return ResultFile(problem=f"its attestation result cannot be read: {exc.strerror}")
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat_kinds.S_ISREG(st.st_mode):
            return ResultFile(problem=f"{path} is not a regular file")
        stamp = (st.st_size, st.st_mtime_ns)
        if key is None:
            return ResultFile(problem=NO_KEY, stamp=stamp)
        if st.st_size > MAX_RESULT_BYTES:
            return ResultFile(problem=f"its attestation result is {st.st_size} bytes, over"
                                      f" the {MAX_RESULT_BYTES} byte limit", stamp=stamp)
        try:
            token = fh.read(MAX_RESULT_BYTES + 1).strip()
            return ResultFile(verify_result(token, key), token.decode("ascii"), stamp=stamp)
        except (VigilError, OSError, UnicodeDecodeError) as exc:
            reason = exc.summary if isinstance(exc, VigilError) else str(exc)
            return ResultFile(problem=f"its attestation result does not verify: {reason}",
                              stamp=stamp)
