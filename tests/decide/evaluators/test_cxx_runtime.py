"""rego-cpp's library loaded first in a process must not break DuckDB's C++ (a regexp
after ``import regopy`` was a double free that ended the process)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import engine.decide.evaluators.regopy_engine  # rego-cpp first, as a fresh worker does
import regopy
import duckdb
out = regopy.Interpreter().query('x := 1')
assert out.ok()
con = duckdb.connect()
row = con.execute("SELECT regexp_full_match('CVE-2024-1', '^CVE-\\\\d{4}-\\\\d+$')").fetchone()
print(row[0])
"""


def test_duckdb_runs_after_rego_cpp_is_loaded_first() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"
