"""Bytes in JSON documents: base64 (quotes, signatures, event logs) or lowercase hex
(PCR digests). Pydantic field types, so every wire model reads and writes them alike."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer


def _from_base64(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"not base64: {exc}") from None
    return value


def _from_hex(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise ValueError("not a hex string") from None
    return value


B64 = Annotated[bytes, BeforeValidator(_from_base64),
                PlainSerializer(lambda b: base64.b64encode(b).decode(), return_type=str,
                                when_used="json")]
"""Bytes that JSON carries as base64."""
Hex = Annotated[bytes, BeforeValidator(_from_hex),
                PlainSerializer(lambda b: b.hex(), return_type=str, when_used="json")]
"""Bytes that JSON carries as lowercase hex."""
