"""The decider: validate the input, evaluate the policy, fail closed, log the decision.

A policy with a host posture (``data.vigil.posture.result``, input schema version 2) is
decided in two stages: :meth:`Decider.posture` judges a host's posture document once and
keeps the answer (:class:`Posture`) under a key that names everything the document was
built from; :meth:`Decider.decide_staged` then decides each request on its small decision
document, and the verdict is the request's findings with the posture's findings of the
kind the verdict names (reasons), its warnings and its obligations for the verdict. The
decision log holds both: the posture once (its document and answer, at the posture's
path), and each request with the posture's digest and record id in its input.

A policy without a posture decides a version 1 document whole (:meth:`Decider.decide`).

Logged decisions are written by one writer thread per decider, in groups (one
transaction for the decisions that arrived while the previous group was written); a call
returns only once its decision is in the log.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import hashlib
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.config import Settings
from engine.decide import bundle as _bundle
from engine.decide.decision_log import DecisionLog, default_labels
from engine.decide.errors import DecisionLogError
from engine.decide.evaluators import (
    DECISION_PATH,
    POSTURE_PATH,
    EvaluationTimeout,
    Evaluator,
    EvaluatorError,
    evaluator_for,
)
from engine.decide.input_document import DecisionDocument, InputDocument, validate
from engine.decide.verdict import Decision, Obligation, Reason, Verdict, fail_closed
from engine.gcpause import paused_gc

KINDS = ("deny", "patch", "delay", "warn")
"""The kinds of host findings a posture gives."""

VERDICT_KIND = {"reject": "deny", "patch": "patch", "delay": "delay"}
"""Which host findings are the reasons of a verdict (admit has none)."""

POSTURE_CACHE_FINDINGS = 2_000_000
"""Host findings kept in a decider's posture cache at most (about 1 KiB each)."""


def _reason_key(r: Reason) -> tuple[str, str, str]:
    return (r.rule, r.vulnerability or "", r.message)


def _obligation_key(o: Obligation) -> tuple[str, str]:
    return (o.type, o.model_dump_json())


@dataclass(frozen=True, eq=False)
class Posture:
    """A host posture as judged: what its decisions add, and how to name it."""

    digest: str
    """``sha256:`` of the posture document's canonical JSON."""
    decision_id: str | None
    """Its record in the decision log (None when not logged)."""
    counts: dict[str, int]
    facts: dict[str, Any]
    findings: Mapping[str, tuple[Reason, ...]]
    """Per kind, sorted as a normalised decision sorts them."""
    keys: Mapping[str, tuple[tuple[str, str, str], ...]]
    obligations: tuple[tuple[str, Obligation], ...]
    """(verdict, obligation) pairs."""
    failure: Decision | None = None
    """The fail-closed reject when the posture could not be judged (never kept)."""
    error: str | None = None
    extra: Any = field(default=None, repr=False)
    """What the caller built the document from (e.g. the PVDB's answer), kept with it."""

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.findings.values()) + 1

    def summary(self) -> dict[str, Any]:
        """``input.posture`` of a decision document."""
        return {"digest": self.digest, "decision_id": self.decision_id,
                "counts": dict(self.counts), "facts": self.facts}


def posture_digest(document: Mapping[str, Any]) -> str:
    """``sha256:`` of a JSON value's canonical form (sorted keys, no spaces)."""
    return "sha256:" + hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
                                      ).hexdigest()


def _parse_posture(value: Any) -> tuple[dict[str, tuple[Reason, ...]],
                                        tuple[tuple[str, Obligation], ...], dict[str, Any]]:
    """The findings, obligations and facts of a posture result (ValueError when it does
    not have the posture's shape)."""
    if not isinstance(value, dict):
        raise ValueError("the posture is not an object")
    findings: dict[str, tuple[Reason, ...]] = {}
    for kind in KINDS:
        items = value.get(kind, [])
        if not isinstance(items, list):
            raise ValueError(f"{kind}: not a set of findings")
        try:
            parsed = [Reason.model_validate(i) for i in items]
        except ValueError as exc:
            raise ValueError(f"{kind}: {exc}") from None
        findings[kind] = tuple(sorted(parsed, key=_reason_key))
    obligations: list[tuple[str, Obligation]] = []
    raw = value.get("obligations", [])
    if not isinstance(raw, list):
        raise ValueError("obligations: not a set")
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("verdict"), str):
            raise ValueError("obligations: each needs a verdict and an obligation")
        try:
            obligations.append((item["verdict"], Obligation.model_validate(item.get("obligation"))))
        except ValueError as exc:
            raise ValueError(f"obligations: {exc}") from None
    facts = value.get("facts", {})
    if not isinstance(facts, dict):
        raise ValueError("facts: not an object")
    return findings, tuple(obligations), facts


