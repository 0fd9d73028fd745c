"""The HTTP service (``vigil serve``): the KubeVirt admission webhook, health, readiness,
Prometheus metrics and the OPA bundle server, in one FastAPI application::

    from engine.api import create_app
    import uvicorn

    uvicorn.run(create_app(load_settings()), host="127.0.0.1", port=8443)

The webhook asks a :class:`PlacementGate` (a port: ``decide(tenant, vm_shape,
requested_image) -> GateAnswer``) and answers in Kubernetes' terms
(:mod:`engine.api.admission`). The default gate, :class:`FleetGate`, composes the fleet
inventory, the hosts' cached attestation results (:class:`ResultCache`), the PVDB and the
policy through :func:`engine.provision.decide_placement`.

Modules: ``app`` (the application factory, middleware, metrics), ``admission``
(AdmissionReview models, reading KubeVirt objects, answers and JSON patches), ``gate``
(the port), ``fleet_gate`` (the default gate), ``results`` (the result cache).
docs/service.md describes the service.
"""

from __future__ import annotations

from engine.api.admission import IMAGE_LABEL, AdmissionReview, AdmissionReviewAnswer
from engine.api.app import create_app
from engine.api.fleet_gate import FleetGate
from engine.api.gate import GateAnswer, PlacementGate
from engine.api.results import ResultCache

__all__ = [
    "IMAGE_LABEL",
    "AdmissionReview",
    "AdmissionReviewAnswer",
    "FleetGate",
    "GateAnswer",
    "PlacementGate",
    "ResultCache",
    "create_app",
]
