"""The verifier's side of the agent protocol (:mod:`engine.attest.agent_protocol`):
challenge a host's agent for fresh evidence, and attest a host end to end.

* :func:`challenge_agent` sends the nonce and returns the agent's
  :class:`~engine.attest.evidence.Evidence`, or raises an :class:`AgentError` whose
  step says what went wrong: the agent is unreachable, timed out, failed TLS, answered
  an HTTP error, answered too much, answered something that is not evidence, or
  evidence for another nonce or host.
* :func:`attest_host` issues a nonce (:class:`~engine.attest.nonce.NonceStore`),
  challenges the agent and appraises the evidence
  (:meth:`~engine.attest.verify.Verifier.appraise`): it returns the signed result,
  ``contraindicated`` with the failed step when the agent did not deliver.

**A hard deadline.** ``timeout`` bounds the whole exchange (name resolution,
connecting, TLS, sending, the answer's headers and body): the request runs under one
:func:`asyncio.timeout`, so an agent that accepts and never answers, or trickles its
answer a byte at a time, is cut off when the time is up, never later. The answer is
read as it arrives, up to ``max_bytes``; no content encoding is accepted (nothing is
decompressed). Proxies and redirects are not followed: the verifier talks to the
agent it names.

:func:`challenge_agent` is synchronous; in an event loop, await
:func:`challenge_agent_async`. ``httpx`` is imported on the first challenge.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hmac
import json
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from engine.attest.agent_protocol import CHALLENGE_PATH, MAX_ANSWER_BYTES
from engine.attest.errors import AttestError
from engine.attest.evidence import Evidence, EvidenceError
from engine.attest.result import AttestationResult, Failure, TrustVector, sign_result
from engine.attest.verify import Appraisal, Verifier
from engine.errors import ConfigError, UsageError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_CHALLENGE_TIMEOUT",
    "AgentError",
    "AgentFailure",
    "attest_host",
    "challenge_agent",
    "challenge_agent_async",
]

DEFAULT_CHALLENGE_TIMEOUT = 5.0
"""Seconds a challenge may take, end to end, unless the caller says otherwise."""

AgentFailure = Literal["unreachable", "timeout", "tls", "http", "too_large", "garbage",
                       "nonce", "host"]

_STEPS: dict[AgentFailure, str] = {
    "unreachable": "0 agent unreachable",
    "timeout": "0 agent timed out",
    "tls": "0 agent TLS",
    "http": "0 agent HTTP error",
    "too_large": "0 agent answer too large",
    "garbage": "0 agent answer is not evidence",
    "nonce": "0 agent nonce",
    "host": "0 agent host",
}
_ERROR_PREVIEW = 200


class AgentError(AttestError):
    """A host's agent did not deliver evidence for the challenge. ``failure`` says how
    (``unreachable``, ``timeout``, ``tls``, ``http``, ``too_large``, ``garbage``,
    ``nonce``, ``host``); ``step`` names it in messages and results."""

    def __init__(self, failure: AgentFailure, reason: str, *, endpoint: str,
                 status: int | None = None, tip: str | None = None) -> None:
        super().__init__(_STEPS[failure], reason, tip=tip)
        self.failure: AgentFailure = failure
        self.endpoint = endpoint
        self.status = status
        """The HTTP status of an ``http`` failure."""


def challenge_agent(endpoint: str, nonce: bytes, *, timeout: float,
                    host_id: str | None = None, token: str | None = None,
                    ca: Path | None = None, max_bytes: int = MAX_ANSWER_BYTES) -> Evidence:
    """Challenge the agent at ``endpoint`` (its base URL, ``http://host:port`` or
    ``https://…``; the challenge path is added) with ``nonce``; return its evidence.

    ``timeout`` (seconds) bounds the whole exchange. ``host_id``, when given, is the
    host the evidence must be for. ``token`` is the agent's bearer token, ``ca`` a PEM
    file of the CA certificates that vouch for its TLS certificate (default: the
    system's). Raises :class:`AgentError`; the evidence itself is not appraised here.
    """
    call = functools.partial(challenge_agent_async, endpoint, nonce, timeout=timeout,
                             host_id=host_id, token=token, ca=ca, max_bytes=max_bytes)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(call())
    # Called from inside an event loop: run on a loop of its own, not blocking that one
    # for longer than the deadline either way.
    with concurrent.futures.ThreadPoolExecutor(1, "vigil-challenge") as pool:
        return pool.submit(lambda: asyncio.run(call())).result()


async def challenge_agent_async(endpoint: str, nonce: bytes, *, timeout: float,
                                host_id: str | None = None, token: str | None = None,
                                ca: Path | None = None,
                                max_bytes: int = MAX_ANSWER_BYTES) -> Evidence:
    """:func:`challenge_agent` for a caller in an event loop."""
    import httpx

    if not 0 < timeout < float("inf"):
        raise UsageError(f"a challenge timeout must be a positive number of seconds, not "
                         f"{timeout}")
    if not 1 <= len(nonce) <= 64:
        raise UsageError("a nonce holds 1 to 64 bytes")
    base = endpoint.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"agent endpoint {endpoint!r} is not an http:// or https:// URL")
    url = base + CHALLENGE_PATH
    headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps({"nonce": _b64(nonce)}).encode()
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            async with httpx.AsyncClient(verify=_tls_context(ca), trust_env=False,
                                         follow_redirects=False,
                                         timeout=httpx.Timeout(timeout)) as client:
                data = await _exchange(client, url, body, headers, endpoint, max_bytes)
    except TimeoutError:
        raise _timed_out(endpoint, timeout, started) from None
    except httpx.TimeoutException:
        raise _timed_out(endpoint, timeout, started) from None
    except httpx.TransportError as exc:
        raise _transport_error(exc, endpoint) from None
    try:
        evidence = Evidence.from_json(data)
    except EvidenceError as exc:
        raise AgentError("garbage", f"the agent at {endpoint} answered something that is not "
                         f"evidence ({exc.reason})", endpoint=endpoint) from None
    if not hmac.compare_digest(evidence.nonce, nonce):
        raise AgentError("nonce", f"the agent at {endpoint} answered with evidence for nonce "
                         f"{_short(evidence.nonce)}, not for the nonce it was sent "
                         f"({_short(nonce)}): a replayed or stale quote", endpoint=endpoint,
                         tip="Each challenge needs a quote over its own nonce; investigate "
                         "the host before trusting it again.")
    if host_id is not None and evidence.host_id != host_id:
        raise AgentError("host", f"the agent at {endpoint} answered for host "
                         f"{evidence.host_id!r}, not {host_id!r}", endpoint=endpoint,
                         tip="Check the host's agent endpoint in the fleet inventory.")
    return evidence


async def _exchange(client: httpx.AsyncClient, url: str, body: bytes,
                    headers: dict[str, str], endpoint: str, max_bytes: int) -> bytes:
    async with client.stream("POST", url, content=body,
                             headers={**headers, "Content-Type": "application/json"}
                             ) as response:
        if response.status_code != 200:
            detail = await _error_detail(response)
            raise AgentError("http", f"the agent at {endpoint} answered HTTP "
                             f"{response.status_code}"
                             f"{': ' + detail if detail else ''}", endpoint=endpoint,
                             status=response.status_code,
                             tip="A 401 means a missing or wrong bearer token."
                             if response.status_code == 401 else None)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise AgentError("garbage", f"the agent at {endpoint} answered with content "
                             f"encoding {encoding!r}; only identity is accepted",
                             endpoint=endpoint)
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            raise AgentError("garbage", f"the agent at {endpoint} answered "
                             f"{media or 'no content type'}, not application/json",
                             endpoint=endpoint)
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise _too_large(endpoint, max_bytes)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(endpoint, max_bytes)
            chunks.append(chunk)
        return b"".join(chunks)


async def _error_detail(response: httpx.Response) -> str:
    """The agent's ``{"error": …}`` reason, shortened and printable, or ''."""
    raw = b""
    async for chunk in response.aiter_raw():
        raw += chunk
        if len(raw) > 4096:
            break
    try:
        detail = json.loads(raw).get("error", "")
    except (ValueError, AttributeError):
        return ""
    if not isinstance(detail, str):
        return ""
    text = "".join(c if c.isprintable() else "?" for c in detail)
    return text[:_ERROR_PREVIEW] + ("…" if len(text) > _ERROR_PREVIEW else "")


def _timed_out(endpoint: str, timeout: float, started: float) -> AgentError:
    return AgentError("timeout", f"the agent at {endpoint} did not deliver its evidence "
                      f"within {timeout:g} s (gave up after "
                      f"{time.monotonic() - started:.1f} s)", endpoint=endpoint,
                      tip="Check that the host's agent runs and its TPM answers; a busy "
                      "TPM answers 503.")


def _too_large(endpoint: str, max_bytes: int) -> AgentError:
    return AgentError("too_large", f"the agent at {endpoint} answered more than "
                      f"{max_bytes} bytes", endpoint=endpoint)


def _transport_error(exc: httpx.TransportError, endpoint: str) -> AgentError:
    import httpx

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return AgentError("tls", f"TLS with the agent at {endpoint} failed: "
                              f"{getattr(cause, 'reason', None) or cause}", endpoint=endpoint,
                              tip="Pass the CA that issued the agent's certificate.")
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.RemoteProtocolError):
        return AgentError("garbage", f"the agent at {endpoint} did not answer in HTTP: "
                          f"{exc}", endpoint=endpoint)
    return AgentError("unreachable", f"cannot reach the agent at {endpoint}: "
                      f"{exc or type(exc).__name__}", endpoint=endpoint,
                      tip="Check that `vigil agent serve` runs on the host and listens "
                      "on that address.")


@functools.lru_cache(maxsize=16)
def _tls_context(ca: Path | None) -> ssl.SSLContext:
    """The TLS context to verify agents with, made once per CA file (loading the system
    CAs costs more than a quote)."""
    try:
        return ssl.create_default_context(cafile=None if ca is None else str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the agents' CA certificates from {ca}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _short(value: bytes) -> str:
    return value[:8].hex() + ("…" if len(value) > 8 else "") if value else "(empty)"


# -- a host, attested end to end ---------------------------------------------------------


def attest_host(verifier: Verifier, host_id: str, endpoint: str, *,
                timeout: float = DEFAULT_CHALLENGE_TIMEOUT, token: str | None = None,
                ca: Path | None = None, max_bytes: int = MAX_ANSWER_BYTES) -> Appraisal:
    """A fresh attestation of ``host_id``: a new nonce from the verifier's store, the
    agent at ``endpoint`` challenged with it (within ``timeout`` seconds), its evidence
    appraised (steps 1-6).

    Always a signed result: when the agent does not deliver, the result is
    ``contraindicated`` with one failure naming the step (``0 agent timed out``…) and
    no claim in its trust vector; a replayed quote fails at ``0 agent nonce`` (the
    agent's evidence is for an old nonce) or ``2 nonce`` (the quote's nonce is not the
    evidence's). ``timings`` has the challenge's seconds under ``0 challenge``.
    """
    nonce = verifier.issue_nonce(host_id)
    started = time.perf_counter()
    try:
        evidence = challenge_agent(endpoint, nonce.value, timeout=timeout, host_id=host_id,
                                   token=token, ca=ca, max_bytes=max_bytes)
    except AgentError as exc:
        return _refused(verifier, host_id, exc,
                       {"0 challenge": time.perf_counter() - started})
    challenged = time.perf_counter() - started
    appraisal = verifier.appraise(evidence)
    appraisal.timings["0 challenge"] = challenged
    return appraisal


def _refused(verifier: Verifier, host_id: str, error: AttestError,
            timings: dict[str, float] | None = None) -> Appraisal:
    """The signed ``contraindicated`` result of a host whose evidence never reached
    appraisal, with ``error`` as its one failure."""
    if verifier.signing_key is None:
        raise ConfigError("no key to sign attestation results with",
                          tip="Set VIGIL_ATTEST_RESULT_KEY to a PEM private key "
                          "(vigil attest keygen makes one).")
    result = AttestationResult.build(
        host_id=host_id, verifier=verifier.verifier, trust_vector=TrustVector(),
        failures=[Failure(step=error.step, reason=error.reason)], nonce=None, image=None,
        components=(), ak_name=None, inventory=None)
    return Appraisal(result, sign_result(result, verifier.signing_key), None,
                     dict(timings or {}))
