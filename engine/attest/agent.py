"""The host agent: what runs on a hypervisor host to enroll its TPM's attestation key and
collect evidence (``vigil agent enroll|activate|evidence``).

* :func:`collect_inventory` reads what the host reports about itself (SMBIOS, microcode,
  kernel, hypervisor) from sysfs and procfs.
* :func:`enroll` and :func:`activate` are the host's half of AK enrollment (the
  verifier's is :mod:`engine.attest.ak`).
* :func:`collect_evidence` quotes the PCRs over the verifier's nonce and returns the
  :class:`~engine.attest.evidence.Evidence` document.

They talk to the TPM through ``tpm2-pytss`` (imported only when used, so the verifier
does not need libtss2). The TCTI is a string such as ``device:/dev/tpmrm0`` or
``swtpm:host=127.0.0.1,port=2321`` (``Settings.tcti``).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from engine.attest.ak import (
    ActivationResponse,
    CredentialChallenge,
    EnrollmentRequest,
    activation_proof,
)
from engine.attest.errors import AttestError
from engine.attest.eventlog import MAX_LOG_BYTES
from engine.attest.evidence import Evidence, Inventory, QuoteBlob
from engine.attest.quote import quotes_these_values
from engine.attest.tpm_types import HashAlg
from engine.errors import NotFoundError

__all__ = [
    "AK_TYPES",
    "DEFAULT_BANKS",
    "DEFAULT_EVENTLOG",
    "DEFAULT_PCRS",
    "EK_TYPES",
    "TpmError",
    "activate",
    "collect_evidence",
    "collect_inventory",
    "enroll",
]

STEP_TPM = "TPM"

DEFAULT_EVENTLOG = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
DEFAULT_BANKS = ("sha1", "sha256", "sha384")
"""Banks quoted when the TPM has them allocated."""
DEFAULT_PCRS = tuple(range(24))


class TpmError(AttestError):
    """The host's TPM refused or failed a command, or cannot be reached."""

    def __init__(self, reason: str, *, tip: str | None = None) -> None:
        super().__init__(STEP_TPM, reason, tip=tip)


# -- host inventory ------------------------------------------------------------------------


def collect_inventory(*, sys_root: Path = Path("/sys"), proc_root: Path = Path("/proc"),
                      overrides: Mapping[str, str] | None = None) -> Inventory:
    """Read the host inventory from sysfs and procfs; ``overrides`` replaces any field
    (and keys that are no field land in ``extra``).

    * BIOS and system: SMBIOS as the kernel exposes it, ``/sys/class/dmi/id/{bios_vendor,
      bios_version, bios_date, sys_vendor, product_name}``.
    * Microcode: the ``microcode`` lines of ``/proc/cpuinfo``.
    * Kernel release: ``/proc/sys/kernel/osrelease``.
    * Hypervisor: Xen's ``/sys/hypervisor/{type,version/*}``; else KVM when
      ``/sys/module/kvm`` exists, versioned by the QEMU on the PATH
      (``qemu-system-<arch> --version``) or, without one, by the kernel release.
    """
    dmi = sys_root / "class" / "dmi" / "id"
    values: dict[str, str | None] = {
        "bios_vendor": _read_text(dmi / "bios_vendor"),
        "bios_version": _read_text(dmi / "bios_version"),
        "bios_date": _read_text(dmi / "bios_date"),
        "system_vendor": _read_text(dmi / "sys_vendor"),
        "product_name": _read_text(dmi / "product_name"),
        "microcode": _microcode(proc_root / "cpuinfo"),
        "kernel_release": _read_text(proc_root / "sys" / "kernel" / "osrelease"),
    }
    values["hypervisor"], values["hypervisor_version"] = _hypervisor(
        sys_root, values["kernel_release"], probe_qemu=sys_root == Path("/sys"))
    extra: dict[str, str] = {}
    for key, value in (overrides or {}).items():
        if key in Inventory.model_fields and key != "extra":
            values[key] = value
        else:
            extra[key] = value
    return Inventory(**values, extra=extra)


def _read_text(path: Path, limit: int = 4096) -> str | None:
    try:
        with path.open("rb") as stream:
            text = stream.read(limit).decode("utf-8", "replace").strip()
    except OSError:
        return None
    return text or None


_MICROCODE = re.compile(r"^microcode\s*:\s*(\S+)\s*$", re.MULTILINE)


