"""Options and helpers shared by the command groups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from engine.config import Settings, load_settings
from engine.errors import NotFoundError, UsageError

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
LogOption = Annotated[Path | None, typer.Option("--log", help="Decision log file "
                                                "(default: VIGIL_DECISION_LOG).")]
DbOption = Annotated[
    Path | None,
    typer.Option("--db", help="PVDB file (default: VIGIL_DB or the user data folder)."),
]


def settings(db: Path | None = None, **overrides: Any) -> Settings:
    """The configuration, with command-line overrides applied."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if db is not None:
        values["db"] = db
    return load_settings(**values)


def read_file(path: Path, what: str) -> bytes:
    """The bytes of a file the user named; a missing or unreadable one is a clear error
    naming ``what`` it should have been."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
