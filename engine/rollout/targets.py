"""The rollout's :class:`~engine.rollout.ports.TargetSource` over the image catalog
(:mod:`engine.images`): a host group's target version is the catalog's target of the
group, and the versions a host may run and still take VMs are the approved versions of
that image.

The catalog is read once, when the source is made, and closed again: a rollout running
for hours holds no lock on it, and resuming it reads the catalog afresh. A rollout is
refused before anything moves when the group has no target, when the target is not
approved, or when it has no signed reference manifest that verifies with the image
pipeline's keys (a host booting it could not be re-attested).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from engine.attest import ManifestError, VerificationKey, load_manifest
from engine.images import Catalog, ImageRecord
from engine.model import ImageRef
from engine.rollout.errors import RolloutRefused


class CatalogTargets:
    """Targets and approved versions from the image catalog's rows in ``records`` and
    ``targets`` (group -> image); manifests are checked with ``keys``."""

    def __init__(self, records: Iterable[ImageRecord], targets: dict[str, ImageRef],
                 keys: Sequence[VerificationKey], *, source: str = "the image catalog"
                 ) -> None:
        self._records = {(r.name, r.version): r for r in records}
        self._targets = dict(targets)
        self.keys = list(keys)
        self.source = source

    @classmethod
    def from_catalog(cls, catalog: Catalog, keys: Sequence[VerificationKey]) -> CatalogTargets:
        return cls(catalog.images(), {t.group: t.image for t in catalog.targets()}, keys,
                   source=f"the image catalog {catalog.path}")

    @classmethod
    def load(cls, path: Path, keys: Sequence[VerificationKey]) -> CatalogTargets:
        """Read the catalog file at ``path`` (read-only) and close it."""
        with Catalog(path, read_only=True) as catalog:
            return cls.from_catalog(catalog, keys)

    def image(self, group: str) -> ImageRef:
        """The group's target image (name and version), checked: approved, with a signed
        reference manifest that verifies."""
        ref = self._targets.get(group)
        if ref is None:
            raise RolloutRefused(f"host group {group} has no target version in {self.source}",
                                 tip=f"vigil images target {group} NAME@VERSION sets one "
                                     "(an approved version)")
        record = self._records.get((ref.name, ref.version))
        if record is None:
            raise RolloutRefused(f"the target of {group}, {ref.name}@{ref.version}, is not in "
                                 f"{self.source}")
        if record.status != "approved":
            raise RolloutRefused(f"the target of {group}, {record.label}, is {record.status},"
                                 " not approved: only an approved version is rolled out",
                                 tip=f"vigil images approve {record.label}, after it is"
                                     " attested")
        problem = self.manifest_problem(record)
        if problem is not None:
            raise RolloutRefused(f"the target of {group}, {record.label}, {problem}: a host "
                                 "booting it could not be re-attested",
                                 tip="the image pipeline's public key belongs in "
                                     "VIGIL_ATTEST_REFERENCE_KEYS")
        return ref

    def manifest_problem(self, record: ImageRecord) -> str | None:
        """Why ``record``'s signed reference manifest cannot be used; None when it can."""
        if record.manifest is None:
            return "has no signed reference manifest"
        if not self.keys:
            return "has a reference manifest, but no key to verify it with is configured"
        try:
            manifest = load_manifest(record.manifest, self.keys)
        except ManifestError as exc:
            return f"has a reference manifest that does not verify ({exc.summary})"
        if manifest.image != record.ref:
            return f"has the signed manifest of {manifest.image}, not its own"
        return None

    def target(self, group: str) -> str:
        return self.image(group).version

    def approved(self, group: str) -> frozenset[str] | None:
        name = self.image(group).name
        return frozenset(v for (n, v), r in self._records.items()
                         if n == name and r.status == "approved")

    def record(self, name: str, version: str) -> ImageRecord | None:
        return self._records.get((name, version))

    def versions(self, name: str) -> dict[str, ImageRecord]:
        """Every version of image ``name`` in the catalog."""
        return {v: r for (n, v), r in self._records.items() if n == name}
