"""The inventory file (JSON or YAML) an operator imports: its shape, read strictly.

```yaml
shapes:                       # optional: VMs may name a shape instead of sizes
  m.large: {vcpus: 4, memory_mib: 16384}
hosts:
  - {id: hv-01, group: rack-a, vcpus: 64, memory_mib: 262144, image_version: 2024.05.1,
     agent_endpoint: "https://hv-01:8443", state: in_service, labels: {rack: a}}
vms:
  - {id: vm-1, tenant: acme, shape: m.large, host: hv-01, live_migratable: true,
     dirty_rate_mibps: 12.5}
anti_affinity:
  - {id: acme-db, vms: [vm-1, vm-2]}
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.fleet.errors import InventoryError
from engine.fleet.model import VM, AntiAffinityGroup, FleetSnapshot, Host, HostState, problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShapeDoc(_Strict):
    vcpus: int = Field(ge=1)
    memory_mib: int = Field(ge=1)


class HostDoc(_Strict):
    id: str = Field(min_length=1)
    group: str = Field(min_length=1)
    vcpus: int = Field(ge=1)
    memory_mib: int = Field(ge=1)
    image_version: str = Field(min_length=1)
    state: HostState = HostState.IN_SERVICE
    agent_endpoint: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class VmDoc(_Strict):
    id: str = Field(min_length=1)
    tenant: str = Field(min_length=1)
    shape: str = Field(min_length=1)
    host: str = Field(min_length=1)
    vcpus: int | None = Field(default=None, ge=1)
    memory_mib: int | None = Field(default=None, ge=1)
    live_migratable: bool = True
    dirty_rate_mibps: float | None = Field(default=None, ge=0)
    labels: dict[str, str] = Field(default_factory=dict)


class AntiAffinityDoc(_Strict):
    id: str = Field(min_length=1)
    vms: list[str] = Field(min_length=2)


class InventoryDoc(_Strict):
    shapes: dict[str, ShapeDoc] = Field(default_factory=dict)
    hosts: list[HostDoc] = Field(default_factory=list)
    vms: list[VmDoc] = Field(default_factory=list)
    anti_affinity: list[AntiAffinityDoc] = Field(default_factory=list)


def parse(raw: bytes, source: str) -> FleetSnapshot:
    """The inventory in ``raw`` (JSON, or YAML when it is not JSON), checked whole:
    :class:`InventoryError` lists every problem, and nothing is returned half-read."""
    data: Any
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise InventoryError(f"inventory {source} is neither JSON nor YAML: {exc}"
                                 ) from None
    try:
        doc = InventoryDoc.model_validate(data)
    except ValidationError as exc:
        found = [f"{'.'.join(str(p) for p in err['loc']) or '$'}: {err['msg']}"
                 for err in exc.errors()]
        raise _refused(source, found) from None
    found = []
    vms: list[VM] = []
    for i, v in enumerate(doc.vms):
        shape = doc.shapes.get(v.shape)
        vcpus = v.vcpus if v.vcpus is not None else (shape.vcpus if shape else None)
        mem = v.memory_mib if v.memory_mib is not None else (shape.memory_mib if shape else None)
        if vcpus is None or mem is None:
            found.append(f"vms.{i} ({v.id}): shape {v.shape!r} is not in shapes and the VM"
                         " gives no vcpus/memory_mib")
            continue
        vms.append(VM(v.id, v.tenant, v.shape, v.host, vcpus, mem, v.live_migratable,
                      v.dirty_rate_mibps, dict(v.labels)))
    snapshot = FleetSnapshot(
        hosts=tuple(Host(h.id, h.group, h.vcpus, h.memory_mib, h.image_version, h.state,
                         h.agent_endpoint, dict(h.labels)) for h in doc.hosts),
        vms=tuple(vms),
        anti_affinity=tuple(AntiAffinityGroup(g.id, tuple(g.vms)) for g in doc.anti_affinity),
    )
    found += problems(snapshot)
    if found:
        raise _refused(source, found)
    return snapshot


def load(path: Path) -> FleetSnapshot:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InventoryError(f"inventory file {path} does not exist") from None
    except OSError as exc:
        raise InventoryError(f"cannot read inventory file {path}: {exc.strerror}") from None
    return parse(raw, str(path))


def to_document(snapshot: FleetSnapshot) -> dict[str, Any]:
    """``snapshot`` as an inventory document (what :func:`parse` reads back)."""
    return {
        "hosts": [{"id": h.id, "group": h.group, "vcpus": h.vcpus, "memory_mib": h.memory_mib,
                   "image_version": h.image_version, "state": h.state.value,
                   "agent_endpoint": h.agent_endpoint, "labels": dict(h.labels)}
                  for h in snapshot.hosts],
        "vms": [{"id": v.id, "tenant": v.tenant, "shape": v.shape, "host": v.host,
                 "vcpus": v.vcpus, "memory_mib": v.memory_mib,
                 "live_migratable": v.live_migratable, "dirty_rate_mibps": v.dirty_rate_mibps,
                 "labels": dict(v.labels)} for v in snapshot.vms],
        "anti_affinity": [{"id": g.id, "vms": list(g.vms)} for g in snapshot.anti_affinity],
    }


def _refused(source: str, found: list[str]) -> InventoryError:
    shown = "; ".join(found[:5])
    more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
    return InventoryError(f"inventory {source} refused, nothing written: {shown}{more}",
                          problems=found, tip="fix the file and import it again")
