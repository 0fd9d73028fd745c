"""Time a full appraisal (quote + log + reference match + signed result) on swtpm.

    .venv/bin/python -m tests.attest.appraisal_timing [RUNS] [EVENTS]

Enrolls an AK on a fresh swtpm, boots the test hypervisor log into it, approves that
boot as a signed manifest, collects RUNS pieces of evidence (one nonce each), then times
``Verifier.appraise`` on each: steps 1 to 6, nonce consumption in the SQLite state file
and the ES256-signed EAR included; evidence collection (the TPM's work) is not. Prints
p50/p90/max in milliseconds, overall and per step.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from engine.attest.eventlog import parse
from engine.attest.evidence import Evidence
from engine.attest.simboot import Boot
from tests.attest.conftest import Swtpm, manufacture
from tests.attest.helpers import Site, make_site


def prepare(base: Path, runs: int, events: int) -> tuple[Site, list[Evidence], Path]:
    """On a fresh swtpm in ``base``: enroll an AK, boot an ``events``-event log, approve
    that boot as a signed manifest, collect ``runs`` pieces of evidence (one nonce
    each). The TPM is stopped on return; the site's verifier stays usable."""
    (base / "template").mkdir()
    template = manufacture(base / "template")
    tpm = Swtpm(template.state, template, base / "swtpm.log")
    tpm.start()
    try:
        site = make_site(tpm, base)
        log = site.boot(Boot(grub_commands=max(0, events - 28)))
        site.approve(site.evidence(log))
        return site, [site.evidence(log) for _ in range(runs)], log
    finally:
        tpm.stop()


def main(runs: int = 200, events: int = 100) -> None:
    with tempfile.TemporaryDirectory() as folder:
        site, evidences, log = prepare(Path(folder), runs, events)
        n_events = len(parse(log.read_bytes()).events)
        timings = []
        for evidence in evidences:
            appraisal = site.verifier.appraise(evidence)
            assert appraisal.result.status == "affirming", appraisal.result.failures
            timings.append(appraisal.timings)
    print(f"full appraisal over {runs} runs (RSA-2048 AK, 3 banks x 24 PCRs quoted, "
          f"{len(site.verifier.references.manifests)} manifest, "
          f"{n_events}-event log):")
    for step in timings[0]:
        values = sorted(t[step] * 1000 for t in timings)
        p90 = values[int(0.9 * (len(values) - 1))]
        print(f"  {step:<20} p50 {statistics.median(values):6.3f} ms   p90 {p90:6.3f} ms   "
              f"max {values[-1]:6.3f} ms")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
