"""Keylime's verifier code, importable in this process, for ``attest_bench.py``.

Keylime is not a dependency of Vigil. Its PyPI wheel declares no dependencies and ships
no configuration, so :func:`load` prepares what the two measured entry points need:

1. **A venv of its own** (default ``$XDG_CACHE_HOME/vigil/keylime-<version>-py<X.Y>``,
   or ``VIGIL_KEYLIME_VENV``), made with ``python -m venv`` and ``pip install
   keylime==<version>`` when it does not hold that version yet. Its site-packages is
   *appended* to ``sys.path``: every module that both sides import (``cryptography``,
   ``yaml``, ``packaging``) then comes from the project's venv, so Vigil and Keylime use
   the same OpenSSL build. A module Keylime's measured paths need that the project's
   venv lacks is pip-installed into Keylime's venv (found by trying: with the project's
   venv that set is empty; a bare interpreter needs ``cryptography pyyaml packaging``).
2. **System tools**: ``keylime.mba.elparsing.tpm2_tools_elparser`` runs ``tpm2_eventlog``
   and ``tpm2_startup --version`` (Debian ``tpm2-tools``) and its enrichment step loads
   ``libefivar.so.1`` with ctypes (Debian ``libefivar1``). Installed with apt-get when
   missing and running as root (unless ``allow_apt`` is false).
3. **Stand-ins**: a module object for ``gpg`` (imported, never used on these paths);
   ``keylime.config.CONFIG_ENV["verifier"]`` pointed at ``../shared/data/keylime/
   verifier.conf`` (generated from Keylime's own templates; these two paths read no
   option of it, but a verifier process would have it). There is no ``logging.conf``:
   a handler is put on the root logger first, so Keylime's fallback
   ``logging.basicConfig(level=DEBUG)`` does nothing, and the ``keylime`` loggers are set
   to CRITICAL (its warnings and errors on the logs it cannot parse would otherwise
   print; the benchmark reports those failures itself). Logging at DEBUG into a buffer
   instead changes ``bootlog_parse``'s time by under 1 %.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEYLIME_VERSION = "7.14.3"
LIBEFIVAR = "libefivar.so.1"
RUNTIME_MODULES = {"cryptography": "cryptography", "yaml": "pyyaml", "packaging": "packaging"}
"""Third-party modules that ``checkquote`` and ``bootlog_parse`` import, and their PyPI
names (found by importing the two paths from a venv holding only keylime)."""
SYSTEM_NEEDS = {"tpm2_eventlog": "tpm2-tools", "tpm2_startup": "tpm2-tools"}


@dataclass
class Keylime:
    """The imported Keylime modules and how they were set up."""

    version: str
    venv: Path
    site_packages: Path
    tpm_util: Any
    mba: Any
    cmd_exec: Any
    setup: list[str] = field(default_factory=list)
    """What :func:`load` had to do (created the venv, pip/apt installs)."""
    pip_extras: list[str] = field(default_factory=list)
    tpm2_tools: str | None = None
    yaml_loader: str | None = None
    """The loader Keylime parses tpm2_eventlog's YAML with: ``CSafeLoader`` when PyYAML
    has libyaml (the case here), else the pure-Python ``SafeLoader``, about 4x slower
    on a 100-event log."""


class KeylimeUnavailable(RuntimeError):
    """Keylime's code cannot be run here; the message says why."""


