"""The fleet inventory: hosts, the VMs on them and anti-affinity groups, in DuckDB.

Public surface::

    from engine.fleet import Fleet, load_inventory

    snapshot = load_inventory(Path("fleet.yaml"))     # refused whole, with every reason
    with Fleet.open(settings.fleet_db) as fleet:
        fleet.replace(snapshot, source="fleet.yaml")  # one transaction
        hosts = fleet.hosts(group="rack-a")

Rollouts (``engine.rollout``) plan from a :class:`FleetSnapshot` and write their outcome
back with :meth:`Fleet.apply`; provisioning reads the same inventory.
"""

from __future__ import annotations

from engine.fleet.document import load as load_inventory
from engine.fleet.document import parse as parse_inventory
from engine.fleet.document import to_document
from engine.fleet.errors import FleetDbError, FleetError, FleetNotFound, InventoryError
from engine.fleet.model import VM, AntiAffinityGroup, FleetSnapshot, Host, HostState, problems
from engine.fleet.store import Fleet, HostChange, ImportReport
from engine.fleet.synthetic import synthetic

__all__ = [
    "VM",
    "AntiAffinityGroup",
    "Fleet",
    "FleetDbError",
    "FleetError",
    "FleetNotFound",
    "FleetSnapshot",
    "Host",
    "HostChange",
    "HostState",
    "ImportReport",
    "InventoryError",
    "load_inventory",
    "parse_inventory",
    "problems",
    "synthetic",
    "to_document",
]
