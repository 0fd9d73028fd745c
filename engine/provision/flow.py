"""ProvisionVM: one VM request through every part, each step recorded.

:meth:`ProvisionFlow.run` takes a :class:`ProvisionAsk` and returns an :class:`Outcome`
(never raises for a failed step: a failure is a ``reject`` naming the step):

1. **candidates**: hosts from the fleet inventory with room, the tenant's labels and
   allowed hosts, the requested image version; hosts the policy likely admits first
   (the :class:`~engine.provision.selection.DecisionMemo`), then spread;
2. **attestation**: a fresh verified result for the first candidate that has one,
   through the :class:`~engine.provision.attestation.HostAttestation` port (a cached
   result younger than the TTL, or the host's agent challenged with a new nonce); no
   candidate attested is a reject naming, per host, the step and why;
3. **patched configuration**: the attested image's patched version from the image
   catalog (:class:`~engine.provision.sources.CatalogFile`);
4. **decision**: the PVDB's findings for the attested components (estimated fix dates
   within the predictor's window), the input document, the policy's verdict, the
   decision log (:class:`~engine.provision.deciding.Deciding`);
5. **preparation**: a ``delay`` whose obligations ask for a patched configuration that
   does not exist has it queued (:class:`~engine.provision.sources.PreparationQueue`);
6. **target**: where the VM is to run: the decided host (``admit``), a host with room
   on the patched image version (``patch``; the decided host, to be patched first, when
   none runs it), and the attested hosts on the same image version it may be pinned to.

:meth:`ProvisionFlow.report` turns an outcome with a decision into the tenant's signed
report (:func:`engine.provision.report.build_report`).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, overload

from engine.decide import Image, PatchedConfiguration, RequestFacts, VmShape
from engine.errors import VigilError
from engine.fleet import FleetSnapshot, Host, HostState
from engine.keys import SigningKey
from engine.provision.attestation import Attested, HostAttestation, NotAttested
from engine.provision.deciding import Deciding
from engine.provision.placement import Placement
from engine.provision.report import TenantReport, build_report, sign_report
from engine.provision.selection import Constraints, DecisionMemo, candidates
from engine.provision.sources import FleetSource, PatchedSource, Preparation

FlowVerdict = Literal["admit", "patch", "delay", "reject"]

STEP_CANDIDATES = "candidates"
STEP_ATTESTATION = "attestation"
STEP_PATCHED = "patched configuration"
STEP_DECISION = "decision"
STEP_PREPARATION = "preparation"
STEP_TARGET = "target"

HOST_REPORT_TENANT = "fleet-operator"
"""The tenant a host's own report (:meth:`ProvisionFlow.assess`) is decided for."""
MAX_NAMED_HOSTS = 3
"""Hosts named one by one in a reason; the rest are counted."""
MAX_ATTESTATION_TRIES = 8
"""Candidates asked for an attestation result before the request is rejected."""


@dataclass(frozen=True)
class ProvisionAsk:
    """A tenant's request for one VM."""

    tenant: str
    vm: VmShape
    requested_image: Image | None = None
    requested_patch_level: str | None = None
    host_labels: Mapping[str, str] = field(default_factory=dict)
    hosts: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Step:
    """One step of the flow: whether it went through, what it found, how long it took."""

    name: str
    ok: bool
    detail: str
    seconds: float


@dataclass(frozen=True)
class Outcome:
    """What the flow decided, and on what."""

    verdict: FlowVerdict
    reasons: tuple[str, ...]
    warnings: Sequence[str] = ()
    """What was tolerated (the verdict's warnings' messages, read when asked: a large
    host's verdict tolerates thousands of findings, an admission answer names a few)."""
    steps: tuple[Step, ...] = ()
    failed_step: str | None = None
    """The step that ended the flow without a decision (None when the policy decided)."""
    host: Host | None = None
    """The host that was decided."""
    attested: Attested | None = None
    placement: Placement | None = None
    patched: PatchedConfiguration = field(
        default_factory=lambda: PatchedConfiguration(state="none"))
    target_host: str | None = None
    """Where the VM is to be launched."""
    target_image_version: str | None = None
    """The image version the VM must run on."""
    patch_host_first: bool = False
    """``patch`` with no host on the patched version: the target host is patched first."""
    patched_hosts: tuple[str, ...] = ()
    """For ``patch``: the hosts in service on the patched image version."""
    pinned_hosts: tuple[str, ...] = ()
    """For ``admit``: the attested hosts on the decided host's image version with room
    (decided host first), the VM may run on."""
    recheck_at: dt.datetime | None = None
    preparation: tuple[str, ...] = ()
    """Preparation requests queued for a ``delay``."""

    @property
    def decision_id(self) -> str | None:
        return self.placement.verdict.decision_id if self.placement is not None else None


