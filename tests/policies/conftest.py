"""Fixtures for the checks of the Rego policies: the OPA binary and the policy folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from engine.decide.bundle import SOURCE_POLICIES
from tests.tools import LOCAL_OPA, ROOT, opa_binary

POLICIES = SOURCE_POLICIES
__all__ = ["LOCAL_OPA", "POLICIES", "ROOT", "opa_binary", "run_opa"]


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
