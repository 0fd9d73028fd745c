"""The executor's port: launching an approved VM on its host.

A :class:`Launcher` gets a :class:`LaunchOrder` and places the VM; it must be idempotent
per ``order.request_id`` (launching the same order twice places the VM once and answers
the same), because a service killed after the VM was placed but before the request was
marked ``launched`` launches it again when it restarts. A :class:`LaunchError` says
whether to try again later (``retry``: the host is being patched, the inventory is in use)
or never.

:class:`FleetLauncher`, the default, records the VM in the fleet inventory on the chosen
host (:meth:`engine.fleet.Fleet.place_vm`, one transaction, refused when the host has no
room or runs another image version than the order's); a real launcher (libvirt,
KubeVirt, a cloud API) plugs in in its place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from engine.errors import EXIT_CHECK, VigilError
from engine.fleet import VM, FleetDbError, FleetError
from engine.provision.sources import FleetFile

VM_NAME_LABEL = "vigil.io/vm-name"
REQUEST_LABEL = "vigil.io/provisioning-request"


@dataclass(frozen=True)
class LaunchOrder:
    request_id: str
    tenant: str
    vm_name: str
    vcpus: int
    memory_mib: int
    host: str
    image_version: str | None
    """The image version the host must run (the patched one for ``patch``)."""
    patch_host_first: bool = False
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Launched:
    ref: str
    """The launcher's id of the VM."""
    again: bool = False
    """True when the order had been launched before (nothing was placed this time)."""


class LaunchError(VigilError):
    """The VM could not be launched; ``retry`` says whether a later try may succeed."""

    exit_code = EXIT_CHECK

    def __init__(self, summary: str, *, retry: bool, tip: str | None = None) -> None:
        super().__init__(summary, tip=tip)
        self.retry = retry


class Launcher(Protocol):
    def launch(self, order: LaunchOrder) -> Launched: ...


class FleetLauncher:
    """Places the VM in the fleet inventory."""

    def __init__(self, fleet: FleetFile) -> None:
        self.fleet = fleet

    def launch(self, order: LaunchOrder) -> Launched:
        vm = VM(id=order.request_id, tenant=order.tenant, shape=f"{order.vcpus}c-"
                f"{order.memory_mib}m", host=order.host, vcpus=order.vcpus,
                memory_mib=order.memory_mib,
                labels={**order.labels, VM_NAME_LABEL: order.vm_name,
                        REQUEST_LABEL: order.request_id})
        try:
            placed = self.fleet.write(lambda f: f.place_vm(vm,
                                                           image_version=order.image_version))
        except FleetDbError as exc:
            raise LaunchError(f"the fleet inventory cannot be written now: {exc.summary}",
                              retry=True) from None
        except FleetError as exc:
            # a host not yet on the patched version is patched by a rollout: try later
            waiting = order.patch_host_first or "runs image version" in exc.summary
            raise LaunchError(exc.summary + ("; the host is to be patched first "
                                             "(`vigil rollout start`)" if waiting else ""),
                              retry=waiting) from None
        return Launched(ref=vm.id, again=not placed)
