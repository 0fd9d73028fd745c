#!/usr/bin/env bash
# The main job with embedded defaults: build the PVDB (a DuckDB file) from the offline
# snapshot in feeds/ and print what affects the sample host in evidence/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export VIGIL_DB="${VIGIL_DB:-$PWD/.vigil/pvdb.duckdb}"
mkdir -p "$(dirname "$VIGIL_DB")"
.venv/bin/vigil feeds ingest --offline feeds/snapshot
.venv/bin/vigil feeds status
.venv/bin/vigil pvdb affecting --components evidence/sample-host.components.json
