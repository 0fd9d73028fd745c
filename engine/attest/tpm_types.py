"""Big-endian unmarshalling of TPM 2.0 structures (TPM 2.0 Library, Part 2: Structures).

This module knows the wire format and the algorithm registry, not what a field means:

* :class:`Reader` reads the fixed-size integers (UINT8 … UINT64) and the TPM2B_* byte
  strings (a UINT16 size, then that many bytes) one field at a time. Every failure is a
  :class:`~engine.attest.errors.QuoteError` that names the structure, the field and its
  offset in the input.
* :class:`HashAlg` and :class:`SigScheme` are the TPM_ALG_ID values Vigil verifies with;
  the other TPM_ALG_ID constants are those a TPMT_PUBLIC may carry.

:mod:`engine.attest.quote` builds the quote, signature and key parsers on top.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any

from cryptography.hazmat.primitives import hashes

from engine.attest.errors import QuoteError

# TPM_ALG_ID values (Part 2, TPM_ALG_ID) that a TPMT_PUBLIC of an RSA or ECC key carries.
ALG_RSA = 0x0001
ALG_NULL = 0x0010
ALG_ECC = 0x0023
ALG_AES = 0x0006
ALG_SM4 = 0x0013
ALG_CAMELLIA = 0x0026
ALG_RSAES = 0x0015
ALG_OAEP = 0x0017
ALG_ECDH = 0x0019
ALG_ECDAA = 0x001A
ALG_SM2 = 0x001B
ALG_ECSCHNORR = 0x001C
ALG_ECMQV = 0x001D
ALG_MGF1 = 0x0007
ALG_KDF1_SP800_56A = 0x0020
ALG_KDF2 = 0x0021
ALG_KDF1_SP800_108 = 0x0022


class HashAlg(IntEnum):
    """The TPM_ALG_ID of a hash algorithm. ``bank`` is its PCR bank name in the
    tpm2-tools spelling (``sha1``, ``sha256``, ``sm3_256``…)."""

    SHA1 = 0x0004
    SHA256 = 0x000B
    SHA384 = 0x000C
    SHA512 = 0x000D
    SM3_256 = 0x0012
    SHA3_256 = 0x0027
    SHA3_384 = 0x0028
    SHA3_512 = 0x0029

    @property
    def bank(self) -> str:
        return self.name.lower()

    @property
    def digest_size(self) -> int:
        return self.algorithm().digest_size

    def algorithm(self) -> hashes.HashAlgorithm:
        """A fresh ``cryptography`` hash object for this algorithm."""
        return _HASHES[self]()

    def digest(self, data: bytes) -> bytes:
        h = hashes.Hash(self.algorithm())
        h.update(data)
        return h.finalize()


_HASHES: dict[HashAlg, type[hashes.HashAlgorithm]] = {
    HashAlg.SHA1: hashes.SHA1,
    HashAlg.SHA256: hashes.SHA256,
    HashAlg.SHA384: hashes.SHA384,
    HashAlg.SHA512: hashes.SHA512,
    HashAlg.SM3_256: hashes.SM3,
    HashAlg.SHA3_256: hashes.SHA3_256,
    HashAlg.SHA3_384: hashes.SHA3_384,
    HashAlg.SHA3_512: hashes.SHA3_512,
}


class SigScheme(IntEnum):
    """The TPM_ALG_ID of a signature scheme Vigil verifies (TPMT_SIGNATURE.sigAlg)."""

    RSASSA = 0x0014
    """RSASSA-PKCS1-v1_5."""
    RSAPSS = 0x0016
    ECDSA = 0x0018


class Reader:
    """Reads one TPM structure field by field from ``data``, starting at ``offset``.

    ``step`` is the verification step reported in errors (``"1 quote structure"``) and
    ``struct`` the structure name that prefixes each field (``"TPMS_ATTEST"``). Offsets
    in errors are absolute positions in ``data``.
    """

    def __init__(self, data: bytes, *, step: str, struct: str, offset: int = 0) -> None:
        self.data = data
        self.step = step
        self.struct = struct
        self.offset = offset

    def error(self, field: str, at: int, reason: str) -> QuoteError:
        """A :class:`QuoteError` for ``field`` at offset ``at``."""
        return QuoteError(self.step, f"{self.struct}.{field} at offset {at}: {reason}")

    def take(self, size: int, field: str) -> bytes:
        left = len(self.data) - self.offset
        if size > left:
            raise self.error(field, self.offset,
                             f"truncated: needs {size} bytes, {max(left, 0)} left")
        start = self.offset
        self.offset += size
        return self.data[start:self.offset]

    def unpack(self, layout: struct.Struct, field: str) -> tuple[Any, ...]:
        """Several fixed-size fields at once (``layout`` is big-endian)."""
        at = self.offset
        if layout.size > len(self.data) - at:
            raise self.error(field, at, f"truncated: needs {layout.size} bytes, "
                             f"{max(len(self.data) - at, 0)} left")
        self.offset += layout.size
        return layout.unpack_from(self.data, at)

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        return int.from_bytes(self.take(2, field), "big")

    def u32(self, field: str) -> int:
        return int.from_bytes(self.take(4, field), "big")

    def u64(self, field: str) -> int:
        return int.from_bytes(self.take(8, field), "big")

    def tpm2b(self, field: str) -> bytes:
        """A TPM2B_*: UINT16 size, then that many bytes."""
        size = self.u16(f"{field}.size")
        return self.take(size, f"{field}.buffer")

    def hash_alg(self, field: str) -> HashAlg:
        at = self.offset
        value = self.u16(field)
        try:
            return HashAlg(value)
        except ValueError:
            raise self.error(field, at, f"0x{value:04x} is not a supported hash "
                             "algorithm") from None

    def finish(self) -> None:
        """Fail if bytes are left after the structure."""
        extra = len(self.data) - self.offset
        if extra:
            raise QuoteError(self.step, f"{self.struct} at offset {self.offset}: {extra} "
                             "trailing bytes after the end of the structure")
