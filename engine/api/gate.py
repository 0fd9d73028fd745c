"""The placement port: what the admission webhook asks, and what it is answered.

The webhook does not decide; it asks a :class:`PlacementGate` whether a tenant's VM may be
placed, and turns the answer into an admission response. :class:`FleetGate` (the
default, :mod:`engine.api.fleet_gate`) composes the fleet inventory, the hosts' cached
attestation results, the PVDB and the policy; tests put any other gate in its place.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from engine.decide import Image, VmShape

GateVerdict = Literal["admit", "patch", "delay", "reject"]


@dataclass(frozen=True)
class GateAnswer:
    """A gate's answer for one VM."""

    verdict: GateVerdict
    reasons: tuple[str, ...] = ()
    """Why, in sentences a person can act on (the policy's reasons, or the gate's own)."""
    warnings: Sequence[str] = ()
    """What was tolerated or could not be judged (possibly thousands: read the first
    few and the count)."""
    patched_image_version: str | None = None
    """For ``patch``: the image version the VM must run on."""
    hosts: tuple[str, ...] = ()
    """The hosts the answer concerns: for ``patch`` those on the patched image; for
    ``admit`` the attested hosts the VM may run on (the decided host first); else the
    host that was decided."""
    image_version: str | None = None
    """For ``admit``: the decided host's image version (the VM is kept on it)."""
    recheck_at: dt.datetime | None = None
    """For ``delay``: when the placement should be asked again."""
    decision_id: str | None = None
    """The decision log's id of the decision, when one was made and recorded."""
    extra: dict[str, str] = field(default_factory=dict)


class PlacementGate(Protocol):
    """Decides whether a tenant's VM may be placed on the fleet."""

    def decide(self, tenant: str, vm_shape: VmShape, requested_image: Image | None, *,
               requested_patch_level: str | None = None, record: bool = True) -> GateAnswer:
        """The answer for one VM. ``record=False`` (a dry run) leaves no trace: nothing
        is written to the decision log or anywhere else."""
        ...

    def readiness(self) -> list[str]:
        """Why the gate cannot decide now (empty when it can)."""
        ...
