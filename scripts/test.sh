#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs pytest (in parallel) and the
# static checks. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check engine tests benchmarks
.venv/bin/python -m pytest -n auto "$@"
