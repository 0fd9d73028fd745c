"""Step 5: matching evidence against the approved images' reference manifests.

:class:`ReferenceSet` finds the approved image version whose manifest
(:mod:`engine.attest.manifests`) the evidence matches, comparing only what steps 3 and 4
proved: quoted PCR values, and the events of an event log that replays to them. When
none matches it lists, for the closest manifest, each :class:`Difference`: the PCR or
event, what was expected, what was found, named as :mod:`engine.attest.uefi_names`
names events.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from engine.attest.errors import AttestError
from engine.attest.eventlog import Event, EventLog
from engine.attest.manifests import ExpectedEvent, ReferenceManifest, load_manifest_folder
from engine.attest.uefi_names import Aspect, event_aspect, label_events
from engine.keys import VerificationKey

__all__ = [
    "STEP_REFERENCE",
    "Candidate",
    "Difference",
    "MatchReport",
    "ReferenceMismatch",
    "ReferenceSet",
]

STEP_REFERENCE = "5 reference values"


class ReferenceMismatch(AttestError):
    """Step 5: the evidence matches no approved image version."""

    def __init__(self, reason: str, differences: Sequence[Difference] = ()) -> None:
        super().__init__(STEP_REFERENCE, reason)
        self.differences = tuple(differences)



class Difference(BaseModel):
    """One way the evidence differs from a manifest."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["pcr", "event-changed", "event-missing", "event-unexpected", "no-bank"]
    aspect: Aspect
    """Whether it concerns code that ran or configuration (the AR4SI claim it affects)."""
    pcr: int | None = None
    bank: str | None = None
    component: str | None = None
    """What the manifest expected there (or, for an unexpected event, what was found)."""
    event_type: str | None = None
    event_index: int | None = None
    """The event's position in the host's log."""
    expected: str | None = None
    """Expected digest or PCR value (hex), or a description."""
    actual: str | None = None
    """Found digest or PCR value (hex), or a description."""

    def reason(self) -> str:
        where = f"PCR {self.pcr}" if self.pcr is not None else ""
        event = ""
        if self.event_type is not None:
            at = f", event {self.event_index}" if self.event_index is not None else ""
            event = f" {self.component} ({self.event_type}{at})"
        bank = f" {self.bank}" if self.bank else ""
        if self.kind == "pcr":
            return f"{where}{bank}: expected {self.expected}, actual {self.actual}"
        if self.kind == "event-changed":
            return f"{where}{event}:{bank} digest expected {self.expected}, actual {self.actual}"
        if self.kind == "event-missing":
            return f"{where}{event}: expected event is missing (digest {self.expected})"
        if self.kind == "event-unexpected":
            return f"{where}{event}: unexpected event (digest {self.actual})"
        return f"{self.expected}; {self.actual}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """How the evidence compares with one manifest."""

    manifest: ReferenceManifest
    differences: tuple[Difference, ...]


@dataclass(frozen=True, slots=True)
class MatchReport:
    """The outcome of step 5."""

    matched: ReferenceManifest | None
    """The approved image version the evidence matches; ``None`` when there is none."""
    closest: Candidate | None
    """When nothing matches: the manifest with the fewest differences."""
    candidates: tuple[Candidate, ...]

    @property
    def differences(self) -> tuple[Difference, ...]:
        return () if self.matched is not None or self.closest is None else \
            self.closest.differences


class ReferenceSet:
    """The approved images' manifests, every signature verified."""

    def __init__(self, manifests: Iterable[ReferenceManifest],
                 refused: Iterable[tuple[str, str]] = ()) -> None:
        self.manifests = tuple(sorted(manifests, key=lambda m: (m.image.name, m.image.version)))
        self.refused = tuple(refused)
        """Manifests of the folder that did not verify: (file name, reason), never matched."""

    @classmethod
    def load(cls, folder: Path, keys: Sequence[VerificationKey]) -> ReferenceSet:
        """The ``*.jws`` in ``folder`` signed by a trusted key; the others are refused
        (:attr:`refused`) and never matched."""
        manifests, refused = load_manifest_folder(folder, keys)
        return cls(manifests, refused)

    def match(self, quoted: Mapping[str, Mapping[int, bytes]], log: EventLog | None
              ) -> MatchReport:
        """Compare the attested PCRs and log with every manifest.

        ``quoted`` are the PCR values step 3 proved; ``log`` an event log step 4 proved
        replays to them (``None`` when the evidence has none). Events of PCRs the quote
        does not cover are not attested and are ignored.
        """
        quoted_pcrs = {index for values in quoted.values() for index in values}
        by_pcr: dict[int, list[tuple[Event, str, str | None]]] = {}
        if log is not None:
            extended = [e for e in log.events if e.extended and e.pcr in quoted_pcrs]
            for item in label_events(extended):
                by_pcr.setdefault(item[0].pcr, []).append(item)
        candidates = tuple(Candidate(m, tuple(_compare(m, quoted, log, by_pcr)))
                           for m in self.manifests)
        for candidate in candidates:
            if not candidate.differences:
                return MatchReport(candidate.manifest, None, candidates)
        closest = min(candidates, key=lambda c: len(c.differences), default=None)
        return MatchReport(None, closest, candidates)


