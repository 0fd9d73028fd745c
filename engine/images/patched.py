"""The policy input's ``patched_configuration`` for a host, from the catalog.

A host runs an image version; its patched configuration is the newest version built
from it (a child in the catalog):

* ``ready``: a child is ``approved`` or ``attested`` (approved first, then the newest);
  ``attested`` is true and ``attestation_status`` is the staging result's tier;
* ``preparing``: a child is ``building`` or ``built`` (not attested yet);
* ``none``: no child, or only ``failed`` and ``retired`` ones.
"""

from __future__ import annotations

from engine.decide import PatchedConfiguration
from engine.images.catalog import Catalog, ImageRecord
from engine.model import ImageRef

__all__ = ["patched_configuration"]


def _tier(catalog: Catalog, record: ImageRecord) -> str:
    for entry in reversed(catalog.history(name=record.name, version=record.version)):
        if entry.after == "attested" and entry.detail and entry.detail.get("status"):
            return str(entry.detail["status"])
    return "affirming"


def patched_configuration(catalog: Catalog, image: ImageRef) -> PatchedConfiguration:
    """What the catalog holds of a patched version of ``image``."""
    children = catalog.children(image.name, image.version)
    ready = [c for c in children if c.status in ("approved", "attested")]
    if ready:
        best = max(ready, key=lambda c: (c.status == "approved", c.made_at, c.version))
        return PatchedConfiguration.model_validate({
            "state": "ready", "image": {"name": best.name, "version": best.version},
            "attested": True, "attestation_status": _tier(catalog, best)})
    preparing = [c for c in children if c.status in ("building", "built")]
    if preparing:
        best = max(preparing, key=lambda c: (c.made_at, c.version))
        return PatchedConfiguration.model_validate({
            "state": "preparing", "image": {"name": best.name, "version": best.version},
            "attested": False})
    return PatchedConfiguration.model_validate({"state": "none"})
