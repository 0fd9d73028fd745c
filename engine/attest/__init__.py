"""Host verification: TPM 2.0 quotes, measured-boot event logs, reference values.

Verification follows numbered steps, each with its own error:

1. quote structure and signature (:mod:`engine.attest.quote`)
2. nonce freshness
3. PCR digest recomputed from the reported PCR values
4. event log parsed and replayed against the quoted PCRs (:mod:`engine.attest.eventlog`)
5. reference values of an approved image
6. a signed attestation result
"""
