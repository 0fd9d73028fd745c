"""The input builder: one decision's input documents, from what the other parts know.

:func:`build_posture_document` maps the host's verified attestation result (the
attestation part's :class:`~engine.attest.result.ResultSummary`, taken as it is), the
PVDB's :class:`~engine.pvdb.AffectingReport` for its components, its patched
configuration and the decision day into the posture document (schema version 2);
:func:`build_decision_document` maps the tenant's request, the attestation and the
decision time into the decision document (the posture's summary is added by the
decider). Both write plain JSON values directly, normalising every value the way the
document's contract says (times twice, day counts, scores rounded once, patch levels
compared by the engine) and copying nothing the document does not hold; the decider
validates them. :func:`build_input` gives the version 1 document of the same facts
(:func:`merge` of the two), :func:`split` cuts a version 1 document in two.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from engine.decide.input_document import (
    Image,
    InputDocument,
    PatchedConfiguration,
    TrustVector,
    VmShape,
)
from engine.errors import VersionSchemeError
from engine.gcpause import paused_gc

if TYPE_CHECKING:
    from engine.attest import ResultSummary
    from engine.pvdb import AffectingReport, Finding


class RequestFacts(BaseModel):
    """The tenant's request as the builder receives it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: str
    vm: VmShape
    requested_patch_level: str | None = None
    requested_image: Image | None = None


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()}: give a timezone")
    return value.astimezone(dt.UTC)


def ns_of(value: dt.datetime) -> int:
    """Nanoseconds since the epoch, exact to the microsecond."""
    delta = _utc(value) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def rfc3339(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a trailing ``Z`` (what OPA's ``time.parse_rfc3339_ns`` reads)."""
    text = _utc(value).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return text.replace(".000000Z", "Z")


@lru_cache(maxsize=4096)
def _day_ns(day: dt.date) -> int:
    return ns_of(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC))


@lru_cache(maxsize=65536)
def _rounded(value: float, places: int) -> float:
    # half away from zero on the decimal text, so 9.85 stays 9.9 (scores repeat: cached)
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP))


def _round(value: float | None, places: int) -> float | None:
    """Rounded once, here."""
    return None if value is None else _rounded(value, places)


def _iso(day: dt.date | None) -> str | None:
    return None if day is None else day.isoformat()


def _vulnerability(finding: Finding, today: dt.date) -> dict[str, Any]:
    fix = finding.fix
    availability = fix.availability
    date = availability.date
    kev = finding.kev
    epss = finding.epss
    return {
        "id": finding.vuln_id,
        "component": finding.component,
        "title": finding.title,
        "max_cvss": _round(finding.max_base_score, 1),
        "cvss": [{"provider": s.provider, "source": s.source, "version": s.cvss_version,
                  "vector": s.vector, "score": _round(s.base_score, 1) or 0.0}
                 for s in finding.severities],
        "kev": None if kev is None else {
            "date_added": kev.date_added.isoformat(), "due_date": _iso(kev.due_date),
            "known_ransomware_use": kev.known_ransomware_use.strip().lower() == "known"},
        "epss": None if epss is None else {
            "score": _round(epss.score, 3) or 0.0, "percentile": _round(epss.percentile, 3),
            "date": _iso(epss.score_date)},
        "fix": {
            "status": fix.status.value,
            "closing_version": fix.closing_version,
            "line": fix.line.value if fix.line is not None else None,
            "advisories": list(fix.advisories),
            "patch_ids": list(fix.patch_ids),
            "availability": {
                "date": _iso(date),
                "date_ns": _day_ns(date) if date else None,
                "days_from_now": (date - today).days if date else None,
                "basis": availability.basis.value,
                "confidence": _round(availability.confidence, 2),
                "p_within_window": _round(availability.p_within_window, 2),
                "window_days": availability.window_days,
            },
        },
    }


def _at_least(version: str | None, level: str) -> bool | None:
    if version is None:
        return None
    from engine.pvdb import compare_versions  # loaded only to compare a patch level

    try:
        return compare_versions("generic", version, level) >= 0
    except VersionSchemeError:
        return None


_NO_ATTESTATION: dict[str, Any] = {
    "status": "none", "issued_at": None, "issued_at_ns": None, "age_seconds": None,
    "verifier_id": None, "image": None, "trust_vector": None, "failures": []}


def _image(image: Any) -> dict[str, str] | None:
    return None if image is None else {"name": image.name, "version": image.version}


def _attestation(summary: ResultSummary | None, now: dt.datetime | None) -> dict[str, Any]:
    """The document's attestation from a verified result's summary (``none`` without);
    ``age_seconds`` only with ``now`` (the posture document has no decision time)."""
    if summary is None:
        return dict(_NO_ATTESTATION)
    issued = _utc(summary.issued_at)
    return {
        "status": summary.status,
        "issued_at": rfc3339(issued),
        "issued_at_ns": ns_of(issued),
        "age_seconds": None if now is None else max(0, int((now - issued).total_seconds())),
        "verifier_id": summary.verifier_id,
        "image": _image(summary.image),
        "trust_vector": TrustVector(**summary.trust_vector).model_dump(),
        "failures": [{"step": f.step, "reason": f.reason} for f in summary.failures],
    }


def _patched(patched: PatchedConfiguration) -> dict[str, Any]:
    return {"state": patched.state, "image": _image(patched.image),
            "attested": patched.attested, "attestation_status": patched.attestation_status}