def _microcode(cpuinfo: Path) -> str | None:
    text = _read_text(cpuinfo, limit=4 * 1024 * 1024)
    if text is None:
        return None
    revisions = {str(r) for r in _MICROCODE.findall(text)}
    if not revisions:
        return None
    try:
        return min(revisions, key=lambda r: int(r, 0))
    except ValueError:
        return sorted(revisions)[0]


def _hypervisor(sys_root: Path, kernel: str | None, *, probe_qemu: bool
                ) -> tuple[str | None, str | None]:
    xen = _read_text(sys_root / "hypervisor" / "type")
    if xen:
        parts = [_read_text(sys_root / "hypervisor" / "version" / p)
                 for p in ("major", "minor", "extra")]
        version = ".".join(p for p in parts[:2] if p) + (parts[2] or "")
        return xen, version or None
    if (sys_root / "module" / "kvm").is_dir():
        qemu = _qemu_version() if probe_qemu else None
        return "kvm", qemu or kernel
    return None, None


def _qemu_version() -> str | None:
    binary = shutil.which(f"qemu-system-{platform.machine()}")
    if binary is None:
        return None
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"version (\S+)", out)
    return f"qemu {match.group(1)}" if match else None


# -- the TPM ---------------------------------------------------------------------------------

EK_TYPES = ("EK-RSA2048", "EK-ECC256")
"""The low-range EK templates of the TCG EK Credential Profile, whose policy is
PolicySecret(endorsement). The high-range templates' PolicyOR with PolicyAuthorizeNV is
not implemented yet."""
AK_TYPES = ("rsa2048", "ecc256")
_AK_TEMPLATES = {"rsa2048": "rsa2048:rsassa-sha256:null", "ecc256": "ecc256:ecdsa-sha256:null"}


@contextmanager
def _esapi(tcti: str) -> Iterator[Any]:
    os.environ.setdefault("TSS2_LOG", "all+NONE")  # the TSS would log every TPM error
    try:
        from tpm2_pytss import ESAPI, TCTILdr, TSS2_Exception
    except ImportError as exc:  # pragma: no cover - tpm2-pytss is a dependency
        raise TpmError(f"tpm2-pytss cannot be loaded: {exc}",
                       tip="Install libtss2 (Debian: libtss2-dev) and run scripts/setup.sh."
                       ) from None
    try:
        context = ESAPI(TCTILdr.parse(tcti))
    except (TSS2_Exception, ValueError, OSError) as exc:
        raise TpmError(f"cannot open the TPM through TCTI {tcti!r}: {exc}",
                       tip="Set --tcti or VIGIL_TCTI, e.g. device:/dev/tpmrm0 or "
                       "swtpm:host=127.0.0.1,port=2321.") from None
    try:
        yield context
    except TSS2_Exception as exc:
        raise TpmError(f"the TPM refused a command: {exc}") from None
    finally:
        context.close()


@contextmanager
def _policy_session(esapi: Any) -> Iterator[Any]:
    """A policy session satisfying the EK's default policy, PolicySecret(endorsement);
    flushed afterwards (a TPM holds only a few sessions)."""
    from tpm2_pytss import TSS2_Exception
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_SE
    from tpm2_pytss.types import TPMT_SYM_DEF

    session = esapi.start_auth_session(ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY,
                                       TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256)
    try:
        esapi.policy_secret(ESYS_TR.ENDORSEMENT, session, b"", b"", b"", 0)
        yield session
    finally:
        with suppress(TSS2_Exception):  # the TPM may have closed it already
            esapi.flush_context(session)


def _nv_reader(esapi: Any) -> Any:
    from tpm2_pytss.utils import NoSuchIndex

    def read(index: int) -> bytes:
        from tpm2_pytss import TSS2_Exception

        try:
            handle = esapi.tr_from_tpmpublic(index)
        except TSS2_Exception:
            raise NoSuchIndex(index) from None
        public, _ = esapi.nv_read_public(handle)
        size = public.nvPublic.dataSize
        data = b""
        while len(data) < size:
            data += bytes(esapi.nv_read(handle, min(512, size - len(data)), len(data),
                                        auth_handle=handle))
        return data

    return read


def _create_ek(esapi: Any, ek_type: str) -> tuple[Any, bytes | None]:
    """The EK as the TCG EK Credential Profile derives it, and its certificate."""
    from tpm2_pytss.constants import ESYS_TR
    from tpm2_pytss.utils import create_ek_template

    if ek_type not in EK_TYPES:
        raise TpmError(f"unknown EK type {ek_type}; choose one of {', '.join(EK_TYPES)}")
    try:
        certificate, template = create_ek_template(ek_type, _nv_reader(esapi))
    except ValueError as exc:
        raise TpmError(f"no {ek_type} EK: {exc}") from None
    handle, *_ = esapi.create_primary(None, template, ESYS_TR.ENDORSEMENT)
    return handle, certificate


