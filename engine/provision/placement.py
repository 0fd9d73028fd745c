"""One placement decision from its parts.

The attestation result says what the host runs (its matched image and that image's
components); the PVDB says what affects those components; the tenant's request and the
host's patched configuration complete the input; the decider's policy decides::

    from engine.provision import decide_placement

    placement = decide_placement(decider, pvdb, request, result,
                                 patched=PatchedConfiguration(state="none"))
    placement.verdict.verdict        # admit | patch | delay | reject
    placement.document               # the input document that was decided (version 1 view)

With a policy that has a host posture (input schema version 2), the host's posture is
judged once per host posture key (:func:`posture_key`: the host, its attestation result,
the PVDB generation, the day, the estimator and the patched configuration; the decider adds
its bundle revision) and kept by the decider; each placement then builds and decides only
the small decision document. Nothing the posture document is built from is left out of
the key, so a kept posture is exactly the one that would be judged again.

``result`` must already be verified (:func:`engine.attest.result.verify_result` checks
its signature); a host without a result is decided with attestation status ``none``,
which the default policy rejects.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.decide import (
    Decider,
    InputDocument,
    PatchedConfiguration,
    RequestFacts,
    Verdict,
    build_decision_document,
    build_input,
    build_posture_document,
)
from engine.predict import estimator_for

if TYPE_CHECKING:
    from engine.attest import AttestationResult, ResultSummary
    from engine.pvdb import AffectingReport, AvailabilityEstimator, Pvdb


@dataclass(frozen=True)
class Placement:
    """A decided placement: the verdict, the input it was decided on and the PVDB's
    answer that input was built from (its fix-date intervals and evidence are richer
    than the document's; the tenant's report reads them)."""

    verdict: Verdict
    affecting: AffectingReport | None = None
    decision_document: dict[str, Any] | None = None
    """The decision document (schema version 2) that was decided, or None when the
    policy decided a version 1 document."""
    _facts: tuple[Any, ...] = field(default=(), repr=False, compare=False)
    _document: InputDocument | None = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def document(self) -> InputDocument:
        """The version 1 document of the placement's facts (built when first asked for:
        for a host with thousands of findings it is the largest thing here)."""
        if self._document is not None:
            return self._document
        request, host_id, summary, patched, when = self._facts
        assert self.affecting is not None
        return build_input(request, host_id, summary, self.affecting, patched, when)


_SUMMARIES: OrderedDict[int, tuple[Any, Any, Hashable]] = OrderedDict()
_SUMMARY_LOCK = threading.Lock()


def _summary(result: AttestationResult | None) -> tuple[ResultSummary | None, Hashable]:
    """A verified result's summary and, as a hashable value, everything of it the
    posture document reads; kept per result object (the object is held, so its id
    names it: the attestation-result cache hands the same object out while its file is
    unchanged)."""
    if result is None:
        return None, None
    with _SUMMARY_LOCK:
        known = _SUMMARIES.get(id(result))
        if known is not None and known[0] is result:
            _SUMMARIES.move_to_end(id(result))
            return known[1], known[2]
    summary = result.summary()
    value = (result.host_id, summary.model_dump_json())
    with _SUMMARY_LOCK:
        _SUMMARIES[id(result)] = (result, summary, value)
        while len(_SUMMARIES) > 4096:
            _SUMMARIES.popitem(last=False)
    return summary, value


def posture_key(pvdb: Pvdb, host_id: str, result: AttestationResult | None,
                patched: PatchedConfiguration, day: dt.date, estimator_key: Hashable
                ) -> Hashable:
    """The key of a host's posture: what its posture document is built from. The PVDB's
    facts are named by their generation id (new with every write that changes facts),
    the estimator by its cache key, the attestation result by its content."""
    return ("placement", host_id, _summary(result)[1], pvdb.generation_id, day,
            estimator_key, patched.model_dump_json())


_ESTIMATORS: OrderedDict[Hashable, Any] = OrderedDict()
_ESTIMATOR_LOCK = threading.Lock()


def _estimator(pvdb: Pvdb, when: dt.datetime) -> Any:
    """The predictor's estimator for the PVDB generation and day (its answers depend on
    the day, not the time: the PVDB's own cache of answers is kept per day too)."""
    key = (id(pvdb), pvdb.generation_id, when.astimezone(dt.UTC).date())
    with _ESTIMATOR_LOCK:
        found = _ESTIMATORS.get(key)
        if found is not None and found[0] is pvdb:  # the object is held: its id names it
            _ESTIMATORS.move_to_end(key)
            return found[1]
    made = estimator_for(pvdb, when)
    with _ESTIMATOR_LOCK:
        _ESTIMATORS[key] = (pvdb, made)
        while len(_ESTIMATORS) > 64:
            _ESTIMATORS.popitem(last=False)
    return made


def decide_placement(
    decider: Decider,
    pvdb: Pvdb,
    request: RequestFacts,
    result: AttestationResult | None,
    *,
    host_id: str | None = None,
    patched: PatchedConfiguration | None = None,
    now: dt.datetime | None = None,
    estimator: AvailabilityEstimator | None = None,
    attestation_token: str | None = None,
) -> Placement:
    """Decide placing ``request`` on the host ``result`` attests (or ``host_id`` when
    there is no result): the PVDB is asked about the attested image's components, the
    decision is logged by the decider. ``estimator`` (default
    :func:`engine.predict.estimator_for` as of ``now``) dates the fixes not released."""
    if result is None and host_id is None:
        raise ValueError("a placement needs an attestation result or a host id")
    when = now or dt.datetime.now(dt.UTC)
    summary = _summary(result)[0]
    components = list(result.components) if result is not None else []
    hid = host_id or (result.host_id if result else "")
    patched = patched or PatchedConfiguration(state="none")
    if not decider.staged:
        report = pvdb.affecting(components, as_of=when,
                                estimator=estimator or estimator_for(pvdb, when))
        document = build_input(request, hid, summary, report, patched, when)
        return Placement(verdict=decider.decide(document, attestation_result=attestation_token),
                         affecting=report, _document=document)
    chosen = estimator or _estimator(pvdb, when)
    day = when.astimezone(dt.UTC).date()

    def build() -> tuple[dict[str, Any], AffectingReport]:
        report = pvdb.affecting(components, as_of=when, estimator=chosen)
        return build_posture_document(hid, summary, report, patched, day), report

    posture = decider.posture(
        posture_key(pvdb, hid, result, patched, day, chosen.cache_key), build,
        attestation_result=attestation_token)
    decision = build_decision_document(request, hid, summary, patched, when)
    verdict = decider.decide_staged(decision, posture, attestation_result=attestation_token)
    return Placement(verdict=verdict, affecting=posture.extra, decision_document=decision,
                     _facts=(request, hid, summary, patched, when))
