"""The agent's evidence on a software TPM: the PCR values it sends are the ones its quote
covers, read once after the quote and checked against its pcrDigest; a PCR extended
between the quote and the read makes it quote again."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from engine.attest import agent
from engine.attest.agent import collect_evidence
from engine.attest.lab import AK_HANDLE, HOST, make_site
from engine.attest.quote import quotes_these_values
from engine.attest.swtpm import Swtpm

NO_LOG = None


def _extend_pcr_16(esapi: Any) -> None:
    """TPM2_PCR_Extend of PCR 16 in every bank, on the agent's own connection (swtpm
    serves one connection at a time)."""
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG
    from tpm2_pytss.types import TPML_DIGEST_VALUES, TPMT_HA, TPMU_HA

    algs = {"sha1": TPM2_ALG.SHA1, "sha256": TPM2_ALG.SHA256, "sha384": TPM2_ALG.SHA384}
    esapi.pcr_extend(ESYS_TR.PCR16, TPML_DIGEST_VALUES([
        TPMT_HA(hashAlg=alg, digest=TPMU_HA(**{bank: hashlib.new(bank, b"x").digest()}))
        for bank, alg in algs.items()]))


def test_the_values_sent_are_the_quoted_ones(swtpm: Swtpm, tmp_path: Path) -> None:
    make_site(swtpm, tmp_path)
    evidence = collect_evidence(HOST, b"n" * 32, tcti=swtpm.tcti, ak_handle=AK_HANDLE,
                                eventlog=NO_LOG)
    quote = evidence.quote
    assert quotes_these_values(quote.attest, quote.signature, evidence.pcrs)
    changed = {bank: dict(values) for bank, values in evidence.pcrs.items()}
    bank = next(iter(changed))
    changed[bank][0] = b"\x01" * len(changed[bank][0])
    assert not quotes_these_values(quote.attest, quote.signature, changed)


def test_a_pcr_changing_after_the_quote_makes_the_agent_quote_again(
        swtpm: Swtpm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_site(swtpm, tmp_path)
    read = agent._read_pcrs
    reads: list[int] = []

    def extended_once(esapi: Any, spec: str) -> dict[str, dict[int, bytes]]:
        if not reads:  # firmware extends a PCR between the first quote and its read
            _extend_pcr_16(esapi)
        reads.append(1)
        return read(esapi, spec)

    monkeypatch.setattr(agent, "_read_pcrs", extended_once)
    evidence = collect_evidence(HOST, b"n" * 32, tcti=swtpm.tcti, ak_handle=AK_HANDLE,
                                eventlog=NO_LOG)
    assert len(reads) == 2
    assert quotes_these_values(evidence.quote.attest, evidence.quote.signature, evidence.pcrs)


def test_pcrs_that_keep_changing_are_an_error(
        swtpm: Swtpm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_site(swtpm, tmp_path)
    read = agent._read_pcrs

    def always_extended(esapi: Any, spec: str) -> dict[str, dict[int, bytes]]:
        _extend_pcr_16(esapi)
        return read(esapi, spec)

    monkeypatch.setattr(agent, "_read_pcrs", always_extended)
    with pytest.raises(agent.TpmError, match="kept changing"):
        collect_evidence(HOST, b"n" * 32, tcti=swtpm.tcti, ak_handle=AK_HANDLE,
                         eventlog=NO_LOG)