def enroll(host_id: str, *, tcti: str, ak_handle: int, ek_type: str = "EK-RSA2048",
           ak_type: str = "rsa2048", replace: bool = False) -> EnrollmentRequest:
    """Create an AK under the EK, make it persistent at ``ak_handle`` and return the
    enrollment request for the verifier (EK public and certificate, AK public)."""
    from tpm2_pytss.constants import ESYS_TR, TPMA_OBJECT
    from tpm2_pytss.types import TPM2B_PUBLIC

    if ak_type not in AK_TYPES:
        raise TpmError(f"unknown AK type {ak_type}; choose one of {', '.join(AK_TYPES)}")
    attributes = (TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.SIGN_ENCRYPT | TPMA_OBJECT.FIXEDTPM
                  | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
                  | TPMA_OBJECT.USERWITHAUTH)
    template = TPM2B_PUBLIC.parse(_AK_TEMPLATES[ak_type], objectAttributes=attributes)
    with _esapi(tcti) as esapi:
        existing = _persistent(esapi, ak_handle)
        if existing is not None and not replace:
            raise TpmError(f"handle 0x{ak_handle:08x} already holds a key",
                           tip="Pass --replace to evict it, or choose another --ak-handle.")
        ek, certificate = _create_ek(esapi, ek_type)
        try:
            ek_public, _, _ = esapi.read_public(ek)
            with _policy_session(esapi) as session:
                private, public, *_ = esapi.create(ek, None, template, session1=session)
            with _policy_session(esapi) as session:
                ak = esapi.load(ek, private, public, session1=session)
            if existing is not None:
                esapi.evict_control(ESYS_TR.OWNER, existing, ak_handle)
            esapi.evict_control(ESYS_TR.OWNER, ak, ak_handle)
            esapi.flush_context(ak)
        finally:
            esapi.flush_context(ek)
        return EnrollmentRequest(host_id=host_id, ek_public=ek_public.marshal(),
                                 ek_certificate=certificate, ak_public=public.marshal())


def _persistent(esapi: Any, handle: int) -> Any:
    from tpm2_pytss.constants import TPM2_CAP

    _, data = esapi.get_capability(TPM2_CAP.HANDLES, handle, 1)
    handles = list(data.data.handles)
    if handles and handles[0] == handle:
        return esapi.tr_from_tpmpublic(handle)
    return None


def activate(challenge: CredentialChallenge, *, tcti: str, ak_handle: int,
             ek_type: str = "EK-RSA2048") -> ActivationResponse:
    """Let the TPM unwrap the verifier's credential (TPM2_ActivateCredential) and
    answer with the proof; the secret itself never leaves this function."""
    from tpm2_pytss.constants import ESYS_TR
    from tpm2_pytss.types import TPM2B_ENCRYPTED_SECRET, TPM2B_ID_OBJECT

    with _esapi(tcti) as esapi:
        ak = _persistent(esapi, ak_handle)
        if ak is None:
            raise TpmError(f"no AK at handle 0x{ak_handle:08x}; run vigil agent enroll first")
        _, name, _ = esapi.read_public(ak)
        if bytes(name) != challenge.ak_name:
            raise TpmError(f"the challenge is for AK {challenge.ak_name.hex()}, but handle "
                           f"0x{ak_handle:08x} holds AK {bytes(name).hex()}")
        ek, _ = _create_ek(esapi, ek_type)
        try:
            blob, _ = TPM2B_ID_OBJECT.unmarshal(challenge.credential_blob)
            secret, _ = TPM2B_ENCRYPTED_SECRET.unmarshal(challenge.encrypted_secret)
            with _policy_session(esapi) as session:
                released = bytes(esapi.activate_credential(
                    ak, ek, blob, secret, session1=ESYS_TR.PASSWORD, session2=session))
        finally:
            esapi.flush_context(ek)
    return ActivationResponse(host_id=challenge.host_id, ak_name=challenge.ak_name,
                              proof=activation_proof(released, challenge.host_id,
                                                     challenge.ak_name))