def build_posture_document(
    host_id: str,
    attestation: ResultSummary | None,
    report: AffectingReport,
    patched: PatchedConfiguration,
    day: dt.date,
) -> dict[str, Any]:
    """The posture document (schema version 2, a JSON value) of one host on one day.

    ``attestation`` is the summary of the host's verified attestation result
    (:meth:`~engine.attest.result.AttestationResult.summary`), or None when the host has
    none (status ``none``). ``report`` is the PVDB's answer for the host's components as
    of ``day``; its component list becomes ``host.components`` so that every
    vulnerability's ``component`` index points into it. Day counts count from ``day``.
    """
    with paused_gc(collect=False):  # thousands of findings: ~10^5 objects, kept
        return {
            "schema_version": 2,
            "stage": "posture",
            "host": {
                "id": host_id,
                "attestation": _attestation(attestation, None),
                "components": [{"kind": c.kind, "vendor": c.vendor, "product": c.product,
                                "version": c.version, "cpe": c.cpe, "purl": c.purl}
                               for c in report.components],
            },
            "vulnerabilities": [_vulnerability(f, day) for f in sorted(
                report.findings, key=lambda f: (f.vuln_id, f.component))],
            "undetermined": [{"id": u.vuln_id, "component": u.component, "reason": u.reason}
                             for u in report.undetermined],
            "coverage": [{"component": c.component, "status": c.status.value,
                          "sources": [{"source": s.source, "scope": s.scope,
                                       "as_of": rfc3339(s.as_of)
                                       if s.as_of is not None else None}
                                      for s in c.sources],
                          "notes": list(c.notes)}
                         for c in report.coverage],
            "patched_configuration": _patched(patched),
            "day": {"date": day.isoformat(), "ns": _day_ns(day)},
            "provenance": {"pvdb_generation": report.pvdb_generation,
                           "pvdb_as_of": day.isoformat() + "T00:00:00Z"},
        }


def build_decision_document(
    request: RequestFacts,
    host_id: str,
    attestation: ResultSummary | None,
    patched: PatchedConfiguration,
    now: dt.datetime,
) -> dict[str, Any]:
    """The decision document (schema version 2, a JSON value) of one request, without
    its ``posture`` (the decider adds the summary of the host's posture)."""
    now = _utc(now)
    level = request.requested_patch_level
    met = None
    if level is not None:
        host_version = (attestation.image.version
                        if attestation is not None and attestation.image else None)
        patched_version = patched.image.version if patched.image else None
        met = {"host": _at_least(host_version, level),
               "patched_configuration": _at_least(patched_version, level)}
    vm = request.vm
    return {
        "schema_version": 2,
        "stage": "decision",
        "request": {"tenant": request.tenant,
                    "vm": {"name": vm.name, "vcpus": vm.vcpus, "memory_mib": vm.memory_mib,
                           "flavor": vm.flavor, "labels": dict(vm.labels)},
                    "requested_patch_level": level,
                    "requested_image": _image(request.requested_image),
                    "patch_level_met": met},
        "host": {"id": host_id, "attestation": _attestation(attestation, now)},
        "patched_configuration": _patched(patched),
        "decision_time": {"rfc3339": rfc3339(now), "ns": ns_of(now)},
    }


_POSTURE_ONLY = ("vulnerabilities", "undetermined", "coverage")


def merge(posture: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    """The version 1 document of a posture and a decision document (JSON values)."""
    return {
        "schema_version": 1,
        "request": decision["request"],
        "host": {"id": decision["host"]["id"],
                 "attestation": decision["host"]["attestation"],
                 "components": posture["host"]["components"]},
        **{name: posture[name] for name in _POSTURE_ONLY},
        "patched_configuration": decision["patched_configuration"],
        "decision_time": decision["decision_time"],
        "provenance": posture.get("provenance"),
    }


def split(document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A version 1 document (a JSON value) as its posture document and its decision
    document without ``posture``: what deciding it in two stages reads."""
    host = document["host"]
    now_ns = document["decision_time"]["ns"]
    day_ns = now_ns - now_ns % 86_400_000_000_000
    day = (_EPOCH + dt.timedelta(microseconds=day_ns // 1000)).date()
    attestation = dict(host["attestation"])
    posture = {
        "schema_version": 2, "stage": "posture",
        "host": {"id": host["id"], "attestation": {**attestation, "age_seconds": None},
                 "components": host.get("components", [])},
        **{name: document.get(name, []) for name in _POSTURE_ONLY},
        "patched_configuration": document["patched_configuration"],
        "day": {"date": day.isoformat(), "ns": day_ns},
        "provenance": document.get("provenance"),
    }
    decision = {
        "schema_version": 2, "stage": "decision",
        "request": document["request"],
        "host": {"id": host["id"], "attestation": attestation},
        "patched_configuration": document["patched_configuration"],
        "decision_time": document["decision_time"],
    }
    return posture, decision


def build_input(
    request: RequestFacts,
    host_id: str,
    attestation: ResultSummary | None,
    report: AffectingReport,
    patched: PatchedConfiguration,
    now: dt.datetime,
) -> InputDocument:
    """The version 1 input document for one placement decision: the posture and the
    decision document of the same facts in one (:func:`merge`). ``now`` is the decision
    time (timezone-aware)."""
    now = _utc(now)
    document = merge(build_posture_document(host_id, attestation, report, patched, now.date()),
                     build_decision_document(request, host_id, attestation, patched, now))
    document["provenance"] = {"pvdb_generation": report.pvdb_generation,
                              "pvdb_as_of": rfc3339(report.as_of)
                              if report.as_of.tzinfo else report.as_of.isoformat()}
    with paused_gc(collect=False):
        return InputDocument.model_validate(document, strict=True)
