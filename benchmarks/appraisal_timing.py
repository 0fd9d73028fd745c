"""Time a full appraisal (quote + log + reference match + signed result) on swtpm.

    .venv/bin/python benchmarks/appraisal_timing.py [RUNS] [EVENTS]

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

from engine.attest import parse_eventlog
from engine.attest.lab import prepare_appraisals


def main(runs: int = 200, events: int = 100) -> None:
    with tempfile.TemporaryDirectory() as folder:
        site, evidences, log = prepare_appraisals(Path(folder), runs, events)
        n_events = len(parse_eventlog(log.read_bytes()).events)
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