def collect_evidence(host_id: str, nonce: bytes, *, tcti: str, ak_handle: int,
                     banks: Sequence[str] = DEFAULT_BANKS,
                     pcrs: Sequence[int] = DEFAULT_PCRS,
                     eventlog: Path | None = DEFAULT_EVENTLOG,
                     inventory: Inventory | None = None) -> Evidence:
    """Quote ``pcrs`` of every bank in ``banks`` that the TPM has allocated, over
    ``nonce``, with the AK at ``ak_handle``; read the PCR values, the event log
    (``None`` to send none) and the inventory."""
    from tpm2_pytss.types import TPML_PCR_SELECTION

    if not nonce or len(nonce) > 64:
        raise TpmError("the nonce must hold 1 to 64 bytes")
    if not pcrs or any(not 0 <= p < 24 for p in pcrs):
        raise TpmError("PCR indexes run from 0 to 23")
    log = _read_eventlog(eventlog) if eventlog is not None else None
    with _esapi(tcti) as esapi:
        ak = _persistent(esapi, ak_handle)
        if ak is None:
            raise TpmError(f"no AK at handle 0x{ak_handle:08x}; run vigil agent enroll first")
        ak_public, _, _ = esapi.read_public(ak)
        present = [bank for bank in banks if bank in _allocated_banks(esapi)]
        if not present:
            raise TpmError(f"the TPM has none of the banks {', '.join(banks)} allocated")
        spec = "+".join(f"{bank}:{','.join(str(p) for p in sorted(set(pcrs)))}"
                        for bank in present)
        selection = TPML_PCR_SELECTION.parse(spec)
        # the values sent are those the quote's pcrDigest covers (read after the quote
        # and checked against it: one read of the PCRs, not one before and one after)
        for _attempt in range(3):
            quoted, signed = esapi.quote(ak, selection, nonce)
            attest, signature = quoted.marshal(), signed.marshal()
            values = _read_pcrs(esapi, spec)
            if quotes_these_values(attest, signature, values):
                break
        else:
            raise TpmError("the PCRs kept changing while they were quoted")
    return Evidence(host_id=host_id, collected_at=dt.datetime.now(dt.UTC), nonce=nonce,
                    ak_public=ak_public.marshal(),
                    quote=QuoteBlob(attest=attest, signature=signature),
                    pcrs=values, eventlog=log, inventory=inventory or collect_inventory())


def _read_eventlog(path: Path) -> bytes:
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_LOG_BYTES + 1)
    except FileNotFoundError:
        raise NotFoundError(f"event log {path} does not exist",
                            tip="Pass --eventlog, or --no-eventlog to send none.") from None
    except OSError as exc:
        raise TpmError(f"cannot read the event log {path}: {exc.strerror or exc}",
                       tip="securityfs needs root.") from None
    if len(data) > MAX_LOG_BYTES:
        raise TpmError(f"the event log {path} is larger than {MAX_LOG_BYTES} bytes")
    return data


def _allocated_banks(esapi: Any) -> set[str]:
    from tpm2_pytss.constants import TPM2_CAP

    _, data = esapi.get_capability(TPM2_CAP.PCRS, 0, 1)
    banks = set()
    for selection in data.data.assignedPCR:
        if any(bytes(selection.pcrSelect)[:selection.sizeofSelect]):
            try:
                banks.add(HashAlg(int(selection.hash)).bank)
            except ValueError:
                continue
    return banks


def _read_pcrs(esapi: Any, spec: str) -> dict[str, dict[int, bytes]]:
    """TPM2_PCR_Read returns at most 8 values per call: read until all are in."""
    from tpm2_pytss.types import TPML_PCR_SELECTION

    wanted = {bank: [int(p) for p in pcrs.split(",")]
              for bank, pcrs in (part.split(":") for part in spec.split("+"))}
    values: dict[str, dict[int, bytes]] = {bank: {} for bank in wanted}
    while True:
        left = {bank: [p for p in pcrs if p not in values[bank]] for bank, pcrs in wanted.items()}
        left = {bank: pcrs for bank, pcrs in left.items() if pcrs}
        if not left:
            return values
        request = "+".join(f"{bank}:{','.join(map(str, pcrs))}" for bank, pcrs in left.items())
        _, selection, digests = esapi.pcr_read(TPML_PCR_SELECTION.parse(request))
        got = [(HashAlg(int(s.hash)).bank, index) for s in selection
               for index in _selected(bytes(s.pcrSelect)[:s.sizeofSelect])]
        if not got:
            raise TpmError(f"the TPM returned no values for {request}")
        for (bank, index), digest in zip(got, digests, strict=True):
            values[bank][index] = bytes(digest)


def _selected(bitmap: bytes) -> list[int]:
    return [8 * i + bit for i, octet in enumerate(bitmap) for bit in range(8) if octet >> bit & 1]
