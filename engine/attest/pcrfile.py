"""PCR values as tpm2-tools writes them (``tpm2_quote -o``, ``tpm2_pcrread -o``).

The file is the host's (little-endian) C structures: a TPML_PCR_SELECTION (UINT32
count, then 16 TPMS_PCR_SELECTION of UINT16 hash, UINT8 sizeofSelect and a 4-byte
bitmap, each padded to 8 bytes), a UINT32 number of digest lists, then that many
TPML_DIGEST (UINT32 count, 8 TPM2B_DIGEST of UINT16 size and a 64-byte buffer). The
digests follow the selection: banks in order, PCRs ascending.
"""

from __future__ import annotations

import struct

from engine.attest.errors import QuoteError
from engine.attest.tpm_types import HashAlg

STEP = "3 PCR values"
_SELECTION = 4 + 16 * 8
_DIGEST_LIST = 4 + 8 * 66
# Bit positions set in each possible bitmap byte.
_BITS = tuple(tuple(bit for bit in range(8) if octet >> bit & 1) for octet in range(256))
_TPML_DIGEST = struct.Struct("<I" + "H64s" * 8)  # one C call per list of 8 digests
_BANKS = {alg.value: alg.bank for alg in HashAlg}


def load_tpm2_tools_pcrs(data: bytes) -> dict[str, dict[int, bytes]]:
    """{bank: {pcr: value}} from a tpm2-tools serialized PCR file."""
    try:
        return _load(data)
    except struct.error as exc:
        raise QuoteError(STEP, f"tpm2-tools PCR file truncated ({len(data)} bytes): {exc}"
                         ) from None


def _load(data: bytes) -> dict[str, dict[int, bytes]]:
    (count,) = struct.unpack_from("<I", data, 0)
    if count > 16:
        raise QuoteError(STEP, f"tpm2-tools PCR file selects {count} banks (at most 16)")
    selected: list[tuple[dict[int, bytes], int]] = []
    pcrs: dict[str, dict[int, bytes]] = {}
    for i in range(count):
        alg, size = struct.unpack_from("<HB", data, 4 + 8 * i)
        bank = _BANKS.get(alg)
        if bank is None:
            raise QuoteError(STEP, f"tpm2-tools PCR file: unknown hash algorithm 0x{alg:04x}")
        values = pcrs.setdefault(bank, {})
        bitmap = data[4 + 8 * i + 3: 4 + 8 * i + 3 + min(size, 4)]
        for byte, octet in enumerate(bitmap):
            base = 8 * byte
            selected.extend([(values, base + bit) for bit in _BITS[octet]])
    (lists,) = struct.unpack_from("<I", data, _SELECTION)
    need = _SELECTION + 4 + lists * _DIGEST_LIST
    if len(data) < need:
        raise QuoteError(STEP, f"tpm2-tools PCR file has {len(data)} bytes, its header "
                         f"announces {need}")
    position = 0
    for i in range(lists):
        fields = _TPML_DIGEST.unpack_from(data, _SELECTION + 4 + _DIGEST_LIST * i)
        n = min(fields[0], 8)
        if position + n > len(selected):
            raise QuoteError(STEP, "tpm2-tools PCR file has more digests than PCRs selected")
        for j in range(n):
            values, index = selected[position]
            values[index] = fields[2 + 2 * j][:fields[1 + 2 * j]]
            position += 1
    if position != len(selected):
        raise QuoteError(STEP, f"tpm2-tools PCR file selects {len(selected)} PCRs but "
                         f"holds {position} digests")
    return pcrs
