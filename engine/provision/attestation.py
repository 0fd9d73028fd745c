"""A fresh attestation result for a host: the port and its implementations.

The flow asks a :class:`HostAttestation` for the chosen host and gets either an
:class:`Attested` (a verified result and the EAR it was read from) or a
:class:`NotAttested` naming the step that failed and why. Implementations:

* :class:`CachedAttestation`: the host's cached verified result, while younger than
  ``attest_result_ttl`` (:class:`~engine.provision.results.ResultCache`);
* :class:`AgentAttestation`: challenge the host's agent (its ``agent_endpoint`` in the
  fleet inventory) with a nonce just issued, and appraise the evidence it answers with
  (:meth:`engine.attest.Verifier.appraise`). The challenge is a function
  ``challenge(endpoint, nonce, *, timeout) -> Evidence`` (:func:`engine.attest.
  challenge_agent`, whose errors name the agent step that failed); an agent that does
  not answer
  within ``timeout`` seconds (enforced here too, whatever the function does) is a
  :class:`NotAttested`, never a hang;
* :class:`CachedThenAgent`: the cached result when there is one, else the agent.

A result the verifier signs ``contraindicated`` (a replayed quote, an unapproved boot)
is still an answer: the policy rejects it, naming the failed step.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from engine.attest import AttestationResult, AttestError, Evidence, Verifier
from engine.errors import VigilError
from engine.fleet import Host
from engine.provision.results import ResultCache

STEP_CACHED = "attestation (cached result)"
STEP_AGENT = "attestation (agent challenge)"
STEP_NONCE = "2 nonce"

ChallengeFn = Callable[..., Evidence]
"""``challenge(endpoint: str, nonce: bytes, *, timeout: float) -> Evidence``."""


@dataclass(frozen=True)
class Attested:
    """A verified attestation result for the host."""

    result: AttestationResult
    ear: str | None
    """The EAR (compact JWT) the result was read from or signed as."""
    source: Literal["cached", "fresh"]


@dataclass(frozen=True)
class NotAttested:
    """No result: the step that failed and why, in words a person can act on."""

    step: str
    reason: str


AttestationAnswer = Attested | NotAttested


class HostAttestation(Protocol):
    """Gives a host's fresh verified attestation result, or says why there is none."""

    def attest(self, host: Host) -> AttestationAnswer: ...


class CachedAttestation:
    """The cached verified result younger than the cache's TTL."""

    def __init__(self, cache: ResultCache) -> None:
        self.cache = cache

    def attest(self, host: Host) -> AttestationAnswer:
        entry, why = self.cache.entry(host.id)
        if entry is None:
            return NotAttested(STEP_CACHED, why)
        return Attested(entry[0], entry[1], "cached")


def _classify(exc: BaseException, endpoint: str, timeout: float) -> str:
    name = type(exc).__name__
    if isinstance(exc, TimeoutError) or "Timeout" in name:
        return f"the agent at {endpoint} did not answer within {timeout:g} s"
    if isinstance(exc, VigilError):
        return f"the agent at {endpoint} answered with no usable evidence: {exc.summary}"
    if isinstance(exc, ValueError):
        return f"the agent at {endpoint} answered with no usable evidence: {str(exc)[:300]}"
    if isinstance(exc, OSError) or "Connect" in name or "Network" in name:
        return f"the agent at {endpoint} cannot be reached ({name})"
    return f"challenging the agent at {endpoint} failed ({name}: {str(exc)[:200]})"


class AgentAttestation:
    """Challenge the host's agent with a nonce just issued; appraise its evidence."""

    def __init__(self, verifier: Verifier, challenge: ChallengeFn, *, timeout: float,
                 cache: ResultCache | None = None, workers: int = 8) -> None:
        self.verifier = verifier
        self.challenge = challenge
        self.timeout = timeout
        self.cache = cache
        self._lock = threading.Lock()  # the verifier's state files, one appraisal at a time
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="vigil-agent")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def attest(self, host: Host) -> AttestationAnswer:
        endpoint = host.agent_endpoint
        if not endpoint:
            return NotAttested(STEP_AGENT, f"host {host.id} has no agent endpoint in the "
                               "fleet inventory")
        try:
            with self._lock:
                nonce = self.verifier.issue_nonce(host.id).value
        except VigilError as exc:
            return NotAttested(STEP_AGENT, f"no nonce could be issued: {exc.summary}")
        started = time.monotonic()
        future = self._pool.submit(self.challenge, endpoint, nonce, timeout=self.timeout)
        try:
            # the function's own timeout bounds its request; this bounds the whole call
            evidence = future.result(timeout=self.timeout + 0.5)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return NotAttested(STEP_AGENT, f"the agent at {endpoint} did not answer within "
                               f"{self.timeout:g} s")
        except AttestError as exc:  # the agent client names the step (engine.attest)
            return NotAttested(exc.step, f"the agent at {endpoint}: {exc.reason}")
        except Exception as exc:
            return NotAttested(STEP_AGENT, _classify(exc, endpoint, self.timeout))
        if time.monotonic() - started > self.timeout + 0.5:
            return NotAttested(STEP_AGENT, f"the agent at {endpoint} did not answer within "
                               f"{self.timeout:g} s")
        if not isinstance(evidence, Evidence):
            return NotAttested(STEP_AGENT, f"the agent at {endpoint} answered with something "
                               "that is not evidence")
        if evidence.host_id != host.id:
            return NotAttested(STEP_AGENT, f"the agent at {endpoint} answered for host "
                               f"{evidence.host_id!r}, not {host.id!r}")
        if not hmac.compare_digest(bytes(evidence.nonce), nonce):
            return NotAttested(STEP_NONCE, f"the agent at {endpoint} answered with evidence "
                               "over another nonce than the one it was sent (a replayed "
                               "quote?)")
        try:
            with self._lock:
                appraisal = self.verifier.appraise(evidence)
        except VigilError as exc:
            return NotAttested(STEP_AGENT, f"the evidence cannot be appraised: {exc.summary}")
        if self.cache is not None and appraisal.result.status != "contraindicated":
            self.cache.put(appraisal.result, appraisal.token)
        return Attested(appraisal.result, appraisal.token, "fresh")


class CachedThenAgent:
    """The cached result when it is fresh, else a challenge to the agent."""

    def __init__(self, cached: CachedAttestation, agent: AgentAttestation) -> None:
        self.cached = cached
        self.agent = agent

    def attest(self, host: Host) -> AttestationAnswer:
        got = self.cached.attest(host)
        if isinstance(got, Attested):
            return got
        fresh = self.agent.attest(host)
        if isinstance(fresh, Attested):
            return fresh
        return NotAttested(fresh.step, f"{fresh.reason} (and {got.reason})")


def age_of(result: AttestationResult, now: dt.datetime) -> float:
    """Seconds since the result was issued."""
    return (now - result.issued_at).total_seconds()
