"""Replay: re-evaluate recorded decisions with their recorded input and bundle revision.

A decision of input schema version 2 is replayed whole: its host posture (the record its
input names in ``posture.decision_id``) is judged again on the recorded posture document,
the request's decision document is decided on that posture's counts and facts, and the
two are composed; the recorded decision is composed from the two records the same way. A
posture record alone is replayed as its posture (findings per kind, obligations, facts).
A version 1 record is evaluated as it was: one document, one evaluation.

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
from engine.decide.decider import compose, posture_json, posture_of
from engine.decide.decision_log import DecisionRecord
from engine.decide.errors import DecideError
from engine.decide.evaluators import POSTURE_PATH, Evaluator
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
    parts: tuple[str, ...] = ("reasons", "warnings", "obligations")
    if "verdict" not in recorded and "verdict" not in replayed:  # a posture
        out.clear()
        parts = ("deny", "patch", "delay", "warn", "obligations")
        if recorded.get("facts") != replayed.get("facts"):
            out.append("facts changed")
    for part in parts:
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
    """Where recorded bundles are read by revision, and host posture records by decision
    id: the decision log, or an export."""

    def bundle(self, revision: str) -> bytes | None: ...

    def get(self, decision_id: str) -> DecisionRecord | None: ...


class Replayer:
    def __init__(self, log: BundleSource, policy: _bundle.PolicySet | None = None, *,
                 where: str = "the decision log") -> None:
        self.log = log
        self.where = where
        self.policy = policy
        self._evaluators: dict[str, Evaluator] = {}
        self._postures: dict[str, Any] = {}

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

    def _posture(self, record: DecisionRecord, decision_id: str
                 ) -> tuple[Any, Any, str | None]:
        """(recorded posture, replayed posture or None, why not) of a posture record."""
        key = f"{record.bundle_revision}:{decision_id}"
        if key in self._postures:
            known: tuple[Any, Any, str | None] = self._postures[key]
            return known
        source = self.log.get(decision_id)
        if source is None or source.path != POSTURE_PATH:
            raise DecideError(f"decision {record.decision_id}: its posture {decision_id} is "
                              f"not in {self.where}")
        digest = str(record.input.get("posture", {}).get("digest", ""))
        recorded = posture_of(source.result, digest=digest, decision_id=decision_id)
        replayed, why = None, None
        try:
            evaluation = self._evaluator(source).evaluate(source.input, POSTURE_PATH)
            if evaluation.defined:
                replayed = posture_of(evaluation.value, digest=digest,
                                      decision_id=decision_id)
            else:
                why = "the posture is undefined"
        except (DecideError, ValueError) as exc:
            why = exc.summary if isinstance(exc, DecideError) else f"malformed posture: {exc}"
        self._postures[key] = (recorded, replayed, why)
        return recorded, replayed, why

    def _replay_staged(self, record: DecisionRecord, decision_id: str) -> Replayed:
        recorded_posture, posture, why = self._posture(record, decision_id)
        evaluator = self._evaluator(record)
        if posture is None:
            replayed = fail_closed("evaluator_error", why or "no posture")
        else:
            document = {**record.input, "posture": posture.summary()}
            try:
                evaluation = evaluator.evaluate(document, record.path)
                if evaluation.defined:
                    try:
                        replayed = compose(Decision.parse(evaluation.value), posture)
                    except ValueError as exc:
                        replayed = fail_closed("malformed_decision", str(exc))
                else:
                    replayed = fail_closed("evaluation_undefined", "undefined")
            except DecideError as exc:
                replayed = fail_closed("evaluator_error", exc.summary)
        try:
            stage = Decision.parse(record.result)
            recorded = (stage if record.error else compose(stage, recorded_posture)).to_json()
        except ValueError:
            recorded = record.result
        return Replayed(
            decision_id=record.decision_id, recorded_revision=record.bundle_revision,
            replayed_revision=evaluator.bundle_revision,
            recorded_verdict=str(record.result.get("verdict")),
            replayed_verdict=replayed.verdict,
            differences=_diff(recorded, replayed.to_json()))

    def _replay_posture(self, record: DecisionRecord) -> Replayed:
        recorded, replayed, why = self._posture(record, record.decision_id)
        evaluator = self._evaluator(record)
        theirs = posture_json(recorded)
        ours = posture_json(replayed) if replayed is not None else {}
        differences = _diff(theirs, ours) if replayed is not None else [f"posture: {why}"]
        return Replayed(
            decision_id=record.decision_id, recorded_revision=record.bundle_revision,
            replayed_revision=evaluator.bundle_revision, recorded_verdict="posture",
            replayed_verdict="posture" if replayed is not None else None,
            differences=differences)

    def replay(self, record: DecisionRecord) -> Replayed:
        if record.path == POSTURE_PATH:
            return self._replay_posture(record)
        posture = record.input.get("posture") if isinstance(record.input, dict) else None
        if isinstance(posture, dict) and isinstance(posture.get("decision_id"), str):
            return self._replay_staged(record, posture["decision_id"])
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
