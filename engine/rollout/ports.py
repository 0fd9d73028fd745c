"""What the rollout needs from the rest of Vigil, as small protocols: the target version
of a host group and which versions may run VMs (the image catalog), and attesting a host
on a version (the verifier). In-memory implementations serve tests, the simulator and the
command line until the image catalog provides the real ones."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AttestOutcome:
    ok: bool
    reason: str | None = None
    """Why it failed: which measurement differed, or that the host did not answer."""


class Attestor(Protocol):
    def trusted(self, host: str) -> bool:
        """Whether the host's last attestation is valid now (it may take VMs)."""
        ...

    def attest(self, host: str, version: str) -> AttestOutcome:
        """Attest the host, freshly booted on ``version``, against that version's signed
        reference manifest."""
        ...


class TargetSource(Protocol):
    def target(self, group: str) -> str:
        """The image version the host group should run."""
        ...

    def approved(self, group: str) -> frozenset[str] | None:
        """Versions a host of the group may run and still take VMs (compliant), the
        target included; None when every version is acceptable."""
        ...


class StaticTargets:
    """Targets and approved versions given up front."""

    def __init__(self, targets: Mapping[str, str],
                 approved: Mapping[str, Iterable[str]] | None = None) -> None:
        self._targets = dict(targets)
        self._approved = ({g: frozenset(v) for g, v in approved.items()}
                          if approved is not None else None)

    def target(self, group: str) -> str:
        from engine.rollout.errors import RolloutRefused

        try:
            return self._targets[group]
        except KeyError:
            raise RolloutRefused(f"host group {group} has no target version") from None

    def approved(self, group: str) -> frozenset[str] | None:
        if self._approved is None:
            return None
        return self._approved.get(group, frozenset()) | {self.target(group)}


class MemoryAttestor:
    """Every host trusted and every attestation passing, except those named: ``untrusted``
    hosts are not trusted now; ``fail`` holds hosts (any version) or (host, version) pairs
    whose attestation fails."""

    def __init__(self, *, untrusted: Collection[str] = (),
                 fail: Collection[str | tuple[str, str]] = ()) -> None:
        self._untrusted = frozenset(untrusted)
        self._fail = frozenset(fail)

    def trusted(self, host: str) -> bool:
        return host not in self._untrusted

    def attest(self, host: str, version: str) -> AttestOutcome:
        if host in self._fail or (host, version) in self._fail:
            return AttestOutcome(False, f"PCR 4 (boot loader, kernel) does not match the"
                                        f" reference manifest of version {version}")
        return AttestOutcome(True)
