#!/usr/bin/env bash
# The main job with embedded defaults (DuckDB files, in-process Rego, software TPMs), the
# whole provisioning story on this machine (`vigil lab demo`, engine/cli/lab.py):
#   1. the PVDB from the offline snapshot in feeds/snapshot;
#   2. an image catalog: the hosts' images approved from signed manifests, and a patched
#      version of one built, attested on a staging software TPM and approved;
#   3. five hosts, each its own software TPM (swtpm) and host agent on 127.0.0.1, on
#      several image versions, their AKs enrolled;
#   4. the service (`vigil serve`) on a free port of 127.0.0.1, with API tokens;
#   5. four provisioning requests (`vigil provision request`), whose verdicts must be
#      admit, delay, patch and reject (exit 1 otherwise); each signed report is fetched,
#      verified and written as HTML.
# Then the service keeps running (dashboard at /ui) until Ctrl-C, which stops the
# service, the agents and the software TPMs.
#   scripts/demo.sh --once        tell the story and stop (for scripts)
#   scripts/demo.sh --port 8443   a fixed port instead of a free one
# Everything lands under .vigil/demo (emptied on each run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m engine.cli.main lab demo --state .vigil/demo "$@"
