"""Fixtures for the audit tests: audit keys, a small signed decision log, its export."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from engine.decide import Decider, DecisionLog, load_directory
from engine.decide.evaluators.regopy_engine import EmbeddedEvaluator
from engine.keys import load_signing_key
from tests.decide.conftest import (
    POLICIES,
    VULN_IN_WINDOW,
    _write_key,
    document,
    ec_keys,  # noqa: F401  (the verifier's key pair)
)
from tests.tools import HANG_GUARD

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="session")
def audit_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(private, public) of the log's checkpoint key."""
    return _write_key(tmp_path_factory.mktemp("keys") / "audit",
                      ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="session")
def rotated_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A second key pair: the key the first was rotated to, or a stranger's."""
    return _write_key(tmp_path_factory.mktemp("keys") / "rotated",
                      ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="module")
def evaluator() -> EmbeddedEvaluator:
    return EmbeddedEvaluator(load_directory(POLICIES, ["vigil"]), timeout=HANG_GUARD)


def ticking(start: dt.datetime = START, step: dt.timedelta = dt.timedelta(hours=1)
            ) -> Callable[[], dt.datetime]:
    """A clock that moves ``step`` at every reading."""
    state = [start]

    def now() -> dt.datetime:
        state[0] += step
        return state[0]

    return now


def decide_n(path: Path, evaluator: EmbeddedEvaluator, count: int, *,
             key: Path | None, every: int = 3) -> list[str]:
    """``count`` decisions (admits and delays in turn) into the log at ``path``."""
    signing = load_signing_key(key) if key is not None else None
    with DecisionLog(path, signing_key=signing, checkpoint_every=every) as log:
        decider = Decider(evaluator, log, clock=ticking())
        ids = []
        for i in range(count):
            doc = document(vulnerabilities=[VULN_IN_WINDOW]) if i % 2 else document()
            ids.append(decider.decide(doc).decision_id)
        return ids


def tamper(path: Path, *statements: str) -> None:
    """Run SQL on a closed decision log file, as someone editing it by hand would."""
    con = duckdb.connect(str(path))
    for statement in statements:
        con.execute(statement)
    con.close()
