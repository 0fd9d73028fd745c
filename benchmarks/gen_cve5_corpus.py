"""Generate a synthetic cvelistV5-style corpus of CVE JSON 5 records for the PVDB benchmark.

The records are scaled up from the real ones in ``../shared/data/feeds/cve5`` and
``cve5_linux_cna`` (read in place as templates: vendor/product names, descriptions,
titles, CWE ids, reference hosts, kernel file paths). One file per record at
``<out>/<year>/<CVE-ID>.json``, pretty-printed like cvelistV5.

What a corpus holds (deterministic for a given ``--count`` and ``--seed``):

* unique CVE ids spread over 1999-2026 like cvelistV5 (most in 2022-2025), each with
  ``dateReserved`` / ``datePublished`` / ``dateUpdated`` (no later than 2026-06-30);
* ~3 % REJECTED records;
* Linux kernel CNA records (~7 %, mostly 2024+) written as the kernel CNA's bippy does:
  ``git`` ranges per fixed branch, ``semver`` ``lessThanOrEqual: "6.6.*"`` branch
  statements, ``original_commit_for_fix``, and often ``cpeApplicability``;
* other records name products from a *head* of ~700 vendor/product pairs (the real
  ones, Red Hat rpm package streams and synthetic ones, Zipf-weighted; 5 % of picks,
  about 20 records each;
  the benchmark's hosts run these) or from a *long tail* of made-up products (about
  7 records each, as most cvelistV5 products have few records), with semver
  ``lessThan`` / ``lessThanOrEqual`` ranges, per-branch ranges, exact versions,
  "unaffected from" statements, dotted Windows-style builds, vendor-custom firmware
  versions, Red Hat ``rpm`` package streams, git ranges, and ecosystem packages (PyPI,
  npm, crates.io, Maven);
* CVSS v3.1 / v3.0 / v4.0 / v2.0 vectors (valid; the stated base scores are computed
  with the ``cvss`` library, as CNAs state them), CISA-ADP and "CVE Program" ADP
  containers, references, CWE problem types.

``--mutate N`` writes N changed copies of corpus records (same ids, ``dateUpdated`` in
July 2026, changed description, references and metrics) into another folder, for the
incremental-ingest test.

Usage::

    python benchmarks/gen_cve5_corpus.py OUT --count 300000 [--seed 1] [--jobs 2]
    python benchmarks/gen_cve5_corpus.py OUT_MUT --count 300000 --seed 1 --mutate 1000

A finished folder holds a hidden ``.corpus.json`` marker (hidden files are not ingested)
that :func:`corpus_ready` checks, so the benchmark can reuse a corpus.
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import glob
import hashlib
import itertools
import multiprocessing
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

GENERATOR_VERSION = 3
DEFAULT_TEMPLATES = Path(
    os.environ.get("VIGIL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
) / "feeds"
"""The real records the corpus is scaled up from: ``../shared/data/feeds`` beside the
project (or ``$VIGIL_SHARED_DATA/feeds``)."""
MARKER = ".corpus.json"
_IN_PROGRESS = ".generating"

UTC = dt.UTC
LATEST = dt.datetime(2026, 6, 30, 23, 59, 59, tzinfo=UTC)
"""No base record is dated later than this; mutated records are dated after it."""
MUTATION_START = dt.datetime(2026, 7, 1, tzinfo=UTC)

# Published CVE ids per year in cvelistV5 (rounded), used as weights.
YEAR_WEIGHTS: dict[int, int] = {
    1999: 1500, 2000: 1200, 2001: 1500, 2002: 2300, 2003: 1500, 2004: 2700, 2005: 4700,
    2006: 7000, 2007: 6500, 2008: 7000, 2009: 5000, 2010: 5100, 2011: 4700, 2012: 5800,
    2013: 6700, 2014: 8700, 2015: 8700, 2016: 11000, 2017: 18000, 2018: 18000,
    2019: 17000, 2020: 19000, 2021: 22000, 2022: 25000, 2023: 29000, 2024: 40000,
    2025: 45000, 2026: 20000,
}
_ID_STRIDE = 3
REJECTED_SHARE = 0.03
HEAD_SHARE = 0.05
"""Share of product picks that go to the head of the catalogue (the products hosts run)."""


def tail_products(count: int) -> int:
    """Long-tail products for a corpus of ``count`` records (about 7 records each)."""
    return max(1000, count // 7)


def kernel_share(year: int) -> float:
    """Probability that a record of ``year`` is a Linux kernel CNA record."""
    if year >= 2024:
        return 0.14
    if year >= 2021:
        return 0.05
    return 0.01


LINUX_ORG = "f4215fc3-5b6b-47ff-a258-f7189bd81038"
CISA_ADP_ORG = "134c704f-9b21-4f2e-91b3-4a467353bcc0"
CVE_ORG = "af854a3a-2127-422b-91ae-364da2661108"
REDHAT_COLLECTION = "https://access.redhat.com/downloads/content/package-browser/"

# Linux stable branches and (roughly) their last patch level by mid 2026; LTS marked.
KERNEL_BRANCHES: dict[str, tuple[int, bool]] = {
    "4.19": (325, True), "5.4": (295, True), "5.10": (240, True), "5.15": (190, True),
    "6.1": (150, True), "6.6": (100, True), "6.7": (12, False), "6.8": (12, False),
    "6.9": (12, False), "6.10": (14, False), "6.11": (11, False), "6.12": (45, True),
    "6.13": (12, False), "6.14": (11, False), "6.15": (11, False), "6.16": (12, False),
    "6.17": (9, False),
}
KERNEL_MAINLINE: tuple[str, ...] = (
    *(f"2.6.{n}" for n in range(12, 40)),
    *(f"3.{n}" for n in range(20)),
    *(f"4.{n}" for n in range(21)),
    *(f"5.{n}" for n in range(20)),
    *(f"6.{n}" for n in range(19)),
)


def _vkey(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


# --- templates from the real records -------------------------------------------------


@dataclass
class Templates:
    """Text and names taken from the real records (read in place)."""

    descriptions: list[str] = field(default_factory=list)
    kernel_bodies: list[str] = field(default_factory=list)
    kernel_titles: list[str] = field(default_factory=list)
    kernel_files: list[str] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    cwes: list[tuple[str, str]] = field(default_factory=list)
    products: list[tuple[str | None, str | None, str | None, str | None]] = field(
        default_factory=list
    )
    """(vendor, product, packageName, collectionURL) as the real records write them."""
    ref_hosts: list[str] = field(default_factory=list)


def load_templates(root: Path = DEFAULT_TEMPLATES) -> Templates:
    t = Templates()
    files = sorted(glob.glob(str(root / "cve5" / "**" / "*.json"), recursive=True))
    files += sorted(glob.glob(str(root / "cve5_linux_cna" / "**" / "*.json"), recursive=True))
    seen_products: set[tuple[Any, ...]] = set()
    seen_text: set[str] = set()
    hosts: set[str] = set()
    for path in files:
        try:
            with open(path, "rb") as fh:
                data = orjson.loads(fh.read())
            cna = data["containers"]["cna"]
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
            continue
        desc = next((d.get("value") for d in cna.get("descriptions") or []
                     if str(d.get("lang", "")).startswith("en")), None)
        title = cna.get("title")
        is_kernel = isinstance(desc, str) and desc.startswith("In the Linux kernel")
        if isinstance(desc, str) and desc not in seen_text:
            seen_text.add(desc)
            if is_kernel:
                parts = desc.split("\n\n", 2)
                if len(parts) == 3 and parts[2].strip():
                    t.kernel_bodies.append(parts[2].strip())
            else:
                t.descriptions.append(desc.strip())
        if isinstance(title, str) and title:
            (t.kernel_titles if is_kernel else t.titles).append(title)
        for pt in cna.get("problemTypes") or []:
            for d in pt.get("descriptions") or []:
                if d.get("cweId") and (d["cweId"], d.get("description", "")) not in t.cwes:
                    t.cwes.append((d["cweId"], d.get("description", d["cweId"])))
        for entry in cna.get("affected") or []:
            if not isinstance(entry, dict):
                continue
            for f in entry.get("programFiles") or []:
                if f not in t.kernel_files:
                    t.kernel_files.append(f)
            key = tuple(
                (value.strip() or None) if isinstance(value := entry.get(k), str) else None
                for k in ("vendor", "product", "packageName", "collectionURL")
            )
            vendor, product = key[0], key[1]
            if (vendor or "").lower() == "linux" and (product or "").lower() in ("linux",
                                                                                 "kernel"):
                continue
            if product in (None, "n/a") and key[2] is None:
                continue
            if key not in seen_products:
                seen_products.add(key)
                t.products.append(key)  # type: ignore[arg-type]
        for ref in cna.get("references") or []:
            url = ref.get("url") if isinstance(ref, dict) else None
            if isinstance(url, str) and url.startswith("https://"):
                host = url.split("/")[2]
                if host != "git.kernel.org":
                    hosts.add(host)
    t.ref_hosts = sorted(hosts)
    # Fallbacks so the generator still runs without the real records.
    if not t.descriptions:
        t.descriptions = [
            "A flaw was found that allows a local attacker to escalate privileges by "
            "sending crafted requests to the management interface."
        ]
    if not t.kernel_bodies:
        t.kernel_bodies = ["Fix a use-after-free when the device is removed while in use."]
    if not t.kernel_titles:
        t.kernel_titles = ["KVM: x86: fix a race in the MMU notifier"]
    if not t.kernel_files:
        t.kernel_files = ["arch/x86/kvm/x86.c"]
    if not t.titles:
        t.titles = ["Privilege escalation in the management interface"]
    if not t.cwes:
        t.cwes = [("CWE-416", "CWE-416 Use After Free")]
    if not t.ref_hosts:
        t.ref_hosts = ["www.openwall.com"]
    return t


# --- the vendor/product catalogue ------------------------------------------------------


@dataclass(frozen=True)
class Product:
    """One product the corpus talks about, and how its versions look."""

    vendor: str | None
    product: str | None
    package: str | None
    collection: str | None
    kind: str
    """Host component kind: firmware, bmc, microcode, hypervisor, os-package, application."""
    style: str
    """semver, dotted (Windows-like builds), firmware (vendor-custom), rpm, git, ecosystem."""
    lines: tuple[str, ...]
    """Version branches (``"2.4"``, ``"10.0.17763"``, ``"BKS_5"``, ``"9"`` for el9…)."""
    max_patch: tuple[int, ...]
    weight: float
    domain: str
    tail: int = -1
    """Index among the long-tail products, or -1 for a head (catalogue) product."""

    def sample_version(self, rng: random.Random) -> str:
        """A version a host could run."""
        i = rng.randrange(len(self.lines))
        line, top = self.lines[i], self.max_patch[i]
        if self.style == "firmware":
            return f"{line}.{rng.randint(0, top)}"
        if self.style == "rpm":
            return f"{line}.{rng.randint(0, top)}"
        return f"{line}.{rng.randint(0, top)}"

    @property
    def purl_type(self) -> str | None:
        if self.style == "rpm":
            return "rpm"
        if self.style == "ecosystem" and self.collection:
            return {
                "https://pypi.org": "pypi", "https://registry.npmjs.org": "npm",
                "https://crates.io": "cargo", "https://repo.maven.apache.org/maven2": "maven",
            }.get(self.collection)
        return None


_SYLLABLES = (
    "ar", "bel", "cor", "dax", "el", "fen", "gal", "hex", "ion", "jun", "kor", "lum", "mar",
    "nex", "or", "pax", "quin", "ros", "sol", "tor", "ul", "vex", "wen", "xan", "yor", "zen",
    "tri", "vol", "ka", "mi", "no", "ra", "sen", "ti", "va",
)
_VENDOR_SUFFIX = ("", "", "", " Systems", " Networks", " Technologies", " Inc.", " Labs",
                  " Software", " Corporation")
_PRODUCT_WORDS = (
    "Gateway", "Orchestrator", "Storage Manager", "Agent", "Console", "Hypervisor", "BMC",
    "Firmware", "Controller", "Switch OS", "Backup", "Monitor", "Scheduler", "Proxy",
    "Vault", "Service Mesh", "Runtime", "Cache", "Router", "Fabric Manager", "Edge",
    "Identity Server", "Web Server", "Database", "Message Broker", "Load Balancer",
    "Container Engine", "Virtual Appliance", "NIC Firmware", "Management Controller",
    "Update Service", "Boot Loader", "Microcode", "SDK", "CLI", "Operator", "Portal",
)
_ECOSYSTEMS = (
    "https://pypi.org", "https://registry.npmjs.org", "https://crates.io",
    "https://repo.maven.apache.org/maven2",
)


def _kind_for(vendor: str, product: str) -> str:
    text = f"{vendor} {product}".lower()
    if any(w in text for w in ("bmc", "management controller")):
        return "bmc"
    if any(w in text for w in ("processor", "epyc", "ryzen", "xeon", "athlon", "microcode",
                               "cpu", "atom", "core(tm)")):
        return "microcode"
    if any(w in text for w in ("firmware", "aptio", "securecore", "edk2", "boot", "bios",
                               "nic", "agesa", "tdx")):
        return "firmware"
    if any(w in text for w in ("xen", "qemu", "hypervisor", "esxi", "kvm", "hyper-v",
                               "vmware", "virtual")):
        return "hypervisor"
    return "application"


def _style_for(vendor: str, product: str, package: str | None, collection: str | None,
               rng: random.Random) -> str:
    text = f"{vendor} {product}".lower()
    if collection and "redhat.com" in collection:
        return "rpm"
    if "windows" in text:
        return "dotted"
    if _kind_for(vendor, product) in ("firmware", "microcode", "bmc") and rng.random() < 0.7:
        return "firmware"
    r = rng.random()
    if r < 0.72:
        return "semver"
    if r < 0.82:
        return "dotted"
    if r < 0.92:
        return "git"
    return "firmware"


def _lines(style: str, rng: random.Random, product: str) -> tuple[list[str], list[int]]:
    n = rng.randint(2, 6)
    if style == "dotted":
        builds = sorted(rng.sample(range(10240, 26200), n))
        return [f"10.0.{b}" for b in builds], [rng.randint(500, 6000) for _ in builds]
    if style == "firmware":
        prefix = rng.choice(("BKS", "RKL", "V", "FW", "PI", "U", "SC"))
        majors = sorted(rng.sample(range(1, 12), min(n, 4)))
        return [f"{prefix}_{m}" for m in majors], [rng.randint(10, 60) for _ in majors]
    if style == "rpm":
        major = next((int(w) for w in product.replace(".", " ").split() if w.isdigit()), 9)
        majors = [max(6, min(10, major))]
        return [f"{rng.randint(1, 12)}.{rng.randint(0, 9)}"], [rng.randint(5, 40)] * len(majors)
    major = rng.randint(1, 12)
    lines: list[str] = []
    while len(lines) < n:
        minor = rng.randint(0, 24)
        line = f"{major}.{minor}"
        if line not in lines:
            lines.append(line)
        if rng.random() < 0.3:
            major += 1
    lines.sort(key=_vkey)
    return lines, [rng.randint(3, 60) for _ in lines]


def _synthetic_name(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(parts)).capitalize()


def _norm(text: str | None) -> str:
    return " ".join((text or "").lower().split())


# Red Hat packages (synthetic rpm streams for the head of the catalogue; the real
# records contribute qemu-kvm, libvirt, shim, glibc, openssh…).
RHEL_PACKAGES = (
    "openssl", "curl", "systemd", "sudo", "bind", "httpd", "nginx", "glib2", "libxml2",
    "expat", "zlib", "krb5", "samba", "podman", "runc", "python3.11", "perl", "git", "vim",
    "bash", "polkit", "dbus", "NetworkManager", "openldap", "sqlite", "libtiff", "libpng",
    "gnutls", "nss", "cups", "grub2", "util-linux", "pam", "rsync", "tar", "xz", "libssh",
    "libarchive", "linux-firmware", "microcode_ctl", "ipmitool", "dnsmasq", "unbound",
    "postgresql", "mariadb", "redis", "java-17-openjdk", "nodejs", "golang", "gcc",
    "binutils", "elfutils", "freetype", "poppler", "ghostscript", "edk2", "qemu-img",
    "swtpm", "libtpms", "fwupd",
)


def _make_product(vendor: str | None, product: str | None, package: str | None,
                  collection: str | None, rng: random.Random, weight: float,
                  tail: int = -1) -> Product:
    name_v, name_p = vendor or "n/a", product or package or "n/a"
    if collection in _ECOSYSTEMS:
        style = "ecosystem"
    else:
        style = _style_for(name_v, name_p, package, collection, rng)
    lines, tops = _lines(style, rng, name_p)
    kind = "os-package" if style in ("rpm", "ecosystem") else _kind_for(name_v, name_p)
    stem = (_norm(name_v).split() or ["vendor"])[0].strip(".,")
    domain = f"www.{''.join(c for c in stem if c.isalnum()) or 'vendor'}.com"
    return Product(vendor, product, package, collection, kind, style, tuple(lines),
                   tuple(tops), weight, domain, tail)


def tail_product(seed: int, j: int) -> Product:
    """Long-tail product ``j``: a made-up product named by only a few records (most of
    cvelistV5's products are), four products per made-up vendor."""
    rng = random.Random(f"tail:{seed}:{j}")
    vrng = random.Random(f"tail-vendor:{seed}:{j // 4}")
    vendor = _synthetic_name(vrng, vrng.randint(2, 4)) + vrng.choice(_VENDOR_SUFFIX)
    product = f"{_synthetic_name(rng, rng.randint(2, 3))} {rng.choice(_PRODUCT_WORDS)}"
    package = collection = None
    if rng.random() < 0.1:
        package = f"{_synthetic_name(rng, 3).lower()}-{rng.choice(('client', 'core', 'api'))}"
        collection = rng.choice(_ECOSYSTEMS)
        product = package
    return _make_product(vendor, product, package, collection, rng, 0.0, tail=j)


def build_catalogue(templates: Templates, seed: int, synthetic: int = 420) -> list[Product]:
    """The head of the catalogue: every real vendor/product pair, Red Hat package streams
    and ``synthetic`` made-up pairs, with Zipf popularity weights (shuffled
    deterministically). Hosts run these; the long tail (:func:`tail_product`) holds the
    rest of the corpus."""
    rng = random.Random(f"catalogue:{seed}")
    raw: list[tuple[str | None, str | None, str | None, str | None]] = list(templates.products)
    raw += [("Red Hat", "Red Hat Enterprise Linux 9", name, REDHAT_COLLECTION)
            for name in RHEL_PACKAGES]
    raw = list(dict.fromkeys(raw))
    seen = {(_norm(v), _norm(p), _norm(k)) for v, p, k, _ in raw}
    vendors: list[str] = []
    while len(vendors) < synthetic // 3:
        name = _synthetic_name(rng, rng.randint(2, 3)) + rng.choice(_VENDOR_SUFFIX)
        if name not in vendors:
            vendors.append(name)
    attempts = 0
    target = len(raw) + synthetic
    while len(raw) < target and attempts < synthetic * 50:
        attempts += 1
        vendor = rng.choice(vendors)
        stem = vendor.split()[0] if rng.random() < 0.5 else _synthetic_name(rng, 2)
        product = f"{stem} {rng.choice(_PRODUCT_WORDS)}"
        package = collection = None
        if rng.random() < 0.08:
            package = f"{stem.lower()}-{rng.choice(('client', 'core', 'utils', 'sdk', 'api'))}"
            collection = rng.choice(_ECOSYSTEMS)
            product = package
        key = (_norm(vendor), _norm(product), _norm(package))
        if key in seen:
            continue
        seen.add(key)
        raw.append((vendor, product, package, collection))
    ranks = list(range(1, len(raw) + 1))
    rng.shuffle(ranks)
    return [_make_product(vendor, product, package, collection, rng, 1.0 / rank**0.8)
            for (vendor, product, package, collection), rank in zip(raw, ranks, strict=True)]


# --- CVSS vector pools -------------------------------------------------------------------

_V3_NAMES = {
    "AV": ("attackVector", {"N": "NETWORK", "A": "ADJACENT_NETWORK", "L": "LOCAL",
                            "P": "PHYSICAL"}),
    "AC": ("attackComplexity", {"L": "LOW", "H": "HIGH"}),
    "PR": ("privilegesRequired", {"N": "NONE", "L": "LOW", "H": "HIGH"}),
    "UI": ("userInteraction", {"N": "NONE", "R": "REQUIRED"}),
    "S": ("scope", {"U": "UNCHANGED", "C": "CHANGED"}),
    "C": ("confidentialityImpact", {"H": "HIGH", "L": "LOW", "N": "NONE"}),
    "I": ("integrityImpact", {"H": "HIGH", "L": "LOW", "N": "NONE"}),
    "A": ("availabilityImpact", {"H": "HIGH", "L": "LOW", "N": "NONE"}),
}
_V4_METRICS = (("AV", "NALP"), ("AC", "LH"), ("AT", "NP"), ("PR", "NLH"), ("UI", "NPA"),
               ("VC", "HLN"), ("VI", "HLN"), ("VA", "HLN"), ("SC", "HLN"), ("SI", "HLN"),
               ("SA", "HLN"))
_V2_METRICS = (("AV", "NAL"), ("AC", "LMH"), ("Au", "NSM"), ("C", "NPC"), ("I", "NPC"),
               ("A", "NPC"))


def _severity(score: float) -> str:
    for floor, name in ((9.0, "CRITICAL"), (7.0, "HIGH"), (4.0, "MEDIUM"), (0.1, "LOW")):
        if score >= floor:
            return name
    return "NONE"


@dataclass
class VectorPools:
    v31: list[dict[str, Any]]
    v30: list[dict[str, Any]]
    v40: list[dict[str, Any]]
    v20: list[dict[str, Any]]


def build_vector_pools(seed: int) -> VectorPools:
    """Valid vectors with the base scores the ``cvss`` library computes for them."""
    from cvss import CVSS2, CVSS3, CVSS4

    rng = random.Random(f"vectors:{seed}")

    def v3(prefix: str, n: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        while len(out) < n:
            parts = {m: rng.choice(list(names)) for m, (_, names) in _V3_NAMES.items()}
            # Weight towards the common network / high-impact vectors.
            if rng.random() < 0.5:
                parts["AV"] = "N"
            vector = prefix + "/".join(f"{k}:{v}" for k, v in parts.items())
            if vector in seen:
                continue
            seen.add(vector)
            score = float(CVSS3(vector).base_score)
            body: dict[str, Any] = {"version": prefix[5:8], "baseScore": score,
                                    "baseSeverity": _severity(score), "vectorString": vector}
            for m, value in parts.items():
                body[_V3_NAMES[m][0]] = _V3_NAMES[m][1][value]
            out.append(body)
        return out

    v40: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(v40) < 300:
        vector = "CVSS:4.0/" + "/".join(f"{m}:{rng.choice(vals)}" for m, vals in _V4_METRICS)
        if vector in seen:
            continue
        seen.add(vector)
        score = float(CVSS4(vector).base_score)
        v40.append({"version": "4.0", "baseScore": score, "baseSeverity": _severity(score),
                    "vectorString": vector})
    v20 = []
    for _ in range(80):
        vector = "/".join(f"{m}:{rng.choice(vals)}" for m, vals in _V2_METRICS)
        v20.append({"version": "2.0", "baseScore": float(CVSS2(vector).base_score),
                    "vectorString": vector})
    return VectorPools(v3("CVSS:3.1/", 700), v3("CVSS:3.0/", 150), v40, v20)


# --- record generation ---------------------------------------------------------------


class Context:
    """Everything a worker needs to generate record ``i`` of a corpus on its own."""

    def __init__(self, count: int, seed: int, templates: Templates) -> None:
        self.count = count
        self.seed = seed
        self.t = templates
        self.products = build_catalogue(templates, seed)
        self.cum_weights = list(itertools.accumulate(p.weight for p in self.products))
        self.tail_count = tail_products(count)
        self._tail: dict[int, Product] = {}
        self.vectors = build_vector_pools(seed)
        years = sorted(YEAR_WEIGHTS)
        total = sum(YEAR_WEIGHTS.values())
        exact = [count * YEAR_WEIGHTS[y] / total for y in years]
        quotas = [int(x) for x in exact]
        for j in sorted(range(len(years)), key=lambda j: exact[j] - quotas[j],
                        reverse=True)[: count - sum(quotas)]:
            quotas[j] += 1
        self.years = years
        self.year_starts = [0, *itertools.accumulate(quotas)][:-1]
        self.vendor_products: dict[str, list[Product]] = {}
        for p in self.products:
            self.vendor_products.setdefault(p.vendor or "", []).append(p)

    def cve_id(self, i: int) -> tuple[int, str]:
        j = bisect.bisect_right(self.year_starts, i) - 1
        year, k = self.years[j], i - self.year_starts[j]
        # Numbers unique within the year: k * stride + a per-id offset below the stride.
        offset = int.from_bytes(hashlib.blake2b(f"{self.seed}:{i}".encode(),
                                                digest_size=2).digest()) % _ID_STRIDE
        return year, f"CVE-{year}-{1000 + k * _ID_STRIDE + offset:04d}"

    def pick_product(self, rng: random.Random) -> Product:
        """A head product (Zipf-weighted) for HEAD_SHARE of the picks, else a tail one."""
        if rng.random() < HEAD_SHARE:
            x = rng.random() * self.cum_weights[-1]
            return self.products[bisect.bisect_right(self.cum_weights, x)]
        return self.tail_product(rng.randrange(self.tail_count))

    def tail_product(self, j: int) -> Product:
        p = self._tail.get(j)
        if p is None:
            p = self._tail[j] = tail_product(self.seed, j)
        return p

    def siblings(self, p: Product) -> list[Product]:
        """Other products of the same vendor."""
        if p.tail >= 0:
            base = p.tail - p.tail % 4
            return [self.tail_product(j) for j in range(base, min(base + 4, self.tail_count))]
        return self.vendor_products.get(p.vendor or "", [p])


def _ts(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _sha(rng: random.Random) -> str:
    return f"{rng.getrandbits(160):040x}"


def _dates(rng: random.Random, year: int) -> tuple[dt.datetime, dt.datetime, dt.datetime]:
    start = dt.datetime(year, 1, 1, tzinfo=UTC)
    span = min(330.0, (LATEST - start).total_seconds() / 86400 - 40)
    reserved = start + dt.timedelta(days=rng.uniform(0, span))
    published = reserved + dt.timedelta(days=rng.uniform(0.5, 35 if year >= 2024 else 120))
    published = min(published, LATEST - dt.timedelta(days=1))
    remaining = (LATEST - published).total_seconds()
    if rng.random() < 0.5:
        updated = published + dt.timedelta(seconds=rng.uniform(60, min(remaining, 30 * 86400)))
    else:
        updated = published + dt.timedelta(seconds=rng.uniform(60, remaining))
    return reserved, published, min(updated, LATEST)


def _metric(ctx: Context, rng: random.Random, kind: str) -> dict[str, Any]:
    pools = {"cvssV3_1": ctx.vectors.v31, "cvssV3_0": ctx.vectors.v30,
             "cvssV4_0": ctx.vectors.v40, "cvssV2_0": ctx.vectors.v20}
    body = rng.choice(pools[kind])
    return {"format": "CVSS", kind: dict(body),
            "scenarios": [{"lang": "en", "value": "GENERAL"}]}


def _cna_metrics(ctx: Context, rng: random.Random, year: int) -> list[dict[str, Any]]:
    r = rng.random()
    if year < 2016 and r < 0.3:
        return [_metric(ctx, rng, "cvssV2_0")]
    if r < 0.45:
        return [_metric(ctx, rng, "cvssV3_1")]
    if r < 0.53:
        return [_metric(ctx, rng, "cvssV4_0")]
    if r < 0.58:
        return [_metric(ctx, rng, "cvssV4_0"), _metric(ctx, rng, "cvssV3_1")]
    if r < 0.62:
        return [_metric(ctx, rng, "cvssV3_0")]
    return []


def _references(ctx: Context, rng: random.Random, cve_id: str, p: Product | None,
                year: int, n: int) -> list[dict[str, Any]]:
    refs: list[dict[str, Any]] = []
    if p is not None:
        refs.append({"url": f"https://{p.domain}/security/advisories/{cve_id}",
                     "tags": ["vendor-advisory"]})
    for _ in range(n):
        kind = rng.random()
        if kind < 0.25:
            url = (f"https://www.openwall.com/lists/oss-security/{year}/"
                   f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(1, 9)}")
            refs.append({"url": url, "tags": ["mailing-list"]})
        elif kind < 0.45:
            url = f"https://bugzilla.redhat.com/show_bug.cgi?id={rng.randint(1_000_000, 2_400_000)}"
            refs.append({"url": url, "name": f"RHBZ#{url.rsplit('=', 1)[1]}",
                         "tags": ["issue-tracking", "x_refsource_REDHAT"]})
        elif kind < 0.65:
            owner = (p.vendor or "project").split()[0].lower().strip(".,") if p else "project"
            refs.append({"url": f"https://github.com/{owner}/{owner}/commit/{_sha(rng)}",
                         "tags": ["patch"]})
        elif kind < 0.8:
            refs.append({"url": f"https://security.netapp.com/advisory/ntap-{year}"
                                f"{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}-"
                                f"{rng.randint(1, 9):04d}/"})
        else:
            host = rng.choice(ctx.t.ref_hosts)
            refs.append({"url": f"https://{host}/{cve_id.lower()}/{rng.randint(1, 99999)}"})
    return refs


def _adp(ctx: Context, rng: random.Random, cve_id: str, refs: list[dict[str, Any]],
         published: dt.datetime, updated: dt.datetime, cna_scored: bool,
         p: Product | None) -> list[dict[str, Any]]:
    adps: list[dict[str, Any]] = []
    if refs and rng.random() < 0.35:
        adps.append({
            "title": "CVE Program Container",
            "references": [{**r, "tags": [*r.get("tags", []), "x_transferred"]} for r in refs],
            "providerMetadata": {"orgId": CVE_ORG, "shortName": "CVE",
                                 "dateUpdated": _ts(updated)},
        })
    if rng.random() < 0.45:
        stamp = published + (updated - published) * rng.random()
        metrics: list[dict[str, Any]] = [{"other": {"type": "ssvc", "content": {
            "id": cve_id, "role": "CISA Coordinator",
            "options": [{"Exploitation": rng.choice(("none", "poc", "active"))},
                        {"Automatable": rng.choice(("no", "yes"))},
                        {"Technical Impact": rng.choice(("partial", "total"))}],
            "version": "2.0.3", "timestamp": _ts(stamp)}}}]
        if not cna_scored and rng.random() < 0.6:
            metrics.insert(0, {"cvssV3_1": dict(rng.choice(ctx.vectors.v31))})
        adp: dict[str, Any] = {
            "metrics": metrics,
            "title": "CISA ADP Vulnrichment",
            "providerMetadata": {"orgId": CISA_ADP_ORG, "shortName": "CISA-ADP",
                                 "dateUpdated": _ts(stamp)},
        }
        if p is not None and rng.random() < 0.5:
            vendor = (p.vendor or "n/a").lower().replace(" ", "_")
            product = (p.product or p.package or "n/a").lower().replace(" ", "_")
            adp["affected"] = [{
                "cpes": [f"cpe:2.3:a:{vendor}:{product}:*:*:*:*:*:*:*:*"],
                "vendor": vendor, "product": product,
                "versions": [{"status": "affected", "version": "0",
                              "lessThan": p.sample_version(rng), "versionType": "custom"}],
                "defaultStatus": "unknown",
            }]
        adps.append(adp)
    return adps


def _semver_versions(p: Product, rng: random.Random) -> tuple[str, list[dict[str, Any]]]:
    """(defaultStatus, versions[]) for a product with dotted, comparable versions."""
    vtype = "semver" if p.style in ("semver", "ecosystem") else "custom"
    i = rng.randrange(len(p.lines))
    line, top = p.lines[i], p.max_patch[i]
    fix = f"{line}.{rng.randint(1, top)}"
    r = rng.random()
    if r < 0.35:
        return "unaffected", [{"version": "0", "lessThan": fix, "status": "affected",
                               "versionType": vtype}]
    if r < 0.6:
        picked = sorted(rng.sample(range(len(p.lines)), rng.randint(1, min(3, len(p.lines)))))
        return "unaffected", [
            {"version": f"{p.lines[j]}.0",
             "lessThan": f"{p.lines[j]}.{rng.randint(1, p.max_patch[j])}",
             "status": "affected", "versionType": vtype}
            for j in picked
        ]
    if r < 0.75:
        return "unaffected", [{"version": f"{p.lines[0]}.0", "lessThanOrEqual": fix,
                               "status": "affected", "versionType": "custom"}]
    if r < 0.9:
        picks = {f"{line}.{rng.randint(0, top)}" for _ in range(rng.randint(1, 4))}
        return rng.choice(("unaffected", "unknown")), [
            {"version": v, "status": "affected"} for v in sorted(picks)
        ]
    return "affected", [{"version": fix, "lessThan": "*", "status": "unaffected",
                         "versionType": vtype}]


def _affected_entry(ctx: Context, rng: random.Random, p: Product) -> list[dict[str, Any]]:
    entry: dict[str, Any] = {}
    if p.vendor is not None:
        entry["vendor"] = p.vendor
    if p.product is not None:
        entry["product"] = p.product
    if p.package is not None:
        entry["packageName"] = p.package
    if p.collection is not None:
        entry["collectionURL"] = p.collection
    if p.style == "rpm":
        entries = []
        for stream in range(rng.randint(1, 6)):
            e = dict(entry)
            major = 9 - stream % 4
            e["cpes"] = [f"cpe:/o:redhat:enterprise_linux:{major}"]
            e["product"] = (p.product or "Red Hat Enterprise Linux").rsplit(" ", 1)[0] + f" {major}"
            if rng.random() < 0.3:
                e["defaultStatus"] = rng.choice(("unaffected", "unknown"))
            else:
                line = p.lines[0]
                rel = f"{rng.randint(1, 40)}.el{major}_{rng.randint(0, 6)}"
                e["defaultStatus"] = "affected"
                epoch = rng.choice((0, 0, 0, 2, 15, 17))
                e["versions"] = [{"status": "unaffected",
                                  "version": f"{epoch}:{line}.{rng.randint(0, 20)}-{rel}",
                                  "lessThan": "*", "versionType": "rpm"}]
            entries.append(e)
        return entries
    if p.style == "firmware":
        i = rng.randrange(len(p.lines))
        line, top = p.lines[i], p.max_patch[i]
        if rng.random() < 0.6:
            entry["defaultStatus"] = "unaffected"
            entry["versions"] = [{"status": "affected", "version": f"{line}.0",
                                  "versionType": "Custom",
                                  "lessThanOrEqual": f"{line}.{rng.randint(1, top)}"}]
        else:
            entry["defaultStatus"] = "affected"
            code = rng.choice(("Milan", "Genoa", "Rome", "Naples", "Bergamo", "Turin"))
            entry["versions"] = [{"status": "unaffected", "version": "various",
                                  "lessThan": f"{code}PI 1.0.0.{rng.randrange(16):X}",
                                  "versionType": rng.choice(("PI", "Platform Initialization"))}]
        return [entry]
    if p.style == "git":
        entry["repo"] = f"https://{p.domain}/git/{(p.product or 'src').split()[0].lower()}.git"
        entry["defaultStatus"] = "unaffected"
        versions = [{"version": _sha(rng), "lessThan": _sha(rng), "status": "affected",
                     "versionType": "git"} for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.5:
            _, extra = _semver_versions(p, rng)
            versions += extra
        entry["versions"] = versions
        return [entry]
    if p.style == "dotted":
        entry["platforms"] = ["32-bit Systems", "x64-based Systems"]
        i = rng.randrange(len(p.lines))
        entry["versions"] = [{"version": f"{p.lines[i]}.0",
                              "lessThan": f"{p.lines[i]}.{rng.randint(1, p.max_patch[i])}",
                              "status": "affected", "versionType": "custom"}]
        return [entry]
    default, versions = _semver_versions(p, rng)
    entry["defaultStatus"] = default
    entry["versions"] = versions
    return [entry]


def _product_record(ctx: Context, rng: random.Random, year: int, cve_id: str,
                    dates: tuple[dt.datetime, dt.datetime, dt.datetime]) -> dict[str, Any]:
    reserved, published, updated = dates
    p = ctx.pick_product(rng)
    affected = _affected_entry(ctx, rng, p)
    if rng.random() < 0.25:
        siblings = ctx.siblings(p)
        for _ in range(rng.randint(1, 3)):
            affected += _affected_entry(ctx, rng, rng.choice(siblings))
    if rng.random() < 0.08:
        affected += _affected_entry(ctx, rng, ctx.pick_product(rng))
    vendor = p.vendor if p.vendor and p.vendor != "n/a" else "mitre"
    short = "".join(c for c in vendor.lower() if c.isalnum())[:20] or "mitre"
    org = str(random.Random(short).getrandbits(128))
    org_id = f"{org[:8]}-{org[8:12]}-{org[12:16]}-{org[16:20]}-{org[20:32]:0<12}"
    template = rng.choice(ctx.t.descriptions)
    name = " ".join(x for x in (p.vendor, p.product or p.package) if x and x != "n/a")
    cwe_id, cwe_text = rng.choice(ctx.t.cwes)
    metrics = _cna_metrics(ctx, rng, year)
    refs = _references(ctx, rng, cve_id, p, year, rng.randint(1, 6))
    cna: dict[str, Any] = {
        "title": f"{name}: {rng.choice(ctx.t.titles)}",
        "affected": affected,
        "descriptions": [{"lang": "en", "value": f"{name}: {template}"}],
        "problemTypes": [{"descriptions": [{"lang": "en", "type": "CWE", "cweId": cwe_id,
                                            "description": cwe_text}]}],
        "references": refs,
        "providerMetadata": {"orgId": org_id, "shortName": short,
                             "dateUpdated": _ts(updated)},
    }
    if metrics:
        cna["metrics"] = metrics
    if rng.random() < 0.3:
        cna["datePublic"] = _ts(published - dt.timedelta(days=rng.randint(0, 30)))
    if rng.random() < 0.2:
        cna["credits"] = [{"lang": "en", "type": "finder",
                           "value": f"{_synthetic_name(rng, 2)} {_synthetic_name(rng, 3)}"}]
    if rng.random() < 0.4:
        cna["x_generator"] = {"engine": rng.choice(("Vulnogram 0.2.0", "Vulnogram 0.1.0-dev",
                                                    "cveClient/1.0.15"))}
    record: dict[str, Any] = {
        "dataType": "CVE_RECORD",
        "dataVersion": "5.1",
        "cveMetadata": {
            "cveId": cve_id, "assignerOrgId": org_id, "assignerShortName": short,
            "state": "PUBLISHED", "dateReserved": _ts(reserved),
            "datePublished": _ts(published), "dateUpdated": _ts(updated),
        },
        "containers": {"cna": cna},
    }
    adps = _adp(ctx, rng, cve_id, refs, published, updated, bool(metrics), p)
    if adps:
        record["containers"]["adp"] = adps
    return record


def _kernel_record(ctx: Context, rng: random.Random, year: int, cve_id: str,
                   dates: tuple[dt.datetime, dt.datetime, dt.datetime]) -> dict[str, Any]:
    reserved, published, updated = dates
    # Mainline release that fixed it (recent ones more likely), and where it came in.
    first5 = KERNEL_MAINLINE.index("5.0")
    fix_i = min(len(KERNEL_MAINLINE) - 1,
                first5 + int(rng.triangular(0, len(KERNEL_MAINLINE) - first5,
                                            len(KERNEL_MAINLINE) - first5)))
    fix_main = KERNEL_MAINLINE[fix_i]
    intro = "2.6.12" if rng.random() < 0.2 else KERNEL_MAINLINE[rng.randrange(0, fix_i)]
    fix_label = f"{fix_main}-rc{rng.randint(2, 7)}" if rng.random() < 0.2 else fix_main
    branches = []
    for b, (top, lts) in KERNEL_BRANCHES.items():
        if _vkey(intro) <= _vkey(b) < _vkey(fix_main) and rng.random() < (0.85 if lts else 0.5):
            branches.append(f"{b}.{rng.randint(1, top)}")
    intro_sha = "1da177e4c3f41524e886b7f1b8a0c1fc7321cac2" if intro == "2.6.12" else _sha(rng)
    fix_shas = [_sha(rng) for _ in range(len(branches) + 1)]
    files = rng.sample(ctx.t.kernel_files, min(len(ctx.t.kernel_files), rng.randint(1, 4)))
    repo = "https://git.kernel.org/pub/scm/linux/kernel/git/stable/linux.git"
    git_entry = {
        "product": "Linux", "vendor": "Linux", "defaultStatus": "unaffected", "repo": repo,
        "programFiles": files,
        "versions": [{"version": intro_sha, "lessThan": s, "status": "affected",
                      "versionType": "git"} for s in fix_shas],
    }
    semver_versions: list[dict[str, Any]] = []
    if intro != "2.6.12":
        semver_versions.append({"version": intro, "status": "affected"})
        semver_versions.append({"version": "0", "lessThan": intro, "status": "unaffected",
                                "versionType": "semver"})
    for v in branches:
        branch = v.rsplit(".", 1)[0]
        semver_versions.append({"version": v, "lessThanOrEqual": f"{branch}.*",
                                "status": "unaffected", "versionType": "semver"})
    semver_versions.append({"version": fix_label, "lessThanOrEqual": "*",
                            "status": "unaffected", "versionType": "original_commit_for_fix"})
    semver_entry = {
        "product": "Linux", "vendor": "Linux", "defaultStatus": "affected", "repo": repo,
        "programFiles": files, "versions": semver_versions,
    }
    title_template = rng.choice(ctx.t.kernel_titles)
    subsystem = title_template.split(":", 1)[0] if ":" in title_template else "kernel"
    title = f"{subsystem}: {rng.choice(ctx.t.kernel_titles).split(': ')[-1]}"
    body = rng.choice(ctx.t.kernel_bodies)
    cna: dict[str, Any] = {
        "providerMetadata": {"orgId": LINUX_ORG, "shortName": "Linux",
                             "dateUpdated": _ts(updated)},
        "descriptions": [{"lang": "en", "value": "In the Linux kernel, the following "
                          f"vulnerability has been resolved:\n\n{title}\n\n{body}"}],
        "affected": [git_entry, semver_entry],
        "references": [{"url": f"https://git.kernel.org/stable/c/{s}"} for s in fix_shas],
        "title": title,
        "x_generator": {"engine": "bippy-1.2.0"},
    }
    if rng.random() < 0.6:
        matches = [{"vulnerable": True,
                    "criteria": "cpe:2.3:o:linux:linux_kernel:*:*:*:*:*:*:*:*",
                    "versionStartIncluding": intro, "versionEndExcluding": v}
                   for v in [*branches, fix_label]]
        cna["cpeApplicability"] = [{"nodes": [{"operator": "OR", "negate": False,
                                               "cpeMatch": matches}]}]
    if rng.random() < 0.1:
        cna["metrics"] = [_metric(ctx, rng, "cvssV3_1")]
    record: dict[str, Any] = {
        "dataType": "CVE_RECORD",
        "dataVersion": "5.1",
        "cveMetadata": {
            "cveId": cve_id, "assignerOrgId": LINUX_ORG, "assignerShortName": "Linux",
            "state": "PUBLISHED", "dateReserved": _ts(reserved),
            "datePublished": _ts(published), "dateUpdated": _ts(updated),
        },
        "containers": {"cna": cna},
    }
    adps = _adp(ctx, rng, cve_id, [], published, updated, "metrics" in cna, None)
    if adps:
        record["containers"]["adp"] = adps
    return record


def _rejected_record(ctx: Context, rng: random.Random, cve_id: str,
                     dates: tuple[dt.datetime, dt.datetime, dt.datetime]) -> dict[str, Any]:
    reserved, _published, updated = dates
    reason = rng.choice((
        "** REJECT ** DO NOT USE THIS CANDIDATE NUMBER. Reason: This candidate was "
        "withdrawn by its CNA. Further investigation showed that it was not a security issue.",
        "This CVE ID has been rejected or withdrawn by its CVE Numbering Authority.",
        "** REJECT ** This candidate is a duplicate of another CVE.",
    ))
    return {
        "dataType": "CVE_RECORD",
        "dataVersion": "5.1",
        "cveMetadata": {
            "cveId": cve_id, "assignerOrgId": CVE_ORG, "assignerShortName": "mitre",
            "state": "REJECTED", "dateReserved": _ts(reserved), "dateRejected": _ts(updated),
            "dateUpdated": _ts(updated),
        },
        "containers": {"cna": {
            "providerMetadata": {"orgId": CVE_ORG, "shortName": "mitre",
                                 "dateUpdated": _ts(updated)},
            "rejectedReasons": [{"lang": "en", "value": reason}],
        }},
    }


def generate_record(ctx: Context, i: int) -> tuple[int, str, dict[str, Any]]:
    """Record ``i`` of the corpus: (year, CVE id, record). Depends only on (seed, i)."""
    year, cve_id = ctx.cve_id(i)
    rng = random.Random(ctx.seed * 10_000_019 + i)
    dates = _dates(rng, year)
    r = rng.random()
    if r < REJECTED_SHARE:
        return year, cve_id, _rejected_record(ctx, rng, cve_id, dates)
    if rng.random() < kernel_share(year):
        return year, cve_id, _kernel_record(ctx, rng, year, cve_id, dates)
    return year, cve_id, _product_record(ctx, rng, year, cve_id, dates)


def mutate_record(ctx: Context, record: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A later version of ``record``: new dateUpdated, changed description/refs/metrics."""
    meta = record["cveMetadata"]
    when = _ts(MUTATION_START + dt.timedelta(seconds=rng.uniform(0, 30 * 86400)))
    meta["dateUpdated"] = when
    cna = record["containers"]["cna"]
    cna["providerMetadata"]["dateUpdated"] = when
    if meta["state"] == "REJECTED":
        cna["rejectedReasons"][0]["value"] += " (updated)"
        return record
    cna["descriptions"][0]["value"] += (
        "\n\nUpdate: the advisory was revised with new fix information.")
    cna.setdefault("references", []).append(
        {"url": f"https://www.openwall.com/lists/oss-security/2026/07/"
                f"{rng.randint(1, 28):02d}/{rng.randint(1, 9)}", "tags": ["mailing-list"]})
    cna["metrics"] = [_metric(ctx, rng, "cvssV3_1")]
    return record


# --- writing -------------------------------------------------------------------------

_CTX: Context | None = None
_DUMP_OPTS = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE


def _write(path: str, body: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _gen_chunk(args: tuple[str, int, int]) -> dict[str, int]:
    out, start, stop = args
    ctx = _CTX
    assert ctx is not None
    stats = {"records": 0, "bytes": 0, "kernel": 0, "rejected": 0}
    for i in range(start, stop):
        year, cve_id, record = generate_record(ctx, i)
        body = orjson.dumps(record, option=_DUMP_OPTS)
        _write(f"{out}/{year}/{cve_id}.json", body)
        stats["records"] += 1
        stats["bytes"] += len(body)
        if record["cveMetadata"]["state"] == "REJECTED":
            stats["rejected"] += 1
        elif record["cveMetadata"]["assignerOrgId"] == LINUX_ORG:
            stats["kernel"] += 1
    return stats


def _gen_mutated(args: tuple[str, list[int], int]) -> dict[str, int]:
    out, indices, mseed = args
    ctx = _CTX
    assert ctx is not None
    stats = {"records": 0, "bytes": 0, "kernel": 0, "rejected": 0}
    for i in indices:
        year, cve_id, record = generate_record(ctx, i)
        record = mutate_record(ctx, record, random.Random(mseed * 7_919 + i))
        body = orjson.dumps(record, option=_DUMP_OPTS)
        _write(f"{out}/{year}/{cve_id}.json", body)
        stats["records"] += 1
        stats["bytes"] += len(body)
        if record["cveMetadata"]["state"] == "REJECTED":
            stats["rejected"] += 1
        elif record["cveMetadata"]["assignerOrgId"] == LINUX_ORG:
            stats["kernel"] += 1
    return stats


def read_marker(out: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads((out / MARKER).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def corpus_ready(out: Path, count: int, seed: int, mutate: int | None = None) -> bool:
    """True when ``out`` holds a finished corpus generated with these parameters."""
    m = read_marker(out)
    if m is None:
        return False
    return (m.get("generator_version") == GENERATOR_VERSION and m.get("count") == count
            and m.get("seed") == seed and m.get("mutate") == mutate)


def _prepare(out: Path) -> None:
    """Empty ``out`` when it is a (possibly unfinished) corpus of ours; refuse otherwise."""
    if out.exists() and any(out.iterdir()):
        if not ((out / MARKER).exists() or (out / _IN_PROGRESS).exists()):
            raise SystemExit(f"{out} is not empty and is not a generated corpus; "
                             "pick another folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / _IN_PROGRESS).write_bytes(b"")


def generate(out: Path, count: int, seed: int = 1, *, mutate: int | None = None,
             jobs: int | None = None, templates: Path = DEFAULT_TEMPLATES,
             quiet: bool = False) -> dict[str, Any]:
    """Write the corpus (or, with ``mutate``, that many changed records) into ``out``."""
    global _CTX
    started = time.perf_counter()
    _CTX = ctx = Context(count, seed, load_templates(templates))
    setup = time.perf_counter() - started
    _prepare(out)
    jobs = max(1, jobs or os.cpu_count() or 1)
    if mutate is None:
        years = {ctx.cve_id(s)[0] for s in ctx.year_starts} | {ctx.cve_id(count - 1)[0]}
        tasks: Sequence[Any] = [(str(out), s, min(s + 2000, count))
                                for s in range(0, count, 2000)]
        worker: Any = _gen_chunk
    else:
        if not 0 < mutate <= count:
            raise SystemExit("--mutate must be between 1 and --count")
        picked = sorted(random.Random(f"mutate:{seed}:{mutate}").sample(range(count), mutate))
        years = {ctx.cve_id(i)[0] for i in picked}
        tasks = [(str(out), picked[s:s + 500], seed) for s in range(0, len(picked), 500)]
        worker = _gen_mutated
    for year in years:
        (out / str(year)).mkdir(exist_ok=True)
    totals = {"records": 0, "bytes": 0, "kernel": 0, "rejected": 0}
    done = 0
    if jobs == 1 or len(tasks) == 1:
        results: Iterator[dict[str, int]] = map(worker, tasks)
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(jobs)
        results = pool.imap_unordered(worker, tasks)
    try:
        for stats in results:
            for k, v in stats.items():
                totals[k] += v
            done += 1
            if not quiet and (done % 25 == 0 or done == len(tasks)):
                print(f"\r  generated {totals['records']:,}/{mutate or count:,} records",
                      end="", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    if not quiet:
        print(file=sys.stderr)
    seconds = time.perf_counter() - started
    marker = {
        "generator_version": GENERATOR_VERSION, "count": count, "seed": seed,
        "mutate": mutate, "files": totals["records"], "bytes": totals["bytes"],
        "kernel_records": totals["kernel"], "rejected_records": totals["rejected"],
        "products": len(ctx.products) + ctx.tail_count, "head_products": len(ctx.products),
        "setup_seconds": round(setup, 3),
        "seconds": round(seconds, 3), "jobs": jobs,
    }
    (out / MARKER).write_bytes(orjson.dumps(marker, option=orjson.OPT_INDENT_2))
    (out / _IN_PROGRESS).unlink(missing_ok=True)
    return marker


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder (<out>/<year>/<CVE-ID>.json)")
    parser.add_argument("--count", type=int, default=300_000, help="records in the corpus")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mutate", type=int, default=None, metavar="N",
                        help="write N changed records of the --count/--seed corpus instead")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPUs)")
    parser.add_argument("--templates", type=Path, default=DEFAULT_TEMPLATES,
                        help="folder holding the real cve5/ and cve5_linux_cna/ records")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be positive")
    marker = generate(args.out, args.count, args.seed, mutate=args.mutate, jobs=args.jobs,
                      templates=args.templates)
    print(orjson.dumps(marker, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
