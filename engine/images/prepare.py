"""Patched configurations, attested before use: plan -> build -> sign -> stage -> status.

:func:`prepare_image` makes a new version of an approved base image from a patch plan:
the catalog records it ``building``; the builder (:mod:`engine.images.builder`) makes
it; its reference manifest is signed with the image pipeline's key and recorded
(``built``); the staging host (:mod:`engine.images.staging`) boots it and verifies fresh
evidence against that signed manifest. Only then does it become ``attested``; a failed
build or attestation makes it ``failed`` with the reason (which measurement differed),
and nothing else changes: the base version and every group's target stay as they were,
so the previous version stays in service. Approving (``approved``) stays an operator's
act.

:func:`consume_queue` builds what the predictor's preparation queue (``vigil predict
prepare``, :class:`engine.predict.Queue`) asks for: per base image, one plan closing the
requested vulnerabilities whose fix now exists, one new version; each request becomes
``done`` (with the version that closes it) or ``failed`` (with the reason). A request
whose fix does not exist yet stays queued (``waiting``, with the expected date).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.attest import SigningKey, VerificationKey, sign_manifest
from engine.errors import VigilError
from engine.images.builder import Builder
from engine.images.catalog import AppliedPatch, Catalog, ImageRecord
from engine.images.errors import BuildError, ImageError, ImageStateError
from engine.images.graph import PatchCatalogue, from_findings
from engine.images.plan import Plan, make_plan
from engine.images.staging import StagingHost, StagingResult
from engine.model import Component

__all__ = ["Prepared", "QueueOutcome", "consume_queue", "next_version", "prepare_image"]


@dataclass(frozen=True)
class Prepared:
    """The outcome of :func:`prepare_image`."""

    image: ImageRecord
    """The new version as the catalog now holds it (``attested`` or ``failed``)."""
    plan: Plan
    staging: StagingResult | None
    reason: str
    """What happened, in one sentence."""

    @property
    def attested(self) -> bool:
        return self.image.status == "attested"


def next_version(catalog: Catalog, base: ImageRecord) -> str:
    """``<base version>-p<n>``, the first n not in the catalog."""
    n = 1
    while catalog.find(base.name, f"{base.version}-p{n}") is not None:
        n += 1
    return f"{base.version}-p{n}"


def applied_patches(plan: Plan) -> list[AppliedPatch]:
    return [AppliedPatch(id=s.patch, component=s.component, from_version=s.from_version,
                         to_version=s.to_version, fixes=s.closes, reboot=s.reboot)
            for s in plan.steps]


def prepare_image(catalog: Catalog, base: ImageRecord, plan: Plan, *, builder: Builder,
                  staging: StagingHost, signing_key: SigningKey,
                  keys: Sequence[VerificationKey], actor: str,
                  version: str | None = None) -> Prepared:
    """Build, sign, stage and record a new version of ``base`` patched by ``plan``."""
    if base.status != "approved":
        raise ImageStateError(f"{base.label} is {base.status}: a patched version is built "
                              "only from an approved image")
    if not plan.steps:
        raise BuildError(f"the plan for {base.label} has no patch: nothing to build",
                         tip="vigil patch plan shows what stays open and why")
    version = version or next_version(catalog, base)
    patches = applied_patches(plan)
    catalog.create(base.name, version, components=plan.components, actor=actor,
                   parent_version=base.version, patches=patches,
                   reason=f"patch plan closing {', '.join(plan.closed) or 'nothing'}")
    try:
        built = builder.build(base, plan, version)
        token = sign_manifest(built.manifest, signing_key)
    except VigilError as exc:
        record = catalog.set_status(base.name, version, "failed", actor=actor,
                                    reason=f"build failed: {exc.summary}")
        return Prepared(record, plan, None, f"build failed: {exc.summary}")
    catalog.record_build(base.name, version, components=built.components, manifest=token,
                         patches=patches, actor=built.builder,
                         reason=f"built from {base.label}")
    try:
        result = staging.attest(built.image, built.boot, token, keys)
    except VigilError as exc:  # no staging host: the version stays out of service
        record = catalog.set_status(base.name, version, "failed", actor=actor,
                                    reason=f"staging attestation could not run: {exc.summary}")
        return Prepared(record, plan, None, f"staging attestation could not run: "
                        f"{exc.summary}")
    detail: dict[str, Any] = {"status": result.status, "differences": result.differences,
                              "result": result.token}
    if result.passed:
        record = catalog.set_status(base.name, version, "attested", actor=actor,
                                    reason=result.summary(), detail=detail)
    else:
        record = catalog.set_status(base.name, version, "failed", actor=actor,
                                    reason=result.summary(), detail=detail)
    return Prepared(record, plan, result, result.summary())


# -- the preparation queue --------------------------------------------------------------


@dataclass(frozen=True)
class QueueOutcome:
    """What became of one preparation request."""

    request_id: str
    image: str
    vuln_id: str
    component: str
    outcome: Literal["done", "failed", "waiting", "withdrawn"]
    reason: str
    version: str | None = None
    """The new version that closes it, when one was built."""


@dataclass
class _Group:
    image: str
    requests: list[Any] = field(default_factory=list)


FindingsFor = Callable[[Sequence[Component]], Sequence[Any]]
"""Components -> the PVDB's findings for them (``Pvdb.affecting(...).findings``)."""


