"""tpm2-tools PCR files: read exactly, refused with a reason when malformed."""

from __future__ import annotations

import struct

import pytest

from engine.attest.errors import QuoteError
from engine.attest.pcrfile import load_tpm2_tools_pcrs


def _pcr_file(bank_alg: int, pcrs: dict[int, bytes]) -> bytes:
    bitmap = bytearray(3)
    for index in pcrs:
        bitmap[index // 8] |= 1 << (index % 8)
    selection = struct.pack("<I", 1) + struct.pack("<HB", bank_alg, 3) + bytes(bitmap) + b"\0\0"
    selection += bytes(8 * 15)
    values = [pcrs[i] for i in sorted(pcrs)]
    lists = [values[i:i + 8] for i in range(0, len(values), 8)]
    body = struct.pack("<I", len(lists))
    for chunk in lists:
        body += struct.pack("<I", len(chunk))
        for value in chunk + [b""] * (8 - len(chunk)):
            body += struct.pack("<H", len(value)) + value.ljust(64, b"\0")
    return selection + body


def test_reads_banks_and_indexes() -> None:
    values = {i: bytes([i]) * 32 for i in (0, 1, 7, 8, 16, 23)}
    assert load_tpm2_tools_pcrs(_pcr_file(0x000B, values)) == {"sha256": values}


@pytest.mark.parametrize("cut", [0, 3, 60, 140, 400])
def test_truncated_files_are_refused(cut: int) -> None:
    data = _pcr_file(0x000B, {i: b"\x01" * 32 for i in range(10)})
    with pytest.raises(QuoteError, match="3 PCR values"):
        load_tpm2_tools_pcrs(data[:cut])


def test_unknown_bank_is_refused() -> None:
    with pytest.raises(QuoteError, match="unknown hash algorithm 0x0099"):
        load_tpm2_tools_pcrs(_pcr_file(0x0099, {0: b"\0" * 32}))


def test_digest_count_must_match_the_selection() -> None:
    data = bytearray(_pcr_file(0x000B, {0: b"\0" * 32, 1: b"\1" * 32}))
    struct.pack_into("<I", data, 4 + 16 * 8 + 4, 1)  # the list says 1 digest, 2 selected
    with pytest.raises(QuoteError, match="selects 2 PCRs but holds 1"):
        load_tpm2_tools_pcrs(bytes(data))