def posture_of(value: Any, *, digest: str, decision_id: str | None = None) -> Posture:
    """A :class:`Posture` from a posture result (as evaluated, or as the log recorded
    it); ValueError when it does not have the posture's shape."""
    findings, obligations, facts = _parse_posture(value)
    return Posture(digest=digest, decision_id=decision_id,
                   counts={kind: len(findings[kind]) for kind in KINDS}, facts=facts,
                   findings=findings,
                   keys={kind: tuple(_reason_key(r) for r in findings[kind]) for kind in KINDS},
                   obligations=obligations)


def _merged(own: Sequence[Reason], host: tuple[Reason, ...],
            keys: tuple[tuple[str, str, str], ...]) -> list[Reason]:
    """``own`` and ``host`` (each sorted) in one sorted list, a finding both give once."""
    out = list(host)
    if not own:
        return out
    at = list(keys)
    for reason in own:
        k = _reason_key(reason)
        i = bisect.bisect_left(at, k)
        if i < len(at) and at[i] == k and out[i] == reason:
            continue
        out.insert(i, reason)
        at.insert(i, k)
    return out


def compose(stage: Decision, posture: Posture) -> Decision:
    """The decision a request's stage decision and its host posture make together: the
    host findings of the kind the verdict names join the reasons, the host warnings the
    warnings, the host obligations of the verdict the obligations (sets: each once)."""
    kind = VERDICT_KIND.get(stage.verdict)
    reasons = (_merged(stage.reasons, posture.findings[kind], posture.keys[kind])
               if kind else list(stage.reasons))
    warnings = _merged(stage.warnings, posture.findings["warn"], posture.keys["warn"])
    obligations = list(stage.obligations)
    seen = {_obligation_key(o) for o in obligations}
    for verdict, obligation in posture.obligations:
        if verdict == stage.verdict and _obligation_key(obligation) not in seen:
            seen.add(_obligation_key(obligation))
            obligations.append(obligation)
    obligations.sort(key=_obligation_key)
    return Decision.model_construct(verdict=stage.verdict, reasons=reasons,
                                    obligations=obligations, warnings=warnings)


def posture_json(posture: Posture) -> dict[str, Any]:
    """A posture's answer as plain JSON (its sets sorted): what the log records."""
    return {**{kind: [r.model_dump(mode="json", exclude_none=True)
                      for r in posture.findings[kind]] for kind in KINDS},
            "obligations": [{"verdict": v, "obligation": o.model_dump(mode="json",
                                                                       exclude_none=True)}
                            for v, o in posture.obligations],
            "facts": posture.facts}


class PostureCache:
    """Judged postures by key, least recently used first out, bounded by the host
    findings they hold. A key must name everything the posture document was built
    from; the decider adds its bundle revision."""

    def __init__(self, max_findings: int = POSTURE_CACHE_FINDINGS) -> None:
        self.max_findings = max_findings
        self._items: OrderedDict[Hashable, Posture] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Posture | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found

    def peek(self, key: Hashable) -> Posture | None:
        """Like :meth:`get`, uncounted."""
        with self._lock:
            return self._items.get(key)

    def put(self, key: Hashable, posture: Posture) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._held -= old.size
            self._items[key] = posture
            self._held += posture.size
            while self._held > self.max_findings and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._held -= dropped.size

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._held = 0

    def __len__(self) -> int:
        return len(self._items)


