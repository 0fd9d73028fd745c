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


# -- shared by ``vigil attest`` and ``vigil agent`` -------------------------------------------

OutOption = Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file "
                                                "instead of stdout.")]


def write(data: bytes | str, out: Path | None) -> None:
    """``data`` on stdout, or into the file ``out`` (with a final newline)."""
    raw = data.encode() if isinstance(data, str) else data
    if out is None:
        typer.echo(raw.decode().rstrip("\n"))
    else:
        out.write_bytes(raw if raw.endswith(b"\n") else raw + b"\n")


def pcr_list(value: str) -> list[int]:
    """``--pcrs``: ``0-9``, ``0,2,4,7`` or a mix."""
    pcrs: set[int] = set()
    try:
        for part in value.split(","):
            low, _, high = part.strip().partition("-")
            pcrs.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise UsageError(f"--pcrs {value}: use indexes and ranges such as 0-9 or 0,2,4,7"
                         ) from None
    if not pcrs or min(pcrs) < 0 or max(pcrs) > 23:
        raise UsageError(f"--pcrs {value}: PCR indexes run from 0 to 23")
    return sorted(pcrs)


def parse_model(model: Any, path: Path, what: str) -> Any:
    """Read ``path`` as the pydantic ``model``; an input error names what is wrong."""
    from pydantic import ValidationError

    from engine.attest import AttestError

    try:
        return model.model_validate_json(read_file(path, what))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '$'}: {err['msg']}"
                             for err in exc.errors()[:3])
        raise AttestError("input", f"{path} is not a valid {what}: {problems}") from None


def model_json(model: Any) -> str:
    """A pydantic model as indented JSON, fields by their aliases."""
    return str(model.model_dump_json(by_alias=True, indent=2))
