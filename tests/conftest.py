"""Shared fixtures: the real public data in ../shared/data (skipped when absent) and a
fresh PVDB file per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.decide.evaluators._cxx_runtime import load_cxx_runtime

# as engine.decide.evaluators.regopy_engine does: a test module that imports regopy itself
# must not make it the process's first C++ library (DuckDB would then crash)
load_cxx_runtime()

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("VIGIL_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip with a reason where it is absent."""
    if not (SHARED_DATA / "feeds").is_dir():
        pytest.skip(f"real public data not found at {SHARED_DATA} (set VIGIL_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def feeds_dir(shared_data: Path) -> Path:
    return shared_data / "feeds"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "pvdb.duckdb"
