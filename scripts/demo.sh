#!/usr/bin/env bash
# The main job with embedded defaults (a DuckDB file, in-process Rego, a software TPM):
#   1. build the PVDB from the offline snapshot in feeds/ and list what affects the
#      sample host's components (evidence/);
#   2. attest a software-TPM host: enroll its AK, boot it, approve its image from a
#      golden measurement, then verify fresh evidence into a signed attestation result;
#   3. decide placing a tenant's VM on it: the result's components, the PVDB and the
#      default Rego policy give admit / patch / delay / reject with readable reasons.
# Everything lands under .vigil/ (remove it to start over).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
WORK="$PWD/.vigil"
mkdir -p "$WORK"
export VIGIL_DB="${VIGIL_DB:-$WORK/pvdb.duckdb}"
export VIGIL_DECISION_LOG="$WORK/decisions.duckdb"
vigil() { .venv/bin/vigil "$@"; }
step() { printf '\n== %s\n' "$*"; }

step "1. PVDB: ingest the feed snapshot, ask about the sample host"
vigil feeds ingest --offline feeds/snapshot
vigil feeds status
vigil pvdb affecting --components evidence/sample-host.components.json

step "2. Attestation: a software-TPM host"
HOST=hv-demo-01
SWTPM="$WORK/swtpm"
rm -rf "$WORK/attest" && mkdir -p "$WORK/attest/references"
A="$WORK/attest"
vigil agent simulate stop --state "$SWTPM" >/dev/null 2>&1 || true
vigil agent simulate start --state "$SWTPM" --json > "$A/swtpm.json"
trap 'vigil agent simulate stop --state "$SWTPM" >/dev/null 2>&1 || true' EXIT
field() { .venv/bin/python -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))[sys.argv[2]]) if sys.argv[2] == 'ek_ca' else json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }
export VIGIL_TCTI="$(field "$A/swtpm.json" tcti)"
export VIGIL_ATTEST_EK_CA="$(field "$A/swtpm.json" ek_ca)"
export VIGIL_ATTEST_DB="$A/attest.sqlite3"
export VIGIL_ATTEST_RESULT_KEY="$A/verifier.pem"
export VIGIL_ATTEST_REFERENCES="$A/references"
export VIGIL_ATTEST_REFERENCE_KEYS="[\"$A/image.pub.pem\"]"
vigil attest keygen --out "$A/verifier.pem"
vigil attest keygen --type ed25519 --out "$A/image.pem"
vigil agent enroll --host-id "$HOST" --replace --out "$A/enroll.json"
vigil attest ak challenge "$A/enroll.json" --out "$A/challenge.json"
vigil agent activate "$A/challenge.json" --out "$A/response.json"
vigil attest ak complete "$A/response.json"
vigil agent simulate boot --state "$SWTPM" --eventlog "$A/eventlog.bin"
evidence() {  # a fresh nonce from the verifier, a quote over it from the host
  vigil agent evidence --host-id "$HOST" --nonce "$(vigil attest nonce "$HOST")" \
    --eventlog "$A/eventlog.bin" --sys-root "$A/no-sys" --proc-root "$A/no-proc" \
    --set "hypervisor_version=xen 4.17.3" --out "$1"
}
evidence "$A/golden.json"
vigil attest reference create "$A/golden.json" --name hv-xen-dom0 --version 2024.05.1 \
  --key "$A/image.pem" --components evidence/sample-host.components.json \
  --out "$A/references/hv-xen-dom0.jws"
evidence "$A/evidence.json"
vigil attest verify "$A/evidence.json" --out "$A/result.jwt"

step "3. Decision: place acme's VM web-1 on $HOST (exit 1 unless admitted)"
set +e
vigil decide --result "$A/result.jwt" --key "$A/verifier.pub.pem" \
  --tenant acme --vm web-1 --vcpus 2 --memory-mib 4096
verdict=$?
set -e
vigil decisions export | tail -n 1 | .venv/bin/python -c \
  "import json,sys; e=json.loads(sys.stdin.read()); print('logged decision', e['decision_id'], 'bundle', e['bundles'])"
[ "$verdict" -le 1 ]
