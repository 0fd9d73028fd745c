"""A software TPM: Debian's ``swtpm``, manufactured with EKs and EK certificates.

:func:`manufacture` runs ``swtpm_setup`` (RSA and ECC EKs with EK certificates issued by a
throw-away local CA, PCR banks sha1, sha256 and sha384); :class:`Swtpm` runs
``swtpm socket --tpm2`` on two free consecutive loopback ports (the TCTI's data and
control ports), power-cycles it, and extends PCRs the way firmware does while booting.
Used by ``vigil agent simulate``, the demo and the tests.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SWTPM_BANKS = ("sha1", "sha256", "sha384")
_START_TIMEOUT = 10.0


@dataclass(frozen=True)
class SwtpmTemplate:
    state: Path
    """A manufactured TPM state folder, copied for each test."""
    ek_root: Path
    """The local CA's root certificate (trust anchor for the EK certificates)."""
    ek_intermediate: Path
    """The local CA's issuing certificate."""


def manufacture(base: Path) -> SwtpmTemplate:
    """Run swtpm_setup into ``base``: a TPM state with EKs and EK certificates."""
    state, ca = base / "state", base / "ca"
    state.mkdir()
    ca.mkdir()
    (base / "localca.conf").write_text(
        f"statedir = {ca}\nsigningkey = {ca}/signkey.pem\n"
        f"issuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n")
    (base / "localca.options").write_text(
        "--platform-manufacturer Vigil\n--platform-version 2.1\n--platform-model test\n")
    (base / "swtpm_setup.conf").write_text(
        "create_certs_tool = /usr/bin/swtpm_localca\n"
        f"create_certs_tool_config = {base}/localca.conf\n"
        f"create_certs_tool_options = {base}/localca.options\n"
        f"active_pcr_banks = {','.join(SWTPM_BANKS)}\n")
    result = subprocess.run(
        ["swtpm_setup", "--tpm2", "--tpmstate", str(state), "--createek", "--create-ek-cert",
         "--config", str(base / "swtpm_setup.conf"), "--pcr-banks", ",".join(SWTPM_BANKS),
         "--overwrite"], capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"swtpm_setup failed: {result.stderr or result.stdout}")
    return SwtpmTemplate(state, ca / "swtpm-localca-rootca-cert.pem", ca / "issuercert.pem")


def _free_port_pair() -> int:
    """A port P such that P and P+1 are free on 127.0.0.1 (the swtpm TCTI expects the
    control channel on the data port + 1)."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two consecutive free loopback ports")


class Swtpm:
    """A running ``swtpm socket --tpm2``."""

    def __init__(self, state: Path, template: SwtpmTemplate, log: Path) -> None:
        self.state = state
        self.template = template
        self.log = log
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def attach(cls, port: int, state: Path) -> Swtpm:
        """A handle on a software TPM already listening on ``port`` (started by another
        process): it can be reset, extended and shut down, not started or stopped."""
        tpm = cls(state, SwtpmTemplate(state, state, state), state / "swtpm.log")
        tpm.port = port
        return tpm

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def start(self) -> None:
        for _attempt in range(5):
            self.port = _free_port_pair()
            self.process = subprocess.Popen(
                ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={self.state}",
                 "--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1",
                 "--ctrl", f"type=tcp,port={self.port + 1},bindaddr=127.0.0.1",
                 "--flags", "not-need-init,startup-clear", "--log", f"file={self.log}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + _START_TIMEOUT
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port + 1), timeout=1).close()
                    return
                except OSError:
                    time.sleep(0.01)
            self.stop()  # a port race: another process took a port; try again
        raise RuntimeError(f"swtpm did not start; see {self.log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def reboot(self) -> None:
        """A platform reset: power-cycle the TPM (CMD_INIT) and TPM2_Startup(CLEAR).
        PCRs return to their initial values and resetCount goes up."""
        from tpm2_pytss.constants import TPM2_SU

        self.shutdown()
        subprocess.run(["swtpm_ioctl", "--tcp", f"127.0.0.1:{self.port + 1}", "-i"],
                       check=True, capture_output=True, timeout=30)
        with self.esapi() as esapi:
            esapi.startup(TPM2_SU.CLEAR)

    def shutdown(self) -> None:
        """TPM2_Shutdown(CLEAR), as an orderly power-off does: a power loss without it
        counts against the dictionary-attack protection, which then locks the AK out."""
        from tpm2_pytss.constants import TPM2_SU

        with self.esapi() as esapi:
            esapi.shutdown(TPM2_SU.CLEAR)

    @contextmanager
    def esapi(self) -> Iterator[Any]:
        from tpm2_pytss import ESAPI, TCTILdr

        context = ESAPI(TCTILdr.parse(self.tcti))
        try:
            yield context
        finally:
            context.close()

    def extend(self, extends: list[tuple[int, dict[str, bytes]]]) -> None:
        """TPM2_PCR_Extend each (PCR, bank -> digest), as firmware does while booting."""
        from tpm2_pytss.constants import ESYS_TR, TPM2_ALG
        from tpm2_pytss.types import TPML_DIGEST_VALUES, TPMT_HA, TPMU_HA

        algs = {"sha1": TPM2_ALG.SHA1, "sha256": TPM2_ALG.SHA256, "sha384": TPM2_ALG.SHA384,
                "sha512": TPM2_ALG.SHA512}
        with self.esapi() as esapi:
            for pcr, digests in extends:
                values = TPML_DIGEST_VALUES([
                    TPMT_HA(hashAlg=algs[bank], digest=TPMU_HA(**{bank: digest}))
                    for bank, digest in digests.items()])
                esapi.pcr_extend(ESYS_TR.PCR0 + pcr, values)


