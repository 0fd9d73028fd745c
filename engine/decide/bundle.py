"""Policy sets: Rego modules plus data, read from a folder or an OPA bundle.

A folder such as ``engine/policies/`` holds one sub-folder per bundle root (``vigil/``,
``site/``). Inside, a module's package is its folder's path
(``vigil/rules/attestation/attestation.rego`` is ``package vigil.rules.attestation``; a
test module there, ``attestation_test.rego``, may add the suffix: ``package
vigil.rules.attestation_test``), and a ``data.json`` file holds the data at its folder's
path (``vigil/config/data.json`` is ``data.vigil.config``).

An OPA bundle is a ``.tar.gz`` with ``/.manifest`` (``revision``, ``roots``,
``rego_version``), the modules and data files at the same paths, and — when signed —
``/.signatures.json`` (see :mod:`engine.decide.signing`). Test modules stay out of
bundles.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.decide import signing
from engine.decide.errors import (
    BundleError,
    BundleVerificationError,
    PolicyError,
    PolicyNotFoundError,
)
from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.config import Settings

MANIFEST = ".manifest"
_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)\s*$", re.MULTILINE)
_MAX_BUNDLE_BYTES = 64 * 1024 * 1024

SOURCE_POLICIES = Path(__file__).resolve().parents[1] / "policies"
"""The policies installed with the package (``engine/policies/``): the default policy folder."""


@dataclass(frozen=True)
class PolicySet:
    """Rego modules and data, ready for an evaluator."""

    modules: dict[str, str]
    """Path inside the bundle (``vigil/decision.rego``) -> source."""
    data_files: dict[str, bytes]
    """Path inside the bundle (``vigil/config/data.json``) -> JSON text."""
    roots: tuple[str, ...]
    revision: str
    origin: str
    """Where it was read from: a folder or a bundle file."""
    signed_by: str | None = None
    """Key id of the verified signature, or None when the bundle was not verified."""
    archive: bytes | None = field(default=None, repr=False)
    """The bundle's bytes, when it came from (or was built into) a bundle."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """The bundle manifest's ``metadata`` (``vigil.tests``: how its tests went at build)."""
    test_scope: tuple[str, ...] = ()
    """Module path prefixes whose tests ``vigil policy test`` runs (every test when
    empty); the other modules are there for what the tests import."""

    @property
    def data(self) -> dict[str, Any]:
        """The data files merged into one tree at their folders' paths."""
        tree: dict[str, Any] = {}
        for path, raw in sorted(self.data_files.items()):
            value = json.loads(raw)
            parts = [p for p in path.split("/")[:-1] if p]
            if not parts:
                if not isinstance(value, dict):
                    raise BundleError(f"{path}: top-level data must be an object")
                _merge(tree, value, path)
                continue
            node = tree
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            if isinstance(node.get(parts[-1]), dict) and isinstance(value, dict):
                _merge(node[parts[-1]], value, path)
            else:
                node[parts[-1]] = value
        return tree

    @property
    def test_modules(self) -> dict[str, str]:
        return {p: s for p, s in self.modules.items() if p.endswith("_test.rego")}

    @property
    def policy_modules(self) -> dict[str, str]:
        return {p: s for p, s in self.modules.items() if not p.endswith("_test.rego")}


def _merge(into: dict[str, Any], value: dict[str, Any], origin: str) -> None:
    for key, item in value.items():
        if isinstance(into.get(key), dict) and isinstance(item, dict):
            _merge(into[key], item, origin)
        elif key in into:
            raise BundleError(f"{origin}: data at {key!r} is defined twice")
        else:
            into[key] = item


def package_of(source: str) -> str | None:
    match = _PACKAGE.search(source)
    return match.group(1) if match else None


def roots_overlap(a: str, b: str) -> bool:
    """OPA's RootPathsOverlap: one root is a path prefix of the other."""
    pa = [p for p in a.strip("/").split("/") if p]
    pb = [p for p in b.strip("/").split("/") if p]
    n = min(len(pa), len(pb))
    return pa[:n] == pb[:n]


def check_roots(roots: Sequence[str], *, where: str) -> tuple[str, ...]:
    clean = tuple(r.strip("/") for r in roots)
    for i, a in enumerate(clean):
        for b in clean[i + 1:]:
            if roots_overlap(a, b):
                raise BundleError(
                    f"{where}: manifest has overlapped roots: {a!r} and {b!r}",
                    tip="give each root its own top-level path (e.g. 'vigil' and 'site')")
    return clean


def _within(path: str, roots: Sequence[str]) -> bool:
    parts = [p for p in path.split("/") if p]
    for root in roots:
        rp = [p for p in root.split("/") if p]
        if parts[: len(rp)] == rp:
            return True
    return False


