"""The part's face: ``engine.attest`` exports what the CLI, the decider and the tests use,
and importing it stays light (no database stack, no TPM stack)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import engine.attest

ROOT = Path(engine.attest.__file__).resolve().parents[2]


def test_importing_the_face_loads_no_database_or_tpm_stack() -> None:
    code = ("import json, sys; import engine.attest; "
            "print(json.dumps([m for m in ('duckdb', 'pyarrow', 'tpm2_pytss') "
            "if m in sys.modules]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env).stdout
    loaded = json.loads(out)
    assert "duckdb" not in loaded
    assert "pyarrow" not in loaded
    assert "tpm2_pytss" not in loaded

