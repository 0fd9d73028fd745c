"""The face of engine.decide: every exported name resolves, and importing it is light."""

from __future__ import annotations

import subprocess
import sys

import engine.decide


def test_every_exported_name_resolves() -> None:
    for name in engine.decide.__all__:
        assert getattr(engine.decide, name) is not None, name
    assert sorted(engine.decide.__all__) == sorted(engine.decide._HOME)


def test_importing_the_face_loads_none_of_its_modules() -> None:
    probe = ("import sys, engine.decide; "
             "print(' '.join(sorted(m for m in sys.modules if m.startswith('engine.'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, timeout=120).stdout.split()
    assert loaded == ["engine.decide"]