class _LogWriter:
    """One thread that writes a decider's log entries in groups, one transaction each;
    :meth:`append` returns once its entry is committed (or raises why not)."""

    _STOP = object()

    def __init__(self, log: DecisionLog) -> None:
        self.log = log
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._closing = threading.Lock()  # nothing is queued after the stop
        self._thread = threading.Thread(target=self._run, name="vigil-decision-log",
                                        daemon=True)
        self._thread.start()

    def append(self, entry: dict[str, Any]) -> None:
        done = threading.Event()
        box: list[BaseException] = []
        with self._closing:
            if self._closed:
                raise DecisionLogError("the decision log is closed; the decision was not "
                                       "recorded (fail closed)")
            self._queue.put((entry, done, box))
        done.wait()
        if box:
            raise box[0]

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is self._STOP:
                return
            group = [first]
            stop = False
            while len(group) < 512:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is self._STOP:
                    stop = True
                    break
                group.append(item)
            self._write(group)
            if stop:
                return

    def _write(self, group: list[Any]) -> None:
        try:
            self.log.append_many([entry for entry, _, _ in group])
        except BaseException:
            # one bad entry must not fail the others: each alone
            for entry, done, box in group:
                try:
                    self.log.append_many([entry])
                except BaseException as exc:
                    box.append(exc)
                done.set()
            return
        for _, done, _ in group:
            done.set()

    def close(self) -> None:
        """Write what is queued, then stop."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._queue.put(self._STOP)
        self._thread.join(timeout=30)


class Decider:
    """Turns input documents into verdicts with one evaluator, logging every decision."""

    def __init__(self, evaluator: Evaluator, log: DecisionLog | None = None, *,
                 path: str = DECISION_PATH, postures: PostureCache | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.evaluator = evaluator
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        """When each decision is taken (the log's timestamps)."""
        self.log = log
        self.path = path
        self.postures = postures if postures is not None else PostureCache()
        self._labels = default_labels(evaluator.name)
        self._writer = _LogWriter(log) if log is not None else None
        self._building = threading.Lock()
        policy = getattr(evaluator, "policy", None)
        if log is not None and isinstance(policy, _bundle.PolicySet):
            archive = policy.archive or _bundle.build(policy)
            log.record_bundle(policy.revision, archive, policy.origin)

    @classmethod
    def from_settings(cls, settings: Settings, *, log: bool = True) -> Decider:
        evaluator = evaluator_for(settings)
        # shared: other commands deciding at the same time wait their turn for the file
        return cls(evaluator, DecisionLog.from_settings(settings, shared=True) if log else None)

    @property
    def staged(self) -> bool:
        """Whether the policy has a host posture (decisions in two stages)."""
        return POSTURE_PATH in self.evaluator.entrypoints and self.path == DECISION_PATH

    def stop_logging(self) -> None:
        """Write the decisions still queued and stop the log's writer thread (the
        evaluator and the log stay open)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> None:
        self.stop_logging()
        self.evaluator.close()
        if self.log is not None:
            self.log.close()

    def __enter__(self) -> Decider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- evaluating ---------------------------------------------------------------------

    def _evaluate(self, document: dict[str, Any], path: str
                  ) -> tuple[Any, Decision | None, str | None, dict[str, int]]:
        """(value, fail-closed decision or None, error, metrics) of one evaluation."""
        started = time.perf_counter_ns()
        metrics: dict[str, int] = {}
        value: Any = None
        failure: Decision | None = None
        error: str | None = None
        try:
            evaluation = self.evaluator.evaluate(document, path)
            metrics = dict(evaluation.timings_ns)
            if not evaluation.defined:
                error = f"data.{path.replace('/', '.')} is undefined"
                failure = fail_closed("evaluation_undefined", error)
            else:
                value = evaluation.value
        except EvaluationTimeout as exc:
            error = exc.summary
            failure = fail_closed("evaluation_timeout", exc.summary)
        except EvaluatorError as exc:
            error = exc.summary
            failure = fail_closed("evaluator_error", exc.summary)
        metrics["timer_vigil_decision_ns"] = time.perf_counter_ns() - started
        return value, failure, error, metrics

    def _record(self, *, decision_id: str, timestamp: dt.datetime, path: str,
                document: dict[str, Any], result: dict[str, Any], metrics: dict[str, int],
                error: str | None, attestation_result: str | None) -> None:
        if self.log is None:
            return
        writer = self._writer
        if writer is None:  # stopped: no decision is answered unlogged
            raise DecisionLogError("the decision log is closed; the decision was not "
                                   "recorded (fail closed)")
        writer.append({
            "decision_id": decision_id, "timestamp": timestamp, "path": path,
            "input_document": document, "result": result,
            "bundle_revision": self.evaluator.bundle_revision,
            "evaluator": self.evaluator.name, "metrics": metrics, "error": error,
            "labels": self._labels, "attestation_result": attestation_result})

    def _verdict(self, decision: Decision, decision_id: str, failed: bool) -> Verdict:
        return Verdict.model_construct(
            verdict=decision.verdict, reasons=decision.reasons,
            obligations=decision.obligations, warnings=decision.warnings,
            decision_id=decision_id, bundle_revision=self.evaluator.bundle_revision,
            evaluator=self.evaluator.name, path=self.path, fail_closed=failed)

    # a large host's document is ~10^5 objects: collections triggered while it is
    # validated walk every long-lived object of the process (the PVDB's report cache)
    @paused_gc(collect=False)
    def decide(self, document: InputDocument | Mapping[str, Any], *,
               attestation_result: str | None = None) -> Verdict:
        """Decide one placement on a version 1 document, whole. Raises
        InputDocumentError (naming the field) when the document does not match the
        schema; every evaluator failure is a reject. ``attestation_result``: the signed
        attestation result (compact JWS) the document's host facts come from, kept in the
        log with the decision."""
        if isinstance(document, InputDocument):
            document = document.to_json()
        if isinstance(validate(document), DecisionDocument):
            raise ValueError("a decision document is decided with its posture: use "
                             "decide_staged")
        input_json = dict(document)
        decision_id = str(uuid.uuid4())
        timestamp = self.clock()
        value, failure, error, metrics = self._evaluate(input_json, self.path)
        decision = failure
        if decision is None:
            try:
                decision = Decision.parse(value)
            except ValueError as exc:
                error = f"malformed decision: {exc}"
                decision = fail_closed("malformed_decision", str(exc))
        self._record(decision_id=decision_id, timestamp=timestamp, path=self.path,
                     document=input_json, result=decision.to_json(), metrics=metrics,
                     error=error, attestation_result=attestation_result)
        return self._verdict(decision, decision_id, error is not None)

    # --- two stages -----------------------------------------------------------------------

    @paused_gc(collect=False)
    def judge_posture(self, document: Mapping[str, Any], extra: Any = None, *,
                      attestation_result: str | None = None) -> Posture:
        """Judge one posture document (validated first; InputDocumentError names the
        field). A posture that cannot be judged carries its fail-closed reject; one that
        is judged is logged (once) when the decider logs, with the signed attestation
        result its host facts come from."""
        document = dict(document)
        validate(document)
        digest = posture_digest(document)
        timestamp = self.clock()
        value, failure, error, metrics = self._evaluate(document, POSTURE_PATH)
        empty: dict[str, tuple[Any, ...]] = {kind: () for kind in KINDS}
        if failure is None:
            try:
                _parse_posture(value)
            except ValueError as exc:
                error = f"malformed posture: {exc}"
                failure = fail_closed("malformed_decision", error)
        if failure is not None:
            return Posture(digest=digest, decision_id=None, counts=dict.fromkeys(KINDS, 0),
                           facts={}, findings=empty, keys=empty, obligations=(),
                           failure=failure, error=error, extra=extra)
        posture = dataclasses.replace(posture_of(value, digest=digest), extra=extra)
        if self.log is not None:
            decision_id = str(uuid.uuid4())
            self._record(decision_id=decision_id, timestamp=timestamp, path=POSTURE_PATH,
                         document=document, result=posture_json(posture), metrics=metrics,
                         error=None, attestation_result=attestation_result)
            posture = dataclasses.replace(posture, decision_id=decision_id)
        return posture

    def posture(self, key: Hashable, build: Callable[[], tuple[Mapping[str, Any], Any]], *,
                attestation_result: str | None = None) -> Posture:
        """The host posture kept under ``key``, or judged now from ``build()`` (the
        posture document and what it was built from) and kept. ``key`` must name
        everything ``build`` reads (host, PVDB generation, day, patched configuration...);
        the evaluator, the bundle revision and the signed attestation result (which the
        posture's log record keeps) are added here. A posture that could not be judged
        is not kept."""
        token = attestation_result.strip() if attestation_result else None
        full = (self.evaluator.name, self.evaluator.bundle_revision,
                hashlib.sha256(token.encode()).hexdigest() if token else None, key)
        found = self.postures.get(full)
        if found is not None:
            return found
        # one posture judged at a time (the same host once); what it keeps is
        # long-lived: moved out of the collector's reach, so that the collections the
        # requests trigger do not walk thousands of findings per host again and again
        with self._building, paused_gc(freeze=True):
            found = self.postures.peek(full)
            if found is not None:
                return found
            document, extra = build()
            posture = self.judge_posture(document, extra,
                                         attestation_result=attestation_result)
            del document
            if posture.failure is None:
                self.postures.put(full, posture)
            return posture

    def decide_staged(self, document: Mapping[str, Any], posture: Posture, *,
                      attestation_result: str | None = None) -> Verdict:
        """Decide one request: ``document`` is its decision document without
        ``posture`` (:func:`~engine.decide.input_builder.build_decision_document`),
        ``posture`` the host's judged posture. The verdict is the composition
        (:func:`compose`); the log records the request's own decision (with the signed
        attestation result, as the posture's record does)."""
        input_json = {**document, "posture": posture.summary()}
        validate(input_json)
        decision_id = str(uuid.uuid4())
        timestamp = self.clock()
        metrics: dict[str, int] = {}
        if posture.failure is not None:
            stage, error = posture.failure, posture.error
        else:
            value, failure, error, metrics = self._evaluate(input_json, self.path)
            stage = failure  # type: ignore[assignment]
            if stage is None:
                try:
                    stage = Decision.parse(value)
                except ValueError as exc:
                    error = f"malformed decision: {exc}"
                    stage = fail_closed("malformed_decision", str(exc))
        self._record(decision_id=decision_id, timestamp=timestamp, path=self.path,
                     document=input_json, result=stage.to_json(), metrics=metrics,
                     error=error, attestation_result=attestation_result)
        decision = stage if error is not None else compose(stage, posture)
        return self._verdict(decision, decision_id, error is not None)


__all__ = ["Decider", "DecisionLogError", "Posture", "PostureCache", "compose",
           "posture_digest", "posture_json", "posture_of"]
