"""The compliance report: what was placed where, what was known then, what is known now.

Built in one pass over the verified records (:class:`ReportBuilder`, fed by the same pass
that verifies the chain), then completed from the PVDB, the image catalog and the
rollout state:

* **placements** in the period (optionally one tenant's): verdict, host, image version,
  bundle revision and the vulnerabilities the recorded input listed at decision time,
  KEV-listed first. They are streamed (one dict per decision) to the caller's sink, never
  held: a month of a large fleet's decisions fits in a bounded memory.
* **discovered after the fact**: for every admitted placement, the VM is taken to run on
  its host from the decision until the same tenant's VM is admitted elsewhere, or the
  period ends (its end, or ``as_of`` when earlier). The PVDB is asked now (as of
  ``as_of``) about the components the decision recorded; vulnerabilities it names that
  the recorded input did not, published by ``as_of``, were unknown when the VM was
  placed. Exposure-days per host are the days (union of stays) a VM ran on the host
  while it was affected by one of them; per tenant, the VM-days.
* **predictions against what happened**: each ``delay`` (rule
  ``fix_expected_within_window``) with the fix date predicted then and the date the PVDB
  now gives for the fix on that component (vendor-stated), or none yet by ``as_of``.
* **patched configurations**: every change the image catalog recorded (made, built,
  attested, approved, made a group's target, rolled back) up to ``as_of``, and the
  rollouts toward them.
* **policy revisions** in force (first and last decision, verdicts per revision) and,
  with a replayer, the decisions another policy decides differently.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from engine.decide import (
    POSTURE_PATH,
    Decision,
    DecisionRecord,
    Posture,
    Replayed,
    StoredRow,
    compose,
    merge_documents,
    posture_of,
)
from engine.model import Component

DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class Period:
    """The report's period (``end`` exclusive), tenant and knowledge date."""

    start: dt.datetime
    end: dt.datetime
    as_of: dt.datetime
    tenant: str | None = None

    @property
    def until(self) -> dt.datetime:
        """Where stays end: the period's end, or ``as_of`` when earlier."""
        return min(self.end, self.as_of)

    def to_json(self) -> dict[str, Any]:
        return {"from": self.start, "to": self.end, "as_of": self.as_of,
                "tenant": self.tenant}


def _ns(when: dt.datetime) -> int:
    return int(when.timestamp()) * 10**9 + when.microsecond * 1000


