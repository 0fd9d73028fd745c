"""The one error root of the engine.

Every error Vigil raises on purpose derives from :class:`VigilError`. Each carries a
one-sentence ``summary`` (what was wrong), an optional ``tip`` (what to do) and an
``exit_code`` that the CLI returns. The CLI catches :class:`VigilError` only; anything
else is a bug and shows a traceback.

Exit codes (documented in the README):

====  ============================================================
0     success
1     a finding the caller asked to fail on (reserved for checks)
2     usage error (bad option, argument or input document)
3     configuration error
4     input error: a feed, file, URL or document could not be read
5     database error (schema, migration, lock)
6     not found (an id or a file that does not exist)
====  ============================================================
"""

from __future__ import annotations

EXIT_CHECK = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_INPUT = 4
EXIT_DATABASE = 5
EXIT_NOT_FOUND = 6


class VigilError(Exception):
    """Root of every error the engine raises on purpose."""

    exit_code: int = EXIT_INPUT

    def __init__(self, summary: str, *, tip: str | None = None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.tip = tip

    def diagnostics(self) -> str:
        """The full human-readable diagnosis: the summary, then a tip if there is one."""
        if self.tip:
            return f"{self.summary}\nTip: {self.tip}"
        return self.summary


class ConfigError(VigilError):
    """The configuration file or a ``VIGIL_*`` variable is invalid."""

    exit_code = EXIT_CONFIG


class UsageError(VigilError):
    """A command was called with arguments that cannot work together."""

    exit_code = EXIT_USAGE


class NotFoundError(VigilError):
    """Something named by the caller does not exist."""

    exit_code = EXIT_NOT_FOUND


class DatabaseError(VigilError):
    """The PVDB could not be opened, migrated or written."""

    exit_code = EXIT_DATABASE


class FeedError(VigilError):
    """A feed source (file, folder or URL) could not be read as a whole."""

    exit_code = EXIT_INPUT


class RecordError(FeedError):
    """One record of a feed is malformed; the rest of the feed still loads.

    ``pointer`` is the JSON path (or CSV line) inside the record or file where the
    problem is.
    """

    def __init__(self, reason: str, *, pointer: str = "$") -> None:
        super().__init__(f"{pointer}: {reason}")
        self.reason = reason
        self.pointer = pointer


class VersionSchemeError(VigilError):
    """A version string cannot be read in the scheme it claims, or the scheme is unknown."""

    exit_code = EXIT_INPUT
