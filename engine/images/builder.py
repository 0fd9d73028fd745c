"""Making a patched image version: a pluggable builder, and its default.

A :class:`Builder` turns an approved base image and a patch plan into a
:class:`BuiltImage`: the new version's component list, its reference manifest (the
measurements a host booting it must show) and the bootable artifact. A real image
pipeline plugs in behind the same interface; the staging attestation
(:mod:`engine.images.staging`) then boots the *artifact* and compares what it measures
with the *manifest*, so a pipeline that builds something other than what the plan says
is caught before any host uses it.

The :class:`DefaultBuilder` derives everything from the components: the artifact is the
measured boot of a Debian KVM host (:class:`engine.attest.Boot`, the simulated UEFI
Secure Boot of ``vigil agent simulate``) whose firmware, S-CRTM, microcode, kernel,
initrd and command line are named by the image's firmware, microcode and kernel
versions, and whose initrd also carries every other component (hypervisor, packages),
so each component version changes a measurement; the manifest is that boot's event log
and PCR values (:func:`engine.attest.manifest_from_log`) with the component list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from engine.attest import (
    Boot,
    ReferenceManifest,
    hypervisor_boot,
    manifest_from_log,
    parse_eventlog,
)
from engine.images.catalog import ImageRecord
from engine.images.plan import Plan
from engine.model import Component, ImageRef

__all__ = ["Builder", "BuiltImage", "DefaultBuilder", "boot_for", "manifest_for"]


@dataclass(frozen=True)
class BuiltImage:
    """What a builder made."""

    image: ImageRef
    components: list[Component]
    manifest: ReferenceManifest
    """The reference values a host booting the image must show (unsigned)."""
    boot: Boot
    """The artifact: what a host booting this image measures."""
    builder: str
    """Who or what made it, for the catalog."""


class Builder(Protocol):
    """Makes a new image version from an approved base and a plan."""

    name: str

    def build(self, base: ImageRecord, plan: Plan, version: str) -> BuiltImage: ...


def _first(components: list[Component], kind: str) -> Component | None:
    return next((c for c in components if c.kind == kind), None)


def boot_for(components: list[Component]) -> Boot:
    """The measured boot of a host running ``components``."""
    boot = Boot()
    firmware = _first(components, "firmware")
    if firmware is not None:
        boot = boot.but(crtm_version=f"{firmware.product or 'firmware'} {firmware.version}",
                        firmware=f"{firmware.label} firmware volume".encode())
    microcode = _first(components, "microcode")
    if microcode is not None:
        boot = boot.but(microcode=f"{microcode.label} microcode update".encode())
    kernel = _first(components, "kernel")
    rest = sorted(c.label for c in components if c.kind not in ("firmware", "microcode",
                                                                 "kernel"))
    if kernel is not None:
        path = f"/boot/vmlinuz-{kernel.version}"
        boot = boot.but(kernel=f"vmlinuz {kernel.label}".encode(), kernel_path=path,
                        cmdline=f"{path} root=/dev/vda1 ro intel_iommu=on")
    kernel_label = kernel.label if kernel is not None else "no kernel"
    return boot.but(initrd=("initrd for " + kernel_label + "; " + "; ".join(rest)).encode())


def manifest_for(image: ImageRef, components: list[Component], boot: Boot, *,
                 description: str | None = None) -> ReferenceManifest:
    """The reference manifest of ``boot``: its events and the PCR values they replay to."""
    log = hypervisor_boot(boot)
    events = parse_eventlog(log.encode())
    return manifest_from_log(image, log.replay(), events, components=components,
                             description=description)


class DefaultBuilder:
    """Derives the new version's components, boot and manifest from base image + plan."""

    name = "vigil default builder"

    def build(self, base: ImageRecord, plan: Plan, version: str) -> BuiltImage:
        image = ImageRef(name=base.name, version=version)
        components = list(plan.components)
        boot = self.artifact(components)
        manifest = manifest_for(image, components, boot_for(components),
                                description=f"{base.label} + {', '.join(plan.patches)}")
        return BuiltImage(image=image, components=components, manifest=manifest, boot=boot,
                          builder=self.name)

    def artifact(self, components: list[Component]) -> Boot:
        """What the built image boots: here exactly what its components say."""
        return boot_for(components)
