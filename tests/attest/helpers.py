"""Test material the lab (:mod:`engine.attest.lab`) does not hold: a clock the tests move
by hand, an Ed25519 key, and boots turned into manifests and matches without a TPM."""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from engine.attest.eventlog import parse
from engine.attest.lab import COMPONENTS, IMAGE
from engine.attest.manifests import ReferenceManifest, manifest_from_log
from engine.attest.matching import MatchReport, ReferenceSet
from engine.attest.simboot import DEFAULT_BOOT, Boot, LogBuilder, hypervisor_boot
from engine.model import ImageRef


def ed25519_key_pem() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- boots, manifests and matches without a TPM (the PCRs are what the log replays to) -----

NEXT = ImageRef(name="hv-base", version="2026.06.1")
CREATED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def boot(boot_: Boot = DEFAULT_BOOT) -> tuple[dict[str, dict[int, bytes]], LogBuilder]:
    log = hypervisor_boot(boot_)
    pcrs = log.replay()
    for values in pcrs.values():  # the quote covers PCRs 0-23; 10-23 stay zero here
        for index in range(24):
            values.setdefault(index, bytes(len(next(iter(values.values())))))
    return pcrs, log


def manifest(boot_: Boot = DEFAULT_BOOT, image: ImageRef = IMAGE, **options: object
             ) -> ReferenceManifest:
    pcrs, log = boot(boot_)
    return manifest_from_log(image, pcrs, parse(log.encode()), components=COMPONENTS,
                             **options)  # type: ignore[arg-type]


def match(references: ReferenceSet, boot_: Boot = DEFAULT_BOOT,
          log_bytes: bytes | None = None) -> MatchReport:
    pcrs, log = boot(boot_)
    return references.match(pcrs, parse(log_bytes or log.encode()))

