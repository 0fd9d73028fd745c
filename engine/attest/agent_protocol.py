"""The agent protocol: how a verifier challenges a host's agent over HTTP.

The host runs ``vigil agent serve`` (:mod:`engine.attest.agent_service`); the verifier
calls :func:`~engine.attest.challenge.challenge_agent`. One exchange::

    POST /v1/challenge HTTP/1.1
    Content-Type: application/json
    Authorization: Bearer <token>          # only when the agent is configured with one

    {"nonce": "<base64 of 1 to 64 bytes>"}

    HTTP/1.1 200 OK
    Content-Type: application/json

    {"schema": "vigil.evidence/1", "host_id": …, "nonce": "<the same nonce>", …}

The answer is the evidence document ``vigil agent evidence`` prints
(:mod:`engine.attest.evidence`): a quote over the nonce from the host's TPM, the PCR
values, the event log and the inventory. Any other answer is JSON
``{"error": "<reason>"}`` with its status: 400 (the body is not a challenge), 401 (no or
a wrong bearer token), 404, 405, 408 (the body did not arrive in time), 413 (the body is
larger than :data:`MAX_CHALLENGE_BYTES`), 415 (not JSON), 503 (the TPM failed, or stayed
busy with other challenges too long). ``GET /healthz`` answers ``{"status": "ok"}``
without a token.

Nothing the agent sends is trusted: the verifier appraises the evidence (steps 1-6 of
:mod:`engine.attest`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from engine.model import B64

__all__ = [
    "CHALLENGE_PATH",
    "HEALTH_PATH",
    "MAX_ANSWER_BYTES",
    "MAX_CHALLENGE_BYTES",
    "Challenge",
]

CHALLENGE_PATH = "/v1/challenge"
HEALTH_PATH = "/healthz"

MAX_CHALLENGE_BYTES = 4096
"""The largest challenge body the agent reads (a challenge is about 60 bytes)."""

MAX_ANSWER_BYTES = 24 * 1024 * 1024
"""The largest answer the verifier reads: the largest event log the verifier parses
(16 MiB) in base64, with the quote, the PCR values and the inventory."""


class Challenge(BaseModel):
    """The verifier's challenge: the nonce to quote over."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    nonce: B64 = Field(min_length=1, max_length=64)
    """The verifier's nonce, passed to TPM2_Quote as qualifying data (a TPM takes at
    most the size of its largest digest, 64 bytes)."""
