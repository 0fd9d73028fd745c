"""Replay: re-evaluate recorded decisions with their recorded input and bundle revision.

By default each decision is evaluated again with the bundle stored under its recorded
revision (in the decision log, or in an export: any :class:`BundleSource`); with
``policy`` given, every decision is evaluated with that policy instead (to see what a new
policy would have decided). Differences between the recorded and the replayed decision
are reported as divergences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.decide import bundle as _bundle
from engine.decide.decision_log import DecisionRecord
from engine.decide.errors import DecideError
from engine.decide.evaluators import Evaluator
from engine.decide.verdict import Decision, fail_closed


@dataclass(frozen=True)
class Replayed:
    decision_id: str
    recorded_revision: str | None
    replayed_revision: str | None
    recorded_verdict: str
    replayed_verdict: str | None
    differences: list[str] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        return bool(self.differences)


def _diff(recorded: dict[str, Any], replayed: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if recorded.get("verdict") != replayed.get("verdict"):
        out.append(f"verdict: recorded {recorded.get('verdict')}, replayed "
                   f"{replayed.get('verdict')}")
    for part in ("reasons", "warnings", "obligations"):
        if part == "obligations":
            def key(item: dict[str, Any]) -> str:
                return str(sorted(item.items()))
        else:
            def key(item: dict[str, Any]) -> str:
                return f"{item.get('rule')} {item.get('vulnerability') or ''}".strip()
        a = {key(i): i for i in recorded.get(part, [])}
        b = {key(i): i for i in replayed.get(part, [])}
        for k in sorted(a.keys() - b.keys()):
            out.append(f"{part}: {k} no longer produced")
        for k in sorted(b.keys() - a.keys()):
            out.append(f"{part}: {k} newly produced")
        for k in sorted(a.keys() & b.keys()):
            if a[k] != b[k]:
                out.append(f"{part}: {k} changed")
    return out


def _evaluator_name(record: DecisionRecord) -> str:
    """The in-process evaluator that replays ``record``: the one that decided it; for a
    decision an OPA server made, OPA's own engine in process where it is built, else the
    default."""
    from engine.decide.evaluators import EMBEDDED
    from engine.decide.evaluators.opa_engine import library_path

    if record.evaluator in EMBEDDED:
        return record.evaluator
    return "opa" if library_path().is_file() else EMBEDDED[0]


class BundleSource(Protocol):
    """Where recorded bundles are read by revision: the decision log, or an export."""

    def bundle(self, revision: str) -> bytes | None: ...


class Replayer:
    def __init__(self, log: BundleSource, policy: _bundle.PolicySet | None = None, *,
                 where: str = "the decision log") -> None:
        self.log = log
        self.where = where
        self.policy = policy
        self._evaluators: dict[str, Evaluator] = {}

    def _evaluator(self, record: DecisionRecord) -> Evaluator:
        from engine.decide.evaluators import embedded_evaluator

        name = _evaluator_name(record)
        if self.policy is not None:
            key = f"{name}:override:{self.policy.revision}"
            if key not in self._evaluators:
                self._evaluators[key] = embedded_evaluator(name, self.policy, timeout=None)
            return self._evaluators[key]
        revision = record.bundle_revision or ""
        key = f"{name}:{revision}"
        if key not in self._evaluators:
            archive = self.log.bundle(revision)
            if archive is None:
                raise DecideError(
                    f"decision {record.decision_id} (record {record.seq}): bundle revision "
                    f"{revision!r} is not in {self.where}",
                    tip="replay with --bundle or --policies to name it")
            policy = _bundle.read(f"decision-log:{revision}", archive)
            self._evaluators[key] = embedded_evaluator(name, policy, timeout=None)
        return self._evaluators[key]

    def replay(self, record: DecisionRecord) -> Replayed:
        evaluator = self._evaluator(record)
        try:
            evaluation = evaluator.evaluate(record.input, record.path)
            if evaluation.defined:
                try:
                    replayed = Decision.parse(evaluation.value)
                except ValueError as exc:
                    replayed = fail_closed("malformed_decision", str(exc))
            else:
                replayed = fail_closed("evaluation_undefined", "undefined")
        except DecideError as exc:
            replayed = fail_closed("evaluator_error", exc.summary)
        replayed_json = replayed.to_json()
        # compared in the normal form the engine gives every decision (defaults filled,
        # sets sorted): an OPA server logs the policy's raw value
        try:
            recorded = Decision.parse(record.result).to_json()
        except ValueError:
            recorded = record.result
        return Replayed(
            decision_id=record.decision_id,
            recorded_revision=record.bundle_revision,
            replayed_revision=evaluator.bundle_revision,
            recorded_verdict=str(record.result.get("verdict")),
            replayed_verdict=replayed.verdict,
            differences=_diff(recorded, replayed_json),
        )

    def close(self) -> None:
        for evaluator in self._evaluators.values():
            evaluator.close()
