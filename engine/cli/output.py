"""Printing results: a rich table for people, ``--json`` for scripts and auditors."""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table


def _width() -> int | None:
    """The terminal's width, or a wide page when output goes to a file or a pipe."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        return int(columns)
    return None if sys.stdout.isatty() else 200


def stdout() -> Console:
    """A console on stdout, sized for where the output goes (read at each call)."""
    return Console(soft_wrap=False, width=_width())


def stderr() -> Console:
    """A console on stderr; long lines are never folded (messages stay greppable)."""
    return Console(stderr=True, soft_wrap=True)


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def emit_json(data: Any) -> None:
    """Write ``data`` as indented JSON on stdout (dates as ISO 8601, UTC)."""
    sys.stdout.buffer.write(
        orjson.dumps(data, default=_default,
                     option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS)
    )
    sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    t = Table(title=title, title_justify="left")
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    stdout().print(t)