def default_venv() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return Path(os.environ.get("VIGIL_KEYLIME_VENV")
                or base / "vigil" / f"keylime-{KEYLIME_VERSION}-py{py}")


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def _run(cmd: list[str], quiet: bool) -> None:
    _say(quiet, "  $ " + " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise KeylimeUnavailable(f"{' '.join(cmd)} failed ({done.returncode}):\n"
                                 f"{(done.stderr or done.stdout)[-2000:]}")


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _site_packages(venv: Path) -> Path:
    out = subprocess.run([str(_venv_python(venv)), "-c",
                          "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _installed_version(site: Path) -> str | None:
    for meta in site.glob("keylime-*.dist-info/METADATA"):
        for line in meta.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    return None


def _pip(venv: Path, packages: list[str], quiet: bool) -> None:
    _run([str(_venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check",
          "-q", *packages], quiet)


def ensure_venv(venv: Path, quiet: bool, setup: list[str]) -> Path:
    """Keylime's own venv with keylime==KEYLIME_VERSION; its site-packages folder."""
    if not _venv_python(venv).exists():
        _say(quiet, f"creating Keylime's venv at {venv} …")
        venv.parent.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "venv", str(venv)], quiet)
        setup.append(f"created venv {venv}")
    site = _site_packages(venv)
    if _installed_version(site) != KEYLIME_VERSION:
        _say(quiet, f"installing keylime=={KEYLIME_VERSION} into {venv} …")
        _pip(venv, [f"keylime=={KEYLIME_VERSION}"], quiet)
        setup.append(f"pip install keylime=={KEYLIME_VERSION}")
    return site


def _libefivar_loads() -> bool:
    try:
        ctypes.CDLL(LIBEFIVAR)
    except OSError:
        return False
    return True


def ensure_system(allow_apt: bool, quiet: bool, setup: list[str]) -> None:
    missing = sorted({pkg for tool, pkg in SYSTEM_NEEDS.items() if shutil.which(tool) is None}
                     | (set() if _libefivar_loads() else {"libefivar1"}))
    if not missing:
        return
    can_apt = allow_apt and shutil.which("apt-get") is not None and os.geteuid() == 0
    if not can_apt:
        raise KeylimeUnavailable(
            f"Keylime's boot-log parser needs the Debian packages {' '.join(missing)} "
            "(tpm2_eventlog, libefivar.so.1); install them (apt-get install) or run as "
            "root without --no-apt")
    _say(quiet, f"installing {' '.join(missing)} with apt-get …")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if subprocess.run(cmd, capture_output=True, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, check=False)
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise KeylimeUnavailable(f"apt-get install {' '.join(missing)} failed:\n"
                                     f"{done.stderr[-2000:]}")
    setup.append(f"apt-get install {' '.join(missing)}")
    if not _libefivar_loads():
        raise KeylimeUnavailable(f"{LIBEFIVAR} still cannot be loaded")


def _tpm2_tools_version() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["tpm2_startup", "--version"], capture_output=True, text=True,
                             check=False).stdout
        if 'version="' in out:
            return out.split('version="', 1)[1].split('"', 1)[0]
    return None


def _quiet_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)
        root.addHandler(handler)
    logging.getLogger("keylime").setLevel(logging.CRITICAL)


def load(*, venv: Path | None = None, verifier_conf: Path | None = None,
         allow_apt: bool = True, quiet: bool = False) -> Keylime:
    """Set Keylime up (see the module doc) and import ``keylime.tpm.tpm_util`` and
    ``keylime.mba.mba`` (with ``load_imports(skip_custom_policies=True)`` done)."""
    venv = venv or default_venv()
    setup: list[str] = []
    ensure_system(allow_apt, quiet, setup)
    site = ensure_venv(venv, quiet, setup)
    if str(site) not in sys.path:
        sys.path.append(str(site))
    importlib.invalidate_caches()
    extras = [pkg for module, pkg in RUNTIME_MODULES.items()
              if importlib.util.find_spec(module) is None]
    if extras:
        _say(quiet, f"installing Keylime's runtime needs {' '.join(extras)} into {venv} …")
        _pip(venv, extras, quiet)
        setup.append(f"pip install {' '.join(extras)}")
        importlib.invalidate_caches()
    sys.modules.setdefault("gpg", types.ModuleType("gpg"))
    _quiet_logging()
    try:
        config = importlib.import_module("keylime.config")
        if verifier_conf is not None and verifier_conf.is_file():
            config.CONFIG_ENV["verifier"] = str(verifier_conf)
        tpm_util = importlib.import_module("keylime.tpm.tpm_util")
        mba = importlib.import_module("keylime.mba.mba")
        mba.load_imports(skip_custom_policies=True)
        # The enrichment module is imported lazily on the first parse; import it now so
        # that its ctypes load of libefivar is not inside a timed call.
        importlib.import_module("keylime.mba.elparsing.tpm_bootlog_enrich")
        cmd_exec = importlib.import_module("keylime.cmd_exec")
    except Exception as exc:  # the message is the report
        raise KeylimeUnavailable(f"importing Keylime from {site} failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
    _quiet_logging()
    version = importlib.import_module("keylime").__dict__.get("__version__") \
        or _installed_version(site) or "?"
    return Keylime(version=version, venv=venv, site_packages=site, tpm_util=tpm_util, mba=mba,
                   cmd_exec=cmd_exec, setup=setup, pip_extras=extras,
                   tpm2_tools=_tpm2_tools_version(),
                   yaml_loader=getattr(getattr(config, "SafeLoader", None), "__name__", None))
