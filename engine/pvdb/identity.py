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
    """The package key and version of a purl (``pkg:rpm/almalinux/kernel@…?distro=…``)."""
    try:
        p = PackageURL.from_string(purl)
    except ValueError as exc:
        raise IdentityError(f"not a purl: {purl!r} ({exc})") from exc
    qualifiers = p.qualifiers if isinstance(p.qualifiers, dict) else {}
    release = _distro_release(qualifiers.get("distro"))
    namespace = p.namespace.lower() if p.namespace else None
    return PackageKey(p.type, namespace, p.name, release), p.version


def _distro_release(distro: str | None) -> str | None:
    """``almalinux-9.3`` / ``el9`` / ``rhel_aus:8.6::appstream`` / ``bookworm`` -> the major
    release (``9``, ``8``, ``bookworm``), the same on both sides of a comparison."""
    if not distro:
        return None
    text = distro.lower()
    m = re.search(r"(\d+)", text)
    if m:
        return m.group(1)
    return text.rsplit("-", 1)[-1]
