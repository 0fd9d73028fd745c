"""The decider: validate the input, evaluate the policy, fail closed, log the decision."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.decide import bundle as _bundle
from engine.decide.decision_log import DecisionLog, default_labels
from engine.decide.errors import EvaluationTimeout, EvaluatorError
from engine.decide.evaluator import DECISION_PATH, Evaluator
from engine.decide.input import InputDocument, validate
from engine.decide.verdict import Decision, Verdict, fail_closed
from engine.errors import ConfigError
from engine.gcpause import paused_gc

SOURCE_POLICIES = Path(__file__).resolve().parents[1] / "policies"
"""The policies installed with the package (``engine/policies/``): the default policy folder."""


def load_policy(settings: Settings) -> _bundle.PolicySet:
    """The policy set the settings name, verified when a verification key is configured.

    With ``bundle_verification_key`` set, only a bundle whose signature verifies is
    loaded; a policy folder is refused (it carries no signature).
    """
    key = settings.bundle_verification_key
    if settings.bundle is not None:
        return _bundle.read(settings.bundle, verification_key=key,
                            key_id=settings.bundle_verification_key_id,
                            scope=settings.bundle_verification_scope)
    if key is not None:
        raise ConfigError(
            "a bundle verification key is configured, but no bundle: a policy folder "
            "carries no signature and is not loaded",
            tip="build and sign a bundle with `vigil bundle build --signing-key …` and set "
                "VIGIL_BUNDLE to it")
    folder = settings.policy_dir or SOURCE_POLICIES
    return _bundle.load_directory(folder, settings.policy_roots)


EMBEDDED = ("regorus", "regopy")
"""Names of the in-process evaluators (``Settings.evaluator``)."""


def embedded_evaluator(name: str, policy: _bundle.PolicySet, *,
                       timeout: float | None) -> Evaluator:
    """An in-process evaluator by name: ``regorus`` or ``regopy``."""
    if name == "regorus":
        from engine.decide.regorus_engine import RegorusEvaluator

        return RegorusEvaluator(policy, timeout=timeout)
    if name == "regopy":
        from engine.decide.embedded import EmbeddedEvaluator

        return EmbeddedEvaluator(policy, timeout=timeout)
    raise ConfigError(f"unknown evaluator {name!r}", tip=f"use one of {', '.join(EMBEDDED)}")


def evaluator_for(settings: Settings, policy: _bundle.PolicySet | None = None) -> Evaluator:
    """The configured backend: OPA when ``opa_url`` is set, else the in-process
    ``settings.evaluator``."""
    if settings.opa_url:
        from engine.decide.remote import RemoteEvaluator

        return RemoteEvaluator(settings.opa_url, timeout=settings.decision_timeout)
    return embedded_evaluator(settings.evaluator, policy or load_policy(settings),
                              timeout=settings.decision_timeout)


class Decider:
    """Turns input documents into verdicts with one evaluator, logging every decision."""

    def __init__(self, evaluator: Evaluator, log: DecisionLog | None = None, *,
                 path: str = DECISION_PATH) -> None:
        self.evaluator = evaluator
        self.log = log
        self.path = path
        self._labels = default_labels(evaluator.name)
        policy = getattr(evaluator, "policy", None)
        if log is not None and isinstance(policy, _bundle.PolicySet):
            archive = policy.archive or _bundle.build(policy)
            log.record_bundle(policy.revision, archive, policy.origin)

    @classmethod
    def from_settings(cls, settings: Settings, *, log: bool = True) -> Decider:
        evaluator = evaluator_for(settings)
        return cls(evaluator, DecisionLog(settings.decision_log) if log else None)

    def close(self) -> None:
        self.evaluator.close()
        if self.log is not None:
            self.log.close()

    def __enter__(self) -> Decider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # a large host's document is ~10^5 objects: collections triggered while it is
    # validated walk every long-lived object of the process (the PVDB's report cache)
    @paused_gc(collect=False)
    def decide(self, document: InputDocument | Mapping[str, Any]) -> Verdict:
        """Decide one placement. Raises InputDocumentError (naming the field) when the
        document does not match the schema; every evaluator failure is a reject."""
        if isinstance(document, InputDocument):
            document = document.to_json()
        validate(document)  # the JSON value the evaluator will read, checked as such
        input_json = dict(document)
        decision_id = str(uuid.uuid4())
        timestamp = dt.datetime.now(dt.UTC)
        started = time.perf_counter_ns()
        error: str | None = None
        metrics: dict[str, int] = {}
        try:
            evaluation = self.evaluator.evaluate(input_json, self.path)
            metrics = dict(evaluation.timings_ns)
            if not evaluation.defined:
                error = f"data.{self.path.replace('/', '.')} is undefined"
                decision = fail_closed("evaluation_undefined", error)
            else:
                try:
                    decision = Decision.parse(evaluation.value)
                except ValueError as exc:
                    error = f"malformed decision: {exc}"
                    decision = fail_closed("malformed_decision", str(exc))
        except EvaluationTimeout as exc:
            error = exc.summary
            decision = fail_closed("evaluation_timeout", exc.summary)
        except EvaluatorError as exc:
            error = exc.summary
            decision = fail_closed("evaluator_error", exc.summary)
        metrics["timer_vigil_decision_ns"] = time.perf_counter_ns() - started
        revision = self.evaluator.bundle_revision
        verdict = Verdict(**decision.model_dump(), decision_id=decision_id,
                          bundle_revision=revision, evaluator=self.evaluator.name,
                          path=self.path, fail_closed=error is not None)
        if self.log is not None:
            self.log.append(decision_id=decision_id, timestamp=timestamp, path=self.path,
                            input_document=input_json, result=decision.to_json(),
                            bundle_revision=revision, evaluator=self.evaluator.name,
                            metrics=metrics, error=error, labels=self._labels)
        return verdict
