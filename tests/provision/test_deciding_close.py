"""Closing the PVDB and policy waits for the decisions being decided (bounded), refuses
new ones, and writes the queued log records before the log is closed."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.config import load_settings
from engine.decide import PatchedConfiguration, RequestFacts, VmShape
from engine.provision import deciding as deciding_module
from engine.provision.deciding import Deciding, NotReady

WAIT = 30.0  # a bound for a hung test, never a timing the test relies on
NOW = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)


class _Closable:
    def __init__(self, name: str, order: list[str]) -> None:
        self.name, self.order = name, order

    def close(self) -> None:
        self.order.append(f"{self.name} closed")

    def stop_logging(self) -> None:
        self.order.append(f"{self.name} stopped logging")


def _deciding(tmp_path: Path, order: list[str]) -> Deciding:
    d = Deciding(load_settings(db=tmp_path / "none.duckdb",
                               decision_log=tmp_path / "d.duckdb"))
    d._pvdb = _Closable("pvdb", order)  # type: ignore[assignment]
    d._decider = _Closable("decider", order)  # type: ignore[assignment]
    d._quiet = _Closable("evaluator", order)  # type: ignore[assignment]
    d._log = _Closable("log", order)  # type: ignore[assignment]
    d.estimator = lambda now: None  # type: ignore[assignment, method-assign, return-value]
    return d


def _ask(d: Deciding) -> Any:
    return d.decide(RequestFacts(tenant="acme", vm=VmShape(name="vm", vcpus=1,
                                                           memory_mib=1)), None,
                    host_id="hv-1", patched=PatchedConfiguration(state="none"), now=NOW)


def test_close_waits_for_the_decision_being_decided(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    entered, release = threading.Event(), threading.Event()

    def slow(*args: Any, **kwargs: Any) -> str:
        entered.set()
        assert release.wait(WAIT)
        order.append("decided")
        return "placement"

    monkeypatch.setattr(deciding_module, "decide_placement", slow)
    d = _deciding(tmp_path, order)
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(_ask(d)))
    reader.start()
    assert entered.wait(WAIT)
    closer = threading.Thread(target=d.close)
    closer.start()
    while not d._closing and closer.is_alive():
        closer.join(0.001)
    assert d._closing and closer.is_alive()
    with pytest.raises(NotReady):  # no new decision while closing
        _ask(d)
    assert order == []  # nothing closed under the decision
    release.set()
    reader.join(WAIT)
    closer.join(WAIT)
    assert got == ["placement"]
    assert order == ["decided", "decider stopped logging", "evaluator closed", "log closed",
                     "pvdb closed"]


def test_close_is_bounded_by_its_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                      ) -> None:
    order: list[str] = []
    entered, release = threading.Event(), threading.Event()

    def stuck(*args: Any, **kwargs: Any) -> str:
        entered.set()
        release.wait(WAIT)
        return "placement"

    monkeypatch.setattr(deciding_module, "decide_placement", stuck)
    d = _deciding(tmp_path, order)
    reader = threading.Thread(target=lambda: _ask(d))
    reader.start()
    try:
        assert entered.wait(WAIT)
        d.close(wait=0.01)  # returns although the decision goes on
        assert "pvdb closed" in order
    finally:
        release.set()
        reader.join(WAIT)
