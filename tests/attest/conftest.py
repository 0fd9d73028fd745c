"""The software TPM fixture: Debian's ``swtpm`` on a free loopback port.

``swtpm_template`` manufactures one TPM per test session (:func:`engine.attest.swtpm.
manufacture`); ``swtpm`` copies that state for one test, starts it and stops it
afterwards. Tests skip with the reason when swtpm, swtpm_setup or tpm2-pytss is missing
(``scripts/setup.sh`` installs them).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.attest.swtpm import Swtpm, SwtpmTemplate, manufacture


def _require_tools() -> None:
    for tool in ("swtpm", "swtpm_setup", "swtpm_ioctl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian packages swtpm and swtpm-tools; "
                        "scripts/setup.sh installs them)")
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"tpm2-pytss cannot be imported ({exc}); run scripts/setup.sh")


@pytest.fixture(scope="session")
def swtpm_template(tmp_path_factory: pytest.TempPathFactory) -> SwtpmTemplate:
    _require_tools()
    try:
        return manufacture(tmp_path_factory.mktemp("swtpm-template"))
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def swtpm(swtpm_template: SwtpmTemplate, tmp_path: Path) -> Iterator[Swtpm]:
    state = tmp_path / "swtpm-state"
    shutil.copytree(swtpm_template.state, state)
    tpm = Swtpm(state, swtpm_template, tmp_path / "swtpm.log")
    tpm.start()
    try:
        yield tpm
    finally:
        tpm.stop()