def _compare(manifest: ReferenceManifest, quoted: Mapping[str, Mapping[int, bytes]],
             log: EventLog | None, by_pcr: Mapping[int, list[tuple[Event, str, str | None]]]
             ) -> list[Difference]:
    differences: list[Difference] = []
    event_pcrs_differing: set[int] = set()
    if manifest.event_pcrs:
        differences.extend(_compare_events(manifest, quoted, log, by_pcr))
        event_pcrs_differing = {d.pcr for d in differences if d.pcr is not None}
    common = [bank for bank in manifest.pcrs if bank in quoted]
    if manifest.pcrs and not common:
        differences.append(Difference(
            kind="no-bank", aspect="configuration",
            expected=f"PCR values in bank {', '.join(manifest.pcrs)}",
            actual=f"the quote covers {', '.join(quoted) or 'no bank'}"))
    for bank in common:
        for index, value in sorted(manifest.pcrs[bank].items()):
            actual = quoted[bank].get(index)
            if actual == value or index in event_pcrs_differing:
                continue
            differences.append(Difference(
                kind="pcr", aspect=event_aspect(None, index), pcr=index, bank=bank,
                expected=value.hex(), actual="not quoted" if actual is None else actual.hex()))
    return differences


def _compare_events(manifest: ReferenceManifest, quoted: Mapping[str, Mapping[int, bytes]],
                    log: EventLog | None,
                    by_pcr: Mapping[int, list[tuple[Event, str, str | None]]]
                    ) -> list[Difference]:
    if log is None:
        return [Difference(kind="no-bank", aspect="configuration",
                           expected=f"events for PCRs {manifest.event_pcrs}",
                           actual="the evidence has no event log")]
    banks = [b for b in log.banks if any(b in e.digests for e in manifest.events)]
    if manifest.events and not banks:
        return [Difference(kind="no-bank", aspect="configuration",
                           expected="event digests in bank "
                           f"{', '.join(sorted({b for e in manifest.events for b in e.digests}))}",
                           actual=f"the log has {', '.join(log.banks) or 'no bank'}")]
    primary = "sha256" if "sha256" in banks else (banks[0] if banks else "sha256")
    quoted_pcrs = {index for values in quoted.values() for index in values}
    expected_by_pcr: dict[int, list[ExpectedEvent]] = {}
    for expected_event in manifest.events:
        expected_by_pcr.setdefault(expected_event.pcr, []).append(expected_event)
    differences: list[Difference] = []
    for pcr in manifest.event_pcrs:
        expected = expected_by_pcr.get(pcr, [])
        if pcr not in quoted_pcrs:
            differences.append(Difference(kind="pcr", aspect=event_aspect(None, pcr), pcr=pcr,
                                          expected=f"{len(expected)} events",
                                          actual="not quoted"))
            continue
        actual = by_pcr.get(pcr, [])
        a_keys = [(e.type_name, e.digests.get(primary)) for e, _, _ in actual]
        e_keys = [(x.type, x.digests.get(primary)) for x in expected]
        if a_keys == e_keys and all(_same_digests(x, e) for x, (e, _, _) in zip(
                expected, actual, strict=True)):
            continue
        matcher = difflib.SequenceMatcher(a=e_keys, b=a_keys, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                for x, (e, label, _) in zip(expected[i1:i2], actual[j1:j2], strict=True):
                    differences.extend(_digest_differences(x, e, label))
                continue
            paired = min(i2 - i1, j2 - j1) if op == "replace" else 0
            for k in range(paired):
                x = expected[i1 + k]
                e, label, _ = actual[j1 + k]
                differences.extend(_digest_differences(x, e, label, primary_first=primary))
            for x in expected[i1 + paired:i2]:
                differences.append(Difference(
                    kind="event-missing", aspect=event_aspect(x.type, pcr), pcr=pcr,
                    component=x.component, event_type=x.type,
                    expected=_digest_text(x.digests, primary)))
            for e, label, _ in actual[j1 + paired:j2]:
                differences.append(Difference(
                    kind="event-unexpected", aspect=event_aspect(e.type_name, pcr), pcr=pcr,
                    component=label, event_type=e.type_name, event_index=e.index,
                    actual=_digest_text(e.digests, primary)))
    return differences


def _same_digests(expected: ExpectedEvent, event: Event) -> bool:
    return all(event.digests.get(bank, digest) == digest
               for bank, digest in expected.digests.items())


def _digest_text(digests: Mapping[str, bytes], primary: str) -> str:
    digest = digests.get(primary)
    if digest is None and digests:
        primary, digest = next(iter(digests.items()))
    return f"{primary}:{digest.hex()}" if digest is not None else "(none)"


def _digest_differences(expected: ExpectedEvent, event: Event, label: str, *,
                        primary_first: str | None = None) -> list[Difference]:
    """The banks in which ``event`` differs from ``expected`` (one Difference, in the
    primary bank when that one differs), or a type change."""
    if event.type_name != expected.type:
        return [Difference(kind="event-changed", aspect=event_aspect(expected.type, event.pcr),
                           pcr=event.pcr, component=expected.component,
                           event_type=expected.type, event_index=event.index,
                           expected=f"{expected.type} {_digest_text(expected.digests, 'sha256')}",
                           actual=f"{event.type_name} {_digest_text(event.digests, 'sha256')}")]
    banks = [b for b in expected.digests if b in event.digests
             and event.digests[b] != expected.digests[b]]
    if not banks:
        return []
    bank = primary_first if primary_first in banks else banks[0]
    component = expected.component if expected.component == label else \
        f"{expected.component} (found: {label})"
    return [Difference(kind="event-changed", aspect=event_aspect(expected.type, event.pcr),
                       pcr=event.pcr, bank=bank, component=component,
                       event_type=expected.type, event_index=event.index,
                       expected=expected.digests[bank].hex(), actual=event.digests[bank].hex())]