def _check_modules(modules: dict[str, str], roots: Sequence[str], *, where: str,
                   strict_layout: bool) -> None:
    for path, source in modules.items():
        package = package_of(source)
        if package is None:
            raise PolicyError("no `package` line", file=f"{where}/{path}")
        pkg_path = package.replace(".", "/")
        if not _within(pkg_path, roots):
            raise BundleError(
                f"{where}/{path}: manifest roots {list(roots)} do not permit package {package}")
        if strict_layout:
            expected = path.rpartition("/")[0].replace("/", ".")
            allowed = {expected, f"{expected}_test"} if path.endswith("_test.rego") \
                else {expected}
            if package not in allowed:
                raise PolicyError(
                    f"package {package} does not follow the directory; expected "
                    f"package {expected}", file=f"{where}/{path}", line=1,
                    tip="keep a package's files in the folder of its path")


def revision_of(modules: dict[str, str], data_files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for path in sorted(modules):
        digest.update(path.encode() + b"\0" + modules[path].encode() + b"\0")
    for path in sorted(data_files):
        digest.update(path.encode() + b"\0" + data_files[path] + b"\0")
    return digest.hexdigest()[:16]


def load_directory(folder: Path, roots: Sequence[str] | None = None, *,
                   include_tests: bool = False, revision: str | None = None) -> PolicySet:
    """Read the modules and data under ``folder`` (only the given roots, or every
    top-level folder)."""
    folder = folder.resolve()
    if not folder.is_dir():
        if folder.is_file() and folder.suffix == ".rego":
            return _single_file(folder, include_tests)
        raise PolicyNotFoundError(f"policy folder {folder} does not exist")
    if roots is None:
        roots = sorted(p.name for p in folder.iterdir()
                       if p.is_dir() and not p.name.startswith("."))
    clean = check_roots(roots, where=str(folder))
    modules: dict[str, str] = {}
    data_files: dict[str, bytes] = {}
    for root in clean:
        base = folder / root
        if not base.is_dir():
            raise PolicyError(f"bundle root {root!r} has no folder {base}")
        for file in sorted(base.rglob("*")):
            if not file.is_file():
                continue
            rel = file.relative_to(folder).as_posix()
            if file.suffix == ".rego":
                if rel.endswith("_test.rego") and not include_tests:
                    continue
                modules[rel] = file.read_text(encoding="utf-8")
            elif file.name == "data.json":
                raw = file.read_bytes()
                try:
                    json.loads(raw)
                except ValueError as exc:
                    raise PolicyError(f"not valid JSON: {exc}", file=str(file)) from exc
                data_files[rel] = raw
    if not modules:
        raise PolicyError(f"no Rego modules under {folder} for roots {list(clean)}")
    _check_modules(modules, clean, where=str(folder), strict_layout=True)
    return PolicySet(modules=modules, data_files=data_files, roots=clean,
                     revision=revision or f"dev-{revision_of(modules, data_files)}",
                     origin=str(folder))


def _single_file(file: Path, include_tests: bool) -> PolicySet:
    source = file.read_text(encoding="utf-8")
    package = package_of(source)
    if package is None:
        raise PolicyError("no `package` line", file=str(file))
    rel = package.replace(".", "/") + ".rego"
    return PolicySet(modules={rel: source}, data_files={}, roots=(package.split(".")[0],),
                     revision=f"dev-{revision_of({rel: source}, {})}", origin=str(file))


# --- bundles --------------------------------------------------------------------------


def manifest_bytes(revision: str, roots: Sequence[str], *,
                   metadata: dict[str, Any] | None = None) -> bytes:
    manifest: dict[str, Any] = {"revision": revision, "roots": list(roots), "rego_version": 1}
    if metadata:
        manifest["metadata"] = metadata
    return json.dumps(manifest, indent=1, sort_keys=True).encode() + b"\n"


def build(policy: PolicySet, *, revision: str | None = None,
          signing_key: Path | None = None, key_id: str = "vigil",
          scope: str | None = None, metadata: dict[str, Any] | None = None) -> bytes:
    """Write ``policy`` (without tests) as an OPA bundle; sign it when a key is given.
    ``metadata`` goes into the manifest (signed with it)."""
    revision = revision or policy.revision
    files: dict[str, bytes] = {MANIFEST: manifest_bytes(revision, policy.roots,
                                                        metadata=metadata)}
    for path, source in sorted(policy.policy_modules.items()):
        files[path] = source.encode("utf-8")
    files.update(policy.data_files)
    if signing_key is not None:
        files[signing.SIGNATURES_FILE] = signing.sign(
            {n: c for n, c in files.items()}, signing_key, key_id=key_id, scope=scope,
            issued_at=int(time.time()))
    raw = io.BytesIO()
    # mtime fixed so that the same inputs give the same archive bytes
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo("/" + name)
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def _read_archive(raw: bytes, where: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
            for member in tar:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise BundleError(f"{where}: {member.name} is not a regular file")
                name = member.name.lstrip("/")
                if name.startswith("./"):
                    name = name[2:]
                if ".." in name.split("/"):
                    raise BundleError(f"{where}: {member.name} escapes the bundle")
                if name in files:
                    raise BundleError(f"{where}: {name} appears twice")
                total += member.size
                if total > _MAX_BUNDLE_BYTES:
                    raise BundleError(f"{where}: bundle larger than {_MAX_BUNDLE_BYTES} bytes")
                handle = tar.extractfile(member)
                assert handle is not None
                files[name] = handle.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleError(f"{where}: not a gzipped tar archive: {exc}") from exc
    return files


def read(path: Path | str, raw: bytes | None = None, *,
         verification_key: Path | None = None, key_id: str | None = None,
         scope: str | None = None, require_signature: bool | None = None) -> PolicySet:
    """Read an OPA bundle, checking it the way OPA does.

    With a ``verification_key`` the bundle must carry ``.signatures.json`` and:
    (1) the JWT must verify (key, key id, algorithm, scope);
    (2) every file in the archive must be listed in the ``files`` claim;
    (3) every file's hash must match;
    (4) every listed file must be present.
    Then, signed or not: (5) the manifest's roots must not overlap and (6) every module's
    package and every data file must lie within a root.
    """
    where = str(path)
    if raw is None:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise BundleError(f"cannot read bundle {path}: {exc}") from exc
    files = _read_archive(raw, where)
    signatures = files.pop(signing.SIGNATURES_FILE, None)
    if require_signature is None:
        require_signature = verification_key is not None
    signed_by = None
    if verification_key is not None or require_signature:
        if signatures is None:
            raise BundleVerificationError(f"{where}: bundle missing {signing.SIGNATURES_FILE}",
                                          file=signing.SIGNATURES_FILE)
        if verification_key is None:
            raise BundleVerificationError(f"{where}: verification key not provided")
        signed = signing.verify(signatures, verification_key, key_id=key_id, scope=scope)  # (1)
        listed = dict(signed.files)
        for name, content in sorted(files.items()):
            if name not in listed:  # (2)
                raise BundleVerificationError(
                    f"{where}: file {name} not included in bundle signature", file=name)
            actual = signing.file_hash(name, content)
            if actual != listed.pop(name):  # (3)
                raise BundleVerificationError(
                    f"{where}: {name}: digest mismatch (the file was changed after signing)",
                    file=name)
        if listed:  # (4)
            raise BundleVerificationError(
                f"{where}: file(s) {sorted(listed)} specified in bundle signatures but not "
                "found in the target bundle", file=sorted(listed)[0])
        signed_by = signed.key_id
    if MANIFEST not in files:
        raise BundleError(f"{where}: bundle has no {MANIFEST}")
    try:
        manifest = json.loads(files.pop(MANIFEST))
    except ValueError as exc:
        raise BundleError(f"{where}: {MANIFEST} is not JSON: {exc}") from exc
    revision = str(manifest.get("revision", ""))
    roots = check_roots(manifest.get("roots", [""]), where=where)  # (5)
    if manifest.get("rego_version", 1) != 1:
        raise BundleError(f"{where}: rego_version {manifest.get('rego_version')} is not "
                          "supported; Vigil policies are Rego v1")
    modules: dict[str, str] = {}
    data_files: dict[str, bytes] = {}
    for name, content in files.items():
        if name.endswith(".rego"):
            modules[name] = content.decode("utf-8")
        elif name.rsplit("/", 1)[-1] == "data.json":
            data_dir = name.rsplit("/", 1)[0] if "/" in name else ""
            if data_dir and not _within(data_dir, roots):  # (6)
                raise BundleError(f"{where}: manifest roots {list(roots)} do not permit data "
                                  f"at path /{data_dir}")
            data_files[name] = content
    _check_modules(modules, roots, where=where, strict_layout=False)  # (6)
    metadata = manifest.get("metadata")
    return PolicySet(modules=modules, data_files=data_files, roots=roots, revision=revision,
                     origin=where, signed_by=signed_by, archive=raw,
                     metadata=metadata if isinstance(metadata, dict) else {})


def load_policy(settings: Settings) -> PolicySet:
    """The policy set the settings name, verified when a verification key is configured.

    With ``bundle_verification_key`` set, only a bundle whose signature verifies is
    loaded; a policy folder is refused (it carries no signature).
    """
    key = settings.bundle_verification_key
    if settings.bundle is not None:
        return read(settings.bundle, verification_key=key,
                    key_id=settings.bundle_verification_key_id,
                    scope=settings.bundle_verification_scope)
    if key is not None:
        raise ConfigError(
            "a bundle verification key is configured, but no bundle: a policy folder "
            "carries no signature and is not loaded",
            tip="build and sign a bundle with `vigil bundle build --signing-key …` and set "
                "VIGIL_BUNDLE to it")
    folder = settings.policy_dir or SOURCE_POLICIES
    return load_directory(folder, settings.policy_roots)
