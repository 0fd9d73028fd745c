"""The light shared model: what every part says about hosts, in types that load only
pydantic (no database, no TPM stack, no Rego).

* :class:`Component`: one thing a host runs (firmware, microcode, hypervisor, kernel,
  a package), the question the PVDB answers and the list an image carries;
* :class:`ImageRef`: an approved host image version;
* :data:`B64`, :data:`Hex`: bytes in JSON documents.
"""

from engine.model.component import Component
from engine.model.encoding import B64, Hex
from engine.model.image import ImageRef

__all__ = ["B64", "Component", "Hex", "ImageRef"]
