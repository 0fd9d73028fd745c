"""Component identity: one canonical key per product or package, whatever feed names it.

* Products are keyed by ``(vendor, product)`` in CPE 2.3 style: lower case, spaces as
  underscores (``Red Hat`` -> ``redhat`` by alias). Feeds that name the same product
  differently (the kernel CNA's ``Linux``/``Linux``, NVD's ``linux``/``linux_kernel``)
  meet through :data:`PRODUCT_ALIASES`.
* Packages are keyed by ``(type, namespace, name)`` as in a purl (``rpm``, ``almalinux``,
  ``kernel``); OSV ecosystems map onto purl types and namespaces. A distribution release
  (``9`` in ``AlmaLinux:9``) is kept apart and compared when both sides state one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from cpe import CPE
from packageurl import PackageURL

from engine.errors import VigilError

# (vendor, product) as feeds write them -> canonical CPE-style (vendor, product).
PRODUCT_ALIASES: dict[tuple[str, str], tuple[str, str]] = {
    ("linux", "linux"): ("linux", "linux_kernel"),
    ("linux", "kernel"): ("linux", "linux_kernel"),
    ("xen", "xen"): ("xen", "xen"),
    ("xenproject", "xen"): ("xen", "xen"),
    ("qemu", "qemu"): ("qemu", "qemu"),
    ("tianocore", "edk2"): ("tianocore", "edk2"),
    ("tianocore", "edk_ii"): ("tianocore", "edk2"),
    ("vmware", "esxi"): ("vmware", "esxi"),
}

VENDOR_ALIASES: dict[str, str] = {
    "red_hat": "redhat",
    "red_hat,_inc.": "redhat",
    "linux_kernel_organization": "linux",
    "the_linux_kernel_organization": "linux",
    "xen_project": "xen",
    "intel_corporation": "intel",
    "advanced_micro_devices": "amd",
    "advanced_micro_devices_inc.": "amd",
    "microsoft_corporation": "microsoft",
}

# OSV ecosystem (without the ":release" suffix) -> (purl type, namespace).
ECOSYSTEMS: dict[str, tuple[str, str | None]] = {
    "almalinux": ("rpm", "almalinux"),
    "rocky linux": ("rpm", "rocky-linux"),
    "red hat": ("rpm", "redhat"),
    "redhat": ("rpm", "redhat"),
    "opensuse": ("rpm", "opensuse"),
    "suse": ("rpm", "suse"),
    "debian": ("deb", "debian"),
    "ubuntu": ("deb", "ubuntu"),
    "alpine": ("apk", "alpine"),
    "pypi": ("pypi", None),
    "npm": ("npm", None),
    "go": ("golang", None),
    "crates.io": ("cargo", None),
    "maven": ("maven", None),
}

# purl type -> version scheme used to compare its versions.
PURL_SCHEMES: dict[str, str] = {"rpm": "rpm", "deb": "deb", "generic": "generic"}

_SPACES = re.compile(r"[\s\-]+")


def norm(name: str) -> str:
    """CPE-style normal form of a vendor or product name."""
    return _SPACES.sub("_", name.strip().lower())


@lru_cache(maxsize=65_536)
def product_key(vendor: str, product: str) -> tuple[str, str]:
    """The canonical ``(vendor, product)`` of a product as any feed names it."""
    v, p = norm(vendor), norm(product)
    v = VENDOR_ALIASES.get(v, v)
    return PRODUCT_ALIASES.get((v, p), (v, p))


def scheme_for_product(vendor: str, product: str) -> str | None:
    """The version scheme a product is known to use, or None to follow the feed."""
    if product_key(vendor, product) == ("linux", "linux_kernel"):
        return "kernel"
    return None


@dataclass(frozen=True, slots=True)
class CpeName:
    part: str
    vendor: str
    product: str
    version: str
    """``*`` (any) or ``-`` (not applicable) or a concrete version."""
    update: str


class IdentityError(VigilError):
    """A CPE name, purl or ecosystem cannot be read."""


@lru_cache(maxsize=65_536)
def parse_cpe(name: str) -> CpeName:
    """Read a CPE 2.3 formatted string (or a 2.2 URI) with the ``cpe`` library."""
    try:
        c = CPE(name)
    except (NotImplementedError, ValueError, TypeError) as exc:
        raise IdentityError(f"not a CPE name: {name!r}") from exc

    def first(values: list[str]) -> str:
        value = values[0] if values else "*"
        return "*" if value in ("", "ANY") else ("-" if value == "NA" else value)

    vendor, product = product_key(first(c.get_vendor()), first(c.get_product()))
    part = first(c.get_part())
    return CpeName(
        part=part,
        vendor=vendor,
        product=product,
        version=first(c.get_version()).replace("\\", ""),
        update=first(c.get_update()),
    )


@dataclass(frozen=True, slots=True)
class PackageKey:
    type: str
    namespace: str | None
    name: str
    release: str | None = None
    """Distribution release the statement or component is for (``9``, ``bookworm``)."""

    @property
    def index_key(self) -> tuple[str, str, str]:
        return (self.type, self.namespace or "", self.name)

    @property
    def scheme(self) -> str:
        return PURL_SCHEMES.get(self.type, "generic")


def ecosystem_key(ecosystem: str, name: str) -> PackageKey:
    """The package key of an OSV ``(ecosystem, name)``: ``AlmaLinux:9`` + ``kernel``."""
    base, _, release = ecosystem.partition(":")
    mapped = ECOSYSTEMS.get(base.strip().lower())
    if mapped is None:
        raise IdentityError(f"unknown OSV ecosystem {ecosystem!r}")
    ptype, namespace = mapped
    return PackageKey(ptype, namespace, name, _distro_release(release.strip()))


@lru_cache(maxsize=65_536)
def purl_key(purl: str) -> tuple[PackageKey, str | None]:
    """The package key and version of a purl (``pkg:rpm/almalinux/kernel@…?distro=…``).

    For ``rpm`` and ``deb`` packages the version comes back as the distribution compares
    it: the ``epoch`` qualifier is written in front (``?epoch=17`` -> ``17:8.2.0-11.el9_4``;
    an epoch already written in the version must agree with it), and a missing epoch is 0
    (left out). Without a ``distro`` qualifier, a Red Hat family package takes its
    release from its own ``.elN`` release tag. A qualifier string with a second ``?`` in
    place of ``&`` (as some Ubuntu records publish it) is read as meant.
    """
    try:
        p = PackageURL.from_string(purl)
    except ValueError as exc:
        raise IdentityError(f"not a purl: {purl!r} ({exc})") from exc
    qualifiers = _qualifiers(p.qualifiers if isinstance(p.qualifiers, dict) else {})
    release = _distro_release(qualifiers.get("distro"))
    namespace = p.namespace.lower() if p.namespace else None
    version = p.version
    if version and p.type in _EPOCH_TYPES:
        version = with_epoch(qualifiers.get("epoch"), version, purl)
        if release is None and p.type == "rpm":
            release = _el_release(version)
    return PackageKey(p.type, namespace, p.name, release), version


_EPOCH_TYPES = frozenset({"rpm", "deb"})
_EPOCH = re.compile(r"^(\d+):")
_EL = re.compile(r"(?:^|[.+_-])el(\d+)(?:[._+]|$)")


def with_epoch(epoch: str | None, version: str, where: str = "") -> str:
    """``epoch:version`` as RPM and dpkg compare it; epoch 0 (or none) is left out, so
    ``0:1.2-3``, ``1.2-3`` and ``1.2-3`` with ``epoch=0`` are one version."""
    version = version.strip()
    stated = _EPOCH.match(version)
    body = version[stated.end():] if stated else version
    given = epoch.strip() if epoch is not None else None
    if given is not None and not given.isdigit():
        raise IdentityError(f"epoch {epoch!r} is not a number" + (f" in {where!r}" if where
                                                                   else ""))
    if stated and given is not None and int(stated.group(1)) != int(given):
        raise IdentityError(
            f"epoch {given} disagrees with the version {version!r}"
            + (f" in {where!r}" if where else ""))
    value = int(stated.group(1)) if stated else int(given) if given else 0
    return f"{value}:{body}" if value else body


def _el_release(version: str) -> str | None:
    """The RHEL major release an rpm is built for, from its ``.elN`` release tag."""
    _, _, release = version.rpartition("-")
    m = _EL.search(release)
    return m.group(1) if m else None


def _qualifiers(qualifiers: dict[str, str]) -> dict[str, str]:
    """Qualifiers with ``a=b?c=d`` values (a ``?`` written for ``&``) split apart."""
    out: dict[str, str] = {}
    for name, value in qualifiers.items():
        parts = value.split("?")
        out.setdefault(name, parts[0])
        for extra in parts[1:]:
            key, sep, val = extra.partition("=")
            if sep:
                out.setdefault(key.strip().lower(), val)
    return out


# Distribution code names -> the release number feeds use (``Debian:12``, ``Ubuntu:24.04``).
CODENAMES: dict[str, str] = {
    # Debian
    "buzz": "1", "hamm": "2", "slink": "2", "potato": "2", "woody": "3", "sarge": "3",
    "etch": "4", "lenny": "5", "squeeze": "6", "wheezy": "7", "jessie": "8", "stretch": "9",
    "buster": "10", "bullseye": "11", "bookworm": "12", "trixie": "13", "forky": "14",
    # Ubuntu (LTS and interim releases share the major number)
    "trusty": "14", "xenial": "16", "bionic": "18", "focal": "20", "jammy": "22",
    "noble": "24", "plucky": "25", "oracular": "24", "mantic": "23", "lunar": "23",
    "kinetic": "22", "impish": "21", "hirsute": "21", "groovy": "20", "eoan": "19",
    "disco": "19", "cosmic": "18",
}


_RELEASE_NUMBER = re.compile(r"(?:^|[^a-z0-9]|el)(\d+)")


def _distro_release(distro: str | None) -> str | None:
    """``almalinux-9.3`` / ``el9`` / ``rhel_aus:8.6::appstream`` / ``bookworm`` /
    ``esm-infra-legacy/trusty`` -> the major release (``9``, ``8``, ``12``, ``14``), the
    same on both sides of a comparison."""
    if not distro:
        return None
    text = distro.lower()
    # the first number that starts a token (or follows "el"): the 4 of a stream name such
    # as "rhel_e4s" is not a release
    m = _RELEASE_NUMBER.search(text)
    if m:
        return m.group(1)
    for word in re.split(r"[^a-z]+", text):
        if word in CODENAMES:
            return CODENAMES[word]
    return text.rsplit("-", 1)[-1]
