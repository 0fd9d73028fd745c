"""The decider: validate the input, evaluate the policy, fail closed, log the decision."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from engine.config import Settings
from engine.decide import bundle as _bundle
from engine.decide.decision_log import DecisionLog, default_labels
from engine.decide.evaluators import (
    DECISION_PATH,
    EvaluationTimeout,
    Evaluator,
    EvaluatorError,
    evaluator_for,
)
from engine.decide.input_document import InputDocument, validate
from engine.decide.verdict import Decision, Verdict, fail_closed
from engine.gcpause import paused_gc


class Decider:
    """Turns input documents into verdicts with one evaluator, logging every decision."""

    def __init__(self, evaluator: Evaluator, log: DecisionLog | None = None, *,
                 path: str = DECISION_PATH,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.evaluator = evaluator
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        """When each decision is taken (the log's timestamps)."""
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
        # shared: other commands deciding at the same time wait their turn for the file
        return cls(evaluator, DecisionLog.from_settings(settings, shared=True) if log else None)

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
    def decide(self, document: InputDocument | Mapping[str, Any], *,
               attestation_result: str | None = None) -> Verdict:
        """Decide one placement. Raises InputDocumentError (naming the field) when the
        document does not match the schema; every evaluator failure is a reject.
        ``attestation_result``: the signed attestation result (compact JWS) the document's
        host facts come from, kept in the log with the decision."""
        if isinstance(document, InputDocument):
            document = document.to_json()
        validate(document)  # the JSON value the evaluator will read, checked as such
        input_json = dict(document)
        decision_id = str(uuid.uuid4())
        timestamp = self.clock()
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
                            metrics=metrics, error=error, labels=self._labels,
                            attestation_result=attestation_result)
        return verdict
