"""One placement decision from its parts.

The attestation result says what the host runs (its matched image and that image's
components); the PVDB says what affects those components; the tenant's request and the
host's patched configuration complete the input document; the decider's policy decides::

    from engine.provision import decide_placement

    placement = decide_placement(decider, pvdb, request, result,
                                 patched=PatchedConfiguration(state="none"))
    placement.verdict.verdict        # admit | patch | delay | reject
    placement.document               # the input document that was decided (and logged)

``result`` must already be verified (:func:`engine.attest.result.verify_result` checks
its signature); a host without a result is decided with attestation status ``none``,
which the default policy rejects.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.decide import (
    Decider,
    InputDocument,
    PatchedConfiguration,
    RequestFacts,
    Verdict,
    build_input,
)
from engine.predict import estimator_for

if TYPE_CHECKING:
    from engine.attest import AttestationResult
    from engine.pvdb import AffectingReport, AvailabilityEstimator, Pvdb


@dataclass(frozen=True)
class Placement:
    """A decided placement: the verdict, the input document it was decided on and the
    PVDB's answer that document was built from (its fix-date intervals and evidence are
    richer than the document's; the tenant's report reads them)."""

    verdict: Verdict
    document: InputDocument
    affecting: AffectingReport | None = None


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
    summary = result.summary() if result is not None else None
    components = list(result.components) if result is not None else []
    report = pvdb.affecting(components, as_of=when,
                            estimator=estimator or estimator_for(pvdb, when))
    document = build_input(request, host_id or (result.host_id if result else ""), summary,
                           report, patched or PatchedConfiguration(state="none"), when)
    return Placement(verdict=decider.decide(document, attestation_result=attestation_token),
                     document=document, affecting=report)