def consume_queue(queue: Any, catalog: Catalog, findings_for: FindingsFor, *,
                  builder: Builder, staging: StagingHost, signing_key: SigningKey,
                  keys: Sequence[VerificationKey], actor: str,
                  catalogue: PatchCatalogue | None = None,
                  now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                  statuses: Iterable[str] = ("ready", "pending")) -> list[QueueOutcome]:
    """Build what ``queue`` (an :class:`engine.predict.Queue`) asks for; mark each
    request done or failed with the reason."""
    groups: dict[str, _Group] = {}
    for status in statuses:
        for request in queue.requests(status):
            groups.setdefault(request.image, _Group(request.image)).requests.append(request)
    outcomes: list[QueueOutcome] = []
    for group in groups.values():
        outcomes += _consume_group(queue, catalog, findings_for, group, builder=builder,
                                   staging=staging, signing_key=signing_key, keys=keys,
                                   actor=actor, catalogue=catalogue, now=now)
    return outcomes


def _consume_group(queue: Any, catalog: Catalog, findings_for: FindingsFor, group: _Group,
                   *, builder: Builder, staging: StagingHost, signing_key: SigningKey,
                   keys: Sequence[VerificationKey], actor: str,
                   catalogue: PatchCatalogue | None,
                   now: Callable[[], dt.datetime]) -> list[QueueOutcome]:
    out: list[QueueOutcome] = []

    def mark(request: Any, outcome: Literal["done", "failed", "waiting", "withdrawn"],
             reason: str, version: str | None = None) -> None:
        if outcome != "waiting":
            queue.set_status(request.request_id, outcome, now(), reason=reason)
        out.append(QueueOutcome(request.request_id, request.image, request.vuln_id,
                                request.component, outcome, reason, version))

    name, sep, version = group.image.rpartition("@")
    base = catalog.find(name, version) if sep and name else None
    if base is None:
        for request in group.requests:
            mark(request, "failed", f"image {group.image} is not in the image catalog")
        return out
    if base.status != "approved":
        for request in group.requests:
            mark(request, "failed", f"{base.label} is {base.status}, not approved: "
                 "patched versions are built from approved images only")
        return out
    try:
        graph, facts = from_findings(base.components, findings_for(base.components),
                                     catalogue)
        plan = make_plan(graph, base.components, [r.vuln_id for r in group.requests], facts)
    except ImageError as exc:
        for request in group.requests:
            mark(request, "failed", f"no patch plan: {exc.summary}")
        return out
    # an attested or approved child that already closes a request is not built twice
    existing = {vuln: child for child in catalog.children(base.name, base.version)
                if child.status in ("attested", "approved")
                for patch in child.patches for vuln in patch.fixes}
    todo = [v for v in plan.closed if v not in existing]
    prepared: Prepared | None = None
    if todo:
        narrowed = plan if len(todo) == len(plan.closed) else make_plan(
            graph, base.components, todo, facts)
        try:
            prepared = prepare_image(catalog, base, narrowed, builder=builder,
                                     staging=staging, signing_key=signing_key, keys=keys,
                                     actor=actor)
        except ImageError as exc:
            for request in group.requests:
                if request.vuln_id in todo:
                    mark(request, "failed", f"build failed: {exc.summary}")
            todo = []
    open_items = {o.vuln_id: o for o in plan.open}
    for request in group.requests:
        vuln = request.vuln_id
        if vuln in existing:
            mark(request, "done", f"closed by {existing[vuln].label} "
                 f"({existing[vuln].status})", existing[vuln].version)
        elif prepared is not None and vuln in prepared.plan.closed:
            record = prepared.image
            if prepared.attested:
                mark(request, "done", f"built and attested {record.label}", record.version)
            else:
                mark(request, "failed", prepared.reason, record.version)
        elif vuln in open_items:
            item = open_items[vuln]
            if item.reason in ("no_fix", "other_line"):
                mark(request, "waiting", item.detail)
            elif item.reason == "not_affecting":
                mark(request, "withdrawn", f"{vuln} no longer affects {base.label}")
            else:
                mark(request, "failed", item.detail)
        elif not any(o.request_id == request.request_id for o in out):
            mark(request, "failed", "not closed by the plan")
    return out
