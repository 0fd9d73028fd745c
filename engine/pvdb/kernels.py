"""Distribution kernels: which package a kernel release string names, and which upstream
release (if any) it really is.

A distribution's kernel is judged by its distribution's advisories, in its package
version; it is compared with upstream ranges (the kernel CNA's, NVD's) only through an
upstream release it really corresponds to:

============================ ===================================================== ==========
kernel release               package                                                upstream
============================ ===================================================== ==========
``6.6.39``, ``6.10-rc3``     (none: an upstream release)                            itself
``6.1.0-18-amd64`` (Debian)  ``deb/debian linux 6.1.76-1`` (:data:`DEBIAN_ABI`)     ``6.1.76``
``6.12.38+deb13-amd64``,     (Debian's newer ABI names, which carry the release)    ``6.12.38``
``6.6.15-amd64``
Debian ``linux`` package     ``6.1.76-1``, ``6.1.76-1~bpo11+1``                     ``6.1.76``
``6.8.0-31-generic`` (Ubuntu) (the upload number is not in the release string)      none
``5.14.0-427.13.1.el9_4``    ``rpm/<distribution> kernel`` (vendor names it)        none
anything else                                                                       none
============================ ===================================================== ==========

Debian's kernel source follows upstream stable releases (``6.1.76-1`` is upstream 6.1.76
with Debian's patches), so its package version gives the upstream release; an ABI name
(``6.1.0-18``) does not, and only the ABI names in :data:`DEBIAN_ABI` are read; the ABI
names Debian gives since (``6.6.15-amd64``, ``6.12.38+deb13-amd64``) carry the whole
upstream release, which is read. Ubuntu
keeps the ``.0`` and backports fixes into its own numbering, and a RHEL-family kernel's
``5.14.0`` is the base it was forked from years ago: neither is an upstream release. A
release string that maps to no upstream release is *undetermined* against upstream
ranges (with the reason), never read as the nearest upstream number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UPSTREAM_KERNEL = ("linux", "linux_kernel")
"""The canonical product key of the upstream kernel."""

DEBIAN_ABI: dict[str, tuple[str, str]] = {
    # ABI name -> (package version of the ``linux`` source, Debian release)
    # Debian bug report of 2024-02-07 on 6.1.76-1 ("After upgrade to
    # linux-image-6.1.0-18-amd64 6.1.76-1"), forwarded to the kernel regressions list.
    "6.1.0-18": ("6.1.76-1", "12"),
    # debian-user list, 2023-11-17 ("linux-image-6.1.0-13-amd64 … the version of that
    # package is '6.1.55-1'").
    "6.1.0-13": ("6.1.55-1", "12"),
    # bullseye, from `apt search linux-image` output quoted on unix.stackexchange.com
    # question 692596 (2022): 5.10.0-10 is 5.10.84-1, 5.10.0-11 is 5.10.92-1.
    "5.10.0-10": ("5.10.84-1", "11"),
    "5.10.0-11": ("5.10.92-1", "11"),
}
"""Debian kernel ABI names whose ``linux`` package version is known, with where each
pairing was read. An ABI name not listed here is not guessed: give the package version
(``pkg:deb/debian/linux@6.1.76-1?distro=bookworm``) instead."""

DEBIAN_FLAVOURS = frozenset({
    "amd64", "arm64", "armmp", "armmp-lpae", "686", "686-pae", "cloud-amd64", "cloud-arm64",
    "rt-amd64", "rt-arm64", "rt-686-pae", "powerpc64le", "s390x", "marvell", "rpi",
    "4kc-malta", "5kc-malta", "octeon", "loongson-3", "mips32r2el", "mips64r2el",
    "amd64-unsigned", "arm64-unsigned", "riscv64",
})
UBUNTU_FLAVOURS = frozenset({
    "generic", "generic-64k", "generic-lpae", "lowlatency", "lowlatency-64k", "virtual",
    "aws", "azure", "gcp", "gke", "gkeop", "kvm", "oracle", "ibm", "raspi", "nvidia",
    "nvidia-64k", "realtime", "intel-iotg", "oem", "fips", "azure-fde", "xilinx-zynqmp",
})
EL_VENDORS: dict[str, str] = {
    # component vendor -> purl namespace of its distribution's kernel package
    "redhat": "redhat", "red_hat": "redhat", "almalinux": "almalinux",
    "rocky": "rocky-linux", "rocky_linux": "rocky-linux", "rocky-linux": "rocky-linux",
    "centos": "centos", "oracle": "oracle",
}
DEB_VENDORS = {"debian": "debian", "ubuntu": "ubuntu", "canonical": "ubuntu"}

_UPSTREAM = re.compile(r"^v?\d+\.\d+(?:\.\d+)?(?:-rc\d+)?\+?$")
_DEBIAN_ABI = re.compile(r"^(?P<abi>\d+\.\d+\.0-\d+)(?:-(?P<flavour>[a-z0-9-]+))?$")
_DEBIAN_FULL = re.compile(r"^(?P<upstream>\d+\.\d+\.[1-9]\d*)(?:[-+][\w.]+?)?"
                          r"-(?P<flavour>[a-z0-9-]+)$")
_UBUNTU = re.compile(r"^(?P<base>\d+\.\d+\.\d+)-(?P<abi>\d+)(?:\.\d+)?-(?P<flavour>[a-z0-9-]+)$")
_EL = re.compile(r"^(?P<version>\d[\w.]*-[\w.+]*?\.el(?P<release>\d+)[\w.+]*?)"
                 r"(?:\.(?:x86_64|aarch64|ppc64le|s390x|i686|noarch))?$")
_DEBIAN_UPSTREAM = re.compile(r"^(?:\d+:)?(?P<upstream>\d+\.\d+(?:\.\d+)?)"
                              r"(?:-[\w.+~]+|~[\w.+~-]+)?$")
_DEBIAN_KERNEL_PACKAGES = re.compile(r"^(?:linux|linux-image-.+|linux-signed-.+)$")


@dataclass(frozen=True, slots=True)
class KernelReading:
    """What a kernel release string (or a distribution kernel package) stands for."""

    upstream: str | None
    """The upstream release it really is, or None."""
    package: tuple[str, str, str, str | None] | None = None
    """``(purl type/namespace, package, version, release)`` of the distribution package
    it is, when that is known."""
    reason: str | None = None
    """Why there is no upstream release (None when there is one)."""


def read_release(version: str, vendor: str | None = None) -> KernelReading:
    """Read a kernel release string as given for the upstream kernel product
    (``uname -r``), with the component's vendor when it names a distribution."""
    text = version.strip()
    dist = (vendor or "").strip().lower().replace(" ", "_")
    if _UPSTREAM.match(text) and dist not in DEB_VENDORS and dist not in EL_VENDORS:
        return KernelReading(upstream=text.lstrip("v").rstrip("+"))
    el = _EL.match(text)
    if el:
        namespace = EL_VENDORS.get(dist)
        package = (("rpm/" + namespace, "kernel", el["version"], el["release"])
                   if namespace else None)
        return KernelReading(
            upstream=None, package=package,
            reason=f"kernel {text} is a RHEL-family build (el{el['release']}): its"
            f" {text.split('-')[0]} is the base it was forked from, not an upstream"
            " release; it is judged by its distribution's advisories"
            + ("" if namespace else " (name the distribution: pkg:rpm/redhat/kernel@…)"))
    full = _DEBIAN_FULL.match(text)
    if full and full["flavour"] in DEBIAN_FLAVOURS and dist not in ("ubuntu", "canonical"):
        # Debian's newer ABI names carry the whole upstream release
        return KernelReading(upstream=full["upstream"])
    deb = _DEBIAN_ABI.match(text)
    if deb and (dist == "debian" or (deb["flavour"] in DEBIAN_FLAVOURS and dist
                                     not in ("ubuntu", "canonical"))):
        known = DEBIAN_ABI.get(deb["abi"])
        if known is None:
            return KernelReading(
                upstream=None,
                reason=f"Debian kernel ABI {deb['abi']} is not among the ABI names whose"
                " package version is known; give the package version"
                " (pkg:deb/debian/linux@…)")
        package_version, release = known
        return KernelReading(upstream=debian_upstream(package_version),
                             package=("deb/debian", "linux", package_version, release))
    if dist == "debian" and (upstream := debian_upstream(text)) is not None:
        # a Debian ``linux`` package version (``6.1.76-1``)
        return KernelReading(upstream=upstream, package=("deb/debian", "linux", text, None))
    ubuntu = _UBUNTU.match(text)
    if ubuntu and (dist in ("ubuntu", "canonical") or ubuntu["flavour"] in UBUNTU_FLAVOURS):
        return KernelReading(
            upstream=None,
            reason=f"Ubuntu kernel {text}: Ubuntu's {ubuntu['base']}-{ubuntu['abi']} names"
            " no upstream stable release (fixes are backported into Ubuntu's own"
            " numbering) and its package upload is not in the release string; give the"
            " package (pkg:deb/ubuntu/linux@…?distro=…)")
    return KernelReading(
        upstream=None,
        reason=f"kernel release {text!r} maps to no known upstream version")


def debian_upstream(package_version: str) -> str | None:
    """The upstream release of a Debian ``linux`` package version (``6.1.76-1`` ->
    ``6.1.76``), or None when it is not of that form."""
    m = _DEBIAN_UPSTREAM.match(package_version.strip())
    return m["upstream"] if m else None


def is_debian_kernel_package(name: str) -> bool:
    """``linux``, ``linux-image-6.1.0-18-amd64``, ``linux-signed-amd64``…"""
    return bool(_DEBIAN_KERNEL_PACKAGES.match(name))
