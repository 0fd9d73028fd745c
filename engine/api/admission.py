"""Kubernetes admission reviews (``admission.k8s.io/v1``) for KubeVirt objects.

The API server sends an ``AdmissionReview`` whose ``request`` carries the object being
created; the answer is the same kind with ``response``: the request's ``uid``,
``allowed``, a ``status`` (code 403 and a message a person can act on) when not allowed,
``warnings``, and for a ``patch`` verdict a base64 ``JSONPatch`` adding node affinity to
the hosts on the patched image; for an ``admit`` one keeping the VM on the attested hosts
the gate names (node label ``kubernetes.io/hostname``) and their image version.

Handled: ``VirtualMachineInstance`` CREATE (the VM being started) and
``VirtualMachineInstanceMigration`` CREATE (a live migration: its target is gated the
same way). Everything else is allowed untouched, with a warning.

The tenant is the namespace of the object (``request.namespace``, else
``metadata.namespace``). The VM's shape comes from the VMI's spec (vCPUs: the CPU
topology, else the CPU request, else 1; memory: ``memory.guest``, else the memory
request); a requested image or patch level from the annotations
``vigil.io/requested-image`` (``NAME@VERSION``) and ``vigil.io/requested-patch-level``.
A migration names only its VMI, so it is decided on the VMI's name with the smallest
shape (the webhook does not read the cluster), and a ``patch`` verdict restricts its
target nodes through ``spec.addedNodeSelector``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.api.gate import GateAnswer
from engine.decide import Image, VmShape

IMAGE_LABEL = "vigil.io/image-version"
"""The node label carrying the host image version a node runs (set by whoever manages the
nodes, e.g. the image pipeline or the fleet's rollout)."""
HOSTNAME_LABEL = "kubernetes.io/hostname"
"""The node label naming the node: a fleet host's id is its Kubernetes node name."""
REQUESTED_IMAGE = "vigil.io/requested-image"
REQUESTED_PATCH_LEVEL = "vigil.io/requested-patch-level"
KUBEVIRT_GROUP = "kubevirt.io"
VMI: Final = "VirtualMachineInstance"
MIGRATION: Final = "VirtualMachineInstanceMigration"
MAX_WARNINGS = 8
"""Warnings per answer: each under :data:`MAX_WARNING` characters, so at most about 1 KiB
in all (the API server truncates a warning past 256 characters, drops past 4 KiB)."""
MAX_WARNING = 119
MAX_MESSAGE = 1000
"""Characters of a rejection's message."""


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class GroupVersionKind(_Loose):
    group: str = ""
    version: str = ""
    kind: str


class UserInfo(_Loose):
    username: str | None = None


class AdmissionRequest(_Loose):
    """The parts of ``AdmissionReview.request`` Vigil reads (the rest is kept, unread)."""

    uid: str = Field(min_length=1, description="Echoed in the response")
    kind: GroupVersionKind
    resource: dict[str, Any] | None = None
    name: str | None = None
    namespace: str | None = None
    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    userInfo: UserInfo | None = None
    object: dict[str, Any] | None = None
    oldObject: dict[str, Any] | None = None
    dryRun: bool = False
    options: dict[str, Any] | None = None


class AdmissionReview(_Loose):
    """An ``admission.k8s.io/v1`` AdmissionReview as the API server sends it."""

    apiVersion: Literal["admission.k8s.io/v1"]
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


class Status(BaseModel):
    code: int
    message: str
    reason: str | None = None
    status: Literal["Failure"] = "Failure"


class AdmissionResponse(BaseModel):
    uid: str
    allowed: bool
    status: Status | None = None
    warnings: list[str] | None = None
    patchType: Literal["JSONPatch"] | None = None
    patch: str | None = Field(default=None, description="base64 of a JSON Patch (RFC 6902)")


class AdmissionReviewAnswer(BaseModel):
    apiVersion: Literal["admission.k8s.io/v1"] = "admission.k8s.io/v1"
    kind: Literal["AdmissionReview"] = "AdmissionReview"
    response: AdmissionResponse


class ObjectError(ValueError):
    """The object under review cannot be read (names the field)."""


@dataclass(frozen=True)
class GateQuestion:
    """What the gate is asked for one reviewed object."""

    kind: Literal["VirtualMachineInstance", "VirtualMachineInstanceMigration"]
    tenant: str
    vm: VmShape
    requested_image: Image | None
    requested_patch_level: str | None


# reading the object -------------------------------------------------------------------

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"),
            "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18")}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([A-Za-z]*)$")


