#!/usr/bin/env bash
# The whole test suite: installs what it needs, runs the static checks (ruff, mypy
# --strict), then pytest in parallel (Rego policy tests included). Extra arguments go to
# pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check engine tests benchmarks
.venv/bin/mypy engine
.venv/bin/python -m pytest -n auto "$@"
