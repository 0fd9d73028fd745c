"""Run the ``vigil`` command in-process, as its console script does."""

from __future__ import annotations

import sys

import pytest

from engine.cli.main import run


def vigil(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
          ) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``vigil ARGS``."""
    monkeypatch.setattr(sys, "argv", ["vigil", *args])
    try:
        run()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