def quantity(value: object, where: str) -> Decimal:
    """A Kubernetes resource quantity (``128Mi``, ``1024M``, ``500m``, ``2``)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ObjectError(f"{where}: {value!r} is not a quantity")
    m = _QUANTITY.match(str(value).strip())
    if not m:
        raise ObjectError(f"{where}: {value!r} is not a quantity")
    number, suffix = m.groups()
    try:
        base = Decimal(number)
    except InvalidOperation:
        raise ObjectError(f"{where}: {value!r} is not a quantity") from None
    if suffix in _BINARY:
        return base * _BINARY[suffix]
    if suffix in _DECIMAL:
        return base * _DECIMAL[suffix]
    raise ObjectError(f"{where}: {value!r} has an unknown unit {suffix!r}")


def _dict(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ObjectError(f"{where}: expected an object")
    return value


def _positive_int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ObjectError(f"{where}: expected a positive integer, got {value!r}")
    return value


def _vcpus(spec: dict[str, Any]) -> int:
    domain = _dict(spec.get("domain"), "spec.domain")
    cpu = _dict(domain.get("cpu"), "spec.domain.cpu")
    if cpu:
        total = 1
        for part in ("sockets", "cores", "threads"):
            if part in cpu:
                total *= _positive_int(cpu[part], f"spec.domain.cpu.{part}")
        return total
    resources = _dict(domain.get("resources"), "spec.domain.resources")
    for side in ("requests", "limits"):
        cpus = _dict(resources.get(side), f"spec.domain.resources.{side}").get("cpu")
        if cpus is not None:
            return max(1, math.ceil(quantity(cpus, f"spec.domain.resources.{side}.cpu")))
    return 1


def _memory_mib(spec: dict[str, Any]) -> int:
    domain = _dict(spec.get("domain"), "spec.domain")
    memory = _dict(domain.get("memory"), "spec.domain.memory")
    for where, value in (("spec.domain.memory.guest", memory.get("guest")),):
        if value is not None:
            return max(1, math.ceil(quantity(value, where) / 2**20))
    resources = _dict(domain.get("resources"), "spec.domain.resources")
    for side in ("requests", "limits"):
        mem = _dict(resources.get(side), f"spec.domain.resources.{side}").get("memory")
        if mem is not None:
            where = f"spec.domain.resources.{side}.memory"
            return max(1, math.ceil(quantity(mem, where) / 2**20))
    return 1


def _labels(meta: dict[str, Any], field: str) -> dict[str, str]:
    raw = _dict(meta.get(field), f"metadata.{field}")
    if not all(isinstance(v, str) for v in raw.values()):
        raise ObjectError(f"metadata.{field}: every value must be a string")
    return {str(k): v for k, v in raw.items()}


def question(request: AdmissionRequest) -> GateQuestion | None:
    """What to ask the gate about the reviewed object, or None when Vigil does not gate
    it (another kind or operation). Raises :class:`ObjectError` naming the field."""
    if request.kind.group != KUBEVIRT_GROUP or request.kind.kind not in (VMI, MIGRATION):
        return None
    if request.operation != "CREATE":
        return None
    if request.object is None:
        raise ObjectError("request.object: a CREATE review must carry the object")
    obj = request.object
    meta = _dict(obj.get("metadata"), "metadata")
    spec = _dict(obj.get("spec"), "spec")
    tenant = request.namespace or meta.get("namespace")
    if not isinstance(tenant, str) or not tenant:
        raise ObjectError("request.namespace: the object has no namespace (the tenant)")
    annotations = _labels(meta, "annotations")
    image = None
    text = annotations.get(REQUESTED_IMAGE)
    if text is not None:
        name, sep, version = text.partition("@")
        if not sep or not name or not version:
            raise ObjectError(f"metadata.annotations.{REQUESTED_IMAGE}: expected "
                              f"NAME@VERSION, got {text!r}")
        image = Image(name=name, version=version)
    level = annotations.get(REQUESTED_PATCH_LEVEL)
    if request.kind.kind == MIGRATION:
        vmi = spec.get("vmiName")
        if not isinstance(vmi, str) or not vmi:
            raise ObjectError("spec.vmiName: a migration must name its VMI")
        return GateQuestion(MIGRATION, tenant, VmShape(name=vmi, vcpus=1, memory_mib=1),
                            image, level)
    vm_name = meta.get("name") or meta.get("generateName") or request.name
    if not isinstance(vm_name, str) or not vm_name:
        raise ObjectError("metadata.name: the VMI has no name")
    vm = VmShape(name=vm_name, vcpus=_vcpus(spec), memory_mib=_memory_mib(spec),
                 labels=_labels(meta, "labels"))
    return GateQuestion(VMI, tenant, vm, image, level)


# answering -----------------------------------------------------------------------------

def short(text: str, limit: int = MAX_WARNING) -> str:
    """``text`` on one line, cut at ``limit`` characters with an ellipsis."""
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 1].rstrip() + "…"


def warnings_of(items: Sequence[str], total: int | None = None) -> list[str] | None:
    """At most :data:`MAX_WARNINGS` warnings, each shortened; the last says how many
    were left out. ``total``: how many there are when ``items`` holds only the first
    (a large host's verdict tolerates thousands of findings)."""
    count = len(items) if total is None else max(total, len(items))
    if not count:
        return None
    if count > MAX_WARNINGS:
        left = count - (MAX_WARNINGS - 1)
        return [*(short(w) for w in items[: MAX_WARNINGS - 1]),
                f"vigil: {left} more warnings in the decision log"]
    return [short(w) for w in items]


def node_affinity_patch(obj: dict[str, Any], version: str | None = None, *,
                        exprs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """JSON Patch operations that add a required node affinity: to nodes labelled
    ``vigil.io/image-version: <version>`` (and/or the node selector expressions
    ``exprs``), kept with every constraint already there: the expressions are added to
    each existing node selector term (terms are ORed, expressions within one ANDed), so
    no term can place the VM elsewhere."""
    wanted = list(exprs or [])
    if version is not None:
        wanted.insert(0, {"key": IMAGE_LABEL, "operator": "In", "values": [version]})
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [{"op": "add", "path": "/spec", "value": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": wanted}]}}}}}]
    required = {"nodeSelectorTerms": [{"matchExpressions": wanted}]}
    affinity = spec.get("affinity")
    if not isinstance(affinity, dict):
        return [{"op": "add", "path": "/spec/affinity",
                 "value": {"nodeAffinity": {
                     "requiredDuringSchedulingIgnoredDuringExecution": required}}}]
    node = affinity.get("nodeAffinity")
    if not isinstance(node, dict):
        return [{"op": "add", "path": "/spec/affinity/nodeAffinity",
                 "value": {"requiredDuringSchedulingIgnoredDuringExecution": required}}]
    base = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution"
    existing = node.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not isinstance(existing, dict):
        return [{"op": "add", "path": base, "value": required}]
    terms = existing.get("nodeSelectorTerms")
    if not isinstance(terms, list) or not terms:
        return [{"op": "add", "path": f"{base}/nodeSelectorTerms",
                 "value": required["nodeSelectorTerms"]}]
    ops: list[dict[str, Any]] = []
    for i, term in enumerate(terms):
        if isinstance(term, dict) and isinstance(term.get("matchExpressions"), list):
            for expr in wanted:
                if expr in term["matchExpressions"]:
                    continue
                ops.append({"op": "add",
                            "path": f"{base}/nodeSelectorTerms/{i}/matchExpressions/-",
                            "value": expr})
        else:
            ops.append({"op": "add", "path": f"{base}/nodeSelectorTerms/{i}/matchExpressions",
                        "value": list(wanted)})
    return ops


def migration_patch(obj: dict[str, Any], version: str | None = None, *,
                    labels: dict[str, str] | None = None) -> list[dict[str, Any]] | str:
    """JSON Patch operations restricting a migration's target nodes to the image
    version (and the node ``labels``) through ``spec.addedNodeSelector``, or why that
    cannot be done."""
    wanted = dict(labels or {})
    if version is not None:
        wanted = {IMAGE_LABEL: version, **wanted}
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return "the migration has no spec"
    selector = spec.get("addedNodeSelector")
    if selector is None:
        return [{"op": "add", "path": "/spec/addedNodeSelector", "value": wanted}]
    if not isinstance(selector, dict):
        return "spec.addedNodeSelector is not an object"
    ops: list[dict[str, Any]] = []
    for label, value in wanted.items():
        current = selector.get(label)
        if current == value:
            continue
        if current is not None:
            return (f"spec.addedNodeSelector asks for {label}={current}, but Vigil places "
                    f"this VM only on {value}")
        key = label.replace("~", "~0").replace("/", "~1")
        ops.append({"op": "add", "path": f"/spec/addedNodeSelector/{key}", "value": value})
    return ops


def has_affinity(obj: dict[str, Any], kind: str, version: str) -> bool:
    """Whether the object already keeps its VM on hosts with the image version."""
    if kind == MIGRATION:
        return migration_patch(obj, version) == []
    return not node_affinity_patch(obj, version)


def _pin(obj: dict[str, Any], kind: str, version: str | None, hosts: tuple[str, ...]
         ) -> list[dict[str, Any]] | str:
    """The JSON Patch that keeps an admitted VM on the attested hosts (and their image
    version); a migration, whose node selector takes one value per label, is kept on the
    image version, and on the host when there is one."""
    if kind == MIGRATION:
        labels = {HOSTNAME_LABEL: hosts[0]} if len(hosts) == 1 else {}
        return migration_patch(obj, version, labels=labels)
    return node_affinity_patch(obj, version, exprs=[
        {"key": HOSTNAME_LABEL, "operator": "In", "values": sorted(hosts)}])


def _deny(uid: str, code: int, message: str, warnings: list[str] | None) -> AdmissionResponse:
    reason = {400: "BadRequest", 403: "Forbidden"}.get(code, "InternalError")
    return AdmissionResponse(uid=uid, allowed=False, warnings=warnings,
                             status=Status(code=code, message=short(message, MAX_MESSAGE),
                                           reason=reason))


def allow_untouched(uid: str, why: str) -> AdmissionResponse:
    return AdmissionResponse(uid=uid, allowed=True, warnings=[short(f"vigil: {why}")])


def object_error(uid: str, problem: str) -> AdmissionResponse:
    return _deny(uid, 400, f"Vigil cannot read the object: {problem}", None)


def answer(uid: str, asked: GateQuestion, obj: dict[str, Any], got: GateAnswer, *,
           mutate: bool) -> AdmissionResponse:
    """The admission response for the gate's answer. ``mutate`` is False for the
    validating webhook: a ``patch`` verdict is then allowed only when the object already
    keeps the VM on the patched image (the mutating webhook added it)."""
    what = "migrating" if asked.kind == MIGRATION else "starting"
    subject = f"{what} VM {asked.vm.name} of tenant {asked.tenant}"
    warnings = warnings_of([f"vigil: {w}" for w in got.warnings[:MAX_WARNINGS]],
                           len(got.warnings))
    reasons = "; ".join(got.reasons) or "the policy gave no reason"
    decision = f" (decision {got.decision_id})" if got.decision_id else ""
    if got.verdict == "admit":
        if not got.hosts:
            return _deny(uid, 403, f"Vigil rejects {subject}{decision}: the placement was "
                         "admitted but names no attested host to keep the VM on (fail "
                         "closed)", warnings)
        pin = _pin(obj, asked.kind, got.image_version, got.hosts)
        if isinstance(pin, str):
            return _deny(uid, 403, f"Vigil rejects {subject}{decision}: {pin}", warnings)
        if not pin:
            return AdmissionResponse(uid=uid, allowed=True, warnings=warnings)
        if not mutate:
            return _deny(uid, 403, f"Vigil admits {subject} only on the attested hosts "
                         f"{', '.join(got.hosts[:5])} (node label {HOSTNAME_LABEL}), which "
                         "the object does not require; install Vigil's mutating webhook or "
                         f"add that node affinity{decision}", warnings)
        return AdmissionResponse(uid=uid, allowed=True, warnings=warnings,
                                 patchType="JSONPatch", patch=_b64(pin))
    if got.verdict == "reject":
        return _deny(uid, 403, f"Vigil rejects {subject}{decision}: {reasons}", warnings)
    if got.verdict == "delay":
        when = (f"; ask again after {got.recheck_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
                if got.recheck_at is not None else "; ask again later")
        return _deny(uid, 403, f"Vigil delays {subject}{decision}: {reasons}{when}", warnings)
    version = got.patched_image_version
    if version is None:
        return _deny(uid, 403, f"Vigil rejects {subject}{decision}: a patch verdict without "
                     "an image version", warnings)
    hosts = ", ".join(got.hosts[:5]) + (" …" if len(got.hosts) > 5 else "")
    note = short(f"vigil: placed on nodes with {IMAGE_LABEL}={version}"
                 + (f" ({hosts})" if hosts else ""))
    warnings = [note, *(warnings or [])][:MAX_WARNINGS]
    if not mutate:
        if has_affinity(obj, asked.kind, version):
            return AdmissionResponse(uid=uid, allowed=True, warnings=warnings)
        return _deny(uid, 403, f"Vigil places {subject} only on hosts running image version "
                     f"{version} (node label {IMAGE_LABEL}), which the object does not "
                     f"require; install Vigil's mutating webhook or add that node affinity"
                     f"{decision}: {reasons}", warnings)
    ops = (migration_patch(obj, version) if asked.kind == MIGRATION
           else node_affinity_patch(obj, version))
    if isinstance(ops, str):
        return _deny(uid, 403, f"Vigil rejects {subject}{decision}: {ops}", warnings)
    if not ops:
        return AdmissionResponse(uid=uid, allowed=True, warnings=warnings)
    return AdmissionResponse(uid=uid, allowed=True, warnings=warnings, patchType="JSONPatch",
                             patch=_b64(ops))


def _b64(ops: list[dict[str, Any]]) -> str:
    return base64.b64encode(json.dumps(ops, separators=(",", ":")).encode()).decode()