def _day(ns: int) -> dt.date:
    return dt.datetime.fromtimestamp(ns // 10**9, dt.UTC).date()


def _vuln_order(v: dict[str, Any]) -> tuple[int, float, str]:
    return (0 if v.get("kev") else 1, -(v.get("max_cvss") or 0.0), str(v.get("id")))


def _union_days(intervals: Iterable[tuple[int, int]]) -> float:
    total = 0
    end = None
    start = 0
    for a, b in sorted(intervals):
        if end is None or a > end:
            if end is not None:
                total += end - start
            start, end = a, b
        elif b > end:
            end = b
    if end is not None:
        total += end - start
    return total / DAY_NS


def _merge(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


@dataclass(slots=True)
class _Stay:
    host: str
    tenant: str
    vm: str
    components: int
    known: int
    start: int
    end: int | None = None


@dataclass(slots=True)
class _Delay:
    seq: int
    decision_id: str
    at: int
    host: str
    tenant: str
    vm: str
    vuln: str
    component: int
    label: str
    components: int
    predicted: str | None
    basis: str | None
    confidence: float | None


@dataclass
class _Revision:
    first: dt.datetime
    last: dt.datetime
    decisions: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)


class Pvdbish(Protocol):
    """What the report needs of the PVDB (``engine.pvdb.Pvdb`` is one)."""

    def affecting(self, components: list[Component], *, as_of: dt.datetime) -> Any: ...

    def show(self, vuln_id: str) -> dict[str, Any]: ...


class ReportBuilder:
    """One pass over the records (:meth:`add`), then :meth:`finish` (see the module)."""

    def __init__(self, period: Period, *,
                 replay: Callable[[DecisionRecord], Replayed] | None = None) -> None:
        self.period = period
        self.replay = replay
        self._start_ns, self._end_ns = _ns(period.start), _ns(min(period.end, period.as_of))
        self._components: dict[bytes, int] = {}
        self._component_lists: list[list[dict[str, Any]]] = []
        self._known: dict[frozenset[str], int] = {}
        self._known_sets: list[frozenset[str]] = []
        self._stays: list[_Stay] = []
        self._open: dict[tuple[str, str], _Stay] = {}
        self._delays: list[_Delay] = []
        self._revisions: dict[str | None, _Revision] = {}
        self._diverged: list[dict[str, Any]] = []
        self._postures: dict[str, tuple[dict[str, Any], Posture]] = {}
        """Host posture documents (input schema version 2) by record id: the decisions
        after them name them and are read with them."""
        self._names: dict[str, str] = {}
        self.replayed = 0
        self.decisions = 0
        self.verdicts: Counter[str] = Counter()
        self.hosts: set[str] = set()
        self.tenants: set[str] = set()
        self.first: dt.datetime | None = None
        self.last: dt.datetime | None = None
        self.unplaced_patch = 0
        """``patch`` placements, whose patched configuration's components are not in the
        record (their exposure is not counted)."""

    def wants(self, row: StoredRow) -> bool:
        at = _ns(row.timestamp)
        return self._start_ns <= at < self._end_ns

    def _name(self, text: str) -> str:
        """One string object per distinct host, tenant or VM name (a month's stays hold
        each many times)."""
        return self._names.setdefault(text, text)

    def add(self, row: StoredRow) -> dict[str, Any] | None:
        """The placement of one record in the period (None when outside the period or
        another tenant's)."""
        if row.path == POSTURE_PATH:  # a host's posture: read with the decisions on it
            try:
                judged = posture_of(orjson.loads(row.result_text), digest="",
                                    decision_id=row.decision_id)
            except ValueError:
                return None  # not a posture: the decisions on it read as they stand
            self._postures[row.decision_id] = (orjson.loads(row.input_text), judged)
            return None
        at = _ns(row.timestamp)
        if not self._start_ns <= at < self._end_ns:
            return None
        document = orjson.loads(row.input_text)
        posture = (document.get("posture") or {}).get("decision_id") \
            if document.get("schema_version") == 2 else None
        result = orjson.loads(row.result_text)
        if isinstance(posture, str) and posture in self._postures:
            # the placement as decided: the host's posture and the request's own decision
            posture_document, judged = self._postures[posture]
            document = merge_documents(posture_document, document)
            if row.error is None:
                with contextlib.suppress(ValueError):  # a malformed one as it stands
                    result = compose(Decision.parse(result), judged).to_json()
        request = document.get("request") or {}
        tenant = self._name(str(request.get("tenant", "")))
        if self.period.tenant is not None and tenant != self.period.tenant:
            return None
        host = document.get("host") or {}
        host_id = self._name(str(host.get("id", "")))
        vm = self._name(str((request.get("vm") or {}).get("name", "")))
        verdict = str(result.get("verdict"))
        attestation = host.get("attestation") or {}
        image = attestation.get("image") or None
        self.decisions += 1
        self.verdicts[verdict] += 1
        self.hosts.add(host_id)
        self.tenants.add(tenant)
        self.first = self.first or row.timestamp
        self.last = row.timestamp
        revision = self._revisions.get(row.bundle_revision)
        if revision is None:
            revision = self._revisions[row.bundle_revision] = _Revision(row.timestamp,
                                                                        row.timestamp)
        revision.last = row.timestamp
        revision.decisions += 1
        revision.verdicts[verdict] += 1
        vulns = document.get("vulnerabilities") or []
        known_then = []
        for v in vulns:
            fix = v.get("fix") or {}
            availability = fix.get("availability") or {}
            known_then.append({
                "id": v.get("id"), "component": v.get("component"),
                "kev": (v.get("kev") or {}).get("date_added"), "max_cvss": v.get("max_cvss"),
                "fix_status": fix.get("status"), "fix_date": availability.get("date"),
                "fix_basis": availability.get("basis")})
        known_then.sort(key=_vuln_order)
        components = host.get("components") or []
        key = orjson.dumps(components, option=orjson.OPT_SORT_KEYS)
        comp_id = self._components.get(key)
        if comp_id is None:
            comp_id = self._components[key] = len(self._component_lists)
            self._component_lists.append(components)
        known = frozenset([str(v.get("id")) for v in vulns] +
                          [str(u.get("id")) for u in document.get("undetermined") or []])
        known_id = self._known.get(known)
        if known_id is None:
            known_id = self._known[known] = len(self._known_sets)
            self._known_sets.append(known)
        if verdict == "admit":
            stay = _Stay(host_id, tenant, vm, comp_id, known_id, at)
            previous = self._open.get((tenant, vm))
            if previous is not None:
                previous.end = at
            self._open[(tenant, vm)] = stay
            self._stays.append(stay)
        elif verdict == "patch":
            self.unplaced_patch += 1
        if verdict == "delay":
            by_id = {v.get("id"): v for v in vulns}
            labels = {i: _label(c) for i, c in enumerate(components)}
            for reason in result.get("reasons") or []:
                if reason.get("rule") != "fix_expected_within_window":
                    continue
                v = by_id.get(reason.get("vulnerability")) or {}
                availability = (v.get("fix") or {}).get("availability") or {}
                index = int(v.get("component", 0))
                self._delays.append(_Delay(
                    row.seq, row.decision_id, at, host_id, tenant, vm, str(v.get("id")),
                    index, labels.get(index, str(index)), comp_id, availability.get("date"),
                    availability.get("basis"), availability.get("confidence")))
        if self.replay is not None:
            replayed = self.replay(row.record())
            self.replayed += 1
            if replayed.diverged:
                self._diverged.append({
                    "seq": row.seq, "decision_id": row.decision_id, "time": row.timestamp,
                    "host": host_id, "tenant": tenant,
                    "recorded": replayed.recorded_verdict,
                    "recorded_revision": replayed.recorded_revision,
                    "replayed": replayed.replayed_verdict,
                    "replayed_revision": replayed.replayed_revision,
                    "differences": replayed.differences[:5]})
        return {
            "seq": row.seq, "decision_id": row.decision_id, "time": row.timestamp,
            "tenant": tenant, "vm": vm, "host": host_id, "verdict": verdict,
            "image": None if image is None else f"{image.get('name')}@{image.get('version')}",
            "attestation": attestation.get("status"), "bundle_revision": row.bundle_revision,
            "reasons": sorted({str(r.get("rule")) for r in result.get("reasons") or []}),
            "known_then": known_then,
        }

    # --- after the pass ---------------------------------------------------------------

    def finish(self, pvdb: Pvdbish | None, *, images: list[dict[str, Any]] | None = None,
               rollouts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Everything but the placements, as JSON-able values."""
        end = self._end_ns
        for stay in self._stays:
            if stay.end is None or stay.end > end:
                stay.end = end
        notes: list[str] = []
        now: dict[int, dict[str, dict[int, Any]]] = {}
        published: dict[str, dt.datetime | None] = {}
        if pvdb is None:
            notes.append("no PVDB: what is known now, and when fixes shipped, is not shown")
        else:
            now = self._known_now(pvdb)
        discovered = self._discovered(pvdb, now, published) if pvdb is not None else {}
        delays = self._delay_outcomes(now) if pvdb is not None else \
            [self._delay_json(d, None) for d in self._delays]
        if self.unplaced_patch:
            notes.append(f"{self.unplaced_patch} placement(s) were decided `patch` (placed on"
                         " a patched configuration): the record does not list that "
                         "configuration's components, so their exposure is not counted")
        return {
            "summary": {
                "decisions": self.decisions, "verdicts": dict(sorted(self.verdicts.items())),
                "hosts": len(self.hosts), "tenants": len(self.tenants),
                "first": self.first, "last": self.last,
                "admitted_stays": len(self._stays)},
            "discovered_after": discovered,
            "delays": delays,
            "patched_configurations": self._configurations(images or []),
            "rollouts": [r for r in rollouts or [] if self._known_by_as_of(r.get("created_at"))],
            "policy": {
                "revisions": [
                    {"revision": rev, "first": r.first, "last": r.last,
                     "decisions": r.decisions, "verdicts": dict(sorted(r.verdicts.items()))}
                    for rev, r in sorted(self._revisions.items(), key=lambda i: i[1].first)],
                "replayed": self.replayed if self.replay is not None else None,
                "diverged": self._diverged},
            "notes": notes,
        }

    def _known_by_as_of(self, value: Any) -> bool:
        when = _aware(value)
        return when is None or when <= self.period.as_of

    def _known_now(self, pvdb: Pvdbish) -> dict[int, dict[str, dict[int, Any]]]:
        """Per recorded component list: vulnerability -> component index -> finding."""
        out: dict[int, dict[str, dict[int, Any]]] = {}
        needed = {s.components for s in self._stays} | {d.components for d in self._delays}
        for comp_id in sorted(needed):
            components = [Component.model_validate(c) for c in self._component_lists[comp_id]]
            report = pvdb.affecting(components, as_of=self.period.as_of)
            found: dict[str, dict[int, Any]] = defaultdict(dict)
            for finding in report.findings:
                found[finding.vuln_id][finding.component] = finding
            out[comp_id] = dict(found)
        return out

    def _published(self, pvdb: Pvdbish, vuln_id: str,
                   cache: dict[str, dt.datetime | None]) -> dt.datetime | None:
        if vuln_id not in cache:
            from engine.errors import NotFoundError

            try:
                shown = pvdb.show(vuln_id)
            except NotFoundError:  # not in the PVDB under that id: no date
                shown = {}
            detail = shown.get(vuln_id, {}) if "aliases_of" in shown else shown
            dates = [_aware(r.get("published")) for r in detail.get("vulnerabilities", [])]
            known = [d for d in dates if d is not None]
            cache[vuln_id] = min(known) if known else None
        return cache[vuln_id]

    def _discovered(self, pvdb: Pvdbish, now: dict[int, dict[str, dict[int, Any]]],
                    published: dict[str, dt.datetime | None]) -> dict[str, Any]:
        as_of = self.period.as_of
        new_by_pair: dict[tuple[int, int], list[str]] = {}
        facts: dict[str, dict[str, Any]] = {}
        per_host: dict[str, list[tuple[int, int]]] = defaultdict(list)
        per_host_vuln: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
        per_tenant: dict[str, list[float]] = defaultdict(list)
        tenant_vms: dict[str, set[str]] = defaultdict(set)
        for stay in self._stays:
            pair = (stay.components, stay.known)
            if pair not in new_by_pair:
                known = self._known_sets[stay.known]
                new = []
                for vuln_id, by_component in now.get(stay.components, {}).items():
                    if vuln_id in known:
                        continue
                    when = self._published(pvdb, vuln_id, published)
                    if when is not None and when > as_of:
                        continue  # not known by as_of either
                    new.append(vuln_id)
                    if vuln_id not in facts:
                        finding = next(iter(by_component.values()))
                        kev = finding.kev
                        facts[vuln_id] = {
                            "id": vuln_id, "published": when,
                            "kev": None if kev is None or kev.date_added > as_of.date()
                            else kev.date_added,
                            "max_cvss": finding.max_base_score, "title": finding.title}
                new_by_pair[pair] = sorted(new)
            new = new_by_pair[pair]
            if not new or stay.end is None or stay.end <= stay.start:
                continue
            span = (stay.start, stay.end)
            per_host[stay.host].append(span)
            for vuln_id in new:
                per_host_vuln[(stay.host, vuln_id)].append(span)
            per_tenant[stay.tenant].append((stay.end - stay.start) / DAY_NS)
            tenant_vms[stay.tenant].add(stay.vm)
        vulns = []
        for vuln_id, info in facts.items():
            hosts = {h: _union_days(spans) for (h, v), spans in per_host_vuln.items()
                     if v == vuln_id}
            if not hosts:
                continue
            vulns.append({**info, "hosts": sorted(hosts),
                          "exposure_days": round(sum(hosts.values()), 2)})
        vulns.sort(key=lambda v: _vuln_order(v))
        daily = self._daily(per_host)
        return {
            "vulnerabilities": vulns,
            "hosts": sorted(({"host": h, "exposure_days": round(_union_days(s), 2),
                              "vulnerabilities": sorted(v for (hh, v) in per_host_vuln
                                                        if hh == h)}
                             for h, s in per_host.items()),
                            key=lambda r: (-r["exposure_days"], r["host"])),
            "tenants": sorted(({"tenant": t, "vm_days": round(sum(d), 2),
                                "vms": len(tenant_vms[t])} for t, d in per_tenant.items()),
                              key=lambda r: (-r["vm_days"], r["tenant"])),
            "daily": daily,
        }

    def _daily(self, per_host: dict[str, list[tuple[int, int]]]) -> list[dict[str, Any]]:
        """Hosts exposed (a VM on it, affected by a vulnerability unknown at placement)
        on each day of the period."""
        if not per_host:
            return []
        first, last = _day(self._start_ns), _day(max(self._end_ns - 1, self._start_ns))
        counts: Counter[dt.date] = Counter()
        for spans in per_host.values():
            days: set[dt.date] = set()
            for a, b in _merge(spans):
                day = _day(a)
                while day <= _day(max(b - 1, a)):
                    days.add(day)
                    day += dt.timedelta(days=1)
            counts.update(days)
        out = []
        day = first
        while day <= last:
            out.append({"date": day, "hosts_exposed": counts.get(day, 0)})
            day += dt.timedelta(days=1)
        return out

    def _delay_json(self, d: _Delay, actual: dict[str, Any] | None) -> dict[str, Any]:
        row: dict[str, Any] = {
            "seq": d.seq, "decision_id": d.decision_id,
            "time": dt.datetime.fromtimestamp(d.at / 1e9, dt.UTC), "host": d.host,
            "tenant": d.tenant, "vm": d.vm, "vulnerability": d.vuln, "component": d.label,
            "predicted": d.predicted, "basis": d.basis, "confidence": d.confidence}
        row.update(actual or {"shipped": None, "shipped_source": None, "error_days": None,
                              "status": "unknown (no PVDB)"})
        return row

    def _delay_outcomes(self, now: dict[int, dict[str, dict[int, Any]]]
                        ) -> list[dict[str, Any]]:
        as_of = self.period.as_of.date()
        out = []
        for d in self._delays:
            finding = now.get(d.components, {}).get(d.vuln, {}).get(d.component)
            shipped = None
            source = None
            if finding is None:
                status = "no longer reported as affecting the component"
            else:
                availability = finding.fix.availability
                vendor = getattr(availability.basis, "value", availability.basis) == "vendor"
                if vendor and availability.date is not None and availability.date <= as_of:
                    shipped, source = availability.date, availability.source
                    status = "shipped"
                else:
                    status = "not shipped by the as-of date"
            error = None
            if shipped is not None and d.predicted:
                error = (shipped - dt.date.fromisoformat(d.predicted)).days
            out.append(self._delay_json(d, {"shipped": shipped, "shipped_source": source,
                                            "error_days": error, "status": status}))
        return out

    def _configurations(self, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Per image version, when it was made, built, attested, approved, made a group's
        target, rolled back (up to ``as_of``)."""
        versions: dict[str, dict[str, Any]] = {}
        for entry in history:
            at = _aware(entry.get("at"))
            if at is None or at > self.period.as_of or not entry.get("image_name"):
                continue
            label = f"{entry['image_name']}@{entry.get('image_version')}"
            item = versions.setdefault(label, {
                "image": label, "parent": None, "made": None, "built": None,
                "attested": None, "approved": None, "failed": None, "retired": None,
                "targets": [], "events": []})
            action = entry.get("action")
            what = (f"{action} {entry.get('after')}" if action in ("create", "status", "build")
                    else f"{action} {entry.get('group_name') or ''}".strip())
            item["events"].append({"at": at, "event": what, "actor": entry.get("actor"),
                                   "reason": entry.get("reason")})
            if action == "create":
                item["made"] = at
                item["parent"] = (entry.get("detail") or {}).get("parent_version")
            elif action in ("status", "build") and entry.get("after") in ("built", "attested",
                                                               "approved", "failed",
                                                               "retired"):
                item[str(entry["after"])] = at
            elif action in ("target", "rollback"):
                item["targets"].append(
                    {"group": entry.get("group_name"), "at": at, "action": action})
        return sorted(versions.values(), key=lambda v: v["events"][0]["at"])


def _aware(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str):
        try:
            return _aware(dt.datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def _label(component: dict[str, Any]) -> str:
    name = component.get("product") or component.get("purl") or component.get("cpe") or \
        component.get("kind")
    return f"{name} {component.get('version', '')}".strip()