class _Said(Protocol):
    @property
    def message(self) -> str: ...


class Messages(Sequence[str]):
    """The messages of ``reasons`` then the ``extra`` texts, each read when asked (a
    slice reads only its own)."""

    __slots__ = ("_extra", "_reasons")

    def __init__(self, reasons: Sequence[_Said], extra: Sequence[str] = ()) -> None:
        self._reasons = reasons
        self._extra = tuple(extra)

    def __len__(self) -> int:
        return len(self._reasons) + len(self._extra)

    def _one(self, i: int) -> str:
        n = len(self._reasons)
        return self._reasons[i].message if i < n else self._extra[i - n]

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[str, ...]: ...

    def __getitem__(self, i: int | slice) -> str | tuple[str, ...]:
        if isinstance(i, slice):
            return tuple(self._one(k) for k in range(*i.indices(len(self))))
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._one(i)

    def __iter__(self) -> Iterator[str]:
        yield from (r.message for r in self._reasons)
        yield from self._extra

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _named(items: list[str]) -> str:
    more = len(items) - MAX_NAMED_HOSTS
    return "; ".join(items[:MAX_NAMED_HOSTS]) + (f"; and {more} more" if more > 0 else "")


class ProvisionFlow:
    """The ProvisionVM flow over its ports."""

    def __init__(self, *, fleet: FleetSource, attestation: HostAttestation,
                 deciding: Deciding, patched: PatchedSource,
                 preparation: Preparation | None = None,
                 pin_attestation: HostAttestation | None = None,
                 memo: DecisionMemo | None = None,
                 clock: Callable[[], dt.datetime] = _utcnow) -> None:
        """``pin_attestation`` (default: ``attestation``) says which other hosts are
        attested when the hosts an ``admit`` may run on are listed; give a cheap one
        (cached results) so that listing them challenges no agent."""
        self.fleet = fleet
        self.attestation = attestation
        self.pin_attestation = pin_attestation or attestation
        self.deciding = deciding
        self.patched = patched
        self.preparation = preparation
        self.memo = memo or DecisionMemo()
        self.clock = clock

    def readiness(self) -> list[str]:
        return self.deciding.readiness()

    def run(self, ask: ProvisionAsk, *, record: bool = True) -> Outcome:
        """The flow for ``ask``. ``record=False`` (a dry run) leaves no trace: no
        decision-log row, no preparation request, no agent challenged."""
        steps: list[Step] = []
        clock = [time.perf_counter()]

        def step(name: str, ok: bool, detail: str) -> None:
            now = time.perf_counter()
            steps.append(Step(name, ok, detail, now - clock[0]))
            clock[0] = now

        def fail(name: str, reason: str) -> Outcome:
            step(name, False, reason)
            return Outcome("reject", (reason,), steps=tuple(steps), failed_step=name)

        # (1): candidates.
        snapshot = self.fleet.snapshot()
        if isinstance(snapshot, str):
            return fail(STEP_CANDIDATES, snapshot)
        want = Constraints(vcpus=ask.vm.vcpus, memory_mib=ask.vm.memory_mib,
                           image_version=ask.requested_image.version
                           if ask.requested_image else None,
                           host_labels=dict(ask.host_labels), hosts=ask.hosts)
        selection = candidates(snapshot, want, self.memo)
        if not selection.candidates:
            return fail(STEP_CANDIDATES, selection.why_none() + "; ask for a smaller VM, "
                        "fewer constraints, or add capacity")
        step(STEP_CANDIDATES, True, f"{len(selection.candidates)} host(s) fit")

        # (2): a fresh verified attestation result.
        attested: Attested | None = None
        host: Host | None = None
        missing: list[str] = []
        # a dry run challenges no agent (a nonce issued is a write): cached results only
        attestation = self.attestation if record else self.pin_attestation
        for candidate in selection.candidates[:MAX_ATTESTATION_TRIES]:
            got = attestation.attest(candidate.host)
            if isinstance(got, NotAttested):
                missing.append(f"{candidate.host.id}: {got.step}: {got.reason}")
                continue
            attested, host = got, candidate.host
            break
        if attested is None or host is None:
            return fail(STEP_ATTESTATION, "no host with room has a fresh verified "
                        "attestation result (" + _named(missing) + "); attest the hosts "
                        "and try again")
        result = attested.result
        step(STEP_ATTESTATION, True, f"{host.id}: {result.status} ({attested.source})")

        # (3): the patched configuration from the image catalog.
        patched = (self.patched.patched(result.image) if result.image is not None
                   else PatchedConfiguration(state="none"))
        step(STEP_PATCHED, True, patched.state + (f" {patched.image.name} "
                                                  f"{patched.image.version}"
                                                  if patched.image else ""))

        # (4): PVDB, input document, policy, decision log.
        request = RequestFacts(tenant=ask.tenant, vm=ask.vm,
                               requested_patch_level=ask.requested_patch_level,
                               requested_image=ask.requested_image)
        now = self.clock()
        try:
            placement = self.deciding.decide(request, result, host_id=host.id,
                                             patched=patched, now=now, record=record,
                                             attestation_token=attested.ear)
        except VigilError as exc:
            return fail(STEP_DECISION, exc.summary)
        verdict = placement.verdict
        self.memo.remember(host.id, result.issued_at, verdict.verdict)
        step(STEP_DECISION, True, f"{verdict.verdict} (decision {verdict.decision_id})")
        reasons = tuple(r.message for r in verdict.reasons)
        extra: list[str] = []

        # (5): a delay that needs a patched configuration has it prepared.
        preparation: tuple[str, ...] = ()
        wants_preparation = any(o.type == "prepare_patched_configuration"
                                for o in verdict.obligations)
        if (verdict.verdict == "delay" and wants_preparation and record
                and self.preparation is not None and result.image is not None):
            try:
                preparation = tuple(self.preparation.request(result.image,
                                                             result.components, now))
                step(STEP_PREPARATION, True, f"{len(preparation)} preparation request(s) "
                     "queued")
            except VigilError as exc:
                extra.append(f"the patched configuration could not be queued for "
                             f"preparation: {exc.summary}")
                step(STEP_PREPARATION, False, exc.summary)

        # (6): where the VM goes.
        recheck = next((o.at for o in verdict.obligations if o.type == "recheck_at"), None)
        base = Outcome(verdict.verdict, reasons, Messages(verdict.warnings, extra),
                       host=host,
                       attested=attested, placement=placement, patched=patched,
                       recheck_at=recheck if verdict.verdict == "delay" else None,
                       preparation=preparation)
        if verdict.verdict == "patch":
            return self._patch_target(base, snapshot, ask, steps, step)
        if verdict.verdict == "admit":
            pinned = self._pinned(snapshot, host, ask)
            step(STEP_TARGET, True, f"{host.id} (may run on {len(pinned)} attested host(s))")
            return _with(base, steps, target_host=host.id,
                         target_image_version=host.image_version, pinned_hosts=pinned)
        return _with(base, steps)

    def assess(self, host_id: str, *, tenant: str = HOST_REPORT_TENANT) -> Outcome | None:
        """What a placement on ``host_id`` would be told now: its cached attestation
        result, patched configuration, PVDB findings and the policy's verdict for a
        smallest VM, decided without a decision-log row (None: no such host)."""
        snapshot = self.fleet.snapshot()
        if isinstance(snapshot, str):
            return Outcome("reject", (snapshot,), failed_step=STEP_CANDIDATES)
        host = snapshot.host_map().get(host_id)
        if host is None:
            return None
        got = self.pin_attestation.attest(host)
        result = got.result if isinstance(got, Attested) else None
        patched = (self.patched.patched(result.image) if result is not None
                   and result.image is not None else PatchedConfiguration(state="none"))
        request = RequestFacts(tenant=tenant, vm=VmShape(name="assessment", vcpus=1,
                                                         memory_mib=1))
        try:
            placement = self.deciding.decide(request, result, host_id=host.id,
                                             patched=patched, now=self.clock(),
                                             record=False)
        except VigilError as exc:
            return Outcome("reject", (exc.summary,), host=host, failed_step=STEP_DECISION)
        warnings = tuple(w.message for w in placement.verdict.warnings)
        if isinstance(got, NotAttested):
            warnings = (f"{got.step}: {got.reason}", *warnings)
        return Outcome(placement.verdict.verdict,
                       tuple(r.message for r in placement.verdict.reasons), warnings,
                       host=host, attested=got if isinstance(got, Attested) else None,
                       placement=placement, patched=patched)

    def _pinned(self, snapshot: FleetSnapshot, host: Host, ask: ProvisionAsk
                ) -> tuple[str, ...]:
        """The decided host and every other in-service host with room on its image
        version, the tenant's labels, and a fresh attestation result."""
        want = Constraints(vcpus=ask.vm.vcpus, memory_mib=ask.vm.memory_mib,
                           image_version=host.image_version,
                           host_labels=dict(ask.host_labels), hosts=ask.hosts)
        out = [host.id]
        for c in candidates(snapshot, want).candidates:
            if c.host.id != host.id and isinstance(self.pin_attestation.attest(c.host),
                                                   Attested):
                out.append(c.host.id)
        return tuple(out)

    def _patch_target(self, base: Outcome, snapshot: FleetSnapshot, ask: ProvisionAsk,
                      steps: list[Step], step: Callable[[str, bool, str], None]) -> Outcome:
        assert base.placement is not None and base.host is not None
        verdict = base.placement.verdict
        image: Image | None = next((o.image for o in verdict.obligations
                                    if o.type == "place_on_image" and o.image is not None),
                                   base.patched.image)
        if image is None:
            reason = "the policy asks for a patched configuration but names no image"
            step(STEP_TARGET, False, reason)
            return _with(base, steps, verdict="reject", reasons=(*base.reasons, reason),
                         failed_step=STEP_TARGET)
        on_version = tuple(sorted(h.id for h in snapshot.hosts
                                  if h.state == HostState.IN_SERVICE
                                  and h.image_version == image.version))
        want = Constraints(vcpus=ask.vm.vcpus, memory_mib=ask.vm.memory_mib,
                           image_version=image.version, host_labels=dict(ask.host_labels),
                           hosts=ask.hosts)
        fits = candidates(snapshot, want).candidates
        attested = [c.host.id for c in fits
                    if isinstance(self.pin_attestation.attest(c.host), Attested)]
        if attested:
            target, first = attested[0], False
        elif fits:
            target, first = fits[0].host.id, False
        else:
            target, first = base.host.id, True
        step(STEP_TARGET, True, f"{target} on {image.version}"
             + (" (to be patched first)" if first else ""))
        return _with(base, steps, target_host=target, target_image_version=image.version,
                     patch_host_first=first, patched_hosts=on_version,
                     pinned_hosts=tuple(attested))

    def report(self, outcome: Outcome, key: SigningKey | None, *,
               report_id: str | None = None) -> tuple[TenantReport, str | None] | None:
        """The tenant's report of a decided outcome, signed when there is a key (None
        when the flow ended before a decision)."""
        if outcome.placement is None:
            return None
        ear = outcome.attested.ear if outcome.attested is not None else None
        report = build_report(outcome.placement, ear=ear, now=self.clock(),
                              report_id=report_id)
        return report, (sign_report(report, key) if key is not None else None)


def _with(base: Outcome, steps: list[Step], **changes: object) -> Outcome:
    from dataclasses import replace

    return replace(base, steps=tuple(steps), **changes)  # type: ignore[arg-type]
