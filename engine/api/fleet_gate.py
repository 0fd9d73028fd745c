"""The default placement gate: the provisioning flow, asked by the admission webhook.

For one VM, :class:`FleetGate` runs :class:`engine.provision.ProvisionFlow` (candidate
hosts from the fleet inventory, a fresh verified attestation result, the patched
configuration from the image catalog, the PVDB and the policy, the decision log unless
the review is a dry run) and turns its outcome into a :class:`GateAnswer`:

* ``admit``: the attested hosts on the decided host's image version the VM may run on
  (the webhook pins the VM to them), and that version;
* ``patch``: the patched image version and the hosts in service that run it;
* ``delay``: when to ask again; ``reject``: the reasons, naming the failed step when the
  flow ended before a decision.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from engine.api.gate import GateAnswer
from engine.config import Settings
from engine.decide import DecisionLog, Image, VmShape
from engine.provision import Outcome, Parts, ProvisionAsk, ResultCache, build


def answer_of(outcome: Outcome, *, record: bool = True) -> GateAnswer:
    """The gate's answer for a flow's outcome."""
    decision_id = outcome.decision_id if record else None
    if outcome.verdict == "patch":
        return GateAnswer("patch", outcome.reasons, outcome.warnings,
                          patched_image_version=outcome.target_image_version,
                          hosts=outcome.patched_hosts, decision_id=decision_id)
    if outcome.verdict == "admit":
        return GateAnswer("admit", outcome.reasons, outcome.warnings,
                          hosts=outcome.pinned_hosts, decision_id=decision_id,
                          image_version=outcome.target_image_version)
    hosts = (outcome.host.id,) if outcome.host is not None else ()
    return GateAnswer(outcome.verdict, outcome.reasons, outcome.warnings, hosts=hosts,
                      recheck_at=outcome.recheck_at if outcome.verdict == "delay" else None,
                      decision_id=decision_id)


class FleetGate:
    """The default :class:`~engine.api.gate.PlacementGate`."""

    def __init__(self, settings: Settings, *, results: ResultCache | None = None,
                 decision_log: DecisionLog | None = None,
                 clock: Callable[[], dt.datetime] | None = None,
                 parts: Parts | None = None) -> None:
        """``decision_log`` is the log decisions are written to (default: one opened on
        ``settings.decision_log``); pass the service's own so that one writer keeps the
        hash chain. ``parts`` (default: built from ``settings``) is the flow to ask."""
        self.settings = settings
        self.parts = parts or build(settings, decision_log=decision_log, clock=clock,
                                    results=results)
        self.results = self.parts.cache

    def open(self) -> list[str]:
        """Open the PVDB (read-only) and load the policy; the problems, empty when both
        are there. Called again by :meth:`readiness` until it succeeds."""
        return [*self.parts.deciding.open(), *self.parts.problems]

    def readiness(self) -> list[str]:
        return self.parts.readiness()

    def close(self) -> None:
        self.parts.close()

    def __enter__(self) -> FleetGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def decide(self, tenant: str, vm_shape: VmShape, requested_image: Image | None, *,
               requested_patch_level: str | None = None, record: bool = True) -> GateAnswer:
        problems = self.readiness()
        if problems:
            return GateAnswer("reject", (f"Vigil cannot decide placements now: {problems[0]}",))
        outcome = self.parts.flow.run(ProvisionAsk(
            tenant=tenant, vm=vm_shape, requested_image=requested_image,
            requested_patch_level=requested_patch_level), record=record)
        return answer_of(outcome, record=record)
