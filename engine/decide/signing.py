"""OPA bundle signatures: ``.signatures.json`` holding one JWT over the bundle's files.

Follows OPA's "Bundle File Format / Signing" (``bundle/sign.go``, ``bundle/verify.go``,
``bundle/hash.go``):

* the JWT payload's ``files`` claim lists every file of the bundle except
  ``.signatures.json`` as ``{"name", "hash", "algorithm": "SHA-256"}``, the name being
  the path inside the archive without the leading ``/``;
* a structured file (base name ``data.json``, ``data.yaml`` or ``.manifest``) is hashed
  in OPA's canonical form: objects as ``{`` + ``"key":value`` pairs in key order joined
  by ``,`` + ``}``, arrays as ``[`` + items joined by ``,`` + ``]``, primitives as Go's
  JSON encoder writes them (numbers keep their literal text, no HTML escaping); every
  other file is hashed byte for byte;
* optional claims: ``scope`` (must equal the verifier's configured scope, empty when
  none) and the deprecated ``keyid`` (also written to the ``kid`` header);
* RS256 (RSA keys) and ES256 (P-256 keys), keys in PEM.

JOSE is done by ``joserfc``; nothing here implements a signature primitive. Keys are
read by :func:`engine.keys.load_rs256_es256_key`.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from engine.decide.errors import BundleVerificationError
from engine.keys import KeyLoadError, load_rs256_es256_key

SIGNATURES_FILE = ".signatures.json"
HASH_ALGORITHM = "SHA-256"
ALGORITHMS = ("RS256", "ES256")
_STRUCTURED = {"data.json", "data.yaml", "data.yml", ".manifest"}


# --- canonical hashing ----------------------------------------------------------------


class _Number(str):
    """A JSON number kept as its literal text (Go's json.Number)."""


def _go_string(value: str) -> bytes:
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode("utf-8")


def _walk(value: Any, out: list[bytes]) -> None:
    if isinstance(value, dict):
        out.append(b"{")
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(b",")
            out.append(_go_string(key))
            out.append(b":")
            _walk(value[key], out)
        out.append(b"}")
    elif isinstance(value, list):
        out.append(b"[")
        for i, item in enumerate(value):
            if i:
                out.append(b",")
            _walk(item, out)
        out.append(b"]")
    elif isinstance(value, _Number):
        out.append(str(value).encode("ascii"))
    elif isinstance(value, str):
        out.append(_go_string(value))
    elif value is True:
        out.append(b"true")
    elif value is False:
        out.append(b"false")
    elif value is None:
        out.append(b"null")
    else:  # pragma: no cover - json.loads yields nothing else
        raise TypeError(f"cannot hash {type(value).__name__}")


def is_structured(name: str) -> bool:
    return posixpath.basename(name) in _STRUCTURED


def file_hash(name: str, content: bytes) -> str:
    """The hex SHA-256 of one bundle file as OPA computes it."""
    if is_structured(name):
        if name.endswith((".yaml", ".yml")):
            import yaml

            value = yaml.safe_load(content)
            value = json.loads(json.dumps(value), parse_float=_Number, parse_int=_Number)
        else:
            try:
                value = json.loads(content, parse_float=_Number, parse_int=_Number)
            except ValueError as exc:
                raise BundleVerificationError(f"{name}: not valid JSON: {exc}",
                                              file=name) from exc
        parts: list[bytes] = []
        _walk(value, parts)
        return hashlib.sha256(b"".join(parts)).hexdigest()
    return hashlib.sha256(content).hexdigest()


# --- keys -----------------------------------------------------------------------------


Key = RSAKey | ECKey


def load_key(path: Path, *, private: bool) -> tuple[Key, str]:
    """Read a PEM key; return it and the algorithm it signs with (RS256 or ES256)."""
    try:
        return load_rs256_es256_key(path, private=private)
    except KeyLoadError as exc:
        raise BundleVerificationError(exc.reason, file=str(path), tip=exc.tip) from exc


# --- sign and verify ------------------------------------------------------------------


@dataclass(frozen=True)
class SignedFiles:
    """What a verified ``.signatures.json`` vouches for."""

    files: dict[str, str]
    """File name (no leading ``/``) -> hex SHA-256."""
    key_id: str
    algorithm: str
    scope: str | None
    issued_at: int | None


def sign(files: dict[str, bytes], key_path: Path, *, key_id: str = "vigil",
         scope: str | None = None, issued_at: int | None = None) -> bytes:
    """Return the content of ``.signatures.json`` for ``files`` (name -> content)."""
    key, alg = load_key(key_path, private=True)
    claims: dict[str, Any] = {
        "files": [{"name": name, "hash": file_hash(name, content), "algorithm": HASH_ALGORITHM}
                  for name, content in sorted(files.items())],
        "keyid": key_id,
    }
    if scope:
        claims["scope"] = scope
    if issued_at is not None:
        claims["iat"] = issued_at
        claims["iss"] = "vigil"
    payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
    token = jws.serialize_compact({"alg": alg, "kid": key_id}, payload, key, algorithms=[alg])
    return json.dumps({"signatures": [token]}, indent=1).encode() + b"\n"


def verify(signatures: bytes, key_path: Path, *, key_id: str | None = None,
           scope: str | None = None) -> SignedFiles:
    """Check ``.signatures.json`` the way OPA does; return the files it vouches for.

    Steps (OPA ``verifyJWTSignature``):
    (1) exactly one JWT; (2) key id from the configuration, else the ``kid`` header,
    else the ``keyid`` claim, and it must be non-empty and match the configured key;
    (3) the signature verifies with the configured key and the key's algorithm;
    (4) the ``scope`` claim equals the configured scope (both may be empty).
    """
    try:
        config = json.loads(signatures)
        tokens = config["signatures"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleVerificationError(f"{SIGNATURES_FILE}: not a signatures document: {exc}",
                                      file=SIGNATURES_FILE) from exc
    # (1)
    if not isinstance(tokens, list) or len(tokens) != 1 or not isinstance(tokens[0], str):
        raise BundleVerificationError(
            f"{SIGNATURES_FILE}: expected exactly one JWT, found "
            f"{len(tokens) if isinstance(tokens, list) else 'none'}", file=SIGNATURES_FILE)
    token = tokens[0]
    key, alg = load_key(key_path, private=False)
    try:
        # (3) first on the untrusted header only to read kid; trust comes from verify below
        unverified = jws.extract_compact(token.encode())
    except (JoseError, ValueError) as exc:
        raise BundleVerificationError(f"{SIGNATURES_FILE}: malformed JWT: {exc}",
                                      file=SIGNATURES_FILE) from exc
    header = unverified.protected
    try:
        claims_unverified = json.loads(unverified.payload)
    except ValueError as exc:
        raise BundleVerificationError(f"{SIGNATURES_FILE}: JWT payload is not JSON",
                                      file=SIGNATURES_FILE) from exc
    # (2)
    token_kid = header.get("kid") or claims_unverified.get("keyid") or ""
    if not token_kid and not key_id:
        raise BundleVerificationError(f"{SIGNATURES_FILE}: verification key ID is empty",
                                      file=SIGNATURES_FILE)
    if key_id and token_kid and token_kid != key_id:
        raise BundleVerificationError(
            f"{SIGNATURES_FILE}: signed with key id {token_kid!r}, but the configured "
            f"verification key is {key_id!r}", file=SIGNATURES_FILE)
    if header.get("alg") != alg:
        raise BundleVerificationError(
            f"{SIGNATURES_FILE}: signed with {header.get('alg')}, but the verification key "
            f"{key_path.name} verifies {alg}", file=SIGNATURES_FILE)
    # (3)
    try:
        verified = jws.deserialize_compact(token.encode(), key, algorithms=[alg])
    except (JoseError, ValueError) as exc:
        raise BundleVerificationError(
            f"{SIGNATURES_FILE}: the JWT signature does not verify with {key_path.name} "
            f"({exc.__class__.__name__})", file=SIGNATURES_FILE) from exc
    claims = json.loads(verified.payload)
    # (4)
    if (claims.get("scope") or "") != (scope or ""):
        raise BundleVerificationError(
            f"{SIGNATURES_FILE}: scope mismatch: the bundle is signed for scope "
            f"{claims.get('scope')!r}, the verifier expects {scope!r}", file=SIGNATURES_FILE)
    files: dict[str, str] = {}
    for entry in claims.get("files", []):
        name = str(entry.get("name", "")).lstrip("/")
        if entry.get("algorithm") != HASH_ALGORITHM:
            raise BundleVerificationError(
                f"{SIGNATURES_FILE}: file {name} is hashed with {entry.get('algorithm')!r}; "
                f"only {HASH_ALGORITHM} is accepted", file=name)
        files[name] = str(entry.get("hash", "")).lower()
    return SignedFiles(files=files, key_id=key_id or token_kid, algorithm=alg,
                       scope=claims.get("scope"), issued_at=claims.get("iat"))
