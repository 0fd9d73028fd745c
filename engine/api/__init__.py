"""The HTTP service (``vigil serve``): provisioning requests with approval, hosts and PVDB
queries, the KubeVirt admission webhook, health, readiness, Prometheus metrics and the
OPA bundle server, in one FastAPI application::

    from engine.api import create_app
    import uvicorn

    uvicorn.run(create_app(load_settings()), host="127.0.0.1", port=8443)

Routes speak HTTP only: the provisioning flow, the requests' states and the launches
are :mod:`engine.provision`'s. The webhook asks a :class:`PlacementGate` (a port:
``decide(tenant, vm_shape, requested_image) -> GateAnswer``) and answers in Kubernetes'
terms (:mod:`engine.api.admission`); the default gate, :class:`FleetGate`, runs the
provisioning flow. Every ``/v1`` route takes a bearer API token (:class:`TokenStore`,
roles admin, tenant, auditor and service).

Modules: ``app`` (the application factory, middleware, metrics), ``admission``
(AdmissionReview models, reading KubeVirt objects, answers and JSON patches), ``gate``
(the port), ``fleet_gate`` (the default gate), ``provisioning`` (the provisioning, host
and PVDB routes), ``auth`` and ``tokens`` (bearer tokens and roles), ``errors`` (the
error body). docs/service.md describes the service.
"""

from __future__ import annotations

from engine.api.admission import HOSTNAME_LABEL, IMAGE_LABEL, AdmissionReview, AdmissionReviewAnswer
from engine.api.app import create_app
from engine.api.errors import ErrorBody
from engine.api.fleet_gate import FleetGate, answer_of
from engine.api.gate import GateAnswer, PlacementGate
from engine.api.tokens import ROLES, Principal, Role, TokenError, TokenInfo, TokenStore
from engine.provision import ResultCache

__all__ = [
    "HOSTNAME_LABEL",
    "IMAGE_LABEL",
    "ROLES",
    "AdmissionReview",
    "AdmissionReviewAnswer",
    "ErrorBody",
    "FleetGate",
    "GateAnswer",
    "PlacementGate",
    "Principal",
    "ResultCache",
    "Role",
    "TokenError",
    "TokenInfo",
    "TokenStore",
    "answer_of",
    "create_app",
]
