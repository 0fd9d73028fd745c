"""Fixtures for the checks of the Rego policies: the OPA binary and the policy folder."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from engine.decide.bundle import SOURCE_POLICIES

ROOT = Path(__file__).resolve().parents[2]
POLICIES = SOURCE_POLICIES
LOCAL_OPA = ROOT / ".tools" / "bin" / "opa"
"""Where ``scripts/setup.sh`` builds the pinned OPA."""


def opa_binary() -> Path | None:
    """The project's OPA (``.tools/bin/opa``), else ``opa`` on PATH, else None."""
    if LOCAL_OPA.is_file():
        return LOCAL_OPA
    found = shutil.which("opa")
    return Path(found) if found else None


@pytest.fixture(scope="session")
def opa() -> Path:
    """The OPA binary; the test fails (it does not skip) when there is none."""
    binary = opa_binary()
    if binary is None:
        pytest.fail(f"no OPA binary at {LOCAL_OPA} nor `opa` on PATH: run scripts/setup.sh "
                    "(it builds the pinned OPA into .tools/bin)", pytrace=False)
    return binary


def run_opa(opa: Path, *args: str | Path, cwd: Path = POLICIES) -> subprocess.CompletedProcess[str]:
    """``opa ARGS`` in ``cwd`` (paths in its output stay relative to the policy folder)."""
    return subprocess.run([str(opa), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)
