"""The flow's parts wired from the settings, shared by the service and the command line.

:func:`build` makes the result cache (``attest_results``, ``attest_result_ttl``), the
attestation port (``attest_source``: cached, agent, or cached then agent, with
``attest_agent_timeout``), the fleet and catalog files, the PVDB and policy
(:class:`~engine.provision.deciding.Deciding`), the preparation queue and the flow.

The agent challenge is :func:`engine.attest.challenge_agent` unless another function is
given.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.attest import Verifier, challenge_agent, load_verification_key
from engine.config import Settings
from engine.decide import DecisionLog
from engine.errors import VigilError
from engine.provision.attestation import (
    AgentAttestation,
    CachedAttestation,
    CachedThenAgent,
    ChallengeFn,
    HostAttestation,
)
from engine.provision.deciding import Deciding
from engine.provision.flow import ProvisionFlow
from engine.provision.results import ResultCache
from engine.provision.selection import DecisionMemo
from engine.provision.sources import CatalogFile, FleetFile, PreparationQueue


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _agent_client(settings: Settings) -> tuple[ChallengeFn | None, str]:
    """``challenge_agent`` with the agents' token and CA from the settings."""
    token = None
    if settings.attest_agent_token_file is not None:
        try:
            token = settings.attest_agent_token_file.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            return None, (f"the agent token file {settings.attest_agent_token_file} cannot "
                          f"be read: {type(exc).__name__}")
        if not token or "\n" in token:
            return None, (f"the agent token file {settings.attest_agent_token_file} must "
                          "hold one line")
    if token is None and settings.attest_agent_ca is None:
        return challenge_agent, ""
    return functools.partial(challenge_agent, token=token, ca=settings.attest_agent_ca), ""


def default_challenge() -> ChallengeFn | None:
    """The attestation part's agent client (:func:`engine.attest.challenge_agent`)."""
    return challenge_agent


@dataclass
class Parts:
    settings: Settings
    cache: ResultCache
    cached: CachedAttestation
    attestation: HostAttestation
    agent: AgentAttestation | None
    deciding: Deciding
    fleet: FleetFile
    catalog: CatalogFile
    flow: ProvisionFlow
    problems: list[str] = field(default_factory=list)
    """Configuration problems that stop every placement (a key that does not load)."""
    notes: list[str] = field(default_factory=list)
    """What is configured but not available (no agent client: cached results only)."""

    def readiness(self) -> list[str]:
        return [*self.deciding.readiness(), *self.problems]

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close()
            self.agent.verifier.close()
        self.deciding.close()


def build(settings: Settings, *, decision_log: DecisionLog | None = None,
          clock: Callable[[], dt.datetime] | None = None,
          results: ResultCache | None = None,
          challenge: ChallengeFn | None = None,
          verifier: Verifier | None = None) -> Parts:
    """The parts of the flow for ``settings`` (nothing is opened until first used)."""
    now = clock or _utcnow
    problems: list[str] = []
    notes: list[str] = []
    if results is None:
        key = None
        if settings.attest_result_verification_key is not None:
            try:
                key = load_verification_key(settings.attest_result_verification_key)
            except (VigilError, OSError) as exc:
                reason = exc.summary if isinstance(exc, VigilError) else str(exc)
                problems.append(f"the attestation-result key does not load: {reason}")
        results = ResultCache(settings.attest_results, key, ttl=settings.attest_result_ttl,
                              clock=now)
    cached = CachedAttestation(results)
    attestation: HostAttestation = cached
    agent: AgentAttestation | None = None
    if settings.attest_source != "cached":
        if challenge is None:
            challenge, problem = _agent_client(settings)
            if problem:
                problems.append(problem)
        if challenge is None:
            note = "no agent client is available: fresh attestations cannot be asked for"
            (problems if settings.attest_source == "agent" else notes).append(note)
        elif verifier is None and settings.attest_result_key is None:
            note = ("no key to sign attestation results (VIGIL_ATTEST_RESULT_KEY): agents "
                    "cannot be challenged")
            (problems if settings.attest_source == "agent" else notes).append(note)
        else:
            try:
                verifier = verifier or Verifier.from_settings(settings)
            except (VigilError, OSError) as exc:
                reason = exc.summary if isinstance(exc, VigilError) else str(exc)
                note = f"the verifier for agent challenges does not load: {reason}"
                (problems if settings.attest_source == "agent" else notes).append(note)
            else:
                agent = AgentAttestation(verifier, challenge,
                                         timeout=settings.attest_agent_timeout, cache=results)
                attestation = agent if settings.attest_source == "agent" \
                    else CachedThenAgent(cached, agent)
    deciding = Deciding(settings, decision_log=decision_log)
    fleet = FleetFile(settings.fleet_db)
    catalog = CatalogFile(settings.images_db)
    preparation = PreparationQueue(settings.predict_db, deciding.using,
                                   window_days=settings.predict_window_days)
    flow = ProvisionFlow(fleet=fleet, attestation=attestation, deciding=deciding,
                         patched=catalog, preparation=preparation, pin_attestation=cached,
                         memo=DecisionMemo(), clock=now)
    return Parts(settings, results, cached, attestation, agent, deciding, fleet, catalog,
                 flow, problems, notes)
